"""Encoders from other libraries, when installed: ``hf:<repo or folder>``, ``timm:<name>``, ``torchvision:<name>``.

Each keeps the library's architecture config in ``options`` so a checkpoint rebuilds it with
``pretrained=False`` (no network) and then loads its own saved weights.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from ..errors import EncoderError
from .registry import IMAGENET_MEAN, IMAGENET_STD, Encoder
from .weights import load_into, read_json, read_state_dict, resolve_weights, safetensors_file


def _require(module: str, spec: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EncoderError(
            f"encoder {spec!r} needs the '{module}' package, which is not installed: "
            f"pip install {extra} (or pick another encoder, e.g. resnet10 or small_cnn)"
        ) from None


def _fix(spec: str) -> str:
    return f"pass model.weights=<local folder>, or model.pretrained=false to build {spec} with random weights"


class _FeatureMap(nn.Module):
    """Calls a transformers model and returns its last hidden state as (B,C,h,w)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).last_hidden_state


def _find_stages(model: nn.Module) -> list[nn.Module]:
    for path in ("encoder.stages", "stages", "encoder.layers", "layers"):
        obj: Any = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, (nn.ModuleList, nn.Sequential)) and len(obj) > 0:
            return list(obj)
    return []


def hf_encoder(arg=None, pretrained=True, weights=None, options=None) -> Encoder:
    spec = f"hf:{arg}"
    transformers = _require("transformers", spec, "transformers (or 'hilreward[hf]')")
    options = dict(options or {})
    source = weights or arg
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if pretrained:
        folder = resolve_weights(source, f"encoder {spec!r}", _fix(spec))
        try:
            model = transformers.AutoModel.from_pretrained(str(folder), use_safetensors=True)
        except Exception as exc:
            raise EncoderError(f"encoder {spec!r}: transformers cannot load {folder}: {exc}") from None
        prep = read_json(folder / "preprocessor_config.json")
        mean, std = prep.get("image_mean", mean), prep.get("image_std", std)
        options = {"config": model.config.to_dict()}
    else:
        config = options.get("config")
        if config is None:
            folder = resolve_weights(source, f"encoder {spec!r}", _fix(spec))
            config = transformers.AutoConfig.from_pretrained(str(folder)).to_dict()
        config = dict(config)
        model_type = config.pop("model_type", None)
        try:
            model = transformers.AutoModel.from_config(transformers.AutoConfig.for_model(model_type, **config))
        except Exception as exc:
            raise EncoderError(f"encoder {spec!r}: cannot rebuild model type {model_type!r}: {exc}") from None
        options = {"config": model.config.to_dict()}
    return Encoder(spec, _FeatureMap(model), _find_stages(model), mean, std, default_size=(128, 128),
                   options=options, weights_source=source if pretrained else None)


def timm_encoder(arg=None, pretrained=True, weights=None, options=None) -> Encoder:
    spec = f"timm:{arg}"
    timm = _require("timm", spec, "timm (or 'hilreward[timm]')")
    kwargs: dict[str, Any] = {"pretrained": bool(pretrained), "num_classes": 0, "global_pool": ""}
    if pretrained and weights:
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights)}
    try:
        model = timm.create_model(arg, **kwargs)
    except Exception as exc:
        raise EncoderError(f"encoder {spec!r}: timm cannot build it ({exc}); {_fix(spec)}") from None
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = cfg.get("input_size", (3, 128, 128))[1:]
    return Encoder(spec, _TimmFeatures(model), _find_stages(model), cfg.get("mean", IMAGENET_MEAN),
                   cfg.get("std", IMAGENET_STD), default_size=size, weights_source=weights if pretrained else None)


class _TimmFeatures(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def torchvision_encoder(arg=None, pretrained=True, weights=None, options=None) -> Encoder:
    spec = f"torchvision:{arg}"
    tv = _require("torchvision", spec, "torchvision")
    try:
        model = tv.models.get_model(arg, weights="DEFAULT" if pretrained and not weights else None)
    except Exception as exc:
        raise EncoderError(f"encoder {spec!r}: torchvision cannot build it ({exc}); {_fix(spec)}") from None
    if pretrained and weights:
        what = f"encoder {spec!r}"
        path = safetensors_file(resolve_weights(weights, what, _fix(spec)), what)
        load_into(model, read_state_dict(path, what), what, str(path))
    if hasattr(model, "features"):  # vgg, mobilenet, efficientnet, convnext, ...
        backbone = model.features
        stages = list(backbone)
    elif hasattr(model, "layer4"):  # resnet family
        stages = [nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool),
                  model.layer1, model.layer2, model.layer3, model.layer4]
        backbone = nn.Sequential(*stages)
    else:
        raise EncoderError(f"encoder {spec!r}: no convolutional feature extractor found (resnet*, vgg*, "
                           "mobilenet*, efficientnet*, convnext* work)")
    return Encoder(spec, backbone, stages, IMAGENET_MEAN, IMAGENET_STD, default_size=(224, 224),
                   weights_source=(weights or "torchvision DEFAULT") if pretrained else None)
