"""Work for the time no correction waits, one fit per step (see :mod:`.retrainer`): the serving version's side of
gate (c), then the uncertainty ensemble of the serving version (:mod:`.ensemble`): version 0's members trained from
scratch on the offline features, later versions' members from version 0's, like the head."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from .ensemble import bootstrap, latest_members, load_members, members_path, new_member, save_members
from .events import EnsembleReady
from .fitting import Fitter
from .model import State
from .sorting import Batch
from .store import CorrectionStore

if TYPE_CHECKING:  # the trainer drives this
    from .trainer import HeadRetrainer


def idle_work(trainer: HeadRetrainer, store: CorrectionStore,
              should_stop: Callable[[], bool]) -> Iterator[EnsembleReady | None]:
    """One fit per step; yields an event (or None) after each, and stops where ``should_stop`` interrupts a fit."""
    fitter, options, model, served = trainer.fitter, trainer.options, trainer.net.model, trainer.served
    batch = trainer.prepare(trainer.corrections(store, served.last_correction_id), store.verdicts())
    held, older = trainer.holdout.plan(batch, served.last_correction_id)
    if held.any():  # not interrupted: the next attempt needs this fit whatever it brings
        trainer.holdout.served_side(batch, held, older)
        yield None
    size = int(options.ensemble)
    if size <= 0 or members_path(trainer.state_dir, served.number).is_file():
        return
    t0 = time.perf_counter()
    seeds = [options.seed + 101 * (k + 1) for k in range(size)]
    if trainer.members0 is None:
        existing = latest_members(trainer.state_dir, 0)
        if existing is not None:
            trainer.members0 = [m.state_dict() for m in load_members(existing[1], model)]
    if trainer.members0 is None or len(trainer.members0) < size:  # version 0's: from scratch, offline data only
        trained = []
        for k in range(size):
            nothing = np.zeros(len(batch.ids), bool)
            state = train_member(fitter, new_member(model, seeds[k]).state_dict(), batch, nothing, nothing, seeds[k],
                                 bootstrap(fitter.pool.n_offline, k), should_stop, steps=options.ensemble_steps,
                                 early_stop=False)
            if state is None:
                return
            trained.append(state)
            yield None
        trainer.members0 = trained
        if served.number != 0:
            save_members(members_path(trainer.state_dir, 0), member_heads(model, trainer.members0))
    states = trainer.members0
    if served.number != 0:  # later versions' members: from version 0's, like the head, on its features
        features = fitter.pool.features_of(trainer.served_state)
        states = []
        for k in range(size):
            state = train_member(fitter, trainer.members0[k], batch, batch.active, batch.gated, seeds[k],
                                 bootstrap(fitter.pool.n_offline, k), should_stop, features=features)
            if state is None:
                return
            states.append(state)
            yield None
    save_members(members_path(trainer.state_dir, served.number), member_heads(model, states))
    yield EnsembleReady(served.number, size, time.perf_counter() - t0)


def train_member(fitter: Fitter, start: dict, batch: Batch, include: np.ndarray, check: np.ndarray, seed: int,
                 offline_scale: np.ndarray, should_stop: Callable[[], bool], **fit) -> dict | None:
    """An ensemble member trained from ``start`` (None when interrupted); the served head is kept aside."""
    model = fitter.net.model
    served = model.reward_head
    model.reward_head = member_heads(model, [start])[0]
    try:
        done = fitter.fit(batch, include, check, State(start), seed, offline_scale, should_stop=should_stop, **fit)
        return None if done is None else done.state.head
    finally:
        model.reward_head = served
        model.eval()


def member_heads(model, states: list[dict]) -> list:
    """Member modules holding ``states``."""
    heads = []
    for k, state in enumerate(states):
        head = new_member(model, k)
        head.load_state_dict(state)
        heads.append(head)
    return heads
