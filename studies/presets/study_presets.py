"""Preset study: choose ``model=scratch`` settings by leave-one-task-out on Meta-World tasks nobody tuned them on.

For every task and every candidate setting: ``hilreward train`` on episodes 0-15 of ``<task>-s0`` (episodes
16-19 held out, which end-of-training calibration uses), then the calibrated best checkpoint is scored
at its own threshold on the held-out episodes 16-19 and on the 20 episodes of ``<task>-s1`` (another seed:
new object and goal positions). The three shared sets (``../shared/data``) have no second seed; they are
scored on 16-19 only. Each (task, setting) result is cached as JSON (with the raw logits as .npz for the
offline rule study), so a killed study resumes where it stopped.

``report`` then, for each task, picks the setting that is best on the *other* tasks (fewest gross false
terminations, false successes in failed episodes included, then highest mean accuracy) and reports the task's own numbers under
that choice, and writes the JSON summary. ``--replicates`` adds studies trained with other seeds (``run --seed 1 --out
<folder>``) to the choice: one run per task and setting is a noisy measurement.

    OMP_WAIT_POLICY=PASSIVE nice -n 10 python studies/presets/study_presets.py run --sim /work/data-sim --shared ../shared/data \\
        --out /work/data-sim/study
    python studies/presets/study_presets.py report --out /work/data-sim/study --json studies/presets/results/presets-<date>.json

``last`` scores the runs' last checkpoints (not the best) for the replay (``study_presets_replay.py``).
``episodes`` lists the test episodes most runs fail, whatever the setting (from the study folders, or from committed
summaries: ``episodes --reports studies/presets/results/presets-<date>*.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

SIM_TASKS = ("door-open", "window-open", "coffee-button", "faucet-open", "window-close", "lever-pull", "plate-slide")
SHARED_TASKS = {"drawer-open": "metaworld_drawer_open", "pick-place": "metaworld_pick_place",
                "button-press-topdown": "metaworld_button_press"}
SETTINGS = {
    "s300": ["training.steps=300"],                       # the preset before the study (pad 8)
    "s600": ["training.steps=600"],
    "s600-pad4": ["training.steps=600", "augmentation.pad=4"],
    "s600-128": ["training.steps=600", "model.image_size=[128,128]"],   # the renders' own size (no downsizing)
    "s1200": ["training.steps=1200"],                     # the band's edges are not fit even on training episodes
    "s2400": ["training.steps=2400"],                     # the trend of 600 -> 1200, once more
    "s1200-wide": ["training.steps=1200", "model.encoder=small_cnn_wide"],  # twice the channels in every stage
    "s1200-fine": ["training.steps=1200", "model.encoder=small_cnn_fine"],  # 3 stages: a 12x12 map, not 6x6
    "s1200-kp": ["training.steps=1200", "model.encoder=small_cnn_kp"],   # spatial-softmax keypoints on the 12x12 map
    "s1200-kp6": ["training.steps=1200", "model.encoder=small_cnn_kp6"],  # the same on small_cnn's 6x6 map
    "s4800-wide-128": ["training.steps=4800", "model.encoder=small_cnn_wide", "model.image_size=[128,128]"],  # a probe:
    # the largest model, input and budget of the study at once (lever-pull: the model or the data?)
    "s2400-wide-128": ["training.steps=2400", "model.encoder=small_cnn_wide", "model.image_size=[128,128]"],  # the probe
    # at half its budget: does the wide 128 px model carry lever-pull without the 4x steps?
    "s1200-natural": ["training.steps=1200", "sampler.balanced=false"],  # frames drawn at the data's class rates
    "s1200-x40": ["training.steps=1200"],                 # s1200 on 36 training episodes (MORE_EPISODES)
    "s2400-x40": ["training.steps=2400"],                 # s2400 on 36 training episodes
    "s1200-x40v8": ["training.steps=1200"],                # s1200 on 32 episodes, 8 held out (HELDOUT_V8)
    "s1200-x40-128": ["training.steps=1200", "model.image_size=[128,128]"],  # s1200-x40 at the renders' own size
}
MORE_EPISODES = {"s1200-x40": "s1200", "s2400-x40": "s2400", "s1200-x40v8": "s1200", "s1200-x40-128": "s600-128"}
"""Settings trained on ``<task>-s0x40`` (40 episodes at seed 0, whose episodes 0-19 are ``<task>-s0``'s): the same
held-out and unseen-layout episodes, 36 training episodes instead of 16 (32 with HELDOUT_V8), and the setting's
overrides. The shared sets have no more episodes; there the named setting's runs stand in (for ``s1200-x40-128``
the nearest that exists, 600 steps at 128 px)."""
HELDOUT = [16, 17, 18, 19]
HELDOUT_V8 = {"s1200-x40v8": HELDOUT + [36, 37, 38, 39]}
"""Settings that hold out (calibrate on, and score as held-out) 8 of the 40 episodes: a user's 20 % split."""
RULES = {  # threshold-rule variants replayed offline on the saved logits (EvidenceRule fields)
    "default": {},
    "never-strict": {"max_recall_cost": 0.0},
    "strict-5pct": {"max_recall_cost": 0.05},
    "two-episodes": {"min_success_episodes": 2},
}
"""The rejected variants ``soft-edges`` and ``floor-0.5`` (their results are in results/presets-2026-12-01*.json)
needed rule fields the package no longer has (issue 27: study-only knobs out of the product)."""


