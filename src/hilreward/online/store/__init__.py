"""CorrectionStore: human corrections, durable before they are acknowledged, in one of two engines.

``CorrectionStore(location)`` opens the engine the location names (:data:`ENGINES`): a file path
is SQLite (the default, one server), ``postgresql://user@host/db`` is PostgreSQL (several
``hilreward serve`` replicas sharing one store, one retrainer leader). Both keep the promise of
:mod:`.base`: ack after commit, idempotent ``request_id``, append-only, versioned schema.
"""

from __future__ import annotations

from .base import (STATUSES, TEXT_LIMITS, VERDICTS, Assessment, AttemptRecord, CorrectionStore, Leadership,
                   Migration, Review, StoredCorrection, VersionWatch)
from .engines import ENGINES, engine_for, engine_name

__all__ = ["ENGINES", "STATUSES", "TEXT_LIMITS", "VERDICTS", "Assessment", "AttemptRecord", "CorrectionStore",
           "Leadership", "Migration", "Review", "StoredCorrection", "VersionWatch", "engine_for", "engine_name"]
