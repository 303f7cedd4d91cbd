"""Live traffic: the recent episodes a reward server judged, kept on disk as evidence for the retrainer's gate.

An RL policy learns to visit whatever states the reward calls success, so the states it visits are the
evidence that matters most, and the offline episodes never show them. The server records every episode it
judges (:class:`hilreward.serving.live.LiveRecorder`) into ``<state_dir>/live/``, one file per episode:

- ``ep-<episode_id>.npz``: the frames of each camera at the model's input size (uint8 ``(N, H, W, 3)``, resized
  the way training's frame cache resizes, so the retrainer sees the pixels the model saw), the step of each
  frame, the success probability the server answered and the version that answered it, and when the episode
  started and was last written;
- written atomically (and fsync'd) while the episode runs, every ``flush_s`` seconds, so a server killed with
  ``kill -9`` loses at most those last seconds;
- bounded: the newest ``keep`` episodes (``live.keep``, 32 by default: at 40 steps and two 96x96 cameras about
  70 MiB uncompressed, a few MiB compressed); older files are removed when a newer episode is written.

The retrainer reads them at each attempt (:class:`LiveEpisodes`), encodes each frame once, and gates every
candidate on the newest ``retrain.live_episodes`` of them (:mod:`.gate`).
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils import write_atomic

PREFIX, SUFFIX = "ep-", ".npz"


@dataclass
class LiveEpisode:
    """One live episode as the server judged it (rows in step order)."""

    episode_id: int
    steps: np.ndarray
    """int64 (N,): the step of each row (0 = the first judged after a reset)."""
    frames: dict[str, np.ndarray]
    """Full camera key -> uint8 (N, H, W, 3) at the model's input size."""
    probability: np.ndarray
    """float32 (N,): the success probability the server answered."""
    versions: list[str]
    """The version that answered each row."""
    started: float
    """Unix time of its first row."""
    updated: float = 0.0
    """Unix time it was last written."""

    def __len__(self) -> int:
        return len(self.steps)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, steps=self.steps.astype(np.int64), probability=self.probability.astype(np.float32),
                            versions=np.asarray(self.versions, dtype=str), episode_id=np.int64(self.episode_id),
                            started=np.float64(self.started), updated=np.float64(self.updated),
                            cameras=np.asarray(list(self.frames), dtype=str),
                            **{f"frames{i}": f for i, f in enumerate(self.frames.values())})
        return buf.getvalue()

    @classmethod
    def from_file(cls, path: Path) -> "LiveEpisode":
        with np.load(path, allow_pickle=False) as d:
            cameras = [str(c) for c in d["cameras"]]
            return cls(int(d["episode_id"]), d["steps"], {c: d[f"frames{i}"] for i, c in enumerate(cameras)},
                       d["probability"], [str(v) for v in d["versions"]], float(d["started"]), float(d["updated"]))


class LiveEpisodes:
    """The folder of live episodes: written by the server, read by the retrainer."""

    def __init__(self, folder: str | os.PathLike, keep: int = 32) -> None:
        self.folder = Path(folder)
        self.keep = int(keep)

    def path(self, episode_id: int) -> Path:
        return self.folder / f"{PREFIX}{int(episode_id)}{SUFFIX}"

    def write(self, episode: LiveEpisode) -> None:
        """Write (or rewrite) ``episode`` atomically, then drop the oldest files past ``keep``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        episode.updated = time.time()
        write_atomic(self.path(episode.episode_id), episode.to_bytes())
        self.prune()

    def files(self) -> list[Path]:
        """Episode files, oldest first (by when they were last written)."""
        if not self.folder.is_dir():
            return []
        found = []
        for p in self.folder.glob(f"{PREFIX}*{SUFFIX}"):
            try:
                found.append((p.stat().st_mtime, p))
            except FileNotFoundError:  # pruned meanwhile
                continue
        return [p for _, p in sorted(found)]

    def prune(self) -> None:
        for p in self.files()[:-self.keep] if self.keep > 0 else self.files():
            p.unlink(missing_ok=True)

    @staticmethod
    def _load(path: Path) -> LiveEpisode | None:
        try:
            return LiveEpisode.from_file(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # pruned meanwhile, or a disk error
            return None

    def read(self, episode_id: int) -> LiveEpisode | None:
        """Episode ``episode_id`` when it is kept (and readable), else None."""
        return self._load(self.path(episode_id))

    def newest(self, count: int) -> list[LiveEpisode]:
        """The newest ``count`` episodes, oldest first; a file that cannot be read (a disk error) is skipped."""
        loaded = (self._load(p) for p in (self.files()[-count:] if count > 0 else []))
        return [e for e in loaded if e is not None]


class LiveConfirmations:
    """Live firings a review confirmed as successes (accepting a ``conflicts_live`` correction): live episode ->
    the earliest confirmed step, in ``<state_dir>/live_confirmed.json`` (written atomically)."""

    NAME = "live_confirmed.json"

    def __init__(self, state_dir: str | os.PathLike) -> None:
        self.path = Path(state_dir) / self.NAME

    def read(self) -> dict[int, int]:
        try:
            return {int(k): int(v) for k, v in json.loads(self.path.read_text()).items()}
        except (OSError, ValueError):  # none yet (or unreadable): nothing confirmed
            return {}

    def confirm(self, firings: list) -> int:
        """Add ``[[episode, step], ...]``; returns how many episodes were new or moved earlier."""
        known = self.read()
        changed = 0
        for episode, step in firings:
            if int(step) < known.get(int(episode), 1 << 62):
                known[int(episode)] = int(step)
                changed += 1
        if changed:
            write_atomic(self.path, json.dumps({str(k): v for k, v in sorted(known.items())}) + "\n")
        return changed
