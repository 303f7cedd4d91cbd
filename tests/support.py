"""Helpers several test modules share (fixtures live in conftest.py): the tiny drawer4 checkpoint, frames as a
robot sends them, waiting on a reward server, starting a command in a process of its own, HTTP requests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hilreward.config import DatasetConfig, LabelConfig, TrainConfig, to_yaml
from hilreward.data import load_frame_data

from fixtures.datasets import DRAWER4

SIZE = [32, 32]
TOKEN = "s3cret-token"
DELAY_S = 60.0
"""Longest wait for a retrained version or a server to start (the tests share 2 CPU cores with the suite)."""


# ---- the served checkpoint and its frames ----------------------------------------------------------------------
def make_checkpoint(path: Path, cache_dir: str, steps: int = 200) -> Path:
    """A tiny-encoder classifier whose head is trained on drawer4 episodes 0-1 (2-3 held out)."""
    from hilreward.models import ClassifierConfig, RewardClassifier
    from hilreward.training.features import compute_features, fit_head

    torch.manual_seed(0)
    model = RewardClassifier(ClassifierConfig(encoder="tiny", camera_keys=["front", "wrist"], image_size=SIZE,
                                              latent_dim=16, hidden_dim=16))
    cfg = TrainConfig()
    cfg.dataset.root = str(DRAWER4)
    cfg.split.val_episodes = [2, 3]
    cfg.model.image_size = list(SIZE)
    data = load_frame_data(DatasetConfig(root=str(DRAWER4)), cfg.label, tuple(SIZE), cache_dir=cache_dir)
    features = compute_features(model, data, cache_dir=cache_dir)
    train = np.isin(data.episode_index, [0, 1])
    fit_head(model, {k: np.asarray(v[train]) for k, v in features.items()}, data.labels[train], steps=steps)
    return model.save_pretrained(path, train_config_yaml=to_yaml(cfg))


def load_frames(cache_dir: str):
    """drawer4 at its recorded 128x128 (what a robot would send), labels as the checkpoint was trained."""
    return load_frame_data(DatasetConfig(root=str(DRAWER4)), LabelConfig(), (128, 128), cache_dir=cache_dir)


def step_images(data, i: int) -> dict[str, np.ndarray]:
    return {k.rsplit(".", 1)[-1]: np.array(data.images[k][i]) for k in data.camera_keys}


def false_positive(frames, success_episode: int = 0, failure_episode: int = 1) -> dict[str, np.ndarray]:
    """The front camera shows an open drawer (episode 0, success) while the wrist camera shows a
    failure frame (episode 1, drawer still closed): not a success, but the classifier, which leans
    on the front camera, says it is."""
    success = np.flatnonzero((frames.labels == 1) & (frames.episode_index == success_episode))[-1]
    failure = np.flatnonzero((frames.labels == 0) & (frames.episode_index == failure_episode))[10]
    return {"front": np.array(frames.images["observation.images.front"][success]),
            "wrist": np.array(frames.images["observation.images.wrist"][failure])}


# ---- a running reward server --------------------------------------------------------------------------------------
def wait_model(client, done: Callable, what: str, timeout: float = DELAY_S):
    """The server's ModelInfo once ``done(info)``; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.get_model()
        if done(info):
            return info
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout} s (retrainer: {client.get_model().retrainer_status})")


def settled(info) -> bool:
    """No correction waits for an attempt and the server has handled the latest one. The retrainer records an
    attempt in the store before the server swaps in its version: pending is 0 a moment before the server serves it."""
    return info.corrections.pending == 0 and not info.retrainer_status.startswith("training")


def start_serve(args: list[str], port_file: Path) -> tuple[subprocess.Popen, str]:
    """``hilreward serve <args> port=0`` in a process of its own; (process, address) once it serves."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hilreward.cli", "serve", *args, "port=0", f"port_file={port_file}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not port_file.exists():
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server did not start within 90 s")
        time.sleep(0.1)
    return proc, f"127.0.0.1:{port_file.read_text().strip()}"


# ---- web pages ---------------------------------------------------------------------------------------------------
def http(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={**({"Content-Type": "application/json"} if data else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if r.headers.get_content_type() == "application/json" else raw), r.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


def assert_guarded(url: str, write: str, headers: dict | None = None, allowed: str | None = None) -> None:
    """The DNS-rebinding guard of the page server at ``url``: a foreign Host gets 400 and a POST to ``write`` (an
    API path) from another site's page 403; loopback names, with and without the port, and ``allowed`` pass."""
    port, headers = url.rsplit(":", 1)[1], headers or {}
    for host in ("attacker.example", f"attacker.example:{port}"):
        status, body, _ = http(f"{url}/api/pages", headers={**headers, "Host": host})
        assert status == 400 and "does not answer to host 'attacker.example'" in body["detail"], body
    hosts = ["localhost", f"localhost:{port}", "127.0.0.1", f"[::1]:{port}"] + ([f"{allowed}:{port}"] if allowed else [])
    for host in hosts:
        assert http(f"{url}/api/pages", headers={**headers, "Host": host})[0] == 200, host
    status, body, _ = http(f"{url}{write}", "POST", {}, {**headers, "Origin": "http://attacker.example"})
    assert status == 403 and "cross-site request refused" in body["detail"], body


@contextlib.contextmanager
def command(args: list[str], folder: Path):
    """A ``hilreward`` page command in a process of its own (``port=0``); yields its URL once it serves."""
    port_file = folder / "port"
    proc = subprocess.Popen([sys.executable, "-m", "hilreward.cli", *args, "port=0", f"port_file={port_file}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not port_file.exists():
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.monotonic() < deadline, f"{args[0]} did not serve within 90 s"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
