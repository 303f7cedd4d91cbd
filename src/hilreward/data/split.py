"""Episode-level train/validation split, class-balanced sample weights and the weight of frames near a label change."""

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


def edge_weights(episode_index: np.ndarray, frame_index: np.ndarray, labels: np.ndarray, frames: int,
                 factor: float) -> np.ndarray:
    """Per-sample multiplier: ``factor`` for the ``frames`` frames on either side of each label change in an episode,
    else 1, float64."""
    episode_index, frame_index, labels = (np.asarray(a) for a in (episode_index, frame_index, labels))
    out = np.ones(labels.size, dtype=np.float64)
    for e in np.unique(episode_index):
        idx = np.flatnonzero(episode_index == e)
        idx = idx[np.argsort(frame_index[idx], kind="stable")]
        f, y = frame_index[idx], labels[idx]
        change = np.flatnonzero(y[1:] != y[:-1])  # between positions i and i + 1
        if change.size:
            before, after = f[change], f[change + 1]  # the last frame of one label, the first of the next
            near = np.minimum(np.abs(f[:, None] - before).min(1), np.abs(f[:, None] - after).min(1))
            out[idx[near < frames]] = factor
    return out
