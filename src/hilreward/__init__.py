"""hilreward: vision reward classifiers for human-in-the-loop robot RL (HIL-SERL).

Public API (everything else lives in private-by-convention submodules):
  errors:     HilrewardError and its subclasses (see hilreward.errors)
  config:     TrainConfig, compose
"""

from .config import TrainConfig, compose
from .errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    EncoderError,
    HilrewardError,
    InputError,
    ServingError,
    VideoError,
)

__version__ = "0.1.0"

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
    "InputError",
    "ServingError",
]
