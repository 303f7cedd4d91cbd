"""The JSON of the operator console and review pages (pydantic), and its conversions from the client's records.

Frames travel as ``data:`` URLs (JPEG from the activity stream and the query queue, PNG for a stored
correction), so a page shows them with no further request. Cameras are named without the
``observation.images.`` prefix.
"""

from __future__ import annotations

import base64
from typing import Literal, Optional

from pydantic import BaseModel, Field

from ..online.review import CorrectionCounts, CorrectionView
from ..online.store import TEXT_LIMITS
from ..utils import CAMERA_PREFIX


def data_url(image: bytes) -> str:
    """Encoded frame bytes as a ``data:`` URL an ``<img>`` shows (PNG or JPEG)."""
    media = "image/png" if image[:4] == b"\x89PNG" else "image/jpeg"
    return f"data:{media};base64,{base64.b64encode(image).decode()}"


def camera_name(key: str) -> str:
    """``observation.images.front`` -> ``front``."""
    return key[len(CAMERA_PREFIX):] if key.startswith(CAMERA_PREFIX) else key


def images_model(images: dict[str, bytes]) -> dict[str, str]:
    """Camera (short name) -> data URL."""
    return {camera_name(k): data_url(v) for k, v in images.items()}


def same_named(model: type[BaseModel], record) -> dict:
    """The fields of ``model`` that ``record`` (a client record) has under the same name."""
    return {name: getattr(record, name) for name in model.model_fields if hasattr(record, name)}


# ---- live activity -----------------------------------------------------------------------------------
class VersionMonitorModel(BaseModel):
    """The hacking monitor's numbers of one version (see :mod:`hilreward.online.monitor`)."""

    version: str
    number: int
    episodes: int = Field(description="live episodes whose first step it judged")
    claimed: int = Field(description="of those, episodes where it claimed success")
    claimed_unfamiliar: int = Field(description="claims on a frame unlike every labelled success")
    claimed_unknown: int = Field(description="claims whose familiarity the model cannot tell")
    false_success_flags: int = Field(description="corrections saying not success where it said success")
    claimed_rate: float = Field(description="claimed / episodes")
    unfamiliar_share: float = Field(description="claimed_unfamiliar / the claims whose familiarity is known")

    @classmethod
    def of(cls, v) -> "VersionMonitorModel":
        return cls(**same_named(cls, v))


class ModelState(BaseModel):
    version: str
    number: int = Field(description="version directory number (0: the checkpoint the server started with)")
    created_unix: float
    threshold: float
    cameras: list[str]
    metrics: dict[str, float]
    corrections_used: int = Field(description="corrections this version was trained with")
    last_correction_id: int = Field(description="newest correction id this version was trained with (0: none)")
    corrections: CorrectionCounts
    needs_review: list[int] = Field(description="unfixed / contradicted corrections no review has decided")
    ensemble_size: int = Field(description="heads giving the uncertainty (0: none)")
    monitor: list[VersionMonitorModel] = Field(default_factory=list, description="the hacking monitor: what each "
                                               "recent version claimed on live episodes, oldest first")

    @classmethod
    def of(cls, m, last_correction_id: int) -> "ModelState":
        """From a :class:`~hilreward.serving.ModelInfo`."""
        fields = {k: v for k, v in same_named(cls, m).items() if k != "monitor"}
        return cls(**fields, last_correction_id=last_correction_id, cameras=[camera_name(k) for k in m.camera_keys],
                   monitor=[VersionMonitorModel.of(v) for v in getattr(m, "monitor", [])])


class RetrainerState(BaseModel):
    state: str = Field(description="off, starting, ready, standby, training, published, rejected or error")
    message: str
    updated_unix: float
    attempts: int
    published: int
    rejected: int

    @classmethod
    def of(cls, r) -> "RetrainerState":
        """From a :class:`~hilreward.serving.records.RetrainerStatus`."""
        return cls(**same_named(cls, r))


class Point(BaseModel):
    """One Predict call, as the probability trace shows it."""

    prediction_id: int
    time_unix: float
    episode_id: int
    step: int
    probability: float
    uncertainty: Optional[float]
    threshold: float
    success: bool
    model_version: str

    @classmethod
    def of(cls, p) -> "Point":
        """From a :class:`~hilreward.serving.records.RecentPrediction`."""
        return cls(**same_named(cls, p))


class PredictionEvent(BaseModel):
    trace_id: int = Field(description="the trace it belongs to: an episode, restarted when its step goes back")
    point: Point
    images: Optional[dict[str, str]] = Field(description="camera -> JPEG data URL (at most frames_per_second)")
    skipped: int = Field(description="predictions the server left out before this one (the reader was slow)")


class Trace(BaseModel):
    trace_id: int
    episode_id: int
    points: list[Point]


class Frames(BaseModel):
    prediction_id: int
    trace_id: int
    images: dict[str, str]


class Connection(BaseModel):
    connected: bool
    address: str
    message: str


class ConsoleSettings(BaseModel):
    last_k: int = Field(description="frames a button labels unless the page says otherwise")
    frame_side: int = Field(description="live frames are at most this many pixels on their longer side")
    frames_per_second: float = Field(description="live frames per second at most")


class Snapshot(BaseModel):
    """What a page gets when it connects: everything the live events then update."""

    connection: Connection
    model: Optional[ModelState]
    retrainer: Optional[RetrainerState]
    traces: list[Trace] = Field(description="recent traces, oldest first (empty on status-only streams)")
    frames: Optional[Frames] = Field(description="the newest frames of every camera")
    settings: ConsoleSettings


