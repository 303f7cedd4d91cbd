"""Label edits: the file the label station writes and ``hilreward relabel`` applies.

An edits file is JSON (the README documents it for users)::

    {"format": "hilreward.label-edits/1",
     "dataset_root": "/data/my_set", "dataset_fingerprint": "3f2c9a0e5d1b7c44",
     "label_key": "next.reward", "label_threshold": 0.5,
     "edits": [{"episode_index": 7, "start": 80, "end": 93, "label": 0,
                "time": "2026-12-01T10:12:03+00:00", "source": "label-station"}]}

A range covers ``frame_index`` ``start <= f < end`` of one episode and sets the *frame-judged* success
of those frames (1: the frame shows success): for a ``next.*`` key a frame's label is the previous
row's value (what ``label.align=auto`` reads), other keys are per frame, as recorded. Later edits
win where ranges overlap. The file belongs to one dataset (its fingerprint) and one label key; it is
refused for another dataset, once the dataset's files changed, or when a range is out of bounds.
By default it lives next to the dataset (``<root>.edits.json``), never inside it.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ConfigError, DatasetError
from ..data.reader import LeRobotDataset
from ..utils import write_atomic
from ..constants import REWARD_KEY

FORMAT = "hilreward.label-edits/1"
DEFAULT_LABEL_KEY = REWARD_KEY


@dataclass(frozen=True)
class Edit:
    episode_index: int
    """Episode of the range."""
    start: int
    """First frame_index of the range."""
    end: int
    """One past the last frame_index of the range (exclusive)."""
    label: int
    """1: these frames show success; 0: they do not."""
    time: str
    """When the edit was made (ISO 8601, UTC)."""
    source: str
    """Who or what made it (``label-station``, a script name, ...)."""


def default_edits_path(root: str | Path) -> Path:
    """``<parent>/<dataset folder name>.edits.json``: next to the dataset, never inside it."""
    root = Path(root).expanduser().resolve()
    return root.parent / f"{root.name}.edits.json"


def judged_labels(ds: LeRobotDataset, key: str, threshold: float = 0.5) -> np.ndarray:
    """0/1 label of every row (dataset order) in frame-judged terms (``label.align=auto``): a ``next.*`` key
    shifted to the frame it judges, any other key as recorded."""
    labels = ds.labels(key, threshold, "auto")
    if labels.size and (labels.min() < 0 or labels.max() > 1):
        raise DatasetError(f"label key {key!r} of {ds.root} has values {sorted(np.unique(labels).tolist())[:8]}; "
                           f"label edits are for binary success labels (0/1, or a float/bool column)")
    return labels


class EditsFile:
    """The edits of one dataset and label key, validated; every change is written to disk before it returns."""

    def __init__(self, path: Path, ds: LeRobotDataset, label_key: str, label_threshold: float,
                 edits: list[Edit]):
        self.path = path
        self.ds = ds
        self.label_key = label_key
        self.label_threshold = float(label_threshold)
        self._edits = list(edits)
        self._lock = threading.Lock()
        self._frames = {e.index: e.length for e in ds.episodes}

    # ---- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, ds: LeRobotDataset, path: str | Path | None = None, label_key: Optional[str] = None,
             label_threshold: Optional[float] = None, must_exist: bool = False) -> "EditsFile":
        """Load ``path`` (default: next to the dataset) and check it against ``ds``; a missing file starts empty
        (nothing is written until the first edit) unless ``must_exist``."""
        path = Path(path).expanduser() if path else default_edits_path(ds.root)
        _check_outside(path, ds.root)
        if not path.exists():
            if must_exist:
                raise ConfigError(f"edits file {path} does not exist; pass edits=<file> (the label station writes "
                                  f"{default_edits_path(ds.root)} by default)")
            key = label_key or DEFAULT_LABEL_KEY
            threshold = 0.5 if label_threshold is None else label_threshold
            out = cls(path, ds, key, threshold, [])
            out.base_labels()  # checks the key now, not at the first edit
            return out
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read the edits file {path} ({exc}); restore it or pass another edits=<file>") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("edits"), list):
            raise DatasetError(f"{path} is not a hilreward label edits file (expected \"format\": \"{FORMAT}\" and an "
                               f"\"edits\" list); pass another edits=<file>")
        _check_dataset(path, raw, ds)
        key = raw.get("label_key")
        if label_key and label_key != key:
            raise ConfigError(f"the edits in {path} are for label key {key!r}, not {label_key!r}; pass "
                              f"label.key={key} or another edits=<file>")
        threshold = float(raw.get("label_threshold", 0.5))
        if label_threshold is not None and float(label_threshold) != threshold:
            raise ConfigError(f"the edits in {path} are for label.threshold={threshold}, not {label_threshold}")
        out = cls(path, ds, key, threshold, [])
        out.base_labels()
        for i, item in enumerate(raw["edits"]):
            try:
                edit = Edit(**{k: item[k] for k in Edit.__dataclass_fields__})
            except (KeyError, TypeError) as exc:
                raise DatasetError(f"edit {i} of {path} is malformed ({exc}); each edit needs episode_index, start, "
                                   f"end, label, time and source") from None
            out._check(edit, f"edit {i} of {path}")
            out._edits.append(edit)
        return out

    # ---- reading ------------------------------------------------------------------------------
    @property
    def edits(self) -> list[Edit]:
        with self._lock:
            return list(self._edits)

    def base_labels(self) -> np.ndarray:
        """The dataset's own frame-judged labels of every row (dataset order)."""
        return judged_labels(self.ds, self.label_key, self.label_threshold)

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """``labels`` (every row, dataset order) with the edits applied, in order."""
        return apply_edits(self.ds, labels, self.edits)

    def covered(self) -> np.ndarray:
        """Boolean mask of the rows some edit covers."""
        return apply_edits(self.ds, np.zeros(self.ds.num_frames, dtype=np.int64), self.edits, value=1).astype(bool)

    # ---- changing -----------------------------------------------------------------------------
    def add(self, episode_index: int, start: int, end: int, label: int, source: str = "label-station") -> Edit:
        """Validate and append one range, then write the file (fsync'd) before returning."""
        edit = Edit(int(episode_index), int(start), int(end), int(label),
                    dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), str(source))
        self._check(edit, "the edit")
        with self._lock:
            self._edits.append(edit)
            try:
                self._save()
            except BaseException:
                self._edits.pop()
                raise
        return edit

    def undo(self, index: Optional[int] = None) -> Edit:
        """Remove edit ``index`` (default: the last one) and write the file; returns the removed edit."""
        with self._lock:
            if not self._edits:
                raise ConfigError("there is no edit to undo")
            i = len(self._edits) - 1 if index is None else int(index)
            if not 0 <= i < len(self._edits):
                raise ConfigError(f"edit {index} does not exist (there are {len(self._edits)} edits, 0..{len(self._edits) - 1})")
            removed = self._edits.pop(i)
            try:
                self._save()
            except BaseException:
                self._edits.insert(i, removed)
                raise
        return removed

    # ---- internals ----------------------------------------------------------------------------
    def _save(self) -> None:
        doc = {"format": FORMAT, "dataset_root": str(Path(self.ds.root).resolve()),
               "dataset_fingerprint": self.ds.fingerprint, "label_key": self.label_key,
               "label_threshold": self.label_threshold, "edits": [asdict(e) for e in self._edits]}
        try:
            write_atomic(self.path, json.dumps(doc, indent=1) + "\n")
        except OSError as exc:
            raise ConfigError(f"cannot write the edits file {self.path} ({exc}); pass edits=<a writable file>") from None

    def _check(self, edit: Edit, what: str) -> None:
        length = self._frames.get(edit.episode_index)
        if length is None:
            raise DatasetError(f"{what}: episode {edit.episode_index} is not in {self.ds.root} "
                               f"(it has {len(self._frames)} episodes)")
        if edit.label not in (0, 1):
            raise DatasetError(f"{what}: label {edit.label!r} must be 0 (failure) or 1 (success)")
        if not 0 <= edit.start < edit.end <= length:
            raise DatasetError(f"{what}: frames {edit.start}..{edit.end - 1} of episode {edit.episode_index} are out of "
                               f"range (it has frames 0..{length - 1}; end is exclusive and must exceed start)")
        if edit.label == 1 and edit.start == 0 and self.label_key.startswith("next."):
            raise DatasetError(f"{what}: frame 0 of episode {edit.episode_index} cannot be a success with label key "
                               f"{self.label_key!r}: a frame's {self.label_key} is recorded on the row before it, and "
                               f"frame 0 has none; start the range at frame 1")


