"""Training checkpoints: a model directory (``save_pretrained``) plus the state to resume exactly.

``checkpoints/<step>/``, ``checkpoints/last/`` and ``checkpoints/best/`` each hold what
``RewardClassifier.from_pretrained`` loads (config.json, model.safetensors, train_config.yaml,
metrics.json) and the training state, without pickle: ``training_state.safetensors`` (optimizer
moments, RNG states as tensors) and ``training_state.json`` (step, scheduler, optimizer hyper-parameters,
the scalar parts of the RNG states). Every directory is written under a temporary name, fsync'd and renamed
(:func:`hilreward.utils.replace_dir`).
A data-parallel run saves every process's RNG state: process 0's as a single process's, process ``i``'s
tensors as ``process<i>.rng.*`` and its scalars in ``rng_others[i - 1]``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from .distributed import process_seed
from ..utils import jsonable, replace_dir
from ..constants import STATE_JSON, STATE_TENSORS

STATE_FORMAT = 1


def flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer ``state_dict`` -> (tensors named ``optimizer.<param id>.<name>``, the rest: JSON with
    ``default=jsonable``)."""
    tensors, scalars = {}, {}
    for pid, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, entries in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def capture_rng() -> tuple[dict[str, torch.Tensor], dict]:
    """RNG states of torch (CPU and CUDA), numpy and python."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    return tensors, {"numpy": [kind, int(pos), int(has_gauss), float(cached)],
                     "python": [version, list(internal), gauss_next]}


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy.keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(directory: Path, model, train_config_yaml: str, metrics: dict, step: int,
                    optimizer: torch.optim.Optimizer, scheduler, extra: dict | None = None,
                    rng_states: list[tuple[dict, dict]] | None = None) -> Path:
    """Write model + training state to ``directory`` atomically (temp dir, then rename).

    ``rng_states``: every process's :func:`capture_rng` in process order (default: this process's).
    """
    rng_states = rng_states or [capture_rng()]

    def fill(tmp: Path) -> None:
        model.write_files(tmp, train_config_yaml=train_config_yaml, metrics=metrics)
        opt_tensors, opt_meta = flatten_optimizer(optimizer.state_dict())
        rng_tensors = {(k if i == 0 else f"process{i}.{k}"): v
                       for i, (tensors, _) in enumerate(rng_states) for k, v in tensors.items()}
        save_file({**opt_tensors, **rng_tensors}, str(tmp / STATE_TENSORS))
        sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
        meta = {"format": STATE_FORMAT, "step": int(step), "scheduler": sched, "optimizer": opt_meta,
                "rng": rng_states[0][1], "rng_others": [m for _, m in rng_states[1:]], **(extra or {})}
        (tmp / STATE_JSON).write_text(json.dumps(meta, default=jsonable))

    return replace_dir(directory, fill)


def load_training_state(directory: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, json) of a checkpoint's training state; CheckpointError when missing or truncated."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / STATE_JSON).read_text())
        tensors = load_file(str(directory / STATE_TENSORS))
    except (OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"cannot resume from {directory}: its training state is missing or damaged ({exc}); "
                              f"start a new run (resume=false, another output_dir)") from None
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{directory / STATE_JSON} has format {meta.get('format')}, expected {STATE_FORMAT}")
    return tensors, meta


def restore_training_state(tensors: dict[str, torch.Tensor], meta: dict, optimizer, scheduler,
                           process: int = 0, seed: int = 0) -> int:
    """Load optimizer, scheduler and process ``process``'s RNG states; return the step the checkpoint was taken at.

    A process the saved run did not have seeds its RNG from ``(seed, process, step)`` instead.
    """
    optimizer.load_state_dict(unflatten_optimizer(tensors, meta["optimizer"]))
    scheduler.load_state_dict(dict(meta["scheduler"], lr_lambdas=[None] * len(optimizer.param_groups)))
    step = int(meta["step"])
    others = meta.get("rng_others", [])
    if process == 0:
        restore_rng(tensors, meta["rng"])
    elif process <= len(others):
        prefix = f"process{process}."
        restore_rng({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, others[process - 1])
    else:
        torch.manual_seed(process_seed(seed, process, step))
    return step
