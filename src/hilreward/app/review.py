"""The review page: the corrections the retrainer could not fix (accept / reject them) and the versions timeline.

Served with the operator console (:mod:`hilreward.app.console`) and through the same
:class:`~hilreward.app.console_service.ConsoleService`; the same calls as ``hilreward corrections
list|show|accept|reject``. HTML at ``/review/`` (``static/review.html`` + ``review.js``); JSON under
``/api/review/``.
"""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from .console import SSE_HEADERS, service
from .console_models import CorrectionDetailModel, CorrectionPage, ReviewAck, ReviewRequest, TimelineModel
from .console_service import ConsoleService
from .factory import Page, page_html

router = APIRouter()
PAGE = Page(name="review", title="Review & versions", router=router)


@router.get("/review/", include_in_schema=False)
def html():
    return page_html("review")


@router.get("/api/review/events")
def events(s: ConsoleService = Depends(service)) -> StreamingResponse:
    """Server-sent events without predictions: a snapshot, then every version and retrainer change."""
    return StreamingResponse(s.feed.stream(live=False), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/api/review/corrections", response_model=CorrectionPage)
def corrections(status: Optional[list[str]] = Query(None), limit: int = 100, before_id: int = 0,
                s: ConsoleService = Depends(service)) -> CorrectionPage:
    return s.corrections(status, limit, before_id)


@router.get("/api/review/corrections/{correction_id}", response_model=CorrectionDetailModel)
def correction(correction_id: int, s: ConsoleService = Depends(service)) -> CorrectionDetailModel:
    return s.correction(correction_id)


@router.post("/api/review/reviews", response_model=ReviewAck)
def review(req: ReviewRequest, s: ConsoleService = Depends(service)) -> ReviewAck:
    return s.review(req)


@router.get("/api/review/versions", response_model=TimelineModel)
def versions(limit: int = 50, s: ConsoleService = Depends(service)) -> TimelineModel:
    return s.timeline(limit)
