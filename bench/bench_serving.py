"""gRPC reward service: Predict latency in-process vs over loopback, and correction -> new version time.

    .venv/bin/python bench/bench_serving.py [--data ../shared/data/metaworld_drawer_open] [--encoder resnet10]
        [--calls 200] [--threads 2] [--corrections 3] [--out bench/results/serving.json]

1. A checkpoint: the encoder (random weights, no download) with a head trained on the dataset's
   cached features (``training.fit_head``), episodes split 80/20 as ``hilreward train`` does.
2. Predict, one step with 2 cameras at 128x128 (uint8 frames, preprocessing included):
   in-process ``RewardFunction`` (1 caller, and 4 threads sharing one backend) vs ``RewardClient``
   over 127.0.0.1 to ``hilreward serve`` in its own process (1 client, 4 concurrent clients, and
   one client on PredictStream). In-process and loopback run in alternating rounds so that both
   see the same machine load. p50/p90/p99 in milliseconds, wall time as the caller sees it.
3. Correction -> new version serving: the server retrains from the same dataset; a frame the
   model gets wrong (from the training episodes) is submitted with its true label, and the time
   from the SubmitCorrection call to GetModel naming the new version (polled every 20 ms) is measured, while a
   second client keeps calling Predict (its latency during retraining is reported too).
Prints one JSON object (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CAMERAS = ["observation.images.front", "observation.images.wrist"]


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms, dtype=np.float64)
    return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p90_ms": round(float(np.percentile(a, 90)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3)}


def build_checkpoint(data_root: str, out: Path, cache_dir: str, encoder: str,
                     steps: int) -> tuple[Path, dict, np.ndarray]:
    import torch

    from hilreward.config import DatasetConfig, TrainConfig, to_yaml
    from hilreward.data import load_frame_data, split_episodes
    from hilreward.models import ClassifierConfig, RewardClassifier, build_encoder
    from hilreward.training.features import compute_features, fit_head

    torch.manual_seed(0)
    config = ClassifierConfig(encoder=encoder, camera_keys=CAMERAS, image_size=[128, 128])
    model = RewardClassifier(config, build_encoder(encoder, pretrained=False))
    cfg = TrainConfig()
    cfg.dataset.root = data_root
    data = load_frame_data(DatasetConfig(root=data_root, cameras=CAMERAS), cfg.label, (128, 128), cache_dir=cache_dir)
    train_eps, val_eps = split_episodes(sorted(set(data.episode_index.tolist())), 0.2, 0)
    cfg.split.val_episodes = val_eps
    t0 = time.perf_counter()
    features = compute_features(model, data, cache_dir=cache_dir)
    feature_s = time.perf_counter() - t0
    train = np.isin(data.episode_index, train_eps)
    fit_head(model, {k: np.asarray(v[train]) for k, v in features.items()}, data.labels[train], steps=steps)
    model.eval()
    with torch.inference_mode():  # the checkpoint's probability of every frame, from the cached features
        probs = torch.cat([model.probabilities(model.head({k: torch.from_numpy(np.asarray(v[s:s + 256], np.float32))
                                                            for k, v in features.items()}))
                           for s in range(0, len(data), 256)]).numpy()
    path = model.save_pretrained(out, train_config_yaml=to_yaml(cfg))
    return path, {"frames": len(data), "train_episodes": len(train_eps), "val_episodes": val_eps,
                  "feature_seconds": round(feature_s, 2)}, probs


def load_frames(data_root: str, cache_dir: str):
    from hilreward.config import DatasetConfig, LabelConfig
    from hilreward.data import load_frame_data

    return load_frame_data(DatasetConfig(root=data_root, cameras=CAMERAS), LabelConfig(), (128, 128),
                           cache_dir=cache_dir)


def step(data, i: int) -> dict[str, np.ndarray]:
    return {k: np.array(data.images[k][i]) for k in CAMERAS}


# --------------------------------------------------------------------------- latency
class InProcess:
    """``RewardFunction`` in this process: one caller, or N threads sharing its backend."""

    def __init__(self, ckpt: Path) -> None:
        from hilreward.deploy import RewardFunction

        self.fn = RewardFunction.from_pretrained(ckpt)

    def run(self, steps: list[dict], calls: int, concurrency: int, offset: int) -> list[float]:
        def work(k: int, out: list[float]) -> None:
            for i in range(calls):
                images = steps[(offset + 7 * k + i) % len(steps)]
                t0 = time.perf_counter()
                if concurrency == 1:
                    self.fn(images)
                else:  # RewardFunction keeps per-env state: threads share the backend, as a server would
                    self.fn.backend.predict({key: v[None] for key, v in images.items()})
                out.append((time.perf_counter() - t0) * 1e3)

        return _threads(work, concurrency)


class Loopback:
    """``RewardClient`` over 127.0.0.1, one channel per client thread."""

    def __init__(self, address: str, clients: int) -> None:
        from hilreward.serving import RewardClient

        self.clients = [RewardClient(address, timeout_s=60) for _ in range(clients)]
        self.server_ms: list[float] = []

    def run(self, steps: list[dict], calls: int, concurrency: int, offset: int) -> list[float]:
        def work(k: int, out: list[float]) -> None:
            for i in range(calls):
                r = self.clients[k].predict(steps[(offset + 7 * k + i) % len(steps)])
                out.append(r.latency_ms)
                self.server_ms.append(r.server_latency_ms)

        return _threads(work, concurrency)


def _threads(work, n: int) -> list[float]:
    outs: list[list[float]] = [[] for _ in range(n)]
    threads = [threading.Thread(target=work, args=(k, outs[k])) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for o in outs for x in o]


def bench_latency(ckpt: Path, address: str, steps: list[dict], calls: int, warmup: int, rounds: int) -> dict:
    """In-process and loopback measured in alternating rounds, so both see the same machine load."""
    inproc, loop = InProcess(ckpt), Loopback(address, 4)
    for runner in (inproc, loop):
        runner.run(steps, warmup, 4, 0)
    loop.server_ms.clear()
    results: dict[str, list[float]] = {}
    per_round = max(1, calls // rounds)
    for r in range(rounds):
        for concurrency in (1, 4):
            for name, runner in (("in_process", inproc), ("loopback", loop)):
                results.setdefault(f"{name}_{concurrency}", []).extend(
                    runner.run(steps, per_round, concurrency, offset=r * per_round))
    out = {key: stats(ms) for key, ms in results.items()}
    out["loopback_server_side"] = stats(loop.server_ms)
    for c in loop.clients:
        c.close()
    return out


def bench_stream(address: str, steps: list[dict], calls: int) -> dict:
    """Per-step latency on one PredictStream (request i+1 sent when response i arrived)."""
    import queue as queue_mod

    import grpc

    from hilreward.serving.images import encode_images
    from hilreward.serving.protos import hilreward_pb2 as pb
    from hilreward.serving.protos import hilreward_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(address)
    stub = pb_grpc.RewardServiceStub(channel)
    requests: queue_mod.Queue = queue_mod.Queue()

    def gen():
        while True:
            item = requests.get()
            if item is None:
                return
            yield item

    responses = stub.PredictStream(gen())
    times = []
    for i in range(calls + 10):
        request = pb.PredictRequest(images=encode_images(steps[i % len(steps)]), step=i)
        t0 = time.perf_counter()
        requests.put(request)
        next(responses)
        if i >= 10:
            times.append((time.perf_counter() - t0) * 1e3)
    requests.put(None)
    channel.close()
    return stats(times)


# --------------------------------------------------------------------------- correction -> version
def wrong_frames(probs: np.ndarray, data, train_episodes_mask: np.ndarray, count: int) -> list[tuple[int, int]]:
    """Training-episode frames the checkpoint misclassifies: (row, true label)."""
    rows = np.flatnonzero(train_episodes_mask)
    wrong = rows[(probs[rows] >= 0.5) != (data.labels[rows] == 1)]
    rng = np.random.default_rng(0)
    picked = rng.choice(wrong, size=min(count, len(wrong)), replace=False) if len(wrong) else []
    return [(int(i), int(data.labels[i])) for i in picked]


def bench_corrections(address: str, data, picks: list[tuple[int, int]], steps: list[dict]) -> dict:
    from hilreward.serving import RewardClient

    client = RewardClient(address, timeout_s=60)
    current = client.get_model()
    stop = threading.Event()
    during: list[float] = []

    def hammer() -> None:
        with RewardClient(address, timeout_s=60) as c:
            i = 0
            while not stop.is_set():
                during.append(c.predict(steps[i % len(steps)]).latency_ms)
                i += 1

    runs = []
    for row, label in picks:
        before = client.predict(step(data, row))
        hammer_thread = threading.Thread(target=hammer)
        stop.clear()
        hammer_thread.start()
        status = current.retrainer_status
        t0 = time.perf_counter()
        client.submit_correction(step(data, row), label=label)
        new = None
        while time.perf_counter() - t0 < 600:  # until a new version serves or the gate refuses
            info = client.get_model()
            if info.version != current.version:
                new = info
                break
            if info.retrainer_status != status and info.retrainer_status.startswith(("rejected", "error")):
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        stop.set()
        hammer_thread.join()
        if new is None:
            runs.append({"row": row, "published": False, "status": info.retrainer_status[:300]})
            current = info
            continue
        after = client.predict(step(data, row))
        runs.append({"row": row, "label": label, "published": True, "seconds": round(elapsed, 3),
                     "version": new.version, "p_before": round(before.probability, 4),
                     "p_after": round(after.probability, 4), "fixed": bool(after.success == bool(label)),
                     "heldout_accuracy": round(new.metrics.get("heldout_accuracy", float("nan")), 4),
                     "heldout_accuracy_base": round(new.metrics.get("heldout_accuracy_base", float("nan")), 4),
                     "train_steps": new.metrics.get("train_steps"),
                     "retrain_seconds": round(new.metrics.get("retrain_seconds", float("nan")), 3)})
        current = new
    client.close()
    published = [r["seconds"] for r in runs if r.get("published")]
    return {"runs": runs, "median_seconds": round(float(np.median(published)), 3) if published else None,
            "predict_during_retraining": stats(during) if during else None, "final_version": current.version}


# --------------------------------------------------------------------------- main
def start_server(ckpt: Path, data_root: str, state: Path, cache_dir: str, threads: int,
                 overrides: tuple[str, ...] | list[str] = ("retrain.min_interval_s=0",),
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``hilreward serve`` in its own process (``env`` added to its environment), once its retrainer is ready:
    (process, address)."""
    port_file = state / "port"
    log = open(state / "server.log", "w")
    env = {**os.environ, "HILREWARD_CACHE": cache_dir, **(env or {})}
    args = [sys.executable, "-m", "hilreward.cli", "serve", f"checkpoint={ckpt}", f"dataset.root={data_root}",
            f"state_dir={state / 'serve'}", "port=0", f"port_file={port_file}", f"threads={threads}",
            f"cache_dir={cache_dir}", *overrides]
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 900
    while "retrainer ready" not in (state / "server.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"server failed:\n{(state / 'server.log').read_text()[-3000:]}")
        time.sleep(0.2)
    return proc, f"127.0.0.1:{port_file.read_text().strip()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "metaworld_drawer_open"))
    parser.add_argument("--encoder", default="resnet10")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="alternating in-process / loopback rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--head-steps", type=int, default=60,
                        help="head steps of the checkpoint (few: it leaves errors to correct)")
    parser.add_argument("--corrections", type=int, default=3)
    parser.add_argument("--cache-dir", default=None, help="frame/feature cache (default: a temp dir)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "serving.json"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="hilreward-bench-serving-"))
    cache_dir = args.cache_dir or str(work / "cache")
    os.environ["HILREWARD_CACHE"] = cache_dir
    ckpt, data_info, probs = build_checkpoint(args.data, work / "ckpt", cache_dir, args.encoder, args.head_steps)
    data = load_frames(args.data, cache_dir)
    val = np.isin(data.episode_index, data_info["val_episodes"])
    steps = [step(data, i) for i in np.random.default_rng(1).choice(len(data), 64, replace=False)]
    picks = wrong_frames(probs, data, ~val, args.corrections)

    result: dict = {"bench": "serving", "encoder": args.encoder, "dataset": args.data, "cameras": CAMERAS,
                    "image_size": [128, 128], "threads": args.threads, "cpu_count": os.cpu_count(),
                    "platform": platform.platform(), "torch": torch.__version__, "data": data_info}
    proc, address = start_server(ckpt, args.data, work, cache_dir, args.threads)
    try:
        latency = bench_latency(ckpt, address, steps, args.calls, args.warmup, args.rounds)
        result["predict"] = latency
        result["predict_stream_1_client"] = bench_stream(address, steps, args.calls)
        result["correction_to_new_version"] = bench_corrections(address, data, picks, steps) if picks else None
    finally:
        proc.terminate()
        proc.wait(60)
    p99 = {k: v["p99_ms"] for k, v in latency.items()}
    p50 = {k: v["p50_ms"] for k, v in latency.items()}
    result["ratios"] = {
        "loopback_vs_in_process_p50_1_client": round(p50["loopback_1"] / p50["in_process_1"], 2),
        "loopback_vs_in_process_p99_1_client": round(p99["loopback_1"] / p99["in_process_1"], 2),
        "loopback_vs_in_process_p99_4_clients": round(p99["loopback_4"] / p99["in_process_4"], 2),
        "loopback_4_clients_p99_vs_in_process_1_caller_p99": round(p99["loopback_4"] / p99["in_process_1"], 2),
    }
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
