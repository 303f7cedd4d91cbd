"""Immutable model versions: ``<state_dir>/versions/<n>/``, each a full checkpoint plus ``version.json``.

Version 0 is a copy of the checkpoint the server was started with; the retrainer publishes
1, 2, ... . A version directory is written under a temporary name, fsync'd and renamed into
place, and never changed afterwards, so the server (or anyone) can load any published version
at any time and a crash never leaves a half-written one behind. Several writers may share the
directory (replicas on one store): renaming a directory onto an existing one fails, so two
writers can never both publish number ``n``; the later one takes the next number.
Retention (:meth:`VersionStore.prune`, ``retrain.keep_versions``) removes old versions, never version 0,
the serving one or one a running episode uses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, ServingError
from ..models.loading import checkpoint_hash
from ..utils import fsync_dir
from .ensemble import members_path

VERSION_FILE = "version.json"
_SKIP = re.compile(r"^(training_state.*|\..*)$")


@dataclass
class VersionRecord:
    """What ``version.json`` says about one published version."""

    number: int
    """Directory name under ``versions/`` (0 = the checkpoint the server started with)."""
    version: str
    """The model_version string every response of this version carries."""
    created_unix: float
    """Unix time the version was published."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Held-out metrics measured when it was published (retrained versions: accuracy, gate results)."""
    corrections_used: int = 0
    """Corrections it was trained with."""
    last_correction_id: int = 0
    """Newest correction id it was trained with."""
    base_fingerprint: str = ""
    """sha256 of the base checkpoint's config.json + model.safetensors (version 0 only)."""
    base_checkpoint: str = ""
    """Where the base checkpoint was copied from (version 0 only)."""


class VersionStore:
    """The ``versions/`` directory of a serving state dir."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def numbers(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(p.name) for p in self.root.iterdir()
                      if p.name.isdigit() and (p / VERSION_FILE).is_file())

    def get(self, number: int) -> VersionRecord:
        path = self.root / str(number)
        try:
            data = json.loads((path / VERSION_FILE).read_text())
            record = VersionRecord(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ServingError(f"model version {path} is unreadable ({exc}); remove the state_dir to start over") from None
        return record

    def path(self, number: int) -> Path:
        """Checkpoint directory of version ``number``."""
        return self.root / str(number)

    def latest(self) -> VersionRecord:
        numbers = self.numbers()
        if not numbers:
            raise ServingError(f"{self.root} holds no model version yet")
        return self.get(numbers[-1])

    def init_base(self, checkpoint: Path, version: str, metrics: dict[str, float]) -> VersionRecord:
        """Copy ``checkpoint`` to ``versions/0`` (once) as ``version``; refuse a state dir made for another checkpoint."""
        fingerprint = checkpoint_hash(checkpoint)
        if 0 not in self.numbers():
            record = VersionRecord(number=0, version=version, created_unix=time.time(), metrics=metrics,
                                   base_fingerprint=fingerprint, base_checkpoint=str(checkpoint.resolve()))

            def fill(tmp: Path) -> None:
                for src in checkpoint.iterdir():
                    if src.is_file() and not _SKIP.match(src.name):
                        shutil.copy2(src, tmp / src.name)

            self._write(0, record, fill)  # False: another replica copied its base first, checked below
        base = self.get(0)
        if base.base_fingerprint != fingerprint:
            raise ConfigError(
                f"state dir {self.root.parent} serves versions of another checkpoint ({base.base_checkpoint}); "
                f"use a fresh state_dir= for {checkpoint}, or pass the original checkpoint")
        return base

    def publish(self, fill: Callable[[Path, str], None], name: Callable[[int], str], metrics: dict[str, float],
                corrections_used: int, last_correction_id: int) -> VersionRecord:
        """Write the next version: ``fill(tmp_dir, version)`` saves the checkpoint, then it is renamed into place.

        ``name(number)`` is the model_version string of version ``number``. Where another writer
        took the number meanwhile, the version is written again under the next one.
        """
        while True:
            numbers = self.numbers()
            number = (numbers[-1] + 1) if numbers else 1
            record = VersionRecord(number=number, version=name(number), created_unix=time.time(), metrics=metrics,
                                   corrections_used=corrections_used, last_correction_id=last_correction_id)
            if self._write(number, record, lambda tmp: fill(tmp, record.version)):
                return self.get(number)

    def prune(self, keep: int, protect: set[int] = frozenset()) -> list[int]:
        """Remove the versions older than the newest ``keep`` (0: keep all), never version 0 or those in ``protect``
        (the serving one, the ones episodes use), with their ensembles; returns the numbers removed. A removed
        version goes first to a hidden name, so nobody ever loads half of one."""
        numbers = self.numbers()
        if keep <= 0 or len(numbers) <= keep:
            return []
        kept = set(numbers[-keep:]) | set(protect) | {0}
        removed = []
        for number in numbers:
            if number in kept:
                continue
            hidden = self.root / f".{number}.old-{uuid.uuid4().hex[:8]}"
            os.rename(self.path(number), hidden)
            shutil.rmtree(hidden, ignore_errors=True)
            members_path(self.root.parent, number).unlink(missing_ok=True)
            removed.append(number)
        if removed:
            fsync_dir(self.root)
        return removed

    def remove_partial(self) -> list[str]:
        """Remove what writers that died mid-publish left (``.<n>.tmp-*``, n >= 1); call only as the sole writer."""
        removed = []
        for p in self.root.iterdir() if self.root.is_dir() else ():
            number = p.name[1:].split(".tmp-", 1)[0]
            if p.is_dir() and p.name.startswith(".") and ".tmp-" in p.name and number.isdigit() and int(number) >= 1:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        return removed

    def _write(self, number: int, record: VersionRecord, fill: Callable[[Path], None]) -> bool:
        """Write version ``number`` atomically; False when it exists already (versions are immutable)."""
        target = self.root / str(number)
        if target.exists():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{number}.tmp-", dir=self.root))
        try:
            fill(tmp)
            (tmp / VERSION_FILE).write_text(json.dumps(asdict(record), indent=2, sort_keys=True) + "\n")
            for f in tmp.iterdir():
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
            try:
                os.rename(tmp, target)  # fails when target exists (a directory with files)
            except OSError:
                if not target.exists():
                    raise
                return False
            fsync_dir(self.root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True
