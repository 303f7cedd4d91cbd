"""Episode-level train/validation split and class-balanced sample weights."""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from ..errors import ConfigError


def split_episodes(episodes: list[int], val_fraction: float, seed: int,
                   val_episodes: list[int] | None = None,
                   succeeding: Optional[Iterable[int]] = None) -> tuple[list[int], list[int]]:
    """Split episode indices into (train, val); never by frame, since neighbouring frames are near-duplicates.

    ``val_episodes`` (explicit) wins over ``val_fraction``. Otherwise ``round(val_fraction * n)`` episodes are held
    out (at least one when ``val_fraction > 0`` and n >= 2), drawn by a seeded shuffle. With ``succeeding`` (the
    episodes with a success label) the draw is stratified: the held-out episodes take succeeding and failing ones in
    the dataset's proportion, at least one succeeding when any succeeds (and one failing when more than one is held
    out and any fails), while training keeps at least one of each kind when it can.
    """
    episodes = [int(e) for e in episodes]
    if val_episodes is not None:
        val = [int(e) for e in val_episodes]
        unknown = sorted(set(val) - set(episodes))
        if unknown:
            raise ConfigError(f"split.val_episodes {unknown} are not among the dataset's episodes {episodes}")
        train = [e for e in episodes if e not in set(val)]
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"split.val_fraction={val_fraction} must be in [0, 1)")
        n_val = int(round(val_fraction * len(episodes)))
        if val_fraction > 0 and len(episodes) >= 2:
            n_val = min(max(n_val, 1), len(episodes) - 1)
        rng = np.random.default_rng(seed)
        if succeeding is None:
            shuffled = rng.permutation(len(episodes))
            val = sorted(episodes[i] for i in shuffled[:n_val])
        else:
            good = set(int(e) for e in succeeding)
            kinds = [[e for e in episodes if e in good], [e for e in episodes if e not in good]]
            kinds = [[k[i] for i in rng.permutation(len(k))] for k in kinds]  # seeded shuffle within each kind
            val = sorted(_stratified(kinds[0], kinds[1], n_val))
        train = [e for e in episodes if e not in set(val)]
    if not train:
        raise ConfigError("no training episodes left after the split; hold out fewer episodes")
    return sorted(train), sorted(val)


def _stratified(good: list[int], bad: list[int], n_val: int) -> list[int]:
    """``n_val`` episodes from the shuffled ``good`` (succeeding) and ``bad`` ones, in their proportion."""
    n = len(good) + len(bad)
    if n_val <= 0 or n == 0:
        return []
    n_good = int(round(n_val * len(good) / n))
    if good and n_good == 0:
        n_good = 1  # a held-out set that can judge a success
    if bad and n_good == n_val and n_val > 1:
        n_good -= 1  # and one that can judge a failure, when more than one is held out
    n_good = min(n_good, max(len(good) - 1, 0))  # training keeps one of each kind
    n_bad = min(n_val - n_good, max(len(bad) - 1, 0))
    short = n_val - n_good - n_bad  # beyond those limits: failing episodes first, training keeps the successes
    n_bad += min(short, len(bad) - n_bad)
    n_good += n_val - n_good - n_bad
    return good[:n_good] + bad[:n_bad]


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weight 1/count(class of the sample) (HIL-SERL's balanced sampling), float64."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, dtype=np.float64)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse].astype(np.float64)
