"""``hilreward eval`` and ``hilreward predict``: key=value options -> evaluate() / predict()."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..config import DatasetConfig, LabelConfig, parse_overrides
from ..errors import ConfigError
from .evaluate import checkpoint_dir, evaluate, load_train_config, predict, short_names
from .thresholds import EvidenceRule
from ..constants import METRICS_NAME


@dataclass
class EvalOptions:
    checkpoint: Optional[str] = None
    """Checkpoint directory (e.g. outputs/train/checkpoints/best) or Hub repo id. Required."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """Data to evaluate on; default: the checkpoint's training dataset (from its train_config.yaml)."""
    label: LabelConfig = field(default_factory=LabelConfig)
    """Label source; keys not given default to the checkpoint's training label config."""
    heldout: bool = False
    """Evaluate the episodes the training run held out (split.val_episodes of the checkpoint)."""
    consecutive: int = 1
    """Debounce of the episode metrics: the reward fires after this many frames in a row >= threshold."""
    target_precision: float = 0.99
    """Frame precision the precision-based threshold choice must reach."""
    threshold: Optional[float] = None
    """Threshold of the frame and episode metrics; default: the checkpoint's threshold."""
    tolerance_s: float = 0.5
    """A fire more than this many seconds before the true onset (or in a failed episode) is a gross false
    termination; within it, jitter."""
    write_threshold: bool = False
    """Store the recommended threshold in the checkpoint's config.json; refused when the episodes hold too little
    evidence (see min_positives, min_success_episodes) unless force=true."""
    force: bool = False
    """With write_threshold=true: write the rule's threshold even on too little evidence."""
    min_positives: int = 20
    """Positive frames the evaluated episodes must hold before the recommended threshold moves."""
    min_success_episodes: int = 3
    """Succeeding episodes the evaluated episodes must hold before the recommended threshold moves."""
    max_recall_cost: float = 0.02
    """The strict threshold (no early fire at all) is recommended only when it loses at most this much recall."""
    max_recall_loss: Optional[float] = 0.02
    """The recommended threshold loses at most this much recall against the checkpoint's threshold; null: no bound."""
    max_missed: float = 0.5
    """The rule's threshold is recommended only when it never fires in at most this fraction of the succeeding
    episodes."""
    compare: Optional[str] = None
    """A second checkpoint scored on the same episodes, side by side in the table and the report."""
    output_dir: str = "outputs/eval"
    """Where predictions.parquet, metrics.json and report.html go."""
    batch_size: int = 64
    """Frames per forward pass."""
    report: bool = True
    """Write report.html."""
    gallery_size: int = 6
    """False positives and false negatives each shown in the report's gallery."""
    cache_dir: Optional[str] = None
    """Frame cache root (default $HILREWARD_CACHE or ~/.cache/hilreward)."""
    device: str = "cpu"
    """Torch device for inference."""


@dataclass
class PredictOptions:
    checkpoint: Optional[str] = None
    """Checkpoint directory or Hub repo id. Required."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """Data to score (labels not needed)."""
    output: str = "predictions.parquet"
    """Parquet file to write: episode_index, frame_index, timestamp, probability, success (+ label if present)."""
    batch_size: int = 64
    """Frames per forward pass."""
    cache_dir: Optional[str] = None
    """Frame cache root (default $HILREWARD_CACHE or ~/.cache/hilreward)."""
    device: str = "cpu"
    """Torch device for inference."""
    success_class: int = -1
    """Multi-class only: the class whose probability at the checkpoint's threshold decides ``success`` (default:
    the last), as ``hilreward serve``'s ``success_class``."""


def _checkpoint_label(checkpoint: str, args: list[str], given: LabelConfig) -> LabelConfig:
    """The checkpoint's training label config with the ``label.*`` keys given on the command line applied."""
    train_cfg = load_train_config(checkpoint_dir(checkpoint))
    base = train_cfg.label if train_cfg is not None else LabelConfig()
    keys = {a.split("=", 1)[0][len("label."):] for a in args if a.startswith("label.")}
    return dataclasses.replace(base, **{k: getattr(given, k) for k in keys})


def _f(v, d=4) -> str:
    return "-" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))


