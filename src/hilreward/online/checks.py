"""The gate's checks of a candidate and their blame (step 4 of :mod:`.retrainer`; the rules are :mod:`.gate`'s).

- **Offline**: the held-out episodes the candidate makes wrong where the serving version was right
  (:func:`.gate.regressions`). The corrections that pushed it there become ``conflicts_offline``
  (:func:`.gate.blame`, in the candidate's penultimate features).
- **Live**: the recent live episodes it newly fires in (earlier than the serving version, or where that never
  fired) with no correction labelling success by then, or fires in within the first steps
  (:func:`.gate.live_check`). Past ``retrain.live_share`` (or ``live_early_share``), the success-labelled
  corrections most alike those live frames become ``conflicts_live``.

Each rerun of an attempt blames twice as many corrections per regression or firing as the one before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import gate
from .conflicts import Conflicts
from .fitting import Fitter, Trial
from .live import LiveConfirmations
from .model import State
from .sorting import Batch


class Checks:
    """The offline and live checks of candidates, and the corrections they blame (named in ``conflicts``)."""

    def __init__(self, fitter: Fitter, conflicts: Conflicts, options: Any, held: gate.HeldOut, evidence_text: str,
                 confirmed: LiveConfirmations) -> None:
        self.fitter, self.net, self.pool = fitter, fitter.net, fitter.pool
        self.conflicts, self.options, self.held = conflicts, options, held
        self.evidence_text = evidence_text
        """What the offline evidence is, in words (offline held-out, or training episodes as a regression check)."""
        self.confirmed = confirmed

    # ---- offline
    def trial(self, batch: Batch, adapt: bool, served_probs: np.ndarray) -> Trial:
        """Fit a candidate (``adapt``: the last stage too) and find its offline regressions."""
        fit = self.fitter.fit(batch, batch.active, batch.gated, self.net.base, self.options.seed, adapt=adapt)
        assert fit is not None
        probs, held_repr = self.net.run(fit.state, self.pool.source("val", fit.state.last is not None),
                                        penultimate=True)
        found, counts_served, counts = gate.regressions(self.held, self.pool.val_labels, self.net.success(served_probs),
                                                        self.net.success(probs), self.net.threshold,
                                                        tuple(self.options.veto))
        return Trial(fit, held_repr, found, counts, counts_served)

    def blame_offline(self, batch: Batch, candidate: State, found: list[gate.Regression], held_repr: np.ndarray,
                      rerun: int) -> int:
        """Name the corrections that pushed the candidate into ``found`` (offline regressions) as
        ``conflicts_offline``; returns how many."""
        eligible = batch.active & ~batch.boundary & ~batch.accepted
        if not eligible.any():
            return 0
        corr_repr = self._penultimate(batch, candidate)
        labels = self.net.is_success(batch.labels)
        picked = gate.blame(found, held_repr, corr_repr, labels, eligible, self.options.blame_per_regression << rerun)
        for i, (reg, row) in picked.items():
            record = gate.conflict_record(reg, row, self.held.frame_index)
            why = (f"training on it makes {self.evidence_text} episode {record['episode']} "
                   f"{reg.kind.replace('_', ' ')} (frames {record['start']}-{record['end'] - 1} labelled "
                   f"{record['label']}; most alike frame {record['frame']}): accept to relabel those frames, reject to "
                   "drop it")
            self.conflicts.offline[int(batch.ids[i])] = (why, record)
        return len(picked)

    def _penultimate(self, batch: Batch, state: State) -> np.ndarray:
        """Penultimate features of the batch's corrections under ``state``."""
        return self.net.run(state, self.pool.source("pool", state.last is not None), batch.rows, penultimate=True)[1]

    # ---- live
    def live_labelled(self, batch: Batch) -> dict[int, int]:
        """Live episode -> the earliest step a human labels success in it: an active correction labelled success,
        or a review that accepted a ``conflicts_live`` correction (confirming the firings it was shown)."""
        out = dict(self.confirmed.read())
        success = self.net.is_success(batch.labels)
        for i in np.flatnonzero(batch.active & (batch.labels >= 0)):
            if success[i]:
                episode = batch.groups[i][0]
                out[episode] = min(out.get(episode, 1 << 62), int(batch.steps[i]))
        return out

    def live_check(self, batch: Batch, candidate: State, served: State) -> tuple[gate.LiveCheck, np.ndarray | None]:
        """The candidate next to the serving version (``served``) on the live episodes, and its penultimate live
        features."""
        opts, live = self.options, self.pool.live
        if not len(live.steps):
            return gate.LiveCheck(0, [], [], 0, 0, 0), None
        serving = self.net.success(self.net.run(served, self.pool.source("live", served.last is not None))[0])
        probs, live_repr = self.net.run(candidate, self.pool.source("live", candidate.last is not None),
                                        penultimate=True)
        return gate.live_check(live, serving, self.net.success(probs), self.net.threshold, self.live_labelled(batch),
                               int(opts.live_tolerance), int(opts.live_early_steps)), live_repr

    def live_verdict(self, check: gate.LiveCheck) -> tuple[list[gate.LiveFiring], str, str]:
        """The firings that refuse the candidate, why ('' when it may publish) and their kind (``early``,
        ``newly_fires``): it newly fires in more live episodes than ``retrain.live_share`` allows, or fires early in
        more than ``retrain.live_early_share`` allows and more than the serving version does."""
        opts = self.options
        early, newly = list(check.early or []), list(check.newly or [])
        early_allowed = max(int(np.floor(opts.live_early_share * check.episodes)), check.early_serving)
        if len(early) > early_allowed:
            return early, (
                f"fires within the first {opts.live_early_steps} steps of {len(early)} of the "
                f"{check.episodes} recent live episodes (the serving version: {check.early_serving}; at most "
                f"{early_allowed}): " + "; ".join(f.describe() for f in early[:5])), "early"
        allowed = gate.live_allowance(check.episodes, opts.live_share)
        if len(newly) > allowed:
            return newly, (
                f"newly fires in {len(newly)} of the {check.episodes} recent live episodes that no "
                f"correction labels success (at most {allowed}): " +
                "; ".join(f.describe() for f in newly[:5])), "newly_fires"
        return [], "", ""

    def blame_live(self, batch: Batch, candidate: State, firings: list[gate.LiveFiring], live_repr: np.ndarray,
                   kind: str, rerun: int) -> int:
        """Name the success-labelled corrections most alike the live frames the candidate newly fires on as
        ``conflicts_live``; returns how many."""
        labels = self.net.is_success(batch.labels)
        eligible = batch.active & ~batch.accepted & (labels == 1)  # boundary frames too: they train, and a firing
        if not eligible.any() or live_repr is None:                 # where the policy goes is no keypress jitter
            return 0
        corr_repr = self._penultimate(batch, candidate)
        found = [gate.Regression(f.episode, kind, "right", f.rows, 0) for f in firings]
        picked = gate.blame(found, live_repr, corr_repr, labels, eligible, self.options.blame_per_regression << rerun)
        live = self.pool.live
        for i, (reg, row) in picked.items():
            record = gate.live_record(firings, (int(live.episode_ids[row]), int(live.steps[row])), kind)
            shown = ", ".join(f"{e}@{t}" for e, t in record["firings"][:6])
            why = (f"training on it makes the reward newly fire in {len(firings)} recent live episode(s) no correction "
                   f"labels success (episode@step: {shown}; most alike: live episode {record['episode']} step "
                   f"{record['frame']}): accept if those are successes, reject to drop it")
            self.conflicts.live[int(batch.ids[i])] = (why, record)
        return len(picked)
