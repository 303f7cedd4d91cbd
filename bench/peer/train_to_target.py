"""Time LeRobot's own trainer (``lerobot-train``) to a held-out accuracy target.

1. Before the clock starts: decode the held-out episodes through LeRobot's ``LeRobotDataset`` and
   score the untrained model on them.
2. Start ``lerobot-train`` on the training episodes with a checkpoint every ``--save-freq`` steps.
3. Stop it when it exits or at ``--cap-s``; then (trainer stopped, so nothing competes for the CPU)
   evaluate about ``--eval-budget`` checkpoints spread evenly in time, each loaded end to end through
   ``Classifier.from_pretrained`` + its saved preprocessor, and refine around the first that reaches
   the target; likewise for the first *deployable* checkpoint (``--deployable-target`` accuracy against the
   exact per-frame success and no gross false termination at its threshold, 0.5, counted by hilreward's own
   episode rule, ``src/hilreward/evaluation/episodes.py``, loaded from its file). Not reached: the time is at
   least the cap (a lower bound).
A checkpoint's time is the newest mtime of its files minus the moment lerobot-train was launched.
Usage: python train_to_target.py ENCODER --dataset ROOT --out DIR [--train-episodes 0-15] [--eval-episodes 16-19]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import CAMERAS, build_classifier, build_config, dataset_stats, emit, set_threads, versions


def episode_list(spec: str) -> list[int]:
    lo, _, hi = spec.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def load_heldout(root: str, episodes: list[int]) -> dict:
    """Held-out frames as LeRobot's loader yields them (float CHW in [0, 1]) plus both label columns."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/" + Path(root).name, root=root, episodes=episodes)
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=False, num_workers=0)
    out: dict[str, list] = {k: [] for k in (*CAMERAS, "next.reward", "observation.success", "episode_index",
                                           "frame_index")}
    for batch in loader:
        for k in out:
            out[k].append(batch[k])
    return {k: torch.cat(v) for k, v in out.items()}


class HeldoutEvaluator:
    """Held-out accuracy of a lerobot-train checkpoint, loaded and run the way LeRobot loads it.

    Every checkpoint goes through ``Classifier.from_pretrained`` + its saved preprocessor and the full
    encoder: the "frozen" encoder's BatchNorm running statistics keep updating in train mode, so
    encoder outputs differ from checkpoint to checkpoint and cannot be cached.
    """

    def __init__(self, data: dict, fps: float, tolerance_s: float = 0.5):
        self.pixels = {k: data[k] for k in CAMERAS}
        self.labels = {"next.reward": (data["next.reward"].reshape(-1) > 0.5).numpy(),
                       "observation.success": data["observation.success"].reshape(-1).bool().numpy()}
        self.episode = data["episode_index"].reshape(-1).numpy()
        self.frame = data["frame_index"].reshape(-1).numpy()
        self.fps, self.tolerance_s = fps, tolerance_s

    def probabilities(self, model, pre) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(self.labels["next.reward"]), 64):
                batch = pre({k: self.pixels[k][i:i + 64] for k in CAMERAS})
                out.append(model.predict([batch[k] for k in CAMERAS]).probabilities)
        return torch.cat(out).numpy()

    def accuracy(self, model, pre) -> dict:
        """Accuracy against both label columns, and the episode counts against the exact success, at 0.5."""
        probs = self.probabilities(model.eval(), pre)
        pred = probs > 0.5
        out = {name: float((pred == lab).mean()) for name, lab in self.labels.items()}
        episodes = EPISODES.episode_metrics(self.episode, self.frame, self.labels["observation.success"].astype(int),
                                            probs, 0.5, 1, self.fps, self.tolerance_s)
        return out | {k: episodes[k] for k in ("gross_false_terminations", "false_successes_in_failed_episodes",
                                               "missed_successes", "episodes")}

    def checkpoint_accuracy(self, pretrained_dir: Path) -> dict:
        from lerobot.processor import PolicyProcessorPipeline
        from lerobot.rewards.classifier.modeling_classifier import Classifier

        model = Classifier.from_pretrained(str(pretrained_dir))
        pre = PolicyProcessorPipeline.from_pretrained(str(pretrained_dir), config_filename="classifier_preprocessor.json")
        return self.accuracy(model, pre)

    def untrained_accuracy(self, encoder: str, root: str) -> dict:
        from lerobot.rewards.classifier.processor_classifier import make_classifier_processor

        pre, _ = make_classifier_processor(build_config(encoder), dataset_stats=dataset_stats(root))
        return self.accuracy(build_classifier(encoder), pre)


