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
