"""CorrectionStore: human corrections, durable before they are acknowledged, in one of two engines.

``CorrectionStore(location)`` opens the engine the location names (:data:`ENGINES`): a file path
is SQLite (the default, one server), ``postgresql://user@host/db`` is PostgreSQL (several
``hilreward serve`` replicas sharing one store, one retrainer leader). Both keep the promise of
:mod:`.base`: ack after commit, idempotent ``request_id``, append-only, versioned schema.
"""

from __future__ import annotations

import os

from ...errors import ConfigError
from ...utils import Registry
from .base import (STATUSES, TEXT_LIMITS, VERDICTS, Assessment, AttemptRecord, CorrectionStore, Leadership,
                   Migration, Review, StoredCorrection, VersionWatch)

ENGINES: Registry[type[CorrectionStore]] = Registry("store engine")
"""Engine name -> class (imported on first use); the location's URL scheme picks one."""
ENGINES.register("sqlite", "hilreward.online.store.sqlite:SQLiteStore")  # a path (the default)
ENGINES.register("postgresql", "hilreward.online.store.postgresql:PostgresStore")  # postgresql:// or postgres://
SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql"}
"""URL scheme -> engine name (a location without a scheme is an SQLite path)."""


def engine_name(location: str | os.PathLike) -> str:
    """The engine a store location names (``sqlite`` for a plain path)."""
    text = str(location)
    if "://" not in text:
        return "sqlite"
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"store={text}: unknown store scheme {scheme!r}; use a file path (SQLite) or one of "
                          f"{', '.join(s + '://...' for s in SCHEMES)}")
    return SCHEMES[scheme]


def engine_for(location: str | os.PathLike | None) -> type[CorrectionStore]:
    if location is None:
        raise ConfigError("a correction store needs a location: a file path or postgresql://user@host/db")
    return ENGINES.get(engine_name(location))


__all__ = ["ENGINES", "STATUSES", "TEXT_LIMITS", "VERDICTS", "Assessment", "AttemptRecord", "CorrectionStore",
           "Leadership", "Migration", "Review", "StoredCorrection", "VersionWatch", "engine_for", "engine_name"]
