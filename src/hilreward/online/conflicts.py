"""The corrections the retrainer's gates named, and the status each correction gets from an attempt.

Three kinds of named corrections, each kept until a review settles it:

- ``gate``: in conflict with held-out corrections (gate (c)) or broken by a model trained on them: from then on
  *contradicted* (trained like one offline frame, never gated);
- ``offline``: made offline held-out episodes wrong (``conflicts_offline``, with the episode and frames): left out;
  a review that accepts one relabels those frames;
- ``live``: made the reward newly fire in recent live episodes (``conflicts_live``, with the firings): left out;
  a review that accepts one confirms those firings as successes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .store import Assessment, Review

if TYPE_CHECKING:  # sorting reads the named corrections
    from .sorting import Batch


class Conflicts:
    """Named corrections (id -> why, or (why, the conflict record a status shows))."""

    def __init__(self) -> None:
        self.gate: dict[int, str] = {}
        """Corrections the gate found in conflict (id -> why): contradicted from then on."""
        self.offline: dict[int, tuple[str, dict]] = {}
        """Corrections that made offline held-out episodes wrong (id -> (why, conflict record)): left out."""
        self.live: dict[int, tuple[str, dict]] = {}
        """Corrections that made the reward newly fire in recent live episodes (id -> (why, record)): left out."""

    def remember(self, statuses: dict[int, Assessment]) -> None:
        """Take the conflicts an earlier attempt (maybe of a process killed since) named from the store."""
        for cid, a in statuses.items():
            if a.status == "conflicts_offline" and a.conflict and cid not in self.offline:
                self.offline[cid] = (a.detail, a.conflict)
            elif a.status == "conflicts_live" and a.conflict and cid not in self.live:
                self.live[cid] = (a.detail, a.conflict)

    @staticmethod
    def settle(named: dict[int, tuple[str, dict]], verdicts: dict[int, Review]) -> list[tuple[int, dict, Review]]:
        """The corrections of ``named`` a review accepted, (id, record, review) each, no longer named."""
        out = []
        for cid, (_, record) in list(named.items()):
            review = verdicts.get(cid)
            if review is None or review.verdict != "accept":
                continue
            out.append((cid, record, review))
            del named[cid]
        return out

    def assess(self, batch: Batch, fixed: np.ndarray, success: np.ndarray) -> list[Assessment]:
        """Every correction's status under an attempt's model (``fixed``: it classifies it as labelled;
        ``success``: its success probability), by id."""
        out = [Assessment(cid, "unusable", -1.0, why) for cid, why in batch.unusable.items()]
        for i, cid in enumerate(batch.ids.tolist()):
            conflict = None
            if batch.rejected[i]:
                status = "rejected"
            elif batch.superseded[i]:
                status, conflict = "superseded", {"by": batch.superseded_by[cid]}
            elif batch.offline[i]:
                status, conflict = "conflicts_offline", self.offline[cid][1]
            elif batch.live[i]:
                status, conflict = "conflicts_live", self.live[cid][1]
            elif batch.contradicted[i]:
                status = "contradicted"
            elif batch.boundary[i]:
                status = "boundary"
            else:
                status = "fixed" if fixed[i] else "unfixed"
            detail = batch.details.get(cid, "")
            if status in ("contradicted", "boundary"):
                detail += "; classified as labelled" if fixed[i] else "; classified otherwise"
            out.append(Assessment(cid, status, float(success[i]), detail, conflict=conflict))
        return sorted(out, key=lambda a: a.correction_id)
