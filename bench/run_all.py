"""``make bench``: hilreward vs LeRobot 0.6.1's reward classifier, side by side, in one run.

Same dataset, same frozen encoder folder (the peer's ResNet-10), same torch threads, alternating:
  a. time to >= 95 % held-out accuracy (train episodes 0-15, held out 16-19), each with its own trainer
     reading the dataset's videos (hilreward with cold caches; lerobot-train capped at --lerobot-cap-s);
     hilreward runs before and after LeRobot, and the slower of the two counts;
  b. time to a deployable classifier: a checkpoint whose threshold rests on evidence (hilreward's calibration;
     LeRobot has none and is judged at its 0.5), with >= 99 % accuracy on episodes 16-19 against the exact
     per-frame success and no gross false termination there. hilreward: ``hilreward train`` on episodes 0-15
     with its default calibration, launch to exit (twice, the slower counts); LeRobot: its checkpoints from the
     same capped run as (a);
  c. training throughput at batch 32 (rounds alternate LeRobot / hilreward);
  d. inference latency, batch 1, two 128x128 cameras, from uint8 frames (rounds alternate; hilreward's
     ``RewardFunction`` with its default backend, ``auto``, and with torch);
  e. held-out accuracy each has after the same wall time.
First, bench/bench_label_station.py (the label station's frame requests) and bench/bench_ever_correcting.py
(corrections on unseen Meta-World layouts, by strategy; it renders them once): no LeRobot needed
(``--lerobot-only`` leaves them out).
Writes ``bench/results/<YYYY-MM-DD>.json`` and the "Training and inference vs LeRobot" section of
``docs/benchmarks.md``. The peer comes from ``bash ../shared/peer/setup_lerobot.sh`` (PEER_PYTHON,
PEER_ENCODER override its paths). ``BENCH_LEROBOT_CAP_S`` overrides the LeRobot cap (default 1800 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEER_DIR = Path(os.environ.get("PEER_DIR", Path.home() / ".cache" / "hilreward-peer"))
PEER_PYTHON = Path(os.environ.get("PEER_PYTHON", PEER_DIR / "venv" / "bin" / "python"))
PEER_ENCODER = Path(os.environ.get("PEER_ENCODER", PEER_DIR / "resnet10"))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "metaworld_drawer_open"
DOC = REPO / "docs" / "benchmarks.md"
DOC_START, DOC_END = "<!-- bench:lerobot:start -->", "<!-- bench:lerobot:end -->"
SECTION = "## Training and inference vs LeRobot"
# hilreward's run: no augmentation (lerobot-train uses none either), so one feature view per frame; a held-out
# evaluation every 10 steps so the first >= 95 % is seen when it happens (eval on cached features is cheap).
HIL_OVERRIDES = ("augmentation.enable=false", "training.steps=200", "training.eval_freq=10")
# time to deployable: the same short head-only run, with the default calibration (auto) at its end.
HIL_DEPLOY_OVERRIDES = ("augmentation.enable=false", "training.steps=200")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _faster(speedup: float | None) -> str:
    """How to read a speedup (LeRobot's time / hilreward's): above 1 hilreward is faster."""
    return "(hilreward faster)" if speedup and speedup >= 1 else "(hilreward slower)"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_json(cmd: list[str], what: str, env: dict | None = None, timeout: float | None = None) -> dict:
    """Run a driver; its last stdout line is its JSON result. Records the load around it."""
    log(f"{what}: {' '.join(str(c) for c in cmd[:4])} ...")
    before, t0 = load_average(), time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - t0
    result["loadavg_before"], result["loadavg_after"] = before, load_average()
    log(f"{what}: done in {result['wall_s']:.1f} s")
    return result


def machine_info() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next((ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), "0")
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "memory_gb": round(int(mem) / 2**20, 1),
            "platform": platform.platform(), "uptime_at_start": uptime}


def sample_frames(dataset: Path, out: Path, n: int = 16) -> Path:
    """n uint8 frames per camera, spread over the first video file, decoded with PyAV (same for both sides)."""
    import av

    frames = {}
    for cam in ("front", "wrist"):
        video = next((dataset / "videos" / f"observation.images.{cam}").rglob("*.mp4"))
        with av.open(str(video)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        picks = np.linspace(0, len(decoded) - 1, n).round().astype(int)
        frames[cam] = np.stack([decoded[i] for i in picks])
    np.savez(out, **frames)
    return out


def median_of(results: list[dict], *path: str) -> float:
    vals = []
    for r in results:
        for p in path:
            r = r[p]
        vals.append(r)
    return float(statistics.median(vals))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(DEFAULT_DATA))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lerobot-cap-s", type=float, default=float(os.environ.get("BENCH_LEROBOT_CAP_S", 1800)))
    ap.add_argument("--lerobot-batch", type=int, default=16, help="lerobot-train batch (the peer README's run)")
    ap.add_argument("--lerobot-save-freq", type=int, default=25)
    ap.add_argument("--lerobot-eval-budget", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of throughput and latency")
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--hil-override", nargs="*", default=list(HIL_OVERRIDES), help="`hilreward train` overrides")
    ap.add_argument("--hil-deploy-override", nargs="*", default=list(HIL_DEPLOY_OVERRIDES),
                    help="`hilreward train` overrides of the time-to-deployable runs")
    ap.add_argument("--lerobot-only", action="store_true", help="leave out the label station and ever-correcting")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    ap.add_argument("--docs-from", default=None, help="only rewrite the docs section from this results JSON")
    args = ap.parse_args()
    if args.docs_from:
        write_doc(json.loads(Path(args.docs_from).read_text()), Path(args.docs_from))
        return
    if not args.lerobot_only:
        run_label_station(Path(args.out), args.no_docs)
        run_ever_correcting(args.no_docs)
    if not PEER_PYTHON.exists() or not (PEER_ENCODER / "config.json").exists():
        raise SystemExit(f"LeRobot peer not found ({PEER_PYTHON}, {PEER_ENCODER}): run "
                         f"`bash ../shared/peer/setup_lerobot.sh` first (or set PEER_PYTHON / PEER_ENCODER)")
    dataset = Path(args.dataset).resolve()
    if not (dataset / "meta" / "info.json").exists():
        raise SystemExit(f"no LeRobot dataset at {dataset}: pass --dataset <folder>")

    # OMP_WAIT_POLICY=PASSIVE on both sides: on a shared, oversubscribed CPU, spinning OpenMP workers
    # measure the neighbours, not the code (a head step went from 2 s to 0.1 s wall with it at load 10).
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(args.threads), OMP_WAIT_POLICY="PASSIVE",
               MKL_NUM_THREADS=str(args.threads), WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    work = Path(tempfile.mkdtemp(prefix="hilreward-bench-"))
    started = dt.datetime.now(dt.timezone.utc)
    info = machine_info()
    log(f"work dir {work}; {info['uptime_at_start']}")
    hil = [sys.executable, str(HERE / "hilreward_side.py")]
    peer = [str(PEER_PYTHON), str(HERE / "peer")]
    threads = ["--threads", str(args.threads)]

    # a. time to 95 %: hilreward, LeRobot (capped), hilreward again.
    hil_train = lambda i: run_json([*hil, "train", "--weights", PEER_ENCODER, "--dataset", dataset,  # noqa: E731
                                    "--out", work / f"hil_train_{i}", *threads,
                                    *(["--override", *args.hil_override] if args.hil_override else [])],
                                   f"hilreward train #{i}", env)
    hil_deploy = lambda i: run_json([*hil, "deployable", "--weights", PEER_ENCODER, "--dataset", dataset,  # noqa: E731
                                     "--out", work / f"hil_deploy_{i}", *threads,
                                     *(["--override", *args.hil_deploy_override] if args.hil_deploy_override else [])],
                                    f"hilreward time to deployable #{i}", env)
    hil_runs = [hil_train(1)]
    deploy_runs = [hil_deploy(1)]
    h1 = hil_runs[0]
    at_times = [t for t in (h1["time_to_target_s"], h1["total_s"]) if t]
    lerobot_train = run_json([peer[0], f"{peer[1]}/train_to_target.py", PEER_ENCODER, "--dataset", dataset,
                              "--out", work / "lerobot_train", "--cap-s", args.lerobot_cap_s,
                              "--batch", args.lerobot_batch, "--save-freq", args.lerobot_save_freq,
                              "--eval-budget", args.lerobot_eval_budget, *threads,
                              "--at-times", *at_times], "lerobot-train to target", env)
    hil_runs.append(hil_train(2))
    deploy_runs.append(hil_deploy(2))

    # b + c: alternating rounds.
    frames = sample_frames(dataset, work / "frames.npz")
    hil_ckpt = h1["checkpoint"]
    lr_ckpt = lerobot_train.get("checkpoint")
    throughput = {"lerobot": [], "hilreward": []}
    latency = {"lerobot": [], "hilreward_auto": [], "hilreward_torch": []}
    for r in range(args.rounds):
        throughput["lerobot"].append(run_json([peer[0], f"{peer[1]}/throughput.py", PEER_ENCODER, *threads],
                                              f"lerobot throughput r{r}", env))
        throughput["hilreward"].append(run_json([*hil, "throughput", "--weights", PEER_ENCODER, *threads],
                                                f"hilreward throughput r{r}", env))
        latency["lerobot"].append(run_json(
            [peer[0], f"{peer[1]}/latency.py", PEER_ENCODER, frames, "--dataset", dataset, "--calls", args.calls,
             *(["--checkpoint", lr_ckpt] if lr_ckpt else []), *threads], f"lerobot latency r{r}", env))
        for backend in ("auto", "torch"):
            latency[f"hilreward_{backend}"].append(run_json(
                [*hil, "latency", hil_ckpt, frames, "--backend", backend, "--calls", args.calls, *threads],
                f"hilreward {backend} latency r{r}", env))

    result = summarise(args, info, started, dataset, hil_runs, deploy_runs, lerobot_train, throughput, latency)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{started.date().isoformat()}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    log(f"wrote {path}")
    if not args.no_docs:
        write_doc(result, path)
        log(f"updated {DOC}")
    print(json.dumps({k: result[k] for k in ("time_to_95_speedup", "time_to_95_speedup_is_lower_bound",
                                              "time_to_deployable_speedup", "time_to_deployable_speedup_is_lower_bound",
                                              "inference_latency_ratio", "goals")}, indent=2))


def run_label_station(out: Path, no_docs: bool) -> None:
    """The label station's frame-request time (bench_label_station.py: no LeRobot needed, its own docs section)."""
    cmd = [sys.executable, str(HERE / "bench_label_station.py")] + ([] if no_docs else ["--doc"])
    result = run_json(cmd, "label station frame requests")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"label-station-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"label station: random frame p90 {result['random']['p90_ms']} ms (goal <= 50), wrote {path}")


