"""Loss, predictions and classification metrics for binary (one logit) and multi-class (K logits) heads."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """BCE-with-logits on one logit (binary), cross-entropy on integer labels (multi-class)."""
    if num_classes > 2:
        return F.cross_entropy(logits.float(), labels.long())
    return F.binary_cross_entropy_with_logits(logits.float().reshape(-1), labels.float())


def probabilities(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Sigmoid (binary, (B,)) or softmax (multi-class, (B,K))."""
    return torch.softmax(logits.float(), dim=-1) if num_classes > 2 else torch.sigmoid(logits.float().reshape(-1))


def predictions(logits: torch.Tensor, num_classes: int, threshold: float = 0.5) -> torch.Tensor:
    """Predicted class per row: argmax (multi-class) or ``sigmoid >= threshold`` (binary)."""
    if num_classes > 2:
        return logits.argmax(dim=-1)
    return (probabilities(logits, num_classes) >= threshold).long()


def correct_predictions(logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
                        threshold: float = 0.5) -> torch.Tensor:
    return predictions(logits, num_classes, threshold) == labels.long()


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
