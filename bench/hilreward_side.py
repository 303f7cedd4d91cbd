"""hilreward's side of the LeRobot comparison; each subcommand runs in a fresh process and prints one JSON line.

  train      ``hilreward train`` as a user runs it (cold frame and feature caches), timed from launch to the
             first held-out evaluation that reaches the target; the best checkpoint is then scored against
             both label columns (untimed).
  deployable ``hilreward train`` on the training episodes only, with its default calibration, timed from launch to
             its exit (the calibrated checkpoint); then (untimed) scored on the test episodes at its own
             threshold: deployable when its threshold rests on enough evidence, its accuracy reaches the target
             and no episode has a gross false termination.
  throughput training samples/s at batch B: the head step on cached features, and the pixel step
             (preprocess + frozen encoder + head), both through ``hilreward.training.train_step``.
  latency    ``RewardFunction`` batch-1 calls from uint8 frames (preprocessing included), torch or ONNX backend.
Run by ``bench/run_all.py``; usable alone: ``python bench/hilreward_side.py latency CKPT frames.npz``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CAMERAS = ("observation.images.front", "observation.images.wrist")
EVAL_LINE = re.compile(r"^step (\d+): .*?eval/accuracy ([\d.]+)")


def percentiles(samples_ms: list[float]) -> dict:
    arr = np.asarray(samples_ms)
    return {"median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)),
            "mean_ms": float(arr.mean()), "min_ms": float(arr.min()), "n": int(arr.size)}


def versions() -> dict:
    import torch

    import hilreward

    out = {"hilreward": getattr(hilreward, "__version__", "?"), "torch": torch.__version__,
           "python": sys.version.split()[0]}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return out


def emit(result: dict) -> None:
    print(json.dumps(result), flush=True)


# ---- train: time to the target held-out accuracy -------------------------------------------------
def train_overrides(args) -> list[str]:
    return [f"dataset.root={args.dataset}", f"dataset.episodes=[{','.join(map(str, range(20)))}]",
            f"split.val_episodes=[{','.join(map(str, args.eval_episodes))}]", "model=resnet10",
            f"model.weights={args.weights}", f"training.threads={args.threads}", f"output_dir={args.out}",
            "training.device=cpu", *args.override]


def cmd_train(args) -> None:
    cache = tempfile.mkdtemp(prefix="hilreward-bench-cache-")  # cold frame + feature cache
    env = dict(os.environ, HILREWARD_CACHE=cache, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), WANDB_MODE="disabled")
    exe = str(Path(sys.executable).parent / "hilreward")
    cmd = [exe, "train", *train_overrides(args)]
    curve, reached, lines, phases_s = [], None, [], {}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    logf = open(Path(args.out) / "bench-train.log", "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1)
    for raw in proc.stdout:
        elapsed = time.perf_counter() - t0
        for line in raw.replace("\r", "\n").splitlines():
            lines.append(line)
            logf.write(f"{elapsed:8.2f} {line}\n")
            logf.flush()
            for phase in ("data:", "model:", "path:"):  # frames decoded / model built / features start
                if line.startswith(phase):
                    phases_s[phase.rstrip(":")] = elapsed
            m = EVAL_LINE.match(line.strip())
            if m:
                point = {"step": int(m.group(1)), "elapsed_s": elapsed, "accuracy": float(m.group(2))}
                curve.append(point)
                if reached is None and point["accuracy"] >= args.target:
                    reached = point
    proc.wait()
    total = time.perf_counter() - t0
    logf.close()
    shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"hilreward train failed ({proc.returncode}):\n" + "\n".join(lines[-30:]))
    phases = [ln for ln in lines if ln.startswith(("path:", "data:", "model:"))]
    best = Path(args.out) / "checkpoints" / "best"
    emit({"side": "hilreward", "what": "time_to_target", "target": args.target, "label": "label.align=current "
          "(hilreward's default: the reward that arrived at the frame)", "reached": reached is not None,
          "time_to_target_s": reached["elapsed_s"] if reached else None, "total_s": total, "curve": curve,
          "phases_s": phases_s,
          "command": " ".join(cmd), "log_summary": phases, "checkpoint": str(best),
          "heldout_by_label": heldout_by_label(best, args), "versions": versions()})


def cmd_deployable(args) -> None:
    from hilreward.config import DatasetConfig, LabelConfig
    from hilreward.evaluation import evaluate

    cache = tempfile.mkdtemp(prefix="hilreward-bench-cache-")  # cold frame + feature cache
    env = dict(os.environ, HILREWARD_CACHE=cache, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), WANDB_MODE="disabled")
    cmd = [str(Path(sys.executable).parent / "hilreward"), "train", f"dataset.root={args.dataset}",
           f"dataset.episodes=[{','.join(map(str, args.train_episodes))}]", "model=resnet10",
           f"model.weights={args.weights}", f"training.threads={args.threads}", f"output_dir={args.out}",
           "training.device=cpu", *args.override]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(Path(args.out) / "bench-train.log", "w") as logf:
        proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
    total = time.perf_counter() - t0
    shutil.rmtree(cache, ignore_errors=True)
    lines = (Path(args.out) / "bench-train.log").read_text().splitlines()
    if proc.returncode != 0:
        raise SystemExit(f"hilreward train failed ({proc.returncode}):\n" + "\n".join(lines[-30:]))
    best = Path(args.out) / "checkpoints" / "best"
    config = json.loads((best / "config.json").read_text())
    cal = config.get("calibration") or {}
    m = evaluate(best, DatasetConfig(root=args.dataset, episodes=list(args.eval_episodes)), LabelConfig(),
                 report=False, output_dir=Path(args.out) / "eval")
    scored = {k: m[k] for k in ("accuracy", "gross_false_terminations", "false_successes_in_failed_episodes",
                                "missed_successes", "episodes", "threshold")}
    deployable = bool(cal.get("enough")) and m["accuracy"] >= args.target and m["gross_false_terminations"] == 0
    emit({"side": "hilreward", "what": "time_to_deployable", "target": args.target, "deployable": deployable,
          "time_to_deployable_s": total if deployable else None, "total_s": total, "command": " ".join(cmd),
          "calibration": {k: cal.get(k) for k in ("method", "enough", "positives", "success_episodes", "threshold",
                                                  "temperature", "reason", "fold_steps", "seconds")},
          "test_episodes": list(args.eval_episodes), "test": scored,
          "log_summary": [ln for ln in lines if ln.startswith(("data:", "path:", "calibration"))],
          "checkpoint": str(best), "versions": versions()})


def heldout_by_label(checkpoint: Path, args) -> dict:
    """Accuracy of ``checkpoint`` on the held-out episodes against each label column (untimed)."""
    from hilreward.config import DatasetConfig, LabelConfig
    from hilreward.data import load_frame_data
    from hilreward.models.classifier import RewardClassifier

    model = RewardClassifier.from_pretrained(checkpoint)
    ds = DatasetConfig(root=args.dataset, episodes=list(args.eval_episodes))
    size = tuple(model.config.image_size)
    out = {}
    for name, label in (("next.reward (LeRobot's pairing)", LabelConfig(align="next")),
                        ("observation.success (exact, shown frame)", LabelConfig(key="observation.success")),
                        ("next.reward align=current (hilreward default)", LabelConfig())):
        data = load_frame_data(ds, label, size)
        probs = np.concatenate([model.predict_proba({c: np.asarray(data.images[c][i:i + 64]) for c in CAMERAS})
                                for i in range(0, len(data), 64)])
        out[name] = float(((probs >= model.threshold).astype(np.int64) == data.labels).mean())
    return out


# ---- throughput: training samples/s at batch B ---------------------------------------------------------
def cmd_throughput(args) -> None:
    import torch

    from hilreward.config import compose
    from hilreward.models.classifier import RewardClassifier
    from hilreward.training import train_step

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = compose(["model=resnet10", f"model.weights={args.weights}"])
    result = {"side": "hilreward", "what": "train_step", "batch": args.batch, "threads": args.threads}
    g = torch.Generator().manual_seed(0)
    pixels = {c: torch.randint(0, 256, (args.batch, 128, 128, 3), dtype=torch.uint8, generator=g) for c in CAMERAS}
    labels = torch.randint(0, 2, (args.batch,), generator=g)
    for path in ("features", "pixels"):
        model = RewardClassifier.from_train_config(cfg, list(CAMERAS))
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.01)
        if path == "features":
            with torch.inference_mode():
                feats = model.encode(model.preprocess(pixels))
            inputs = {c: f.clone().to(torch.float16).float() for c, f in feats.items()}  # as read from the cache
        else:
            inputs = {c: x.permute(0, 3, 1, 2).float().div(255) for c, x in pixels.items()}
        steps = args.feature_steps if path == "features" else args.steps
        times = []
        for i in range(args.warmup + steps):
            t0 = time.perf_counter()
            train_step(model, inputs, labels, opt, from_features=path == "features", grad_clip_norm=1.0)
            if i >= args.warmup:
                times.append((time.perf_counter() - t0) * 1000)
        result[path] = {"samples_per_s": args.batch * len(times) / (sum(times) / 1000), "step": percentiles(times),
                        "trainable_params": sum(p.numel() for p in params)}
    result["versions"] = versions()
    emit(result)


# ---- latency: RewardFunction batch 1 from uint8 frames --------------------------------------------------
def cmd_latency(args) -> None:
    import torch

    from hilreward.deploy.reward_function import RewardFunction

    torch.set_num_threads(args.threads)
    frames = np.load(args.frames)
    front, wrist = frames["front"], frames["wrist"]
    t_load = time.perf_counter()
    kwargs = {"threads": args.threads} if args.backend != "torch" else {}
    fn = RewardFunction.from_pretrained(args.checkpoint, backend=args.backend, terminate_on_success=False, **kwargs)
    load_s = time.perf_counter() - t_load
    times, positives = [], 0
    for i in range(args.warmup + args.calls):
        j = i % len(front)
        t0 = time.perf_counter()
        res = fn({"front": front[j], "wrist": wrist[j]})
        if i >= args.warmup:
            times.append((time.perf_counter() - t0) * 1000)
            positives += int(res.success)
    emit({"side": "hilreward", "what": "latency", "backend": args.backend, "threads": args.threads,
          "checkpoint": args.checkpoint, **percentiles(times), "positives": positives, "load_s": load_s,
          "profile_ms": profile(args.checkpoint, front, wrist) if args.backend == "torch" else None,
          "versions": versions()})


def profile(checkpoint: str, front: np.ndarray, wrist: np.ndarray, calls: int = 30) -> dict:
    """Median ms of each stage of one batch-1 call: preprocess (uint8 -> normalised), encoder, head."""
    import torch

    from hilreward.models.classifier import RewardClassifier

    model = RewardClassifier.from_pretrained(checkpoint).eval()
    stages: dict[str, list[float]] = {"preprocess": [], "encode": [], "head": []}
    with torch.inference_mode():
        for i in range(calls + 5):
            j = i % len(front)
            t0 = time.perf_counter()
            pixels = model.preprocess({"front": front[j], "wrist": wrist[j]})
            t1 = time.perf_counter()
            feats = model.encode(pixels)
            t2 = time.perf_counter()
            model.head(feats)
            t3 = time.perf_counter()
            if i >= 5:
                for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2)):
                    stages[k].append(v * 1000)
    return {k: float(np.median(v)) for k, v in stages.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--weights", required=True)
    tr.add_argument("--dataset", required=True)
    tr.add_argument("--out", required=True)
    tr.add_argument("--eval-episodes", type=int, nargs="+", default=[16, 17, 18, 19])
    tr.add_argument("--target", type=float, default=0.95)
    tr.add_argument("--threads", type=int, default=2)
    tr.add_argument("--override", nargs="*", default=[], help="extra hilreward train key=value overrides")
    de = sub.add_parser("deployable")
    de.add_argument("--weights", required=True)
    de.add_argument("--dataset", required=True)
    de.add_argument("--out", required=True)
    de.add_argument("--train-episodes", type=int, nargs="+", default=list(range(16)))
    de.add_argument("--eval-episodes", type=int, nargs="+", default=[16, 17, 18, 19])
    de.add_argument("--target", type=float, default=0.99)
    de.add_argument("--threads", type=int, default=2)
    de.add_argument("--override", nargs="*", default=[], help="extra hilreward train key=value overrides")
    th = sub.add_parser("throughput")
    th.add_argument("--weights", required=True)
    th.add_argument("--batch", type=int, default=32)
    th.add_argument("--steps", type=int, default=10)
    th.add_argument("--feature-steps", type=int, default=200)
    th.add_argument("--warmup", type=int, default=3)
    th.add_argument("--threads", type=int, default=2)
    la = sub.add_parser("latency")
    la.add_argument("checkpoint")
    la.add_argument("frames")
    la.add_argument("--backend", default="torch", choices=["torch", "onnx", "auto"])
    la.add_argument("--calls", type=int, default=60)
    la.add_argument("--warmup", type=int, default=10)
    la.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    {"train": cmd_train, "deployable": cmd_deployable, "throughput": cmd_throughput,
     "latency": cmd_latency}[args.cmd](args)


if __name__ == "__main__":
    main()
