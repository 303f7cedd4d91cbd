"""Label alignment: which frame a row's ``next.reward`` belongs to.

A LeRobot row holds the observation *before* a step and ``next.reward`` *after* it.
``align='next'`` keeps that pairing (a classifier then fires one step before success is
visible); ``align='current'`` gives each frame the reward that arrived *at* it: the previous
row's value within the episode, 0 for an episode's first frame.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DatasetError

ALIGNMENTS = ("current", "next")


def align_labels(values: np.ndarray, episode_index: np.ndarray, align: str) -> np.ndarray:
    """Shift per-row ``values`` (rows sorted by episode, frame) according to ``align``."""
    if align not in ALIGNMENTS:
        raise ConfigError(f"label.align={align!r} is not known (known: {', '.join(ALIGNMENTS)})")
    values = np.asarray(values)
    if align == "next":
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
