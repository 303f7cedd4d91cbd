"""Suspects: does `hilreward suspects` find injected label noise, and how fast (issue 11's done-when).

    .venv/bin/python bench/bench_suspects.py [--dataset ../shared/data/metaworld_pick_place] [--seed 0]
        [--override model=scratch folds=4 ...]

Makes a noisy copy of the dataset with `hilreward relabel` (the label station's own edits format): the onset of
``--shifted`` succeeding episodes moved ``--shift`` frames later, and one ``--false-span``-frame false success span
in a failed episode (episodes and positions drawn with ``--seed``). Then runs `hilreward suspects` on it as a
user would (its own process, a cold frame cache: decoding included) and reports the share of the N injected
frames among its top 2N frames, beside three baselines from the same run: ranking by the out-of-fold
disagreement alone (the score before the in-fold view), by the plain out-of-fold probability of the class not
labelled, and a random ranking's expectation (2N / frames). Prints one JSON
object with the wall time, the CPU time of the suspects process (user + system: comparable across machine
loads) and `uptime` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "metaworld_pick_place"


def inject_noise(src: Path, dst: Path, shifted: int, shift: int, false_span: int, seed: int,
                 label_key: str = "next.reward") -> list[tuple[int, int, int]]:
    """Write ``dst``: ``src`` with noisy labels (see the module doc); returns the injected (episode, start, end)."""
    from hilreward.data import LeRobotDataset
    from hilreward.curation.edits import EditsFile
    from hilreward.curation.relabel import relabel

    ds = LeRobotDataset.open(src)
    rng = np.random.default_rng(seed)
    edits = EditsFile.open(ds, dst.parent / f"{dst.name}.noise.json", label_key)
    labels = edits.base_labels()
    ep_index = ds.read_rows(["episode_index"])["episode_index"]
    onsets = {}
    for e in ds.episodes:
        pos = np.flatnonzero(labels[ep_index == e.index])
        if len(pos) and pos[0] + shift <= e.length:
            onsets[e.index] = int(pos[0])
    failed = [e.index for e in ds.episodes if labels[ep_index == e.index].max() == 0 and e.length > false_span + 2]
    if len(onsets) < shifted or not failed:
        raise SystemExit(f"{src} has {len(onsets)} succeeding and {len(failed)} failed episodes; need {shifted} and 1")
    injected = []
    for ep in sorted(rng.choice(sorted(onsets), shifted, replace=False).tolist()):
        edits.add(ep, onsets[ep], onsets[ep] + shift, 0, source="bench-noise: onset later")
        injected.append((ep, onsets[ep], onsets[ep] + shift))
    ep = int(rng.choice(failed))
    length = next(e.length for e in ds.episodes if e.index == ep)
    start = int(rng.integers(1, length - false_span))
    edits.add(ep, start, start + false_span, 1, source="bench-noise: false success")
    injected.append((ep, start, start + false_span))
    relabel(ds, edits.path, dst)
    return injected


def recall_at_2n(table, injected: list[tuple[int, int, int]], score: np.ndarray | None = None) -> dict:
    """Share of the injected frames among the 2N highest-scoring frames (``score`` defaults to the table's)."""
    ep = table.column("episode_index").to_numpy()
    fr = table.column("frame_index").to_numpy()
    s = table.column("score").to_numpy() if score is None else score
    wrong = np.zeros(len(ep), dtype=bool)
    for e, a, b in injected:
        wrong |= (ep == e) & (fr >= a) & (fr < b)
    n = int(wrong.sum())
    top = np.argsort(-s, kind="stable")[:2 * n]
    found = int(wrong[top].sum())
    return {"injected_frames": n, "top_2n": 2 * n, "found": found, "recall": round(found / n, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(DEFAULT_DATA))
    ap.add_argument("--shifted", type=int, default=5, help="succeeding episodes whose onset moves later")
    ap.add_argument("--shift", type=int, default=8, help="frames the onset moves")
    ap.add_argument("--false-span", type=int, default=15, help="frames of the false success span in a failed episode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--override", nargs="*", default=["model=scratch", "folds=4"],
                    help="`hilreward suspects` arguments besides dataset.root, output_dir and cache_dir")
    ap.add_argument("--keep", default=None, help="keep the noisy dataset and the suspects run in this folder")
    a = ap.parse_args()
    import pyarrow.parquet as pq

    from hilreward.curation.suspects import disagreement

    work = Path(a.keep or tempfile.mkdtemp(prefix="hilreward-bench-suspects-"))
    work.mkdir(parents=True, exist_ok=True)
    noisy = work / "noisy"
    injected = inject_noise(Path(a.dataset), noisy, a.shifted, a.shift, a.false_span, a.seed)
    cmd = [sys.executable, "-m", "hilreward.cli", "suspects", f"dataset.root={noisy}", f"output_dir={work / 'suspects'}",
           f"cache_dir={work / 'cache'}", *a.override]
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if proc.returncode != 0:
        raise SystemExit(f"hilreward suspects failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    table = pq.read_table(work / "suspects" / "suspects.parquet")
    result = recall_at_2n(table, injected)
    ep = table.column("episode_index").to_numpy()
    label, prob = table.column("label").to_numpy(), table.column("probability").to_numpy()
    plain = np.where(label == 1, 1.0 - prob, prob)  # the probability of the class not labelled
    order = np.lexsort((table.column("frame_index").to_numpy(), ep))
    out_of_fold = np.empty(len(ep))
    out_of_fold[order] = disagreement(label[order], prob[order].astype(float), ep[order], 2)
    print(json.dumps({
        "bench": "suspects", "dataset": str(a.dataset), "frames": len(ep), "seed": a.seed,
        "noise": {"shifted_onsets": a.shifted, "shift": a.shift, "false_span": a.false_span, "injected": injected},
        "command": " ".join(cmd[2:]), "wall_s": round(wall, 1), "goal_s": 300,
        "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1), **result,
        "recall_out_of_fold_only": recall_at_2n(table, injected, out_of_fold)["recall"],
        "recall_plain_disagreement": recall_at_2n(table, injected, plain)["recall"],
        "recall_random_expected": round(min(1.0, 2 * result["injected_frames"] / len(ep)), 4), "goal_recall": 0.8,
        "top_spans": [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("[")][:8],
        "uptime_before": uptime_before, "uptime_after": uptime_after,
    }, indent=2))


if __name__ == "__main__":
    main()
