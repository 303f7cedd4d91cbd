"""End-of-run calibration (``training.calibrate``): temperature and threshold, from held-out or out-of-fold logits.

:func:`plan_calibration` decides, before training, what the calibration can rest on:

* ``heldout``: the best checkpoint is run over the run's held-out episodes;
* ``cv`` (calibration by folds): ``calibrate_folds`` fold models, each trained without one group of episodes
  (:mod:`hilreward.training.folds`), give out-of-fold logits for every episode, and the final model trains on
  every episode (nothing is held out). At the ~10-20 episodes people record, a 20 % split holds 2-4 episodes,
  too few for the evidence rule; all episodes out of fold are enough;
* ``auto`` (the default) takes ``heldout`` when the held-out episodes hold enough evidence, else ``cv``; ``cv``
  falls back to ``heldout`` with its reason when there are too few episodes for the folds or too little evidence
  in the whole dataset, and a dataset without a succeeding episode cannot be calibrated at all.

:func:`hilreward.evaluation.calibration.calibrate` then chooses the temperature and the threshold on the tempered
probabilities under the evidence rule (too little evidence keeps temperature 1 and the configured threshold, and
says why). Both go into the checkpoint's ``config.json`` (``temperature``, ``threshold``, and ``calibration``: what
they rest on), and the model applies the temperature inside ``RewardClassifier.probabilities``, so the reward
function and every backend (torch, ONNX, gRPC) use them unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..config import TrainConfig
from ..data import FrameData
from ..evaluation.calibration import Calibration, calibrate, sigmoid
from ..evaluation.episodes import episode_metrics
from ..evaluation.inference import batched_logits
from ..evaluation.thresholds import EvidenceRule, evidence_counts
from ..models.checkpoint import update_config
from ..models.classifier import RewardClassifier
from .folds import episode_folds, fold_config, fold_logits
from ..constants import CONFIG_NAME

MIN_EPISODES_PER_FOLD = 2


@dataclass
class CalibrationPlan:
    """What the end of the run calibrates on, and why."""

    method: str
    """``heldout``, ``cv`` or ``off``."""
    reason: str
    folds: list[list[int]] = field(default_factory=list)
    """The groups of episodes of ``cv``."""

    def describe(self) -> str:
        what = {"heldout": "on the held-out episodes", "cv": f"by {len(self.folds)} folds", "off": "none"}[self.method]
        return f"calibration: {what} ({self.reason})"


def plan_calibration(mode: str, data: FrameData, episodes: list[int], val_episodes: list[int], folds: int,
                     seed: int, processes: int = 1, rule: Optional[EvidenceRule] = None) -> CalibrationPlan:
    """The calibration ``mode`` gives for ``data`` (the run's episodes) split with ``val_episodes`` held out."""
    rule = rule or EvidenceRule()
    if mode == "off":
        return CalibrationPlan("off", "training.calibrate=off")
    if not (data.labels > 0).any():
        return CalibrationPlan("off", "not possible: no episode of the dataset succeeds, so no threshold can rest on "
                                      "evidence; check label.key, or record succeeding episodes")
    if mode == "heldout":
        return CalibrationPlan("heldout", "training.calibrate=heldout")
    held = np.isin(data.episode_index, val_episodes)
    positives, successes, _ = evidence_counts(data.episode_index[held], data.labels[held])
    held_text = (f"the held-out episodes {val_episodes} hold {positives} positive frames in {successes} succeeding "
                 f"episodes")
    if mode == "auto" and rule.enough(positives, successes):
        return CalibrationPlan("heldout", f"{held_text}: enough evidence")
    why = ("training.calibrate=cv" if mode == "cv" else
           f"{held_text}, too little for the rule (>= {rule.min_positives} and >= {rule.min_success_episodes})")
    instead = "calibrating on the held-out episodes instead"
    if len(episodes) < MIN_EPISODES_PER_FOLD * folds:
        return CalibrationPlan("heldout", f"{why}; {len(episodes)} episodes are too few for {folds} folds (calibration "
                                          f"by folds needs >= {MIN_EPISODES_PER_FOLD * folds}): {instead}")
    all_positives, all_successes, _ = evidence_counts(data.episode_index, data.labels)
    if not rule.enough(all_positives, all_successes):
        return CalibrationPlan("heldout", f"{why}; the whole dataset holds only {all_positives} positive frames in "
                                          f"{all_successes} succeeding episodes, too little for folds: {instead}")
    if processes > 1:
        return CalibrationPlan("heldout", f"{why}; calibration by folds runs in one process, not {processes}: "
                                          f"{instead}")
    groups = episode_folds(list(episodes), data.episode_index, data.labels, folds, seed)
    return CalibrationPlan("cv", f"{why}; out-of-fold over all {len(episodes)} episodes, the final model trains on "
                                 f"every episode, none held out", groups)


def store_calibration(folder: Path, cal: Calibration, fallback_threshold: float) -> None:
    """Temperature, threshold (the fallback when the rule gives none) and what they rest on, into the checkpoint."""
    threshold = cal.threshold if cal.threshold is not None else fallback_threshold
    update_config(folder, {"temperature": cal.temperature, "threshold": threshold, "calibration": cal.details})


def calibrate_checkpoint(folder: Path, data: FrameData, rows: np.ndarray,
                         features: Optional[dict[str, np.ndarray]] = None, *, fallback_threshold: float = 0.5,
                         device: str | torch.device = "cpu", batch_size: int = 64) -> Optional[Calibration]:
    """Calibrate the checkpoint in ``folder`` on ``rows`` (its held-out frames) and store the result in it."""
    if not len(rows) or not (Path(folder) / CONFIG_NAME).is_file():
        return None
    model = RewardClassifier.from_pretrained(folder, device=device)
    logits = batched_logits(model, rows, data.images, features, batch_size)
    cal = calibrate(data.episode_index[rows], data.frame_index[rows], data.labels[rows], logits, fps=data.fps,
                    fallback_threshold=model.threshold if fallback_threshold is None else fallback_threshold)
    cal.details["method"] = "heldout"
    store_calibration(folder, cal, model.threshold)
    return cal


def calibrate_by_folds(cfg: TrainConfig, plan: CalibrationPlan, folder: Path, data: FrameData, episodes: list[int],
                       steps: int, *, fit: Callable[[TrainConfig], Path],
                       fallback_threshold: float = 0.5) -> Calibration:
    """Train the plan's fold models (``output_dir/calibration/folds/<i>``; finished ones are reused), calibrate on
    their out-of-fold logits of every episode, and store the result in the final model's checkpoint ``folder``.
    The logits are kept in ``output_dir/calibration/out_of_fold.npz`` (with labels, episode and frame indices).
    ``fit`` trains one fold's config (the trainer, passed in by it: training imports calibration, not back)."""

    t0 = time.perf_counter()
    fold_steps = cfg.training.calibrate_fold_steps or steps
    root = Path(cfg.output_dir) / "calibration" / "folds"
    logits: Optional[np.ndarray] = None
    for i, held in enumerate(plan.folds):
        print(f"calibration: fold {i + 1}/{len(plan.folds)}, held-out episodes {held}, {fold_steps} steps", flush=True)
        # like the final model: no evaluation on the way, its last checkpoint
        fold_cfg = fold_config(cfg, episodes, held, root / str(i), fold_steps, eval_freq=0, save_freq=fold_steps)
        fit(fold_cfg)
        rows = np.flatnonzero(np.isin(data.episode_index, held))
        part = fold_logits(fold_cfg, root / str(i) / "checkpoints" / "last", data, rows)
        if logits is None:
            logits = np.full((len(data), *part.shape[1:]), np.nan)
        logits[rows] = part
    tmp = root.parent / ".out_of_fold.tmp.npz"
    np.savez(tmp, logits=logits, labels=data.labels, episode=data.episode_index, frame=data.frame_index, fps=data.fps)
    tmp.replace(root.parent / "out_of_fold.npz")
    cal = calibrate(data.episode_index, data.frame_index, data.labels, logits, fps=data.fps,
                    fallback_threshold=fallback_threshold)
    cal.details.update(method="cv", folds=plan.folds, fold_steps=fold_steps, seconds=time.perf_counter() - t0,
                       out_of_fold=out_of_fold_metrics(data, logits, cal))
    store_calibration(folder, cal, fallback_threshold)
    return cal


def out_of_fold_metrics(data: FrameData, logits: np.ndarray, cal: Calibration) -> dict:
    """Accuracy (and, binary, gross false terminations) of the out-of-fold logits at the calibrated threshold and
    at 0.5: what the model is likely to do on new episodes, since nothing was held out."""
    if logits.ndim == 2:
        return {"accuracy": float((logits.argmax(axis=1) == data.labels).mean())}
    probs = sigmoid(logits / cal.temperature)
    out = {}
    for name, t in (("calibrated", cal.threshold), ("at_0.5", 0.5)):
        ep = episode_metrics(data.episode_index, data.frame_index, data.labels, probs, t, fps=data.fps,
                             tolerance_s=cal.details["tolerance_s"])
        out[name] = {"threshold": t, "accuracy": float(((probs >= t) == (data.labels == 1)).mean()),
                     "gross_false_terminations": ep["gross_false_terminations"], "episodes": ep["episodes"]}
    return out


def summary_line(cal: Optional[Calibration], plan: Optional[CalibrationPlan] = None) -> str:
    """One line for the end of ``hilreward train``."""
    if plan is not None and plan.method == "off":
        return plan.describe()
    if cal is None:
        return "calibration: skipped (no held-out episodes)"
    d = cal.details
    if d.get("method") == "cv":
        head = (f"calibration by {len(d['folds'])} folds over episodes {d['episodes']} (out of fold, fold models of "
                f"{d['fold_steps']} steps): temperature {cal.temperature:.3g}")
    else:
        head = f"calibration on held-out episodes {d['episodes']}: temperature {cal.temperature:.3g}"
    if cal.threshold is None:
        return head
    line = f"{head}, threshold {cal.threshold:.4g} ({d['reason']})"
    if d.get("interval"):
        iv = d["interval"]
        line += (f"; 95 % intervals over episodes: precision [{iv['precision'][0]:.3f}, {iv['precision'][1]:.3f}], "
                 f"recall [{iv['recall'][0]:.3f}, {iv['recall'][1]:.3f}], gross false terminations "
                 f"[{iv['gross_false_termination_rate'][0]:.2f}, {iv['gross_false_termination_rate'][1]:.2f}] "
                 f"of episodes")
    if d.get("method") == "cv":
        oof = d["out_of_fold"]["calibrated"]
        line += (f"; out of fold at it: accuracy {oof['accuracy']:.4f}, {oof['gross_false_terminations']} gross false "
                 f"terminations in {oof['episodes']} episodes; the final model trained on every episode")
    return line
