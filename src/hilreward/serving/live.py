"""The server's recorder of live episodes (the retrainer's gate evidence; the format is :mod:`hilreward.online.live`).

Every Predict that names an episode (``episode_id`` > 0; 0 is a request that names none, an ad-hoc check) adds
its frames (resized to the model's input size, as training's frame cache does) to its episode's buffer in memory.
A writer thread rewrites each episode that changed every ``flush_s`` seconds, and
forgets an episode once nothing arrived for it for ``idle_s`` (after a last write). At most ``open`` episodes
are buffered at once (the least recently seen is written and forgotten first), so memory stays bounded by
``open`` episodes of at most ``max_steps`` rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..images import resize_uint8
from ..online.live import LiveEpisode, LiveEpisodes

log = logging.getLogger("hilreward.serving")


@dataclass
class LiveOptions:
    keep: int = 32
    """Live episodes kept on disk (the newest); 0 records none (the retrainer's live gate then has no evidence)."""
    flush_s: float = 2.0
    """Seconds between writes of the episodes that changed (what a kill -9 can lose)."""
    idle_s: float = 30.0
    """An episode that got no prediction for this long is written a last time and forgotten."""
    open: int = 64
    """Episodes buffered in memory at most."""
    max_steps: int = 1000
    """Rows kept per episode (the first ones: where an early false success shows)."""


@dataclass
class _Open:
    started: float
    seen: float
    steps: list[int] = field(default_factory=list)
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)
    probability: list[float] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    dirty: bool = True


class LiveRecorder:
    """Buffers predictions per episode and writes them to a :class:`LiveEpisodes` folder (see the module doc)."""

    def __init__(self, folder, options: LiveOptions | None = None) -> None:
        self.options = options or LiveOptions()
        self.store = LiveEpisodes(folder, self.options.keep)
        self._open: OrderedDict[int, _Open] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.options.keep > 0:
            self._thread = threading.Thread(target=self._loop, name="hilreward-live", daemon=True)
            self._thread.start()

    def add(self, episode_id: int, step: int, frames: dict[str, np.ndarray], size: tuple[int, int],
            probability: float, version: str) -> None:
        """One judged step (``frames``: full camera key -> uint8 (H, W, 3), resized here to ``size``)."""
        if self.options.keep <= 0:
            return
        small = {k: resize_uint8(np.asarray(v), size) for k, v in frames.items()}
        now = time.time()
        evicted = None
        with self._lock:
            ep = self._open.get(episode_id)
            if ep is None or step == 0 and ep.steps:  # a new episode (or the id begins again: the newer wins)
                ep = self._open[episode_id] = _Open(started=now, seen=now)
            self._open.move_to_end(episode_id)
            ep.seen = now
            if len(ep.steps) < self.options.max_steps and (not ep.steps or step != ep.steps[-1]):
                ep.steps.append(int(step))
                for k, v in small.items():
                    ep.frames.setdefault(k, []).append(v)
                ep.probability.append(float(probability))
                ep.versions.append(version)
                ep.dirty = True
            if len(self._open) > self.options.open:
                evicted = self._open.popitem(last=False)
        if evicted is not None:
            self._write(*evicted)

    def flush(self) -> None:
        """Write every episode that changed; forget the idle ones."""
        now = time.time()
        with self._lock:
            dirty = [(eid, ep) for eid, ep in self._open.items() if ep.dirty]
            for _, ep in dirty:
                ep.dirty = False
            idle = [eid for eid, ep in self._open.items() if now - ep.seen > self.options.idle_s]
            for eid in idle:
                del self._open[eid]
        for eid, ep in dirty:
            self._write(eid, ep)

    def _write(self, episode_id: int, ep: _Open) -> None:
        with self._lock:  # a consistent copy (add() may append meanwhile)
            n = len(ep.steps)
            if not n:
                return
            episode = LiveEpisode(episode_id, np.asarray(ep.steps[:n], np.int64),
                                  {k: np.stack(v[:n]) for k, v in ep.frames.items()},
                                  np.asarray(ep.probability[:n], np.float32), list(ep.versions[:n]), ep.started)
        try:
            self.store.write(episode)
        except OSError as exc:  # evidence is best effort: serving goes on
            log.warning("cannot write live episode %s: %s", episode_id, exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.options.flush_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
