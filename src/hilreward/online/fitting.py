"""Fitting a candidate (step 3 of :mod:`.retrainer`): the head, and with ``adapt`` the encoder's last stage too,
from given weights, on the offline training rows plus the corrections, class-balanced.

Each correction is weighted like ``retrain.correction_weight`` offline frames of its class (a contradicted one like
``contradicted_weight``, a boundary frame like ``boundary_weight``). Training runs at least ``retrain.min_steps``
and at most ``retrain.steps`` steps (``training.features.fit_head``: one optimizer throughout), and stops once
``retrain.min_fixed`` of the checked corrections are classified as labelled, by the served reward's success
decision (:mod:`hilreward.success`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..training.features import fit_head
from . import gate
from .model import RetrainModel, State
from .pool import FeaturePool
from .sorting import Batch


class Orphaned(Exception):
    """The server that started this retrainer is gone: nothing it trains now could be recorded or served."""


@dataclass
class FitResult:
    """What one fit gave."""

    state: State
    """The weights it ended with (the model holds them too)."""
    fixed: np.ndarray
    """Which corrections of the batch it classifies as labelled (at its last check)."""
    fraction: float
    """The share of the checked corrections among them (1 when none was checked)."""
    steps: int
    seconds: float
    loss: float


@dataclass
class Trial:
    """A candidate fitted for an attempt, and what it does to the offline evidence."""

    fit: FitResult
    held_repr: np.ndarray | None
    """Its penultimate features of the held-out rows (what blame compares corrections with)."""
    found: list[gate.Regression]
    """The held-out episodes it makes wrong where the serving version was right."""
    counts: dict[str, int]
    """Its episode errors on the held-out episodes, by kind."""
    counts_served: dict[str, int]
    """The serving version's."""

    @property
    def seconds(self) -> float:
        return self.fit.seconds


class Fitter:
    """Fits candidates on the pool's rows and judges corrections under given weights."""

    def __init__(self, net: RetrainModel, pool: FeaturePool, options: Any,
                 orphaned: Callable[[], bool] = lambda: False) -> None:
        self.net, self.pool, self.options, self.orphaned = net, pool, options, orphaned

    def weights(self, batch: Batch, include: np.ndarray) -> np.ndarray:
        """Sampling weight of each correction of ``batch`` (0 outside ``include``)."""
        opts = self.options
        per = np.array([self.pool.per_class.get(int(y), 1) for y in batch.labels], dtype=np.float64)
        w = np.where(batch.contradicted, opts.contradicted_weight,
                     np.where(batch.boundary, opts.boundary_weight, opts.correction_weight)) / per
        return np.where(include & batch.active, w, 0.0)

    def judge(self, rows: np.ndarray, state: State) -> tuple[np.ndarray, np.ndarray]:
        """(class, success probability) of pool ``rows`` under ``state``."""
        if len(rows) == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        probs = self.net.run(state, self.pool.source("pool", state.last is not None), rows)[0]
        return self.net.classes(probs), self.net.success(probs).astype(np.float64)

    def fixed(self, batch: Batch, state: State) -> np.ndarray:
        """Which corrections of ``batch`` ``state`` classifies as labelled."""
        return self.judge(batch.rows, state)[0] == batch.labels

    def fit(self, batch: Batch, include: np.ndarray, check: np.ndarray, start: State, seed: int,
            offline_scale: np.ndarray | None = None, steps: int | None = None, early_stop: bool = True,
            should_stop: Callable[[], bool] | None = None, adapt: bool = False,
            features: dict[str, np.ndarray] | None = None) -> FitResult | None:
        """Train from ``start`` (the head; with ``adapt`` the encoder's last stage too) on the offline rows (their
        weights scaled by ``offline_scale``) plus the ``include`` d corrections, in chunks, until ``min_fixed`` of
        the ``check`` ed ones are classified as labelled (or ``steps``). The model keeps the result; None when
        ``should_stop`` interrupted it (:class:`Orphaned` when its server died)."""
        pool, net, opts = self.pool, self.net, self.options
        n = pool.used
        weights = np.zeros(n)
        weights[:pool.n_offline] = pool.offline_weights * (1.0 if offline_scale is None else offline_scale)
        weights[batch.rows] = self.weights(batch, include)
        if adapt:
            source = pool.trunk
        elif features is None and start.last is not None:  # head only, on a version whose last stage adapted
            source = pool.features_of(start)
        else:
            source = features or pool.features
        assert source is not None
        net.load(start)
        if adapt:
            assert net.stage is not None
            net.stage.trainable()
        judged: dict[str, Any] = {}

        def enough(done: int) -> bool:  # every check_every steps, one optimizer throughout
            fixed = self.fixed(batch, net.current(adapt, start))
            net.model.train()
            judged.update(fixed=fixed, fraction=float(fixed[check].mean()) if check.any() else 1.0)
            return early_stop and done >= opts.min_steps and judged["fraction"] >= opts.min_fixed

        stats = fit_head(net.model, {k: v[:n] for k, v in source.items()}, pool.labels[:n], weights,
                         steps=int(steps or opts.steps), batch_size=opts.batch_size, lr=opts.lr, seed=seed,
                         should_stop=lambda: self.orphaned() or (should_stop is not None and should_stop()),
                         check=enough, check_every=opts.check_every,
                         stage=net.stage.module if adapt and net.stage is not None else None)
        net.model.eval()
        if stats["stopped"] == "should_stop":
            if self.orphaned():
                raise Orphaned
            return None
        return FitResult(net.current(adapt, start), judged["fixed"], judged["fraction"], stats["steps"],
                         stats["seconds"], stats["loss"])
