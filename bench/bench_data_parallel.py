"""Data-parallel training: ``hilreward train`` (1 process) vs ``accelerate launch`` (N processes), same cores.

    .venv/bin/python bench/bench_data_parallel.py [--datasets DIR ...] [--presets scratch resnet10]
                                                   [--processes 2] [--cores 2] [--rounds 1]

For every dataset (default: the three in ../shared/data) and model preset, the same training run
(episodes 0-15, held out 16-19) as one process with ``training.threads=<cores>`` and as ``--processes``
processes with ``<cores>/<processes>`` threads each, alternating, ``--rounds`` times. ``resnet10`` has
random weights (``model.pretrained=false``: nothing is downloaded). Frames are decoded once beforehand
(a shared warm frame cache) and every run gets an empty feature cache, so a run's time is model
building, feature computation (feature path) and training. Prints one JSON object (also written to
``bench/results/data_parallel-<date>.json``): per run the held-out accuracy at the end, the best held-out
accuracy, wall seconds and the load average around it; per dataset and preset the accuracy difference
and the time ratio. ``--out`` sets the JSON file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PRESETS = {"scratch": ["model=scratch"], "resnet10": ["model=resnet10", "model.pretrained=false"]}
SIZES = {"scratch": (96, 96), "resnet10": (128, 128)}
SPLIT = ["split.val_episodes=[16,17,18,19]"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def warm_frames(dataset: Path, size: tuple[int, int], cache: Path) -> None:
    from hilreward.data import LeRobotDataset

    LeRobotDataset.open(dataset).frames(None, size, cache_dir=str(cache))


def run(cmd: list[str], out: Path, frames: Path) -> dict:
    cache = out.parent / f"{out.name}-cache"
    cache.mkdir(parents=True)
    (cache / "frames").symlink_to(frames)  # warm frames; features start empty
    before, t0 = [round(x, 2) for x in os.getloadavg()], time.perf_counter()
    proc = subprocess.run(cmd + [f"output_dir={out}", f"cache_dir={cache}"], capture_output=True, text=True,
                          cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    shutil.rmtree(cache)
    return {"accuracy": metrics["eval/accuracy"], "best_accuracy": metrics["best_accuracy"],
            "wall_s": round(wall, 1), "loadavg_before": before,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", type=Path, default=sorted(p for p in SHARED.glob("*") if p.is_dir()))
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2, help="CPU threads per run, split among its processes")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / f"data_parallel-{dt.date.today()}.json")
    a = ap.parse_args()
    bindir = Path(sys.executable).parent
    single = [sys.executable, "-m", "hilreward", "train"]
    multi = [str(bindir / "accelerate"), "launch", "--multi_gpu", f"--num_processes={a.processes}",
             "--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no", "--main_process_port=0",
             "-m", "hilreward", "train"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for dataset in a.datasets:
            for preset in a.presets:
                frames = tmp / "warm" / dataset.name / preset
                warm_frames(dataset, SIZES[preset], frames)
                frames = frames / "frames"
                common = [f"dataset.root={dataset}", "training.device=cpu", *PRESETS[preset], *SPLIT]
                row: dict = {"dataset": dataset.name, "preset": preset, "one": [], "many": []}
                for r in range(a.rounds):
                    for kind in (("one", "many") if r % 2 == 0 else ("many", "one")):
                        n = 1 if kind == "one" else a.processes
                        cmd = (single if n == 1 else multi) + common + [f"training.threads={max(1, a.cores // n)}"]
                        log(f"{dataset.name} {preset} {n} process(es), round {r}")
                        row[kind].append(run(cmd, tmp / f"{dataset.name}-{preset}-{kind}-{r}", frames))
                        log(f"  {row[kind][-1]}")
                mean = {k: {m: sum(x[m] for x in row[k]) / len(row[k]) for m in ("accuracy", "best_accuracy", "wall_s")}
                        for k in ("one", "many")}
                row["accuracy_difference"] = round(mean["many"]["accuracy"] - mean["one"]["accuracy"], 4)
                row["best_accuracy_difference"] = round(mean["many"]["best_accuracy"] - mean["one"]["best_accuracy"], 4)
                row["time_ratio_many_over_one"] = round(mean["many"]["wall_s"] / mean["one"]["wall_s"], 2)
                results.append(row)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    report = {"bench": "data_parallel", "processes": a.processes, "cores": a.cores, "rounds": a.rounds,
              "logical_cpus": os.cpu_count(), "uptime_at_end": uptime, "results": results}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
