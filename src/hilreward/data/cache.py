"""On-disk caches: where they live and how entries are written atomically.

Frame cache layout: ``<cache_root>/frames/<dataset fingerprint>/<H>x<W>/<camera>.u8`` (raw uint8,
shape (rows, H, W, 3), rows in (episode_index, frame_index) order) with ``<camera>.json`` beside
it. The json is written last, so an entry without it (a killed run) is treated as absent.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from ..utils import write_atomic

CACHE_FORMAT = 3  # 2: frames resized with images.resize_uint8 (was PIL); 3: its 8-bit kernel (was float, rounded)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$HILREWARD_CACHE``, else ``~/.cache/hilreward``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("HILREWARD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hilreward"


def cached_frames(directory: Path, name: str, rows: int, size: tuple[int, int],
                  fill: Callable[[np.ndarray], None]) -> np.ndarray:
    """Return the read-only memmap ``directory/<name>.u8``, creating it with ``fill(memmap)`` if absent."""
    h, w = size
    shape = (rows, h, w, 3)
    if rows == 0:
        return np.zeros(shape, dtype=np.uint8)
    data_path = directory / f"{name}.u8"
    meta_path = directory / f"{name}.json"
    if meta_path.is_file() and data_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        if meta.get("shape") == list(shape) and meta.get("format") == CACHE_FORMAT \
                and data_path.stat().st_size == int(np.prod(shape)):
            return np.memmap(data_path, dtype=np.uint8, mode="r", shape=shape)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        buf = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)
        fill(buf)
        buf.flush()
        del buf
        os.replace(tmp, data_path)
    finally:
        tmp.unlink(missing_ok=True)
    write_atomic(meta_path, json.dumps({"format": CACHE_FORMAT, "shape": list(shape), "dtype": "uint8"}))
    return np.memmap(data_path, dtype=np.uint8, mode="r", shape=shape)


class RowView:
    """Rows ``rows`` of a (memory-mapped) array, read when indexed: what a selection of episodes that is not one
    contiguous range of the frame cache gives, instead of a copy of all its frames in memory. Indexing (an int, a
    slice, an index array) returns numpy arrays as the memmap would; ``np.asarray(view)``, and any other array method,
    reads every row."""

    def __init__(self, base: np.ndarray, rows: np.ndarray):
        self.base = base
        self.rows = np.asarray(rows, dtype=np.int64)
        self.dtype = base.dtype
        self.shape = (len(self.rows), *base.shape[1:])
        self.ndim = base.ndim

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx):
        rest = ()
        if isinstance(idx, tuple):
            idx, rest = idx[0], idx[1:]
        picked = self.rows[idx]
        if np.ndim(picked) == 0:
            out = self.base[int(picked)]
        else:  # read in file order, hand back in the order asked
            order = np.argsort(picked, kind="stable")
            out = np.empty((len(picked), *self.base.shape[1:]), dtype=self.base.dtype)
            out[order] = self.base[picked[order]]
        return out[rest] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getattr__(self, name: str):
        """Any other array method or attribute, on the rows read into memory (as the copy it replaces would be)."""
        if name.startswith("__") or name in ("base", "rows"):
            raise AttributeError(name)
        return getattr(self[:], name)


def gather_rows(arrays: dict[str, np.ndarray], indices: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``indices`` of each (memory-mapped) array, read in sorted order (sequential disk reads) and returned in
    the order asked."""
    indices = np.asarray(indices)
    order = np.argsort(indices, kind="stable")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return {key: np.asarray(a[indices[order]])[inverse] for key, a in arrays.items()}
