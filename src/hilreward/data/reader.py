"""Read LeRobotDataset folders (v3.0 and v2.1) from disk or the Hub's snapshot cache.

Rows are always returned in (episode_index, frame_index) order. Frames come from the frame
cache (see :mod:`hilreward.data.cache`): each video file is decoded once per camera and size.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import DatasetConfig
from ..errors import ConfigError, DatasetError, VideoError
from ..images import resize_uint8
from .cache import RowView, cache_root, cached_frames
from .labels import align_labels, binarize
from .video import decode_to_rows
from ..utils import CAMERA_PREFIX
from ..constants import REWARD_KEY

SUPPORTED_VERSIONS = ("v3.0", "v2.1", "v2.0")
_HASH_LIMIT = 1 << 20  # files up to 1 MiB are fingerprinted by content, larger ones by size + mtime


@dataclass
class EpisodeInfo:
    index: int
    """Episode index as stored in the dataset."""
    length: int
    """Number of rows (frames) in the episode."""
    tasks: list[str]
    """Task strings of the episode."""


@dataclass
class _VideoRef:
    path: Path
    from_timestamp: float


class LeRobotDataset:
    """A LeRobot dataset folder opened for reading (metadata eagerly, rows and frames on demand)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            hint = "" if self.root.is_dir() else " (the folder does not exist)"
            raise DatasetError(f"{self.root} is not a LeRobot dataset: {info_path} is missing{hint}; "
                               f"pass dataset.root=<folder holding meta/info.json> or dataset.repo_id=<hub id>")
        try:
            self.info: dict = json.loads(info_path.read_text())
        except ValueError as exc:
            raise DatasetError(f"{info_path} is not valid JSON ({exc}); restore or re-download the dataset") from None
        self.version: str = str(self.info.get("codebase_version"))
        if self.version not in SUPPORTED_VERSIONS:
            raise DatasetError(f"{info_path}: codebase_version {self.version!r} is not supported "
                               f"(known: {', '.join(SUPPORTED_VERSIONS)}); convert it with LeRobot's "
                               f"conversion script to v3.0")
        self.fps: float = float(self.info.get("fps", 0) or 0)
        if self.fps <= 0:
            raise DatasetError(f"{info_path}: 'fps' is missing or not positive; the file is damaged")
        self.features: dict = self.info.get("features", {})
        self.camera_keys: list[str] = [k for k, f in self.features.items()
                                       if k.startswith(CAMERA_PREFIX) and f.get("dtype") in ("video", "image")]
        if self.version == "v3.0":
            self.episodes, self._data_files, self._videos = _load_v3(self.root, self.info, self.camera_keys)
        else:
            self.episodes, self._data_files, self._videos = _load_v2(self.root, self.info, self.camera_keys)
        self._by_index = {ep.index: ep for ep in self.episodes}
        self._load_index()
        self.fingerprint: str = _fingerprint(self.root)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike | None = None, repo_id: str | None = None,
             revision: str | None = None) -> "LeRobotDataset":
        """Open a local folder (``root``) or a Hub dataset (``repo_id``, via the snapshot cache)."""
        if root:
            return cls(Path(root).expanduser())
        if repo_id:
            return cls(_snapshot(repo_id, revision))
        raise ConfigError("no dataset given: pass dataset.root=<folder> or dataset.repo_id=<hub id>")

    # ---- rows ---------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return len(self._episode_index)

    @property
    def columns(self) -> list[str]:
        """Every non-camera column of the parquet rows."""
        return [k for k, f in self.features.items() if f.get("dtype") not in ("video", "image")]

    def rows(self, episodes: list[int] | None = None) -> np.ndarray:
        """Row positions (in (episode, frame) order) of ``episodes`` (None: all; order and repeats ignored)."""
        if episodes is None:
            return np.arange(self.num_frames)
        episodes = sorted({int(e) for e in episodes})
        unknown = [e for e in episodes if int(e) not in self._by_index]
        if unknown:
            known = sorted(self._by_index)
            raise DatasetError(f"episodes {unknown} are not in {self.root} (it has {len(known)} episodes: "
                               f"{_ranges(known)}); fix dataset.episodes")
        return np.concatenate([np.arange(*self._span[e]) for e in episodes]) if episodes else np.arange(0)

    def read_rows(self, columns: list[str], episodes: list[int] | None = None) -> dict[str, np.ndarray]:
        """Columns as numpy arrays (vector features as 2-D), rows ordered by (episode, frame)."""
        sel = self.rows(episodes)
        base = {"episode_index": self._episode_index, "frame_index": self._frame_index, "timestamp": self._timestamp}
        out = {}
        missing = [c for c in columns if c not in base]
        table = self._read_table(missing) if missing else None
        for c in columns:
            out[c] = base[c][sel] if c in base else _to_numpy(table.column(c), c)[self._order][sel]
        return out

    def labels(self, key: str = REWARD_KEY, threshold: float = 0.5, align: str = "auto",
               episodes: list[int] | None = None) -> np.ndarray:
        """Integer labels (0/1 for float or bool columns) of the selected rows; see LabelConfig."""
        if key not in self.columns:
            raise DatasetError(f"label key {key!r} is not a column of {self.root} "
                               f"(known: {', '.join(self.columns)}); set label.key=<one of them>")
        raw = self.read_rows([key])[key]
        if raw.ndim > 1:
            if raw.shape[1] != 1:
                raise DatasetError(f"label column {key!r} has shape {raw.shape[1:]}; a label must be one value per row")
            raw = raw[:, 0]
        sel = self.rows(episodes)
        if raw.dtype.kind == "f" and np.isnan(raw[sel]).any():
            bad = sel[np.isnan(raw[sel])]
            eps = sorted(set(self._episode_index[bad].tolist()))
            raise DatasetError(f"label column {key!r} of {self.root} has {len(bad)} NaN values (episodes {eps}); "
                               f"fix those rows or exclude the episodes with dataset.episodes=[...]")
        values = binarize(raw, threshold, f"label column {key!r}")
        return align_labels(values, self._episode_index, align, key)[sel]

    # ---- cameras and frames -------------------------------------------------------------
    def resolve_cameras(self, names: list[str] | None = None) -> list[str]:
        """Full camera keys for ``names`` (``front`` or ``observation.images.front``); None: all cameras."""
        if not self.camera_keys:
            raise DatasetError(f"{self.root} has no camera features (observation.images.* of dtype video or image)")
        if names is None:
            return list(self.camera_keys)
        out = []
        for name in names:
            key = name if name in self.camera_keys else CAMERA_PREFIX + name
            if key not in self.camera_keys:
                short = [k[len(CAMERA_PREFIX):] for k in self.camera_keys]
                raise DatasetError(f"camera {name!r} is not in {self.root} (known: {', '.join(short)}); "
                                   f"fix dataset.cameras")
            out.append(key)
        return out

    def camera_size(self, camera: str) -> tuple[int, int]:
        """Stored (height, width) of a camera, from info.json."""
        f = self.features[camera]
        names = f.get("names") or ["height", "width", "channels"]
        shape = dict(zip(names, f["shape"]))
        return int(shape.get("height", f["shape"][0])), int(shape.get("width", f["shape"][1]))

    def video_files(self, camera: str) -> list[Path]:
        """The distinct video files of a video camera (empty for image cameras)."""
        return sorted({ref.path for ref in self._videos.get(camera, {}).values()})

    def frames(self, cameras: list[str] | None, size: tuple[int, int], episodes: list[int] | None = None,
               cache_dir: str | None = None) -> dict[str, np.ndarray]:
        """uint8 (N,H,W,3) frames per camera, rows aligned with :meth:`read_rows`; decoded once, then cached."""
        size = (int(size[0]), int(size[1]))
        directory = cache_root(cache_dir) / "frames" / self.fingerprint / f"{size[0]}x{size[1]}"
        sel = self.rows(episodes)
        out = {}
        for cam in self.resolve_cameras(cameras):
            full = cached_frames(directory, cam, self.num_frames, size,
                                 lambda buf, cam=cam: self._fill_frames(cam, size, buf))
            contiguous = len(sel) > 0 and sel[-1] - sel[0] + 1 == len(sel)
            out[cam] = full[sel[0]:sel[-1] + 1] if contiguous else RowView(full, sel)
        return out

    def _fill_frames(self, camera: str, size: tuple[int, int], buf: np.ndarray) -> None:
        if self.features[camera]["dtype"] == "image":
            column = self._read_table([camera]).column(camera)
            png = column.combine_chunks().field("bytes").to_pylist()
            for pos, row in enumerate(self._order):
                buf[pos] = resize_uint8(_decode_image(png[row], camera, self.root), size)
            return
        by_file: dict[Path, list[tuple[np.ndarray, np.ndarray]]] = {}
        for ep in self.episodes:
            ref = self._videos[camera][ep.index]
            start, stop = self._span[ep.index]
            rows = np.arange(start, stop)
            by_file.setdefault(ref.path, []).append((rows, ref.from_timestamp + self._timestamp[start:stop]))
        for path, parts in by_file.items():
            rows = np.concatenate([p[0] for p in parts])
            targets = np.concatenate([p[1] for p in parts])
            decode_to_rows(path, targets, self.fps, size, buf, rows)

    # ---- internals ----------------------------------------------------------------------
    def _read_table(self, columns: list[str]) -> pa.Table:
        unknown = [c for c in columns if c not in self.features]
        if unknown:
            raise DatasetError(f"columns {unknown} are not in {self.root} (known: {', '.join(self.features)})")
        tables = []
        for path in self._data_files:
            try:
                present = set(pq.read_schema(path).names)
                absent = [c for c in columns if c not in present]
                if absent:
                    raise DatasetError(
                        f"column {absent[0]!r} is listed in meta/info.json but missing from "
                        f"{path.relative_to(self.root)} (of {self.root}); the metadata does not match the data: "
                        f"rewrite meta/info.json without it, or read another column (e.g. label.key=)")
                tables.append(pq.read_table(path, columns=columns))
            except (pa.ArrowException, OSError) as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise DatasetError(f"cannot read {path}: {reason}; the parquet file is damaged — re-download it") \
                    from None
        return pa.concat_tables(tables)

    def _load_index(self) -> None:
        table = self._read_table(["episode_index", "frame_index", "timestamp"])
        ep = _to_numpy(table.column("episode_index"), "episode_index").astype(np.int64).reshape(-1)
        fi = _to_numpy(table.column("frame_index"), "frame_index").astype(np.int64).reshape(-1)
        ts = _to_numpy(table.column("timestamp"), "timestamp").astype(np.float64).reshape(-1)
        self._order = np.lexsort((fi, ep))
        self._episode_index, self._frame_index, self._timestamp = ep[self._order], fi[self._order], ts[self._order]
        self._span: dict[int, tuple[int, int]] = {}
        for info in self.episodes:
            start = int(np.searchsorted(self._episode_index, info.index, "left"))
            stop = int(np.searchsorted(self._episode_index, info.index, "right"))
            if stop - start != info.length:
                raise DatasetError(f"episode {info.index} of {self.root} has {stop - start} rows in the parquet "
                                   f"files but the episode metadata says {info.length}; the dataset is "
                                   f"inconsistent — re-download it or rewrite its meta")
            self._span[info.index] = (start, stop)


