"""Episode timing metrics: where the reward fires against the true onset, per episode.

The outcomes and counts are defined in the docstring of :mod:`hilreward.evaluation.metrics`
(``detected``, ``early`` (jitter within the tolerance), ``gross_early``, ``false_success``,
``missed``, ``no_success``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..debounce import streaks

OUTCOMES = ("detected", "early", "gross_early", "false_success", "missed", "no_success")
GROSS = ("gross_early", "false_success")
"""Outcomes that are a wrong reward, not jitter."""

DEFAULT_TOLERANCE_S = 0.5
"""Default tolerance of a gross false termination, in seconds."""


def first_firing(probs: np.ndarray, threshold: float, consecutive: int = 1) -> Optional[int]:
    """Position of the first frame that completes ``consecutive`` frames in a row with p >= threshold."""
    hits = np.flatnonzero(streaks(np.asarray(probs) >= threshold) >= consecutive)
    return int(hits[0]) if hits.size else None


def episodes(episode_index: np.ndarray, frame_index: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(episode, row indices sorted by frame_index) for each episode, ascending."""
    episode_index = np.asarray(episode_index)
    order = np.lexsort((np.asarray(frame_index), episode_index))
    cuts = np.flatnonzero(np.diff(episode_index[order])) + 1
    return [(int(episode_index[g[0]]), g) for g in np.split(order, cuts) if g.size]


def tolerance_frames(tolerance_s: float, fps: float) -> float:
    """``tolerance_s`` in frames; a positive tolerance needs the frame rate."""
    if tolerance_s < 0:
        raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
    if tolerance_s and not fps > 0:
        raise ValueError("a tolerance in seconds needs fps > 0")
    return float(tolerance_s * fps)


def outcome(onset: Optional[int], fire: Optional[int], tolerance: float) -> str:
    """The outcome of one episode from its onset and firing frame (see the module docstring)."""
    if fire is None:
        return "no_success" if onset is None else "missed"
    if onset is None:
        return "false_success"
    if fire >= onset:
        return "detected"
    return "early" if onset - fire <= tolerance else "gross_early"


def episode_metrics(episode_index: np.ndarray, frame_index: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                    threshold: float, consecutive: int = 1, fps: float = 0.0,
                    tolerance_s: float = DEFAULT_TOLERANCE_S) -> dict:
    """Per-episode firing vs onset, counted (see the module docstring). ``fps = 0`` needs ``tolerance_s = 0``."""
    if consecutive < 1:
        raise ValueError("consecutive must be >= 1")
    tol = tolerance_frames(tolerance_s, fps)
    frame_index = np.asarray(frame_index)
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    rows = []
    for ep, idx in episodes(episode_index, frame_index):
        y, p, f = labels[idx] == 1, probs[idx], frame_index[idx]
        onset = int(np.argmax(y)) if y.any() else None
        fire = first_firing(p, threshold, consecutive)
        onset_f = None if onset is None else int(f[onset])
        fire_f = None if fire is None else int(f[fire])
        error = fire_f - onset_f if (onset is not None and fire is not None) else None
        pre = p[: len(p) if onset is None else onset]
        rows.append({
            "episode": ep,
            "frames": int(idx.size),
            "onset_frame": onset_f,
            "firing_frame": fire_f,
            "outcome": outcome(onset_f, fire_f, tol),
            "onset_error_frames": error,
            "onset_error_s": (error / fps) if (error is not None and fps) else None,
            "max_probability_before_onset": float(pre.max()) if pre.size else None,
        })
    count = {o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}
    errors = np.abs([r["onset_error_frames"] for r in rows if r["onset_error_frames"] is not None])
    delays = [r["onset_error_frames"] for r in rows if r["outcome"] == "detected"]
    mean_delay = float(np.mean(delays)) if delays else None
    return {
        "episodes": len(rows),
        "false_terminations": count["early"] + count["gross_early"] + count["false_success"],
        "gross_false_terminations": count["gross_early"] + count["false_success"],
        "false_successes_in_failed_episodes": count["false_success"],
        "missed_successes": count["missed"],
        "detected": count["detected"],
        "onset_error_median_frames": float(np.median(errors)) if errors.size else None,
        "onset_error_p90_frames": float(np.percentile(errors, 90)) if errors.size else None,
        "mean_detection_delay_frames": mean_delay,
        "mean_detection_delay_s": (mean_delay / fps) if (mean_delay is not None and fps) else None,
        "per_episode": rows,
    }
