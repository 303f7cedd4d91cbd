"""Write LeRobotDataset v3.0 folders with the layout, info.json schema and parquet columns of LeRobot's writer.

Everything is built in a hidden temp folder next to ``root`` and moved into place by
:meth:`DatasetWriter.finalize`, so a killed run never leaves a half-written dataset behind.
"""

from __future__ import annotations

import io
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DatasetError
from .video import CODEC_NAMES, VideoEncoder, encoder_options, pick_codec
from ..utils import move_dir

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
_DEFAULT_FEATURES = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64",
                     "index": "int64", "task_index": "int64"}
_STAT_SAMPLE = 8  # image stats use every 8th frame of an episode


class DatasetWriter:
    """Accumulates episodes and writes a LeRobot v3.0 dataset atomically on :meth:`finalize`."""

    def __init__(self, root, fps: int, cameras: dict[str, tuple[int, int]],
                 features: dict[str, dict] | None = None, codec: str = "auto",
                 robot_type: str | None = None, use_videos: bool = True, overwrite: bool = False,
                 video_options: dict[str, str] | None = None):
        self.root = Path(root)
        self.extra_meta: dict[str, Any] = {}
        """``name -> JSON-able`` written as ``meta/<name>.json`` by :meth:`finalize` (e.g. how a sim set was made)."""
        if self.root.exists() and not overwrite and any(self.root.iterdir()):
            raise DatasetError(f"{self.root} already exists and is not empty; choose another folder or pass "
                               f"overwrite=True")
        self.fps = int(fps)
        self.cameras = {k: (int(v[0]), int(v[1])) for k, v in cameras.items()}
        self.features = {k: dict(v) for k, v in (features or {}).items()} or None
        self.codec = pick_codec(codec) if use_videos else None
        odd = [k for k, (h, w) in self.cameras.items() if h % 2 or w % 2]
        if odd and self.codec in ("libx264", "libx265"):
            raise DatasetError(f"{self.codec} (yuv420p) needs an even height and width; cameras {odd} are odd-sized: "
                               f"resize them, use codec=libsvtav1, or use_videos=False")
        self.robot_type = robot_type
        self.use_videos = use_videos
        self.video_options = dict(video_options or {})
        self.tmp = self.root.parent / f".{self.root.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir(parents=True)
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict] = []
        self.total = 0
        self._data = _Rolling(DATA_FILE_MB)
        self._data_writer: pq.ParquetWriter | None = None
        self._videos = {k: _Rolling(VIDEO_FILE_MB) for k in self.cameras}
        self._encoders: dict[str, VideoEncoder] = {}
        self._sums: dict[str, list] = {}

    # ---- episodes -----------------------------------------------------------------------------
    def add_episode(self, frames: dict[str, np.ndarray], columns: dict[str, np.ndarray], task: str) -> None:
        """Append one episode: uint8 (T,H,W,3) frames per camera and (T,) or (T,d) columns."""
        if set(frames) != set(self.cameras):
            raise DatasetError(f"add_episode got cameras {sorted(frames)}, the writer was made for {sorted(self.cameras)}")
        lengths = {len(v) for v in frames.values()} | {len(v) for v in columns.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise DatasetError(f"add_episode: every camera and column needs the same non-zero length, got {sorted(lengths)}")
        length = lengths.pop()
        for key, arr in frames.items():
            h, w = self.cameras[key]
            if arr.dtype != np.uint8 or arr.shape[1:] != (h, w, 3):
                raise DatasetError(f"camera {key!r}: expected uint8 ({length},{h},{w},3), got {arr.dtype} {arr.shape}")
        user = {k: np.asarray(v) for k, v in columns.items() if k not in _DEFAULT_FEATURES}
        if self.features is None:
            self.features = {k: {"dtype": str(v.dtype), "shape": [1] if v.ndim == 1 else list(v.shape[1:]),
                                 "names": None} for k, v in user.items()}
        if set(user) != set(self.features):
            raise DatasetError(f"add_episode columns {sorted(user)} differ from the features {sorted(self.features)}")
        ep = len(self.episodes)
        task_index = self.tasks.setdefault(task, len(self.tasks))
        frame_index = np.arange(length, dtype=np.int64)
        cols = {k: _column(v, self.features[k], k) for k, v in user.items()}
        cols.update(timestamp=(frame_index / self.fps).astype(np.float32), frame_index=frame_index,
                    episode_index=np.full(length, ep, np.int64),
                    index=np.arange(self.total, self.total + length, dtype=np.int64),
                    task_index=np.full(length, task_index, np.int64))
        meta = {"episode_index": ep, "tasks": [task], "length": length}
        if not self.use_videos:
            cols = {**{k: _png_structs(v) for k, v in frames.items()}, **cols}
        chunk, file = self._data.place()
        self._data.used += sum(_nbytes(v) for v in cols.values())
        self._write_rows(cols, chunk, file)
        meta.update({"data/chunk_index": chunk, "data/file_index": file,
                     "dataset_from_index": self.total, "dataset_to_index": self.total + length})
        if self.use_videos:
            for key, arr in frames.items():
                meta.update(self._write_video(key, arr))
        stats = {k: _stats(v) for k, v in cols.items() if k in self.features or k in _DEFAULT_FEATURES}
        stats.update({k: _image_stats(v) for k, v in frames.items()})
        for name, st in stats.items():
            for stat, value in st.items():
                meta[f"stats/{name}/{stat}"] = value
        self._accumulate(stats)
        self.episodes.append(meta)
        self.total += length

    def _write_rows(self, cols: dict, chunk: int, file: int) -> None:
        path = self.tmp / DATA_PATH.format(chunk_index=chunk, file_index=file)
        table = pa.table({k: v for k, v in cols.items()})
        if self._data_writer is not None and self._data_writer_path != path:
            self._data_writer.close()
            self._data_writer = None
        if self._data_writer is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            schema = table.schema.with_metadata({"huggingface": json.dumps({"info": {"features": self._hf_features()}})})
            self._data_writer = pq.ParquetWriter(path, schema)
            self._data_writer_path = path
        self._data_writer.write_table(table.replace_schema_metadata(self._data_writer.schema.metadata))

    def _write_video(self, key: str, arr: np.ndarray) -> dict:
        roll = self._videos[key]
        enc = self._encoders.get(key)
        chunk, file = roll.place()
        path = self.tmp / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
        if enc is None or enc.path != path:
            if enc is not None:
                enc.close()
            h, w = self.cameras[key]
            enc = self._encoders[key] = VideoEncoder(path, self.fps, h, w, self.codec, self.video_options)
        start = enc.count / self.fps
        enc.write(arr)
        roll.used = path.stat().st_size if path.exists() else 0  # the muxer may still buffer
        return {f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": enc.count / self.fps}

    def _accumulate(self, stats: dict) -> None:
        for name, st in stats.items():
            n = st["count"][0]
            mean, std = np.asarray(st["mean"]), np.asarray(st["std"])
            acc = self._sums.get(name)
            piece = [n, mean * n, (std ** 2 + mean ** 2) * n, np.asarray(st["min"]), np.asarray(st["max"])]
            if acc is None:
                self._sums[name] = piece
            else:
                self._sums[name] = [acc[0] + n, acc[1] + piece[1], acc[2] + piece[2],
                                    np.minimum(acc[3], piece[3]), np.maximum(acc[4], piece[4])]

    # ---- finalize -----------------------------------------------------------------------------
    def finalize(self) -> Path:
        """Write meta/ files, close videos and move the dataset into ``root`` atomically."""
        if not self.episodes:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise DatasetError(f"no episodes were added; nothing written to {self.root}")
        if self._data_writer is not None:
            self._data_writer.close()
        for enc in self._encoders.values():
            enc.close()
        meta = self.tmp / "meta"
        (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
        for ep in self.episodes:
            ep["meta/episodes/chunk_index"] = 0
            ep["meta/episodes/file_index"] = 0
        pq.write_table(pa.Table.from_pylist(self.episodes), meta / "episodes" / "chunk-000" / "file-000.parquet")
        self._write_tasks(meta / "tasks.parquet")
        (meta / "stats.json").write_text(json.dumps(self._global_stats(), indent=4))
        (meta / "info.json").write_text(json.dumps(self._info(), indent=4))
        for name, value in self.extra_meta.items():
            (meta / f"{name}.json").write_text(json.dumps(value, indent=2) + "\n")
        self.root.parent.mkdir(parents=True, exist_ok=True)
        return move_dir(self.tmp, self.root)

    def abort(self) -> None:
        """Drop everything written so far."""
        for enc in self._encoders.values():
            try:
                enc.close()
            except Exception:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def _write_tasks(self, path: Path) -> None:
        names = sorted(self.tasks, key=self.tasks.get)
        table = pa.table({"task_index": pa.array([self.tasks[t] for t in names], pa.int64()),
                          "task": pa.array(names, pa.string())})
        # pandas metadata makes `task` the index, as LeRobot's pd.read_parquet expects.
        pandas_meta = {"index_columns": ["task"], "column_indexes": [
            {"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
             "metadata": {"encoding": "UTF-8"}}],
            "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                         "numpy_type": "int64", "metadata": None},
                        {"name": "task", "field_name": "task", "pandas_type": "unicode",
                         "numpy_type": "object", "metadata": None}],
            "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__},
            "pandas_version": "2.2.3"}
        pq.write_table(table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)}), path)

    def _global_stats(self) -> dict:
        out = {}
        for name, (n, s, s2, lo, hi) in self._sums.items():
            mean = s / n
            std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0))
            out[name] = {"min": lo.tolist(), "max": hi.tolist(), "mean": mean.tolist(), "std": std.tolist(),
                         "count": [int(n)]}
        return out

    def _feature_specs(self) -> dict:
        specs = {}
        for key, (h, w) in self.cameras.items():
            spec = {"dtype": "video" if self.use_videos else "image", "shape": [h, w, 3],
                    "names": ["height", "width", "channels"]}
            if self.use_videos:
                spec["info"] = {"video.height": h, "video.width": w, "video.codec": CODEC_NAMES.get(self.codec, self.codec),
                                "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": self.fps,
                                "video.channels": 3, "has_audio": False,
                                **{f"video.{k}": v for k, v in self._encoder_options().items()}}
            specs[key] = spec
        for k, v in (self.features or {}).items():
            specs[k] = {"dtype": v["dtype"], "shape": list(v.get("shape", [1])), "names": v.get("names")}
        for k, dtype in _DEFAULT_FEATURES.items():
            specs[k] = {"dtype": dtype, "shape": [1], "names": None}
        return specs

    def _encoder_options(self) -> dict:
        return encoder_options(self.codec, self.video_options)

    def _hf_features(self) -> dict:
        out = {}
        for k, spec in self._feature_specs().items():
            if spec["dtype"] == "video":
                continue
            if spec["dtype"] == "image":
                out[k] = {"_type": "Image"}
            elif spec["shape"] == [1]:
                out[k] = {"dtype": spec["dtype"], "_type": "Value"}
            else:
                out[k] = {"feature": {"dtype": spec["dtype"], "_type": "Value"}, "length": spec["shape"][0],
                          "_type": "Sequence"}
        return out

    def _info(self) -> dict:
        return {"codebase_version": "v3.0", "robot_type": self.robot_type, "total_episodes": len(self.episodes),
                "total_frames": self.total, "total_tasks": len(self.tasks), "chunks_size": CHUNKS_SIZE,
                "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB, "fps": self.fps,
                "splits": {"train": f"0:{len(self.episodes)}"}, "data_path": DATA_PATH,
                "video_path": VIDEO_PATH if self.use_videos else None, "features": self._feature_specs()}


