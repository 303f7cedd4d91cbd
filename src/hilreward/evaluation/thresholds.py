"""Threshold choice that respects what the data can tell: candidates, the rule, the evidence gate, intervals.

Candidates (each the midpoint between two neighbouring distinct probabilities of the set, 0 below
the lowest, so it keeps the largest margin and reproduces exactly the counts reported for it):

* ``precision_threshold``: among thresholds whose frame precision is ``>= target_precision``, the one
  with the highest recall (ties: higher precision); None when no threshold reaches the target. Every
  negative frame counts (leaving out those within the tolerance of a positive one was rejected by the
  leave-one-task-out study, studies/presets/README.md: 11 gross false terminations against 5 over 9 tasks).
* ``zero_gross_threshold``: the lowest threshold with no *gross* false termination (no fire more than
  the tolerance before an onset, none in an episode that never succeeds).
* ``zero_ft_threshold``: the lowest threshold with no false termination at all (strict: not even
  one frame early). Both fall out of the highest debounced score in the frames where a fire would
  count (max over k-frame windows of the window's minimum); None when no probability lies above it.

The rule: **no gross false terminations at the precision target**, ``max(precision_threshold,
zero_gross_threshold)``. The strict threshold replaces it only when it costs at most
``max_recall_cost`` of frame recall on this set: jitter of a frame or two is not worth a large part
of recall, and a threshold pushed into the saturated tail of the probabilities (0.998) to remove
it does not hold on new episodes. For the same reason the whole raise above the fallback costs at
most ``max_recall_loss`` of recall: when removing the last gross fire would cost more (a model that
fired early with certainty in one episode), the threshold stops at the highest one within the budget.

The evidence gate: with fewer than ``min_positives`` positive frames or fewer than
``min_success_episodes`` succeeding episodes the rule's threshold is reported but *not* recommended:
the recommendation stays the fallback (the checkpoint's threshold, else 0.5) and says why. Likewise when
the rule's threshold would never fire in more than ``max_missed`` of the set's succeeding episodes: a
reward that misses most successes is no fix for early ones (out-of-fold models that fire with certainty
in some failed episodes push the no-gross threshold above nearly every positive frame); the set then
says the model does not separate success on episodes it did not train on. Counted in episodes, as RL
feels it: frame recall would also refuse thresholds that fire a few frames late in short success bands.

Intervals: a percentile bootstrap (SciPy) that resamples whole episodes (frames of an episode are
near-duplicates, so they are not independent samples), succeeding and failed episodes apart, gives
95 % intervals for precision, recall and the fraction of episodes with a gross false termination at
the recommended threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import stats
from sklearn.metrics import precision_recall_curve

from .episodes import GROSS, episode_metrics, episodes, tolerance_frames


@dataclass
class EvidenceRule:
    """How much a threshold must rest on, and how the rule trades jitter against recall."""

    min_positives: int = 20
    """Positive frames the set must hold before the threshold moves."""
    min_success_episodes: int = 3
    """Succeeding episodes the set must hold before the threshold moves."""
    max_recall_cost: float = 0.02
    """The strict (no early fire at all) threshold is taken only when it loses at most this much frame recall
    against the gross rule's threshold."""
    max_recall_loss: Optional[float] = 0.02
    """The threshold loses at most this much frame recall against the fallback on this set: above that, the highest
    threshold that loses no more (rule ``recall_cap``); None: no bound. Chosen by leave-one-task-out on out-of-fold
    logits of 10 tasks (docs/calibration.md) among none, 0.02, 0.05 and 0.1: without it, one confident early fire
    of a fold model pushed the no-gross threshold into the saturated tail (0.95-0.99), which lost 3-27 points of
    accuracy on new layouts."""
    max_missed: float = 0.5
    """The rule's threshold is recommended only when it misses (never fires in) at most this fraction of the
    succeeding episodes."""
    confidence: float = 0.95
    """Confidence level of the bootstrap intervals."""
    n_resamples: int = 1000
    """Bootstrap resamples of the episodes."""
    seed: int = 0
    """Seed of the bootstrap."""

    def enough(self, positives: int, success_episodes: int) -> bool:
        """Whether a set with these counts may move the threshold."""
        return positives >= self.min_positives and success_episodes >= self.min_success_episodes


def evidence_counts(episode_index: np.ndarray, labels: np.ndarray) -> tuple[int, int, int]:
    """(positive frames, succeeding episodes, failed episodes) of a set."""
    episode_index, labels = np.asarray(episode_index), np.asarray(labels)
    all_eps, success_eps = np.unique(episode_index).size, np.unique(episode_index[labels == 1]).size
    return int(np.sum(labels == 1)), int(success_eps), int(all_eps - success_eps)


