"""One WatchActivity stream of the reward server, fanned out to the pages as server-sent events.

A thread reads :meth:`RewardClient.watch_activity` (reconnecting while the server is away) and keeps what a
page needs when it connects (:class:`~hilreward.app.console_models.Snapshot`): the serving version, the
retrainer status, the recent probability traces and the newest frames of every camera. Each open page is a
subscriber of :meth:`ActivityFeed.stream`; every event is serialised once, and a page that reads too slowly
gets a fresh snapshot instead of a backlog.

Events (``event: <kind>`` / ``data: <json>``): ``snapshot`` (Snapshot), ``model`` (ModelState),
``retrainer`` (RetrainerState), ``prediction`` (PredictionEvent; live streams only) and ``connection``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Optional

from ..errors import HilrewardError
from .console_models import (Connection, ConsoleSettings, Frames, ModelState, Point, PredictionEvent, RetrainerState,
                             Snapshot, Trace, images_model)

log = logging.getLogger("hilreward.app")

KEEPALIVE_S = 15.0
"""A comment line this often keeps idle connections (and proxies) open."""
MAX_QUEUED = 256
"""Events waiting for one page at most; past that it gets a fresh snapshot instead."""
RETRY_MS = 2000
"""How soon a browser reconnects after the stream broke."""


@dataclass
class _Trace:
    id: int
    episode_id: int
    points: deque = field(default_factory=deque)


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, live: bool) -> None:
        self.loop = loop
        self.live = live
        self.queue: asyncio.Queue = asyncio.Queue()

    def push(self, kind: Optional[str], data: Optional[str]) -> None:
        """From the feed's thread (``kind`` None ends the stream)."""
        self.loop.call_soon_threadsafe(self._put, kind, data)

    def _put(self, kind: Optional[str], data: Optional[str]) -> None:
        if kind is not None and self.queue.qsize() >= MAX_QUEUED:  # the page is behind: start it over
            while not self.queue.empty():
                self.queue.get_nowait()
            kind, data = "snapshot", None
        self.queue.put_nowait((kind, data))


