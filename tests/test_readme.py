"""The README's three first steps, as written, on a 16-episode rendered set: ``train`` then ``eval heldout=true``, the
reward in an environment loop, and ``serve`` with the console. The commands and the Python are read from the README;
only the dataset path, the output folder and (for speed) the number of training steps and the ports are filled in."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hilreward.serving.client import RewardClient

from conftest import ROOT

README = ROOT / "README.md"
DEMO = ROOT / "data" / "demo"
DATASET = "path/to/lerobot_dataset"


def first_steps() -> list[tuple[str, str]]:
    """(language, code) of every code block under "Three things to try first"."""
    section = README.read_text().split("## Three things to try first", 1)[1].split("\n## ", 1)[0]
    return [(lang, textwrap.dedent(code)) for lang, code in re.findall(r"```(bash|python)\n(.*?)```", section, re.S)]


def commands(code: str) -> list[list[str]]:
    out = []
    for line in code.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("hilreward "):
            out.append(line.split()[1:])
    return out


def sixteen_episodes(dst: Path) -> Path:
    """The first 16 episodes of data/demo as a LeRobot v3.0 set of their own (the videos are shared files)."""
    shutil.copytree(DEMO, dst)
    for path in (dst / "meta" / "episodes").rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.filter(pc.less(table["episode_index"], 16)), path)
    for path in (dst / "data").rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.filter(pc.less(table["episode_index"], 16)), path)
    info = json.loads((dst / "meta" / "info.json").read_text())
    frames = sum(pq.read_table(p).num_rows for p in (dst / "data").rglob("*.parquet"))
    info.update(total_episodes=16, total_frames=frames, splits={"train": "0:16"})
    (dst / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return dst


def run_cli(args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "hilreward.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow  # about 80 s: trains, evaluates and serves
def test_the_first_steps_work_as_written_on_16_episodes(tmp_path, monkeypatch):
    data = sixteen_episodes(tmp_path / "set")
    blocks = first_steps()
    (lang, step1), (lang2, step2), (lang3, step3) = blocks[:3]
    assert (lang, lang2, lang3) == ("bash", "python", "bash")

    # 1. train, then eval heldout=true: the held-out episodes are there, and eval judges them
    train_cmd, eval_cmd = commands(step1)
    assert train_cmd[0] == "train" and eval_cmd[0] == "eval" and "heldout=true" in eval_cmd
    train_args = [a.replace(DATASET, str(data)) for a in train_cmd] + ["training.steps=20"]
    printed = run_cli(train_args, tmp_path)
    assert "calibration by 4 folds" in printed and "stay held out" in printed
    metrics = json.loads((tmp_path / "runs" / "cls" / "metrics.json").read_text())
    assert len(metrics["val_episodes"]) == 3 and len(metrics["train_episodes"]) == 13
    printed = run_cli(eval_cmd, tmp_path)
    assert ", 3 episodes" in printed
    report = (tmp_path / "runs" / "eval" / "report.html").read_text()
    assert "<h2>Training</h2>" in report  # the run's training curve

    # 2. the reward in the loop, with the README's own lines (make_env: a rendered drawer)
    from hilreward.sim import make_env as sim_env

    namespace = {"make_env": lambda: sim_env("drawer-open", image_size=(96, 96), seed=3, max_steps=10)}
    monkeypatch.chdir(tmp_path)  # the README's paths are relative to where its commands ran
    exec(compile(step2, "README step 2", "exec"), namespace, namespace)
    env = namespace["env"]
    env.reset(seed=0)
    for _ in range(3):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert 0.0 <= info["reward_classifier"]["probability"] <= 1.0
    env.close()

    # 3. serve it with the console (ports chosen by the system for the test)
    (serve_cmd,) = commands(step3)
    ports = {name: tmp_path / name for name in ("grpc", "web")}
    args = [a.replace(DATASET, str(data)) for a in serve_cmd] + [
        "port=0", f"port_file={ports['grpc']}", "console_port=0", f"console_port_file={ports['web']}",
        f"state_dir={tmp_path / 'state'}", "threads=1"]
    proc = subprocess.Popen([sys.executable, "-m", "hilreward.cli", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (ports["grpc"].exists() and ports["web"].exists()):
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the server did not start within 120 s"
            time.sleep(0.1)
        frame = np.zeros((96, 96, 3), np.uint8)
        with RewardClient(f"127.0.0.1:{ports['grpc'].read_text().strip()}") as client:
            result = client.predict({"front": frame, "wrist": frame})
        assert 0.0 <= result.probability <= 1.0
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, out[-2000:]


def test_eval_heldout_after_a_run_that_held_nothing_out_says_so_in_one_line(tmp_path):
    data = ROOT / "tests" / "fixtures" / "drawer4"
    run_cli(["train", f"dataset.root={data}", "model.encoder=tiny", "model.pretrained=false",
             "model.image_size=[32,32]", "training.steps=5", "split.val_fraction=0", "output_dir=run"], tmp_path)
    proc = subprocess.run([sys.executable, "-m", "hilreward.cli", "eval", "checkpoint=run/checkpoints/best",
                           "heldout=true"], cwd=tmp_path, capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, lines
    assert "held out no episode (it trained on 0-3)" in lines[0] and "dataset.root=<episodes it never saw>" in lines[0]
