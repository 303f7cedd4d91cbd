"""The SQLite engine (the default): one file, durable before the ack.

WAL journal with ``synchronous=FULL`` (a committed correction survives a crash or a ``kill -9``),
frames as PNG blobs, the schema version in ``PRAGMA user_version`` and triggers that make every
table append-only. Several processes may use it at once, one write at a time (the server and its
retrainer write, ``hilreward corrections`` reads and reviews); one server per store (its state dir's lock).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Iterator, Sequence

from ...errors import ServingError
from .base import CorrectionStore, Migration

MIGRATIONS = (
    Migration("corrections and their frames, append-only", """
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
    """),
    Migration("the server (replica) that acknowledged each correction", """
        ALTER TABLE corrections ADD COLUMN replica TEXT;
    """),
    Migration("reviews, retraining attempts and the statuses they gave, append-only", """
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            correction_id INTEGER NOT NULL REFERENCES corrections(id),
            verdict TEXT NOT NULL CHECK (verdict IN ('accept', 'reject')),
            time REAL NOT NULL,
            reviewer TEXT NOT NULL,
            note TEXT NOT NULL
        );
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            time REAL NOT NULL,
            passed INTEGER NOT NULL,
            number INTEGER NOT NULL,        -- published version number (-1 when the gate refused it)
            version TEXT NOT NULL,          -- published model_version ('' when refused)
            reason TEXT NOT NULL,           -- why the gate refused it
            metrics TEXT NOT NULL,          -- JSON {name: number}
            last_correction_id INTEGER NOT NULL
        );
        CREATE TABLE statuses (
            attempt_id INTEGER NOT NULL REFERENCES attempts(id),
            correction_id INTEGER NOT NULL REFERENCES corrections(id),
            status TEXT NOT NULL,
            probability REAL NOT NULL,      -- success probability under the attempt's model
            detail TEXT NOT NULL,
            PRIMARY KEY (correction_id, attempt_id)
        );
        CREATE TRIGGER reviews_no_update BEFORE UPDATE ON reviews BEGIN SELECT RAISE(ABORT, 'append-only'); END;
        CREATE TRIGGER reviews_no_delete BEFORE DELETE ON reviews BEGIN SELECT RAISE(ABORT, 'append-only'); END;
        CREATE TRIGGER attempts_no_update BEFORE UPDATE ON attempts BEGIN SELECT RAISE(ABORT, 'append-only'); END;
        CREATE TRIGGER attempts_no_delete BEFORE DELETE ON attempts BEGIN SELECT RAISE(ABORT, 'append-only'); END;
        CREATE TRIGGER statuses_no_update BEFORE UPDATE ON statuses BEGIN SELECT RAISE(ABORT, 'append-only'); END;
        CREATE TRIGGER statuses_no_delete BEFORE DELETE ON statuses BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    """),
    Migration("served probabilities around each correction, and the offline frames a status conflicts with", """
        ALTER TABLE corrections ADD COLUMN context TEXT;
        ALTER TABLE statuses ADD COLUMN conflict TEXT;
    """),
)


class SQLiteStore(CorrectionStore):
    """:class:`CorrectionStore` in one SQLite file (``store=path/corrections.sqlite``)."""

    MIGRATIONS = MIGRATIONS

    def __init__(self, location: str | os.PathLike, readonly: bool = False) -> None:
        super().__init__(location, readonly)
        self.path = Path(location)
        if readonly:
            if not self.path.is_file():
                raise ServingError(f"correction store {self.path} does not exist; pass the store= used by "
                                   "`hilreward serve`")
            uri = f"file:{self.path.resolve()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)
        try:
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ServingError(f"{self.path} is not a correction store ({exc}); choose another store= path") from None
        except BaseException:
            self._db.close()
            raise

    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self._db.execute(sql, params).fetchall()

    def _insert_many(self, sql: str, rows: list[Sequence]) -> None:
        self._db.executemany(sql, rows)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")  # takes the write lock now: one writer at a time
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _stored_version(self) -> int:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version == 0 and self._db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]:
            raise ServingError(f"{self.path} is an SQLite file but not a correction store; choose another store= path")
        return version

    def _apply(self, version: int, migration: Migration) -> None:
        for statement in _statements(migration.sql):
            self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version={int(version)}")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _statements(script: str) -> Iterator[str]:
    """The statements of an SQL script (a trigger's ``BEGIN ... END`` stays whole)."""
    current = ""
    for part in script.split(";"):
        current += part + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                yield current.strip()
            current = ""
