"""Run a checkpoint over a dataset: per-frame probabilities, metrics.json, report.html, threshold write-back.

``evaluate`` is the Python API behind ``hilreward eval``; ``predict`` the one behind
``hilreward predict`` (no labels needed). The metric definitions and the ``metrics.json`` keys
are documented in :mod:`hilreward.evaluation.metrics`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..config import DatasetConfig, LabelConfig, TrainConfig, from_yaml
from ..data import load_frame_data, open_dataset
from ..data.labels import describe_alignment
from ..errors import CheckpointError, ConfigError, DatasetError, EvidenceError
from ..models.checkpoint import resolve_checkpoint, update_config
from ..models.lerobot_import import is_lerobot_checkpoint
from ..models.loading import load_classifier
from ..success import check_success_class, successes
from . import metrics as M
from .episodes import DEFAULT_TOLERANCE_S
from .inference import batched_logits
from .report import Comparison, GalleryItem, read_history, worst_errors, write_report
from .thresholds import EvidenceRule
from ..utils import jsonable, write_atomic, write_file
from ..constants import HISTORY_NAME, METRICS_NAME, TRAIN_CONFIG_NAME



# ----------------------------------------------------------------------------- checkpoint side


def checkpoint_dir(checkpoint: str | os.PathLike) -> Path:
    """A local checkpoint directory, or the snapshot of a Hub repo id (cache only when offline)."""
    return Path(resolve_checkpoint(checkpoint))


def load_train_config(folder: Path) -> Optional[TrainConfig]:
    """The checkpoint's saved training config, or None when it has none."""
    path = folder / TRAIN_CONFIG_NAME
    if not path.is_file():
        return None
    try:
        return from_yaml(path.read_text())
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}; re-save the checkpoint or pass dataset/label options explicitly") from None


def heldout_episodes(folder: Path, train_cfg: Optional[TrainConfig]) -> list[int]:
    """The episodes the checkpoint's training run held out (``split.val_episodes`` of train_config.yaml)."""
    if train_cfg is None:
        raise CheckpointError(f"heldout=true: {folder} has no {TRAIN_CONFIG_NAME} saying which episodes its training "
                              f"held out; pass the episodes to evaluate with dataset.episodes=[...] (or "
                              f"dataset.root=<a set it never saw>)")
    if not train_cfg.split.val_episodes:
        trained = _trained_on(folder)
        raise CheckpointError(
            f"heldout=true: the run that made {folder} held out no episode (it trained on "
            f"{_episode_list(trained) if trained else 'every episode'}), so nothing is left to evaluate honestly; "
            f"pass dataset.root=<episodes it never saw> (or dataset.episodes=[...] knowing they were trained on), "
            f"or train again with split.val_fraction=0.2 or split.val_episodes=[...]")
    return [int(e) for e in train_cfg.split.val_episodes]


def _trained_on(folder: Path) -> list[int]:
    try:
        return [int(e) for e in json.loads((folder / METRICS_NAME).read_text()).get("train_episodes") or []]
    except (OSError, ValueError):
        return []


def write_threshold_to_checkpoint(folder: Path, threshold: float) -> Path:
    """Store ``threshold`` in the checkpoint's config.json (atomic rewrite; other keys untouched)."""
    return update_config(folder, {"threshold": float(threshold)})


# ----------------------------------------------------------------------------- data and inference


def _resolve_dataset(dataset: Optional[DatasetConfig], train_cfg: Optional[TrainConfig], folder: Path,
                     heldout: bool, camera_keys: list[str]) -> DatasetConfig:
    ds = dataclasses.replace(dataset) if dataset is not None else DatasetConfig()
    if ds.root is None and ds.repo_id is None:
        if train_cfg is None or (train_cfg.dataset.root is None and train_cfg.dataset.repo_id is None):
            raise ConfigError("no dataset given: pass dataset.root=<folder> or dataset.repo_id=<hub id> "
                              f"({folder} has no train_config.yaml naming its training data)")
        ds.root, ds.repo_id, ds.revision = train_cfg.dataset.root, train_cfg.dataset.repo_id, train_cfg.dataset.revision
    if heldout:
        if ds.episodes is not None:
            raise ConfigError("heldout=true takes the episodes from the checkpoint; drop dataset.episodes=[...] "
                              "or heldout=true")
        ds.episodes = heldout_episodes(folder, train_cfg)
    ds.cameras = list(camera_keys)
    return ds


