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

import errno
import json
import logging
import os
import signal
import socket
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..access import resolve_token
from ..deploy.backends import TorchBackend
from ..errors import ConfigError, HilrewardError
from ..models import RewardClassifier
from ..models.checkpoint import resolve_checkpoint
from ..models.loading import model_version
from ..online import events
from ..online.ensemble import latest_members, load_members
from ..online.monitor import HackingMonitor
from ..online.retrainer import Retrainer
from ..online.store import CorrectionStore, engine_name
from ..online.versions import VersionStore
from .batcher import Batcher
from .config import ServeConfig, stream_limit, validate
from .live import LiveOptions, LiveRecorder
from .model_slot import EnsemblePredictor, ModelSlot, ServedModel
from .protos import hilreward_pb2_grpc as pb_grpc
from .servicer import SERVICE_NAME, RewardServicer, TokenAuth
from .streams import StreamLimit
from ..utils import ProcessLock, write_atomic
from ..constants import METRICS_NAME

log = logging.getLogger("hilreward.serving")

RESCAN_S = 10.0
"""Replicas look for a version they were not told of (a lost announcement) this often."""


# --------------------------------------------------------------------------- loading versions
def load_version(versions: VersionStore, number: int, cfg: ServeConfig) -> ServedModel:
    """Load ``versions/<number>`` with the same backend RewardFunction uses in-process."""
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
    checkpoint = resolve_checkpoint(cfg.checkpoint)
    versions = VersionStore(Path(cfg.state_dir) / "versions")
    versions.init_base(checkpoint, model_version(checkpoint), _numeric_metrics(checkpoint))
    return versions


LOCK_FILE = "server.lock"
"""In a state dir of an SQLite store: held by the one server that uses it (pid, host, time)."""


def lock_state(cfg: ServeConfig) -> ProcessLock | None:
    """The state dir's lock, for a server with an SQLite store (one server per state dir and store: two would
    both retrain and publish, and number versions apart from what they hold); None for a shared PostgreSQL store,
    whose replicas elect one retrainer instead."""
    location = cfg.store or str(Path(cfg.state_dir) / "corrections.sqlite")
    if engine_name(location) != "sqlite":
        return None
    who = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
    return ProcessLock.take(
        Path(cfg.state_dir) / LOCK_FILE, who,
        f"state_dir={cfg.state_dir} is in use by another `hilreward serve`: stop it or pass another state_dir=; "
        f"several servers share corrections only through store=postgresql://... (docs/scaling.md)")


