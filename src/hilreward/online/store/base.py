"""The correction-store interface every engine implements, and what the engines share.

An engine (SQLite, PostgreSQL) supplies a connection, its SQL dialect's migrations and three
primitives (:meth:`CorrectionStore._rows`, ``_insert``, ``_transaction``); the queries, the
validation and PNG encoding of frames, idempotent ``request_id`` handling and the versioned
schema migrations live here, so both engines keep the same promise:

- ``add`` returns only once the correction is committed and durable (the ack comes after it);
- a ``request_id`` already stored returns the stored id and adds nothing;
- tables are append-only;
- the schema version is recorded in the store: an older schema is upgraded on a writable open,
  a newer one is refused with a message naming both versions.

Besides the corrections a store keeps, also append-only, what happened to them: ``reviews`` (a
human's accept / reject; the newest verdict per correction counts, a rejected correction never
trains) and ``attempts`` with their ``statuses`` (each retraining run, its gate result and, per
correction, fixed / unfixed / contradicted / rejected with the attempt model's probability; a
status row is written only when it differs from the correction's previous one).
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from time import time as _now
from typing import Iterator, Sequence

import numpy as np

from ...deploy.corrections import Correction
from ...errors import InputError, ServingError
from ...utils import check_finite, full_key
from .engines import engine_for


STATUSES = ("pending", "fixed", "unfixed", "boundary", "contradicted", "superseded", "conflicts_offline",
            "conflicts_live", "unusable", "rejected")
"""A correction's status: not yet trained on; classified as labelled by the latest attempt; not; within a few
steps of where the labels change (a keypress lands late: trained lightly, never gated); contradicted by
near-identical offline frames with another label, or found in conflict by the gate (trained lightly, never gated);
superseded by a newer correction labelled otherwise on a near-identical frame, or one that makes it wrong (the
newest word wins: never trained until a review accepts it); dropped because training on it makes an offline
held-out episode wrong (names that episode and its frames); dropped because training on it makes the reward newly
fire in recent live episodes no correction labels success (names them: ``conflicts_live``); unusable by this model
(missing camera, blank frame); or rejected by review (never trains). A review that accepts a correction makes it
train fully (and the newest word); for ``conflicts_offline`` it relabels the offline frames it conflicts with,
for ``conflicts_live`` it confirms the live firings it was shown."""
VERDICTS = ("accept", "reject")
TEXT_LIMITS = {"source": 64, "model_version": 256, "request_id": 256, "replica": 256, "reviewer": 128, "note": 1000}
"""Most characters a store keeps of each free-text field; a longer one is refused (InputError), not cut."""


@dataclass(frozen=True)
class Migration:
    """One step of an engine's schema history; version ``n`` is the n-th entry of its list."""

    description: str
    sql: str


@dataclass
class StoredCorrection:
    """A correction as read back from the store."""

    id: int
    """Row id, 1, 2, ... in the order corrections were acknowledged (over every server sharing the store)."""
    correction: Correction
    """The correction itself (frames decoded back to uint8 (H, W, 3))."""
    replica: str = ""
    """The server that acknowledged it ('' when unknown: stored by a schema-1 store or outside a server)."""


@dataclass
class Review:
    """A human's verdict on a correction."""

    id: int
    correction_id: int
    verdict: str
    """``accept`` (the label is right: train it fully, even when contradicted) or ``reject`` (never train it)."""
    time: float
    reviewer: str
    note: str = ""


@dataclass
class Assessment:
    """What one retraining attempt found about one correction."""

    correction_id: int
    status: str
    """One of :data:`STATUSES` (never ``pending``: that is a correction no attempt has seen)."""
    probability: float
    """Success probability of the attempt's model for the correction's frames (-1 when it cannot judge them)."""
    detail: str = ""
    """Why (e.g. ``near-identical to correction 12 labelled 1``)."""
    attempt_id: int = 0
    conflict: dict | None = None
    """For ``conflicts_offline``: the offline held-out frames it conflicts with, ``{"episode", "start", "end"
    (exclusive frame_index range), "frame" (the most alike one), "kind" (the error it caused), "label" (theirs)}``."""


