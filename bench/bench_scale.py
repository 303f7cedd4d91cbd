"""Cost at the size robots record: time and peak memory of each stage of ``hilreward train`` from ~2k to ~100k frames.

    nice -n 15 .venv/bin/python bench/bench_scale.py [--sizes 2000 20000 100000] [--work DIR] [--json PATH] [--doc]

Data: a ``hilreward sim`` set rendered at 480x640 with both cameras (``--source``; rendered into ``--work`` when
absent: drawer-open, 4 episodes of 150 frames (expert, expert, noisy expert, random), AV1 as ``hilreward sim``
writes it; offscreen rendering at that size takes minutes per episode on a CPU). A set of N frames repeats the
source's episodes: every repeat has its own hard link of each video file, so the reader decodes every frame of every
repeat (nothing is shared between repeats but the bytes on disk), and gets its own episode indices.

Each size runs ``hilreward.training.loop`` (the code ``hilreward train`` runs) in a fresh process with cold frame and
feature caches: a frozen encoder (``--model``: ``small_cnn``, the default here, is the ``model=scratch`` CNN frozen at
random weights, 96x96; ``resnet10`` is the default preset's ResNet-10 at 128x128, random weights so nothing is
downloaded: about 40x the encoder's work a frame, hours for 100k frames on a shared 2-core machine), augmentation off
(one feature view; with it on, the encode stage does ``augment_views`` times the work),
``training.epochs=2`` passes over the training frames (so the training stage grows with the data, as it should; with
one the pixel path would be cheaper than computing the features), and
calibration by folds forced (``training.calibrate=cv``: at every size the calibration stage runs). Stages, timed and
measured in that process (memory sampled every 20 ms from /proc/self/status):

  decode     reading the dataset: parquet rows, labels, every video decoded once and resized into the frame cache
  encode     the frozen encoder over every frame (the feature cache)
  train      the head's optimisation, held-out evaluations, checkpoints
  calibrate  the fold heads (one pass) and the threshold and temperature from their out-of-fold logits

Per stage: seconds and CPU seconds (every thread of the process: on a shared machine the wall time moves with the
others' load, the CPU time much less), each per 1k frames, peak anonymous memory (RssAnon: the process's own memory;
the frame and feature caches are file-backed pages, which the page cache may evict) and peak RSS (VmHWM). Results:
JSON (``--json``, default ``bench/results/scale-<date>.json``) and, with ``--doc``, the "Scale" section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOC = REPO / "docs" / "benchmarks.md"
DOC_START, DOC_END = "<!-- bench:scale:start -->", "<!-- bench:scale:end -->"
STAGES = ("decode", "encode", "train", "calibrate")
TRAIN_OVERRIDES = ("augmentation.enable=false", "training.epochs=2", "training.calibrate=cv", "training.eval_freq=0",
                   "training.device=cpu")
MODELS = {"small_cnn": ("model=scratch", "model.freeze=all"), "resnet10": ("model=resnet10", "model.pretrained=false")}


def log(msg: str) -> None:
    print(f"[bench_scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- data: render once, repeat episodes -----------------------------------------------------------------------------
def render_source(work: Path, episodes: int) -> Path:
    root = work / f"drawer-open-480x640-e{episodes}"
    if not (root / "meta" / "info.json").is_file():
        log(f"rendering {episodes} episodes at 480x640 into {root}")
        env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
        subprocess.run([str(Path(sys.executable).parent / "hilreward"), "sim", "task=drawer-open", f"out={root}",
                        f"episodes={episodes}", "image_size=[480,640]"], check=True, env=env)
    return root


def repeated(source: Path, episodes: int, work: Path) -> Path:
    """A LeRobot v3.0 set of ``episodes`` episodes: the source's, repeated; each repeat links its own video files."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = work / f"{source.name}-x{episodes}"
    if (root / "meta" / "info.json").is_file():
        return root
    tmp = work / f".{root.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    info = json.loads((source / "meta" / "info.json").read_text())
    eps = pq.read_table(sorted((source / "meta" / "episodes").glob("chunk-*/file-*.parquet"))[0])
    data = pa.concat_tables([pq.read_table(p) for p in sorted((source / "data").glob("chunk-*/file-*.parquet"))])
    n_src = eps.num_rows
    cameras = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    files = {c: sorted((source / "videos" / c).glob("chunk-*/file-*.mp4")) for c in cameras}
    repeats = -(-episodes // n_src)
    ep_tables, offset = [], 0
    for r in range(repeats):
        take = min(n_src, episodes - r * n_src)
        part = eps.slice(0, take)
        ep_data = data.filter(pc.less(data["episode_index"], take))
        rows = ep_data.num_rows
        cols = {name: part[name] for name in part.column_names}
        cols["episode_index"] = pc.add(part["episode_index"], r * n_src)
        cols["data/file_index"] = pa.array([r] * take, pa.int64())
        cols["data/chunk_index"] = pa.array([0] * take, pa.int64())
        first = pc.min(part["dataset_from_index"]).as_py()
        cols["dataset_from_index"] = pc.add(pc.subtract(part["dataset_from_index"], first), offset)
        cols["dataset_to_index"] = pc.add(pc.subtract(part["dataset_to_index"], first), offset)
        for c in cameras:
            cols[f"videos/{c}/file_index"] = pc.add(part[f"videos/{c}/file_index"], r * len(files[c]))
            for f, path in enumerate(files[c]):
                dst = tmp / "videos" / c / "chunk-000" / f"file-{r * len(files[c]) + f:03d}.mp4"
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, dst)
        ep_tables.append(pa.table(cols, schema=part.schema))
        out_data = ep_data.set_column(ep_data.schema.get_field_index("episode_index"), "episode_index",
                                      pc.add(ep_data["episode_index"], r * n_src))
        out_data = out_data.set_column(out_data.schema.get_field_index("index"), "index",
                                       pa.array(range(offset, offset + rows), out_data.schema.field("index").type))
        (tmp / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(out_data, tmp / "data" / "chunk-000" / f"file-{r:03d}.parquet")
        offset += rows
    (tmp / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(ep_tables), tmp / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    for name in ("tasks.parquet", "stats.json"):
        if (source / "meta" / name).is_file():
            shutil.copy(source / "meta" / name, tmp / "meta" / name)
    info.update(total_episodes=episodes, total_frames=offset, splits={"train": f"0:{episodes}"})
    (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    tmp.rename(root)
    return root


# ---- one size, measured in its own process ---------------------------------------------------------------------
def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


class Stages:
    """Seconds and peak memory of named stages of this process (a sampler thread reads /proc/self/status)."""

    def __init__(self, interval: float = 0.02):
        self.results: dict[str, dict] = {}
        self.current: str | None = None
        self._t0 = self._cpu0 = 0.0
        self._peak = {"RssAnon": 0, "VmRSS": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._sample, args=(interval,), daemon=True).start()

    def _sample(self, interval: float) -> None:
        while not self._stop.wait(interval):
            s = _status()
            with self._lock:
                for k in self._peak:
                    self._peak[k] = max(self._peak[k], s.get(k, 0))

    def start(self, name: str) -> None:
        self.end()
        try:  # the kernel's peak RSS (VmHWM) starts again from the current RSS
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        s = _status()
        with self._lock:
            self._peak = {"RssAnon": s["RssAnon"], "VmRSS": s["VmRSS"]}
        self.current, self._t0, self._cpu0 = name, time.perf_counter(), time.process_time()

    def end(self) -> None:
        if self.current is None:
            return
        s = _status()
        with self._lock:
            peak_anon = max(self._peak["RssAnon"], s["RssAnon"])
            peak_rss = max(self._peak["VmRSS"], s["VmRSS"], s.get("VmHWM", 0))
        entry = self.results.setdefault(self.current, {"seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_anon": 0,
                                                       "peak_rss": 0})
        entry["seconds"] += time.perf_counter() - self._t0
        entry["cpu_seconds"] += time.process_time() - self._cpu0
        entry["peak_rss_anon"] = max(entry["peak_rss_anon"], peak_anon)
        entry["peak_rss"] = max(entry["peak_rss"], peak_rss)
        self.current = None

    def close(self) -> None:
        self.end()
        self._stop.set()


def run_size(args) -> None:
    """Child process: ``train()`` on one set, its stages timed by wrapping the functions ``train()`` calls."""
    import importlib

    import numpy as np

    from hilreward.config import compose
    from hilreward.data import open_dataset

    T = importlib.import_module("hilreward.training.loop")  # the module (the package exports the function)
    stages = Stages()

    def wrap(fn, name):
        def inner(*a, **k):
            stages.start(name)
            try:
                return fn(*a, **k)
            finally:
                stages.start("train")  # what follows the decode, the encode and the calibration is training
        return inner

    T.load_frame_data = wrap(T.load_frame_data, "decode")
    T.compute_features = wrap(T.compute_features, "encode")
    T.calibrate_by_fold_heads = wrap(T.calibrate_by_fold_heads, "calibrate")
    cfg = compose([f"dataset.root={args.dataset}", f"output_dir={args.out}", f"cache_dir={args.cache}",
                   *MODELS[args.model], *TRAIN_OVERRIDES, *args.override])
    frames = open_dataset(cfg.dataset).num_frames
    stages.start("setup")
    t0 = time.perf_counter()
    T.train(cfg)
    total = time.perf_counter() - t0
    stages.close()
    stages.results.pop("setup", None)  # the config and the dataset's metadata
    metrics = json.loads((Path(args.out) / "metrics.json").read_text())
    cal = metrics.get("calibration") or {}
    out = {"frames": frames, "episodes": len(metrics["train_episodes"]) + len(metrics["val_episodes"]),
           "total_s": total, "stages": {}, "calibration": {k: cal.get(k) for k in ("method", "enough", "threshold",
                                                                                 "fold_models", "fold_steps")}}
    for name in STAGES:
        r = stages.results.get(name)
        if r is None:
            continue
        out["stages"][name] = {**r, "seconds_per_1k_frames": r["seconds"] / frames * 1000,
                               "cpu_seconds_per_1k_frames": r["cpu_seconds"] / frames * 1000}
    out["peak_rss_anon"] = max(int(np.max([r["peak_rss_anon"] for r in out["stages"].values()])), 0)
    out["peak_rss"] = max(int(np.max([r["peak_rss"] for r in out["stages"].values()])), 0)
    print(json.dumps(out), flush=True)


# ---- the benchmark ---------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    one = sub.add_parser("size", help="(internal) one size in this process")
    one.add_argument("--dataset", required=True)
    one.add_argument("--out", required=True)
    one.add_argument("--cache", required=True)
    one.add_argument("--override", nargs="*", default=[])
    one.add_argument("--model", choices=sorted(MODELS), default="small_cnn")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000], help="frames (rounded to episodes)")
    ap.add_argument("--source", help="a rendered LeRobot set to repeat (default: render drawer-open at 480x640)")
    ap.add_argument("--source-episodes", type=int, default=4)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "hilreward-bench-scale"))
    ap.add_argument("--model", choices=sorted(MODELS), default="small_cnn", help="the frozen encoder")
    ap.add_argument("--override", nargs="*", default=[], help="extra hilreward train key=value overrides")
    ap.add_argument("--json", help="default bench/results/scale-<date>.json")
    ap.add_argument("--doc", action="store_true", help="write the Scale section of docs/benchmarks.md")
    args = ap.parse_args()
    if args.cmd == "size":
        return run_size(args)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    source = Path(args.source) if args.source else render_source(work, args.source_episodes)
    frames_per_episode = json.loads((source / "meta" / "info.json").read_text())["total_frames"] / \
        json.loads((source / "meta" / "info.json").read_text())["total_episodes"]
    runs = []
    for size in args.sizes:
        episodes = max(1, round(size / frames_per_episode))
        dataset = repeated(source, episodes, work)
        out, cache = work / f"run-{episodes}", work / f"cache-{episodes}"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)  # cold caches: every frame decoded, every feature computed
        log(f"{size} frames ({episodes} episodes): train in a fresh process")
        load = [round(x, 2) for x in os.getloadavg()]
        proc = subprocess.run([sys.executable, __file__, "size", "--dataset", str(dataset), "--out", str(out),
                               "--cache", str(cache), "--model", args.model, "--override", *args.override],
                              capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1",
                                       OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE")))
        if proc.returncode != 0:
            raise SystemExit(f"size {size} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result |= {"loadavg_before": load, "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
        runs.append(result)
        log(f"{size}: " + ", ".join(f"{k} {v['seconds_per_1k_frames']:.1f} s/1k "
                                    f"(CPU {v['cpu_seconds_per_1k_frames']:.1f})" for k, v in result["stages"].items())
            + f"; peak RssAnon {result['peak_rss_anon'] / 2**30:.2f} GiB, RSS {result['peak_rss'] / 2**30:.2f} GiB")
        shutil.rmtree(cache, ignore_errors=True)
    report = {"date": dt.date.today().isoformat(), "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                              "python": platform.python_version()},
              "source": str(source), "model": args.model,
              "overrides": [*MODELS[args.model], *TRAIN_OVERRIDES, *args.override], "runs": runs}
    path = Path(args.json) if args.json else HERE / "results" / f"scale-{report['date']}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {path}")
    print(table(report))
    if args.doc:
        write_doc(report, path)


def table(report: dict) -> str:
    """The Markdown table docs/benchmarks.md shows."""
    head = "| frames (episodes) | " + " | ".join(f"{s}: s / 1k frames (CPU)" for s in STAGES) + \
        " | total | peak RssAnon | peak RSS |"
    lines = [head, "|" + "---|" * (len(STAGES) + 4)]
    for r in report["runs"]:
        cells = [f"{r['stages'][s]['seconds_per_1k_frames']:.1f} ({r['stages'][s]['cpu_seconds_per_1k_frames']:.1f})"
                 if s in r["stages"] else "-" for s in STAGES]
        lines.append(f"| {r['frames']:,} ({r['episodes']}) | " + " | ".join(cells)
                     + f" | {r['total_s']:.0f} s | {r['peak_rss_anon'] / 2**30:.2f} GiB "
                     f"| {r['peak_rss'] / 2**30:.2f} GiB |")
    return "\n".join(lines)


def write_doc(report: dict, path: Path) -> None:
    from run_all import replace_section

    block = f"{DOC_START}\n## Scale\n\n{table(report)}\n\n(`{path.relative_to(REPO)}`; each stage's peaks in the JSON.)"
    replace_section(DOC, DOC_START, DOC_END, f"{block}\n{DOC_END}\n")


if __name__ == "__main__":
    main()
