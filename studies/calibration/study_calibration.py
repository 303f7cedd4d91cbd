"""Calibration study (issue 26): do thresholds hold at the scale people record, and does colour jitter help under a
lighting change?

Every task trains a fresh ``model=scratch`` classifier on 16 episodes with the default calibration (``auto``: at 16
episodes the 20 % split holds 3 episodes, too little evidence, so it calibrates by folds) and is scored at its own
threshold and at 0.5 on its test sets: for the 7 rendered tasks (``studies/presets/study_presets.py``'s) every episode of
``<task>-s1-e*`` (another seed: unseen layouts) and of ``<task>-s1-e*-light`` (the same layouts under another
lighting: ``brightness=0.6 tint=[1.2,1.0,0.8] light_shift=[0.8,0.5,0.3]``), trained on ``<task>-s0-e16``; for the
three shared sets (no second seed) episodes 16-19, trained on 0-15. Settings: ``cv`` (the default), ``cv-color``
(plus colour jitter at LeRobot's ``image_transforms`` ranges) and ``heldout`` (``training.calibrate=heldout``,
the calibration before this study: 3 of the 16 episodes held out). Each (task, setting) is cached as JSON with the
raw test logits (.npz), so a killed study resumes where it stopped.

    for task in coffee-button faucet-open window-close lever-pull plate-slide; do   # door-open, window-open: e40
      hilreward sim task=$task seed=0 episodes=16 out=/work/data-sim/$task-s0-e16
      hilreward sim task=$task seed=1 episodes=20 out=/work/data-sim/$task-s1-e20
      hilreward sim task=$task seed=1 episodes=20 out=/work/data-sim/$task-s1-e20-light \\
          brightness=0.6 tint=[1.2,1.0,0.8] light_shift=[0.8,0.5,0.3]
    done
    OMP_WAIT_POLICY=PASSIVE nice -n 10 python studies/calibration/study_calibration.py run --settings cv --out /work/data-sim/study26
    python studies/calibration/study_calibration.py report --out /work/data-sim/study26 --json studies/calibration/results/calibration-<date>.json

``report`` prints the tables of docs/calibration.md and chooses the augmentation by leave-one-task-out: for each
rendered task, the setting with the fewest gross false terminations under the lighting change on the *other* tasks
(ties: fewer on unchanged lighting, then the higher mean accuracy).
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

COLOR = ["augmentation.brightness=0.2", "augmentation.contrast=0.2", "augmentation.saturation=0.5",
         "augmentation.hue=0.05"]
"""LeRobot's ``ImageTransformsConfig`` defaults (brightness and contrast 0.8-1.2, saturation 0.5-1.5, hue +-0.05),
chosen before seeing any result of this study."""
SETTINGS = {"cv": [], "cv-color": COLOR, "heldout": ["training.calibrate=heldout"],
            "heldout-color": ["training.calibrate=heldout", *COLOR]}
AUGMENTATION_PAIRS = (("cv", "cv-color"), ("heldout", "heldout-color"))
"""Without and with colour jitter, calibrated alike: ``heldout`` trains once (no fold models), so its pair measures
the augmentation's effect on the model at a fifth of ``cv``'s cost."""
CAL_KEYS = ("method", "enough", "positives", "success_episodes", "failed_episodes", "reason", "rule", "fold_steps",
            "seconds", "out_of_fold", "interval", "episodes")
TRAIN_EPISODES = list(range(16))
SHARED_TEST = [16, 17, 18, 19]
KEYS = ("accuracy", "precision", "recall", "gross_false_terminations", "false_successes_in_failed_episodes",
        "false_terminations", "missed_successes")


def _first(*paths: Path) -> Path | None:
    return next((p for p in paths if (p / "meta" / "info.json").is_file()), None)


def task_sets(args) -> dict[str, dict]:
    """task -> {"train": root, "episodes": list | None, "tests": {name: (root, episodes | None)}}."""
    sim, out = Path(args.sim), {}
    for task, name in SHARED_TASKS.items():
        root = Path(args.shared) / name
        if (root / "meta" / "info.json").is_file():
            out[task] = {"train": root, "episodes": TRAIN_EPISODES, "tests": {"heldout": (root, SHARED_TEST)}}
    for task in SIM_TASKS:
        train = _first(sim / f"{task}-s0-e16")
        unseen = _first(sim / f"{task}-s1-e20", sim / f"{task}-s1-e40")
        light = _first(sim / f"{task}-s1-e20-light", sim / f"{task}-s1-e40-light")
        if train and unseen and light:
            out[task] = {"train": train, "episodes": None,
                         "tests": {"unseen": (unseen, None), "light": (light, None)}}
    return out


def score(ckpt: Path, root: Path, episodes, out: Path, name: str) -> dict:
    """Metrics at the checkpoint's own threshold (tempered) and at 0.5, from one pass of the model; raw logits saved."""
    from hilreward.config import DatasetConfig, LabelConfig
    from hilreward.data import load_frame_data
    from hilreward.evaluation.calibration import sigmoid
    from hilreward.evaluation.evaluate import run_model
    from hilreward.evaluation.metrics import Predictions, at_threshold
    from hilreward.models import RewardClassifier

    model = RewardClassifier.from_pretrained(ckpt)
    data = load_frame_data(DatasetConfig(root=str(root), episodes=episodes), LabelConfig(),
                           tuple(model.config.image_size))
    logits, _ = run_model(model, {k: data.images[k] for k in model.config.camera_keys})
    np.savez(out / f"logits-{name}.npz", logits=logits, labels=data.labels, episode=data.episode_index,
             frame=data.frame_index, fps=data.fps)
    p = Predictions(data.episode_index, data.frame_index, data.labels, sigmoid(logits / model.temperature))
    episodes = int(np.unique(data.episode_index).size)
    return {which: {k: at_threshold(p, t, 1, data.fps)[k] for k in KEYS} | {"threshold": t, "episodes": episodes}
            for which, t in (("own", model.threshold), ("at_0.5", 0.5))}