class _Rolling:
    """Chunk/file numbering of LeRobot v3.0: a new file once the current one passes its size budget."""

    def __init__(self, limit_mb: int):
        self.limit = limit_mb << 20
        self.chunk, self.file, self.used = 0, 0, 0

    def place(self) -> tuple[int, int]:
        """(chunk, file) for the next episode; the caller then adds its bytes to ``used``."""
        if self.used >= self.limit:
            self.file, self.used = self.file + 1, 0
            if self.file >= CHUNKS_SIZE:
                self.chunk, self.file = self.chunk + 1, 0
        return self.chunk, self.file


def _column(values: np.ndarray, spec: dict, name: str) -> np.ndarray | pa.Array:
    dtype = np.dtype(spec["dtype"])
    arr = np.asarray(values)
    shape = list(spec.get("shape", [1]))
    if shape == [1]:
        return arr.reshape(len(arr)).astype(dtype)
    arr = arr.reshape(len(arr), -1).astype(dtype)
    if arr.shape[1] != int(np.prod(shape)):
        raise DatasetError(f"column {name!r}: expected shape {shape} per row, got {arr.shape[1:]}")
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])


def _png_structs(frames: np.ndarray) -> pa.Array:
    from PIL import Image

    blobs = []
    for img in frames:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        blobs.append({"bytes": buf.getvalue(), "path": None})
    return pa.array(blobs, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))


def _nbytes(v) -> int:
    return int(v.nbytes) if hasattr(v, "nbytes") else 0


def _stats(v) -> dict:
    arr = v.flatten().to_numpy() if isinstance(v, pa.FixedSizeListArray) else np.asarray(v)
    arr = arr.reshape(len(v), -1).astype(np.float64)
    return {"min": arr.min(0).tolist(), "max": arr.max(0).tolist(), "mean": arr.mean(0).tolist(),
            "std": arr.std(0).tolist(), "count": [len(arr)]}


def _image_stats(frames: np.ndarray) -> dict:
    x = frames[::_STAT_SAMPLE].astype(np.float64) / 255.0
    per = lambda a: [[[float(c)]] for c in a]  # noqa: E731  (3,1,1) as LeRobot stores image stats
    return {"min": per(x.min((0, 1, 2))), "max": per(x.max((0, 1, 2))), "mean": per(x.mean((0, 1, 2))),
            "std": per(x.std((0, 1, 2))), "count": [len(x)]}
