"""The held-out corrections gate (gate (c) of :mod:`.retrainer`), before anything else trains.

The gated corrections of the ``retrain.holdout_episodes`` most recent episodes the serving version learned from
are held out. Two heads train without them, like with like (``retrain.holdout_steps`` steps each, no early stop):
one on what the serving version learned from (its side, cached by what it trained on), one with the new
corrections too. When the new ones make more held-out corrections wrong than ``retrain.holdout_tolerance`` allows,
both sides of the conflict are named (contradicted from then on, for review).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .fitting import Fitter
from .model import State
from .sorting import Batch

CACHED_HEADS = 4
"""Served-side heads kept (by what they trained on)."""


class HoldoutGate:
    """Gate (c), with the serving version's side of it cached."""

    def __init__(self, fitter: Fitter, options: Any) -> None:
        self.fitter, self.options = fitter, options
        self.heads: dict[tuple, dict] = {}
        """Served-side heads by what they trained on ((correction id, weight) of each)."""

    def plan(self, batch: Batch, served_last_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(held out, older): the gated corrections of the newest ``holdout_episodes`` episodes the serving
        version learned from, and every active correction the serving version learned from."""
        older = batch.active & (batch.ids <= served_last_id)
        held = np.zeros(len(batch.ids), dtype=bool)
        if self.options.holdout_episodes <= 0:
            return held, older
        newest: dict[tuple[int, int], int] = {}
        for i in np.flatnonzero(older & batch.gated):
            newest[batch.groups[i]] = max(newest.get(batch.groups[i], 0), int(batch.ids[i]))
        picked = set(sorted(newest, key=newest.get)[-self.options.holdout_episodes:])
        held = np.array([g in picked for g in batch.groups], dtype=bool) & older & batch.gated
        return held, older

    def served_side(self, batch: Batch, held: np.ndarray, older: np.ndarray) -> np.ndarray:
        """Which of ``held`` a head trained like the serving version without them classifies as labelled. The
        fitted head is cached by what it trained on: while the newest episodes grow, the rest stays the same."""
        include = older & ~held
        weights = self.fitter.weights(batch, include)
        key = tuple((int(i), round(float(w), 9)) for i, w in zip(batch.ids, weights) if w > 0)
        if key not in self.heads:
            fit = self.fitter.fit(batch, include, include & batch.gated, self.fitter.net.base, self.options.seed,
                                  steps=self.options.holdout_steps, early_stop=False)
            assert fit is not None
            while len(self.heads) >= CACHED_HEADS:
                self.heads.pop(next(iter(self.heads)))
            self.heads[key] = fit.state.head
        return self.fitter.judge(batch.rows[held], State(self.heads[key]))[0] == batch.labels[held]

    def check(self, batch: Batch, served_last_id: int, metrics: dict, reasons: list[str]) -> dict[int, str]:
        """Gate (c), on the corrections the candidate does not train on: the conflicts it finds (id -> why); its
        numbers go to ``metrics``, why it refuses to ``reasons``."""
        opts = self.options
        held, older = self.plan(batch, served_last_id)
        new = batch.active & (batch.ids > served_last_id)
        if not (held.any() and new.any()):
            return {}
        t0 = time.perf_counter()
        before = np.zeros(len(batch.ids), dtype=bool)
        before[held] = self.served_side(batch, held, older)
        trial = self.fitter.fit(batch, batch.active & ~held, batch.gated & ~held, self.fitter.net.base, opts.seed,
                                steps=opts.holdout_steps, early_stop=False)
        assert trial is not None
        right, total = int(trial.fixed[held].sum()), int(held.sum())
        metrics.update({"holdout_corrections": float(total), "holdout_accuracy": right / total,
                        "holdout_accuracy_serving": float(before.sum()) / total,
                        "holdout_seconds": time.perf_counter() - t0})
        if right >= before.sum() - max(1.0, opts.holdout_tolerance * total):
            return {}
        broken = held & before & ~trial.fixed
        ids = [int(i) for i in batch.ids[broken]]
        reasons.append(f"the new corrections make held-out corrections {ids[:10]} of recent episodes wrong "
                       f"({right}/{total} right; without the new ones {int(before.sum())}/{total}; "
                       f"holdout_tolerance {opts.holdout_tolerance} but at least one)")
        return conflicts_of(batch, broken, new & batch.gated)


def conflicts_of(batch: Batch, broken: np.ndarray, new: np.ndarray) -> dict[int, str]:
    """The held-out corrections the new ones made wrong, and the new ones labelled otherwise than one of them
    (those push it across), or every new one when none is: id -> why. These are other states than the ones they
    make wrong (near-identical ones are settled by the newest word, :func:`.neighbours.newest_word`): both sides go
    to review."""
    labels = set(batch.labels[broken].tolist())
    culprits = new & np.array([bool(labels - {y}) for y in batch.labels.tolist()], dtype=bool)
    if not culprits.any():
        culprits = new
    if not broken.any():
        return {}
    victims, blamed = [int(i) for i in batch.ids[broken]], [int(i) for i in batch.ids[culprits]]
    by = f"newer corrections {blamed[:10]}" if blamed else "newer corrections (boundary frames, contradicted ones)"
    out = {i: f"made wrong by {by} (held-out corrections gate)" for i in victims}
    out.update({i: f"makes held-out corrections {victims[:10]} of recent episodes wrong (held-out corrections "
                   "gate)" for i in blamed})
    return out