@dataclass
class ThresholdChoice:
    """The recommendation, the candidates it came from and what it rests on."""

    threshold: float
    """Recommended threshold: the rule's when the evidence suffices, else the fallback."""
    rule_threshold: Optional[float]
    """What the rule gives on this set regardless of the evidence (None when no candidate exists)."""
    precision_threshold: Optional[float]
    zero_gross_threshold: Optional[float]
    zero_ft_threshold: Optional[float]
    evidence: dict = field(default_factory=dict)
    """positives, success_episodes, failed_episodes, min_positives, min_success_episodes, enough, rule, reason."""
    interval: Optional[dict] = None
    """Bootstrap intervals at ``threshold``: precision, recall, gross_false_termination_rate ([low, high] each)."""

    @property
    def enough(self) -> bool:
        return bool(self.evidence.get("enough"))


RULE_TEXT = {
    "gross_at_precision_target": "no gross false termination at the precision target",
    "zero_gross_only": "no gross false termination (no threshold reaches the precision target)",
    "precision_only": "the precision target (no threshold is free of gross false terminations)",
    "strict": "no early fire at all (costs at most max_recall_cost of recall)",
    "recall_cap": "the highest threshold that loses at most max_recall_loss of recall against the fallback",
}
"""What each rule name in ``evidence["rule"]`` means."""


def _midpoint(lower: float, upper: float) -> float:
    """A threshold in (lower, upper] halfway between them (``upper`` if the halfway point rounds down)."""
    mid = (lower + upper) / 2
    return float(mid) if lower < mid <= upper else float(upper)


def _below(probs: np.ndarray, value: float) -> float:
    """The highest probability below ``value``, 0 if none."""
    lower = probs[probs < value]
    return float(lower.max()) if lower.size else 0.0


def precision_threshold(labels: np.ndarray, probs: np.ndarray, target_precision: float) -> Optional[float]:
    """Threshold with precision >= target and the highest recall (ties: higher precision)."""
    labels = np.asarray(labels) == 1
    probs = np.asarray(probs, dtype=np.float64)
    if not labels.any():
        return None
    precision, recall, thr = precision_recall_curve(labels, probs)
    precision, recall = precision[:-1], recall[:-1]  # drop the (1, 0) end point that has no threshold
    ok = np.flatnonzero(precision >= target_precision)
    if not ok.size:
        return None
    best = max(ok, key=lambda i: (recall[i], precision[i]))
    return _midpoint(_below(probs, thr[best]), float(thr[best]))


def zero_termination_threshold(episode_index: np.ndarray, frame_index: np.ndarray, labels: np.ndarray,
                               probs: np.ndarray, consecutive: int = 1, tolerance: float = 0.0) -> Optional[float]:
    """Lowest threshold with no fire more than ``tolerance`` frames before an onset and none in a failed episode.

    ``tolerance=0`` is the strict rule (no fire before any onset).
    """
    labels = np.asarray(labels)
    frame_index = np.asarray(frame_index)
    probs = np.asarray(probs, dtype=np.float64)
    worst = -np.inf  # highest debounced score where a fire would count
    for _, idx in episodes(episode_index, frame_index):
        y, p, f = labels[idx] == 1, probs[idx], frame_index[idx]
        forbidden = p[f < f[np.argmax(y)] - tolerance] if y.any() else p
        if forbidden.size >= consecutive:
            windows = np.lib.stride_tricks.sliding_window_view(forbidden, consecutive)
            worst = max(worst, float(windows.min(axis=1).max()))
    above = probs[probs > worst]
    if not above.size:
        return None
    return _midpoint(max(worst, 0.0), float(above.min()))


def _recall(labels: np.ndarray, probs: np.ndarray, threshold: float) -> float:
    pos = np.asarray(labels) == 1
    return float(np.mean(np.asarray(probs)[pos] >= threshold)) if pos.any() else 0.0


def _missed(episode_index, frame_index, labels, probs, threshold: float, consecutive: int) -> int:
    """Succeeding episodes in which the reward never fires at ``threshold``."""
    ep = episode_metrics(episode_index, frame_index, labels, probs, threshold, consecutive, 1.0, 0.0)
    return ep["missed_successes"]


def _recall_capped(labels: np.ndarray, probs: np.ndarray, lowest: float, recall: float) -> float:
    """The highest threshold (at least ``lowest``) whose frame recall is at least ``recall``."""
    pos = np.sort(np.asarray(probs)[np.asarray(labels) == 1])[::-1]
    keep = float(pos[max(int(np.ceil(recall * pos.size)), 1) - 1])  # the lowest positive that must stay above
    return max(float(lowest), _midpoint(_below(probs, keep), keep))


def _per_episode_counts(episode_index, frame_index, labels, probs, threshold: float, consecutive: int,
                        tolerance: float) -> np.ndarray:
    """(episodes, 4) array, episodes ascending: tp, fp, fn and 1 for a gross false termination."""
    y = np.asarray(labels) == 1
    pred = np.asarray(probs) >= threshold
    _, ep = np.unique(np.asarray(episode_index), return_inverse=True)
    # in frames: fps 1 and the tolerance already in frames
    rows = episode_metrics(episode_index, frame_index, labels, probs, threshold, consecutive, 1.0, tolerance)
    gross = [r["outcome"] in GROSS for r in rows["per_episode"]]
    return np.stack([np.bincount(ep, weights=w) for w in (pred & y, pred & ~y, ~pred & y)] + [np.asarray(gross, float)],
                    axis=1)


