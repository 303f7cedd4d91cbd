"""``hilreward serve``: the gRPC reward service (hilreward.v1.RewardService + grpc.health.v1).

    hilreward serve checkpoint=outputs/train/checkpoints/best dataset.root=data/demo token=$TOKEN

A thin layer over the predictor RewardFunction uses in-process (deploy's TorchBackend):
requests are decoded and validated, run through one model thread (:class:`Batcher`), and
answered with probability, success, reward, terminate, uncertainty (when the version has an
ensemble) and the model_version that produced them. Corrections go to a :class:`CorrectionStore`
(committed before the ack); with ``dataset.root`` a :class:`Retrainer` process turns them into
validated new versions that the server swaps in between requests. State lives in ``state_dir``:
``versions/<n>/``, ``ensembles/<n>.safetensors`` and ``corrections.sqlite``; a restarted server
serves its newest version.

For the operator console the server keeps the recent predictions with their frames
(:class:`PredictionLog`, streamed by WatchActivity and labelled by reference) and the frames
that most need a human (:class:`QueryQueue`), and answers the review and versions-timeline calls.

Replicas: several servers given one ``store=postgresql://...`` and one ``state_dir`` (a shared
folder) all take Predict and corrections; the retrainer of exactly one of them (the store's
leader) trains, and every replica swaps in each version (and ensemble) the leader announces.
"""

from __future__ import annotations

import hmac
import logging
import os
import signal
import socket
import threading
import time
from collections import OrderedDict
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..access import check_bind, resolve_token
from ..config import DatasetConfig
from ..deploy.corrections import Correction
from ..errors import ConfigError, HilrewardError, InputError
from ..online import review
from ..online.store import CorrectionStore
from ..online.versions import VersionStore
from .activity import Prediction, PredictionLog, QueryQueue, rejudged
from .batcher import Batcher
from .images import decode_images, encode_thumbnail
from .model_slot import EnsemblePredictor, ModelSlot, ServedModel
from .records import RetrainerStatus
from .protos import hilreward_pb2 as pb
from .protos import hilreward_pb2_grpc as pb_grpc

log = logging.getLogger("hilreward.serving")

SERVICE_NAME = "hilreward.v1.RewardService"
MODES = ("sparse", "dense")
RESCAN_S = 10.0
CONTEXT_STEPS = 8
"""A correction records the served probabilities of this many steps either side of it (its episode's, from the
prediction log), so the retrainer can tell a label that lands a few steps late at a label change."""
"""Replicas look for a version they were not told of (a lost announcement) this often."""


