"""RL on the reward (issues 25, 31): does SAC on a classifier's reward solve the task, and how often does it lie?

    python bench/bench_rl.py run --out /work/data-sim/rl        # every task, arm and seed; a killed run resumes
    python bench/bench_rl.py report --out /work/data-sim/rl --json bench/results/rl-<date>.json [--doc]
    python bench/bench_rl.py smoke --out /tmp/rl-smoke --checkpoint CKPT --dataset DIR   # 2 episodes an arm
    make bench-rl                                                # run + report --doc

Agent: stable-baselines3's SAC on the state vector (Meta-World's 39 numbers), each action held for
``--action-repeat`` simulator steps. Scripted-expert demonstrations sit in the replay buffer with their true
rewards (a HIL-SERL user's labelled demos) and make ``--demo-fraction`` of every batch (a quarter; RLPD samples
half). So a reward that never fires still lets the policy learn from the demonstrations: the report says how
many true successes each reward claims (*rewarded*), not only how often it lies (*hacking*). The reward is the
arm's, with terminate_on_success as in HIL-SERL (``ARMS``):

- ``oracle``: Meta-World's own success check (no rendering).
- ``lerobot``: LeRobot 0.6.1's classifier trained by its own ``lerobot-train`` (peer venv, the peer's frozen
  random-weight ResNet-10) on 16 recorded episodes (``hilreward sim``, episodes 16-19 held out) rendered at
  128 px, scored through hilreward's LeRobot import (its own deployment step feeds it unnormalised images).
- ``hilreward-resnet10``: ``hilreward train model=resnet10`` with the same frozen ResNet-10 weights as the LeRobot
  arm, default options, on the same 16 episodes at 128 px; ``hilreward-scratch``: ``model=scratch`` at 96 px.
  ``-cautious``: the same classifier with the cautious reward (``cautious=True``).
- ``corrected``: the ``CORRECTED_MODEL`` classifier served by ``hilreward serve`` (its own process, retraining
  on the 20 recorded episodes and gating on the live episodes it judges), the actor's RewardFunction on the
  ``grpc`` backend, and a simulated operator at the console who, with the console's call (``correct_recent``,
  the last k frames of an episode): flags a false success when the reward ends an episode that is not done, and
  a missed success once the success has been visible for k frames; each press lands 1-3 frames late (the window
  ends there), within a budget of corrections; and reviews as a person would (``Operator.review``). The replay
  buffer follows each new version (RelabelCallback with ServedVersions); ``corrected-norelabel`` keeps the
  rewards it was given.

Tasks (``TASKS``): coffee-button (under another day's light), drawer-close (drawer-open's replacement: its oracle
did not hold 70 %), handle-press; any task ``hilreward sim`` knows runs with the default settings. RL runs on
layouts no classifier saw (env seeds apart from the recorded set's).

Per run: the final policy over ``--eval-episodes`` episodes on held-out layouts, judged by the arm's reward
(the corrected arms: the newest served version): true success (Meta-World's check at any step), claimed
success (the reward ended the episode), rewarded success (ended at a true success), reward hacking (ended at a
state that is not), early claims (ended by step ``EARLY_STEPS``); for the corrected arms every published version
judged on the evaluation episodes' first frames (how often it would end one by step ``EARLY_STEPS``);
corrections used, reviews, relabellings, environment steps, wall time; and the training episodes as curves.
Each run writes ``runs/<task>-<arm>-s<seed>/result.json``; a killed run resumes from its last checkpoint (SB3
model, replay buffer, frames, progress). A run whose reward server dies is marked failed with the reason; the
others go on. Bounded: steps (``--steps``) and wall time (``--max-minutes``) per run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.sac.policies import SACPolicy
from torch import nn

from hilreward.utils import replace_dir, write_atomic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
DOC = ROOT / "docs" / "benchmarks.md"
FIGURE = ROOT / "docs" / "rl.png"
DOC_START, DOC_END = "<!-- bench:rl:start -->", "<!-- bench:rl:end -->"
PEER_DIR = Path(os.environ.get("PEER_DIR", Path.home() / ".cache" / "hilreward-peer"))
PEER_PYTHON = Path(os.environ.get("PEER_PYTHON", PEER_DIR / "venv" / "bin" / "python"))
PEER_ENCODER = Path(os.environ.get("PEER_ENCODER", PEER_DIR / "resnet10"))

@dataclass(frozen=True)
class Arm:
    """What rewards the agent: Meta-World's check (``model`` None), LeRobot's classifier, or hilreward's."""

    model: Optional[str]
    """None (the oracle), ``lerobot``, ``resnet10`` (hilreward, the peer's frozen ResNet-10 weights) or ``scratch``."""
    cautious: bool = False
    """hilreward's cautious reward (``cautious=true``: success only where the support bank backs the head)."""
    corrected: bool = False
    """Served by ``hilreward serve``, corrected by the simulated operator during RL."""
    relabel: bool = True
    """Corrected arms: the replay buffer follows each new version."""


CAUTIOUS_DEFAULT = False
"""hilreward's default reward options (``cautious``), as the hilreward arms use them."""
CORRECTED_MODEL = "scratch"
"""The classifier the corrected arms start from: ``model=scratch``, whose retrainer adapts its encoder's last stage
in seconds on a CPU; with the ResNet-10 (its last stage 512 channels wide) one attempt took 10 minutes at load
10 while RL went on (dev run, 2026-12-07)."""
ARMS: dict[str, Arm] = {
    "oracle": Arm(None),
    "lerobot": Arm("lerobot"),
    "hilreward-resnet10": Arm("resnet10", CAUTIOUS_DEFAULT),
    "hilreward-scratch": Arm("scratch", CAUTIOUS_DEFAULT),
    "hilreward-resnet10-cautious": Arm("resnet10", True),
    "hilreward-scratch-cautious": Arm("scratch", True),
    "corrected": Arm(CORRECTED_MODEL, CAUTIOUS_DEFAULT, corrected=True),
    "corrected-norelabel": Arm(CORRECTED_MODEL, CAUTIOUS_DEFAULT, corrected=True, relabel=False),
}
DEFAULT_ARMS = [a for a in ARMS if a != "corrected-norelabel"]
SIZES = {"lerobot": 128, "resnet10": 128, "scratch": 96}
"""Render size of each classifier's frames (LeRobot's spatial embedding needs 97-128 px; model=scratch's input)."""
TASKS: dict[str, dict[str, Any]] = {
    # another day's light (issue 24's "light" sets): dimmer, warmer, the lights moved; the classifier was trained
    # under the default light. Its fooling state: the gripper against the machine beside the button.
    "coffee-button": {"settings": {"action_repeat": 4, "max_steps": 40, "steps": 6000},
                      "shift": {"brightness": 0.6, "tint": [1.2, 1.0, 0.8], "light_shift": [0.8, 0.5, 0.3]}},
    # drawer-open's replacement (issue 31): the same scene, and the oracle reaches 100 % at the default budget,
    # where drawer-open's held 8/52/92 % at 10000 steps (rl-2026-12-06) and 20 % in a rerun.
    "drawer-close": {"settings": {"action_repeat": 4, "max_steps": 40, "steps": 6000}},
    # one more task with a fooling state: the gripper on the handle before it is down
    "handle-press": {"settings": {"action_repeat": 4, "max_steps": 40, "steps": 6000}},
    # kept for comparison with earlier results; not in the default run (see drawer-close)
    "drawer-open": {"settings": {"action_repeat": 8, "max_steps": 20, "steps": 10000}, "default": False},
}
DEFAULT_TASKS = [t for t, spec in TASKS.items() if spec.get("default", True)]
TRAIN_EPISODES, HELDOUT = list(range(16)), [16, 17, 18, 19]
RL_SEED_BASE, EVAL_SEED_BASE, DEMO_SEED_BASE = 1000, 900_000, 500_000
"""Layouts: recorded set seed 0 (the classifiers'), training 1000 + run seed, evaluation and demos apart."""


