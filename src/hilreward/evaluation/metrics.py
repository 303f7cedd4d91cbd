"""Evaluation metrics in plain numpy: frame, threshold-free, calibration, episode, threshold choice.

Every function takes small arrays and is checkable by hand (see tests/test_metrics.py).

Conventions
-----------
* A frame is predicted positive when ``probability >= threshold`` (the deployment rule).
* A ratio whose denominator is zero (e.g. precision with no predicted positive) is ``0.0``;
  AUROC and average precision are ``None`` when the labels hold a single class.
* Thresholds that put the same frames on the same side give the same counts; a chosen threshold is
  the midpoint of such an interval, between two neighbouring distinct probabilities of the data
  (0 below the lowest), so it keeps the largest margin on both sides and reproduces exactly the
  counts reported for it.

Episode metrics (``consecutive = k``, the same debounce as deployment)
---------------------------------------------------------------------
Within an episode (frames in ``frame_index`` order) the reward *fires* at the first frame that
completes a run of ``k`` consecutive frames with ``probability >= threshold``; the firing frame is
the k-th frame of that run. The *onset* is the first frame labelled positive. Each episode gets one
outcome:

* ``detected``: fires at or after the onset; ``delay = firing frame - onset`` (frames, and seconds
  ``= frames / fps``);
* ``false_termination``: fires before the onset, or fires in an episode that never succeeds;
* ``missed``: never fires in an episode that succeeds;
* ``no_success``: never fires in an episode that never succeeds (correct).

Threshold choice
----------------
* ``precision_threshold``: among thresholds whose frame precision is ``>= target_precision``, the
  one with the highest recall (ties: higher precision). ``None`` when no threshold reaches the
  target.
* ``zero_ft_threshold``: the lowest threshold with zero false terminations on this set. False
  terminations can only fall as the threshold rises; they vanish above the highest debounced
  pre-onset score ``m`` (max over k-frame windows before the onset of the window's minimum), so
  this is the midpoint between ``m`` and the next higher probability. ``None`` when no probability
  lies above ``m``.
* ``recommended_threshold`` = the larger of the two (the one that is not ``None`` if only one
  exists; the checkpoint's threshold if neither does): it meets the precision target *and*
  causes no false termination on this set.

``metrics.json`` keys (stable; binary classifiers)
--------------------------------------------------
==============================  ==============================================================
``accuracy``                    fraction of frames classified correctly at ``threshold``
``balanced_accuracy``           mean of recall and specificity (mean over classes present)
``precision``                   TP / (TP + FP) at ``threshold``
``recall``                      TP / (TP + FN) at ``threshold``
``f1``                          2 PR / (P + R)
``fpr``                         FP / (FP + TN), false positive rate
``fnr``                         FN / (FN + TP), false negative rate
``auroc``                       area under the ROC curve (ties count one half)
``average_precision``           sum over thresholds of (R_n - R_{n-1}) P_n (as scikit-learn)
``ece``                         expected calibration error, 10 equal-width bins of P(success):
                                sum_b n_b/N * |fraction positive_b - mean probability_b|
``temperature``                 T minimising the log loss of sigmoid(logit / T), in [0.01, 100]
``threshold``                   the threshold the frame and episode metrics above are taken at
                                (the checkpoint's threshold unless one is given)
``false_terminations``          episodes with outcome ``false_termination`` at ``threshold``
``missed_successes``            episodes with outcome ``missed`` at ``threshold``
``mean_detection_delay_frames`` mean delay over ``detected`` episodes (``None`` if none)
``episodes``                    number of episodes evaluated
``frames``                      number of frames evaluated
``positives`` / ``negatives``   frames labelled 1 / 0
``recommended_threshold``       see "Threshold choice"
==============================  ==============================================================

Extra details (may grow): ``confusion_matrix`` (rows = true class, columns = predicted),
``mean_detection_delay_s``, ``consecutive``, ``target_precision``, ``precision_threshold``,
``zero_ft_threshold``, ``checkpoint_threshold``, ``ece_calibrated`` (ECE after temperature
scaling), ``per_episode`` (one dict per episode: ``episode``, ``frames``, ``onset_frame``,
``firing_frame``, ``outcome``, ``delay_frames``, ``delay_s``, ``max_probability_before_onset``)
and ``thresholds`` (a table: one row per named threshold ``0.5``, ``checkpoint``, ``given`` (only
when ``threshold`` is neither), ``target_precision``, ``zero_false_terminations``,
``recommended``, with the frame and episode metrics at it).

Multi-class classifiers (``num_classes > 2``): predictions are the arg-max class. ``accuracy``,
``balanced_accuracy`` (mean per-class recall), ``ece`` (top-label confidence) and ``temperature``
(softmax) are computed as above; ``precision``, ``recall``, ``f1``, ``fpr``, ``fnr``, ``auroc`` and
``average_precision`` are one-vs-rest macro averages over the classes present, with the per-class
values under ``per_class``. There is no single success threshold, so ``threshold``,
``false_terminations``, ``missed_successes``, ``mean_detection_delay_frames``,
``positives``/``negatives`` and ``recommended_threshold`` are ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

STABLE_KEYS = (
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "fpr", "fnr", "auroc",
    "average_precision", "ece", "temperature", "threshold", "false_terminations", "missed_successes",
    "mean_detection_delay_frames", "episodes", "frames", "positives", "negatives", "recommended_threshold",
)

OUTCOMES = ("detected", "false_termination", "missed", "no_success")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


# ----------------------------------------------------------------------------- frame metrics


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """(K, K) counts; rows are the true class, columns the predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    """Frame metrics of a binary classifier at ``threshold`` (positive when ``p >= threshold``)."""
    labels = np.asarray(labels).astype(bool)
    pred = np.asarray(probs) >= threshold
    tp = int(np.sum(pred & labels))
    fp = int(np.sum(pred & ~labels))
    fn = int(np.sum(~pred & labels))
    tn = int(np.sum(~pred & ~labels))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    per_class_recall = [r for r, n in ((recall, tp + fn), (_ratio(tn, tn + fp), tn + fp)) if n]
    return {
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "accuracy": _ratio(tp + tn, labels.size),
        "balanced_accuracy": float(np.mean(per_class_recall)) if per_class_recall else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "fpr": _ratio(fp, fp + tn),
        "fnr": _ratio(fn, fn + tp),
    }


