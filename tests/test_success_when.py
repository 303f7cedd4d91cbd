"""``success_when``: success gated on the robot state, ANDed in the one reward rule. The condition's grammar and
refusals, then real rendered frames (drawer4) judged alike in-process, by the gymnasium wrapper, over the reward
server (the state travels with each request) and when stored transitions are relabelled."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from hilreward.deploy import RewardClassifierWrapper, RewardFunction, RewardOptions, judge, relabel_rewards
from hilreward.deploy.condition import StateCondition
from hilreward.deploy.rule import judge_frames
from hilreward.errors import ConfigError, InputError
from hilreward.serving import RewardClient
from hilreward.serving.config import ServeConfig
from hilreward.serving.server import RewardServer
from support import TOKEN, step_images

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["x", "y", "z", "gripper"]


# ---- the condition
@pytest.mark.parametrize("text, state, want", [
    ("state[2] > 0.4", [0, 0, 0.5, 0], True),
    ("state[2] > 0.4", [0, 0, 0.4, 0], False),
    ("state[0, 0] > 0.4", [0.5, 0, 0, 0], True),  # HIL-SERL writes the one-frame stack's index
    ("state[-1] < 0.1 and z >= 0.4", [0, 0, 0.4, 0.05], True),
    ("state.gripper < 0.1 or not state['z'] > 1", [0, 0, 2, 0.5], False),
    ("0.1 < state[1] <= 0.3", [0, 0.3, 0, 0], True),
    ("abs(state[0] - 1) < 0.05 and -state[1] * 2 / 4 + 1 == 1", [1.02, 0, 0, 0], True),
])
def test_condition_reads_indices_and_names(text, state, want):
    cond = StateCondition.parse(text, NAMES)
    assert cond(np.array(state)) is want
    assert cond({n: v for n, v in zip(NAMES, state)}) is want  # a dict state: by name, indices through NAMES
    rows = cond(np.array([state, [9.0, 9.0, 9.0, 9.0]]))
    assert rows.dtype == bool and rows.shape == (2,) and rows[0] == want


@pytest.mark.parametrize("text, message", [
    ("__import__('os').system('x') > 0", "is not allowed"),
    ("open('f').read() == 1", "is not allowed"),
    ("state[0]", "must be a comparison"),
    ("(lambda: 1)() > 0", "is not allowed"),
    ("state.__class__ > 1", "which state_names lacks"),
    ("state[0] > 1 and", "is not a condition"),
    ("state[1.5] > 0", "integer index"),
    ("gripperr < 0.1", "which state_names lacks (did you mean 'gripper'?)"),
    ("x" * 600 + " > 1", "at most 500"),
])
def test_condition_refuses_what_is_not_a_state_comparison(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        StateCondition.parse(text, NAMES)


def test_condition_says_what_a_state_lacks():
    with pytest.raises(InputError, match=r"reads state\[5\], but the state has 4 values"):
        StateCondition.parse("state[5] > 0")(np.zeros(4))
    with pytest.raises(InputError, match="pass the state as a dict, or state_names"):
        StateCondition.parse("gripper > 0")(np.zeros(4))
    with pytest.raises(InputError, match="needs the robot state"):
        judge(0.9, _options("state[0] > 0"))


def _options(text: str, **kwargs) -> RewardOptions:
    opts = RewardOptions(success_threshold=0.5, success_when=text, **kwargs)
    opts.validate()
    return opts


def test_the_rule_ands_the_gate_into_success_streak_and_dense_reward():
    opts = _options("state[0] > 0.4", consecutive=2)
    a = judge(0.9, opts, 0, state=[0.5])
    b = judge(0.9, opts, a.streak, state=[0.1])  # the gate fails: the streak restarts
    c = judge(0.9, opts, b.streak, state=[0.5])
    d = judge(0.9, opts, c.streak, state=[0.5])
    assert [j.streak for j in (a, b, c, d)] == [1, 0, 1, 2] and [j.success for j in (a, b, c, d)][-1]
    assert judge(0.9, opts, 0, label=1).success  # a human label wins, state or not
    dense = _options("state[0] > 0.4", mode="dense", success_reward=2.0)
    assert judge(0.8, dense, state=[0.5]).reward == pytest.approx(1.6) and judge(0.8, dense, state=[0.1]).reward == 0
    _, success, reward = judge_frames(np.array([0.9, 0.9, 0.2]), dense, states=np.array([[0.5], [0.1], [0.9]]))
    assert success.tolist() == [True, False, False] and reward == pytest.approx([1.8, 0.0, 0.4])


# ---- real frames, every place the rule runs
WINDOWS = {2: (380, 430), 3: (550, 590)}
"""drawer4 rows around episode 2's success onset and inside episode 3, which never succeeds."""
GATE = "state[0] >= 0.5 and gripper < 0.5"


