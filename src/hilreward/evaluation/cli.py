"""``hilreward eval`` and ``hilreward predict``: key=value options -> evaluate() / predict()."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..config import DatasetConfig, LabelConfig, parse_overrides
from ..errors import ConfigError


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
    write_threshold: bool = False
    """Store the recommended threshold in the checkpoint's config.json."""
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


def _checkpoint_label(checkpoint: str, args: list[str], given: LabelConfig) -> LabelConfig:
    """The checkpoint's training label config with the ``label.*`` keys given on the command line applied."""
    from .evaluate import checkpoint_dir, load_train_config

    train_cfg = load_train_config(checkpoint_dir(checkpoint))
    base = train_cfg.label if train_cfg is not None else LabelConfig()
    keys = {a.split("=", 1)[0][len("label."):] for a in args if a.startswith("label.")}
    return dataclasses.replace(base, **{k: getattr(given, k) for k in keys})


def format_summary(m: dict) -> str:
    """A few lines for the terminal: headline metrics and the threshold table."""
    def f(v, d=4):
        return "-" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))

    lines = [f"{m['frames']} frames, {m['episodes']} episodes"
             + (f", {m['positives']} positive / {m['negatives']} negative" if m.get("positives") is not None else "")]
    lines.append("  ".join(f"{k} {f(m[k])}" for k in ("accuracy", "balanced_accuracy", "auroc", "average_precision",
                                                         "ece", "temperature")))
    if m.get("thresholds"):
        head = f"{'threshold choice':<26}{'value':>8}{'prec':>8}{'recall':>8}{'acc':>8}{'false_term':>11}" \
               f"{'missed':>8}{'delay':>7}"
        lines += [head, "-" * len(head)]
        for r in m["thresholds"]:
            lines.append(f"{r['name']:<26}{f(r['threshold']):>8}{f(r.get('precision')):>8}{f(r.get('recall')):>8}"
                         f"{f(r.get('accuracy')):>8}{f(r.get('false_terminations')):>11}"
                         f"{f(r.get('missed_successes')):>8}{f(r.get('mean_detection_delay_frames'), 1):>7}")
        lines.append(f"recommended_threshold {f(m['recommended_threshold'])} (consecutive={m['consecutive']}, "
                     f"target_precision={m['target_precision']})")
    return "\n".join(lines)


def eval_main(args: list[str]) -> int:
    from .evaluate import evaluate

    opts: EvalOptions = parse_overrides(EvalOptions, args)
    if not opts.checkpoint:
        raise ConfigError("pass checkpoint=<checkpoint dir or Hub repo id>, e.g. "
                          "hilreward eval checkpoint=outputs/train/checkpoints/best heldout=true")
    label = _checkpoint_label(opts.checkpoint, args, opts.label)
    m = evaluate(opts.checkpoint, opts.dataset, label, consecutive=opts.consecutive,
                 target_precision=opts.target_precision, output_dir=opts.output_dir,
                 write_threshold=opts.write_threshold, heldout=opts.heldout, batch_size=opts.batch_size,
                 threshold=opts.threshold, report=opts.report, gallery_size=opts.gallery_size,
                 cache_dir=opts.cache_dir, device=opts.device)
    print(format_summary(m))
    if opts.write_threshold:
        print(f"wrote threshold {m['recommended_threshold']:.6g} to {Path(m['config']['checkpoint']) / 'config.json'}")
    out = Path(opts.output_dir)
    written = ["metrics.json", "predictions.parquet"] + (["report.html"] if opts.report else [])
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    return 0


def predict_main(args: list[str]) -> int:
    from .evaluate import predict

    opts: PredictOptions = parse_overrides(PredictOptions, args)
    if not opts.checkpoint:
        raise ConfigError("pass checkpoint=<checkpoint dir or Hub repo id> and dataset.root=<folder>")
    path = predict(opts.checkpoint, opts.dataset, opts.output, batch_size=opts.batch_size,
                   cache_dir=opts.cache_dir, device=opts.device)
    print(f"wrote per-frame probabilities to {path}")
    return 0
