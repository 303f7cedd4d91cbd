"""CorrectionStore: human corrections in SQLite, durable before they are acknowledged.

One file, WAL journal with ``synchronous=FULL`` (a committed correction survives a crash or a
``kill -9``), frames as PNG blobs, a schema version in ``PRAGMA user_version`` and triggers
that make both tables append-only. The store is a deploy :class:`CorrectionSink`, so a
:class:`RewardFunction` can write human overrides straight into it, and several processes
may read it while one writes (the server writes, the retrainer reads).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..deploy.corrections import Correction
from ..errors import InputError, ServingError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE corrections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    label INTEGER NOT NULL,
    probability TEXT NOT NULL,      -- JSON: a float, or a list of class probabilities
    model_version TEXT NOT NULL,
    episode INTEGER NOT NULL,
    step INTEGER NOT NULL,
    env_index INTEGER NOT NULL,
    source TEXT NOT NULL,
    request_id TEXT UNIQUE          -- client retry key (NULL when none was given)
);
CREATE TABLE frames (
    correction_id INTEGER NOT NULL REFERENCES corrections(id),
    camera TEXT NOT NULL,           -- full key, observation.images.<name>
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    png BLOB NOT NULL,
    PRIMARY KEY (correction_id, camera)
);
CREATE TRIGGER corrections_no_update BEFORE UPDATE ON corrections BEGIN SELECT RAISE(ABORT, 'append-only'); END;
CREATE TRIGGER corrections_no_delete BEFORE DELETE ON corrections BEGIN SELECT RAISE(ABORT, 'append-only'); END;
CREATE TRIGGER frames_no_update BEFORE UPDATE ON frames BEGIN SELECT RAISE(ABORT, 'append-only'); END;
CREATE TRIGGER frames_no_delete BEFORE DELETE ON frames BEGIN SELECT RAISE(ABORT, 'append-only'); END;
"""


@dataclass
class StoredCorrection:
    """A correction as read back from the store."""

    id: int
    """Row id, 1, 2, ... in the order corrections were acknowledged."""
    correction: Correction
    """The correction itself (frames decoded back to uint8 (H, W, 3))."""


class CorrectionStore:
    """Append-only SQLite store of :class:`Correction` s (a deploy ``CorrectionSink``).

    ``add`` returns only after the transaction is committed with ``synchronous=FULL``;
    it is thread-safe. ``readonly=True`` opens an existing store for reading (the retrainer,
    ``hilreward corrections export``) and never creates or migrates it.
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        if readonly:
            if not self.path.is_file():
                raise ServingError(f"correction store {self.path} does not exist; pass the store= used by `hilreward serve`")
            uri = f"file:{self.path.resolve()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)
        try:
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ServingError(f"{self.path} is not a correction store ({exc}); choose another store= path") from None
        self._check_schema(version)

    def _check_schema(self, version: int) -> None:
        if version == 0 and not self.readonly:
            tables = self._db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
            if tables:
                raise ServingError(f"{self.path} is an SQLite file but not a correction store; choose another store= path")
            with self._lock:
                self._db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            raise ServingError(f"{self.path} has correction-store schema version {version}, this hilreward reads "
                               f"version {SCHEMA_VERSION}; upgrade hilreward or use a new store= path")

    # --- writing -------------------------------------------------------------------------
    def add(self, correction: Correction, request_id: str | None = None) -> int:
        """Append one correction; returns its id once it is committed to disk.

        A ``request_id`` already in the store returns the id stored for it and adds nothing
        (so a client may retry a submission whose acknowledgement it never received).
        """
        if self.readonly:
            raise ServingError(f"correction store {self.path} was opened read-only")
        frames = {_full_key(k): np.asarray(v) for k, v in correction.frames.items()}
        if not frames:
            raise InputError("a correction needs at least one camera frame")
        blobs = []
        for key, frame in frames.items():
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
                raise InputError(f"correction frame {key!r} must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
            blobs.append((key, frame.shape[0], frame.shape[1], _png(frame)))
        probability = correction.probability
        probability = [float(p) for p in probability] if isinstance(probability, (list, tuple, np.ndarray)) \
            else float(probability)
        row = (float(correction.time), int(correction.label), json.dumps(probability), str(correction.model_version),
               int(correction.episode), int(correction.step), int(correction.env_index), str(correction.source),
               request_id or None)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if request_id:
                    known = self._db.execute("SELECT id FROM corrections WHERE request_id = ?", (request_id,)).fetchone()
                    if known is not None:
                        self._db.execute("COMMIT")
                        return int(known[0])
                cur = self._db.execute(
                    "INSERT INTO corrections (time, label, probability, model_version, episode, step, env_index, "
                    "source, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                cid = int(cur.lastrowid)
                self._db.executemany("INSERT INTO frames VALUES (?, ?, ?, ?, ?)",
                                     [(cid, key, h, w, blob) for key, h, w, blob in blobs])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return cid

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "CorrectionStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reading -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.count()

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM corrections").fetchone()[0])

    def last_id(self) -> int:
        """Id of the newest correction (0 when empty)."""
        with self._lock:
            return int(self._db.execute("SELECT coalesce(max(id), 0) FROM corrections").fetchone()[0])

    def read(self, after_id: int = 0, upto_id: int | None = None) -> list[StoredCorrection]:
        """Corrections with ``after_id < id <= upto_id``, oldest first."""
        return list(self.iter(after_id, upto_id))

    def iter(self, after_id: int = 0, upto_id: int | None = None) -> Iterator[StoredCorrection]:
        upto = (1 << 62) if upto_id is None else int(upto_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, time, label, probability, model_version, episode, step, env_index, source "
                "FROM corrections WHERE id > ? AND id <= ? ORDER BY id", (int(after_id), upto)).fetchall()
            frame_rows = self._db.execute(
                "SELECT correction_id, camera, png FROM frames WHERE correction_id > ? AND correction_id <= ? "
                "ORDER BY correction_id, camera", (int(after_id), upto)).fetchall()
        frames: dict[int, dict[str, np.ndarray]] = {}
        for cid, camera, blob in frame_rows:
            frames.setdefault(cid, {})[camera] = _unpng(blob)
        for cid, time, label, probability, version, episode, step, env_index, source in rows:
            yield StoredCorrection(cid, Correction(
                frames=frames.get(cid, {}), label=int(label), probability=json.loads(probability),
                model_version=version, time=float(time), episode=int(episode), step=int(step),
                env_index=int(env_index), source=source))


def _full_key(name: str) -> str:
    return name if name.startswith("observation.images.") else "observation.images." + name


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _unpng(blob: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as img:
        return np.array(img.convert("RGB"))
