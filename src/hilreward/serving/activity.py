"""What the server saw recently: a bounded log of predictions (with their frames) and the query queue.

:class:`PredictionLog` keeps the last predictions (at most ``size`` of them and ``max_mb`` of
frames), numbered 1, 2, ...: the console streams them (WatchActivity) and labels them by
reference (SubmitRecentCorrection), so frames are never uploaded twice. :class:`QueryQueue`
keeps the recent frames that most need a human, scored by :func:`need`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Prediction:
    """One Predict call as the server answered it."""

    id: int
    time: float
    episode_id: int
    step: int
    frames: dict[str, np.ndarray]
    """Full camera key -> uint8 (H, W, 3), as received."""
    probability: float
    """Success probability."""
    probabilities: float | list[float]
    """What a correction stores: the success probability, or every class's for multi-class models."""
    uncertainty: Optional[float]
    threshold: float
    success: bool
    model_version: str
    support: Optional[float] = None
    """The share of successes among its nearest labelled frames (None: the model has no support bank)."""
    novelty: Optional[float] = None
    """Its distance to the nearest labelled success, in units of the familiar radius (> 1: unfamiliar)."""
    state: Any = None
    """The robot state the request carried (a vector or names -> numbers), for success_when; None without one."""

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self.frames.values())


class PredictionLog:
    """The last ``size`` predictions (and at most ``max_mb`` MiB of frames); watchers wait for new ones."""

    SERVED = 65536
    """(episode, step) -> success probability kept for this many predictions (no frames: a few MiB), so a
    correction sent minutes later still finds the served labels around it."""

    def __init__(self, size: int = 512, max_mb: float = 256.0) -> None:
        self.size = int(size)
        self.max_bytes = int(max_mb * 1024 * 1024)
        self._served: OrderedDict[tuple[int, int], float] = OrderedDict()
        self._items: deque[Prediction] = deque()
        self._bytes = 0
        self._next = 1
        self._changes = 0
        self._closed = False
        self._cond = threading.Condition()

    def add(self, **fields) -> Prediction:
        with self._cond:
            item = Prediction(id=self._next, time=time.time(), **fields)
            self._next += 1
            self._served[(item.episode_id, item.step)] = item.probability
            self._served.move_to_end((item.episode_id, item.step))
            if len(self._served) > self.SERVED:
                self._served.popitem(last=False)
            self._items.append(item)
            self._bytes += item.nbytes
            while self._items and (len(self._items) > self.size or self._bytes > self.max_bytes):
                self._bytes -= self._items.popleft().nbytes
            self._cond.notify_all()
        return item

    @property
    def newest_id(self) -> int:
        return self._next - 1

    def get(self, ids: list[int], also: dict[int, Prediction] | None = None) -> list[Prediction]:
        """The predictions ``ids``, from the log or ``also`` (InputError naming the first one no longer kept)."""
        with self._cond:
            known = {**(also or {}), **{p.id: p for p in self._items}}
            oldest = self._items[0].id if self._items else self._next
        out = []
        for i in ids:
            if i not in known:
                raise InputError(f"prediction {i} is not in the server's buffer (it keeps the last {self.size} "
                                 f"predictions, now ids {oldest}..{self._next - 1}); label newer ones")
            out.append(known[i])
        return out

    def last(self, k: int, episode_id: Optional[int] = None) -> list[Prediction]:
        """The newest ``k`` predictions (of ``episode_id``), oldest first."""
        with self._cond:
            items = [p for p in self._items if episode_id is None or p.episode_id == episode_id]
        return items[-k:] if k > 0 else []

    def around(self, episode_id: int, step: int, radius: int) -> dict[int, float]:
        """Success probability of each step within ``radius`` of ``step`` in episode ``episode_id`` (the newest
        prediction of a step), as far as the log remembers them."""
        with self._cond:
            found = {s: self._served.get((episode_id, s)) for s in range(step - radius, step + radius + 1)}
        return {s: p for s, p in found.items() if p is not None}

    def changed(self) -> None:
        """Wake the watchers (the model or the retrainer status changed)."""
        with self._cond:
            self._changes += 1
            self._cond.notify_all()

    def wait(self, after_id: int, changes: int, timeout: float) -> tuple[list[Prediction], int]:
        """Predictions newer than ``after_id`` (waiting up to ``timeout`` for one or a change) and the change count."""
        with self._cond:
            if self._next - 1 <= after_id and self._changes == changes and not self._closed:
                self._cond.wait(timeout)
            return [p for p in self._items if p.id > after_id], self._changes

    @property
    def changes(self) -> int:
        return self._changes

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def unfamiliar(support: Optional[float], novelty: Optional[float]) -> bool:
    """A frame no labelled success resembles (novelty above 1), or whose nearest labelled frames are mostly
    failures (support below one half): a success claimed there is the reward extrapolating."""
    return (novelty is not None and novelty > 1.0) or (support is not None and support < 0.5)


