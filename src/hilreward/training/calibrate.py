"""End-of-run calibration (``training.calibrate``): temperature and threshold, from held-out or out-of-fold logits.

:func:`plan_calibration` decides, before training, what the calibration can rest on:

* ``heldout``: the best checkpoint is run over the run's held-out episodes;
* ``cv`` (calibration by folds): ``calibrate_folds`` fold models, each trained without one group of the training
  episodes, give out-of-fold logits for every training episode; the held-out episodes stay held out. With a
  frozen encoder the fold models are fold heads trained together on the cached features beside the final head
  (:func:`~hilreward.training.folds.fold_heads`); with an encoder that trains they are the members of the deployed
  ensemble (:mod:`hilreward.models.members`), which share :data:`MEMBER_BUDGET` times the run's steps. At the
  ~10-20 episodes people record, a 20 % split holds 2-4 episodes, too few for the evidence rule; all training
  episodes out of fold are enough;
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

import math
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
from .features import gather_features
from .folds import episode_folds, fold_heads, fold_of_row
from ..constants import CONFIG_NAME
from ..utils import write_file

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
    """The calibration ``mode`` gives for ``data`` (the run's episodes) split into the training ``episodes`` and
    ``val_episodes`` held out. Folds are dealt from the training episodes only: held out means held out."""
    rule = rule or EvidenceRule()
    if mode == "off":
        return CalibrationPlan("off", "training.calibrate=off")
    training = np.isin(data.episode_index, episodes)
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
        return CalibrationPlan("heldout", f"{why}; {len(episodes)} training episodes are too few for {folds} folds "
                                          f"(calibration by folds needs >= {MIN_EPISODES_PER_FOLD * folds}): {instead}")
    all_positives, all_successes, _ = evidence_counts(data.episode_index[training], data.labels[training])
    if not rule.enough(all_positives, all_successes):
        return CalibrationPlan("heldout", f"{why}; the training episodes hold only {all_positives} positive frames in "
                                          f"{all_successes} succeeding episodes, too little for folds: {instead}")
    if processes > 1:
        return CalibrationPlan("heldout", f"{why}; calibration by folds runs in one process, not {processes}: "
                                          f"{instead}")
    groups = episode_folds(list(episodes), data.episode_index[training], data.labels[training], folds, seed)
    kept = f"the held-out episodes {val_episodes} stay held out" if val_episodes else "none is held out"
    return CalibrationPlan("cv", f"{why}; out of fold over the {len(episodes)} training episodes ({kept})", groups)


MEMBER_BUDGET = 1.25
"""Calibration by folds of a model whose encoder trains deploys its fold models as an ensemble; together they train
this many times the steps of the run without calibration, shared evenly (chosen by ``studies/calibration/
study_cost.py``: docs/calibration.md)."""


def member_steps(cfg: TrainConfig, steps: int, members: int) -> int:
    """Steps of the ensemble's loop (each trains every member once): ``training.calibrate_fold_steps`` when set,
    else :data:`MEMBER_BUDGET` times the run's ``steps``, shared by the ``members``."""
    if cfg.training.calibrate_fold_steps:
        return int(cfg.training.calibrate_fold_steps)
    return max(1, int(math.ceil(MEMBER_BUDGET * steps / members)))


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


def calibrate_by_fold_heads(cfg: TrainConfig, plan: CalibrationPlan, folder: Path, data: FrameData,
                            episodes: list[int], views: list[dict[str, np.ndarray]], train_rows: np.ndarray,
                            steps: int, *, fallback_threshold: float = 0.5, progress=None) -> Calibration:
    """Calibration by folds on a frozen encoder's cached features: the plan's fold heads train together in one pass
    (:func:`~hilreward.training.folds.fold_heads`), each scores the rows of its fold, and the result is stored in
    the final model's checkpoint ``folder``. ``views`` and ``train_rows`` are the run's feature views and training
    rows (view 0 holds every row of ``data``)."""
    t0 = time.perf_counter()
    t = cfg.training
    fold_steps = t.calibrate_fold_steps or steps
    model = RewardClassifier.from_pretrained(folder)
    fold = fold_of_row(data.episode_index, plan.folds)
    heads = fold_heads(model, views, train_rows, data.labels[train_rows], fold[train_rows], len(plan.folds),
                       fold_steps, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                       grad_clip_norm=t.grad_clip_norm, seed=t.seed, balanced=cfg.sampler.balanced,
                       progress=progress)
    cameras = list(model.config.camera_keys)

    def score(i: int, rows: np.ndarray) -> np.ndarray:
        feats = gather_features(views[0], rows)
        return heads[i]([feats[c] for c in cameras]).float().numpy()

    logits = _out_of_fold_logits(data, plan.folds, score, batch_size=256)
    return _calibrate_out_of_fold(cfg, plan, folder, data, episodes, logits, fold_steps, t0, fallback_threshold,
                                  "fold heads")


def calibrate_members(cfg: TrainConfig, plan: CalibrationPlan, folder: Path, data: FrameData, episodes: list[int],
                      steps: int, *, fallback_threshold: float = 0.5, device: str | torch.device = "cpu",
                      batch_size: int = 64) -> Calibration:
    """Calibration by folds of an ensemble checkpoint (``folder``, ``config.members`` = the plan's folds): member
    ``i`` never trained on fold ``i``, so its logits there are out of fold, and they describe the deployed members."""
    t0 = time.perf_counter()
    model = RewardClassifier.from_pretrained(folder, device=device)

    def score(i: int, rows: np.ndarray) -> np.ndarray:
        pixels = model.preprocess({c: np.asarray(data.images[c][rows]) for c in model.camera_keys})
        return model.member_forward(i, pixels).float().cpu().numpy()

    logits = _out_of_fold_logits(data, plan.folds, score, batch_size)
    return _calibrate_out_of_fold(cfg, plan, folder, data, episodes, logits, steps, t0, fallback_threshold,
                                  "ensemble members")


def _out_of_fold_logits(data: FrameData, folds: list[list[int]], score: Callable[[int, np.ndarray], np.ndarray],
                        batch_size: int) -> np.ndarray:
    """Logits of every row of ``data`` in a fold (NaN elsewhere): ``score(i, rows)`` scores rows of fold ``i`` with
    the model that never trained on it, batch by batch."""
    logits: Optional[np.ndarray] = None
    with torch.inference_mode():
        for i, held in enumerate(folds):
            rows = np.flatnonzero(np.isin(data.episode_index, held))
            part = np.concatenate([score(i, rows[s:s + batch_size]) for s in range(0, len(rows), batch_size)])
            if logits is None:
                logits = np.full((len(data), *part.shape[1:]), np.nan)
            logits[rows] = part
    assert logits is not None
    return logits


def _calibrate_out_of_fold(cfg: TrainConfig, plan: CalibrationPlan, folder: Path, data: FrameData,
                           episodes: list[int], logits: np.ndarray, fold_steps: int, t0: float,
                           fallback_threshold: float, what: str) -> Calibration:
    """Calibrate on the out-of-fold ``logits`` of the training episodes and store the result in ``folder``; the
    logits are kept in ``output_dir/calibration/out_of_fold.npz`` (with labels, episode and frame indices)."""
    inside = np.flatnonzero(np.isin(data.episode_index, episodes))  # the training rows: every one out of fold once
    ep, fr, y, z = data.episode_index[inside], data.frame_index[inside], data.labels[inside], logits[inside]
    root = Path(cfg.output_dir) / "calibration"
    root.mkdir(parents=True, exist_ok=True)
    write_file(root / "out_of_fold.npz", lambda tmp: _savez(tmp, logits=z, labels=y, episode=ep, frame=fr,
                                                            fps=data.fps))
    cal = calibrate(ep, fr, y, z, fps=data.fps, fallback_threshold=fallback_threshold)
    cal.details.update(method="cv", folds=plan.folds, fold_steps=fold_steps, fold_models=what,
                       seconds=time.perf_counter() - t0, out_of_fold=out_of_fold_metrics(ep, fr, y, z, data.fps, cal))
    store_calibration(folder, cal, fallback_threshold)
    return cal


def _savez(path: Path, **arrays) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a name
        np.savez(f, **arrays)


def out_of_fold_metrics(episode_index: np.ndarray, frame_index: np.ndarray, labels: np.ndarray, logits: np.ndarray,
                        fps: float, cal: Calibration) -> dict:
    """Accuracy (and, binary, gross false terminations) of the out-of-fold logits at the calibrated threshold and
    at 0.5: what a model trained like these is likely to do on new episodes (evidence from training episodes, out
    of fold; the held-out episodes, if any, say what the deployed model does)."""
    if logits.ndim == 2:
        return {"accuracy": float((logits.argmax(axis=1) == labels).mean())}
    probs = sigmoid(logits / cal.temperature)
    out = {}
    for name, t in (("calibrated", cal.threshold), ("at_0.5", 0.5)):
        ep = episode_metrics(episode_index, frame_index, labels, probs, t, fps=fps,
                             tolerance_s=cal.details["tolerance_s"])
        out[name] = {"threshold": t, "accuracy": float(((probs >= t) == (labels == 1)).mean()),
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
        k, n = len(d["folds"]), d["fold_steps"]
        how = {"ensemble members": f"the deployed ensemble's {k} members, {n} steps each, each on the fold it never "
                                   f"saw",
               "fold heads": f"fold heads of {n} steps on the cached features"}.get(d.get("fold_models"),
                                                                                    f"fold models of {n} steps")
        head = (f"calibration by {k} folds over episodes {d['episodes']} (out of fold: {how}): temperature "
                f"{cal.temperature:.3g}")
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
                 f"terminations in {oof['episodes']} episodes")
    return line
