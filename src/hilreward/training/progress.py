"""One progress display per run, and the run's local history (``metrics.jsonl``, ``training_curve.png``).

:class:`Progress` spans every phase of a run (the model and, with calibration by folds, the fold models) with one
ETA. On a terminal it is a tqdm bar; when the output is a file or a pipe it prints a plain line every tenth of the
run (and at its end), so a log holds a few readable lines instead of thousands of carriage-return updates.

:class:`History` appends one JSON line per logged step and per evaluation to ``<output_dir>/metrics.jsonl`` (loss and
accuracy at every eval, training loss and accuracy every ``training.log_freq`` steps), keeps what a resumed run had
written up to its step, and draws ``training_curve.png`` from it. No W&B needed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Optional

from ..utils import write_atomic

from ..constants import CURVE_NAME, HISTORY_NAME
from ..evaluation.report import read_history


def is_terminal(stream: Optional[IO] = None) -> bool:
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def bar_disabled(enabled: bool = True) -> Optional[bool]:
    """tqdm's ``disable`` for a short inner bar (evaluation, features): off when not shown or not on a terminal."""
    return None if enabled else True  # None: tqdm turns itself off when the output is not a terminal


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return (f"{h}:" if h else "") + f"{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """Steps done of ``total`` over all phases of a run, with an ETA; ``phase`` names what runs now."""

    def __init__(self, total: int, desc: str = "Training", initial: int = 0, enabled: bool = True,
                 stream: Optional[IO] = None):
        self.total, self.done, self.desc, self.enabled = int(total), int(initial), desc, enabled
        self.stream = stream or sys.stderr
        self.postfix: dict[str, str] = {}
        self._t0, self._start = time.perf_counter(), int(initial)
        self._next_line = self._tenth(self.done)
        self._bar = None
        if enabled and is_terminal(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=self.done, desc=desc, dynamic_ncols=True, file=self.stream)

    def _tenth(self, done: int) -> int:
        step = max(1, self.total // 10)
        return (done // step + 1) * step

    def phase(self, desc: str) -> None:
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description(desc)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and (self.done >= self._next_line or self.done >= self.total):
            self._next_line = self._tenth(self.done)
            print(self.line(), file=self.stream, flush=True)

    def set_postfix(self, **values) -> None:
        self.postfix = {k: str(v) for k, v in values.items()}
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def line(self) -> str:
        """``Training: 360/1200 steps (30 %), 00:42 elapsed, ETA 01:38, loss 0.3326, acc 0.831``."""
        elapsed = time.perf_counter() - self._t0
        rate = (self.done - self._start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        text = (f"{self.desc}: {self.done}/{self.total} steps ({100 * self.done / max(self.total, 1):.0f} %), "
                f"{_clock(elapsed)} elapsed, ETA {_clock(eta) if eta == eta else '?'}")
        return text + "".join(f", {k} {v}" for k, v in self.postfix.items())

    def write(self, message: str) -> None:
        """A line above the bar (or a plain line), on stdout."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stdout)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class History:
    """``metrics.jsonl`` of a run: one JSON object per line, ``{"step", "elapsed_s", "phase", <metric>: value}``."""

    def __init__(self, directory: Path, resume_step: Optional[int] = None, enabled: bool = True):
        self.path = Path(directory) / HISTORY_NAME
        self.enabled = enabled
        self.records: list[dict] = []
        if enabled and resume_step is not None and self.path.is_file():  # a resumed run keeps its past
            self.records = [r for r in read_history(self.path) if r.get("step", 0) <= resume_step]
        self._t0 = time.perf_counter() - (self.records[-1].get("elapsed_s", 0.0) if self.records else 0.0)
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))

    def log(self, step: int, metrics: dict, phase: str = "model") -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "elapsed_s": round(time.perf_counter() - self._t0, 3), "phase": phase,
                  **{k: float(v) for k, v in metrics.items()}}
        self.records.append(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def text(self) -> str:
        return "".join(json.dumps(r) + "\n" for r in self.records)

    def draw(self, path: Optional[Path] = None) -> Optional[Path]:
        """``training_curve.png`` beside ``metrics.jsonl`` (None when nothing was logged)."""
        if not self.enabled or not self.records:
            return None
        from ..evaluation.report import training_curve_png

        png = training_curve_png(self.records)
        if png is None:
            return None
        return write_atomic(path or self.path.with_name(CURVE_NAME), png)
