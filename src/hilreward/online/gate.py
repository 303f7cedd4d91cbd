"""The retrainer's gate: would RL feel the candidate as worse than the version serving now?

A candidate version is compared with the serving version on the same evidence, by the episode
metrics of ``hilreward eval`` (:mod:`hilreward.evaluation.episodes`), because frame accuracy
counts a boundary moved by one frame (what a late keypress does) like a 70-frame early
termination, and RL feels only the second.

**The evidence.**

- *Offline held-out episodes*: the checkpoint's held-out episodes of the offline dataset (its
  ``train_config.yaml`` split), labelled as recorded plus the relabels that reviews accepted. For
  each episode, the candidate's and the serving version's outcome at the serving threshold:
  ``gross_early`` (fires more than ``tolerance_s`` before the true onset), ``false_success``
  (fires in an episode that never succeeds), ``missed`` (never fires in an episode that
  succeeds), ``late`` (fires more than ``tolerance_s`` after the onset), else right; jitter within
  ``tolerance_s`` is right. They rest on the offline labels: an episode without a success can
  only show false successes, and a held-out split with few succeeding episodes says little
  about missed successes.
- *Corrections*: the gated corrections (not rejected, contradicted, boundary, conflicting or
  unusable) the candidate classifies as labelled and the serving version does not are *fixed*,
  the reverse *broken*. They rest on what people flagged, mostly in new states.
- *Held-out corrections* (gate (c) of :mod:`.retrainer`): the corrections of the most recent
  episodes the serving version learned from, predicted by heads trained without them, with and
  without the new corrections; they rest on the states people corrected before.

**The rule** (defaults). Publish when the candidate (1) turns no offline held-out episode into
one of ``retrain.veto`` (``gross_early``, ``false_success``, ``missed``; ``late`` can be added)
that is worse than the serving version's outcome there (right < late < missed, gross early,
false success), (2) fixes more gated corrections than it breaks (or breaks
none: a candidate that only adds training data is harmless), and (3)
does not make more held-out corrections wrong than it makes right beyond
``retrain.holdout_tolerance``. Frame accuracy on the held-out episodes is reported, never a veto.

**Never stall.** When (1) fails, :func:`blame` names the corrections that pushed the candidate
there: those labelled otherwise than the offline frames it now gets wrong, most alike them in
the candidate's own penultimate features. They become ``conflicts_offline`` (naming the
episode and frames), leave training, and the attempt runs again; a review that accepts one
relabels those offline frames, so they stop vetoing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from ..evaluation.episodes import episodes as split_episodes
from ..evaluation.episodes import first_firing, outcome, tolerance_frames

EpisodeError = Literal["gross_early", "false_success", "missed", "late"]
ERRORS = get_args(EpisodeError)
"""Episode outcomes RL feels as a wrong reward (anything else is right: detected, early within the tolerance,
no success where there is none)."""
DEFAULT_VETO = ("gross_early", "false_success", "missed")
SEVERITY = {"late": 1, "missed": 2, "gross_early": 2, "false_success": 2}
"""How much worse than right an outcome is for RL: a late reward, then a missing or a false one."""


@dataclass(frozen=True)
class HeldOut:
    """The offline held-out episodes the gate judges (rows aligned with the retrainer's held-out features)."""

    episode_index: np.ndarray
    frame_index: np.ndarray
    fps: float
    tolerance_s: float
    consecutive: int = 1

    def groups(self) -> list[tuple[int, np.ndarray]]:
        return split_episodes(self.episode_index, self.frame_index)


@dataclass
class Regression:
    """An offline held-out episode the candidate gets wrong where the serving version got it right."""

    episode: int
    kind: str
    """The candidate's error (one of :data:`ERRORS`)."""
    serving: str
    """The serving version's outcome."""
    rows: np.ndarray
    """Held-out rows the candidate now gets wrong in that episode, the evidence blame works from."""
    label: int
    """Their label."""

    def describe(self, frame_index: np.ndarray) -> str:
        frames = frame_index[self.rows]
        span = f"frames {int(frames.min())}-{int(frames.max())}" if len(frames) else "no frame"
        return f"episode {self.episode} {self.kind.replace('_', ' ')} ({span}; serving: {self.serving})"


def episode_outcome(labels: np.ndarray, probs: np.ndarray, frames: np.ndarray, threshold: float, tol: float,
                    consecutive: int) -> str:
    """One episode's outcome (rows in frame order), with ``late`` for a firing beyond the tolerance after the onset,
    and ``undecided`` for no firing where the recording ends within the tolerance after the onset (a firing within
    the tolerance, which is jitter, cannot be told from none)."""
    y = labels == 1
    onset = int(frames[np.argmax(y)]) if y.any() else None
    fire = first_firing(probs, threshold, consecutive)
    fire_f = None if fire is None else int(frames[fire])
    result = outcome(onset, fire_f, tol)
    if result == "detected" and onset is not None and fire_f is not None and fire_f - onset > tol:
        return "late"
    if result == "missed" and onset is not None and int(frames[-1]) - onset < tol:
        return "undecided"
    return result


def outcomes(held: HeldOut, labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[int, str]:
    """Episode -> outcome of success probabilities ``probs`` on the held-out rows."""
    tol = tolerance_frames(held.tolerance_s, held.fps)
    return {ep: episode_outcome(labels[idx], probs[idx], held.frame_index[idx], threshold, tol, held.consecutive)
            for ep, idx in held.groups()}


def regressions(held: HeldOut, labels: np.ndarray, serving: np.ndarray, candidate: np.ndarray, threshold: float,
                veto: tuple[str, ...]) -> tuple[list[Regression], dict[str, int], dict[str, int]]:
    """The held-out episodes the candidate turns into a ``veto`` error that is worse than the serving version's
    outcome (right, or a lesser error: a late firing that becomes a miss), and each side's error counts."""
    before, after = outcomes(held, labels, serving, threshold), outcomes(held, labels, candidate, threshold)
    out = []
    for ep, idx in held.groups():
        if after[ep] not in veto or SEVERITY[after[ep]] <= SEVERITY.get(before[ep], 0):
            continue
        fires, was = candidate[idx] >= threshold, serving[idx] >= threshold
        y = labels[idx] == 1
        if after[ep] in ("gross_early", "false_success"):
            onset = int(np.argmax(y)) if y.any() else len(idx)
            wrong = fires & ~y & (np.arange(len(idx)) < onset)
            label = 0
        else:
            wrong = y & ~fires
            label = 1
        newly = wrong & ~(was if label == 0 else ~was)
        out.append(Regression(ep, after[ep], before[ep], idx[newly if newly.any() else wrong], label))
    count = lambda o: {k: sum(v == k for v in o.values()) for k in ERRORS}  # noqa: E731
    return out, count(before), count(after)


def blame(found: list[Regression], held_repr: np.ndarray, corr_repr: np.ndarray, corr_labels: np.ndarray,
          eligible: np.ndarray, per_regression: int) -> dict[int, tuple[Regression, int]]:
    """The corrections (indices into ``corr_*``) that most likely pushed the candidate into each regression: the
    ``per_regression`` ``eligible`` corrections labelled otherwise than its frames that are most alike one of them
    (cosine of the candidate's penultimate features). Returns index -> (regression, the held-out row most alike)."""
    out: dict[int, tuple[Regression, int]] = {}
    if not len(corr_labels):
        return out
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    corr = unit(np.asarray(corr_repr, dtype=np.float64))
    for reg in found:
        pushers = np.flatnonzero(eligible & (corr_labels != reg.label))
        if not len(pushers) or not len(reg.rows):
            continue
        sim = corr[pushers] @ unit(np.asarray(held_repr[reg.rows], dtype=np.float64)).T  # (pushers, rows)
        best = sim.max(axis=1)
        for k in np.argsort(-best, kind="stable")[:per_regression]:
            i = int(pushers[k])
            if i not in out:
                out[i] = (reg, int(reg.rows[int(np.argmax(sim[k]))]))
    return out


def conflict_record(reg: Regression, nearest_row: int, frame_index: np.ndarray) -> dict:
    """What a ``conflicts_offline`` status names: the episode, the contiguous run of wrong frames holding the most
    alike one (``start``..``end`` exclusive), that frame, the error, and the frames' label."""
    frames = np.sort(frame_index[reg.rows])
    frame = int(frame_index[nearest_row])
    runs = np.split(frames, np.flatnonzero(np.diff(frames) > 1) + 1)
    run = next(r for r in runs if r[0] <= frame <= r[-1])
    return {"episode": int(reg.episode), "start": int(run[0]), "end": int(run[-1]) + 1, "frame": frame,
            "kind": reg.kind, "label": int(reg.label)}


# --------------------------------------------------------------------------- live traffic
@dataclass
class LiveEvidence:
    """The recent live episodes the gate judges (rows aligned with the retrainer's live features)."""

    episode_ids: np.ndarray
    """int64 (N,): the live episode of each row."""
    steps: np.ndarray
    """int64 (N,): its step."""
    consecutive: int = 1

    def groups(self) -> list[tuple[int, np.ndarray]]:
        return split_episodes(self.episode_ids, self.steps)


@dataclass
class LiveFiring:
    """A recent live episode where the candidate fires and the serving version did not (or later)."""

    episode: int
    step: int
    """The candidate's first firing."""
    serving: int | None
    """The serving version's first firing (None: it never fired)."""
    rows: np.ndarray
    """Live rows before the serving version's firing that the candidate calls success and it did not: the
    evidence blame works from."""
    labelled: bool = False
    """A correction (or a review that accepted a live conflict) labels success in the episode."""

    def describe(self) -> str:
        was = "never fired" if self.serving is None else f"fired at step {self.serving}"
        return f"live episode {self.episode} fires at step {self.step} (serving: {was})"


@dataclass
class LiveCheck:
    """What the candidate does on the recent live episodes, next to the serving version."""

    episodes: int = 0
    newly: list[LiveFiring] | None = None
    """Episodes where it newly fires (earlier than the serving version by more than the tolerance, or where that
    never fired) and no correction labels success by then: the dangerous way."""
    early: list[LiveFiring] | None = None
    """Episodes where it fires within the first ``early_steps`` steps (whatever the corrections say)."""
    early_serving: int = 0
    """Episodes where the serving version fires within the first ``early_steps`` steps."""
    stopped: int = 0
    """Episodes where the serving version fired and the candidate fires later or never: the cautious way."""
    confirmed: int = 0
    """Episodes where it newly fires at a success a correction (or an accepted live conflict) labels."""

    def metrics(self) -> dict[str, float]:
        return {"live_episodes": float(self.episodes), "live_newly_fires": float(len(self.newly or [])),
                "live_early_fires": float(len(self.early or [])), "live_early_fires_serving": float(self.early_serving),
                "live_stops_firing": float(self.stopped), "live_confirmed_fires": float(self.confirmed)}


def live_check(live: LiveEvidence, serving: np.ndarray, candidate: np.ndarray, threshold: float,
               labelled: dict[int, int], tolerance: int, early_steps: int) -> LiveCheck:
    """Compare the candidate's and the serving version's first firings (success probabilities ``candidate`` and
    ``serving`` on the live rows, debounced like the served reward) in each live episode. ``labelled``: episode
    -> the earliest step a human labels success in it (a correction, or a review that confirmed a firing)."""
    out = LiveCheck(0, [], [], 0, 0, 0)
    for ep, idx in live.groups():
        out.episodes += 1
        steps = live.steps[idx]
        f_s = first_firing(serving[idx], threshold, live.consecutive)
        f_c = first_firing(candidate[idx], threshold, live.consecutive)
        s_s = None if f_s is None else int(steps[f_s])
        s_c = None if f_c is None else int(steps[f_c])
        if s_s is not None and s_s <= early_steps:
            out.early_serving += 1
        if s_s is not None and (s_c is None or s_c > s_s + tolerance):
            out.stopped += 1
        if s_c is None or (s_s is not None and s_c >= s_s - tolerance):
            continue
        before = steps < s_s if s_s is not None else np.ones(len(idx), bool)
        rows = idx[before & (candidate[idx] >= threshold) & (serving[idx] < threshold)]
        # An episode a human labels success holds a success: a firing in it is no evidence of hacking (the human
        # presses once the success has shown for a while, a keypress late, so its true onset is earlier than the
        # labelled frames). A firing in its first steps still counts as early.
        firing = LiveFiring(ep, s_c, s_s, rows if len(rows) else idx[steps == s_c], ep in labelled)
        if s_c <= early_steps:
            out.early.append(firing)
        if firing.labelled:
            out.confirmed += 1
        else:
            out.newly.append(firing)
    return out


def live_allowance(episodes: int, share: float) -> int:
    """How many live episodes a candidate may newly fire in: ``share`` of them, at least one (a single newly
    fired episode is what fixing one missed success looks like)."""
    return max(1, int(np.floor(share * episodes)))


def live_record(firings: list[LiveFiring], nearest: tuple[int, int], kind: str) -> dict:
    """What a ``conflicts_live`` status names: the live episodes and steps where the candidate would newly fire,
    and the live frame most alike the correction (``episode``, ``frame`` = its step)."""
    return {"live": True, "kind": kind, "episode": int(nearest[0]), "frame": int(nearest[1]),
            "firings": [[int(f.episode), int(f.step)] for f in firings[:20]], "label": 0}
