"""What the retrainer process tells the server, one typed event each (sent through a multiprocessing queue)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .store import Assessment


@dataclass(frozen=True)
class Ready:
    """This process leads the store: corrections train from now on."""

    metrics: dict


@dataclass(frozen=True)
class Standby:
    """Another replica's retrainer leads the store; this one waits to take over."""

    metrics: dict


@dataclass(frozen=True)
class Training:
    """An attempt started on the corrections up to id ``corrections``."""

    corrections: int
    time: float


@dataclass(frozen=True)
class AttemptDone:
    """An attempt ended: published as version ``number`` (-1 when refused), every correction's status."""

    passed: bool
    reason: str
    metrics: dict
    last_correction_id: int
    assessments: list[Assessment] = field(default_factory=list)
    time: float = 0.0
    number: int = -1
    version: str = ""


@dataclass(frozen=True)
class EnsembleReady:
    """The uncertainty heads of version ``number`` are written."""

    number: int
    members: int
    seconds: float


@dataclass(frozen=True)
class Failed:
    """Something went wrong in the retrainer (it goes on; a store it cannot reach it reconnects to)."""

    message: str
    trace: str = ""


Event = Ready | Standby | Training | AttemptDone | EnsembleReady | Failed
