"""Rewards that follow the model: the rewards of stored transitions as a (new) version gives them.

    from hilreward.deploy import relabel_rewards
    out = relabel_rewards("state/versions/3", {"front": fronts, "wrist": wrists}, previous=buffer_rewards)
    buffer_rewards[:] = out.rewards          # out.changed rewards differ; out.success for the dones

``reward_fn`` is a :class:`RewardFunction` (any backend: a reward server's ``grpc`` judges with the
version named by ``version``) or a checkpoint, loaded with the fastest backend (``auto``: ONNX Runtime
on the CPU when it matches torch). Frames go through in batches. Success, reward and mode are those of
the reward function's options. Frames are judged one by one: ``consecutive`` (debounce) needs an
episode's earlier frames in order, which a replay buffer does not keep, so it does not apply here.
``success_when`` does, on each transition's stored robot state (``states=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import InputError
from .reward_function import RewardFunction
from .rule import judge_frames


@dataclass
class Relabelled:
    """The stored transitions' rewards as one version gives them."""

    rewards: np.ndarray
    """float32 (N,): ``success_reward`` on success (sparse) or ``probability * success_reward`` (dense)."""
    success: np.ndarray
    """bool (N,): success probability >= the threshold."""
    probabilities: np.ndarray
    """float32 (N,): the success probability."""
    changed: int
    """How many rewards differ from ``previous`` (0 when none was given)."""
    model_version: str
    """The version that judged the frames."""
    was_success: Optional[np.ndarray] = None
    """bool (N,): which ``previous`` rewards were successes (sparse mode: equal to ``success_reward``); None without
    ``previous`` or in dense mode, where a reward does not say it."""

    @property
    def to_success(self) -> int:
        """Transitions that were not a success and are now (0 when ``was_success`` is unknown)."""
        return 0 if self.was_success is None else int(np.count_nonzero(self.success & ~self.was_success))

    @property
    def to_failure(self) -> int:
        """Transitions that were a success and are not now (0 when ``was_success`` is unknown)."""
        return 0 if self.was_success is None else int(np.count_nonzero(~self.success & self.was_success))


def relabel_rewards(reward_fn: RewardFunction | str | Path, frames: dict[str, Any], previous: Any = None, *,
                    version: str | None = None, batch_size: int = 256, states: Any = None) -> Relabelled:
    """Judge stored frames (camera -> (N, H, W, 3) uint8 or (N, 3, H, W) float) and give their rewards.

    ``previous``: the rewards stored now (N,), to count the ones that change. ``version``: the version that
    must judge them (ServingError when a reward server no longer holds it). ``states``: the frames'
    ``observation.state`` rows (N, D) (or a dict of (N,) arrays), which ``success_when`` needs.
    """
    fn = reward_fn if isinstance(reward_fn, RewardFunction) else RewardFunction.from_pretrained(reward_fn)
    try:
        if fn.options.success_when is not None and states is None:
            raise InputError(f"success_when={fn.options.success_when!r} needs the stored transitions' robot states: "
                             "pass states= (observation.state rows)")
        scores = fn.relabel_scores(frames, batch_size=batch_size, version=version)
        score, success, rewards = judge_frames(scores.probabilities, fn.options, states=states,
                                               support=None if scores.support is None else scores.support[:, 0])
        changed, was_success = 0, None
        if previous is not None:
            before = np.asarray(previous, dtype=np.float32).reshape(-1)
            if before.shape != rewards.shape:
                raise InputError(f"previous has {before.size} rewards for {rewards.size} frames")
            changed = int(np.count_nonzero(~np.isclose(before, rewards, atol=1e-6)))
            if fn.options.mode == "sparse":
                was_success = np.isclose(before, fn.options.success_reward)
        return Relabelled(rewards, success, score, changed, version or fn.model_version, was_success)
    finally:
        if fn is not reward_fn:
            fn.close()