def _numeric_metrics(checkpoint: Path) -> dict[str, float]:
    path = checkpoint / METRICS_NAME
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
        self._lock = lock_state(cfg)
        try:
            self._setup(cfg)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    def _setup(self, cfg: ServeConfig) -> None:
        if cfg.threads:
            import torch

            torch.set_num_threads(int(cfg.threads))
        self.versions = init_versions(cfg)
        self.store = CorrectionStore(cfg.store or str(Path(cfg.state_dir) / "corrections.sqlite"))
        self.slot = ModelSlot(load_version(self.versions, self.versions.numbers()[-1], cfg), cfg.pins,
                              load=self._load_named)
        self._numbers: dict[str, int] = {}
        if cfg.cautious and getattr(getattr(self.slot.current.predictor, "model", None), "support", None) is None:
            raise ConfigError(f"cautious=true needs a checkpoint with a support bank; {cfg.checkpoint} has none "
                              "(hilreward train writes one): retrain it, or serve without cautious")
        self.batcher = Batcher(self.slot, cfg.max_batch)
        self.retrainer = None
        if cfg.dataset.root or cfg.dataset.repo_id:
            self.retrainer = Retrainer.from_serve_config(cfg, self.versions, self.store.location,
                                                         threshold=self.slot.current.threshold)
        # live episodes are the retrainer's evidence: recorded only when one runs
        self.live = LiveRecorder(Path(cfg.state_dir) / "live", cfg.live if self.retrainer else LiveOptions(keep=0))
        self.servicer = RewardServicer(self.slot, self.batcher, self.store, cfg,
                                       on_correction=self.retrainer.notify if self.retrainer else None,
                                       versions=self.versions, live=self.live,
                                       monitor=HackingMonitor(cfg.state_dir))
        if self.retrainer is not None:
            self.servicer.set_retrainer("starting", "loading the offline features")
        self.health = health.HealthServicer()
        limit = cfg.max_message_mb * 1024 * 1024
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="hilreward-grpc"),
            interceptors=[StreamLimit(stream_limit(cfg)), TokenAuth(cfg.token, cfg.auth_predict)],
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
        """Bind and serve; a server that cannot start stops again (its state dir's lock and store released)."""
        try:
            return self._start()
        except BaseException:
            self.stop(grace=0)
            raise

    def _start(self) -> "RewardServer":
        host = f"[{self.cfg.host}]" if ":" in self.cfg.host else self.cfg.host
        taken = f"cannot bind {host}:{self.cfg.port} (%s); pick another port= (0 = any free port)"
        if self.cfg.port and port_in_use(self.cfg.host, self.cfg.port):  # before gRPC, whose C-core logs it too
            raise ConfigError(taken % "address already in use")
        try:
            self.port = self._server.add_insecure_port(f"{host}:{self.cfg.port}")
        except RuntimeError as exc:
            raise ConfigError(taken % exc) from None
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
            write_atomic(self.cfg.port_file, f"{self.port}\n")
        return self

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _install(self, number: int) -> ServedModel:
        """Serve version ``number`` unless a newer one serves already (versions only move forward), or the
        newest ensemble of the version serving; the query queue is judged again by what serves then."""
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

    def _load_named(self, version: str) -> ServedModel | None:
        """Version ``version`` loaded from disk for a request that names it, None when no version has that name."""
        if version not in self._numbers:
            self._numbers = {self.versions.get(n).version: n for n in self.versions.numbers()}
        number = self._numbers.get(version)
        try:
            return None if number is None else load_version(self.versions, number, self.cfg)
        except HilrewardError as exc:  # removed meanwhile: the request gets the serving version, which it names
            log.warning("version %s named by a request cannot be loaded: %s", version, exc)
            return None

    def prune_versions(self) -> list[int]:
        """Remove the versions ``retrain.keep_versions`` does not keep; the serving one and those episodes use
        (the slot's pins) stay."""
        removed = self.versions.prune(self.cfg.retrain.keep_versions, self.slot.pinned())
        if removed:
            log.info("removed model versions %s (retrain.keep_versions=%d)", removed, self.cfg.retrain.keep_versions)
        return removed

    def _swap_loop(self) -> None:
        assert self.retrainer is not None
        while not self._stopped.is_set():
            event = self.retrainer.next_event(timeout=0.5)
            if event is not None:
                try:
                    self._handle(event)
                except Exception as exc:  # the loop must outlive any one event
                    log.exception("retrainer event %s failed", type(event).__name__)
                    self.servicer.set_retrainer("error", f"{type(exc).__name__}: {exc}")

    def _handle(self, event: events.Event) -> None:
        """One retrainer event (the retrainer recorded its attempts): swap in published versions and ensembles,
        update the status."""
        servicer = self.servicer
        match event:
            case events.AttemptDone():
                if not event.passed:
                    servicer.set_retrainer("rejected", event.reason, attempt="rejected")
                    log.warning("retrained model rejected by the gate: %s", event.reason)
                    return
                try:
                    model = self._install(event.number)
                except HilrewardError as exc:
                    servicer.set_retrainer("error", f"cannot load version {event.number}: {exc}")
                    log.error("cannot load published version %s: %s", event.number, exc)
                    return
                servicer.set_retrainer("published", model.version, attempt="published")
                self.prune_versions()  # the leader's server: it swapped in what its retrainer published
            case events.EnsembleReady():
                self._install(event.number)
                log.info("uncertainty ensemble of version %s: %s heads (%.1f s)", event.number, event.members,
                         event.seconds)
            case events.Training():
                servicer.set_retrainer("training", f"on {event.corrections} corrections")
            case events.Ready():
                servicer.set_retrainer("ready")
                log.info("retrainer ready (%s)", _fmt(event.metrics))
                self.retrainer_ready.set()
            case events.Standby():
                servicer.set_retrainer("standby")
                log.info("retrainer on standby: another replica leads the store (%s)", _fmt(event.metrics))
            case events.Failed():
                servicer.set_retrainer("error", event.message)
                log.error("retrainer failed: %s", event.message)

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
        self.live.close()
        self.servicer.monitor.close()
        if self.retrainer is not None:
            self.retrainer.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self.store.close()
        if self._lock is not None:
            self._lock.release()

    def wait(self) -> None:
        self._server.wait_for_termination()

    def __enter__(self) -> "RewardServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM (the main thread of a command)."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()


def port_in_use(host: str, port: int) -> bool:
    """True when another socket listens on ``host:port`` (bound as gRPC binds: SO_REUSEADDR, no SO_REUSEPORT)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return False  # gRPC says what is wrong with the host
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


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