# ---- corrections from the console ------------------------------------------------------------------
class CorrectRequest(BaseModel):
    label: int = Field(description="1: this is success (a missed success); 0: it is not (a false success)")
    prediction_ids: list[int] = Field(default_factory=list, description="the frames to label (ids from the trace)")
    last_k: int = Field(0, description="or: the last k predictions (of episode_id)")
    episode_id: Optional[int] = None
    source: str = Field("console", max_length=TEXT_LIMITS["source"])


class CorrectAck(BaseModel):
    correction_ids: list[int]
    prediction_ids: list[int]
    corrections_total: int
    model_version: str = Field(description="version serving when they were stored")
    retraining: bool = Field(description="the server trains corrections into new versions")
    next: str = Field(description="what happens to them next, in words")


class QueryModel(BaseModel):
    point: Point
    need: float = Field(description="0..1: how much the frame needs a human")
    reason: str
    images: dict[str, str]


class QueryList(BaseModel):
    queries: list[QueryModel] = Field(description="neediest first")


# ---- review and versions ----------------------------------------------------------------------------
class ReviewModel(BaseModel):
    verdict: str
    time_unix: float
    reviewer: str
    note: str

    @classmethod
    def of(cls, r) -> "ReviewModel":
        """From a :class:`~hilreward.online.store.Review`."""
        return cls(verdict=r.verdict, time_unix=r.time, reviewer=r.reviewer, note=r.note)


class OfflineConflictModel(BaseModel):
    episode: int = Field(description="offline held-out episode the correction conflicts with")
    start: int = Field(description="first frame_index of the frames it makes wrong")
    end: int = Field(description="one past the last (exclusive)")
    frame: int = Field(description="the frame most alike the correction (offline_images shows it)")
    kind: str = Field(description="the error training on it caused: gross_early, false_success, missed or late")
    label: int = Field(description="those frames' label; accepting the correction relabels them to its label")


class LiveConflictModel(BaseModel):
    kind: str = Field(description="newly_fires, or early (within the first steps of an episode)")
    episode: int = Field(description="the live episode of the frame most alike the correction")
    frame: int = Field(description="that frame's step")
    firings: list[list[int]] = Field(description="[episode, step] of each live episode where it would newly fire")


class CorrectionModel(BaseModel):
    id: int
    time_unix: float
    label: int
    probability: float = Field(description="success probability of the version that was corrected")
    model_version: str
    episode_id: int
    step: int
    env_index: int
    source: str
    status: str
    status_detail: str
    probability_now: Optional[float] = Field(description="under the latest retraining attempt's model")
    review: Optional[ReviewModel]
    conflict: Optional[OfflineConflictModel] = Field(None, description="conflicts_offline: the offline frames")
    live_conflict: Optional[LiveConflictModel] = Field(None, description="conflicts_live: the live firings")
    superseded_by: Optional[int] = Field(None, description="superseded: the newer correction that wins")

    @classmethod
    def of(cls, v: CorrectionView) -> "CorrectionModel":
        return cls(id=v.id, time_unix=v.time, label=v.label, probability=v.probability, model_version=v.model_version,
                   episode_id=v.episode, step=v.step, env_index=v.env_index, source=v.source, status=v.status,
                   status_detail=v.status_detail, probability_now=v.probability_now,
                   review=None if v.review is None else ReviewModel.of(v.review), **_conflict(v.conflict))


def _conflict(conflict: Optional[dict]) -> dict:
    """CorrectionModel's fields for what a status names (see :class:`~hilreward.online.store.Assessment`)."""
    if not conflict:
        return {}
    if "by" in conflict:
        return {"superseded_by": int(conflict["by"])}
    if conflict.get("live"):
        return {"live_conflict": LiveConflictModel(kind=conflict.get("kind", ""), episode=conflict.get("episode", 0),
                                                   frame=conflict.get("frame", 0),
                                                   firings=conflict.get("firings", []))}
    return {"conflict": OfflineConflictModel(**{k: conflict[k] for k in OfflineConflictModel.model_fields})}


class CorrectionPage(BaseModel):
    corrections: list[CorrectionModel] = Field(description="newest first")
    counts: CorrectionCounts
    waiting: int = Field(description="listed corrections in conflict, contradicted or unfixed, with no verdict yet")


class StatusChange(BaseModel):
    attempt_id: int
    status: str
    probability: float = Field(description="success probability under that attempt's model (-1: cannot judge)")
    detail: str


class CorrectionDetailModel(BaseModel):
    correction: CorrectionModel
    images: dict[str, str] = Field(description="camera -> PNG data URL (the stored frames, lossless)")
    history: list[StatusChange] = Field(description="status changes, oldest first")
    reviews: list[ReviewModel]
    offline_images: dict[str, str] = Field(default_factory=dict, description="conflicts_offline: camera -> data URL "
                                           "of the offline frame it conflicts with")
    offline_note: str = Field("", description="why offline_images (or live_images) is empty for a conflict")
    live_images: dict[str, str] = Field(default_factory=dict, description="conflicts_live: camera -> data URL of the "
                                        "live frame most alike it")


class ReviewRequest(BaseModel):
    ids: list[int] = Field(min_length=1)
    verdict: Literal["accept", "reject"]
    note: str = Field("", max_length=TEXT_LIMITS["note"])


class ReviewAck(BaseModel):
    review_ids: list[int]


class VersionModel(BaseModel):
    number: int
    version: str
    created_unix: float
    metrics: dict[str, float]
    corrections_used: int
    last_correction_id: int
    serving: bool


class AttemptModel(BaseModel):
    id: int
    time_unix: float
    passed: bool
    number: int = Field(description="version it was published as, -1 when the gate refused it")
    version: str
    reason: str
    metrics: dict[str, float]
    last_correction_id: int


class TimelineModel(BaseModel):
    versions: list[VersionModel] = Field(description="newest first")
    attempts: list[AttemptModel] = Field(description="newest first, with the gate's metrics")
