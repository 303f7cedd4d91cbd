"""hilreward.deploy: the classifier in the RL loop.

    from hilreward.deploy import RewardFunction, RewardClassifierWrapper, HumanOverride
    reward_fn = RewardFunction.from_pretrained("outputs/train/checkpoints/best", consecutive=2)
    env = RewardClassifierWrapper(make_env("drawer-open"), reward_fn)

- :class:`RewardFunction`: frames -> :class:`RewardResult` (probability, success, reward, terminate,
  model_version, latency_ms); batched calls, per-env debounce, one version per episode.
- :mod:`~hilreward.deploy.rule`: the one reward rule (:func:`judge`, :func:`success_probability`) that the
  reward function, relabelling and the reward server share.
- :func:`relabel_rewards`: the rewards of stored transitions (a replay buffer) as a new version gives them.
- :class:`RewardClassifierWrapper`: gymnasium wrapper that replaces / adds to the env reward.
- :class:`HumanOverride` with programmatic, keyboard and gamepad sources; disagreements become
  :class:`Correction` records in a :class:`CorrectionSink` (default: a LeRobot v3.0 dataset folder).
- ONNX export (``hilreward export``) and LeRobot ``reward_classifier`` import (:func:`import_lerobot`).
- One backend registry (:func:`register_backend`, :func:`list_backends`): ``auto`` (default), ``torch``,
  ``onnx``, and ``grpc`` (registered as ``"hilreward.serving.client:GrpcBackend.load"``, imported on
  first use: importing this package loads neither serving nor grpc).
"""

from .backends import BackendOptions, EpisodeStep, list_backends, register_backend
from .corrections import Correction, CorrectionSink, DatasetCorrectionSink, MemoryCorrectionSink
from ..models.lerobot_import import LeRobotRewardClassifier, import_lerobot, is_lerobot_checkpoint
from ..models.loading import load_classifier
from .onnx_export import export_onnx
from .override import HumanOverride, KeyboardSource, OverrideSource, PygameJoystickSource
from .replay import Relabelled, relabel_rewards
from .reward_function import RewardFunction, RewardResult
from .rule import RewardOptions, judge, success_probability
from .wrapper import RewardClassifierWrapper

__all__ = [
    "RewardFunction",
    "RewardResult",
    "RewardOptions",
    "judge",
    "success_probability",
    "relabel_rewards",
    "Relabelled",
    "RewardClassifierWrapper",
    "HumanOverride",
    "OverrideSource",
    "KeyboardSource",
    "PygameJoystickSource",
    "Correction",
    "CorrectionSink",
    "DatasetCorrectionSink",
    "MemoryCorrectionSink",
    "export_onnx",
    "import_lerobot",
    "is_lerobot_checkpoint",
    "LeRobotRewardClassifier",
    "load_classifier",
    "register_backend",
    "list_backends",
    "BackendOptions",
    "EpisodeStep",
]
