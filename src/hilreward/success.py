"""Which frame is a success, in one place: the success probability at the threshold.

- A binary model's success probability is its probability; a multi-class model's is the probability of its
  ``success_class`` (default: the last class), never the arg-max of the classes.
- A frame is a success when its success probability is ``>= threshold`` (:func:`successes`). The reward rule
  (``deploy.rule``, with its debounce, state gate and caution on top), ``hilreward predict`` and the retrainer
  decide by it.
- A class decision that agrees with it (:func:`decided_classes`): the success label where the frame is a success,
  else the most probable other class. The retrainer judges corrections and offline frames by it.

Below ``deploy`` and ``evaluation`` both, and light (numpy only): LeRobot's own venv imports the reward rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ConfigError


def check_success_class(num_classes: int, success_class: int) -> None:
    """ConfigError unless ``success_class`` names a class of a ``num_classes`` model (any value: a binary model)."""
    if num_classes > 2 and not -num_classes <= success_class < num_classes:
        raise ConfigError(f"success_class={success_class}: this model has {num_classes} classes; pass one of "
                          f"0..{num_classes - 1} (or -1, the last)")


def success_label(num_classes: int, success_class: int = -1) -> int:
    """The label that means success: 1 for a binary model, ``success_class`` (counted from the end when negative)
    for a multi-class one."""
    return success_class % num_classes if num_classes > 2 else 1


def success_probability(probability: Any, success_class: int = -1) -> float:
    """One step's success probability: a binary probability itself, else class ``success_class`` of a list."""
    p = np.asarray(probability, dtype=np.float64)
    return float(p) if p.ndim == 0 else float(p[success_class])


def success_probabilities(probs: np.ndarray, success_class: int = -1) -> np.ndarray:
    """A batch's success probabilities: (N,) binary probabilities as they are, (N, C) class probabilities' column
    ``success_class``."""
    probs = np.asarray(probs) if not hasattr(probs, "ndim") else probs
    return probs if probs.ndim == 1 else probs[:, success_class]


def successes(probs: np.ndarray, threshold: float, success_class: int = -1) -> np.ndarray:
    """Which of a batch's frames are a success (bool (N,)): success probability ``>= threshold``."""
    return np.asarray(success_probabilities(probs, success_class) >= threshold)


def decided_classes(probs: np.ndarray, threshold: float, success_class: int = -1) -> np.ndarray:
    """The class of each frame (int64 (N,)) by the success decision: binary, 1 for a success and 0 otherwise;
    multi-class, the success class for a success and the most probable other class otherwise."""
    probs = np.asarray(probs)
    success = successes(probs, threshold, success_class)
    if probs.ndim == 1:
        return success.astype(np.int64)
    target = success_label(probs.shape[1], success_class)
    others = probs.copy()
    others[:, target] = -np.inf
    return np.where(success, target, others.argmax(-1)).astype(np.int64)


__all__ = ["check_success_class", "decided_classes", "success_label", "success_probabilities", "success_probability", "successes"]
