"""Adapting more than the head: the encoder's last stage (``retrain.scope=last|auto``).

A head over a frozen encoder cannot separate states the encoder maps alike (a new layout, new
lighting), so corrections of those states stay unfixed however the head trains, or move the
old states' boundaries. :class:`LastStage` splits the model's encoder into its *trunk* (every
stage but the last; never trained here) and its *last stage*, so the retrainer can train the
last stage with the head on cached trunk outputs: the trunk runs once per frame, as the frozen
encoder does for a head-only retrainer.

It works for any encoder whose output is its last stage's output (the small CNNs of
``model=scratch``, ResNet-10, and the pretrained backbones whose stages the registry lists),
whatever ``model.freeze`` it was trained with; an encoder whose output is computed after its
last stage (a pooling, a projection) is refused with a message that names ``retrain.scope=head``.
"""

from __future__ import annotations

from typing import Literal, Mapping, get_args

import torch
from torch import nn

from ..errors import ConfigError

Scope = Literal["head", "last", "auto"]
SCOPES = get_args(Scope)
"""``head``: only the head retrains; ``last``: the encoder's last stage retrains with it; ``auto``: the head first,
and the last stage too when the head alone leaves gated corrections unfixed."""


class _Stop(Exception):
    """Raised inside the encoder once the trunk's output is captured (the last stage need not run)."""


class Trunk(nn.Module):
    """The encoder up to its last stage: the last stage's input."""

    def __init__(self, encoder: nn.Module, last: nn.Module) -> None:
        super().__init__()
        self.encoder, self._last = encoder, last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def grab(_module, inputs):
            captured.append(inputs[0])
            raise _Stop

        handle = self._last.register_forward_pre_hook(grab)
        try:
            self.encoder(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:
            raise ConfigError("the encoder never ran its last stage; use retrain.scope=head")
        return captured[0]


class LastStage:
    """The last stage of ``model``'s encoder, the trunk before it, and its weights as state dicts."""

    def __init__(self, model) -> None:
        stages = model.encoder.stages()
        spec = model.config.encoder
        if len(stages) < 2:
            raise ConfigError(f"encoder {spec!r} has {len(stages)} stage(s): retrain.scope=last needs at least two; "
                              "use retrain.scope=head")
        self.module: nn.Module = stages[-1]
        self.trunk = Trunk(model.encoder, self.module)
        size = tuple(int(s) for s in model.config.image_size)
        x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
        was_training = model.encoder.training
        model.encoder.eval()
        try:
            with torch.inference_mode():
                whole, split = model.encoder(x), self.module(self.trunk(x))
        finally:
            model.encoder.train(was_training)
        if whole.shape != split.shape or not torch.allclose(whole, split, atol=1e-5, rtol=1e-4):
            raise ConfigError(f"encoder {spec!r} computes its output after its last stage, so that stage cannot be "
                              "retrained on its own; use retrain.scope=head")
        self.base = self.state()

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def load(self, state: Mapping[str, torch.Tensor] | None) -> None:
        """Load ``state`` (None: the checkpoint's own weights)."""
        self.module.load_state_dict(self.base if state is None else state)

    def trainable(self) -> None:
        """Let the stage's parameters take gradients (a frozen encoder's do not)."""
        for p in self.module.parameters():
            p.requires_grad_(True)
