"""File names and keys that several layers share, each defined once (like LeRobot's ``constants``).

Below everything but :mod:`hilreward.errors`: any module may import it, and it imports nothing of hilreward.
"""

CONFIG_NAME = "config.json"
"""A checkpoint's model config (the name Hugging Face and LeRobot model folders use too)."""
WEIGHTS_NAME = "model.safetensors"
"""A checkpoint's weights (encoder and head), safetensors: loading never unpickles."""
TRAIN_CONFIG_NAME = "train_config.yaml"
"""The resolved training config, in a run's folder and in every checkpoint."""
METRICS_NAME = "metrics.json"
"""Metrics of a checkpoint, a training run or an evaluation."""
HISTORY_NAME = "metrics.jsonl"
"""A training run's local history: one JSON line per logged step and per evaluation (loss, accuracy)."""
CURVE_NAME = "training_curve.png"
"""The training curve drawn from the history, beside it."""
STATE_JSON = "training_state.json"
"""A training checkpoint's step, scheduler, optimizer hyper-parameters and RNG scalars (to resume exactly)."""
STATE_TENSORS = "training_state.safetensors"
"""A training checkpoint's optimizer moments and RNG states."""

REWARD_KEY = "next.reward"
"""LeRobot's reward column: the default label (``label.key``), and the label column hilreward writes."""
CAMERA_PREFIX = "observation.images."
"""LeRobot's prefix of every camera feature."""