def log(msg: str) -> None:
    print(f"[bench-rl {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Settings:
    """One run's budget and the agent's settings (the same for every arm)."""

    steps: int = 6000
    """Environment steps (agent decisions) of RL per run."""
    max_steps: int = 40
    """Decisions per episode (truncation)."""
    action_repeat: int = 4
    """Simulator steps per decision (the frames the reward judges are the decisions')."""
    demos: int = 40
    """Scripted-expert demonstration episodes in the replay buffer."""
    demo_fraction: float = 0.25
    """Share of every batch drawn from the demonstrations (0.5, RLPD's, let coffee-button's oracle learn and then
    collapse on one seed of three; 0.25 held on both seeds tried)."""
    utd: int = 1
    """SAC gradient steps per environment step."""
    gamma: float = 0.97
    lr: float = 3e-4
    batch_size: int = 256
    ent_coef: str = "auto_0.001"
    """SAC's entropy coefficient, learned from this start: against a 0/1 reward, SB3's default start (1.0, or 0.1)
    drowned the reward for thousands of steps (coffee-button: 0 % at 7500 steps with 0.1, 100 % at 5000 with
    0.001)."""
    critic_layer_norm: bool = False
    """RLPD's LayerNorm critic (tried on drawer-open's unstable seed: it did not steady it)."""
    eval_episodes: int = 50
    image_size: int = 0
    """Render size of every classifier arm (0: each classifier's own, ``SIZES``)."""
    budget: int = 60
    """Corrections (labelled frames) the operator may spend per run."""
    k_missed: int = 3
    """Frames of visible success the classifier misses before the operator flags them (and frames labelled)."""
    k_false: int = 3
    """Frames labelled "not success" when the classifier ends an episode that is not done."""
    lag: tuple[int, int] = (1, 3)
    """Reaction lag of the operator's press in frames (uniform)."""
    review_every: int = 50
    """The operator reviews what waits for a person every this many environment steps (0: never)."""
    pace: int = 4
    """Presses the operator makes while one version serves; then it waits for the next version, as a person watches
    whether a fix took (0: never waits). Without it the operator spent drawer-close's 60 frames on the first ~100
    hacked episodes (1-5 steps each, 1.5 min) before any version had trained on one (rl-2026-12-07)."""
    pace_wait: int = 400
    """Steps after its last press that the operator waits for a next version before pressing again regardless."""
    upfront: float = 0.25
    """Share of the budget the operator may spend at once; the rest comes pro rata over the run's steps, as a person
    told "60 corrections for this run" keeps some for later (1: all at once). With all of it up front the operator
    spent drawer-close's 60 by step 633 of 6000 while the policy found a fooling state again at step ~4800."""
    checkpoint_every: int = 2000
    max_minutes: float = 120.0
    """Wall-time budget of one run's RL (a run past it stops, is evaluated and says so)."""
    threads: int = 1


# --------------------------------------------------------------------------- the environment stack
def make_task_env(task: str, seed: int, settings: Settings, render: bool, image_size: int,
                  shift: Optional[dict] = None):
    """Meta-World ``task``: obs {"state", and "pixels" when a reward needs them}, ``action_repeat`` steps a decision."""
    import gymnasium as gym

    from hilreward.sim.env import CAMERAS, MetaWorldPixelEnv, SimShift

    class TaskEnv(MetaWorldPixelEnv):
        def __init__(self) -> None:
            super().__init__(task, (image_size, image_size), seed=seed, max_steps=settings.max_steps,
                             shift=SimShift(**{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in (shift or {}).items()}))
            spaces = {"state": gym.spaces.Box(-np.inf, np.inf, (39,), np.float32)}
            if render:
                spaces["pixels"] = self.observation_space["pixels"]
            self.observation_space = gym.spaces.Dict(spaces)

        def _observation(self) -> dict:
            obs = {"state": self.state.astype(np.float32)}
            if render:  # only what a reward judges is rendered
                obs["pixels"] = {name: self.render_camera(name) for name in CAMERAS}
            return obs

        def step(self, action):
            action = np.clip(np.asarray(action, np.float32).reshape(4), -1.0, 1.0)
            for _ in range(settings.action_repeat):
                raw, _, _, _, info = self.metaworld.step(action)
            self.state = self._with_goal(raw)
            self._steps += 1
            return self._observation(), 0.0, False, self._steps >= self.max_steps, {"success": bool(info["success"])}

    return TaskEnv()


def wrap_reward(env, reward_fn, keep_frames: bool = False):
    """The arm's reward on top of the task: the oracle's (reward_fn None) or the classifier's."""
    import gymnasium as gym

    from hilreward.deploy import RewardClassifierWrapper

    class OracleReward(gym.Wrapper):
        def step(self, action):
            obs, _, terminated, truncated, info = self.env.step(action)
            return obs, float(info["success"]), terminated or info["success"], truncated, info

    return OracleReward(env) if reward_fn is None else RewardClassifierWrapper(env, reward_fn, keep_frames=keep_frames)


EARLY_STEPS = 2
"""A claim at or before this step of an episode is early (the issue's bound on published versions)."""


def monitor(env, episodes: list, operator: Optional["Operator"] = None, keep_first: int = 0):
    """Records each episode (true success, claimed, rewarded, hacked, early, version) and lets the operator watch;
    obs -> state. ``keep_first``: also keep the frames of each episode's first steps (``episode["first"]``)."""
    import gymnasium as gym

    class Monitor(gym.Wrapper):
        def __init__(self) -> None:
            super().__init__(env)
            self.observation_space = env.observation_space["state"]
            self.ever = False
            self.t = 0
            self.first: list = []

        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            self.ever, self.t, self.first = False, 0, []
            return obs["state"], info

        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            self.t += 1
            judged = info.get("reward_classifier")
            self.ever = self.ever or info["success"]
            if keep_first and self.t <= keep_first and "pixels" in obs:
                self.first.append({k: np.array(v) for k, v in obs["pixels"].items()})
            if operator is not None and judged is not None:
                operator.see(judged["episode_id"], self.t, info["success"], judged["success"], terminated,
                             judged["model_version"])
            if terminated or truncated:
                record = {"steps": self.t, "true": bool(self.ever), "claimed": bool(terminated),
                          "rewarded": bool(terminated and info["success"]),
                          "hacked": bool(terminated and not info["success"]),
                          "early": bool(terminated and self.t <= EARLY_STEPS),
                          "version": judged["model_version"] if judged else None}
                if keep_first:
                    record["first"] = self.first
                episodes.append(record)
            return obs["state"], reward, terminated, truncated, info

    return Monitor()


class Operator:
    """A human at the console, simulated from the truth: presses "false success" / "missed success", each landing
    ``lag`` frames late, labelling the last k frames of the episode up to then (``correct_recent``); and, every
    ``review_every`` steps, reviews what the server asks a person to decide, as a person who watched would:
    of two contradicting flags it accepts the newer (``superseded``); it accepts a correction the live gate
    held (``conflicts_live``) when the live frames it would fire on were true successes, else rejects it; and of
    a correction that contradicts the recorded episodes (``conflicts_offline``) it stands by a "not success" it
    saw (accepting relabels those offline frames: the reward becomes stricter than the recordings, it misses rather
    than lies) and withdraws a "missed success" (accepting it would make the reward fire on states the recordings
    call failures). It presses at most ``pace`` times on one served version, then waits for the next one (or
    ``pace_wait`` steps), and spends ``upfront`` of its budget at once, the rest pro rata over the run."""

    def __init__(self, client, settings: Settings, seed: int, used: int = 0, presses: Optional[list] = None,
                 reviews: Optional[list] = None, now: int = 0) -> None:
        self.client, self.s = client, settings
        self.rng = np.random.default_rng(seed)
        self.used = used
        self.presses: list[dict] = presses if presses is not None else []
        self.reviews: list[dict] = reviews if reviews is not None else []
        self.pending: list[tuple[int, int, int, int]] = []  # (due step, label, k, episode)
        self.now = now
        """Environment steps seen (a resumed run starts where it stopped)."""
        self.streak = 0
        self.flagged: set[int] = set()
        self.truth: dict[int, dict[int, bool]] = {}
        """Live episode id -> step (the server's: 0 = the first judged) -> true success, as the operator saw it."""
        self.decided: set[int] = {r["correction"] for r in self.reviews}
        self.version, self.on_version, self.last_press = "", 0, -10**9
        """The version serving, presses made on it (pacing) and the step of the last press."""

    def see(self, episode_id: int, t: int, true_success: bool, claimed: bool, ended_by_reward: bool,
            version: str = "") -> None:
        self.now += 1
        if version and version != self.version:
            self.version, self.on_version = version, 0
        self._press_due()
        self.truth.setdefault(episode_id, {})[t - 1] = bool(true_success)
        while len(self.truth) > 500:
            self.truth.pop(next(iter(self.truth)))
        if t == 1:
            self.streak = 0
        lag = int(self.rng.integers(self.s.lag[0], self.s.lag[1] + 1))
        if ended_by_reward and not true_success:
            self._schedule(lag, 0, self.s.k_false, episode_id)
        self.streak = self.streak + 1 if (true_success and not claimed) else 0
        if self.streak == self.s.k_missed and episode_id not in self.flagged:
            self.flagged.add(episode_id)
            self._schedule(lag, 1, self.s.k_missed, episode_id)
        if self.s.review_every and self.now % self.s.review_every == 0:
            self.review()

    def _schedule(self, lag: int, label: int, k: int, episode_id: int) -> None:
        committed = self.used + sum(p[2] for p in self.pending)
        waiting = (self.s.pace and self.on_version + len(self.pending) >= self.s.pace
                   and self.now - self.last_press < self.s.pace_wait)
        allowed = self.s.budget * max(self.s.upfront, self.now / max(1, self.s.steps))
        if committed + k <= min(self.s.budget, allowed) and not waiting:
            self.pending.append((self.now + lag, label, k, episode_id))

    def _press_due(self, everything: bool = False) -> None:
        due = [p for p in self.pending if everything or p[0] <= self.now]
        self.pending = [p for p in self.pending if p not in due]
        for _, label, k, episode_id in due:
            ack = self.client.correct_recent(label, last_k=k, episode_id=episode_id, source="operator")
            self.used += len(ack.correction_ids)
            self.on_version, self.last_press = self.on_version + 1, self.now
            self.presses.append({"step": self.now, "label": label, "episode_id": episode_id,
                                 "corrections": len(ack.correction_ids), "version": ack.model_version})

    def review(self) -> None:
        """Decide what waits for a person (reviews are not corrections: they cost none of the budget)."""
        waiting = self.client.list_corrections(statuses=["superseded", "conflicts_live", "conflicts_offline"],
                                               limit=200).corrections
        accept, reject = [], []
        seen: dict[int, list] = {}
        for c in waiting:
            if c.id in self.decided or c.review is not None:
                continue
            conflict = c.conflict or {}
            if c.status == "superseded" and conflict.get("by"):
                newer = int(conflict["by"])
                if newer not in self.decided:
                    accept.append(newer)  # the newer flag: the operator confirms what they said last
                    self.decided.add(newer)
                self.decided.add(c.id)
            elif c.status == "conflicts_live":
                # a person looks at each frame it would fire on: a success, or one a step or two before it (the
                # button going down) is right; the steps they saw
                shown = [self._success_near(int(e), int(t)) for e, t in conflict.get("firings", [])]
                known = [v for v in shown if v is not None]
                if not known:
                    continue  # not seen (yet): no decision
                (accept if sum(known) * 2 > len(known) else reject).append(c.id)
                self.decided.add(c.id)
                seen[c.id] = known
            elif c.status == "conflicts_offline":
                saw = self._success_near(int(c.episode), int(c.step), ahead=0)
                if c.label == 1:
                    reject.append(c.id)  # rather a reward that misses than one that fires on recorded failures
                elif saw is None:
                    continue
                else:
                    (reject if saw else accept).append(c.id)  # it stands by a "not success" it saw
                self.decided.add(c.id)
        for verdict, ids in (("accept", accept), ("reject", reject)):
            if ids:
                self.client.review(ids, verdict, reviewer="operator", note="bench-rl's simulated operator")
                self.reviews.extend({"step": self.now, "correction": i, "verdict": verdict,
                                     "firings_true": seen.get(i)} for i in ids)

    def _success_near(self, episode_id: int, step: int, ahead: int = 2) -> Optional[bool]:
        """Whether the episode showed a success at ``step`` or within ``ahead`` steps after it (None: not seen)."""
        steps = self.truth.get(episode_id, {})
        if step not in steps:
            return None
        return any(steps.get(t, False) for t in range(step, step + ahead + 1))

    def flush(self) -> None:
        self._press_due(everything=True)


class LayerNormCritic(ContinuousCritic):
    """SB3's SAC critic with a LayerNorm after each hidden layer (RLPD's critic: it keeps Q from running away on
    actions the data never took)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.q_networks = []
        for i in range(self.n_critics):
            layers, last = [], kwargs["features_dim"] + int(np.prod(self.action_space.shape))
            for width in kwargs["net_arch"]:
                layers += [nn.Linear(last, width), nn.LayerNorm(width), kwargs.get("activation_fn", nn.ReLU)()]
                last = width
            q_net = nn.Sequential(*layers, nn.Linear(last, 1))
            self.add_module(f"qf{i}", q_net)
            self.q_networks.append(q_net)


class LayerNormSACPolicy(SACPolicy):
    def make_critic(self, features_extractor=None) -> LayerNormCritic:
        return LayerNormCritic(**self._update_features_extractor(self.critic_kwargs, features_extractor)).to(self.device)


class DemoMixBuffer(ReplayBuffer):
    """SB3's ReplayBuffer whose batches draw ``demo_fraction`` from the demonstrations (its first ``n_demo`` slots)."""

    n_demo = 0
    demo_fraction = 0.25

    def sample(self, batch_size, env=None):
        online = self.buffer_size if self.full else self.pos
        if not self.n_demo or online <= self.n_demo:
            return super().sample(batch_size, env=env)
        demo = int(round(batch_size * self.demo_fraction))
        idx = np.concatenate([np.random.randint(0, self.n_demo, demo),
                              np.random.randint(self.n_demo, online, batch_size - demo)])
        return self._get_samples(idx, env=env)


def make_sac(env, settings: Settings, seed: int):
    """SB3 SAC with demonstrations making ``demo_fraction`` of every batch."""
    from stable_baselines3 import SAC

    model = SAC(LayerNormSACPolicy if settings.critic_layer_norm else "MlpPolicy", env, learning_rate=settings.lr,
                buffer_size=settings.steps + settings.demos * settings.max_steps + 1, learning_starts=0,
                batch_size=settings.batch_size, gamma=settings.gamma, train_freq=1, gradient_steps=settings.utd,
                ent_coef=settings.ent_coef, seed=seed, device="cpu", replay_buffer_class=DemoMixBuffer)
    model.replay_buffer.demo_fraction = settings.demo_fraction
    model.set_logger(Logger(None, []))  # SB3's default makes an empty /tmp/SB3-<time> folder at every learn()
    return model


def add_demos(model, task: str, settings: Settings, seed: int, shift: Optional[dict]) -> int:
    """Scripted-expert episodes with their true rewards into the buffer's first slots; returns how many transitions."""
    from hilreward.sim.policies import scripted_policy

    env = wrap_reward(make_task_env(task, 0, settings, False, 16, shift), None)
    buffer = model.replay_buffer
    for d in range(settings.demos):
        obs, _ = env.reset(seed=DEMO_SEED_BASE + 1000 * seed + d)
        expert = scripted_policy(env, "expert")
        for _ in range(settings.max_steps):
            action = expert(obs)
            nxt, reward, terminated, truncated, _ = env.step(action)
            buffer.add(obs["state"][None], nxt["state"][None], action[None], np.array([reward]),
                       np.array([terminated or truncated]), [{"TimeLimit.truncated": truncated and not terminated}])
            obs = nxt
            if terminated or truncated:
                break
    env.close()
    buffer.n_demo = buffer.pos
    return int(buffer.pos)


# --------------------------------------------------------------------------- data and classifiers
def hilreward_cli(*args: str, what: str, log_file: Path | None = None) -> None:
    """A ``hilreward`` command in its own process, as a user runs it; SystemExit with its output on failure."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, "-m", "hilreward.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    if log_file is not None:
        log_file.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def recorded_set(data_dir: Path, task: str, size: int) -> Path:
    """20 scripted episodes of ``task`` at seed 0, rendered at ``size`` px (once; reused when there)."""
    path = data_dir / f"rl-{task}-s0-e20-{size}"
    if not (path / "meta" / "info.json").is_file():
        log(f"rendering {task} ({size} px) into {path}")
        hilreward_cli("sim", f"task={task}", "seed=0", "episodes=20", f"image_size=[{size},{size}]", f"out={path}",
                      what="hilreward sim")
    return path


def hilreward_classifier(out: Path, task: str, data: Path, model: str = "scratch") -> Path:
    """``hilreward train`` with default options on episodes 0-15 (16-19 held out for its calibration): ``model=scratch``,
    or ``model=resnet10`` with the peer's frozen ResNet-10 weights (the LeRobot arm's)."""
    ckpt = out / "classifiers" / f"{task}-hilreward-{model}" / "checkpoints" / "best"
    if not (ckpt / "config.json").is_file():
        if model == "resnet10" and not (PEER_ENCODER / "config.json").is_file():
            raise RuntimeError(f"no peer ResNet-10 weights at {PEER_ENCODER} (bash ../shared/peer/setup_lerobot.sh "
                               "makes them)")
        log(f"training the hilreward {model} classifier of {task}")
        (out / "classifiers").mkdir(parents=True, exist_ok=True)
        preset = ["model=scratch"] if model == "scratch" else ["model=resnet10", f"model.weights={PEER_ENCODER}"]
        hilreward_cli("train", f"dataset.root={data}", *preset, f"split.val_episodes={json.dumps(HELDOUT)}",
                      f"output_dir={ckpt.parents[1]}", what="hilreward train",
                      log_file=out / "classifiers" / f"{task}-hilreward-{model}.log")
    return ckpt


def lerobot_classifier(out: Path, task: str, data: Path, steps: int) -> Path:
    """LeRobot 0.6.1's ``lerobot-train`` (peer venv) on episodes 0-15: its last checkpoint's pretrained_model."""
    root = out / "classifiers" / f"{task}-lerobot"
    ckpt = root / "train" / "checkpoints" / "last" / "pretrained_model"
    if (ckpt / "config.json").is_file():
        return ckpt
    if not PEER_PYTHON.exists():
        raise RuntimeError(f"no LeRobot peer venv at {PEER_PYTHON} (bash ../shared/peer/setup_lerobot.sh makes it)")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    feats = {k: {"type": "VISUAL", "shape": [3, 128, 128]} for k in ("observation.images.front",
                                                                     "observation.images.wrist")}
    cmd = [str(PEER_PYTHON.parent / "lerobot-train"), f"--dataset.repo_id=local/{data.name}", f"--dataset.root={data}",
           f"--dataset.episodes={json.dumps(TRAIN_EPISODES)}", "--reward_model.type=reward_classifier",
           f"--reward_model.model_name={PEER_ENCODER}", "--reward_model.num_cameras=2",
           f"--reward_model.input_features={json.dumps(feats)}", "--reward_model.device=cpu",
           "--reward_model.push_to_hub=false", f"--output_dir={root / 'train'}", f"--job_name=rl-{task}",
           "--batch_size=16", f"--steps={steps}", "--log_freq=50", f"--save_freq={steps}", "--num_workers=0",
           "--wandb.enable=false"]
    log(f"training LeRobot's classifier of {task} ({steps} steps)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "2"}
    with open(root / "lerobot-train.log", "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0 or not (ckpt / "config.json").is_file():
        raise RuntimeError(f"lerobot-train failed ({proc.returncode}); see {root / 'lerobot-train.log'}")
    return ckpt


# --------------------------------------------------------------------------- one run
@dataclass
class RunSpec:
    task: str
    arm: str
    seed: int
    checkpoint: Optional[str] = None
    """The arm's classifier (None: oracle)."""
    dataset: Optional[str] = None
    """The recorded set the server retrains on (corrected arms)."""
    image_size: int = 96


