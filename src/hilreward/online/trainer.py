"""The retrainer's model side: one attempt, from the stored corrections to a gated candidate, and its version.

:class:`HeadRetrainer` runs an attempt over parts that each hold one thing:

- :mod:`.model`: the served checkpoint, the weights a version changes (:class:`~.model.State`), the success
  decision (:mod:`hilreward.success`'s, the served reward's);
- :mod:`.pool`: the feature pool (offline, held-out, correction and live rows, each encoded once);
- :mod:`.sorting`: the corrections sorted for an attempt (:class:`~.sorting.Batch`);
- :mod:`.fitting`: fitting a candidate (:class:`~.fitting.FitResult`, :class:`~.fitting.Trial`);
- :mod:`.holdout`: the held-out corrections gate (c); :mod:`.checks`: the offline and live checks and their blame
  (the rules are :mod:`.gate`'s); :mod:`.conflicts`: the corrections they name, and every correction's status;
- :mod:`.publish`: the next version and its support bank; :mod:`.idle`: the work while no correction waits.

The process that drives it, and the order of an attempt, are described in :mod:`.retrainer`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..config import DatasetConfig, TrainConfig, from_yaml
from ..constants import METRICS_NAME, TRAIN_CONFIG_NAME
from ..curation.edits import edited_labels
from ..data import load_frame_data, split_episodes
from ..evaluation.episodes import DEFAULT_TOLERANCE_S
from ..training.features import compute_features, fit_head
from . import gate
from .checks import Checks
from .conflicts import Conflicts
from .events import EnsembleReady
from .fitting import Fitter, Trial
from .gate import HeldOut
from .holdout import HoldoutGate
from .idle import idle_work
from .live import LiveConfirmations, LiveEpisodes
from .model import RetrainModel, State
from .neighbours import NearDuplicates
from .offline_edits import OfflineEdits
from .pool import FeaturePool
from .publish import publish_version, version_support
from .sorting import Batch, sort_corrections
from .store import Assessment, CorrectionStore, Review, StoredCorrection
from .versions import VersionRecord, VersionStore


@dataclass
class RetrainSpec:
    """Everything the retrainer process needs (picklable)."""

    versions_root: str
    """``<state_dir>/versions``; version 0 is the served checkpoint (ensembles go to ``<state_dir>/ensembles``)."""
    store: str
    """Location of the correction store (opened writable: the retrainer records its attempts there): an SQLite path
    or a postgresql:// URL."""
    dataset: DatasetConfig
    """Offline dataset (the checkpoint's held-out episodes are taken from its train_config.yaml)."""
    options: Any
    """online.options.RetrainOptions."""
    threshold: float = 0.5
    """Success threshold used for accuracy, episode outcomes and for "the correction is fixed"."""
    cache_dir: str | None = None
    """Frame and feature cache root."""
    consecutive: int = 1
    """Frames in a row at or above the threshold before success (the served reward's debounce)."""
    success_class: int = -1
    """Multi-class models: the class whose probability counts as success."""


@dataclass
class Attempt:
    """One retraining run and its gate."""

    passed: bool
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    corrections_used: int = 0
    last_correction_id: int = 0
    assessments: list[Assessment] = field(default_factory=list)
    """Every correction's status under this attempt's model."""


@dataclass
class _Reruns:
    """What the reruns of an attempt named, and how long they trained."""

    rerun: int = 0
    named: int = 0
    """Named ``conflicts_offline``."""
    named_live: int = 0
    """Named ``conflicts_live``."""
    dropped: int = 0
    """Broken corrections made contradicted."""
    train_seconds: float = 0.0


