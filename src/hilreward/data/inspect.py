"""``hilreward inspect``: what a dataset holds, what a label choice yields, and a contact sheet to eyeball it.

    hilreward inspect dataset.root=<folder> [dataset.episodes=[0,1]] [label.key=next.reward]
                      [label.align=auto] [output_dir=outputs/inspect]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import DatasetConfig, LabelConfig, parse_overrides
from ..errors import VideoError
from .labels import describe_alignment, resolve_alignment
from .reader import LeRobotDataset, open_dataset
from ..utils import write_atomic
from ..utils import CAMERA_PREFIX

# HIL-SERL's guidance for a reward-classifier dataset.
GUIDE_POSITIVES = 200
GUIDE_NEGATIVES = 1000
GUIDE_RATIO = (2.0, 3.0)


@dataclass
class InspectOptions:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """Which dataset (root or repo_id), episodes and cameras to inspect."""
    label: LabelConfig = field(default_factory=LabelConfig)
    """Label column, threshold and alignment whose positives/negatives are counted."""
    output_dir: str = "outputs/inspect"
    """Where ``contact_sheet.png`` and ``summary.json`` are written."""
    samples: int = 6
    """Frames per class (positive / negative) and camera on the contact sheet."""
    image_size: list[int] = field(default_factory=lambda: [128, 128])
    """Thumbnail size [height, width] (frames come through the frame cache at this size)."""
    cache_dir: Optional[str] = None
    """Frame cache root (default ``$HILREWARD_CACHE`` or ``~/.cache/hilreward``)."""


@dataclass
class InspectReport:
    root: str
    version: str
    fps: float
    episodes: int
    frames: int
    tasks: list[str]
    cameras: dict[str, dict]
    label: dict
    positives: int
    negatives: int
    positives_other_align: int
    per_episode: list[dict]
    verdict: str
    warnings: list[str]
    contact_sheet: Optional[str]

    def text(self) -> str:
        lab = self.label
        other = _other_alignment(lab["key"], lab["align"])
        lines = [f"dataset   {self.root}  (LeRobot {self.version}, {self.fps:g} fps)",
                 f"episodes  {self.episodes}   frames {self.frames}   tasks: {'; '.join(self.tasks) or '-'}",
                 "cameras"]
        for key, cam in self.cameras.items():
            state = "MISSING " + ", ".join(cam["missing"]) if cam["missing"] else cam["storage"]
            lines.append(f"  {key:<32} {cam['height']}x{cam['width']}  {state}")
        lines.append(f"labels    key={lab['key']} threshold={lab['threshold']} {lab['alignment']}  "
                     f"values={lab['values']}")
        ratio = f"{self.negatives / self.positives:.1f}x" if self.positives else "-"
        lines.append(f"  positives {self.positives}   negatives {self.negatives}   negatives/positives {ratio}   "
                     f"(align={other}: {self.positives_other_align} positives)")
        lines.append(f"  guidance  ~{GUIDE_POSITIVES} positive and ~{GUIDE_NEGATIVES} negative frames, "
                     f"{GUIDE_RATIO[0]:g}-{GUIDE_RATIO[1]:g}x more negatives than positives")
        lines.append(f"  verdict   {self.verdict}")
        lines.append("per episode  (episode: frames, positives, negatives, first positive frame)")
        for ep in self.per_episode[:60]:
            first = "-" if ep["first_positive"] is None else ep["first_positive"]
            lines.append(f"  {ep['episode']:>5}: {ep['frames']:>5} {ep['positives']:>5} {ep['negatives']:>5}  {first}")
        if len(self.per_episode) > 60:
            lines.append(f"  ... {len(self.per_episode) - 60} more in summary.json")
        lines += [f"warning: {w}" for w in self.warnings]
        if self.contact_sheet:
            lines.append(f"contact sheet: {self.contact_sheet}")
        return "\n".join(lines)


def _other_alignment(key: str, align: str) -> str:
    """The explicit alignment that reads ``key`` the other way (its positives are printed for comparison)."""
    return "next" if resolve_alignment(key, align) == "current" else "current"


def inspect_dataset(opts: InspectOptions) -> InspectReport:
    """Summarise the dataset, write ``contact_sheet.png`` and ``summary.json`` into ``opts.output_dir``."""
    ds = open_dataset(opts.dataset)
    cameras = ds.resolve_cameras(opts.dataset.cameras)
    episodes = opts.dataset.episodes
    lab = opts.label
    rows = ds.read_rows(["episode_index", "frame_index", lab.key] if lab.key in ds.columns
                        else ["episode_index", "frame_index"], episodes)
    labels = ds.labels(lab.key, lab.threshold, lab.align, episodes)
    other = _other_alignment(lab.key, lab.align)
    labels_other = ds.labels(lab.key, lab.threshold, other, episodes)
    raw = np.asarray(rows[lab.key]).reshape(len(labels), -1)[:, 0]
    values = np.unique(raw)
    warnings = []
    if not set(values.tolist()) <= {0, 1}:
        shown = ", ".join(f"{v:g}" for v in values[:8].astype(float)) + (" ..." if len(values) > 8 else "")
        warnings.append(f"label {lab.key!r} is not 0/1 (values: {shown}); positives are value >= {lab.threshold}")

    pos_mask = labels > 0
    per_episode = []
    for ep in sorted(set(rows["episode_index"].tolist())):
        m = rows["episode_index"] == ep
        p = pos_mask[m]
        per_episode.append({"episode": ep, "frames": int(m.sum()), "positives": int(p.sum()),
                            "negatives": int((~p).sum()),
                            "first_positive": int(rows["frame_index"][m][p][0]) if p.any() else None})
    positives, negatives = int(pos_mask.sum()), int((~pos_mask).sum())
    if positives == 0:
        warnings.append(f"no positive frames with label.key={lab.key} threshold={lab.threshold}: "
                        f"a classifier cannot learn success; check the label key or record successful episodes")
    empty = [e["episode"] for e in per_episode if e["positives"] == 0]
    if positives and empty:
        warnings.append(f"{len(empty)} episode(s) have no positive frame: {_short(empty)} "
                        f"(fine for failure episodes; otherwise relabel them)")

    cam_info = {}
    for key in ds.camera_keys:
        feature = ds.features[key]
        missing = [str(p.relative_to(ds.root)) for p in ds.video_files(key) if not p.is_file()]
        if missing:
            warnings.append(f"camera {key!r}: video file(s) missing: {', '.join(missing[:3])}")
        h, w = ds.camera_size(key)
        codec = feature.get("info", {}).get("video.codec", "?")
        cam_info[key] = {"height": h, "width": w, "missing": missing,
                         "storage": f"video ({codec})" if feature["dtype"] == "video" else "images in parquet"}

    out_dir = Path(opts.output_dir)
    sheet = _contact_sheet(ds, [c for c in cameras if not cam_info[c]["missing"]], episodes, rows, labels,
                           opts, out_dir / "contact_sheet.png", warnings)
    report = InspectReport(
        root=str(ds.root), version=ds.version, fps=ds.fps, episodes=len(per_episode), frames=len(labels),
        tasks=sorted({t for e in ds.episodes for t in e.tasks}), cameras=cam_info,
        label={"key": lab.key, "threshold": lab.threshold, "align": lab.align,
               "alignment": describe_alignment(lab.key, lab.align),
               "values": "0/1" if set(values.tolist()) <= {0, 1} else f"{len(values)} distinct"},
        positives=positives, negatives=negatives, positives_other_align=int((labels_other > 0).sum()),
        per_episode=per_episode, verdict=_verdict(positives, negatives), warnings=warnings,
        contact_sheet=str(sheet) if sheet else None)
    write_atomic(out_dir / "summary.json", json.dumps(asdict(report), indent=2))
    return report


def _verdict(pos: int, neg: int) -> str:
    if pos == 0:
        return "NOT USABLE: no positive frames"
    ratio = neg / pos
    if neg == 0:
        return "NOT USABLE: no negative frames; record episodes before success and failures"
    short = []
    if pos < GUIDE_POSITIVES:
        short.append(f"{GUIDE_POSITIVES - pos} more positive")
    if neg < GUIDE_NEGATIVES:
        short.append(f"{GUIDE_NEGATIVES - neg} more negative")
    if short:
        return f"BELOW GUIDANCE: record about {' and '.join(short)} frames"
    if ratio < 1:
        return (f"IMBALANCED: more positives than negatives ({ratio:.1f}x); record failures and approaches "
                f"(balanced sampling compensates in training)")
    if not GUIDE_RATIO[0] <= ratio <= GUIDE_RATIO[1]:
        return f"OK (negatives/positives {ratio:.1f}x, guidance {GUIDE_RATIO[0]:g}-{GUIDE_RATIO[1]:g}x; balanced sampling compensates)"
    return "OK: meets the HIL-SERL guidance"


def _contact_sheet(ds: LeRobotDataset, cameras: list[str], episodes, rows: dict, labels: np.ndarray,
                   opts: InspectOptions, path: Path, warnings: list[str]) -> Path | None:
    from PIL import Image, ImageDraw

    h, w = int(opts.image_size[0]), int(opts.image_size[1])
    frames = {}
    for cam in cameras:
        try:
            frames[cam] = ds.frames([cam], (h, w), episodes, opts.cache_dir)[cam]
        except VideoError as exc:
            warnings.append(f"camera {cam!r} left off the contact sheet: {exc}")
    if not frames:
        return None
    groups = [("positive", np.flatnonzero(labels > 0)), ("negative", np.flatnonzero(labels == 0))]
    n = max(1, int(opts.samples))
    label_w, caption = 110, 14
    sheet = Image.new("RGB", (label_w + n * (w + 4), len(frames) * 2 * (h + caption + 6) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = 4
    for cam, arr in frames.items():
        for name, idx in groups:
            draw.text((4, y + h // 2), f"{cam[len(CAMERA_PREFIX):] if cam.startswith(CAMERA_PREFIX) else cam}\n{name}",
                      fill=(0, 0, 0))
            picks = idx[np.linspace(0, len(idx) - 1, min(n, len(idx))).round().astype(int)] if len(idx) else []
            for k, row in enumerate(picks):
                x = label_w + k * (w + 4)
                sheet.paste(Image.fromarray(np.asarray(arr[row])), (x, y + caption))
                colour = (0, 140, 0) if labels[row] > 0 else (200, 0, 0)
                draw.rectangle([x - 1, y + caption - 1, x + w, y + caption + h], outline=colour)
                draw.text((x, y), f"ep {rows['episode_index'][row]} f {rows['frame_index'][row]} y={labels[row]}",
                          fill=colour)
            if not len(idx):
                draw.text((label_w, y + h // 2), f"(no {name} frames)", fill=(120, 120, 120))
            y += h + caption + 6
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sheet.save(tmp, format="PNG")
    tmp.replace(path)
    return path


def _short(values: list[int]) -> str:
    return ", ".join(map(str, values[:20])) + (f" ... ({len(values)} in all)" if len(values) > 20 else "")


def main(args: list[str]) -> int:
    """Entry point of ``hilreward inspect``."""
    opts = parse_overrides(InspectOptions, args)
    print(inspect_dataset(opts).text())
    return 0
