"""Checkpoint directory I/O: atomic writes, config and safetensors reads with clear errors.

A checkpoint is a directory (also a Hub repo) holding ``config.json``, ``model.safetensors``
and optionally ``train_config.yaml`` and ``metrics.json``. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import CheckpointError, ConfigError
from .weights import looks_like_repo_id
from ..utils import jsonable, write_atomic
from ..constants import CONFIG_NAME, METRICS_NAME, TRAIN_CONFIG_NAME, WEIGHTS_NAME  # noqa: F401 (models API)

HUB_PATTERNS = ["*.json", "*.safetensors", "*.yaml", "*.md"]
"""What a checkpoint fetched from the Hub brings (never pickles)."""


def split_revision(path_or_repo: str | os.PathLike, revision: Optional[str] = None) -> tuple[str, Optional[str]]:
    """(path or repo id, revision): ``"user/repo@v2"`` is repo ``user/repo`` at revision ``v2`` (a local path that
    exists is never split); ConfigError when ``revision`` names another one."""
    name = str(path_or_repo)
    if "@" in name and not Path(name).expanduser().exists():
        repo, _, at = name.rpartition("@")
        if looks_like_repo_id(repo) and at:
            if revision is not None and revision != at:
                raise ConfigError(f"checkpoint {name!r} names revision {at!r} but revision={revision!r} was given; "
                                  "give one")
            return repo, at
    return name, revision


def resolve_checkpoint(path_or_repo: str | os.PathLike, revision: Optional[str] = None) -> Path:
    """A local checkpoint directory, or a Hub repo snapshot (from the cache when offline) at ``revision`` (a branch,
    tag or commit; ``"user/repo@v2"`` says the same; None: ``main``)."""
    name, revision = split_revision(path_or_repo, revision)
    path = Path(name).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ConfigError(f"checkpoint {name!r} is a local directory: a revision ({revision!r}) applies to Hub "
                              "repos only")
        return path
    if path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} is a file; pass the checkpoint directory "
                              f"(holding {CONFIG_NAME} and {WEIGHTS_NAME})")
    if not looks_like_repo_id(name):
        raise CheckpointError(f"checkpoint directory {name!r} does not exist; pass a directory written by "
                              "save_pretrained (e.g. outputs/train/checkpoints/best) or a Hub repo id (user/repo, "
                              "user/repo@revision)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, revision=revision, allow_patterns=HUB_PATTERNS))
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        at = f" at revision {revision!r}" if revision else ""
        raise CheckpointError(
            f"checkpoint {name!r}{at} is neither a local directory nor a Hub repo that can be fetched "
            f"({type(exc).__name__}: {reason[:200]}); check the path, or go online / fill the Hugging Face cache"
        ) from None


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_NAME}: not a hilreward checkpoint (save_pretrained writes "
                              f"{CONFIG_NAME} and {WEIGHTS_NAME}); pick another checkpoint directory")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); re-save the checkpoint or pick another one") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object; re-save the checkpoint or pick another one")
    return data


def read_weights(folder: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors`` whose names start with ``prefix`` (without it); only those are read."""
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}; re-save the checkpoint or pick another one "
                              "(e.g. checkpoints/last or checkpoints/best)")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    except Exception as exc:
        raise CheckpointError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {str(exc)[:160]}); re-save the checkpoint "
            "or pick another one (e.g. checkpoints/last or checkpoints/best)"
        ) from None


def update_config(folder: Path, changes: dict[str, Any]) -> Path:
    """Set ``changes`` in ``folder/config.json`` (other keys untouched), atomically."""
    path = Path(folder) / CONFIG_NAME
    config = {**read_config(Path(folder)), **changes}
    write_atomic(path, json.dumps(config, indent=2, sort_keys=True, default=jsonable) + "\n")
    return path


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=jsonable) + "\n")


def save_weights(path: Path, state: dict[str, torch.Tensor], metadata: Optional[dict[str, str]] = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().to("cpu").contiguous() for k, v in state.items()}, str(path), metadata=metadata)
