"""Training batches, one per step, drawn reproducibly.

Each step's batch depends only on ``(seed, step)``: a generator seeded from both picks the frames
(class-balanced ``WeightedRandomSampler`` with weights 1/count, or uniform) and the augmentation.
So a resumed run sees exactly the batches an uninterrupted one would, also with DataLoader workers
prefetching ahead. Both sources are map-style datasets indexed by step, for ``DataLoader(batch_size=None)``.

In data-parallel training every process draws the step's whole batch (and its augmentation) the same
way and keeps its ``share`` of it, so the processes together train on exactly the batch one process
would, whatever their number.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from .augment import ColorJitter, random_shift, shift_offsets
from ..data import gather_rows
from ..models.preprocessing import to_float_chw
from .features import gather_features


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))


class _StepBatches(Dataset):
    def __init__(self, rows: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, balanced: bool,
                 weights: np.ndarray | None = None, share: slice = slice(None)):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.weights = torch.as_tensor(weights if balanced else np.ones(len(rows)), dtype=torch.float64)
        self.share = share

    def __len__(self) -> int:  # indexed by step; the DataLoader's sampler bounds it
        return 2**62

    def draw(self, step: int) -> tuple[np.ndarray, torch.Generator]:
        """Positions (into ``rows``) of the step's whole batch, and the generator to draw its augmentation from."""
        g = step_generator(self.seed, step)
        picks = list(WeightedRandomSampler(self.weights, self.batch_size, replacement=True, generator=g))
        return np.asarray(picks, dtype=np.int64), g


class PixelBatches(_StepBatches):
    """Frames (float (B,3,H,W) in [0,1]) and labels; per sample and camera random-shifted when ``pad`` > 0, then
    colour-jittered when ``color`` is active."""

    def __init__(self, images: dict[str, np.ndarray], rows, labels, batch_size, seed, balanced, weights=None,
                 pad: int = 0, share: slice = slice(None), color: ColorJitter | None = None):
        super().__init__(rows, labels, batch_size, seed, balanced, weights, share)
        self.images = images
        self.pad = pad
        self.color = color if color is not None and color.active else None

    def __getitem__(self, step: int):
        pos, g = self.draw(step)
        offsets = {cam: shift_offsets(len(pos), self.pad, g)[self.share] for cam in self.images} if self.pad > 0 else {}
        factors = {cam: self.color.factors(len(pos), g)[self.share] for cam in self.images} if self.color else {}
        pos = pos[self.share]
        inputs = {}
        for cam, frames in gather_rows(self.images, self.rows[pos]).items():  # sorted reads
            x = to_float_chw(frames, cam)
            x = random_shift(x, self.pad, offsets[cam]) if self.pad > 0 else x
            inputs[cam] = self.color(x, factors[cam]) if self.color else x
        return inputs, torch.from_numpy(self.labels[pos])


class FeatureBatches(_StepBatches):
    """Cached encoder features (float32) of one randomly chosen precomputed view per sample, and labels.

    ``views[0]`` holds every frame of the dataset; augmented views ``views[1:]`` hold the training
    ``rows`` only (row ``i`` of such a view is frame ``rows[i]``).
    """

    def __init__(self, views: list[dict[str, np.ndarray]], rows, labels, batch_size, seed, balanced, weights=None,
                 share: slice = slice(None)):
        super().__init__(rows, labels, batch_size, seed, balanced, weights, share)
        self.views = views

    def __getitem__(self, step: int):
        inputs, labels, _ = self.batch(step)
        return inputs, labels

    def batch(self, step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, np.ndarray]:
        """The step's features, labels and positions (into ``rows``) of this process's share."""
        pos, g = self.draw(step)
        which = torch.randint(len(self.views), (len(pos),), generator=g).numpy()[self.share]
        pos = pos[self.share]
        rows = self.rows[pos]
        out: dict[str, torch.Tensor] = {}
        for v in np.unique(which):
            sel = np.flatnonzero(which == v)
            for cam, f in gather_features(self.views[v], rows[sel] if v == 0 else pos[sel]).items():
                if cam not in out:
                    out[cam] = torch.empty((len(pos), *f.shape[1:]), dtype=torch.float32)
                out[cam][torch.from_numpy(sel)] = f
        return out, torch.from_numpy(self.labels[pos]), pos


class MemberBatches(Dataset):
    """One batch per ensemble member per step, each from its own source (member ``i``'s rows: the training rows
    outside fold ``i``), stacked member after member: inputs (k*B, ...) and labels (k*B,)."""

    def __init__(self, sources: list[_StepBatches]):
        self.sources = sources

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int):
        parts = [source[step] for source in self.sources]
        inputs = {cam: torch.cat([p[0][cam] for p in parts]) for cam in parts[0][0]}
        return inputs, torch.cat([p[1] for p in parts])
