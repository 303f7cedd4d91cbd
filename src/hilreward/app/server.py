"""Run the web app with uvicorn on a socket bound here (so ``port=0`` picks a free port we can report)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Optional, Sequence

from ..access import check_bind
from ..errors import ConfigError
from .guard import HostGuard
from ..utils import write_atomic


class AppServer:
    """``AppServer(app, host, port, token, insecure, allowed_hosts)``: ``.start()`` in a thread (tests, benchmarks)
    or ``.serve_forever()`` (the CLI; Ctrl-C stops it). Binding follows :mod:`hilreward.access`: loopback by
    default, anything else only with a token (the same one ``create_app`` was given) or ``insecure``. Requests
    pass :class:`~hilreward.app.guard.HostGuard`: ``Host`` must be a loopback name, ``host`` or one of
    ``allowed_hosts``, and a state-changing request from another site's page is refused."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 8000, token: Optional[str] = None,
                 insecure: bool = False, allowed_hosts: Sequence[str] = (), port_key: str = "port"):
        """``port_key``: the option that set ``port`` (``console_port`` beside ``hilreward serve``), named in errors."""
        import uvicorn

        check_bind(host, token, insecure)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{port_key}={port}: must be within 0..65535 (0 picks a free port)")
        try:
            self.socket = _listen(host, port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another {port_key}= "
                              f"(0 picks a free one) or host=") from None
        self.host, self.port = host, self.socket.getsockname()[1]
        # Open event streams (the console's) would hold a graceful shutdown forever: cut them after 2 s.
        self.server = uvicorn.Server(uvicorn.Config(HostGuard(app, [host, *allowed_hosts]), log_level="warning",
                                                    access_log=False, timeout_graceful_shutdown=2))
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def write_port(self, path: Optional[str]) -> None:
        if path:

            write_atomic(path, f"{self.port}\n")

    def start(self, timeout: float = 30.0) -> "AppServer":
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True,
                                        name="hilreward-app")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"the web app did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.socket.close()

    def serve_forever(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def __enter__(self) -> "AppServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket. proto=IPPROTO_TCP matters: asyncio turns Nagle's algorithm off (TCP_NODELAY) only
    on sockets that say they are TCP, and without it every response waits ~40 ms for a delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