def need(probability: float, threshold: float, uncertainty: Optional[float], success: bool = False,
         support: Optional[float] = None, novelty: Optional[float] = None) -> tuple[float, str]:
    """How much a frame needs a human, and why. A success claimed on an unfamiliar state comes first (1 to 2, the
    farther beyond the familiar radius and below half support, the higher): a policy that hacks the reward goes there. Then, 0..1, the larger of its
    closeness to the threshold (1 at the threshold, 0 at 0 or 1, measured on its own side: at a threshold of 0.95,
    0.99 is not close) and its uncertainty (1 at a spread of 0.25 or more)."""
    if success and unfamiliar(support, novelty):
        beyond = max(0.0, (novelty or 1.0) - 1.0) + max(0.0, 0.5 - (support if support is not None else 0.5))
        return 1.0 + beyond / (1.0 + beyond), "a success claimed on an unfamiliar state"
    side = (1.0 - threshold) if probability >= threshold else threshold
    near = 1.0 - abs(probability - threshold) / max(side, 1e-9)
    disagree = min(1.0, (uncertainty or 0.0) / 0.25)
    return (near, "near the threshold") if near >= disagree else (disagree, "the ensemble disagrees")


@dataclass
class Query:
    prediction: Prediction
    need: float
    reason: str


class QueryQueue:
    """The ``size`` recent frames that most need a human (need >= ``min_need``), at most one per
    ``min_gap`` steps of an episode (the neighbours of a queued frame look the same)."""

    def __init__(self, size: int = 32, min_need: float = 0.5, min_gap: int = 5) -> None:
        self.size = int(size)
        self.min_need = float(min_need)
        self.min_gap = int(min_gap)
        self._items: list[Query] = []
        self._lock = threading.Lock()

    def offer(self, prediction: Prediction) -> None:
        score, reason = need(prediction.probability, prediction.threshold, prediction.uncertainty,
                             prediction.success, prediction.support, prediction.novelty)
        if score < self.min_need:
            return
        with self._lock:
            for i, q in enumerate(self._items):
                p = q.prediction
                if p.episode_id == prediction.episode_id and abs(p.step - prediction.step) < self.min_gap:
                    if score > q.need:
                        self._items[i] = Query(prediction, score, reason)
                    return
            if len(self._items) >= self.size:
                weakest = min(range(len(self._items)), key=lambda j: self._items[j].need)
                if self._items[weakest].need >= score:
                    return
                del self._items[weakest]
            self._items.append(Query(prediction, score, reason))

    def items(self, limit: int = 0) -> list[Query]:
        """Neediest first."""
        with self._lock:
            items = sorted(self._items, key=lambda q: -q.need)
        return items[:limit] if limit > 0 else items

    def remove(self, prediction_ids: set[int]) -> None:
        with self._lock:
            self._items = [q for q in self._items if q.prediction.id not in prediction_ids]

    def rescore(self, judge: Callable[[Prediction], Prediction]) -> None:
        """Judge every queued frame again (after a new version): keep those that still need a human."""
        with self._lock:
            queued = list(self._items)
        fresh = []
        for q in queued:
            p = judge(q.prediction)
            score, reason = need(p.probability, p.threshold, p.uncertainty, p.success, p.support, p.novelty)
            if score >= self.min_need:
                fresh.append(Query(p, score, reason))
        with self._lock:
            kept = {q.prediction.id for q in queued}
            self._items = fresh + [q for q in self._items if q.prediction.id not in kept]


def rejudged(prediction: Prediction, probability: float, probabilities: float | list[float],
             uncertainty: Optional[float], threshold: float, version: str, success: bool,
             support: Optional[tuple[float, float]] = None) -> Prediction:
    """``prediction`` as another model version sees it (same id and frames; ``success`` by the reward rule;
    ``support``: its (support, novelty) under that version)."""
    return replace(prediction, probability=probability, probabilities=probabilities, uncertainty=uncertainty,
                   threshold=threshold, success=success, model_version=version,
                   support=None if support is None else support[0], novelty=None if support is None else support[1])