def open_dataset(cfg: DatasetConfig) -> LeRobotDataset:
    """Open the dataset a :class:`DatasetConfig` names."""
    return LeRobotDataset.open(root=cfg.root, repo_id=cfg.repo_id, revision=cfg.revision)


# ---- format-specific metadata ---------------------------------------------------------------

def _load_v3(root: Path, info: dict, cameras: list[str]):
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DatasetError(f"{root / 'meta' / 'episodes'} holds no chunk-*/file-*.parquet; the v3.0 episode "
                           f"metadata is missing — re-download the dataset")
    video_cols = [f"videos/{c}/{k}" for c in cameras if info["features"][c]["dtype"] == "video"
                  for k in ("chunk_index", "file_index", "from_timestamp")]
    columns = ["episode_index", "length", "tasks", "data/chunk_index", "data/file_index"] + video_cols
    rows = []
    for path in files:
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"cannot read {path}: {exc}; re-download the dataset") from None
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise DatasetError(f"{path} lacks columns {missing}; the episode metadata does not match "
                               f"meta/info.json (a camera without videos?) — re-download or rewrite the dataset")
        rows.extend(table.select(columns).to_pylist())
    rows.sort(key=lambda r: r["episode_index"])
    episodes = [EpisodeInfo(int(r["episode_index"]), int(r["length"]), list(r["tasks"] or [])) for r in rows]
    data_files = sorted({root / info["data_path"].format(chunk_index=r["data/chunk_index"],
                                                          file_index=r["data/file_index"]) for r in rows})
    videos: dict[str, dict[int, _VideoRef]] = {}
    for cam in cameras:
        if info["features"][cam]["dtype"] != "video":
            continue
        videos[cam] = {int(r["episode_index"]): _VideoRef(
            root / info["video_path"].format(video_key=cam, chunk_index=r[f"videos/{cam}/chunk_index"],
                                             file_index=r[f"videos/{cam}/file_index"]),
            float(r[f"videos/{cam}/from_timestamp"])) for r in rows}
    _check_exist(data_files)
    return episodes, data_files, videos


