"""Render scripted Meta-World episodes into a LeRobot v3.0 dataset.

Episodes by index mod 4: 0 and 1 the expert, 2 the noisy expert, 3 random actions.
Rows follow LeRobot's convention: row t holds the frame and state *before* step t, the
action taken, and ``next.reward`` (1.0 = Meta-World's success check after the step);
``next.done`` marks each episode's last row. ``observation.success`` is the exact success
of the frame shown, for audits of label alignment.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .env import CAMERAS, SimShift, make_env
from .policies import policy_for_episode, scripted_policy
from ..constants import REWARD_KEY

_FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [4], "names": ["x", "y", "z", "gripper"]},
    "action": {"dtype": "float32", "shape": [4], "names": ["dx", "dy", "dz", "grip"]},
    REWARD_KEY: {"dtype": "float32", "shape": [1], "names": None},
    "next.done": {"dtype": "bool", "shape": [1], "names": None},
    "observation.success": {"dtype": "bool", "shape": [1], "names": None},
}


@dataclass
class GenerateSummary:
    root: str
    """The dataset folder written."""
    task: str
    """Task text stored in the dataset."""
    episodes: int
    """Episodes written."""
    frames: int
    """Rows written (episodes x steps)."""
    positives: int
    """Rows with ``next.reward`` = 1."""
    per_episode: list[dict] = field(default_factory=list)
    """Per episode: policy, positives, first positive row (-1 if none)."""
    seconds_per_episode: float = 0.0
    """Mean wall time to simulate, render and encode one episode."""


def _episode_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def _rollout(env, kind: str, steps: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    obs, info = env.reset(seed=seed)
    policy = scripted_policy(env, kind, seed=seed)
    frames = {name: [] for name in CAMERAS}
    state, action, reward, shown = [], [], [], []
    for _ in range(steps):
        for name in CAMERAS:
            frames[name].append(obs["pixels"][name])
        state.append(obs["agent_pos"])
        shown.append(info["success"])
        act = policy(obs)
        action.append(act)
        obs, rew, _, _, info = env.step(act)
        reward.append(rew)
    done = np.zeros(steps, bool)
    done[-1] = True
    columns = {
        "observation.state": np.stack(state).astype(np.float32),
        "action": np.stack(action).astype(np.float32),
        REWARD_KEY: np.asarray(reward, np.float32),
        "next.done": done,
        "observation.success": np.asarray(shown, bool),
    }
    return {f"observation.images.{k}": np.stack(v) for k, v in frames.items()}, columns


def generate(task: str, out: str | Path, episodes: int, steps: int = 150, image_size: tuple[int, int] = (128, 128),
             seed: int = 0, fps: int = 10, codec: str = "auto", overwrite: bool = False,
             progress: bool = False, shift: SimShift | None = None,
             video_options: dict[str, str] | None = None) -> GenerateSummary:
    """Write ``episodes`` rendered episodes of ``steps`` rows each to the LeRobot v3.0 folder ``out``.

    ``shift`` renders a lighting change and camera jitter (:class:`SimShift`); ``video_options`` go to the encoder. How the set was made (task,
    seed, shift, each episode's policy and front-camera pose) is recorded in ``meta/sim.json``. The folder
    appears only when complete (built in a temp folder, then renamed).
    """
    from ..data import DatasetWriter

    if episodes < 1 or steps < 2:
        raise ConfigError(f"need episodes >= 1 and steps >= 2, got episodes={episodes} steps={steps}")
    height, width = (int(v) for v in image_size)
    shift = shift or SimShift()
    env = make_env(task, (height, width), seed=seed, max_steps=steps, shift=shift)
    cameras = {f"observation.images.{k}": (height, width) for k in CAMERAS}
    summary = GenerateSummary(str(out), env.task.text, episodes, episodes * steps, 0)
    start = time.perf_counter()
    try:
        with DatasetWriter(out, fps=fps, cameras=cameras, features=_FEATURES, codec=codec,
                           robot_type="sawyer", overwrite=overwrite, video_options=video_options) as writer:
            record = {"generator": "hilreward sim", "task": env.task.name, "seed": seed, "steps": steps,
                      "image_size": [height, width], "shift": shift.to_dict(), "episodes": []}
            writer.extra_meta["sim"] = record
            for ep in range(episodes):
                kind = policy_for_episode(ep)
                frames, columns = _rollout(env, kind, steps, _episode_seed(seed, ep))
                writer.add_episode(frames, columns, task=env.task.text)
                hits = np.flatnonzero(columns[REWARD_KEY] > 0.5)
                summary.positives += len(hits)
                summary.per_episode.append({"episode": ep, "policy": kind, "positives": int(len(hits)),
                                            "first_positive": int(hits[0]) if len(hits) else -1})
                record["episodes"].append({"episode": ep, "policy": kind, "front_camera": env.camera_pose})
                if progress:
                    print(f"episode {ep + 1}/{episodes} ({kind}): {len(hits)} positive rows", file=sys.stderr)
            writer.finalize()
    finally:
        env.close()
    summary.seconds_per_episode = (time.perf_counter() - start) / episodes
    return summary
