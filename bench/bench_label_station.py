"""Label station: time of one frame request (goal <= 50 ms), against decoding the frame on request.

    .venv/bin/python bench/bench_label_station.py [--dataset ../shared/data/metaworld_drawer_open] [--requests 300]
        [--doc]   # also rewrite the "Label station" section of docs/benchmarks.md

Starts `hilreward label` as a user would (its own process, port 0, a fresh frame cache, so its start-up
decodes every video once), then times JPEG frame requests over one keep-alive HTTP connection: "scrub"
(consecutive frames of an episode, as the arrow keys ask for them) and "random" (any camera, episode and
frame). The baseline, in the same run, is what a viewer without the frame cache does: open the camera's mp4,
seek to the frame, decode, encode the JPEG (in-process, no HTTP, so it is favoured). Prints one JSON object;
records `uptime` before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data" / "metaworld_drawer_open"
FIXTURE = ROOT / "tests" / "fixtures" / "drawer4"
DOC = ROOT / "docs" / "benchmarks.md"
DOC_START, DOC_END = "<!-- bench:label-station:start -->", "<!-- bench:label-station:end -->"


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"n": len(a), "median_ms": round(float(np.median(a)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2)}


def start_station(dataset: Path, work: Path) -> tuple[subprocess.Popen, int, float]:
    port_file = work / "port"
    cmd = [sys.executable, "-m", "hilreward.cli", "label", f"dataset.root={dataset}", "port=0",
           f"port_file={port_file}", f"cache_dir={work / 'cache'}", f"edits={work / 'edits.json'}"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while not port_file.exists():
        if proc.poll() is not None:
            raise SystemExit(f"hilreward label exited: {proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    return proc, int(port_file.read_text()), time.perf_counter() - t0


def timed_requests(port: int, paths: list[str]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as browsers do
    out = []
    for path in paths:
        t0 = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        out.append((time.perf_counter() - t0) * 1000)
        if response.status != 200 or not body.startswith(b"\xff\xd8"):
            raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
    conn.close()
    return out


def decode_on_request(ds, picks: list[tuple[int, int, int]]) -> list[float]:
    """The baseline: per request, open the mp4, seek to the frame's timestamp, decode to it, encode a JPEG."""
    import av
    from PIL import Image

    out = []
    for cam_i, ep, frame in picks:
        cam = ds.camera_keys[cam_i]
        ref = ds._videos[cam][ep]
        target = ref.from_timestamp + frame / ds.fps
        t0 = time.perf_counter()
        with av.open(str(ref.path)) as container:
            stream = container.streams.video[0]
            container.seek(int(target / stream.time_base), stream=stream, backward=True)
            for f in container.decode(stream):
                if f.pts * stream.time_base >= target - 0.5 / ds.fps:
                    img = f.to_ndarray(format="rgb24")
                    break
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(dataset: Path, requests: int, seed: int) -> dict:
    from hilreward.data import LeRobotDataset

    ds = LeRobotDataset.open(dataset)
    rng = np.random.default_rng(seed)
    episodes = [(e.index, e.length) for e in ds.episodes]
    cams = len(ds.camera_keys)
    random_picks = []
    for _ in range(requests):
        ep, length = episodes[rng.integers(len(episodes))]
        random_picks.append((int(rng.integers(cams)), ep, int(rng.integers(length))))
    ep, length = episodes[len(episodes) // 2]
    scrub_picks = [(c, ep, f) for f in range(min(length, requests // cams)) for c in range(cams)]
    url = lambda p: f"/api/label/frames/{p[0]}/{p[1]}/{p[2]}.jpg"  # noqa: E731
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="hilreward-bench-label-") as work:
        proc, port, startup_s = start_station(dataset, Path(work))
        try:
            timed_requests(port, [url(p) for p in random_picks[:20]])  # warm-up: imports, page cache
            scrub = timed_requests(port, [url(p) for p in scrub_picks])
            random_ms = timed_requests(port, [url(p) for p in random_picks])
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    baseline = decode_on_request(ds, random_picks[: max(20, requests // 5)])
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    r = percentiles(random_ms)
    b = percentiles(baseline)
    return {
        "bench": "label_station", "dataset": str(dataset), "frames": ds.num_frames, "cameras": cams,
        "size": list(ds.camera_size(ds.camera_keys[0])), "startup_s_cold_cache": round(startup_s, 1),
        "scrub": percentiles(scrub), "random": r, "decode_on_request_baseline": b,
        "speedup_median": round(b["median_ms"] / r["median_ms"], 1), "speedup_p90": round(b["p90_ms"] / r["p90_ms"], 1),
        "goal_ms": 50,
        "goal_met": r["p90_ms"] <= 50 and percentiles(scrub)["p90_ms"] <= 50,
        "uptime_before": uptime_before, "uptime_after": uptime_after,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": f".venv/bin/python bench/bench_label_station.py --dataset {os.path.relpath(dataset, ROOT)} "
                   f"--requests {requests}",
    }


def write_doc(r: dict) -> None:
    s, x, b = r["scrub"], r["random"], r["decode_on_request_baseline"]
    lines = [
        DOC_START, "## Label station", "",
        f"`{r['command']}` (also run by `make bench`), {r['date']}; {Path(r['dataset']).name}: {r['frames']} frames, "
        f"{r['cameras']} cameras at {r['size'][0]}x{r['size'][1]}. Load: `{r['uptime_before']}` before, "
        f"`{r['uptime_after']}` after.", "",
        "One JPEG frame request to `hilreward label` over a keep-alive HTTP connection, frames read from the "
        "decode-once frame cache; the baseline decodes the frame from the mp4 on request (seek + decode + JPEG, "
        "in-process, no HTTP).", "",
        "| per frame (ms) | median | p90 | p99 | max |", "|---|---:|---:|---:|---:|",
        f"| station, scrubbing an episode ({s['n']} requests) | {s['median_ms']} | {s['p90_ms']} | {s['p99_ms']} | {s['max_ms']} |",
        f"| station, random frames ({x['n']} requests) | {x['median_ms']} | {x['p90_ms']} | {x['p99_ms']} | {x['max_ms']} |",
        f"| decode on request, baseline ({b['n']} requests) | {b['median_ms']} | {b['p90_ms']} | {b['p99_ms']} | {b['max_ms']} |",
        "",
        f"The station is **{r['speedup_median']}x** faster than decoding on request at the median, "
        f"**{r['speedup_p90']}x** at p90; goal <= {r['goal_ms']} ms "
        f"per frame: **{'met' if r['goal_met'] else 'missed'}** (p90). Start-up with a cold cache (every video "
        f"decoded once): {r['startup_s_cold_cache']} s.", "", DOC_END, ""]
    sys.path.insert(0, str(HERE))
    from run_all import replace_section

    replace_section(DOC, DOC_START, DOC_END, "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(SHARED if SHARED.is_dir() else FIXTURE))
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--doc", action="store_true", help="rewrite the Label station section of docs/benchmarks.md")
    a = ap.parse_args()
    result = run(Path(a.dataset), a.requests, a.seed)
    if a.doc:
        write_doc(result)
    print(json.dumps(result))  # one line: bench/run_all.py reads it


if __name__ == "__main__":
    main()
