"""The operator console page: what the reward server sees, live, and two large buttons to correct it.

    hilreward serve checkpoint=... dataset.root=... console=true [console_port=8080]   # in the server's process
    hilreward console address=robot-pc:50051 token=$TOKEN [port=8080]                  # a process of its own

Either way the page's backend talks to the reward server only through a
:class:`~hilreward.serving.RewardClient` (:class:`~hilreward.app.console_service.ConsoleService`), and the
browser gets live updates as server-sent events fed by one WatchActivity stream. HTML at ``/console/``
(``static/console.html`` + ``console.js``); JSON under ``/api/console/``. The review page
(:mod:`hilreward.app.review`) is served beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from ..access import BindOptions
from ..config import parse_overrides
from .console_models import CorrectAck, CorrectRequest, QueryList, Snapshot, VersionMonitorModel
from .console_service import ConsoleService
from .factory import Page, create_app, page_html

router = APIRouter()
PAGE = Page(name="console", title="Operator console", router=router)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def service(request: Request) -> ConsoleService:
    return request.app.state.console


@router.get("/console/", include_in_schema=False)
def html():
    return page_html("console")


@router.get("/api/console/events")
def events(s: ConsoleService = Depends(service)) -> StreamingResponse:
    """Server-sent events: a snapshot, then every prediction (with frames), version and retrainer change."""
    return StreamingResponse(s.feed.stream(live=True), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/api/console/snapshot", response_model=Snapshot)
def snapshot(s: ConsoleService = Depends(service)) -> Snapshot:
    return s.feed.snapshot()


@router.post("/api/console/corrections", response_model=CorrectAck)
def correct(req: CorrectRequest, s: ConsoleService = Depends(service)) -> CorrectAck:
    return s.correct(req)


@router.get("/api/console/queries", response_model=QueryList)
def queries(limit: int = 0, s: ConsoleService = Depends(service)) -> QueryList:
    return s.queries(limit)


@router.get("/api/console/monitor", response_model=list[VersionMonitorModel])
def monitor(s: ConsoleService = Depends(service)) -> list[VersionMonitorModel]:
    """The hacking monitor: what each recent version claimed on live episodes, oldest first."""
    return s.monitor()


# ---- hilreward console / hilreward serve console=true ---------------------------------------------------
@dataclass
class ConsoleOptions(BindOptions):
    port: int = 8080
    """TCP port of the page; 0 picks a free one (printed, and written to ``port_file``)."""
    token: Optional[str] = None
    """The reward server's token (corrections and reviews need it); the page then asks for it too. Default
    $HILREWARD_TOKEN."""
    address: str = "127.0.0.1:50051"
    """The reward server (``hilreward serve``) to watch and correct."""
    allowed_hosts: list[str] = field(default_factory=list)
    """Host names the page answers to besides localhost, 127.0.0.1, ::1 and ``host`` (e.g. ``[robot-pc]``): a
    guard against DNS rebinding."""
    last_k: int = 5
    """Frames a button labels (the page can change it)."""
    frame_side: int = 240
    """Live frames are sent at most this many pixels on their longer side."""
    frames_per_second: float = 10.0
    """Live frames per second at most (every prediction still reaches the trace)."""
    timeout_s: float = 10.0
    """Deadline of each call to the reward server."""


def build(address: str, token: Optional[str] = None, last_k: int = 5, frame_side: int = 240,
          frames_per_second: float = 10.0, timeout_s: float = 10.0):
    """The console and review pages for the reward server at ``address``: (app, started ConsoleService)."""
    from . import review

    s = ConsoleService(address, token, last_k, frame_side, frames_per_second, timeout_s)
    return create_app([PAGE, review.PAGE], token=token, state={"console": s}), s.start()


def start(address: str, token: Optional[str], host: str, port: int, insecure: bool = False,
          port_file: Optional[str] = None, allowed_hosts: Sequence[str] = (), port_key: str = "port",
          **options) -> Callable[[], None]:
    """Serve the console in a thread; returns how to stop it (streams first, then the web server). ``port_key``:
    the option that set ``port``, named in errors (``console_port`` beside ``hilreward serve``)."""
    from .server import AppServer

    app, s = build(address, token, **options)
    try:
        server = AppServer(app, host, port, token, insecure, allowed_hosts, port_key=port_key).start()
    except BaseException:
        s.close()
        raise
    server.write_port(port_file)
    print(f"operator console for {address}: open {server.url}/console/{'?token=<token>' if token else ''}", flush=True)

    def stop() -> None:
        s.close()
        server.stop()

    return stop


def main(args: list[str]) -> int:
    """``hilreward console``: the console in a process of its own, for a reward server at ``address``."""
    from ..access import resolve_token
    from ..serving.server import wait_for_signal

    opts: ConsoleOptions = parse_overrides(ConsoleOptions, args)
    token = resolve_token(opts.token)
    opts.check_bind()
    stop = start(opts.address, token, opts.host, opts.port, opts.insecure, opts.port_file, opts.allowed_hosts,
                 last_k=opts.last_k, frame_side=opts.frame_side, frames_per_second=opts.frames_per_second,
                 timeout_s=opts.timeout_s)
    print("Ctrl-C stops", flush=True)
    wait_for_signal()
    stop()
    return 0
