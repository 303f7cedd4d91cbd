"""Shared helpers for the LeRobot 0.6.1 peer drivers (run under the peer venv, Python 3.12).

These scripts only *import* lerobot; nothing of LeRobot is copied here. Each driver prints
one JSON object as its last stdout line, which ``bench/run_all.py`` parses.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

CAMERAS = ("observation.images.front", "observation.images.wrist")


def set_threads(n: int) -> None:
    torch.set_num_threads(n)


def build_config(encoder: str, size: int = 128):
    """RewardClassifierConfig as ``lerobot-train --reward_model.*`` builds it for two 128x128 cameras."""
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.rewards.classifier.configuration_classifier import RewardClassifierConfig

    cfg = RewardClassifierConfig(model_name=encoder, num_cameras=len(CAMERAS), device="cpu")
    cfg.input_features = {k: PolicyFeature(type=FeatureType.VISUAL, shape=(3, size, size)) for k in CAMERAS}
    return cfg


def build_classifier(encoder: str, seed: int = 0):
    from lerobot.rewards.classifier.modeling_classifier import Classifier

    torch.manual_seed(seed)
    return Classifier(build_config(encoder))


def dataset_stats(root: str) -> dict:
    """The dataset's own normalisation statistics, as lerobot-train passes them to the preprocessor."""
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata(repo_id="local/" + Path(root).name, root=root)
    return meta.stats


def percentiles(samples_ms: list[float]) -> dict:
    arr = np.asarray(samples_ms)
    return {"median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)),
            "mean_ms": float(arr.mean()), "min_ms": float(arr.min()), "n": int(arr.size)}


def versions() -> dict:
    import lerobot
    import transformers

    return {"lerobot": getattr(lerobot, "__version__", "?"), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": sys.version.split()[0]}


def emit(result: dict) -> None:
    """Print the result as the last stdout line (the contract with run_all.py)."""
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


def now() -> float:
    return time.perf_counter()


__all__ = ["CAMERAS", "build_classifier", "build_config", "dataset_stats", "emit", "now", "percentiles",
           "set_threads", "versions"]
