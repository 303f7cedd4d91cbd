"""hilreward: vision reward classifiers for human-in-the-loop robot RL (HIL-SERL).

The public API is what this module exports; submodules are implementation details.
Heavy names (torch, grpc) load on first use, so ``import hilreward`` stays cheap.

- Data:        LeRobotDataset, load_frame_data, DatasetWriter
- Model:       RewardClassifier, build_encoder, register_encoder, list_encoders
- Training:    TrainConfig, compose, train
- Evaluation:  evaluate, predict
- Deployment:  RewardFunction, RewardResult, RewardOptions, RewardClassifierWrapper, HumanOverride, export_onnx,
               export_lerobot, import_lerobot, register_backend, relabel_rewards
- Hub:         push (a checkpoint with its model card)
- Serving:     RewardClient, CorrectionStore
- Errors:      HilrewardError and subclasses (documented in hilreward.errors)
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import TrainConfig, compose
from .errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    EncoderError,
    EvidenceError,
    HilrewardError,
    HubError,
    InputError,
    RenderError,
    ServingError,
    VideoError,
)

__version__ = "0.1.0"

_LAZY = {
    "LeRobotDataset": "hilreward.data",
    "load_frame_data": "hilreward.data",
    "DatasetWriter": "hilreward.data",
    "RewardClassifier": "hilreward.models",
    "build_encoder": "hilreward.models",
    "register_encoder": "hilreward.models",
    "list_encoders": "hilreward.models",
    "train": "hilreward.training",
    "evaluate": "hilreward.evaluation",
    "predict": "hilreward.evaluation",
    "RewardFunction": "hilreward.deploy",
    "RewardResult": "hilreward.deploy",
    "RewardOptions": "hilreward.deploy",
    "RewardClassifierWrapper": "hilreward.deploy",
    "HumanOverride": "hilreward.deploy",
    "export_onnx": "hilreward.deploy",
    "export_lerobot": "hilreward.models.lerobot_export",
    "push": "hilreward.hub",
    "import_lerobot": "hilreward.deploy",
    "register_backend": "hilreward.deploy",
    "relabel_rewards": "hilreward.deploy",
    "RewardClient": "hilreward.serving",
    "CorrectionStore": "hilreward.online",
}

__all__ = [
    "__version__",
    "TrainConfig",
    "compose",
    "HilrewardError",
    "ConfigError",
    "DatasetError",
    "VideoError",
    "EncoderError",
    "CheckpointError",
    "EvidenceError",
    "InputError",
    "RenderError",
    "HubError",
    "ServingError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hilreward' has no attribute {name!r}")
