"""Operator console: how far behind the robot the operator's screen is.

    .venv/bin/python bench/bench_console.py [--data tests/fixtures/drawer4] [--encoder small_cnn] [--hz 10]
        [--calls 300] [--out bench/results/console.json]

Starts ``hilreward serve ... console=true`` as a user would (its own process, ports 0), opens the console in
headless Chromium (Debian's chromium + chromedriver) and calls Predict at ``--hz`` with two 128x128 cameras,
stepping through the dataset's frames. Measured per call, in one run:
- baseline: the Predict round trip as the robot sees it;
- console: from the server's prediction time (``RecentPrediction.time_unix``) to the page handling its
  server-sent event (WatchActivity -> console process -> browser), same machine clock;
- the live frames that reached the page (at most ``frames_per_second=10`` by default).
Prints one JSON object (and writes it to ``--out``); records ``uptime`` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_serving import build_checkpoint, load_frames, stats, step  # noqa: E402

ROOT = HERE.parent
HOOK = """window.latency = []; window.framesSeen = 0; const original = addPrediction;
addPrediction = ev => { window.latency.push(Date.now() / 1000 - ev.point.time_unix);
                        if (ev.images) window.framesSeen += 1; original(ev); };"""


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def wait_file(path: Path, proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"hilreward serve did not start: {proc.stdout.read().decode()[-2000:]}")
        time.sleep(0.1)
    return path.read_text().strip()


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1280,900"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "tests" / "fixtures" / "drawer4"))
    parser.add_argument("--encoder", default="small_cnn")
    parser.add_argument("--hz", type=float, default=10.0, help="Predict calls per second (a robot's control rate)")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from hilreward.serving import RewardClient

    result = {"uptime_before": uptime(), "hz": args.hz, "calls": args.calls, "encoder": args.encoder}
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        work, cache = Path(tmp), str(Path(tmp) / "cache")
        ckpt, _, _ = build_checkpoint(args.data, work / "ckpt", cache, args.encoder, steps=100)
        data = load_frames(args.data, cache)
        ports = {name: work / name for name in ("grpc", "web")}
        proc = subprocess.Popen([sys.executable, "-m", "hilreward.cli", "serve", f"checkpoint={ckpt}", "token=bench",
                                 f"state_dir={work / 'state'}", "port=0", f"port_file={ports['grpc']}", "console=true",
                                 "console_port=0", f"console_port_file={ports['web']}"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "2"})
        driver = None
        try:
            address, web = f"127.0.0.1:{wait_file(ports['grpc'], proc)}", wait_file(ports['web'], proc)
            driver = browser(work / "profile")
            driver.get(f"http://127.0.0.1:{web}/console/?token=bench")
            deadline = time.monotonic() + 60
            while "live" not in driver.execute_script("return document.getElementById('conn-text').textContent"):
                assert time.monotonic() < deadline, "the console did not connect"
                time.sleep(0.1)
            driver.execute_script(HOOK)
            round_trips = []
            with RewardClient(address, token="bench") as client:
                start = time.perf_counter()
                for i in range(args.calls):
                    time.sleep(max(0.0, start + i / args.hz - time.perf_counter()))
                    t0 = time.perf_counter()
                    client.predict(step(data, i % len(data)), episode_id=i // 150, step=i % 150)
                    round_trips.append((time.perf_counter() - t0) * 1000)
                wall = time.perf_counter() - start
            deadline = time.monotonic() + 30
            while driver.execute_script("return window.latency.length") < args.calls and time.monotonic() < deadline:
                time.sleep(0.1)
            latency = [s * 1000 for s in driver.execute_script("return window.latency")]
            frames = driver.execute_script("return window.framesSeen")
        finally:
            if driver is not None:
                driver.quit()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    result.update({"predict_round_trip": stats(round_trips), "console_event": stats(latency),
                   "events_received": len(latency), "frames_received_per_s": round(frames / wall, 2),
                   "p50_ratio_console_to_predict": round(stats(latency)["p50_ms"] / stats(round_trips)["p50_ms"], 2),
                   "uptime_after": uptime()})
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
