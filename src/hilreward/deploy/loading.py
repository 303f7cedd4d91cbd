"""Find a checkpoint folder (local or Hub) and load the classifier in it, hilreward's or LeRobot's."""

from __future__ import annotations

from pathlib import Path

import torch

from .lerobot_import import import_lerobot, is_lerobot_checkpoint


def resolve_checkpoint(path_or_repo: str | Path) -> Path:
    """A local checkpoint folder, or the local snapshot of a Hub repo id (honours HF_HUB_OFFLINE)."""
    from ..models.checkpoint import resolve_checkpoint as resolve

    return resolve(path_or_repo)


def load_classifier(checkpoint: str | Path, device: str = "cpu") -> torch.nn.Module:
    """RewardClassifier for hilreward checkpoints, LeRobotRewardClassifier for LeRobot ``reward_classifier`` ones."""
    root = resolve_checkpoint(checkpoint)
    if is_lerobot_checkpoint(root):
        return import_lerobot(root, device=device)
    from ..models import RewardClassifier

    return RewardClassifier.from_pretrained(root, device=device).eval()
