"""Two `hilreward serve` replicas on one PostgreSQL store: corrections sent to either replica -> one
version served by both, and the takeover after `kill -9` of the leader.

    .venv/bin/python bench/bench_replicas.py [--data ../shared/data/metaworld_drawer_open] [--encoder resnet10]
        [--store postgresql://...] [--rounds 3] [--per-round 4] [--predict-hz 10] [--out bench/results/replicas.json]

1. A checkpoint as in bench_serving.py (random encoder weights, no download; head trained on cached
   features, episodes split 80/20): a model with errors left to correct.
2. Without ``--store``, a throwaway PostgreSQL cluster (``scripts/postgres.sh``) in a temp dir.
3. Two replicas (each with its retrainer, default ``retrain.*`` options) on that store and one
   versions folder, started together; one becomes the leader, the other waits on standby.
4. Rounds: ``--per-round`` corrections (training-episode frames with their true label, those the
   checkpoint gets wrong first) sent alternately to the two replicas as fast as the acks come; measured from the
   last ack until both replicas' GetModel name one version trained on every correction so far
   (each polled every 20 ms). Meanwhile one client per replica calls Predict ``--predict-hz``
   times a second (its latency is reported).
5. ``kill -9`` of the leader: the time until the other replica's retrainer leads (its GetModel
   ``retrainer_status`` turns ``ready``, polled every 20 ms), then one more correction to it and the
   time until it serves a version trained on it.
Load averages are recorded at start and end. Prints one JSON object (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench_serving import build_checkpoint, load_frames, stats, step, wrong_frames

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.02
ATTEMPT_METRICS = ("retrain_seconds", "train_seconds", "train_steps", "holdout_seconds", "corrections_conflicting",
                   "heldout_accuracy")  # of the version served at the end of a round


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def start_replica(name: str, args: list[str], work: Path) -> tuple[subprocess.Popen, str]:
    port_file = work / f"port-{name}"
    log = open(work / f"replica-{name}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "hilreward.cli", "serve", *args, f"replica={name}", "port=0",
                             f"port_file={port_file}"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            start_new_session=True)  # its own process group: its retrainer goes with it at the end
    deadline = time.monotonic() + 600
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"replica {name} failed:\n{(work / f'replica-{name}.log').read_text()[-3000:]}")
        time.sleep(0.1)
    return proc, f"127.0.0.1:{port_file.read_text().strip()}"


def running(pgid: int) -> list[str]:
    """Processes of a process group that still run (zombies waiting for init to reap them do not)."""
    out = subprocess.run(["ps", "-o", "stat=,args=", "-g", str(pgid)], capture_output=True, text=True).stdout
    rows = [line.split(None, 1) for line in out.splitlines() if line.strip()]
    return [row[-1][:80] for row in rows if not row[0].startswith("Z")]


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(POLL_S)
    raise SystemExit(f"{what}: not within {timeout} s")


class PredictLoad:
    """One client per replica calling Predict ``hz`` times a second; latencies in ms."""

    def __init__(self, addresses: list[str], steps: list[dict], hz: float) -> None:
        from hilreward.serving import RewardClient

        self.stop = threading.Event()
        self.ms: list[float] = []
        self.threads = []
        for k, address in enumerate(addresses):
            client = RewardClient(address, timeout_s=60)
            self.threads.append(threading.Thread(target=self._run, args=(client, steps, hz, k), daemon=True))
        if hz > 0:
            for t in self.threads:
                t.start()

    def _run(self, client, steps: list[dict], hz: float, k: int) -> None:
        i = k
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                self.ms.append(client.predict(steps[i % len(steps)]).latency_ms)
            except Exception:  # a replica killed on purpose
                return
            i += 1
            self.stop.wait(max(0.0, 1.0 / hz - (time.perf_counter() - t0)))

    def close(self) -> dict | None:
        self.stop.set()
        for t in self.threads:
            if t.is_alive():
                t.join(10)
        return stats(self.ms) if self.ms else None


def both_serving(clients: dict, used: int, seen: dict, t0: float) -> bool:
    """True once every replica serves a version trained on ``used`` corrections; notes when each got there."""
    for name, client in clients.items():
        if name not in seen and client.get_model().corrections_used >= used:
            seen[name] = time.perf_counter() - t0
    return len(seen) == len(clients)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "metaworld_drawer_open"))
    parser.add_argument("--encoder", default="resnet10")
    parser.add_argument("--store", default=None, help="postgresql:// URL (default: a throwaway cluster)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=4, help="corrections per round, alternating replicas")
    parser.add_argument("--predict-hz", type=float, default=10.0, help="Predict calls per second per replica")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each replica's Predict")
    parser.add_argument("--head-steps", type=int, default=60,
                        help="head steps of the checkpoint (few: it leaves errors to correct)")
    parser.add_argument("--timeout", type=float, default=120.0, help="longest wait for a version, in seconds")
    parser.add_argument("--cache-dir", default=None, help="frame/feature cache (default: a temp dir)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "replicas.json"))
    args = parser.parse_args()

    import torch

    from hilreward.serving import RewardClient

    work = Path(tempfile.mkdtemp(prefix="hilreward-bench-replicas-"))
    cache_dir = args.cache_dir or str(work / "cache")
    os.environ["HILREWARD_CACHE"] = cache_dir
    result: dict = {"bench": "replicas", "encoder": args.encoder, "dataset": args.data, "cpu_count": os.cpu_count(),
                    "platform": platform.platform(), "torch": torch.__version__, "load_start": load(),
                    "settings": {"rounds": args.rounds, "per_round": args.per_round, "predict_hz": args.predict_hz,
                                 "threads": args.threads, "retrain": "defaults"}}
    ckpt, data_info, probs = build_checkpoint(args.data, work / "ckpt", cache_dir, args.encoder, args.head_steps)
    data = load_frames(args.data, cache_dir)
    val = np.isin(data.episode_index, data_info["val_episodes"])
    needed = args.rounds * args.per_round + 1
    picks = wrong_frames(probs, data, ~val, needed)  # what it gets wrong first, then other training frames
    rest = np.random.default_rng(2).permutation(np.flatnonzero(~val))
    picks += [(int(i), int(data.labels[i])) for i in rest if i not in {p for p, _ in picks}][:needed - len(picks)]
    steps = [step(data, i) for i in np.random.default_rng(1).choice(len(data), 32, replace=False)]
    result["data"] = data_info

    cluster = None
    store = args.store
    if store is None:  # a folder the server user can enter (mkdtemp makes private ones)
        cluster = Path(tempfile.mkdtemp(prefix="hilreward-bench-pg-"))
        cluster.chmod(0o755)
        out = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "start", str(cluster)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"cannot start PostgreSQL: {out.stderr.strip()}; or pass --store postgresql://...")
        store = out.stdout.strip().splitlines()[-1]
    common = [f"checkpoint={ckpt}", f"dataset.root={args.data}", f"state_dir={work / 'state'}", f"store={store}",
              f"cache_dir={cache_dir}", f"threads={args.threads}"]
    procs: dict[str, subprocess.Popen] = {}
    load_gen = None
    try:
        t0 = time.perf_counter()
        addresses = {}
        for name in ("a", "b"):
            procs[name], addresses[name] = start_replica(name, common, work)
        clients = {name: RewardClient(address, timeout_s=60) for name, address in addresses.items()}
        statuses = wait_until(lambda: (s := {n: c.get_model().retrainer_status for n, c in clients.items()})
                              and sorted(s.values()) == ["ready", "standby"] and s, 900, "a leader and a standby")
        leader = next(n for n, s in statuses.items() if s == "ready")
        result["replicas_ready_s"] = round(time.perf_counter() - t0, 2)
        load_gen = PredictLoad(list(addresses.values()), steps, args.predict_hz)

        rounds, used, names = [], 0, list(clients)
        for r in range(args.rounds):
            batch = picks[r * args.per_round:(r + 1) * args.per_round]
            t_first = time.perf_counter()
            for k, (row, label) in enumerate(batch):
                clients[names[k % 2]].submit_correction(step(data, row), label=label)
            t_last = time.perf_counter()
            used += len(batch)
            seen: dict[str, float] = {}
            try:
                wait_until(lambda: both_serving(clients, used, seen, t_last), args.timeout, f"round {r}")
            except SystemExit as exc:
                rounds.append({"round": r, "published": False, "why": str(exc),
                               "leader_status": clients[leader].get_model().retrainer_status[:300]})
                break
            infos = {n: c.get_model() for n, c in clients.items()}
            rounds.append({"round": r, "published": True, "corrections": len(batch),
                           "submit_seconds": round(t_last - t_first, 3),
                           "last_ack_to_both_serving_s": round(max(seen.values()), 3),
                           "per_replica_s": {n: round(v, 3) for n, v in seen.items()},
                           "same_version": len({i.version for i in infos.values()}) == 1,
                           "version": infos[leader].version,
                           **{k: round(infos[leader].metrics.get(k, float("nan")), 4) for k in ATTEMPT_METRICS}})
        result["rounds"] = rounds
        done = [r["last_ack_to_both_serving_s"] for r in rounds if r.get("published")]
        result["last_ack_to_both_serving_s"] = {"median": round(float(np.median(done)), 3) if done else None,
                                                "max": max(done) if done else None}
        result["goal_10s_met"] = bool(done) and len(done) == args.rounds and max(done) <= 10.0

        # kill -9 of the leader
        other = next(n for n in names if n != leader)
        os.kill(procs[leader].pid, signal.SIGKILL)
        t_kill = time.perf_counter()
        wait_until(lambda: clients[other].get_model().retrainer_status == "ready", 120, "takeover")
        takeover = time.perf_counter() - t_kill
        row, label = picks[args.rounds * args.per_round]
        clients[other].submit_correction(step(data, row), label=label)
        t_ack = time.perf_counter()
        seen = {}
        wait_until(lambda: both_serving({other: clients[other]}, used + 1, seen, t_ack), args.timeout,
                   "a version after the takeover")
        procs[leader].wait(30)
        result["failover"] = {"killed": leader, "takeover_s": round(takeover, 3),
                              "correction_after_takeover_to_serving_s": round(seen[other], 3),
                              **{k: round(clients[other].get_model().metrics.get(k, float("nan")), 4)
                                 for k in ATTEMPT_METRICS},
                              "killed_replica_processes_still_running": running(procs[leader].pid)}
        result["predict_during"] = load_gen.close()
        for c in clients.values():
            c.close()
    finally:
        if load_gen is not None:
            load_gen.close()
        for proc in procs.values():
            for sig in (signal.SIGTERM, signal.SIGKILL):  # the whole group: the replica and its retrainer
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(30)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
        if cluster is not None:
            subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "stop", str(cluster)], capture_output=True)
            shutil.rmtree(cluster, ignore_errors=True)
        result["load_end"] = load()
        shutil.rmtree(work, ignore_errors=True)  # the cache too, unless --cache-dir keeps it elsewhere
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