def episode_bootstrap(counts: np.ndarray, succeeds: np.ndarray, rule: EvidenceRule) -> Optional[dict]:
    """Percentile-bootstrap intervals over episodes of precision, recall and the gross false termination rate.

    ``counts``: (episodes, 4) tp, fp, fn, gross; ``succeeds``: (episodes,) bool. Succeeding and failed episodes
    are resampled apart (stratified), so every resample holds as many of each as the set; a stratum of one
    episode is kept as it is. A resample without predicted positives has precision 0.
    """
    strata = [counts[succeeds], counts[~succeeds]]
    moving = [c for c in strata if len(c) >= 2]
    fixed = sum((c.sum(axis=0) for c in strata if len(c) == 1), np.zeros(4))
    if not moving:
        return None
    n = len(counts)

    def statistic(which: str):
        def stat(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
            total = fixed + sum(c[i.astype(np.int64)].sum(axis=-2) for c, i in zip(moving, idx))  # (..., 4)
            tp, fp, fn, gross = (total[..., j] for j in range(4))
            num, den = {"precision": (tp, tp + fp), "recall": (tp, tp + fn),
                        "gross_false_termination_rate": (gross, np.full_like(gross, n))}[which]
            return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        return stat

    out = {}
    for which in ("precision", "recall", "gross_false_termination_rate"):
        res = stats.bootstrap(tuple(np.arange(len(c)) for c in moving), statistic(which), vectorized=True,
                              method="percentile", n_resamples=rule.n_resamples, confidence_level=rule.confidence,
                              random_state=rule.seed)
        low, high = res.confidence_interval
        out[which] = [float(low), float(high)]
    return out


def choose_threshold(episode_index: np.ndarray, frame_index: np.ndarray, labels: np.ndarray, probs: np.ndarray, *,
                     consecutive: int = 1, fps: float = 0.0, tolerance_s: float = 0.5, target_precision: float = 0.99,
                     fallback: float = 0.5, rule: Optional[EvidenceRule] = None) -> ThresholdChoice:
    """The recommended threshold on this set under the evidence rule (see the module docstring)."""
    rule = rule or EvidenceRule()
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    tol = tolerance_frames(tolerance_s, fps)
    t_prec = precision_threshold(labels, probs, target_precision)
    t_gross = zero_termination_threshold(episode_index, frame_index, labels, probs, consecutive, tol)
    t_strict = zero_termination_threshold(episode_index, frame_index, labels, probs, consecutive, 0.0)

    found = [t for t in (t_prec, t_gross) if t is not None]
    rule_t = max(found) if found else None
    name = ("gross_at_precision_target" if len(found) == 2 else "zero_gross_only" if t_gross is not None else
            "precision_only" if t_prec is not None else "none")
    if rule_t is not None and t_strict is not None and t_strict > rule_t \
            and _recall(labels, probs, t_strict) >= _recall(labels, probs, rule_t) - rule.max_recall_cost:
        rule_t, name = t_strict, "strict"
    if rule_t is not None and rule.max_recall_loss is not None and rule_t > fallback:
        floor = _recall(labels, probs, fallback) - rule.max_recall_loss
        if _recall(labels, probs, rule_t) < floor:
            rule_t, name = _recall_capped(labels, probs, fallback, floor), "recall_cap"

    positives, success_eps, failed_eps = evidence_counts(episode_index, labels)
    enough = rule.enough(positives, success_eps)
    if not enough:
        reason = (f"too little evidence: {positives} positive frames in {success_eps} succeeding episodes "
                  f"(the rule needs >= {rule.min_positives} and >= {rule.min_success_episodes}); kept {fallback:.4g}")
        chosen = float(fallback)
    elif rule_t is None:
        reason = f"no threshold meets the rule on this set; kept {fallback:.4g}"
        chosen = float(fallback)
    elif (missed := _missed(episode_index, frame_index, labels, probs, rule_t, consecutive)) > \
            rule.max_missed * success_eps:
        reason = (f"the rule's threshold {rule_t:.4g} ({RULE_TEXT[name]}) never fires in {missed} of the "
                  f"{success_eps} succeeding episodes (more than max_missed {rule.max_missed:g}): the model does "
                  f"not separate success on these episodes; kept {fallback:.4g}")
        chosen = float(fallback)
    else:
        reason = f"{RULE_TEXT[name]}, on {positives} positive frames in {success_eps} succeeding episodes"
        chosen = float(rule_t)
    evidence = {"positives": positives, "success_episodes": success_eps, "failed_episodes": failed_eps,
                "min_positives": rule.min_positives, "min_success_episodes": rule.min_success_episodes,
                "enough": bool(enough), "rule": name if chosen == rule_t and enough else "kept",
                "reason": reason}
    counts = _per_episode_counts(episode_index, frame_index, labels, probs, chosen, consecutive, tol)
    succeeds = np.bincount(np.unique(np.asarray(episode_index), return_inverse=True)[1], weights=labels == 1) > 0
    return ThresholdChoice(chosen, rule_t, t_prec, t_gross, t_strict, evidence,
                           episode_bootstrap(counts, succeeds, rule))

