"""Which engine a store location names: a path is SQLite, ``postgresql://`` PostgreSQL (:data:`ENGINES`).

Imported by :mod:`.base` (``CorrectionStore(location)`` opens the engine the location names); the engines'
modules are named here and imported on first use.
"""

from __future__ import annotations

import os

from ...errors import ConfigError
from ...utils import Registry

ENGINES: Registry[type] = Registry("store engine")
"""Engine name -> class (imported on first use); the location's URL scheme picks one."""
ENGINES.register("sqlite", "hilreward.online.store.sqlite:SQLiteStore")  # a path (the default)
ENGINES.register("postgresql", "hilreward.online.store.postgresql:PostgresStore")  # postgresql:// or postgres://
SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql"}
"""URL scheme -> engine name (a location without a scheme is an SQLite path)."""


def engine_name(location: str | os.PathLike) -> str:
    """The engine a store location names (``sqlite`` for a plain path)."""
    text = str(location)
    if "://" not in text:
        return "sqlite"
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"store={text}: unknown store scheme {scheme!r}; use a file path (SQLite) or one of "
                          f"{', '.join(s + '://...' for s in SCHEMES)}")
    return SCHEMES[scheme]


def engine_for(location: str | os.PathLike | None) -> type:
    if location is None:
        raise ConfigError("a correction store needs a location: a file path or postgresql://user@host/db")
    return ENGINES.get(engine_name(location))