@dataclass
class Progress:
    """What a checkpoint keeps besides SB3's model and buffer."""

    steps_done: int = 0
    wall_s: float = 0.0
    n_demo: int = 0
    episodes: list = field(default_factory=list)
    presses: list = field(default_factory=list)
    reviews: list = field(default_factory=list)
    corrections_used: int = 0
    relabels: list = field(default_factory=list)


def run_one(spec: RunSpec, settings: Settings, out: Path, kill_server_at: int = 0) -> dict:
    """Train and evaluate one (task, arm, seed); cached in ``runs/<name>/result.json``."""
    name = f"{spec.task}-{spec.arm}-s{spec.seed}"
    run_dir = out / "runs" / name
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = train_and_evaluate(spec, settings, run_dir, kill_server_at)
    except Exception as exc:  # noqa: BLE001 - the arm is marked failed with its reason; the others go on
        from hilreward.errors import HilrewardError

        if not isinstance(exc, (HilrewardError, RuntimeError, SystemExit, OSError)):
            raise
        log(f"{name} failed: {exc}")
        result = {"name": name, **asdict(spec), "failed": f"{type(exc).__name__}: {exc}"}
    write_atomic(result_path, json.dumps(result, indent=1) + "\n")
    return result


def train_and_evaluate(spec: RunSpec, settings: Settings, run_dir: Path, kill_server_at: int = 0) -> dict:
    import torch

    from hilreward.deploy import RewardFunction

    torch.set_num_threads(settings.threads)
    shift = TASKS.get(spec.task, {}).get("shift")
    progress_path, ckpt_dir = run_dir / "progress.json", run_dir / "checkpoint"
    progress = Progress(**json.loads(progress_path.read_text())) if progress_path.is_file() and \
        (ckpt_dir / "model.zip").is_file() else Progress()
    start = time.perf_counter() - progress.wall_s
    server = versions = operator = client = relabel_cb = env = None
    try:
        # ---- the arm's reward
        kind = ARMS[spec.arm]
        if kind.model is None:
            reward_fn = None
        elif kind.corrected:
            from bench_serving import start_server

            from hilreward.integrations.sb3 import RelabelCallback
            from hilreward.integrations.versions import ServedVersions
            from hilreward.serving import RewardClient

            cache = run_dir.parents[1] / "cache"  # shared by the runs: the offline features are computed once
            server, address = start_server(Path(spec.checkpoint), spec.dataset, run_dir, str(cache), 1,
                                           ["retrain.min_interval_s=0", "retrain.threads=1", "retrain.ensemble=0",
                                            f"cautious={str(kind.cautious).lower()}"])
            reward_fn = RewardFunction.from_pretrained(None, backend="grpc", address=address, timeout_s=60)
            client = RewardClient(address, timeout_s=60)
            operator = Operator(client, settings, spec.seed, progress.corrections_used, progress.presses,
                                progress.reviews, now=progress.steps_done)
            versions = ServedVersions(address, versions_dir=run_dir / "serve" / "versions")
            relabel_cb = RelabelCallback(versions, relabel=kind.relabel)
            relabel_cb.events = progress.relabels
        else:
            reward_fn = RewardFunction.from_pretrained(spec.checkpoint, cautious=kind.cautious)
        env = monitor(wrap_reward(make_task_env(spec.task, RL_SEED_BASE + spec.seed, settings, reward_fn is not None,
                                                spec.image_size, shift), reward_fn, keep_frames=relabel_cb is not None),
                      progress.episodes, operator)
        env.reset(seed=RL_SEED_BASE + spec.seed)

        # ---- the agent, fresh or from its checkpoint
        model = make_sac(env, settings, spec.seed)
        if progress.steps_done:
            model.set_parameters(str(ckpt_dir / "model.zip"))
            model.load_replay_buffer(str(ckpt_dir / "buffer.pkl"))
            model.num_timesteps = progress.steps_done
            if relabel_cb is not None:
                relabel_cb.init_callback(model)
                store = relabel_cb._frame_store()
                with np.load(ckpt_dir / "frames.npz") as saved:
                    store.frames = {k[len("frame:"):]: saved[k] for k in saved.files if k.startswith("frame:")}
                    store.env_terminated, store.truncated, store.filled = (saved["env_terminated"], saved["truncated"],
                                                                          saved["filled"])
            log(f"{run_dir.name}: resumed at step {progress.steps_done}")
        else:
            progress.n_demo = add_demos(model, spec.task, settings, spec.seed, shift)
        model.replay_buffer.n_demo = progress.n_demo

        # ---- RL, checkpointed, within its step and time budgets
        callback = relabel_cb
        if kill_server_at and server is not None:
            from stable_baselines3.common.callbacks import CallbackList

            callback = CallbackList([c for c in (relabel_cb, KillAt(kill_server_at, server)) if c is not None])
        deadline = start + settings.max_minutes * 60
        stopped = None
        while progress.steps_done < settings.steps:
            if time.perf_counter() > deadline:
                stopped = f"time budget ({settings.max_minutes} min) hit at step {progress.steps_done}"
                break
            chunk = min(settings.checkpoint_every, settings.steps - progress.steps_done)
            model.learn(chunk, callback=callback, reset_num_timesteps=False, progress_bar=False)
            progress.steps_done += chunk
            progress.wall_s = time.perf_counter() - start
            if operator is not None:
                progress.corrections_used = operator.used
            save_checkpoint(model, progress, relabel_cb, ckpt_dir, progress_path)
            log(f"{run_dir.name}: step {progress.steps_done}/{settings.steps}, {len(progress.episodes)} episodes, "
                f"true {np.mean([e['true'] for e in progress.episodes[-20:]] or [0]):.2f} (last 20)")
        if operator is not None:
            operator.flush()
            progress.corrections_used = operator.used
        rl_wall = time.perf_counter() - start

        # ---- evaluation: the final policy, the final reward
        if kind.corrected:
            newest = max(int(p.name) for p in (run_dir / "serve" / "versions").iterdir() if p.name.isdigit())
            final_fn = RewardFunction.from_pretrained(run_dir / "serve" / "versions" / str(newest),
                                                      success_threshold=versions.client.get_model().threshold,
                                                      cautious=kind.cautious)
        else:
            final_fn = reward_fn
        evaluation = evaluate(model, spec, settings, final_fn, shift, keep_first=EARLY_STEPS if kind.corrected else 0)
        first_frames = evaluation.pop("first_frames")
        if kind.corrected:
            evaluation["versions_early"] = versions_early(run_dir / "serve" / "versions", first_frames,
                                                          kind.cautious)
            evaluation["versions_published"] = len(evaluation["versions_early"]) - 1
    finally:
        for closing in (versions, client, env):
            if closing is not None:
                closing.close()
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    return {"name": run_dir.name, **asdict(spec), "settings": asdict(settings), "stopped": stopped,
            "env_steps": progress.steps_done, "rl_wall_s": round(rl_wall, 1), "demo_transitions": progress.n_demo,
            "corrections_used": progress.corrections_used, "presses": progress.presses, "reviews": progress.reviews,
            "relabels": progress.relabels, "final_version": final_fn.model_version if final_fn else None,
            "train_episodes": progress.episodes, **evaluation}