def load_episode_rule():
    """hilreward's episode metrics module, from its file (numpy only): the one definition of a gross false
    termination, so both sides are judged by the same rule."""
    path = Path(__file__).resolve().parents[2] / "src" / "hilreward" / "evaluation" / "episodes.py"
    spec = importlib.util.spec_from_file_location("hilreward_episode_rule", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EPISODES = load_episode_rule()


def pick_for_eval(times: list[float], budget: int) -> list[int]:
    """Indices of about ``budget`` checkpoints spread evenly in time (always including the last)."""
    if len(times) <= budget:
        return list(range(len(times)))
    grid = np.linspace(times[0], times[-1], budget)
    return sorted({int(np.argmin(np.abs(np.asarray(times) - t))) for t in grid})


def trainer_command(args, train_eps: list[int]) -> list[str]:
    feats = {k: {"type": "VISUAL", "shape": [3, 128, 128]} for k in CAMERAS}
    exe = str(Path(sys.executable).parent / "lerobot-train")
    return [exe, f"--dataset.repo_id=local/{Path(args.dataset).name}", f"--dataset.root={args.dataset}",
            f"--dataset.episodes={json.dumps(train_eps)}", "--reward_model.type=reward_classifier",
            f"--reward_model.model_name={args.encoder}", f"--reward_model.num_cameras={len(CAMERAS)}",
            f"--reward_model.input_features={json.dumps(feats)}", "--reward_model.device=cpu",
            "--reward_model.push_to_hub=false", f"--output_dir={args.out}/train", "--job_name=bench",
            f"--batch_size={args.batch}", f"--steps={args.max_steps}", "--log_freq=10",
            f"--save_freq={args.save_freq}", "--num_workers=0", "--wandb.enable=false"]


def complete_checkpoints(ckpt_root: Path) -> list[Path]:
    """Numbered checkpoint dirs that lerobot-train has finished writing (``last`` points at or past them)."""
    last = ckpt_root / "last"
    if not last.is_symlink():
        return []
    newest = int(os.readlink(last))
    return sorted(p for p in ckpt_root.iterdir() if p.name.isdigit() and int(p.name) <= newest)


def newest_mtime(path: Path) -> float:
    return max(f.stat().st_mtime for f in path.rglob("*") if f.is_file())


def parse_log(log: Path) -> dict:
    """Mean update and data-loading seconds per step from lerobot-train's log lines."""
    upd, dat, step = [], [], 0
    for m in re.finditer(r"step:(\S+) .*?updt_s:([\d.]+) data_s:([\d.]+)", log.read_text(errors="replace")):
        upd.append(float(m.group(2)))
        dat.append(float(m.group(3)))
        step = m.group(1)
    return {"last_logged_step": step, "mean_update_s": float(np.mean(upd)) if upd else None,
            "mean_data_s": float(np.mean(dat)) if dat else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("encoder")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-episodes", default="0-15")
    ap.add_argument("--eval-episodes", default="16-19")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--label", default="next.reward", choices=["next.reward", "observation.success"],
                    help="label the target is checked against (lerobot-train trains on next.reward)")
    ap.add_argument("--deployable-target", type=float, default=0.99,
                    help="deployable: this accuracy against observation.success and no gross false termination")
    ap.add_argument("--cap-s", type=float, default=1800.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--save-freq", type=int, default=25)
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--eval-budget", type=int, default=8, help="checkpoints evaluated evenly in time, then refined")
    ap.add_argument("--at-times", type=float, nargs="*", default=[],
                    help="also report the newest checkpoint at or before each of these wall times (s)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    set_threads(args.threads)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    t_prep = time.perf_counter()
    data = load_heldout(args.dataset, episode_list(args.eval_episodes))
    fps = json.loads((Path(args.dataset) / "meta" / "info.json").read_text())["fps"]
    evaluator = HeldoutEvaluator(data, fps)
    untrained = evaluator.untrained_accuracy(args.encoder, args.dataset)
    prep_s = time.perf_counter() - t_prep

    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads), WANDB_MODE="disabled")
    log = out / "lerobot-train.log"
    ckpt_root = out / "train" / "checkpoints"
    landed: dict[str, float] = {}
    t0 = time.time()
    with open(log, "w") as logf:
        proc = subprocess.Popen(trainer_command(args, episode_list(args.train_episodes)), stdout=logf,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            while proc.poll() is None and time.time() - t0 < args.cap_s:
                time.sleep(1.0)
        finally:
            stopped_at = time.time() - t0
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    for ck in complete_checkpoints(ckpt_root) if ckpt_root.exists() else []:
        landed[ck.name] = newest_mtime(ck) - t0
    names = [n for n in sorted(landed) if landed[n] <= args.cap_s]

    # Evaluate after the trainer stopped, so evaluation never competes with it for the CPU.
    t_eval = time.perf_counter()
    results: dict[int, dict] = {}

    def evaluate(i: int) -> dict:
        if i not in results:
            acc = evaluator.checkpoint_accuracy(ckpt_root / names[i] / "pretrained_model")
            results[i] = {"step": int(names[i]), "elapsed_s": landed[names[i]], **acc}
            print(json.dumps(results[i]), file=sys.stderr, flush=True)
        return results[i]

    def first_meeting(meets) -> int | None:
        first = next((i for i in picked if meets(evaluate(i))), None)
        if first is not None:  # refine: the earliest checkpoint between the previous evaluated one and `first`
            prev = max([i for i in picked if i < first], default=-1)
            first = next(i for i in range(prev + 1, first + 1) if meets(evaluate(i)))
        return first

    picked = pick_for_eval([landed[n] for n in names], args.eval_budget)
    first = first_meeting(lambda r: r[args.label] >= args.target)
    first_deployable = first_meeting(lambda r: r["observation.success"] >= args.deployable_target
                                     and r["gross_false_terminations"] == 0)
    for i in picked:
        evaluate(i)
    at_times = {}
    for t in args.at_times:  # the model a user would hold after t seconds of lerobot-train
        i = max((k for k, n in enumerate(names) if landed[n] <= t), default=None)
        at_times[str(t)] = evaluate(i) if i is not None else {"step": 0, "elapsed_s": 0.0, **untrained,
                                                               "note": "no checkpoint yet: the untrained model"}
    eval_s = time.perf_counter() - t_eval
    curve = [results[i] for i in sorted(results)]
    last = results.get(len(names) - 1)
    reached = results[first] if first is not None else None
    keep_idx = first if first is not None else (len(names) - 1 if names else None)
    if keep_idx is not None:
        shutil.copytree(ckpt_root / names[keep_idx] / "pretrained_model", out / "checkpoint")
    shutil.rmtree(out / "train" / "checkpoints", ignore_errors=True)  # about 50 MB per checkpoint
    best = max(curve, key=lambda p: p[args.label]) if curve else None
    deployable = results[first_deployable] if first_deployable is not None else None
    closest = min(curve, key=lambda p: (p["gross_false_terminations"], -p["observation.success"])) if curve else None
    emit({"side": "lerobot", "what": "time_to_target", "target": args.target, "label": args.label,
          "reached": reached is not None, "time_to_target_s": reached["elapsed_s"] if reached else None,
          "stopped_at_s": stopped_at, "cap_s": args.cap_s, "batch": args.batch, "save_freq": args.save_freq,
          "checkpoints_saved": len(names), "checkpoints_evaluated": len(results),
          "untrained_accuracy": untrained, "best": best, "last": last, "curve": curve, "at_times": at_times,
          "deployable": {"target": args.deployable_target, "label": "observation.success", "threshold": 0.5,
                         "reached": deployable is not None,
                         "time_s": deployable["elapsed_s"] if deployable else None, "checkpoint": deployable,
                         "closest": closest},
          "heldout_frames": int(len(evaluator.labels["next.reward"])), "prepare_s": prep_s, "eval_s": eval_s,
          "trainer_exit": proc.returncode, "trainer_log": parse_log(log),
          "checkpoint": str(out / "checkpoint") if keep_idx is not None else None, "versions": versions()})


if __name__ == "__main__":
    main()
