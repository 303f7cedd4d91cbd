"""hilreward.evaluation: honest metrics for a reward classifier, threshold choice, calibration, report.html.

    from hilreward.evaluation import evaluate
    m = evaluate("outputs/train/checkpoints/best", heldout=True, consecutive=2, output_dir="outputs/eval")
    m["recommended_threshold"], m["threshold_evidence"], m["gross_false_terminations"], m["auroc"]

The metric definitions and the stable ``metrics.json`` keys are documented in
:mod:`hilreward.evaluation.metrics`; the threshold rule and its evidence gate in
:mod:`hilreward.evaluation.thresholds`.
"""

from .evaluate import evaluate, predict
from .metrics import STABLE_KEYS, Predictions, compute_metrics
from .thresholds import EvidenceRule, choose_threshold

__all__ = ["STABLE_KEYS", "EvidenceRule", "Predictions", "choose_threshold", "compute_metrics", "evaluate", "predict"]
