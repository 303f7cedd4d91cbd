"""Find a checkpoint folder (local or Hub), load the classifier in it (hilreward's or LeRobot's), name its version."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..utils import content_hash
from .checkpoint import resolve_checkpoint
from .classifier import RewardClassifier
from .lerobot_import import import_lerobot, is_lerobot_checkpoint
from ..constants import CONFIG_NAME, WEIGHTS_NAME


def load_classifier(checkpoint: str | Path, device: str = "cpu") -> torch.nn.Module:
    """RewardClassifier for hilreward checkpoints, LeRobotRewardClassifier for LeRobot ``reward_classifier`` ones."""
    root = resolve_checkpoint(checkpoint)
    if is_lerobot_checkpoint(root):
        return import_lerobot(root, device=device)
    return RewardClassifier.from_pretrained(root, device=device).eval()


def model_version(checkpoint: Path) -> str:
    """``model_version`` from config.json when the checkpoint names one (e.g. a retrainer's version id),
    else the first 12 hex digits of sha256(config.json + model.safetensors): stable across loads and
    machines, different for any change of weights or configuration."""
    config = checkpoint / CONFIG_NAME
    try:
        named = json.loads(config.read_text()).get("model_version")
    except (OSError, json.JSONDecodeError):
        raise CheckpointError(f"{config} is missing or not JSON") from None
    return str(named) if named else checkpoint_hash(checkpoint)[:12]


def checkpoint_hash(checkpoint: Path) -> str:
    """sha256 (hex) of a checkpoint's config.json + model.safetensors: what identifies its weights and config."""
    files = [checkpoint / name for name in (CONFIG_NAME, WEIGHTS_NAME)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(f"{checkpoint} has no {missing[0]}: not a hilreward checkpoint; pass a directory written "
                              "by hilreward train (e.g. outputs/train/checkpoints/best)")
    return content_hash(files, length=64)
