"""A hilreward classifier as a LeRobot ``reward_classifier`` checkpoint that stock LeRobot 0.6 loads unchanged.

    hilreward export checkpoint=runs/cls/checkpoints/best format=lerobot    # -> runs/cls/checkpoints/best/lerobot

LeRobot's ``Classifier`` is HIL-SERL's head (per camera: a 4x4 spatial embedding, dropout, linear, LayerNorm,
tanh; then linear, dropout, LayerNorm, ReLU, linear) over an encoder that transformers' ``AutoModel`` loads from
``model_name`` with ``trust_remote_code=True``. hilreward's ResNet-10 models have that head, so the export is a
renaming plus two facts LeRobot does not know:

- **What the model sees.** LeRobot's ``RewardClassifierProcessorStep`` feeds the classifier the pipeline's float
  frames in [0, 1] as they are (no normalisation, no resize). hilreward's model first puts frames on the 8-bit
  grid, resizes them to its ``image_size`` and normalises them. Folding the normalisation into the first
  convolution is not exact (the stem pads with zeros after normalising, i.e. with the mean colour, where a fold
  would pad with black; and GroupNorm, in the HIL-SERL layout, does not absorb a per-channel shift), so the
  encoder carries those steps itself: ``hilreward_encoder/`` is a transformers model whose code is hilreward's own
  functions (:func:`hilreward.images.model_pixels`, :func:`~hilreward.models.preprocessing.normalize`,
  :class:`~hilreward.models.resnet10.ResNet10`), copied into ``modeling_hilreward.py`` at export. It imports only
  torch and transformers.
- **The temperature** divides the last layer's weights and bias, so LeRobot's sigmoid gives hilreward's
  probabilities.

``model_name`` is the absolute path of ``hilreward_encoder/`` (LeRobot resolves it, not the checkpoint folder):
after moving the folder, export again. LeRobot pays success where ``probability > success_threshold``, hilreward
where ``probability >= threshold``; :func:`strict_threshold` gives the ``success_threshold`` that decides alike
on every float32 probability. Every export is checked on random frames through a LeRobot-layout twin
(:class:`~hilreward.models.lerobot_import.LeRobotRewardClassifier` loading the written weights); a difference
above ``atol`` leaves nothing written.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from .. import images
from ..errors import CheckpointError
from ..utils import replace_dir
from . import preprocessing, resnet10
from .checkpoint import save_weights
from .classifier import RewardClassifier
from .lerobot_import import LeRobotImportConfig, LeRobotRewardClassifier

ENCODER_DIR = "hilreward_encoder"
MODULE = "modeling_hilreward"
LEROBOT_MAP = (4, 4)
"""The encoder map LeRobot's Classifier is built for (its spatial embedding is 4x4: 97-128 px for a ResNet-10)."""
ROUTE = ("use it in LeRobot through hilreward's processor step instead: HilrewardRewardStep(pretrained_path=...) "
         "(docs/deploy.md, 'Use in LeRobot's HIL-SERL')")


@dataclass
class LeRobotExport:
    """What ``hilreward export format=lerobot`` wrote and what to set in LeRobot."""

    path: str
    """The LeRobot checkpoint folder (LeRobot's ``pretrained_path``)."""
    success_threshold: float
    """LeRobot's ``success_threshold`` (``probability > success_threshold``) that decides as hilreward's."""
    threshold: float
    """hilreward's threshold (``probability >= threshold``), the checkpoint's calibrated one."""
    max_abs_diff: float
    """Largest |probability(LeRobot layout) - probability(hilreward)| on the check frames."""
    model_name: str
    """The encoder folder LeRobot loads (``config.json``'s ``model_name``)."""
    source: str
    """The hilreward checkpoint exported."""


