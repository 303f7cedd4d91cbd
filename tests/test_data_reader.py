"""Reading LeRobot v3.0 / v2.1 datasets: rows, labels, cameras, the decode-once frame cache, FrameData."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fixtures.datasets import DRAWER4, write_synthetic, write_v21
from hilreward.config import DatasetConfig, LabelConfig
from hilreward.data import (FrameData, LeRobotDataset, balanced_weights, cache_root, load_frame_data,
                            open_dataset, split_episodes)
from hilreward.data import video
from hilreward.data.cache import RowView
from hilreward.data.labels import describe_alignment, resolve_alignment
from hilreward.errors import ConfigError, DatasetError
from hilreward.images import resize_uint8


@pytest.fixture(scope="module")
def drawer4() -> LeRobotDataset:
    return LeRobotDataset.open(DRAWER4)


@pytest.fixture(scope="module")
def v21(tmp_path_factory) -> Path:
    return write_v21(DRAWER4, tmp_path_factory.mktemp("v21") / "drawer2_v21", episodes=(0, 3))


def test_v30_metadata(drawer4):
    assert drawer4.version == "v3.0"
    assert drawer4.fps == 10
    assert drawer4.camera_keys == ["observation.images.front", "observation.images.wrist"]
    assert [(e.index, e.length, e.tasks) for e in drawer4.episodes] == [(i, 149, ["open the drawer"]) for i in range(4)]
    assert drawer4.num_frames == 596
    assert drawer4.camera_size("observation.images.front") == (128, 128)
    assert LeRobotDataset.open(DRAWER4).fingerprint == drawer4.fingerprint


def test_read_rows_ordered_and_selected(drawer4):
    rows = drawer4.read_rows(["episode_index", "frame_index", "index", "observation.success"], episodes=[3, 1])
    assert np.array_equal(rows["episode_index"], np.repeat([1, 3], 149))
    assert np.array_equal(rows["frame_index"], np.tile(np.arange(149), 2))
    assert np.array_equal(rows["index"], np.concatenate([np.arange(149, 298), np.arange(447, 596)]))
    assert rows["observation.success"].dtype == bool
    with pytest.raises(DatasetError, match="episodes \\[7\\] are not in .*0-3"):
        drawer4.read_rows(["index"], episodes=[7])


def test_labels_alignment(drawer4):
    nxt = drawer4.labels("next.reward", align="next")
    cur = drawer4.labels("next.reward", align="current")
    rows = drawer4.read_rows(["episode_index", "next.reward", "observation.success"])
    assert np.array_equal(nxt, (rows["next.reward"] >= 0.5).astype(np.int64))
    first = np.r_[True, rows["episode_index"][1:] != rows["episode_index"][:-1]]
    assert np.all(cur[first] == 0)
    assert np.array_equal(cur[~first], nxt[np.flatnonzero(~first) - 1])
    # the rendered data's exact per-frame success matches the 'current' alignment
    assert np.array_equal(cur, rows["observation.success"].astype(np.int64))
    assert nxt.sum() > cur.sum() > 0  # expert episodes succeed; 'next' fires one frame early per success
    assert drawer4.labels("next.reward", threshold=2.0).sum() == 0
    assert drawer4.labels("observation.success", align="next").sum() == cur.sum()
    with pytest.raises(ConfigError, match="auto, current, next"):
        drawer4.labels(align="previous")


def test_auto_alignment_shifts_only_next_keys(drawer4):
    success = drawer4.read_rows(["observation.success"])["observation.success"].astype(np.int64)
    # auto (the default): next.reward is shifted to the frame it judges, observation.success read as recorded
    assert np.array_equal(drawer4.labels("next.reward"), drawer4.labels("next.reward", align="current"))
    assert np.array_equal(drawer4.labels("observation.success"), success)
    assert np.array_equal(drawer4.labels("next.reward"), drawer4.labels("observation.success"))
    # 'current' on a per-frame key compares every frame with its predecessor's truth: the old bug
    assert not np.array_equal(drawer4.labels("observation.success", align="current"), success)
    assert resolve_alignment("complementary_info.discrete_penalty", "auto") == "next"
    assert resolve_alignment("next.success", "auto") == "current" and resolve_alignment("x", "current") == "current"
    assert describe_alignment("observation.success", "auto") == "align=auto (next): observation.success read as recorded"


def test_resolve_cameras(drawer4):
    assert drawer4.resolve_cameras(["wrist", "observation.images.front"]) == \
        ["observation.images.wrist", "observation.images.front"]
    assert drawer4.resolve_cameras(None) == drawer4.camera_keys
    with pytest.raises(DatasetError, match="'top' is not in .*known: front, wrist"):
        drawer4.resolve_cameras(["top"])


def test_frames_decoded_once_then_cached(drawer4, tmp_path):
    before = video.DECODE_CALLS
    first = drawer4.frames(["front", "wrist"], (64, 48), cache_dir=str(tmp_path))
    assert video.DECODE_CALLS == before + 2  # one sequential pass per (camera, file)
    assert first["observation.images.front"].shape == (596, 64, 48, 3)
    assert first["observation.images.front"].dtype == np.uint8
    cached = sorted(p.name for p in (tmp_path / "frames" / drawer4.fingerprint / "64x48").iterdir())
    assert cached == ["observation.images.front.json", "observation.images.front.u8",
                      "observation.images.wrist.json", "observation.images.wrist.u8"]
    again = LeRobotDataset.open(DRAWER4).frames(["front", "wrist"], (64, 48), cache_dir=str(tmp_path))
    assert video.DECODE_CALLS == before + 2  # a fresh reader in the same cache decodes nothing
    assert isinstance(again["observation.images.front"], np.memmap)
    for k in first:
        assert np.array_equal(first[k], again[k])
    sub = drawer4.frames(["wrist"], (64, 48), episodes=[2], cache_dir=str(tmp_path))["observation.images.wrist"]
    assert np.array_equal(sub, first["observation.images.wrist"][298:447])
    assert video.DECODE_CALLS == before + 2


@pytest.mark.slow
def test_frames_match_resize_of_native(drawer4, tmp_path):
    native = drawer4.frames(["front"], (128, 128), episodes=[0], cache_dir=str(tmp_path))["observation.images.front"]
    small = drawer4.frames(["front"], (32, 40), episodes=[0], cache_dir=str(tmp_path))["observation.images.front"]
    assert np.array_equal(small, resize_uint8(np.asarray(native), (32, 40)))
    # frames change over an episode (the arm moves): rows are not one repeated frame
    assert np.abs(native[0].astype(int) - native[-1]).mean() > 1


def test_interrupted_cache_entry_is_rebuilt(drawer4, tmp_path):
    directory = tmp_path / "frames" / drawer4.fingerprint / "16x16"
    directory.mkdir(parents=True)
    (directory / "observation.images.front.u8").write_bytes(b"\0" * 100)  # a killed run: data, no json
    before = video.DECODE_CALLS
    frames = drawer4.frames(["front"], (16, 16), cache_dir=str(tmp_path))["observation.images.front"]
    assert video.DECODE_CALLS == before + 1
    assert frames.shape == (596, 16, 16, 3) and frames.mean() > 10
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temp files left


def test_cache_root(monkeypatch, tmp_path):
    assert cache_root(str(tmp_path)) == tmp_path
    monkeypatch.setenv("HILREWARD_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("HILREWARD_CACHE")
    assert cache_root() == Path.home() / ".cache" / "hilreward"


def test_load_frame_data_and_subset():
    data = load_frame_data(DatasetConfig(root=str(DRAWER4), episodes=[0, 3], cameras=["front"]),
                           LabelConfig(), (32, 32))
    assert isinstance(data, FrameData) and len(data) == 298
    assert data.camera_keys == ["observation.images.front"]
    assert data.images["observation.images.front"].shape == (298, 32, 32, 3)
    assert data.labels.dtype == np.int64 and data.labels[149:].sum() == 0 and data.labels[:149].sum() > 0
    assert data.fps == 10 and data.fingerprint == LeRobotDataset.open(DRAWER4).fingerprint
    sub = data.subset(data.labels == 1)
    assert len(sub) == data.labels.sum() and np.all(sub.labels == 1) and np.all(sub.episode_index == 0)
    assert np.array_equal(sub.images["observation.images.front"], data.images["observation.images.front"][data.labels == 1])
    none = load_frame_data(DatasetConfig(root=str(DRAWER4)), LabelConfig(key="absent"), (32, 32), require_labels=False)
    assert none.labels is None and len(none) == 596
    with pytest.raises(DatasetError, match="'absent' is not a column.*next.reward"):
        load_frame_data(DatasetConfig(root=str(DRAWER4)), LabelConfig(key="absent"), (32, 32))


def test_open_dataset_needs_a_source():
    with pytest.raises(ConfigError, match="dataset.root"):
        open_dataset(DatasetConfig())


@pytest.mark.slow
def test_v21_reading(v21, drawer4, tmp_path):
    ds = LeRobotDataset.open(v21)
    assert ds.version == "v2.1" and ds.fps == 10
    assert [(e.index, e.length) for e in ds.episodes] == [(0, 149), (1, 149)]
    assert np.array_equal(ds.labels(align="next"), drawer4.labels(align="next", episodes=[0, 3]))
    assert np.array_equal(ds.labels(align="current"), drawer4.labels(align="current", episodes=[0, 3]))
    before = video.DECODE_CALLS
    frames = ds.frames(None, (128, 128), cache_dir=str(tmp_path))
    assert video.DECODE_CALLS == before + 4  # one mp4 per (camera, episode)
    ref = drawer4.frames(None, (128, 128), episodes=[0, 3], cache_dir=str(tmp_path))
    idx = np.arange(1, 297, 5)
    for k in ref:
        a, b = frames[k].astype(np.int16), ref[k].astype(np.int16)
        aligned = np.abs(a[idx] - b[idx]).mean()
        assert aligned < 2.5  # near-lossless h264 (yuv420p) re-encode of the same frames
        assert aligned < np.abs(a[idx] - b[idx - 1]).mean() and aligned < np.abs(a[idx] - b[idx + 1]).mean()


def test_image_features_in_parquet(tmp_path):
    made = write_synthetic(tmp_path / "img", use_videos=False)
    ds = LeRobotDataset.open(tmp_path / "img")
    assert ds.features["observation.images.front"]["dtype"] == "image"
    frames = ds.frames(None, (32, 48), cache_dir=str(tmp_path / "cache"))
    expected = np.concatenate([f["observation.images.wrist"] for f in made["frames"]])
    assert np.array_equal(frames["observation.images.wrist"], expected)  # PNG is lossless
    with pytest.raises(DatasetError, match="holds images"):
        ds.read_rows(["observation.images.front"])


def test_hub_snapshot_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "datasets--someone--drawer4"
    shutil.copytree(DRAWER4, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    ds = open_dataset(DatasetConfig(repo_id="someone/drawer4"))
    assert ds.num_frames == 596 and ds.root.name == commit
    with pytest.raises(DatasetError, match="not in the local Hub cache.*dataset.root=<folder>"):
        open_dataset(DatasetConfig(repo_id="someone/absent"))


def test_split_episodes():
    train, val = split_episodes(list(range(10)), 0.2, seed=0)
    assert len(val) == 2 and sorted(train + val) == list(range(10)) and not set(train) & set(val)
    assert split_episodes(list(range(10)), 0.2, seed=0) == (train, val)
    assert split_episodes(list(range(10)), 0.2, seed=1) != (train, val)
    assert split_episodes([0, 1, 2], 0.1, seed=0)[1] != []  # at least one held-out episode
    assert split_episodes([4, 5, 6], 0.5, seed=0, val_episodes=[5]) == ([4, 6], [5])
    assert split_episodes([4, 5], 0.0, seed=0) == ([4, 5], [])
    with pytest.raises(ConfigError, match="\\[9\\]"):
        split_episodes([4, 5], 0.5, seed=0, val_episodes=[9])
    with pytest.raises(ConfigError, match="no training episodes"):
        split_episodes([4], 0.5, seed=0, val_episodes=[4])


def test_split_is_stratified_by_success():
    succeeding = [e for e in range(16) if e % 4 != 3]  # 12 succeed, 4 fail: a random 3 can be all failing
    for seed in range(40):
        train, val = split_episodes(list(range(16)), 0.2, seed=seed, succeeding=succeeding)
        assert len(val) == 3 and sorted(train + val) == list(range(16))
        assert sum(e in succeeding for e in val) == 2 and sum(e not in succeeding for e in val) == 1
    # one held out: a succeeding one; training keeps one of each kind when it can
    assert split_episodes([0, 1, 2, 3], 0.2, seed=0, succeeding=[0, 1])[1] in ([0], [1])
    assert split_episodes([0, 1, 2], 0.5, seed=0, succeeding=[0]) == ([0], [1, 2])
    assert split_episodes(list(range(10)), 0.2, seed=0, succeeding=[]) == split_episodes(list(range(10)), 0.2, 0, None,
                                                                                         [])
    assert split_episodes([4, 5, 6], 0.5, seed=0, val_episodes=[5], succeeding=[5]) == ([4, 6], [5])  # explicit wins


def test_a_selection_of_episodes_is_a_view_of_the_frame_cache_not_a_copy(tmp_path):
    every = load_frame_data(DatasetConfig(root=str(DRAWER4)), LabelConfig(), (32, 32), cache_dir=str(tmp_path))
    some = load_frame_data(DatasetConfig(root=str(DRAWER4), episodes=[0, 2]), LabelConfig(), (32, 32),
                           cache_dir=str(tmp_path))
    cam = some.camera_keys[0]
    assert isinstance(some.images[cam], RowView) and some.images[cam].shape == (len(some), 32, 32, 3)
    want = np.asarray(every.images[cam])[np.isin(every.episode_index, [0, 2])]
    assert np.array_equal(np.asarray(some.images[cam]), want)
    assert np.array_equal(some.images[cam][[200, 3, 150]], want[[200, 3, 150]])  # any order, across the gap
    assert np.array_equal(some.images[cam][5], want[5]) and np.array_equal(some.images[cam][140:160], want[140:160])
    assert some.images[cam].astype(np.float32).sum() == want.astype(np.float32).sum()  # other array methods read it


def test_balanced_weights():
    w = balanced_weights(np.array([0, 0, 0, 1]))
    assert np.allclose(w, [1 / 3, 1 / 3, 1 / 3, 1.0])
    assert np.isclose(w[:3].sum(), w[3:].sum())
    assert balanced_weights(np.array([], dtype=np.int64)).shape == (0,)


def test_info_json_not_changed_by_reading(drawer4):
    # reading must never write into the dataset folder
    before = {p: p.stat().st_mtime_ns for p in DRAWER4.rglob("*") if p.is_file()}
    drawer4.frames(["front"], (8, 8))
    assert {p: p.stat().st_mtime_ns for p in DRAWER4.rglob("*") if p.is_file()} == before
    assert json.loads((DRAWER4 / "meta" / "info.json").read_text())["total_frames"] == 596
