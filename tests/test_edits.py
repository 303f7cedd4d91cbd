"""Label edits file (format, undo, refusals) and `hilreward relabel` (round trip, LeRobot reads the result)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hilreward.data import LeRobotDataset
from hilreward.curation.edits import FORMAT, EditsFile, default_edits_path, judged_labels
from hilreward.curation.relabel import relabel
from hilreward.errors import ConfigError, DatasetError

from fixtures.datasets import DRAWER4, write_synthetic

PEER_PYTHON = Path.home() / ".cache" / "hilreward-peer" / "venv" / "bin" / "python"


@pytest.fixture
def d4(tmp_path) -> Path:
    """A private copy of drawer4 (episodes 0-2 succeed, 3 never does), so edits files can sit next to it."""
    return Path(shutil.copytree(DRAWER4, tmp_path / "d4"))


def onset(labels: np.ndarray, ds: LeRobotDataset, ep: int) -> int:
    return int(np.flatnonzero(labels[ds.rows([ep])])[0])


def test_edits_are_saved_at_once_reloaded_and_undone(d4):
    ds = LeRobotDataset.open(d4)
    edits = EditsFile.open(ds)
    assert edits.path == d4.parent / "d4.edits.json" == default_edits_path(d4)
    assert not edits.path.exists()  # nothing written before the first edit
    base = edits.base_labels()
    assert np.array_equal(base, ds.labels("observation.success", align="next"))  # frame-judged next.reward
    first = onset(base, ds, 0)
    edits.add(0, first, first + 8, 0)
    edits.add(3, 40, 55, 1, source="test")
    saved = json.loads(edits.path.read_text())  # on disk as soon as add() returned
    assert saved["format"] == FORMAT and saved["dataset_fingerprint"] == ds.fingerprint
    assert saved["label_key"] == "next.reward" and saved["dataset_root"] == str(d4.resolve())
    assert [(e["episode_index"], e["start"], e["end"], e["label"], e["source"]) for e in saved["edits"]] == \
        [(0, first, first + 8, 0, "label-station"), (3, 40, 55, 1, "test")]
    assert all(e["time"].endswith("+00:00") for e in saved["edits"])

    again = EditsFile.open(LeRobotDataset.open(d4))
    assert again.edits == edits.edits
    labels = again.apply(base)
    changed = np.flatnonzero(labels != base)
    rows0, rows3 = ds.rows([0]), ds.rows([3])
    assert set(changed) == set(rows0[first:first + 8]) | set(rows3[40:55])
    assert again.covered().sum() == 23

    assert again.undo(0).episode_index == 0  # undo a given edit
    assert [e.episode_index for e in EditsFile.open(ds).edits] == [3]
    again.undo()  # the last one
    assert json.loads(again.path.read_text())["edits"] == []
    with pytest.raises(ConfigError, match="no edit to undo"):
        again.undo()


def test_bad_edits_are_refused_with_clear_errors(d4, tmp_path):
    ds = LeRobotDataset.open(d4)
    edits = EditsFile.open(ds)
    for args, match in [((0, 140, 150, 1), r"frames 140..149 of episode 0 are out of range \(it has frames 0..148"),
                        ((0, 20, 20, 1), "out of range"), ((0, -1, 3, 0), "out of range"),
                        ((9, 0, 3, 0), "episode 9 is not in"), ((0, 5, 9, 2), "label 2 must be 0"),
                        ((1, 0, 10, 1), "frame 0 of episode 1 cannot be a success with label key 'next.reward'")]:
        with pytest.raises(DatasetError, match=match):
            edits.add(*args)
    assert not edits.path.exists()  # nothing half-written
    with pytest.raises(ConfigError, match="inside the dataset"):
        EditsFile.open(ds, d4 / "edits.json")
    with pytest.raises(DatasetError, match="label key 'nope' is not a column"):
        EditsFile.open(ds, tmp_path / "k.json", label_key="nope")

    edits.add(2, 10, 20, 0)
    with pytest.raises(ConfigError, match="are for label key 'next.reward', not 'observation.success'"):
        EditsFile.open(ds, label_key="observation.success")
    # another dataset: the same file given for a different folder
    other = tmp_path / "other"
    write_synthetic(other, lengths=(12, 9))
    shutil.copy(edits.path, tmp_path / "moved.json")
    with pytest.raises(DatasetError, match=r"made for another dataset \(.*d4, fingerprint"):
        EditsFile.open(LeRobotDataset.open(other), tmp_path / "moved.json")
    # stale: the dataset's files changed since
    info = d4 / "meta" / "info.json"
    info.write_text(info.read_text() + "\n")
    with pytest.raises(DatasetError, match="are stale: .* changed since they were made"):
        EditsFile.open(LeRobotDataset.open(d4))
    # not an edits file / a malformed edit
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(DatasetError, match="cannot read the edits file"):
        EditsFile.open(ds, tmp_path / "junk.json")
    (tmp_path / "other.json").write_text(json.dumps({"edits": []}))
    with pytest.raises(DatasetError, match="not a hilreward label edits file"):
        EditsFile.open(ds, tmp_path / "other.json")
    doc = json.loads((tmp_path / "moved.json").read_text())
    doc["dataset_fingerprint"] = ds.fingerprint
    doc["edits"].append({"episode_index": 1, "start": 3})
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="edit 1 of .* is malformed"):
        EditsFile.open(ds, tmp_path / "bad.json")
    doc["edits"][1] = {"episode_index": 1, "start": 100, "end": 200, "label": 1, "time": "t", "source": "s"}
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="edit 1 of .*: frames 100..199 of episode 1 are out of range"):
        EditsFile.open(ds, tmp_path / "bad.json")


def make_edits(ds: LeRobotDataset, key: str = "next.reward") -> tuple[EditsFile, np.ndarray]:
    """Onset of episode 0 moved 8 frames later, a false success in failed episode 3, episode 1's tail (last frame
    included) marked failure; returns the file and the expected frame-judged labels."""
    edits = EditsFile.open(ds, label_key=key)
    base = edits.base_labels()
    first = onset(base, ds, 0)
    edits.add(0, first, first + 8, 0)
    edits.add(3, 60, 75, 1)
    edits.add(1, 140, 149, 0)
    return edits, edits.apply(base)


def test_relabel_round_trip(d4, tmp_path):
    ds = LeRobotDataset.open(d4)
    before = {p: p.read_bytes() for p in d4.rglob("*") if p.is_file()}
    edits, expected = make_edits(ds)
    result = relabel(ds, None, tmp_path / "out")
    assert {p: p.read_bytes() for p in d4.rglob("*") if p.is_file()} == before  # IN untouched
    assert LeRobotDataset.open(d4).fingerprint == ds.fingerprint
    out = LeRobotDataset.open(tmp_path / "out")
    assert out.num_frames == ds.num_frames and out.camera_keys == ds.camera_keys
    # reading OUT with the same key gives exactly the edited labels; observation.success too
    assert np.array_equal(judged_labels(out, "next.reward"), expected)
    assert np.array_equal(out.labels("next.reward", align="current"), expected)
    assert np.array_equal(out.labels("observation.success", align="next"), expected)
    cols = ["next.reward", "observation.success", "next.done", "episode_index", "frame_index", "timestamp", "index"]
    old, new = ds.read_rows(cols), out.read_rows(cols)
    assert np.array_equal(old["next.done"], new["next.done"])  # as recorded
    # LeRobot's pairing: row t-1's next.reward is the success of frame t; the last row follows the last frame
    ep1 = out.rows([1])
    assert new["next.reward"][ep1[-1]].item() == 0.0 and old["next.reward"][ep1[-1]].item() == 1.0
    same = np.ones(len(expected), bool)
    covered = edits.covered()
    same[np.flatnonzero(covered) - 1] = False
    same[covered] = False
    assert np.array_equal(old["next.reward"][same], new["next.reward"][same])  # untouched rows bit for bit
    assert result.changed_rows == {"next.reward": 8 + 15 + 10, "observation.success": 8 + 15 + 9}  # + the last row
    assert result.episodes == [0, 1, 3]
    # videos hard-linked, never re-encoded; frames identical
    for cam in ds.camera_keys:
        assert [os.stat(p).st_ino for p in ds.video_files(cam)] == [os.stat(p).st_ino for p in out.video_files(cam)]
    assert result.linked == 2 and result.copied == 0
    # stats follow the new labels, globally and per episode
    stats = json.loads((tmp_path / "out" / "meta" / "stats.json").read_text())
    assert stats["next.reward"]["mean"][0] == pytest.approx(float(new["next.reward"].mean()))
    assert stats["observation.success"]["mean"][0] == pytest.approx(float(expected.mean()))
    assert stats["next.done"] == json.loads((d4 / "meta" / "stats.json").read_text())["next.done"]
    episodes = pq.read_table(next((tmp_path / "out" / "meta" / "episodes").rglob("*.parquet"))).to_pylist()
    for ep in episodes:
        rows = out.rows([ep["episode_index"]])
        assert ep["stats/next.reward/mean"][0] == pytest.approx(float(new["next.reward"][rows].mean()))


def test_relabel_with_a_per_frame_label_key(d4, tmp_path):
    ds = LeRobotDataset.open(d4)
    _, expected = make_edits(ds, key="observation.success")
    relabel(ds, default_edits_path(d4), tmp_path / "out", videos="copy")
    out = LeRobotDataset.open(tmp_path / "out")
    assert np.array_equal(judged_labels(out, "observation.success"), expected)
    assert np.array_equal(judged_labels(out, "next.reward"), expected)
    assert not any(os.path.samefile(a, b) for a, b in zip(ds.video_files(ds.camera_keys[0]),
                                                         out.video_files(ds.camera_keys[0])))


def test_relabel_refuses_bad_input(d4, tmp_path, capsys):
    from hilreward.cli import main

    ds = LeRobotDataset.open(d4)
    with pytest.raises(ConfigError, match="edits file .* does not exist"):
        relabel(ds, None, tmp_path / "out")
    make_edits(ds)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="already exists and is not an empty folder"):
        relabel(ds, None, tmp_path / "full")
    for bad in (d4, d4 / "sub", tmp_path):
        with pytest.raises(ConfigError, match="overlaps the input dataset"):
            relabel(ds, None, bad)
    with pytest.raises(ConfigError, match="videos='move' is not known"):
        relabel(ds, None, tmp_path / "out", videos="move")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp*"))
    assert main(["relabel", f"dataset.root={d4}"]) == 1
    assert "pass out=<folder for the new dataset>" in capsys.readouterr().err
    assert main(["relabel", f"dataset.root={d4}", f"out={tmp_path / 'cli'}"]) == 0
    assert "episodes [0, 1, 3]; videos: 2 hard-linked" in capsys.readouterr().out


def test_relabel_needs_v3(tmp_path):
    from fixtures.datasets import write_v21

    v21 = write_v21(DRAWER4, tmp_path / "v21", episodes=(0,))
    with pytest.raises(DatasetError, match="relabel writes LeRobot v3.0 and needs a v3.0 input"):
        relabel(LeRobotDataset.open(v21), None, tmp_path / "out")


LEROBOT_READ = """
import json, sys
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
ds = LeRobotDataset("local/relabelled", root=sys.argv[1], video_backend="pyav")
item = ds[int(sys.argv[2])]
print(json.dumps({"len": len(ds), "episodes": ds.num_episodes,
                  "reward": [float(x) for x in ds.hf_dataset["next.reward"]],
                  "success": [bool(x) for x in ds.hf_dataset["observation.success"]],
                  "stats_mean": float(np.asarray(ds.meta.stats["next.reward"]["mean"])[0]),
                  "frame_shape": list(item["observation.images.front"].shape)}))
"""


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.skipif(not PEER_PYTHON.is_file(), reason="LeRobot peer venv absent (bash ../shared/peer/setup_lerobot.sh)")
def test_lerobot_reads_the_relabelled_dataset(d4, tmp_path):
    ds = LeRobotDataset.open(d4)
    _, expected = make_edits(ds)
    relabel(ds, None, tmp_path / "out")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    row = int(ds.rows([0])[onset(expected, ds, 0)])
    proc = subprocess.run([str(PEER_PYTHON), "-c", LEROBOT_READ, str(tmp_path / "out"), str(row)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (got["len"], got["episodes"], got["frame_shape"]) == (596, 4, [3, 128, 128])
    ep = ds.read_rows(["episode_index"])["episode_index"]
    first = np.r_[True, ep[1:] != ep[:-1]]
    # LeRobot's own reader sees row t-1's next.reward = the edited success of frame t
    reward = np.array(got["reward"])
    assert np.array_equal(reward[np.flatnonzero(~first) - 1], expected[~first])
    assert np.array_equal(np.array(got["success"], dtype=int), expected)
    assert got["stats_mean"] == pytest.approx(reward.mean())
