"""One optimisation step and the optimiser, shared by every loop that trains: ``train`` (the run) and
``fit_head`` (heads on cached features: the retrainer, its ensembles, the tests' checkpoints)."""

from __future__ import annotations

import contextlib

import torch

from .losses import classification_loss, predictions


class TrainedPart(torch.nn.Module):
    """What a step runs forward: the head on cached features (through ``stage`` first, the encoder's last stage,
    when it trains too), or preprocessing + encoder + head on pixels.

    Data-parallel training wraps it in DDP, whose backward averages the gradients across processes.
    """

    def __init__(self, model, from_features: bool, stage: torch.nn.Module | None = None):
        super().__init__()
        self.model = model
        self.from_features = from_features
        self.stage = stage

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.from_features:
            return self.model(self.model.preprocess(inputs))
        if self.stage is not None:
            inputs = {c: self.stage(f) for c, f in inputs.items()}
        return self.model.head(inputs)


def make_optimizer(params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``params``, fused where torch has it for their device (one kernel per step rather than several
    per tensor: the optimizer step ~3x faster on a CPU)."""
    fused = params[0].device.type in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)


def train_step(model, inputs: dict[str, torch.Tensor], labels: torch.Tensor, optimizer, scheduler=None, *,
               from_features: bool = False, grad_clip_norm: float = 0.0, autocast_dtype=None,
               forward: torch.nn.Module | None = None) -> dict:
    """Forward (head on cached features, or preprocess + encoder + head on pixels), loss, backward, step.

    ``forward`` runs the batch instead of ``TrainedPart(model, from_features)`` (training passes it
    DDP-wrapped when data-parallel). Returns ``{"loss", "accuracy", "grad_norm", "lr"}`` for this batch
    (accuracy at the model's threshold, on its tempered probabilities).
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
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip_norm if grad_clip_norm > 0 else float("inf"))
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    with torch.no_grad():
        acc = (predictions(model.probabilities(logits.detach()), model.threshold) == labels).float().mean().item()
    return {"loss": loss.item(), "accuracy": acc, "grad_norm": float(grad_norm),
            "lr": optimizer.param_groups[0]["lr"]}
