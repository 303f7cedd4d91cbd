from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Image(_message.Message):
    __slots__ = ("camera", "height", "width", "encoding", "data")
    class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        RAW_RGB8: _ClassVar[Image.Encoding]
        JPEG: _ClassVar[Image.Encoding]
        PNG: _ClassVar[Image.Encoding]
    RAW_RGB8: Image.Encoding
    JPEG: Image.Encoding
    PNG: Image.Encoding
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    camera: str
    height: int
    width: int
    encoding: Image.Encoding
    data: bytes
    def __init__(self, camera: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., encoding: _Optional[_Union[Image.Encoding, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("images", "episode_id", "step", "model_version", "state", "named_state")
    class NamedStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NAMED_STATE_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    episode_id: int
    step: int
    model_version: str
    state: _containers.RepeatedScalarFieldContainer[float]
    named_state: _containers.ScalarMap[str, float]
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., episode_id: _Optional[int] = ..., step: _Optional[int] = ..., model_version: _Optional[str] = ..., state: _Optional[_Iterable[float]] = ..., named_state: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("probability", "class_probabilities", "success", "reward", "terminate", "model_version", "server_latency_ms", "episode_id", "step", "uncertainty", "prediction_id", "support", "novelty")
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    CLASS_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    TERMINATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    NOVELTY_FIELD_NUMBER: _ClassVar[int]
    probability: float
    class_probabilities: _containers.RepeatedScalarFieldContainer[float]
    success: bool
    reward: float
    terminate: bool
    model_version: str
    server_latency_ms: float
    episode_id: int
    step: int
    uncertainty: float
    prediction_id: int
    support: float
    novelty: float
    def __init__(self, probability: _Optional[float] = ..., class_probabilities: _Optional[_Iterable[float]] = ..., success: _Optional[bool] = ..., reward: _Optional[float] = ..., terminate: _Optional[bool] = ..., model_version: _Optional[str] = ..., server_latency_ms: _Optional[float] = ..., episode_id: _Optional[int] = ..., step: _Optional[int] = ..., uncertainty: _Optional[float] = ..., prediction_id: _Optional[int] = ..., support: _Optional[float] = ..., novelty: _Optional[float] = ...) -> None: ...

class CorrectionRequest(_message.Message):
    __slots__ = ("images", "label", "episode_id", "step", "model_version", "probability", "source", "time", "env_index", "request_id")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ENV_INDEX_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    label: int
    episode_id: int
    step: int
    model_version: str
    probability: float
    source: str
    time: float
    env_index: int
    request_id: str
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., label: _Optional[int] = ..., episode_id: _Optional[int] = ..., step: _Optional[int] = ..., model_version: _Optional[str] = ..., probability: _Optional[float] = ..., source: _Optional[str] = ..., time: _Optional[float] = ..., env_index: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class CorrectionAck(_message.Message):
    __slots__ = ("correction_id", "corrections_total", "model_version")
    CORRECTION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRECTIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    correction_id: int
    corrections_total: int
    model_version: str
    def __init__(self, correction_id: _Optional[int] = ..., corrections_total: _Optional[int] = ..., model_version: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchModelRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("version", "created_unix", "metrics", "corrections_total", "corrections_used", "camera_keys", "image_height", "image_width", "num_classes", "threshold", "retrainer_status", "number", "corrections", "needs_review", "retrainer", "ensemble_size", "monitor", "success_when", "state_names")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CORRECTIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CORRECTIONS_USED_FIELD_NUMBER: _ClassVar[int]
    CAMERA_KEYS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    RETRAINER_STATUS_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    CORRECTIONS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    RETRAINER_FIELD_NUMBER: _ClassVar[int]
    ENSEMBLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MONITOR_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_WHEN_FIELD_NUMBER: _ClassVar[int]
    STATE_NAMES_FIELD_NUMBER: _ClassVar[int]
    version: str
    created_unix: float
    metrics: _containers.ScalarMap[str, float]
    corrections_total: int
    corrections_used: int
    camera_keys: _containers.RepeatedScalarFieldContainer[str]
    image_height: int
    image_width: int
    num_classes: int
    threshold: float
    retrainer_status: str
    number: int
    corrections: CorrectionCounts
    needs_review: _containers.RepeatedScalarFieldContainer[int]
    retrainer: RetrainerStatus
    ensemble_size: int
    monitor: _containers.RepeatedCompositeFieldContainer[VersionMonitor]
    success_when: str
    state_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., created_unix: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., corrections_total: _Optional[int] = ..., corrections_used: _Optional[int] = ..., camera_keys: _Optional[_Iterable[str]] = ..., image_height: _Optional[int] = ..., image_width: _Optional[int] = ..., num_classes: _Optional[int] = ..., threshold: _Optional[float] = ..., retrainer_status: _Optional[str] = ..., number: _Optional[int] = ..., corrections: _Optional[_Union[CorrectionCounts, _Mapping]] = ..., needs_review: _Optional[_Iterable[int]] = ..., retrainer: _Optional[_Union[RetrainerStatus, _Mapping]] = ..., ensemble_size: _Optional[int] = ..., monitor: _Optional[_Iterable[_Union[VersionMonitor, _Mapping]]] = ..., success_when: _Optional[str] = ..., state_names: _Optional[_Iterable[str]] = ...) -> None: ...

class VersionMonitor(_message.Message):
    __slots__ = ("version", "number", "episodes", "claimed", "claimed_unfamiliar", "claimed_unknown", "false_success_flags", "first_unix", "last_unix")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_UNFAMILIAR_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    FALSE_SUCCESS_FLAGS_FIELD_NUMBER: _ClassVar[int]
    FIRST_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_UNIX_FIELD_NUMBER: _ClassVar[int]
    version: str
    number: int
    episodes: int
    claimed: int
    claimed_unfamiliar: int
    claimed_unknown: int
    false_success_flags: int
    first_unix: float
    last_unix: float
    def __init__(self, version: _Optional[str] = ..., number: _Optional[int] = ..., episodes: _Optional[int] = ..., claimed: _Optional[int] = ..., claimed_unfamiliar: _Optional[int] = ..., claimed_unknown: _Optional[int] = ..., false_success_flags: _Optional[int] = ..., first_unix: _Optional[float] = ..., last_unix: _Optional[float] = ...) -> None: ...

class CorrectionCounts(_message.Message):
    __slots__ = ("total", "pending", "fixed", "unfixed", "contradicted", "rejected", "accepted", "boundary", "conflicts_offline", "unusable", "superseded", "conflicts_live")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    FIXED_FIELD_NUMBER: _ClassVar[int]
    UNFIXED_FIELD_NUMBER: _ClassVar[int]
    CONTRADICTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    BOUNDARY_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_OFFLINE_FIELD_NUMBER: _ClassVar[int]
    UNUSABLE_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_LIVE_FIELD_NUMBER: _ClassVar[int]
    total: int
    pending: int
    fixed: int
    unfixed: int
    contradicted: int
    rejected: int
    accepted: int
    boundary: int
    conflicts_offline: int
    unusable: int
    superseded: int
    conflicts_live: int
    def __init__(self, total: _Optional[int] = ..., pending: _Optional[int] = ..., fixed: _Optional[int] = ..., unfixed: _Optional[int] = ..., contradicted: _Optional[int] = ..., rejected: _Optional[int] = ..., accepted: _Optional[int] = ..., boundary: _Optional[int] = ..., conflicts_offline: _Optional[int] = ..., unusable: _Optional[int] = ..., superseded: _Optional[int] = ..., conflicts_live: _Optional[int] = ...) -> None: ...

class OfflineConflict(_message.Message):
    __slots__ = ("episode", "start", "end", "frame", "kind", "label")
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    episode: int
    start: int
    end: int
    frame: int
    kind: str
    label: int
    def __init__(self, episode: _Optional[int] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., frame: _Optional[int] = ..., kind: _Optional[str] = ..., label: _Optional[int] = ...) -> None: ...

class RetrainerStatus(_message.Message):
    __slots__ = ("state", "message", "updated_unix", "attempts", "published", "rejected")
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    state: str
    message: str
    updated_unix: float
    attempts: int
    published: int
    rejected: int
    def __init__(self, state: _Optional[str] = ..., message: _Optional[str] = ..., updated_unix: _Optional[float] = ..., attempts: _Optional[int] = ..., published: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class WatchActivityRequest(_message.Message):
    __slots__ = ("max_side", "jpeg_quality", "frames_per_second", "no_frames", "episode_id")
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    NO_FRAMES_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    max_side: int
    jpeg_quality: int
    frames_per_second: float
    no_frames: bool
    episode_id: int
    def __init__(self, max_side: _Optional[int] = ..., jpeg_quality: _Optional[int] = ..., frames_per_second: _Optional[float] = ..., no_frames: _Optional[bool] = ..., episode_id: _Optional[int] = ...) -> None: ...

class RecentPrediction(_message.Message):
    __slots__ = ("prediction_id", "time_unix", "episode_id", "step", "probability", "uncertainty", "threshold", "success", "model_version", "images")
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    prediction_id: int
    time_unix: float
    episode_id: int
    step: int
    probability: float
    uncertainty: float
    threshold: float
    success: bool
    model_version: str
    images: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, prediction_id: _Optional[int] = ..., time_unix: _Optional[float] = ..., episode_id: _Optional[int] = ..., step: _Optional[int] = ..., probability: _Optional[float] = ..., uncertainty: _Optional[float] = ..., threshold: _Optional[float] = ..., success: _Optional[bool] = ..., model_version: _Optional[str] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class Activity(_message.Message):
    __slots__ = ("prediction", "model", "retrainer", "skipped")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RETRAINER_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    prediction: RecentPrediction
    model: ModelInfo
    retrainer: RetrainerStatus
    skipped: int
    def __init__(self, prediction: _Optional[_Union[RecentPrediction, _Mapping]] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., retrainer: _Optional[_Union[RetrainerStatus, _Mapping]] = ..., skipped: _Optional[int] = ...) -> None: ...

class RecentCorrectionRequest(_message.Message):
    __slots__ = ("prediction_ids", "last_k", "episode_id", "label", "source", "request_id")
    PREDICTION_IDS_FIELD_NUMBER: _ClassVar[int]
    LAST_K_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    prediction_ids: _containers.RepeatedScalarFieldContainer[int]
    last_k: int
    episode_id: int
    label: int
    source: str
    request_id: str
    def __init__(self, prediction_ids: _Optional[_Iterable[int]] = ..., last_k: _Optional[int] = ..., episode_id: _Optional[int] = ..., label: _Optional[int] = ..., source: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RecentCorrectionAck(_message.Message):
    __slots__ = ("correction_ids", "prediction_ids", "corrections_total", "model_version")
    CORRECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_IDS_FIELD_NUMBER: _ClassVar[int]
    CORRECTIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    correction_ids: _containers.RepeatedScalarFieldContainer[int]
    prediction_ids: _containers.RepeatedScalarFieldContainer[int]
    corrections_total: int
    model_version: str
    def __init__(self, correction_ids: _Optional[_Iterable[int]] = ..., prediction_ids: _Optional[_Iterable[int]] = ..., corrections_total: _Optional[int] = ..., model_version: _Optional[str] = ...) -> None: ...

class QueriesRequest(_message.Message):
    __slots__ = ("limit", "max_side", "jpeg_quality", "no_frames")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    NO_FRAMES_FIELD_NUMBER: _ClassVar[int]
    limit: int
    max_side: int
    jpeg_quality: int
    no_frames: bool
    def __init__(self, limit: _Optional[int] = ..., max_side: _Optional[int] = ..., jpeg_quality: _Optional[int] = ..., no_frames: _Optional[bool] = ...) -> None: ...

class Query(_message.Message):
    __slots__ = ("prediction", "need", "reason")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    NEED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    prediction: RecentPrediction
    need: float
    reason: str
    def __init__(self, prediction: _Optional[_Union[RecentPrediction, _Mapping]] = ..., need: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class QueriesResponse(_message.Message):
    __slots__ = ("queries", "capacity")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[Query]
    capacity: int
    def __init__(self, queries: _Optional[_Iterable[_Union[Query, _Mapping]]] = ..., capacity: _Optional[int] = ...) -> None: ...

class ListCorrectionsRequest(_message.Message):
    __slots__ = ("statuses", "limit", "before_id")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    before_id: int
    def __init__(self, statuses: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., before_id: _Optional[int] = ...) -> None: ...

class Review(_message.Message):
    __slots__ = ("verdict", "time_unix", "reviewer", "note")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    verdict: str
    time_unix: float
    reviewer: str
    note: str
    def __init__(self, verdict: _Optional[str] = ..., time_unix: _Optional[float] = ..., reviewer: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class CorrectionSummary(_message.Message):
    __slots__ = ("id", "time_unix", "label", "probability", "model_version", "episode_id", "step", "env_index", "source", "status", "status_detail", "probability_now", "review", "conflict", "superseded_by", "live_conflict")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ENV_INDEX_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_NOW_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_BY_FIELD_NUMBER: _ClassVar[int]
    LIVE_CONFLICT_FIELD_NUMBER: _ClassVar[int]
    id: int
    time_unix: float
    label: int
    probability: float
    model_version: str
    episode_id: int
    step: int
    env_index: int
    source: str
    status: str
    status_detail: str
    probability_now: float
    review: Review
    conflict: OfflineConflict
    superseded_by: int
    live_conflict: LiveConflict
    def __init__(self, id: _Optional[int] = ..., time_unix: _Optional[float] = ..., label: _Optional[int] = ..., probability: _Optional[float] = ..., model_version: _Optional[str] = ..., episode_id: _Optional[int] = ..., step: _Optional[int] = ..., env_index: _Optional[int] = ..., source: _Optional[str] = ..., status: _Optional[str] = ..., status_detail: _Optional[str] = ..., probability_now: _Optional[float] = ..., review: _Optional[_Union[Review, _Mapping]] = ..., conflict: _Optional[_Union[OfflineConflict, _Mapping]] = ..., superseded_by: _Optional[int] = ..., live_conflict: _Optional[_Union[LiveConflict, _Mapping]] = ...) -> None: ...

class LiveConflict(_message.Message):
    __slots__ = ("kind", "episode", "step", "firing_episodes", "firing_steps")
    KIND_FIELD_NUMBER: _ClassVar[int]
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    FIRING_EPISODES_FIELD_NUMBER: _ClassVar[int]
    FIRING_STEPS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    episode: int
    step: int
    firing_episodes: _containers.RepeatedScalarFieldContainer[int]
    firing_steps: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, kind: _Optional[str] = ..., episode: _Optional[int] = ..., step: _Optional[int] = ..., firing_episodes: _Optional[_Iterable[int]] = ..., firing_steps: _Optional[_Iterable[int]] = ...) -> None: ...

class ListCorrectionsResponse(_message.Message):
    __slots__ = ("corrections", "counts")
    CORRECTIONS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    corrections: _containers.RepeatedCompositeFieldContainer[CorrectionSummary]
    counts: CorrectionCounts
    def __init__(self, corrections: _Optional[_Iterable[_Union[CorrectionSummary, _Mapping]]] = ..., counts: _Optional[_Union[CorrectionCounts, _Mapping]] = ...) -> None: ...

class GetCorrectionRequest(_message.Message):
    __slots__ = ("id", "max_side", "jpeg_quality")
    ID_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    id: int
    max_side: int
    jpeg_quality: int
    def __init__(self, id: _Optional[int] = ..., max_side: _Optional[int] = ..., jpeg_quality: _Optional[int] = ...) -> None: ...

class StatusChange(_message.Message):
    __slots__ = ("attempt_id", "status", "probability", "detail", "conflict", "superseded_by", "live_conflict")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_BY_FIELD_NUMBER: _ClassVar[int]
    LIVE_CONFLICT_FIELD_NUMBER: _ClassVar[int]
    attempt_id: int
    status: str
    probability: float
    detail: str
    conflict: OfflineConflict
    superseded_by: int
    live_conflict: LiveConflict
    def __init__(self, attempt_id: _Optional[int] = ..., status: _Optional[str] = ..., probability: _Optional[float] = ..., detail: _Optional[str] = ..., conflict: _Optional[_Union[OfflineConflict, _Mapping]] = ..., superseded_by: _Optional[int] = ..., live_conflict: _Optional[_Union[LiveConflict, _Mapping]] = ...) -> None: ...

class CorrectionDetail(_message.Message):
    __slots__ = ("summary", "images", "history", "reviews", "offline_images", "offline_note", "live_images")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_NOTE_FIELD_NUMBER: _ClassVar[int]
    LIVE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    summary: CorrectionSummary
    images: _containers.RepeatedCompositeFieldContainer[Image]
    history: _containers.RepeatedCompositeFieldContainer[StatusChange]
    reviews: _containers.RepeatedCompositeFieldContainer[Review]
    offline_images: _containers.RepeatedCompositeFieldContainer[Image]
    offline_note: str
    live_images: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, summary: _Optional[_Union[CorrectionSummary, _Mapping]] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[StatusChange, _Mapping]]] = ..., reviews: _Optional[_Iterable[_Union[Review, _Mapping]]] = ..., offline_images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., offline_note: _Optional[str] = ..., live_images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class ReviewRequest(_message.Message):
    __slots__ = ("ids", "verdict", "reviewer", "note")
    IDS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    verdict: str
    reviewer: str
    note: str
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., verdict: _Optional[str] = ..., reviewer: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ReviewAck(_message.Message):
    __slots__ = ("review_ids",)
    REVIEW_IDS_FIELD_NUMBER: _ClassVar[int]
    review_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, review_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class VersionInfo(_message.Message):
    __slots__ = ("number", "version", "created_unix", "metrics", "corrections_used", "last_correction_id", "serving")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CORRECTIONS_USED_FIELD_NUMBER: _ClassVar[int]
    LAST_CORRECTION_ID_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    number: int
    version: str
    created_unix: float
    metrics: _containers.ScalarMap[str, float]
    corrections_used: int
    last_correction_id: int
    serving: bool
    def __init__(self, number: _Optional[int] = ..., version: _Optional[str] = ..., created_unix: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., corrections_used: _Optional[int] = ..., last_correction_id: _Optional[int] = ..., serving: _Optional[bool] = ...) -> None: ...

class AttemptInfo(_message.Message):
    __slots__ = ("id", "time_unix", "passed", "version", "reason", "metrics", "last_correction_id", "number")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LAST_CORRECTION_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    id: int
    time_unix: float
    passed: bool
    version: str
    reason: str
    metrics: _containers.ScalarMap[str, float]
    last_correction_id: int
    number: int
    def __init__(self, id: _Optional[int] = ..., time_unix: _Optional[float] = ..., passed: _Optional[bool] = ..., version: _Optional[str] = ..., reason: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., last_correction_id: _Optional[int] = ..., number: _Optional[int] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("versions", "attempts")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[VersionInfo]
    attempts: _containers.RepeatedCompositeFieldContainer[AttemptInfo]
    def __init__(self, versions: _Optional[_Iterable[_Union[VersionInfo, _Mapping]]] = ..., attempts: _Optional[_Iterable[_Union[AttemptInfo, _Mapping]]] = ...) -> None: ...
