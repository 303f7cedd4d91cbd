"""The reward rule, in one place: how one step's probabilities become success, reward and terminate.

- The **success probability** of a step is the binary model's probability, or a multi-class model's
  probability of ``success_class`` (:func:`success_probability`; :func:`success_probabilities` for a batch; both
  from :mod:`hilreward.success`, where the success decision lives for every path, the retrainer's included).
- **Success** is a success probability ``>= threshold`` held for ``consecutive`` steps in a row of one
  episode (the debounce ``streak``). With ``cautious``, a step counts only where the labelled frames back it
  too: its ``support`` (the share of successes among its nearest labelled frames,
  :mod:`hilreward.models.support`) is at least :data:`MIN_SUPPORT`; a head that extrapolates to a state no
  labelled success resembles is not paid. A human label, when there is one, wins for its step: success is the
  label, the probability counts as the label, and the streak restarts full (success) or empty (failure).
- **State gate** (``success_when``, optional): a step whose robot state fails the condition is no success and,
  in ``dense`` mode, pays 0 (:mod:`hilreward.deploy.condition`; HIL-SERL's per-task state check). A step counts
  toward the streak only when it passes the gate too.
- **Reward**: ``success_reward`` on success, else 0 (``mode=sparse``), or ``probability * success_reward``
  (``mode=dense``). **Terminate**: ``success and terminate_on_success``.

:class:`~hilreward.deploy.RewardFunction`, :func:`~hilreward.deploy.relabel_rewards` and the reward server
judge with :func:`judge` (stored frames, which have no episode order, with :func:`judge_frames`); corrections,
the review page, ``hilreward corrections``, the retrainer and the client read success probabilities with
:func:`success_probability`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import numpy as np

from ..config import check_values
from ..debounce import streaks
from ..errors import ConfigError, InputError
from ..success import success_probabilities, success_probability, successes
from .condition import StateCondition

Mode = Literal["sparse", "dense"]


@dataclass
class RewardOptions:
    """How probabilities become rewards (the keys of ``hilreward serve`` and ``RewardFunction.from_pretrained``)."""

    success_threshold: Optional[float] = None
    """Success when the success probability is >= this; None: the checkpoint's threshold (0.5 without one)."""
    success_reward: float = 1.0
    """Reward on success (sparse) or the scale of the probability (dense)."""
    terminate_on_success: bool = True
    """Set ``terminate`` on success."""
    mode: Mode = "sparse"
    """``sparse``: reward = success_reward on success, else 0; ``dense``: reward = probability * success_reward."""
    consecutive: int = 1
    """Frames in a row at or above the threshold before success (debounce), counted per episode."""
    success_class: int = -1
    """Multi-class only: the class whose probability counts as success (default: the last)."""
    success_when: Optional[str] = None
    """A condition on the robot state that success must also meet, e.g. ``state[2] > 0.4 and gripper < 0.1``
    (``state[i]``, names from ``state_names``, numbers, + - * /, abs(), comparisons, and / or / not; never eval'd).
    Each step then needs its ``observation.state``. None: the classifier alone decides."""
    state_names: Optional[list[str]] = None
    """Names of the entries of ``observation.state`` (e.g. the dataset's ``features[observation.state].names``),
    for ``success_when`` to read by name."""
    cautious: bool = False
    """Pay success only where the labelled frames back the head (support >= 1/2, see the module docstring); needs
    a checkpoint with a support bank (``hilreward train`` writes one)."""

    def validate(self) -> None:
        check_values(self)
        self.condition()
        if self.success_threshold is not None and not 0.0 <= self.success_threshold <= 1.0:
            raise ConfigError(f"success_threshold={self.success_threshold}: must be within [0, 1]")
        if int(self.consecutive) != self.consecutive or self.consecutive < 1:
            raise ConfigError(f"consecutive={self.consecutive}: must be an integer >= 1")

    def condition(self) -> Optional[StateCondition]:
        """``success_when`` parsed (ConfigError saying what is not allowed), None without one."""
        if self.success_when is None:
            return None
        key = (self.success_when, tuple(self.state_names or ()))
        cached = self.__dict__.get("_condition")  # parsed once per text (judge runs every step)
        if cached is None or cached[0] != key:
            cached = self.__dict__["_condition"] = (key, StateCondition.parse(self.success_when, self.state_names))
        return cached[1]