def _rows_and_states(data):
    """Rows of the windows and a robot state per row: state[0] rises through the window, the gripper closes
    (1.0) on every fourth frame, so the gate cuts some of the classifier's successes and keeps others."""
    rows = np.concatenate([np.arange(a, b) for a, b in WINDOWS.values()])
    frame = np.asarray(data.frame_index)[rows].astype(np.float64)
    rise = (frame - frame.min()) / np.ptp(frame)
    states = np.stack([rise, np.zeros_like(rise), np.ones_like(rise), (np.arange(len(rows)) % 4 == 0) * 1.0], 1)
    return rows, states


class _Replay(gym.Env):
    """Replays recorded frames and states as a gym-hil style env (obs["pixels"], obs["agent_pos"])."""

    observation_space = gym.spaces.Dict({})
    action_space = gym.spaces.Discrete(1)

    def __init__(self, data, rows, states):
        self.data, self.rows, self.states, self.t = data, rows, states, 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return {}, {}

    def step(self, action):
        i = self.rows[self.t]
        obs = {"pixels": step_images(self.data, i), "agent_pos": self.states[self.t].astype(np.float32)}
        self.t += 1
        return obs, 0.0, False, self.t >= len(self.rows), {}


def test_success_when_decides_alike_in_process_wrapped_over_grpc_and_relabelled(ckpt, frames, tmp_path):
    rows, states = _rows_and_states(frames)
    opts = dict(success_threshold=0.5, success_when=GATE, state_names=["a", "b", "c", "gripper"])
    local = RewardFunction.from_pretrained(ckpt, backend="torch", **opts)
    plain = RewardFunction.from_pretrained(ckpt, backend="torch", success_threshold=0.5)
    want = [local(step_images(frames, i), state=s).success for i, s in zip(rows, states)]
    ungated = [plain(step_images(frames, i)).success for i in rows]
    # the gate matters both ways on these frames: it cuts successes and keeps others
    assert any(want) and any(u and not w for u, w in zip(ungated, want))
    assert not any(w and not u for u, w in zip(ungated, want))

    env = RewardClassifierWrapper(_Replay(frames, rows, states), RewardFunction.from_pretrained(
        ckpt, backend="torch", **opts), keep_frames=True)
    env.reset()
    wrapped = []
    for _ in rows:
        _, _, _, _, info = env.step(0)
        wrapped.append(info["reward_classifier"]["success"])
    assert wrapped == want and np.asarray(info["reward_classifier"]["state"]).shape == (4,)

    relabelled = relabel_rewards(local, {k: np.asarray(v[rows]) for k, v in frames.images.items()}, states=states)
    assert relabelled.success.tolist() == want
    with pytest.raises(InputError, match="needs the stored transitions' robot states"):
        relabel_rewards(local, {k: np.asarray(v[rows[:2]]) for k, v in frames.images.items()})

    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path / "state"), token=TOKEN, **opts)
    with RewardServer(cfg) as server, RewardClient(server.address, token=TOKEN, timeout_s=20) as client:
        assert client.get_model().success_when == GATE
        served = [r.success for r in client.predict_many([step_images(frames, i) for i in rows], episode_id=1,
                                                           states=states)]
        named = client.predict(step_images(frames, rows[0]), state=dict(zip(["a", "b", "c", "gripper"], states[0])))
        remote = RewardFunction.from_pretrained(None, backend="grpc", address=server.address, token=TOKEN)
        assert remote.options.success_when == GATE  # the server's gate, as its threshold
        adopted = [remote(step_images(frames, i), state=s).success for i, s in zip(rows, states)]
        with pytest.raises(InputError, match="send the robot state with every Predict"):
            client.predict(step_images(frames, rows[0]))
        remote.close()
    assert served == want and adopted == want and named.success == want[0]
