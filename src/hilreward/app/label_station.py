"""The label station's state, without HTTP: dataset, frame-judged labels, edits, probabilities, suspect spans.

Everything here is what the CLI uses too: :class:`~hilreward.curation.edits.EditsFile` (also read by
``hilreward relabel``), the decode-once frame cache, ``evaluation.predict`` for a checkpoint's
probabilities and ``curation.suspects.load_suspects`` for a suspects run. The pydantic models are the
JSON the label page's API returns (see :mod:`hilreward.app.label`).
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel, Field

from ..config import DatasetConfig
from ..data import LeRobotDataset, open_dataset
from ..curation.edits import Edit, EditsFile
from ..curation.suspects import load_suspects
from ..errors import ConfigError, DatasetError
from ..evaluation.evaluate import predict

IMAGE_FORMATS = {"jpg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}


# ---- API models --------------------------------------------------------------------------------
class EpisodeSummary(BaseModel):
    episode_index: int
    length: int = Field(description="frames in the episode")
    positives: int = Field(description="frames labelled success (edits applied)")
    onset: Optional[int] = Field(description="first frame labelled success, None if none")
    offset: Optional[int] = Field(description="last frame labelled success, None if none")
    suspects: int = Field(description="suspect spans in the episode")
    edited: bool = Field(description="an edit covers some frame of the episode")


class SpanModel(BaseModel):
    span_id: int
    start: int
    end: int = Field(description="exclusive")
    label: int
    probability: float
    score: float


class EpisodeDetail(BaseModel):
    episode_index: int
    length: int
    fps: float
    cameras: list[str] = Field(description="camera keys; frame URLs use their position in this list")
    labels: list[int] = Field(description="frame-judged labels with the edits applied")
    original: list[int] = Field(description="the dataset's own frame-judged labels")
    probability: Optional[list[Optional[float]]] = Field(
        description="P(success) per frame from the checkpoint or suspects run (None where it has none)")
    spans: list[SpanModel]


class EditModel(BaseModel):
    index: int = Field(description="position in the edits file (undo with it)")
    episode_index: int
    start: int
    end: int
    label: int
    time: str
    source: str


class EditRequest(BaseModel):
    episode_index: int
    start: int = Field(description="first frame_index")
    end: int = Field(description="one past the last frame_index")
    label: int = Field(description="1 success, 0 failure")


class StationInfo(BaseModel):
    dataset: str
    fingerprint: str
    label_key: str
    edits_path: str
    probability_source: Optional[str]
    episodes: int
    frames: int
    cameras: list[str]
    fps: float


# ---- the station ----------------------------------------------------------------------------------
class LabelStation:
    """One dataset opened for labelling; the label page's handlers call its methods."""

    def __init__(self, ds: LeRobotDataset, edits: EditsFile, probability: Optional[np.ndarray] = None,
                 probability_source: Optional[str] = None, spans: Optional[list[dict]] = None,
                 cache_dir: Optional[str] = None, max_side: int = 480):
        self.ds = ds
        self.edits = edits
        self.probability = probability
        self.probability_source = probability_source
        self.spans = spans or []
        self.cameras = ds.resolve_cameras(None)
        self.original = edits.base_labels()
        self._frame_index = ds.read_rows(["frame_index"])["frame_index"]
        self._episodes = {e.index: e for e in ds.episodes}
        self._first_row = {e: int(ds.rows([e])[0]) for e in self._episodes}
        # Every camera decoded once into the frame cache at its display size; requests only read the memmap.
        self._frames = {cam: ds.frames([cam], display_size(ds.camera_size(cam), max_side), cache_dir=cache_dir)[cam]
                        for cam in self.cameras}

    @classmethod
    def open(cls, dataset: DatasetConfig, label_key: Optional[str] = None, label_threshold: Optional[float] = None,
             edits: Optional[str] = None, checkpoint: Optional[str] = None, suspects: Optional[str] = None,
             cache_dir: Optional[str] = None, max_side: int = 480) -> "LabelStation":
        """Open ``dataset`` with its edits file (default next to it) and, optionally, probabilities from a
        ``checkpoint`` or a ``suspects`` output folder (one of them)."""
        if checkpoint and suspects:
            raise ConfigError("pass checkpoint=<dir> or suspects=<dir>, not both: the timeline shows one probability")
        if max_side < 16:
            raise ConfigError(f"max_side={max_side} must be at least 16 pixels")
        ds = open_dataset(dataset)
        file = EditsFile.open(ds, edits, label_key, label_threshold)
        probability, source, spans = None, None, []
        if checkpoint:
            probability, source = checkpoint_probability(ds, checkpoint, cache_dir), f"checkpoint {checkpoint}"
        elif suspects:
            probability, spans = suspects_probability(ds, suspects, file.label_key)
            source = f"suspects {suspects}"
        return cls(ds, file, probability, source, spans, cache_dir, max_side)

    # ---- reading ------------------------------------------------------------------------------
    def info(self) -> StationInfo:
        return StationInfo(dataset=str(self.ds.root), fingerprint=self.ds.fingerprint, label_key=self.edits.label_key,
                           edits_path=str(self.edits.path), probability_source=self.probability_source,
                           episodes=len(self._episodes), frames=self.ds.num_frames, cameras=self.cameras,
                           fps=self.ds.fps)

    def episodes(self) -> list[EpisodeSummary]:
        labels = self.edits.apply(self.original)
        covered = self.edits.covered()
        out = []
        for ep in self._episodes.values():
            rows = self.ds.rows([ep.index])
            pos = np.flatnonzero(labels[rows] == 1)
            frames = self._frame_index[rows]
            out.append(EpisodeSummary(
                episode_index=ep.index, length=ep.length, positives=len(pos),
                onset=int(frames[pos[0]]) if len(pos) else None, offset=int(frames[pos[-1]]) if len(pos) else None,
                suspects=sum(1 for s in self.spans if s["episode_index"] == ep.index),
                edited=bool(covered[rows].any())))
        return out

    def episode(self, episode_index: int) -> EpisodeDetail:
        ep = self._episode(episode_index)
        rows = self.ds.rows([ep.index])
        labels = self.edits.apply(self.original)[rows]
        prob = None if self.probability is None else \
            [None if np.isnan(p) else round(float(p), 4) for p in self.probability[rows]]
        spans = [SpanModel(**{k: s[k] for k in SpanModel.model_fields}) for s in self.spans
                 if s["episode_index"] == ep.index]
        return EpisodeDetail(episode_index=ep.index, length=ep.length, fps=self.ds.fps, cameras=self.cameras,
                             labels=labels.tolist(), original=self.original[rows].tolist(), probability=prob,
                             spans=sorted(spans, key=lambda s: s.start))

    def frame_image(self, camera: int, episode_index: int, frame: int, fmt: str = "jpg") -> tuple[bytes, str]:
        """(encoded image, media type) of one camera's frame, read from the frame cache."""
        from PIL import Image

        if fmt not in IMAGE_FORMATS:
            raise ConfigError(f"image format {fmt!r} is not served (known: {', '.join(IMAGE_FORMATS)})")
        if not 0 <= camera < len(self.cameras):
            raise ConfigError(f"camera {camera} does not exist (cameras 0..{len(self.cameras) - 1}: {self.cameras})")
        ep = self._episode(episode_index)
        if not 0 <= frame < ep.length:
            raise DatasetError(f"frame {frame} is out of range: episode {ep.index} has frames 0..{ep.length - 1}")
        row = self._first_row[ep.index] + frame
        buf = io.BytesIO()
        pil_format, media = IMAGE_FORMATS[fmt]
        Image.fromarray(np.asarray(self._frames[self.cameras[camera]][row])).save(
            buf, format=pil_format, **({"quality": 90} if pil_format == "JPEG" else {}))
        return buf.getvalue(), media

    def list_edits(self) -> list[EditModel]:
        return [_edit_model(i, e) for i, e in enumerate(self.edits.edits)]

    # ---- changing -----------------------------------------------------------------------------
    def add_edit(self, req: EditRequest) -> EditModel:
        edit = self.edits.add(req.episode_index, req.start, req.end, req.label, source="label-station")
        return _edit_model(len(self.edits.edits) - 1, edit)

    def undo(self, index: Optional[int] = None) -> EditModel:
        i = len(self.edits.edits) - 1 if index is None else index
        return _edit_model(i, self.edits.undo(index))

    def _episode(self, episode_index: int):
        ep = self._episodes.get(int(episode_index))
        if ep is None:
            raise DatasetError(f"episode {episode_index} is not in {self.ds.root} "
                               f"(episodes {min(self._episodes)}..{max(self._episodes)})")
        return ep


