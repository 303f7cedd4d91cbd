"""Rewards that follow the model, on drawer4's rendered frames: relabel_rewards gives a version's rewards;
against a real retraining server, an episode keeps its version across a hot swap (RewardFunction, the
gymnasium wrapper, batched envs) and stable-baselines3's replay buffer takes the new version's rewards."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest

from hilreward.config import DatasetConfig
from hilreward.deploy import RewardClassifierWrapper, RewardFunction, relabel_rewards
from hilreward.errors import InputError
from hilreward.integrations.versions import ServedVersions
from hilreward.serving import RewardClient
from hilreward.online.options import RetrainOptions
from hilreward.serving.config import ServeConfig
from hilreward.serving.server import RewardServer
from support import DELAY_S, DRAWER4, TOKEN, false_positive, make_checkpoint, step_images

pytestmark = pytest.mark.usefixtures("one_thread")

FAILURE_EPISODE = 3
"""drawer4's random-policy episode: never a success."""


def per_step(fn: RewardFunction, batch: dict[str, np.ndarray]) -> np.ndarray:
    """Rewards of single calls, one fresh episode each (what the actor got, frame by frame)."""
    out = []
    for i in range(len(next(iter(batch.values())))):
        fn.reset()
        out.append(fn({k: v[i] for k, v in batch.items()}).reward)
    return np.asarray(out, np.float32)


def test_relabel_rewards_gives_the_new_versions_rewards(ckpt, frames, cache_dir, tmp_path):
    rows = np.arange(0, len(frames.labels), 3)
    batch = {k.rsplit(".", 1)[-1]: np.asarray(v[rows]) for k, v in frames.images.items()}
    old = RewardFunction.from_pretrained(ckpt, backend="torch")
    new_ckpt = make_checkpoint(tmp_path / "new", cache_dir, steps=15)  # another version: a head trained less
    new = RewardFunction.from_pretrained(new_ckpt, backend="torch")
    stored = per_step(old, batch)
    expected = per_step(new, batch)
    assert (expected != stored).any(), "precondition: the versions disagree on some frames"

    out = relabel_rewards(new_ckpt, batch, previous=stored, batch_size=16)  # a checkpoint: the auto backend (ONNX)
    np.testing.assert_array_equal(out.rewards, expected)
    assert out.changed == int((expected != stored).sum()) and out.model_version == new.model_version
    np.testing.assert_array_equal(out.success, expected == 1.0)
    assert relabel_rewards(old, batch, previous=stored).changed == 0

    dense = RewardFunction.from_pretrained(new_ckpt, backend="torch", mode="dense", success_reward=2.0)
    np.testing.assert_allclose(relabel_rewards(dense, batch).rewards, 2.0 * new.relabel(batch), atol=1e-6)
    with pytest.raises(InputError, match="previous has 2 rewards"):
        relabel_rewards(new, batch, previous=[0.0, 1.0])


class FramesEnv(gym.Env):
    """Replays rendered frames: a failed episode's, with the false positive as the 6th step's frame, truncated
    after 8 steps; the observation is the step counter plus the cameras (as gym-hil's ``pixels``)."""

    FALSE_POSITIVE_STEP, LENGTH = 6, 8

    def __init__(self, frames, fp: dict[str, np.ndarray]) -> None:
        rows = np.flatnonzero(frames.episode_index == FAILURE_EPISODE)[:self.LENGTH + 1]
        self.steps = [step_images(frames, int(i)) for i in rows]
        self.steps[self.FALSE_POSITIVE_STEP] = fp
        self.observation_space = gym.spaces.Dict({"state": gym.spaces.Box(0, 10, (1,), np.float32)})
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.t = 0

    def _obs(self) -> dict:
        return {"state": np.array([self.t], np.float32), "pixels": self.steps[self.t]}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, False, self.t >= self.LENGTH, {}


