"""Correction review: what each stored correction is now, and a human's accept / reject.

The same functions serve ``hilreward corrections list|show|accept|reject`` and the server's
ListCorrections / GetCorrection / ReviewCorrections (the operator console).

A correction's status: ``rejected`` as soon as its newest review rejects it; else the status
the latest retraining attempt that saw it gave it (``fixed``, ``unfixed``, ``boundary``,
``contradicted``, ``superseded``, ``conflicts_offline``, ``conflicts_live``, ``unusable``:
:data:`~hilreward.online.store.STATUSES`); ``pending`` until an attempt has seen it. A
``conflicts_offline`` correction names the offline held-out frames it conflicts with
(:func:`offline_frames` reads them for a reviewer to compare); a ``conflicts_live`` one the recent
live episodes and steps where training on it would make the reward newly fire (the server keeps
their frames: :mod:`hilreward.serving.live`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..deploy.rule import success_probability
from ..errors import InputError
from .store import STATUSES, Assessment, CorrectionStore, Review, StoredCorrection


@dataclass
class CorrectionView:
    """One correction as a reviewer sees it."""

    id: int
    time: float
    label: int
    probability: float
    """Success probability of the version that was corrected."""
    model_version: str
    episode: int
    step: int
    env_index: int
    source: str
    status: str
    """One of :data:`~hilreward.online.store.STATUSES`."""
    status_detail: str
    probability_now: Optional[float]
    """Success probability under the latest attempt's model (None while pending or when it cannot judge it)."""
    review: Optional[Review]
    """The newest review, if any."""
    conflict: Optional[dict] = None
    """``conflicts_offline`` / ``conflicts_live``: the offline or live frames it conflicts with (see
    :class:`~hilreward.online.store.Assessment`)."""


@dataclass
class CorrectionDetail:
    view: CorrectionView
    frames: dict[str, np.ndarray]
    history: list[Assessment]
    """Status changes, oldest first."""
    reviews: list[Review] = field(default_factory=list)


@dataclass
class CorrectionCounts:
    """Corrections per status (as the latest retraining attempt left them), and how many a review accepted."""

    total: int = 0
    pending: int = 0
    fixed: int = 0
    unfixed: int = 0
    boundary: int = 0
    contradicted: int = 0
    superseded: int = 0
    conflicts_offline: int = 0
    conflicts_live: int = 0
    unusable: int = 0
    rejected: int = 0
    accepted: int = 0


def _view(stored: StoredCorrection, statuses: dict[int, Assessment], verdicts: dict[int, Review],
          assessed_upto: int, success_class: int) -> CorrectionView:
    c = stored.correction
    review = verdicts.get(stored.id)
    assessment = statuses.get(stored.id) if stored.id <= assessed_upto else None
    if review is not None and review.verdict == "reject":
        status, detail = "rejected", f"rejected by {review.reviewer or 'review'}" + (f": {review.note}" if review.note else "")
    elif assessment is not None:
        status, detail = assessment.status, assessment.detail
    else:
        status, detail = "pending", "no retraining attempt has seen it yet"
    now = assessment.probability if assessment is not None and assessment.probability >= 0 else None
    conflict = assessment.conflict if assessment is not None and status in CONFLICTS else None
    return CorrectionView(stored.id, c.time, c.label, success_probability(c.probability, success_class),
                          c.model_version, c.episode, c.step, c.env_index, c.source, status, detail, now, review,
                          conflict)


def views(store: CorrectionStore, success_class: int = -1) -> list[CorrectionView]:
    """Every correction (oldest first) with its status and newest review; ``success_class``: the serving
    configuration's (multi-class models)."""
    attempts = store.attempts(limit=1)
    upto = attempts[0].last_correction_id if attempts else 0
    statuses, verdicts = store.latest_statuses(), store.verdicts()
    return [_view(s, statuses, verdicts, upto, success_class) for s in store.read(frames=False)]


