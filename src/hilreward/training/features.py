"""Frozen-feature cache and head-only training.

A frozen encoder maps a frame to the same features every time, so they are computed once per frame
and camera (batched, ``torch.inference_mode``) and kept as float16 (or float32) ``.npy`` memmaps under
``<cache_root>/features/<key>/``. The key covers everything the features depend on: the encoder's
spec, normalisation and weights (a hash of every tensor), the dataset fingerprint, the selected rows,
the frame and model image sizes, and the augmentation view (view 0 is the unaugmented frame; view
``k > 0`` is a random shift, then the colour jitter when one is given, drawn from generators seeded by ``k`` and
the camera, so it is reproducible).
Training on cached features runs only the head. On the CPU the encoder runs through ONNX Runtime
when it exports and matches torch (see :func:`encoder_runner`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
import warnings
from collections import deque
from pathlib import Path
from typing import Callable, Optional, get_args

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import FeatureDtype, TrainingConfig
from ..data import FrameData, balanced_weights, cache_root, gather_rows
from ..errors import ConfigError
from .augment import ColorJitter, random_shift, shift_offsets
from .distributed import Processes
from ..models.preprocessing import to_float_chw
from .step import TrainedPart, make_optimizer, train_step
from .progress import bar_disabled

log = logging.getLogger(__name__)

FEATURES_FORMAT = 3  # 2: computed from frame-cache format 2; 3: from format 3
FEATURE_DTYPES = get_args(FeatureDtype)
_TRAINING = TrainingConfig()
"""``training.*``'s defaults: fit_head's optimiser settings."""


def encoder_parameters(model) -> list[torch.nn.Parameter]:
    return list(model.encoder.parameters())


def head_parameters(model) -> list[torch.nn.Parameter]:
    """Every parameter outside the encoder (the spatial embeddings, projections and MLP)."""
    encoder_ids = {id(p) for p in encoder_parameters(model)}
    return [p for p in model.parameters() if id(p) not in encoder_ids]


def encoder_is_frozen(model) -> bool:
    return not any(p.requires_grad for p in encoder_parameters(model))


def encoder_fingerprint(model) -> str:
    """The encoder's weights fingerprint (spec, options, every tensor) plus the model's normalisation."""
    cfg = model.config
    parts = [model.encoder.weights_fingerprint(), list(cfg.mean), list(cfg.std)]
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=16).hexdigest()


def _rows_fingerprint(data: FrameData, rows: Optional[np.ndarray] = None) -> str:
    pick = slice(None) if rows is None else rows
    h = hashlib.blake2b(digest_size=8)
    h.update(np.ascontiguousarray(data.episode_index[pick], dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(data.frame_index[pick], dtype=np.int64).tobytes())
    return h.hexdigest()


def feature_key(model, data: FrameData, view: int = 0, pad: int = 4, dtype: str = "float16",
                rows: Optional[np.ndarray] = None, part: str = "", color: Optional[ColorJitter] = None) -> str:
    """Cache key of the features of ``data`` (its ``rows``, default all) under ``model``'s encoder (``part``:
    under a named part of it, e.g. ``trunk``)."""
    frame_size = [list(data.images[c].shape[1:3]) for c in data.camera_keys]
    parts = {"format": FEATURES_FORMAT, "encoder": encoder_fingerprint(model) + (f":{part}" if part else ""),
             "dataset": data.fingerprint,
             "rows": _rows_fingerprint(data, rows), "cameras": list(data.camera_keys), "frame_size": frame_size,
             "image_size": list(model.config.image_size), "view": int(view), "pad": int(pad) if view else 0, "dtype": dtype}
    if view and color is not None and color.active:  # keys without colour jitter stay as they were
        parts["color"] = [color.brightness, color.contrast, color.saturation, color.hue]
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=16).hexdigest()


def view_offsets(view: int, camera_index: int, n: int, pad: int) -> torch.Tensor | None:
    """Crop offsets of augmentation ``view`` for ``n`` frames of one camera (None for view 0)."""
    if view == 0:
        return None
    g = torch.Generator().manual_seed(1_000_003 * int(view) + int(camera_index))
    return shift_offsets(n, pad, g)


def view_color(view: int, camera_index: int, n: int, color: Optional[ColorJitter]) -> torch.Tensor | None:
    """Colour-jitter factors of augmentation ``view`` for ``n`` frames of one camera (None for view 0 or no jitter)."""
    if view == 0 or color is None or not color.active:
        return None
    g = torch.Generator().manual_seed(1_000_003 * int(view) + int(camera_index) + 500_009)
    return color.factors(n, g)


def _feature_dir(model, data: FrameData, cache_dir: str | None, view: int = 0, pad: int = 4, dtype: str = "float16",
                 rows: Optional[np.ndarray] = None, part: str = "", color: Optional[ColorJitter] = None) -> Path:
    return cache_root(cache_dir) / "features" / feature_key(model, data, view, pad, dtype, rows, part, color)


def _open_cached(directory: Path, camera_keys) -> Optional[dict[str, np.ndarray]]:
    """The memmaps of a finished cache entry (``done.json`` and every camera's file), else None."""
    paths = {cam: directory / f"{cam}.npy" for cam in camera_keys}
    if not (directory / "done.json").is_file() or not all(p.is_file() for p in paths.values()):
        return None
    return {cam: np.load(p, mmap_mode="r") for cam, p in paths.items()}


def cached_features(model, data: FrameData, cache_dir: str | None,
                    dtype: str = "float16") -> Optional[dict[str, np.ndarray]]:
    """The unaugmented features of every frame of ``data`` under ``model``'s encoder when a run already cached them
    (as :func:`compute_features` with its defaults wrote them); None otherwise. Computes nothing."""
    return _open_cached(_feature_dir(model, data, cache_dir, dtype=dtype), data.camera_keys)


def compute_features(model, data: FrameData, batch_size: int = 64, cache_dir: str | None = None,
                     view: int = 0, pad: int = 4, dtype: str = "float16",
                     rows: Optional[np.ndarray] = None, processes: Optional[Processes] = None,
                     part: Optional[tuple[str, torch.nn.Module]] = None,
                     color: Optional[ColorJitter] = None) -> dict[str, np.ndarray]:
    """Encoder outputs of every frame and camera of ``data``: full key -> ``dtype`` (N,C,h,w), memory-mapped.

    ``part`` = (name, module) computes the outputs of a part of the encoder instead (e.g. the trunk before its
    last stage, for a retrainer that adapts that stage), cached under that name.

    ``rows`` (indices into ``data``) restricts them to those frames: row ``i`` of the result is
    frame ``rows[i]`` (training computes augmented views of its training rows only). Augmented views
    (``view`` > 0) shift by up to ``pad`` pixels and then apply ``color`` (a :class:`ColorJitter`) when given.

    Computed once and cached on disk (see the module docstring for the key); later calls with the same
    encoder weights, rows, sizes and view only open the memmaps. Data-parallel training passes its
    ``processes``: they take turns batch by batch (batch ``k`` on process ``k mod count``), every
    batch is gathered, and each machine's main process writes the cache.
    """
    if dtype not in FEATURE_DTYPES:
        raise ConfigError(f"feature dtype {dtype!r} is not known (known: {', '.join(FEATURE_DTYPES)})")
    procs = processes or Processes()
    directory = _feature_dir(model, data, cache_dir, view, pad, dtype, rows, part[0] if part else "", color)
    encoder = part[1] if part else model.encoder
    paths = {cam: directory / f"{cam}.npy" for cam in data.camera_keys}
    cached = _open_cached(directory, data.camera_keys)
    if all(procs.gather(cached is not None)):
        return cached
    writer = procs.is_local_main
    n = len(data) if rows is None else len(rows)
    offsets = {cam: view_offsets(view, i, n, pad) for i, cam in enumerate(data.camera_keys)}
    factors = {cam: view_color(view, i, n, color) for i, cam in enumerate(data.camera_keys)}
    tmp = {cam: directory / f".{cam}.{uuid.uuid4().hex}.tmp.npy" for cam in data.camera_keys}
    out: dict[str, np.ndarray] = {}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    runner: Optional[Callable[[torch.Tensor], torch.Tensor]] | bool = False if device.type == "cpu" else None

    def encode(sl: slice) -> dict[str, np.ndarray]:
        nonlocal runner
        pixels = {}
        for cam in data.camera_keys:
            x = to_float_chw(data.images[cam][sl if rows is None else rows[sl]], cam)
            if offsets[cam] is not None:
                x = random_shift(x, pad, offsets[cam][sl])
            if factors[cam] is not None:
                x = color(x, factors[cam][sl])
            pixels[cam] = x
        pixels = model.preprocess({c: v.to(device) for c, v in pixels.items()})
        if runner is False:
            runner = encoder_runner(encoder, next(iter(pixels.values())))
        if runner is None:
            feats = model.encode(pixels) if part is None else {c: encoder(v) for c, v in pixels.items()}
        else:
            feats = {c: runner(v) for c, v in pixels.items()}
        return {cam: feats[cam].float().cpu().numpy().astype(dtype) for cam in data.camera_keys}

    starts = list(range(0, n, batch_size))
    try:
        if writer:
            directory.mkdir(parents=True, exist_ok=True)
        with torch.inference_mode():
            for first in tqdm(range(0, len(starts), procs.count), desc=f"Features (view {view})", leave=False,
                              dynamic_ncols=True, disable=bar_disabled(procs.is_main)):
                turn = starts[first:first + procs.count]  # one batch per process
                mine = turn[procs.index] if procs.index < len(turn) else None
                computed = procs.gather(encode(slice(mine, min(mine + batch_size, n))) if mine is not None else None)
                if not writer:
                    continue
                for start, feats in zip(turn, computed):
                    for cam, f in feats.items():
                        if cam not in out:
                            out[cam] = np.lib.format.open_memmap(tmp[cam], mode="w+", dtype=dtype,
                                                                 shape=(n, *f.shape[1:]))
                        out[cam][start:start + len(f)] = f
        if writer:
            for cam in data.camera_keys:
                out[cam].flush()
                del out[cam]
                os.replace(tmp[cam], paths[cam])
            done = directory / f".done.{uuid.uuid4().hex}.tmp"
            done.write_text(json.dumps({"rows": n, "view": view, "pad": pad}))
            os.replace(done, directory / "done.json")
    finally:
        model.train(was_training)
        for p in tmp.values():
            p.unlink(missing_ok=True)
    procs.wait()
    return {cam: np.load(p, mmap_mode="r") for cam, p in paths.items()}


def encoder_runner(encoder: torch.nn.Module, sample: torch.Tensor,
                   atol: float = 1e-4) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """The frozen ``encoder`` as an ONNX Runtime session on the CPU, or None to use torch.

    ResNet-10 at 128 px on 2 CPU cores: 249 frames/s through ONNX Runtime vs 153 through torch at
    batch 64 (same outputs within 6e-6). The session is used only when the export succeeds and its
    output on ``sample`` (a batch of normalised pixels) matches torch within ``atol`` (relative to the
    feature scale); any encoder that does not export (some timm / transformers models) runs in torch.
    """
    try:
        import onnxruntime as ort

        with torch.inference_mode():
            want = encoder(sample).float().numpy()
        fd, path = tempfile.mkstemp(suffix=".onnx")
        os.close(fd)
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(encoder, (torch.zeros_like(sample[:2]),), path, input_names=["pixels"],
                                  output_names=["features"], dynamo=False,
                                  dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}})
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.log_severity_level = 3
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        finally:
            os.unlink(path)
        got = session.run(None, {"pixels": sample.float().numpy()})[0]
    except Exception as exc:  # an encoder that does not export is still served by torch
        log.info("features: ONNX Runtime export of the encoder failed (%s); torch computes the features", exc)
        return None
    scale = max(1.0, float(np.abs(want).max()))
    if got.shape != want.shape or not np.abs(got - want).max() <= atol * scale:
        log.info("features: ONNX Runtime output differs from torch; torch computes the features")
        return None
    return lambda x: torch.from_numpy(session.run(None, {"pixels": x.float().contiguous().numpy()})[0])