def _register_study_encoders() -> None:
    """Encoders tried by the study only (not in the package): ``small_cnn`` with twice the channels, with its
    last stage left out (a finer feature map), and with spatial-softmax keypoints on either map."""
    import torch
    from torch import nn

    from hilreward.models.conv import build_conv_encoder, conv_stack
    from hilreward.models.registry import Encoder, register_encoder

    class Keypoints(nn.Module):
        """Spatial softmax (robomimic, Diffusion Policy): a 1x1 conv to ``k`` maps, each softmaxed over the grid, gives
        ``k`` expected (x, y) positions in [-1, 1]; returned with the map's channel means as a (B, 2k + C, 1, 1) map,
        so the head sees *where* the parts are at sub-cell precision, not only which cell holds them."""

        def __init__(self, channels: int, k: int = 32):
            super().__init__()
            self.conv = nn.Conv2d(channels, k, kernel_size=1)
            self.log_temperature = nn.Parameter(torch.zeros(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[2:]
            attn = torch.softmax(self.conv(x).flatten(2) / self.log_temperature.exp(), dim=-1)  # (B, k, h*w)
            grid = [torch.linspace(-1, 1, n, device=x.device) for n in (h, w)]
            ys, xs = torch.meshgrid(*grid, indexing="ij")
            pos = torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # (h*w, 2)
            kp = (attn @ pos).flatten(1)  # (B, 2k)
            return torch.cat([kp, x.mean(dim=(2, 3))], dim=1)[:, :, None, None]

    def keypoint_encoder(name: str, widths: tuple) -> Encoder:
        stages = list(conv_stack(widths)) + [Keypoints(widths[-1])]
        return Encoder(name, nn.Sequential(*stages), stages, default_size=(96, 96), options={"widths": list(widths)})

    register_encoder("small_cnn_kp")(lambda arg=None, pretrained=True, weights=None, options=None:
                                     keypoint_encoder("small_cnn_kp", (16, 32, 64)))
    register_encoder("small_cnn_kp6")(lambda arg=None, pretrained=True, weights=None, options=None:
                                      keypoint_encoder("small_cnn_kp6", (16, 32, 64, 64)))

    @register_encoder("small_cnn_wide")
    def small_cnn_wide(arg=None, pretrained=True, weights=None, options=None):
        return build_conv_encoder("small_cnn_wide", (32, 64, 128, 128), (96, 96), weights if pretrained else None,
                                  options or {})

    @register_encoder("small_cnn_fine")
    def small_cnn_fine(arg=None, pretrained=True, weights=None, options=None):
        return build_conv_encoder("small_cnn_fine", (16, 32, 64), (96, 96), weights if pretrained else None,
                                  options or {})


def _atomic_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _sets(args) -> dict[str, tuple[Path, Path | None]]:
    """task -> (training set, unseen-layout test set or None)."""
    out = {}
    for task, name in SHARED_TASKS.items():
        if (Path(args.shared) / name / "meta" / "info.json").is_file():
            out[task] = (Path(args.shared) / name, None)
    for task in SIM_TASKS:
        s0, s1 = Path(args.sim) / f"{task}-s0", Path(args.sim) / f"{task}-s1"
        if (s0 / "meta" / "info.json").is_file():
            out[task] = (s0, s1 if (s1 / "meta" / "info.json").is_file() else None)
    return out


KEYS = ("accuracy", "precision", "recall", "gross_false_terminations", "false_successes_in_failed_episodes",
        "false_terminations", "missed_successes", "onset_error_median_frames", "onset_error_p90_frames",
        "episodes", "positives", "threshold", "auroc")


def _score(ckpt: Path, root: Path, episodes, out: Path, name: str) -> dict:
    """Metrics of the checkpoint at its own threshold (hilreward.evaluate), raw logits saved for the rule study."""
    from hilreward.config import DatasetConfig, LabelConfig
    from hilreward.data import load_frame_data
    from hilreward.evaluation import evaluate
    from hilreward.evaluation.evaluate import run_model
    from hilreward.models import RewardClassifier

    ds = DatasetConfig(root=str(root), episodes=episodes)
    m = evaluate(ckpt, ds, report=False, output_dir=out / f"eval-{name}")
    model = RewardClassifier.from_pretrained(ckpt)
    data = load_frame_data(ds, LabelConfig(), tuple(model.config.image_size))
    logits, _ = run_model(model, {k: data.images[k] for k in model.config.camera_keys})
    np.savez(out / f"logits-{name}.npz", logits=logits, labels=data.labels, episode=data.episode_index,
             frame=data.frame_index, fps=data.fps)
    return {k: m[k] for k in KEYS} | {"per_episode": [(r["episode"], r["outcome"], r["onset_error_frames"])
                                                     for r in m["per_episode"]]}


def recalibrate(run_dir: Path) -> Path:
    """Calibrate a finished run's best checkpoint again with the current code, on its held-out episodes (no
    training: a resume would refuse once the dataset fingerprint's definition changed)."""
    from dataclasses import replace

    from hilreward.config import from_yaml
    from hilreward.data import load_frame_data
    from hilreward.training.calibrate import calibrate_checkpoint

    cfg = from_yaml((run_dir / "train_config.yaml").read_text())
    data = load_frame_data(replace(cfg.dataset, episodes=cfg.split.val_episodes), cfg.label,
                           tuple(cfg.model.image_size), cache_dir=cfg.cache_dir)
    ckpt = run_dir / "checkpoints" / "best"
    calibrate_checkpoint(ckpt, data, np.arange(len(data.labels)), fallback_threshold=cfg.model.threshold)
    return ckpt


def run(args) -> None:
    from hilreward.config import compose
    from hilreward.training import train

    _register_study_encoders()

    sets = _sets(args)
    tasks = args.tasks or list(sets)
    settings = args.settings or list(SETTINGS)
    for setting in settings:  # setting-major: every task has the first setting's numbers early
        for task in tasks:
            if task not in sets:
                print(f"skip {task}: not rendered yet", flush=True)
                continue
            train_root, test_root = sets[task]
            out = Path(args.out) / task / setting
            result_path = out / "result.json"
            if setting in MORE_EPISODES:
                more = Path(args.sim) / f"{task}-s0x40"
                if task in SHARED_TASKS:  # no more episodes: the base setting's result stands in
                    base_dir = Path(args.out) / task / MORE_EPISODES[setting]
                    base = json.loads((base_dir / "result.json").read_text())
                    out.mkdir(parents=True, exist_ok=True)
                    for logits in base_dir.glob("logits-*.npz"):
                        shutil.copyfile(logits, out / logits.name)
                    _atomic_json(result_path, base | {"setting": setting, "stand_in": MORE_EPISODES[setting]})
                    continue
                if not (more / "meta" / "info.json").is_file():
                    print(f"skip {task}: {more} not rendered yet", flush=True)
                    continue
                train_root = more
            result = json.loads(result_path.read_text()) if result_path.is_file() else {}
            previous = result
            if args.rescore and result.get("code") != args.rescore:  # recalibrate a finished run + score
                result = {}
            if "heldout" not in result:
                t0 = time.time()
                held = HELDOUT_V8.get(setting, HELDOUT)
                overrides = [f"dataset.root={train_root}", "model=scratch", f"split.val_episodes={held}",
                             f"output_dir={out / 'run'}", "resume=true", f"training.threads={args.threads}",
                             f"training.seed={args.seed}", *SETTINGS[setting]]
                finished = previous.get("heldout") and (out / "run" / "checkpoints" / "best").is_dir()
                ckpt = recalibrate(out / "run") if finished else train(compose(overrides))
                config = json.loads((ckpt / "config.json").read_text())
                result = {"task": task, "setting": setting, "code": args.rescore,
                          "train_s": previous.get("train_s", time.time() - t0),
                          "load": previous.get("load", os.getloadavg()[0]), "temperature": config["temperature"],
                          "calibrated_threshold": config["threshold"],
                          "calibration": {k: config["calibration"][k] for k in
                                          ("enough", "positives", "success_episodes", "reason")},
                          "heldout": _score(ckpt, train_root, held, out, "heldout")}
                _atomic_json(result_path, result)
            if test_root is not None and "unseen" not in result:
                ckpt = out / "run" / "checkpoints" / "best"
                result["unseen"] = _score(ckpt, test_root, None, out, "unseen")
                _atomic_json(result_path, result)
            print(json.dumps({k: result[k] for k in ("task", "setting", "calibrated_threshold")}
                             | {"heldout": result["heldout"]["accuracy"],
                                "unseen": result.get("unseen", {}).get("accuracy")}), flush=True)


def last(args) -> None:
    """Score each finished run's *last* checkpoint instead of the best (held-out accuracy, every 100 steps): its raw
    logits go to ``<task>/<setting>-last/``, for ``study_presets_replay.py --setting <setting>-last``."""
    from hilreward.config import from_yaml

    sets = _sets(args)
    for setting in args.settings or list(SETTINGS):
        for task in args.tasks or list(sets):
            run_dir = Path(args.out) / task / setting / "run"
            if not (run_dir / "checkpoints" / "last").is_dir():
                continue
            cfg = from_yaml((run_dir / "train_config.yaml").read_text())
            out = Path(args.out) / task / f"{setting}-last"
            out.mkdir(exist_ok=True)
            ckpt = run_dir / "checkpoints" / "last"
            _score(ckpt, Path(cfg.dataset.root), cfg.split.val_episodes, out, "heldout")
            if sets[task][1] is not None:
                _score(ckpt, sets[task][1], None, out, "unseen")
            print(f"{task} {setting}: last checkpoint scored", flush=True)


def _errors(r: dict) -> int:
    """Gross false terminations (false successes in failed episodes are among them)."""
    return r["gross_false_terminations"]


def success_ends(run_dir: Path) -> bool:
    """Whether any episode of the task (held-out or unseen) loses its success again (labels 1 then 0)."""
    for name in ("heldout", "unseen"):
        path = run_dir / f"logits-{name}.npz"
        if path.is_file():
            d = np.load(path)
            for e in np.unique(d["episode"]):
                y = d["labels"][d["episode"] == e][np.argsort(d["frame"][d["episode"] == e])]
                if np.any(np.diff(y) < 0):
                    return True
    return False


def target_accuracy(ends: bool) -> float:
    """The issue's accuracy target: 97 % for a task whose success can end again, else 99 %."""
    return 0.97 if ends else 0.99


def meets(r: dict, target: float) -> bool:
    """Whether a scored set meets the issue's targets: ``target`` accuracy and no gross false termination."""
    return r["accuracy"] >= target and _errors(r) == 0


def _cells(r: dict | None, target: float) -> str:
    if not r:
        return "| – " * 7
    ok = meets(r, target)
    err = "–" if r["onset_error_median_frames"] is None else \
        f"{r['onset_error_median_frames']:g} / {r['onset_error_p90_frames']:g}"
    return (f"| {100 * r['accuracy']:.1f} % {'✓' if ok else '✗'} | {r['gross_false_terminations']} | "
            f"{r['false_successes_in_failed_episodes']} | {r['false_terminations']} | {r['missed_successes']} | "
            f"{err} | {r['episodes']} ")


def markdown(loto: dict, ends: dict) -> str:
    """The per-task table of studies/presets/README.md."""
    head = ("| task | success ends | setting (LOTO) | threshold (T) | held-out 16-19: acc | gross | false succ. | "
            "strict | missed | abs onset err. med / p90 | episodes | unseen layouts: acc | gross | false succ. | "
            "strict | missed | abs onset err. med / p90 | episodes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for task, row in sorted(loto.items()):
        target = target_accuracy(ends[task])
        lines.append(f"| {task} | {'yes' if ends[task] else 'no'} | {row['chosen']} | "
                     f"{row['calibrated_threshold']:.3g} ({row['temperature']:.2g}) "
                     + _cells(row["heldout"], target) + _cells(row["unseen"], target) + "|")
    return "\n".join(lines)


def _test(result: dict) -> dict:
    """The set a task is judged on: unseen layouts where rendered, else the held-out episodes."""
    return result.get("unseen") or result["heldout"]


def _logits(runs: list[Path], name: str) -> dict | None:
    """The saved ``logits-<name>.npz`` of ``runs``, logits averaged over them (a seed ensemble); None if any lacks it."""
    paths = [run / f"logits-{name}.npz" for run in runs]
    if not all(p.is_file() for p in paths):
        return None
    data = [np.load(p) for p in paths]
    return {"logits": np.mean([d["logits"] for d in data], axis=0),
            **{k: data[0][k] for k in ("labels", "episode", "frame")}, "fps": float(data[0]["fps"])}


def debounced(episode: np.ndarray, frame: np.ndarray, probs: np.ndarray, threshold: float, k: int) -> np.ndarray:
    """Per-frame success after a ``k``-frame debounce (the streak of frames >= threshold reaches k), as
    ``RewardFunction(consecutive=k)`` reports it."""
    from hilreward.evaluation.episodes import episodes

    out = np.zeros(probs.shape, dtype=bool)
    for _, idx in episodes(episode, frame):
        streak = 0
        for i in idx:
            streak = streak + 1 if probs[i] >= threshold else 0
            out[i] = streak >= k
    return out


def _scores(d: dict, probs: np.ndarray, threshold: float, consecutive: int = 1) -> dict:
    """Accuracy (of the debounced success) and the episode counts of one saved set at ``threshold``."""
    from hilreward.evaluation.episodes import episode_metrics

    ep = episode_metrics(d["episode"], d["frame"], d["labels"], probs, threshold, consecutive, d["fps"])
    success = debounced(d["episode"], d["frame"], probs, threshold, consecutive)
    return {"accuracy": float(np.mean(success == (d["labels"] == 1))),
            **{k: ep[k] for k in ("gross_false_terminations", "false_successes_in_failed_episodes",
                                  "false_terminations", "missed_successes")}}


def replay(runs: list[Path], rule: dict | None = None, consecutive: int = 1, margin: float = 0.0) -> dict:
    """Calibrate on the saved held-out logits of ``runs`` (averaged: one run, or a seed ensemble) under ``rule``
    with a ``consecutive``-frame debounce, then score the held-out and unseen-layout logits the same way.
    ``margin`` moves the calibrated threshold up by that many (tempered) logits."""
    from hilreward.evaluation import EvidenceRule
    from hilreward.evaluation.calibration import calibrate, logits_from_probs, sigmoid

    held = _logits(runs, "heldout")
    cal = calibrate(held["episode"], held["frame"], held["labels"], held["logits"], fps=held["fps"],
                    consecutive=consecutive, rule=EvidenceRule(**(rule or {})))
    threshold = float(sigmoid(logits_from_probs(cal.threshold) + margin)) if margin else cal.threshold
    out = {"threshold": threshold, "temperature": cal.temperature}
    for name, d in (("heldout", held), ("unseen", _logits(runs, "unseen"))):
        if d is not None:
            out[name] = _scores(d, sigmoid(d["logits"] / cal.temperature), threshold, consecutive)
    return out


def feasible(run: Path, target: float) -> list[float] | None:
    """A diagnostic, not a rule: [lowest, highest] of the thresholds (on a grid of 281 logits from -6 to 8) at which
    the run meets the issue's targets (``target`` accuracy, no gross false termination) on its held-out and its
    unseen-layout sets at once, chosen on those test sets themselves; None when no threshold does."""
    from hilreward.evaluation.calibration import sigmoid

    sets = [d for d in (_logits([run], "heldout"), _logits([run], "unseen")) if d is not None]
    ok = [t for t in (float(sigmoid(z)) for z in np.linspace(-6, 8, 281))
          if all(meets(_scores(d, sigmoid(d["logits"]), t), target) for d in sets)]
    return [ok[0], ok[-1]] if ok else None


def replay_rule(run_dir: Path, rule: dict) -> dict:
    """Calibrate on the saved held-out logits under ``rule`` and score the unseen (else held-out) logits."""
    r = replay([run_dir], rule)
    return {"threshold": r["threshold"], "temperature": r["temperature"], **_test(r)}


def _results(out: str) -> dict[str, dict[str, dict]]:
    """task -> setting -> cached result, for one study folder."""
    results = {}
    for path in sorted(Path(out).glob("*/*/result.json")):
        r = json.loads(path.read_text())
        results.setdefault(r["task"], {})[r["setting"]] = r
    return results


def report(args) -> None:
    results = _results(args.out)
    replicates = [_results(out) for out in args.replicates]  # the same study with other training seeds
    wanted = args.settings or list(SETTINGS)
    settings = [s for s in wanted if all(s in by for rep in (results, *replicates) for by in rep.values())
                and all(set(rep) == set(results) for rep in replicates)]
    partial = [s for s in wanted if s not in settings and any(s in by for by in results.values())]
    tasks = sorted(results)
    codes = sorted({str(r.get("code")) for by in results.values() for r in by.values()})
    if len(codes) > 1:
        print(f"warning: results calibrated by different code ({', '.join(codes)}); run again with --rescore")

    def cost(setting: str, among: list[str]) -> tuple:  # summed over the replicates, if any
        picked = [_test(rep[t][setting]) for rep in (results, *replicates) for t in among]
        return (sum(_errors(r) for r in picked), -float(np.mean([r["accuracy"] for r in picked])))

    loto = {}
    for task in tasks:
        others = [t for t in tasks if t != task]
        choice = min(settings, key=lambda s: cost(s, others))
        loto[task] = {"chosen": choice, **{k: results[task][choice][k] for k in ("heldout", "calibrated_threshold",
                                                                                "temperature", "calibration")},
                      "unseen": results[task][choice].get("unseen")}
    overall = min(settings, key=lambda s: cost(s, tasks))
    ends = {t: success_ends(Path(args.out) / t / settings[0]) for t in tasks}
    summary = {"code": codes, "settings": {s: SETTINGS[s] for s in settings}, "overall_choice": overall, "success_ends": ends,
               "leave_one_task_out": loto,
               "per_setting": {s: {t: {"heldout": results[t][s]["heldout"], "unseen": results[t][s].get("unseen"),
                                       "calibrated_threshold": results[t][s]["calibrated_threshold"],
                                       "train_s": results[t][s]["train_s"], "load": results[t][s]["load"]}
                                   for t in tasks} for s in settings},
               "replicates": {out: {s: {t: {k: rep[t][s].get(k) for k in ("heldout", "unseen", "calibrated_threshold",
                                                                     "train_s", "load")} for t in tasks}
                                    for s in settings} for out, rep in zip(args.replicates, replicates)},
               # settings not run on every task: reported, not in the choice
               "partial_settings": {s: {t: {"heldout": results[t][s]["heldout"], "unseen": results[t][s].get("unseen"),
                                            "calibrated_threshold": results[t][s]["calibrated_threshold"]}
                                        for t in tasks if s in results[t]} for s in partial}}
    rules = {name: {t: replay_rule(Path(args.out) / t / overall, rule) for t in tasks} for name, rule in RULES.items()}
    summary["rules_on_overall_choice"] = rules
    # the rule by leave-one-task-out too (ties keep the first, the default): a task's rule is best on the others
    summary["rule_leave_one_task_out"] = {
        t: min(rules, key=lambda n: (sum(_errors(rules[n][u]) for u in tasks if u != t),
                                     -float(np.mean([rules[n][u]["accuracy"] for u in tasks if u != t]))))
        for t in tasks}
    print("rule by leave-one-task-out:", summary["rule_leave_one_task_out"])
    for name, by_task in rules.items():
        print(f"rule {name:<14} gross {sum(_errors(r) for r in by_task.values()):>3}  strict "
              f"{sum(r['false_terminations'] for r in by_task.values()):>3}  mean acc "
              f"{np.mean([r['accuracy'] for r in by_task.values()]):.4f}  min acc "
              f"{min(r['accuracy'] for r in by_task.values()):.4f}")
    if args.json:
        _atomic_json(Path(args.json), summary)
    if args.markdown:
        Path(args.markdown).write_text(markdown(loto, ends) + "\n")
    for task in tasks:
        row = loto[task]
        parts = [f"{task:<22} chosen {row['chosen']:<10} thr {row['calibrated_threshold']:.3g}"]
        for name in ("heldout", "unseen"):
            r = row[name]
            if r:
                parts.append(f"{name} acc {r['accuracy']:.4f} gross {r['gross_false_terminations']} "
                             f"false_succ {r['false_successes_in_failed_episodes']} strict {r['false_terminations']}"
                             f" missed {r['missed_successes']}")
        print(" | ".join(parts))
    for s in partial:
        for t, r in summary["partial_settings"][s].items():
            print(f"partial {s} {t:<22} test acc {_test(r)['accuracy']:.4f} gross {_errors(_test(r))}")
    print(f"overall choice: {overall}")


def _report_runs(paths: list[str]) -> dict[tuple[str, str, str], dict]:
    """(study, setting, task) -> result, read back from ``report --json`` summaries (later files win): the seed-0
    study's settings (``per_setting`` and ``partial_settings``) and the replicates'."""
    runs = {}
    for path in paths:
        summary = json.loads(Path(path).read_text())
        studies = {"seed 0": {**summary["partial_settings"], **summary["per_setting"]}, **summary["replicates"]}
        for study, by_setting in studies.items():
            for setting, by_task in by_setting.items():
                for task, result in by_task.items():
                    runs[study, setting, task] = result
    return runs


def episodes(args) -> None:
    """Episodes most runs get wrong: for each task and test episode, how many runs (every setting in --out and the
    --replicates, or in the --reports summaries) end it with a gross false termination or miss its success. One
    episode every run fails is no matter of a setting: look at its frames."""
    from hilreward.evaluation.episodes import GROSS

    if args.reports:
        found = _report_runs(args.reports)
    else:
        found = {(study, setting, task): result for study in (args.out, *args.replicates)
                 for task, by_setting in _results(study).items() for setting, result in by_setting.items()}
    counts: dict[tuple[str, str, int], dict[str, int]] = {}
    runs: dict[tuple[str, str], int] = {}
    for (_, setting, task), result in sorted(found.items()):
        if (args.settings and setting not in args.settings) or (setting in MORE_EPISODES and task in SHARED_TASKS):
            continue  # a stand-in is another setting's run, counted there
        for name in ("heldout", "unseen"):
            if not result.get(name):
                continue
            runs[task, name] = runs.get((task, name), 0) + 1
            for episode, outcome, _ in result[name]["per_episode"]:
                if outcome in (*GROSS, "missed"):
                    by = counts.setdefault((task, name, episode), {})
                    by[outcome] = by.get(outcome, 0) + 1
    rows = sorted(((sum(by.values()) / runs[task, name], task, name, episode, by)
                   for (task, name, episode), by in counts.items()), reverse=True)
    for share, task, name, episode, by in rows:
        if share >= args.min_share:
            print(f"{task:<22} {name:<8} episode {episode:>3}: {sum(by.values()):>2} of {runs[task, name]:>2} runs "
                  + ", ".join(f"{k} {v}" for k, v in sorted(by.items())))
    if args.json:
        _atomic_json(Path(args.json), {"sources": args.reports or [args.out, *args.replicates],
                                       "runs": {f"{t}/{n}": c for (t, n), c in runs.items()},
                                       "episodes": [{"task": t, "set": n, "episode": e, "share": s, **by}
                                                    for s, t, n, e, by in rows if s >= args.min_share]})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report", "last", "episodes"))
    parser.add_argument("--sim", default="/work/data-sim", help="folder holding <task>-s0 and <task>-s1")
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    parser.add_argument("--out", default="/work/data-sim/study", help="cached runs and results")
    parser.add_argument("--replicates", nargs="*", default=[], help="report: study folders of other training "
                        "seeds (run --seed N --out <folder>); the choice sums their errors with --out's")
    parser.add_argument("--tasks", nargs="*", help="subset of tasks (default: every rendered one)")
    parser.add_argument("--settings", nargs="*", choices=list(SETTINGS), help="subset of settings (report: the "
                        "candidates of the choice)")
    parser.add_argument("--json", help="report, episodes: write the summary here")
    parser.add_argument("--reports", nargs="*", help="episodes: read the runs from these report --json summaries "
                        "instead of the study folders")
    parser.add_argument("--min-share", type=float, default=0.25, help="episodes: list episodes failed by at least "
                        "this share of the runs")
    parser.add_argument("--markdown", help="report: write the per-task table (markdown) here")
    parser.add_argument("--rescore", help="run: recalibrate and rescore every result not tagged with this label "
                        "(e.g. the commit of the final calibration code); training is not repeated")
    parser.add_argument("--seed", type=int, default=0, help="run: training seed (a replicate: give it its own --out)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared, loaded machine)")
    args = parser.parse_args(argv)
    {"run": run, "report": report, "last": last, "episodes": episodes}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
