"""The label station page (``hilreward label``): see and fix success labels.

    hilreward label dataset.root=data/my_set [checkpoint=runs/cls/checkpoints/best | suspects=runs/suspects]

HTML at ``/label/`` (``static/label.html`` + ``label.js``); JSON under ``/api/label/``. Handlers only
translate HTTP to :class:`~hilreward.app.label_station.LabelStation` calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..access import BindOptions, resolve_token
from ..config import DatasetConfig, parse_overrides
from .factory import Page, create_app, page_html
from .server import AppServer
from .label_station import (EditModel, EditRequest, EpisodeDetail, EpisodeSummary, LabelStation,
                            StationInfo)

router = APIRouter()
PAGE = Page(name="label", title="Label station", router=router)


def station(request: Request) -> LabelStation:
    return request.app.state.label_station


@router.get("/label/", include_in_schema=False)
def html():
    return page_html("label")


@router.get("/api/label/info", response_model=StationInfo)
def info(s: LabelStation = Depends(station)) -> StationInfo:
    return s.info()


@router.get("/api/label/episodes", response_model=list[EpisodeSummary])
def episodes(s: LabelStation = Depends(station)) -> list[EpisodeSummary]:
    return s.episodes()


@router.get("/api/label/episodes/{episode_index}", response_model=EpisodeDetail)
def episode(episode_index: int, s: LabelStation = Depends(station)) -> EpisodeDetail:
    return s.episode(episode_index)


@router.get("/api/label/frames/{camera}/{episode_index}/{frame}.{fmt}")
def frame(camera: int, episode_index: int, frame: int, fmt: str, s: LabelStation = Depends(station)) -> Response:
    data, media = s.frame_image(camera, episode_index, frame, fmt)
    # Frames of a dataset never change (the URL carries its fingerprint), so the browser keeps them.
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=86400, immutable"})


@router.get("/api/label/edits", response_model=list[EditModel])
def list_edits(s: LabelStation = Depends(station)) -> list[EditModel]:
    return s.list_edits()


@router.post("/api/label/edits", response_model=EditModel)
def add_edit(req: EditRequest, s: LabelStation = Depends(station)) -> EditModel:
    return s.add_edit(req)


@router.post("/api/label/edits/undo", response_model=EditModel)
def undo_last(s: LabelStation = Depends(station)) -> EditModel:
    return s.undo()


@router.delete("/api/label/edits/{index}", response_model=EditModel)
def undo(index: int, s: LabelStation = Depends(station)) -> EditModel:
    return s.undo(index)


# ---- hilreward label -------------------------------------------------------------------------------
@dataclass
class LabelKeyOptions:
    key: Optional[str] = None
    """Label column; default: the edits file's, else next.reward."""
    threshold: Optional[float] = None
    """Float labels are success when >= threshold; default: the edits file's, else 0.5."""


@dataclass
class LabelOptions(BindOptions):
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """The dataset to label (``dataset.root=`` or ``dataset.repo_id=``); it is only read."""
    label: LabelKeyOptions = field(default_factory=LabelKeyOptions)
    """Label key and threshold (frame-judged: next.* keys are shifted to the frame they judge)."""
    checkpoint: Optional[str] = None
    """Show this checkpoint's probability on the timeline."""
    suspects: Optional[str] = None
    """Show a ``hilreward suspects`` output folder's out-of-fold probability and suspect spans."""
    edits: Optional[str] = None
    """Edits file; default ``<dataset folder>.edits.json`` next to the dataset (never inside it)."""
    port: int = 8000
    """TCP port; 0 picks a free one (printed, and written to ``port_file``)."""
    allowed_hosts: list[str] = field(default_factory=list)
    """Host names the page answers to besides localhost, 127.0.0.1, ::1 and ``host`` (e.g. ``[robot-pc]``): a
    guard against DNS rebinding."""
    cache_dir: Optional[str] = None
    """Frame cache root (default $HILREWARD_CACHE or ~/.cache/hilreward)."""
    max_side: int = 480
    """Frames are served at their recorded size, scaled down to this many pixels on the longer side."""


def build(opts: LabelOptions, token: Optional[str] = None):
    """The label station app for ``opts`` (the frames are decoded into the cache here, once)."""
    s = LabelStation.open(opts.dataset, opts.label.key, opts.label.threshold, opts.edits, opts.checkpoint,
                          opts.suspects, opts.cache_dir, opts.max_side)
    return create_app([PAGE], token=token, state={"label_station": s}), s


def main(args: list[str]) -> int:
    opts: LabelOptions = parse_overrides(LabelOptions, args)
    token = resolve_token(opts.token)
    opts.check_bind()  # before decoding anything
    print("label station: reading the dataset (videos are decoded once into the frame cache)...", flush=True)
    app, s = build(opts, token)
    server = AppServer(app, opts.host, opts.port, token, opts.insecure, opts.allowed_hosts)
    server.write_port(opts.port_file)
    info = s.info()
    print(f"label station for {info.dataset} ({info.episodes} episodes, label {info.label_key}); edits go to "
          f"{info.edits_path}\nopen {server.url}/label/{'?token=<token>' if token else ''}  (Ctrl-C stops)", flush=True)
    server.serve_forever()
    return 0
