"""Relabels of offline frames that reviews accepted: ``<state_dir>/offline-edits.json``.

When the retrainer drops a correction as ``conflicts_offline`` (training on it makes an offline
held-out episode wrong), a review that accepts the correction says the offline frames it
conflicts with are labelled wrong. The retrainer then writes their range, with the correction's
label, into this file: a label-station edits file (:mod:`hilreward.curation.edits`) for the
retrainer's offline dataset. Every attempt applies it to the offline labels, so those frames
stop vetoing; ``hilreward relabel dataset.root=<offline set> edits=<state_dir>/offline-edits.json
out=<new set>`` writes a dataset with them for the next ``hilreward train``.
"""

from __future__ import annotations

from pathlib import Path

from ..config import DatasetConfig
from ..curation.edits import Edit, EditsFile
from ..data.reader import open_dataset

FILE = "offline-edits.json"


class OfflineEdits:
    """The offline dataset's relabels, read again on every call (another leader may have written them)."""

    def __init__(self, state_dir: str | Path, dataset: DatasetConfig, label_key: str, label_threshold: float) -> None:
        self.path = Path(state_dir) / FILE
        self._ds = open_dataset(dataset)
        self._key, self._threshold = label_key, float(label_threshold)

    def _open(self) -> EditsFile:
        return EditsFile.open(self._ds, self.path, self._key, self._threshold)

    def read(self) -> list[Edit]:
        return self._open().edits if self.path.exists() else []

    def relabel(self, correction_id: int, conflict: dict, reviewer: str) -> int:
        """Give the offline frames ``conflict`` names the label of correction ``correction_id`` that a review
        accepted (written durably before it returns); 0 when that review's relabel is already there."""
        edits = self._open()
        source = f"review of correction {int(correction_id)}"
        if any(e.source.startswith(source + " ") for e in edits.edits):
            return 0
        label = 1 - int(conflict["label"])
        # a next.* label cannot make frame 0 a success (its value is recorded on the row before it)
        start = max(int(conflict["start"]), 1 if label == 1 and self._key.startswith("next.") else 0)
        if start >= int(conflict["end"]):
            return 0
        edits.add(int(conflict["episode"]), start, int(conflict["end"]), label, f"{source} (by {reviewer})")
        return 1
