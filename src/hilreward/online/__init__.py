"""hilreward.online: the ever-correcting loop (CorrectionStore, versions, Retrainer)."""

from __future__ import annotations

from .store import CorrectionStore, StoredCorrection
from .versions import VersionRecord, VersionStore

__all__ = ["CorrectionStore", "StoredCorrection", "VersionRecord", "VersionStore"]
