"""Inference backends of the reward function, in one registry.

A backend takes a dict camera -> batched frames (B, H, W, 3) uint8 or (B, 3, H, W) float in [0, 1]
(numpy or torch; short or full camera keys) and returns probabilities: (B,) binary, (B, K)
multi-class. It names its ``camera_keys``, the ``model_version`` judging now and the stored
``threshold``; it may have ``close()``, ``correction_sink()`` (where human corrections go when
the caller names no place, e.g. the reward server) and ``predict_pinned(images, steps)`` (a backend
whose version can change between calls, e.g. a reward server: each row's :class:`EpisodeStep` names
the version to keep for its episode; returns the probabilities and the version that judged each row).

    register_backend("mine", lambda opts: MyBackend(opts.checkpoint))   # then backend="mine"

Each entry is one line: a factory ``factory(BackendOptions) -> backend``, or the string
``"module:attr"`` of one, imported on first use. The string form lets a backend of a higher layer
register here without this layer importing it: ``grpc`` lives in ``hilreward.serving``, and
``import hilreward.deploy`` loads neither serving nor grpc.

``auto`` (the default) runs the model with ONNX Runtime on the CPU when it exports and matches
torch (within 1e-4, checked on export and on every load), and with torch otherwise, on a GPU, or
when torch-only options (``compile``, ``channels_last``) are asked for.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Union

import numpy as np
import torch

from ..config import check_values
from ..constants import CAMERA_PREFIX
from ..data import cache_root
from ..errors import CheckpointError, ConfigError, InputError
from ..images import resize_uint8, to_uint8_hwc
from ..models.checkpoint import resolve_checkpoint
from ..models.loading import checkpoint_hash, load_classifier, model_version
from ..utils import Registry
from .onnx_export import check_parity, export_onnx, onnx_input_name

log = logging.getLogger(__name__)

PARITY_ATOL = 1e-4
"""Largest |probability(ONNX) - probability(torch)| for ``auto`` to choose ONNX Runtime."""


@dataclass
class BackendOptions:
    """What a backend factory gets (each backend reads the fields it needs)."""

    checkpoint: Union[str, Path, None] = None
    """Checkpoint folder or Hub repo id (hilreward's or a LeRobot ``reward_classifier``)."""
    device: str = "cpu"
    """torch device of the torch backend."""
    threads: int | None = None
    """ONNX Runtime intra-op threads (None: its default)."""
    compile: bool = False
    """torch only: wrap the forward in ``torch.compile``."""
    channels_last: bool = False
    """torch only: NHWC memory layout."""
    address: str | None = None
    """``host:port`` of a running ``hilreward serve`` (grpc)."""
    token: str | None = None
    """The server's token (grpc)."""
    timeout_s: float = 5.0
    """Deadline of each remote call (grpc)."""
    revision: str | None = None
    """Hub revision of ``checkpoint`` when it is a repo id."""


@dataclass(frozen=True)
class EpisodeStep:
    """Which episode and step a row of a batch is, the version its episode started with (None: any), and the
    robot state at the step (None: not given), which a reward server gating success on it needs."""

    episode_id: int = 0
    step: int = 0
    version: str | None = None
    state: Any = None


class Backend(Protocol):
    camera_keys: list[str]
    model_version: str
    threshold: float

    def predict(self, images: dict[str, Any]) -> np.ndarray: ...


@dataclass
class Scores:
    """What a backend says about a batch."""

    probabilities: np.ndarray
    """(B,) binary or (B, K) multi-class."""
    support: np.ndarray | None = None
    """(B, 2): each frame's [support, novelty] (:mod:`hilreward.models.support`); None when the model has no
    support bank."""
    versions: list[str] | None = None
    """The version that judged each row (backends whose version can change); None: the backend's own."""


def score(backend: Any, images: dict[str, Any], steps: list[EpisodeStep] | None = None,
          support: bool = False) -> Scores:
    """``backend``'s :class:`Scores` of a batch (with ``support``: the frames' support too, when the model has a
    bank; it costs a comparison with every frame of the bank, so it is asked for only where it is used): its
    ``score(images, steps, support)`` when it has one, else (a backend registered by a user) its
    ``predict_pinned`` or ``predict`` (no support)."""
    scorer = getattr(backend, "score", None)
    if scorer is not None:
        return scorer(images, steps, support)
    pinned = getattr(backend, "predict_pinned", None)
    if pinned is not None and steps is not None:
        probs, versions = pinned(images, steps)
        return Scores(np.asarray(probs), None, list(versions))
    return Scores(np.asarray(backend.predict(images)))


Factory = Callable[[BackendOptions], Backend]
BACKENDS: Registry[Factory] = Registry("backend")
"""``backend=`` names: ``auto``, ``torch``, ``onnx``, ``grpc`` (``"module:attr"`` entries are imported on first use)."""


def register_backend(name: str, factory: Union[Factory, str]) -> None:
    """Make ``backend=name`` build its backend with ``factory(options)`` (or ``"module:attr"``, imported on first use)."""
    if not callable(factory) and not (isinstance(factory, str) and ":" in factory):
        raise ConfigError(f"register_backend({name!r}, ...): give a callable or a 'module:attr' string")
    BACKENDS.register(name, factory)


def list_backends() -> list[str]:
    return sorted(BACKENDS.names())


def create_backend(name: str, options: BackendOptions) -> Backend:
    """The backend registered as ``name``, built from ``options`` (checked first: ConfigError naming the option)."""
    factory = BACKENDS.get(name)
    check_values(options)
    try:
        torch.device(options.device)
    except RuntimeError:
        raise ConfigError(f"device={options.device!r} is not a torch device: use cpu, cuda or cuda:<n>") from None
    return factory(options)


def _load(options: BackendOptions) -> tuple[Path, torch.nn.Module]:
    if options.checkpoint is None:
        raise ConfigError("this backend needs a checkpoint folder or Hub repo id")
    checkpoint = resolve_checkpoint(options.checkpoint, options.revision)
    return checkpoint, load_classifier(checkpoint, device=options.device)


class TorchBackend:
    """Runs a RewardClassifier (or an imported LeRobot classifier) under ``torch.inference_mode``.

    The model's ``encode`` sends all cameras through the encoder in one batched call when their
    shapes match. ``channels_last`` converts weights and pixels to NHWC memory layout;
    ``compile`` wraps the forward in ``torch.compile``.
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module, compile: bool = False, channels_last: bool = False,
                 model_version: str = "") -> None:
        self.model = model.eval()
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._forward = torch.compile(self._logits, dynamic=False) if compile else self._logits
        self.camera_keys: list[str] = list(model.config.camera_keys)
        self.model_version = model_version
        self.threshold = float(getattr(model, "threshold", 0.5))

    @classmethod
    def load(cls, options: BackendOptions) -> "TorchBackend":
        checkpoint, model = _load(options)
        return cls(model, compile=options.compile, channels_last=options.channels_last,
                   model_version=model_version(checkpoint))

    def _logits(self, pixels: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.channels_last:
            pixels = {k: v.contiguous(memory_format=torch.channels_last) for k, v in pixels.items()}
        return self.model(pixels)

    def predict(self, images: dict[str, Any]) -> np.ndarray:
        with torch.inference_mode():
            pixels = self.model.preprocess(images)
            probs = self.model.probabilities(self._forward(pixels))
        return probs.float().cpu().numpy()

    def score(self, images: dict[str, Any], steps: list[EpisodeStep] | None = None, support: bool = True) -> Scores:
        """Probabilities, and (``support``) the support from the same encoder features (one encoder pass)."""
        support_of = getattr(self.model, "support_of", None)
        if not support or support_of is None or getattr(self.model, "support", None) is None:
            return Scores(self.predict(images))
        with torch.inference_mode():
            pixels = self.model.preprocess(images)
            if self.channels_last:
                pixels = {k: v.contiguous(memory_format=torch.channels_last) for k, v in pixels.items()}
            features = self.model.encode(pixels)
            probs = self.model.probabilities(self.model.head(features))
            support = support_of(features, pixels)
        return Scores(probs.float().cpu().numpy(), support.float().cpu().numpy())


class OnnxBackend:
    """Runs ``model.onnx`` (uint8 NHWC frames per camera at the checkpoint's image size in,
    probability out) with ONNX Runtime.

    Frames of another size are resized first with :func:`hilreward.images.resize_uint8` (the
    frame cache's resize); float CHW frames go back to uint8 first. So the graph sees exactly the
    pixels the torch model sees.
    """

    name = "onnx"

    def __init__(self, path: str | Path, model: torch.nn.Module, threads: int | None = None,
                 model_version: str = "") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("backend='onnx' needs onnxruntime: `pip install onnxruntime`") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep: between reward calls the actor's env step needs the cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise CheckpointError(f"cannot load {path}: {exc}; re-export it with "
                                  f"`hilreward export checkpoint=<checkpoint> format=onnx`") from None
        self.path = Path(path)
        self.model = model
        self.camera_keys: list[str] = list(model.config.camera_keys)
        self.image_size = tuple(model.config.image_size)
        self.model_version = model_version
        self.threshold = float(getattr(model, "threshold", 0.5))
        self.input_names = [i.name for i in self.session.get_inputs()]
        expected = [onnx_input_name(k) for k in self.camera_keys]
        if self.input_names != expected:
            raise CheckpointError(f"{path} has inputs {self.input_names}, the checkpoint expects {expected}; "
                                  "re-export it")

    @classmethod
    def load(cls, options: BackendOptions) -> "OnnxBackend":
        """``<checkpoint>/model.onnx`` when there, else one exported into hilreward's cache (once per checkpoint)."""
        if torch.device(options.device).type != "cpu":
            raise ConfigError("backend='onnx' runs on the CPU; use device='cpu'")
        checkpoint, model = _load(options)
        version = model_version(checkpoint)
        path = onnx_path(checkpoint)
        if not path.exists():
            _export(model, path)
        _used(path)
        return cls(path, model, threads=options.threads, model_version=version)

    def _run(self, images: dict[str, Any], outputs: list[str] | None = None) -> list[np.ndarray]:
        feeds = {}
        for key, name in zip(self.camera_keys, self.input_names):
            frames = to_uint8_hwc(pick_camera(images, key), key)
            if frames.ndim == 3:
                frames = frames[None]
            if tuple(frames.shape[1:3]) != self.image_size:
                frames = resize_uint8(frames, self.image_size)
            feeds[name] = np.ascontiguousarray(frames)
        return self.session.run(outputs, feeds)

    def predict(self, images: dict[str, Any]) -> np.ndarray:
        return self._run(images, ["probability"])[0]  # ONNX Runtime then leaves the support bank out

    def score(self, images: dict[str, Any], steps: list[EpisodeStep] | None = None, support: bool = True) -> Scores:
        """The graph's ``probability`` and, with ``support`` when the checkpoint has a bank, its ``support``."""
        out = self._run(images, None if support else ["probability"])
        return Scores(out[0], out[1] if len(out) > 1 else None)


def load_auto(options: BackendOptions) -> Backend:
    """``backend="auto"``: ONNX Runtime on the CPU when the model exports and matches torch, else torch."""
    if torch.device(options.device).type != "cpu" or options.compile or options.channels_last:
        return TorchBackend.load(options)
    checkpoint, model = _load(options)
    version = model_version(checkpoint)
    path = onnx_path(checkpoint)
    try:
        if not path.exists():
            _export(model, path)  # checks parity itself
        elif not (diff := check_parity(model, path)) <= PARITY_ATOL:
            raise CheckpointError(f"{path} differs from the checkpoint by {diff:.2g} in probability")
        _used(path)
        return OnnxBackend(path, model, threads=options.threads, model_version=version)
    except (ImportError, OSError, ConfigError, CheckpointError) as exc:
        log.warning("backend='auto' runs torch: ONNX Runtime is not used because %s", exc)
        return TorchBackend(model, model_version=version)


def pick_camera(images: dict[str, Any], key: str) -> Any:
    """``images[key]`` accepting the short name (``front``) for ``observation.images.front``."""
    if key in images:
        return images[key]
    short = key[len(CAMERA_PREFIX):] if key.startswith(CAMERA_PREFIX) else key
    if short in images:
        return images[short]
    raise InputError(f"missing camera {key!r}: got {sorted(images)}; pass every camera of the checkpoint "
                     f"({short!r} or {key!r})")


register_backend("auto", load_auto)
register_backend("torch", TorchBackend.load)
register_backend("onnx", OnnxBackend.load)
register_backend("grpc", "hilreward.serving.client:GrpcBackend.load")


def onnx_path(checkpoint: Path) -> Path:
    """``<checkpoint>/model.onnx`` when there (``hilreward export`` writes it), else the one the ONNX
    backends export into hilreward's cache, so loading never writes into a checkpoint folder. The cache is keyed
    by the checkpoint's content, not its ``model_version``: servers retraining from one checkpoint name their
    versions alike (``<base>-r1``, ...) with other weights."""
    local = checkpoint / "model.onnx"
    if local.exists():
        return local
    return _onnx_cache() / checkpoint_hash(checkpoint)[:24] / "model.onnx"


ONNX_CACHE_KEEP = 16
"""Exports hilreward's cache keeps (the most recently used). One holds the model and its support bank: ~100 MB
for ``model=scratch``. A retraining server publishes a version every few seconds and each one a client loads is
exported: unbounded, a day of corrected RL filled a 250 GB disk here (235 exports, 22 GB, in one afternoon)."""


def _onnx_cache() -> Path:
    return cache_root() / "onnx"


def _in_cache(path: Path) -> bool:
    """Whether ``path`` is an export in hilreward's cache (not a checkpoint's own ``model.onnx``)."""
    return path.parent.parent == _onnx_cache()


def _export(model: Any, path: Path) -> None:
    """Export into ``path``; when that is in hilreward's cache, keep only its ``ONNX_CACHE_KEEP`` newest exports."""
    export_onnx(model, path, atol=PARITY_ATOL)
    if _in_cache(path):
        prune_onnx_cache(keep_also=path.parent)


def _used(path: Path) -> None:
    """Mark a cached export as used now (the cache keeps the most recently used)."""
    if _in_cache(path):
        try:
            os.utime(path.parent)
        except OSError:
            pass


def prune_onnx_cache(keep: int | None = None, keep_also: Path | None = None) -> int:
    """Remove all but the ``keep`` (default ``ONNX_CACHE_KEEP``) most recently used exports from hilreward's ONNX
    cache, never ``keep_also``; returns how many went. A process whose session was built from a removed file keeps running:
    ONNX Runtime holds the model in memory; a later load exports it again."""
    def used(entry: Path) -> float:
        try:
            return entry.stat().st_mtime
        except OSError:
            return 0.0

    try:
        entries = sorted((p for p in _onnx_cache().iterdir() if p.is_dir()), key=used, reverse=True)
    except OSError:
        return 0
    removed = 0
    for entry in entries[max(0, ONNX_CACHE_KEEP if keep is None else keep):]:
        if keep_also is not None and entry == keep_also:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    return removed
