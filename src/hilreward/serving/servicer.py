"""The RewardService over one model slot: prediction, corrections, the console's and the review's calls.

Every RPC decodes and validates its request, runs one function and maps hilreward's errors to gRPC status
codes (:meth:`RewardServicer._call`); the token is checked before any of them by :class:`TokenAuth`, a gRPC
server interceptor.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import asdict
from typing import Any, Callable

import grpc
import numpy as np

from ..deploy.corrections import Correction
from ..deploy.rule import backed, judge, success_probability
from ..errors import AuthError, HilrewardError, InputError, status_of
from ..online import review
from ..online.monitor import HackingMonitor
from ..online.store import CorrectionStore
from ..online.versions import VersionStore
from ..success import success_label
from .activity import Prediction, PredictionLog, QueryQueue, rejudged, unfamiliar
from .batcher import Batcher
from .config import ServeConfig
from .images import decode_images, encode_thumbnail
from .live import LiveRecorder
from .model_slot import ModelSlot, ServedModel
from .protos import hilreward_pb2 as pb
from .protos import hilreward_pb2_grpc as pb_grpc
from .records import RetrainerStatus

log = logging.getLogger("hilreward.serving")

SERVICE_NAME = "hilreward.v1.RewardService"
CONTEXT_STEPS = 8
"""A correction records the served probabilities of this many steps either side of it (its episode's, from the
prediction log), so the retrainer can tell a label that lands a few steps late at a label change."""


class TokenAuth(grpc.ServerInterceptor):
    """The bearer token, checked before any RewardService call: corrections and reviews need it whenever a token
    is set, the other calls only with ``auth_predict``. The health service never needs it."""

    WRITES = ("SubmitCorrection", "SubmitRecentCorrection", "ReviewCorrections")
    MESSAGE = "missing or wrong token: send metadata 'authorization: Bearer <token>' (RewardClient(address, token=...))"

    def __init__(self, token: str | None, auth_predict: bool) -> None:
        self._expected = f"Bearer {token}".encode() if token else None
        self._all = auth_predict

    def intercept_service(self, continuation, details):
        service, _, method = details.method.rpartition("/")
        handler = continuation(details)
        if self._expected is None or handler is None or service != f"/{SERVICE_NAME}" or \
                (method not in self.WRITES and not self._all):
            return handler
        given = dict(details.invocation_metadata).get("authorization", "")
        if hmac.compare_digest(given.encode(), self._expected):
            return handler
        return _refusal(handler, getattr(grpc.StatusCode, status_of(AuthError(""))[0]), self.MESSAGE)


def _refusal(handler, code: grpc.StatusCode, message: str):
    """A handler of the same kind as ``handler`` that ends the call with ``code``."""
    def refuse(_request, context):
        context.abort(code, message)

    kind = ("unary_unary" if handler.unary_unary else "unary_stream" if handler.unary_stream else
            "stream_unary" if handler.stream_unary else "stream_stream")
    return getattr(grpc, f"{kind}_rpc_method_handler")(refuse, request_deserializer=handler.request_deserializer,
                                                       response_serializer=handler.response_serializer)


class RewardServicer(pb_grpc.RewardServiceServicer):
    """RewardService over a ModelSlot, a Batcher, a CorrectionStore and the recent-activity buffers."""

    def __init__(self, slot: ModelSlot, batcher: Batcher, store: CorrectionStore, cfg: ServeConfig,
                 on_correction: Callable[[int], None] | None = None, versions: VersionStore | None = None,
                 log: PredictionLog | None = None, queries: QueryQueue | None = None,
                 live: LiveRecorder | None = None, monitor: HackingMonitor | None = None) -> None:
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
        self.live = live
        """Records the live episodes the retrainer gates on (None: not recorded)."""
        self.monitor = monitor or HackingMonitor()
        """What each served version claims on live episodes."""
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

    # ---- errors
    def _call(self, context: grpc.ServicerContext, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except HilrewardError as exc:
            context.abort(getattr(grpc.StatusCode, status_of(exc)[0]), str(exc))
        except Exception as exc:
            log.exception("request failed")
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    # ---- prediction
    def _predict(self, request: pb.PredictRequest) -> pb.PredictResponse:
        start = time.perf_counter()
        frames = decode_images(request.images, self.slot.current.camera_keys, self.cfg.max_pixels)
        state = request_state(request)
        if self.cfg.success_when is not None and state is None:
            raise InputError(f"this server pays success only when success_when={self.cfg.success_when!r} holds: send "
                             "the robot state with every Predict (PredictRequest.state, or named_state)")
        probs, uncertainty, support, model = self.batcher.run(frames, request.model_version)
        return self._response(model, probs, uncertainty, support, frames, request.episode_id, request.step, start,
                              state)

    def _response(self, model: ServedModel, probs: np.ndarray, uncertainty: float | None, support: np.ndarray | None,
                  frames: dict[str, np.ndarray], episode_id: int, step: int, start: float,
                  state: Any = None) -> pb.PredictResponse:
        classes = _classes(probs)
        backing, novelty = (None, None) if support is None else (float(support[0]), float(support[1]))
        with self._streak_lock:  # the episode's debounce streak (step 0 starts a new one)
            streak = 0 if step == 0 else self._streaks.pop(episode_id, 0)
            judged = judge(probs, self.cfg, streak, threshold=model.threshold, state=state, support=backing)
            self._streaks[episode_id] = judged.streak
            while len(self._streaks) > 10_000:  # forget the oldest episodes
                self._streaks.popitem(last=False)
        self.monitor.record(model.version, model.number, episode_id, step, judged.success,
                            None if novelty is None else unfamiliar(backing, novelty))
        if self.live is not None and episode_id:  # 0: the request names no episode (an ad-hoc check)
            self.live.add(episode_id, step, frames, model.image_size, judged.probability, model.version)
        seen = self.log.add(episode_id=episode_id, step=step, frames=frames, probability=judged.probability,
                            probabilities=_stored(probs), uncertainty=uncertainty, threshold=model.threshold,
                            success=judged.success, model_version=model.version, support=backing, novelty=novelty,
                            state=state)
        self.queries.offer(seen)
        return pb.PredictResponse(
            probability=judged.probability, class_probabilities=classes, success=judged.success,
            reward=judged.reward, terminate=judged.terminate, model_version=model.version,
            server_latency_ms=(time.perf_counter() - start) * 1e3, episode_id=episode_id, step=step,
            uncertainty=uncertainty, prediction_id=seen.id, support=backing, novelty=novelty)

    def rejudge(self, prediction: Prediction) -> Prediction:
        """``prediction`` as the version serving now sees it."""
        probs, uncertainty, support, model = self.batcher.run(prediction.frames)
        backing = None if support is None else float(support[0])
        success = judge(probs, self.cfg, threshold=model.threshold, state=prediction.state, support=backing).success
        return rejudged(prediction, success_probability(probs, self.cfg.success_class), _stored(probs), uncertainty,
                        model.threshold, model.version, success,
                        None if support is None else (float(support[0]), float(support[1])))

    def Predict(self, request, context):
        return self._call(context, lambda: self._predict(request))

    def PredictStream(self, request_iterator, context):
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
        frames = decode_images(request.images, model.camera_keys, self.cfg.max_pixels)
        self._check_label(request.label, model)
        if request.model_version:
            version, probability = request.model_version, float(request.probability)
        else:  # score the frames with the version serving now
            probs, _, _, scored = self.batcher.run(frames)
            version = scored.version
            probability = _stored(probs)
        correction = Correction(
            frames=frames, label=int(request.label), probability=probability, model_version=version,
            time=request.time or time.time(), episode=request.episode_id, step=request.step,
            env_index=request.env_index, source=request.source or "grpc",
            context=self.log.around(request.episode_id, request.step, CONTEXT_STEPS) or None)
        cid = self.store.add(correction, request_id=request.request_id or None,
                             replica=self.replica)  # committed: durable
        self._flagged(version, probability, int(request.label))
        if self.on_correction is not None:
            self.on_correction(cid)
        return pb.CorrectionAck(correction_id=cid, corrections_total=self.store.count(),
                                model_version=self.slot.current.version)

    def _flagged(self, version: str, probability: Any, label: int, threshold: float | None = None) -> None:
        """Tell the hacking monitor of a correction: a false-success flag when the version called it success."""
        model = self.slot.get(version)  # the version itself while the slot holds it, else the serving one
        called = success_probability(probability, self.cfg.success_class) >= (threshold or model.threshold)
        self.monitor.flag(version, called, label == success_label(model.num_classes, self.cfg.success_class))

    def SubmitCorrection(self, request, context):
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
            self._flagged(p.model_version, p.probabilities, int(request.label), p.threshold)
        self.queries.remove({p.id for p in picked})
        if self.on_correction is not None:
            self.on_correction(ids[-1])
        return pb.RecentCorrectionAck(correction_ids=ids, prediction_ids=[p.id for p in picked],
                                      corrections_total=self.store.count(), model_version=self.slot.current.version)

    def SubmitRecentCorrection(self, request, context):
        return self._call(context, lambda: self._recent_correction(request))

    def correction_views(self) -> list[review.CorrectionView]:
        """Every correction with its status (recomputed only when the store changed)."""
        key = (self.store.last_id(), self.store.last_review_id(), self.store.last_attempt_id())
        with self._views_lock:
            if self._views[0] != key:
                self._views = (key, review.views(self.store, self.cfg.success_class))
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
            retrainer=self.retrainer.to_proto(), ensemble_size=model.ensemble_size,
            success_when=self.cfg.success_when or "", state_names=self.cfg.state_names or [],
            monitor=[pb.VersionMonitor(**asdict(v)) for v in self.monitor.snapshot()])

    def GetModel(self, request, context):
        return self._call(context, self.model_info)

    def WatchModel(self, request, context):
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
        self._call(context, lambda: _check_images_request(request.max_side, request.jpeg_quality))
        if not request.frames_per_second >= 0:  # NaN too
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "frames_per_second must be a number >= 0 (0 = 10)")
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
        return self._call(context, lambda: self._queries(request))

    def _list_corrections(self, request: pb.ListCorrectionsRequest) -> pb.ListCorrectionsResponse:
        items, counts = review.list_corrections(self.store, list(request.statuses), request.limit or 100,
                                                request.before_id, self.cfg.success_class)
        return pb.ListCorrectionsResponse(corrections=[_summary(v) for v in items],
                                          counts=pb.CorrectionCounts(**asdict(counts)))

    def ListCorrections(self, request, context):
        return self._call(context, lambda: self._list_corrections(request))

    def _live_images(self, conflict: dict | None) -> tuple[dict[str, np.ndarray], str]:
        """The live frame a ``conflicts_live`` status names, or why there is none."""
        if not conflict or not conflict.get("live"):
            return {}, ""
        if self.live is None:
            return {}, "this server keeps no live episodes"
        found = self.live.store.read(int(conflict["episode"]))
        if found is None:
            return {}, f"live episode {conflict['episode']} is no longer kept (the server keeps the newest {self.live.options.keep})"
        rows = np.flatnonzero(found.steps == int(conflict["frame"]))
        if not len(rows):
            return {}, f"live episode {conflict['episode']} has no step {conflict['frame']}"
        return {k: v[int(rows[0])] for k, v in found.frames.items()}, ""

    def _offline_images(self, conflict: dict | None) -> tuple[dict[str, np.ndarray], str]:
        """The offline frame a conflict names (cached), or why there is none."""
        if not conflict or "start" not in conflict:
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
        detail = review.show_correction(self.store, request.id, self.cfg.success_class)
        offline, note = self._offline_images(detail.view.conflict)
        live, live_note = self._live_images(detail.view.conflict)
        return pb.CorrectionDetail(
            summary=_summary(detail.view),
            images=[encode_thumbnail(k, f, request.max_side, request.jpeg_quality) for k, f in detail.frames.items()],
            history=[pb.StatusChange(attempt_id=a.attempt_id, status=a.status, probability=a.probability,
                                     detail=a.detail, **_conflict(a.conflict)) for a in detail.history],
            reviews=[_review(r) for r in detail.reviews],
            offline_images=[encode_thumbnail(k, f, request.max_side, request.jpeg_quality) for k, f in offline.items()],
            offline_note=note or live_note,
            live_images=[encode_thumbnail(k, f, request.max_side, request.jpeg_quality) for k, f in live.items()])

    def GetCorrection(self, request, context):
        return self._call(context, lambda: self._get_correction(request))

    def _review(self, request: pb.ReviewRequest) -> pb.ReviewAck:
        ids = review.review_corrections(self.store, list(request.ids), request.verdict, request.reviewer or "console",
                                        request.note)
        if self.on_correction is not None:
            self.on_correction(0)  # what trains changed
        return pb.ReviewAck(review_ids=ids)

    def ReviewCorrections(self, request, context):
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
        review=_review(v.review) if v.review is not None else None, **_conflict(v.conflict))


def _conflict(conflict: dict | None) -> dict:
    """The proto fields of what a status names: the offline frames, the live firings, or the newer correction."""
    if not conflict:
        return {}
    if "by" in conflict:
        return {"superseded_by": int(conflict["by"])}
    if conflict.get("live"):
        firings = conflict.get("firings", [])
        return {"live_conflict": pb.LiveConflict(kind=conflict.get("kind", ""), episode=conflict.get("episode", 0),
                                                 step=conflict.get("frame", 0),
                                                 firing_episodes=[int(e) for e, _ in firings],
                                                 firing_steps=[int(t) for _, t in firings])}
    return {"conflict": pb.OfflineConflict(**{k: conflict[k] for k in ("episode", "start", "end", "frame", "kind",
                                                                       "label") if k in conflict})}


def _stored(probs: np.ndarray) -> float | list[float]:
    """One step's output as predictions and corrections keep it: the binary probability, or every class's."""
    return float(probs) if np.ndim(probs) == 0 else [float(x) for x in np.asarray(probs).reshape(-1)]


def _classes(probs: np.ndarray) -> list[float]:
    """Every class's probability (a binary model's as [1 - p, p])."""
    stored = _stored(probs)
    return [1.0 - stored, stored] if isinstance(stored, float) else stored


def request_state(request: pb.PredictRequest) -> Any:
    """The robot state a Predict carries: names -> numbers, a vector, or None."""
    if request.named_state:
        return dict(request.named_state)
    return list(request.state) if len(request.state) else None
