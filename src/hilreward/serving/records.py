"""Typed results of the console calls of :class:`~hilreward.serving.RewardClient` (built from the protos).

Corrections come as the same :class:`~hilreward.online.review.CorrectionView` the CLI prints.
Frames come as encoded bytes (JPEG, or PNG where lossless was asked for), ready for a web page;
``arrays()`` decodes them to uint8 (H, W, 3).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..online.review import CorrectionCounts, CorrectionView
from ..online.store import Assessment, AttemptRecord, Review
from .images import decode_image
from .protos import hilreward_pb2 as pb


def _images(images) -> dict[str, bytes]:
    return {i.camera: bytes(i.data) for i in images}


def _arrays(images: dict[str, bytes]) -> dict[str, np.ndarray]:
    return {k: decode_image(pb.Image(camera=k, data=v, encoding=pb.Image.PNG if v[:4] == b"\x89PNG" else pb.Image.JPEG))
            for k, v in images.items()}


def counts_from_proto(m: pb.CorrectionCounts) -> CorrectionCounts:
    return CorrectionCounts(**{f: getattr(m, f) for f in CorrectionCounts.__dataclass_fields__})


def conflict_from_proto(m) -> dict | None:
    """What a status names (a CorrectionSummary or StatusChange): as :class:`~hilreward.online.store.Assessment`
    keeps it (``{"by"}``, ``{"live", "kind", "episode", "frame", "firings"}`` or the offline frames), or None."""
    if m.superseded_by:
        return {"by": int(m.superseded_by)}
    if m.HasField("live_conflict"):
        c = m.live_conflict
        return {"live": True, "kind": c.kind, "episode": c.episode, "frame": c.step,
                "firings": [[int(e), int(t)] for e, t in zip(c.firing_episodes, c.firing_steps)], "label": 0}
    if m.HasField("conflict"):
        c = m.conflict
        return {"episode": c.episode, "start": c.start, "end": c.end, "frame": c.frame, "kind": c.kind,
                "label": c.label}
    return None


@dataclass
class RetrainerStatus:
    """What the retrainer is doing (ModelInfo.retrainer, the activity stream)."""

    state: str = "off"
    """off, starting, ready, training, published, rejected or error."""
    message: str = ""
    updated_unix: float = field(default_factory=time.time)
    attempts: int = 0
    """Retraining attempts since the server started, and how many were published or refused by the gate."""
    published: int = 0
    rejected: int = 0

    @property
    def text(self) -> str:
        """The one-line form of ModelInfo.retrainer_status (``published <version>``, ``rejected <reason>``...)."""
        return f"{self.state} {self.message}".strip()

    def to_proto(self) -> pb.RetrainerStatus:
        return pb.RetrainerStatus(state=self.state, message=self.message, updated_unix=self.updated_unix,
                                  attempts=self.attempts, published=self.published, rejected=self.rejected)

    @classmethod
    def from_proto(cls, m: pb.RetrainerStatus) -> "RetrainerStatus":
        return cls(m.state, m.message, m.updated_unix, m.attempts, m.published, m.rejected)


@dataclass
class RecentPrediction:
    """A prediction the server made (from WatchActivity or the query queue)."""

    prediction_id: int
    time_unix: float
    episode_id: int
    step: int
    probability: float
    uncertainty: Optional[float]
    threshold: float
    success: bool
    model_version: str
    images: dict[str, bytes] = field(default_factory=dict)
    """Camera -> JPEG bytes (empty when the stream left the frames out)."""
    skipped: int = 0
    """Predictions the stream left out before this one (the reader was slow)."""

    @classmethod
    def from_proto(cls, m: pb.RecentPrediction, skipped: int = 0) -> "RecentPrediction":
        return cls(m.prediction_id, m.time_unix, m.episode_id, m.step, m.probability,
                   m.uncertainty if m.HasField("uncertainty") else None, m.threshold, m.success, m.model_version,
                   _images(m.images), skipped)

    def arrays(self) -> dict[str, np.ndarray]:
        return _arrays(self.images)


@dataclass
class Query:
    """A recent frame that needs a human: ``need`` 0..1 and why."""

    prediction: RecentPrediction
    need: float
    reason: str


@dataclass
class RecentCorrectionAck:
    correction_ids: list[int]
    prediction_ids: list[int]
    corrections_total: int
    model_version: str


def review_from_proto(m: pb.Review, correction_id: int) -> Review:
    return Review(0, correction_id, m.verdict, m.time_unix, m.reviewer, m.note)


def view_from_proto(m: pb.CorrectionSummary) -> CorrectionView:
    return CorrectionView(m.id, m.time_unix, m.label, m.probability, m.model_version, m.episode_id, m.step,
                          m.env_index, m.source, m.status, m.status_detail,
                          m.probability_now if m.HasField("probability_now") else None,
                          review_from_proto(m.review, m.id) if m.HasField("review") else None,
                          conflict_from_proto(m))


@dataclass
class CorrectionList:
    corrections: list[CorrectionView]
    """Newest first."""
    counts: CorrectionCounts


@dataclass
class CorrectionImages:
    """One correction as GetCorrection returns it: frames as encoded bytes."""

    view: CorrectionView
    images: dict[str, bytes]
    """Camera -> PNG (lossless) or JPEG bytes."""
    history: list[Assessment]
    """Status changes, oldest first."""
    reviews: list[Review]
    offline_images: dict[str, bytes] = field(default_factory=dict)
    """``conflicts_offline``: the offline frame it conflicts with, camera -> encoded bytes."""
    offline_note: str = ""
    """Why ``offline_images`` (or ``live_images``) is empty for a conflict (the server has no offline dataset, or
    no longer keeps the live episode)."""
    live_images: dict[str, bytes] = field(default_factory=dict)
    """``conflicts_live``: the live frame most alike it, camera -> encoded bytes."""

    @classmethod
    def from_proto(cls, m: pb.CorrectionDetail) -> "CorrectionImages":
        cid = m.summary.id
        return cls(view_from_proto(m.summary), _images(m.images),
                   [Assessment(cid, h.status, h.probability, h.detail, h.attempt_id, conflict_from_proto(h))
                    for h in m.history],
                   [review_from_proto(r, cid) for r in m.reviews], _images(m.offline_images), m.offline_note,
                   _images(m.live_images))

    def arrays(self) -> dict[str, np.ndarray]:
        return _arrays(self.images)

    def offline_arrays(self) -> dict[str, np.ndarray]:
        return _arrays(self.offline_images)


@dataclass
class VersionInfo:
    number: int
    version: str
    created_unix: float
    metrics: dict[str, float]
    corrections_used: int
    last_correction_id: int
    serving: bool


@dataclass
class Timeline:
    versions: list[VersionInfo]
    """Oldest first."""
    attempts: list[AttemptRecord]
    """Newest first."""

    @classmethod
    def from_proto(cls, m: pb.ListVersionsResponse) -> "Timeline":
        return cls([VersionInfo(v.number, v.version, v.created_unix, dict(v.metrics), v.corrections_used,
                                v.last_correction_id, v.serving) for v in m.versions],
                   [AttemptRecord(a.id, a.time_unix, a.passed, a.number, a.version, a.reason, dict(a.metrics),
                                  a.last_correction_id) for a in m.attempts])
