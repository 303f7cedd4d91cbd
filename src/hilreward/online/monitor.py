"""The hacking monitor: per served version, what the reward claims on the live episodes.

A policy that hunts the reward's mistakes shows itself in three numbers of the version it hunts, long before an
RL run is wasted:

- **claimed**: the share of live episodes (attributed to the version that judged their first step) where it
  claimed success: a sudden rise with no rise in true success is a policy that found a shortcut;
- **unfamiliar**: the share of those claims made on a frame unlike every success the offline data shows (the
  model's ``support``: :mod:`hilreward.models.support`); hacking starts there;
- **false-success flags**: corrections saying "not success" on frames it called success.

The server records every judged step (:meth:`HackingMonitor.record`) and every correction
(:meth:`HackingMonitor.flag`), and writes the numbers to ``<state_dir>/monitor.json`` (atomically, at most every
``save_s`` seconds) for ``hilreward corrections list`` and the next start.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ..utils import write_atomic

FILE = "monitor.json"


@dataclass
class VersionMonitor:
    """One version's numbers."""

    version: str
    number: int = 0
    episodes: int = 0
    """Live episodes whose first step it judged."""
    claimed: int = 0
    """Of those, the episodes where it claimed success."""
    claimed_unfamiliar: int = 0
    """Claims on a frame unlike every success the offline data shows."""
    claimed_unknown: int = 0
    """Claims whose familiarity the model cannot tell (a checkpoint without support)."""
    false_success_flags: int = 0
    """Corrections labelling a frame it called success "not success"."""
    first_unix: float = 0.0
    last_unix: float = 0.0

    @property
    def claimed_rate(self) -> float:
        return self.claimed / self.episodes if self.episodes else 0.0

    @property
    def unfamiliar_share(self) -> float:
        known = self.claimed - self.claimed_unknown
        return self.claimed_unfamiliar / known if known > 0 else 0.0

    def line(self) -> str:
        """One line for the command line."""
        known = self.claimed - self.claimed_unknown
        unfamiliar = f"{self.claimed_unfamiliar}/{known} on unfamiliar states" if known > 0 else \
            ("familiarity unknown" if self.claimed else "no claim")
        return (f"{self.version}: claimed success in {self.claimed}/{self.episodes} live episodes "
                f"({100 * self.claimed_rate:.0f} %), {unfamiliar}, {self.false_success_flags} false-success flag(s)")


class HackingMonitor:
    """Counts per version (the newest ``keep`` versions), thread-safe; see the module docstring."""

    def __init__(self, state_dir: Optional[str | Path] = None, keep: int = 50, save_s: float = 2.0) -> None:
        self.path = Path(state_dir) / FILE if state_dir is not None else None
        self.keep = int(keep)
        self.save_s = float(save_s)
        self._versions: OrderedDict[str, VersionMonitor] = OrderedDict()
        self._episodes: OrderedDict[int, tuple[str, bool]] = OrderedDict()
        """episode_id -> (the version it is attributed to, claimed yet)."""
        self._lock = threading.Lock()
        self._saved = 0.0
        self._dirty = False
        for item in read(self.path) if self.path is not None else []:
            self._versions[item.version] = item

    def _get(self, version: str, number: int) -> VersionMonitor:
        item = self._versions.get(version)
        if item is None:
            item = self._versions[version] = VersionMonitor(version, number, first_unix=time.time())
            while len(self._versions) > self.keep:
                self._versions.popitem(last=False)
        return item

    def record(self, version: str, number: int, episode_id: int, step: int, success: bool,
               unfamiliar: Optional[bool]) -> None:
        """One judged step of a live episode (``episode_id`` > 0)."""
        if not episode_id:
            return
        with self._lock:
            now = time.time()
            known = self._episodes.get(episode_id)
            if known is None or step == 0:
                self._get(version, number).episodes += 1
                known = (version, False)
                self._episodes[episode_id] = known
                while len(self._episodes) > 10_000:
                    self._episodes.popitem(last=False)
            owner, claimed = known
            item = self._get(owner, number)
            item.last_unix = now
            if success and not claimed:
                item.claimed += 1
                item.claimed_unfamiliar += bool(unfamiliar)
                item.claimed_unknown += unfamiliar is None
                self._episodes[episode_id] = (owner, True)
            self._dirty = True
        self._maybe_save()

    def flag(self, version: str, called_success: bool, label_success: bool) -> None:
        """A correction of a frame ``version`` judged: a false-success flag when it called success and the human
        says not."""
        if called_success and not label_success:
            with self._lock:
                self._get(version, 0).false_success_flags += 1
                self._dirty = True
            self._maybe_save()

    def snapshot(self) -> list[VersionMonitor]:
        """Every kept version's numbers, oldest first."""
        with self._lock:
            return [VersionMonitor(**asdict(v)) for v in self._versions.values()]

    def _maybe_save(self, force: bool = False) -> None:
        if self.path is None or not self._dirty or (not force and time.time() - self._saved < self.save_s):
            return
        with self._lock:  # copied and marked clean at once: a record made meanwhile marks it dirty again
            items = [asdict(v) for v in self._versions.values()]
            self._dirty, self._saved = False, time.time()
        try:
            write_atomic(self.path, json.dumps(items, indent=1) + "\n")
        except OSError:  # the numbers are a view: serving goes on
            with self._lock:
                self._dirty = True

    def close(self) -> None:
        self._maybe_save(force=True)


def read(path: Optional[Path]) -> list[VersionMonitor]:
    """The numbers a server last wrote to ``path`` (``[]`` when there are none)."""
    if path is None or not path.is_file():
        return []
    try:
        names = set(VersionMonitor.__dataclass_fields__)
        return [VersionMonitor(**{k: v for k, v in item.items() if k in names}) for item in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []
