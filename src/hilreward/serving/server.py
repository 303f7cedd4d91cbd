"""``hilreward serve``: the gRPC reward service (hilreward.v1.RewardService + grpc.health.v1).

    hilreward serve checkpoint=outputs/train/checkpoints/best dataset.root=data/demo token=$TOKEN

A thin layer over the predictor RewardFunction uses in-process (deploy's TorchBackend):
requests are decoded and validated, run through one model thread (:class:`Batcher`), and
answered with probability, success, reward, terminate and the model_version that produced
them. Corrections go to a :class:`CorrectionStore` (committed before the ack); with
``dataset.root`` a :class:`Retrainer` process turns them into validated new versions that
the server swaps in between requests. State lives in ``state_dir``: ``versions/<n>/`` and
``corrections.sqlite``; a restarted server serves its newest version.

Replicas: several servers given one ``store=postgresql://...`` and one ``state_dir`` (a shared
folder) all take Predict and corrections; the retrainer of exactly one of them (the store's
leader) trains, and every replica swaps in each version the leader announces.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..access import check_bind, resolve_token
from ..config import DatasetConfig, parse_overrides
from ..deploy.corrections import Correction
from ..errors import ConfigError, HilrewardError, InputError
from ..online.store import CorrectionStore
from ..online.versions import VersionStore
from .batcher import Batcher
from .images import decode_images
from .model_slot import ModelSlot, ServedModel
from .protos import hilreward_pb2 as pb
from .protos import hilreward_pb2_grpc as pb_grpc

log = logging.getLogger("hilreward.serving")

SERVICE_NAME = "hilreward.v1.RewardService"
MODES = ("sparse", "dense")
RESCAN_S = 10.0
"""Replicas look for a version they were not told of (a lost announcement) this often."""


@dataclass
class RetrainOptions:
    every: int = 1
    """Retrain after every N new corrections."""
    min_interval_s: float = 2.0
    """At least this many seconds between two retraining runs (corrections arriving meanwhile are batched)."""
    steps: int = 300
    """Most head optimizer steps per run (the head starts from the served checkpoint's head every run)."""
    check_every: int = 25
    """Check the corrections every N steps and stop training once ``min_fixed`` of them are fixed."""
    batch_size: int = 64
    """Feature rows per step."""
    lr: float = 1e-3
    """AdamW learning rate of the head."""
    correction_weight: float = 20.0
    """Sampling weight of a correction relative to an offline frame of its class (after class balancing)."""
    tolerance: float = 0.01
    """Gate: held-out accuracy may drop by at most this much (absolute) below the served checkpoint's."""
    min_fixed: float = 1.0
    """Gate: fraction of all corrections the new version must classify as the human labelled them."""
    threads: int = 1
    """torch threads of the retrainer process (leave the other cores to Predict)."""
    seed: int = 0
    """Seed of the head's batch sampling."""


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
    if r.every < 1 or r.min_interval_s < 0 or not 0 <= r.min_fixed <= 1 or r.steps < 1 or r.check_every < 1:
        raise ConfigError("retrain.every, retrain.steps and retrain.check_every must be >= 1, "
                          "retrain.min_interval_s >= 0, retrain.min_fixed within [0, 1]")
    check_bind(cfg.host, cfg.token, cfg.insecure)


# --------------------------------------------------------------------------- loading versions
def load_version(versions: VersionStore, number: int, cfg: ServeConfig) -> ServedModel:
    """Load ``versions/<number>`` with the same backend RewardFunction uses in-process."""
    from ..deploy.backends import TorchBackend
    from ..models import RewardClassifier

    record = versions.get(number)
    model = RewardClassifier.from_pretrained(versions.path(number), device=cfg.device)
    threshold = cfg.success_threshold if cfg.success_threshold is not None else float(model.threshold)
    return ServedModel(
        version=record.version, predictor=TorchBackend(model), threshold=threshold,
        image_size=tuple(int(x) for x in model.config.image_size), num_classes=int(model.config.num_classes),
        number=number, created_unix=record.created_unix, metrics=dict(record.metrics),
        corrections_used=record.corrections_used)


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
    """RewardService over a ModelSlot, a Batcher and a CorrectionStore."""

    def __init__(self, slot: ModelSlot, batcher: Batcher, store: CorrectionStore, cfg: ServeConfig,
                 on_correction: Callable[[int], None] | None = None) -> None:
        self.slot = slot
        self.batcher = batcher
        self.store = store
        self.cfg = cfg
        self.on_correction = on_correction
        self.replica = cfg.replica or ""
        """Stored with each correction (the server sets it once its port is known)."""
        self.retrainer_status = "off"
        """What the retrainer did last (ModelInfo.retrainer_status)."""
        self._streaks: OrderedDict[int, int] = OrderedDict()
        self._streak_lock = threading.Lock()

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
        probs, model = self.batcher.run(frames)
        return self._response(model, probs, request.episode_id, request.step, start)

    def _response(self, model: ServedModel, probs: np.ndarray, episode_id: int, step: int,
                  start: float) -> pb.PredictResponse:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim == 0:
            p = float(probs)
            classes = [1.0 - p, p]
        else:
            classes = [float(x) for x in probs]
            p = classes[self.cfg.success_class]
        success = self._debounce(episode_id, step, p >= model.threshold)
        reward = (self.cfg.success_reward if success else 0.0) if self.cfg.mode == "sparse" \
            else p * self.cfg.success_reward
        return pb.PredictResponse(
            probability=p, class_probabilities=classes, success=success, reward=reward,
            terminate=bool(success and self.cfg.terminate_on_success), model_version=model.version,
            server_latency_ms=(time.perf_counter() - start) * 1e3, episode_id=episode_id, step=step)

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

    def Predict(self, request, context):
        self._authorize(context, self.cfg.auth_predict)
        return self._call(context, lambda: self._predict(request))

    def PredictStream(self, request_iterator, context):
        self._authorize(context, self.cfg.auth_predict)
        for request in request_iterator:
            yield self._call(context, lambda: self._predict(request))

    # ---- corrections and versions
    def _correction(self, request: pb.CorrectionRequest) -> pb.CorrectionAck:
        model = self.slot.current
        frames = decode_images(request.images, model.camera_keys)
        classes = max(2, model.num_classes)
        if not 0 <= request.label < classes:
            raise InputError(f"label={request.label}: use 1 (success) or 0 (failure)" if classes == 2
                             else f"label={request.label}: must be a class index within 0..{classes - 1}")
        if request.model_version:
            version, probability = request.model_version, float(request.probability)
        else:  # score the frames with the version serving now
            probs, scored = self.batcher.run(frames)
            version = scored.version
            probability = float(probs) if np.ndim(probs) == 0 else [float(x) for x in probs]
        correction = Correction(
            frames=frames, label=int(request.label), probability=probability, model_version=version,
            time=request.time or time.time(), episode=request.episode_id, step=request.step,
            env_index=request.env_index, source=request.source or "grpc")
        cid = self.store.add(correction, request_id=request.request_id or None,
                             replica=self.replica)  # committed: durable
        if self.on_correction is not None:
            self.on_correction(cid)
        return pb.CorrectionAck(correction_id=cid, corrections_total=self.store.count(),
                                model_version=self.slot.current.version)

    def SubmitCorrection(self, request, context):
        self._authorize(context, True)
        return self._call(context, lambda: self._correction(request))

    def model_info(self, model: ServedModel | None = None) -> pb.ModelInfo:
        model = model or self.slot.current
        return pb.ModelInfo(
            version=model.version, created_unix=model.created_unix, metrics=model.metrics,
            corrections_total=self.store.count(), corrections_used=model.corrections_used,
            camera_keys=model.camera_keys, image_height=model.image_size[0], image_width=model.image_size[1],
            num_classes=model.num_classes, threshold=model.threshold, retrainer_status=self.retrainer_status)

    def GetModel(self, request, context):
        self._authorize(context, self.cfg.auth_predict)
        return self._call(context, self.model_info)

    def WatchModel(self, request, context):
        self._authorize(context, self.cfg.auth_predict)
        seen = self.slot.generation
        yield self.model_info()
        while context.is_active() and not self.slot.closed:
            change = self.slot.wait_change(seen, timeout=0.5)
            if change is not None:
                seen, model = change
                yield self.model_info(model)


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
                                       on_correction=self.retrainer.notify if self.retrainer else None)
        if self.retrainer is not None:
            self.servicer.retrainer_status = "starting"
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
        self._threads: list[threading.Thread] = []
        self._install_lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        host = f"[{self.cfg.host}]" if ":" in self.cfg.host else self.cfg.host
        return f"{host}:{self.port}"

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
        """Serve version ``number`` unless a newer one serves already (versions only move forward)."""
        with self._install_lock:
            if number > self.slot.current.number:
                model = load_version(self.versions, number, self.cfg)
                self.slot.swap(model)
                log.info("serving model version %s (%s)", model.version, _fmt(model.metrics))
            return self.slot.current

    def _swap_loop(self) -> None:
        assert self.retrainer is not None
        while not self._stopped.is_set():
            event = self.retrainer.next_event(timeout=0.5)
            if event is None:
                continue
            kind = event.get("event")
            if kind == "published":
                try:
                    model = self._install(int(event["number"]))
                except HilrewardError as exc:
                    self.servicer.retrainer_status = f"error cannot load version {event['number']}: {exc}"
                    log.error("cannot load published version %s: %s", event["number"], exc)
                    continue
                self.servicer.retrainer_status = f"published {model.version}"
            elif kind == "rejected":
                self.servicer.retrainer_status = f"rejected {event.get('reason')}"
                log.warning("retrained model rejected by the gate: %s", event.get("reason"))
            elif kind == "ready":
                self.servicer.retrainer_status = "ready"
                log.info("retrainer ready (%s)", _fmt(event.get("metrics", {})))
                self.retrainer_ready.set()
            elif kind == "standby":
                self.servicer.retrainer_status = "standby"
                log.info("retrainer on standby: another replica leads the store (%s)", _fmt(event.get("metrics", {})))
            elif kind == "error":
                self.servicer.retrainer_status = f"error {event.get('message')}"
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


def main(args: list[str]) -> int:
    cfg = parse_overrides(ServeConfig, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = RewardServer(cfg).start()
    model = server.slot.current
    auth = "token required for corrections" + (" and predictions" if cfg.auth_predict else "") if cfg.token \
        else "no token"
    print(f"serving {SERVICE_NAME} on {server.address} (model_version {model.version}, cameras "
          f"{', '.join(model.camera_keys)}, {auth}, retraining {'on' if server.retrainer else 'off'}, store "
          f"{server.store.display})", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0
