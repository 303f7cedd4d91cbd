"""``hilreward train key=value ...``: train a reward classifier, top to bottom.

1. resolve the config (Hydra), resume or start;
2. load frames once (frame cache, resized to ``model.image_size``) and labels; split the episodes (stratified by
   success; held out means held out), decide the calibration, print and save the config (once);
3. build the model (with calibration by folds of an encoder that trains: an ensemble of fold members), choose the
   feature path (frozen encoder: cached features, head only) or the pixel path (encoder runs every step), and log
   the choice;
4. loop: ``train_step`` -> log every ``log_freq`` (one progress display, ``metrics.jsonl``) -> eval every
   ``eval_freq`` -> checkpoint every ``save_freq``;
5. calibrate ``checkpoints/best`` (``training.calibrate``, main process only): on the held-out episodes, or by
   folds of the training episodes (fold heads trained in one pass on the cached features, or the ensemble's
   members, each scoring the fold it never saw), as decided after the labels are read; draw the training curve;
   and return it.

Launched as several processes (``accelerate launch -m hilreward train ...``, see ``distributed.py``) the
same loop runs data-parallel: each process takes its share of every step's batch (``training.batch_size``
is the whole batch), features are computed batch by batch in turns, evaluation is split and gathered,
and only the main process prints, logs to W&B and writes checkpoints and reports.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import TrainConfig, check_values, compose, from_yaml, to_yaml
from ..data import FrameData, balanced_weights, load_frame_data, open_dataset, split_episodes
from ..errors import ConfigError
from ..evaluation.inference import batched_logits
from ..models.classifier import RewardClassifier
from ..models.members import member_parameters
from ..usage import HELP_FLAGS, HelpRequested, wants_help
from .batches import FeatureBatches, MemberBatches, PixelBatches
from .augment import ColorJitter
from .calibrate import (calibrate_by_fold_heads, calibrate_checkpoint, calibrate_members, member_steps,
                        plan_calibration, summary_line)
from .checkpoint import capture_rng, load_training_state, restore_training_state, save_checkpoint
from .distributed import Processes, finish, is_main_process, process_seed
from .features import compute_features, encoder_is_frozen
from .folds import fold_of_row
from .losses import classification_loss, classification_metrics, predictions
from .progress import History, Progress
from .step import TrainedPart, make_optimizer, train_step
from .support_bank import attach_support
from ..utils import remove_partial, replace_dir, write_atomic
from ..constants import HISTORY_NAME, METRICS_NAME, STATE_JSON, TRAIN_CONFIG_NAME


def main(args: list[str]) -> int:
    if wants_help(args):  # the keys with their defaults (and what a group given, e.g. model=scratch, changes)
        rest = [a for a in args if a not in HELP_FLAGS]
        raise HelpRequested(TrainConfig, defaults={TrainConfig: compose(rest)},
                            note="Defaults as compose() resolves them (add model=scratch to see that preset's); "
                                 "Hydra-style overrides: model=scratch, training.steps=600, +group=... .")
    best = train(compose(args))
    if is_main_process():
        print(f"best checkpoint: {best}")
    finish()
    return 0


# ---- validation on the held-out episodes -------------------------------------------------------
def validate(model, data: FrameData, rows: np.ndarray, features: dict[str, np.ndarray] | None, batch_size: int,
             processes: Processes | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """(metrics, predicted class per row, probability per row (B,) or (B,K)) on ``rows`` of ``data``.

    With several ``processes`` each runs its share of ``rows`` and every process gets all results.
    """
    procs = processes or Processes(next(model.parameters()).device)
    num_classes = model.config.num_classes
    t0 = time.perf_counter()
    mine = rows[procs.share(len(rows))]
    logits = torch.from_numpy(batched_logits(model, mine, data.images, features, batch_size))
    with torch.inference_mode():
        loss = classification_loss(logits, torch.from_numpy(data.labels[mine]), num_classes).item() * len(mine) \
            if len(mine) else 0.0
        probs = model.probabilities(logits)
        preds = predictions(probs, model.threshold)
    parts = procs.gather((loss, preds.numpy(), probs.numpy()))  # shares in process order: rows' order
    pred = np.concatenate([p for _, p, _ in parts])
    prob = np.concatenate([p for _, _, p in parts])
    metrics = classification_metrics(pred, data.labels[rows], num_classes)
    out = {"eval/loss": sum(loss for loss, _, _ in parts) / len(rows), **{f"eval/{k}": v for k, v in metrics.items()},
           "eval/eval_s": time.perf_counter() - t0}
    return out, pred, prob


# ---- the run ------------------------------------------------------------------------------------
def train(cfg: TrainConfig, *, progress: Optional[Progress] = None) -> Path:
    """Train as ``cfg`` says; return the best checkpoint directory (``output_dir/checkpoints/best``).

    ``progress`` is the display of an enclosing run (a fold model's run inside ``hilreward suspects``): the run then
    advances it and prints nothing else of its own. A run that fails ends its W&B run as failed (left open, the
    next ``wandb.init`` in this process would log into it)."""
    opened: list = []
    try:
        return _train(cfg, progress, opened)
    finally:
        for logger in opened:
            logger.finish(failed=True)


def _train(cfg: TrainConfig, progress: Optional[Progress], opened: list) -> Path:
    _validate(cfg)
    t_cfg = cfg.training
    procs = Processes.start(t_cfg.device)  # one process, or this one of those `accelerate launch` started
    nested = progress is not None
    say = (lambda *_: None) if nested else procs.print
    if t_cfg.batch_size % procs.count:
        raise ConfigError(f"training.batch_size={t_cfg.batch_size} is the whole batch of a step, shared by "
                          f"{procs.count} processes: make it a multiple of {procs.count}")
    if t_cfg.threads:
        torch.set_num_threads(t_cfg.threads)
    out = Path(cfg.output_dir)
    ckpt_root = out / "checkpoints"
    last_dir = ckpt_root / "last"
    if procs.is_main:  # what a run killed while writing left: swaps undone, temporary files and folders removed
        for folder in (out, ckpt_root):
            remove_partial(folder)
    procs.wait()
    resume_from = _resume_source(cfg, last_dir, procs)
    if resume_from is not None:
        cfg = _merge_resumed(cfg, from_yaml((resume_from / TRAIN_CONFIG_NAME).read_text()))

    ds = open_dataset(cfg.dataset)
    available = [e.index for e in ds.episodes]
    wanted = available if cfg.dataset.episodes is None else [int(e) for e in cfg.dataset.episodes]
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise ConfigError(f"dataset.episodes {missing} are not in {ds.root} (it has episodes "
                          f"{available[0]}..{available[-1]}, {len(available)} in all)")

    # Frames (decoded once, resized to the model's input size in the frame cache) and labels.
    with procs.local_main_first():  # one process per machine decodes; the others read its cache
        data = load_frame_data(replace(cfg.dataset, episodes=sorted(wanted)), cfg.label,
                               tuple(cfg.model.image_size), cache_dir=cfg.cache_dir)
    _check_labels(data.labels, cfg.model.num_classes, cfg.label.key, procs)
    # Split by episode, stratified by success; held out means held out: calibration by folds runs inside the
    # training episodes. The resolved held-out episodes go into the saved config and metrics.
    succeeding = np.unique(data.episode_index[data.labels > 0]).tolist()
    train_eps, val_eps = split_episodes(wanted, cfg.split.val_fraction, cfg.split.seed, cfg.split.val_episodes,
                                        succeeding=succeeding)
    plan = plan_calibration(t_cfg.calibrate, data, train_eps, val_eps, t_cfg.calibrate_folds,
                            cfg.split.seed, procs.count)
    cfg = replace(cfg, split=replace(cfg.split, val_episodes=val_eps))
    config_yaml = to_yaml(cfg)
    say("hilreward train: resolved config\n" + config_yaml)
    if t_cfg.calibrate != "off":
        say(plan.describe())
    if procs.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / TRAIN_CONFIG_NAME, config_yaml)
    if resume_from is not None:
        tensors, state = load_training_state(resume_from)
        _check_same_data(state, data, resume_from)
    train_rows = np.flatnonzero(np.isin(data.episode_index, train_eps))
    val_rows = np.flatnonzero(np.isin(data.episode_index, val_eps))
    train_labels = data.labels[train_rows]
    say(f"data: {len(train_rows)} training frames from {len(train_eps)} episodes "
        f"({int((train_labels > 0).sum())} positive), {len(val_rows)} held-out frames from episodes "
        f"{val_eps}, cameras {data.camera_keys}")
    steps = t_cfg.steps if t_cfg.epochs is None else t_cfg.epochs * math.ceil(len(train_rows) / t_cfg.batch_size)
    # Calibration by folds of a model whose encoder trains: the fold models are the deployed model (an ensemble,
    # trained in this one loop: member i never sees fold i), sharing a budget of steps (see calibrate.member_steps).
    members = len(plan.folds) if plan.method == "cv" and cfg.model.freeze != "all" else 1
    if members > 1:
        steps = member_steps(cfg, steps, members)

    # Model, optimizer (trainable parameters only; a group per ensemble member), cosine schedule down to 10 %.
    _seed_everything(t_cfg.seed)  # the same initial weights in every process
    device = procs.device
    if resume_from is not None:
        model = RewardClassifier.from_pretrained(resume_from, device=str(device))
    else:
        model = RewardClassifier.from_train_config(cfg, data.camera_keys, members=members).to(device)
    if procs.index:  # its own dropout noise
        _seed_everything(process_seed(t_cfg.seed, procs.index))
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [[p for p in ps if p.requires_grad] for ps in member_parameters(model)]
    optimizer = make_optimizer([{"params": g} for g in groups if g], t_cfg.lr, t_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / max(steps, 1))))
    n_params = sum(p.numel() for p in model.parameters())
    where = f"device {device}" + (f", {procs.count} processes (data-parallel)" if procs.count > 1 else "")
    say(f"model: encoder {model.config.encoder} ({'frozen' if encoder_is_frozen(model) else 'trainable'}), "
        f"{sum(p.numel() for p in trainable):,} trainable of {n_params:,} parameters, {where}"
        + (f"; an ensemble of {members} fold members, {steps} steps each" if members > 1 else ""))

    # Feature path (frozen encoder: features computed once, training runs the head) or pixel path.
    # Each process takes its share of every step's batch.
    views, val_features = _choose_path(cfg, model, data, train_rows, len(val_rows), steps, procs, say)
    balanced, weights = cfg.sampler.balanced, balanced_weights(train_labels)
    share = procs.share(t_cfg.batch_size)
    fold = fold_of_row(data.episode_index, plan.folds)
    if views is not None:
        source = FeatureBatches(views, train_rows, train_labels, t_cfg.batch_size, t_cfg.seed, balanced, weights,
                                share=share)
    else:
        aug = cfg.augmentation

        def pixels(rows: np.ndarray, seed: int) -> PixelBatches:
            labels = data.labels[rows]
            return PixelBatches(data.images, rows, labels, t_cfg.batch_size, seed, balanced,
                                balanced_weights(labels), pad=aug.pad if aug.enable else 0, share=share,
                                color=color_jitter(cfg) if aug.enable else None)
        source = pixels(train_rows, t_cfg.seed) if members == 1 else MemberBatches(
            [pixels(train_rows[fold[train_rows] != i], t_cfg.seed * members + i) for i in range(members)])
    net = procs.wrap(TrainedPart(model, from_features=views is not None))  # DDP when data-parallel

    # Resume: optimizer, scheduler, RNG states and step from checkpoints/last.
    start_step, best = 0, (-1.0, float("-inf"))  # (eval accuracy, -eval loss): ties go to the lower loss
    if resume_from is not None:
        start_step = restore_training_state(tensors, state, optimizer, scheduler, procs.index, t_cfg.seed)
        if state.get("best_loss") is not None:
            best = (float(state["best_accuracy"]), -float(state["best_loss"]))
        say(f"resumed from {resume_from} at step {start_step}")

    logger = None
    if cfg.wandb.enable and procs.is_main:
        from .wandb_logger import WandbLogger

        logger = WandbLogger(cfg.wandb, out, asdict(cfg), resume=resume_from is not None)
        opened.append(logger)

    amp_dtype = torch.bfloat16 if (t_cfg.amp and device.type == "cuda") else None
    loader = DataLoader(source, batch_size=None, sampler=range(start_step + 1, steps + 1),
                        num_workers=t_cfg.num_workers, generator=torch.Generator().manual_seed(t_cfg.seed),
                        pin_memory=device.type == "cuda")
    base_metrics = {"train_episodes": train_eps, "val_episodes": val_eps, "dataset_fingerprint": data.fingerprint,
                    "camera_keys": data.camera_keys}
    eval_metrics: dict = {}
    if resume_from is not None:  # the last eval so far, so a finished run resumed still reports it
        saved = json.loads((resume_from / METRICS_NAME).read_text())
        eval_metrics = {k: v for k, v in saved.items() if k.startswith("eval/")}
        if start_step >= steps:
            say(f"the run in {out} already reached step {steps}: nothing to train")
    window: dict[str, list[float]] = {"loss": [], "accuracy": [], "dataloading_s": []}

    def checkpoint(directory: Path, step: int) -> None:  # every process calls it: each one's RNG state is saved
        rng_states = procs.gather(capture_rng())
        if procs.is_main:
            metrics = {"step": step, **base_metrics, **eval_metrics}
            save_checkpoint(directory, model, config_yaml, metrics, step, optimizer, scheduler,
                            extra={"best_accuracy": best[0], "best_loss": -best[1] if best[0] >= 0 else None,
                                   **base_metrics}, rng_states=rng_states)

    # One display for the whole run (the fold models of calibration by folds included), and its local history.
    if nested:
        bar = progress
        bar.update(start_step)
    else:
        bar = Progress(steps + _calibration_steps(cfg, plan, steps, members), initial=start_step,
                       enabled=procs.is_main)
    history = History(out, resume_step=start_step if resume_from is not None else None,
                      enabled=procs.is_main and not nested)
    batches = iter(loader)
    for step in range(start_step + 1, steps + 1):
        t0 = time.perf_counter()
        inputs, labels = next(batches)
        window["dataloading_s"].append(time.perf_counter() - t0)
        inputs = {c: x.to(device, non_blocking=True) for c, x in inputs.items()}
        metrics = train_step(model, inputs, labels.to(device), optimizer, scheduler, forward=net,
                             grad_clip_norm=t_cfg.grad_clip_norm, autocast_dtype=amp_dtype)
        window["loss"].append(metrics["loss"])
        window["accuracy"].append(metrics["accuracy"])
        bar.update(1)

        if step % t_cfg.log_freq == 0 or step == steps:
            logged = procs.mean({f"train/{k}": float(np.mean(v)) for k, v in window.items()})
            logged["train/lr"] = metrics["lr"]
            bar.set_postfix(loss=f"{logged['train/loss']:.4f}", acc=f"{logged['train/accuracy']:.3f}")
            history.log(step, {k: logged[k] for k in ("train/loss", "train/accuracy", "train/lr")})
            if logger:
                logger.log(logged, step)
            window = {k: [] for k in window}

        if len(val_rows) and ((t_cfg.eval_freq and step % t_cfg.eval_freq == 0) or step == steps):
            eval_metrics, pred, prob = validate(model, data, val_rows, val_features, 2 * t_cfg.batch_size, procs)
            if procs.is_main and not nested:
                bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in eval_metrics.items()))
            history.log(step, {k: v for k, v in eval_metrics.items() if k != "eval/eval_s"})
            if logger:
                logger.log(eval_metrics, step)
                _log_samples(logger, data, val_rows, pred, prob, step)
            score = (eval_metrics["eval/accuracy"], -eval_metrics["eval/loss"])
            if score > best:
                best = score
                if plan.method != "cv":
                    checkpoint(ckpt_root / "best", step)

        if step % t_cfg.save_freq == 0 or step == steps:
            checkpoint(ckpt_root / str(step), step)
            checkpoint(last_dir, step)

    calibration = None
    if procs.is_main:
        # Nothing held out, or calibration by folds (its fold models train to the end, so they describe the last
        # step, not a step picked on the held-out episodes): the deployed model is the last.
        if (not len(val_rows) or plan.method == "cv") and last_dir.is_dir():
            replace_dir(ckpt_root / "best", lambda tmp: shutil.copytree(last_dir, tmp, dirs_exist_ok=True))
        if plan.method == "heldout":  # temperature and threshold from the held-out episodes, in checkpoints/best
            calibration = calibrate_checkpoint(ckpt_root / "best", data, val_rows, val_features,
                                               fallback_threshold=cfg.model.threshold, device=device)
        elif plan.method == "cv" and members > 1:  # each member on the fold it never saw
            calibration = calibrate_members(cfg, plan, ckpt_root / "best", data, train_eps, steps,
                                            fallback_threshold=cfg.model.threshold, device=device)
        elif plan.method == "cv":  # a frozen encoder: fold heads on the cached features, in one pass
            bar.phase("Calibration (fold heads)")
            if views is None:  # the run took the pixel path: the fold heads still train on features
                views = _feature_views(cfg, model, data, train_rows, procs)
            calibration = calibrate_by_fold_heads(cfg, plan, ckpt_root / "best", data, train_eps, views, train_rows,
                                                  steps, fallback_threshold=cfg.model.threshold, progress=bar)
        support = attach_support(ckpt_root / "best", data, train_rows, t_cfg.support_frames, cfg.cache_dir,
                                 t_cfg.feature_dtype)
        if support is not None:
            say(f"support bank: {support.size['frames']} training frames in checkpoints/best (familiar "
                f"radius {float(support.radius):.3g})")
        final = {"step": steps, **base_metrics, **eval_metrics, "best_accuracy": best[0],
                 "calibration": calibration.details if calibration else None,
                 "calibration_plan": {"method": plan.method, "reason": plan.reason}}
        write_atomic(out / METRICS_NAME, json.dumps(final, indent=2))
        if history.enabled:  # the curve beside the run, and the history inside the deployed checkpoint
            history.draw()
            write_atomic(ckpt_root / "best" / HISTORY_NAME, history.text())
    if not nested:
        bar.close()
    if logger:
        logger.finish()
    if eval_metrics:
        say(f"held-out episodes {val_eps}: accuracy {eval_metrics['eval/accuracy']:.4f} "
            f"(best {best[0]:.4f}), precision {eval_metrics['eval/precision']:.4f}, "
            f"recall {eval_metrics['eval/recall']:.4f}")
    if t_cfg.calibrate != "off":
        say(summary_line(calibration, plan))
    procs.wait()  # every process returns once the checkpoints (calibrated) are on disk
    return ckpt_root / "best"


# ---- helpers --------------------------------------------------------------------------------------
def _validate(cfg: TrainConfig) -> None:
    t = cfg.training
    if cfg.dataset.root is None and cfg.dataset.repo_id is None:
        raise ConfigError("no dataset: set dataset.root=<folder> or dataset_repo_id=<hub id>")
    check_values(cfg)  # a config built in Python was not parsed
    for key in ("steps", "batch_size", "log_freq", "save_freq"):
        if getattr(t, key) < 1:
            raise ConfigError(f"training.{key}={getattr(t, key)} must be at least 1")
    if t.epochs is not None and t.epochs < 1:
        raise ConfigError(f"training.epochs={t.epochs} must be at least 1 (or null to use training.steps)")
    if cfg.model.num_classes < 2:
        raise ConfigError(f"model.num_classes={cfg.model.num_classes} must be 2 (binary) or more (multi-class)")
    if t.support_frames < 0:
        raise ConfigError(f"training.support_frames={t.support_frames} must be >= 0 (0: no support bank)")
    if t.calibrate_folds < 2:
        raise ConfigError(f"training.calibrate_folds={t.calibrate_folds} must be at least 2")
    if t.calibrate_fold_steps is not None and t.calibrate_fold_steps < 1:
        raise ConfigError(f"training.calibrate_fold_steps={t.calibrate_fold_steps} must be at least 1 (or null: the "
                          f"run's steps)")
    aug = cfg.augmentation
    for key in ("brightness", "contrast", "saturation"):
        if not 0.0 <= getattr(aug, key) <= 1.0:
            raise ConfigError(f"augmentation.{key}={getattr(aug, key)} must be in [0, 1] (0: no jitter)")
    if not 0.0 <= aug.hue <= 0.5:
        raise ConfigError(f"augmentation.hue={aug.hue} must be in [0, 0.5] (a fraction of a full turn)")


def _check_labels(labels: np.ndarray, num_classes: int, key: str, procs: Processes) -> None:
    found = sorted(np.unique(labels).tolist())
    if found and (found[0] < 0 or found[-1] >= num_classes):
        hint = ("set model.num_classes to the number of classes" if num_classes > 2 or found[-1] > 1
                else "check label.key and label.threshold")
        raise ConfigError(f"labels of {key!r} take values {found[:10]}, outside 0..{num_classes - 1} "
                          f"(model.num_classes={num_classes}); {hint}")
    if len(found) < 2:
        procs.print(f"warning: every training label of {key!r} is {found}; the classifier cannot learn a boundary")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _resume_source(cfg: TrainConfig, last_dir: Path, procs: Processes) -> Path | None:
    """``checkpoints/last`` when resuming from it; None for a new run (also after a run killed before saving)."""
    has_last = (last_dir / STATE_JSON).is_file()
    if cfg.resume:
        if has_last:
            return last_dir
        procs.print(f"resume=true but {last_dir} holds no checkpoint yet: starting a new run")
        return None
    if has_last:
        raise ConfigError(f"{cfg.output_dir} already holds a training run ({last_dir}); pass resume=true to "
                          f"continue it, or set output_dir to a new folder")
    return None


def _merge_resumed(cfg: TrainConfig, saved: TrainConfig) -> TrainConfig:
    """Keep the saved split; refuse a different dataset, cameras, labels or model."""
    for section in ("dataset", "label", "model"):
        now, before = asdict(getattr(cfg, section)), asdict(getattr(saved, section))
        diff = {k: (before[k], now[k]) for k in now if now[k] != before[k]}
        if diff:
            detail = "; ".join(f"{section}.{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ConfigError(f"resume=true with a different {section} than the run in {cfg.output_dir} ({detail}); "
                              f"resume with the original settings, or start a new run in another output_dir")
    if cfg.split.val_episodes is not None and cfg.split.val_episodes != saved.split.val_episodes:
        raise ConfigError(f"resume=true with split.val_episodes={cfg.split.val_episodes}, but the run in "
                          f"{cfg.output_dir} held out {saved.split.val_episodes}")
    return replace(cfg, split=saved.split)


def _check_same_data(state: dict, data: FrameData, source: Path) -> None:
    if state.get("camera_keys") != data.camera_keys:
        raise ConfigError(f"resume: {source} was trained on cameras {state.get('camera_keys')}, the dataset now "
                          f"gives {data.camera_keys}; resume with the same cameras or start a new run")
    if state.get("dataset_fingerprint") != data.fingerprint:
        raise ConfigError(f"resume: the dataset's files changed since {source} was written (fingerprint "
                          f"{state.get('dataset_fingerprint')} -> {data.fingerprint}); start a new run")


def _choose_path(cfg: TrainConfig, model, data: FrameData, train_rows: np.ndarray, n_val: int, steps: int,
                 procs: Processes, say=print):
    """(views, val_features) for the feature path, or (None, None) for the pixel path; logs the choice in one line.

    The feature path is taken when the encoder is frozen, ``training.feature_cache=auto`` and computing
    the features (view 0 of every frame, K-1 augmented views of the training frames) costs fewer encoder
    passes than running the encoder on every training sample.
    """
    t = cfg.training
    k = max(1, t.augment_views) if cfg.augmentation.enable else 1
    n_train = len(train_rows)
    pixel_passes = steps * t.batch_size
    feature_passes = k * n_train + n_val
    if t.feature_cache == "off":
        reason = "training.feature_cache=off"
    elif not encoder_is_frozen(model):
        reason = f"the encoder trains (model.freeze={cfg.model.freeze})"
    elif cfg.augmentation.enable and k < 2:
        reason = "augmentation is on and training.augment_views < 2"
    elif feature_passes > pixel_passes:
        reason = f"{feature_passes} encoder passes per camera for {k} views > {pixel_passes} for {steps} steps"
    else:
        say(f"path: feature cache, {len(data)} frames unaugmented + {k - 1} augmented view(s) x {n_train} "
            f"training frames = {feature_passes} encoder passes per camera once"
            f"{f' (shared by {procs.count} processes)' if procs.count > 1 else ''}, then the head only "
            f"(pixel path: {pixel_passes})")
        views = _feature_views(cfg, model, data, train_rows, procs)
        return views, views[0]
    say(f"path: pixels, the encoder runs on every sample ({reason})")
    return None, None


def _feature_views(cfg: TrainConfig, model, data: FrameData, train_rows: np.ndarray,
                   procs: Processes) -> list[dict[str, np.ndarray]]:
    """The frozen encoder's features: view 0 of every row, and ``augment_views - 1`` augmented views of the training
    rows when augmentation is on (computed once, then read from the feature cache)."""
    t = cfg.training
    k = max(1, t.augment_views) if cfg.augmentation.enable else 1
    pad, color = cfg.augmentation.pad, color_jitter(cfg)
    return [compute_features(model, data, batch_size=64, cache_dir=cfg.cache_dir, view=v, pad=pad,
                             dtype=t.feature_dtype, rows=None if v == 0 else train_rows, processes=procs,
                             color=color) for v in range(k)]


def _calibration_steps(cfg: TrainConfig, plan, steps: int, members: int) -> int:
    """Steps the calibration by folds adds to the run's display: the fold heads' pass (an ensemble's members train
    in the run's own loop)."""
    return (cfg.training.calibrate_fold_steps or steps) if plan.method == "cv" and members == 1 else 0


def color_jitter(cfg: TrainConfig) -> ColorJitter:
    a = cfg.augmentation
    return ColorJitter(a.brightness, a.contrast, a.saturation, a.hue)


def _log_samples(logger, data: FrameData, val_rows: np.ndarray, pred: np.ndarray, prob: np.ndarray,
                 step: int) -> None:
    """Evenly spaced held-out frames: each camera's image, predicted and true label, confidence."""
    n = min(logger.num_samples, len(val_rows))
    if n <= 0:
        return
    pick = np.linspace(0, len(val_rows) - 1, n).round().astype(np.int64)
    rows = val_rows[pick]
    p = prob[pick]
    confidence = p.max(axis=-1) if p.ndim == 2 else np.where(pred[pick] == 1, p, 1.0 - p)
    images = {c: np.asarray(data.images[c][rows]) for c in data.camera_keys}
    logger.log_samples(images, pred[pick], data.labels[rows], confidence, step)
