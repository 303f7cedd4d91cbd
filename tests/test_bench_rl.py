"""bench/bench_rl.py's smoke run: two episodes an arm on rendered Meta-World, the JSON written; a reward server
killed mid-run fails its arm with the reason while the others go on; a run resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from support import DRAWER4, make_checkpoint

pytest.importorskip("stable_baselines3")
BENCH = ROOT / "bench" / "bench_rl.py"


def bench(*args: str, out: Path, cache: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HILREWARD_CACHE": cache}
    proc = subprocess.run([sys.executable, str(BENCH), *args, "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_smoke_run_writes_its_json_fails_a_dead_servers_arm_and_resumes(tmp_path):
    cache = str(tmp_path / "cache")
    ckpt = make_checkpoint(tmp_path / "ckpt", cache)
    out = tmp_path / "rl"
    common = ["--checkpoint", str(ckpt), "--dataset", str(DRAWER4), "--tasks", "drawer-open", "--seeds", "0",
              "--image-size", "32", "--threads", "1"]
    bench("smoke", *common, "--arms", "oracle", "hilreward-scratch", "corrected", "corrected-norelabel",
          "--kill-server-at", "corrected-norelabel=3", out=out, cache=cache)

    summary = json.loads((out / "rl.json").read_text())
    runs = {r["arm"]: r for r in summary["runs"]}
    assert set(runs) == {"oracle", "hilreward-scratch", "corrected", "corrected-norelabel"}
    for arm in ("oracle", "hilreward-scratch", "corrected"):
        r = runs[arm]
        assert not r.get("failed"), r.get("failed")
        assert r["env_steps"] == 10 and r["eval_episodes"] == 2 and r["demo_transitions"] > 0
        assert 0.0 <= r["hacking_rate"] <= r["claimed_success"] <= 1.0
        cell = summary["summary"]["drawer-open"][arm]
        assert cell["true_success"]["mean"] == r["true_success"]
    assert runs["corrected"]["final_version"] and runs["hilreward-scratch"]["final_version"]
    assert "UnavailableError" in runs["corrected-norelabel"]["failed"]  # the arm says why; the others went on
    assert summary["summary"]["drawer-open"]["corrected-norelabel"]["failed"]
    episodes = json.loads((out / "runs" / "drawer-open-oracle-s0" / "result.json").read_text())["train_episodes"]
    assert len(episodes) == 2 and all(e["steps"] == 5 for e in episodes)

    # A killed run leaves its checkpoint and progress, not its result: the next run resumes from them.
    (out / "runs" / "drawer-open-oracle-s0" / "result.json").unlink()
    proc = bench("run", *common, "--arms", "oracle", "--steps", "15", "--max-steps", "5", "--checkpoint-every", "5",
                 "--eval-episodes", "1", "--demos", "1", out=out, cache=cache)
    assert "resumed at step 10" in proc.stderr
    resumed = json.loads((out / "runs" / "drawer-open-oracle-s0" / "result.json").read_text())
    assert resumed["env_steps"] == 15 and len(resumed["train_episodes"]) == 3


class _Console:
    """The simulated operator's view of a server: stored corrections and the reviews it sends."""

    def __init__(self, corrections) -> None:
        self.corrections, self.reviews, self.presses = corrections, [], []

    def list_corrections(self, statuses=(), limit=100):
        from hilreward.serving.records import CorrectionList
        from hilreward.online.review import CorrectionCounts
        return CorrectionList([c for c in self.corrections if c.status in statuses], CorrectionCounts())

    def review(self, ids, verdict, reviewer="", note=""):
        self.reviews.append((sorted(ids), verdict))
        return list(ids)

    def correct_recent(self, label, last_k, episode_id, source):
        from hilreward.serving.records import RecentCorrectionAck
        self.presses.append((label, episode_id))
        return RecentCorrectionAck(list(range(last_k)), [], 0, "v")


def _operator(client, **settings):
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_rl

    return bench_rl.Operator(client, bench_rl.Settings(lag=(1, 1), **settings), seed=0)


def test_operator_stands_by_a_false_success_it_saw_against_recorded_frames_and_withdraws_a_missed_one():
    from hilreward.online.review import CorrectionView

    def view(cid, label, episode, step):
        return CorrectionView(cid, 0.0, label, 0.5, "v", episode, step, 0, "operator", "conflicts_offline", "",
                              None, None, {"episode": 19, "start": 66, "end": 77, "frame": 70, "label": 1 - label})

    client = _Console([view(1, 0, 7, 2), view(2, 1, 7, 3), view(3, 0, 8, 0), view(4, 0, 99, 0)])
    op = _operator(client, review_every=0, pace=0)
    for t, success in enumerate([False, False, False, True], start=1):
        op.see(7, t, success, claimed=False, ended_by_reward=False, version="v")
    op.see(8, 1, True, claimed=True, ended_by_reward=True, version="v")
    op.review()
    # 1: "not success" on a frame that was not one -> accepted; 2: a missed success against recorded failures ->
    # withdrawn; 3: "not success" on a frame that was a success -> rejected; 4: never seen -> no decision
    assert client.reviews == [([1], "accept"), ([2, 3], "reject")]


def test_operator_waits_for_a_new_version_after_pace_presses():
    client = _Console([])
    op = _operator(client, review_every=0, pace=2, pace_wait=100, k_false=1, budget=60, upfront=1.0)
    for episode in range(6):  # six hacked one-step episodes on one version: two presses, then it waits
        op.see(episode, 1, False, claimed=True, ended_by_reward=True, version="v1")
    op.flush()
    assert len(client.presses) == 2
    for episode in range(10, 13):  # a new version: two presses more
        op.see(episode, 1, False, claimed=True, ended_by_reward=True, version="v2")
    op.flush()
    assert [e for _, e in client.presses] == [0, 1, 10, 11]
    for episode in range(13, 13 + 100):  # no new version, pace_wait steps after its last press: it presses again
        op.see(episode, 1, False, claimed=True, ended_by_reward=True, version="v2")
    op.flush()
    assert len(client.presses) == 5


def test_operator_keeps_budget_for_later_in_the_run():
    client = _Console([])
    op = _operator(client, review_every=0, pace=0, k_false=3, budget=60, upfront=0.25, steps=1000)
    for episode in range(20):  # twenty hacked one-step episodes at the start: 15 of 60 frames, five presses
        op.see(episode, 1, False, claimed=True, ended_by_reward=True, version="v")
    op.flush()
    assert len(client.presses) == 5
    for episode in range(20, 520):  # by step 520 it may have spent 52% of 60: 31 frames, ten presses
        op.see(episode, 1, False, claimed=True, ended_by_reward=True, version="v")
    op.flush()
    assert len(client.presses) == 10