@dataclass
class RetrainOptions:
    every: int = 1
    """Retrain after every N new corrections (a review always retrains)."""
    min_interval_s: float = 0.5
    """At least this many seconds between two retraining runs (corrections arriving meanwhile are batched)."""
    quiet_s: float = 0.3
    """Start a run once no correction or review arrived for this long (at most 4x this), so a burst trains as one."""
    steps: int = 300
    """Most optimizer steps per run (the head, and the last stage when it adapts, start from the served checkpoint's
    every run)."""
    min_steps: int = 100
    """Fewest optimizer steps per run: the first steps, pulled hard by the corrections, leave the offline data's fit
    disturbed (measured on window-open under a new layout and lighting: stopping at 25 steps gave 2 gross early
    terminations and 4 false successes on 30 test episodes, 100 steps none; docs/benchmarks.md)."""
    check_every: int = 25
    """Check the corrections every N steps and stop training once ``min_fixed`` of them are fixed (after
    ``min_steps``)."""
    batch_size: int = 64
    """Feature rows per step."""
    lr: float = 1e-3
    """AdamW learning rate of the head."""
    correction_weight: float = 20.0
    """Sampling weight of a correction relative to an offline frame of its class (after class balancing)."""
    contradicted_weight: float = 1.0
    """Sampling weight of a contradicted correction (until a review accepts it), like ``correction_weight``."""
    contradiction_radius: float = 0.5
    """A correction is contradicted when a frame with another label (offline or another correction) is closer
    than this many times the median distance between consecutive offline frames (encoder features). 0: never."""
    scope: str = "auto"
    """What retrains: ``head`` (the head only, on the encoder's cached features), ``last`` (the encoder's last stage
    too, on the cached outputs of the stages before it), ``auto`` (the head, and the last stage too when the head
    alone leaves gated corrections unfixed: new states the encoder cannot tell apart)."""
    veto: list[str] = field(default_factory=lambda: ["gross_early", "false_success", "missed"])
    """Gate: the episode errors (``gross_early``, ``false_success``, ``missed``, ``late``) a candidate may not bring
    to an offline held-out episode the serving version gets right (jitter within tolerance_s never counts)."""
    min_fixed: float = 0.9
    """Training stops once this fraction of the gated corrections (not rejected, contradicted, boundary or
    conflicting) is classified as labelled; with ``scope=auto`` fewer makes the last stage adapt too. The gate
    itself asks that a version fix more gated corrections than it breaks."""
    max_reruns: int = 3
    """Gate: reruns of an attempt without the corrections blamed for an offline regression (then it gives up,
    naming them)."""
    blame_per_regression: int = 2
    """Gate: corrections blamed per offline regression on the first rerun (doubling on each further one)."""
    boundary_frames: int = 2
    """A correction within this many steps of a label change of its episode (served labels overlaid with the
    human's) is a boundary frame: a keypress lands late, so it trains lightly and never gates (0: none)."""
    boundary_weight: float = 5.0
    """Sampling weight of a boundary frame, like ``correction_weight``."""
    holdout_episodes: int = 2
    """Gate: hold out the corrections of this many recent episodes the serving version learned from, and compare
    training without them with and without the new corrections (0: no such check)."""
    holdout_steps: int = 50
    """Gate: both heads of that comparison train exactly this many steps (no early stop: like with like)."""
    holdout_tolerance: float = 0.1
    """Gate: the held-out corrections' accuracy may drop by at most this much (absolute, and always by one
    correction) with the new corrections."""
    ensemble: int = 4
    """Heads in the uncertainty ensemble, trained while the retrainer is idle (0: no uncertainty)."""
    ensemble_steps: int = 100
    """Optimizer steps of each ensemble head trained from scratch (version 0's)."""
    threads: int = 1
    """torch threads of the retrainer process (leave the other cores to Predict)."""
    seed: int = 0
    """Seed of the head's batch sampling."""


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
class ServeConfig:
    checkpoint: Optional[str] = None
    """Checkpoint directory (or Hub repo) to serve as version 0."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """Offline dataset for retraining (``dataset.root=...``); without it corrections are stored but not trained on."""
    host: str = "127.0.0.1"
    """Address to bind. Anything but loopback needs ``token`` (or ``insecure=true``)."""
    port: int = 50051
    """TCP port; 0 picks a free one (printed, and written to ``port_file``)."""
    port_file: Optional[str] = None
    """Write the bound port to this file once serving (for scripts and tests using port=0)."""
    token: Optional[str] = None
    """Bearer token for SubmitCorrection (and Predict with ``auth_predict``); default $HILREWARD_TOKEN."""
    auth_predict: bool = False
    """Also require the token for Predict, PredictStream, GetModel and WatchModel."""
    insecure: bool = False
    """Allow binding a non-loopback address without a token."""
    state_dir: str = "outputs/serve"
    """Versions (``versions/<n>/``) and, by default, the correction store. Replicas share one (a shared folder)."""
    store: Optional[str] = None
    """Correction store: an SQLite file (default ``<state_dir>/corrections.sqlite``, one server) or
    ``postgresql://user[:password]@host[:port]/database`` (shared by several replicas)."""
    replica: Optional[str] = None
    """Name of this server, stored with every correction it takes; default ``<hostname>:<port>``."""
    success_threshold: Optional[float] = None
    """Success when probability >= this; None uses the checkpoint's threshold."""
    success_reward: float = 1.0
    """Reward on success (sparse) or the scale of the probability (dense)."""
    terminate_on_success: bool = True
    """Set ``terminate`` on success."""
    mode: str = "sparse"
    """``sparse`` or ``dense`` reward."""
    consecutive: int = 1
    """Frames in a row at or above the threshold before success, counted per episode_id (step 0 restarts)."""
    success_class: int = -1
    """Multi-class only: the class whose probability counts as success."""
    max_message_mb: int = 16
    """Largest request or response in MiB."""
    max_batch: int = 8
    """Concurrent requests merged into one model call at most (1 disables merging)."""
    workers: int = 16
    """gRPC worker threads (each open PredictStream / WatchModel holds one)."""
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


