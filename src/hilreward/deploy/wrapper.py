"""Gymnasium wrapper: the classifier's reward (and termination) for any env with camera observations.

    env = RewardClassifierWrapper(make_env("drawer-open"), RewardFunction.from_pretrained(ckpt))
    obs, info = env.reset()
    obs, reward, terminated, truncated, info = env.step(action)
    info["reward_classifier"]  # {"probability", "success", "model_version", "episode_id", "override", ...}

Images come from the observation: by default ``obs["pixels"][<camera>]`` (gym-hil's layout), or
``obs["observation.images.<camera>"]`` for flat LeRobot-style observations. ``camera_map`` maps a
checkpoint camera (``front`` or its full key) to another place: a ``"a/b"`` path or a tuple of keys.

With ``success_when`` (a condition on the robot state, see :class:`RewardFunction`) the state comes from the
observation too: ``obs["observation.state"]``, ``obs["agent_pos"]`` (gym-hil) or ``obs["state"]``, or the
``state_key`` path given.

An episode keeps one model version from reset to end (see :class:`RewardFunction`). With
``keep_frames=True`` the judged frames travel in ``info["reward_classifier"]["frames"]`` (with
``env_terminated``, the env's own termination, and ``state`` when one was read), so a learner can relabel its
replay buffer when a new version is served (:class:`hilreward.integrations.sb3.RelabelCallback`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import gymnasium as gym

from ..errors import ConfigError, InputError
from ..utils import CAMERA_PREFIX, full_key
from .reward_function import RewardFunction

REWARD_MODES = ("replace", "add")
STATE_KEYS = ("observation.state", "agent_pos", "state")
"""Where the robot state is looked for in an observation, in order (LeRobot's key, gym-hil's, a plain one)."""
Path = Union[str, Sequence[str]]


class RewardClassifierWrapper(gym.Wrapper):
    """Replaces (or adds to) the env reward with the classifier's and ends episodes on success."""

    def __init__(self, env: gym.Env, reward_fn: RewardFunction, camera_map: Mapping[str, Path] | None = None,
                 reward_mode: str = "replace", keep_frames: bool = False, state_key: Path | None = None) -> None:
        """``state_key``: where the robot state is in the observation (a key, an ``"a/b"`` path or a tuple of
        keys), read only when the reward function has ``success_when``; default: the first of
        :data:`STATE_KEYS` there is."""
        super().__init__(env)
        if reward_mode not in REWARD_MODES:
            raise ConfigError(f"reward_mode={reward_mode!r}: use one of {', '.join(REWARD_MODES)}")
        self.reward_fn = reward_fn
        self.reward_mode = reward_mode
        self.keep_frames = keep_frames
        cameras = {full_key(k) for k in reward_fn.camera_keys}
        camera_map = {full_key(k): v for k, v in (camera_map or {}).items()}
        unknown = sorted(set(camera_map) - cameras)
        if unknown:
            raise ConfigError(f"camera_map names {unknown}, which the checkpoint does not have; its cameras: "
                              f"{sorted(cameras)}")
        self._paths = {key: _split(camera_map[key]) if key in camera_map else None for key in reward_fn.camera_keys}
        self._state_path = _split(state_key) if state_key is not None else None

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.reward_fn.reset()
        return obs, info

    def step(self, action: Any):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        images = self.images(obs)
        state = self.state(obs) if self.reward_fn.options.success_when is not None else None
        result = self.reward_fn(images, state=state)
        reward = result.reward if self.reward_mode == "replace" else float(env_reward) + result.reward
        info = dict(info)
        info["reward_classifier"] = {
            "probability": result.probability, "success": result.success, "model_version": result.model_version,
            "episode_id": result.episode_id, "step": result.step, "override": result.override,
            "reward": result.reward, "env_reward": float(env_reward), "latency_ms": result.latency_ms,
            "support": result.support, "novelty": result.novelty,
        }
        if self.keep_frames:
            info["reward_classifier"].update(frames=images, env_terminated=bool(terminated))
            if state is not None:
                info["reward_classifier"]["state"] = state
        return obs, reward, bool(terminated or result.terminate), truncated, info

    def state(self, obs: Any) -> Any:
        """The robot state in an observation (for ``success_when``): at ``state_key``, else the first of
        :data:`STATE_KEYS` there is."""
        if not isinstance(obs, Mapping):
            raise InputError(f"the observation is a {type(obs).__name__}, not a dict holding the robot state that "
                             "success_when reads")
        if self._state_path is not None:
            return self._lookup(obs, "state", self._state_path)
        found = next((k for k in STATE_KEYS if k in obs), None)
        if found is None:
            raise InputError(f"success_when needs the robot state, and the observation has none of {list(STATE_KEYS)} "
                             f"(top-level keys {sorted(obs)}): pass state_key='a/b'")
        return obs[found]

    def images(self, obs: Any) -> dict[str, Any]:
        """The checkpoint's cameras picked out of an observation."""
        if not isinstance(obs, Mapping):
            raise InputError(f"the observation is a {type(obs).__name__}, not a dict with camera images; wrap an "
                             "env with image observations (e.g. obs['pixels']['front'])")
        return {key: self._lookup(obs, key, path) for key, path in self._paths.items()}

    @staticmethod
    def _lookup(obs: Mapping[str, Any], key: str, path: list[str] | None) -> Any:
        if path is None:
            short = key[len(CAMERA_PREFIX):] if key.startswith(CAMERA_PREFIX) else key
            pixels = obs.get("pixels")
            if isinstance(pixels, Mapping) and short in pixels:
                return pixels[short]
            if key in obs:
                return obs[key]
            raise InputError(f"camera {key!r} is not in the observation (looked for obs['pixels'][{short!r}] and "
                             f"obs[{key!r}]; top-level keys {sorted(obs)}): pass camera_map={{{short!r}: 'a/b'}}")
        node: Any = obs
        for part in path:
            if not isinstance(node, Mapping) or part not in node:
                raise InputError(f"{'state_key' if key == 'state' else 'camera_map'} path {'/'.join(path)!r} for "
                                 f"{key!r} breaks at {part!r}; available "
                                 f"there: {sorted(node) if isinstance(node, Mapping) else type(node).__name__}")
            node = node[part]
        return node


def _split(path: Path) -> list[str]:
    if isinstance(path, str):
        return [p for p in path.split("/") if p]
    return [str(p) for p in path]
