"""Human corrections: what was recorded, and where it goes.

A :class:`Correction` is one step where a human override disagreed with the classifier.
Any object with ``add(correction)`` and ``close()`` is a :class:`CorrectionSink` (an optional
``flush()`` is called at the end of each episode). :class:`DatasetCorrectionSink`, the default,
writes a local LeRobot v3.0 dataset that ``hilreward train`` can read back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..constants import REWARD_KEY
from ..data.writer import DatasetWriter
from ..errors import ConfigError, InputError
from ..images import resize_uint8
from ..utils import full_key, move_dir
from .rule import success_probability


@dataclass
class Correction:
    """One human override that disagreed with the classifier."""

    frames: dict[str, np.ndarray]
    """Full camera key (``observation.images.front``) -> uint8 (H, W, 3) frame the classifier judged."""
    label: int
    """The human's label: 1 success, 0 failure."""
    probability: float | list[float]
    """The classifier's success probability (class probabilities for multi-class)."""
    model_version: str
    """Version of the model that produced ``probability``."""
    time: float
    """Unix time of the override."""
    episode: int
    """Episode counter of the reward function (advanced by ``reset()``)."""
    step: int
    """Step within the episode (0-based)."""
    env_index: int = 0
    """Index of the environment in a vectorised batch."""
    source: str = "programmatic"
    """Which override source produced the label (``programmatic``, ``keyboard``, ``gamepad``...)."""
    context: dict[int, float] | None = None
    """Success probabilities the server gave the neighbouring steps of the same episode (step -> probability),
    recorded when the correction arrived: where the served labels change near it (a keypress is late)."""
    success_class: int = -1
    """Multi-class: the class of ``probability`` that counts as success (the reward options'); not stored by a
    correction store, whose readers take their server's."""


@runtime_checkable
class CorrectionSink(Protocol):
    """Where corrections go. ``flush()``, when a sink has it, is called at each episode end."""

    def add(self, correction: Correction) -> None: ...

    def close(self) -> None: ...


class MemoryCorrectionSink:
    """Keeps corrections in a list (for tests, notebooks and custom pipelines)."""

    def __init__(self) -> None:
        self.corrections: list[Correction] = []

    def add(self, correction: Correction) -> None:
        self.corrections.append(correction)

    def close(self) -> None:
        pass


class DatasetCorrectionSink:
    """Writes corrections as a LeRobot v3.0 dataset folder at ``root``.

    One dataset episode per RL episode that had corrections, written by :func:`write_dataset` (its columns, and
    ``meta/corrections.jsonl`` with model version, time and source per row). Every flush rewrites the folder
    atomically, so a reader never sees a half-written dataset; corrections stay in memory until ``close()``.
    """

    def __init__(self, root: str | os.PathLike, fps: int = 10, task: str = "human correction",
                 codec: str = "auto") -> None:
        self.root = Path(root)
        self.fps = fps
        self.task = task
        self.codec = codec
        self._episodes: list[list[Correction]] = []
        self._open: dict[int, list[Correction]] = {}
        self._dirty = False

    def add(self, correction: Correction) -> None:
        frames = {full_key(k): np.asarray(v) for k, v in correction.frames.items()}
        for key, frame in frames.items():
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
                raise InputError(f"correction frame {key!r} must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        correction.frames = frames
        self._open.setdefault(correction.episode, []).append(correction)
        self._dirty = True

    def flush(self) -> Path | None:
        """Close the open episodes and rewrite the dataset; returns its root (None if empty)."""
        for episode in sorted(self._open):
            self._episodes.append(self._open[episode])
        self._open.clear()
        if not self._dirty or not self._episodes:
            return None
        self._write()
        self._dirty = False
        return self.root

    def close(self) -> None:
        self.flush()

    def _write(self) -> None:
        first = self._episodes[0][0]
        cameras = set(first.frames)
        for episode in self._episodes:
            for c in episode:
                if set(c.frames) != cameras:
                    raise InputError(f"correction frames changed cameras: {sorted(c.frames)} vs {sorted(cameras)}; "
                                     "use one DatasetCorrectionSink per camera setup")
        write_dataset(self.root, self._episodes, fps=self.fps, task=self.task, codec=self.codec)


def write_dataset(root: str | os.PathLike, episodes: Sequence[Sequence[Correction]], fps: int = 10,
                  task: str = "human correction", codec: str = "auto", ids: Sequence[Sequence[int]] | None = None,
                  meta: Sequence[Sequence[dict]] | None = None) -> Path:
    """Corrections as a LeRobot v3.0 dataset at ``root``, replacing it in one rename (a reader never sees half of
    one): one dataset episode per group of ``episodes``, every camera of the first correction (a frame of another
    size is resized to that camera's first size). Columns: the cameras (``observation.images.<name>``),
    ``next.reward`` (the human's label of the frame shown: train on it with ``label.align=next``),
    ``classifier.probability`` (the success probability, class ``success_class`` of a multi-class model's),
    ``correction.episode`` / ``correction.step`` (int64), and ``correction.id`` when ``ids`` (shaped like
    ``episodes``) are given. ``meta/corrections.jsonl``: each correction's fields but its frames, plus its
    ``meta`` entry."""
    root = Path(root)
    sizes = {k: tuple(v.shape[:2]) for k, v in sorted(episodes[0][0].frames.items())}
    features = {REWARD_KEY: {"dtype": "float32", "shape": [1]},
                "classifier.probability": {"dtype": "float32", "shape": [1]},
                **({"correction.id": {"dtype": "int64", "shape": [1]}} if ids is not None else {}),
                "correction.episode": {"dtype": "int64", "shape": [1]},
                "correction.step": {"dtype": "int64", "shape": [1]}}
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        writer = DatasetWriter(tmp / "ds", fps=fps, cameras=sizes, features=features, codec=codec)
        rows = []
        for e, group in enumerate(episodes):  # a failure leaves tmp (the writer's temp dir inside) to the finally
            frames = {k: np.stack([resize_uint8(c.frames[k], size) for c in group]) for k, size in sizes.items()}
            columns = {
                REWARD_KEY: np.array([c.label for c in group], dtype=np.float32),
                "classifier.probability": np.array([success_probability(c.probability, c.success_class)
                                                    for c in group], dtype=np.float32),
                **({"correction.id": np.array(ids[e], dtype=np.int64)} if ids is not None else {}),
                "correction.episode": np.array([c.episode for c in group], dtype=np.int64),
                "correction.step": np.array([c.step for c in group], dtype=np.int64),
            }
            writer.add_episode(frames, columns, task=task)
            rows += [{**({"id": int(ids[e][i])} if ids is not None else {}),
                      **{k: v for k, v in asdict(c).items() if k != "frames"}, **(meta[e][i] if meta else {})}
                     for i, c in enumerate(group)]
        written = Path(writer.finalize())
        with open(written / "meta" / "corrections.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        return move_dir(written, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_sink(sink: CorrectionSink | str | os.PathLike | None) -> CorrectionSink | None:
    """``None`` -> None, a path -> DatasetCorrectionSink(path), a sink -> itself."""
    if sink is None or isinstance(sink, CorrectionSink):
        return sink
    if isinstance(sink, (str, os.PathLike)):
        return DatasetCorrectionSink(sink)
    raise ConfigError(f"corrections must be a folder path or an object with add() and close(), got {type(sink).__name__}")
