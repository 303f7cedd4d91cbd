"""hilreward.data: LeRobot dataset I/O (v3.0 and v2.1), decode-once frame cache, labels, splits, writer."""

from __future__ import annotations

from .cache import cache_root, gather_rows
from .frame_data import FrameData, load_frame_data
from .labels import align_labels
from .reader import EpisodeInfo, LeRobotDataset, open_dataset
from .split import balanced_weights, split_episodes
from .writer import DatasetWriter

__all__ = [
    "DatasetWriter", "EpisodeInfo", "FrameData", "LeRobotDataset", "align_labels", "balanced_weights", "cache_root", "gather_rows",
    "load_frame_data", "open_dataset", "split_episodes",
]