def run(args) -> None:
    from hilreward.config import compose
    from hilreward.training import train

    for setting in args.settings:
        for task in args.tasks or list(task_sets(args)):
            sets = task_sets(args)  # again: renders may land while the study runs
            if task not in sets or (setting.endswith("-color") and task in SHARED_TASKS and not args.shared_color):
                continue
            s = sets[task]
            out = Path(args.out) / task / setting
            path = out / "result.json"
            result = json.loads(path.read_text()) if path.is_file() else {}
            if "calibration" not in result:
                t0 = time.time()
                overrides = [f"dataset.root={s['train']}", "model=scratch", f"output_dir={out / 'run'}", "resume=true",
                             f"training.threads={args.threads}", f"training.seed={args.seed}", *SETTINGS[setting],
                             *args.override]
                if s["episodes"] is not None:
                    overrides.append(f"dataset.episodes={s['episodes']}")
                ckpt = train(compose(overrides))
                config = json.loads((ckpt / "config.json").read_text())
                cal = config.get("calibration") or {}
                result = {"task": task, "setting": setting, "train_s": time.time() - t0, "load": os.getloadavg()[0],
                          "threshold": config["threshold"], "temperature": config["temperature"],
                          "calibration": {k: cal.get(k) for k in CAL_KEYS}}
                _atomic_json(path, result)
            ckpt = out / "run" / "checkpoints" / "best"
            for name, (root, episodes) in s["tests"].items():
                if name not in result.get("tests", {}):
                    result.setdefault("tests", {})[name] = score(ckpt, root, episodes, out, name)
                    _atomic_json(path, result)
            print(json.dumps({"task": task, "setting": setting, "threshold": round(result["threshold"], 4),
                              "enough": result["calibration"]["enough"], "train_s": round(result["train_s"]),
                              **{n: (t["own"]["accuracy"], t["own"]["gross_false_terminations"],
                                     t["at_0.5"]["gross_false_terminations"]) for n, t in result["tests"].items()}}),
                  flush=True)


