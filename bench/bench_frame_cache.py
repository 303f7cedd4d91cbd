"""Frame cache: first read of a dataset (decode every video once) vs a second read (cache only), one process.

    .venv/bin/python bench/bench_frame_cache.py [--dataset ../shared/data/metaworld_drawer_open] [--size 128 128]

Prints JSON: cold and warm seconds, their ratio (target >= 20x), and how many video files each read opened.
"warm" opens the dataset again and gets the frames as the API hands them out (memory-mapped);
"warm_read_all" also copies every cached pixel into RAM, so a lazy memmap is not counted as free.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from hilreward.data import LeRobotDataset, video

ROOT = Path(__file__).resolve().parents[1]


def read(root: Path, size: tuple[int, int], cache: str, touch: bool) -> tuple[float, int, int]:
    before = video.DECODE_CALLS
    t0 = time.perf_counter()
    ds = LeRobotDataset.open(root)
    frames = ds.frames(None, size, cache_dir=cache)
    labels = ds.labels()
    nbytes = sum(int(np.array(f).nbytes) if touch else f.nbytes for f in frames.values())
    seconds = time.perf_counter() - t0
    assert len(labels) == ds.num_frames
    return seconds, video.DECODE_CALLS - before, nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "data" / "metaworld_drawer_open"))
    ap.add_argument("--size", nargs=2, type=int, default=[128, 128])
    a = ap.parse_args()
    size = (a.size[0], a.size[1])
    with tempfile.TemporaryDirectory() as cache:
        cold, cold_decodes, nbytes = read(Path(a.dataset), size, cache, touch=True)
        warm, warm_decodes, _ = read(Path(a.dataset), size, cache, touch=False)
        full, _, _ = read(Path(a.dataset), size, cache, touch=True)
    ds = LeRobotDataset.open(a.dataset)
    print(json.dumps({
        "bench": "frame_cache", "dataset": str(a.dataset), "frames": ds.num_frames, "cameras": len(ds.camera_keys),
        "size": list(size), "cache_mb": round(nbytes / 2**20, 1),
        "cold_s": round(cold, 3), "warm_s": round(warm, 4), "warm_read_all_s": round(full, 4),
        "ratio": round(cold / warm, 1), "ratio_read_all": round(cold / full, 1), "target_ratio": 20,
        "video_files_decoded_cold": cold_decodes, "video_files_decoded_warm": warm_decodes,
    }, indent=2))


if __name__ == "__main__":
    main()
