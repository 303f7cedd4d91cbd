"""Sorting the stored corrections for one attempt (step 1 of :mod:`.retrainer`).

Each usable correction is, first match wins: ``rejected`` by a review; ``superseded`` by a newer correction
labelled otherwise on a near-identical frame (the newest word wins, :func:`.neighbours.newest_word`);
``conflicts_offline`` / ``conflicts_live`` (named by an earlier attempt, :mod:`.conflicts`); ``contradicted``
(near-identical to an offline training frame labelled otherwise, or named by the gate: in conflict with held-out
corrections, or broken by a model trained on it); ``boundary`` (within ``retrain.boundary_frames`` steps of a label change of its episode,
:func:`boundary_steps`); else ``gated``. A review that accepts a correction makes it train fully, never blamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .conflicts import Conflicts
from .model import RetrainModel
from .neighbours import NearDuplicates, newest_word
from .pool import FeaturePool
from .store import Review, StoredCorrection


@dataclass
class Batch:
    """The stored corrections as one attempt sees them (arrays aligned with ``ids``)."""

    ids: np.ndarray
    rows: np.ndarray
    """Rows of the feature pool holding their features."""
    labels: np.ndarray
    groups: list[tuple[int, int]]
    """(episode, env_index) of each."""
    rejected: np.ndarray
    contradicted: np.ndarray
    details: dict[int, str]
    unusable: dict[int, str]
    """Corrections that cannot train this model (missing cameras, blank frames) -> why."""
    last_id: int
    boundary: np.ndarray | None = None
    """Within ``retrain.boundary_frames`` steps of a label change (trained lightly, never gated)."""
    offline: np.ndarray | None = None
    """In conflict with offline held-out frames (never trained until a review accepts them)."""
    accepted: np.ndarray | None = None
    """Accepted by review (trains fully; never blamed)."""
    superseded: np.ndarray | None = None
    """A newer correction labelled otherwise on a near-identical frame wins (never trained until a review accepts
    it)."""
    live: np.ndarray | None = None
    """Makes the reward newly fire in recent live episodes (never trained until a review accepts it)."""
    steps: np.ndarray | None = None
    """Step of each in its episode."""
    superseded_by: dict[int, int] = field(default_factory=dict)
    """Each superseded correction -> the newer one that wins."""

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.live = np.zeros(n, bool) if self.live is None else self.live
        self.steps = np.zeros(n, np.int64) if self.steps is None else self.steps
        self.boundary = np.zeros(n, bool) if self.boundary is None else self.boundary
        self.offline = np.zeros(n, bool) if self.offline is None else self.offline
        self.accepted = np.zeros(n, bool) if self.accepted is None else self.accepted
        self.superseded = np.zeros(n, bool) if self.superseded is None else self.superseded

    @property
    def active(self) -> np.ndarray:
        """Corrections that train."""
        return ~self.rejected & ~self.offline & ~self.superseded & ~self.live

    @property
    def gated(self) -> np.ndarray:
        """Corrections the gate counts."""
        return self.active & ~self.contradicted & ~self.boundary


def boundary_steps(items: list[tuple[int, int, dict[int, float] | None]], threshold: float,
                   window: int) -> np.ndarray:
    """Which corrections of one episode, ``(step, label as success 0/1, served context)``, sit at a label change.

    The episode's implied labels are the served ones (a correction's context: the probabilities the server gave
    the steps around it) overlaid with the human's. A correction is a boundary frame when, within ``window`` steps
    on one side, an implied label differs from its own while the step right next to it on the other side agrees:
    the edge of a run, which a keypress moves by a frame or two. A correction alone inside a run labelled otherwise
    (a frame the served version got wrong among wrong neighbours) is not at an edge, and is gated as usual."""
    served: dict[int, int] = {}
    for _, _, context in items:
        served.update({int(s): int(p >= threshold) for s, p in (context or {}).items()})
    implied = {**served, **{step: label for step, label, _ in items}}
    out = np.zeros(len(items), bool)
    if window <= 0:
        return out
    for i, (step, label, _) in enumerate(items):
        for side in (-1, 1):
            differs = any(implied.get(step + side * d, label) != label for d in range(1, window + 1))
            if differs and implied.get(step - side) == label:
                out[i] = True
    return out


def sort_corrections(corrections: list[StoredCorrection], verdicts: dict[int, Review], pool: FeaturePool,
                     near: NearDuplicates, conflicts: Conflicts, window: int) -> Batch:
    """Encode the corrections (once each, into ``pool``) and sort them (see the module docstring); ``window``:
    ``retrain.boundary_frames``."""
    pool.add(corrections)
    usable = [c for c in corrections if c.id in pool.row_of]
    unusable = {c.id: pool.unusable[c.id] for c in corrections if c.id in pool.unusable}
    ids = np.array([c.id for c in usable], dtype=np.int64)
    labels = np.array([c.correction.label for c in usable], dtype=np.int64)
    verdict = [getattr(verdicts.get(int(i)), "verdict", "") for i in ids]
    rejected = np.array([v == "reject" for v in verdict], dtype=bool)
    accepted = np.array([v == "accept" for v in verdict], dtype=bool)
    keep = np.flatnonzero(~rejected)
    vectors = np.stack([pool.vector_of[int(i)] for i in ids[keep]]) if len(keep) else np.zeros((0, 0), np.float32)
    superseded, superseded_by, details = _newest_word(ids, labels, keep, accepted, vectors, verdicts, near)
    found = near.find([int(i) for i in ids[keep]], vectors, labels[keep])
    named = lambda which: np.array([int(i) in which for i in ids], dtype=bool)  # noqa: E731
    settled = ~accepted & ~rejected & ~superseded
    contradicted = np.array([int(i) in found or int(i) in conflicts.gate for i in ids], dtype=bool) & settled
    offline = named(conflicts.offline) & settled
    live = named(conflicts.live) & settled & ~offline
    details.update({cid: why for cid, why in conflicts.gate.items() if cid not in details})
    details.update({cid: c.detail for cid, c in found.items() if cid not in details})
    details.update({cid: why for cid, (why, _) in conflicts.offline.items()})
    details.update({cid: why for cid, (why, _) in conflicts.live.items()})
    boundary = _boundaries(usable, rejected | superseded, pool.net, window)
    boundary &= ~accepted & ~contradicted & ~offline & ~superseded & ~live
    for i in np.flatnonzero(boundary):
        details[int(ids[i])] = (f"within {window} step(s) of a label change in episode {usable[i].correction.episode}"
                                " (a keypress lands late): trained lightly, not gated")
    for i in ids[rejected]:
        review = verdicts[int(i)]
        details[int(i)] = f"rejected by {review.reviewer or 'review'}" + (f": {review.note}" if review.note else "")
    return Batch(ids, np.array([pool.row_of[c.id] for c in usable], dtype=np.int64), labels,
                 [(c.correction.episode, c.correction.env_index) for c in usable], rejected, contradicted,
                 details, unusable, max([c.id for c in corrections], default=0), boundary, offline, accepted,
                 superseded, live, np.array([c.correction.step for c in usable], dtype=np.int64), superseded_by)


def _newest_word(ids: np.ndarray, labels: np.ndarray, keep: np.ndarray, accepted: np.ndarray, vectors: np.ndarray,
                 verdicts: dict[int, Review],
                 near: NearDuplicates) -> tuple[np.ndarray, dict[int, int], dict[int, str]]:
    """(superseded, superseded -> the newer one, details): of two near-identical corrections labelled otherwise, the
    older is superseded (an accepting review is a newer word than any correction)."""
    word = [(1, verdicts[int(ids[k])].id) if accepted[k] else (0, int(ids[k])) for k in keep]
    superseded = np.zeros(len(ids), bool)
    by: dict[int, int] = {}
    details: dict[int, str] = {}
    for older, newer in newest_word(near.pairs(vectors, labels[keep]), word).items():
        a, b = keep[older], keep[newer]
        superseded[a] = True
        by[int(ids[a])] = int(ids[b])
        details[int(ids[a])] = (f"superseded by correction {int(ids[b])} labelled {int(labels[b])} on a "
                                "near-identical frame (the newest word wins): accept this one to make it win")
    return superseded, by, details


def _boundaries(usable: list[StoredCorrection], left_out: np.ndarray, net: RetrainModel, window: int) -> np.ndarray:
    """Boundary frames (before what else excludes them): per episode, from the corrections' steps and the served
    labels around them; the newest label of a step counts, and an older label of the same step follows it."""
    boundary = np.zeros(len(usable), bool)
    by_group: dict[tuple[int, int], list[int]] = {}
    for i, c in enumerate(usable):
        if not left_out[i]:
            by_group.setdefault((c.correction.episode, c.correction.env_index), []).append(i)
    for members in by_group.values():
        members.sort(key=lambda i: (usable[i].correction.step, usable[i].id))
        latest = {usable[i].correction.step: i for i in members}
        picked = sorted(latest.values(), key=lambda i: usable[i].correction.step)
        success = net.is_success([usable[i].correction.label for i in picked])
        flags = boundary_steps([(usable[i].correction.step, int(y), usable[i].correction.context)
                                for i, y in zip(picked, success)], net.threshold, window)
        for i, flag in zip(picked, flags):
            boundary[i] = flag
        for i in members:
            boundary[i] = boundary[latest[usable[i].correction.step]]
    return boundary