def count(items: list[CorrectionView]) -> CorrectionCounts:
    by_status = {s: sum(1 for v in items if v.status == s) for s in STATUSES}
    return CorrectionCounts(total=len(items), accepted=sum(1 for v in items if v.review is not None
                                                           and v.review.verdict == "accept"), **by_status)


CONFLICTS = ("conflicts_live", "conflicts_offline", "superseded")
"""Statuses whose assessment names what a correction conflicts with (the live or offline frames, the newer
correction)."""
WAITING = ("conflicts_live", "conflicts_offline", "contradicted", "superseded", "unfixed")
"""Statuses a review should decide (the first ones first): a correction that would make the reward newly fire on
live episodes first (the policy exploits a false success within minutes)."""


def needs_review(items: list[CorrectionView], limit: int = 100) -> list[int]:
    """Corrections in a :data:`WAITING` status that no review has decided: conflicts first, newest first."""
    waiting = [v for v in reversed(items) if v.status in WAITING and v.review is None]
    return [v.id for v in sorted(waiting, key=lambda v: WAITING.index(v.status))][:limit]


def list_corrections(store: CorrectionStore, statuses: list[str] | None = None, limit: int = 100,
                     before_id: int = 0, success_class: int = -1) -> tuple[list[CorrectionView], CorrectionCounts]:
    """The newest ``limit`` corrections (with ids below ``before_id`` when > 0) in ``statuses``, and the counts."""
    unknown = [s for s in statuses or [] if s not in STATUSES]
    if unknown:
        raise InputError(f"unknown status {unknown[0]!r}; known: {', '.join(STATUSES)}")
    if limit < 0 or before_id < 0:
        raise InputError("limit and before_id must be >= 0")
    items = views(store, success_class)
    picked = [v for v in reversed(items) if (not statuses or v.status in statuses)
              and (before_id <= 0 or v.id < before_id)]
    return picked[:limit or None], count(items)


def show_correction(store: CorrectionStore, correction_id: int, success_class: int = -1) -> CorrectionDetail:
    """One correction with its frames, status history and reviews."""
    stored = store.get(correction_id)
    attempts = store.attempts(limit=1)
    upto = attempts[0].last_correction_id if attempts else 0
    history = store.status_history(correction_id)
    reviews = store.reviews(correction_id)
    latest = {correction_id: history[-1]} if history else {}
    view = _view(stored, latest, {correction_id: reviews[-1]} if reviews else {}, upto, success_class)
    return CorrectionDetail(view, stored.correction.frames, history, reviews)


def review_corrections(store: CorrectionStore, ids: list[int], verdict: str, reviewer: str = "",
                       note: str = "") -> list[int]:
    """Record ``verdict`` (accept / reject) for ``ids``; returns the review ids. A rejected correction
    never trains again (until a later accept); an accepted one trains fully even when contradicted."""
    return store.add_reviews(ids, verdict, reviewer=reviewer, note=note)


def offline_frames(dataset, conflict: dict, cameras: list[str]) -> dict[str, np.ndarray]:
    """The offline frame a ``conflicts_offline`` correction conflicts with (``conflict["frame"]`` of its
    episode), uint8 (H, W, 3) per camera of ``cameras``, at the dataset's own size; ``dataset`` is the
    retrainer's :class:`~hilreward.config.DatasetConfig`."""
    from ..data.reader import open_dataset

    ds = open_dataset(dataset)
    episode, frame = int(conflict["episode"]), int(conflict["frame"])
    rows = ds.read_rows(["frame_index"], episodes=[episode])["frame_index"]
    hits = np.flatnonzero(rows == frame)
    if not len(hits):
        raise InputError(f"offline episode {episode} has no frame {frame} (it has {len(rows)} frames)")
    keys = ds.resolve_cameras(cameras)
    return {k: np.asarray(ds.frames([k], ds.camera_size(k), episodes=[episode])[k][int(hits[0])]) for k in keys}