def check_exportable(model: nn.Module) -> None:
    """CheckpointError (one line, naming the processor-step route) unless LeRobot's Classifier has ``model``'s
    layout: a hilreward binary classifier (one model, not an ensemble) with a ResNet-10 encoder whose map is 4x4."""
    if not isinstance(model, RewardClassifier):
        raise CheckpointError("this checkpoint is already a LeRobot reward_classifier; LeRobot loads it as it is")
    cfg = model.config
    why = None
    if cfg.encoder != "resnet10":
        why = f"its encoder is {cfg.encoder!r}, and LeRobot's Classifier takes a ResNet-10 (model.encoder=resnet10)"
    elif cfg.num_classes != 2:
        why = (f"it has {cfg.num_classes} classes, and LeRobot's step calls class 1 success (binary models only)")
    elif cfg.members > 1:
        why = (f"it is an ensemble of {cfg.members} members (calibration by folds of an encoder that trains), and "
               f"LeRobot's Classifier holds one encoder and head")
    elif tuple(cfg.feature_shape or ())[1:] != LEROBOT_MAP:
        why = (f"its encoder map is {tuple(cfg.feature_shape or ())[1:]} at image_size {cfg.image_size}, and "
               f"LeRobot's Classifier is built for {LEROBOT_MAP} (image sizes 97-128 px)")
    if why:
        raise CheckpointError(f"cannot export to LeRobot's Classifier: {why}; {ROUTE}")


def strict_threshold(threshold: float) -> float:
    """The ``success_threshold`` for which ``p > success_threshold`` (LeRobot, in float32) holds exactly when
    ``p >= threshold`` (hilreward) for every float32 probability ``p``: the float32 just below the smallest float32
    at or above ``threshold``, written as the shortest decimal that reads back as it."""
    at_or_above = np.float32(threshold)
    if float(at_or_above) < threshold:
        at_or_above = np.nextafter(at_or_above, np.float32(np.inf))
    below = np.nextafter(at_or_above, np.float32(-np.inf))
    return float(str(below))


def lerobot_state_dict(model: RewardClassifier) -> dict[str, torch.Tensor]:
    """``model``'s weights under LeRobot's Classifier names (the shared encoder once, as ``encoder.*``, without
    BatchNorm's training counter; the temperature folded into the last layer)."""
    state = model.state_dict()
    out = {k: v for k, v in state.items() if k.startswith("encoder.backbone.") and not k.endswith("num_batches_tracked")}
    for i, camera in enumerate(model.config.camera_keys):
        ours, theirs = f"reward_head.cameras.{i}.", f"encoders.{camera.replace('.', '_')}."
        out[theirs + "1.kernel"] = state[ours + "spatial.kernel"]
        for a, b in (("linear", "3"), ("norm", "4")):
            for p in ("weight", "bias"):
                out[f"{theirs}{b}.{p}"] = state[f"{ours}{a}.{p}"]
    for i in (0, 2, 4):
        for p in ("weight", "bias"):
            out[f"classifier_head.{i}.{p}"] = state[f"reward_head.mlp.{i}.{p}"]
    t = float(model.config.temperature)
    out["classifier_head.4.weight"] = out["classifier_head.4.weight"] / t
    out["classifier_head.4.bias"] = out["classifier_head.4.bias"] / t
    return {k: v.detach().float().contiguous() if v.is_floating_point() else v.detach() for k, v in out.items()}


def lerobot_config(model: RewardClassifier, model_name: str) -> dict[str, Any]:
    """LeRobot 0.6's ``RewardClassifierConfig`` for ``model`` (exactly its fields: LeRobot refuses others)."""
    cfg = model.config
    h, w = (int(s) for s in cfg.image_size)
    return {
        "type": "reward_classifier",
        "input_features": {key: {"type": "VISUAL", "shape": [3, h, w]} for key in cfg.camera_keys},
        "output_features": {}, "device": "cpu", "pretrained_path": None, "pretrained_revision": None,
        "push_to_hub": False, "repo_id": None, "license": None, "tags": ["hilreward"], "private": None,
        "name": "reward_classifier", "num_classes": 2, "hidden_dim": int(cfg.hidden_dim),
        "latent_dim": int(cfg.latent_dim), "image_embedding_pooling_dim": int(cfg.spatial_features),
        "dropout_rate": float(cfg.dropout), "model_name": model_name, "model_type": "cnn",
        "num_cameras": len(cfg.camera_keys), "learning_rate": 0.0001, "weight_decay": 0.01, "grad_clip_norm": 1.0,
        # the encoder normalises (see the module doc): nothing for LeRobot to do
        "normalization_mapping": {"VISUAL": "IDENTITY"},
    }


