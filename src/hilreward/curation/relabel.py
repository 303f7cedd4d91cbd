"""``hilreward relabel dataset.root=IN edits=FILE out=OUT``: a new LeRobot v3.0 dataset with the edited labels.

The edits (see :mod:`hilreward.curation.edits`) set the frame-judged success ``S`` of their frames. OUT keeps
LeRobot's pairing in every label column it has: row ``t-1``'s ``next.*`` value is ``S[t]`` (the last row of an
episode, which judges a frame past the end, takes ``S`` of the last frame when an edit covers it), and a
per-frame column (``observation.success``, or the edits' own key) is ``S[t]`` at row ``t``. Only rows whose
value changes are rewritten; ``next.done`` and everything else are copied as recorded. Videos are hard-linked
(or copied across filesystems), never re-encoded; ``meta/stats.json`` and the per-episode stats of the changed
columns are recomputed. IN is only read; OUT is built in a temp folder beside it and moved into place.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import DatasetConfig, parse_overrides
from ..errors import ConfigError, DatasetError
from ..data.labels import binarize
from ..data.reader import LeRobotDataset, open_dataset
from .edits import EditsFile
from ..utils import move_dir
from ..constants import REWARD_KEY

SUCCESS_COLUMNS = (REWARD_KEY, "observation.success")
VIDEO_MODES = ("link", "copy")


@dataclass
class RelabelOptions:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """The dataset the edits were made for (``dataset.root=IN``); it is only read."""
    edits: Optional[str] = None
    """Edits file; default: the label station's file next to the dataset (``<IN>.edits.json``)."""
    out: Optional[str] = None
    """Folder of the new dataset; must not exist yet (or be empty), and not be inside IN."""
    videos: str = "link"
    """``link``: hard-link the video files (copy when IN is on another filesystem); ``copy``: always copy."""


@dataclass
class RelabelResult:
    out: Path
    """The new dataset."""
    changed_rows: dict[str, int]
    """Rewritten rows per column."""
    episodes: list[int]
    """Episodes whose labels changed."""
    linked: int
    """Video files hard-linked."""
    copied: int
    """Video files copied."""


def main(args: list[str]) -> int:
    opts: RelabelOptions = parse_overrides(RelabelOptions, args)
    if not opts.out:
        raise ConfigError("pass out=<folder for the new dataset>, e.g. hilreward relabel dataset.root=IN "
                          "edits=IN.edits.json out=IN_relabelled")
    result = relabel(open_dataset(opts.dataset), opts.edits, opts.out, videos=opts.videos)
    changed = ", ".join(f"{k}: {v} rows" for k, v in result.changed_rows.items()) or "no label changed"
    print(f"wrote {result.out} ({changed}; episodes {result.episodes}; videos: {result.linked} hard-linked, "
          f"{result.copied} copied)")
    return 0


def relabel(ds: LeRobotDataset, edits: str | Path | None, out: str | Path, videos: str = "link") -> RelabelResult:
    """Write ``out``: ``ds`` with the edits of ``edits`` (default: next to the dataset) applied; see the module doc."""
    if videos not in VIDEO_MODES:
        raise ConfigError(f"videos={videos!r} is not known (known: {', '.join(VIDEO_MODES)})")
    if ds.version != "v3.0":
        raise DatasetError(f"relabel writes LeRobot v3.0 and needs a v3.0 input; {ds.root} is {ds.version} — convert "
                           f"it with LeRobot's v2.1 -> v3.0 conversion script first")
    file = EditsFile.open(ds, edits, must_exist=True)
    out = _check_out(Path(out).expanduser(), Path(ds.root))
    columns = _target_columns(ds, file.label_key)
    rows = ds.read_rows(["episode_index", "frame_index", *columns])
    new = _new_values(ds, file, rows, columns)

    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        linked, copied = _copy_tree(Path(ds.root), tmp, videos)
        _rewrite_data(ds, tmp, rows, new)
        changed_eps = _rewrite_stats(tmp, rows, new)
        move_dir(tmp, out)  # replaces an empty out (checked above)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    changed_rows = {c: int((new[c] != rows[c].reshape(len(new[c]))).sum()) for c in new}
    return RelabelResult(out, changed_rows, changed_eps, linked, copied)


# ---- the new label values ---------------------------------------------------------------------
def _target_columns(ds: LeRobotDataset, key: str) -> list[str]:
    cols = [key] + [c for c in SUCCESS_COLUMNS if c != key and c in ds.columns]
    for c in cols:
        shape = ds.features[c].get("shape", [1])
        if list(shape) != [1]:
            raise DatasetError(f"column {c!r} of {ds.root} has shape {shape}; relabel writes one value per row")
    return cols


def _new_values(ds: LeRobotDataset, file: EditsFile, rows: dict, columns: list[str]) -> dict[str, np.ndarray]:
    """Per target column, the full column (dataset order) with the edited rows rewritten."""
    success = file.apply(file.base_labels())
    covered = file.covered()
    ep = rows["episode_index"]
    first = np.ones(len(ep), dtype=bool)
    first[1:] = ep[1:] != ep[:-1]
    last = np.ones(len(ep), dtype=bool)
    last[:-1] = ep[1:] != ep[:-1]
    out = {}
    for col in columns:
        old = rows[col].reshape(len(ep))
        target = np.full(len(ep), -1, dtype=np.int64)  # -1: keep as recorded
        if col.startswith("next."):
            judged = np.flatnonzero(covered & ~first)          # frame t is judged by row t-1
            target[judged - 1] = success[judged]
            tail = np.flatnonzero(covered & last)              # the last row judges a frame past the end
            target[tail] = success[tail]
        else:
            target[covered] = success[covered]
        out[col] = _write_values(old, target, file.label_threshold)
    return out