def recalibrate(args) -> None:
    """Calibrate the finished ``cv`` runs again with the current code (the fold models are reused: their runs are
    finished, so only their out-of-fold logits are computed again) and score their test sets again."""
    from dataclasses import replace

    from hilreward.config import from_yaml
    from hilreward.data import load_frame_data
    from hilreward.training.calibrate import calibrate_by_folds, plan_calibration
    from hilreward.training import train

    sets = task_sets(args)
    for path in sorted(Path(args.out).glob("*/*/result.json")):
        result = json.loads(path.read_text())
        if result["setting"] not in args.settings or result["calibration"]["method"] != "cv" or "tests" not in result:
            continue
        run_dir = path.parent / "run"
        cfg = replace(from_yaml((run_dir / "train_config.yaml").read_text()), output_dir=str(run_dir))
        data = load_frame_data(cfg.dataset, cfg.label, tuple(cfg.model.image_size), cache_dir=cfg.cache_dir)
        episodes = sorted(int(e) for e in np.unique(data.episode_index))
        plan = plan_calibration(cfg.training.calibrate, data, episodes, cfg.split.val_episodes,
                                cfg.training.calibrate_folds, cfg.split.seed)
        ckpt = run_dir / "checkpoints" / "best"
        cal = calibrate_by_folds(cfg, plan, ckpt, data, episodes, cfg.training.steps, fit=train,
                                 fallback_threshold=cfg.model.threshold)
        config = json.loads((ckpt / "config.json").read_text())
        result |= {"threshold": config["threshold"], "temperature": config["temperature"], "code": args.code,
                   "calibration": {k: cal.details.get(k) for k in CAL_KEYS}
                   | {"seconds": result["calibration"]["seconds"]}}
        result["tests"] = {name: score(ckpt, root, eps, path.parent, name)
                           for name, (root, eps) in sets[result["task"]]["tests"].items()}
        _atomic_json(path, result)
        print(f"{result['task']} {result['setting']}: threshold {result['threshold']:.4g} "
              f"({result['calibration']['reason']})", flush=True)


RULES = {"unbounded": {"max_recall_loss": None}, "cap-0.02": {"max_recall_loss": 0.02},
         "cap-0.05": {"max_recall_loss": 0.05}, "cap-0.1": {"max_recall_loss": 0.1}}
"""Threshold-rule variants replayed on the saved out-of-fold logits (EvidenceRule fields): the rule as it was before
this study, and bounds on the frame recall the threshold may lose against 0.5 on the out-of-fold set (0.02, the
study's choice, is now the default)."""


def rules(args) -> dict:
    """Replay the rule variants: calibrate each finished run's out-of-fold logits under each, score its saved test
    logits; choose a variant per task by leave-one-task-out (on the other tasks' unseen-layout / held-out sets: mean
    accuracy not lower than at 0.5, then the fewest gross false terminations, then the highest mean accuracy)."""
    from hilreward.evaluation import EvidenceRule
    from hilreward.evaluation.calibration import calibrate, sigmoid
    from hilreward.evaluation.metrics import Predictions, at_threshold

    scored: dict[str, dict] = {}
    for path in sorted(Path(args.out).glob(f"*/{args.setting}/result.json")):
        result = json.loads(path.read_text())
        oof_path = path.parent / "run" / "calibration" / "out_of_fold.npz"
        if "tests" not in result or not oof_path.is_file():
            continue
        oof = np.load(oof_path)
        per = {}
        for name, kw in [*RULES.items(), ("at-0.5", None)]:
            cal = calibrate(oof["episode"], oof["frame"], oof["labels"], oof["logits"], fps=float(oof["fps"]),
                            rule=EvidenceRule(**(kw or {})))
            threshold = 0.5 if kw is None else cal.threshold
            tests = {}
            for test in result["tests"]:
                d = np.load(path.parent / f"logits-{test}.npz")
                p = Predictions(d["episode"], d["frame"], d["labels"], sigmoid(d["logits"] / cal.temperature))
                tests[test] = {k: at_threshold(p, threshold, 1, float(d["fps"]))[k] for k in KEYS}
            per[name] = {"threshold": threshold, "rule": cal.details["rule"], "tests": tests}
        scored[result["task"]] = per

    def totals(variant: str, among: list[str]) -> dict:
        main = [scored[t][variant]["tests"]["unseen" if "unseen" in scored[t][variant]["tests"] else "heldout"]
                for t in among]
        light = [scored[t][variant]["tests"]["light"] for t in among if "light" in scored[t][variant]["tests"]]
        return {"mean_accuracy": float(np.mean([m["accuracy"] for m in main])),
                "gross": sum(m["gross_false_terminations"] for m in main),
                "missed": sum(m["missed_successes"] for m in main),
                "light_mean_accuracy": float(np.mean([m["accuracy"] for m in light])) if light else None,
                "light_gross": sum(m["gross_false_terminations"] for m in light),
                "light_missed": sum(m["missed_successes"] for m in light)}

    def choose(among: list[str]) -> str:
        base = totals("at-0.5", among)["mean_accuracy"]

        def cost(v):
            t = totals(v, among)
            return (t["mean_accuracy"] < base - 1e-9, t["gross"], -t["mean_accuracy"])
        return min(RULES, key=cost)

    tasks = sorted(scored)
    loto = {t: choose([u for u in tasks if u != t]) for t in tasks}
    out = {"setting": args.setting, "variants": RULES, "tasks": tasks, "loto_choice": loto,
           "overall_choice": choose(tasks), "totals": {v: totals(v, tasks) for v in [*RULES, "at-0.5"]},
           "loto_totals": {k: sum(scored[t][loto[t]]["tests"]["unseen" if "unseen" in scored[t][loto[t]]["tests"]
                                                           else "heldout"][k] for t in tasks)
                           for k in ("gross_false_terminations", "missed_successes")}
           | {"mean_accuracy": float(np.mean([scored[t][loto[t]]["tests"]["unseen" if "unseen" in
                                                                           scored[t][loto[t]]["tests"] else
                                                                           "heldout"]["accuracy"] for t in tasks]))},
           "per_task": scored}
    print(json.dumps({k: out[k] for k in ("loto_choice", "overall_choice", "totals", "loto_totals")}, indent=1))
    if args.json:
        _atomic_json(Path(args.json), out)
    return out