@dataclass
class Judgement:
    """The rule's answer for one step."""

    probability: float
    """The success probability (the label's 0 / 1 when a human label decided)."""
    success: bool
    reward: float
    terminate: bool
    streak: int
    """The episode's debounce streak after this step (pass it to the next step's :func:`judge`)."""


def _threshold(options: RewardOptions, threshold: Optional[float]) -> float:
    """``options.success_threshold``, else the model's ``threshold``."""
    t = options.success_threshold if options.success_threshold is not None else threshold
    if t is None:
        raise ConfigError("no success threshold: set success_threshold or pass the model's threshold")
    return t


MIN_SUPPORT = 0.5
"""``cautious``: the least share of successes among a frame's nearest labelled frames that lets it count."""


def backed(support: Any, options: RewardOptions) -> Any:
    """Whether ``support`` (a float or an array) lets a step count: always without ``cautious``; with it, support
    ``>= MIN_SUPPORT`` (ConfigError when the model gives none)."""
    if not options.cautious:
        return True
    if support is None:
        raise ConfigError("cautious=true needs support from the model: this checkpoint has no support bank (train "
                          "it with this hilreward, or serve without cautious)")
    return np.asarray(support) >= MIN_SUPPORT


def _gate(options: RewardOptions, state: Any) -> Any:
    """``success_when`` on ``state`` (True without a condition); InputError when a condition has no state."""
    condition = options.condition()
    return True if condition is None else condition(state)


def judge(probability: Any, options: RewardOptions, streak: int = 0, threshold: Optional[float] = None,
          label: Optional[int] = None, state: Any = None, support: Optional[float] = None) -> Judgement:
    """Judge one step of an episode whose debounce streak so far is ``streak`` (0 at its first step).

    ``probability``: the model's output for the step (a float, or class probabilities); ``threshold``: the
    served version's threshold when ``options.success_threshold`` is None; ``label``: a human's 1 / 0 that wins;
    ``state``: the step's ``observation.state`` (a vector, or a dict of named numbers), needed by ``success_when``;
    ``support``: the step's support (needed with ``cautious``).
    """
    t = _threshold(options, threshold)
    score = success_probability(probability, options.success_class)
    gate = bool(_gate(options, state)) and bool(backed(support, options)) if label is None else True
    streak = int(streaks([score >= t and gate], streak)[0])
    success = streak >= options.consecutive
    if label is not None:
        success, score = bool(label), float(bool(label))
        streak = options.consecutive if success else 0
    reward = options.success_reward * (float(success) if options.mode == "sparse" else score * gate)
    return Judgement(score, success, float(reward), bool(success and options.terminate_on_success), streak)


def judge_frames(probs: np.ndarray, options: RewardOptions, threshold: Optional[float] = None,
                 states: Any = None, support: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(success probability, success, reward) of stored frames, each on its own (no debounce: the frames of a
    replay buffer have no episode order), by the same rule as :func:`judge`; ``states``: their
    ``observation.state`` rows (N, D) (or a dict of (N,) arrays), needed by ``success_when``; ``support``: theirs,
    needed with ``cautious``."""
    t = _threshold(options, threshold)
    score = np.asarray(success_probabilities(probs, options.success_class), dtype=np.float32)
    gate = np.atleast_1d(np.asarray(_gate(options, states), dtype=bool)) \
        if options.success_when is not None and len(score) else np.ones(len(score), dtype=bool)
    if gate.shape != score.shape:
        raise InputError(f"{gate.size} states for {score.size} frames")
    gate = gate & backed(support, options)
    success = successes(score, t) & gate
    reward = options.success_reward * (success.astype(np.float32) if options.mode == "sparse" else score * gate)
    return score, success, reward.astype(np.float32)


__all__ = ["MIN_SUPPORT", "RewardOptions", "Judgement", "backed", "judge", "judge_frames", "success_probability",
           "success_probabilities"]
