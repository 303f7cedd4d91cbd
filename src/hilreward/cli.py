"""``hilreward <command> key=value ...``: the console script.

Every command takes Hydra-style ``key=value`` overrides. A :class:`HilrewardError`
becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import importlib
import os
import sys

# Before torch loads: idle OpenMP threads sleep instead of spinning, so a 2-core machine
# running the trainer beside an RL loop (or a data loader) is not starved.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dataclasses import dataclass  # noqa: E402

from .errors import HilrewardError  # noqa: E402
from .usage import HelpRequested, usage  # noqa: E402
from .utils import Registry  # noqa: E402

@dataclass(frozen=True)
class Command:
    target: str
    """``module:function`` taking the arguments after the command name (imported only when the command runs)."""
    summary: str
    """One line for ``hilreward --help``."""


COMMANDS: Registry[Command] = Registry("command")
for _name, _target, _summary in [
    ("inspect", "hilreward.data.inspect:main", "summarise a dataset: episodes, cameras, labels, contact sheet"),
    ("train", "hilreward.training.loop:main", "train a reward classifier (Hydra config: `hilreward train --help`)"),
    ("eval", "hilreward.evaluation.cli:eval_main", "evaluate a checkpoint: metrics, thresholds, report.html"),
    ("predict", "hilreward.evaluation.cli:predict_main", "per-frame probabilities for a dataset without labels"),
    ("export", "hilreward.deploy.export:main", "export a checkpoint: ONNX, or a folder stock LeRobot loads"),
    ("push", "hilreward.hub.push:main", "upload a checkpoint to the Hugging Face Hub, its model card first"),
    ("serve", "hilreward.app.serve:main", "run the gRPC reward service (console=true: with the console)"),
    ("corrections", "hilreward.online.cli:main", "list, show, accept, reject, export or migrate stored corrections"),
    ("sim", "hilreward.sim.cli:main", "render a Meta-World task into a LeRobot v3.0 dataset"),
    ("suspects", "hilreward.curation.suspects:main", "find doubtful labels: k-fold out-of-fold disagreement spans"),
    ("label", "hilreward.app.label:main", "the label station: a local web page to see and fix success labels"),
    ("relabel", "hilreward.curation.relabel:main", "write a new LeRobot dataset with the label station's edits"),
    ("console", "hilreward.app.console:main", "the operator console: watch and correct a reward server"),
]:
    COMMANDS.register(_name, Command(_target, _summary))


ACTIONS = {"corrections": ("list", "show", "accept", "reject", "export", "migrate")}
"""Commands whose first argument is an action (its keys are the action's)."""


def commands_usage() -> str:
    lines = ["usage: hilreward <command> [key=value ...]   (hilreward <command> --help: its keys; "
             "hilreward --version)", "", "commands:"]
    lines += [f"  {name:<12} {COMMANDS.get(name).summary}" for name in COMMANDS.names()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(commands_usage())
        return 0
    if argv[0] in ("-V", "--version", "version"):
        from . import __version__

        print(f"hilreward {__version__}")
        return 0
    name, args = argv[0], argv[1:]
    try:
        command = COMMANDS.get(name)
    except HilrewardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    module, _, func = command.target.partition(":")
    summary = command.summary
    try:
        run = getattr(importlib.import_module(module), func)
        return int(run(args) or 0)
    except HelpRequested as req:
        print(usage(" ".join([name, *[a for a in args if a in ACTIONS.get(name, ())][:1]]), summary, req.schemas,
                    req.note, defaults=req.defaults), end="")
        return 0
    except HilrewardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