class KillAt(BaseCallback):
    """Fault injection (``--kill-server-at ARM=STEP``): kill the reward server at an environment step."""

    def __init__(self, step: int, process) -> None:
        super().__init__()
        self.step, self.process = step, process

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step and self.process.poll() is None:
            log(f"killing the reward server at step {self.num_timesteps} (--kill-server-at)")
            self.process.kill()
            self.process.wait()
        return True


def save_checkpoint(model, progress: Progress, relabel_cb, ckpt_dir: Path, progress_path: Path) -> None:
    """Model, buffer, frames, then progress (written last, atomically: it names a complete checkpoint)."""
    def fill(tmp: Path) -> None:
        model.save(str(tmp / "model.zip"))
        model.save_replay_buffer(str(tmp / "buffer.pkl"))
        if relabel_cb is not None and relabel_cb.store is not None:
            store = relabel_cb.store
            np.savez(tmp / "frames.npz", env_terminated=store.env_terminated, truncated=store.truncated,
                     filled=store.filled, **{f"frame:{k}": v for k, v in store.frames.items()})

    replace_dir(ckpt_dir, fill)  # the old checkpoint stays until the new one is complete
    write_atomic(progress_path, json.dumps(asdict(progress)))


def evaluate(model, spec: RunSpec, settings: Settings, reward_fn, shift: Optional[dict], keep_first: int = 0) -> dict:
    """The deterministic policy over ``eval_episodes`` held-out layouts, judged by ``reward_fn`` (None: oracle).
    ``keep_first``: keep the frames of each episode's first steps (``first_frames``, to judge other versions)."""
    episodes: list = []
    env = monitor(wrap_reward(make_task_env(spec.task, EVAL_SEED_BASE, settings, reward_fn is not None,
                                            spec.image_size, shift), reward_fn), episodes, keep_first=keep_first)
    for e in range(settings.eval_episodes):
        obs, _ = env.reset(seed=EVAL_SEED_BASE + e)
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    env.close()
    n = max(len(episodes), 1)
    first = [e.pop("first", []) for e in episodes]
    true = sum(e["true"] for e in episodes)
    return {"eval_episodes": len(episodes),
            "true_success": sum(e["true"] for e in episodes) / n,
            "claimed_success": sum(e["claimed"] for e in episodes) / n,
            "rewarded_success": sum(e["rewarded"] for e in episodes) / n,
            "true_claimed": sum(e["rewarded"] for e in episodes) / true if true else None,
            "hacking_rate": sum(e["hacked"] for e in episodes) / n,
            "early_claims": sum(e["early"] for e in episodes) / n,
            "eval_mean_steps": float(np.mean([e["steps"] for e in episodes])) if episodes else 0.0,
            "eval": episodes, "first_frames": first}