@dataclass
class _Round:
    """One run of an attempt: its candidate, and what the gate sees of it."""

    batch: Batch
    trial: Trial
    fixed: np.ndarray
    """Which corrections it classifies as labelled."""
    success: np.ndarray
    """Their success probabilities under it."""
    served_fixed: np.ndarray
    """Which corrections the serving version classifies as labelled."""
    newly: int
    """Gated corrections it fixes that the serving version gets wrong."""
    broken: int
    """Gated corrections it gets wrong that the serving version fixes."""
    live: gate.LiveCheck
    live_repr: np.ndarray | None
    firings: list[gate.LiveFiring]
    live_reason: str
    kind: str

    @property
    def candidate(self) -> State:
        return self.trial.fit.state

    def metrics(self, reruns: _Reruns, evidence: str, heldout: bool, accuracy: float, base_accuracy: float,
                conflicting: int, t0: float) -> dict[str, float]:
        """The attempt's numbers (``evidence``: the offline evidence's metric prefix; ``accuracy`` the candidate's
        frame accuracy on it, ``base_accuracy`` the checkpoint's)."""
        batch, gated, fixed, served_fixed = self.batch, self.batch.gated, self.fixed, self.served_fixed
        return {
            f"{evidence}_accuracy": accuracy, f"{evidence}_accuracy_base": base_accuracy,
            "offline_heldout": float(heldout),
            "corrections_fixed": float(fixed[gated].mean()) if gated.any() else 1.0,
            "corrections_fixed_serving": float(served_fixed[gated].mean()) if gated.any() else 1.0,
            "corrections_newly_fixed": float(self.newly), "corrections_broken": float(self.broken),
            "corrections_gated": float(gated.sum()), "corrections_boundary": float(batch.boundary.sum()),
            "corrections_contradicted": float(batch.contradicted.sum()),
            "corrections_conflicts_offline": float(batch.offline.sum()),
            "corrections_named_offline": float(reruns.named), "corrections_named_broken": float(reruns.dropped),
            "corrections_rejected": float(batch.rejected.sum()),
            "corrections_unusable": float(len(batch.unusable)), "reruns": float(reruns.rerun),
            "adapted_last_stage": float(self.candidate.last is not None), "train_seconds": reruns.train_seconds,
            "corrections_conflicting": float(conflicting), "retrain_seconds": time.perf_counter() - t0,
            "corrections_superseded": float(batch.superseded.sum()),
            "corrections_conflicts_live": float(batch.live.sum()), "corrections_named_live": float(reruns.named_live),
            **self.live.metrics(),
            "train_steps": float(self.trial.fit.steps), "train_loss": float(self.trial.fit.loss),
            **{f"{evidence}_{k}": float(v) for k, v in self.trial.counts.items()},
            **{f"{evidence}_{k}_serving": float(v) for k, v in self.trial.counts_served.items()}}

    def reasons(self, rerun: int, evidence_text: str, frame_index: np.ndarray) -> list[str]:
        """Why the gate refuses this candidate (none: it publishes)."""
        reasons = []
        if self.trial.found:
            reasons.append(f"{evidence_text} " + "; ".join(r.describe(frame_index) for r in self.trial.found) +
                           f" after {rerun} rerun(s) without the corrections blamed (the rest are boundary frames or "
                           "accepted by review: reject those, or relabel the episode)")
        if self.live_reason:
            reasons.append(f"live: {self.live_reason} after {rerun} rerun(s) without the corrections blamed (the rest "
                           "are accepted by review or labelled failure)")
        if self.broken and self.newly <= self.broken:
            wrong = [int(i) for i in self.batch.ids[self.batch.gated & ~self.fixed]]
            reasons.append(f"fixes {self.newly} gated correction(s) the serving version gets wrong and breaks "
                           f"{self.broken}" + (f"; still wrong: {wrong[:10]}" if wrong else ""))
        return reasons


def offline_evidence(checkpoint: Path, train_cfg: Any, episodes: list[int]) -> tuple[list[int], bool]:
    """The checkpoint's held-out episodes among ``episodes`` (those its ``train_config.yaml`` held out and its
    ``metrics.json`` does not list as trained on), and whether there are any: ``([], False)`` when it trained on
    every episode (calibration by folds), whatever the config's split says."""
    held = [e for e in (train_cfg.split.val_episodes or []) if e in set(episodes)]
    metrics = Path(checkpoint) / METRICS_NAME
    try:
        trained = set(json.loads(metrics.read_text()).get("train_episodes") or []) if metrics.is_file() else set()
    except (OSError, ValueError, AttributeError):
        trained = set()
    held = [e for e in held if e not in trained]
    return held, bool(held)


