"""Stable-Baselines3: relabel an off-policy replay buffer (SAC, TD3, DDPG, DQN) with every served version.

    env = RewardClassifierWrapper(make_env(...), RewardFunction.from_pretrained(None, backend="grpc",
                                  address=address), keep_frames=True)
    versions = ServedVersions(address, versions_dir="outputs/serve/versions")
    model.learn(50_000, callback=RelabelCallback(versions))

The wrapper hands each step's frames to the callback through ``info["reward_classifier"]``; the
callback keeps them beside the replay buffer (same slots, overwritten as the buffer wraps), and when
a new version is served it recomputes every stored transition's reward with it
(:func:`~hilreward.deploy.relabel_rewards`), and its termination: a transition ends its episode when
the env ended it or (with ``terminate_on_success``) when the new version calls it a success, so a
false success the policy was paid for stops being an end, and Q-targets bootstrap through it (SB3
stored the true next observation). Transitions added by hand (demonstrations) go through
:meth:`RelabelCallback.record` first.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Optional

import numpy as np

from ..deploy.replay import relabel_rewards
from ..errors import ConfigError

try:
    from stable_baselines3.common.callbacks import BaseCallback
except ImportError:  # stable-baselines3 is optional
    BaseCallback = object

CHUNK = 4096
"""Transitions judged per relabel_rewards call (bounds the copy of frames)."""


class FrameStore:
    """Frames and episode flags per replay-buffer slot (buffer_size, n_envs), allocated on the first record."""

    def __init__(self, buffer_size: int, n_envs: int, max_memory_gb: float) -> None:
        self.shape = (buffer_size, n_envs)
        self.max_memory_gb = max_memory_gb
        self.frames: dict[str, np.ndarray] = {}
        self.states: Optional[np.ndarray] = None
        """Robot state per slot (for ``success_when``), allocated on the first state recorded."""
        self.env_terminated = np.zeros(self.shape, bool)
        self.truncated = np.zeros(self.shape, bool)
        self.filled = np.zeros(self.shape, bool)

    def put(self, pos: int, env: int, frames: Mapping[str, Any], env_terminated: bool, truncated: bool,
            state: Any = None) -> None:
        if not self.frames:
            self._allocate(frames)
        if state is not None:
            values = np.asarray(state, dtype=np.float64).reshape(-1)
            if self.states is None:
                self.states = np.full((*self.shape, values.size), np.nan)
            if values.size != self.states.shape[-1]:
                raise ConfigError(f"robot state of {values.size} values, earlier ones {self.states.shape[-1]}")
            self.states[pos, env] = values
        for key, store in self.frames.items():
            frame = np.asarray(frames[key])
            if frame.shape != store.shape[2:]:
                raise ConfigError(f"camera {key!r}: frame of shape {frame.shape}, earlier ones {store.shape[2:]}; "
                                  "render every step at one size")
            store[pos, env] = frame
        self.env_terminated[pos, env], self.truncated[pos, env] = env_terminated, truncated
        self.filled[pos, env] = True

    def _allocate(self, frames: Mapping[str, Any]) -> None:
        sizes = {k: np.asarray(v).shape for k, v in frames.items()}
        need = sum(int(np.prod(s)) for s in sizes.values()) * int(np.prod(self.shape)) / 1e9
        if need > self.max_memory_gb:
            raise ConfigError(f"keeping the frames of {self.shape[0]} x {self.shape[1]} buffer slots needs {need:.1f} GB "
                              f"(max_memory_gb={self.max_memory_gb}): use a smaller buffer_size, smaller frames, or "
                              "raise max_memory_gb")
        self.frames = {k: np.zeros((*self.shape, *s), np.uint8) for k, s in sizes.items()}


class RelabelCallback(BaseCallback):
    """Keeps each transition's frames and relabels the replay buffer whenever ``versions`` serves a new version.

    ``versions``: a :class:`~hilreward.integrations.versions.ServedVersions` (anything whose ``poll()`` returns
    None or an update with ``reward_fn``, ``pin`` and ``version``). ``relabel=False`` keeps the frames and
    follows the versions without changing the buffer (for comparisons). ``events`` lists every relabelling.
    """

    def __init__(self, versions: Any, relabel: bool = True, max_memory_gb: float = 8.0, batch_size: int = 256,
                 verbose: int = 0) -> None:
        if BaseCallback is object:
            raise ConfigError("RelabelCallback is a stable-baselines3 callback: `pip install stable-baselines3`")
        super().__init__(verbose)
        self.versions = versions
        self.relabel_enabled = relabel
        self.max_memory_gb = max_memory_gb
        self.batch_size = batch_size
        self.store: Optional[FrameStore] = None
        self.events: list[dict[str, Any]] = []

    # ---- frames
    def _frame_store(self) -> FrameStore:
        buffer = self.model.replay_buffer
        if self.store is None:
            self.store = FrameStore(buffer.buffer_size, buffer.n_envs, self.max_memory_gb)
        return self.store

    def record(self, frames: Mapping[str, Any], env_terminated: bool, truncated: bool, env_index: int = 0,
               state: Any = None) -> None:
        """The frames (and robot state, for ``success_when``) judged for the transition the buffer stores next
        (call before ``replay_buffer.add``)."""
        self._frame_store().put(self.model.replay_buffer.pos, env_index, frames, env_terminated, truncated, state)

    def _on_step(self) -> bool:
        for i, info in enumerate(self.locals["infos"]):
            judged = info.get("reward_classifier") or {}
            if "frames" not in judged:
                raise ConfigError("RelabelCallback needs each step's frames: wrap the env in "
                                  "RewardClassifierWrapper(..., keep_frames=True)")
            self.record(judged["frames"], judged["env_terminated"], bool(info.get("TimeLimit.truncated", False)), i,
                        judged.get("state"))
        update = self.versions.poll()
        if update is not None:
            self.relabel_buffer(update)
        return True

    # ---- relabelling
    def _stored_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, envs) of the slots that hold a stored transition with its frames."""
        buffer = self.model.replay_buffer
        valid = np.zeros(buffer.buffer_size, bool)
        if buffer.full:
            valid[:] = True
        else:
            valid[:buffer.pos] = True
        return np.nonzero(valid[:, None] & self._frame_store().filled)

    def relabel_buffer(self, update: Any) -> dict[str, Any]:
        """Rewards and terminations of every stored transition as ``update.reward_fn`` gives them."""
        start = time.perf_counter()
        buffer, store = self.model.replay_buffer, self._frame_store()
        positions, envs = self._stored_slots()
        event = {"version": update.version, "num_timesteps": int(self.num_timesteps), "transitions": int(len(positions)),
                 "changed": 0, "to_success": 0, "to_failure": 0, "applied": self.relabel_enabled}
        fn = update.reward_fn
        for i in range(0, len(positions), CHUNK):
            p, e = positions[i:i + CHUNK], envs[i:i + CHUNK]
            frames = {k: v[p, e] for k, v in store.frames.items()}
            states = store.states[p, e] if store.states is not None else None
            out = relabel_rewards(fn, frames, previous=buffer.rewards[p, e], version=update.pin,
                                  batch_size=self.batch_size, states=states)
            event["changed"] += out.changed
            event["to_success"] += out.to_success
            event["to_failure"] += out.to_failure
            if not self.relabel_enabled:
                continue
            terminal = store.env_terminated[p, e] | (out.success & fn.options.terminate_on_success)
            truncated = store.truncated[p, e]
            buffer.rewards[p, e] = out.rewards
            buffer.dones[p, e] = terminal | truncated
            if getattr(buffer, "handle_timeout_termination", False):
                buffer.timeouts[p, e] = truncated & ~terminal
        event["seconds"] = round(time.perf_counter() - start, 3)
        self.events.append(event)
        if self.verbose:
            print(f"relabel with {update.version}: {event['changed']} of {event['transitions']} rewards changed "
                  f"({event['seconds']} s){'' if self.relabel_enabled else ' (not applied)'}")
        return event