def _sweep(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) and the TP / FP counts of ``scores >= threshold`` at each."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    return s[last], tp, fp


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), starting at (0, 0) with threshold +inf."""
    thr, tp, fp = _sweep(labels, scores)
    pos, neg = tp[-1] if tp.size else 0, fp[-1] if fp.size else 0
    fpr = np.r_[0.0, fp / neg if neg else np.zeros_like(fp, dtype=float)]
    tpr = np.r_[0.0, tp / pos if pos else np.zeros_like(tp, dtype=float)]
    return fpr, tpr, np.r_[np.inf, thr]


def auroc(labels: np.ndarray, scores: np.ndarray) -> Optional[float]:
    """Area under the ROC curve (probability a positive outscores a negative, ties count 1/2)."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return None
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) at each distinct threshold, descending thresholds."""
    thr, tp, fp = _sweep(labels, scores)
    pos = tp[-1] if tp.size else 0
    return tp / (tp + fp), (tp / pos if pos else np.zeros_like(tp, dtype=float)), thr


def average_precision(labels: np.ndarray, scores: np.ndarray) -> Optional[float]:
    """Sum over distinct thresholds of (R_n - R_{n-1}) * P_n (step-wise, no interpolation)."""
    labels = np.asarray(labels).astype(bool)
    if not labels.any() or labels.all():
        return None
    precision, recall, _ = pr_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# ----------------------------------------------------------------------------- calibration


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> dict:
    """Equal-width bins over [0, 1] (bin b holds b/n <= p < (b+1)/n; 1.0 goes to the last bin).

    Binary: ``probs`` (N,) is P(class 1), accuracy is the fraction of positives in the bin.
    Multi-class: ``probs`` (N, K); confidence is the top-class probability, accuracy whether the
    top class is the label.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 2:
        conf, hit = probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float)
    else:
        conf, hit = probs, (labels == 1).astype(float)
    idx = np.clip(np.floor(conf * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_hit = np.bincount(idx, weights=hit, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "edges": np.linspace(0.0, 1.0, n_bins + 1),
            "count": count,
            "confidence": np.where(count > 0, sum_conf / np.maximum(count, 1), np.nan),
            "accuracy": np.where(count > 0, sum_hit / np.maximum(count, 1), np.nan),
        }


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """sum over bins of (n_b / N) * |accuracy_b - confidence_b| (see :func:`reliability_bins`)."""
    b = reliability_bins(labels, probs, n_bins)
    n = b["count"].sum()
    used = b["count"] > 0
    return float(np.sum(b["count"][used] / n * np.abs(b["accuracy"][used] - b["confidence"][used])))


def _nll(logits: np.ndarray, labels: np.ndarray, inv_t: float) -> float:
    z = logits * inv_t
    if z.ndim == 1:  # binary: log(1 + e^z) - y z, computed stably
        return float(np.mean(np.logaddexp(0.0, z) - labels * z))
    zmax = z.max(axis=1, keepdims=True)
    logsumexp = (zmax + np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.mean(logsumexp - z[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.01, hi: float = 100.0,
                    iters: int = 100) -> float:
    """Temperature T in [lo, hi] minimising the mean log loss of sigmoid(z/T) (softmax for (N, K)).

    The loss is convex in 1/T, hence unimodal in log T: a golden-section search on log T finds
    its minimum. T > 1 means the model is over-confident, T < 1 under-confident; a perfectly
    separated set drives T to ``lo``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.size == 0:
        return 1.0
    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = _nll(logits, labels, math.exp(-c)), _nll(logits, labels, math.exp(-d))
    for _ in range(iters):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = _nll(logits, labels, math.exp(-c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = _nll(logits, labels, math.exp(-d))
    return float(math.exp((a + b) / 2))


def logits_from_probs(probs: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Binary logits recovered from probabilities (clipped to [eps, 1 - eps])."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


# ----------------------------------------------------------------------------- episode metrics


def first_firing(probs: np.ndarray, threshold: float, consecutive: int = 1) -> Optional[int]:
    """Position of the first frame that completes ``consecutive`` frames in a row with p >= threshold."""
    above = np.asarray(probs) >= threshold
    pos = np.arange(above.size)
    run = pos - np.maximum.accumulate(np.where(above, -1, pos))  # run length of `above` ending here
    hits = np.flatnonzero(run >= consecutive)
    return int(hits[0]) if hits.size else None


def _episodes(episode_index: np.ndarray, frame_index: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(episode, row indices sorted by frame_index) for each episode, ascending."""
    episode_index = np.asarray(episode_index)
    order = np.lexsort((np.asarray(frame_index), episode_index))
    ep_sorted = episode_index[order]
    cuts = np.flatnonzero(np.diff(ep_sorted)) + 1
    return [(int(episode_index[g[0]]), g) for g in np.split(order, cuts) if g.size]


def episode_metrics(episode_index: np.ndarray, frame_index: np.ndarray, labels: np.ndarray,
                    probs: np.ndarray, threshold: float, consecutive: int = 1, fps: float = 0.0) -> dict:
    """Per-episode firing vs onset, counted (see the module docstring). ``fps = 0`` leaves seconds out."""
    if consecutive < 1:
        raise ValueError("consecutive must be >= 1")
    frame_index = np.asarray(frame_index)
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    rows = []
    for ep, idx in _episodes(episode_index, frame_index):
        y, p, f = labels[idx] == 1, probs[idx], frame_index[idx]
        onset = int(np.argmax(y)) if y.any() else None
        fire = first_firing(p, threshold, consecutive)
        if fire is None:
            outcome = "no_success" if onset is None else "missed"
        elif onset is None or fire < onset:
            outcome = "false_termination"
        else:
            outcome = "detected"
        delay = int(f[fire] - f[onset]) if outcome == "detected" else None
        pre = p[: len(p) if onset is None else onset]
        rows.append({
            "episode": ep,
            "frames": int(idx.size),
            "onset_frame": None if onset is None else int(f[onset]),
            "firing_frame": None if fire is None else int(f[fire]),
            "outcome": outcome,
            "delay_frames": delay,
            "delay_s": (delay / fps) if (delay is not None and fps) else None,
            "max_probability_before_onset": float(pre.max()) if pre.size else None,
        })
    delays = [r["delay_frames"] for r in rows if r["delay_frames"] is not None]
    mean_delay = float(np.mean(delays)) if delays else None
    return {
        "episodes": len(rows),
        "false_terminations": sum(r["outcome"] == "false_termination" for r in rows),
        "missed_successes": sum(r["outcome"] == "missed" for r in rows),
        "detected": len(delays),
        "mean_detection_delay_frames": mean_delay,
        "mean_detection_delay_s": (mean_delay / fps) if (mean_delay is not None and fps) else None,
        "per_episode": rows,
    }


# ----------------------------------------------------------------------------- threshold choice


def _midpoint(lower: float, upper: float) -> float:
    """A threshold in (lower, upper] halfway between them (``upper`` if the halfway point rounds down)."""
    mid = (lower + upper) / 2
    return float(mid) if lower < mid <= upper else float(upper)


def precision_threshold(labels: np.ndarray, probs: np.ndarray, target_precision: float) -> Optional[float]:
    """Threshold with precision >= target and the highest recall (ties: higher precision)."""
    thr, tp, fp = _sweep(labels, probs)
    if not thr.size:
        return None
    precision = tp / (tp + fp)
    ok = np.flatnonzero(precision >= target_precision)
    if not ok.size:
        return None
    best = max(ok, key=lambda i: (tp[i], precision[i]))  # tp is proportional to recall
    return _midpoint(float(thr[best + 1]) if best + 1 < thr.size else 0.0, float(thr[best]))


def zero_ft_threshold(episode_index: np.ndarray, frame_index: np.ndarray, labels: np.ndarray,
                      probs: np.ndarray, consecutive: int = 1) -> Optional[float]:
    """Lowest threshold with no false termination (see the module docstring)."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    worst = -np.inf  # highest debounced pre-onset score: min over a k-frame window, max over windows
    for _, idx in _episodes(episode_index, frame_index):
        y, p = labels[idx] == 1, probs[idx]
        pre = p[: int(np.argmax(y)) if y.any() else len(p)]
        if pre.size >= consecutive:
            windows = np.lib.stride_tricks.sliding_window_view(pre, consecutive)
            worst = max(worst, float(windows.min(axis=1).max()))
    above = probs[probs > worst]
    if not above.size:
        return None
    return _midpoint(max(worst, 0.0), float(above.min()))


def recommend_threshold(precision_thr: Optional[float], zero_ft_thr: Optional[float],
                        fallback: float) -> float:
    """The larger of the two choices that exist, else ``fallback``."""
    found = [t for t in (precision_thr, zero_ft_thr) if t is not None]
    return max(found) if found else float(fallback)


# ----------------------------------------------------------------------------- the whole report


@dataclass
class Predictions:
    """Per-frame model outputs aligned with their labels."""

    episode_index: np.ndarray
    """int64 (N,)"""
    frame_index: np.ndarray
    """int64 (N,)"""
    labels: np.ndarray
    """int64 (N,) true class"""
    probs: np.ndarray
    """float (N,) P(success) for binary, (N, K) class probabilities for multi-class"""
    logits: Optional[np.ndarray] = None
    """float (N,) or (N, K) raw logits (for the temperature); derived from ``probs`` when None"""

    @property
    def binary(self) -> bool:
        return np.asarray(self.probs).ndim == 1


def at_threshold(p: Predictions, threshold: float, consecutive: int, fps: float) -> dict:
    """Frame and episode metrics of a binary classifier at one threshold."""
    frame = binary_metrics(p.labels, p.probs, threshold)
    ep = episode_metrics(p.episode_index, p.frame_index, p.labels, p.probs, threshold, consecutive, fps)
    return {"threshold": float(threshold), **frame,
            **{k: v for k, v in ep.items() if k not in ("per_episode", "episodes")}}


def compute_metrics(p: Predictions, *, threshold: float, consecutive: int = 1, target_precision: float = 0.99,
                    fps: float = 0.0, checkpoint_threshold: Optional[float] = None) -> dict:
    """Everything ``metrics.json`` holds: the stable keys first, then the details."""
    if not p.binary:
        return _multiclass_metrics(p)
    labels = np.asarray(p.labels)
    probs = np.asarray(p.probs, dtype=np.float64)
    logits = logits_from_probs(probs) if p.logits is None else np.asarray(p.logits, dtype=np.float64)
    checkpoint_threshold = threshold if checkpoint_threshold is None else checkpoint_threshold
    frame = binary_metrics(labels, probs, threshold)
    ep = episode_metrics(p.episode_index, p.frame_index, labels, probs, threshold, consecutive, fps)
    t_prec = precision_threshold(labels, probs, target_precision)
    t_zero = zero_ft_threshold(p.episode_index, p.frame_index, labels, probs, consecutive)
    recommended = recommend_threshold(t_prec, t_zero, checkpoint_threshold)
    temperature = fit_temperature(logits, labels)
    named = {"0.5": 0.5, "checkpoint": checkpoint_threshold}
    if threshold not in (0.5, checkpoint_threshold):
        named["given"] = threshold
    named.update({"target_precision": t_prec, "zero_false_terminations": t_zero, "recommended": recommended})
    table = [{"name": name, **(at_threshold(p, t, consecutive, fps) if t is not None else {"threshold": None})}
             for name, t in named.items()]
    out = {
        "accuracy": frame["accuracy"],
        "balanced_accuracy": frame["balanced_accuracy"],
        "precision": frame["precision"],
        "recall": frame["recall"],
        "f1": frame["f1"],
        "fpr": frame["fpr"],
        "fnr": frame["fnr"],
        "auroc": auroc(labels, probs),
        "average_precision": average_precision(labels, probs),
        "ece": expected_calibration_error(labels, probs),
        "temperature": temperature,
        "threshold": float(threshold),
        "false_terminations": ep["false_terminations"],
        "missed_successes": ep["missed_successes"],
        "mean_detection_delay_frames": ep["mean_detection_delay_frames"],
        "episodes": ep["episodes"],
        "frames": int(labels.size),
        "positives": int(np.sum(labels == 1)),
        "negatives": int(np.sum(labels != 1)),
        "recommended_threshold": recommended,
        # details
        "mean_detection_delay_s": ep["mean_detection_delay_s"],
        "consecutive": int(consecutive),
        "target_precision": float(target_precision),
        "precision_threshold": t_prec,
        "zero_ft_threshold": t_zero,
        "checkpoint_threshold": float(checkpoint_threshold),
        "ece_calibrated": expected_calibration_error(labels, 1 / (1 + np.exp(-logits / temperature))),
        "confusion_matrix": confusion_matrix(labels, (probs >= threshold).astype(np.int64)).tolist(),
        "per_episode": ep["per_episode"],
        "thresholds": table,
    }
    return out


def _multiclass_metrics(p: Predictions) -> dict:
    labels = np.asarray(p.labels, dtype=np.int64)
    probs = np.asarray(p.probs, dtype=np.float64)
    k = probs.shape[1]
    preds = probs.argmax(axis=1)
    logits = np.log(np.clip(probs, 1e-12, 1)) if p.logits is None else np.asarray(p.logits, dtype=np.float64)
    per_class = []
    for c in range(k):
        if not np.any(labels == c):
            continue
        m = binary_metrics(labels == c, (preds == c).astype(float), 0.5)
        per_class.append({"class": c, "support": int(np.sum(labels == c)),
                          **{n: m[n] for n in ("precision", "recall", "f1", "fpr", "fnr")},
                          "auroc": auroc(labels == c, probs[:, c]),
                          "average_precision": average_precision(labels == c, probs[:, c])})

    def macro(name: str) -> Optional[float]:
        vals = [r[name] for r in per_class if r[name] is not None]
        return float(np.mean(vals)) if vals else None

    episodes = len(_episodes(p.episode_index, p.frame_index))
    return {
        "accuracy": _ratio(np.sum(preds == labels), labels.size),
        "balanced_accuracy": macro("recall"),
        "precision": macro("precision"), "recall": macro("recall"), "f1": macro("f1"),
        "fpr": macro("fpr"), "fnr": macro("fnr"), "auroc": macro("auroc"),
        "average_precision": macro("average_precision"),
        "ece": expected_calibration_error(labels, probs),
        "temperature": fit_temperature(logits, labels),
        "threshold": None, "false_terminations": None, "missed_successes": None,
        "mean_detection_delay_frames": None,
        "episodes": episodes, "frames": int(labels.size), "positives": None, "negatives": None,
        "recommended_threshold": None,
        "num_classes": k,
        "class_counts": np.bincount(labels, minlength=k).tolist(),
        "confusion_matrix": confusion_matrix(labels, preds, k).tolist(),
        "per_class": per_class,
    }