def gather_features(features: dict[str, np.ndarray], indices: np.ndarray) -> dict[str, torch.Tensor]:
    """float32 tensors of the rows ``indices`` (sorted reads from the memmap, original order kept)."""
    return {cam: torch.from_numpy(f.astype(np.float32, copy=False)) for cam, f in gather_rows(features, indices).items()}


def fit_head(model, features: dict[str, np.ndarray], labels: np.ndarray, sample_weight: np.ndarray | None = None,
             steps: int = 300, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
             should_stop: Optional[Callable[[], bool]] = None, check: Optional[Callable[[int], bool]] = None,
             check_every: int = 25, stage: Optional[torch.nn.Module] = None,
             weight_decay: float = _TRAINING.weight_decay, grad_clip_norm: float = _TRAINING.grad_clip_norm) -> dict:
    """Train only the head of ``model`` in place on precomputed ``features`` (full key -> (N,C,h,w)).

    With ``stage`` (the encoder's last stage), ``features`` are that stage's inputs and the stage trains with the
    head (``logits = head(stage(features))``). Each step is training's :func:`~.step.train_step` with its optimiser
    (``weight_decay`` and ``grad_clip_norm`` default to ``training.*``'s).

    Batches are drawn with replacement with probability ``sample_weight`` (default: class-balanced,
    1/count per class). ``should_stop``, asked before every step, ends training early. ``check(steps
    done)``, called with the model in eval mode after every ``check_every`` steps and after the last,
    ends training when it returns True (one optimizer throughout). Returns ``{"loss", "accuracy",
    "steps", "seconds", "stopped"}`` (loss and accuracy averaged over the last ``steps // 10`` steps run;
    ``steps`` is how many ran; ``stopped``: "should_stop", "check" or "").
    """
    labels = np.asarray(labels, dtype=np.int64)
    weights = balanced_weights(labels) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    rows = {len(f) for f in features.values()}
    if len(labels) == 0 or rows != {len(labels)} or len(weights) != len(labels):
        raise ValueError(f"fit_head needs one label and weight per feature row (got {sorted(rows)} feature rows, "
                         f"{len(labels)} labels, {len(weights)} weights)")
    params = [p for p in head_parameters(model) if p.requires_grad] + list(stage.parameters() if stage else [])
    device = params[0].device
    optimizer = make_optimizer(params, lr, weight_decay)
    forward = TrainedPart(model, from_features=True, stage=stage)
    g = torch.Generator().manual_seed(seed)
    w = torch.as_tensor(weights, dtype=torch.float64)
    recent: deque = deque(maxlen=max(1, steps // 10))  # (loss, accuracy) of the last steps run
    t0 = time.perf_counter()
    was_training = model.training
    stopped = ""
    try:
        done = 0
        for _ in range(steps):
            if should_stop is not None and should_stop():
                stopped = "should_stop"
                break
            done += 1
            idx = torch.multinomial(w, batch_size, replacement=True, generator=g).numpy()
            feats = {c: f.to(device) for c, f in gather_features(features, idx).items()}
            step = train_step(model, feats, torch.from_numpy(labels[idx]).to(device), optimizer, forward=forward,
                              grad_clip_norm=grad_clip_norm)
            recent.append((step["loss"], step["accuracy"]))
            if check is not None and (done % max(1, check_every) == 0 or done == steps):
                model.eval()
                if check(done):
                    stopped = "check"
                    break
    finally:
        model.train(was_training)
    return {"loss": float(np.mean([r[0] for r in recent])) if recent else float("nan"),
            "accuracy": float(np.mean([r[1] for r in recent])) if recent else float("nan"), "steps": done,
            "seconds": time.perf_counter() - t0, "stopped": stopped}
