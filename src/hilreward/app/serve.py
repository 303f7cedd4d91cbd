"""``hilreward serve``: the gRPC reward service, and with ``console=true`` the operator console beside it in the
same process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from ..config import parse_overrides
from ..serving.config import ServeConfig
from ..serving.server import RewardServer, run
from .console import start


@dataclass
class ServeCommand(ServeConfig):
    """``hilreward serve``: :class:`~hilreward.serving.server.ServeConfig` plus the console in the same process."""

    console: bool = False
    """Also serve the operator console page (http://<host>:<console_port>/console/)."""
    console_port: int = 8080
    """TCP port of the console page; 0 picks a free one (printed, and written to ``console_port_file``)."""
    console_port_file: Optional[str] = None
    """Write the console's bound port to this file once serving."""
    allowed_hosts: list[str] = field(default_factory=list)
    """Host names the console page answers to besides localhost, 127.0.0.1, ::1 and ``host`` (e.g. ``[robot-pc]``):
    a guard against DNS rebinding."""


def main(args: list[str]) -> int:
    """``hilreward serve``: the reward server and, with ``console=true``, the console beside it."""
    cfg: ServeCommand = parse_overrides(ServeCommand, args)

    def beside(server: RewardServer) -> Callable[[], None]:
        return start(server.local_address, server.cfg.token, cfg.host, cfg.console_port, cfg.insecure,
                     cfg.console_port_file, cfg.allowed_hosts, port_key="console_port")

    return run(cfg, beside if cfg.console else None)
