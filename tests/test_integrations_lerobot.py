"""hilreward.integrations.lerobot: the predict_reward adapter without LeRobot, and everything inside LeRobot's own venv.

The peer test runs tests/peer_lerobot.py with the LeRobot 0.6.1 venv (Python 3.12, torch 2.11; made
by ../shared/peer/setup_lerobot.sh) on this checkout's src; it skips where that venv is absent (CI).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from hilreward.deploy import RewardFunction
from hilreward.errors import ConfigError, InputError
from hilreward.integrations.lerobot import HilrewardRewardStep, lerobot_images, reward_classifier
from hilreward.models import ClassifierConfig, RewardClassifier

from conftest import ROOT
from support import DRAWER4, make_checkpoint

PEER_PYTHON = Path(os.environ.get("HILREWARD_PEER_VENV", Path.home() / ".cache" / "hilreward-peer" / "venv")) / "bin" / "python"
CAMERAS = ["observation.images.front", "observation.images.wrist"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cache = str(tmp_path_factory.getbasetemp() / "hilreward-cache")
    return make_checkpoint(tmp_path_factory.mktemp("lerobot") / "best", cache)


def lerobot_batch(n=3, size=(40, 56), seed=0) -> dict[str, torch.Tensor]:
    """Images as LeRobot's VanillaObservationProcessorStep makes them: float (B, 3, H, W) in [0, 1]."""
    rng = np.random.default_rng(seed)
    return {k: torch.from_numpy(rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255
            for k in CAMERAS}


def test_adapter_has_lerobots_classifier_contract(ckpt):
    adapter = reward_classifier(ckpt)
    batch = {**lerobot_batch(), "observation.state": torch.zeros(3, 4)}
    probs = adapter.probabilities(batch)
    expected = RewardFunction.from_pretrained(ckpt).relabel({k: batch[k] for k in CAMERAS})
    np.testing.assert_allclose(probs.numpy(), expected, atol=1e-6)
    threshold = float(np.median(expected))  # some samples above, some below
    reward = adapter.predict_reward(batch, threshold=threshold)
    assert reward.dtype == torch.float32 and reward.shape == (3,)
    assert reward.tolist() == [float(p >= threshold) for p in expected]
    assert adapter.to("cpu") is adapter and adapter.eval() is adapter  # what LeRobot calls on classifiers
    assert adapter.threshold == RewardClassifier.from_pretrained(ckpt).threshold


def test_adapter_maps_lerobot_keys_and_refuses_what_needs_state(ckpt, tmp_path):
    short = {"front": 1, "wrist": 2, "observation.state": 3}
    assert lerobot_images(short, CAMERAS) == {CAMERAS[0]: 1, CAMERAS[1]: 2}
    assert lerobot_images({"observation.image": 7}, ["observation.images.top"]) == {"observation.images.top": 7}
    with pytest.raises(InputError, match=r"observation.images.wrist.*image keys: \['observation.images.front'\]"):
        lerobot_images({"observation.images.front": 1}, CAMERAS)
    with pytest.raises(ConfigError, match="HilrewardRewardStep"):
        reward_classifier(ckpt, consecutive=2)
    one_cam = RewardClassifier(ClassifierConfig(encoder="tiny", camera_keys=["top"], image_size=[32, 32],
                                                latent_dim=16, hidden_dim=16)).save_pretrained(tmp_path / "one")
    batch = {"observation.image": lerobot_batch(n=2)[CAMERAS[0]]}
    assert reward_classifier(one_cam, backend="torch").predict_reward(batch).shape == (2,)


@pytest.mark.skipif(importlib.util.find_spec("lerobot") is not None, reason="LeRobot is installed here")
def test_step_without_lerobot_says_how_to_get_it():
    with pytest.raises(ConfigError, match=r"hilreward\[lerobot\]"):
        HilrewardRewardStep(pretrained_path="anything")


@pytest.mark.skipif(not PEER_PYTHON.exists(), reason=f"no LeRobot peer venv at {PEER_PYTHON.parent.parent} "
                    "(../shared/peer/setup_lerobot.sh makes it; CI has none)")
@pytest.mark.slow
def test_inside_lerobots_own_pipeline_in_its_venv(ckpt, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    out = tmp_path / "peer.json"
    proc = subprocess.run([str(PEER_PYTHON), str(ROOT / "tests" / "peer_lerobot.py"), "--checkpoint", str(ckpt),
                           "--dataset", str(DRAWER4), "--episodes", "2", "3", "--window", "75", "110", "--out", str(out), "--example"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["python"].startswith("3.12") and r["lerobot"] == "0.6.1"
    # backend=auto: ONNX Runtime where that venv has it (the peer script installs only LeRobot), else torch
    assert r["backend"] == ("OnnxBackend" if r["onnxruntime"] else "TorchBackend")

    # LeRobot's gym_hil env pipeline (its make_processors) with our step where LeRobot puts its own
    steps = r["pipeline_steps"]
    assert steps.index("HilrewardRewardStep") == steps.index("AddBatchDimensionProcessorStep") - 1
    # the same reward/done sequence as RewardFunction, before and after a save/rebuild, and with the stock step
    assert r["hilreward_step"] == r["reward_function"] == r["rebuilt"]
    assert r["stock_step"] == r["reward_function_consecutive_1"]
    dones = [d for ep in r["reward_function"] for _, d in ep]
    assert any(dones) and not all(dones)  # the sequences hold successes and failures
    assert [any(d for _, d in ep) for ep in r["reward_function"]] == [True, False]  # noisy succeeds (frame 91), random never

    # success_when in our step: the same gated dones as RewardFunction, and fewer than without the gate
    ungated = [d for ep in r["reward_function_consecutive_1"] for _, d in ep]
    assert r["success_when"]["step"] == r["success_when"]["reward_function"]
    assert 0 < sum(r["success_when"]["step"]) < sum(ungated)

    assert r["registry"] and r["rebuilt_step"] == "HilrewardRewardStep"
    assert r["saved_step_config"]["pretrained_path"] == str(ckpt) and r["saved_step_config"]["consecutive"] == 2
    assert "pretrained_path" not in r["lerobot_step_config_keys"]  # why LeRobot's own step cannot be rebuilt
    assert r["debounce_done_then_after_reset"] == [False, True, False]

    env_success, intervention, rerecord, failure = r["human_events"]
    assert env_success["override"] is None and not env_success["success"]  # an env's info["success"] is no human
    assert intervention["override"] == "success" and intervention["reward"] == 1.0 and intervention["done"]
    assert rerecord["override"] is None
    assert failure["override"] == "failure" and failure["reward"] == 0.0 and not failure["success"]
    assert r["corrections_labels"] == [1.0, 0.0]
    assert r["corrections_sources"] == ["lerobot_intervention", "lerobot_teleop"]

    if isinstance(r["example"], str):
        pytest.skip(r["example"])
    assert r["example"]["records"] == 6 and "LeRobot pipeline + HilrewardRewardStep" in r["example"]["lines"][0]
    assert f"model version {r['example']['versions'][0]}" in r["example"]["lines"]


@pytest.mark.skipif(not PEER_PYTHON.exists(), reason=f"no LeRobot peer venv at {PEER_PYTHON.parent.parent} "
                    "(../shared/peer/setup_lerobot.sh makes it; CI has none)")
@pytest.mark.slow
def test_relabel_replay_buffer_on_lerobots_own_buffer_in_its_venv(ckpt, tmp_path):
    cache = str(tmp_path / "cache")
    new = make_checkpoint(tmp_path / "new", cache, steps=15)  # another version: a head trained less
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HILREWARD_CACHE": cache}
    out = tmp_path / "buffer.json"
    proc = subprocess.run([str(PEER_PYTHON), str(ROOT / "tests" / "peer_lerobot_buffer.py"), "--old", str(ckpt),
                           "--new", str(new), "--dataset", str(DRAWER4), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    expected, old = np.array(r["expected"]), np.array(r["old"])
    success, truncated = np.array(r["expected_success"]), np.array(r["truncated"])
    assert (expected != old).any(), "precondition: the versions disagree on some frames"

    plain = r["plain"]
    np.testing.assert_array_equal(plain["rewards"], expected)
    # done: the new version's success, or the episode ended for another reason (time limit); old successes are not
    np.testing.assert_array_equal(plain["dones"], success | truncated)
    assert plain["stats"]["changed"] == int((expected != old).sum()) == \
        plain["stats"]["to_success"] + plain["stats"]["to_failure"]

    optimize, n = r["optimize"], r["optimize"]["n"]  # next_state[i] is state[i + 1]: judged on frame i + 1
    np.testing.assert_array_equal(optimize["rewards"], expected[1:n + 1])
    # no next observation of a terminal transition is kept: dones are set on new successes, never cleared
    np.testing.assert_array_equal(optimize["dones"], np.array(optimize["before"]["dones"]) | success[1:n + 1])
