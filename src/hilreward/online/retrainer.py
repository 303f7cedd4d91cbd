"""The ever-correcting loop: human corrections -> a validated new model version, off the serving path.

:class:`Retrainer` runs :func:`retrainer_main` in a separate process (``spawn``), so training
never competes with Predict for the server's GIL. At start the process loads the served
checkpoint (``versions/0``, :mod:`.model`), the offline dataset and its frozen-encoder features
(``training.compute_features``, cached on disk; with ``retrain.scope=last|auto`` also the outputs
of the encoder's stages before the last, :mod:`.adapt`) into the feature pool (:mod:`.pool`), and
:class:`.trainer.HeadRetrainer` runs each attempt. It then wakes on every new correction
or review (or every ``retrain.every``-th correction, at most once per ``retrain.min_interval_s``),
waits until none arrived for ``retrain.quiet_s`` (so a burst of clicks trains once), and runs one
attempt over every stored correction:

1. **Sort the corrections** (:mod:`.sorting`). A rejected one never trains. One this model cannot
   use (a camera missing, a blank frame) is ``unusable``. Of two near-identical corrections labelled
   otherwise the older is ``superseded`` (the newest word wins; :mod:`.neighbours`). One whose
   frames are near-identical to an offline frame with a different label is *contradicted*: it trains
   with the weight of one offline frame (``retrain.contradicted_weight``) and no gate counts it,
   until a review accepts it. One within ``retrain.boundary_frames`` steps of a label change of its
   episode (the served labels around it, recorded with the correction, overlaid with the human's) is
   a *boundary* frame: a key pressed a frame or two late puts it there, so it trains lightly
   (``retrain.boundary_weight``) and never gates. One an earlier attempt found in conflict with
   offline held-out frames or live episodes (step 4) is left out (``conflicts_offline``,
   ``conflicts_live``; :mod:`.conflicts`). The rest are *gated*. Relabels of offline frames that
   reviews accepted (:mod:`.offline_edits`) apply first.
2. **Held-out corrections gate (c)** (:mod:`.holdout`), before anything else trains: the corrections
   of the ``retrain.holdout_episodes`` most recent episodes the serving version learned from are
   held out, and heads trained without them, with and without the new corrections (``holdout_steps``
   each, like with like), predict them. When the new corrections make more of them wrong than
   ``retrain.holdout_tolerance`` allows, both sides of the conflict become contradicted (for review)
   and the gate runs again without them.
3. **Train** a candidate (:mod:`.fitting`) from the checkpoint's weights: the head
   (``retrain.scope=head``), or the encoder's last stage too (``last``; ``auto`` adapts it when the
   head alone leaves gated corrections unfixed or makes offline held-out episodes wrong). On the
   offline training episodes plus the corrections, class-balanced, each correction weighted like
   ``retrain.correction_weight`` offline frames of its class, at least ``retrain.min_steps`` and at
   most ``retrain.steps`` steps, stopping once ``retrain.min_fixed`` of the gated corrections are
   classified as labelled (by the served reward's success decision, :mod:`hilreward.success`).
4. **Gate on what RL feels** (:mod:`.gate`, whose docstring states the rule and what each metric
   rests on; :mod:`.checks` applies it): no offline held-out episode may get a worse
   ``retrain.veto`` error than the serving version gives it (jitter within ``tolerance_s`` is none),
   it may newly fire in no more recent live episodes than ``retrain.live_share`` allows (nor early
   in more than ``retrain.live_early_share``), and the candidate must fix more gated corrections
   than it breaks (or break none). Frame accuracy is reported, never a veto. Whatever fails, the
   attempt looks for what it *can* publish and runs again (at most ``retrain.max_reruns`` times):
   the corrections that pushed it into an offline error become ``conflicts_offline`` (naming the
   episode and frames; :func:`.gate.blame`), those most alike the live frames it newly fires on
   ``conflicts_live``, the ones it breaks become contradicted.
5. **Publish** a passing candidate as the next immutable ``versions/<n>/`` with its support bank
   (:mod:`.publish`); either way the process records the attempt and every correction's status in
   the store, and tells the server. So every attempt ends in a version, or in named corrections that
   a review resolves: a review that accepts a ``conflicts_offline`` correction relabels the offline
   frames it names, so they stop vetoing; one that accepts a ``conflicts_live`` correction confirms
   the live firings it names as successes.

The process is a small state machine (:class:`_Loop`, one method per state, read top to bottom):
``connect`` (open the store) -> ``standby`` (until it leads the store) -> ``lead`` (take over what a
predecessor left, follow the newest version) -> ``wait`` (for a correction or review) -> ``attempt``
(one gated attempt; publish and record it) -> ``idle`` (one step of idle work, then ``wait`` again);
``stopped`` ends it. A store it cannot reach sends it back to ``connect`` (with a backoff). It tells the
server what it does with the typed events of :mod:`.events`.

It dies with its server: a watchdog thread ends the process within :data:`WATCHDOG_S` of the server's death
(``kill -9`` too), mid-attempt as well (nothing is published then), except while it publishes: the process that
publishes a version records the attempt and every correction's status in the store itself, in one step the
watchdog waits for, so a version is never left without its record. Should the process die there anyway (it is
killed itself), the next leader records the version it finds without one (``recovered``) and retrains every
correction no recorded attempt assessed.

While no correction waits it uses the time for work the next attempt or the server needs (:mod:`.idle`):
the serving version's side of gate (c) (run to the end: the next attempt needs it), and the
uncertainty ensemble of the serving version (:mod:`.ensemble`; version 0's members are trained
from scratch on the offline features, later versions' members from version 0's, like the head).
Ensemble training stops as soon as a correction arrives.

It retrains only while it leads the store (``store.leadership()``): with several replicas on one
PostgreSQL store every replica runs a retrainer, set up and on standby, and the one holding the
advisory lock trains; when it dies another takes the lock within a second. A new leader first
removes what a predecessor that died mid-publish left and announces the newest version, then
announces each version it publishes (and each new ensemble), so every replica serves the same one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
import traceback
from typing import Any, Iterator

from ..errors import HilrewardError
from .events import AttemptDone, EnsembleReady, Event, Failed, Ready, Standby, Training
from .store import CorrectionStore, Leadership
from .fitting import Orphaned
from .trainer import HeadRetrainer, RetrainSpec
from .versions import VersionStore

_STOP = "stop"
WATCHDOG_S = 0.2
"""The retrainer process looks this often whether its server still lives."""
RECOVERED = "published by a retrainer that died before recording it (recorded when a retrainer took over)"


class _Loop:
    """The retrainer process's states (see the module docstring); each method runs one and returns the next."""

    def __init__(self, spec: RetrainSpec, trainer: HeadRetrainer, triggers: mp.Queue, events: mp.Queue) -> None:
        self.spec, self.trainer, self.triggers, self.events = spec, trainer, triggers, events
        self.options = spec.options
        self.parent = mp.parent_process()
        trainer.orphaned = self.orphaned
        self.setup = {f"{trainer.evidence}_accuracy_base": trainer.base_accuracy,
                      "setup_seconds": trainer.setup_seconds, "val_episodes": len(trainer.val_episodes),
                      "offline_heldout": float(trainer.heldout)}
        self.store: CorrectionStore | None = None
        self.leadership: Leadership | None = None
        self.failures = 0
        self.standby_told = False
        self.seen, self.seen_review, self.last_run = 0, 0, 0.0
        self.work: Iterator[EnsembleReady | None] | None = None
        self.idle_pending = False
        """Idle work may remain (from becoming the leader, and after each attempt, until it completes)."""
        self.woken: list[Any] = []
        self.publishing = threading.Lock()
        """Held from publishing a version until its attempt is recorded: the watchdog never ends the process there."""

    def run(self) -> None:
        threading.Thread(target=self.watchdog, name="hilreward-retrainer-watchdog", daemon=True).start()
        state = "connect"
        while state != "stopped":
            try:
                state = getattr(self, state)()
            except Orphaned:  # the server died mid-attempt: its next start retrains (nothing is published)
                state = "stopped"
            except HilrewardError as exc:  # the store is unreachable: reconnect (and compete again) later
                self.tell(Failed(f"{type(exc).__name__}: {exc}", traceback.format_exc()))
                self.close()
                self.failures += 1
                state = "connect"
            except Exception as exc:  # noqa: BLE001 - the loop outlives any one failure
                self.tell(Failed(f"{type(exc).__name__}: {exc}", traceback.format_exc()))
                self.work, self.idle_pending = None, False
                state = "wait" if self.leadership is not None and self.store is not None else "connect"
        self.close()

    # ---- states
    def connect(self) -> str:
        if not self.sleep(min(5.0, 0.5 * 2 ** self.failures) if self.failures else 0.0):
            return "stopped"
        self.store = CorrectionStore(self.spec.store)  # it records its attempts
        self.leadership = self.store.leadership()
        self.failures = 0
        return "standby"

    def standby(self) -> str:
        assert self.leadership is not None
        if self.leadership.try_acquire():
            return "lead"
        if not self.standby_told:
            self.tell(Standby(self.setup))
            self.standby_told = True
        return "standby" if self.sleep(0.5) else "stopped"

    def lead(self) -> str:
        assert self.store is not None and self.leadership is not None
        trainer = self.trainer
        trainer.versions.remove_partial()  # what a leader that died mid-publish may have left
        self.record_unrecorded()
        latest = trainer.versions.latest()
        self.leadership.announce(latest.number)
        trainer.follow(latest)
        trainer.remember(self.store.latest_statuses())
        assessed = next((a.last_correction_id for a in self.store.attempts() if a.reason != RECOVERED), 0)
        self.seen = min(latest.last_correction_id, assessed)  # what no recorded attempt assessed trains again
        self.seen_review = int(latest.metrics.get("last_review_id", 0))
        self.standby_told, self.idle_pending, self.work = False, True, None
        self.tell(Ready(self.setup))
        return "wait"

    def wait(self) -> str:
        """Until a correction or review is due for an attempt; meanwhile idle work, when there is some."""
        assert self.store is not None
        if not self.sleep(0.0 if self.idle_pending else 0.5):
            return "stopped"
        newest, reviewed = self.store.last_id(), self.store.last_review_id()
        due = newest - self.seen >= self.options.every or reviewed != self.seen_review
        if due and time.monotonic() - self.last_run >= self.options.min_interval_s:
            return "attempt"
        return "idle" if self.idle_pending else "wait"

    def attempt(self) -> str:
        assert self.store is not None and self.leadership is not None
        if not self.quiet():
            return "stopped"
        store, trainer = self.store, self.trainer
        newest, reviewed = store.last_id(), store.last_review_id()
        self.work, self.idle_pending = None, True
        self.last_run, self.seen, self.seen_review = time.monotonic(), newest, reviewed
        started = time.time()
        self.tell(Training(newest, started))
        attempt = trainer.attempt(trainer.corrections(store, newest), store.verdicts())
        attempt.metrics["started_unix"] = started
        if self.orphaned():
            return "stopped"
        if attempt.passed and not self.leadership.held():  # lost the lock meanwhile: another replica leads now
            self.seen, self.work = 0, None
            return "standby"
        number, version, metrics = -1, "", attempt.metrics
        with self.publishing:  # the version and its record, or neither (the watchdog waits for this)
            if attempt.passed:
                record = trainer.publish(attempt, reviewed)
                number, version, metrics = record.number, record.version, record.metrics
            done = time.time()
            store.add_attempt(attempt.passed, number, version, attempt.reason, metrics, attempt.last_correction_id,
                              attempt.assessments, time=done)
        if attempt.passed:
            self.leadership.announce(number)
        self.tell(AttemptDone(attempt.passed, attempt.reason, metrics, attempt.last_correction_id,
                              attempt.assessments, done, number, version))
        return "wait"

    def idle(self) -> str:
        """One step of idle work (it stops as soon as a correction or review waits)."""
        assert self.store is not None and self.leadership is not None
        if self.work is None:
            self.work = self.trainer.idle_work(self.store, self.interrupted)
        try:
            event = next(self.work)
        except StopIteration:  # done, or stopped for a correction (then the attempt restarts it)
            self.work, self.idle_pending = None, bool(self.woken)
            return "wait"
        if isinstance(event, EnsembleReady):
            self.tell(event)
            self.leadership.announce(event.number)  # replicas pick the ensemble up with the version
        return "wait"

    # ---- helpers
    def record_unrecorded(self) -> None:
        """Record each published version no attempt names (its publisher died before recording it)."""
        assert self.store is not None
        recorded = {a.number for a in self.store.attempts() if a.passed}
        versions = self.trainer.versions
        for number in versions.numbers():
            if number > 0 and number not in recorded:
                r = versions.get(number)
                self.store.add_attempt(True, number, r.version, RECOVERED, r.metrics, r.last_correction_id, [],
                                       time=r.created_unix)

    def watchdog(self) -> None:
        """End this process once the server is gone (a publish under way ends with its record first)."""
        while not self.orphaned():
            time.sleep(WATCHDOG_S)
        with self.publishing:
            os._exit(0)

    def tell(self, event: Event) -> None:
        self.events.put(event)

    def orphaned(self) -> bool:
        return self.parent is not None and not self.parent.is_alive()

    def sleep(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a wake-up (they only say "look at the store"); False when told to stop or
        the server died."""
        try:
            while True:
                self.woken.append(self.triggers.get(timeout=timeout) if timeout > 0 else self.triggers.get_nowait())
                timeout = 0.0
        except queue.Empty:
            pass
        stop = _STOP in self.woken or self.orphaned()
        self.woken.clear()
        return not stop

    def quiet(self) -> bool:
        """Wait while wake-ups keep coming less than ``quiet_s`` apart (at most ``4 * quiet_s``), so that a burst
        of corrections trains as one attempt; False when told to stop meanwhile."""
        return quiet(self.triggers, self.woken, self.options.quiet_s) is False and not self.orphaned()

    def interrupted(self) -> bool:
        """A correction or review waits, or the server died: idle work stops."""
        try:
            self.woken.append(self.triggers.get_nowait())
        except queue.Empty:
            pass
        store = self.store
        return bool(self.woken) or self.orphaned() or \
            (store is not None and (store.last_id() != self.seen or store.last_review_id() != self.seen_review))

    def close(self) -> None:
        for handle in (self.leadership, self.store):
            if handle is not None:
                handle.close()
        self.store, self.leadership = None, None


def retrainer_main(spec: RetrainSpec, triggers: mp.Queue, events: mp.Queue) -> None:
    """Body of the retrainer process (see the module docstring)."""
    import torch

    torch.set_num_threads(max(1, int(spec.options.threads)))
    try:
        trainer = HeadRetrainer(spec)
    except Exception as exc:  # noqa: BLE001 - told to the server, which says so and keeps serving
        events.put(Failed(f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return
    _Loop(spec, trainer, triggers, events).run()


def quiet(triggers: mp.Queue, woken: list[Any], quiet_s: float) -> bool:
    """Wait while wake-ups keep coming less than ``quiet_s`` apart (at most ``4 * quiet_s``), so that a burst of
    corrections trains as one attempt; True when told to stop meanwhile."""
    end = time.monotonic() + 4 * quiet_s
    while quiet_s > 0 and (left := end - time.monotonic()) > 0:
        try:
            woken.append(triggers.get(timeout=min(quiet_s, left)))
        except queue.Empty:
            break
    return _STOP in woken


class Retrainer:
    """Handle on the retrainer process, used by the server."""

    def __init__(self, spec: RetrainSpec) -> None:
        self.spec = spec
        ctx = mp.get_context("spawn")
        self._triggers: mp.Queue = ctx.Queue()
        self._events: mp.Queue = ctx.Queue()
        self._process = ctx.Process(target=retrainer_main, args=(spec, self._triggers, self._events),
                                    name="hilreward-retrainer", daemon=True)

    @classmethod
    def from_serve_config(cls, cfg: Any, versions: VersionStore, store: str, threshold: float) -> "Retrainer":
        return cls(RetrainSpec(versions_root=str(versions.root), store=store, dataset=cfg.dataset,
                               options=cfg.retrain, threshold=threshold, cache_dir=cfg.cache_dir,
                               consecutive=cfg.consecutive, success_class=cfg.success_class))

    def start(self) -> None:
        self._process.start()

    def notify(self, correction_id: int = 0) -> None:
        """A correction or review was stored (wakes the process; it reads the store itself)."""
        self._triggers.put(int(correction_id))

    def next_event(self, timeout: float) -> Event | None:
        """The next event (:mod:`.events`), None after ``timeout``."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        if self._process.is_alive():
            self._triggers.put(_STOP)
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(2)
        self._triggers.cancel_join_thread()
        self._events.cancel_join_thread()
