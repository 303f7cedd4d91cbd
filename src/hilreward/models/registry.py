"""Encoder registry: ``@register_encoder("name")`` entries, :func:`build_encoder`, the :class:`Encoder` wrapper.

An encoder maps normalised images (B,3,H,W) to a feature map (B,C,h,w) and carries what it
needs to be used correctly: its preprocessing (mean, std, default input size), its output
channels, the architecture options needed to rebuild it without network (saved in the
checkpoint), and a fingerprint of its weights (for feature-cache keys).

Names ending in ``:`` are prefixes: ``hf:<repo or folder>``, ``timm:<name>``, ``torchvision:<name>``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Optional, Sequence, get_args

import torch
from torch import nn

from ..config import Freeze, one_of
from ..errors import EncoderError
from ..utils import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FREEZE_MODES = get_args(Freeze)

Builder = Callable[..., "Encoder"]
ENCODERS: Registry[Builder] = Registry("encoder", EncoderError)
"""Encoder name (or ``prefix:``) -> builder. The built-in ones are named here and imported on first use (their
modules import this one)."""
for _name, _builder in (("resnet10", "resnet10:resnet10"), ("small_cnn", "conv:small_cnn"), ("tiny", "conv:tiny"),
                        ("hf:", "external:hf_encoder"), ("timm:", "external:timm_encoder"),
                        ("torchvision:", "external:torchvision_encoder")):
    ENCODERS.register(_name, f"hilreward.models.{_builder}")


class Encoder(nn.Module):
    """A feature extractor with its preprocessing and freeze policy.

    ``backbone`` maps (B,3,H,W) normalised pixels to (B,C,h,w); ``stage_modules`` lists its
    stages in order (stem first), so ``freeze="last"`` can fine-tune only the last one.
    Frozen parts have ``requires_grad=False`` and stay in eval mode even when the model
    is put in train mode (BatchNorm statistics and dropout of a frozen encoder never move).
    """

    def __init__(
        self,
        spec: str,
        backbone: nn.Module,
        stage_modules: Sequence[nn.Module],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        default_size: Sequence[int] = (128, 128),
        options: Optional[dict[str, Any]] = None,
        weights_source: Optional[str] = None,
    ):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self._stages = list(stage_modules)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.default_size = (int(default_size[0]), int(default_size[1]))
        self.options: dict[str, Any] = dict(options or {})
        self.weights_source = weights_source
        self.freeze = "none"
        self.out_channels = int(self.feature_shape(self.default_size)[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def stages(self) -> list[nn.Module]:
        """The backbone's stages in order (stem first)."""
        return list(self._stages)

    def feature_shape(self, image_size: Sequence[int]) -> tuple[int, int, int]:
        """(C, h, w) of the feature map for an input of ``image_size`` = (H, W), from a dummy forward."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                first = next(self.parameters(), None)
                device = first.device if first is not None else "cpu"
                out = self.backbone(torch.zeros(1, 3, int(image_size[0]), int(image_size[1]), device=device))
        except RuntimeError as exc:
            raise EncoderError(
                f"encoder {self.spec!r} cannot take {image_size[0]}x{image_size[1]} inputs ({exc}); "
                f"pick a larger model.image_size"
            ) from None
        finally:
            self.train(was_training)
        if out.ndim != 4:
            raise EncoderError(
                f"encoder {self.spec!r} returns a {tuple(out.shape)} tensor, not a (B,C,h,w) feature map; "
                "use a convolutional backbone"
            )
        return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])

    def set_freeze(self, mode: str) -> "Encoder":
        """``all``: nothing trains; ``last``: only the last stage trains; ``none``: everything trains."""
        one_of(mode, Freeze, "model.freeze")
        self.freeze = mode
        trainable = self._trainable_modules()
        for p in self.parameters():
            p.requires_grad_(False)
        for module in trainable:
            for p in module.parameters():
                p.requires_grad_(True)
        return self.train(self.training)

    def _trainable_modules(self) -> list[nn.Module]:
        if self.freeze == "none":
            return [self]
        if self.freeze == "last":
            if not self._stages:
                raise EncoderError(f"encoder {self.spec!r} has no stages; use freeze=all or freeze=none")
            return [self._stages[-1]]
        return []

    def train(self, mode: bool = True) -> "Encoder":
        super().train(mode)
        if mode and self.freeze != "none":
            trainable = {id(m) for t in self._trainable_modules() for m in t.modules()}
            for module in self.modules():
                if id(module) not in trainable:
                    # A frozen module keeps eval behaviour (BatchNorm running stats, no dropout).
                    module.training = False
        return self

    def weights_fingerprint(self) -> str:
        """Stable hash of the spec, options and every state-dict tensor (names, dtypes, shapes, bytes)."""
        h = hashlib.sha256()
        h.update(self.spec.encode())
        h.update(repr(sorted(self.options.items())).encode())
        for name, tensor in sorted(self.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]


def register_encoder(name: str) -> Callable[[Builder], Builder]:
    """Register ``builder(arg, pretrained, weights, options) -> Encoder`` under ``name``.

    A name ending in ``:`` is a prefix (``timm:`` matches ``timm:resnet18``); ``arg`` is the
    part after the prefix (None for plain names).
    """

    if name in ENCODERS.names():
        raise ValueError(f"encoder {name!r} is registered twice")
    return ENCODERS.register(name)


def list_encoders() -> list[str]:
    """Registered encoder names; prefixes end in ``:``."""
    return sorted(ENCODERS.names())


def build_encoder(
    spec: str,
    pretrained: bool = True,
    weights: Optional[str] = None,
    options: Optional[dict[str, Any]] = None,
    freeze: str = "all",
) -> Encoder:
    """Build the encoder named ``spec``.

    pretrained: load published weights (from ``weights`` when given, else the encoder's
    default source, e.g. the Hub cache). weights: local folder/file or Hub repo id.
    options: architecture options saved in a checkpoint (rebuild without network).
    freeze: ``all`` (default), ``last`` or ``none``.
    """
    if not isinstance(spec, str) or not spec:
        raise EncoderError(f"encoder must be a non-empty name; known: {ENCODERS.known()}")
    if ":" in spec:
        prefix, arg = spec.split(":", 1)
        key, arg = prefix + ":", arg or None
        if arg is None and key in ENCODERS:
            raise EncoderError(f"encoder {spec!r} needs a name after the prefix, e.g. {key}<name>")
    else:
        key, arg = spec, None
    builder = ENCODERS.get(key if key in ENCODERS.names() else spec)
    if weights and not pretrained:
        raise EncoderError(f"model.weights={weights} is set but model.pretrained=false, so it would be ignored: "
                           "set model.pretrained=true to load it, or drop model.weights")
    encoder = builder(arg=arg, pretrained=pretrained, weights=weights, options=dict(options or {}))
    encoder.spec = spec
    return encoder.set_freeze(freeze)