def versions_early(versions_dir: Path, first_frames: list[list[dict]], cautious: bool) -> dict[str, float]:
    """Every published version (``versions/<n>``, at its own threshold), judged on the first ``EARLY_STEPS``
    frames of the evaluation episodes: the share of episodes it would end by step ``EARLY_STEPS``."""
    from hilreward.deploy import RewardFunction

    out: dict[str, float] = {}
    episodes = [f[:EARLY_STEPS] for f in first_frames if f]
    if not episodes:
        return out
    for folder in sorted((p for p in versions_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        fn = RewardFunction.from_pretrained(folder, backend="torch", cautious=cautious)
        early = 0
        for frames in episodes:
            fn.reset()
            early += any(fn(step).success for step in frames)
        out[fn.model_version] = early / len(episodes)
        fn.close()
    return out


# --------------------------------------------------------------------------- the whole benchmark
def prepare(task: str, arm: str, args, settings: Settings, out: Path) -> RunSpec:
    """The run's classifier and data (rendered and trained once per task and model)."""
    kind = ARMS[arm]
    if kind.model is None:
        return RunSpec(task, arm, 0, image_size=16)  # nothing is rendered
    size = args.image_size or SIZES[kind.model]
    if kind.model == "lerobot":
        data = recorded_set(Path(args.data_dir), task, 128)
        return RunSpec(task, arm, 0, str(lerobot_classifier(out, task, data, args.lerobot_steps)), str(data), 128)
    data = Path(args.dataset) if args.dataset else recorded_set(Path(args.data_dir), task, size)
    ckpt = Path(args.checkpoint) if args.checkpoint else hilreward_classifier(out, task, data, kind.model)
    return RunSpec(task, arm, 0, str(ckpt), str(data), size)


def settings_from(args, task: str | None = None) -> Settings:
    """Defaults, then the task's (``TASKS``), then what the command line names."""
    names = {f for f in Settings.__dataclass_fields__}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return Settings(**{**TASKS.get(task, {}).get("settings", {}), **given})


def cmd_run(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.data_dir = args.data_dir or str(out / "data")
    kills = dict(item.split("=", 1) for item in args.kill_server_at or [])
    path = out / "settings.json"  # runs of other tasks (another invocation, maybe still running) keep theirs
    known = json.loads(path.read_text()) if path.is_file() else {}
    known.update({t: asdict(settings_from(args, t)) for t in args.tasks})
    write_atomic(path, json.dumps(known, indent=1) + "\n")
    for task in args.tasks:
        settings = settings_from(args, task)
        for arm in args.arms:
            try:
                base = prepare(task, arm, args, settings, out)
            except (RuntimeError, SystemExit) as exc:
                log(f"{task}/{arm}: cannot prepare ({exc}); its runs are marked failed")
                base = None
            for seed in args.seeds:
                if base is None:
                    failed = {"name": f"{task}-{arm}-s{seed}", "task": task, "arm": arm, "seed": seed,
                              "failed": "the arm's classifier could not be made (see the log)"}
                    write_atomic(out / "runs" / failed["name"] / "result.json", json.dumps(failed) + "\n")
                    continue
                spec = RunSpec(**{**asdict(base), "seed": seed})
                t0 = time.perf_counter()
                result = run_one(spec, settings, out, int(kills.get(arm, 0)))
                log(f"{result['name']}: " + (result.get("failed") or
                    f"true {result['true_success']:.2f}, claimed {result['claimed_success']:.2f}, hacking "
                    f"{result['hacking_rate']:.2f}, {result['corrections_used']} corrections")
                    + f" ({time.perf_counter() - t0:.0f} s)")


def cmd_smoke(args) -> None:
    """Two training episodes and two evaluation episodes an arm: the JSON is written."""
    args.max_steps = args.max_steps or 5
    args.steps = 2 * args.max_steps
    args.checkpoint_every, args.eval_episodes, args.demos = args.max_steps, 2, 1
    cmd_run(args)
    cmd_report(args)


# --------------------------------------------------------------------------- report
def load_runs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/result.json"))]


METRICS = ("true_success", "claimed_success", "rewarded_success", "true_claimed", "hacking_rate", "early_claims",
           "corrections_used", "versions_published", "env_steps", "rl_wall_s")


def summarise(runs: list[dict]) -> dict:
    """Per task and arm: mean and spread over seeds (and each seed), and the issue's targets: the corrected arms
    against the oracle, every published version's early firings, hilreward's default ResNet-10 against LeRobot's."""
    table: dict[str, dict[str, dict]] = {}
    for task in sorted({r["task"] for r in runs}):
        table[task] = {}
        for arm in ARMS:
            rows = sorted((r for r in runs if r["task"] == task and r["arm"] == arm), key=lambda r: r["seed"])
            ok = [r for r in rows if not r.get("failed")]
            if not rows:
                continue
            cell: dict[str, Any] = {"seeds": len(rows), "failed": [r["failed"] for r in rows if r.get("failed")]}
            for key in METRICS:
                values = [float(r[key]) for r in ok if r.get(key) is not None]
                cell[key] = {"mean": float(np.mean(values)), "min": float(np.min(values)),
                             "max": float(np.max(values)), "seeds": values} if values else None
            cell["relabel_changed"] = sum(e["changed"] for r in ok for e in r.get("relabels", []))
            cell["relabelled_versions"] = sum(len(r.get("relabels", [])) for r in ok)
            # version 0 is the trained checkpoint the run starts from; the target is about what corrections publish
            judged = [list(r["versions_early"].values()) for r in ok if r.get("versions_early")]
            if judged:
                cell["base_early_max"] = max(v[0] for v in judged)
                cell["versions_early_max"] = max((x for v in judged for x in v[1:]), default=0.0)
            table[task][arm] = cell
        oracle = table[task].get("oracle", {}).get("true_success")
        for arm, kind in ARMS.items():
            cell = table[task].get(arm)
            if kind.corrected and cell and oracle and cell["true_success"]:
                ratio = cell["true_success"]["mean"] / oracle["mean"] if oracle["mean"] else None
                cell["of_oracle"] = ratio
                cell["targets"] = {"oracle >= 70 %": oracle["mean"] >= 0.7,
                                   ">= 90 % of oracle": ratio is not None and ratio >= 0.9,
                                   "hacking <= 5 %": cell["hacking_rate"]["mean"] <= 0.05,
                                   "<= 60 corrections": cell["corrections_used"]["mean"] <= 60,
                                   "no published version fires by step 2 in > 5 %":
                                       cell.get("versions_early_max", 0.0) <= 0.05}
        ours, theirs = table[task].get("hilreward-resnet10"), table[task].get("lerobot")
        if ours and theirs and ours["hacking_rate"] and theirs["hacking_rate"]:
            ours["targets"] = {"hacks no more than lerobot":
                               ours["hacking_rate"]["mean"] <= theirs["hacking_rate"]["mean"]}
            if ours.get("rewarded_success") and theirs.get("rewarded_success"):  # a silent reward hacks 0 %
                ours["targets"]["rewards as many true successes as lerobot"] = \
                    ours["rewarded_success"]["mean"] >= theirs["rewarded_success"]["mean"]
    return table


def curves(runs: list[dict], window: int = 20) -> dict:
    """Training curves per task and arm: moving true-success and hacking rates over episodes, by env step."""
    out: dict = {}
    for r in runs:
        if r.get("failed") or not r.get("train_episodes"):
            continue
        eps = r["train_episodes"]
        steps = np.cumsum([e["steps"] for e in eps])
        true = np.convolve([e["true"] for e in eps], np.ones(window) / window, mode="valid") if len(eps) >= window \
            else np.array([np.mean([e["true"] for e in eps])])
        hacked = np.convolve([e["hacked"] for e in eps], np.ones(window) / window, mode="valid") \
            if len(eps) >= window else np.array([np.mean([e["hacked"] for e in eps])])
        x = steps[window - 1:] if len(eps) >= window else steps[-1:]
        out.setdefault(r["task"], {}).setdefault(r["arm"], []).append(
            {"seed": r["seed"], "steps": x.tolist(), "true": true.tolist(), "hacked": hacked.tolist()})
    return out


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(runs)
    tasks = sorted(data)
    if not tasks:
        return
    fig, axes = plt.subplots(2, len(tasks), figsize=(5.5 * len(tasks), 6.5), squeeze=False, sharex="col")
    colours = dict(zip(ARMS, ("black", "tab:orange", "tab:blue", "tab:purple", "tab:cyan", "tab:pink", "tab:green",
                              "tab:olive")))
    for j, task in enumerate(tasks):
        for arm, runs_ in data[task].items():
            for k, c in enumerate(runs_):
                label = arm if k == 0 else None
                axes[0, j].plot(c["steps"], c["true"], color=colours[arm], alpha=0.8, lw=1.2, label=label)
                axes[1, j].plot(c["steps"], c["hacked"], color=colours[arm], alpha=0.8, lw=1.2, label=label)
        axes[0, j].set_title(f"{task}: true success (training episodes, moving 20)")
        axes[1, j].set_title(f"{task}: reward hacking (claimed, not true)")
        axes[1, j].set_xlabel("environment steps")
        for ax in axes[:, j]:
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_report(args) -> None:
    out = Path(args.out)
    runs = load_runs(out)
    settings = json.loads((out / "settings.json").read_text()) if (out / "settings.json").is_file() else {}
    summary = {"bench": "rl", "date": dt.date.today().isoformat(), "settings": settings, "tasks": TASKS,
               "summary": summarise(runs), "curves": curves(runs),
               "runs": [{k: v for k, v in r.items() if k not in ("train_episodes", "eval")} for r in runs]}
    path = Path(args.json) if args.json else out / "rl.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(summary, indent=1) + "\n")
    log(f"wrote {path}")
    if args.doc:
        plot(runs, FIGURE)
        write_doc(summary, path)


def fmt(cell: Optional[dict], key: str, pct: bool = True) -> str:
    """Mean (each seed) of a cell's metric."""
    v = (cell or {}).get(key)
    if not v:
        return "n/a"
    if pct:
        return f"{100 * v['mean']:.0f} % ({'/'.join(f'{100 * x:.0f}' for x in v['seeds'])})"
    return f"{v['mean']:.0f} ({'/'.join(f'{x:.0f}' for x in v['seeds'])})"


def write_doc(summary: dict, json_path: Path) -> None:
    shown = json_path.resolve().relative_to(ROOT) if ROOT in json_path.resolve().parents else json_path
    lines = [DOC_START, "## RL on the reward", "",
             f"`make bench-rl` (`bench/bench_rl.py`; raw results `{shown}`): stable-baselines3 SAC on the state "
             "vector, scripted demonstrations with their true rewards in every batch (the share below), the reward of "
             "each arm with terminate_on_success. Evaluation: the final policy on held-out layouts, judged by the arm's "
             "final reward. Mean (each seed, in seed order) over seeds. *Rewarded* is the share of evaluation "
             "episodes the reward ended at a true success (the true successes it claims: a reward that never fires "
             "hacks 0 % and rewards 0 %, while demonstrations with true rewards may still teach the policy); *hacking* "
             "the share it ended at a state that is not a success; *early* the share it ended by step "
             f"{EARLY_STEPS}.", ""]
    for task, s in summary["settings"].items():
        shift = TASKS.get(task, {}).get("shift")
        lines.append(f"- {task}: {s['steps']} environment steps per run, each action held {s['action_repeat']} "
                     f"simulator steps, episodes of {s['max_steps']} decisions, {s['demos']} demonstrations "
                     f"({s['demo_fraction']:.0%} of each batch), "
                     f"{s['eval_episodes']} evaluation episodes" + (f"; RL under another light {shift}" if shift else "")
                     + f"; operator: budget {s['budget']} corrections, k = {s['k_missed']} / {s['k_false']}, lag "
                     f"{s['lag'][0]}-{s['lag'][1]} frames" + (f", at most {s['pace']} presses while one version serves (then "
                     f"it waits for the next, or {s['pace_wait']} steps)" if s.get("pace") else "")
                     + (f", {s['upfront']:.0%} of the budget at once and the rest pro rata over the run"
                        if s.get("upfront", 1) < 1 else "") + ".")
    lines += ["", "| task | arm | true success | claimed | rewarded | hacking | early | corrections | wall (RL) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    seeds_of: dict[tuple[str, str], list[int]] = {}
    copied: set[tuple[str, str]] = set()
    for r in summary["runs"]:
        seeds_of.setdefault((r["task"], r["arm"]), []).append(r["seed"])
        if r.get("provenance"):
            copied.add((r["task"], r["arm"]))
    for task, arms in summary["summary"].items():
        for arm, cell in arms.items():
            failed = f" ({len(cell['failed'])} failed)" if cell["failed"] else ""
            failed += f", seed {'/'.join(map(str, sorted(seeds_of.get((task, arm), []))))}"
            failed += " †" if (task, arm) in copied else ""
            wall = cell.get("rl_wall_s")
            minutes = f"{wall['mean'] / 60:.0f} min" if wall else "n/a"
            lines.append(f"| {task} | {arm}{failed} | {fmt(cell, 'true_success')} | {fmt(cell, 'claimed_success')} | "
                         f"{fmt(cell, 'rewarded_success')} | {fmt(cell, 'hacking_rate')} | "
                         f"{fmt(cell, 'early_claims')} | {fmt(cell, 'corrections_used', False)} | {minutes} |")
    if copied:
        lines += ["", "† a run of an earlier benchmark or a development run, copied into this benchmark's folder (its "
                  "`provenance` field says from where; *rewarded* derived as claimed - hacking where the run predates "
                  "that metric)."]
    targets = [(task, arm, cell["targets"]) for task, arms in summary["summary"].items() for arm, cell in arms.items()
               if cell.get("targets")]
    if targets:
        lines += ["", "Targets (issue 31):", ""]
        for task, arm, t in targets:
            extra = ""
            if "versions_early_max" in summary["summary"][task][arm]:
                c = summary["summary"][task][arm]
                extra = (f"; the most any version published by the retrainer fires by step {EARLY_STEPS}: "
                         f"{100 * c['versions_early_max']:.0f} % of evaluation episodes (the trained checkpoint it "
                         f"started from: {100 * c.get('base_early_max', 0.0):.0f} %)")
            lines.append(f"- {task} / {arm}: " + ", ".join(f"{k} {'yes' if v else '**no**'}" for k, v in t.items())
                         + extra)
    results = ROOT / "bench" / "results"
    earlier = sorted(p.name for p in results.glob("rl-*.json") if p.resolve() != json_path.resolve())
    if earlier:
        listed = ", ".join(f"`bench/results/{n}`" for n in earlier)
        lines += ["", f"Earlier runs (other code, other arms): {listed}."]
    lines += ["", f"![learning curves]({FIGURE.name})", "", DOC_END]
    from run_all import replace_section

    replace_section(DOC, DOC_START, DOC_END, "\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("run", "smoke", "report"):
        q = sub.add_parser(name)
        q.add_argument("--out", required=True, help="runs, classifiers and the summary go here")
        q.add_argument("--json", help="write the summary here (default <out>/rl.json)")
        q.add_argument("--doc", action="store_true", help="also rewrite docs/benchmarks.md's RL section and docs/rl.png")
        if name == "report":
            continue
        q.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
        q.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS))
        q.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
        q.add_argument("--data-dir", help="where the recorded sets are rendered, or found when there (default <out>/data)")
        q.add_argument("--checkpoint", help="use this hilreward classifier for every task (skips training)")
        q.add_argument("--dataset", help="the recorded set that goes with --checkpoint (the server retrains on it)")
        q.add_argument("--lerobot-steps", type=int, default=300)
        q.add_argument("--kill-server-at", nargs="*", metavar="ARM=STEP",
                       help="fault injection: kill that corrected arm's reward server at that step")
        for f in Settings.__dataclass_fields__.values():
            if f.name == "lag":
                q.add_argument("--lag", type=int, nargs=2)
            else:
                kind = type(f.default)
                q.add_argument(f"--{f.name.replace('_', '-')}", default=None,
                               type=(lambda v: v.lower() in ("1", "true", "yes")) if kind is bool else kind)
    args = p.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if getattr(args, "lag", None):
        args.lag = tuple(args.lag)
    {"run": cmd_run, "smoke": cmd_smoke, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