def _edit_model(index: int, e: Edit) -> EditModel:
    return EditModel(index=index, **asdict(e))


def display_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` (H, W), scaled down to fit ``max_side`` (aspect kept)."""
    h, w = size
    scale = min(1.0, max_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _positions(ds: LeRobotDataset, episode_index: np.ndarray, frame_index: np.ndarray, what: str) -> np.ndarray:
    """Dataset-order row of each (episode, frame) pair; DatasetError when one is not in ``ds``."""
    rows = ds.read_rows(["episode_index", "frame_index"])
    span = int(max(rows["frame_index"].max(initial=0), frame_index.max(initial=0))) + 1
    keys = rows["episode_index"] * span + rows["frame_index"]
    want = np.asarray(episode_index, np.int64) * span + np.asarray(frame_index, np.int64)
    pos = np.searchsorted(keys, want)
    bad = (pos >= len(keys)) | (keys[np.minimum(pos, len(keys) - 1)] != want)
    if bad.any():
        raise DatasetError(f"{what} holds frames that {ds.root} does not have; it was made for other data")
    return pos


def checkpoint_probability(ds: LeRobotDataset, checkpoint: str, cache_dir: Optional[str]) -> np.ndarray:
    """P(success) of every row under ``checkpoint``, through ``evaluation.predict`` (as ``hilreward predict``)."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        path = predict(checkpoint, DatasetConfig(root=str(ds.root)), Path(tmp) / "predictions.parquet",
                       cache_dir=cache_dir)
        table = pq.read_table(path, columns=["episode_index", "frame_index", "probability"])
    prob = np.full(ds.num_frames, np.nan)
    pos = _positions(ds, table.column("episode_index").to_numpy(), table.column("frame_index").to_numpy(),
                     f"the predictions of {checkpoint}")
    prob[pos] = table.column("probability").to_numpy()
    return prob


def suspects_probability(ds: LeRobotDataset, directory: str, label_key: str) -> tuple[np.ndarray, list[dict]]:
    """(out-of-fold P(success) of every row, suspect spans) from a ``hilreward suspects`` output folder."""
    meta, table = load_suspects(directory)
    if meta.get("dataset_fingerprint") != ds.fingerprint:
        raise DatasetError(f"the suspects in {directory} were computed for another dataset or before {ds.root} "
                           f"changed (fingerprint {meta.get('dataset_fingerprint')}, now {ds.fingerprint}); run "
                           f"hilreward suspects again")
    if meta.get("label_key") != label_key:
        raise ConfigError(f"the suspects in {directory} judge label key {meta.get('label_key')!r}, the edits "
                          f"{label_key!r}; pass label.key={meta.get('label_key')} or another suspects run")
    prob = np.full(ds.num_frames, np.nan)
    pos = _positions(ds, table.column("episode_index").to_numpy(), table.column("frame_index").to_numpy(),
                     f"{directory}/suspects.parquet")
    prob[pos] = table.column("probability").to_numpy()
    return prob, list(meta.get("spans", []))
