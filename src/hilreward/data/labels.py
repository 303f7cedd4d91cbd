"""Label alignment: which frame a row's label belongs to.

A LeRobot row holds the observation *before* a step and ``next.reward`` *after* it.
``align='current'`` gives each frame the value that arrived *at* it: the previous row's value
within the episode, 0 for an episode's first frame (right for ``next.*`` keys).
``align='next'`` reads the row's own value as recorded (LeRobot's pairing for ``next.reward``,
which fires one step before success is visible; right for per-frame keys such as
``observation.success`` or ``complementary_info.*``).
``align='auto'`` (the default) decides by key: ``next.*`` keys are shifted (``current``), every
other key is read as recorded (``next``).
"""

from __future__ import annotations

from typing import get_args

import numpy as np

from ..config import Alignment, one_of
from ..errors import DatasetError

ALIGNMENTS = get_args(Alignment)
NEXT_PREFIX = "next."


def resolve_alignment(key: str, align: str) -> str:
    """``current`` or ``next``: what ``align`` means for label ``key`` (``auto`` decides by key)."""
    one_of(align, Alignment, "label.align")
    if align == "auto":
        return "current" if key.startswith(NEXT_PREFIX) else "next"
    return align


def describe_alignment(key: str, align: str) -> str:
    """One line for inspect, eval and the report, e.g. ``align=auto (current): next.reward shifted to the frame it
    judges``."""
    resolved = resolve_alignment(key, align)
    what = f"{key} shifted to the frame it judges" if resolved == "current" else f"{key} read as recorded"
    return f"align={align}{f' ({resolved})' if align == 'auto' else ''}: {what}"


def align_labels(values: np.ndarray, episode_index: np.ndarray, align: str, key: str) -> np.ndarray:
    """Shift per-row ``values`` of label ``key`` (rows sorted by episode, frame) according to ``align``."""
    values = np.asarray(values)
    if resolve_alignment(key, align) == "next":
        return values.copy()
    out = np.zeros_like(values)
    out[1:] = values[:-1]
    first = np.ones(len(values), dtype=bool)
    first[1:] = episode_index[1:] != episode_index[:-1]
    out[first] = 0
    return out


def binarize(raw: np.ndarray, threshold: float, what: str) -> np.ndarray:
    """int64 labels of a label column: float values ``>= threshold`` are 1, bool and integer values as they are."""
    if raw.dtype.kind == "f":
        return (raw >= threshold).astype(np.int64)
    if raw.dtype.kind in "biu":
        return raw.astype(np.int64)
    raise DatasetError(f"{what} has dtype {raw.dtype}; use a float, bool or integer column")