class ActivityFeed:
    """``ActivityFeed(client, settings, serving_last_correction).start()``; pages iterate ``stream(live)``."""

    def __init__(self, client, settings: ConsoleSettings, serving_last_correction: Callable[[], int],
                 trace_len: int = 1000, traces: int = 8, retry_s: float = 1.0) -> None:
        """``client``: a RewardClient of its own (closing it ends the stream); ``serving_last_correction``: the
        newest correction id the serving version was trained with (looked up on each model change)."""
        self.client = client
        self.settings = settings
        self.serving_last_correction = serving_last_correction
        self.trace_len = trace_len
        self.max_traces = traces
        self.retry_s = retry_s
        self.connection = Connection(connected=False, address=client.address,
                                     message=f"connecting to the reward server at {client.address}")
        self.model: Optional[ModelState] = None
        self.retrainer: Optional[RetrainerState] = None
        self._traces: OrderedDict[int, _Trace] = OrderedDict()
        self._by_episode: dict[int, int] = {}
        self._next_trace = 0
        self._frames: Optional[Frames] = None
        self._subscribers: set[_Subscriber] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ---- the reader thread
    def start(self) -> "ActivityFeed":
        self._thread = threading.Thread(target=self._run, name="hilreward-console-feed", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        s = self.settings
        while not self._closed.is_set():
            try:
                stream = self.client.watch_activity(max_side=s.frame_side, jpeg_quality=75,
                                                    frames_per_second=s.frames_per_second)
                for item in stream:
                    if not self.connection.connected:
                        self._reset(f"connected to the reward server at {self.client.address}")
                    self._handle(item)
                message = "the reward server closed the activity stream"
            except HilrewardError as exc:
                message = str(exc)
            except Exception as exc:  # the feed must outlive anything one message does
                log.exception("console activity feed")
                message = f"{type(exc).__name__}: {exc}"
            if self._closed.is_set():
                break
            self._set_connection(False, f"{message} (retrying every {self.retry_s:g} s)")
            self._closed.wait(self.retry_s)

    def _handle(self, item) -> None:
        from ..serving.client import ModelInfo
        from ..serving.records import RetrainerStatus

        if isinstance(item, ModelInfo):
            try:
                last = self.serving_last_correction()
            except HilrewardError:
                last = 0
            with self._lock:
                self.model = ModelState.of(item, last)
            self._publish("model", self.model.model_dump_json())
        elif isinstance(item, RetrainerStatus):
            with self._lock:
                self.retrainer = RetrainerState.of(item)
            self._publish("retrainer", self.retrainer.model_dump_json())
        else:
            point = Point.of(item)
            images = images_model(item.images) if item.images else None
            with self._lock:
                trace = self._trace_for(point)
                trace.points.append(point)
                if images:
                    self._frames = Frames(prediction_id=point.prediction_id, trace_id=trace.id, images=images)
            event = PredictionEvent(trace_id=trace.id, point=point, images=images, skipped=item.skipped)
            self._publish("prediction", event.model_dump_json(), live_only=True)

    def _trace_for(self, p: Point) -> _Trace:
        """The trace of ``p``'s episode; a new one when the episode is new or its step went back (a reset)."""
        trace = self._traces.get(self._by_episode.get(p.episode_id, -1))
        if trace is not None and (not trace.points or p.step >= trace.points[-1].step):
            self._traces.move_to_end(trace.id)
            return trace
        self._next_trace += 1
        trace = _Trace(self._next_trace, p.episode_id, deque(maxlen=self.trace_len))
        self._traces[trace.id] = trace
        self._by_episode[p.episode_id] = trace.id
        while len(self._traces) > self.max_traces:
            _, old = self._traces.popitem(last=False)
            if self._by_episode.get(old.episode_id) == old.id:
                del self._by_episode[old.episode_id]
        return trace

    def _reset(self, message: str) -> None:
        """(Re)connected: prediction ids may have started over (a restarted server), so start the traces over."""
        with self._lock:
            self._traces.clear()
            self._by_episode.clear()
            self._frames = None
            self.connection = Connection(connected=True, address=self.client.address, message=message)
        self._publish("snapshot", None)

    def _set_connection(self, connected: bool, message: str) -> None:
        with self._lock:
            if (self.connection.connected, self.connection.message) == (connected, message):
                return
            self.connection = Connection(connected=connected, address=self.client.address, message=message)
        self._publish("connection", self.connection.model_dump_json())

    def _publish(self, kind: str, data: Optional[str], live_only: bool = False) -> None:
        with self._lock:
            subscribers = [s for s in self._subscribers if s.live or not live_only]
        for s in subscribers:
            try:
                s.push(kind, data)
            except RuntimeError:  # its event loop is gone
                self._unsubscribe(s)

    # ---- what pages read
    def retrainer_state(self) -> str:
        return self.retrainer.state if self.retrainer is not None else "unknown"

    def snapshot(self, live: bool = True) -> Snapshot:
        with self._lock:
            traces = [Trace(trace_id=t.id, episode_id=t.episode_id, points=list(t.points))
                      for t in self._traces.values()] if live else []
            return Snapshot(connection=self.connection, model=self.model, retrainer=self.retrainer, traces=traces,
                            frames=self._frames if live else None, settings=self.settings)

    async def stream(self, live: bool = True) -> AsyncIterator[str]:
        """Server-sent events for one page: a snapshot, then every change (``live``: predictions and frames too)."""
        sub = _Subscriber(asyncio.get_running_loop(), live)
        with self._lock:
            self._subscribers.add(sub)
        try:
            yield f"retry: {RETRY_MS}\n\n"
            yield _event("snapshot", self.snapshot(live).model_dump_json())
            while not self._closed.is_set():
                try:
                    kind, data = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if kind is None:
                    break
                yield _event(kind, data if data is not None else self.snapshot(live).model_dump_json())
        finally:
            self._unsubscribe(sub)

    def _unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def close(self) -> None:
        """End every page's stream and the WatchActivity call."""
        self._closed.set()
        with self._lock:
            subscribers = list(self._subscribers)
        for s in subscribers:
            try:
                s.push(None, None)
            except RuntimeError:
                pass
        self.client.close()  # cancels the stream the thread is reading
        if self._thread is not None:
            self._thread.join(timeout=5)


def _event(kind: str, data: str) -> str:
    return f"event: {kind}\ndata: {data}\n\n"
