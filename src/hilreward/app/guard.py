"""The web servers' guard against DNS rebinding and cross-site requests (every :class:`~hilreward.app.AppServer`).

A page bound to 127.0.0.1 is still within reach of any web site the operator visits: once that site's name
re-resolves to 127.0.0.1 (DNS rebinding), the browser sends it requests here with ``Host: <its name>``; and any
site can make the browser send a form or a ``fetch`` here. So a request must name a host this server answers to
(else 400), and a state-changing one (not GET, HEAD or OPTIONS) whose ``Origin`` is another site (another scheme,
host or port) is refused (403). A request without ``Origin`` (curl, scripts) passes; ``Origin: null`` is another site.
"""

from __future__ import annotations

from typing import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Host names every server answers to (with any port)."""
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def hostname(netloc: str) -> str:
    """``Localhost:8000`` -> ``localhost``, ``[::1]:8000`` -> ``::1`` ('' when there is none)."""
    try:
        return urlsplit(f"//{netloc}").hostname or ""
    except ValueError:
        return ""


DEFAULT_PORTS = {"http": 80, "https": 443}
PAGE_SCHEME = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
"""The scheme of the page that may open a request of each ASGI scheme."""


def same_origin(origin: str, netloc: str, scheme: str = "http") -> bool:
    """``origin`` (``http://127.0.0.1:8000``) names the server the request reached (``Host: 127.0.0.1:8000`` over
    ``scheme``): the same scheme, host and port (a missing port is the scheme's default)."""
    try:
        o, here = urlsplit(origin), urlsplit(f"//{netloc}")
        if o.path or o.query or o.fragment or o.scheme.lower() != scheme.lower() or not o.hostname:
            return False
        default = DEFAULT_PORTS.get(scheme.lower())
        return o.hostname == here.hostname and (o.port or default) == (here.port or default)
    except ValueError:  # a malformed Origin or Host, or a port out of range
        return False


class HostGuard:
    """ASGI middleware: only :data:`LOOPBACK_HOSTS` and ``hosts`` (names, any port) in ``Host``, and
    state-changing requests only from this server's own pages."""

    def __init__(self, app, hosts: Sequence[str] = ()) -> None:
        self.app = app
        self.hosts = {hostname(h) or h.lower() for h in (*LOOPBACK_HOSTS, *hosts)}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        netloc = headers.get("host", "")
        host = hostname(netloc)
        if host not in self.hosts:
            detail = f"this server does not answer to host {host!r} (a guard against DNS rebinding): open it by the " \
                     f"address it printed, or start it with allowed_hosts=[{host}]" if host else \
                     f"bad or missing Host header {netloc!r}"
            return await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)
        origin = headers.get("origin")
        if origin is not None and scope.get("method") not in SAFE_METHODS and \
                not same_origin(origin, netloc, PAGE_SCHEME.get(scope.get("scheme", "http"), "http")):
            return await JSONResponse({"detail": f"cross-site request refused: origin {origin} is not this server "
                                                 f"({netloc}); use its own pages, or send no Origin header from "
                                                 "scripts"}, status_code=403)(scope, receive, send)
        await self.app(scope, receive, send)
