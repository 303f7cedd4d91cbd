"""Find a checkpoint folder (local or Hub), load the classifier in it (hilreward's or LeRobot's), name its version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..errors import CheckpointError
from .checkpoint import resolve_checkpoint
from .lerobot_import import import_lerobot, is_lerobot_checkpoint


def load_classifier(checkpoint: str | Path, device: str = "cpu") -> torch.nn.Module:
    """RewardClassifier for hilreward checkpoints, LeRobotRewardClassifier for LeRobot ``reward_classifier`` ones."""
    root = resolve_checkpoint(checkpoint)
    if is_lerobot_checkpoint(root):
        return import_lerobot(root, device=device)
    from .classifier import RewardClassifier

    return RewardClassifier.from_pretrained(root, device=device).eval()


def model_version(checkpoint: Path) -> str:
    """``model_version`` from config.json when the checkpoint names one (e.g. a retrainer's version id),
    else the first 12 hex digits of sha256(config.json + model.safetensors): stable across loads and
    machines, different for any change of weights or configuration."""
    config = checkpoint / "config.json"
    try:
        named = json.loads(config.read_text()).get("model_version")
    except (OSError, json.JSONDecodeError):
        raise CheckpointError(f"{config} is missing or not JSON") from None
    if named:
        return str(named)
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        path = checkpoint / name
        if not path.exists():
            raise CheckpointError(f"{checkpoint} has no {name}")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]
