"""One model thread for all requests, merging the requests that wait while it is busy.

Concurrent Predict calls queue here; the thread takes every queued request (up to
``max_batch``) whose frames have the same shapes and ask for the same version, and runs them as one
batch on it: the version serving at that moment, or the one a request pins while the slot holds it.
No request waits for a batch to fill: a lone request runs at once.
Running the model on one thread also keeps torch from oversubscribing the CPU cores.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import numpy as np

from ..errors import ServingError
from .model_slot import ModelSlot, ServedModel


@dataclass
class _Job:
    frames: dict[str, np.ndarray]
    version: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    probabilities: np.ndarray | None = None
    uncertainty: float | None = None
    support: np.ndarray | None = None
    model: ServedModel | None = None
    error: BaseException | None = None


class Batcher:
    """``run(frames)`` -> (probabilities of that one step, its uncertainty or None, its [support, novelty] or None,
    the model version that produced them)."""

    def __init__(self, slot: ModelSlot, max_batch: int = 8) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.slot = slot
        self.max_batch = max_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="hilreward-model", daemon=True)
        self._thread.start()

    def run(self, frames: dict[str, np.ndarray],
            version: str = "") -> tuple[np.ndarray, float | None, np.ndarray | None, ServedModel]:
        """Frames of one step (camera key -> uint8 (H, W, 3)), judged by ``version`` when the slot holds it (else
        by the version serving); blocks until the model has run."""
        if self._closed:
            raise ServingError("the server is shutting down")
        job = _Job(frames, version)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.probabilities is not None and job.model is not None
        return job.probabilities, job.uncertainty, job.support, job.model

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            while len(jobs) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                jobs.append(nxt)
            groups: dict[tuple, list[_Job]] = {}
            for j in jobs:
                signature = (j.version, *sorted((k, v.shape) for k, v in j.frames.items()))
                groups.setdefault(signature, []).append(j)
            for group in groups.values():
                self._run_group(group)

    def _run_group(self, group: list[_Job]) -> None:
        model = self.slot.get(group[0].version)
        try:
            batch = {k: np.stack([j.frames[k] for j in group]) for k in group[0].frames}
            probs, uncertainty, support = model.predict(batch)
            if len(probs) != len(group):
                raise ServingError(f"the model returned {len(probs)} results for a batch of {len(group)}")
            for i, j in enumerate(group):
                j.probabilities, j.model = probs[i], model
                j.uncertainty = None if uncertainty is None else float(uncertainty[i])
                j.support = None if support is None else support[i]
        except Exception as exc:
            if len(group) > 1:  # one bad request must not fail the others: run them one by one
                for j in group:
                    self._run_group([j])
                return
            group[0].error = exc
        for j in group:
            j.done.set()
