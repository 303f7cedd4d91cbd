"""RewardClassifier: encoder + HIL-SERL head + preprocessing, in one self-contained, saveable module."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..config import ModelSettings
from ..errors import CheckpointError, ConfigError, EncoderError, InputError
from . import checkpoint as ckpt
from .head import RewardHead
from .members import MemberHeads, holds_members, member_backbone, member_encoder
from ..images import model_pixels
from ..success import success_label
from .preprocessing import full_camera_key, normalize, pick_cameras, short_camera_key, to_float_chw
from .registry import Encoder, build_encoder
from .support import Support, pool, support_encoder
from ..utils import replace_dir
from ..constants import CONFIG_NAME

FORMAT_VERSION = 2
"""Checkpoint format this code writes and the newest it reads (2: ``temperature`` divides the logits; a reader
that ignored it would apply the threshold to other probabilities)."""


@dataclass
class ClassifierConfig(ModelSettings):
    """Everything needed to rebuild a RewardClassifier without network; saved as ``config.json``.

    The model keys of training (:class:`~hilreward.config.ModelSettings`: encoder, freeze, num_classes,
    image_size, the head's sizes, threshold) with their defaults, plus what the data, the built encoder and
    calibration add."""

    camera_keys: list[str] = field(default_factory=lambda: ["observation.images.front"])
    """Full camera keys, in the order the head concatenates them."""
    mean: Optional[list[float]] = None
    """Per-channel normalisation mean (None: the encoder's)."""
    std: Optional[list[float]] = None
    """Per-channel normalisation std (None: the encoder's)."""
    temperature: float = 1.0
    """Logits are divided by this before the sigmoid / softmax (temperature scaling, set by calibration)."""
    calibration: Optional[dict[str, Any]] = None
    """How ``temperature`` and ``threshold`` were chosen (episodes, evidence, rule), when calibrated."""
    members: int = 1
    """Ensemble members (:mod:`hilreward.models.members`): >1 holds that many encoders and heads, the logit is the
    mean of theirs (calibration by folds of a model whose encoder trains deploys its fold models so)."""
    encoder_options: dict[str, Any] = field(default_factory=dict)
    """Architecture options of the encoder (filled from the built encoder)."""
    feature_shape: Optional[list[int]] = None
    """(C, h, w) of the encoder's feature map at ``image_size`` (filled at build time)."""
    encoder_weights: Optional[str] = None
    """Where the encoder's initial weights came from (provenance only; the checkpoint holds the weights)."""
    version: str = ""
    """hilreward version that wrote the checkpoint."""
    format_version: int = FORMAT_VERSION
    """Checkpoint format; a reader refuses newer formats."""
    support: Optional[dict[str, Any]] = None
    """The support bank's sizes (``frames``, ``dims``, ``k``, ``success_class``) when the checkpoint has one
    (:mod:`hilreward.models.support`); None: no support (the cautious reward then cannot be used)."""

    @classmethod
    def from_train_config(cls, cfg: Any, camera_keys: Sequence[str]) -> "ClassifierConfig":
        """From a TrainConfig (or its ``model`` ModelConfig) and the dataset's cameras."""
        m = getattr(cfg, "model", cfg)
        settings = {f.name: getattr(m, f.name) for f in dataclasses.fields(ModelSettings)}
        return cls(**settings, camera_keys=[full_camera_key(k) for k in camera_keys])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = CONFIG_NAME) -> "ClassifierConfig":
        fmt = int(data.get("format_version", 1))
        if fmt > FORMAT_VERSION:
            raise CheckpointError(
                f"{source} was written by hilreward {data.get('version', '?')} in checkpoint format {fmt}; this is "
                f"hilreward {__version__}, which reads formats up to {FORMAT_VERSION}: upgrade hilreward"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("encoder", "camera_keys", "image_size") if k not in data]
        if missing:
            raise CheckpointError(f"{source} lacks {missing}; re-save the checkpoint or pick another one")
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise CheckpointError(f"{source} is not a classifier config ({exc})") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RewardClassifier(nn.Module):
    """Success classifier over one or more cameras.

    ``preprocess`` (frames -> normalised pixels) -> ``encode`` (pixels -> feature maps) ->
    ``head`` (feature maps -> logits). Binary models output one logit per frame; multi-class
    models ``num_classes`` logits. The encoder is frozen by default (``freeze="all"``).
    """

    def __init__(self, config: ClassifierConfig, encoder: Optional[Encoder] = None):
        super().__init__()
        config = dataclasses.replace(config, camera_keys=[full_camera_key(k) for k in config.camera_keys],
                                     image_size=[int(s) for s in config.image_size])
        if len(config.image_size) != 2:
            raise ConfigError(f"model.image_size must be [height, width], got {config.image_size}")
        if not config.camera_keys:
            raise ConfigError("a classifier needs at least one camera (dataset.cameras)")
        if config.num_classes < 2:
            raise ConfigError(f"model.num_classes must be 2 (binary) or more, got {config.num_classes}")
        if not config.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {config.temperature}")
        if config.members < 1:
            raise ConfigError(f"members must be >= 1, got {config.members}")
        if encoder is None:
            built = [build_encoder(config.encoder, pretrained=False, options=config.encoder_options,
                                   freeze=config.freeze) for _ in range(config.members)]
            encoder = built[0] if config.members == 1 else member_encoder(built)
        if (config.members > 1) != holds_members(encoder) or \
                (config.members > 1 and len(encoder.stages()[0].stages) != config.members):
            raise ConfigError(f"the encoder does not hold the config's {config.members} member(s)")
        encoder.set_freeze(config.freeze)
        feature_shape = list(encoder.feature_shape(config.image_size))
        self.config = dataclasses.replace(
            config,
            encoder=encoder.spec,
            encoder_options=dict(encoder.options),
            mean=list(config.mean if config.mean is not None else encoder.mean),
            std=list(config.std if config.std is not None else encoder.std),
            feature_shape=feature_shape,
            encoder_weights=config.encoder_weights or encoder.weights_source,
            version=config.version or __version__,
            format_version=FORMAT_VERSION,
        )
        self.encoder = encoder
        k = self.config.members
        heads = [RewardHead(
            num_cameras=len(self.config.camera_keys), feature_shape=[feature_shape[0] // k, *feature_shape[1:]],
            num_classes=self.config.num_classes, num_features=self.config.spatial_features,
            latent_dim=self.config.latent_dim, hidden_dim=self.config.hidden_dim, dropout=self.config.dropout,
        ) for _ in range(k)]
        self.reward_head = heads[0] if k == 1 else MemberHeads(heads)
        self.support: Optional[Support] = None
        if self.config.support:
            sizes = self.config.support
            self.support = Support(int(sizes["frames"]), int(sizes["dims"]), int(sizes.get("k", 5)),
                                   encoder=support_encoder() if sizes.get("encoder") else None)
        self.source_dir: Optional[Path] = None

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def from_train_config(cls, cfg: Any, camera_keys: Sequence[str], members: int = 1) -> "RewardClassifier":
        """Build from a TrainConfig: the encoder with ``model.pretrained`` / ``model.weights``, a fresh head; with
        ``members`` > 1 that many of each, initialised one after the other from the current random state."""
        m = getattr(cfg, "model", cfg)
        config = dataclasses.replace(ClassifierConfig.from_train_config(cfg, camera_keys), members=int(members))
        built = [build_encoder(m.encoder, pretrained=bool(m.pretrained), weights=m.weights, freeze=m.freeze)
                 for _ in range(max(1, int(members)))]
        return cls(config, built[0] if members <= 1 else member_encoder(built))

    # --- properties ----------------------------------------------------------------------------

    @property
    def threshold(self) -> float:
        return float(self.config.threshold)

    @property
    def temperature(self) -> float:
        return float(self.config.temperature)

    @property
    def camera_keys(self) -> list[str]:
        return list(self.config.camera_keys)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def parameter_counts(self) -> dict[str, int]:
        """Parameters: total, trainable, encoder, head."""
        return {
            "total": sum(p.numel() for p in self.parameters()),
            "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "encoder": sum(p.numel() for p in self.encoder.parameters()),
            "head": sum(p.numel() for p in self.reward_head.parameters()),
        }

    # --- the forward path ----------------------------------------------------------------------

    def preprocess(self, images: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Frames per camera -> normalised float (B,3,H,W) at ``image_size``, keyed by full camera key."""
        if not isinstance(images, Mapping):
            raise InputError(f"images must be a dict camera -> frames, got {type(images).__name__}")
        picked = pick_cameras(images, self.config.camera_keys)
        device = self.device
        out: dict[str, torch.Tensor] = {}
        for key, image in picked.items():
            batch = model_pixels(to_float_chw(image, key, device), self.config.image_size)
            out[key] = normalize(batch, self.config.mean, self.config.std)
        sizes = {k: v.shape[0] for k, v in out.items()}
        if len(set(sizes.values())) > 1:
            raise InputError(f"cameras have different batch sizes {sizes}; pass the same frames count per camera")
        return out

    def encode(self, pixels: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Normalised pixels per camera -> encoder feature maps (B,C,h,w) per camera."""
        keys = self.config.camera_keys
        picked = pick_cameras(pixels, keys)
        batches = [picked[k] for k in keys]
        same_shape = all(b.shape == batches[0].shape for b in batches)
        if len(keys) > 1 and same_shape and not self.encoder.training:
            # One encoder call for all cameras (eval or frozen encoder: no batch statistics to mix).
            out = self.encoder(torch.cat(batches, dim=0)).split(batches[0].shape[0], dim=0)
            return dict(zip(keys, out))
        return {k: self.encoder(b) for k, b in zip(keys, batches)}

    def head(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Feature maps per camera -> logits, (B,) when binary else (B, num_classes)."""
        picked = pick_cameras(features, self.config.camera_keys)
        expected = tuple(self.config.feature_shape or ())
        maps = []
        dtype = self.reward_head.mlp[0].weight.dtype
        for key, f in picked.items():
            if tuple(f.shape[1:]) != expected:
                raise InputError(f"camera {key!r}: feature map {tuple(f.shape[1:])} does not fit the head, which "
                                 f"expects {expected} (encoder {self.config.encoder} at {self.config.image_size})")
            maps.append(f.to(dtype))
        return self.reward_head(maps)

    def forward(self, pixels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.encode(pixels))

    def member_logits(self, pixels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Every member's logits on the same pixels: (B, members) binary, (B, members, K) multi-class."""
        if self.config.members == 1:
            return self.forward(pixels).unsqueeze(1)
        features = self.encode(pixels)
        return self.reward_head.member_logits([features[k] for k in self.config.camera_keys])

    def member_forward(self, i: int, pixels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Member ``i`` alone on its own pixels (training gives each member its own batch)."""
        if self.config.members == 1:
            return self.forward(pixels)
        backbone = member_backbone(self.encoder, i)
        picked = pick_cameras(pixels, self.config.camera_keys)
        return self.reward_head.heads[i]([backbone(picked[k]) for k in self.config.camera_keys])

    def set_support(self, support: Optional[Support], success_class: int = -1) -> None:
        """Keep ``support`` (built on this model's encoder features) in the model and its checkpoint."""
        self.support = support
        self.config = dataclasses.replace(self.config, support=None if support is None else {
            **support.size, "success_class": success_label(self.config.num_classes, success_class)})

    def support_of(self, features: Mapping[str, torch.Tensor],
                   pixels: Optional[Mapping[str, torch.Tensor]] = None) -> Optional[torch.Tensor]:
        """(B, 2) [support, novelty] of a batch from its encoder ``features`` and normalised ``pixels`` (which a
        support bank with its own encoder needs; see :mod:`hilreward.models.support`); None without a bank."""
        if self.support is None:
            return None
        return self.support(self.support_vectors(features, pixels))

    def support_vectors(self, features: Mapping[str, torch.Tensor],
                        pixels: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        """(B, D) the pooled vectors a support bank compares (the classifier's features, or its own encoder's)."""
        encoder = getattr(self.support, "encoder", None) if self.support is not None else None
        if encoder is None:
            return pool(features, self.config.camera_keys)
        if pixels is None:
            raise ValueError("this support bank has its own encoder: pass the normalised pixels too")
        return self.support.describe(features, pixels, self.config.camera_keys)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid of binary logits (B,) or softmax of multi-class logits (B, K), after dividing them by the
        stored ``temperature``: every backend (torch, ONNX, gRPC) gets its probabilities here."""
        if self.config.temperature != 1.0:
            logits = logits / self.config.temperature
        return torch.sigmoid(logits) if self.config.num_classes == 2 else torch.softmax(logits, dim=-1)

    def predict_proba(self, images: Mapping[str, Any]) -> np.ndarray:
        """Frames per camera -> probabilities: (B,) success probability, or (B, K) class probabilities."""
        was_training = self.training
        if was_training:
            self.eval()
        try:
            with torch.inference_mode():
                probs = self.probabilities(self.forward(self.preprocess(images)))
        finally:
            if was_training:
                self.train()
        return probs.float().cpu().numpy()

    def check_cameras(self, camera_keys: Sequence[str]) -> list[str]:
        """The model's camera keys if all are among ``camera_keys`` (short or full), else CheckpointError."""
        available = {full_camera_key(k) for k in camera_keys}
        missing = [k for k in self.config.camera_keys if k not in available]
        if missing:
            raise CheckpointError(
                f"checkpoint expects cameras {self.config.camera_keys}, got {sorted(available)} "
                f"(missing {[short_camera_key(k) for k in missing]}): use a checkpoint trained on these cameras, "
                "or data that has the checkpoint's cameras"
            )
        return list(self.config.camera_keys)

    # --- checkpoints ---------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike, train_config_yaml: Optional[str] = None,
                        metrics: Optional[Mapping[str, Any]] = None) -> Path:
        """Write config.json, model.safetensors (encoder and head), train_config.yaml, metrics.json atomically."""
        return replace_dir(save_directory, lambda tmp: self.write_files(tmp, train_config_yaml, metrics))

    def write_files(self, folder: Path, train_config_yaml: Optional[str] = None,
                    metrics: Optional[Mapping[str, Any]] = None) -> None:
        """The checkpoint's files into ``folder`` as they are (what :meth:`save_pretrained` writes and then moves into
        place; a caller that writes more files there first, such as a training checkpoint, moves it itself)."""
        ckpt.write_json(folder / ckpt.CONFIG_NAME, self.config.to_dict())
        ckpt.save_weights(folder / ckpt.WEIGHTS_NAME, self.state_dict(),
                          metadata={"format": "pt", "hilreward_version": self.config.version})
        if train_config_yaml is not None:
            (folder / ckpt.TRAIN_CONFIG_NAME).write_text(train_config_yaml)
        if metrics is not None:
            ckpt.write_json(folder / ckpt.METRICS_NAME, dict(metrics))

    @classmethod
    def from_pretrained(cls, path_or_repo: str | os.PathLike, device: str | torch.device = "cpu",
                        revision: Optional[str] = None) -> "RewardClassifier":
        """Load a checkpoint directory or Hub repo (at ``revision``, or ``"user/repo@revision"``); needs no network
        for a local directory or a cached revision. Eval mode."""
        folder = ckpt.resolve_checkpoint(path_or_repo, revision)
        config = ClassifierConfig.from_dict(ckpt.read_config(folder), str(folder / ckpt.CONFIG_NAME))
        state = ckpt.read_weights(folder)
        try:
            model = cls(config)
        except (EncoderError, ConfigError) as exc:
            raise CheckpointError(f"cannot rebuild the model of {folder}: {exc}") from None
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                      if k in state and state[k].shape != v.shape]
        if missing or unexpected or mismatched:
            raise CheckpointError(
                f"{folder / ckpt.WEIGHTS_NAME} does not fit its config.json (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}, shape mismatch {mismatched[:3]}); re-save the checkpoint or pick another one"
            )
        model.load_state_dict(state, strict=True)
        model.source_dir = folder
        return model.to(device).eval()

    def push_to_hub(self, repo_id: str, private: bool = False, token: Optional[str] = None,
                    commit_message: str = "Upload hilreward reward classifier") -> str:
        """Save to a temporary directory (with the train config / metrics of the loaded checkpoint) and upload it."""
        import tempfile

        from huggingface_hub import HfApi

        extra: dict[str, Any] = {}
        if self.source_dir is not None:
            yaml_path, metrics_path = self.source_dir / ckpt.TRAIN_CONFIG_NAME, self.source_dir / ckpt.METRICS_NAME
            if yaml_path.is_file():
                extra["train_config_yaml"] = yaml_path.read_text()
            if metrics_path.is_file():
                import json

                extra["metrics"] = json.loads(metrics_path.read_text())
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "checkpoint", **extra)
            info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
        return str(getattr(info, "commit_url", info))