def apply_edits(ds: LeRobotDataset, labels: np.ndarray, edits: list[Edit], value: Optional[int] = None) -> np.ndarray:
    """Copy of ``labels`` (every row of ``ds``) with each edit's range set to its label (or to ``value``)."""
    if not edits:
        return np.array(labels, copy=True)
    rows = ds.read_rows(["episode_index", "frame_index"])
    return edited_labels(rows["episode_index"], rows["frame_index"], labels, edits, value)


def edited_labels(episode_index: np.ndarray, frame_index: np.ndarray, labels: np.ndarray, edits: list[Edit],
                  value: Optional[int] = None) -> np.ndarray:
    """Copy of ``labels`` of the rows ``(episode_index, frame_index)`` (any subset and order of a dataset's rows)
    with each edit's range set to its label (or to ``value``), in order."""
    out = np.array(labels, copy=True)
    for e in edits:
        sel = (episode_index == e.episode_index) & (frame_index >= e.start) & (frame_index < e.end)
        out[sel] = e.label if value is None else value
    return out


def _check_outside(path: Path, root: Path) -> None:
    path, root = path.resolve(), Path(root).resolve()
    if path == root or root in path.parents:
        raise ConfigError(f"edits file {path} is inside the dataset {root}: that would change the dataset it "
                          f"describes; put it outside (the default is {default_edits_path(root)})")


def _check_dataset(path: Path, raw: dict, ds: LeRobotDataset) -> None:
    made_for, fingerprint = raw.get("dataset_root"), raw.get("dataset_fingerprint")
    if fingerprint == ds.fingerprint:
        return
    here = str(Path(ds.root).resolve())
    if made_for == here:
        raise DatasetError(f"the edits in {path} are stale: {here} changed since they were made (fingerprint "
                           f"{fingerprint} -> {ds.fingerprint}), so their frame ranges may no longer fit; restore "
                           f"the dataset, or move the file away and label again")
    raise DatasetError(f"the edits in {path} were made for another dataset ({made_for}, fingerprint {fingerprint}), "
                       f"not {here} (fingerprint {ds.fingerprint}); pass that dataset or another edits=<file>")
