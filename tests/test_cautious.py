"""The cautious reward on real rendered frames (drawer4): a checkpoint's support bank, the frames where the plain
rule pays and the labelled data does not back the head, and the same decision in process, through ONNX, over
gRPC and in relabelling; the true successes of held-out episodes are paid as by the plain rule."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from hilreward.deploy import RewardFunction, relabel_rewards
from hilreward.errors import ConfigError
from hilreward.models import RewardClassifier
from hilreward.serving import RewardClient
from hilreward.serving.config import ServeConfig
from hilreward.serving.server import RewardServer
from hilreward.training.support_bank import attach_support
from support import step_images

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def supported(ckpt, frames, tmp_path_factory, cache_dir):
    """The tiny checkpoint with the support bank `hilreward train` gives (its training episodes 0-1)."""
    folder = tmp_path_factory.mktemp("supported") / "best"
    shutil.copytree(ckpt, folder)
    support = attach_support(folder, frames, np.flatnonzero(np.isin(frames.episode_index, [0, 1])), 4000, cache_dir)
    assert support is not None and support.encoder is None  # a frozen encoder: its own features
    return folder


def unbacked(frames, plain: RewardFunction, cautious: RewardFunction) -> list[dict]:
    """States the plain rule pays and no labelled success resembles: the front camera of a success frame with the
    wrist camera of a failure frame (a scene no episode shows), where the labelled frames nearest it are failures."""
    front, wrist = frames.images["observation.images.front"], frames.images["observation.images.wrist"]
    out = []
    for s in np.flatnonzero(frames.labels == 1)[::7]:
        for f in np.flatnonzero(frames.labels == 0)[::11]:
            images = {"front": np.array(front[s]), "wrist": np.array(wrist[f])}
            paid, seen = plain(images), cautious(images)
            plain.reset(), cautious.reset()
            assert paid.support is None and seen.support is not None  # computed only where the rule uses it
            if paid.success and seen.support < 0.5:
                out.append(images)
            if len(out) == 8:
                return out
    return out


def test_the_cautious_reward_pays_no_success_where_the_labelled_frames_do_not_back_the_head(supported, frames,
                                                                                             tmp_path):
    plain = RewardFunction.from_pretrained(supported, backend="torch")
    cautious = RewardFunction.from_pretrained(supported, backend="onnx", cautious=True)
    states = unbacked(frames, plain, cautious)
    assert len(states) == 8, "precondition: the plain rule pays states the support bank does not back"
    for images in states:
        result = cautious(images)
        cautious.reset()
        assert not result.success and result.reward == 0.0 and result.probability >= plain.options.success_threshold
        assert result.support < 0.5 and result.novelty > 1.0  # unfamiliar as a success, too
    # the true successes of the held-out episodes are paid as by the plain rule (no silent reward)
    rows = np.flatnonzero((frames.labels == 1) & np.isin(frames.episode_index, [2, 3]))
    batch = {k.rsplit(".", 1)[-1]: np.array(v[rows]) for k, v in frames.images.items()}
    paid = relabel_rewards(cautious, batch).success.mean()
    assert paid == pytest.approx(relabel_rewards(plain, batch).success.mean()) and paid > 0.5
    stored = {k: np.stack([s[k] for s in states]) for k in ("front", "wrist")}
    assert not relabel_rewards(cautious, stored).success.any() and relabel_rewards(plain, stored).success.all()

    # the reward server, serving with cautious=true, decides alike and says why
    with RewardServer(ServeConfig(checkpoint=str(supported), port=0, state_dir=str(tmp_path / "state"),
                                  cautious=True)) as server, RewardClient(server.address) as client:
        for i, images in enumerate(states):
            remote = client.predict(images, episode_id=1, step=i)
            assert not remote.success and remote.support < 0.5 and remote.novelty > 1.0
        assert client.predict(step_images(frames, int(rows[-1])), episode_id=2, step=0).success


def test_the_gymnasium_wrapper_pays_and_ends_an_episode_by_the_cautious_rule(supported, frames):
    import gymnasium as gym

    from hilreward.deploy import RewardClassifierWrapper

    plain = RewardFunction.from_pretrained(supported, backend="torch")
    cautious = RewardFunction.from_pretrained(supported, backend="torch", cautious=True)
    states = unbacked(frames, plain, cautious)[:2]
    success = frames.labels == 1
    true = np.flatnonzero(success & np.isin(frames.episode_index, [2, 3]))
    shown = [*states, step_images(frames, int(true[-1]))]  # two unbacked states, then a true success

    class Replay(gym.Env):
        """Plays the frames in order (the robot at the network edge); the env's own reward is 0."""
        observation_space = gym.spaces.Dict({})
        action_space = gym.spaces.Discrete(1)

        def reset(self, *, seed=None, options=None):
            self.t = 0
            return {"pixels": shown[0]}, {}

        def step(self, action):
            self.t += 1
            return {"pixels": shown[min(self.t, len(shown) - 1)]}, 0.0, False, self.t >= len(shown), {}

    env = RewardClassifierWrapper(Replay(), cautious)
    env.reset()
    rewards, ends = [], []
    for _ in range(len(shown)):
        _, reward, terminated, _, info = env.step(0)
        rewards.append(reward)
        ends.append(terminated)
        assert info["reward_classifier"]["support"] is not None
    # the wrapper judges the frame after each step: the second unbacked state, then the true success
    assert rewards[:1] == [0.0] and not ends[0] and rewards[1] == 1.0 and ends[1]
    lied = RewardClassifierWrapper(Replay(), plain)  # the plain rule pays the unbacked state and ends the episode
    lied.reset()
    _, reward, terminated, _, _ = lied.step(0)
    assert reward == 1.0 and terminated


def test_cautious_needs_a_checkpoint_with_a_support_bank(ckpt, tmp_path):
    assert RewardClassifier.from_pretrained(ckpt).support is None
    with pytest.raises(ConfigError, match="support bank"):
        RewardFunction.from_pretrained(ckpt, backend="torch", cautious=True)
    with pytest.raises(ConfigError, match="support bank"):
        RewardServer(ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path / "s"), cautious=True))
