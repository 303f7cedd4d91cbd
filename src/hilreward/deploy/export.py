"""``hilreward export checkpoint=<dir or repo> format=onnx|lerobot``: a checkpoint in another format.

- ``onnx`` (:mod:`.onnx_export`): one ONNX graph, uint8 frames in, probability out, checked against torch
  with ONNX Runtime; ``<checkpoint>/model.onnx`` by default.
- ``lerobot`` (:mod:`hilreward.models.lerobot_export`): a LeRobot ``reward_classifier`` folder that stock
  LeRobot 0.6 loads by path (ResNet-10 models), checked against hilreward; ``<checkpoint>/lerobot`` by default.
  It prints the ``success_threshold`` to set in LeRobot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional

from ..config import parse_overrides
from ..errors import ConfigError
from ..models.checkpoint import resolve_checkpoint, split_revision
from ..models.loading import load_classifier
from .backends import onnx_input_name

Format = Literal["onnx", "lerobot"]


@dataclass
class ExportOptions:
    """Options of ``hilreward export``."""

    checkpoint: str = ""
    """Checkpoint folder (hilreward or, for onnx, LeRobot reward_classifier) or Hub repo id (``user/repo@rev``)."""
    format: Format = "onnx"
    """``onnx``: one ONNX graph; ``lerobot``: a folder stock LeRobot's Classifier and RewardClassifierProcessorStep
    load by path (ResNet-10 models)."""
    output: Optional[str] = None
    """Where to write (default ``<checkpoint>/model.onnx``, or ``<checkpoint>/lerobot``; required for a Hub repo)."""
    opset: int = 18
    """ONNX opset version."""
    atol: float = 1e-4
    """Largest allowed |probability(export) - probability(torch)| on the check frames."""
    check_batch: int = 4
    """Random frames used for the parity check."""


def main(args: list[str]) -> int:
    opts: ExportOptions = parse_overrides(ExportOptions, args)
    if not opts.checkpoint:
        raise ConfigError("export needs checkpoint=<folder or Hub repo id>")
    root = resolve_checkpoint(opts.checkpoint)
    local = Path(split_revision(opts.checkpoint)[0]).expanduser().is_dir()
    if opts.output is None and not local:
        raise ConfigError(f"checkpoint {opts.checkpoint!r} comes from the Hub cache: give output=<where to write>")
    model = load_classifier(root)
    if opts.format == "lerobot":
        from ..models.lerobot_export import export_lerobot

        done = export_lerobot(model, opts.output or root / "lerobot", atol=opts.atol, check_batch=opts.check_batch,
                              source=opts.checkpoint)
        print(json.dumps({**asdict(done), "lerobot_config": {"env.processor.reward_classifier": {
            "pretrained_path": done.path, "success_threshold": done.success_threshold, "success_reward": 1.0}}}))
        return 0
    from .onnx_export import export_onnx

    out = Path(opts.output) if opts.output else root / "model.onnx"
    diff = export_onnx(model, out, opset=opts.opset, atol=opts.atol, check_batch=opts.check_batch)
    print(json.dumps({"onnx": str(out), "max_abs_diff": diff, "inputs": [onnx_input_name(k) for k in
                                                                          model.config.camera_keys]}))
    return 0