class StateOnly(gym.ObservationWrapper):
    """What the policy sees: the state vector (the frames only reach the reward)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = env.observation_space["state"]

    def observation(self, obs):
        return obs["state"]


@pytest.fixture()
def served(ckpt, tmp_path, cache_dir):
    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path / "state"), token=TOKEN,
                      cache_dir=cache_dir, dataset=DatasetConfig(root=str(DRAWER4)),
                      retrain=RetrainOptions(every=1, min_interval_s=0.0, ensemble=0))
    with RewardServer(cfg) as server, RewardClient(server.address, token=TOKEN, timeout_s=10) as client:
        yield server, client


def publish_fix(client: RewardClient, fp: dict[str, np.ndarray]) -> str:
    """Correct the false positive through the server and wait for the version that fixes it."""
    watch = client.watch_model(timeout_s=DELAY_S)
    base = next(watch).version
    client.submit_correction(fp, label=0, source="programmatic")
    new = next(watch, None)
    assert new is not None and new.version != base, f"no new version within {DELAY_S} s"
    return new.version


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_an_episode_keeps_its_version_across_a_hot_swap(served, frames, ckpt):
    server, client = served
    fp = false_positive(frames)
    fn = RewardFunction.from_pretrained(None, backend="grpc", address=server.address, token=TOKEN)
    env = RewardClassifierWrapper(FramesEnv(frames, fp), fn)
    base = fn.model_version
    env.reset()
    first = env.step(np.zeros(1))[4]["reward_classifier"]
    assert first["model_version"] == base and first["step"] == 0
    batched = RewardFunction.from_pretrained(None, backend="grpc", address=server.address, token=TOKEN)
    batched.batch([fp, fp])  # two environments, both in their first episode

    new = publish_fix(client, fp)
    assert not client.predict(fp).success, "the new version serving fixes the false positive"
    # The running episode keeps the version it started with, up to its end: the false positive still ends it.
    for _ in range(FramesEnv.FALSE_POSITIVE_STEP - 1):
        _, reward, terminated, _, info = env.step(np.zeros(1))
        assert info["reward_classifier"]["model_version"] == base
        assert info["reward_classifier"]["episode_id"] == first["episode_id"]
    assert terminated and reward == 1.0
    # The next episode takes the newest version.
    env.reset()
    for _ in range(FramesEnv.FALSE_POSITIVE_STEP):
        _, reward, terminated, _, info = env.step(np.zeros(1))
        assert info["reward_classifier"]["model_version"] == new
        assert info["reward_classifier"]["episode_id"] != first["episode_id"]
    assert not terminated and reward == 0.0
    # Batched environments: each row keeps its own episode's version.
    batched.reset(env_index=1)
    results = batched.batch([fp, fp])
    assert [r.model_version for r in results] == [base, new] and [r.success for r in results] == [True, False]
    fn.close(), batched.close()


@pytest.mark.slow
def test_sb3_callback_relabels_the_replay_buffer_with_each_served_version(served, frames, tmp_path):
    sb3 = pytest.importorskip("stable_baselines3")
    from hilreward.integrations.sb3 import RelabelCallback

    server, client = served
    fp = false_positive(frames)
    models = {}
    for relabel in (True, False):
        fn = RewardFunction.from_pretrained(None, backend="grpc", address=server.address, token=TOKEN)
        env = StateOnly(RewardClassifierWrapper(FramesEnv(frames, fp), fn, keep_frames=True))
        model = sb3.SAC("MlpPolicy", env, buffer_size=100, learning_starts=10_000, seed=0, device="cpu")
        versions = ServedVersions(server.address, token=TOKEN,
                                  versions_dir=server.versions.root if relabel else None)
        callback = RelabelCallback(versions, relabel=relabel)
        model.learn(20, callback=callback)  # every episode ends on the false positive, its 6th step
        models[relabel] = (model, callback, versions, fn)
    buffer = models[True][0].replay_buffer
    fp_slots = np.flatnonzero(buffer.rewards[:20, 0] == 1.0)
    assert fp_slots.tolist() == [5, 11, 17] and buffer.dones[fp_slots, 0].all()
    before = {k: (m.replay_buffer.rewards.copy(), m.replay_buffer.dones.copy()) for k, (m, *_) in models.items()}

    new = publish_fix(client, fp)
    for relabel, (model, callback, versions, fn) in models.items():
        wait_for(lambda: versions.latest is not None and versions.latest.version == new)
        model.learn(1, callback=callback, reset_num_timesteps=False)  # the next step sees the new version
        assert [e["version"] for e in callback.events] == [new]
        event = callback.events[0]
        assert event["transitions"] == 20 and event["to_failure"] >= 3 and event["changed"] >= 3
        versions.close(), fn.close()
    # Applied: every stored reward is the new version's verdict on the stored frames; the false positives
    # are no longer an end (their next observation was stored, so the Q-target bootstraps through them).
    store = models[True][1].store
    out = relabel_rewards(server.versions.path(1), {k: v[:20, 0] for k, v in store.frames.items()})
    np.testing.assert_array_equal(buffer.rewards[:20, 0], out.rewards)
    assert (buffer.rewards[fp_slots, 0] == 0.0).all() and not buffer.dones[fp_slots, 0].any()
    assert models[True][1].events[0]["changed"] == int((before[True][0][:20] != buffer.rewards[:20]).sum())
    # Not applied (relabel=False): the same counts, the buffer untouched.
    kept = models[False][0].replay_buffer
    np.testing.assert_array_equal(kept.rewards[:20], before[False][0][:20])
    np.testing.assert_array_equal(kept.dones[:20], before[False][1][:20])
    assert models[False][1].events[0]["changed"] == models[True][1].events[0]["changed"]
