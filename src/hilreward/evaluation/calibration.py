"""Probability calibration: reliability bins and ECE (scikit-learn), temperature scaling (SciPy).

A temperature T divides the logits before the sigmoid (softmax for multi-class):
``p = sigmoid(z / T)``. T > 1 softens an over-confident model, T < 1 sharpens an
under-confident one; it never reorders frames, so a threshold keeps its meaning only in the
probability space it was chosen in (the checkpoint stores both, see :mod:`hilreward.training.calibrate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import optimize, special
from sklearn.calibration import calibration_curve

from .thresholds import EvidenceRule, choose_threshold, evidence_counts

TEMPERATURE_RANGE = (0.01, 100.0)
"""Bounds of the temperature search when nothing narrower is asked for."""


def sigmoid(z: np.ndarray) -> np.ndarray:
    return special.expit(np.asarray(z, dtype=np.float64))


def logits_from_probs(probs: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Binary logits recovered from probabilities (clipped to [eps, 1 - eps])."""
    return special.logit(np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps))


def _confidence(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, hit): P(class 1) and label == 1 for binary (N,); top-label confidence and correctness for (N, K)."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 2:
        return probs.max(axis=1), probs.argmax(axis=1) == labels
    return probs, labels == 1


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> dict:
    """Equal-width bins over [0, 1] as scikit-learn's ``calibration_curve`` draws them (bin 0 holds [0, 1/n],
    bin b > 0 holds (b/n, (b+1)/n]).

    Returns ``edges`` (n+1,), ``count`` (n,), and per bin ``confidence`` (mean probability) and ``accuracy``
    (fraction positive; for multi-class whether the top class is right), NaN for empty bins.
    """
    conf, hit = _confidence(labels, probs)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    count = np.bincount(np.searchsorted(edges[1:-1], conf), minlength=n_bins)
    accuracy = np.full(n_bins, np.nan)
    confidence = np.full(n_bins, np.nan)
    if conf.size:
        accuracy[count > 0], confidence[count > 0] = calibration_curve(hit, conf, n_bins=n_bins, strategy="uniform")
    return {"edges": edges, "count": count, "confidence": confidence, "accuracy": accuracy}


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """sum over bins of (n_b / N) * |accuracy_b - confidence_b| (see :func:`reliability_bins`)."""
    b = reliability_bins(labels, probs, n_bins)
    used = b["count"] > 0
    if not used.any():
        return 0.0
    weights = b["count"][used] / b["count"].sum()
    return float(np.sum(weights * np.abs(b["accuracy"][used] - b["confidence"][used])))


def log_loss(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of sigmoid(z / T) (binary (N,)) or softmax(z / T) ((N, K))."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    labels = np.asarray(labels, dtype=np.int64)
    if z.ndim == 1:  # log(1 + e^z) - y z, computed stably
        return float(np.mean(np.logaddexp(0.0, z) - labels * z))
    return float(-np.mean(special.log_softmax(z, axis=1)[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = TEMPERATURE_RANGE) -> float:
    """Temperature T within ``bounds`` minimising :func:`log_loss` (SciPy's bounded scalar search on log T).

    The loss is convex in 1/T, hence unimodal in log T. A perfectly separated set drives T to the lower
    bound; an empty one gives 1.0.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.size == 0:
        return 1.0
    lo, hi = (math.log(b) for b in bounds)
    res = optimize.minimize_scalar(lambda log_t: log_loss(logits, labels, math.exp(log_t)), bounds=(lo, hi),
                                   method="bounded", options={"xatol": 1e-7})
    return float(math.exp(res.x))


CALIBRATION_TEMPERATURE_RANGE = (0.5, 20.0)
"""Temperatures end-of-training calibration may choose: a few perfectly separated held-out episodes would drive
the search to any sharpening (T -> 0), which the data cannot justify."""


@dataclass
class Calibration:
    """Temperature and threshold chosen on one set of episodes, and what they rest on."""

    temperature: float
    threshold: Optional[float]
    """None for multi-class models (no single success threshold)."""
    details: dict = field(default_factory=dict)
    """Stored in the checkpoint as ``calibration``: episodes, evidence, rule, intervals, options."""


def calibrate(episode_index: np.ndarray, frame_index: np.ndarray, labels: np.ndarray, logits: np.ndarray, *,
              fps: float, consecutive: int = 1, tolerance_s: float = 0.5, target_precision: float = 0.99,
              fallback_threshold: float = 0.5, rule: Optional[EvidenceRule] = None,
              temperature_bounds: tuple[float, float] = CALIBRATION_TEMPERATURE_RANGE) -> Calibration:
    """Temperature, then the threshold on the tempered probabilities, both under the evidence rule.

    ``logits`` are the model's raw logits ((N,) binary, (N, K) multi-class). With too little evidence
    (:class:`EvidenceRule`) the temperature stays 1 and the threshold ``fallback_threshold``.
    """
    rule = rule or EvidenceRule()
    labels = np.asarray(labels, dtype=np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    eps = sorted(set(np.asarray(episode_index).tolist()))
    options = {"episodes": eps, "frames": int(labels.size), "consecutive": consecutive, "tolerance_s": tolerance_s,
               "target_precision": target_precision, "temperature_bounds": list(temperature_bounds)}
    if logits.ndim == 2:  # multi-class: temperature only, on enough frames of every class present
        enough = labels.size >= rule.min_positives and np.unique(labels).size > 1
        t = fit_temperature(logits, labels, temperature_bounds) if enough else 1.0
        return Calibration(t, None, {**options, "temperature": t, "enough": bool(enough)})
    enough = rule.enough(*evidence_counts(episode_index, labels)[:2])
    t = fit_temperature(logits, labels, temperature_bounds) if enough else 1.0
    choice = choose_threshold(episode_index, frame_index, labels, sigmoid(logits / t), consecutive=consecutive,
                              fps=fps, tolerance_s=tolerance_s, target_precision=target_precision,
                              fallback=fallback_threshold, rule=rule)
    details = {**options, "temperature": t, "threshold": choice.threshold, **choice.evidence,
               "rule_threshold": choice.rule_threshold, "interval": choice.interval}
    return Calibration(t, choice.threshold, details)
