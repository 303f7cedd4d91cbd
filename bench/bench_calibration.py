"""What calibration by folds costs: ``hilreward train`` with ``training.calibrate=auto`` against the same training with
``training.calibrate=off``, side by side, task by task.

    nice -n 10 .venv/bin/python bench/bench_calibration.py [--model scratch] [--tasks ...] [--json PATH] [--doc]

Each task's set is trained on 16 episodes (the three shared sets: episodes 0-15), once per setting, the settings
alternating, each run a fresh ``hilreward train`` process with warm caches (a first, untimed run decodes the frames
and, for a frozen encoder, computes the features, so both settings pay the same for data; ``--cold``: every run starts
from empty caches, as a user's first run). At 16 episodes the default split holds 3 out, too little evidence, so
``auto`` calibrates by folds: for ``model=scratch`` the 4 fold models are trained in the run's own loop and deployed
as an ensemble; for a frozen encoder (``model=resnet10``, random weights so nothing is downloaded) the
fold heads train in one pass on the cached features beside the final head. Reported per task: wall seconds and CPU
seconds (user + system of the process, less sensitive to the machine's other load) of both, their ratios, and what
the calibration rests on. The JSON goes to ``bench/results/calibration-cost-<date>.json``; ``--doc`` writes the
"Calibration cost" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
TASKS = {"drawer-open": SHARED / "metaworld_drawer_open", "pick-place": SHARED / "metaworld_pick_place",
         "button-press-topdown": SHARED / "metaworld_button_press"}
MODELS = {"scratch": ["model=scratch"], "resnet10": ["model=resnet10", "model.pretrained=false"]}
WARM = {"scratch": ["training.steps=1"], "resnet10": []}
"""The untimed first run: it decodes the frames, and for a frozen encoder computes the features (the run's own
config, so the same views), which both timed runs then read from the cache."""
DOC = REPO / "docs" / "benchmarks.md"


def log(msg: str) -> None:
    print(f"[bench_calibration {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(args: list[str], out: Path, env: dict) -> dict:
    """One ``hilreward train`` process: wall and CPU seconds, and what its calibration rests on."""
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "hilreward"), "train", *args, f"output_dir={out}"],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"hilreward train {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    cal = json.loads((out / "checkpoints" / "best" / "config.json").read_text()).get("calibration") or {}
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "calibration": {k: cal.get(k) for k in ("method", "fold_models", "fold_steps", "enough", "threshold",
                                                    "positives", "success_episodes")},
            "heldout_accuracy": metrics.get("eval/accuracy"), "val_episodes": metrics["val_episodes"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), default="scratch")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), help=f"of {', '.join(TASKS)}, or task=<folder>")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--override", nargs="*", default=[])
    ap.add_argument("--cold", action="store_true",
                    help="every timed run with empty caches (as a first run: both settings decode and encode)")
    ap.add_argument("--json")
    ap.add_argument("--doc", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hilreward-bench-calibration-"))
    env = dict(os.environ, HILREWARD_CACHE=str(work / "cache"), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS=str(args.threads), OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
               WANDB_MODE="disabled")
    results = {}
    for spec in args.tasks:
        task, _, folder = spec.partition("=")
        root = Path(folder) if folder else TASKS[task]
        common = [f"dataset.root={root}", "dataset.episodes=[" + ",".join(map(str, range(16))) + "]",
                  *MODELS[args.model], f"training.threads={args.threads}", "training.device=cpu", *args.override]
        if not args.cold:
            log(f"{task}: warming the caches")
            run([*common, *WARM[args.model], "training.calibrate=off"], work / "warm", env)
        per = {}
        for setting in ("off", "auto"):  # off first: a later run never finds a cache the earlier one left warmer
            log(f"{task}: calibrate={setting}")
            if args.cold:
                shutil.rmtree(work / "cache", ignore_errors=True)
            per[setting] = run([*common, f"training.calibrate={setting}"], work / f"{task}-{setting}", env)
        per["wall_ratio"] = per["auto"]["wall_s"] / per["off"]["wall_s"]
        per["cpu_ratio"] = per["auto"]["cpu_s"] / per["off"]["cpu_s"]
        log(f"{task}: auto / off = {per['cpu_ratio']:.2f}x CPU, {per['wall_ratio']:.2f}x wall")
        results[task] = per
    report = {"date": dt.date.today().isoformat(), "model": args.model, "threads": args.threads, "cold": args.cold,
              "overrides": args.override, "cpus": os.cpu_count(), "tasks": results,
              "cpu_ratio_median": statistics.median(r["cpu_ratio"] for r in results.values()),
              "wall_ratio_median": statistics.median(r["wall_ratio"] for r in results.values())}
    cold = "-cold" if args.cold else ""
    name = f"calibration-cost-{args.model}{cold}-{report['date']}.json"
    path = Path(args.json) if args.json else HERE / "results" / name
    path.write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {path}")
    print(table(report))
    shutil.rmtree(work, ignore_errors=True)
    if args.doc:
        write_doc(report, path)


def table(report: dict) -> str:
    caches = "empty caches (each run decodes and encodes)" if report.get("cold") else "warm caches"
    lines = [f"`model={report['model']}`, {report['threads']} thread(s), {caches}:", "",
             "| task | off: wall / CPU s | auto: wall / CPU s | calibration | auto / off (CPU) | auto / off (wall) |",
             "|---|---|---|---|---|---|"]
    for task, r in report["tasks"].items():
        cal = r["auto"]["calibration"]
        how = f"{cal['method']}" + (f", {cal['fold_models']} ({cal['fold_steps']} steps)" if cal.get("fold_models")
                                    else "") + (", evidence-backed" if cal.get("enough") else ", too little evidence")
        lines.append(f"| {task} | {r['off']['wall_s']:.0f} / {r['off']['cpu_s']:.0f} | {r['auto']['wall_s']:.0f} / "
                     f"{r['auto']['cpu_s']:.0f} | {how} | **{r['cpu_ratio']:.2f}x** | {r['wall_ratio']:.2f}x |")
    lines.append(f"| median | | | | **{report['cpu_ratio_median']:.2f}x** | {report['wall_ratio_median']:.2f}x |")
    return "\n".join(lines)


def write_doc(report: dict, path: Path) -> None:
    from run_all import replace_section

    name = f"calibration-{report['model']}{'-cold' if report.get('cold') else ''}"
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    replace_section(DOC, start, end, f"{start}\n{table(report)}\n\n(`{path.relative_to(REPO)}`)\n{end}\n")


if __name__ == "__main__":
    main()
