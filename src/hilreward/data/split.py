"""Episode-level train/validation split and class-balanced sample weights."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def split_episodes(episodes: list[int], val_fraction: float, seed: int,
                   val_episodes: list[int] | None = None) -> tuple[list[int], list[int]]:
    """Split episode indices into (train, val); never by frame, since neighbouring frames are near-duplicates.

    ``val_episodes`` (explicit) wins over ``val_fraction``. Otherwise a seeded shuffle holds out
    ``round(val_fraction * n)`` episodes, at least one when ``val_fraction > 0`` and n >= 2.
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
        shuffled = np.random.default_rng(seed).permutation(len(episodes))
        held = set(shuffled[:n_val].tolist())
        val = sorted(episodes[i] for i in held)
        train = [e for i, e in enumerate(episodes) if i not in held]
    if not train:
        raise ConfigError("no training episodes left after the split; hold out fewer episodes")
    return sorted(train), sorted(val)


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weight 1/count(class of the sample) (HIL-SERL's balanced sampling), float64."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, dtype=np.float64)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse].astype(np.float64)
