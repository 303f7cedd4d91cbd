"""Broken datasets give a DatasetError / VideoError naming the file and the fix, and leave no cache entry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fixtures.datasets import DRAWER4, write_synthetic
from hilreward.data import LeRobotDataset
from hilreward.data.video import VideoEncoder
from hilreward.errors import DatasetError, VideoError

FRONT = Path("videos/observation.images.front/chunk-000/file-000.mp4")


@pytest.fixture
def copy(tmp_path) -> Path:
    dst = tmp_path / "drawer4"
    shutil.copytree(DRAWER4, dst)
    return dst


def _no_cache_entry(cache: Path) -> None:
    leftovers = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert not [p for p in leftovers if "front" in p.name], leftovers


def test_missing_info_json(tmp_path):
    with pytest.raises(DatasetError, match="info.json is missing.*dataset.root=<folder"):
        LeRobotDataset.open(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        LeRobotDataset.open(tmp_path / "nowhere")


def test_unknown_codebase_version(copy):
    info = json.loads((copy / "meta" / "info.json").read_text())
    info["codebase_version"] = "v1.6"
    (copy / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="'v1.6' is not supported.*v3.0, v2.1"):
        LeRobotDataset.open(copy)


def test_missing_episode_metadata_and_data(copy):
    shutil.rmtree(copy / "meta" / "episodes")
    with pytest.raises(DatasetError, match="meta/episodes holds no"):
        LeRobotDataset.open(copy)


def test_missing_data_parquet(copy):
    (copy / "data" / "chunk-000" / "file-000.parquet").unlink()
    with pytest.raises(DatasetError, match="file-000.parquet is missing"):
        LeRobotDataset.open(copy)


def test_missing_mp4(copy, tmp_path):
    (copy / FRONT).unlink()
    ds = LeRobotDataset.open(copy)
    with pytest.raises(VideoError, match=f"{copy / FRONT} is missing"):
        ds.frames(["front"], (16, 16), cache_dir=str(tmp_path / "cache"))
    _no_cache_entry(tmp_path / "cache")


def test_corrupt_mp4(copy, tmp_path):
    (copy / FRONT).write_bytes(b"this is not an mp4 file" * 100)
    with pytest.raises(VideoError, match="cannot decode .*file-000.mp4.*corrupt"):
        LeRobotDataset.open(copy).frames(["front"], (16, 16), cache_dir=str(tmp_path / "cache"))
    _no_cache_entry(tmp_path / "cache")


def test_truncated_mp4_gives_too_few_frames(copy, tmp_path):
    frames = LeRobotDataset.open(DRAWER4).frames(["front"], (128, 128), episodes=[0])["observation.images.front"]
    (copy / FRONT).unlink()
    enc = VideoEncoder(copy / FRONT, 10, 128, 128, "libx264")
    enc.write(np.asarray(frames[:100]))
    enc.close()
    with pytest.raises(VideoError, match="has 100 decodable frames but the parquet rows need 596 frames"):
        LeRobotDataset.open(copy).frames(["front"], (16, 16), cache_dir=str(tmp_path / "cache"))
    _no_cache_entry(tmp_path / "cache")


def test_unknown_camera_and_label_key(copy):
    ds = LeRobotDataset.open(copy)
    with pytest.raises(DatasetError, match="camera 'top'.*known: front, wrist.*dataset.cameras"):
        ds.frames(["top"], (16, 16))
    with pytest.raises(DatasetError, match="label key 'reward'.*known: observation.success, next.reward.*label.key"):
        ds.labels("reward")


def test_nan_labels(tmp_path):
    rewards = [np.array([0, 0, np.nan, 1], np.float32), np.array([0, 1, 1], np.float32)]
    write_synthetic(tmp_path / "ds", lengths=(4, 3), rewards=rewards)
    with pytest.raises(DatasetError, match="1 NaN values \\(episodes \\[0\\]\\).*dataset.episodes"):
        LeRobotDataset.open(tmp_path / "ds").labels()
    assert LeRobotDataset.open(tmp_path / "ds").labels(episodes=[1]).tolist() == [0, 0, 1]  # excluding the episode is the fix


def test_episode_length_mismatch(copy):
    import pyarrow.parquet as pq

    path = copy / "data" / "chunk-000" / "file-000.parquet"
    pq.write_table(pq.read_table(path).slice(0, 500), path)
    with pytest.raises(DatasetError, match="episode 3 .* has 53 rows .* says 149"):
        LeRobotDataset.open(copy)


def test_video_that_skips_frames(copy, tmp_path):
    """A file whose frames jump over rows' timestamps (dropped frames) is refused, not silently misaligned."""
    from fractions import Fraction

    import av

    (copy / FRONT).unlink()
    with av.open(str(copy / FRONT), mode="w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width = s.height = 128
        s.pix_fmt = "yuv420p"
        s.time_base = Fraction(1, 10)
        for i, pts in enumerate(list(range(50)) + list(range(60, 596))):
            frame = av.VideoFrame.from_ndarray(np.full((128, 128, 3), i % 255, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 10)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with pytest.raises(VideoError, match="no frame near t=5.000s .*next decoded frame is at 6.000s"):
        LeRobotDataset.open(copy).frames(["front"], (16, 16), cache_dir=str(tmp_path / "cache"))
    _no_cache_entry(tmp_path / "cache")


def test_a_column_info_json_lists_but_the_parquet_lacks_is_named_in_one_line(copy):
    """pyarrow's own message was 13 lines (the file's whole schema) and told the user to re-download a 'corrupt'
    file that was fine."""
    import pyarrow.parquet as pq

    data = copy / "data" / "chunk-000" / "file-000.parquet"
    pq.write_table(pq.read_table(data).drop_columns(["next.reward"]), data)
    with pytest.raises(DatasetError) as err:
        LeRobotDataset.open(copy).labels("next.reward")
    message = str(err.value)
    assert "\n" not in message and "corrupt" not in message
    assert "column 'next.reward' is listed in meta/info.json but missing from data/chunk-000/file-000.parquet" in message
