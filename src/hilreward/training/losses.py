"""Loss, predictions and classification metrics for binary (one logit) and multi-class (K logits) heads.

Probabilities come from the model (``RewardClassifier.probabilities``: its temperature, then sigmoid or softmax),
never from raw logits here: a calibrated checkpoint's threshold is a threshold on tempered probabilities."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """BCE-with-logits on one logit (binary), cross-entropy on integer labels (multi-class)."""
    if num_classes > 2:
        return F.cross_entropy(logits.float(), labels.long())
    return F.binary_cross_entropy_with_logits(logits.float().reshape(-1), labels.float())


def predictions(probabilities: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Predicted class per row of a model's probabilities (``model.probabilities(logits)``, temperature included):
    argmax of (B, K) class probabilities, ``p >= threshold`` of (B,) binary ones."""
    if probabilities.ndim == 2:
        return probabilities.argmax(dim=-1)
    return (probabilities >= threshold).long()


def classification_metrics(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, precision and recall: of the positive class (binary) or macro over the classes (multi-class).

    A class never predicted has precision 1 when it is also absent, else 0 (same rule for recall).
    """
    pred, labels = np.asarray(pred), np.asarray(labels)
    acc = float((pred == labels).mean()) if len(labels) else float("nan")
    classes = [1] if num_classes <= 2 else list(range(num_classes))
    precision, recall = [], []
    for c in classes:
        tp = int(((pred == c) & (labels == c)).sum())
        predicted, actual = int((pred == c).sum()), int((labels == c).sum())
        precision.append(tp / predicted if predicted else float(actual == 0))
        recall.append(tp / actual if actual else float(predicted == 0))
    return {"accuracy": acc, "precision": float(np.mean(precision)), "recall": float(np.mean(recall))}
