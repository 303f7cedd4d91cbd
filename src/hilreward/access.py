"""Who may reach a hilreward server: the one rule ``hilreward serve`` (gRPC) and the web app share.

A server binds 127.0.0.1 by default. Binding any other address makes it reachable from other
machines, so it needs a token (``token=`` or ``$HILREWARD_TOKEN``), or an explicit ``insecure=true``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Optional

from .errors import ConfigError

TOKEN_ENV = "HILREWARD_TOKEN"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(token: Optional[str]) -> Optional[str]:
    """``token`` if given, else ``$HILREWARD_TOKEN``, else None."""
    return token or os.environ.get(TOKEN_ENV) or None


def check_bind(host: str, token: Optional[str], insecure: bool) -> None:
    """Refuse to bind a non-loopback ``host`` without a token (``token`` or ``$HILREWARD_TOKEN``) unless ``insecure``."""
    if not (resolve_token(token) or insecure or is_loopback(host)):
        raise ConfigError(f"host={host} is reachable from other machines: set token=<secret> (or "
                          f"${TOKEN_ENV}), or insecure=true to serve without authentication")


@dataclass
class BindOptions:
    """Where a server listens and who may talk to it: the keys every server command shares (``hilreward serve``,
    ``console``, ``label``)."""

    host: str = "127.0.0.1"
    """Address to bind. Anything but loopback needs ``token`` (or ``insecure=true``)."""
    port: int = 0
    """TCP port; 0 picks a free one (printed, and written to ``port_file``)."""
    port_file: Optional[str] = None
    """Write the bound port to this file once serving (for scripts and tests using port=0)."""
    token: Optional[str] = None
    """Token every request must carry; default $HILREWARD_TOKEN."""
    insecure: bool = False
    """Allow binding a non-loopback address without a token."""

    def check_bind(self) -> None:
        check_bind(self.host, self.token, self.insecure)