@dataclass
class AttemptRecord:
    """One retraining run and its gate."""

    id: int
    time: float
    passed: bool
    number: int
    """Version number it was published as, -1 when the gate refused it."""
    version: str
    reason: str
    metrics: dict[str, float]
    last_correction_id: int


class Leadership:
    """Who runs the retrainer of a store: at most one holder at a time.

    The base class is the one-server case (SQLite): leadership is granted at once and version
    announcements go nowhere (the server hears of its retrainer's versions directly).
    """

    def try_acquire(self) -> bool:
        """Become the leader if nobody is; True when this process leads now."""
        return True

    def held(self) -> bool:
        """Still the leader (checked right before publishing)."""
        return True

    def announce(self, number: int) -> None:
        """Tell every server sharing the store that version ``number`` is published."""

    def close(self) -> None:
        """Give leadership up."""


class VersionWatch(ABC):
    """Announcements of published versions (:meth:`Leadership.announce`) on engines several servers share."""

    @abstractmethod
    def wait(self, timeout: float) -> list[int]:
        """Version numbers announced within ``timeout`` seconds (empty when none); ServingError when cut off."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "VersionWatch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CorrectionStore(ABC):
    """Append-only store of :class:`Correction` s (a deploy ``CorrectionSink``), thread-safe.

    ``CorrectionStore(location)`` opens the engine the location names: a path is an SQLite
    file, ``postgresql://user@host/db`` a PostgreSQL database (see ``hilreward.online.store.ENGINES``).
    ``readonly=True`` opens an existing store for reading (``hilreward corrections list|show|export``): it never
    creates, migrates or writes.
    """

    MIGRATIONS: Sequence[Migration] = ()
    """The engine's schema history; the store's schema version is the number of migrations applied."""
    shared = False
    """Several servers may share the store (leader election and version announcements work across them)."""

    def __new__(cls, location=None, *args, **kwargs):
        if cls is CorrectionStore:
            cls = engine_for(location)
        return super().__new__(cls)

    def __init__(self, location: str, readonly: bool = False) -> None:
        self.location = str(location)
        """Where the store is, as given (what another process passes to open it again)."""
        self.readonly = readonly
        self.schema_version = 0
        """Schema version after opening (``len(MIGRATIONS)``)."""
        self.upgraded_from: int | None = None
        """Schema version found when this open upgraded the store (0: created it; None: nothing to do)."""
        self._lock = threading.Lock()

    # --- what an engine supplies -------------------------------------------------------------
    @property
    def display(self) -> str:
        """The location for messages (no password)."""
        return self.location

    @abstractmethod
    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Run one statement (``?`` placeholders) and return its rows."""

    @abstractmethod
    def _insert_many(self, sql: str, rows: list[Sequence]) -> None:
        """Run one statement for each parameter row."""

    @abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager:
        """A write transaction, serialised with every other writer of the store (ids commit in order)."""

    @abstractmethod
    def _stored_version(self) -> int:
        """Schema version recorded in the store (0: empty); ServingError when it is not a correction store."""

    @abstractmethod
    def _apply(self, version: int, migration: Migration) -> None:
        """Run ``migration`` and record ``version`` (inside the caller's transaction)."""

    def _upgrading(self) -> contextlib.AbstractContextManager:
        """The transaction that upgrades the schema: it holds the store's write lock from before its first read,
        so every process that opens the store at once waits here and then sees what the one before committed."""
        return self._transaction()

    @abstractmethod
    def close(self) -> None: ...

    def leadership(self) -> Leadership:
        """A handle to compete for running the retrainer (one holder per store)."""
        return Leadership()

    def watch_versions(self) -> VersionWatch | None:
        """Version announcements, or None where only one server uses the store."""
        return None

    # --- schema --------------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Check the schema version; a writable open upgrades an older one."""
        latest = len(self.MIGRATIONS)
        found = self._stored_version()
        if found < latest and not self.readonly:
            with self._lock, self._upgrading():
                found = self._stored_version()  # another process may have upgraded it meanwhile
                for version in range(found + 1, latest + 1):
                    self._apply(version, self.MIGRATIONS[version - 1])
            self.upgraded_from, found = (found if found < latest else None), max(found, latest)
        if found > latest:
            raise ServingError(f"correction store {self.display} has schema version {found}, this hilreward "
                               f"knows versions up to {latest}; upgrade hilreward (or use another store=)")
        if found == 0:
            raise ServingError(f"correction store {self.display} is empty (no hilreward tables); pass the store= "
                               "that `hilreward serve` writes")
        if found < latest:
            raise ServingError(f"correction store {self.display} has schema version {found}, this hilreward reads "
                               f"version {latest}; upgrade it once with `hilreward corrections migrate "
                               f"store=...` (a `hilreward serve` on it does the same)")
        self.schema_version = found

    # --- writing -------------------------------------------------------------------------------
    def add(self, correction: Correction, request_id: str | None = None, replica: str = "") -> int:
        """Append one correction; returns its id once it is committed to disk.

        A ``request_id`` already in the store returns the id stored for it and adds nothing
        (so a client may retry a submission whose acknowledgement it never received, on any
        server sharing the store). ``replica`` names the server that takes it.
        """
        self._writable()
        row, frames = _encode(correction)
        _text("request_id", request_id or "")
        _text("replica", replica)
        with self._lock, self._transaction():
            if request_id:
                known = self._rows("SELECT id FROM corrections WHERE request_id = ?", (request_id,))
                if known:
                    return int(known[0][0])
            cid = int(self._rows(
                "INSERT INTO corrections (time, label, probability, model_version, episode, step, env_index, "
                "source, context, request_id, replica) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (*row, request_id or None, replica))[0][0])
            self._insert_many("INSERT INTO frames (correction_id, camera, height, width, png) VALUES (?, ?, ?, ?, ?)",
                              [(cid, key, h, w, blob) for key, h, w, blob in frames])
        return cid

    def __enter__(self) -> "CorrectionStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reading -------------------------------------------------------------------------------
    def _one(self, sql: str, params: Sequence = ()) -> int:
        with self._lock:
            return int(self._rows(sql, params)[0][0])

    def __len__(self) -> int:
        return self.count()

    def count(self) -> int:
        return self._one("SELECT count(*) FROM corrections")

    def last_id(self) -> int:
        """Id of the newest correction (0 when empty)."""
        return self._one("SELECT coalesce(max(id), 0) FROM corrections")

    def read(self, after_id: int = 0, upto_id: int | None = None, frames: bool = True) -> list[StoredCorrection]:
        """Corrections with ``after_id < id <= upto_id``, oldest first (``frames=False``: without their frames)."""
        return list(self.iter(after_id, upto_id, frames))

    def get(self, correction_id: int) -> StoredCorrection:
        """One correction with its frames; InputError when the store has no such id."""
        found = self.read(int(correction_id) - 1, int(correction_id))
        if not found:
            raise InputError(f"no correction {correction_id} in {self.display} (ids run 1..{self.last_id()})")
        return found[0]

    def iter(self, after_id: int = 0, upto_id: int | None = None, frames: bool = True) -> Iterator[StoredCorrection]:
        bounds = (int(after_id), (1 << 62) if upto_id is None else int(upto_id))
        with self._lock:
            rows = self._rows(
                "SELECT id, time, label, probability, model_version, episode, step, env_index, source, replica, "
                "context FROM corrections WHERE id > ? AND id <= ? ORDER BY id", bounds)
            frame_rows = self._rows(
                "SELECT correction_id, camera, png FROM frames WHERE correction_id > ? AND correction_id <= ? "
                "ORDER BY correction_id, camera", bounds) if frames else []
        decoded: dict[int, dict[str, np.ndarray]] = {}
        for cid, camera, blob in frame_rows:
            decoded.setdefault(int(cid), {})[camera] = _unpng(blob)
        for cid, t, label, probability, version, episode, step, env_index, source, replica, context in rows:
            yield StoredCorrection(int(cid), Correction(
                frames=decoded.get(int(cid), {}), label=int(label), probability=json.loads(probability),
                model_version=version, time=float(t), episode=int(episode), step=int(step),
                env_index=int(env_index), source=source,
                context={int(k): float(v) for k, v in json.loads(context).items()} if context else None),
                replica=replica or "")

    # --- reviews -------------------------------------------------------------------------------
    def add_reviews(self, correction_ids: Sequence[int], verdict: str, reviewer: str = "", note: str = "",
                    time: float | None = None) -> list[int]:
        """Record one verdict (``accept`` / ``reject``) per correction in one transaction; returns the review ids."""
        self._writable()
        if verdict not in VERDICTS:
            raise InputError(f"verdict {verdict!r}: use one of {', '.join(VERDICTS)}")
        _text("reviewer", reviewer)
        _text("note", note)
        ids = sorted({int(i) for i in correction_ids})
        if not ids:
            raise InputError("name at least one correction id to review")
        when = float(time if time is not None else _now())
        with self._lock, self._transaction():
            last = int(self._rows("SELECT coalesce(max(id), 0) FROM corrections")[0][0])
            unknown = [i for i in ids if not 1 <= i <= last]
            if unknown:
                raise InputError(f"no correction {unknown[0]} in {self.display} (ids run 1..{last})")
            return [int(self._rows("INSERT INTO reviews (correction_id, verdict, time, reviewer, note) "
                                   "VALUES (?, ?, ?, ?, ?) RETURNING id",
                                   (i, verdict, when, str(reviewer), str(note)))[0][0]) for i in ids]

    def reviews(self, correction_id: int | None = None) -> list[Review]:
        """Every review (of one correction), oldest first."""
        where, args = ("WHERE correction_id = ?", (int(correction_id),)) if correction_id is not None else ("", ())
        with self._lock:
            rows = self._rows(f"SELECT id, correction_id, verdict, time, reviewer, note FROM reviews {where} "
                              "ORDER BY id", args)
        return [Review(int(i), int(c), v, float(t), r, n) for i, c, v, t, r, n in rows]

    def verdicts(self) -> dict[int, Review]:
        """The newest review of each reviewed correction."""
        return {r.correction_id: r for r in self.reviews()}

    def last_review_id(self) -> int:
        return self._one("SELECT coalesce(max(id), 0) FROM reviews")

    # --- retraining attempts -------------------------------------------------------------------
    def add_attempt(self, passed: bool, number: int, version: str, reason: str, metrics: dict[str, float],
                    last_correction_id: int, assessments: Sequence[Assessment], time: float | None = None) -> int:
        """Record a retraining attempt and the status rows that differ from each correction's previous one."""
        self._writable()
        previous = self.latest_statuses()
        changed = [a for a in assessments if _differs(previous.get(a.correction_id), a)]
        numeric = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)}  # NaN: not measured
        with self._lock, self._transaction():
            aid = int(self._rows(
                "INSERT INTO attempts (time, passed, number, version, reason, metrics, last_correction_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (float(time if time is not None else _now()), int(bool(passed)), int(number), str(version),
                 str(reason), json.dumps(numeric), int(last_correction_id)))[0][0])
            if changed:
                self._insert_many("INSERT INTO statuses (attempt_id, correction_id, status, probability, detail, "
                                  "conflict) VALUES (?, ?, ?, ?, ?, ?)",
                                  [(aid, int(a.correction_id), a.status, float(a.probability), a.detail,
                                    json.dumps(a.conflict) if a.conflict else None) for a in changed])
        return aid

    def attempts(self, limit: int | None = None) -> list[AttemptRecord]:
        """Retraining attempts, newest first (``limit`` of them)."""
        with self._lock:
            rows = self._rows("SELECT id, time, passed, number, version, reason, metrics, last_correction_id "
                              "FROM attempts ORDER BY id DESC LIMIT ?", (1 << 62 if limit is None else int(limit),))
        return [AttemptRecord(int(i), float(t), bool(p), int(n), v, r, json.loads(m), int(last))
                for i, t, p, n, v, r, m, last in rows]

    def last_attempt_id(self) -> int:
        return self._one("SELECT coalesce(max(id), 0) FROM attempts")

    def latest_statuses(self) -> dict[int, Assessment]:
        """Each assessed correction's newest status."""
        with self._lock:
            rows = self._rows(
                "SELECT s.correction_id, s.status, s.probability, s.detail, s.attempt_id, s.conflict FROM statuses s "
                "JOIN (SELECT correction_id, max(attempt_id) AS a FROM statuses GROUP BY correction_id) m "
                "ON s.correction_id = m.correction_id AND s.attempt_id = m.a")
        return {int(row[0]): _assessment(row) for row in rows}

    def status_history(self, correction_id: int) -> list[Assessment]:
        """One correction's status rows, oldest first (only changes are stored)."""
        with self._lock:
            rows = self._rows("SELECT correction_id, status, probability, detail, attempt_id, conflict FROM statuses "
                              "WHERE correction_id = ? ORDER BY attempt_id", (int(correction_id),))
        return [_assessment(row) for row in rows]

    def _writable(self) -> None:
        if self.readonly:
            raise ServingError(f"correction store {self.display} was opened read-only")