def validate(cfg: ServeConfig) -> None:
    if not cfg.checkpoint:
        raise ConfigError("serve needs checkpoint=<dir>, e.g. checkpoint=outputs/train/checkpoints/best")
    if cfg.mode not in MODES:
        raise ConfigError(f"mode={cfg.mode!r}: use one of {', '.join(MODES)}")
    if cfg.success_threshold is not None and not 0.0 <= cfg.success_threshold <= 1.0:
        raise ConfigError(f"success_threshold={cfg.success_threshold}: must be within [0, 1]")
    if cfg.consecutive < 1:
        raise ConfigError(f"consecutive={cfg.consecutive}: must be >= 1")
    if not 0 <= cfg.port <= 65535:
        raise ConfigError(f"port={cfg.port}: must be within 0..65535 (0 picks a free port)")
    if cfg.max_message_mb < 1 or cfg.max_batch < 1 or cfg.workers < 2:
        raise ConfigError("max_message_mb and max_batch must be >= 1, workers >= 2")
    r = cfg.retrain
    if r.every < 1 or r.min_interval_s < 0 or r.quiet_s < 0 or not 0 <= r.min_fixed <= 1 \
            or min(r.steps, r.check_every, r.holdout_steps) < 1 or not 0 <= r.min_steps <= r.steps:
        raise ConfigError("retrain.every, retrain.steps, retrain.check_every and retrain.holdout_steps must be >= 1, "
                          "retrain.min_interval_s and retrain.quiet_s >= 0, retrain.min_fixed within [0, 1], "
                          "retrain.min_steps within [0, retrain.steps]")
    if min(r.contradicted_weight, r.contradiction_radius, r.holdout_episodes, r.holdout_tolerance, r.ensemble,
           r.max_reruns, r.boundary_frames, r.boundary_weight) < 0 or min(r.ensemble_steps, r.blame_per_regression) < 1:
        raise ConfigError("retrain.contradicted_weight, contradiction_radius, holdout_episodes, holdout_tolerance, "
                          "ensemble, max_reruns, boundary_frames and boundary_weight must be >= 0, "
                          "retrain.ensemble_steps and blame_per_regression >= 1")
    from ..online.adapt import SCOPES
    from ..online.gate import ERRORS

    if r.scope not in SCOPES:
        raise ConfigError(f"retrain.scope={r.scope!r}: use one of {', '.join(SCOPES)}")
    unknown = [v for v in r.veto if v not in ERRORS]
    if unknown:
        raise ConfigError(f"retrain.veto: unknown episode error {unknown[0]!r}; known: {', '.join(ERRORS)}")
    if cfg.recent.size < 1 or cfg.recent.max_mb <= 0 or cfg.queries.size < 1 or cfg.queries.min_gap < 0 \
            or not 0 <= cfg.queries.min_need <= 1:
        raise ConfigError("recent.size and queries.size must be >= 1, recent.max_mb > 0, queries.min_gap >= 0, "
                          "queries.min_need within [0, 1]")
    check_bind(cfg.host, cfg.token, cfg.insecure)


# --------------------------------------------------------------------------- loading versions
def load_version(versions: VersionStore, number: int, cfg: ServeConfig) -> ServedModel:
    """Load ``versions/<number>`` with the same backend RewardFunction uses in-process."""
    from ..deploy.backends import TorchBackend
    from ..models import RewardClassifier
    from ..online.ensemble import latest_members, load_members

    record = versions.get(number)
    model = RewardClassifier.from_pretrained(versions.path(number), device=cfg.device)
    threshold = cfg.success_threshold if cfg.success_threshold is not None else float(model.threshold)
    members = latest_members(versions.root.parent, number)
    predictor = TorchBackend(model) if members is None else \
        EnsemblePredictor(model, load_members(members[1], model), cfg.success_class)
    return ServedModel(
        version=record.version, predictor=predictor, threshold=threshold,
        image_size=tuple(int(x) for x in model.config.image_size), num_classes=int(model.config.num_classes),
        number=number, created_unix=record.created_unix, metrics=dict(record.metrics),
        corrections_used=record.corrections_used, ensemble_number=-1 if members is None else members[0])


def init_versions(cfg: ServeConfig) -> VersionStore:
    """Copy the checkpoint to ``versions/0`` on first start (refusing a state dir made for another one).

    Version 0 carries the checkpoint's model_version as RewardFunction computes it in-process.
    """
    from ..deploy.loading import model_version
    from ..models.checkpoint import resolve_checkpoint

    checkpoint = resolve_checkpoint(cfg.checkpoint)
    versions = VersionStore(Path(cfg.state_dir) / "versions")
    versions.init_base(checkpoint, model_version(checkpoint), _numeric_metrics(checkpoint))
    return versions


def _numeric_metrics(checkpoint: Path) -> dict[str, float]:
    import json

    path = checkpoint / "metrics.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            out[prefix] = float(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)

    walk("", data)
    return out