def _write_values(old: np.ndarray, target: np.ndarray, threshold: float) -> np.ndarray:
    """``old`` with rows whose binary value differs from ``target`` (>= 0) set to 1 or 0 in the column's dtype."""
    current = binarize(old, threshold, "a label column")
    change = (target >= 0) & (current != target)
    new = old.copy()
    new[change] = target[change].astype(old.dtype)
    return new


# ---- writing OUT ------------------------------------------------------------------------------
def _check_out(out: Path, root: Path) -> Path:
    out_r, root_r = out.resolve(), root.resolve()
    if out_r == root_r or root_r in out_r.parents or out_r in root_r.parents:
        raise ConfigError(f"out={out} overlaps the input dataset {root}; write the new dataset to a separate folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"out={out} already exists and is not an empty folder; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _copy_tree(src: Path, dst: Path, videos: str) -> tuple[int, int]:
    """Copy ``src`` into ``dst``: video files hard-linked (or copied), data parquet rewritten later, the rest copied."""
    linked = copied = 0
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.parts[0] == "videos" and videos == "link":
            try:
                os.link(path, target)
                linked += 1
                continue
            except OSError:
                pass
        shutil.copy2(path, target)
        copied += rel.parts[0] == "videos"
    return linked, copied


def _positions(rows: dict, table: pa.Table) -> np.ndarray:
    """Dataset-order positions of the rows of one data file (matched by episode and frame)."""
    ep, fr = rows["episode_index"], rows["frame_index"]
    span = int(fr.max()) + 1
    keys = ep * span + fr  # sorted: rows come in (episode, frame) order
    file_keys = (table.column("episode_index").to_numpy().astype(np.int64) * span
                 + table.column("frame_index").to_numpy().astype(np.int64))
    pos = np.searchsorted(keys, file_keys)
    if (pos >= len(keys)).any() or (keys[np.minimum(pos, len(keys) - 1)] != file_keys).any():
        raise DatasetError("a data file holds rows the episode metadata does not list; the dataset is inconsistent")
    return pos


def _rewrite_data(ds: LeRobotDataset, dst: Path, rows: dict, new: dict[str, np.ndarray]) -> None:
    for src_path in ds._data_files:
        rel = src_path.relative_to(ds.root)
        table = pq.read_table(src_path)
        pos = _positions(rows, table)
        for col, values in new.items():
            i = table.schema.get_field_index(col)
            f = table.schema.field(i)
            vals = values[pos]
            if pa.types.is_fixed_size_list(f.type) or pa.types.is_list(f.type):
                arr = pa.FixedSizeListArray.from_arrays(pa.array(vals, f.type.value_type), 1)
                if pa.types.is_list(f.type):
                    arr = arr.cast(f.type)
            else:
                arr = pa.array(vals, f.type)
            table = table.set_column(i, f, arr)
        pq.write_table(table, dst / rel)  # inside the new dataset's temp folder, moved in whole at the end


def _stats(values: np.ndarray, names: list[str]) -> dict[str, list]:
    x = values.astype(np.float64).reshape(-1)
    out = {"min": [float(x.min())], "max": [float(x.max())], "mean": [float(x.mean())], "std": [float(x.std())],
           "count": [int(len(x))]}
    for name in names:
        if name.startswith("q") and name[1:].isdigit():
            out[name] = [float(np.quantile(x, int(name[1:]) / 100))]
    return {k: v for k, v in out.items() if k in names or not names}


def _rewrite_stats(dst: Path, rows: dict, new: dict[str, np.ndarray]) -> list[int]:
    """Recompute meta/stats.json and the per-episode stats of the changed columns; returns the changed episodes."""
    ep = rows["episode_index"]
    changed = {c: v for c, v in new.items() if (v != rows[c].reshape(len(v))).any()}
    episodes = sorted({int(e) for c, v in changed.items() for e in ep[v != rows[c].reshape(len(v))]})
    if not changed:
        return []
    stats_path = dst / "meta" / "stats.json"
    if stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        for col, values in changed.items():
            if col in stats:
                stats[col] = _stats(values, list(stats[col]))
        stats_path.write_text(json.dumps(stats, indent=4))
    for path in sorted((dst / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        table = pq.read_table(path)
        ep_col = table.column("episode_index").to_pylist()
        for col, values in changed.items():
            prefix = f"stats/{col}/"
            names = [n[len(prefix):] for n in table.column_names if n.startswith(prefix)]
            if not names:
                continue
            per_ep = {e: _stats(values[ep == e], names) for e in episodes if e in ep_col}
            for name in names:
                i = table.schema.get_field_index(prefix + name)
                f = table.schema.field(i)
                vals = table.column(i).to_pylist()
                vals = [per_ep[e][name] if e in per_ep else v for e, v in zip(ep_col, vals)]
                table = table.set_column(i, f, pa.array(vals, f.type))
        pq.write_table(table, path)
    return episodes
