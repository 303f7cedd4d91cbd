"""Replay the preset study's saved logits: a k-frame debounce, seed ensembles and a threshold margin, under the
calibration rule; and where on each run the thresholds that would meet the targets lie.

No training: each run's ``logits-heldout.npz`` picks temperature and threshold (``calibrate`` with
``consecutive=k``), then the held-out and unseen-layout logits are scored with the same debounce. An
ensemble averages the logits of the same setting trained with several seeds (one study folder per seed).
Per-frame accuracy counts the debounced success (a frame is success once ``k`` frames in a row are at
or above the threshold), as ``RewardFunction(consecutive=k)`` reports it. A margin moves each calibrated
threshold up by that many (tempered) logits. ``--feasible`` adds, per run and task, the range of thresholds
that meet the issue's targets on the held-out and unseen-layout sets together, chosen on those sets
themselves: a diagnostic that tells a threshold rule's miss from a model that no threshold saves.

    python studies/presets/study_presets_replay.py --setting s1200 --consecutive 1 2 3 \\
        --studies /work/data-sim/study /work/data-sim/study-seed1 /work/data-sim/study-seed2 --ensemble
    python studies/presets/study_presets_replay.py --setting s1200 --margin 0 1 --feasible --studies /work/data-sim/study
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from study_presets import feasible, meets, replay, success_ends, target_accuracy


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", required=True)
    parser.add_argument("--studies", nargs="+", required=True, help="study folders, one per training seed")
    parser.add_argument("--consecutive", nargs="+", type=int, default=[1])
    parser.add_argument("--ensemble", action="store_true", help="also the mean logits of all --studies")
    parser.add_argument("--margin", nargs="+", type=float, default=[0.0], help="threshold margins, in logits")
    parser.add_argument("--feasible", action="store_true", help="also the thresholds that would meet the targets")
    parser.add_argument("--json", help="write every result here")
    args = parser.parse_args(argv)
    studies = [Path(s) for s in args.studies]
    tasks = sorted(p.parent.parent.name for p in studies[0].glob(f"*/{args.setting}/logits-heldout.npz"))
    groups = [[s] for s in studies] + ([studies] if args.ensemble and len(studies) > 1 else [])
    results = []
    for group in groups:
        for k in args.consecutive:
            for margin in args.margin:
                by_task = {t: replay([s / t / args.setting for s in group], consecutive=k, margin=margin)
                           for t in tasks}
                misses = [t for t, r in by_task.items() if not all(
                    meets(r[n], target_accuracy(success_ends(group[0] / t / args.setting)))
                    for n in ("heldout", "unseen") if n in r)]
                gross = sum(r[n]["gross_false_terminations"] for r in by_task.values() for n in ("heldout", "unseen")
                            if n in r)
                accs = [r[n]["accuracy"] for r in by_task.values() for n in ("heldout", "unseen") if n in r]
                results.append({"studies": [str(s) for s in group], "consecutive": k, "margin": margin,
                                "gross_all_sets": gross, "mean_accuracy": float(np.mean(accs)),
                                "tasks_missing_target": misses, "per_task": by_task})
                print(f"{'+'.join(s.name for s in group):<40} k={k} margin {margin:g}  gross (held-out + unseen) "
                      f"{gross:>2}  mean acc {100 * np.mean(accs):.2f} %  targets missed on {len(misses)}: "
                      f"{', '.join(misses)}", flush=True)
    feasible_thresholds = {}
    if args.feasible:
        for study in studies:
            runs = {t: study / t / args.setting for t in tasks}
            feasible_thresholds[str(study)] = {t: feasible(run, target_accuracy(success_ends(run)))
                                               for t, run in runs.items()}
            found = {t: r for t, r in feasible_thresholds[str(study)].items() if r}
            print(f"{study.name}: thresholds meeting the targets exist on {len(found)} of {len(runs)} tasks; none on "
                  f"{', '.join(t for t in runs if t not in found)}", flush=True)
    if args.json:
        summary = {"setting": args.setting, "results": results, "feasible_thresholds": feasible_thresholds}
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
