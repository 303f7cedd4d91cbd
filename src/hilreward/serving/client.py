"""Python client of the reward service, and the backend that lets RewardFunction use it.

    client = RewardClient("127.0.0.1:50051", token=os.environ.get("HILREWARD_TOKEN"))
    result = client.predict({"front": front, "wrist": wrist}, episode_id=3, step=17)
    client.predict(images, episode_id=3, step=18, model_version=result.model_version)  # same version all episode
    client.submit_correction({"front": front, "wrist": wrist}, label=0)   # "that was not a success"
    reward_fn = RewardFunction.from_pretrained(None, backend="grpc", address=address)   # RL code unchanged
    for info in client.watch_model(): relabel_replay_buffer(info.version)
    client.queries()                                   # the recent frames that most need a human
    client.correct_recent(label=0, last_k=5)           # "the last 5 frames were a false success"
    client.reject([12, 13], note="late keypress")      # review: they never train again

Every call has a deadline (``timeout_s``); calls that fail with UNAVAILABLE (server not up
yet, restarting, connection dropped) are retried ``retries`` times with exponential backoff.
Other errors raise at once: INVALID_ARGUMENT becomes :class:`InputError`, anything else
:class:`ServingError`, each with the server's message. Corrections carry a fresh
``request_id``, so retrying one can never store it twice.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, TypeVar

import grpc
import numpy as np

from ..deploy.backends import BackendOptions, EpisodeStep, Scores, pick_camera
from ..deploy.reward_function import RewardResult
from ..deploy.rule import success_probability
from ..online.monitor import VersionMonitor
from ..errors import ConfigError, InputError, ServingError, UnavailableError, error_of
from ..images import to_uint8_hwc
from ..online.review import CorrectionCounts
from .images import encode_images
from .protos import hilreward_pb2 as pb
from .protos import hilreward_pb2_grpc as pb_grpc
from .records import (CorrectionImages, CorrectionList, Query, RecentCorrectionAck, RecentPrediction, RetrainerStatus,
                      Timeline, counts_from_proto, view_from_proto)

T = TypeVar("T")


@dataclass
class RemoteRewardResult(RewardResult):
    """A RewardResult from the server (``latency_ms`` is the client's round trip)."""

    class_probabilities: list[float] = field(default_factory=list)
    """Every class's probability ([failure, success] for binary models)."""
    server_latency_ms: float = 0.0
    """Time spent inside the server."""
    prediction_id: int = 0
    """Id in the server's buffer of recent predictions (``correct_recent(prediction_ids=[...])``)."""


@dataclass
class CorrectionAck:
    """The server's receipt: the correction is on disk."""

    correction_id: int
    corrections_total: int
    model_version: str
    """Version serving when the correction was stored."""


@dataclass
class ModelInfo:
    """A served model version."""

    version: str
    created_unix: float
    metrics: dict[str, float]
    corrections_total: int
    corrections_used: int
    camera_keys: list[str]
    image_size: tuple[int, int]
    num_classes: int
    threshold: float
    retrainer_status: str = ""
    """off, starting, ready, standby (another replica retrains), training, published <version>,
    rejected <reason> or error <message>."""
    number: int = 0
    """Version directory number (0 = the checkpoint the server started with)."""
    corrections: CorrectionCounts = field(default_factory=CorrectionCounts)
    """Corrections per status."""
    needs_review: list[int] = field(default_factory=list)
    """Unfixed and contradicted corrections no review has decided (newest first)."""
    retrainer: Optional[RetrainerStatus] = None
    ensemble_size: int = 0
    """Heads giving the uncertainty (0: results carry none)."""
    success_when: Optional[str] = None
    """The server's condition on the robot state (None: none); every Predict then carries the state."""
    state_names: list[str] = field(default_factory=list)
    """Names of observation.state's entries the condition may use."""
    monitor: list[VersionMonitor] = field(default_factory=list)
    """The hacking monitor: what each recent version claimed on live episodes, oldest first."""

    @classmethod
    def from_proto(cls, m: pb.ModelInfo) -> "ModelInfo":
        names = VersionMonitor.__dataclass_fields__
        return cls(m.version, m.created_unix, dict(m.metrics), m.corrections_total, m.corrections_used,
                   list(m.camera_keys), (m.image_height, m.image_width), m.num_classes, m.threshold,
                   m.retrainer_status, m.number, counts_from_proto(m.corrections), list(m.needs_review),
                   RetrainerStatus.from_proto(m.retrainer) if m.HasField("retrainer") else None, m.ensemble_size,
                   m.success_when or None, list(m.state_names),
                   [VersionMonitor(**{k: getattr(v, k) for k in names}) for v in m.monitor])


RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
"""Codes a call is tried again on (a server starting or restarting; every stream slot taken)."""


class RewardClient:
    """Client of ``hilreward.v1.RewardService`` (thread-safe; one channel per client)."""

    def __init__(self, address: str, token: Optional[str] = None, timeout_s: float = 5.0, retries: int = 3,
                 encoding: str = "raw", max_message_mb: int = 16, backoff_s: float = 0.1) -> None:
        """``encoding``: how frames travel (raw RGB8, jpeg or png); ``retries``: extra attempts on UNAVAILABLE (and
        RESOURCE_EXHAUSTED: the server's streams are all taken), with a doubling ``backoff_s``."""
        if retries < 0 or timeout_s <= 0:
            raise ServingError("retries must be >= 0 and timeout_s > 0")
        self.address = address
        self.timeout_s = timeout_s
        self.retries = retries
        self.encoding = encoding
        self.backoff_s = backoff_s
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        limit = max_message_mb * 1024 * 1024
        self._channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)])
        self._stub = pb_grpc.RewardServiceStub(self._channel)

    # ---- plumbing
    def _retry(self, call: Callable[[], T], what: str) -> T:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return call()
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if code in RETRIED and attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise _translate(exc, what, self.address) from None
        raise AssertionError("unreachable")

    def _predict_request(self, images: Mapping[str, Any], episode_id: Optional[int],
                         step: Optional[int], model_version: Optional[str] = None,
                         state: Any = None) -> pb.PredictRequest:
        request = pb.PredictRequest(images=encode_images(_frames(images), self.encoding),
                                    episode_id=int(episode_id or 0), step=int(step or 0),
                                    model_version=model_version or "")
        if isinstance(state, Mapping):
            request.named_state.update({str(k): _number(v, f"state[{k!r}]") for k, v in state.items()})
        elif state is not None:
            values = np.asarray(state.detach().cpu().numpy() if hasattr(state, "detach") else state, dtype=np.float64)
            request.state.extend(values.reshape(-1).tolist())
        return request

    # ---- API
    def predict(self, images: Mapping[str, Any], episode_id: Optional[int] = None, step: Optional[int] = None,
                model_version: Optional[str] = None, state: Any = None) -> RemoteRewardResult:
        """Judge one step: ``images`` maps camera (``front`` or full key) -> uint8 (H, W, 3).

        ``model_version``: judge with that version while the server still holds it (the serving one or one of
        the last few), else with the serving one; the result names the version used. ``state``: the robot
        state (a vector, or a dict of named numbers), which a server with ``success_when`` needs.
        """
        return self._predict_one(self._predict_request(images, episode_id, step, model_version, state))

    def predict_many(self, steps: Iterable[Mapping[str, Any]], episode_id: Optional[int] = None,
                     first_step: int = 0, model_version: Optional[str] = None,
                     states: Optional[Iterable[Any]] = None) -> list[RemoteRewardResult]:
        """Judge many steps over one PredictStream (in order); the deadline covers the whole stream. ``states``:
        each step's robot state (for a server with ``success_when``)."""
        steps = list(steps)
        states = list(states) if states is not None else [None] * len(steps)
        if len(states) != len(steps):
            raise InputError(f"{len(states)} states for {len(steps)} steps")
        return self._stream([self._predict_request(images, episode_id, first_step + i, model_version, state)
                             for i, (images, state) in enumerate(zip(steps, states))])

    def _predict_one(self, request: pb.PredictRequest) -> RemoteRewardResult:
        start = time.perf_counter()
        response = self._retry(lambda: self._stub.Predict(request, timeout=self.timeout_s, metadata=self._metadata),
                               "Predict")
        return _result(response, (time.perf_counter() - start) * 1e3)

    def _stream(self, requests: list[pb.PredictRequest]) -> list[RemoteRewardResult]:
        if not requests:
            return []
        timeout = self.timeout_s * max(1.0, len(requests) / 100)

        def call() -> list[RemoteRewardResult]:
            start = time.perf_counter()
            responses = list(self._stub.PredictStream(iter(requests), timeout=timeout, metadata=self._metadata))
            elapsed = (time.perf_counter() - start) * 1e3
            return [_result(r, elapsed) for r in responses]

        return self._retry(call, "PredictStream")

    def submit_correction(self, images: Mapping[str, Any], label: int, episode_id: int = 0, step: int = 0,
                          model_version: Optional[str] = None, probability: Optional[float] = None,
                          source: str = "programmatic", env_index: int = 0,
                          time_unix: Optional[float] = None) -> CorrectionAck:
        """Store a human label (1 success, 0 failure) for ``images``; returns once it is on the server's disk.

        Without ``model_version`` the server scores the frames with the version serving now.
        """
        request = pb.CorrectionRequest(
            images=encode_images(_frames(images), "png" if self.encoding == "jpeg" else self.encoding),
            label=int(label), episode_id=int(episode_id), step=int(step), model_version=model_version or "",
            probability=float(probability or 0.0), source=source, time=float(time_unix or 0.0),
            env_index=int(env_index), request_id=uuid.uuid4().hex)
        ack = self._retry(lambda: self._stub.SubmitCorrection(request, timeout=self.timeout_s,
                                                              metadata=self._metadata), "SubmitCorrection")
        return CorrectionAck(ack.correction_id, ack.corrections_total, ack.model_version)

    def get_model(self) -> ModelInfo:
        info = self._retry(lambda: self._stub.GetModel(pb.GetModelRequest(), timeout=self.timeout_s,
                                                       metadata=self._metadata), "GetModel")
        return ModelInfo.from_proto(info)

    def watch_model(self, timeout_s: Optional[float] = None) -> Iterator[ModelInfo]:
        """The version serving now, then each newly published one (until ``timeout_s``, or forever)."""
        stream = self._stub.WatchModel(pb.WatchModelRequest(), timeout=timeout_s, metadata=self._metadata)
        try:
            for info in stream:
                yield ModelInfo.from_proto(info)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise _translate(exc, "WatchModel", self.address) from None
        finally:
            stream.cancel()

    # ---- operator console
    def _unary(self, method: str, request: Any) -> Any:
        rpc = getattr(self._stub, method)
        return self._retry(lambda: rpc(request, timeout=self.timeout_s, metadata=self._metadata), method)

    def watch_activity(self, max_side: int = 160, jpeg_quality: int = 75, frames_per_second: float = 10.0,
                       frames: bool = True, episode_id: Optional[int] = None,
                       timeout_s: Optional[float] = None) -> Iterator[ModelInfo | RetrainerStatus | RecentPrediction]:
        """Live activity: the serving ModelInfo and RetrainerStatus first, then every RecentPrediction (JPEG
        frames at most ``frames_per_second``), a ModelInfo after each swap and a RetrainerStatus on each
        change (until ``timeout_s``, or forever)."""
        request = pb.WatchActivityRequest(max_side=max_side, jpeg_quality=jpeg_quality,
                                          frames_per_second=frames_per_second, no_frames=not frames,
                                          episode_id=episode_id)
        stream = self._stub.WatchActivity(request, timeout=timeout_s, metadata=self._metadata)
        try:
            for item in stream:
                kind = item.WhichOneof("kind")
                if kind == "model":
                    yield ModelInfo.from_proto(item.model)
                elif kind == "retrainer":
                    yield RetrainerStatus.from_proto(item.retrainer)
                elif kind == "prediction":
                    yield RecentPrediction.from_proto(item.prediction, item.skipped)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise _translate(exc, "WatchActivity", self.address) from None
        finally:
            stream.cancel()

    def correct_recent(self, label: int, prediction_ids: Optional[Iterable[int]] = None, last_k: int = 0,
                       episode_id: Optional[int] = None, source: str = "console") -> RecentCorrectionAck:
        """Label recent predictions by reference, each stored as one correction: the ``prediction_ids``, or the
        last ``last_k`` predictions (of ``episode_id``). label 0 = "false success", 1 = "missed success"."""
        request = pb.RecentCorrectionRequest(prediction_ids=list(prediction_ids or []), last_k=int(last_k),
                                             episode_id=episode_id, label=int(label), source=source,
                                             request_id=uuid.uuid4().hex)
        ack = self._unary("SubmitRecentCorrection", request)
        return RecentCorrectionAck(list(ack.correction_ids), list(ack.prediction_ids), ack.corrections_total,
                                   ack.model_version)

    def queries(self, limit: int = 0, max_side: int = 160, jpeg_quality: int = 75, frames: bool = True) -> list[Query]:
        """The recent frames that most need a human, neediest first (``limit`` of them; 0 = all queued)."""
        response = self._unary("GetQueries", pb.QueriesRequest(limit=limit, max_side=max_side,
                                                               jpeg_quality=jpeg_quality, no_frames=not frames))
        return [Query(RecentPrediction.from_proto(q.prediction), q.need, q.reason) for q in response.queries]

    def list_corrections(self, statuses: Optional[Iterable[str]] = None, limit: int = 100,
                         before_id: int = 0) -> CorrectionList:
        """Stored corrections, newest first, with their status and review (only ``statuses`` when given)."""
        response = self._unary("ListCorrections", pb.ListCorrectionsRequest(
            statuses=list(statuses or []), limit=limit, before_id=before_id))
        return CorrectionList([view_from_proto(c) for c in response.corrections], counts_from_proto(response.counts))

    def get_correction(self, correction_id: int, max_side: int = 0, jpeg_quality: int = 0) -> CorrectionImages:
        """One correction with its frames (PNG at full size by default), status history and reviews."""
        return CorrectionImages.from_proto(self._unary("GetCorrection", pb.GetCorrectionRequest(
            id=correction_id, max_side=max_side, jpeg_quality=jpeg_quality)))

    def review(self, ids: Iterable[int], verdict: str, reviewer: str = "", note: str = "") -> list[int]:
        """Accept or reject corrections (stored durably; the retrainer retrains); returns the review ids."""
        return list(self._unary("ReviewCorrections", pb.ReviewRequest(
            ids=list(ids), verdict=verdict, reviewer=reviewer, note=note)).review_ids)

    def accept(self, ids: Iterable[int], note: str = "", reviewer: str = "") -> list[int]:
        """The labels are right: train them fully, even when contradicted."""
        return self.review(ids, "accept", reviewer, note)

    def reject(self, ids: Iterable[int], note: str = "", reviewer: str = "") -> list[int]:
        """The labels are wrong: never train them again."""
        return self.review(ids, "reject", reviewer, note)

    def versions(self, limit: int = 100) -> Timeline:
        """Published versions (oldest first) and the ``limit`` newest retraining attempts with their gate metrics."""
        return Timeline.from_proto(self._unary("ListVersions", pb.ListVersionsRequest(limit=limit)))

    def health(self, service: str = "") -> str:
        """The standard gRPC health status name (``SERVING``, ``NOT_SERVING``, ...)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        response = self._retry(lambda: stub.Check(health_pb2.HealthCheckRequest(service=service),
                                                  timeout=self.timeout_s), "health Check")
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until the server accepts connections (UnavailableError after ``timeout_s``)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise UnavailableError(f"no reward server at {self.address} after {timeout_s:.0f} s; start one with "
                               "`hilreward serve checkpoint=...` or check the address") from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "RewardClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _translate(exc: grpc.RpcError, what: str, address: str) -> Exception:
    """The hilreward error of a failed call: the class :data:`~hilreward.errors.STATUS` maps its code to."""
    code, details = exc.code(), exc.details()
    if code == grpc.StatusCode.UNAVAILABLE:
        return UnavailableError(f"{what}: reward server at {address} unavailable ({details}); is `hilreward serve` "
                                "running there?")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return UnavailableError(f"{what}: no answer from {address} within the deadline; raise timeout_s or check the "
                                "server")
    cls = error_of(code.name)
    if cls in (InputError, ConfigError):
        return cls(f"{what} rejected by the server: {details}")
    return cls(f"{what} failed with {code.name}: {details}")


def _result(r: pb.PredictResponse, latency_ms: float) -> RemoteRewardResult:
    classes = list(r.class_probabilities)
    probability: float | list[float] = r.probability if len(classes) <= 2 else classes
    return RemoteRewardResult(
        probability=probability, success=r.success, reward=r.reward, terminate=r.terminate,
        model_version=r.model_version, latency_ms=latency_ms, class_probabilities=classes,
        server_latency_ms=r.server_latency_ms, episode_id=r.episode_id, step=r.step,
        uncertainty=r.uncertainty if r.HasField("uncertainty") else None, prediction_id=r.prediction_id,
        support=r.support if r.HasField("support") else None, novelty=r.novelty if r.HasField("novelty") else None)


def _number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}") from None


def _frames(images: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Camera -> uint8 (H, W, 3) numpy (torch tensors and float CHW in [0, 1] are converted)."""
    if not isinstance(images, Mapping) or not images:
        raise InputError("images must be a non-empty dict camera -> uint8 (H, W, 3) frame")
    return {str(k): _hwc_uint8(v, str(k)) for k, v in images.items()}


