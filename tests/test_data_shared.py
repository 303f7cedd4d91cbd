"""The shared LeRobot v3.0 datasets (written by LeRobot 0.6.1) read exactly: rows, labels, frames."""

from __future__ import annotations

import json

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from fixtures.datasets import write_synthetic
from hilreward.data import LeRobotDataset

NAMES = ["metaworld_drawer_open", "metaworld_pick_place", "metaworld_button_press"]


def _independent_frames(path, times: np.ndarray) -> np.ndarray:
    """Decode the whole file with PyAV and take, for each time, the frame with the nearest pts."""
    with av.open(str(path)) as c:
        decoded = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    pts = np.array([t for t, _ in decoded])
    return np.stack([decoded[int(np.argmin(np.abs(pts - t)))][1] for t in times])


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("name", NAMES)
def test_shared_dataset_rows_labels_frames(shared_data, tmp_path, name):
    root = shared_data / name
    ds = LeRobotDataset.open(root)
    assert ds.version == "v3.0" and len(ds.episodes) == 20 and ds.num_frames == 2980
    raw = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet").to_pydict()
    order = np.lexsort((raw["frame_index"], raw["episode_index"]))
    stored = np.asarray(raw["next.reward"], np.float32)[order]
    assert np.array_equal(ds.labels(align="next"), (stored >= 0.5).astype(np.int64))  # LeRobot's pairing
    success = np.asarray(raw["observation.success"])[order].astype(np.int64)
    assert np.array_equal(ds.labels(align="current"), success)  # 'current' = exact success of the shown frame
    # align=auto (the default) reads either key right: both give the exact success of the frame shown
    assert np.array_equal(ds.labels("next.reward"), success)
    assert np.array_equal(ds.labels("observation.success"), success)

    camera = "observation.images.front"
    frames = ds.frames([camera], (128, 128), cache_dir=str(tmp_path))[camera]
    eps = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pydict()
    from_ts = dict(zip(eps["episode_index"], eps[f"videos/{camera}/from_timestamp"]))
    rows = ds.read_rows(["episode_index", "timestamp"])
    sample = np.random.default_rng(0).choice(ds.num_frames, 40, replace=False)
    times = np.array([from_ts[int(rows["episode_index"][i])] + rows["timestamp"][i] for i in sample])
    ref = _independent_frames(root / "videos" / camera / "chunk-000" / "file-000.mp4", times)
    diff = np.abs(frames[sample].astype(int) - ref.astype(int)).mean()
    assert diff < 2, diff


@pytest.mark.shared_data
def test_writer_layout_matches_lerobot_written_data(shared_data, tmp_path):
    """Our writer produces the same info.json keys and meta/episodes columns as LeRobot's writer."""
    ref_root = shared_data / NAMES[0]
    write_synthetic(tmp_path / "ours", lengths=(4,), size=(128, 128))
    ours = json.loads((tmp_path / "ours" / "meta" / "info.json").read_text())
    ref = json.loads((ref_root / "meta" / "info.json").read_text())
    assert set(ours) == set(ref)
    for key in ("data_path", "video_path", "chunks_size", "data_files_size_in_mb", "video_files_size_in_mb"):
        assert ours[key] == ref[key]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index", "observation.images.front"):
        assert ours["features"][key]["dtype"] == ref["features"][key]["dtype"]
        assert ours["features"][key]["shape"] == ref["features"][key]["shape"]
    ref_cols = pq.read_schema(ref_root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").names
    our_cols = pq.read_schema(tmp_path / "ours" / "meta" / "episodes" / "chunk-000" / "file-000.parquet").names
    assert [c for c in our_cols if not c.startswith("stats/")] == [c for c in ref_cols if not c.startswith("stats/")]
    ref_tasks = pq.read_table(ref_root / "meta" / "tasks.parquet")
    our_tasks = pq.read_table(tmp_path / "ours" / "meta" / "tasks.parquet")
    assert our_tasks.schema.names == ref_tasks.schema.names
    assert json.loads(our_tasks.schema.metadata[b"pandas"])["index_columns"] == \
        json.loads(ref_tasks.schema.metadata[b"pandas"])["index_columns"]