# --------------------------------------------------------------------------- the service
class RewardServicer(pb_grpc.RewardServiceServicer):
    """RewardService over a ModelSlot, a Batcher, a CorrectionStore and the recent-activity buffers."""

    def __init__(self, slot: ModelSlot, batcher: Batcher, store: CorrectionStore, cfg: ServeConfig,
                 on_correction: Callable[[int], None] | None = None, versions: VersionStore | None = None,
                 log: PredictionLog | None = None, queries: QueryQueue | None = None) -> None:
        self.slot = slot
        self.batcher = batcher
        self.store = store
        self.cfg = cfg
        self.on_correction = on_correction
        self.replica = cfg.replica or ""
        """Stored with each correction (the server sets it once its port is known)."""
        self.versions = versions
        self.log = log or PredictionLog(cfg.recent.size, cfg.recent.max_mb)
        self.queries = queries or QueryQueue(cfg.queries.size, cfg.queries.min_need, cfg.queries.min_gap)
        self.retrainer = RetrainerStatus()
        self._streaks: OrderedDict[int, int] = OrderedDict()
        self._streak_lock = threading.Lock()
        self._views: tuple[tuple, list[review.CorrectionView]] = ((), [])
        self._views_lock = threading.Lock()
        self._offline_cache: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    @property
    def retrainer_status(self) -> str:
        """What the retrainer did last (ModelInfo.retrainer_status)."""
        return self.retrainer.text

    def set_retrainer(self, state: str, message: str = "", attempt: str = "") -> None:
        """Update the retrainer status (``attempt``: ``published`` or ``rejected`` counts one) and wake watchers."""
        r = self.retrainer
        self.retrainer = RetrainerStatus(state, message, time.time(), r.attempts + bool(attempt),
                                        r.published + (attempt == "published"), r.rejected + (attempt == "rejected"))
        self.log.changed()

    # ---- auth and errors
    def _authorize(self, context: grpc.ServicerContext, required: bool) -> None:
        token = self.cfg.token
        if not token or not required:
            return
        given = dict(context.invocation_metadata()).get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "missing or wrong token: send metadata 'authorization: Bearer <token>' "
                          "(RewardClient(address, token=...))")

    def _call(self, context: grpc.ServicerContext, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except InputError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except HilrewardError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except Exception as exc:
            log.exception("request failed")
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    # ---- prediction
    def _predict(self, request: pb.PredictRequest) -> pb.PredictResponse:
        start = time.perf_counter()
        frames = decode_images(request.images, self.slot.current.camera_keys)
        probs, uncertainty, model = self.batcher.run(frames, request.model_version)
        return self._response(model, probs, uncertainty, frames, request.episode_id, request.step, start)

    def _success_probability(self, probs: np.ndarray) -> tuple[float, list[float], float | list[float]]:
        """(success probability, every class's, what a correction stores) of one step."""
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim == 0:
            p = float(probs)
            return p, [1.0 - p, p], p
        classes = [float(x) for x in probs]
        return classes[self.cfg.success_class], classes, classes

    def _response(self, model: ServedModel, probs: np.ndarray, uncertainty: float | None,
                  frames: dict[str, np.ndarray], episode_id: int, step: int, start: float) -> pb.PredictResponse:
        p, classes, stored = self._success_probability(probs)
        success = self._debounce(episode_id, step, p >= model.threshold)
        reward = (self.cfg.success_reward if success else 0.0) if self.cfg.mode == "sparse" \
            else p * self.cfg.success_reward
        seen = self.log.add(episode_id=episode_id, step=step, frames=frames, probability=p, probabilities=stored,
                            uncertainty=uncertainty, threshold=model.threshold, success=success,
                            model_version=model.version)
        self.queries.offer(seen)
        return pb.PredictResponse(
            probability=p, class_probabilities=classes, success=success, reward=reward,
            terminate=bool(success and self.cfg.terminate_on_success), model_version=model.version,
            server_latency_ms=(time.perf_counter() - start) * 1e3, episode_id=episode_id, step=step,
            uncertainty=uncertainty, prediction_id=seen.id)

    def _debounce(self, episode_id: int, step: int, above: bool) -> bool:
        if self.cfg.consecutive <= 1:
            return above
        with self._streak_lock:
            streak = 0 if step == 0 else self._streaks.pop(episode_id, 0)
            streak = streak + 1 if above else 0
            self._streaks[episode_id] = streak
            while len(self._streaks) > 10_000:  # forget the oldest episodes
                self._streaks.popitem(last=False)
        return streak >= self.cfg.consecutive

    def rejudge(self, prediction: Prediction) -> Prediction:
        """``prediction`` as the version serving now sees it."""
        probs, uncertainty, model = self.batcher.run(prediction.frames)
        p, _, stored = self._success_probability(probs)
        return rejudged(prediction, p, stored, uncertainty, model.threshold, model.version)

    def Predict(self, request, context):
        self._authorize(context, self.cfg.auth_predict)
        return self._call(context, lambda: self._predict(request))

    def PredictStream(self, request_iterator, context):
        self._authorize(context, self.cfg.auth_predict)
        for request in request_iterator:
            yield self._call(context, lambda: self._predict(request))

    # ---- corrections and versions
    def _check_label(self, label: int, model: ServedModel) -> None:
        classes = max(2, model.num_classes)
        if not 0 <= label < classes:
            raise InputError(f"label={label}: use 1 (success) or 0 (failure)" if classes == 2
                             else f"label={label}: must be a class index within 0..{classes - 1}")

    def _correction(self, request: pb.CorrectionRequest) -> pb.CorrectionAck:
        model = self.slot.current
        frames = decode_images(request.images, model.camera_keys)
        self._check_label(request.label, model)
        if request.model_version:
            version, probability = request.model_version, float(request.probability)
        else:  # score the frames with the version serving now
            probs, _, scored = self.batcher.run(frames)
            version = scored.version
            probability = float(probs) if np.ndim(probs) == 0 else [float(x) for x in probs]
        correction = Correction(
            frames=frames, label=int(request.label), probability=probability, model_version=version,
            time=request.time or time.time(), episode=request.episode_id, step=request.step,
            env_index=request.env_index, source=request.source or "grpc",
            context=self.log.around(request.episode_id, request.step, CONTEXT_STEPS) or None)
        cid = self.store.add(correction, request_id=request.request_id or None,
                             replica=self.replica)  # committed: durable
        if self.on_correction is not None:
            self.on_correction(cid)
        return pb.CorrectionAck(correction_id=cid, corrections_total=self.store.count(),
                                model_version=self.slot.current.version)

    def SubmitCorrection(self, request, context):
        self._authorize(context, True)
        return self._call(context, lambda: self._correction(request))

    def _recent_correction(self, request: pb.RecentCorrectionRequest) -> pb.RecentCorrectionAck:
        self._check_label(request.label, self.slot.current)
        if bool(request.prediction_ids) == bool(request.last_k):
            raise InputError("name the predictions to label: prediction_ids=[...] or last_k=<k> (one of them)")
        if request.last_k > self.log.size:
            raise InputError(f"last_k={request.last_k}: the server keeps only the last {self.log.size} predictions")
        if request.prediction_ids:
            queued = {q.prediction.id: q.prediction for q in self.queries.items()}  # may be older than the log
            picked = self.log.get(list(request.prediction_ids), also=queued)
        else:
            episode = request.episode_id if request.HasField("episode_id") else None
            picked = self.log.last(request.last_k, episode)
            if not picked:
                raise InputError("no recent prediction to label" + (f" in episode {episode}" if episode is not None else ""))
        ids = []
        for p in picked:
            correction = Correction(frames=p.frames, label=int(request.label), probability=p.probabilities,
                                    model_version=p.model_version, time=time.time(), episode=p.episode_id, step=p.step,
                                    source=request.source or "console",
                                    context=self.log.around(p.episode_id, p.step, CONTEXT_STEPS))
            key = f"{request.request_id}:{p.id}" if request.request_id else None
            ids.append(self.store.add(correction, request_id=key, replica=self.replica))  # committed before the ack
        self.queries.remove({p.id for p in picked})
        if self.on_correction is not None:
            self.on_correction(ids[-1])
        return pb.RecentCorrectionAck(correction_ids=ids, prediction_ids=[p.id for p in picked],
                                      corrections_total=self.store.count(), model_version=self.slot.current.version)

    def SubmitRecentCorrection(self, request, context):
        self._authorize(context, True)
        return self._call(context, lambda: self._recent_correction(request))

    def correction_views(self) -> list[review.CorrectionView]:
        """Every correction with its status (recomputed only when the store changed)."""
        key = (self.store.last_id(), self.store.last_review_id(), self.store.last_attempt_id())
        with self._views_lock:
            if self._views[0] != key:
                self._views = (key, review.views(self.store))
            return self._views[1]

    def model_info(self, model: ServedModel | None = None) -> pb.ModelInfo:
        model = model or self.slot.current
        items = self.correction_views()
        counts = review.count(items)
        return pb.ModelInfo(
            version=model.version, created_unix=model.created_unix, metrics=model.metrics,
            corrections_total=counts.total, corrections_used=model.corrections_used,
            camera_keys=model.camera_keys, image_height=model.image_size[0], image_width=model.image_size[1],
            num_classes=model.num_classes, threshold=model.threshold, retrainer_status=self.retrainer_status,
            number=model.number, corrections=pb.CorrectionCounts(**asdict(counts)), needs_review=review.needs_review(items),
            retrainer=self.retrainer.to_proto(), ensemble_size=model.ensemble_size)

    def GetModel(self, request, context):
        self._authorize(context, self.cfg.auth_predict)
        return self._call(context, self.model_info)

    def WatchModel(self, request, context):
        self._authorize(context, self.cfg.auth_predict)
        seen = self.slot.generation
        current = self.model_info()
        yield current
        while context.is_active() and not self.slot.closed:
            change = self.slot.wait_change(seen, timeout=0.5)
            if change is not None:
                seen, model = change
                if model.version != current.version:  # not for a new ensemble of the same version
                    current = self.model_info(model)
                    yield current

    # ---- the operator console
    def _thumbnails(self, frames: dict[str, np.ndarray], max_side: int, quality: int) -> list[pb.Image]:
        return [encode_thumbnail(k, f, max_side or 160, quality or 75) for k, f in frames.items()]

    def _recent(self, p: Prediction, images: list[pb.Image] | None = None) -> pb.RecentPrediction:
        return pb.RecentPrediction(prediction_id=p.id, time_unix=p.time, episode_id=p.episode_id, step=p.step,
                                   probability=p.probability, uncertainty=p.uncertainty, threshold=p.threshold,
                                   success=p.success, model_version=p.model_version, images=images or [])

    def WatchActivity(self, request, context):
        self._authorize(context, self.cfg.auth_predict)
        self._call(context, lambda: _check_images_request(request.max_side, request.jpeg_quality))
        if request.frames_per_second < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "frames_per_second must be >= 0 (0 = 10)")
        episode = request.episode_id if request.HasField("episode_id") else None
        gap = 1.0 / (request.frames_per_second or 10.0)
        seen_gen, status = self.slot.generation, self.retrainer
        cursor, changes = self.log.newest_id, self.log.changes
        yield pb.Activity(model=self.model_info())
        yield pb.Activity(retrainer=status.to_proto())
        last_frames = 0.0
        while context.is_active() and not self.slot.closed:
            fresh, changes = self.log.wait(cursor, changes, timeout=0.5)
            if self.slot.generation != seen_gen:
                seen_gen = self.slot.generation
                yield pb.Activity(model=self.model_info())
            if self.retrainer is not status:
                status = self.retrainer
                yield pb.Activity(retrainer=status.to_proto())
            skipped = max(0, len(fresh) - 16)  # a slow reader gets the newest 16
            for p in fresh[skipped:]:
                cursor = p.id
                if episode is not None and p.episode_id != episode:
                    continue
                images = None
                if not request.no_frames and time.monotonic() - last_frames >= gap:
                    last_frames = time.monotonic()
                    images = self._thumbnails(p.frames, request.max_side, request.jpeg_quality)
                yield pb.Activity(prediction=self._recent(p, images), skipped=skipped)
                skipped = 0
            if fresh:
                cursor = fresh[-1].id

    def _queries(self, request: pb.QueriesRequest) -> pb.QueriesResponse:
        _check_images_request(request.max_side, request.jpeg_quality)
        out = []
        for q in self.queries.items(request.limit):
            images = None if request.no_frames else self._thumbnails(q.prediction.frames, request.max_side,
                                                                     request.jpeg_quality)
            out.append(pb.Query(prediction=self._recent(q.prediction, images), need=q.need, reason=q.reason))
        return pb.QueriesResponse(queries=out, capacity=self.queries.size)

    def GetQueries(self, request, context):
        self._authorize(context, self.cfg.auth_predict)
        return self._call(context, lambda: self._queries(request))

    def _list_corrections(self, request: pb.ListCorrectionsRequest) -> pb.ListCorrectionsResponse:
        items, counts = review.list_corrections(self.store, list(request.statuses), request.limit or 100,
                                                request.before_id)
        return pb.ListCorrectionsResponse(corrections=[_summary(v) for v in items],
                                          counts=pb.CorrectionCounts(**asdict(counts)))

    def ListCorrections(self, request, context):
        self._authorize(context, self.cfg.auth_predict)
        return self._call(context, lambda: self._list_corrections(request))

    def _offline_images(self, conflict: dict | None) -> tuple[dict[str, np.ndarray], str]:
        """The offline frame a conflict names (cached), or why there is none."""
        if not conflict:
            return {}, ""
        if not (self.cfg.dataset.root or self.cfg.dataset.repo_id):
            return {}, "this server has no offline dataset (dataset.root=) to show the frame from"
        key = (int(conflict["episode"]), int(conflict["frame"]))
        if key not in self._offline_cache:
            frames = review.offline_frames(self.cfg.dataset, conflict, self.slot.current.camera_keys)
            while len(self._offline_cache) >= 16:
                self._offline_cache.pop(next(iter(self._offline_cache)))
            self._offline_cache[key] = frames
        return self._offline_cache[key], ""

    def _get_correction(self, request: pb.GetCorrectionRequest) -> pb.CorrectionDetail:
        _check_images_request(request.max_side, request.jpeg_quality)
        detail = review.show_correction(self.store, request.id)
        offline, note = self._offline_images(detail.view.conflict)
        return pb.CorrectionDetail(
            summary=_summary(detail.view),
            images=[encode_thumbnail(k, f, request.max_side, request.jpeg_quality) for k, f in detail.frames.items()],
            history=[pb.StatusChange(attempt_id=a.attempt_id, status=a.status, probability=a.probability,
                                     detail=a.detail, conflict=_conflict(a.conflict)) for a in detail.history],
            reviews=[_review(r) for r in detail.reviews],
            offline_images=[encode_thumbnail(k, f, request.max_side, request.jpeg_quality) for k, f in offline.items()],
            offline_note=note)

    def GetCorrection(self, request, context):
        self._authorize(context, self.cfg.auth_predict)
        return self._call(context, lambda: self._get_correction(request))

    def _review(self, request: pb.ReviewRequest) -> pb.ReviewAck:
        ids = review.review_corrections(self.store, list(request.ids), request.verdict, request.reviewer or "console",
                                        request.note)
        if self.on_correction is not None:
            self.on_correction(0)  # what trains changed
        return pb.ReviewAck(review_ids=ids)

    def ReviewCorrections(self, request, context):
        self._authorize(context, True)
        return self._call(context, lambda: self._review(request))

    def _list_versions(self, request: pb.ListVersionsRequest) -> pb.ListVersionsResponse:
        serving = self.slot.current.number
        versions = []
        for number in (self.versions.numbers() if self.versions is not None else []):
            r = self.versions.get(number)
            versions.append(pb.VersionInfo(number=number, version=r.version, created_unix=r.created_unix,
                                           metrics=_numbers(r.metrics), corrections_used=r.corrections_used,
                                           last_correction_id=r.last_correction_id, serving=number == serving))
        attempts = [pb.AttemptInfo(id=a.id, time_unix=a.time, passed=a.passed, version=a.version, reason=a.reason,
                                   metrics=a.metrics, last_correction_id=a.last_correction_id, number=a.number)
                    for a in self.store.attempts(limit=request.limit or 100)]
        return pb.ListVersionsResponse(versions=versions, attempts=attempts)

    def ListVersions(self, request, context):
        self._authorize(context, self.cfg.auth_predict)
        return self._call(context, lambda: self._list_versions(request))


