"""The app factory: one FastAPI app that mounts pages, the shared static files and the token check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from ..errors import ConfigError, HilrewardError, status_of

STATIC = Path(__file__).parent / "static"
TOKEN_COOKIE = "hilreward_token"


@dataclass
class Page:
    name: str
    """URL segment: the page is at ``/<name>/``, its JSON API under ``/api/<name>/``."""
    title: str
    """Shown in every page's navigation bar."""
    router: APIRouter
    """Routes of the page (HTML and API), with paths relative to the app root."""


class PageLink(BaseModel):
    name: str
    title: str
    url: str


def page_html(name: str) -> FileResponse:
    """A page's HTML from ``static/<name>.html`` (never cached: it names the current scripts)."""
    return FileResponse(STATIC / f"{name}.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


def create_app(pages: list[Page], token: Optional[str] = None, state: Optional[dict[str, Any]] = None,
               title: str = "hilreward") -> FastAPI:
    """The web app: ``/`` redirects to the first page, ``/static/`` serves the shared assets, ``/api/pages`` lists
    the pages (for the navigation bar). ``state`` entries become ``app.state.<name>`` (the pages' services).
    With a ``token`` every request needs it: ``Authorization: Bearer <token>``, or once ``?token=<token>`` in
    the address (a browser then keeps it in a cookie)."""
    if not pages:
        raise ConfigError("create_app needs at least one page")
    app = FastAPI(title=title, docs_url=None, redoc_url=None)  # the API docs UI would load from a CDN
    for key, value in (state or {}).items():
        setattr(app.state, key, value)
    links = [PageLink(name=p.name, title=p.title, url=f"/{p.name}/") for p in pages]

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(links[0].url)

    @app.get("/api/pages", response_model=list[PageLink])
    def list_pages() -> list[PageLink]:
        return links

    for page in pages:
        app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(HilrewardError)
    def hilreward_error(request: Request, exc: HilrewardError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status_of(exc)[1])

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(exc)}, status_code=422)

    if token:
        _require_token(app, token)
    return app


def validation_message(exc: RequestValidationError) -> str:
    """A request that does not fit its model, in one line (``body.start: Input should be a finite number; ...``),
    never echoing the input (FastAPI's own answer does, and a NaN in it made that answer a 500)."""
    return "; ".join(".".join(str(part) for part in e.get("loc", ())) + ": " + str(e.get("msg", "invalid"))
                     for e in exc.errors()) or "invalid request"


def _require_token(app: FastAPI, token: str) -> None:
    expected = token.encode()

    @app.middleware("http")
    async def check(request: Request, call_next) -> Response:
        given = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        candidates = [given, request.cookies.get(TOKEN_COOKIE),
                      header[len("Bearer "):] if header.startswith("Bearer ") else None]
        if not any(c is not None and hmac.compare_digest(c.encode(), expected) for c in candidates):
            return JSONResponse({"detail": "missing or wrong token: open the page as http://<host>:<port>/?token=<token> "
                                           "or send 'Authorization: Bearer <token>'"}, status_code=401)
        response = await call_next(request)
        if given is not None:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response
