"""The one loop that runs a model over many stored frames: training's validation, calibration's and the folds'
logits, ``hilreward eval`` and ``predict``, and the retrainer's feature pool. (The reward function runs single
steps.)"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..data import gather_rows


@torch.inference_mode()
def batched_logits(model, rows: Optional[np.ndarray] = None, images: Optional[dict[str, np.ndarray]] = None,
                   features: Optional[dict[str, np.ndarray]] = None, batch_size: int = 64,
                   stage: Optional[torch.nn.Module] = None) -> np.ndarray:
    """Raw logits, (N,) or (N, K), of ``model`` on ``rows`` (default: all) of cached encoder ``features`` (camera
    key -> (N, C, h, w): the head only; with ``stage``, the encoder's last stage, they are its inputs, as in
    ``fit_head``) or else of ``images`` (camera key -> uint8 (N, H, W, 3), e.g. a frame cache), ``batch_size`` rows
    at a time, in eval mode. Probabilities: ``model.probabilities(logits)``."""
    source = features if features is not None else images
    if source is None:
        raise ValueError("batched_logits needs images or features")
    rows = np.arange(len(next(iter(source.values())))) if rows is None else np.asarray(rows)
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(rows), batch_size):
        batch = {c: torch.from_numpy(v) for c, v in gather_rows(source, rows[start:start + batch_size]).items()}
        if features is not None:
            inputs = {c: v.float().to(device) for c, v in batch.items()}
            logits = model.head(inputs if stage is None else {c: stage(v) for c, v in inputs.items()})
        else:
            logits = model(model.preprocess({c: v.to(device) for c, v in batch.items()}))
        out.append(logits.float().cpu().numpy())
    k = model.config.num_classes
    return np.concatenate(out) if out else np.zeros((0,) if k == 2 else (0, k), dtype=np.float32)