def _results(out: str) -> dict[str, dict[str, dict]]:
    results: dict[str, dict[str, dict]] = {}
    for path in sorted(Path(out).glob("*/*/result.json")):
        r = json.loads(path.read_text())
        if "tests" in r:
            results.setdefault(r["task"], {})[r["setting"]] = r
    return results


def main_set(r: dict) -> str:
    """The set a task's accuracy and unseen-layout counts come from: unseen layouts where rendered, else held-out."""
    return "unseen" if "unseen" in r["tests"] else "heldout"


def calibration_summary(results: dict, setting: str) -> dict:
    """The done-when of issue 26 for one setting: evidence-backed thresholds, gross on unseen layouts and mean
    accuracy, each at the checkpoints' own thresholds and at 0.5."""
    rows = {t: by[setting] for t, by in sorted(results.items()) if setting in by}
    out = {"tasks": len(rows), "evidence_backed": sum(bool(r["calibration"]["enough"]) for r in rows.values()),
           "moved": sum(r["threshold"] != 0.5 for r in rows.values())}
    for which in ("own", "at_0.5"):
        unseen = [r["tests"]["unseen"][which] for r in rows.values() if "unseen" in r["tests"]]
        light = [r["tests"]["light"][which] for r in rows.values() if "light" in r["tests"]]
        main = [r["tests"][main_set(r)][which] for r in rows.values()]
        out[which] = {"gross_unseen_layouts": sum(m["gross_false_terminations"] for m in unseen),
                      "false_successes_unseen_layouts": sum(m["false_successes_in_failed_episodes"] for m in unseen),
                      "missed_unseen_layouts": sum(m["missed_successes"] for m in unseen),
                      "gross_light": sum(m["gross_false_terminations"] for m in light),
                      "gross_all_test_sets": sum(m["gross_false_terminations"] for m in main),
                      "mean_accuracy": float(np.mean([m["accuracy"] for m in main])),
                      "mean_accuracy_light": float(np.mean([m["accuracy"] for m in light])) if light else None}
    out["train_s_median"] = float(np.median([r["train_s"] for r in rows.values()]))
    return out


