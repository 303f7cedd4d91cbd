"""One optimisation step and the optimiser, shared by every loop that trains: ``train`` (the run) and
``fit_head`` (heads on cached features: the retrainer, its ensembles, the tests' checkpoints)."""

from __future__ import annotations

import contextlib

import torch

from .losses import classification_loss, predictions


class TrainedPart(torch.nn.Module):
    """What a step runs forward: the head on cached features (through ``stage`` first, the encoder's last stage,
    when it trains too), or preprocessing + encoder + head on pixels.

    An ensemble (``model.config.members`` > 1) on pixels gets one batch per member, stacked member after member
    (:class:`~hilreward.training.batches.MemberBatches`): each member runs on its own. Data-parallel training wraps
    it in DDP, whose backward averages the gradients across processes.
    """

    def __init__(self, model, from_features: bool, stage: torch.nn.Module | None = None):
        super().__init__()
        self.model = model
        self.from_features = from_features
        self.stage = stage
        self.members = model.config.members if not from_features else 1  # members' batches a batch stacks

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.from_features:
            pixels = self.model.preprocess(inputs)
            k = self.members
            if k == 1:
                return self.model(pixels)
            chunks = {c: v.chunk(k) for c, v in pixels.items()}
            return torch.cat([self.model.member_forward(i, {c: v[i] for c, v in chunks.items()}) for i in range(k)])
        if self.stage is not None:
            inputs = {c: self.stage(f) for c, f in inputs.items()}
        return self.model.head(inputs)


def make_optimizer(params: list, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``params`` (parameters, or parameter groups: an ensemble has one per member), fused where torch
    has it for their device (one kernel per step rather than several per tensor: the optimizer step ~3x faster on a
    CPU)."""
    first = params[0]["params"][0] if isinstance(params[0], dict) else params[0]
    fused = first.device.type in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)


def train_step(model, inputs: dict[str, torch.Tensor], labels: torch.Tensor, optimizer, scheduler=None, *,
               from_features: bool = False, grad_clip_norm: float = 0.0, autocast_dtype=None,
               forward: torch.nn.Module | None = None) -> dict:
    """Forward (head on cached features, or preprocess + encoder + head on pixels), loss, backward, step.

    ``forward`` runs the batch instead of ``TrainedPart(model, from_features)`` (training passes it
    DDP-wrapped when data-parallel). Each parameter group of ``optimizer`` is clipped on its own (an ensemble has one
    per member, and each member's step is the one it would take alone: the loss is the sum of the members' mean
    losses). Returns ``{"loss", "accuracy", "grad_norm", "lr"}`` for this batch (loss: per member; accuracy at the
    model's threshold, on its tempered probabilities).
    """
    num_classes = model.config.num_classes
    net = forward if forward is not None else TrainedPart(model, from_features)
    net.train()  # a frozen encoder stays in eval mode (Encoder.train keeps its BatchNorm statistics fixed)
    device_type = labels.device.type
    ctx = torch.autocast(device_type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    with ctx:
        logits = net(inputs)
    loss = classification_loss(logits, labels, num_classes)
    optimizer.zero_grad(set_to_none=True)
    stacked = getattr(getattr(net, "module", net), "members", 1)  # DDP holds the TrainedPart as .module
    (loss * stacked).backward()
    clip = grad_clip_norm if grad_clip_norm > 0 else float("inf")
    grad_norm = max(float(torch.nn.utils.clip_grad_norm_(g["params"], clip)) for g in optimizer.param_groups)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    with torch.no_grad():
        acc = (predictions(model.probabilities(logits.detach()), model.threshold) == labels).float().mean().item()
    return {"loss": loss.item(), "accuracy": acc, "grad_norm": float(grad_norm),
            "lr": optimizer.param_groups[0]["lr"]}
