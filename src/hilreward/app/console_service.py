"""The operator console's state, without HTTP: a :class:`~hilreward.serving.RewardClient` to the reward server.

Every call goes through the client, whether the console runs inside ``hilreward serve console=true`` or as
``hilreward console address=...``: one code path. Live activity comes from an
:class:`~hilreward.app.activity_feed.ActivityFeed` (one WatchActivity stream fanned out to the pages as
server-sent events). The console page (:mod:`hilreward.app.console`) and the review page
(:mod:`hilreward.app.review`) call the methods here; their JSON is in :mod:`hilreward.app.console_models`.
"""

from __future__ import annotations

from typing import Optional

from ..errors import ConfigError
from ..online.review import WAITING
from .activity_feed import ActivityFeed
from .console_models import (AttemptModel, ConsoleSettings, CorrectAck, CorrectionDetailModel, CorrectionModel,
                             CorrectionPage, CorrectRequest, Point, QueryList, QueryModel, ReviewAck,
                             ReviewModel, ReviewRequest, StatusChange, TimelineModel, VersionModel,
                             VersionMonitorModel, images_model, same_named)

class ConsoleService:
    """The console and review pages' calls, each one RewardClient call, plus the live :class:`ActivityFeed`."""

    def __init__(self, address: str, token: Optional[str] = None, last_k: int = 5, frame_side: int = 240,
                 frames_per_second: float = 10.0, timeout_s: float = 10.0, reviewer: str = "console") -> None:
        from ..serving import RewardClient

        if last_k < 1:
            raise ConfigError(f"last_k={last_k}: a button labels at least one frame")
        if not 16 <= frame_side <= 1024:
            raise ConfigError(f"frame_side={frame_side}: use 16..1024 pixels")
        if frames_per_second <= 0:
            raise ConfigError(f"frames_per_second={frames_per_second}: must be > 0")
        self.reviewer = reviewer
        self.client = RewardClient(address, token=token, timeout_s=timeout_s, retries=1)
        settings = ConsoleSettings(last_k=last_k, frame_side=frame_side, frames_per_second=frames_per_second)
        self.feed = ActivityFeed(RewardClient(address, token=token, timeout_s=timeout_s, retries=0), settings,
                                 self._serving_last_correction)

    def start(self) -> "ConsoleService":
        self.feed.start()
        return self

    def close(self) -> None:
        self.feed.close()
        self.client.close()

    def _serving_last_correction(self) -> int:
        return next((v.last_correction_id for v in self.client.versions(limit=1).versions if v.serving), 0)

    # ---- the console
    def correct(self, req: CorrectRequest) -> CorrectAck:
        """Label frames the server judged recently (by id, or the last k); stored before this returns."""
        ack = self.client.correct_recent(req.label, req.prediction_ids or None, req.last_k, req.episode_id, req.source)
        state = self.feed.retrainer_state()
        if state == "off":
            next_step = "stored; this server does not retrain them (serve with dataset.root=... to train corrections)"
        elif state == "standby":
            next_step = "stored; the leading replica's retrainer trains them into a new version"
        else:
            next_step = "stored; the retrainer trains them into a new version, served once its gate passes"
        return CorrectAck(correction_ids=ack.correction_ids, prediction_ids=ack.prediction_ids,
                          corrections_total=ack.corrections_total, model_version=ack.model_version,
                          retraining=state not in ("off", "error"), next=next_step)

    def queries(self, limit: int = 0) -> QueryList:
        """The recent frames that most need a human, neediest first."""
        items = self.client.queries(limit=limit, max_side=self.feed.settings.frame_side)
        return QueryList(queries=[QueryModel(point=Point.of(q.prediction), need=q.need, reason=q.reason,
                                             images=images_model(q.prediction.images)) for q in items])

    def monitor(self) -> list[VersionMonitorModel]:
        """The hacking monitor (the server's numbers per recent version, oldest first)."""
        return [VersionMonitorModel.of(v) for v in self.client.get_model().monitor]

    # ---- review and versions
    def corrections(self, statuses: Optional[list[str]] = None, limit: int = 100, before_id: int = 0) -> CorrectionPage:
        """Stored corrections (newest first; only ``statuses`` when given) with their status and review."""
        listing = self.client.list_corrections(statuses or None, limit, before_id)
        items = [CorrectionModel.of(v) for v in listing.corrections]
        waiting = sum(1 for c in items if c.status in WAITING and c.review is None)
        return CorrectionPage(corrections=items, counts=listing.counts, waiting=waiting)

    def correction(self, correction_id: int, max_side: int = 480) -> CorrectionDetailModel:
        """One correction with its stored frames (PNG), status history and reviews."""
        detail = self.client.get_correction(correction_id, max_side=max_side)
        return CorrectionDetailModel(
            correction=CorrectionModel.of(detail.view), images=images_model(detail.images),
            history=[StatusChange(**same_named(StatusChange, a)) for a in detail.history],
            reviews=[ReviewModel.of(r) for r in detail.reviews], offline_images=images_model(detail.offline_images),
            offline_note=detail.offline_note, live_images=images_model(detail.live_images))

    def review(self, req: ReviewRequest) -> ReviewAck:
        """Accept or reject corrections (stored durably; the retrainer retrains)."""
        return ReviewAck(review_ids=self.client.review(req.ids, req.verdict, self.reviewer, req.note))

    def timeline(self, limit: int = 50) -> TimelineModel:
        """Published versions and the newest retraining attempts with their gate metrics, newest first."""
        t = self.client.versions(limit=limit)
        return TimelineModel(
            versions=[VersionModel(**same_named(VersionModel, v)) for v in reversed(t.versions)],
            attempts=[AttemptModel(id=a.id, time_unix=a.time, passed=a.passed, number=a.number, version=a.version,
                                   reason=a.reason, metrics=a.metrics, last_correction_id=a.last_correction_id)
                      for a in t.attempts])
