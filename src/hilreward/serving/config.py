"""``hilreward serve``'s options (:class:`ServeConfig` with its groups), validated in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..access import BindOptions
from ..config import DatasetConfig
from ..deploy.rule import RewardOptions
from ..errors import ConfigError
from ..online.options import RetrainOptions
from .live import LiveOptions
from .images import MAX_PIXELS
from .model_slot import PinOptions

@dataclass
class RecentOptions:
    size: int = 512
    """Predictions kept with their frames (the console labels them by reference; WatchActivity streams them)."""
    max_mb: float = 256.0
    """Most MiB of frames kept (the oldest predictions go first)."""


@dataclass
class QueryOptions:
    size: int = 32
    """Frames in the query queue at most (the neediest recent ones)."""
    min_need: float = 0.5
    """Queue a frame when its need (closeness to the threshold, or ensemble spread / 0.25) is at least this."""
    min_gap: int = 5
    """At most one queued frame per this many steps of an episode."""


@dataclass
class ServeConfig(RewardOptions, BindOptions):
    """The reward rule's keys (success_threshold, success_reward, terminate_on_success, mode, consecutive,
    success_class) are deploy's :class:`~hilreward.deploy.rule.RewardOptions`, inherited so they stay top-level
    keys; ``consecutive`` counts per episode_id (step 0 restarts)."""

    port: int = 50051
    """TCP port; 0 picks a free one (printed, and written to ``port_file``)."""
    token: Optional[str] = None
    """Bearer token for corrections and reviews (and Predict with ``auth_predict``); default $HILREWARD_TOKEN."""
    checkpoint: Optional[str] = None
    """Checkpoint directory (or Hub repo) to serve as version 0."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """Offline dataset for retraining (``dataset.root=...``); without it corrections are stored but not trained on."""
    auth_predict: bool = False
    """Also require the token for Predict, PredictStream, GetModel and WatchModel."""
    state_dir: str = "outputs/serve"
    """Versions (``versions/<n>/``) and, by default, the correction store. Replicas share one (a shared folder)."""
    store: Optional[str] = None
    """Correction store: an SQLite file (default ``<state_dir>/corrections.sqlite``, one server) or
    ``postgresql://user[:password]@host[:port]/database`` (shared by several replicas)."""
    replica: Optional[str] = None
    """Name of this server, stored with every correction it takes; default ``<hostname>:<port>``."""
    max_message_mb: int = 16
    """Largest request or response in MiB."""
    max_pixels: int = MAX_PIXELS
    """Largest frame a request may send, in pixels (height x width; default 1920x1200). A JPEG or PNG is judged by
    its header before it is decoded, so a small file that would decode to gigabytes is refused (INVALID_ARGUMENT)."""
    max_batch: int = 8
    """Concurrent requests merged into one model call at most (1 disables merging)."""
    workers: int = 16
    """gRPC worker threads (each open stream holds one for as long as it is open)."""
    max_streams: Optional[int] = None
    """Streams open at once at most (PredictStream, WatchModel, WatchActivity, health Watch); one more is refused
    with RESOURCE_EXHAUSTED, so Predict, GetModel and the health check always have a thread. None: half the
    workers (8 of 16), the other half left to the unary calls."""
    threads: Optional[int] = None
    """torch threads for Predict; None leaves torch's default."""
    device: str = "cpu"
    """Device of the served model."""
    cache_dir: Optional[str] = None
    """Frame and feature cache root for retraining (default $HILREWARD_CACHE or ~/.cache/hilreward)."""
    retrain: RetrainOptions = field(default_factory=RetrainOptions)
    """When and how corrections are trained into new versions."""
    recent: RecentOptions = field(default_factory=RecentOptions)
    """The buffer of recent predictions."""
    queries: QueryOptions = field(default_factory=QueryOptions)
    """The queue of frames that need a human."""
    live: LiveOptions = field(default_factory=LiveOptions)
    """The live episodes kept in ``<state_dir>/live`` (the retrainer gates each candidate on them)."""
    pins: PinOptions = field(default_factory=PinOptions)
    """How long the versions requests name stay usable (an episode keeps its version)."""


def stream_limit(cfg: ServeConfig) -> int:
    """``max_streams``, or half the workers when it is not set."""
    return cfg.max_streams if cfg.max_streams is not None else max(1, cfg.workers // 2)


def validate(cfg: ServeConfig) -> None:
    if not cfg.checkpoint:
        raise ConfigError("serve needs checkpoint=<dir>, e.g. checkpoint=outputs/train/checkpoints/best")
    cfg.validate()  # the reward rule's keys, and every choice
    if not 0 <= cfg.port <= 65535:
        raise ConfigError(f"port={cfg.port}: must be within 0..65535 (0 picks a free port)")
    if cfg.max_message_mb < 1 or cfg.max_batch < 1 or cfg.workers < 2 or cfg.max_pixels < 1:
        raise ConfigError("max_message_mb, max_batch and max_pixels must be >= 1, workers >= 2")
    if cfg.max_streams is not None and not 1 <= cfg.max_streams < cfg.workers:
        raise ConfigError(f"max_streams={cfg.max_streams}: must be within 1..workers-1 ({cfg.workers - 1}), so that "
                          "Predict and the health check keep a worker thread")
    cfg.retrain.check()
    if cfg.recent.size < 1 or cfg.recent.max_mb <= 0 or cfg.queries.size < 1 or cfg.queries.min_gap < 0 \
            or not 0 <= cfg.queries.min_need <= 1:
        raise ConfigError("recent.size and queries.size must be >= 1, recent.max_mb > 0, queries.min_gap >= 0, "
                          "queries.min_need within [0, 1]")
    if not cfg.pins.idle_s >= 0 or cfg.pins.max_loaded < 1:
        raise ConfigError("pins.idle_s must be >= 0 and pins.max_loaded >= 1")
    cfg.check_bind()
