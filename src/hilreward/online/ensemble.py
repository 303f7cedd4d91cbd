"""Uncertainty from an ensemble of heads: K extra RewardHeads over the served model's frozen features.

Each member (a narrower RewardHead, :data:`MEMBER_WIDTH`) starts from its own random
initialisation and is trained like the served head (``training.fit_head``) on a bootstrap
resample of the same rows, so members agree where the data pin the answer down and disagree
elsewhere (new layouts, frames between the labels).
The uncertainty of a frame is the standard deviation of the success probability over the
members and the served head: 0 when they all agree, at most 0.5.

Members of version ``n`` live in ``<state_dir>/ensembles/<n>.safetensors`` (written once,
atomically, by the retrainer process when it is idle: version 0's after the offline features
are loaded, a retrained version's after it is published). A version without its own members
is served with the newest members of an earlier version.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..models.head import RewardHead
from ..utils import write_file

ENSEMBLE_DIR = "ensembles"


MEMBER_WIDTH = 64
"""Projection and hidden width of a member (at most the served head's): a quarter of the default head's
cost per step, and it only has to say where heads disagree."""


def new_member(model, seed: int, width: int = MEMBER_WIDTH) -> torch.nn.Module:
    """A freshly initialised head like ``model.reward_head``, at most ``width`` wide (seeded)."""
    cfg = model.config
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return RewardHead(num_cameras=len(cfg.camera_keys), feature_shape=cfg.feature_shape,
                          num_classes=cfg.num_classes, num_features=cfg.spatial_features,
                          latent_dim=min(cfg.latent_dim, width), hidden_dim=min(cfg.hidden_dim, width),
                          dropout=cfg.dropout).eval()


def members_path(state_dir: str | os.PathLike, number: int) -> Path:
    return Path(state_dir) / ENSEMBLE_DIR / f"{int(number)}.safetensors"


def save_members(path: Path, members: Sequence[torch.nn.Module]) -> None:
    """Write every member's state into one safetensors file (tmp + fsync + rename)."""
    from safetensors.torch import save_file

    state = {f"{k}.{name}": t.detach().cpu().contiguous() for k, m in enumerate(members)
             for name, t in m.state_dict().items()}
    width = max(int(m.mlp[0].out_features) for m in members) if members else MEMBER_WIDTH
    write_file(path, lambda tmp: save_file(state, str(tmp), metadata={"members": str(len(members)),
                                                                       "width": str(width)}))


def load_members(path: Path, model) -> list[torch.nn.Module]:
    """The members saved at ``path`` as heads for ``model`` (eval mode, on its device)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    count, width = int(meta["members"]), int(meta["width"])
    state = load_file(str(path))
    members = []
    for k in range(count):
        member = new_member(model, seed=k, width=width)
        prefix = f"{k}."
        member.load_state_dict({n[len(prefix):]: t for n, t in state.items() if n.startswith(prefix)})
        members.append(member.to(model.device).eval())
    return members


def latest_members(state_dir: str | os.PathLike, upto: int) -> tuple[int, Path] | None:
    """(number, path) of the newest ensemble of a version <= ``upto``, or None."""
    folder = Path(state_dir) / ENSEMBLE_DIR
    if not folder.is_dir():
        return None
    numbers = sorted(int(p.stem) for p in folder.glob("*.safetensors") if p.stem.isdigit() and int(p.stem) <= upto)
    return (numbers[-1], members_path(state_dir, numbers[-1])) if numbers else None


def member_success(model, members: Sequence[torch.nn.Module], features: dict[str, torch.Tensor],
                   success_class: int = -1) -> torch.Tensor:
    """Success probability of every member for a batch of feature maps: (K, B)."""
    maps = [features[k].to(model.reward_head.mlp[0].weight.dtype) for k in model.camera_keys]
    probs = torch.stack([model.probabilities(m(maps)) for m in members])
    return probs if probs.ndim == 2 else probs[..., success_class]


def spread(served: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Uncertainty: std of the success probability over the served head (B,) and the members (K, B)."""
    return torch.cat([served[None], members]).std(dim=0, unbiased=False)


def bootstrap(n: int, seed: int) -> np.ndarray:
    """How often each of ``n`` rows is drawn in a bootstrap resample (a sampling-weight multiplier)."""
    rng = np.random.default_rng(seed)
    return np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