class HeadRetrainer:
    """Loads the base model, offline features and held-out split; trains and gates versions; publishes them.

    Despite the name it adapts the encoder's last stage too with ``retrain.scope=last|auto`` (:mod:`.adapt`)."""

    def __init__(self, spec: RetrainSpec) -> None:
        self.spec, self.options = spec, spec.options
        self.versions = VersionStore(spec.versions_root)
        self.state_dir = Path(spec.versions_root).parent
        base_dir = self.versions.path(0)
        self.net = RetrainModel(base_dir, self.options.scope, spec.threshold, spec.success_class)
        cfg_path = base_dir / TRAIN_CONFIG_NAME
        self.train_config_yaml = cfg_path.read_text() if cfg_path.is_file() else None
        train_cfg = from_yaml(self.train_config_yaml) if self.train_config_yaml else TrainConfig()
        t0 = time.perf_counter()
        self._load_offline(base_dir, train_cfg)
        self.orphaned: Callable[[], bool] = lambda: False
        """True once the server that runs this retrainer died (checked between optimizer steps of an attempt)."""
        self.conflicts = Conflicts()
        self.fitter = Fitter(self.net, self.pool, self.options, orphaned=lambda: self.orphaned())
        self.holdout = HoldoutGate(self.fitter, self.options)
        self.checks = Checks(self.fitter, self.conflicts, self.options, self.held, self.evidence_text,
                             LiveConfirmations(self.state_dir))
        self.live_store = LiveEpisodes(self.state_dir / "live")
        """Live traffic (:mod:`.live`): the episodes the server recorded."""
        self.edits = OfflineEdits(self.state_dir, self.dataset, train_cfg.label.key, train_cfg.label.threshold) \
            if self.net.model.config.num_classes == 2 else None
        self._relabel()
        self.base_accuracy = self._accuracy(self.net.base)
        self.follow(self.versions.latest())
        self.members0: list[dict] | None = None
        """Version 0's ensemble members (:mod:`.idle`)."""
        # The first optimizer step pays seconds of one-time torch imports: pay them now, not after a correction.
        fit_head(self.net.model, {k: v[:2] for k, v in self.pool.features.items()}, self.pool.labels[:2], steps=1)
        self.net.load(self.net.base)
        self.setup_seconds = time.perf_counter() - t0

    def _load_offline(self, base_dir: Path, train_cfg: TrainConfig) -> None:
        """The offline dataset's features (and the trunk's, when more than the head may adapt), its held-out
        episodes, and the near-duplicate index of its training frames."""
        spec, net = self.spec, self.net
        self.dataset = replace(spec.dataset, cameras=list(net.keys))
        data = load_frame_data(self.dataset, train_cfg.label, tuple(net.model.config.image_size),
                               cache_dir=spec.cache_dir)
        episodes = sorted(int(e) for e in np.unique(data.episode_index))
        held, self.heldout = offline_evidence(base_dir, train_cfg, episodes)
        if not held:  # the checkpoint trained on every episode: a regression check on some of them, named so
            _, held = split_episodes(episodes, train_cfg.split.val_fraction, train_cfg.split.seed)
        self.val_episodes = held
        self.evidence = "heldout" if self.heldout else "regression"
        """Metric prefix of the offline evidence: ``heldout`` (episodes the checkpoint never trained on) or
        ``regression`` (training episodes: a regression check, never called held out)."""
        self.evidence_text = "offline held-out" if self.heldout else "offline training (regression check)"
        features = compute_features(net.model, data, cache_dir=spec.cache_dir)
        val_mask = np.isin(data.episode_index, held)
        self.pool = FeaturePool(net, data, features, np.flatnonzero(val_mask), np.flatnonzero(~val_mask))
        self.held = HeldOut(np.asarray(data.episode_index[val_mask]), np.asarray(data.frame_index[val_mask]),
                            float(data.fps or 0.0), DEFAULT_TOLERANCE_S if data.fps else 0.0, int(spec.consecutive))
        self.near = NearDuplicates(self.pool.offline_vectors(), self.pool.recorded[0], *self.pool.train_at,
                                   radius=self.options.contradiction_radius)
        net.split_last_stage()
        if net.stage is not None:  # the trunk's outputs (the last stage's inputs)
            self.pool.add_trunk(compute_features(net.model, data, cache_dir=spec.cache_dir,
                                                 part=("trunk", net.stage.trunk)))

    # ---- versions
    def follow(self, record: VersionRecord) -> None:
        """Take ``record`` as the serving version (at start, and when this retrainer becomes the leader)."""
        if getattr(self, "served", None) is None or self.served.number != record.number:
            self.served = record
            self.served_state = self.net.base if record.number == 0 else \
                self.net.state_of_version(self.versions.path(record.number))

    def publish(self, attempt: Attempt, last_review_id: int = 0) -> VersionRecord:
        """Write the attempt's candidate as the next immutable version (it becomes the serving one)."""
        metrics = {**attempt.metrics, "val_episodes": self.val_episodes, "last_review_id": last_review_id,
                   "corrections_used": attempt.corrections_used, "last_correction_id": attempt.last_correction_id}
        record = publish_version(self.net, self.versions, self.candidate, self.candidate_support, metrics,
                                 {**attempt.metrics, "last_review_id": float(last_review_id)},
                                 attempt.corrections_used, attempt.last_correction_id, self.train_config_yaml)
        self.served, self.served_state = record, self.candidate
        return record

    def _accuracy(self, state: State) -> float:
        """Frame accuracy of ``state`` on the offline evidence."""
        if len(self.pool.val_labels) == 0:
            return float("nan")
        probs = self.net.run(state, self.pool.source("val", state.last is not None))[0]
        return float((self.net.classes(probs) == self.pool.val_labels).mean())

    # ---- offline labels and reviews
    def _relabel(self) -> bool:
        """Apply the offline edits file (reviews' relabels) to the offline labels; True when they changed."""
        if self.edits is None:
            return False
        edits = self.edits.read()
        train = edited_labels(*self.pool.train_at, self.pool.recorded[0], edits)
        val = edited_labels(self.held.episode_index, self.held.frame_index, self.pool.recorded[1], edits)
        if not self.pool.relabel(train, val):
            return False
        self.near.relabel(train)
        self.holdout.heads.clear()
        return True

    def _review_relabels(self, verdicts: dict[int, Review]) -> int:
        """Relabel the offline frames of each ``conflicts_offline`` correction a review accepted (once); returns
        how many edits were added."""
        added = 0
        for cid, record, review in Conflicts.settle(self.conflicts.offline, verdicts):
            if self.edits is not None:
                added += self.edits.relabel(cid, record, review.reviewer or "review")
        if added:
            self._relabel()
        return added

    def _review_live(self, verdicts: dict[int, Review]) -> int:
        """A review that accepts a ``conflicts_live`` correction confirms the live firings it was shown (they are
        successes): they stop counting, and it trains. Returns how many were confirmed."""
        return sum(self.checks.confirmed.confirm(record.get("firings", []))
                   for _, record, _ in Conflicts.settle(self.conflicts.live, verdicts))

    def remember(self, statuses: dict[int, Assessment]) -> None:
        """Take the conflicts an earlier attempt (maybe of a process killed since) named from the store."""
        self.conflicts.remember(statuses)

    # ---- corrections
    def corrections(self, store: CorrectionStore, upto: int) -> list[StoredCorrection]:
        """The stored corrections up to id ``upto``; frames are read (PNG-decoded) only for those not seen yet."""
        seen = max([*self.pool.row_of, *self.pool.unusable], default=0)
        fresh = {c.id: c for c in store.read(seen, upto)}
        return [fresh.get(c.id, c) for c in store.read(0, upto, frames=False)]

    def prepare(self, corrections: list[StoredCorrection], verdicts: dict[int, Review]) -> Batch:
        """Encode the corrections (once each) and sort them (:mod:`.sorting`)."""
        return sort_corrections(corrections, verdicts, self.pool, self.near, self.conflicts,
                                int(self.options.boundary_frames))

    # ---- one attempt
    def attempt(self, corrections: list[StoredCorrection], verdicts: dict[int, Review] | None = None) -> Attempt:
        """Train a candidate on the offline data plus ``corrections``, gate it against the serving version
        (:mod:`.gate`), and leave it in the model. Whatever the gate refuses, the attempt looks for what it can
        publish: conflicts the held-out corrections gate finds become contradicted, corrections that make offline
        held-out episodes wrong become ``conflicts_offline`` (live episodes: ``conflicts_live``), and it runs again
        without them; so every attempt ends in a version, or in named corrections that a review resolves."""
        verdicts = verdicts or {}
        t0 = time.perf_counter()
        relabels = self._review_relabels(verdicts)
        confirmed = self._review_live(verdicts)
        self.pool.load_live(self.live_store, int(self.options.live_episodes), int(self.spec.consecutive))
        batch = self.prepare(corrections, verdicts)
        metrics: dict[str, float] = {"prepare_seconds": time.perf_counter() - t0, "offline_relabels": float(relabels),
                                     "live_confirmed": float(confirmed)}
        reasons: list[str] = []
        batch, conflicting = self._settle_holdout(corrections, verdicts, batch, metrics, reasons)
        last, reruns = self._reruns(corrections, verdicts, batch)
        accuracy = self._accuracy(last.candidate)
        metrics.update(last.metrics(reruns, self.evidence, self.heldout, accuracy, self.base_accuracy, len(conflicting),
                                    t0))
        reasons += last.reasons(reruns.rerun, self.evidence_text, self.held.frame_index)
        self.candidate_support = version_support(self.net, self.pool, last.candidate, last.batch)
        self.net.load(last.candidate)
        self.candidate = last.candidate
        assessments = self.conflicts.assess(last.batch, last.fixed, last.success)
        return Attempt(not reasons, metrics, "; ".join(reasons), int(last.batch.active.sum()), last.batch.last_id,
                       assessments)

    def _settle_holdout(self, corrections: list[StoredCorrection], verdicts: dict[int, Review], batch: Batch,
                        metrics: dict, reasons: list[str]) -> tuple[Batch, dict[int, str]]:
        """Gate (c) until it names no new conflict (at most ``max_reruns + 1`` times): the conflicts it names become
        contradicted, and the corrections are sorted again. Returns the batch and the conflicts named."""
        named: dict[int, str] = {}
        for _ in range(self.options.max_reruns + 1):
            reasons.clear()
            found = {k: v for k, v in self.holdout.check(batch, self.served.last_correction_id, metrics,
                                                         reasons).items() if k not in self.conflicts.gate}
            if not found:
                break
            named.update(found)
            self.conflicts.gate.update(found)
            batch = self.prepare(corrections, verdicts)
        return batch, named

    def _reruns(self, corrections: list[StoredCorrection], verdicts: dict[int, Review],
                batch: Batch) -> tuple[_Round, _Reruns]:
        """Fit and check candidates; while the gate refuses one, name the corrections that caused it and run again
        without them (at most ``max_reruns`` times). Returns the last run and what the reruns named."""
        opts, served = self.options, self.served_state
        served_probs = self.net.run(served, self.pool.source("val", served.last is not None))[0]
        served_fixed = self.fitter.fixed(batch, served)
        adapt = self.net.scope == "last"
        out = _Reruns()
        for rerun in range(opts.max_reruns + 1):
            out.rerun = rerun
            last, adapt = self._round(batch, adapt, served_probs, served_fixed, out)
            if out.rerun == opts.max_reruns:
                break
            if last.trial.found:  # offline regressions: leave out the corrections that pushed it there, run again
                blamed = self.checks.blame_offline(batch, last.candidate, last.trial.found, last.trial.held_repr,
                                                   out.rerun)
                if not blamed:
                    break
                out.named += blamed
            elif last.firings:  # it would pay where the policy goes and no human said success: the same, live
                assert last.live_repr is not None
                blamed = self.checks.blame_live(batch, last.candidate, last.firings, last.live_repr, last.kind,
                                                out.rerun)
                if not blamed:
                    break
                out.named_live += blamed
            elif last.broken and last.newly <= last.broken:  # trained on, yet wrong where the serving version was right
                for i in np.flatnonzero(batch.gated & served_fixed & ~last.fixed):
                    self.conflicts.gate[int(batch.ids[i])] = (
                        "classified otherwise by a model trained on it, though the serving version classifies it as "
                        "labelled: the newer corrections or the offline data say otherwise")
                out.dropped += last.broken
            else:
                break
            batch = self.prepare(corrections, verdicts)
        return last, out

    def _round(self, batch: Batch, adapt: bool, served_probs: np.ndarray, served_fixed: np.ndarray,
               reruns: _Reruns) -> tuple[_Round, bool]:
        """One candidate (with ``scope=auto``, the last stage adapts too when that does better) and what the gate
        sees of it; returns it and whether the last stage adapts from now on."""
        trial = self.checks.trial(batch, adapt, served_probs)
        reruns.train_seconds += trial.seconds
        if self.net.scope == "auto" and not adapt and batch.gated.any() and \
                (trial.fit.fraction < self.options.min_fixed or trial.found):
            # the head alone leaves corrections unfixed or moves old states: the last stage adapts too
            deeper = self.checks.trial(batch, True, served_probs)
            reruns.train_seconds += deeper.seconds
            if (len(deeper.found), -deeper.fit.fraction) < (len(trial.found), -trial.fit.fraction):
                trial, adapt = deeper, True
        predicted, success = self.fitter.judge(batch.rows, trial.fit.state)
        fixed, gated = predicted == batch.labels, batch.gated
        newly, broken = int((fixed & ~served_fixed & gated).sum()), int((~fixed & served_fixed & gated).sum())
        live, live_repr = self.checks.live_check(batch, trial.fit.state, self.served_state)
        firings, live_reason, kind = self.checks.live_verdict(live)
        return _Round(batch, trial, fixed, success, served_fixed, newly, broken, live, live_repr, firings, live_reason,
                      kind), adapt

    # ---- idle work
    def idle_work(self, store: CorrectionStore, should_stop: Callable[[], bool]) -> Iterator[EnsembleReady | None]:
        """Work for the time no correction waits, one fit per step; yields an event (or None) after each
        (:mod:`.idle`)."""
        return idle_work(self, store, should_stop)
