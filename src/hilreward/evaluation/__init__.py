"""hilreward.evaluation: honest metrics for a reward classifier, threshold choice, report.html.

    from hilreward.evaluation import evaluate
    m = evaluate("outputs/train/checkpoints/best", heldout=True, consecutive=2, output_dir="outputs/eval")
    m["recommended_threshold"], m["false_terminations"], m["auroc"]

The metric definitions and the stable ``metrics.json`` keys are documented in
:mod:`hilreward.evaluation.metrics`.
"""

from .evaluate import evaluate, predict
from .metrics import STABLE_KEYS, Predictions, compute_metrics

__all__ = ["STABLE_KEYS", "Predictions", "compute_metrics", "evaluate", "predict"]
