"""Ever-correcting on unseen layouts: what corrections buy on new Meta-World layouts, by strategy (issue 12).

    .venv/bin/python bench/bench_ever_correcting.py [--task door-open] [--a DIR --b DIR] [--checkpoint DIR]
        [--doc]   # also rewrite the "Ever-correcting" section of docs/benchmarks.md and its figure

1. Layouts A and B: ``hilreward sim task=<task> seed=<seed>`` at ``--seed-a`` and ``--seed-b`` (rendered once
   into ``<cache>/sim/`` unless ``--a`` / ``--b`` name existing sets).
2. ``hilreward train model=scratch`` on A (or ``--checkpoint``).
3. For each strategy, a fresh ``hilreward serve`` of that checkpoint with retraining on A (its own
   process, the real gRPC server on 127.0.0.1, default retrain options). B's episodes are split in two:
   the first ``--correction-episodes`` run through the server one per round (PredictStream with their
   episode id, as a robot would), the rest are the test episodes. After each round a simulated operator
   (B's ground truth) spends up to ``--batch`` corrections on what it saw, by reference to the served
   predictions (``correct_recent``):
     a. ``wrong``: the episode's frames the served version got wrong, in order;
     b. ``queue``: the server's query queue first (``RewardClient.queries()``, neediest first), then (a);
     c. ``random``: random frames of the episode.
   The bench waits for the retraining attempt that covers the round's corrections, records the seconds from
   each correction to the first served version that includes it, and scores the served version on the test
   episodes (``hilreward.evaluation.episodes``: gross early terminations (> 0.5 s before the true onset),
   false successes in failed episodes, median onset error, frame accuracy).
4. After strategy (b), ``--late-rounds`` rounds of one-frame-late corrections (the label a keypress one frame
   after the success boundary gives: the onset frame labelled failure), then one round of exact ones: does
   the loop still publish?

``--protocol shift`` (issue 24) instead runs ``--rounds`` rounds in which every correction episode of B goes
through the server and every frame the served version gets wrong is sent back, labelled as a key pressed ``--lag``
frames late (the frame after each label change gets the label before it): ``--send round`` all of a round's
after its last episode with their frames, ``--send episode`` each episode's after it by reference. After each
round the version covering its last correction is scored on B's test episodes and on A's held-out episodes (the
checkpoint's split); at the end every published version is scored too (``versions``, ``clean_from``). B is any
set, e.g. ``hilreward sim seed=1 brightness=0.7 tint=[1.15,1.0,0.8] light_shift=[0.6,0.4,0.2]`` for layouts plus
lighting. ``--docs-shift <result JSONs>`` writes their section of docs/benchmarks.md.

Prints one JSON object (and writes it to ``--out``); ``--doc`` also writes the curves to
``docs/ever-correcting.png``. Heavy: run it with ``nice``; every time is recorded beside ``uptime``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
DOC = ROOT / "docs" / "benchmarks.md"
FIGURE = ROOT / "docs" / "ever-correcting.png"
DOC_START, DOC_END = "<!-- bench:ever-correcting:start -->", "<!-- bench:ever-correcting:end -->"
STRATEGIES = ("wrong", "queue", "random")
TOLERANCE_S = 0.5


def log(msg: str) -> None:
    print(f"[ever-correcting {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def hilreward(*args: str, what: str) -> None:
    """Run a ``hilreward`` command as a user would (its own process); a failure ends the bench with its output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.run([sys.executable, "-m", "hilreward.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def rendered(task: str, seed: int, episodes: int, given: str | None, cache: Path) -> Path:
    """An existing set, or ``hilreward sim`` rendered once into the cache."""
    if given:
        path = Path(given).resolve()
        if not (path / "meta" / "info.json").is_file():
            raise SystemExit(f"no LeRobot dataset at {path}")
        return path
    path = cache / "sim" / f"{task}-s{seed}-e{episodes}"
    if not (path / "meta" / "info.json").is_file():
        log(f"rendering {task} seed {seed} ({episodes} episodes) into {path}")
        hilreward("sim", f"task={task}", f"seed={seed}", f"episodes={episodes}", f"out={path}", "overwrite=true",
                  what="hilreward sim")
    return path


def sim_record(root: Path) -> dict | None:
    """How ``hilreward sim`` made a set (its meta/sim.json), without the per-episode list."""
    path = Path(root) / "meta" / "sim.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    record.pop("episodes", None)
    return record


# --------------------------------------------------------------------------- B: frames, truth, test scoring
class LayoutB:
    """B's frames and labels (the checkpoint's label rule), split into correction and test episodes."""

    def __init__(self, root: Path, checkpoint: Path, correction_episodes: int, cache_dir: str) -> None:
        from hilreward.config import DatasetConfig, TrainConfig, from_yaml
        from hilreward.data import load_frame_data
        from hilreward.models import RewardClassifier

        self.model = RewardClassifier.from_pretrained(checkpoint).eval()
        cfg_path = checkpoint / "train_config.yaml"
        label = (from_yaml(cfg_path.read_text()) if cfg_path.is_file() else TrainConfig()).label
        cameras = list(self.model.camera_keys)
        self.raw = load_frame_data(DatasetConfig(root=str(root), cameras=cameras), label, (128, 128),
                                   cache_dir=cache_dir)
        self.cameras = cameras
        self.fps = float(self.raw.fps)
        episodes = sorted(int(e) for e in np.unique(self.raw.episode_index))
        if len(episodes) <= correction_episodes:
            raise SystemExit(f"{root} has {len(episodes)} episodes; need more than --correction-episodes")
        self.correction_episodes, self.test_episodes = episodes[:correction_episodes], episodes[correction_episodes:]
        self.labels = np.asarray(self.raw.labels, dtype=np.int64)
        self.scorer = Scorer(root, self.test_episodes, checkpoint, cache_dir)

    def rows(self, episode: int) -> np.ndarray:
        idx = np.flatnonzero(self.raw.episode_index == episode)
        return idx[np.argsort(self.raw.frame_index[idx])]

    def onsets(self, episodes: list[int]) -> list[int]:
        """Rows of the first success frame of each of ``episodes`` that succeeds."""
        out = []
        for e in episodes:
            rows = self.rows(e)
            if self.labels[rows].any():
                out.append(int(rows[np.argmax(self.labels[rows] == 1)]))
        return out

    def frames(self, row: int) -> dict[str, np.ndarray]:
        return {k: np.asarray(self.raw.images[k][row]) for k in self.cameras}

    def score(self, version_dir: Path, threshold: float) -> dict:
        """Episode metrics and frame accuracy of a served version on the test episodes."""
        return self.scorer.score(version_dir, threshold)


class Scorer:
    """Episode metrics of a version on some episodes of a dataset (the version's own encoder: retraining may
    adapt it; features are cached on disk by encoder fingerprint, so a head-only version costs a head pass)."""

    def __init__(self, root: Path, episodes: list[int], checkpoint: Path, cache_dir: str) -> None:
        from hilreward.config import DatasetConfig, TrainConfig, from_yaml
        from hilreward.data import load_frame_data
        from hilreward.models import RewardClassifier

        model = RewardClassifier.from_pretrained(checkpoint)
        cfg_path = checkpoint / "train_config.yaml"
        label = (from_yaml(cfg_path.read_text()) if cfg_path.is_file() else TrainConfig()).label
        self.data = load_frame_data(DatasetConfig(root=str(root), cameras=list(model.camera_keys),
                                                  episodes=list(episodes)),
                                    label, tuple(model.config.image_size), cache_dir=cache_dir)
        self.cache_dir = cache_dir
        self.labels = np.asarray(self.data.labels, dtype=np.int64)
        self.fps = float(self.data.fps)

    def probabilities(self, version_dir: Path) -> np.ndarray:
        import torch

        from hilreward.models import RewardClassifier
        from hilreward.training.features import compute_features

        model = RewardClassifier.from_pretrained(version_dir).eval()
        feats = compute_features(model, self.data, cache_dir=self.cache_dir)
        with torch.inference_mode():
            probs = model.probabilities(model.head({k: torch.from_numpy(np.asarray(v, dtype=np.float32))
                                                    for k, v in feats.items()})).numpy()
        return probs if probs.ndim == 1 else probs[:, -1]

    def score(self, version_dir: Path, threshold: float) -> dict:
        from hilreward.evaluation.episodes import episode_metrics

        probs, y = self.probabilities(version_dir), self.labels
        m = episode_metrics(self.data.episode_index, self.data.frame_index, y, probs, threshold, fps=self.fps,
                            tolerance_s=TOLERANCE_S)
        outcomes = [r["outcome"] for r in m["per_episode"]]
        late = [r["episode"] for r in m["per_episode"] if r["outcome"] == "detected"
                and r["onset_error_frames"] > TOLERANCE_S * self.fps]
        return {"gross_early": outcomes.count("gross_early"),
                "false_successes_in_failed": m["false_successes_in_failed_episodes"],
                "missed": m["missed_successes"], "late": len(late),
                "onset_error_median_frames": m["onset_error_median_frames"],
                "accuracy": round(float(((probs >= threshold) == (y == 1)).mean()), 4),
                "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
                "gross_episodes": [r["episode"] for r in m["per_episode"] if r["outcome"] in ("gross_early",
                                                                                            "false_success")]}


# --------------------------------------------------------------------------- one served run
class Run:
    """One server, one strategy: rounds of (episode through Predict, corrections, wait, score)."""

    def __init__(self, strategy: str, b: LayoutB, checkpoint: Path, data_a: Path, work: Path, cache_dir: str,
                 batch: int, seed: int, serve_args: list[str], server_src: str | None = None) -> None:
        from bench_serving import start_server

        from hilreward.serving import RewardClient

        self.strategy, self.b, self.batch, self.server = strategy, b, batch, "baseline" if server_src else "branch"
        self.state = work / f"{strategy}-{self.server}"
        self.state.mkdir(parents=True)
        t0 = time.perf_counter()
        self.proc, address = start_server(checkpoint, str(data_a), self.state, cache_dir, 2, serve_args,
                                          env={"PYTHONPATH": server_src} if server_src else None)
        self.client = RewardClient(address, timeout_s=60)
        info = self.client.get_model()
        while info.ensemble_size == 0 and time.perf_counter() - t0 < 600:  # the queue's uncertainty needs it
            time.sleep(0.5)
            info = self.client.get_model()
        self.startup_s = round(time.perf_counter() - t0, 1)
        self.rng = np.random.default_rng(seed)
        self.truth: dict[int, int] = {}  # prediction id -> B label
        self.submitted: dict[int, float] = {}  # correction id -> time submitted
        self.latency: dict[int, float] = {}  # correction id -> seconds to the first version serving it
        self.corrected: set[int] = set()  # B rows already corrected
        self.row_of: dict[int, int] = {}  # prediction id -> B row
        self.points: list[dict] = []
        self.rounds: list[dict] = []
        self._late = 0
        self.late_ids: set[int] = set()
        self.total = 0
        self.number = info.number
        self.points.append({"corrections": 0, "version": info.number, **self.score(info)})
        threading.Thread(target=self._watch, args=(address,), daemon=True).start()

    def timings(self) -> dict:
        """``breakdown`` of this run's exact corrections, from the server's records."""
        stored = {c.id: c.time for c in self.client.list_corrections(limit=100000).corrections}
        exact = {c: s for c, s in self.latency.items() if c not in self.late_ids}
        return breakdown(self.client.versions(limit=100000).attempts, stored, exact)

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(60)

    def score(self, info) -> dict:
        return self.b.score(self.state / "serve" / "versions" / str(info.number), info.threshold)

    def run_episode(self, episode: int, episode_id: int) -> list:
        rows = self.b.rows(episode)
        results = self.client.predict_many([self.b.frames(r) for r in rows], episode_id=episode_id)
        for r, res in zip(rows, results):
            self.truth[res.prediction_id] = int(self.b.labels[r])
            self.row_of[res.prediction_id] = int(r)
        return list(zip(rows, results))

    def pick(self, seen: list, strategy: str) -> list[tuple[int, int]]:
        """(prediction id, label) the operator sends this round."""
        fresh = [(r, res) for r, res in seen if r not in self.corrected]
        wrong = [res.prediction_id for r, res in fresh if res.success != bool(self.b.labels[r])]
        if strategy == "wrong":
            ids = wrong[:self.batch]
        elif strategy == "random":
            picks = self.rng.choice(len(fresh), size=min(self.batch, len(fresh)), replace=False)
            ids = [fresh[i][1].prediction_id for i in sorted(picks)]
        else:
            queued = [q.prediction.prediction_id for q in self.client.queries(frames=False)]
            queued = [i for i in queued if i in self.truth and self.row_of[i] not in self.corrected][:self.batch]
            ids = queued + [i for i in wrong if i not in queued][:self.batch - len(queued)]
        return [(i, self.truth[i]) for i in ids]

    def submit(self, picks: list[tuple[int, int]]) -> list[int]:
        ids = []
        for pid, label in picks:
            ack = self.client.correct_recent(label, prediction_ids=[pid], source=f"bench-{self.strategy}")
            now = time.perf_counter()
            for cid in ack.correction_ids:
                self.submitted[cid] = now
                ids.append(cid)
            self.corrected.add(self.row_of[pid])
        self.total += len(ids)
        return ids

    def _watch(self, address: str) -> None:
        """Follows WatchModel in its own thread: the moment each version is first served, hence each correction's
        seconds to the first serving version that covers it (however busy the operator loop is meanwhile)."""
        from hilreward.errors import HilrewardError
        from hilreward.serving import RewardClient

        with RewardClient(address, timeout_s=60) as client:
            try:
                for info in client.watch_model(timeout_s=24 * 3600):
                    now = time.perf_counter()
                    timeline = client.versions(limit=5)
                    covered = max(v.last_correction_id for v in timeline.versions if v.number <= info.number)
                    for cid, at in list(self.submitted.items()):
                        if cid <= covered and cid not in self.latency:
                            self.latency[cid] = round(now - at, 3)
                    self.number = info.number
            except HilrewardError:  # the server stopped
                pass

    def wait(self, last_id: int, timeout: float = 180.0) -> dict:
        """Until a retraining attempt covers ``last_id`` (served, or refused)."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            info = self.client.get_model()
            attempt = None
            if last_id not in self.latency and info.retrainer_status.startswith("rejected"):
                attempts = self.client.versions(limit=1).attempts
                attempt = attempts[0] if attempts else None
            if last_id in self.latency or (attempt and not attempt.passed and attempt.last_correction_id >= last_id):
                return {"published": last_id in self.latency, "version": info.number,
                        "reason": "" if last_id in self.latency else attempt.reason[:300], "info": info}
            time.sleep(0.05)
        return {"published": False, "version": self.number, "reason": f"nothing within {timeout} s",
                "info": self.client.get_model()}

    def round(self, episode: int, episode_id: int, strategy: str, at_least_one: bool = False) -> None:
        seen = self.run_episode(episode, episode_id)
        picks = self.pick(seen, strategy)
        if at_least_one and not picks:  # nothing queued or wrong: answer the frame nearest the threshold
            threshold = self.client.get_model().threshold
            r, res = min(seen, key=lambda s: abs(s[1].probability - threshold))
            picks = [(res.prediction_id, int(self.b.labels[r]))]
        ids = self.submit(picks)
        self.settle(ids, {"episode": episode, "strategy": strategy, "corrections": len(ids),
                          "labels": [label for _, label in picks]})

    def late_round(self, onsets: list[int], episode_id: int) -> None:
        """``batch`` one-frame-late corrections: onset frames (the first success frame) labelled failure, as a
        keypress one frame after the boundary labels them; sent with their frames (SubmitCorrection)."""
        ids = []
        for k in range(self.batch):
            row = onsets[(self._late + k) % len(onsets)]
            ack = self.client.submit_correction(self.b.frames(row), label=0, episode_id=episode_id,
                                                step=int(self.b.raw.frame_index[row]), source="bench-late")
            self.submitted[ack.correction_id] = time.perf_counter()
            ids.append(ack.correction_id)
        self.late_ids.update(ids)
        self._late += self.batch
        self.total += len(ids)
        self.settle(ids, {"strategy": "one-frame-late", "late": True, "corrections": len(ids),
                          "labels": [0] * len(ids)}, late=True)

    def settle(self, ids: list[int], entry: dict, late: bool = False) -> None:
        """Wait for the attempt covering ``ids``, then score the version serving."""
        entry["uptime"] = uptime()
        if ids:
            done = self.wait(max(ids))
            info = done.pop("info")
            entry.update(done, seconds=[self.latency.get(c) for c in ids],
                         statuses={k: getattr(info.corrections, k, 0) for k in
                                   ("fixed", "unfixed", "contradicted", "rejected", "pending")})
            self.points.append({"corrections": self.total, "version": info.number, "late": late, **self.score(info)})
        self.rounds.append(entry)
        log(f"{self.strategy}: {self.total} corrections, version {self.number}: {self.points[-1]}")

    def result(self) -> dict:
        exact = set(self.submitted) - self.late_ids
        return {"strategy": self.strategy, "server": self.server, "startup_s": self.startup_s, "points": self.points,
                "rounds": self.rounds,
                "seconds_to_version": summary([self.latency[c] for c in exact if c in self.latency]),
                "unserved_corrections": sorted(exact - set(self.latency)),
                "late_corrections": {"ids": sorted(self.late_ids), "served": sorted(self.late_ids & set(self.latency))}}


def late_labels(y: np.ndarray, lag: int) -> np.ndarray:
    """An episode's labels as a key pressed ``lag`` frames after each change gives them (frame t gets t-lag's)."""
    out = np.asarray(y).copy()
    if lag > 0:
        out[lag:] = y[:-lag]
    return out


class ShiftRun(Run):
    """The shift protocol: each round runs every correction episode of B through the server and sends every frame
    the served version gets wrong, labelled a keypress late (``lag`` frames after each label change), episode by
    episode by reference (as the console does); then the version covering the round's last correction is scored
    on B's test episodes and on A's held-out episodes."""

    def __init__(self, *args, original: "Scorer", lag: int, **kwargs) -> None:
        self.original, self.lag = original, lag
        super().__init__(*args, **kwargs)

    def score(self, info) -> dict:
        version = self.state / "serve" / "versions" / str(info.number)
        return {**self.b.score(version, info.threshold),
                "original": self.original.score(version, info.threshold)}

    def score_versions(self) -> list[dict]:
        """Every published version (immutable folders), scored afterwards: corrections it covers -> metrics."""
        timeline = self.client.versions(limit=100000).versions
        submitted = sorted(self.submitted)
        out = []
        for v in timeline:
            folder = self.state / "serve" / "versions" / str(v.number)
            threshold = self.client.get_model().threshold
            out.append({"number": v.number, "corrections": sum(1 for c in submitted if c <= v.last_correction_id),
                        **self.b.score(folder, threshold), "original": self.original.score(folder, threshold)})
        return out

    def shift_round(self, r: int, send: str) -> None:
        """``send="episode"``: after each episode its wrong frames by reference (the console's way); ``"round"``:
        after all episodes every wrong frame with its frames (SubmitCorrection, episode and step given)."""
        ids: list[int] = []
        attempts_before = {a.id for a in self.client.versions(limit=100000).attempts}
        later = []
        for k, episode in enumerate(self.b.correction_episodes):
            seen = self.run_episode(episode, 1000 * (r + 1) + k)
            late = late_labels(self.b.labels[self.b.rows(episode)], self.lag)
            wrong = [(i, row, res) for i, (row, res) in enumerate(seen) if res.success != bool(late[i])]
            if send == "round":
                later += [(1000 * (r + 1) + k, int(late[i]), row, res) for i, row, res in wrong]
                continue
            for label in (0, 1):
                picks = [res.prediction_id for i, _, res in wrong if late[i] == label]
                if picks:
                    ack = self.client.correct_recent(label, prediction_ids=picks, source="bench-shift")
                    now = time.perf_counter()
                    self.submitted.update({cid: now for cid in ack.correction_ids})
                    ids += ack.correction_ids
        for episode_id, label, row, res in later:
            ack = self.client.submit_correction(self.b.frames(row), label, episode_id=episode_id,
                                                step=int(self.b.raw.frame_index[row]), model_version=res.model_version,
                                                probability=res.probability, source="bench-shift")
            self.submitted[ack.correction_id] = time.perf_counter()
            ids.append(ack.correction_id)
        self.total += len(ids)
        entry = {"round": r + 1, "corrections": len(ids), "uptime": uptime()}
        if ids:
            done = self.wait(max(ids), timeout=300)
            info = done.pop("info")
            attempts = [a for a in self.client.versions(limit=100000).attempts if a.id not in attempts_before]
            entry.update(done, attempts=len(attempts), published_versions=sum(a.passed for a in attempts),
                         refused=[a.reason[:400] for a in attempts if not a.passed],
                         seconds=summary([self.latency[c] for c in ids if c in self.latency]),
                         statuses={k: getattr(info.corrections, k, 0) for k in
                                   ("fixed", "unfixed", "boundary", "contradicted", "conflicts_offline", "unusable",
                                    "rejected", "pending")})
            self.points.append({"corrections": self.total, "version": info.number, **self.score(info)})
        self.rounds.append(entry)
        log(f"shift round {r + 1}: {len(ids)} corrections, version {self.number}, published "
            f"{entry.get('published_versions')} of {entry.get('attempts')} attempts; {self.points[-1]}")


def clean_from(versions: list[dict]) -> int | None:
    """Fewest corrections after which every published version has 0 gross early terminations and 0 false
    successes on the test episodes (None: the last one has some)."""
    for i, v in enumerate(versions):
        if all(w["gross_early"] == 0 and w["false_successes_in_failed"] == 0 for w in versions[i:]):
            return v["corrections"]
    return None


def shift_protocol(b: LayoutB, checkpoint: Path, data_a: Path, work: Path, cache_dir: str,
                   a: argparse.Namespace) -> dict:
    """Rounds of the shift protocol on a fresh server (see :class:`ShiftRun`)."""
    from hilreward.config import DatasetConfig, TrainConfig, from_yaml
    from hilreward.data import open_dataset, split_episodes

    cfg_path = checkpoint / "train_config.yaml"
    train_cfg = from_yaml(cfg_path.read_text()) if cfg_path.is_file() else TrainConfig()
    episodes = [e.index for e in open_dataset(DatasetConfig(root=str(data_a))).episodes]
    held = train_cfg.split.val_episodes or split_episodes(episodes, train_cfg.split.val_fraction,
                                                          train_cfg.split.seed)[1]
    original = Scorer(data_a, sorted(held), checkpoint, cache_dir)
    run = ShiftRun("shift", b, checkpoint, data_a, work, cache_dir, 0, a.seed, a.serve_arg, None,
                   original=original, lag=a.lag)
    log(f"shift: server up in {run.startup_s} s; version 0: {run.points[0]}")
    try:
        for r in range(a.rounds):
            run.shift_round(r, a.send)
        s = summary([run.latency[c] for c in run.submitted if c in run.latency])
        versions = run.score_versions()
        return {**run.result(), "original_episodes": sorted(held), "lag": a.lag, "send": a.send, "seconds_to_version": s,
                "breakdown": run.timings(), "versions": versions, "clean_from": clean_from(versions),
                "original_new_gross": max((v["original"]["gross_early"] + v["original"]["false_successes_in_failed"]
                                           for v in versions), default=0) - (
                    versions[0]["original"]["gross_early"] + versions[0]["original"]["false_successes_in_failed"])}
    finally:
        run.close()


def breakdown(attempts: list, submitted: dict[int, float], latency: dict[int, float]) -> dict:
    """Where the seconds go from each served correction to its version: waiting for an attempt to start (the
    quiet wait, an attempt already running, refused attempts), the attempt (training and gates), then writing
    the version and the server's swap; median and p90 of each over the corrections. ``attempts``: the
    store's records (time = when the attempt ended), ``submitted``: correction id -> unix time stored."""
    parts: dict[str, list[float]] = {"wait_s": [], "attempt_s": [], "publish_and_swap_s": []}
    for cid, seconds in latency.items():
        first = next((a for a in sorted(attempts, key=lambda a: a.time) if a.passed and a.last_correction_id >= cid),
                     None)
        if first is None or cid not in submitted:
            continue
        start = first.metrics.get("started_unix", first.time - first.metrics.get("retrain_seconds", 0.0))
        parts["wait_s"].append(start - submitted[cid])
        parts["attempt_s"].append(first.time - start)
        parts["publish_and_swap_s"].append(submitted[cid] + seconds - first.time)
    out: dict = {k: summary(v) for k, v in parts.items()}
    for key in ("train_seconds", "holdout_seconds", "prepare_seconds", "train_steps"):
        values = [a.metrics[key] for a in attempts if key in a.metrics]
        out[f"attempt_{key}"] = summary(values)
    out["attempts"], out["refused"] = len(attempts), sum(not a.passed for a in attempts)
    return out


def summary(values: list[float]) -> dict | None:
    if not values:
        return None
    a = np.asarray(values)
    return {"n": int(a.size), "median": round(float(np.median(a)), 2), "p90": round(float(np.percentile(a, 90)), 2),
            "max": round(float(a.max()), 2)}


def first_clean(points: list[dict]) -> int | None:
    """Fewest corrections after which gross early terminations stay 0 and false successes stay 0."""
    exact = [p for p in points if not p.get("late")]
    for i, p in enumerate(exact):
        if all(q["gross_early"] == 0 and q["false_successes_in_failed"] == 0 for q in exact[i:]):
            return p["corrections"]
    return None


# --------------------------------------------------------------------------- report
def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("gross_early", "gross early terminations"), ("onset_error_median_frames", "median onset error (frames)"),
              ("false_successes_in_failed", "false successes in failed episodes"), ("accuracy", "frame accuracy")]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, (key, title) in zip(axes.flat, panels):
        for run in result["runs"]:
            x = [p["corrections"] for p in run["points"]]
            y = [np.nan if p[key] is None else p[key] for p in run["points"]]
            line, = ax.plot(x, y, marker="o", ms=3, label=label(run), ls="--" if run["server"] == "baseline" else "-")
            late = [i for i, p in enumerate(run["points"]) if p.get("late")]
            ax.plot([x[i] for i in late], [y[i] for i in late], ls="", marker="x", ms=7, color=line.get_color())
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("corrections (x: after one-frame-late corrections)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{result['task']}: trained on layouts seed {result['seed_a']}, corrected on unseen seed "
                 f"{result['seed_b']} ({len(result['test_episodes'])} test episodes)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)


def label(run: dict) -> str:
    name = {"wrong": "(a) wrong frames in order", "queue": "(b) query queue first", "random": "(c) random frames"}
    return name[run["strategy"]] + (", baseline server" if run["server"] == "baseline" else "")


def write_doc(r: dict, json_path: Path) -> None:
    from run_all import replace_section

    def cell(p: dict) -> str:
        med = "n/a" if p["onset_error_median_frames"] is None else f"{p['onset_error_median_frames']:.0f}"
        return f"{p['gross_early']} / {p['false_successes_in_failed']} / {med} / {p['accuracy']:.3f}"

    runs = r["runs"]
    budgets = sorted({p["corrections"] for run in runs for p in run["points"] if not p.get("late")})
    by = [{p["corrections"]: p for p in run["points"] if not p.get("late")} for run in runs]
    lines = [DOC_START, "## Ever-correcting on unseen layouts", "",
             f"`{r['command']}`, run {r['started_utc']} .. {r['finished_utc']} (`uptime` at start: "
             f"`{r['uptime_start']}`; at end: `{r['uptime_end']}`); raw figures in `bench/results/{json_path.name}`. "
             "From a fresh clone (renders both layouts and trains; `--baseline-src` adds strategy (b) on another "
             "tree's server, side by side; the run below used main at cb90bad, the last commit before this "
             "retrainer work is 90b4aa3): `mkdir -p /tmp/base && git archive 90b4aa3 src | tar -x -C /tmp/base "
             "&& nice -n 10 "
             ".venv/bin/python bench/bench_ever_correcting.py --baseline-src /tmp/base/src --doc`.", "",
             f"`model=scratch` trained on `{r['task']}` rendered at seed {r['seed_a']}; served with retraining "
             f"(default options) by `hilreward serve` on 127.0.0.1; B = seed {r['seed_b']}: episodes "
             f"{r['correction_episodes']} run through the server one per round and are corrected, episodes "
             f"{r['test_episodes']} are the test set. Each round the simulated operator (ground truth) spends up to "
             f"{r['batch']} corrections on what it saw, sent back to back. Cells: gross early terminations "
             f"(> {TOLERANCE_S} s before the true onset) / false successes in failed episodes / median onset error "
             "(frames) / frame accuracy, of the version serving once the round's corrections were trained.", "",
             "| corrections | " + " | ".join(label(run) for run in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for n in budgets:
        lines.append(f"| {n} | " + " | ".join(cell(b[n]) if n in b else "" for b in by) + " |")
    lines += ["", "![curves](ever-correcting.png)", ""]
    for run in runs:
        s, late = run["seconds_to_version"] or {}, run.get("late")
        lines.append(f"- {label(run)}: gross early terminations and false successes at 0 from "
                     f"**{fmt(run['clean_from'])}** corrections on; correction -> serving version: median "
                     f"{s.get('median')} s, p90 {s.get('p90')} s, max **{s.get('max')} s** over {s.get('n')} "
                     f"corrections ({len(run['unserved_corrections'])} never served).")
        if late:
            lines.append(f"  Then {late['rounds']} rounds of one-frame-late corrections ({late['corrections']}; "
                         f"statuses after them: {late['statuses']}; versions published meanwhile: "
                         f"{late['published']}), then {late['exact_corrections']} exact: "
                         f"{'published' if late['published_after'] else '**not published**'} "
                         f"(after {late['seconds_after']} s).")
    lines += ["", "Where the seconds go, per served correction (median / p90; attempt parts: median per attempt):", "",
              "| run | wait for an attempt | attempt | of which training | of which held-out corrections gate | "
              "write + swap | attempts (refused) |", "|---|---|---|---|---|---|---|"]
    for run in runs:
        t = run.get("breakdown") or {}

        def mp(key: str, p90: bool = True) -> str:
            v = t.get(key)
            return "n/a" if not v else f"{v['median']:.1f}" + (f" / {v['p90']:.1f}" if p90 else "")

        lines.append(f"| {label(run)} | {mp('wait_s')} s | {mp('attempt_s')} s | "
                     f"{mp('attempt_train_seconds', False)} s | {mp('attempt_holdout_seconds', False)} s | "
                     f"{mp('publish_and_swap_s')} s | "
                     f"{t.get('attempts')} ({t.get('refused')}) |")
    goals = r.get("goals", {})
    lines += ["", "Goals (issue 12, strategy b on this branch's server): " + "; ".join(
        f"{k}: **{'met' if v else 'missed'}**" for k, v in goals.items()) + ".", "", DOC_END, ""]
    replace_section(DOC, DOC_START, DOC_END, "\n".join(lines))


SHIFT_START, SHIFT_END = "<!-- bench:ever-correcting-shift:start -->", "<!-- bench:ever-correcting-shift:end -->"
SHIFT_GOAL = 40


def shift_label(r: dict) -> str:
    shift = r.get("shift_b") or {}
    light = (shift.get("shift") or {}) != {"brightness": 1.0, "tint": [1.0, 1.0, 1.0], "light_shift": [0.0, 0.0, 0.0],
                                           "camera_jitter": 0.0}
    return f"{r['task']}, layouts{' + lighting' if light else ''}"


def write_shift_doc(results: list[tuple[Path, dict]]) -> None:
    """The "Ever-correcting under a shift" section of docs/benchmarks.md from shift-protocol results (a file whose
    name starts with ``base-`` was run against the retrainer before issue 24, as ``--baseline`` of the table)."""
    from run_all import replace_section

    def name(path: Path, r: dict) -> str:
        return shift_label(r) + (", **retrainer before issue 24**" if path.name.startswith("base-") else "")

    def gfm(p: dict) -> str:
        return f"{p['gross_early']} / {p['false_successes_in_failed']} / {p['missed']}"

    first = results[0][1]
    lines = [SHIFT_START, "## Ever-correcting under a shift (issue 24's protocol)", "",
             f"`model=scratch` trained on 16 episodes of one set of layouts (seed 0), served by `hilreward serve` "
             f"with retraining (default options). B: another {len(first['correction_episodes']) + len(first['test_episodes'])}"
             f" episodes on unseen layouts (seed 1), with or without a lighting change (`hilreward sim "
             f"brightness=0.7 tint=[1.15,1.0,0.8] light_shift=[0.6,0.4,0.2]`). Each round runs B's first "
             f"{len(first['correction_episodes'])} episodes through the server and sends **every frame the served "
             f"version gets wrong, labelled as a key pressed one frame late** (the first frame after each label change "
             f"gets the label before it); `send=round`: all of a round's at once after its last episode, with their "
             f"frames; `send=episode`: each episode's after it, by reference (the console's way). Cells: gross early "
             f"terminations / false successes in failed episodes / missed successes, on B's "
             f"{len(first['test_episodes'])} test episodes (`test`) and on the checkpoint's held-out episodes of the "
             f"training layouts (`original`), of the version serving once the round's corrections were trained. "
             f"Attempts: published / all. Seconds: correction -> first serving version that covers it, median.", "",
             "| task, shift | send | round | corrections | attempts | statuses after it | test | original | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for path, r in results:
        run = r["run"]
        lines.append(f"| {name(path, r)} | {run['send']} | 0 | 0 | | | {gfm(run['points'][0])} | "
                     f"{gfm(run['points'][0]['original'])} | |")
        points = iter(run["points"][1:])
        for rd in run["rounds"]:
            p = next(points) if rd["corrections"] else None
            st = ", ".join(f"{v} {k}" for k, v in (rd.get("statuses") or {}).items() if v)
            sec = (rd.get("seconds") or {}).get("median")
            lines.append(f"| | | {rd['round']} | {rd['corrections']} | {rd.get('published_versions', '')} / "
                         f"{rd.get('attempts', '')} | {st} | {gfm(p) if p else ''} | {gfm(p['original']) if p else ''} "
                         f"| {'' if sec is None else sec} |")
    lines += ["", "Every published version scored afterwards (corrections it covers: test gross / false successes):", ""]
    for path, r in results:
        run = r["run"]
        curve = " ".join(f"{v['corrections']}:{v['gross_early']}/{v['false_successes_in_failed']}"
                         for v in run.get("versions", []))
        s = run.get("seconds_to_version") or {}
        lines.append(f"- {name(path, r)}, send={run['send']}: {curve}; clean from **{fmt(run.get('clean_from'))}** "
                     f"corrections on; correction -> serving median **{s.get('median')} s** (p90 {s.get('p90')}, max "
                     f"{s.get('max')}, {s.get('n')} corrections); new gross errors on the original held-out episodes: "
                     f"{run.get('original_new_gross')}. Raw: `{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}`; "
                     f"`uptime` at start: {r['uptime_start'].split('load average:')[-1].strip()}.")
    lines += ["", SHIFT_END, ""]
    replace_section(DOC, SHIFT_START, SHIFT_END, "\n".join(lines))


def fmt(x) -> str:
    return "never" if x is None else str(x)


# --------------------------------------------------------------------------- main
def serve_and_correct(strategy: str, server_src: str | None, b: LayoutB, checkpoint: Path, data_a: Path, work: Path,
                      cache_dir: str, a: argparse.Namespace) -> dict:
    """One strategy on a fresh server: rounds up to ``--max-corrections``; after (b), the one-frame-late rounds."""
    run = Run(strategy, b, checkpoint, data_a, work, cache_dir, a.batch, a.seed, a.serve_arg, server_src)
    log(f"{strategy} ({run.server}): server up in {run.startup_s} s; version 0: {run.points[0]}")
    try:
        k, late = 0, None
        while run.total < a.max_corrections and k < 3 * len(b.correction_episodes):
            run.round(b.correction_episodes[k % len(b.correction_episodes)], k + 1, strategy)
            k += 1
        if strategy == "queue" and a.late_rounds:
            before = run.total
            for _ in range(a.late_rounds):
                run.late_round(b.onsets(b.correction_episodes), k + 1)
                k += 1
            late_rounds = run.rounds[-a.late_rounds:]
            run.round(b.correction_episodes[k % len(b.correction_episodes)], k + 1, strategy, at_least_one=True)
            after = run.rounds[-1]
            late = {"rounds": a.late_rounds, "corrections": sum(r["corrections"] for r in late_rounds),
                    "published": sum(bool(r.get("published")) for r in late_rounds),
                    "statuses": late_rounds[-1].get("statuses"), "exact_corrections": after["corrections"],
                    "published_after": bool(after.get("published")),
                    "seconds_after": max((s for s in after.get("seconds", []) if s is not None), default=None),
                    "corrections_before": before}
        return {**run.result(), "clean_from": first_clean(run.points), "late": late, "breakdown": run.timings()}
    finally:
        run.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="door-open")
    ap.add_argument("--seed-a", type=int, default=0)
    ap.add_argument("--seed-b", type=int, default=1)
    ap.add_argument("--episodes", type=int, default=20, help="episodes rendered per layout")
    ap.add_argument("--a", default=None, help="existing dataset of layout A (else rendered)")
    ap.add_argument("--b", default=None, help="existing dataset of layout B (else rendered)")
    ap.add_argument("--checkpoint", default=None, help="checkpoint trained on A (else `hilreward train model=scratch`)")
    ap.add_argument("--correction-episodes", type=int, default=10,
                    help="B's first N episodes are corrected, the rest are the test episodes")
    ap.add_argument("--batch", type=int, default=5, help="corrections per round (one episode) at most")
    ap.add_argument("--max-corrections", type=int, default=40)
    ap.add_argument("--late-rounds", type=int, default=3, help="rounds of one-frame-late corrections after (b)")
    ap.add_argument("--strategies", nargs="*", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--serve-arg", nargs="*", default=[], help="extra `hilreward serve` overrides")
    ap.add_argument("--baseline-src", default=None,
                    help="also run strategy (b) first with the server from this source tree (its PYTHONPATH), e.g. "
                         "`git archive main src | tar -x -C /tmp/base` then /tmp/base/src")
    ap.add_argument("--protocol", choices=("strategies", "shift"), default="strategies",
                    help="strategies: the query-queue / wrong / random strategies (issue 12); shift: every wrong frame "
                         "of the correction episodes, keypress-late labels, --rounds rounds (issue 24)")
    ap.add_argument("--rounds", type=int, default=3, help="shift protocol: rounds over the correction episodes")
    ap.add_argument("--lag", type=int, default=1, help="shift protocol: frames a label is late at each change")
    ap.add_argument("--send", choices=("episode", "round"), default="round",
                    help="shift protocol: send each episode's wrong frames after it (by reference), or the whole "
                         "round's after its last episode (with their frames)")
    ap.add_argument("--seed", type=int, default=0, help="random strategy's seed")
    ap.add_argument("--cache-dir", default=None,
                    help="frame/feature cache and rendered sets (default $HILREWARD_CACHE or ~/.cache/hilreward)")
    ap.add_argument("--out", default=None, help="results JSON (default bench/results/ever-correcting-<date>.json)")
    ap.add_argument("--doc", action="store_true", help="rewrite the docs section and docs/ever-correcting.png")
    ap.add_argument("--docs-from", default=None, help="only rewrite the docs section and figure from this JSON")
    ap.add_argument("--docs-shift", nargs="*", default=None,
                    help="only rewrite the shift protocol's docs section from these result JSONs")
    a = ap.parse_args()
    if a.docs_shift:
        write_shift_doc([(Path(f).resolve(), json.loads(Path(f).read_text())) for f in a.docs_shift])
        return
    if a.docs_from:
        result = json.loads(Path(a.docs_from).read_text())
        plot(result, FIGURE)
        write_doc(result, Path(a.docs_from))
        return
    from hilreward.data.cache import cache_root

    cache = cache_root(a.cache_dir)
    cache_dir = str(cache)
    started, up0 = dt.datetime.now(dt.timezone.utc), uptime()
    work = Path(tempfile.mkdtemp(prefix="hilreward-bench-ever-"))
    log(f"work dir {work}; {up0}")
    data_a = rendered(a.task, a.seed_a, a.episodes, a.a, cache)
    data_b = rendered(a.task, a.seed_b, a.episodes, a.b, cache)
    if a.checkpoint:
        checkpoint = Path(a.checkpoint).resolve()
    else:
        log(f"training model=scratch on {data_a}")
        t0 = time.perf_counter()
        hilreward("train", f"dataset.root={data_a}", "model=scratch", f"output_dir={work / 'train'}",
                  f"cache_dir={cache_dir}", what="hilreward train")
        log(f"trained in {time.perf_counter() - t0:.0f} s")
        checkpoint = work / "train" / "checkpoints" / "best"
    b = LayoutB(data_b, checkpoint, a.correction_episodes, cache_dir)
    if a.protocol == "shift":
        result = {"bench": "ever_correcting_shift", "task": a.task, "dataset_a": str(data_a),
                  "dataset_b": str(data_b), "shift_b": sim_record(data_b), "checkpoint": str(checkpoint),
                  "correction_episodes": b.correction_episodes, "test_episodes": b.test_episodes,
                  "tolerance_s": TOLERANCE_S, "fps": b.fps, "serve_args": a.serve_arg,
                  "command": "bench/bench_ever_correcting.py " + " ".join(sys.argv[1:]),
                  "run": shift_protocol(b, checkpoint, data_a, work, cache_dir, a), "uptime_start": up0,
                  "uptime_end": uptime(), "started_utc": started.isoformat(timespec="seconds"),
                  "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        out = Path(a.out or HERE / "results" / f"ever-correcting-shift-{a.task}-{started.date().isoformat()}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {out}")
        print(json.dumps({"rounds": result["run"]["rounds"], "points": result["run"]["points"]}, indent=1))
        return
    plan = [(s, None) for s in a.strategies]
    if a.baseline_src:  # strategy (b) on the baseline's server first, then the branch's: side by side in one run
        plan = [("queue", str(Path(a.baseline_src).resolve()))] + plan
    runs = [serve_and_correct(strategy, src, b, checkpoint, data_a, work, cache_dir, a) for strategy, src in plan]
    queue = next((r for r in runs if r["strategy"] == "queue" and r["server"] == "branch"), None)
    result = {"bench": "ever_correcting", "task": a.task, "seed_a": a.seed_a, "seed_b": a.seed_b,
              "dataset_a": str(data_a), "dataset_b": str(data_b), "checkpoint": str(checkpoint),
              "correction_episodes": b.correction_episodes, "test_episodes": b.test_episodes, "batch": a.batch,
              "tolerance_s": TOLERANCE_S, "fps": b.fps,
              "command": "bench/bench_ever_correcting.py " + " ".join(sys.argv[1:]),
              "runs": runs, "uptime_start": up0, "uptime_end": uptime(),
              "started_utc": started.isoformat(timespec="seconds"),
              "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if queue:
        s = queue["seconds_to_version"] or {}
        late = queue.get("late") or {}
        result["goals"] = {
            "(b) <= 20 corrections to 0 gross early and 0 false successes":
                queue["clean_from"] is not None and queue["clean_from"] <= 20,
            "correction -> serving version <= 10 s (max)": bool(s) and s["max"] <= 10 and not
            queue["unserved_corrections"],
            "publishes after one-frame-late corrections": bool(late.get("published_after"))}
    out = Path(a.out or HERE / "results" / f"ever-correcting-{started.date().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}")
    if a.doc:
        plot(result, FIGURE)
        write_doc(result, out)
    keys = ("strategy", "server", "clean_from", "seconds_to_version", "late")
    print(json.dumps({"goals": result.get("goals"), "runs": [{k: r[k] for k in keys} for r in runs]}, indent=2))


if __name__ == "__main__":
    main()
