"""Import LeRobot ``reward_classifier`` checkpoints (LeRobot 0.6.x layout) without LeRobot.

A LeRobot checkpoint folder holds ``config.json`` (``"type": "reward_classifier"``),
``model.safetensors`` (the transformers ResNet encoder and the head) and
``classifier_preprocessor.json`` + ``classifier_preprocessor_step_*_normalizer_processor.safetensors``
(the per-camera mean/std of the training data). :class:`LeRobotRewardClassifier` is a faithful
re-implementation of LeRobot's ``Classifier`` in plain PyTorch that applies that normalisation
(LeRobot's own deployment step skips it, so its deployed classifier sees other inputs than in
training). It has the RewardClassifier inference interface (``preprocess``, ``forward``,
``predict_proba``, ``threshold``...), so the reward function, ONNX export, eval and serving use it
unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, InputError
from ..images import model_pixels
from .preprocessing import pick_cameras, to_float_chw
from .hf_resnet import ResNetTrunk, infer_spec
from ..constants import CONFIG_NAME, WEIGHTS_NAME

IMAGE_PREFIX = "observation.image"


def is_lerobot_checkpoint(path: str | Path) -> bool:
    """True when ``path/config.json`` says ``"type": "reward_classifier"`` (LeRobot's format)."""
    cfg = Path(path) / CONFIG_NAME
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("type") == "reward_classifier"
    except (json.JSONDecodeError, OSError):
        return False


@dataclass
class LeRobotImportConfig:
    """What an imported LeRobot classifier needs at inference."""

    camera_keys: list[str]
    """Image features in LeRobot's order (the order the head concatenates them)."""
    image_size: list[int]
    """[H, W] of the training frames (from ``input_features``); other sizes are resized to it."""
    num_classes: int = 2
    """2: one logit + sigmoid; more: softmax."""
    latent_dim: int = 256
    """Per-camera projection width."""
    hidden_dim: int = 256
    """Head hidden width."""
    spatial_features: int = 8
    """``image_embedding_pooling_dim``: spatial-embedding features per channel."""
    dropout: float = 0.1
    """Dropout rate (inactive at inference)."""
    mean: dict[str, list[float]] = field(default_factory=dict)
    """Per camera, the training data's per-channel mean (values in [0, 1])."""
    std: dict[str, list[float]] = field(default_factory=dict)
    """Per camera, the training data's per-channel std."""
    eps: float = 1e-8
    """LeRobot normaliser epsilon: (x - mean) / (std + eps)."""
    threshold: float = 0.5
    """Default success threshold (LeRobot's ``predict_reward`` default)."""
    encoder: str = ""
    """LeRobot's ``model_name`` (the encoder it was built from)."""
    source: str = ""
    """The imported folder."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SpatialEmbedding(nn.Module):
    """LeRobot's SpatialLearnedEmbeddings: (B, C, H, W) x kernel (C, H, W, F) summed over H, W -> (B, C*F)."""

    def __init__(self, channels: int, height: int, width: int, features: int) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.zeros(channels, height, width, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != tuple(self.kernel.shape[:3]):
            raise InputError(f"encoder output {tuple(x.shape[1:])} does not fit the spatial embedding "
                             f"{tuple(self.kernel.shape[:3])}: LeRobot's classifier only takes frames whose "
                             "encoder map is exactly that size (97-128 px for the 4x4 map)")
        return (x.unsqueeze(-1) * self.kernel.unsqueeze(0)).sum(dim=(2, 3)).flatten(1)


class LeRobotRewardClassifier(nn.Module):
    """LeRobot's reward ``Classifier`` (CNN encoder variant), in plain PyTorch, with its normalisation."""

    def __init__(self, config: LeRobotImportConfig, encoder: ResNetTrunk, map_size: tuple[int, int]) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        c = encoder.out_channels
        # Index 0 stands for the shared encoder, as in LeRobot's nn.Sequential, so weight names match.
        self.encoders = nn.ModuleDict({
            _module_key(k): nn.Sequential(nn.Identity(), SpatialEmbedding(c, *map_size, config.spatial_features),
                                          nn.Dropout(config.dropout), nn.Linear(c * config.spatial_features,
                                                                                config.latent_dim),
                                          nn.LayerNorm(config.latent_dim), nn.Tanh())
            for k in config.camera_keys})
        out = 1 if config.num_classes == 2 else config.num_classes
        self.classifier_head = nn.Sequential(
            nn.Linear(config.latent_dim * len(config.camera_keys), config.hidden_dim), nn.Dropout(config.dropout),
            nn.LayerNorm(config.hidden_dim), nn.ReLU(), nn.Linear(config.hidden_dim, out))
        mean = torch.tensor([config.mean[k] for k in config.camera_keys], dtype=torch.float32)
        std = torch.tensor([config.std[k] for k in config.camera_keys], dtype=torch.float32)
        self.register_buffer("norm_mean", mean.view(len(config.camera_keys), 3, 1, 1), persistent=False)
        self.register_buffer("norm_std", std.view(len(config.camera_keys), 3, 1, 1), persistent=False)

    @property
    def threshold(self) -> float:
        return self.config.threshold

    # -- the RewardClassifier inference interface
    def preprocess(self, images: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per camera: uint8 HWC / float CHW in [0, 1] -> resized, normalised float (B, 3, H, W)."""
        if not isinstance(images, Mapping):
            raise InputError(f"images must be a dict camera -> frames, got {type(images).__name__}")
        device = self.norm_mean.device
        unit = {key: model_pixels(to_float_chw(image, key, device), self.config.image_size)
                for key, image in pick_cameras(images, self.config.camera_keys).items()}
        if len({v.shape[0] for v in unit.values()}) > 1:
            raise InputError(f"cameras have different batch sizes { {k: v.shape[0] for k, v in unit.items()} }")
        return self.normalise(unit)

    def normalise(self, pixels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """LeRobot's MEAN_STD step on float (B, 3, H, W) in [0, 1]: (x - mean) / (std + eps), per camera."""
        return {key: (pixels[key] - self.norm_mean[i]) / (self.norm_std[i] + self.config.eps)
                for i, key in enumerate(self.config.camera_keys)}

    def encode(self, pixels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Feature maps per camera; one encoder call for all cameras when shapes match (eval mode)."""
        batches = [pixels[k] for k in self.config.camera_keys]
        if len({b.shape for b in batches}) == 1 and not self.training:
            maps = self.encoder(torch.cat(batches)).split(batches[0].shape[0])
            return dict(zip(self.config.camera_keys, maps))
        return {k: self.encoder(b) for k, b in zip(self.config.camera_keys, batches)}

    def head(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        latents = [self.encoders[_module_key(k)](features[k]) for k in self.config.camera_keys]
        logits = self.classifier_head(torch.cat(latents, dim=1))
        return logits.squeeze(-1) if self.config.num_classes == 2 else logits

    def forward(self, pixels: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.encode(pixels))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.config.num_classes == 2 else torch.softmax(logits, dim=-1)

    def predict_proba(self, images: dict[str, Any]) -> np.ndarray:
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                return self.probabilities(self(self.preprocess(images))).float().cpu().numpy()
        finally:
            self.train(was_training)


def import_lerobot(path: str | Path, device: str = "cpu") -> LeRobotRewardClassifier:
    """Load a LeRobot ``reward_classifier`` checkpoint folder as a hilreward classifier."""
    from safetensors.torch import load_file

    root = Path(path)
    if not is_lerobot_checkpoint(root):
        raise CheckpointError(f"{root} is not a LeRobot reward_classifier checkpoint "
                              "(needs config.json with \"type\": \"reward_classifier\")")
    made = root / "hilreward_export.json"  # written by `hilreward export format=lerobot`
    if made.is_file():
        source = json.loads(made.read_text()).get("source") or "the hilreward checkpoint it was exported from"
        raise CheckpointError(f"{root} is hilreward's export for LeRobot's own step; in hilreward load the checkpoint "
                              f"it was made from ({source})")
    cfg = json.loads((root / CONFIG_NAME).read_text())
    weights = root / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{root} has no model.safetensors")
    state = load_file(str(weights))
    if cfg.get("model_type", "cnn") != "cnn":
        raise CheckpointError(f"{root}: model_type {cfg.get('model_type')!r}; only LeRobot's CNN encoders "
                              "(transformers ResNet) can be imported")
    features = cfg.get("input_features") or {}
    cameras = [k for k in features if k.startswith(IMAGE_PREFIX)]
    if not cameras:
        raise CheckpointError(f"{root}/config.json lists no image input_features")
    shapes = {tuple(features[k]["shape"][-2:]) for k in cameras}
    if len(shapes) != 1:
        raise CheckpointError(f"{root}: cameras have different shapes {sorted(shapes)}; not supported")
    num_cams = int(cfg.get("num_cameras", len(cameras)))
    if num_cams != len(cameras):
        raise CheckpointError(f"{root}: num_cameras={num_cams} but {len(cameras)} image features {cameras}")
    mean, std, eps = _read_normalisation(root, cameras)

    state = _dealias_encoder(state, cameras)
    spec = infer_spec(state, "encoder.", _encoder_config(cfg.get("model_name", "")))
    kernel = state.get(f"encoders.{_module_key(cameras[0])}.1.kernel")
    if kernel is None:
        raise CheckpointError(f"{root}/model.safetensors lacks encoders.{_module_key(cameras[0])}.1.kernel")
    config = LeRobotImportConfig(
        camera_keys=cameras, image_size=list(shapes.pop()), num_classes=int(cfg.get("num_classes", 2)),
        latent_dim=int(cfg.get("latent_dim", 256)), hidden_dim=int(cfg.get("hidden_dim", 256)),
        spatial_features=int(kernel.shape[-1]), dropout=float(cfg.get("dropout_rate", 0.1)),
        mean=mean, std=std, eps=eps, encoder=str(cfg.get("model_name", "")), source=str(root))
    model = LeRobotRewardClassifier(config, ResNetTrunk(spec), (int(kernel.shape[1]), int(kernel.shape[2])))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CheckpointError(f"{root}/model.safetensors does not fit LeRobot's classifier layout: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device).eval()


def _module_key(camera: str) -> str:
    return camera.replace(".", "_")


def _dealias_encoder(state: dict[str, torch.Tensor], cameras: list[str]) -> dict[str, torch.Tensor]:
    """LeRobot shares one encoder between ``encoder.*`` and ``encoders.<cam>.0.*``; safetensors keeps
    one name of each shared tensor. Gather them under ``encoder.*``."""
    out = {}
    prefixes = [f"encoders.{_module_key(c)}.0." for c in cameras]
    for key, value in state.items():
        for p in prefixes:
            if key.startswith(p):
                out.setdefault("encoder." + key[len(p):], value)
                break
        else:
            out[key] = value
    return out


def _read_normalisation(root: Path, cameras: list[str]) -> tuple[dict, dict, float]:
    """Per-camera mean/std from the saved ``classifier_preprocessor`` normaliser step."""
    from safetensors.torch import load_file

    pipeline = root / "classifier_preprocessor.json"
    if not pipeline.is_file():
        raise CheckpointError(f"{root} has no classifier_preprocessor.json: without the training "
                              "normalisation the classifier sees different inputs than in training; copy it "
                              "(and its .safetensors) from the LeRobot run's pretrained_model folder")
    spec = json.loads(pipeline.read_text())
    for step in spec.get("steps", []):
        if "normalizer" not in str(step.get("registry_name", step.get("class", ""))):
            continue
        step_cfg = step.get("config", {})
        state_file = step.get("state_file")
        if not state_file or not (root / state_file).is_file():
            raise CheckpointError(f"{root}: normaliser state file {state_file!r} is missing")
        stats = load_file(str(root / state_file))
        if not all(f"{c}.mean" in stats for c in cameras):
            continue
        modes = {str(k).upper(): str(v).upper() for k, v in (step_cfg.get("norm_map") or {}).items()}
        if modes.get("VISUAL", "MEAN_STD") not in ("MEAN_STD", "NORMALIZATIONMODE.MEAN_STD"):
            raise CheckpointError(f"{root}: VISUAL normalisation {modes['VISUAL']} is not supported (MEAN_STD)")
        mean = {c: stats[f"{c}.mean"].float().flatten().tolist() for c in cameras}
        std = {c: stats[f"{c}.std"].float().flatten().tolist() for c in cameras}
        return mean, std, float(step_cfg.get("eps", 1e-8))
    raise CheckpointError(f"{root}/classifier_preprocessor.json has no normaliser step with stats for {cameras}")


def _encoder_config(model_name: str) -> dict:
    """The encoder folder's config.json when ``model_name`` is a local folder (else {})."""
    path = Path(model_name) / CONFIG_NAME if model_name else None
    if path is not None and path.is_file():
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            return {}
    return {}
