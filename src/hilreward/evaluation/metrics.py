"""Evaluation metrics: frame metrics (scikit-learn), episode timing metrics and metrics.json (ours).

The frame-level statistics come from scikit-learn (``confusion_matrix``, ``roc_curve``,
``roc_auc_score``, ``precision_recall_curve``, ``average_precision_score``,
``calibration_curve``) and the temperature search from SciPy (:mod:`.calibration`). What is ours:
the episode metrics below, the threshold rules (:mod:`.thresholds`) and the ``metrics.json`` layout.

Conventions
-----------
* A frame is predicted positive when ``probability >= threshold`` (the deployment rule).
* A ratio whose denominator is zero (e.g. precision with no predicted positive) is ``0.0``;
  AUROC and average precision are ``None`` when the labels hold a single class.
* Probabilities are the model's, after its stored temperature (``probability = sigmoid(logit / T)``).

Episode metrics (``consecutive = k``, the same debounce as deployment)
---------------------------------------------------------------------
Within an episode (frames in ``frame_index`` order) the reward *fires* at the first frame that
completes a run of ``k`` consecutive frames with ``probability >= threshold``: that is where
``terminate_on_success`` ends the episode. The *onset* is the first frame labelled positive.
``onset error = firing frame - onset`` (frames; negative = early). With ``tolerance = tolerance_s * fps``
frames, each episode gets one outcome:

==================  ==================================================================
``detected``        fires at or after the onset (onset error >= 0)
``early``           fires before the onset by at most ``tolerance`` frames: jitter of a frame or two
``gross_early``     fires more than ``tolerance`` frames before the onset: a wrong reward
``false_success``   fires in an episode that never succeeds: a wrong reward
``missed``          never fires in an episode that succeeds
``no_success``      never fires in an episode that never succeeds (correct)
==================  ==================================================================

``metrics.json`` keys (stable; binary classifiers)
--------------------------------------------------
======================================  ========================================================
``accuracy``                            fraction of frames classified correctly at ``threshold``
``balanced_accuracy``                   mean of recall and specificity (mean over classes present)
``precision``                           TP / (TP + FP) at ``threshold``
``recall``                              TP / (TP + FN) at ``threshold``
``f1``                                  2 PR / (P + R)
``fpr``                                 FP / (FP + TN), false positive rate
``fnr``                                 FN / (FN + TP), false negative rate
``auroc``                               area under the ROC curve (``roc_auc_score``)
``average_precision``                   ``average_precision_score`` (step-wise, no interpolation)
``ece``                                 expected calibration error over 10 equal-width bins of P(success)
                                        (``calibration_curve``): sum_b n_b/N * |fraction positive_b - mean p_b|
``temperature``                         T minimising the log loss of sigmoid(logit / T) on this set, on top of
                                        the checkpoint's own temperature (1.0 = already calibrated here)
``threshold``                           the threshold the frame and episode metrics are taken at (the
                                        checkpoint's unless one is given)
``false_terminations``                  strict count: episodes that fire before the onset or never succeed
                                        (``early`` + ``gross_early`` + ``false_success``)
``gross_false_terminations``            episodes ``gross_early`` or ``false_success``: the reward ends the
                                        episode more than ``tolerance_s`` too early, or in a failure
``false_successes_in_failed_episodes``  episodes ``false_success``
``missed_successes``                    episodes ``missed``
``onset_error_median_frames``           median |onset error| over succeeding episodes that fire (None if none)
``onset_error_p90_frames``              90th percentile of |onset error| over the same episodes
``mean_detection_delay_frames``         mean onset error over ``detected`` episodes (None if none)
``tolerance_s``                         the tolerance of ``gross_*`` in seconds (``tolerance_frames`` =
                                        ``tolerance_s * fps`` is among the details)
``episodes``                            episodes evaluated
``frames``                              frames evaluated
``positives`` / ``negatives``           frames labelled 1 / 0
``recommended_threshold``               the threshold the rule recommends on this set (:mod:`.thresholds`):
                                        the checkpoint's own when the set holds too little evidence
``threshold_evidence``                  what the recommendation rests on: ``positives``, ``success_episodes``,
                                        ``failed_episodes``, ``min_positives``, ``min_success_episodes``,
                                        ``enough`` (bool), ``rule`` (which rule chose it) and ``reason``
``recommended_interval``                bootstrap intervals (episodes resampled, 95 %) at the recommended
                                        threshold: ``precision``, ``recall``, ``gross_false_termination_rate``
                                        (each ``[low, high]``; None with fewer than 2 episodes)
======================================  ========================================================

Details (may grow): ``confusion_matrix`` (rows = true class, columns = predicted),
``mean_detection_delay_s``, ``consecutive``, ``tolerance_frames``, ``target_precision``,
``precision_threshold``, ``zero_gross_threshold``, ``zero_ft_threshold``, ``rule_threshold`` (what the
rule gives on this set, evidence or not: ``write_threshold=true force=true`` writes it),
``checkpoint_threshold``, ``checkpoint_temperature``, ``ece_calibrated`` (ECE after ``temperature``),
``label_alignment`` (the alignment the labels were read with), ``per_episode`` (one dict per episode:
``episode``, ``frames``, ``onset_frame``, ``firing_frame``, ``outcome``, ``onset_error_frames``,
``onset_error_s``, ``max_probability_before_onset``) and ``thresholds`` (one row per named threshold:
``0.5``, ``checkpoint``, ``given`` (only when ``threshold`` is neither), ``target_precision``,
``zero_gross_false_terminations``, ``zero_false_terminations``, ``recommended``, with the frame and
episode metrics at it). ``hilreward eval compare=<checkpoint>`` adds ``compare``: the same dict for
the second checkpoint on the same frames (plus its ``checkpoint`` path); ``write_threshold=true`` adds
``threshold_written``; ``config`` holds the evaluation's options.

Multi-class classifiers (``num_classes > 2``): predictions are the arg-max class. ``accuracy``,
``balanced_accuracy`` (mean per-class recall), ``ece`` (top-label confidence) and ``temperature``
(softmax) are computed as above; ``precision``, ``recall``, ``f1``, ``fpr``, ``fnr``, ``auroc`` and
``average_precision`` are one-vs-rest macro averages over the classes present, with the per-class
values under ``per_class``. There is no single success threshold, so the threshold and episode
keys are ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from sklearn import metrics as skm

from . import calibration as C
from . import thresholds as T
from .episodes import DEFAULT_TOLERANCE_S, episode_metrics, episodes, tolerance_frames

STABLE_KEYS = (
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "fpr", "fnr", "auroc",
    "average_precision", "ece", "temperature", "threshold", "false_terminations", "gross_false_terminations",
    "false_successes_in_failed_episodes", "missed_successes", "onset_error_median_frames",
    "onset_error_p90_frames", "mean_detection_delay_frames", "tolerance_s", "episodes", "frames", "positives",
    "negatives", "recommended_threshold", "threshold_evidence", "recommended_interval",
)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


# ----------------------------------------------------------------------------- frame metrics


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """(K, K) counts; rows are the true class, columns the predicted class."""
    return skm.confusion_matrix(np.asarray(labels, np.int64), np.asarray(preds, np.int64),
                                labels=np.arange(num_classes))


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    """Frame metrics of a binary classifier at ``threshold`` (positive when ``p >= threshold``)."""
    labels = np.asarray(labels).astype(np.int64) == 1
    (tn, fp), (fn, tp) = confusion_matrix(labels, np.asarray(probs) >= threshold).tolist()
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


def _two_classes(labels: np.ndarray) -> bool:
    labels = np.asarray(labels).astype(bool)
    return bool(labels.any() and not labels.all())


def auroc(labels: np.ndarray, scores: np.ndarray) -> Optional[float]:
    """Area under the ROC curve; None when the labels hold one class."""
    labels = np.asarray(labels) == 1
    return float(skm.roc_auc_score(labels, scores)) if _two_classes(labels) else None


def average_precision(labels: np.ndarray, scores: np.ndarray) -> Optional[float]:
    """Average precision (step-wise, as scikit-learn); None when the labels hold one class."""
    labels = np.asarray(labels) == 1
    return float(skm.average_precision_score(labels, scores)) if _two_classes(labels) else None


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) of every distinct threshold, starting at (0, 0) with threshold +inf."""
    return skm.roc_curve(np.asarray(labels) == 1, scores, drop_intermediate=False)


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) at each distinct threshold, ascending thresholds (scikit-learn's
    trailing (1, 0) point dropped)."""
    precision, recall, thresholds = skm.precision_recall_curve(np.asarray(labels) == 1, scores)
    return precision[:-1], recall[:-1], thresholds


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
    """float (N,) or (N, K) logits divided by the checkpoint's temperature (so that ``probs`` is their sigmoid or
    softmax); derived from ``probs`` when None"""

    @property
    def binary(self) -> bool:
        return np.asarray(self.probs).ndim == 1


def at_threshold(p: Predictions, threshold: float, consecutive: int, fps: float,
                 tolerance_s: float = DEFAULT_TOLERANCE_S) -> dict:
    """Frame and episode metrics of a binary classifier at one threshold."""
    frame = binary_metrics(p.labels, p.probs, threshold)
    ep = episode_metrics(p.episode_index, p.frame_index, p.labels, p.probs, threshold, consecutive, fps, tolerance_s)
    return {"threshold": float(threshold), **frame,
            **{k: v for k, v in ep.items() if k not in ("per_episode", "episodes")}}


def compute_metrics(p: Predictions, *, threshold: float, consecutive: int = 1, target_precision: float = 0.99,
                    fps: float = 0.0, checkpoint_threshold: Optional[float] = None,
                    tolerance_s: float = DEFAULT_TOLERANCE_S, evidence: Optional[T.EvidenceRule] = None,
                    checkpoint_temperature: float = 1.0) -> dict:
    """Everything ``metrics.json`` holds: the stable keys first, then the details."""
    if not p.binary:
        return _multiclass_metrics(p, checkpoint_temperature)
    labels = np.asarray(p.labels)
    probs = np.asarray(p.probs, dtype=np.float64)
    logits = C.logits_from_probs(probs) if p.logits is None else np.asarray(p.logits, dtype=np.float64)
    checkpoint_threshold = threshold if checkpoint_threshold is None else checkpoint_threshold
    ep = episode_metrics(p.episode_index, p.frame_index, labels, probs, threshold, consecutive, fps, tolerance_s)
    choice = T.choose_threshold(p.episode_index, p.frame_index, labels, probs, consecutive=consecutive, fps=fps,
                                tolerance_s=tolerance_s, target_precision=target_precision,
                                fallback=checkpoint_threshold, rule=evidence)
    temperature = C.fit_temperature(logits, labels)
    named = {"0.5": 0.5, "checkpoint": checkpoint_threshold}
    if threshold not in (0.5, checkpoint_threshold):
        named["given"] = threshold
    named.update({"target_precision": choice.precision_threshold,
                  "zero_gross_false_terminations": choice.zero_gross_threshold,
                  "zero_false_terminations": choice.zero_ft_threshold, "recommended": choice.threshold})
    table = [{"name": name, **(at_threshold(p, t, consecutive, fps, tolerance_s) if t is not None
                               else {"threshold": None})} for name, t in named.items()]
    frame = next(r for r in table if r["threshold"] == float(threshold))
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
        "ece": C.expected_calibration_error(labels, probs),
        "temperature": temperature,
        "threshold": float(threshold),
        "false_terminations": ep["false_terminations"],
        "gross_false_terminations": ep["gross_false_terminations"],
        "false_successes_in_failed_episodes": ep["false_successes_in_failed_episodes"],
        "missed_successes": ep["missed_successes"],
        "onset_error_median_frames": ep["onset_error_median_frames"],
        "onset_error_p90_frames": ep["onset_error_p90_frames"],
        "mean_detection_delay_frames": ep["mean_detection_delay_frames"],
        "tolerance_s": float(tolerance_s),
        "episodes": ep["episodes"],
        "frames": int(labels.size),
        "positives": int(np.sum(labels == 1)),
        "negatives": int(np.sum(labels != 1)),
        "recommended_threshold": choice.threshold,
        "threshold_evidence": choice.evidence,
        "recommended_interval": choice.interval,
        # details
        "mean_detection_delay_s": ep["mean_detection_delay_s"],
        "consecutive": int(consecutive),
        "tolerance_frames": tolerance_frames(tolerance_s, fps),
        "target_precision": float(target_precision),
        "precision_threshold": choice.precision_threshold,
        "zero_gross_threshold": choice.zero_gross_threshold,
        "zero_ft_threshold": choice.zero_ft_threshold,
        "rule_threshold": choice.rule_threshold,
        "checkpoint_threshold": float(checkpoint_threshold),
        "checkpoint_temperature": float(checkpoint_temperature),
        "ece_calibrated": C.expected_calibration_error(labels, C.sigmoid(logits / temperature)),
        "confusion_matrix": confusion_matrix(labels, probs >= threshold).tolist(),
        "per_episode": ep["per_episode"],
        "thresholds": table,
    }
    return out


def _multiclass_metrics(p: Predictions, checkpoint_temperature: float) -> dict:
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

    none = dict.fromkeys(("threshold", "false_terminations", "gross_false_terminations",
                          "false_successes_in_failed_episodes", "missed_successes", "onset_error_median_frames",
                          "onset_error_p90_frames", "mean_detection_delay_frames", "tolerance_s"))
    return {
        "accuracy": _ratio(np.sum(preds == labels), labels.size),
        "balanced_accuracy": macro("recall"),
        "precision": macro("precision"), "recall": macro("recall"), "f1": macro("f1"),
        "fpr": macro("fpr"), "fnr": macro("fnr"), "auroc": macro("auroc"),
        "average_precision": macro("average_precision"),
        "ece": C.expected_calibration_error(labels, probs),
        "temperature": C.fit_temperature(logits, labels),
        **none,
        "episodes": len(episodes(p.episode_index, p.frame_index)), "frames": int(labels.size),
        "positives": None, "negatives": None,
        "recommended_threshold": None, "threshold_evidence": None, "recommended_interval": None,
        "num_classes": k,
        "checkpoint_temperature": float(checkpoint_temperature),
        "class_counts": np.bincount(labels, minlength=k).tolist(),
        "confusion_matrix": confusion_matrix(labels, preds, k).tolist(),
        "per_class": per_class,
    }