def _load_v2(root: Path, info: dict, cameras: list[str]):
    path = root / "meta" / "episodes.jsonl"
    if not path.is_file():
        raise DatasetError(f"{path} is missing; a {info['codebase_version']} dataset lists its episodes there — "
                           f"re-download the dataset")
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError as exc:
        raise DatasetError(f"{path} is not valid JSON lines ({exc}); re-download the dataset") from None
    rows.sort(key=lambda r: r["episode_index"])
    episodes = [EpisodeInfo(int(r["episode_index"]), int(r["length"]), list(r.get("tasks") or [])) for r in rows]
    chunk = int(info.get("chunks_size", 1000))
    data_files = [root / info["data_path"].format(episode_chunk=e.index // chunk, episode_index=e.index)
                  for e in episodes]
    videos = {cam: {e.index: _VideoRef(root / info["video_path"].format(
        episode_chunk=e.index // chunk, video_key=cam, episode_index=e.index), 0.0) for e in episodes}
        for cam in cameras if info["features"][cam]["dtype"] == "video"}
    _check_exist(data_files)
    return episodes, data_files, videos


def _check_exist(paths: list[Path]) -> None:
    for p in paths:
        if not p.is_file():
            raise DatasetError(f"{p} is missing; the dataset is incomplete — re-download it")


# ---- helpers --------------------------------------------------------------------------------

def _snapshot(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision))
    except Exception as exc:  # offline and not cached, unknown repo, network: all mean "cannot have it"
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        why = "HF_HUB_OFFLINE=1 and it is not in the local Hub cache" if offline else type(exc).__name__
        raise DatasetError(f"cannot get dataset {repo_id!r} from the Hub ({why}); pass dataset.root=<folder> "
                           f"or go online (unset HF_HUB_OFFLINE) to download it") from None


def _to_numpy(column: pa.ChunkedArray, name: str) -> np.ndarray:
    t = column.type
    if pa.types.is_struct(t):
        raise DatasetError(f"column {name!r} holds images; read it with frames(), not read_rows()")
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
        arr = column.combine_chunks()
        n = len(arr)
        flat = arr.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(n, -1) if n else flat.reshape(0, 1)
    return column.to_numpy()


def _decode_image(data: bytes | None, camera: str, root: Path) -> np.ndarray:
    from PIL import Image

    if data is None:
        raise VideoError(f"camera {camera!r} of {root} has a row without image bytes; the parquet is incomplete")
    try:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except Exception as exc:
        raise VideoError(f"camera {camera!r} of {root} has an undecodable image ({exc}); re-download the dataset") from None


def _fingerprint(root: Path) -> str:
    h = hashlib.sha256()
    for sub in ("meta", "data", "videos", "images"):
        base = root / sub
        if not base.is_dir():
            continue
        for path in sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")):
            st = path.stat()
            h.update(str(path.relative_to(root)).encode() + b"\0")
            if st.st_size <= _HASH_LIMIT:
                h.update(hashlib.sha256(path.read_bytes()).digest())
            else:
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _ranges(values: list[int]) -> str:
    if not values:
        return "none"
    parts, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)
