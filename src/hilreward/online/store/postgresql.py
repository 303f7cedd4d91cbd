"""The PostgreSQL engine: ``store=postgresql://user[:password]@host[:port]/database`` (psycopg 3).

One database shared by several ``hilreward serve`` replicas (give the store a database of its own):

- durability: every session runs with ``synchronous_commit=on``, so ``add`` returns (and the
  server acks) only after the commit is flushed to the server's WAL;
- ids in commit order: each write transaction first takes a transaction-level advisory lock, so
  ids are assigned and committed one writer at a time (``read(after_id=...)`` never misses a
  row that commits late) and ``request_id`` stays idempotent across replicas;
- schema: table ``hilreward_schema`` (version, description, applied_unix), one row per applied
  migration, upgraded under that same lock, held by the session from before the upgrade's transaction
  begins (so any number of replicas may start at once on an empty or older store);
- retrainer leader: :class:`AdvisoryLeadership`, a session-level advisory lock on a connection of
  its own. PostgreSQL drops it when that session ends: at once when the leader's process exits
  or is killed, and when its machine dies once the server's TCP keepalives (set to ~8 s on that
  session) find the peer gone;
- new versions: ``NOTIFY hilreward_versions, '<number>'``, heard through :class:`NotifyWatch`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from ...errors import ConfigError, ServingError, UnavailableError
from .base import CorrectionStore, Leadership, Migration, VersionWatch

WRITE_LOCK = 0x68696C7265770001
"""Advisory lock key (transaction-level) every write transaction takes first."""
LEADER_LOCK = 0x68696C7265770002
"""Advisory lock key (session-level) the retrainer leader holds."""
CHANNEL = "hilreward_versions"
"""NOTIFY channel of published version numbers."""
KEEPALIVES = "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3"
"""Server-side TCP keepalives of the leader's session: a dead machine's lock is dropped within ~8 s."""

MIGRATIONS = (
    Migration("corrections and their frames, append-only", """
        CREATE TABLE corrections (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            time DOUBLE PRECISION NOT NULL,
            label INTEGER NOT NULL,
            probability TEXT NOT NULL,
            model_version TEXT NOT NULL,
            episode BIGINT NOT NULL,
            step BIGINT NOT NULL,
            env_index BIGINT NOT NULL,
            source TEXT NOT NULL,
            request_id TEXT UNIQUE
        );
        CREATE TABLE frames (
            correction_id BIGINT NOT NULL REFERENCES corrections(id),
            camera TEXT NOT NULL,
            height INTEGER NOT NULL,
            width INTEGER NOT NULL,
            png BYTEA NOT NULL,
            PRIMARY KEY (correction_id, camera)
        );
        CREATE FUNCTION hilreward_append_only() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN RAISE EXCEPTION 'append-only'; END $$;
        CREATE TRIGGER corrections_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON corrections
            FOR EACH STATEMENT EXECUTE FUNCTION hilreward_append_only();
        CREATE TRIGGER frames_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON frames
            FOR EACH STATEMENT EXECUTE FUNCTION hilreward_append_only();
    """),
    Migration("the server (replica) that acknowledged each correction", """
        ALTER TABLE corrections ADD COLUMN replica TEXT;
    """),
    Migration("reviews, retraining attempts and the statuses they gave, append-only", """
        CREATE TABLE reviews (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            correction_id BIGINT NOT NULL REFERENCES corrections(id),
            verdict TEXT NOT NULL CHECK (verdict IN ('accept', 'reject')),
            time DOUBLE PRECISION NOT NULL,
            reviewer TEXT NOT NULL,
            note TEXT NOT NULL
        );
        CREATE TABLE attempts (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            time DOUBLE PRECISION NOT NULL,
            passed INTEGER NOT NULL,
            number INTEGER NOT NULL,
            version TEXT NOT NULL,
            reason TEXT NOT NULL,
            metrics TEXT NOT NULL,
            last_correction_id BIGINT NOT NULL
        );
        CREATE TABLE statuses (
            attempt_id BIGINT NOT NULL REFERENCES attempts(id),
            correction_id BIGINT NOT NULL REFERENCES corrections(id),
            status TEXT NOT NULL,
            probability DOUBLE PRECISION NOT NULL,
            detail TEXT NOT NULL,
            PRIMARY KEY (correction_id, attempt_id)
        );
        CREATE TRIGGER reviews_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON reviews
            FOR EACH STATEMENT EXECUTE FUNCTION hilreward_append_only();
        CREATE TRIGGER attempts_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON attempts
            FOR EACH STATEMENT EXECUTE FUNCTION hilreward_append_only();
        CREATE TRIGGER statuses_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON statuses
            FOR EACH STATEMENT EXECUTE FUNCTION hilreward_append_only();
    """),
    Migration("served probabilities around each correction, and the offline frames a status conflicts with", """
        ALTER TABLE corrections ADD COLUMN context TEXT;
        ALTER TABLE statuses ADD COLUMN conflict TEXT;
    """),
)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigError("a postgresql:// store needs psycopg 3: pip install 'hilreward[postgresql]'") from None
    return psycopg


def display_url(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


class PostgresStore(CorrectionStore):
    """:class:`CorrectionStore` in a PostgreSQL database, shared by every replica."""

    MIGRATIONS = MIGRATIONS
    shared = True

    def __init__(self, location: str, readonly: bool = False) -> None:
        super().__init__(location, readonly)
        self._pg = _psycopg()
        self._db = None
        try:
            self._conn()
            self._migrate()
        except BaseException:
            self.close()
            raise

    @property
    def display(self) -> str:
        return display_url(self.location)

    # --- connections -----------------------------------------------------------------------------
    def connect(self) -> Any:
        """A new autocommit connection to the store's database (ServingError when it cannot be had)."""
        try:
            conn = self._pg.connect(self.location, autocommit=True, connect_timeout=10,
                                    application_name="hilreward")
        except self._pg.Error as exc:
            raise UnavailableError(f"cannot connect to correction store {self.display}: {_first_line(exc)}; check "
                               "store=postgresql://user[:password]@host[:port]/database and that the server "
                               "is running") from None
        conn.execute("SET synchronous_commit = on")  # the ack comes after the commit is durable
        if self.readonly:
            conn.execute("SET default_transaction_read_only = on")
        return conn

    def _conn(self) -> Any:
        if self._db is None or self._db.closed or self._db.broken:
            if self._db is not None:
                self._db.close()
            self._db = self.connect()
        return self._db

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """A lost connection becomes a ServingError; the next call connects again."""
        try:
            yield
        except self._pg.OperationalError as exc:
            if self._db is not None:
                self._db.close()
            raise UnavailableError(f"correction store {self.display} is unreachable ({_first_line(exc)}); retry "
                               "(a retried request_id is never stored twice)") from None

    # --- engine primitives -----------------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._errors():
            cur = self._conn().execute(sql.replace("?", "%s"), params, binary=True)
            return cur.fetchall() if cur.description else []

    def _insert_many(self, sql: str, rows: list[Sequence]) -> None:
        with self._errors(), self._conn().cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._errors():
            conn = self._conn()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield

    @contextlib.contextmanager
    def _upgrading(self) -> Iterator[None]:
        # The write lock is taken for the session before the transaction begins: a transaction that waited for it
        # inside could still miss the tables a replica created meanwhile (its cached catalog lookups are refreshed
        # when a transaction starts), find version 0 and fail with DuplicateTable.
        with self._errors():
            conn = self._conn()
            conn.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))
        try:
            with self._transaction():
                yield
        except self._pg.Error as exc:
            raise ServingError(f"cannot upgrade the schema of correction store {self.display}: {_first_line(exc)}; "
                               "give the store a database of its own whose user may create tables in it") from None
        finally:
            if not (conn.closed or conn.broken):  # a lost session has dropped the lock already
                conn.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))

    def _stored_version(self) -> int:
        has_schema, has_corrections = self._rows(
            "SELECT to_regclass('hilreward_schema') IS NOT NULL, to_regclass('corrections') IS NOT NULL")[0]
        if not has_schema:
            if has_corrections:
                raise ServingError(f"database {self.display} has a corrections table that hilreward did not make; "
                                   "give the correction store a database of its own")
            return 0
        return int(self._rows("SELECT coalesce(max(version), 0) FROM hilreward_schema")[0][0])

    def _apply(self, version: int, migration: Migration) -> None:
        conn = self._conn()
        conn.execute("CREATE TABLE IF NOT EXISTS hilreward_schema (version INTEGER PRIMARY KEY, "
                     "description TEXT NOT NULL, applied_unix DOUBLE PRECISION NOT NULL)")
        conn.execute(migration.sql)
        conn.execute("INSERT INTO hilreward_schema VALUES (%s, %s, %s)", (version, migration.description, time.time()))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()

    # --- several servers -------------------------------------------------------------------------
    def leadership(self) -> "AdvisoryLeadership":
        return AdvisoryLeadership(self)

    def watch_versions(self) -> "NotifyWatch":
        return NotifyWatch(self)


