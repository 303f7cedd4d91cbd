"""hilreward.models: encoder registry, HIL-SERL head, RewardClassifier (preprocessing inside, safetensors checkpoints).

    from hilreward.models import RewardClassifier, build_encoder, list_encoders
    model = RewardClassifier.from_pretrained("outputs/train/checkpoints/best")
    p = model.predict_proba({"front": frame_uint8_hwc, "wrist": other_frame})
"""

from .classifier import FORMAT_VERSION, ClassifierConfig, RewardClassifier
from .head import RewardHead, SpatialLearnedEmbeddings
from .preprocessing import full_camera_key, short_camera_key
from .registry import IMAGENET_MEAN, IMAGENET_STD, Encoder, build_encoder, list_encoders, register_encoder

__all__ = [
    "FORMAT_VERSION",
    "ClassifierConfig",
    "RewardClassifier",
    "RewardHead",
    "SpatialLearnedEmbeddings",
    "Encoder",
    "build_encoder",
    "list_encoders",
    "register_encoder",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "full_camera_key",
    "short_camera_key",
]
