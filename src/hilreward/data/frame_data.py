"""FrameData: frames, labels and row identity of a dataset selection, as training and eval consume them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import DatasetConfig, LabelConfig
from .reader import open_dataset


@dataclass
class FrameData:
    images: dict[str, np.ndarray]
    """Full camera key -> uint8 (N,H,W,3), memory-mapped from the frame cache where possible."""
    episode_index: np.ndarray
    """int64 (N,) episode of each row."""
    frame_index: np.ndarray
    """int64 (N,) frame of each row within its episode."""
    timestamp: np.ndarray
    """float64 (N,) seconds since the episode start."""
    labels: np.ndarray | None
    """int64 (N,) labels, or None when none were asked for (or the key is absent and not required)."""
    camera_keys: list[str]
    """Camera keys in model order."""
    fps: float
    """Dataset frame rate."""
    fingerprint: str
    """Dataset fingerprint (changes when any file changes); use it in derived cache keys."""

    def __len__(self) -> int:
        return len(self.episode_index)

    def subset(self, mask_or_indices) -> "FrameData":
        """Rows selected by a boolean mask or an index array (frames are copied out of the memmap)."""
        idx = np.asarray(mask_or_indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return FrameData(
            images={k: v[idx] for k, v in self.images.items()},
            episode_index=self.episode_index[idx], frame_index=self.frame_index[idx],
            timestamp=self.timestamp[idx], labels=None if self.labels is None else self.labels[idx],
            camera_keys=list(self.camera_keys), fps=self.fps, fingerprint=self.fingerprint)


def load_frame_data(dataset: DatasetConfig, label: LabelConfig | None, image_size: tuple[int, int],
                    cache_dir: str | None = None, require_labels: bool = True) -> FrameData:
    """Open ``dataset``, decode (or reuse cached) frames at ``image_size`` and compute labels.

    With ``require_labels=False`` a missing label column yields ``labels=None`` instead of an error.
    """
    ds = open_dataset(dataset)
    cameras = ds.resolve_cameras(dataset.cameras)
    episodes = dataset.episodes
    rows = ds.read_rows(["episode_index", "frame_index", "timestamp"], episodes)
    labels = None
    if label is not None and (require_labels or label.key in ds.columns):
        labels = ds.labels(label.key, label.threshold, label.align, episodes)
    images = ds.frames(cameras, tuple(image_size), episodes, cache_dir)
    return FrameData(images=images, episode_index=rows["episode_index"], frame_index=rows["frame_index"],
                     timestamp=rows["timestamp"], labels=labels, camera_keys=cameras, fps=ds.fps,
                     fingerprint=ds.fingerprint)
