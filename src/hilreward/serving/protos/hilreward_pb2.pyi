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
    __slots__ = ("images", "episode_id", "step")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    episode_id: int
    step: int
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., episode_id: _Optional[int] = ..., step: _Optional[int] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("probability", "class_probabilities", "success", "reward", "terminate", "model_version", "server_latency_ms", "episode_id", "step")
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    CLASS_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    TERMINATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    probability: float
    class_probabilities: _containers.RepeatedScalarFieldContainer[float]
    success: bool
    reward: float
    terminate: bool
    model_version: str
    server_latency_ms: float
    episode_id: int
    step: int
    def __init__(self, probability: _Optional[float] = ..., class_probabilities: _Optional[_Iterable[float]] = ..., success: _Optional[bool] = ..., reward: _Optional[float] = ..., terminate: _Optional[bool] = ..., model_version: _Optional[str] = ..., server_latency_ms: _Optional[float] = ..., episode_id: _Optional[int] = ..., step: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("version", "created_unix", "metrics", "corrections_total", "corrections_used", "camera_keys", "image_height", "image_width", "num_classes", "threshold", "retrainer_status")
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
    def __init__(self, version: _Optional[str] = ..., created_unix: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., corrections_total: _Optional[int] = ..., corrections_used: _Optional[int] = ..., camera_keys: _Optional[_Iterable[str]] = ..., image_height: _Optional[int] = ..., image_width: _Optional[int] = ..., num_classes: _Optional[int] = ..., threshold: _Optional[float] = ..., retrainer_status: _Optional[str] = ...) -> None: ...