def encoder_config(model: RewardClassifier) -> dict[str, Any]:
    """The transformers config.json of ``hilreward_encoder/``."""
    cfg = model.config
    return {
        "model_type": "hilreward_encoder", "architectures": ["HilrewardEncoder"],
        "auto_map": {"AutoConfig": f"{MODULE}.HilrewardEncoderConfig", "AutoModel": f"{MODULE}.HilrewardEncoder"},
        "encoder_options": dict(cfg.encoder_options), "image_size": [int(s) for s in cfg.image_size],
        "mean": list(cfg.mean), "std": list(cfg.std),
        "hidden_sizes": [int(w) for w in cfg.encoder_options.get("widths", [64, 128, 256, 512])],
        "hilreward_version": cfg.version,
    }


_HEADER = '''"""hilreward's ResNet-10 encoder as a transformers model, for LeRobot's reward Classifier.

Written by `hilreward export format=lerobot` (hilreward {version}). Below the wrapper classes is hilreward's own
code, copied from its source at export: the 8-bit grid and resize every hilreward backend applies, the
normalisation, and the ResNet-10. LeRobot feeds float frames in [0, 1]; this encoder gives them the pixels
hilreward's model sees.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithNoAttention


class HilrewardEncoderConfig(PretrainedConfig):
    model_type = "hilreward_encoder"

    def __init__(self, encoder_options=None, image_size=(128, 128), mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), hidden_sizes=(64, 128, 256, 512), hilreward_version="", **kwargs):
        super().__init__(**kwargs)
        self.encoder_options = dict(encoder_options or {{}})
        self.image_size = [int(s) for s in image_size]
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        self.hidden_sizes = [int(h) for h in hidden_sizes]  # LeRobot reads the feature width from the last
        self.hilreward_version = hilreward_version


class HilrewardEncoder(PreTrainedModel):
    config_class = HilrewardEncoderConfig
    main_input_name = "pixel_values"

    def __init__(self, config):
        super().__init__(config)
        self.backbone = ResNet10(**config.encoder_options)
        # Inference with the running statistics, and no training counter: LeRobot's loader (safetensors, not strict)
        # would report every BatchNorm's counter, under each name of the shared encoder, as an unexpected key.
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.track_running_stats, module.num_batches_tracked = False, None
        self.post_init()

    def _init_weights(self, module):
        pass  # every weight comes from model.safetensors

    def forward(self, pixel_values, **kwargs):
        pixels = model_pixels(pixel_values.float(), self.config.image_size)
        return BaseModelOutputWithNoAttention(
            last_hidden_state=self.backbone(normalize(pixels, self.config.mean, self.config.std)))


# ---- hilreward's code
'''


def encoder_module_source() -> str:
    """The source of ``modeling_hilreward.py``: the wrapper classes, then hilreward's functions it uses."""
    from .. import __version__

    parts = [images.resize, images._resize_levels, images._resize_8bit, images.model_pixels, preprocessing.normalize,
             resnet10.same_padding, resnet10.Conv, resnet10.max_pool_3x3_s2, resnet10.MaxPool, resnet10._norm,
             resnet10.BasicBlock, resnet10.ResNet10]
    activations = ", ".join(f"{k!r}: nn.{v.__name__}" for k, v in resnet10._ACTIVATIONS.items())
    body = [f"_ACTIVATIONS = {{{activations}}}"] + [inspect.getsource(p).rstrip() for p in parts]
    return _HEADER.format(version=__version__) + "\n\n\n".join(body) + "\n"


class _Encoder(nn.Module):
    """The exported encoder's arithmetic after the 8-bit grid (which the twin's preprocessing does): normalise,
    then hilreward's ResNet-10 (named ``backbone``, as in the export)."""

    def __init__(self, model: RewardClassifier) -> None:
        super().__init__()
        self.backbone = resnet10.ResNet10(**model.config.encoder_options)
        self.mean, self.std = list(model.config.mean), list(model.config.std)
        self.out_channels = int(model.config.feature_shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(preprocessing.normalize(x, self.mean, self.std))


def lerobot_twin(model: RewardClassifier, state: dict[str, torch.Tensor]) -> LeRobotRewardClassifier:
    """LeRobot's Classifier layout (hilreward's re-implementation) with the exported weights ``state``."""
    cfg = model.config
    keys = list(cfg.camera_keys)
    twin_cfg = LeRobotImportConfig(
        camera_keys=keys, image_size=list(cfg.image_size), latent_dim=cfg.latent_dim, hidden_dim=cfg.hidden_dim,
        spatial_features=cfg.spatial_features, dropout=cfg.dropout, mean={k: [0.0] * 3 for k in keys},
        std={k: [1.0] * 3 for k in keys}, eps=0.0)  # identity: the encoder normalises
    twin = LeRobotRewardClassifier(twin_cfg, _Encoder(model), LEROBOT_MAP)
    missing, unexpected = twin.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"the LeRobot weights do not fit LeRobot's layout (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}); this is a bug in hilreward's export")
    return twin.eval()