def _check_cameras(ds: DatasetConfig, camera_keys: list[str], folder: Path) -> None:
    available = open_dataset(dataclasses.replace(ds, cameras=None)).camera_keys
    missing = [k for k in camera_keys if k not in available]
    if missing:
        raise DatasetError(
            f"the checkpoint {folder} expects cameras {camera_keys}, but the dataset "
            f"{ds.root or ds.repo_id} has {available or 'none'} (missing {missing}); evaluate on data recorded "
            "with the same cameras, or train a checkpoint on these cameras")


def run_model(model, images: dict[str, np.ndarray], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(logits, probabilities) for every row of ``images`` (camera key -> uint8 (N,H,W,3))."""
    logits = batched_logits(model, images=images, batch_size=batch_size)
    with torch.inference_mode():
        return logits, model.probabilities(torch.from_numpy(logits)).float().numpy()


def _prediction_table(data, probs: np.ndarray, labels: Optional[np.ndarray], threshold: Optional[float],
                      with_timestamp: bool, success_class: int = -1):
    import pyarrow as pa

    cols: dict[str, Any] = {"episode_index": pa.array(data.episode_index, pa.int64()),
                            "frame_index": pa.array(data.frame_index, pa.int64())}
    if with_timestamp:
        cols["timestamp"] = pa.array(data.timestamp, pa.float64())
    if labels is not None:
        cols["label"] = pa.array(labels, pa.int64())
    if probs.ndim == 1:
        cols["probability"] = pa.array(probs.astype(np.float32), pa.float32())
    else:
        cols["probability"] = pa.array(probs.max(axis=1).astype(np.float32), pa.float32())
        cols["prediction"] = pa.array(probs.argmax(axis=1), pa.int64())
        for c in range(probs.shape[1]):
            cols[f"prob_class_{c}"] = pa.array(probs[:, c].astype(np.float32), pa.float32())
    if threshold is not None and with_timestamp:
        cols["success"] = pa.array(successes(probs, threshold, success_class), pa.bool_())
    return pa.table(cols)


def _write_parquet(path: Path, table) -> None:
    import pyarrow.parquet as pq

    write_file(path, lambda tmp: pq.write_table(table, tmp))


def _episode_list(episodes: list[int]) -> str:
    """[16, 17, 18, 19, 25] -> '16-19, 25'."""
    out, eps = [], sorted(set(episodes))
    i = 0
    while i < len(eps):
        j = i
        while j + 1 < len(eps) and eps[j + 1] == eps[j] + 1:
            j += 1
        out.append(str(eps[i]) if i == j else f"{eps[i]}-{eps[j]}")
        i = j + 1
    return ", ".join(out)


# ----------------------------------------------------------------------------- the API


@dataclass
class Scored:
    """One checkpoint run over the evaluated frames."""

    folder: Path
    model: Any
    data: Any
    preds: M.Predictions
    metrics: dict


def _score(folder: Path, model, ds: DatasetConfig, label: LabelConfig, *, threshold: Optional[float], consecutive: int,
           target_precision: float, tolerance_s: float, evidence: Optional[EvidenceRule], batch_size: int,
           cache_dir: Optional[str]) -> Scored:
    camera_keys = list(model.config.camera_keys)
    ds = dataclasses.replace(ds, cameras=camera_keys)
    _check_cameras(ds, camera_keys, folder)
    data = load_frame_data(ds, label, tuple(model.config.image_size), cache_dir=cache_dir)
    if len(data) == 0:
        raise DatasetError(f"the selection of {ds.root or ds.repo_id} (episodes {ds.episodes}) holds no frames")
    if model.config.num_classes > 2 and int(data.labels.max()) >= model.config.num_classes:
        raise DatasetError(f"label {label.key!r} has class {int(data.labels.max())}, but the checkpoint has "
                           f"{model.config.num_classes} classes; pick the label key the model was trained on")
    logits, probs = run_model(model, {k: data.images[k] for k in camera_keys}, batch_size)
    temperature = float(getattr(model, "temperature", 1.0))
    preds = M.Predictions(data.episode_index, data.frame_index, data.labels, probs, logits / temperature)
    at = float(model.threshold if threshold is None else threshold)
    metrics = M.compute_metrics(preds, threshold=at, consecutive=consecutive, target_precision=target_precision,
                                fps=data.fps, checkpoint_threshold=model.threshold, tolerance_s=tolerance_s,
                                evidence=evidence, checkpoint_temperature=temperature)
    metrics["label_alignment"] = describe_alignment(label.key, label.align)
    return Scored(folder, model, data, preds, metrics)


def evaluate(checkpoint: str | os.PathLike, dataset: Optional[DatasetConfig] = None, label: Optional[LabelConfig] = None,
             consecutive: int = 1, target_precision: float = 0.99, output_dir: str | os.PathLike = "outputs/eval",
             write_threshold: bool = False, heldout: bool = False, batch_size: int = 64,
             threshold: Optional[float] = None, report: bool = True, gallery_size: int = 6,
             cache_dir: Optional[str] = None, device: str = "cpu", tolerance_s: float = DEFAULT_TOLERANCE_S,
             evidence: Optional[EvidenceRule] = None, force: bool = False,
             compare: Optional[str | os.PathLike] = None) -> dict:
    """Evaluate ``checkpoint`` on ``dataset``; write predictions.parquet, metrics.json and report.html.

    ``dataset`` defaults to the checkpoint's training data and ``label`` to its training label
    config (from ``train_config.yaml``); ``heldout=True`` evaluates the episodes that training
    held out. Metrics are taken at ``threshold`` (default: the checkpoint's); a fire more than
    ``tolerance_s`` before the onset is a gross false termination. With ``write_threshold=True``
    the recommended threshold is stored in the checkpoint's config.json, but only when the
    evaluated episodes hold enough evidence (``evidence``, see :mod:`.thresholds`): otherwise
    EvidenceError, unless ``force=True`` (which writes the rule's threshold). ``compare`` names a second
    checkpoint scored on the same frames (``metrics["compare"]``, side by side in the report).
    ``checkpoint`` may also be a LeRobot ``reward_classifier`` checkpoint (imported with its saved
    normalisation; pass ``dataset``, it has no hilreward training config). Returns the content of metrics.json.
    """
    if consecutive < 1:
        raise ConfigError(f"consecutive must be >= 1, got {consecutive}")
    if not 0.0 < target_precision <= 1.0:
        raise ConfigError(f"target_precision must be in (0, 1], got {target_precision}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if tolerance_s < 0:
        raise ConfigError(f"tolerance_s must be >= 0, got {tolerance_s}")
    if write_threshold and not Path(checkpoint).expanduser().is_dir():
        raise ConfigError(f"write_threshold=true needs a local checkpoint directory, not a Hub repo ({checkpoint}); "
                          "download it first (huggingface-cli download <repo> --local-dir <dir>)")
    folder = checkpoint_dir(checkpoint)
    if write_threshold and is_lerobot_checkpoint(folder):
        raise ConfigError(f"write_threshold=true: {folder} is a LeRobot checkpoint, whose config has no threshold; "
                          "pass the recommended threshold as RewardFunction(success_threshold=...) instead")
    model = load_classifier(folder, device=device)
    if write_threshold and model.config.num_classes > 2:
        raise ConfigError("write_threshold=true needs a binary classifier; a multi-class checkpoint has no "
                          "single success threshold")
    train_cfg = load_train_config(folder)
    ds = _resolve_dataset(dataset, train_cfg, folder, heldout, list(model.config.camera_keys))
    label = label or (train_cfg.label if train_cfg is not None else LabelConfig())
    options = dict(consecutive=consecutive, target_precision=target_precision, tolerance_s=tolerance_s,
                   evidence=evidence, batch_size=batch_size, cache_dir=cache_dir)
    main = _score(folder, model, ds, label, threshold=threshold, **options)
    result = main.metrics
    other = None
    if compare is not None:
        other_folder = checkpoint_dir(compare)
        other = _score(other_folder, load_classifier(other_folder, device=device), ds, label, threshold=None,
                       **options)
        if not (np.array_equal(other.data.episode_index, main.data.episode_index)
                and np.array_equal(other.data.frame_index, main.data.frame_index)):
            raise DatasetError(f"{compare} and {checkpoint} were not scored on the same frames")
        result["compare"] = {"checkpoint": str(other_folder), **other.metrics}
    eval_config = {
        "checkpoint": str(folder), "dataset": dataclasses.asdict(ds), "label": dataclasses.asdict(label),
        "heldout": heldout, "consecutive": consecutive, "target_precision": target_precision,
        "tolerance_s": tolerance_s, "threshold": threshold, "write_threshold": write_threshold, "force": force,
        "evidence": dataclasses.asdict(evidence or EvidenceRule()),
        "compare": None if compare is None else str(compare),
        "batch_size": batch_size,
    }
    result["config"] = eval_config

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = _prediction_table(main.data, main.preds.probs, main.data.labels, None, False)
    if other is not None and other.preds.binary:
        table = table.append_column("probability_compare", _pa_float32(other.preds.probs))
    _write_parquet(out / "predictions.parquet", table)
    written = _threshold_to_write(result, force) if write_threshold else None
    if written is not None:
        write_threshold_to_checkpoint(folder, written)
        result["threshold_written"] = written
    write_atomic(out / METRICS_NAME, json.dumps(result, indent=2, default=jsonable) + "\n")
    if report:
        _write_report(out, main, other, ds, label, eval_config, train_cfg, gallery_size)
    if write_threshold and written is None:
        ev = result["threshold_evidence"]
        raise EvidenceError(
            f"write_threshold=true refused: {ev['reason']}; the checkpoint keeps {model.threshold:.4g}. Evaluate on "
            f"more episodes (dataset.episodes=[...]), or pass force=true to write the rule's threshold "
            f"({_fmt_threshold(result['rule_threshold'])}) anyway. Metrics and report are in {out}")
    return result


def _threshold_to_write(result: dict, force: bool) -> Optional[float]:
    """The threshold ``write_threshold`` stores: the recommendation when the evidence suffices, the rule's when
    forced, None when refused."""
    if result["threshold_evidence"]["enough"]:
        return result["recommended_threshold"]
    return result["rule_threshold"] if force and result["rule_threshold"] is not None else None


def _fmt_threshold(t: Optional[float]) -> str:
    return "none exists on this set" if t is None else f"{t:.4g}"


def _pa_float32(values: np.ndarray):
    import pyarrow as pa

    return pa.array(np.asarray(values, dtype=np.float32), pa.float32())


def _write_report(out: Path, main: Scored, other: Optional[Scored], ds: DatasetConfig, label: LabelConfig,
                  eval_config: dict, train_cfg: Optional[TrainConfig], gallery_size: int) -> None:
    result, data, preds, model = main.metrics, main.data, main.preds, main.model
    camera_keys = list(model.config.camera_keys)
    summary = {
        "checkpoint": str(main.folder), "dataset": str(ds.root or ds.repo_id),
        "episodes": _episode_list(list(np.unique(data.episode_index))), "frames": len(data),
        "fps": data.fps, "cameras": ", ".join(camera_keys),
        "image size": "x".join(str(s) for s in model.config.image_size), "encoder": model.config.encoder,
        "label": f"{label.key} (threshold={label.threshold})",
        "label alignment": result["label_alignment"],
        "positives": result["positives"], "negatives": result["negatives"],
        "dataset fingerprint": data.fingerprint,
    }
    if other is not None:
        summary["compared with"] = str(other.folder)
    gallery = []
    if preds.binary:
        for kind, i in worst_errors(preds, result["threshold"], gallery_size):
            gallery.append(GalleryItem(kind, int(data.episode_index[i]), int(data.frame_index[i]),
                                       float(preds.probs[i]), {k: np.asarray(data.images[k][i]) for k in camera_keys}))
    config = {"eval": eval_config, "checkpoint_config": model.config.to_dict(),
              "train_config": dataclasses.asdict(train_cfg) if train_cfg is not None else None}
    history, step = run_history(main.folder)
    write_report(out / "report.html", result, preds, gallery, summary, config,
                 title=f"hilreward evaluation: {main.folder.name}",
                 compare=None if other is None else Comparison(short_names(main.folder, other.folder),
                                                               other.preds, other.metrics),
                 history=history, history_step=step)


def run_history(folder: Path) -> tuple[Optional[list[dict]], Optional[int]]:
    """The training history of a checkpoint (its own ``metrics.jsonl``, else its run's when it sits in
    ``<run>/checkpoints/``) and the step it was saved at; (None, None) when there is none."""
    for path in (folder / HISTORY_NAME, folder.parent.parent / HISTORY_NAME):
        if path.is_file() and (path.parent == folder or folder.parent.name == "checkpoints"):
            try:
                step = json.loads((folder / METRICS_NAME).read_text()).get("step")
            except (OSError, ValueError):
                step = None
            return read_history(path), step
    return None, None


def short_names(a: Path, b: Path) -> tuple[str, str]:
    """Names of two checkpoints for tables: the fewest trailing folders (at least two, ``checkpoints`` left out)
    that tell them apart, e.g. ``s600/run/best`` and ``s300/run/best``."""
    pa, pb = ([p for p in Path(x).resolve().parts if p != "checkpoints"] for x in (a, b))
    for k in range(2, max(len(pa), len(pb)) + 1):
        if pa[-k:] != pb[-k:]:
            return "/".join(pa[-k:]), "/".join(pb[-k:])
    return str(a), str(b)


def predict(checkpoint: str | os.PathLike, dataset: DatasetConfig, output: str | os.PathLike,
            batch_size: int = 64, label: Optional[LabelConfig] = None, cache_dir: Optional[str] = None,
            device: str = "cpu", success_class: int = -1) -> Path:
    """Per-frame probabilities of ``checkpoint`` on ``dataset`` (labels optional) -> a parquet file.

    Columns: episode_index, frame_index, timestamp, probability (P(success); for multi-class the top
    class probability, with prediction (the arg-max class) and prob_class_<k>), success (the success decision of
    :mod:`hilreward.success` at the checkpoint's threshold: for multi-class, class ``success_class``'s probability)
    and label when the label column exists.
    """
    if dataset.root is None and dataset.repo_id is None:
        raise ConfigError("no dataset given: pass dataset.root=<folder> or dataset.repo_id=<hub id>")
    folder = checkpoint_dir(checkpoint)
    model = load_classifier(folder, device=device)
    check_success_class(model.config.num_classes, success_class)
    train_cfg = load_train_config(folder)
    camera_keys = list(model.config.camera_keys)
    ds = dataclasses.replace(dataset, cameras=camera_keys)
    _check_cameras(ds, camera_keys, folder)
    label = label or (train_cfg.label if train_cfg is not None else LabelConfig())
    data = load_frame_data(ds, label, tuple(model.config.image_size), cache_dir=cache_dir, require_labels=False)
    _, probs = run_model(model, {k: data.images[k] for k in camera_keys}, batch_size)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    _write_parquet(output, _prediction_table(data, probs, data.labels, model.threshold, True, success_class))
    return output