def _check_images_request(max_side: int, quality: int) -> None:
    if quality > 100:
        raise InputError(f"jpeg_quality={quality}: use 1..100 (0 = the default)")
    if max_side > 4096:
        raise InputError(f"max_side={max_side}: at most 4096 pixels")


def _numbers(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _review(r) -> pb.Review:
    return pb.Review(verdict=r.verdict, time_unix=r.time, reviewer=r.reviewer, note=r.note)


def _summary(v: review.CorrectionView) -> pb.CorrectionSummary:
    return pb.CorrectionSummary(
        id=v.id, time_unix=v.time, label=v.label, probability=v.probability, model_version=v.model_version,
        episode_id=v.episode, step=v.step, env_index=v.env_index, source=v.source, status=v.status,
        status_detail=v.status_detail, probability_now=v.probability_now,
        review=_review(v.review) if v.review is not None else None, conflict=_conflict(v.conflict))


def _conflict(conflict: dict | None) -> pb.OfflineConflict | None:
    return pb.OfflineConflict(**conflict) if conflict else None


# --------------------------------------------------------------------------- the server
class RewardServer:
    """A running reward service: ``RewardServer(cfg).start()``, then ``.address``, ``.stop()``.

    Owns the gRPC server, the health service, the model thread, the correction store and,
    with ``cfg.dataset.root``, the retrainer process and the thread that swaps in its versions.
    """

    def __init__(self, cfg: ServeConfig) -> None:
        validate(cfg)
        self.cfg = cfg
        cfg.token = resolve_token(cfg.token)
        if cfg.threads:
            import torch

            torch.set_num_threads(int(cfg.threads))
        self.versions = init_versions(cfg)
        self.store = CorrectionStore(cfg.store or str(Path(cfg.state_dir) / "corrections.sqlite"))
        self.slot = ModelSlot(load_version(self.versions, self.versions.numbers()[-1], cfg))
        self.batcher = Batcher(self.slot, cfg.max_batch)
        self.retrainer = None
        if cfg.dataset.root or cfg.dataset.repo_id:
            from ..online.retrainer import Retrainer

            self.retrainer = Retrainer.from_serve_config(cfg, self.versions, self.store.location,
                                                         threshold=self.slot.current.threshold)
        self.servicer = RewardServicer(self.slot, self.batcher, self.store, cfg,
                                       on_correction=self.retrainer.notify if self.retrainer else None,
                                       versions=self.versions)
        if self.retrainer is not None:
            self.servicer.set_retrainer("starting", "loading the offline features")
        self.health = health.HealthServicer()
        limit = cfg.max_message_mb * 1024 * 1024
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="hilreward-grpc"),
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
                     ("grpc.so_reuseport", 0)])
        pb_grpc.add_RewardServiceServicer_to_server(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port = 0
        self.retrainer_ready = threading.Event()
        """Set once the retrainer has loaded the offline features and leads the store (corrections are trained
        from then on; a replica whose retrainer waits on standby never sets it)."""
        self.ensemble_ready = threading.Event()
        """Set once the serving version has an uncertainty ensemble."""
        if self.slot.current.ensemble_size:
            self.ensemble_ready.set()
        self._threads: list[threading.Thread] = []
        self._install_lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        host = f"[{self.cfg.host}]" if ":" in self.cfg.host else self.cfg.host
        return f"{host}:{self.port}"

    @property
    def local_address(self) -> str:
        """Where a client in this process reaches the server (loopback when bound to every address)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.cfg.host, self.cfg.host)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def start(self) -> "RewardServer":
        host = f"[{self.cfg.host}]" if ":" in self.cfg.host else self.cfg.host
        try:
            self.port = self._server.add_insecure_port(f"{host}:{self.cfg.port}")
        except RuntimeError as exc:
            raise ConfigError(f"cannot bind {host}:{self.cfg.port} ({exc}); pick another port= (0 = any free port)") \
                from None
        self._server.start()
        self.servicer.replica = self.cfg.replica or f"{socket.gethostname()}:{self.port}"
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.store.shared:
            self._spawn(self._watch_loop, "hilreward-watch")
        if self.retrainer is not None:
            self.retrainer.start()
            self._spawn(self._swap_loop, "hilreward-swap")
            last = self.versions.latest().last_correction_id
            if self.store.last_id() > last:  # corrections stored while no retrainer ran
                self.retrainer.notify(self.store.last_id())
        if self.cfg.port_file:
            _write_atomic(Path(self.cfg.port_file), f"{self.port}\n")
        return self

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _install(self, number: int) -> ServedModel:
        """Serve version ``number`` unless a newer one serves already (versions only move forward), or the
        newest ensemble of the version serving; the query queue is judged again by what serves then."""
        from ..online.ensemble import latest_members

        with self._install_lock:
            current = self.slot.current
            members = latest_members(self.versions.root.parent, number)
            fresher = number == current.number and members is not None and members[0] > current.ensemble_number
            if number > current.number or fresher:
                model = load_version(self.versions, number, self.cfg)
                self.slot.swap(model)
                if number > current.number:
                    log.info("serving model version %s (%s)", model.version, _fmt(model.metrics))
            if self.slot.current.ensemble_size:
                self.ensemble_ready.set()
            swapped = self.slot.current is not current
        if swapped:
            self.servicer.queries.rescore(self.servicer.rejudge)
            self.servicer.log.changed()
        return self.slot.current

    def _swap_loop(self) -> None:
        assert self.retrainer is not None
        while not self._stopped.is_set():
            event = self.retrainer.next_event(timeout=0.5)
            if event is not None:
                try:
                    self._handle(event)
                except Exception as exc:  # the loop must outlive any one event
                    log.exception("retrainer event %s failed", event.get("event"))
                    self.servicer.set_retrainer("error", f"{type(exc).__name__}: {exc}")

    def _handle(self, event: dict) -> None:
        """One retrainer event: record attempts, swap in published versions and ensembles, update the status."""
        kind, servicer = event.get("event"), self.servicer
        if kind in ("published", "rejected"):
            self.store.add_attempt(kind == "published", int(event.get("number", -1)), event.get("version", ""),
                                   event.get("reason", ""), event.get("metrics", {}), event["last_correction_id"],
                                   event.get("assessments", []), time=event.get("time"))
        if kind == "published":
            try:
                model = self._install(int(event["number"]))
            except HilrewardError as exc:
                servicer.set_retrainer("error", f"cannot load version {event['number']}: {exc}")
                log.error("cannot load published version %s: %s", event["number"], exc)
                return
            servicer.set_retrainer("published", model.version, attempt="published")
        elif kind == "rejected":
            servicer.set_retrainer("rejected", event.get("reason", ""), attempt="rejected")
            log.warning("retrained model rejected by the gate: %s", event.get("reason"))
        elif kind == "ensemble":
            self._install(int(event["number"]))
            log.info("uncertainty ensemble of version %s: %s heads (%.1f s)", event["number"], event["members"],
                     event["seconds"])
        elif kind == "training":
            servicer.set_retrainer("training", f"on {event['corrections']} corrections")
        elif kind == "ready":
            servicer.set_retrainer("ready")
            log.info("retrainer ready (%s)", _fmt(event.get("metrics", {})))
            self.retrainer_ready.set()
        elif kind == "standby":
            servicer.set_retrainer("standby")
            log.info("retrainer on standby: another replica leads the store (%s)", _fmt(event.get("metrics", {})))
        elif kind == "error":
            servicer.set_retrainer("error", event.get("message", ""))
            log.error("retrainer failed: %s", event.get("message"))

    def _watch_loop(self) -> None:
        """Replicas: swap in each version a leader announces; rescan the folder for any missed while cut off."""
        while not self._stopped.is_set():
            try:
                with self.store.watch_versions() as watch:
                    scanned = 0.0
                    while not self._stopped.is_set():
                        if time.monotonic() - scanned > RESCAN_S:  # after LISTEN: nothing published between is missed
                            self._install(self.versions.numbers()[-1])
                            scanned = time.monotonic()
                        for number in watch.wait(timeout=0.5):
                            self._install(number)
            except HilrewardError as exc:
                log.warning("version announcements: %s; listening again in 2 s", exc)
                self._stopped.wait(2.0)

    def stop(self, grace: float = 1.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.slot.close()
        self.servicer.log.close()
        self._server.stop(grace).wait()
        self.batcher.close()
        if self.retrainer is not None:
            self.retrainer.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self.store.close()

    def wait(self) -> None:
        self._server.wait_for_termination()

    def __enter__(self) -> "RewardServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM (the main thread of a command)."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()


def run(cfg: ServeConfig, beside: Callable[[RewardServer], Callable[[], None]] | None = None) -> int:
    """Serve ``cfg`` until SIGINT or SIGTERM. ``beside(server)`` starts something in the same process (the
    operator console, :mod:`hilreward.app.console`) and returns how to stop it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = RewardServer(cfg).start()
    model = server.slot.current
    auth = "token required for corrections" + (" and predictions" if cfg.auth_predict else "") if cfg.token \
        else "no token"
    print(f"serving {SERVICE_NAME} on {server.address} (model_version {model.version}, cameras "
          f"{', '.join(model.camera_keys)}, {auth}, retraining {'on' if server.retrainer else 'off'}, store "
          f"{server.store.display})", flush=True)
    try:
        stop_beside = beside(server) if beside is not None else None
    except BaseException:
        server.stop()
        raise
    wait_for_signal()
    if stop_beside is not None:
        stop_beside()
    server.stop()
    return 0
