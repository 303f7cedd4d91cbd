"""gRPC reward service: Predict latency in-process vs over loopback, and correction -> new version time.

    .venv/bin/python bench/bench_serving.py [--data ../shared/data/metaworld_drawer_open] [--encoder resnet10]
        [--calls 200] [--threads 2] [--corrections 3] [--out bench/results/serving.json]

1. A checkpoint: the encoder (random weights, no download) with a head trained on the dataset's
   cached features (``training.fit_head``), episodes split 80/20 as ``hilreward train`` does.
2. Predict, one step with 2 cameras at 128x128 (uint8 frames, preprocessing included):
   in-process ``RewardFunction`` (1 caller, and 4 threads sharing one backend) vs ``RewardClient``
   over 127.0.0.1 to ``hilreward serve`` in its own process (1 client, 4 clients in 4 processes,
   and one client on PredictStream). p50/p90/p99 in milliseconds.
3. Correction -> new version serving: the server retrains from the same dataset; a frame the
   model gets wrong (from the training episodes) is submitted with its true label, and the time
   from the SubmitCorrection call to GetModel naming the new version (polled every 20 ms) is measured, while a
   second client keeps calling Predict (its latency during retraining is reported too).
Prints one JSON object (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
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


def build_checkpoint(data_root: str, out: Path, cache_dir: str, encoder: str, steps: int) -> tuple[Path, dict]:
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
    path = model.save_pretrained(out, train_config_yaml=to_yaml(cfg))
    return path, {"frames": len(data), "train_episodes": len(train_eps), "val_episodes": val_eps,
                  "feature_seconds": round(feature_s, 2)}


def load_frames(data_root: str, cache_dir: str):
    from hilreward.config import DatasetConfig, LabelConfig
    from hilreward.data import load_frame_data

    return load_frame_data(DatasetConfig(root=data_root, cameras=CAMERAS), LabelConfig(), (128, 128),
                           cache_dir=cache_dir)


def step(data, i: int) -> dict[str, np.ndarray]:
    return {k: np.array(data.images[k][i]) for k in CAMERAS}


# --------------------------------------------------------------------------- in-process
def bench_in_process(ckpt: Path, steps: list[dict], calls: int, warmup: int, concurrency: int) -> dict:
    from hilreward.deploy import RewardFunction

    fn = RewardFunction.from_pretrained(ckpt)
    for i in range(warmup):
        fn(steps[i % len(steps)])
    if concurrency == 1:
        times = []
        for i in range(calls):
            t0 = time.perf_counter()
            fn(steps[i % len(steps)])
            times.append((time.perf_counter() - t0) * 1e3)
        return stats(times)
    backend = fn.backend  # the same predictor, called from `concurrency` threads at once
    per_thread: list[list[float]] = [[] for _ in range(concurrency)]

    def work(k: int) -> None:
        for i in range(calls):
            batch = {key: v[None] for key, v in steps[(i + k) % len(steps)].items()}
            t0 = time.perf_counter()
            backend.predict(batch)
            per_thread[k].append((time.perf_counter() - t0) * 1e3)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats([x for t in per_thread for x in t])


# --------------------------------------------------------------------------- loopback
def _client_proc(address: str, steps: list[dict], calls: int, warmup: int, offset: int, start, out) -> None:
    from hilreward.serving import RewardClient

    with RewardClient(address, timeout_s=30) as client:
        for i in range(warmup):
            client.predict(steps[(i + offset) % len(steps)])
        start.wait()
        times, server = [], []
        for i in range(calls):
            r = client.predict(steps[(i + offset) % len(steps)])
            times.append(r.latency_ms)
            server.append(r.server_latency_ms)
    out.put((times, server))


def bench_loopback(address: str, steps: list[dict], calls: int, warmup: int, clients: int) -> dict:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_client_proc, args=(address, steps, calls, warmup, 7 * k, start, out))
             for k in range(clients)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    result = stats([x for r in results for x in r[0]])
    result["server_p50_ms"] = stats([x for r in results for x in r[1]])["p50_ms"]
    return result


def bench_stream(address: str, steps: list[dict], calls: int) -> dict:
    """Per-step latency on one PredictStream (request i+1 sent when response i arrived)."""
    import queue as queue_mod

    from hilreward.serving.images import encode_images
    from hilreward.serving.protos import hilreward_pb2 as pb
    from hilreward.serving.protos import hilreward_pb2_grpc as pb_grpc
    import grpc

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
def wrong_frames(ckpt: Path, data, train_episodes_mask: np.ndarray, count: int) -> list[tuple[int, int]]:
    """Training-episode frames the checkpoint misclassifies: (row, true label)."""
    from hilreward.deploy import RewardFunction

    fn = RewardFunction.from_pretrained(ckpt)
    rows = np.flatnonzero(train_episodes_mask)
    probs = fn.relabel({k: np.asarray(data.images[k][rows]) for k in CAMERAS})
    wrong = rows[(probs >= fn.options.success_threshold) != (data.labels[rows] == 1)]
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
def start_server(ckpt: Path, data_root: str, state: Path, cache_dir: str, threads: int) -> tuple[subprocess.Popen, str]:
    port_file = state / "port"
    log = open(state / "server.log", "w")
    env = {**os.environ, "HILREWARD_CACHE": cache_dir}
    args = [sys.executable, "-m", "hilreward.cli", "serve", f"checkpoint={ckpt}", f"dataset.root={data_root}",
            f"state_dir={state / 'serve'}", "port=0", f"port_file={port_file}", f"threads={threads}",
            f"cache_dir={cache_dir}", "retrain.min_interval_s=0"]
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
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--head-steps", type=int, default=300)
    parser.add_argument("--corrections", type=int, default=3)
    parser.add_argument("--cache-dir", default=None, help="frame/feature cache (default: a temp dir)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "serving.json"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="hilreward-bench-serving-"))
    cache_dir = args.cache_dir or str(work / "cache")
    os.environ["HILREWARD_CACHE"] = cache_dir
    ckpt, data_info = build_checkpoint(args.data, work / "ckpt", cache_dir, args.encoder, args.head_steps)
    data = load_frames(args.data, cache_dir)
    val = np.isin(data.episode_index, data_info["val_episodes"])
    steps = [step(data, i) for i in np.random.default_rng(1).choice(len(data), 64, replace=False)]
    picks = wrong_frames(ckpt, data, ~val, args.corrections)

    result: dict = {"bench": "serving", "encoder": args.encoder, "dataset": args.data, "cameras": CAMERAS,
                    "image_size": [128, 128], "threads": args.threads, "cpu_count": os.cpu_count(),
                    "platform": platform.platform(), "torch": torch.__version__, "data": data_info}
    result["in_process"] = {"1_caller": bench_in_process(ckpt, steps, args.calls, args.warmup, 1),
                            "4_threads": bench_in_process(ckpt, steps, args.calls, args.warmup, 4)}
    proc, address = start_server(ckpt, args.data, work, cache_dir, args.threads)
    try:
        result["loopback"] = {"1_client": bench_loopback(address, steps, args.calls, args.warmup, 1),
                              "4_clients": bench_loopback(address, steps, args.calls, args.warmup, 4),
                              "stream_1_client": bench_stream(address, steps, args.calls)}
        result["correction_to_new_version"] = bench_corrections(address, data, picks, steps) if picks else None
    finally:
        proc.terminate()
        proc.wait(60)
    lo, ip = result["loopback"], result["in_process"]
    result["ratios"] = {
        "loopback_vs_in_process_p50_1": round(lo["1_client"]["p50_ms"] / ip["1_caller"]["p50_ms"], 2),
        "loopback_vs_in_process_p99_1": round(lo["1_client"]["p99_ms"] / ip["1_caller"]["p99_ms"], 2),
        "loopback_4_clients_p99_vs_in_process_1_caller_p99": round(lo["4_clients"]["p99_ms"] / ip["1_caller"]["p99_ms"], 2),
        "loopback_4_clients_p99_vs_in_process_4_threads_p99": round(lo["4_clients"]["p99_ms"] / ip["4_threads"]["p99_ms"], 2),
    }
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