def _assessment(row: Sequence) -> Assessment:
    c, status, p, detail, attempt, conflict = row
    return Assessment(int(c), status, float(p), detail, int(attempt), json.loads(conflict) if conflict else None)


def _differs(before: Assessment | None, now: Assessment) -> bool:
    return before is None or (before.status, before.detail, before.conflict) != (now.status, now.detail, now.conflict) \
        or abs(before.probability - now.probability) >= 0.05


def _encode(correction: Correction) -> tuple[tuple, list[tuple[str, int, int, bytes]]]:
    """Validate ``correction``; its row values and (camera, height, width, png) per frame."""
    frames = {full_key(k): np.asarray(v) for k, v in correction.frames.items()}
    if not frames:
        raise InputError("a correction needs at least one camera frame")
    blobs = []
    for key, frame in frames.items():
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
            raise InputError(f"correction frame {key!r} must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        blobs.append((key, int(frame.shape[0]), int(frame.shape[1]), _png(frame)))
    probability = correction.probability
    probability = [check_finite("probability", p) for p in probability] \
        if isinstance(probability, (list, tuple, np.ndarray)) else check_finite("probability", probability)
    context = {int(k): round(check_finite(f"context[{k}]", v), 6) for k, v in (correction.context or {}).items()}
    _text("source", correction.source)
    _text("model_version", correction.model_version)
    row = (check_finite("time", correction.time), int(correction.label), json.dumps(probability),
           str(correction.model_version), int(correction.episode), int(correction.step), int(correction.env_index),
           str(correction.source), json.dumps(context) if context else None)
    return row, blobs


def _text(name: str, value: str) -> None:
    """InputError when free text ``name`` is longer than :data:`TEXT_LIMITS` allows."""
    if len(str(value)) > TEXT_LIMITS[name]:
        raise InputError(f"{name} is {len(str(value)):,} characters long; at most {TEXT_LIMITS[name]} are kept")


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _unpng(blob: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as img:
        return np.array(img.convert("RGB"))