SUMMARY_COLUMNS = [("threshold", "value", 8, 4), ("precision", "prec", 8, 4), ("recall", "recall", 8, 4),
                   ("accuracy", "acc", 8, 4), ("gross_false_terminations", "gross", 7, 0),
                   ("false_successes_in_failed_episodes", "in_failed", 10, 0),
                   ("false_terminations", "strict", 8, 0), ("missed_successes", "missed", 8, 0),
                   ("onset_error_median_frames", "|err|med", 9, 1), ("onset_error_p90_frames", "p90", 6, 1)]


def _row(name: str, r: dict, width: int = 31) -> str:
    return f"{name:<{width}}" + "".join(f"{_f(r.get(k), d):>{w}}" for k, _, w, d in SUMMARY_COLUMNS)


def format_summary(m: dict) -> str:
    """A few lines for the terminal: headline metrics, the threshold table, the evidence, the comparison."""
    lines = [f"{m['frames']} frames, {m['episodes']} episodes"
             + (f", {m['positives']} positive / {m['negatives']} negative" if m.get("positives") is not None else "")
             + (f"; labels {m['label_alignment']}" if m.get("label_alignment") else "")]
    lines.append("  ".join(f"{k} {_f(m[k])}" for k in ("accuracy", "balanced_accuracy", "auroc", "average_precision",
                                                          "ece", "temperature")))
    if m.get("thresholds"):
        head = f"{'threshold choice':<31}" + "".join(f"{c:>{w}}" for _, c, w, _ in SUMMARY_COLUMNS)
        lines += [head, "-" * len(head)]
        lines += [_row(r["name"], r) for r in m["thresholds"]]
        ev = m["threshold_evidence"]
        lines.append(f"recommended_threshold {_f(m['recommended_threshold'])} (consecutive={m['consecutive']}, "
                     f"target_precision={m['target_precision']}, tolerance_s={m['tolerance_s']:g}): {ev['reason']}")
        iv = m.get("recommended_interval")
        if iv:
            lines.append("  95 % bootstrap over episodes: " + ", ".join(
                f"{k} [{lo:.3f}, {hi:.3f}]" for k, (lo, hi) in iv.items()))
    if m.get("compare") and m["compare"].get("threshold") is not None:
        names = short_names(Path(m["config"]["checkpoint"]), Path(m["compare"]["checkpoint"]))
        lines += ["compared on the same frames, each at its own threshold:",
                  _row(names[0], m), _row(names[1], m["compare"])]
    return "\n".join(lines)


def eval_main(args: list[str]) -> int:
    opts: EvalOptions = parse_overrides(EvalOptions, args)
    if not opts.checkpoint:
        raise ConfigError("pass checkpoint=<checkpoint dir or Hub repo id>, e.g. "
                          "hilreward eval checkpoint=outputs/train/checkpoints/best heldout=true")
    label = _checkpoint_label(opts.checkpoint, args, opts.label)
    evidence = EvidenceRule(min_positives=opts.min_positives, min_success_episodes=opts.min_success_episodes,
                            max_recall_cost=opts.max_recall_cost, max_missed=opts.max_missed,
                            max_recall_loss=opts.max_recall_loss)
    m = evaluate(opts.checkpoint, opts.dataset, label, consecutive=opts.consecutive,
                 target_precision=opts.target_precision, output_dir=opts.output_dir,
                 write_threshold=opts.write_threshold, heldout=opts.heldout, batch_size=opts.batch_size,
                 threshold=opts.threshold, report=opts.report, gallery_size=opts.gallery_size,
                 cache_dir=opts.cache_dir, device=opts.device, tolerance_s=opts.tolerance_s, evidence=evidence,
                 force=opts.force, compare=opts.compare)
    print(format_summary(m))
    if "threshold_written" in m:
        print(f"wrote threshold {m['threshold_written']:.6g} to {Path(m['config']['checkpoint']) / 'config.json'}")
    out = Path(opts.output_dir)
    written = [METRICS_NAME, "predictions.parquet"] + (["report.html"] if opts.report else [])
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    return 0


def predict_main(args: list[str]) -> int:
    opts: PredictOptions = parse_overrides(PredictOptions, args)
    if not opts.checkpoint:
        raise ConfigError("pass checkpoint=<checkpoint dir or Hub repo id> and dataset.root=<folder>")
    path = predict(opts.checkpoint, opts.dataset, opts.output, batch_size=opts.batch_size,
                   cache_dir=opts.cache_dir, device=opts.device, success_class=opts.success_class)
    print(f"wrote per-frame probabilities to {path}")
    return 0
