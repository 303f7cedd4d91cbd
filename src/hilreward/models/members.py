"""Ensembles inside one model: ``members`` encoders and heads side by side, the logits averaged.

Calibration by folds of a model whose encoder trains (``model=scratch``) trains its fold models as the deployed model
(:mod:`hilreward.training.calibrate`): member ``i`` never sees fold ``i`` of the training episodes, so its logits on
that fold are out of fold, and the ensemble the checkpoint holds is exactly the models those logits describe.

In a :class:`~hilreward.models.classifier.RewardClassifier` with ``config.members = k > 1``:

* the encoder (:func:`member_encoder`) is one :class:`~hilreward.models.registry.Encoder` whose stages are
  :class:`MemberStage` modules, each holding the k members' own stage. It maps pixels to the members' feature maps
  concatenated along channels, ``(B, k*C, h, w)`` (member ``i``'s are channels ``i*C:(i+1)*C``), and
  ``config.feature_shape`` is that. Its last stage, like any encoder's, maps the trunk's output to the features.
* the head is :class:`MemberHeads`: member ``i``'s :class:`~hilreward.models.head.RewardHead` reads its channels,
  and the logit is the mean of the members' logits (the mean of their (B, K) logits for multi-class).

The checkpoint stays one ``model.safetensors`` (keys ``encoder.backbone.<stage>.stages.<member>.*`` and
``reward_head.heads.<member>.*``) and ``config.json`` says ``"members": k``; ``RewardClassifier.from_pretrained``
rebuilds it, and every backend (torch, ONNX, gRPC) runs the ensemble through the model's forward.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import EncoderError
from .head import RewardHead
from .registry import Encoder


class MemberStage(nn.Module):
    """One stage of every member: the first takes the shared pixels, later ones their member's channel block."""

    def __init__(self, stages: Sequence[nn.Module], first: bool):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.first = first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x] * len(self.stages) if self.first else x.chunk(len(self.stages), dim=1)
        return torch.cat([stage(p) for stage, p in zip(self.stages, parts)], dim=1)


def member_encoder(encoders: Sequence[Encoder]) -> Encoder:
    """The ``k`` encoders (one spec, each with its own weights) as one :class:`Encoder` of ``k*C`` output channels.

    Each member's forward must be the chain of its stages (:func:`can_hold_members`: the small CNNs and ResNet-10
    are), so that the members can run stage by stage."""
    first = encoders[0]
    if not can_hold_members(first):
        raise EncoderError(f"encoder {first.spec!r} is not a chain of its stages, so it cannot hold ensemble members; "
                           f"use training.calibrate=heldout (or off) with it")
    n = len(first.stages())
    stages = [MemberStage([e.stages()[j] for e in encoders], first=j == 0) for j in range(n)]
    return Encoder(first.spec, nn.Sequential(*stages), stages, mean=first.mean, std=first.std,
                   default_size=first.default_size, options=dict(first.options), weights_source=first.weights_source)


def holds_members(encoder: Encoder) -> bool:
    stages = encoder.stages()
    return bool(stages) and isinstance(stages[0], MemberStage)


def member_backbone(encoder: Encoder, i: int) -> nn.Sequential:
    """Member ``i`` of a :func:`member_encoder` alone: its own stages in order (sharing the parameters)."""
    return nn.Sequential(*[stage.stages[i] for stage in encoder.stages()])


def can_hold_members(encoder: Encoder) -> bool:
    """Whether running ``encoder``'s stages one after the other is its forward (checked on a random input), so that
    members can run stage by stage."""
    stages = encoder.stages()
    if not stages:
        return False
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            x = torch.randn(2, 3, *encoder.default_size, device=next(encoder.parameters()).device)
            whole, chained = encoder.backbone(x), nn.Sequential(*stages)(x)
        return whole.shape == chained.shape and bool(torch.allclose(whole, chained, atol=1e-5))
    except (RuntimeError, StopIteration):
        return False
    finally:
        encoder.train(was_training)


class MemberHeads(nn.Module):
    """``k`` RewardHeads; member ``i`` reads channel block ``i`` of every camera's features; logits averaged."""

    def __init__(self, heads: Sequence[RewardHead]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    @property
    def mlp(self) -> nn.Sequential:
        """The first member's MLP (for code that reads a head's layers, e.g. its dtype or penultimate width)."""
        return self.heads[0].mlp

    def member_logits(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, k) binary logits, or (B, k, K), of every member on its own channels."""
        k = len(self.heads)
        chunks = [f.chunk(k, dim=1) for f in features]
        return torch.stack([head([c[i] for c in chunks]) for i, head in enumerate(self.heads)], dim=1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.member_logits(features).mean(dim=1)


def member_parameters(model) -> list[list[nn.Parameter]]:
    """The parameters of each member of ``model`` (one list holding all of them for a single model)."""
    k = model.config.members
    if k == 1:
        return [list(model.parameters())]
    return [[p for stage in model.encoder.stages() for p in stage.stages[i].parameters()]
            + list(model.reward_head.heads[i].parameters()) for i in range(k)]
