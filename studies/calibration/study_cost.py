"""Cheap calibration for ``model=scratch`` (issue 32): what calibration by folds can cost, and what it gives.

Issue 26's calibration by folds trained 4 fold models and the final model, each of the run's 1200 steps: 5 trainings,
6.0x the cost of training once. Issue 32 asks for <= 1.5x. This study measures the candidates on issue 26's ten tasks
(``study_calibration.py``'s protocol: ``model=scratch`` trained on 16 episodes, scored on unseen layouts for the 7
rendered tasks and on episodes 16-19 for the three shared sets), with the split of issue 32 (the stratified 20 %
split stays held out; folds run inside the 13 training episodes). One training run per task and fold length gives two
candidates at once:

* ``final``: the final model (1200 steps on the training episodes) at the threshold and temperature calibrated on
  the out-of-fold logits of fold models of ``S`` steps (``training.calibrate=cv training.calibrate_fold_steps=S``):
  the calibration costs 4 x S / 1200 trainings on top of the final one;
* ``ensemble``: the 4 fold models of the same run as the deployed model (the mean of their logits), calibrated on the
  same out-of-fold logits (each episode scored by the one member that never saw it); no final model: the run costs
  4 x S steps in all.

and ``off`` (``training.calibrate=off``, the same training without calibration) gives the cost they are compared with.

    python studies/calibration/study_cost.py run --settings off cv-f300 cv-f450 --out /work/data-sim/study32
    python studies/calibration/study_cost.py report --out /work/data-sim/study32 --json studies/calibration/results/cost-<date>.json

Renders (issue 26's, without the lighting sets): ``hilreward sim task=<task> seed=0 episodes=16 out=<sim>/<task>-s0-e16``
and ``seed=1 episodes=20`` (40 for door-open and window-open) ``out=<sim>/<task>-s1-e<n>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "presets"))
from study_presets import SHARED_TASKS, SIM_TASKS, _atomic_json  # noqa: E402

TRAIN_EPISODES = list(range(16))
SHARED_TEST = [16, 17, 18, 19]
KEYS = ("accuracy", "precision", "recall", "gross_false_terminations", "false_successes_in_failed_episodes",
        "false_terminations", "missed_successes")


def settings(name: str) -> list[str]:
    if name == "off":
        return ["training.calibrate=off"]
    if name == "auto":  # the default as shipped: at 16 episodes the fold models are the deployed ensemble
        return []
    if name.startswith("cv-f"):
        return ["training.calibrate=cv", f"training.calibrate_fold_steps={int(name[4:])}"]
    if name.startswith("ens"):  # the fold models alone (a one-step final model stands in; only the ensemble counts)
        return ["training.calibrate=cv", f"training.calibrate_fold_steps={int(name[3:])}", "training.steps=1",
                "training.eval_freq=0"]
    raise SystemExit(f"unknown setting {name!r} (off, cv-f<steps>, ens<steps>)")


def task_sets(args) -> dict[str, dict]:
    sim, out = Path(args.sim), {}
    for task, name in SHARED_TASKS.items():
        root = Path(args.shared) / name
        if (root / "meta" / "info.json").is_file():
            out[task] = {"train": root, "episodes": TRAIN_EPISODES, "test": (root, SHARED_TEST), "test_name": "heldout"}
    for task in SIM_TASKS:
        train = sim / f"{task}-s0-e16"
        unseen = next((p for p in (sim / f"{task}-s1-e20", sim / f"{task}-s1-e40") if (p / "meta/info.json").is_file()),
                      None)
        if (train / "meta" / "info.json").is_file() and unseen is not None:
            out[task] = {"train": train, "episodes": None, "test": (unseen, None), "test_name": "unseen"}
    return out


def logits_of(ckpt: Path, root: Path, episodes):
    from hilreward.config import DatasetConfig, LabelConfig
    from hilreward.data import load_frame_data
    from hilreward.evaluation.evaluate import run_model
    from hilreward.models import RewardClassifier

    model = RewardClassifier.from_pretrained(ckpt)
    data = load_frame_data(DatasetConfig(root=str(root), episodes=episodes), LabelConfig(),
                           tuple(model.config.image_size))
    logits, _ = run_model(model, {k: data.images[k] for k in model.config.camera_keys})
    return model, data, logits


def scored(data, logits: np.ndarray, temperature: float, threshold: float) -> dict:
    from hilreward.evaluation.calibration import sigmoid
    from hilreward.evaluation.metrics import Predictions, at_threshold

    p = Predictions(data.episode_index, data.frame_index, data.labels, sigmoid(logits / temperature))
    episodes = int(np.unique(data.episode_index).size)
    return {which: {k: at_threshold(p, t, 1, data.fps)[k] for k in KEYS} | {"threshold": t, "episodes": episodes}
            for which, t in (("own", threshold), ("at_0.5", 0.5))}


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(args) -> None:
    from hilreward.config import compose
    from hilreward.evaluation.calibration import calibrate
    from hilreward.training import train

    for task in args.tasks or list(task_sets(args)):  # task by task: the settings compared run under like load
        for setting in args.settings:
            sets = task_sets(args)
            if task not in sets:
                continue
            s = sets[task]
            out = Path(args.out) / task / setting
            path = out / "result.json"
            result = json.loads(path.read_text()) if path.is_file() else {}
            run_dir = out / "run"
            if "train_s" not in result:
                t0, cpu0 = time.time(), _cpu()
                overrides = [f"dataset.root={s['train']}", "model=scratch", f"output_dir={run_dir}", "resume=true",
                             f"training.threads={args.threads}", *settings(setting)]
                if s["episodes"] is not None:
                    overrides.append(f"dataset.episodes={s['episodes']}")
                ckpt = train(compose(overrides))
                config = json.loads((ckpt / "config.json").read_text())
                metrics = json.loads((run_dir / "metrics.json").read_text())
                result = {"task": task, "setting": setting, "train_s": time.time() - t0, "cpu_s": _cpu() - cpu0,
                          "load": os.getloadavg()[0],
                          "calibration_s": (config.get("calibration") or {}).get("seconds"),
                          "val_episodes": metrics["val_episodes"], "threshold": config["threshold"],
                          "temperature": config["temperature"], "calibration": config.get("calibration")}
                _atomic_json(path, result)
            if "tests" in result:
                continue
            root, episodes = s["test"]
            model, data, logits = logits_of(run_dir / "checkpoints" / "best", root, episodes)
            tests = {} if setting.startswith("ens") else {"final": scored(data, logits, model.temperature,
                                                                            model.threshold)}
            folds = sorted((run_dir / "calibration" / "folds").glob("*/checkpoints/last"))
            if folds:
                members = np.stack([logits_of(f, root, episodes)[2] for f in folds])
                oof = np.load(run_dir / "calibration" / "out_of_fold.npz")
                cal = calibrate(oof["episode"], oof["frame"], oof["labels"], oof["logits"], fps=float(oof["fps"]))
                threshold = cal.threshold if cal.threshold is not None else 0.5
                tests["ensemble"] = scored(data, members.mean(axis=0), cal.temperature, threshold)
                tests["ensemble"]["calibration"] = {k: cal.details.get(k) for k in ("enough", "reason", "positives",
                                                                                    "success_episodes")}
                tests["members"] = [scored(data, m, cal.temperature, threshold)["own"] for m in members]
                np.savez(out / "test-logits.npz", final=logits, members=members, labels=data.labels,
                         episode=data.episode_index, frame=data.frame_index)
            result["tests"] = tests
            result["test_set"] = s["test_name"]
            _atomic_json(path, result)
            line = {"task": task, "setting": setting, "train_s": round(result["train_s"]),
                    **{k: (round(v["own"]["accuracy"], 4), v["own"]["gross_false_terminations"])
                       for k, v in tests.items() if k != "members"}}
            print(json.dumps(line), flush=True)


def report(args) -> dict:
    results: dict[str, dict[str, dict]] = {}
    for path in sorted(Path(args.out).glob("*/*/result.json")):
        r = json.loads(path.read_text())
        if "tests" in r:
            results.setdefault(r["setting"], {})[r["task"]] = r
    out: dict = {"settings": {}, "results": results}
    off = results.get("off", {})
    for setting, per in sorted(results.items()):
        for variant in ("final", "ensemble"):
            rows = {t: r["tests"][variant] for t, r in per.items() if variant in r["tests"]}
            if not rows:
                continue
            # CPU seconds (the machine is shared: wall time moves with the load); the fold models alone cost the run's
            # CPU time less the final model's, which is the same training as ``off``'s
            if variant == "final":
                cost = {t: r["cpu_s"] / off[t]["cpu_s"] for t, r in per.items() if t in off}
                backed = sum(bool((r.get("calibration") or {}).get("enough")) for r in per.values())
            else:
                cost = {t: (r["cpu_s"] - (0 if setting.startswith("ens") else off[t]["cpu_s"])) / off[t]["cpu_s"]
                        for t, r in per.items() if t in off}
                backed = sum(bool(v["calibration"]["enough"]) for v in rows.values())
            name = f"{setting}/{variant}" if setting != "off" else "off"
            out["settings"][name] = {
                "tasks": len(rows), "evidence_backed": backed,
                "gross": sum(v["own"]["gross_false_terminations"] for v in rows.values()),
                "false_successes": sum(v["own"]["false_successes_in_failed_episodes"] for v in rows.values()),
                "missed": sum(v["own"]["missed_successes"] for v in rows.values()),
                "mean_accuracy": float(np.mean([v["own"]["accuracy"] for v in rows.values()])),
                "gross_at_0.5": sum(v["at_0.5"]["gross_false_terminations"] for v in rows.values()),
                "mean_accuracy_at_0.5": float(np.mean([v["at_0.5"]["accuracy"] for v in rows.values()])),
                "cost_vs_off": {t: round(c, 3) for t, c in sorted(cost.items())},
                "cost_vs_off_median": float(np.median(list(cost.values()))) if cost else None,
                "per_task": {t: [round(v["own"]["accuracy"], 4), v["own"]["gross_false_terminations"]]
                             for t, v in sorted(rows.items())},
            }
    for name, s in out["settings"].items():
        print(f"{name:22s} tasks {s['tasks']:2d} backed {s['evidence_backed']:2d} gross {s['gross']:2d} "
              f"(0.5: {s['gross_at_0.5']:2d}) missed {s['missed']:2d} acc {100 * s['mean_accuracy']:.2f} % "
              f"(0.5: {100 * s['mean_accuracy_at_0.5']:.2f} %) cost x{s['cost_vs_off_median'] or float('nan'):.2f}")
    if args.json:
        _atomic_json(Path(args.json), out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("run", "report"):
        p = sub.add_parser(name)
        p.add_argument("--out", required=True)
        p.add_argument("--sim", default="/work/data-sim")
        p.add_argument("--shared", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
        p.add_argument("--settings", nargs="+", default=["off", "cv-f300"])
        p.add_argument("--tasks", nargs="*")
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--json")
    args = ap.parse_args()
    {"run": run, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
