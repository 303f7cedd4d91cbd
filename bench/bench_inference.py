"""RewardFunction latency: one step, batch 1, 2 cameras at 128x128 from uint8 frames (preprocessing included).

    .venv/bin/python bench/bench_inference.py [--threads 2] [--calls 60] [--warmup 10] [--encoders resnet10 small_cnn]

Per encoder: the torch backend (also with channels-last memory, and ``torch.compile`` with
``--compile``) and the ONNX Runtime backend (``model.onnx`` exported by the same call). Each
number is the wall time of ``reward_fn(images)`` as an RL actor calls it, median and p90 over
``--calls`` calls after ``--warmup`` calls. ResNet-10 uses the peer's encoder folder
(~/.cache/hilreward-peer/resnet10) when it exists, so both sides run the same weights.

When the LeRobot peer venv exists (~/.cache/hilreward-peer/venv), LeRobot 0.6.1's
``Classifier.predict_reward`` runs in a subprocess on the same frames with the same thread count:
uint8 -> float, its saved normaliser (the training normalisation), then ``predict_reward`` under
``torch.inference_mode``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PEER = Path(os.environ.get("PEER_DIR", Path.home() / ".cache" / "hilreward-peer"))
PEER_PYTHON = PEER / "venv" / "bin" / "python"
PEER_ENCODER = PEER / "resnet10"
CAMERAS = ["observation.images.front", "observation.images.wrist"]

PEER_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.rewards.classifier.configuration_classifier import RewardClassifierConfig
from lerobot.rewards.classifier.modeling_classifier import Classifier
from lerobot.rewards.classifier.processor_classifier import make_classifier_processor
frames_path, encoder, threads, warmup, calls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
stored = np.load(frames_path)
keys = ["observation.images.front", "observation.images.wrist"]
frames = {k: stored[k.replace(".", "_")] for k in keys}
cfg = RewardClassifierConfig(model_name=encoder, num_cameras=2, device="cpu")
cfg.input_features = {k: PolicyFeature(type=FeatureType.VISUAL, shape=(3, 128, 128)) for k in keys}
model = Classifier(cfg).eval()
unit = {k: torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255 for k, v in frames.items()}
stats = {k: {"mean": v.mean(dim=(0, 2, 3)).view(3, 1, 1), "std": v.std(dim=(0, 2, 3)).view(3, 1, 1)} for k, v in unit.items()}
pre, _ = make_classifier_processor(cfg, dataset_stats=stats)
times = []
for i in range(warmup + calls):
    j = i % len(frames[keys[0]])
    t0 = time.perf_counter()
    batch = pre({k: torch.from_numpy(frames[k][j]).permute(2, 0, 1).float().div(255).unsqueeze(0) for k in keys})
    with torch.inference_mode():
        reward = model.predict_reward(batch)
    if i >= warmup:
        times.append((time.perf_counter() - t0) * 1e3)
import lerobot
print(json.dumps({"times_ms": times, "lerobot": lerobot.__version__, "torch": torch.__version__}))
"""


def summary(times_ms: list[float]) -> dict:
    arr = np.asarray(times_ms)
    return {"median_ms": round(float(np.median(arr)), 3), "p90_ms": round(float(np.percentile(arr, 90)), 3),
            "min_ms": round(float(arr.min()), 3), "n": int(arr.size)}


def make_frames(n: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8) for k in CAMERAS}


def build_checkpoint(encoder: str, image_size: int, out: Path) -> Path:
    import torch

    from hilreward.models import ClassifierConfig, RewardClassifier, build_encoder

    torch.manual_seed(0)
    if encoder == "resnet10" and (PEER_ENCODER / "model.safetensors").is_file():
        enc = build_encoder("resnet10", pretrained=True, weights=str(PEER_ENCODER))
    else:
        enc = build_encoder(encoder, pretrained=False)
    cfg = ClassifierConfig(encoder=encoder, camera_keys=CAMERAS, image_size=[image_size, image_size])
    return RewardClassifier(cfg, enc).save_pretrained(out)