def loto_augmentation(results: dict, settings: list[str]) -> dict:
    """For each rendered task, the setting best on the other rendered tasks: fewest gross false terminations under the
    lighting change, then fewest on unchanged lighting, then the highest mean accuracy (both sets); the task's own
    numbers under that choice."""
    tasks = [t for t, by in sorted(results.items())
             if all(s in by for s in settings) and "light" in by[settings[0]]["tests"]]

    def cost(setting: str, among: list[str]) -> tuple:
        light = sum(results[t][setting]["tests"]["light"]["own"]["gross_false_terminations"] for t in among)
        plain = sum(results[t][setting]["tests"]["unseen"]["own"]["gross_false_terminations"] for t in among)
        acc = np.mean([results[t][setting]["tests"][n]["own"]["accuracy"] for t in among for n in ("light", "unseen")])
        return light, plain, -acc

    per_task = {}
    for task in tasks:
        chosen = min(settings, key=lambda s: cost(s, [t for t in tasks if t != task]))
        tests = results[task][chosen]["tests"]
        per_task[task] = {"chosen": chosen, **{n: {k: tests[n]["own"][k] for k in ("accuracy",
                                                                                   "gross_false_terminations")}
                                               for n in ("unseen", "light")}}
    totals = {s: dict(zip(("gross_light", "gross_unseen", "minus_mean_accuracy"), cost(s, tasks))) for s in settings}
    return {"tasks": tasks, "per_task": per_task, "totals_per_setting": totals,
            "overall_choice": min(settings, key=lambda s: cost(s, tasks))}


def markdown(results: dict, setting: str) -> str:
    head = ("| task | method | evidence (positives / succeeding eps) | threshold (T) | set | acc own / 0.5 | "
            "gross own / 0.5 | missed own / 0.5 | light: acc own / 0.5 | gross own / 0.5 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for task, by in sorted(results.items()):
        if setting not in by:
            continue
        r = by[setting]
        c, m = r["calibration"], main_set(r)
        t, light = r["tests"][m], r["tests"].get("light")
        ev = f"{'enough' if c['enough'] else 'too little'} ({c['positives']} / {c['success_episodes']})"
        cells = (f"{100 * t['own']['accuracy']:.1f} / {100 * t['at_0.5']['accuracy']:.1f} % | "
                 f"{t['own']['gross_false_terminations']} / {t['at_0.5']['gross_false_terminations']} | "
                 f"{t['own']['missed_successes']} / {t['at_0.5']['missed_successes']}")
        lcells = ("– | –" if light is None else
                  f"{100 * light['own']['accuracy']:.1f} / {100 * light['at_0.5']['accuracy']:.1f} % | "
                  f"{light['own']['gross_false_terminations']} / {light['at_0.5']['gross_false_terminations']}")
        lines.append(f"| {task} | {c['method']} | {ev} | {r['threshold']:.3g} ({r['temperature']:.2g}) | "
                     f"{m} ({t['own']['episodes']}) | {cells} | {lcells} |")
    return "\n".join(lines)


def report(args) -> None:
    results = _results(args.out)
    settings = sorted({s for by in results.values() for s in by})
    summary = {s: calibration_summary(results, s) for s in settings}
    aug = {f"{a}/{b}": loto_augmentation(results, [a, b]) for a, b in AUGMENTATION_PAIRS if {a, b} <= set(settings)}
    for s in settings:
        print(f"\n### {s}\n\n{markdown(results, s)}\n\n{json.dumps(summary[s], indent=1)}")
    if aug:
        print("\n### augmentation, leave one task out\n" + json.dumps(aug, indent=1))
    if args.json:
        _atomic_json(Path(args.json), {"summary": summary, "augmentation_loto": aug,
                                       "results": {t: {s: {k: v for k, v in r.items()} for s, r in by.items()}
                                                   for t, by in results.items()}})
        print(f"wrote {args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--sim", default="/work/data-sim")
    r.add_argument("--shared", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    r.add_argument("--out", required=True)
    r.add_argument("--settings", nargs="+", default=["cv"], choices=list(SETTINGS))
    r.add_argument("--tasks", nargs="*")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--override", nargs="*", default=[], help="more `hilreward train` overrides for every run")
    r.add_argument("--shared-color", action="store_true", help="run cv-color on the shared sets too (no lighting "
                   "variant: it cannot decide the augmentation there)")
    c = sub.add_parser("recalibrate")
    c.add_argument("--sim", default="/work/data-sim")
    c.add_argument("--shared", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    c.add_argument("--out", required=True)
    c.add_argument("--settings", nargs="+", default=["cv", "cv-color"])
    c.add_argument("--code", default="", help="a tag stored with each recalibrated result")
    u = sub.add_parser("rules")
    u.add_argument("--out", required=True)
    u.add_argument("--setting", default="cv")
    u.add_argument("--json")
    p = sub.add_parser("report")
    p.add_argument("--out", required=True)
    p.add_argument("--json")
    args = parser.parse_args()
    {"run": run, "recalibrate": recalibrate, "rules": rules, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
