"""The ever-correcting loop against a real server: a corrected false positive is fixed in a newly
published version without losing held-out accuracy, the gate refuses harmful corrections, versions
are immutable and survive restarts, and `kill -9` right after an ack loses no correction."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hilreward.config import DatasetConfig
from hilreward.deploy import RewardFunction
from hilreward.deploy.corrections import Correction
from hilreward.online.retrainer import HeadRetrainer, RetrainSpec
from hilreward.online.store import CorrectionStore
from hilreward.online.versions import VersionStore, checkpoint_fingerprint
from hilreward.serving import RewardClient
from hilreward.serving.server import RetrainOptions, RewardServer, ServeConfig
# The module fixtures of test_serving (one torch thread, the cache, the checkpoint, drawer4's frames),
# instantiated again for this module.
from test_serving import _one_thread, cache_dir, ckpt, frames  # noqa: F401
from test_serving import DRAWER4, TOKEN, make_checkpoint, step_images

DELAY_S = 60.0
"""Longest wait for a retrained version (the tests share 2 CPU cores with the rest of the suite)."""
TOLERANCE = 0.01


def false_positive(frames) -> dict[str, np.ndarray]:
    """The front camera shows an open drawer (episode 0, success) while the wrist camera shows a
    failure frame (episode 1, drawer still closed): not a success, but the classifier, which leans
    on the front camera, says it is."""
    success = np.flatnonzero((frames.labels == 1) & (frames.episode_index == 0))[-1]
    failure = np.flatnonzero((frames.labels == 0) & (frames.episode_index == 1))[10]
    return {"front": np.array(frames.images["observation.images.front"][success]),
            "wrist": np.array(frames.images["observation.images.wrist"][failure])}


def heldout_accuracy(reward_fn: RewardFunction, frames) -> float:
    rows = np.flatnonzero(np.isin(frames.episode_index, [2, 3]))
    batch = {k: np.array(v[rows]) for k, v in frames.images.items()}
    probs = reward_fn.relabel(batch)
    return float(((probs >= reward_fn.options.success_threshold) == frames.labels[rows]).mean())


def test_corrected_false_positive_is_fixed_in_a_new_version(ckpt, frames, tmp_path, cache_dir):
    state = tmp_path / "state"
    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(state), token=TOKEN, cache_dir=cache_dir,
                      dataset=DatasetConfig(root=str(DRAWER4)),
                      retrain=RetrainOptions(every=1, min_interval_s=0.0, tolerance=TOLERANCE))
    fp = false_positive(frames)
    base_fn = RewardFunction.from_pretrained(ckpt)
    assert base_fn(fp).success, "precondition: the served checkpoint calls this failure a success"
    base_accuracy = heldout_accuracy(base_fn, frames)
    with RewardServer(cfg) as server, RewardClient(server.address, token=TOKEN, timeout_s=10) as client:
        watch = client.watch_model(timeout_s=DELAY_S)
        base = next(watch)
        before = client.predict(fp)
        assert before.success and before.model_version == base.version == base_fn.model_version
        submitted = time.monotonic()
        ack = client.submit_correction(fp, label=0, model_version=before.model_version,
                                       probability=before.probability, source="keyboard")
        assert ack.correction_id == 1 and ack.corrections_total == 1
        new = next(watch, None)
        assert new is not None, f"no new version within {DELAY_S} s"
        elapsed = time.monotonic() - submitted
        after = client.predict(fp)
        assert new.version != base.version and after.model_version == new.version
        assert not after.success and after.probability < before.probability, "the false positive is fixed"
        assert new.corrections_used == 1 and new.corrections_total == 1
        assert new.metrics["corrections_fixed"] == 1.0
        assert new.metrics["heldout_accuracy"] >= new.metrics["heldout_accuracy_base"] - TOLERANCE
        assert client.get_model().version == new.version
        assert client.get_model().retrainer_status == f"published {new.version}"
    print(f"correction -> new version serving: {elapsed:.1f} s")

    # Independent check of the published version, loaded as an RL actor would load it.
    versions = VersionStore(state / "versions")
    assert versions.numbers() == [0, 1]
    published = RewardFunction.from_pretrained(versions.path(1))
    assert published.model_version == new.version
    assert not published(fp).success
    assert heldout_accuracy(published, frames) >= base_accuracy - TOLERANCE
    assert checkpoint_fingerprint(versions.path(0)) == checkpoint_fingerprint(ckpt)  # version 0 untouched
    assert not [p.name for p in (state / "versions").iterdir() if p.name.startswith(".")]  # no temp leftovers

    # A restarted server (here without retraining) serves the newest version and keeps the store.
    restart = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(state), token=TOKEN)
    with RewardServer(restart) as server, RewardClient(server.address) as client:
        info = client.get_model()
        assert (info.version, info.corrections_total) == (new.version, 1)
        assert client.predict(fp).model_version == new.version


def test_gate_refuses_corrections_that_hurt_heldout_accuracy(ckpt, frames, tmp_path, cache_dir):
    versions = VersionStore(tmp_path / "versions")
    versions.init_base(ckpt, "base", {})
    store = CorrectionStore(tmp_path / "c.sqlite")
    # A confused labeller marks 30 success frames of the training episodes as failures.
    for i in np.flatnonzero((frames.labels == 1) & np.isin(frames.episode_index, [0, 1]))[::4][:30]:
        store.add(Correction(frames={k: np.array(v[i]) for k, v in frames.images.items()}, label=0,
                             probability=0.9, model_version="base", time=0.0, episode=0, step=int(i)))
    spec = RetrainSpec(versions_root=str(versions.root), store=str(store.path), dataset=DatasetConfig(root=str(DRAWER4)),
                       options=RetrainOptions(tolerance=TOLERANCE, correction_weight=100.0, min_fixed=0.0),
                       cache_dir=cache_dir)
    trainer = HeadRetrainer(spec)
    assert trainer.val_episodes == [2, 3]
    attempt = trainer.attempt(store.read())
    assert not attempt.passed and "held-out accuracy" in attempt.reason
    assert attempt.metrics["heldout_accuracy"] < trainer.base_accuracy - TOLERANCE

    # A contradictory pair (same frames, both labels) can never be fully fixed: min_fixed refuses it.
    images = {k: np.array(v[50]) for k, v in frames.images.items()}
    for label in (0, 1):
        store.add(Correction(frames=images, label=label, probability=0.5, model_version="base", time=0.0, episode=0,
                             step=50))
    trainer.options = RetrainOptions(tolerance=1.0, min_fixed=1.0, steps=50)
    attempt = trainer.attempt(store.read(after_id=30))
    assert not attempt.passed and "still classified against their label" in attempt.reason
    assert attempt.metrics["corrections_fixed"] == 0.5 and attempt.metrics["train_steps"] == 50
    assert versions.numbers() == [0]  # nothing published
    store.close()


def _start(args: list[str], port_file: Path) -> tuple[subprocess.Popen, str]:
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


def test_kill_9_right_after_ack_loses_no_correction(ckpt, frames, tmp_path):
    args = [f"checkpoint={ckpt}", f"state_dir={tmp_path / 'state'}", f"token={TOKEN}", "threads=1"]
    proc, address = _start(args, tmp_path / "port1")
    acks = []
    try:
        with RewardClient(address, token=TOKEN, timeout_s=20) as client:
            for n, i in enumerate((3, 150, 310, 480)):
                acks.append(client.submit_correction(step_images(frames, i), label=n % 2, episode_id=n, step=i))
            os.kill(proc.pid, signal.SIGKILL)  # at once, no graceful shutdown
    finally:
        proc.kill()
        proc.wait(30)
    assert [a.correction_id for a in acks] == [1, 2, 3, 4] and acks[-1].corrections_total == 4

    proc, address = _start(args, tmp_path / "port2")
    try:
        with RewardClient(address, token=TOKEN, timeout_s=20) as client:
            assert client.get_model().corrections_total == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # graceful stop on SIGTERM
    with CorrectionStore(tmp_path / "state" / "corrections.sqlite", readonly=True) as store:
        stored = store.read()
    assert [(s.id, s.correction.label, s.correction.step) for s in stored] == \
        [(1, 0, 3), (2, 1, 150), (3, 0, 310), (4, 1, 480)]
    assert np.array_equal(stored[2].correction.frames["observation.images.wrist"], step_images(frames, 310)["wrist"])


def test_state_dir_of_another_checkpoint_is_refused(ckpt, tmp_path, cache_dir):
    from hilreward.errors import ConfigError

    other = make_checkpoint(tmp_path / "other", cache_dir, steps=5)
    state = tmp_path / "state"
    RewardServer(ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(state))).stop()
    with pytest.raises(ConfigError, match="fresh state_dir"):
        RewardServer(ServeConfig(checkpoint=str(other), port=0, state_dir=str(state)))