def time_calls(fn, frames: dict[str, np.ndarray], warmup: int, calls: int) -> list[float]:
    n = len(frames[CAMERAS[0]])
    times = []
    for i in range(warmup + calls):
        step = {"front": frames[CAMERAS[0]][i % n], "wrist": frames[CAMERAS[1]][i % n]}
        t0 = time.perf_counter()
        fn(step)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def bench_hilreward(encoder: str, image_size: int, frames, args, work: Path) -> dict:
    from hilreward.deploy import RewardFunction
    from hilreward.deploy.backends import TorchBackend

    ckpt = build_checkpoint(encoder, image_size, work / f"{encoder}_{image_size}")
    out: dict = {"image_size": image_size}
    fn = RewardFunction.from_pretrained(ckpt)
    out["torch"] = summary(time_calls(fn, frames, args.warmup, args.calls))
    fn.backend = TorchBackend(fn.backend.model, channels_last=True)
    out["torch_channels_last"] = summary(time_calls(fn, frames, args.warmup, args.calls))
    if args.compile:
        fn = RewardFunction.from_pretrained(ckpt, compile=True)
        t0 = time.perf_counter()
        fn({"front": frames[CAMERAS[0]][0], "wrist": frames[CAMERAS[1]][0]})
        out["torch_compile_first_call_s"] = round(time.perf_counter() - t0, 1)
        out["torch_compile"] = summary(time_calls(fn, frames, args.warmup, args.calls))
    t0 = time.perf_counter()
    onnx_fn = RewardFunction.from_pretrained(ckpt, backend="onnx", threads=args.threads)
    out["onnx_export_s"] = round(time.perf_counter() - t0, 1)
    out["onnx"] = summary(time_calls(onnx_fn, frames, args.warmup, args.calls))
    probe = {k.split(".")[-1]: v[:4] for k, v in frames.items()}
    out["onnx_vs_torch_max_abs_diff"] = float(np.abs(onnx_fn.relabel(probe) - fn.relabel(probe)).max())
    out["params"] = sum(p.numel() for p in fn.backend.model.parameters())
    return out


def bench_lerobot(frames, args, work: Path) -> dict:
    if not (PEER_PYTHON.exists() and (PEER_ENCODER / "model.safetensors").is_file()):
        return {"skipped": f"no peer venv at {PEER_PYTHON} (bash ../shared/peer/setup_lerobot.sh)"}
    path = work / "frames.npz"
    np.savez(path, **{k.replace(".", "_"): v for k, v in frames.items()})
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    proc = subprocess.run([str(PEER_PYTHON), "-c", PEER_SCRIPT, str(path), str(PEER_ENCODER), str(args.threads),
                           str(args.warmup), str(args.calls)], capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"predict_reward": summary(result["times_ms"]), "lerobot": result["lerobot"], "torch": result["torch"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--encoders", nargs="+", default=["resnet10", "small_cnn"])
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    ap.add_argument("--no-lerobot", action="store_true")
    args = ap.parse_args()
    if args.calls < 50:
        ap.error("--calls must be >= 50")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    frames = make_frames()
    report: dict = {"batch": 1, "cameras": 2, "frame": "uint8 128x128x3", "threads": args.threads,
                    "calls": args.calls, "warmup": args.warmup, "machine": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch": torch.__version__,
                    "load_avg_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for encoder in args.encoders:
            report[encoder] = bench_hilreward(encoder, 128, frames, args, work)
        if not args.no_lerobot:
            report["lerobot_resnet10"] = bench_lerobot(frames, args, work)
    r10, peer = report.get("resnet10", {}), report.get("lerobot_resnet10", {}).get("predict_reward")
    if r10 and peer:
        report["speedup_vs_lerobot_median"] = {
            "torch": round(peer["median_ms"] / r10["torch"]["median_ms"], 2),
            "onnx": round(peer["median_ms"] / r10["onnx"]["median_ms"], 2)}
    report["load_avg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