def run_ever_correcting(no_docs: bool) -> None:
    """bench_ever_correcting.py: its own results JSON, docs section and figure."""
    cmd = [sys.executable, str(HERE / "bench_ever_correcting.py")] + ([] if no_docs else ["--doc"])
    log("ever-correcting: serving with retraining, three correction strategies (about 15 min) ...")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench_ever_correcting.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    log(f"ever-correcting: {json.loads(proc.stdout)['goals']}")


def summarise(args, info, started, dataset, hil_runs, deploy_runs, lr_train, throughput, latency) -> dict:
    reached = [h for h in hil_runs if h["reached"]]
    hil_time = max(h["time_to_target_s"] for h in reached) if len(reached) == len(hil_runs) else None
    lr_reached = lr_train["reached"]
    lr_time = lr_train["time_to_target_s"] if lr_reached else args.lerobot_cap_s
    speedup = lr_time / hil_time if hil_time else None
    lat = {k: {"median_ms": median_of(v, "median_ms"), "p90_ms": median_of(v, "p90_ms"), "rounds": v}
           for k, v in latency.items()}
    thr = {"lerobot_samples_per_s": median_of(throughput["lerobot"], "samples_per_s"),
           "hilreward_feature_step_samples_per_s": median_of(throughput["hilreward"], "features", "samples_per_s"),
           "hilreward_pixel_step_samples_per_s": median_of(throughput["hilreward"], "pixels", "samples_per_s"),
           "rounds": throughput}
    latency_ratio = lat["hilreward_auto"]["median_ms"] / lat["lerobot"]["median_ms"]
    lr_deploy = lr_train["deployable"]
    hil_deploy_time = (max(d["time_to_deployable_s"] for d in deploy_runs)
                       if all(d["deployable"] for d in deploy_runs) else None)
    lr_deploy_time = lr_deploy["time_s"] if lr_deploy["reached"] else args.lerobot_cap_s
    deploy_speedup = lr_deploy_time / hil_deploy_time if hil_deploy_time else None
    h1 = hil_runs[0]
    same_time = {
        "at_hilreward_time_to_95": {
            "wall_s": h1["time_to_target_s"],
            "hilreward_accuracy": next((p["accuracy"] for p in h1["curve"] if p["accuracy"] >= 0.95), None),
            "lerobot": lr_train["at_times"].get(str(h1["time_to_target_s"]))},
        "at_hilreward_total_run": {
            "wall_s": h1["total_s"], "hilreward_accuracy": h1["curve"][-1]["accuracy"] if h1["curve"] else None,
            "lerobot": lr_train["at_times"].get(str(h1["total_s"]))},
        "at_lerobot_cap": {
            "wall_s": lr_train["stopped_at_s"],
            "hilreward_accuracy": h1["curve"][-1]["accuracy"] if h1["curve"] else None,
            "hilreward_note": "hilreward's run had already finished; its final held-out accuracy",
            "lerobot": lr_train["last"]},
    }
    return {
        "time_to_95_speedup": speedup,
        "time_to_95_speedup_is_lower_bound": not lr_reached,
        "inference_latency_ratio": latency_ratio,
        "inference_latency_ratio_torch": lat["hilreward_torch"]["median_ms"] / lat["lerobot"]["median_ms"],
        "time_to_deployable_speedup": deploy_speedup,
        "time_to_deployable_speedup_is_lower_bound": not lr_deploy["reached"],
        "goals": {"time_to_95_speedup >= 10": bool(speedup and speedup >= 10),
                  "time_to_deployable_speedup >= 10": bool(deploy_speedup and deploy_speedup >= 10),
                  "inference_latency_ratio <= 0.5": latency_ratio <= 0.5,
                  "inference_latency_ratio <= 0.2 (DESIGN.md)": latency_ratio <= 0.2},
        "time_to_deployable": {
            "definition": ("a checkpoint with >= 99 % accuracy on episodes 16-19 against the exact per-frame success "
                           "and no gross false termination there (a fire > 0.5 s before the onset, or in an episode "
                           "that never succeeds) at its own threshold, which for hilreward must rest on enough "
                           "evidence (its calibration says enough); LeRobot has no calibration and is judged at 0.5"),
            "hilreward_s": hil_deploy_time, "hilreward_runs": deploy_runs,
            "lerobot_s": lr_deploy_time, "lerobot_reached": lr_deploy["reached"], "lerobot_cap_s": args.lerobot_cap_s,
            "lerobot_first": lr_deploy["checkpoint"], "lerobot_closest": lr_deploy["closest"]},
        "time_to_95": {
            "target": 0.95,
            "hilreward_s": hil_time, "hilreward_runs_s": [h["time_to_target_s"] for h in hil_runs],
            "lerobot_s": lr_time, "lerobot_reached": lr_reached, "lerobot_cap_s": args.lerobot_cap_s,
            "lerobot_best": lr_train["best"], "lerobot_last": lr_train["last"],
            "note": ("each side's accuracy is against the label it trains on: lerobot-train pairs a frame with its "
                     "row's next.reward; hilreward (label.align=current) with the reward that arrived at the frame "
                     "(= observation.success here). Both appear under heldout_by_label / the LeRobot curve."),
        },
        "same_wall_time_accuracy": same_time,
        "throughput_batch32": thr,
        "inference_batch1": {k: {kk: vv for kk, vv in v.items()} for k, v in lat.items()},
        "hilreward_train_runs": hil_runs,
        "lerobot_train": lr_train,
        "settings": {"dataset": str(dataset), "train_episodes": "0-15", "heldout_episodes": "16-19",
                     "encoder": str(PEER_ENCODER), "threads": args.threads, "lerobot_batch": args.lerobot_batch,
                     "lerobot_save_freq": args.lerobot_save_freq, "rounds": args.rounds, "calls": args.calls,
                     "hilreward_overrides": args.hil_override,
                     "hilreward_deploy_overrides": args.hil_deploy_override},
        "machine": {**info, "uptime_at_end": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
                    "note": "2 CPU cores shared with other processes; loadavg_before/after recorded per measurement"},
        "versions": {"hilreward": hil_runs[0]["versions"], "lerobot": lr_train["versions"]},
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def fmt(x, spec=".1f", none="n/a") -> str:
    return none if x is None else format(x, spec)


def write_doc(r: dict, path: Path) -> None:
    t, thr, lat = r["time_to_95"], r["throughput_batch32"], r["inference_batch1"]
    m, v = r["machine"], r["versions"]
    lb = " (lower bound: LeRobot was stopped at the cap)" if r["time_to_95_speedup_is_lower_bound"] else ""
    lr_best = t["lerobot_best"] or {}
    same = r["same_wall_time_accuracy"]
    d = r["time_to_deployable"]
    d_lb = " (lower bound: LeRobot never got there before the cap)" if r["time_to_deployable_speedup_is_lower_bound"] \
        else ""
    lr_d = d["lerobot_first"] or d["lerobot_closest"] or {}
    h_d = d["hilreward_runs"][0]
    h_cal = h_d["calibration"]

    def lr_acc(entry):
        return fmt((entry or {}).get("next.reward"), ".3f")

    lines = [
        DOC_START, SECTION, "",
        f"`make bench` ({Path('bench/run_all.py')}), run {r['started_utc']} .. {r['finished_utc']}; raw figures in "
        f"`bench/results/{path.name}`.", "",
        f"- Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['memory_gb']} GB; shared with other work "
        f"(`uptime` at start: `{m['uptime_at_start']}`; at end: `{m['uptime_at_end']}`).",
        f"- Versions: hilreward {v['hilreward'].get('hilreward')} (torch {v['hilreward'].get('torch')}, "
        f"onnxruntime {v['hilreward'].get('onnxruntime')}, Python {v['hilreward'].get('python')}); LeRobot "
        f"{v['lerobot'].get('lerobot')} (torch {v['lerobot'].get('torch')}, transformers "
        f"{v['lerobot'].get('transformers')}, Python {v['lerobot'].get('python')}).",
        f"- Same data (`{Path(r['settings']['dataset']).name}`, train episodes 0-15, held out 16-19), same frozen "
        f"encoder folder (the peer's ResNet-10), torch threads {r['settings']['threads']} on both sides.", "",
        "| | LeRobot 0.6.1 | hilreward | ratio |", "|---|---|---|---|",
        f"| time to a deployable classifier (>= 99 % on 16-19, 0 gross, evidence-backed threshold) | "
        f"{fmt(d['lerobot_s'], '.0f')} s{' (not reached; cap)' if not d['lerobot_reached'] else ''} | "
        f"{fmt(d['hilreward_s'])} s{'' if d['hilreward_s'] else ' (not reached)'} | "
        f"**{fmt(r['time_to_deployable_speedup'])}x** {_faster(r['time_to_deployable_speedup'])}{d_lb} |",
        f"| that checkpoint on 16-19: accuracy, gross false terminations, threshold | "
        f"{lr_acc({'next.reward': lr_d.get('observation.success')})}, {lr_d.get('gross_false_terminations', 'n/a')}, "
        f"0.5 (step {lr_d.get('step', 'n/a')}{'' if d['lerobot_reached'] else ', its closest'}) | "
        f"{fmt(h_d['test']['accuracy'], '.3f')}, {h_d['test']['gross_false_terminations']}, "
        f"{fmt(h_d['test']['threshold'], '.3g')} ({h_cal.get('method')}, "
        f"{'enough evidence' if h_cal.get('enough') else 'too little evidence'}) | |",
        f"| time to 95 % held-out accuracy | {fmt(t['lerobot_s'], '.0f')} s"
        f"{' (not reached; cap)' if not t['lerobot_reached'] else ''} | {fmt(t['hilreward_s'])} s | "
        f"**{fmt(r['time_to_95_speedup'])}x** {_faster(r['time_to_95_speedup'])}{lb} |",
        f"| best held-out accuracy reached | {lr_acc(lr_best)} (step {lr_best.get('step', 'n/a')}) | "
        f"{fmt(same['at_hilreward_total_run']['hilreward_accuracy'], '.3f')} | |",
        f"| accuracy at hilreward's time to 95 % ({fmt(same['at_hilreward_time_to_95']['wall_s'])} s) | "
        f"{lr_acc(same['at_hilreward_time_to_95']['lerobot'])} | "
        f"{fmt(same['at_hilreward_time_to_95']['hilreward_accuracy'], '.3f')} | |",
        f"| accuracy at LeRobot's stop ({fmt(same['at_lerobot_cap']['wall_s'], '.0f')} s) | "
        f"{lr_acc(same['at_lerobot_cap']['lerobot'])} | {fmt(same['at_lerobot_cap']['hilreward_accuracy'], '.3f')} "
        f"(finished earlier) | |",
        f"| training throughput, batch 32 | {fmt(thr['lerobot_samples_per_s'])} samples/s | "
        f"{fmt(thr['hilreward_feature_step_samples_per_s'], '.0f')} samples/s (head on cached features); "
        f"{fmt(thr['hilreward_pixel_step_samples_per_s'])} (pixel path) | "
        f"{fmt(thr['hilreward_feature_step_samples_per_s'] / thr['lerobot_samples_per_s'], '.0f')}x |",
        f"| inference, batch 1, 2 cameras, from uint8: median / p90 | {fmt(lat['lerobot']['median_ms'])} / "
        f"{fmt(lat['lerobot']['p90_ms'])} ms | default backend (auto) {fmt(lat['hilreward_auto']['median_ms'])} / "
        f"{fmt(lat['hilreward_auto']['p90_ms'])} ms; torch {fmt(lat['hilreward_torch']['median_ms'])} / "
        f"{fmt(lat['hilreward_torch']['p90_ms'])} ms | **{fmt(r['inference_latency_ratio'], '.2f')}x** "
        f"(torch {fmt(r['inference_latency_ratio_torch'], '.2f')}x) |", "",
        "Goals: " + "; ".join(f"{name}: **{'met' if ok else 'missed'}**" for name, ok in r["goals"].items()) + ".",
        "",
        "How each side is run: LeRobot with its own `lerobot-train` (batch "
        f"{r['settings']['lerobot_batch']}, checkpoint every {r['settings']['lerobot_save_freq']} steps, its "
        "LeRobotDataset loader decoding the videos for every sample); its checkpoints are scored after it "
        "stops, end to end through `Classifier.from_pretrained` and the saved preprocessor, and a checkpoint's time "
        "is when its files were written. hilreward with `hilreward train` from a cold cache (frame decoding and "
        "feature computation included), timed to the held-out evaluation line that first shows >= 95 %. "
        "Accuracy is against each trainer's own label (LeRobot: the row's `next.reward`; hilreward: "
        "`label.align=current`); the JSON also scores both against `observation.success`. "
        "Time to deployable: hilreward's `hilreward train` on episodes 0-15 "
        f"(`{' '.join(r['settings']['hilreward_deploy_overrides'])}`, default calibration), timed from launch to "
        "exit, its checkpoint then scored on 16-19 at its own threshold; LeRobot's checkpoints of the run above, "
        "scored at 0.5 with the same episode rule (hilreward's `evaluation/episodes.py`). "
        "Inference: LeRobot's `VanillaObservationProcessorStep` + its normaliser + `predict_reward`; "
        "hilreward's `RewardFunction` (preprocessing inside).", "", DOC_END, ""]
    replace_section(DOC, DOC_START, DOC_END, "\n".join(lines))


def replace_section(doc: Path, start: str, end: str, block: str) -> None:
    """Put ``block`` (which begins with ``start`` and ends with ``end``) in place of that section of ``doc``, or
    append it; the other sections stay as they are."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n\n" + after if after else "\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, doc)


if __name__ == "__main__":
    main()
