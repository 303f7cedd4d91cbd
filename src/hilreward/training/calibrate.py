"""End-of-run calibration (``training.calibrate=true``): temperature and threshold from the run's own held-out episodes.

The best checkpoint is run over the held-out frames; :func:`hilreward.evaluation.calibration.calibrate`
chooses the temperature and then the threshold on the tempered probabilities under the evidence rule
(too little evidence keeps temperature 1 and the configured threshold, and says why). Both go into
the checkpoint's ``config.json`` (``temperature``, ``threshold``, and ``calibration``: what they rest
on), and the model applies the temperature inside ``RewardClassifier.probabilities``, so the reward
function and every backend (torch, ONNX, gRPC) use them unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..data import FrameData
from ..evaluation.calibration import Calibration, calibrate
from ..models.checkpoint import update_config
from .features import gather_features, to_float_chw


@torch.inference_mode()
def heldout_logits(model, data: FrameData, rows: np.ndarray, features: Optional[dict[str, np.ndarray]] = None,
                   batch_size: int = 64) -> np.ndarray:
    """Raw logits of ``model`` on ``rows`` of ``data`` (from cached encoder features when given)."""
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        idx = rows[start:start + batch_size]
        if features is not None:
            logits = model.head({c: f.to(model.device) for c, f in gather_features(features, idx).items()})
        else:
            pixels = {c: to_float_chw(np.asarray(data.images[c][idx])).to(model.device) for c in data.camera_keys}
            logits = model(model.preprocess(pixels))
        out.append(logits.float().cpu().numpy())
    return np.concatenate(out)


def calibrate_checkpoint(folder: Path, data: FrameData, rows: np.ndarray,
                         features: Optional[dict[str, np.ndarray]] = None, *, fallback_threshold: float = 0.5,
                         device: str | torch.device = "cpu", batch_size: int = 64) -> Optional[Calibration]:
    """Calibrate the checkpoint in ``folder`` on ``rows`` (its held-out frames) and store the result in it."""
    from ..models.classifier import RewardClassifier

    if not len(rows) or not (Path(folder) / "config.json").is_file():
        return None
    model = RewardClassifier.from_pretrained(folder, device=device)
    logits = heldout_logits(model, data, rows, features, batch_size)
    cal = calibrate(data.episode_index[rows], data.frame_index[rows], data.labels[rows], logits, fps=data.fps,
                    fallback_threshold=fallback_threshold)
    threshold = cal.threshold if cal.threshold is not None else model.threshold
    update_config(folder, {"temperature": cal.temperature, "threshold": threshold, "calibration": cal.details})
    return cal


def summary_line(cal: Optional[Calibration]) -> str:
    """One line for the end of ``hilreward train``."""
    if cal is None:
        return "calibration: skipped (no held-out episodes)"
    d = cal.details
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
    return line
