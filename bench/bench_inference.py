"""RewardFunction latency: one step, batch 1, 2 cameras at 128x128 from uint8 frames (preprocessing included).

    .venv/bin/python bench/bench_inference.py [--threads 2] [--calls 60] [--warmup 10] [--encoders resnet10 small_cnn]

Per encoder: the torch backend (also with channels-last memory, and ``torch.compile`` with
``--compile``), the ONNX Runtime backend (``model.onnx`` exported by the same call), the default
``backend="auto"`` (what it chose is in ``auto_runs``), and the default behind the LeRobot adapter
(``predict_reward`` on LeRobot's float (1, 3, H, W) frames). Each
number is the wall time of ``reward_fn(images)`` as an RL actor calls it, median and p90 over
``--calls`` calls after ``--warmup`` calls. All variants (and the peer) run interleaved call by
call in a shuffled order, so on a shared machine they all see the same load. ResNet-10 uses the peer's encoder folder
(~/.cache/hilreward-peer/resnet10) when it exists, so both sides run the same weights.

When the LeRobot peer venv exists (~/.cache/hilreward-peer/venv), LeRobot 0.6.1's
``Classifier.predict_reward`` runs in a subprocess on the same frames with the same thread count,
one step per request over a pipe, timed inside that process: uint8 -> float, its normaliser (the
training normalisation), then ``predict_reward`` under ``torch.inference_mode``. Prints one JSON object.
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
frames_path, encoder, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
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
import lerobot
print(json.dumps({"lerobot": lerobot.__version__, "torch": torch.__version__}), flush=True)
for line in sys.stdin:  # one step per line: the frame index; answers the step's wall time in ms
    j = int(line) % len(frames[keys[0]])
    t0 = time.perf_counter()
    batch = pre({k: torch.from_numpy(frames[k][j]).permute(2, 0, 1).float().div(255).unsqueeze(0) for k in keys})
    with torch.inference_mode():
        reward = model.predict_reward(batch)
    print((time.perf_counter() - t0) * 1e3, flush=True)
"""


class PeerStep:
    """LeRobot's predict_reward in its own venv, one step per request (timed inside the peer process)."""

    def __init__(self, frames: dict[str, np.ndarray], threads: int, work: Path) -> None:
        path = work / "frames.npz"
        np.savez(path, **{k.replace(".", "_"): v for k, v in frames.items()})
        env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.proc = subprocess.Popen([str(PEER_PYTHON), "-c", PEER_SCRIPT, str(path), str(PEER_ENCODER), str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the LeRobot peer exited with {self.proc.wait()}")
        self.versions = json.loads(line)
        self.calls = 0

    def __call__(self) -> float:
        self.proc.stdin.write(f"{self.calls}\n")
        self.proc.stdin.flush()
        self.calls += 1
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


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


def build_variants(encoder: str, frames, args, work: Path, report: dict) -> dict:
    """name -> step(i) returning the wall time in ms of reward_fn(frames of step i)."""
    import torch

    from hilreward.deploy import RewardFunction

    from hilreward.integrations.lerobot import PredictRewardAdapter

    ckpt = build_checkpoint(encoder, 128, work / encoder)
    fns = {"torch": RewardFunction.from_pretrained(ckpt, backend="torch"),
           "torch_channels_last": RewardFunction.from_pretrained(ckpt, backend="torch", channels_last=True)}
    info: dict = {"params": sum(p.numel() for p in fns["torch"].backend.model.parameters())}
    if args.compile:
        fns["torch_compile"] = RewardFunction.from_pretrained(ckpt, backend="torch", compile=True)
    t0 = time.perf_counter()
    fns["onnx"] = RewardFunction.from_pretrained(ckpt, backend="onnx", threads=args.threads)
    info["onnx_export_s"] = round(time.perf_counter() - t0, 1)
    fns["auto"] = RewardFunction.from_pretrained(ckpt, threads=args.threads)  # the default
    info["auto_runs"] = fns["auto"].backend.name
    probe = {k.split(".")[-1]: v[:4] for k, v in frames.items()}
    info["onnx_vs_torch_max_abs_diff"] = float(np.abs(fns["onnx"].relabel(probe) - fns["torch"].relabel(probe)).max())
    report[encoder] = info
    n = len(frames[CAMERAS[0]])

    def timed(fn):
        def step(i: int) -> float:
            images = {"front": frames[CAMERAS[0]][i % n], "wrist": frames[CAMERAS[1]][i % n]}
            t0 = time.perf_counter()
            fn(images)
            return (time.perf_counter() - t0) * 1e3
        return step

    adapter = PredictRewardAdapter(fns["auto"])
    unit = {k: torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255.0 for k, v in frames.items()}

    def lerobot_step(i: int) -> float:  # the default through the LeRobot adapter, from LeRobot's float frames
        batch = {k: v[i % n:i % n + 1] for k, v in unit.items()}
        t0 = time.perf_counter()
        adapter.predict_reward(batch)
        return (time.perf_counter() - t0) * 1e3

    return {**{f"{encoder}/{name}": timed(fn) for name, fn in fns.items()}, f"{encoder}/auto_lerobot_adapter": lerobot_step}


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
    # Idle OpenMP threads sleep instead of spinning: with two processes taking turns on the same
    # cores, a spinning pool steals the next call's CPU time (an artifact of the interleaving).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    frames = make_frames()
    report: dict = {"batch": 1, "cameras": 2, "frame": "uint8 128x128x3", "threads": args.threads,
                    "calls": args.calls, "warmup": args.warmup, "machine": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch": torch.__version__,
                    "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
                    "method": "all variants interleaved call by call in a shuffled order, so they share the load",
                    "load_avg_start": round(os.getloadavg()[0], 2)}
    peer = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        variants: dict = {}
        for encoder in args.encoders:
            variants.update(build_variants(encoder, frames, args, work, report))
        if args.no_lerobot:
            pass
        elif PEER_PYTHON.exists() and (PEER_ENCODER / "model.safetensors").is_file():
            peer = PeerStep(frames, args.threads, work)
            report["lerobot"] = peer.versions
            variants["lerobot_resnet10/predict_reward"] = lambda i: peer()
        else:
            report["lerobot"] = {"skipped": f"no peer venv at {PEER_PYTHON} (bash ../shared/peer/setup_lerobot.sh)"}
        times: dict[str, list[float]] = {name: [] for name in variants}
        order = list(variants)
        rng = np.random.default_rng(0)
        try:
            for i in range(args.warmup + args.calls):
                rng.shuffle(order)
                for name in order:
                    ms = variants[name](i)
                    if i >= args.warmup:
                        times[name].append(ms)
        finally:
            if peer is not None:
                peer.close()
    report["latency"] = {name: summary(t) for name, t in times.items()}
    peer_ms = report["latency"].get("lerobot_resnet10/predict_reward")
    if peer_ms and "resnet10/torch" in report["latency"]:
        report["lerobot_median_over_ours"] = {
            name.split("/")[1]: round(peer_ms["median_ms"] / report["latency"][name]["median_ms"], 2)
            for name in report["latency"] if name.startswith("resnet10/")}
    report["load_avg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