class AdvisoryLeadership(Leadership):
    """The retrainer leader: whoever holds the session-level advisory lock ``LEADER_LOCK``."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._conn: Any = None

    def try_acquire(self) -> bool:
        if self._conn is None or self._conn.closed or self._conn.broken:  # one session, kept while on standby
            self.close()
            self._conn = self._store.connect()
            self._conn.execute(KEEPALIVES)
        try:
            return bool(self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()[0])
        except self._store._pg.Error as exc:
            self.close()
            raise ServingError(f"leader election on {self._store.display} failed: {_first_line(exc)}") from None

    def held(self) -> bool:
        if self._conn is None:
            return False
        try:
            return bool(self._conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint) = %s)",
                (LEADER_LOCK,)).fetchone()[0])
        except self._store._pg.Error:
            self.close()
            return False

    def announce(self, number: int) -> None:
        if self._conn is None:
            raise ServingError("only the leader announces versions")
        try:
            self._conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(int(number))))
        except self._store._pg.Error as exc:
            raise ServingError(f"cannot announce version {number} on {self._store.display}: "
                               f"{_first_line(exc)}") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ends the session: PostgreSQL drops the lock
            self._conn = None


class NotifyWatch(VersionWatch):
    """``LISTEN hilreward_versions`` on a connection of its own."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._conn = store.connect()
        self._conn.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float) -> list[int]:
        try:
            return [int(n.payload) for n in self._conn.notifies(timeout=timeout, stop_after=1)
                    if n.payload.isdigit()]
        except self._store._pg.Error as exc:
            raise ServingError(f"lost the version announcements of {self._store.display}: "
                               f"{_first_line(exc)}") from None

    def close(self) -> None:
        self._conn.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
