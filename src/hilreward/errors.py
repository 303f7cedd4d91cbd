"""Every error hilreward raises on purpose, in one place.

The CLI catches :class:`HilrewardError`, prints ``error: <message>`` on one line and
exits with status 1. Messages say what is wrong and how to fix it.

HilrewardError
 ├─ ConfigError        a bad or conflicting option (unknown key, wrong type, bad value)
 ├─ DatasetError       a LeRobot dataset folder that cannot be read as asked
 │   └─ VideoError     a missing, corrupt or short video file
 ├─ EncoderError       an encoder that is unknown or whose weights cannot be had
 ├─ CheckpointError    a checkpoint directory that is missing, truncated or incompatible
 ├─ EvidenceError      a threshold asked to rest on too few positive frames or succeeding episodes
 ├─ InputError         frames handed to a model or reward function that do not fit it
 ├─ RenderError        MuJoCo cannot render offscreen (hilreward sim)
 ├─ HubError           the Hugging Face Hub refused a push or cannot be reached (hilreward push)
 └─ ServingError       the reward service or its client failed (also CorrectionStore)
     ├─ UnavailableError  the reward server or the correction store cannot be reached (or did not answer)
     ├─ AuthError         a missing or wrong token
     └─ BusyError         the server holds as many open streams as it allows

:data:`STATUS` maps each class to the status a transport answers with: gRPC (the server's RPCs; the client
maps the code back to the same class) and HTTP (the web pages).
"""

from __future__ import annotations


class HilrewardError(Exception):
    """Base class of every error hilreward raises on purpose."""


class ConfigError(HilrewardError):
    """A bad or conflicting configuration value."""


class DatasetError(HilrewardError):
    """A dataset folder (or Hub repo) that cannot be read as asked."""


class VideoError(DatasetError):
    """A missing, corrupt or short video file inside a dataset."""


class EncoderError(HilrewardError):
    """An unknown encoder, or one whose pretrained weights cannot be had."""


class CheckpointError(HilrewardError):
    """A checkpoint that is missing, truncated or does not fit the request."""


class EvidenceError(HilrewardError):
    """A threshold write refused: the evaluated episodes hold too little evidence (see evaluation.thresholds)."""


class InputError(HilrewardError):
    """Frames given to a model or reward function that do not fit it."""


class RenderError(HilrewardError):
    """MuJoCo cannot render offscreen (no working EGL or OSMesa)."""


class HubError(HilrewardError):
    """The Hugging Face Hub refused a request (a missing token, no write access) or cannot be reached."""


class ServingError(HilrewardError):
    """The reward service, its client or the correction store failed."""


class UnavailableError(ServingError):
    """The reward server or the correction store cannot be reached, or did not answer in time."""


class AuthError(ServingError):
    """A request without the token, or with another one."""


class BusyError(ServingError):
    """The reward server holds as many open streams as it allows (``max_streams``); close one or try again."""


STATUS: tuple[tuple[type[HilrewardError], str, int], ...] = (
    (InputError, "INVALID_ARGUMENT", 400),
    (ConfigError, "INVALID_ARGUMENT", 400),
    (AuthError, "UNAUTHENTICATED", 401),
    (BusyError, "RESOURCE_EXHAUSTED", 429),
    (UnavailableError, "UNAVAILABLE", 503),
    (HilrewardError, "FAILED_PRECONDITION", 400),
)
"""(error class, gRPC status code name, HTTP status), most specific first: the one map every transport uses."""


def status_of(exc: HilrewardError) -> tuple[str, int]:
    """(gRPC status code name, HTTP status) of ``exc``."""
    return next((grpc, http) for cls, grpc, http in STATUS if isinstance(exc, cls))


def error_of(grpc_code: str) -> type[HilrewardError]:
    """The class a client raises for a gRPC status code name (the inverse of :func:`status_of`; codes the map
    does not name are a :class:`ServingError`)."""
    return next((cls for cls, grpc, _ in STATUS if grpc == grpc_code and cls is not HilrewardError), ServingError)
