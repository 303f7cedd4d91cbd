"""``hilreward corrections list|show|accept|reject|export|migrate store=...``: the correction store from the
command line.

    hilreward corrections list store=outputs/serve/corrections.sqlite [status=unfixed] [limit=50]
    hilreward corrections show store=... id=7 [out=frames/]       # details, status history, reviews; frames as PNG
    hilreward corrections reject store=... ids=[7,8] note="late keypress"   # never trains again
    hilreward corrections accept store=... id=9                    # the label is right: train it fully

Reviews go into the store (append-only, committed before the command returns); a running server's
retrainer sees them within a second and retrains. Statuses are explained in :mod:`.review`.

``migrate`` upgrades a store's schema to this hilreward's version (what a writable open does
anyway) and says from which version. ``export ... out=<dir>`` writes stored corrections as a
LeRobot v3.0 dataset, from either engine (an SQLite path or a postgresql:// URL), to look at
(``hilreward inspect dataset.root=<out>``) and for merging into the training data.
One dataset episode per (RL episode, environment) that had corrections, rows in the order the
corrections were acknowledged, written as :func:`hilreward.deploy.corrections.write_dataset` writes a
reward function's corrections (``next.reward`` is the human label of the frame shown: train on it with
``label.align=next``), plus ``correction.id`` and each row's replica.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional


from ..config import DatasetConfig, parse_overrides
from ..deploy.corrections import write_dataset
from ..errors import ConfigError, ServingError
from ..usage import HELP_FLAGS, HelpRequested
from . import review
from .monitor import FILE as MONITOR_FILE
from .monitor import read as read_monitor
from .store import CorrectionStore, StoredCorrection, engine_name

ACTIONS = ("list", "show", "accept", "reject", "export", "migrate")
USAGE = ("usage: hilreward corrections list|show|accept|reject store=<corrections.sqlite | postgresql://...> "
         "[id=<n>] | hilreward corrections export store=<...> out=<dataset dir> | hilreward corrections migrate "
         "store=<...>")


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
    success_class: int = -1
    """Multi-class models: the class whose probability counts as success (the server's ``success_class``)."""


@dataclass
class ReviewConfig:
    store: Optional[str] = None
    """Correction store written by ``hilreward serve`` (``<state_dir>/corrections.sqlite`` or its postgresql:// URL)."""
    status: Optional[str] = None
    """list: only corrections in this status (pending, fixed, unfixed, boundary, contradicted, conflicts_offline,
    unusable, rejected)."""
    limit: int = 50
    """list: at most this many, newest first (0 = all)."""
    id: Optional[int] = None
    """show / accept / reject: the correction."""
    ids: Optional[list[int]] = None
    """accept / reject: several corrections (``ids=[3,4,5]``)."""
    out: Optional[str] = None
    """show: write the frames as PNG files into this folder (with ``dataset.root``, also the offline frame a
    ``conflicts_offline`` correction conflicts with)."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """show: the server's offline dataset (``dataset.root=...``), to read a conflict's offline frame."""
    note: str = ""
    """accept / reject: why (kept with the review)."""
    reviewer: Optional[str] = None
    """accept / reject: who (default $USER)."""
    success_class: int = -1
    """Multi-class models: the class whose probability counts as success (the server's ``success_class``)."""
    state_dir: Optional[str] = None
    """list: the server's ``state_dir``, whose hacking monitor it prints (default: the SQLite store's folder)."""


def export_corrections(store: str | Path, out: str | Path, fps: int = 10, codec: str = "auto",
                       task: str = "human correction", overwrite: bool = False, success_class: int = -1) -> dict:
    """Write every correction in ``store`` to the v3.0 dataset ``out``; returns a summary. ``classifier.probability``
    holds each correction's success probability (class ``success_class`` of a multi-class model's)."""
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

    groups = list(episodes.values())
    write_dataset(out, [[dataclasses.replace(c.correction, success_class=success_class) for c in g] for g in groups],
                  fps=fps, task=task, codec=codec, ids=[[c.id for c in g] for g in groups],
                  meta=[[{"replica": c.replica} for c in g] for g in groups])
    return {"out": str(out), "corrections": len(complete), "skipped": len(corrections) - len(complete),
            "episodes": len(episodes), "cameras": cameras}


def _existing(store: str) -> CorrectionStore:
    """``store`` opened for writing, refusing to create a new SQLite file."""
    if engine_name(store) == "sqlite" and not Path(store).is_file():
        raise ServingError(f"correction store {store} does not exist; pass the store= used by `hilreward serve`")
    return CorrectionStore(store)


def migrate_store(store: str) -> dict:
    """Upgrade ``store`` to this hilreward's schema version; says the version found when it upgraded."""
    with _existing(store) as db:
        return {"store": db.display, "version": db.schema_version, "upgraded_from": db.upgraded_from}


def _when(t: float) -> str:
    """A stored time as local date and time ('?' for one no date has: a store written before non-finite numbers
    were refused may hold one)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    except (OverflowError, OSError, ValueError):
        return "?" + " " * 18


def _line(v: review.CorrectionView) -> str:
    when = _when(v.time)
    now = "-" if v.probability_now is None else f"{v.probability_now:.3f}"
    verdict = f"  [{v.review.verdict}ed]" if v.review is not None else ""
    line = (f"{v.id:>6}  {when}  ep {v.episode:>4} step {v.step:>4}  label {v.label}  p {v.probability:.3f} -> {now}  "
            f"{v.status:<12} {v.model_version}  {v.source}{verdict}")
    return line + (f"\n        {_conflict(v.conflict, v.label)}" if v.conflict else "")


def _conflict(k: dict, label: int) -> str:
    """What a status names, in one line: the newer correction, the live firings, or the offline frames."""
    if "by" in k:
        return f"superseded by correction {k['by']} (the newest word): accept this one to make it win"
    if k.get("live"):
        shown = ", ".join(f"{e}@{t}" for e, t in k.get("firings", [])[:8])
        return (f"training on it makes the reward newly fire in live episodes (episode@step: {shown}; most alike: "
                f"episode {k['episode']} step {k['frame']}): accept if those are successes, reject drops it")
    return (f"conflicts with offline episode {k['episode']} frames {k['start']}-{k['end'] - 1} (labelled {k['label']}; "
            f"training on it makes them {k['kind'].replace('_', ' ')}; most alike: frame {k['frame']}): accept "
            f"relabels them {label}, reject drops the correction")


def review_main(action: str, args: list[str]) -> int:
    cfg = parse_overrides(ReviewConfig, args)
    if not cfg.store:
        raise ConfigError(f"corrections {action} needs store=<corrections.sqlite or postgresql://...> (the store= "
                          "of `hilreward serve`, by default <state_dir>/corrections.sqlite)")
    if action == "list":
        with CorrectionStore(cfg.store, readonly=True) as db:
            items, counts = review.list_corrections(db, [cfg.status] if cfg.status else None, max(0, cfg.limit),
                                                    success_class=cfg.success_class)
            attempts = db.attempts(limit=1)
        if attempts and not attempts[0].passed:
            a = attempts[0]
            print(f"latest retraining attempt (corrections up to {a.last_correction_id}) refused: {a.reason}")
        folder = cfg.state_dir or (None if engine_name(cfg.store) != "sqlite" else str(Path(cfg.store).parent))
        watched = read_monitor(Path(folder) / MONITOR_FILE) if folder else []
        if watched:
            print("hacking monitor (what each served version claimed on live episodes, newest last):")
            for v in watched[-5:]:
                print("  " + v.line())
        print("    id  time                 episode/step       label  p when made -> now  status       version  source")
        for v in items:
            print(_line(v))
        print(", ".join(f"{n} {k}" for k, n in asdict(counts).items()))
        return 0
    ids = list(cfg.ids or []) + ([cfg.id] if cfg.id is not None else [])
    if not ids:
        raise ConfigError(f"corrections {action} needs id=<n>" + (" or ids=[n,m,...]" if action != "show" else ""))
    if action == "show":
        with CorrectionStore(cfg.store, readonly=True) as db:
            detail = review.show_correction(db, ids[0], cfg.success_class)
        v = detail.view
        print(_line(v))
        print(f"status: {v.status}" + (f" ({v.status_detail})" if v.status_detail else ""))
        for a in detail.history:
            print(f"  attempt {a.attempt_id}: {a.status} p={a.probability:.3f} {a.detail}".rstrip())
        for r in detail.reviews:
            when = _when(r.time)
            print(f"  {r.verdict}ed by {r.reviewer or '?'} at {when}" + (f": {r.note}" if r.note else ""))
        if cfg.out:
            folder = Path(cfg.out)
            folder.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            written = {f"correction-{v.id}": detail.frames}
            if v.conflict and (cfg.dataset.root or cfg.dataset.repo_id):
                k = v.conflict
                written[f"offline-ep{k['episode']}-frame{k['frame']}"] = review.offline_frames(
                    cfg.dataset, k, list(detail.frames))
            elif v.conflict:
                print("(pass dataset.root=<the server's offline dataset> to write the offline frame too)")
            for name, frames in written.items():
                for key, frame in frames.items():
                    path = folder / f"{name}-{key.rsplit('.', 1)[-1]}.png"
                    Image.fromarray(frame).save(path)
                    print(f"frame {key} {frame.shape[1]}x{frame.shape[0]} -> {path}")
        else:
            print("frames: " + ", ".join(f"{k} {f.shape[1]}x{f.shape[0]}" for k, f in detail.frames.items())
                  + " (out=<folder> writes them as PNG)")
        return 0
    with _existing(cfg.store) as db:
        review.review_corrections(db, ids, action, cfg.reviewer or os.environ.get("USER", ""), cfg.note)
    what = "never train again" if action == "reject" else "train fully, even where contradicted"
    print(f"{action}ed correction{'s' if len(ids) > 1 else ''} {', '.join(map(str, sorted(set(ids))))}: "
          f"{'they' if len(ids) > 1 else 'it'} {what} (a running server retrains within seconds)")
    return 0


def main(args: list[str]) -> int:
    if args and args[0] in HELP_FLAGS:
        raise HelpRequested(ReviewConfig, ExportConfig,
                            note="Actions: list, show, accept, reject (ReviewConfig's keys); export, migrate "
                                 "(ExportConfig's). `hilreward corrections <action> --help`: that action's keys.")
    if not args or args[0] not in ACTIONS:
        raise ConfigError(f"{USAGE}; known actions: {', '.join(ACTIONS)}")
    if args[0] not in ("export", "migrate"):
        return review_main(args[0], args[1:])
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
                                 overwrite=cfg.overwrite, success_class=cfg.success_class)
    skipped = f" ({summary['skipped']} without every camera skipped)" if summary["skipped"] else ""
    print(f"wrote {summary['corrections']} corrections in {summary['episodes']} episodes to {summary['out']}"
          f"{skipped}; train on it with label.align=next (next.reward is the label of the frame shown)")
    return 0
