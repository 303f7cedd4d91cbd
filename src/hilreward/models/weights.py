"""Finding and reading encoder weights: a local folder or file, or a Hub repo (through its local cache)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import EncoderError
from ..constants import WEIGHTS_NAME

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_repo_id(name: str) -> bool:
    """``owner/name`` with no leading ``.``, ``/`` or ``~`` (a path that does not exist may still look like one)."""
    return bool(_REPO_ID.match(name)) and not name.startswith((".", "/", "~"))


def resolve_weights(weights: str, what: str, fix: str) -> Path:
    """Local folder or file for ``weights`` (a path, or a Hub repo id fetched via snapshot_download).

    ``what`` names the encoder in the error, ``fix`` says how to get out of it.
    """
    path = Path(weights).expanduser()
    if path.exists():
        return path
    if not looks_like_repo_id(weights):
        raise EncoderError(f"{what}: weights {weights!r} do not exist (not a folder, a file or a Hub repo id); {fix}")
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(weights, allow_patterns=["*.json", "*.safetensors"], repo_type="model")
        )
    except Exception as exc:  # offline, not cached, no network, gated, missing repo: all the same to the user
        import os

        detail = "HF_HUB_OFFLINE=1 is set" if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") else (
            f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:160]}")
        raise EncoderError(
            f"{what}: pretrained weights {weights!r} are not available: not in the local Hugging Face cache and "
            f"not downloadable ({detail}). Ways out: {fix}"
        ) from None


def safetensors_file(folder: Path, what: str) -> Path:
    """The single ``*.safetensors`` file of ``folder`` (``model.safetensors`` preferred), or ``folder`` itself."""
    if folder.is_file():
        return folder
    preferred = folder / WEIGHTS_NAME
    if preferred.is_file():
        return preferred
    files = sorted(folder.glob("*.safetensors"))
    if len(files) == 1:
        return files[0]
    if not files:
        raise EncoderError(f"{what}: no *.safetensors file in {folder} (only safetensors weights are read, never pickles)")
    raise EncoderError(f"{what}: several safetensors files in {folder} ({[f.name for f in files]}); name one directly")


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise EncoderError(f"{what}: cannot read {path} ({exc}); the file is truncated or not safetensors") from None


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EncoderError(f"cannot read {path}: {exc}") from None


CHECKPOINT_ENCODER_PREFIX = "encoder.backbone."


def checkpoint_encoder_state(state: dict[str, torch.Tensor]) -> Optional[dict[str, torch.Tensor]]:
    """The encoder's backbone weights if ``state`` is a hilreward checkpoint's ``model.safetensors``, else None."""
    n = len(CHECKPOINT_ENCODER_PREFIX)
    sub = {k[n:]: v for k, v in state.items() if k.startswith(CHECKPOINT_ENCODER_PREFIX)}
    return sub or None


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, source: Optional[str]) -> None:
    """Strict load with an EncoderError naming the first missing / unexpected / mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:4]}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:3]}")
        raise EncoderError(f"{what}: weights from {source} do not fit the architecture: {'; '.join(parts)}")
    module.load_state_dict(state, strict=True)