def check_parity(model: RewardClassifier, twin: LeRobotRewardClassifier, batch: int = 4, seed: int = 0) -> float:
    """Max |p_twin - p_hilreward| on ``batch`` random frames per camera, fed as LeRobot feeds them (float CHW in
    [0, 1]), at the model's size and at another."""
    rng = np.random.default_rng(seed)
    h, w = (int(s) for s in model.config.image_size)
    worst = 0.0
    for size in ((h, w), (h + 13, w - 7)):
        frames = {k: torch.from_numpy(rng.integers(0, 256, (batch, 3, *size), dtype=np.uint8)).float() / 255.0
                  for k in model.config.camera_keys}
        worst = max(worst, float(np.max(np.abs(twin.predict_proba(frames) - model.predict_proba(frames)))))
    return worst


def export_lerobot(model: RewardClassifier, output: str | Path, atol: float = 1e-4, check_batch: int = 4,
                   source: str = "") -> LeRobotExport:
    """Write ``model`` to ``output`` as a LeRobot reward_classifier checkpoint (see the module doc), atomically and
    only once the twin agrees within ``atol``."""
    check_exportable(model)
    model = model.eval()
    out = Path(output).expanduser().resolve()
    model_name = str(out / ENCODER_DIR)
    state = lerobot_state_dict(model)
    diff = check_parity(model, lerobot_twin(model, state), check_batch)
    if not diff <= atol:
        raise CheckpointError(f"the LeRobot export differs from hilreward by {diff:.3g} in probability (allowed "
                              f"{atol:g}); nothing was written")
    result = LeRobotExport(str(out), strict_threshold(model.threshold), model.threshold, diff, model_name, source)
    meta = {"format": "pt", "hilreward_version": model.config.version}

    def fill(tmp: Path) -> None:
        _write_json(tmp / "config.json", lerobot_config(model, model_name))
        save_weights(tmp / "model.safetensors", state, metadata=meta)
        enc = tmp / ENCODER_DIR
        enc.mkdir()
        _write_json(enc / "config.json", encoder_config(model))
        save_weights(enc / "model.safetensors", {k[len("encoder."):]: v for k, v in state.items()
                                                 if k.startswith("encoder.")}, metadata=meta)
        (enc / f"{MODULE}.py").write_text(encoder_module_source())
        _write_json(tmp / "hilreward_export.json", {**asdict(result), "temperature": model.config.temperature,
                                                      "calibration": model.config.calibration})
        (tmp / "README.md").write_text(_readme(result, model))

    replace_dir(out, fill)
    return result


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _readme(r: LeRobotExport, model: RewardClassifier) -> str:
    cal = model.config.calibration or {}
    rests = f" It rests on: {cal.get('reason')}." if cal.get("reason") else ""
    return f"""# hilreward reward classifier, exported for LeRobot

A LeRobot 0.6 `reward_classifier` checkpoint written by `hilreward export format=lerobot` from `{r.source}`
(cameras {', '.join(model.config.camera_keys)}; input {model.config.image_size[0]}x{model.config.image_size[1]},
other sizes are resized by the encoder). Stock LeRobot loads it unchanged:

```json
"processor": {{"reward_classifier": {{"pretrained_path": "{r.path}",
                                    "success_threshold": {r.success_threshold}, "success_reward": 1.0}}}}
```

`success_threshold` {r.success_threshold}: LeRobot pays success where the probability is *above* it, which is
hilreward's calibrated threshold {r.threshold} (success at or above it) on every float32 probability.{rests}

The encoder (`{ENCODER_DIR}/`, loaded by transformers with LeRobot's `trust_remote_code=True`) rounds the frames
to the 8-bit grid, resizes and normalises them as hilreward does, so LeRobot's step, which feeds raw float frames,
gets hilreward's probabilities (largest difference on the export's check frames: {r.max_abs_diff:.2g}).
`config.json` names it by absolute path (`{r.model_name}`): after moving this folder, export again.
"""


__all__ = ["LeRobotExport", "check_exportable", "export_lerobot", "strict_threshold", "lerobot_state_dict"]
