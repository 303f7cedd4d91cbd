"""RewardClassifierWrapper on a real rendered Meta-World environment (hilreward.sim)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hilreward.deploy import HumanOverride, MemoryCorrectionSink, RewardClassifierWrapper, RewardFunction
from hilreward.errors import ConfigError, InputError
from hilreward.models import ClassifierConfig, RewardClassifier
from hilreward.sim import make_env

CAMERAS = ["observation.images.front", "observation.images.wrist"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny classifier trained a few steps (bright frames = success), saved and loaded like a user's."""
    torch.manual_seed(0)
    cfg = ClassifierConfig(encoder="tiny", camera_keys=CAMERAS, image_size=[32, 32], latent_dim=16, hidden_dim=16,
                           spatial_features=4)
    model = RewardClassifier(cfg)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(30):
        labels = rng.integers(0, 2, 16)
        level = np.where(labels == 1, 250, rng.integers(0, 200, 16)).astype(np.uint8)
        frames = {k: np.broadcast_to(level[:, None, None, None], (16, 32, 32, 3)).copy() for k in CAMERAS}
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(model.preprocess(frames)),
                                                                    torch.from_numpy(labels).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval().save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def env():
    env = make_env("drawer-open", image_size=(48, 48), seed=0, max_steps=200)
    yield env
    env.close()


def test_wrapper_runs_50_steps_with_classifier_reward(env, checkpoint):
    fn = RewardFunction.from_pretrained(checkpoint, mode="dense", success_reward=2.0)
    wrapped = RewardClassifierWrapper(env, fn)
    obs, _ = wrapped.reset(seed=0)
    env.action_space.seed(0)
    seen, steps = [], 0
    while steps < 50:
        obs, reward, terminated, truncated, info = wrapped.step(env.action_space.sample())
        steps += 1
        rc = info["reward_classifier"]
        assert set(rc) >= {"probability", "success", "model_version", "override"}
        assert 0.0 <= rc["probability"] <= 1.0 and rc["model_version"] == fn.model_version
        assert reward == pytest.approx(2.0 * rc["probability"])  # dense, replacing the env reward
        assert "success" in info  # the env's own info is kept
        assert terminated == rc["success"]
        seen.append((obs["pixels"]["front"], obs["pixels"]["wrist"], rc["probability"]))
        if terminated or truncated:
            obs, _ = wrapped.reset()
    # the wrapper judged exactly the frames the env returned
    frames = {"front": np.stack([s[0] for s in seen]), "wrist": np.stack([s[1] for s in seen])}
    np.testing.assert_allclose(fn.relabel(frames), [s[2] for s in seen], atol=1e-5)
    assert len(seen) == 50 and frames["front"].shape[1:] == (48, 48, 3)


def test_wrapper_terminates_adds_maps_cameras_and_takes_overrides(env, checkpoint):
    override, sink = HumanOverride(), MemoryCorrectionSink()
    # threshold 0: every frame counts, so success comes exactly after `consecutive` frames
    fn = RewardFunction.from_pretrained(checkpoint, success_threshold=0.0, consecutive=3, override=override,
                                        corrections=sink)
    wrapped = RewardClassifierWrapper(env, fn, camera_map={"front": "pixels/wrist", "observation.images.wrist":
                                                           ("pixels", "front")}, reward_mode="add")
    wrapped.reset(seed=1)
    action = np.zeros(env.action_space.shape, np.float32)
    ends = []
    for _ in range(3):
        _, reward, terminated, _, info = wrapped.step(action)
        assert reward == pytest.approx(info["reward_classifier"]["env_reward"] + (1.0 if terminated else 0.0))
        ends.append(terminated)
    assert ends == [False, False, True]
    wrapped.reset()  # debounce starts again
    assert [wrapped.step(action)[2] for _ in range(2)] == [False, False]
    override.failure()
    obs, _, terminated, _, info = wrapped.step(action)
    assert not terminated and info["reward_classifier"]["override"] == "failure"
    assert len(sink.corrections) == 1 and sink.corrections[0].step == 2 and sink.corrections[0].episode == 1
    # the mapped cameras went in swapped: the correction's "front" frame is the env's wrist frame
    np.testing.assert_array_equal(sink.corrections[0].frames["observation.images.front"], obs["pixels"]["wrist"])


def test_wrapper_errors_name_the_fix(env, checkpoint):
    fn = RewardFunction.from_pretrained(checkpoint)
    with pytest.raises(ConfigError, match="top"):
        RewardClassifierWrapper(env, fn, camera_map={"top": "pixels/front"})
    with pytest.raises(ConfigError, match="reward_mode"):
        RewardClassifierWrapper(env, fn, reward_mode="multiply")
    wrapped = RewardClassifierWrapper(env, fn, camera_map={"front": "pixels/side"})
    wrapped.reset(seed=0)
    with pytest.raises(InputError, match="side"):
        wrapped.step(np.zeros(env.action_space.shape, np.float32))
    with pytest.raises(InputError, match="not a dict"):
        RewardClassifierWrapper(env, fn).images(np.zeros(3))
