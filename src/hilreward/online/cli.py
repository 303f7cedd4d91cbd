"""``hilreward corrections export|migrate store=...``: the correction store from the command line.

``migrate`` upgrades a store's schema to this hilreward's version (what a writable open does
anyway) and says from which version. ``export ... out=<dir>`` writes stored corrections as a
LeRobot v3.0 dataset, from either engine (an SQLite path or a postgresql:// URL).

For review (``hilreward inspect dataset.root=<out>``) and for merging into the training data.
One dataset episode per (RL episode, environment) that had corrections, rows in the order the
corrections were acknowledged. Columns: every camera as ``observation.images.<name>``,
``next.reward`` (the human label of the frame shown, float32: train on it with
``label.align=next``), ``classifier.probability`` (the model's success probability),
``correction.id`` / ``correction.episode`` / ``correction.step`` (int64).
``meta/corrections.jsonl`` adds time, model_version, source, env_index and replica per row.
Frames of a camera are resized to the size of its first correction where they differ.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import parse_overrides
from ..errors import ConfigError, ServingError
from .store import CorrectionStore, StoredCorrection, engine_name

ACTIONS = ("export", "migrate")
USAGE = ("usage: hilreward corrections export store=<corrections.sqlite | postgresql://...> out=<dataset dir> | "
         "hilreward corrections migrate store=<...>")


@dataclass
class ExportConfig:
    store: Optional[str] = None
    """Correction store written by ``hilreward serve`` (``<state_dir>/corrections.sqlite`` or its postgresql:// URL)."""
    out: Optional[str] = None
    """Dataset folder to write (must not exist unless ``overwrite=true``)."""
    fps: int = 10
    """Frame rate recorded in the dataset's info.json."""
    codec: str = "auto"
    """Video codec for the camera streams (``auto`` picks one PyAV can encode)."""
    task: str = "human correction"
    """Task string of every episode."""
    overwrite: bool = False
    """Replace an existing ``out`` folder."""


def export_corrections(store: str | Path, out: str | Path, fps: int = 10, codec: str = "auto",
                       task: str = "human correction", overwrite: bool = False) -> dict:
    """Write every correction in ``store`` to the v3.0 dataset ``out``; returns a summary."""
    from ..data.writer import DatasetWriter
    from ..images import resize_uint8

    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass overwrite=true to replace it or choose another out=")
    with CorrectionStore(store, readonly=True) as db:
        corrections = db.read()
    if not corrections:
        raise ServingError(f"{db.display} holds no corrections yet; nothing to export")
    sizes: dict[str, tuple[int, int]] = {}
    for c in corrections:
        for key, frame in c.correction.frames.items():
            sizes.setdefault(key, tuple(frame.shape[:2]))
    cameras = sorted(sizes)
    complete = [c for c in corrections if all(k in c.correction.frames for k in cameras)]
    episodes: dict[tuple[int, int], list[StoredCorrection]] = {}
    for c in complete:
        episodes.setdefault((c.correction.episode, c.correction.env_index), []).append(c)

    features = {"next.reward": {"dtype": "float32", "shape": [1]},
                "classifier.probability": {"dtype": "float32", "shape": [1]},
                "correction.id": {"dtype": "int64", "shape": [1]},
                "correction.episode": {"dtype": "int64", "shape": [1]},
                "correction.step": {"dtype": "int64", "shape": [1]}}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        writer = DatasetWriter(tmp / "ds", fps=fps, cameras=sizes, features=features, codec=codec)
        rows = []
        for group in episodes.values():
            frames = {}
            for key in cameras:
                stack = [c.correction.frames[key] for c in group]
                stack = [f if f.shape[:2] == sizes[key] else resize_uint8(f, sizes[key]) for f in stack]
                frames[key] = np.stack(stack)
            columns = {
                "next.reward": np.array([c.correction.label for c in group], dtype=np.float32),
                "classifier.probability": np.array([_success(c.correction.probability) for c in group],
                                                   dtype=np.float32),
                "correction.id": np.array([c.id for c in group], dtype=np.int64),
                "correction.episode": np.array([c.correction.episode for c in group], dtype=np.int64),
                "correction.step": np.array([c.correction.step for c in group], dtype=np.int64),
            }
            writer.add_episode(frames, columns, task=task)
            rows += [{"id": c.id, "label": c.correction.label, "probability": c.correction.probability,
                      "model_version": c.correction.model_version, "time": c.correction.time,
                      "episode": c.correction.episode, "step": c.correction.step,
                      "env_index": c.correction.env_index, "source": c.correction.source,
                      "replica": c.replica} for c in group]
        written = Path(writer.finalize())
        with open(written / "meta" / "corrections.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        if out.exists():
            shutil.rmtree(out)
        written.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"out": str(out), "corrections": len(complete), "skipped": len(corrections) - len(complete),
            "episodes": len(episodes), "cameras": cameras}


def _success(probability: float | list[float]) -> float:
    return float(probability[-1]) if isinstance(probability, list) else float(probability)


def migrate_store(store: str) -> dict:
    """Upgrade ``store`` to this hilreward's schema version; says the version found when it upgraded."""
    if engine_name(store) == "sqlite" and not Path(store).is_file():
        raise ServingError(f"correction store {store} does not exist; pass the store= used by `hilreward serve`")
    with CorrectionStore(store) as db:
        return {"store": db.display, "version": db.schema_version, "upgraded_from": db.upgraded_from}


def main(args: list[str]) -> int:
    if not args or args[0] not in ACTIONS:
        raise ConfigError(f"{USAGE}; known actions: {', '.join(ACTIONS)}")
    cfg = parse_overrides(ExportConfig, args[1:])
    if args[0] == "migrate":
        if not cfg.store:
            raise ConfigError(f"corrections migrate needs store=<...>; {USAGE}")
        done = migrate_store(cfg.store)
        found = done["upgraded_from"]
        print(f"{done['store']}: schema version {done['version']}"
              + (" (up to date)" if found is None else " (created)" if found == 0 else f" (upgraded from {found})"))
        return 0
    if not cfg.store or not cfg.out:
        raise ConfigError(f"corrections export needs store= and out=; {USAGE}")
    summary = export_corrections(cfg.store, cfg.out, fps=cfg.fps, codec=cfg.codec, task=cfg.task,
                                 overwrite=cfg.overwrite)
    skipped = f" ({summary['skipped']} without every camera skipped)" if summary["skipped"] else ""
    print(f"wrote {summary['corrections']} corrections in {summary['episodes']} episodes to {summary['out']}"
          f"{skipped}; train on it with label.align=next (next.reward is the label of the frame shown)")
    return 0
