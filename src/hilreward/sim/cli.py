"""``hilreward sim task=drawer-open out=<dir> episodes=N ...``: render a task into a LeRobot v3.0 dataset."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Optional

from ..config import parse_overrides
from ..errors import ConfigError


@dataclass
class SimOptions:
    task: str = "drawer-open"
    """Meta-World v3 task (``drawer-open``, ``pick-place``, ...); an unknown name lists the known ones."""
    out: Optional[str] = None
    """Dataset folder to write (required); it appears only when complete."""
    episodes: int = 20
    """Episodes to render; by index mod 4: 0,1 expert, 2 noisy expert, 3 random."""
    steps: int = 150
    """Rows per episode (one per simulator step; the frame before the step)."""
    image_size: list[int] = field(default_factory=lambda: [128, 128])
    """Rendered [height, width] of each camera."""
    seed: int = 0
    """Seed of object positions and policy noise; the same seed gives the same episodes."""
    fps: int = 10
    """Frame rate stored in the dataset."""
    codec: str = "auto"
    """Video codec: auto (AV1 through libsvtav1 when available, else libx264), libsvtav1, libx264."""
    overwrite: bool = False
    """Replace ``out`` if it already holds something."""
    brightness: float = 1.0
    """Lighting shift: scale of every light's colour (0.6 dims, 1.4 brightens)."""
    tint: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    """Lighting shift: per-channel [R, G, B] scale of the lights (e.g. [1.2, 1.0, 0.8], a warm light)."""
    light_shift: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    """Lighting shift: metres [x, y, z] added to every light's position (each re-aimed where it lit before)."""
    camera_jitter: float = 0.0
    """Per episode, the front camera's azimuth/elevation move by up to this many degrees and its target by up to
    this many cm (seeded); 0 keeps it fixed."""


def main(args: list[str]) -> int:
    opts: SimOptions = parse_overrides(SimOptions, args)
    if not opts.out:
        raise ConfigError("missing out=<folder>: where to write the dataset, e.g. out=data/my_drawer_open")
    if len(opts.image_size) != 2:
        raise ConfigError(f"image_size must be [height, width], got {opts.image_size}")
    from .env import SimShift
    from .generate import generate

    shift = SimShift(opts.brightness, tuple(opts.tint), tuple(opts.light_shift), opts.camera_jitter)
    summary = generate(opts.task, opts.out, opts.episodes, opts.steps, tuple(opts.image_size), opts.seed,
                       fps=opts.fps, codec=opts.codec, overwrite=opts.overwrite, progress=True, shift=shift)
    result = asdict(summary)
    result.pop("per_episode")
    result["seconds_per_episode"] = round(result["seconds_per_episode"], 2)
    print(json.dumps(result))
    return 0