def _hwc_uint8(frame: Any, key: str) -> np.ndarray:
    """One frame as uint8 (H, W, 3), by the package's one conversion (its range check included)."""
    arr = to_uint8_hwc(frame, key)
    if arr.ndim != 3:
        raise InputError(f"camera {key!r}: expected one (H, W, 3) frame, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


class GrpcBackend:
    """The ``grpc`` entry of deploy's backend registry: a RewardFunction backend that asks a reward server.

    Same interface as deploy's TorchBackend/OnnxBackend: ``camera_keys`` and
    ``predict(camera -> (B, H, W, 3)) -> (B,)`` or ``(B, K)``. Batches go over one
    PredictStream. ``model_version`` is the version that produced the latest result (it
    changes when the server swaps in a retrained version); ``threshold`` is the server's.
    :meth:`predict_pinned` sends each row's episode, step and version, so RewardFunction keeps
    one version per episode. Human corrections go to the server (:meth:`correction_sink`).
    """

    name = "grpc"

    def __init__(self, address: str, token: Optional[str] = None, timeout_s: float = 5.0, retries: int = 3,
                 encoding: str = "raw", client: RewardClient | None = None) -> None:
        self.client = client or RewardClient(address, token=token, timeout_s=timeout_s, retries=retries,
                                             encoding=encoding)
        info = self.client.get_model()
        self.camera_keys: list[str] = list(info.camera_keys)
        self.threshold = info.threshold
        self.success_when, self.state_names = info.success_when, info.state_names or None
        self.num_classes = info.num_classes
        self.model_version = info.version

    @classmethod
    def load(cls, options: BackendOptions) -> "GrpcBackend":
        if not options.address:
            raise ConfigError("backend='grpc' needs address='host:port' of a running `hilreward serve`")
        return cls(options.address, token=options.token, timeout_s=options.timeout_s)

    def correction_sink(self) -> "GrpcCorrectionSink":
        """Where RewardFunction sends human overrides by default: the server, over this backend's channel."""
        return GrpcCorrectionSink(self.client.address, client=self.client)

    def predict(self, images: Mapping[str, Any]) -> np.ndarray:
        return self.score(images).probabilities

    def predict_pinned(self, images: Mapping[str, Any],
                       steps: Sequence[EpisodeStep] | None = None) -> tuple[np.ndarray, list[str]]:
        """(probabilities, the version that judged each row) of a batch (see :meth:`score`)."""
        scores = self.score(images, steps)
        return scores.probabilities, list(scores.versions or [])

    def score(self, images: Mapping[str, Any], steps: Sequence[EpisodeStep] | None = None,
              support: bool = True) -> Scores:
        """Probabilities, support (when the served version has a support bank) and the version that judged each
        row of a batch; row i is ``steps[i]`` (episode id, step, version to keep), sent with its request (None: no
        episode, the serving version)."""
        batched = {key: pick_camera(images, key) for key in self.camera_keys}
        sizes = {len(v) for v in batched.values()}
        if len(sizes) != 1:
            raise InputError(f"every camera needs the same batch size, got { {k: len(v) for k, v in batched.items()} }")
        n = sizes.pop()
        steps = list(steps) if steps is not None else [EpisodeStep()] * n
        if len(steps) != n:
            raise InputError(f"{len(steps)} episode steps for a batch of {n}")
        requests = [self.client._predict_request({k: v[i] for k, v in batched.items()}, s.episode_id, s.step,
                                                 s.version, s.state) for i, s in enumerate(steps)]
        results = [self.client._predict_one(requests[0])] if n == 1 else self.client._stream(requests)
        if results:
            self.model_version = results[-1].model_version
        versions = [r.model_version for r in results]
        support = np.array([[r.support, r.novelty] for r in results], dtype=np.float32) \
            if results and all(r.support is not None for r in results) else None
        if self.num_classes > 2:
            probs = np.array([r.class_probabilities for r in results], dtype=np.float32).reshape(n, -1)
        else:
            probs = np.array([r.probability for r in results], dtype=np.float32)
        return Scores(probs, support, versions)

    def close(self) -> None:
        self.client.close()


class GrpcCorrectionSink:
    """A deploy CorrectionSink that submits each human override to the reward server.

    ``RewardFunction(GrpcBackend(address), ..., corrections=GrpcCorrectionSink(address, token))``:
    overrides that disagree with the classifier are stored by the server (durably, before
    ``add`` returns) and trained into the next model version.
    """

    def __init__(self, address: str, token: Optional[str] = None, timeout_s: float = 5.0, retries: int = 3,
                 client: RewardClient | None = None) -> None:
        self.client = client or RewardClient(address, token=token, timeout_s=timeout_s, retries=retries)
        self.acks: list[CorrectionAck] = []

    def add(self, correction: Any) -> None:
        success = success_probability(correction.probability, getattr(correction, "success_class", -1))
        self.acks.append(self.client.submit_correction(
            correction.frames, label=int(correction.label), episode_id=int(correction.episode),
            step=int(correction.step), model_version=correction.model_version, probability=success,
            source=correction.source, env_index=int(correction.env_index), time_unix=float(correction.time)))

    def close(self) -> None:
        self.client.close()
