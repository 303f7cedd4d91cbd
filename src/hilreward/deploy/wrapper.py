"""Gymnasium wrapper: the classifier's reward (and termination) for any env with camera observations.

    env = RewardClassifierWrapper(make_env("drawer-open"), RewardFunction.from_pretrained(ckpt))
    obs, info = env.reset()
    obs, reward, terminated, truncated, info = env.step(action)
    info["reward_classifier"]  # {"probability", "success", "model_version", "episode_id", "override", ...}

Images come from the observation: by default ``obs["pixels"][<camera>]`` (gym-hil's layout), or
``obs["observation.images.<camera>"]`` for flat LeRobot-style observations. ``camera_map`` maps a
checkpoint camera (``front`` or its full key) to another place: a ``"a/b"`` path or a tuple of keys.

An episode keeps one model version from reset to end (see :class:`RewardFunction`). With
``keep_frames=True`` the judged frames travel in ``info["reward_classifier"]["frames"]`` (with
``env_terminated``, the env's own termination), so a learner can relabel its replay buffer when a
new version is served (:class:`hilreward.integrations.sb3.RelabelCallback`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import gymnasium as gym

from ..errors import ConfigError, InputError
from ..utils import CAMERA_PREFIX, full_key
from .reward_function import RewardFunction

REWARD_MODES = ("replace", "add")
Path = Union[str, Sequence[str]]


class RewardClassifierWrapper(gym.Wrapper):
    """Replaces (or adds to) the env reward with the classifier's and ends episodes on success."""

    def __init__(self, env: gym.Env, reward_fn: RewardFunction, camera_map: Mapping[str, Path] | None = None,
                 reward_mode: str = "replace", keep_frames: bool = False) -> None:
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

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.reward_fn.reset()
        return obs, info

    def step(self, action: Any):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        images = self.images(obs)
        result = self.reward_fn(images)
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
        return obs, reward, bool(terminated or result.terminate), truncated, info

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
                raise InputError(f"camera_map path {'/'.join(path)!r} for {key!r} breaks at {part!r}; available "
                                 f"there: {sorted(node) if isinstance(node, Mapping) else type(node).__name__}")
            node = node[part]
        return node


def _split(path: Path) -> list[str]:
    if isinstance(path, str):
        return [p for p in path.split("/") if p]
    return [str(p) for p in path]
