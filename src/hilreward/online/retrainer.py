"""The ever-correcting loop: human corrections -> a validated new model version, off the serving path.

:class:`Retrainer` runs :func:`retrainer_main` in a separate process (``spawn``), so training
never competes with Predict for the server's GIL. At start the process loads the served
checkpoint (``versions/0``), the offline dataset and its frozen-encoder features
(``training.compute_features``, cached on disk). It then wakes on every new correction or
review (or every ``retrain.every``-th correction, at most once per ``retrain.min_interval_s``),
waits until none arrived for ``retrain.quiet_s`` (so a burst of clicks trains once), and runs
one attempt over every stored correction:

1. **Sort the corrections.** A correction rejected by review never trains. One whose frames
   are near-identical to an offline frame or another correction with a different label
   (:mod:`.neighbours`) is *contradicted*: it trains with the weight of one offline frame
   (``retrain.contradicted_weight``) and no gate counts it, until a review accepts it.
2. **Train** the head, reset to the checkpoint's head, on the offline training episodes'
   features plus the corrections, class-balanced, each correction weighted like
   ``retrain.correction_weight`` offline frames of its class, checking the corrections every
   ``retrain.check_every`` steps (one optimizer throughout), stopping as soon as
   ``retrain.min_fixed`` of the gated corrections are classified as labelled (at most
   ``retrain.steps``): the smallest update that does the job.
3. **Gate** the head: (a) accuracy on the checkpoint's held-out episodes may drop by at most
   ``retrain.tolerance``; (b) at least ``retrain.min_fixed`` of the gated corrections are fixed,
   or at least as many as the serving version classifies as labelled (so corrections no head
   can fix never stop the loop); (c) on the corrections it did not train on: the corrections of
   the ``retrain.holdout_episodes`` most recent episodes that the serving version learned from
   are held out, the same training runs without them, and its accuracy on them may not fall
   more than ``retrain.holdout_tolerance`` (and one correction) below that of the serving
   version's training data without them (is the new batch a regression on the new distribution?).
   Both heads of (c) train ``retrain.holdout_steps`` steps without early stopping (like with
   like). When (c) fails, the held-out corrections made wrong and the new corrections labelled
   otherwise (all new ones when none is) are in *conflict*: they become contradicted (for review; a review that accepts one
   makes it train fully again) and the attempt runs once more without them, so a conflict never
   stalls the loop while the regression stays unpublished. (c) runs before step 2, so an attempt
   that finds a conflict trains nothing more before the run without it.
4. **Publish** a passing head as the next immutable ``versions/<n>/``; either way every
   correction's status (fixed / unfixed / contradicted / rejected) goes to the server, which
   records the attempt in the store. A failing head is dropped.

While no correction waits it uses the time for work the next attempt or the server needs:
the serving version's side of gate (c) (run to the end: the next attempt needs it), and the
uncertainty ensemble of the serving version (:mod:`.ensemble`; version 0's members are trained
from scratch on the offline features, later versions' members from version 0's, like the head).
Ensemble training stops as soon as a correction arrives.

It retrains only while it leads the store (``store.leadership()``): with several replicas on one
PostgreSQL store every replica runs a retrainer, set up and on standby, and the one holding the
advisory lock trains; when it dies another takes the lock within a second. A new leader first
removes what a predecessor that died mid-publish left and announces the newest version, then
announces each version it publishes (and each new ensemble), so every replica serves the same one.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..config import DatasetConfig
from ..errors import HilrewardError
from .ensemble import bootstrap, latest_members, load_members, members_path, new_member, save_members
from .neighbours import NearDuplicates, pooled
from .store import Assessment, CorrectionStore, Leadership, Review, StoredCorrection
from .versions import VersionRecord, VersionStore

_STOP = "stop"


@dataclass
class RetrainSpec:
    """Everything the retrainer process needs (picklable)."""

    versions_root: str
    """``<state_dir>/versions``; version 0 is the served checkpoint (ensembles go to ``<state_dir>/ensembles``)."""
    store: str
    """Location of the correction store (opened read-only): an SQLite path or a postgresql:// URL."""
    dataset: DatasetConfig
    """Offline dataset (the checkpoint's held-out episodes are taken from its train_config.yaml)."""
    options: Any
    """serving.server.RetrainOptions."""
    threshold: float = 0.5
    """Success threshold used for accuracy and for "the correction is fixed"."""
    cache_dir: str | None = None
    """Frame and feature cache root."""


@dataclass
class Attempt:
    """One retraining run and its gate."""

    passed: bool
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    corrections_used: int = 0
    last_correction_id: int = 0
    assessments: list[Assessment] = field(default_factory=list)
    """Every correction's status under this attempt's head."""


@dataclass
class _Batch:
    """The stored corrections as one attempt sees them (arrays aligned with ``ids``)."""

    ids: np.ndarray
    rows: np.ndarray
    """Rows of the feature pool holding their features."""
    labels: np.ndarray
    groups: list[tuple[int, int]]
    """(episode, env_index) of each."""
    rejected: np.ndarray
    contradicted: np.ndarray
    details: dict[int, str]
    unusable: dict[int, str]
    """Corrections that cannot train this model (missing cameras) -> why."""
    last_id: int

    @property
    def active(self) -> np.ndarray:
        return ~self.rejected

    @property
    def gated(self) -> np.ndarray:
        return ~self.rejected & ~self.contradicted


class HeadRetrainer:
    """Loads the base model, offline features and held-out split; trains and gates heads; publishes versions."""

    def __init__(self, spec: RetrainSpec) -> None:
        import torch

        from ..config import TrainConfig, from_yaml
        from ..data import load_frame_data, split_episodes
        from ..models import RewardClassifier
        from ..training.features import compute_features

        self._torch = torch
        self.spec = spec
        self.options = spec.options
        self.versions = VersionStore(spec.versions_root)
        self.state_dir = Path(spec.versions_root).parent
        base_dir = self.versions.path(0)
        self.base_version = self.versions.get(0).version
        self.model = RewardClassifier.from_pretrained(base_dir).eval()
        self.base_state = self._head_state()
        cfg_path = base_dir / "train_config.yaml"
        self.train_config_yaml = cfg_path.read_text() if cfg_path.is_file() else None
        train_cfg = from_yaml(self.train_config_yaml) if self.train_config_yaml else TrainConfig()

        t0 = time.perf_counter()
        dataset = replace(spec.dataset, cameras=list(self.model.camera_keys))
        data = load_frame_data(dataset, train_cfg.label, tuple(self.model.config.image_size), cache_dir=spec.cache_dir)
        episodes = sorted(int(e) for e in np.unique(data.episode_index))
        held = [e for e in (train_cfg.split.val_episodes or []) if e in set(episodes)]
        if not held:
            _, held = split_episodes(episodes, train_cfg.split.val_fraction, train_cfg.split.seed)
        self.val_episodes = held
        features = compute_features(self.model, data, cache_dir=spec.cache_dir)
        val_mask = np.isin(data.episode_index, held)
        train_rows, val_rows = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
        self.val_features = {c: np.asarray(f[val_rows]) for c, f in features.items()}
        self.val_labels = np.asarray(data.labels[val_rows], dtype=np.int64)
        # The feature pool: the offline training rows, then one row per correction (grown as needed).
        self.n_offline = len(train_rows)
        offline = {c: np.asarray(f[train_rows]) for c, f in features.items()}
        self._pool = {c: np.concatenate([f, np.zeros((256, *f.shape[1:]), f.dtype)]) for c, f in offline.items()}
        self._pool_labels = np.concatenate([np.asarray(data.labels[train_rows], dtype=np.int64),
                                            np.zeros(256, np.int64)])
        self._used = self.n_offline
        self._row_of: dict[int, int] = {}
        self._unusable: dict[int, str] = {}
        self._vector_of: dict[int, np.ndarray] = {}
        offline_labels = self._pool_labels[:self.n_offline]
        classes, counts = np.unique(offline_labels, return_counts=True)
        self.per_class = dict(zip(classes.tolist(), counts.tolist()))
        self.offline_weights = 1.0 / np.array([self.per_class[int(y)] for y in offline_labels], dtype=np.float64)
        self.near = NearDuplicates(pooled(offline, self.model.camera_keys), offline_labels,
                                   data.episode_index[train_rows], data.frame_index[train_rows],
                                   radius=self.options.contradiction_radius)
        del offline
        self.base_accuracy = self._accuracy(self.val_features, self.val_labels)

        self.follow(self.versions.latest())
        self._members0: list[dict] | None = None
        self._holdout_heads: dict[tuple, dict] = {}
        self._conflicts: dict[int, str] = {}
        """Corrections the held-out corrections gate found in conflict (id -> why): contradicted from then on."""
        # The first optimizer step pays seconds of one-time torch imports: pay them now, not after a correction.
        from ..training.features import fit_head

        fit_head(self.model, {k: v[:2] for k, v in self._pool.items()}, self._pool_labels[:2], steps=1)
        self._load_head(self.base_state)
        self.setup_seconds = time.perf_counter() - t0

    # ---- model helpers
    def _head_state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.reward_head.state_dict().items()}

    def _load_head(self, state: dict) -> None:
        self.model.reward_head.load_state_dict(state)
        self.model.eval()

    def follow(self, record: VersionRecord) -> None:
        """Take ``record`` as the serving version (at start, and when this retrainer becomes the leader)."""
        if getattr(self, "served", None) is None or self.served.number != record.number:
            self.served = record
            self.served_state = self.base_state if record.number == 0 else self._state_of_version(record.number)

    def _state_of_version(self, number: int) -> dict:
        from ..models.checkpoint import read_weights

        return read_weights(self.versions.path(number), prefix="reward_head.")

    def _probabilities(self, features: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        n = len(next(iter(features.values())))
        out = []
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, n, 512):
                logits = self.model.head({c: torch.from_numpy(np.asarray(f[s:s + 512], dtype=np.float32))
                                          for c, f in features.items()})
                out.append(self.model.probabilities(logits).numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def _classes(self, probs: np.ndarray) -> np.ndarray:
        if self.model.config.num_classes == 2:
            return (probs >= self.spec.threshold).astype(np.int64)
        return probs.argmax(-1)

    def _accuracy(self, features: dict[str, np.ndarray], labels: np.ndarray) -> float:
        if len(labels) == 0:
            return float("nan")
        return float((self._classes(self._probabilities(features)) == labels).mean())

    def _rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[rows] for k, v in self._pool.items()}

    def _judge(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class, success probability) of pool ``rows`` under the current head."""
        if len(rows) == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        probs = self._probabilities(self._rows(rows))
        success = probs if probs.ndim == 1 else probs[:, -1]
        return self._classes(probs), success.astype(np.float64)

    # ---- corrections -> pool rows
    def _add(self, correction: StoredCorrection) -> int | None:
        """Pool row of a correction's features (encoded once), None when it lacks a camera of the model."""
        if correction.id in self._row_of:
            return self._row_of[correction.id]
        frames = correction.correction.frames
        if any(k not in frames for k in self.model.camera_keys):
            return None
        with self._torch.inference_mode():
            feats = self.model.encode(self.model.preprocess({k: frames[k][None] for k in self.model.camera_keys}))
        feats = {k: v.float().numpy() for k, v in feats.items()}
        row = self._used
        if row == len(self._pool_labels):  # grow the pool
            extra = max(256, row - self.n_offline)
            self._pool = {c: np.concatenate([f, np.zeros((extra, *f.shape[1:]), f.dtype)]) for c, f in self._pool.items()}
            self._pool_labels = np.concatenate([self._pool_labels, np.zeros(extra, np.int64)])
        for c, f in feats.items():
            self._pool[c][row] = f[0]
        self._pool_labels[row] = int(correction.correction.label)
        self._used += 1
        self._row_of[correction.id] = row
        self._vector_of[correction.id] = pooled(feats, self.model.camera_keys)[0]
        return row

    def corrections(self, store: CorrectionStore, upto: int) -> list[StoredCorrection]:
        """The stored corrections up to id ``upto``; frames are read (PNG-decoded) only for those not seen yet."""
        seen = max(self._row_of, default=0)
        fresh = {c.id: c for c in store.read(seen, upto)}
        return [fresh.get(c.id, c) for c in store.read(0, upto, frames=False)]

    def prepare(self, corrections: list[StoredCorrection], verdicts: dict[int, Review]) -> _Batch:
        """Encode the corrections (once each) and sort them: rejected, contradicted, gated."""
        usable, rows, unusable = [], [], {}
        for c in corrections:
            row = self._add(c)
            if row is None:
                if c.id not in self._unusable:
                    missing = [k for k in self.model.camera_keys if k not in c.correction.frames]
                    self._unusable[c.id] = f"has no frame of camera(s) {', '.join(missing)} of this model"
                unusable[c.id] = self._unusable[c.id]
            else:
                usable.append(c)
                rows.append(row)
        ids = np.array([c.id for c in usable], dtype=np.int64)
        labels = np.array([c.correction.label for c in usable], dtype=np.int64)
        rejected = np.array([getattr(verdicts.get(int(i)), "verdict", "") == "reject" for i in ids], dtype=bool)
        accepted = np.array([getattr(verdicts.get(int(i)), "verdict", "") == "accept" for i in ids], dtype=bool)
        keep = np.flatnonzero(~rejected)
        found = self.near.find([int(i) for i in ids[keep]],
                               np.stack([self._vector_of[int(i)] for i in ids[keep]]) if len(keep) else
                               np.zeros((0, 0), np.float32), labels[keep])
        contradicted = np.array([int(i) in found or int(i) in self._conflicts for i in ids], dtype=bool) \
            & ~accepted & ~rejected
        details = {**self._conflicts, **{cid: c.detail for cid, c in found.items()}}
        for i in ids[rejected]:
            review = verdicts[int(i)]
            details[int(i)] = f"rejected by {review.reviewer or 'review'}" + (f": {review.note}" if review.note else "")
        return _Batch(ids, np.array(rows, dtype=np.int64), labels,
                      [(c.correction.episode, c.correction.env_index) for c in usable], rejected, contradicted,
                      details, unusable, max([c.id for c in corrections], default=0))

    def _weights(self, batch: _Batch, include: np.ndarray) -> np.ndarray:
        """Sampling weight of each correction of ``batch`` (0 outside ``include``)."""
        per = np.array([self.per_class.get(int(y), 1) for y in batch.labels], dtype=np.float64)
        w = np.where(batch.contradicted, self.options.contradicted_weight, self.options.correction_weight) / per
        return np.where(include & batch.active, w, 0.0)

    # ---- training
    def _fit(self, batch: _Batch, include: np.ndarray, check: np.ndarray, start: dict, seed: int,
             offline_scale: np.ndarray | None = None, steps: int | None = None, early_stop: bool = True,
             should_stop: Callable[[], bool] | None = None) -> dict | None:
        """Train the head from ``start`` on the offline rows plus the ``include`` d corrections, in chunks,
        until ``min_fixed`` of the ``check`` ed ones are classified as labelled (or ``steps``).
        Returns the fit's numbers, or None when ``should_stop`` interrupted it."""
        from ..training.features import fit_head

        n = self._used
        weights = np.zeros(n)
        weights[:self.n_offline] = self.offline_weights * (1.0 if offline_scale is None else offline_scale)
        weights[batch.rows] = self._weights(batch, include)
        features = {k: v[:n] for k, v in self._pool.items()}
        labels = self._pool_labels[:n]
        self._load_head(start)
        judged: dict[str, Any] = {}

        def enough(done: int) -> bool:  # every check_every steps, one optimizer throughout
            fixed = self._judge(batch.rows)[0] == batch.labels
            judged.update(fixed=fixed, fraction=float(fixed[check].mean()) if check.any() else 1.0)
            return early_stop and judged["fraction"] >= self.options.min_fixed

        stats = fit_head(self.model, features, labels, weights, steps=int(steps or self.options.steps),
                         batch_size=self.options.batch_size, lr=self.options.lr, seed=seed, should_stop=should_stop,
                         check=enough, check_every=self.options.check_every)
        self.model.eval()
        if stats["stopped"] == "should_stop":
            return None
        return {**judged, "steps": stats["steps"], "seconds": stats["seconds"], "loss": stats["loss"]}

    def _holdout_plan(self, batch: _Batch, served_last_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(held out, older): the gated corrections of the newest ``holdout_episodes`` episodes the serving
        version learned from, and every active correction the serving version learned from."""
        older = batch.active & (batch.ids <= served_last_id)
        held = np.zeros(len(batch.ids), dtype=bool)
        if self.options.holdout_episodes <= 0:
            return held, older
        newest: dict[tuple[int, int], int] = {}
        for i in np.flatnonzero(older & batch.gated):
            newest[batch.groups[i]] = max(newest.get(batch.groups[i], 0), int(batch.ids[i]))
        picked = set(sorted(newest, key=newest.get)[-self.options.holdout_episodes:])
        held = np.array([g in picked for g in batch.groups], dtype=bool) & older & batch.gated
        return held, older

    def _served_holdout(self, batch: _Batch, held: np.ndarray, older: np.ndarray) -> np.ndarray:
        """Which of ``held`` a head trained like the serving version without them classifies as labelled. The
        fitted head is cached by what it trained on: while the newest episodes grow, the rest stays the same."""
        include = older & ~held
        weights = self._weights(batch, include)
        key = tuple((int(i), round(float(w), 9)) for i, w in zip(batch.ids, weights) if w > 0)
        if key not in self._holdout_heads:
            self._fit(batch, include, include & batch.gated, self.base_state, self.options.seed,
                      steps=self.options.holdout_steps, early_stop=False)
            while len(self._holdout_heads) >= 4:
                self._holdout_heads.pop(next(iter(self._holdout_heads)))
            self._holdout_heads[key] = self._head_state()
        self._load_head(self._holdout_heads[key])
        return self._judge(batch.rows[held])[0] == batch.labels[held]

    # ---- one run
    def attempt(self, corrections: list[StoredCorrection], verdicts: dict[int, Review] | None = None) -> Attempt:
        """Train the head on the offline data plus ``corrections`` and gate it (the model keeps the new head).

        When the held-out corrections gate finds that new corrections make older ones wrong, both sides of the
        conflict become contradicted (reported for review, trained lightly, not gated) and the attempt runs
        once more without them, so a conflict never stalls the loop."""
        t0 = time.perf_counter()
        result, conflicts = self._attempt(corrections, verdicts or {}, final=False)
        if conflicts:
            self._conflicts.update(conflicts)
            result, _ = self._attempt(corrections, verdicts or {}, final=True)
        assert result is not None
        result.metrics.update(retrain_seconds=time.perf_counter() - t0, corrections_conflicting=float(len(conflicts)))
        return result

    def _attempt(self, corrections: list[StoredCorrection], verdicts: dict[int, Review],
                 final: bool) -> tuple[Attempt | None, dict]:
        """One training run and its gate, and the conflicts the held-out corrections gate found (id -> why).

        That gate runs first: when it finds conflicts and this is not the ``final`` run, nothing else is
        trained (None is returned; the run without them follows)."""
        opts = self.options
        conflicts: dict[int, str] = {}
        t0 = time.perf_counter()
        batch = self.prepare(corrections, verdicts)
        prepared = time.perf_counter() - t0
        gated = batch.gated
        metrics: dict[str, float] = {"prepare_seconds": prepared}
        reasons = []
        held, older = self._holdout_plan(batch, self.served.last_correction_id)
        new = batch.active & (batch.ids > self.served.last_correction_id)
        if held.any() and new.any():
            t0 = time.perf_counter()
            before = np.zeros(len(batch.ids), dtype=bool)
            before[held] = self._served_holdout(batch, held, older)
            trial = self._fit(batch, batch.active & ~held, gated & ~held, self.base_state, opts.seed,
                              steps=opts.holdout_steps, early_stop=False)
            assert trial is not None
            right, total = int(trial["fixed"][held].sum()), int(held.sum())
            metrics.update({"holdout_corrections": float(total), "holdout_accuracy": right / total,
                            "holdout_accuracy_serving": float(before.sum()) / total,
                            "holdout_seconds": time.perf_counter() - t0})
            if right < before.sum() - max(1.0, opts.holdout_tolerance * total):
                broken = held & before & ~trial["fixed"]
                ids = [int(i) for i in batch.ids[broken]]
                reasons.append(f"the new corrections make held-out corrections {ids[:10]} of recent episodes wrong "
                               f"({right}/{total} right; without the new ones {int(before.sum())}/{total}; "
                               f"holdout_tolerance {opts.holdout_tolerance} but at least one)")
                conflicts = self._conflicts_of(batch, broken, new & gated)
                if conflicts and not final:
                    return None, conflicts
        fit = self._fit(batch, batch.active, gated, self.base_state, opts.seed)
        assert fit is not None
        candidate = self._head_state()
        predicted, success = self._judge(batch.rows)
        fixed = predicted == batch.labels
        accuracy = self._accuracy(self.val_features, self.val_labels)
        self._load_head(self.served_state)
        served_fixed = self._judge(batch.rows)[0] == batch.labels
        fraction = float(fixed[gated].mean()) if gated.any() else 1.0
        served_fraction = float(served_fixed[gated].mean()) if gated.any() else 1.0
        metrics.update({"heldout_accuracy": accuracy, "heldout_accuracy_base": self.base_accuracy,
                        "corrections_fixed": fraction, "corrections_fixed_serving": served_fraction,
                        "corrections_gated": float(gated.sum()),
                        "corrections_contradicted": float(batch.contradicted.sum()),
                        "corrections_rejected": float(batch.rejected.sum()),
                        "corrections_unusable": float(len(batch.unusable)), "train_steps": float(fit["steps"]),
                        "train_seconds": fit["seconds"], "train_loss": float(fit["loss"])})
        if not np.isnan(accuracy) and accuracy < self.base_accuracy - opts.tolerance:
            reasons.append(f"held-out accuracy {accuracy:.4f} < {self.base_accuracy:.4f} - tolerance {opts.tolerance}")
        if fraction < opts.min_fixed and fraction < served_fraction:
            wrong = [int(i) for i in batch.ids[gated & ~fixed]]
            reasons.append(f"corrections {wrong[:10]} still classified against their label ({fraction:.2%} fixed < "
                           f"min_fixed {opts.min_fixed:.2%} and < the serving version's {served_fraction:.2%})")
        self._load_head(candidate)
        assessments = self._assess(batch, fixed, success)
        return (Attempt(not reasons, metrics, "; ".join(reasons), int(batch.active.sum()), batch.last_id, assessments),
                conflicts)

    @staticmethod
    def _conflicts_of(batch: _Batch, broken: np.ndarray, new: np.ndarray) -> dict[int, str]:
        """The held-out corrections the new ones made wrong, and the new ones labelled otherwise than one of
        them (those push it across), or every new one when none is: id -> why."""
        labels = set(batch.labels[broken].tolist())
        culprits = new & np.array([bool(labels - {y}) for y in batch.labels.tolist()], dtype=bool)
        if not culprits.any():
            culprits = new
        if not broken.any() or not culprits.any():
            return {}
        victims, blamed = [int(i) for i in batch.ids[broken]], [int(i) for i in batch.ids[culprits]]
        out = {i: f"made wrong by newer corrections {blamed[:10]} (held-out corrections gate)" for i in victims}
        out.update({i: f"makes held-out corrections {victims[:10]} of recent episodes wrong (held-out corrections "
                       "gate)" for i in blamed})
        return out

    def _assess(self, batch: _Batch, fixed: np.ndarray, success: np.ndarray) -> list[Assessment]:
        out = [Assessment(cid, "unfixed", -1.0, why) for cid, why in batch.unusable.items()]
        for i, cid in enumerate(batch.ids.tolist()):
            if batch.rejected[i]:
                status = "rejected"
            elif batch.contradicted[i]:
                status = "contradicted"
            else:
                status = "fixed" if fixed[i] else "unfixed"
            detail = batch.details.get(cid, "")
            if status == "contradicted":
                detail += "; classified as labelled" if fixed[i] else "; classified otherwise"
            out.append(Assessment(cid, status, float(success[i]), detail))
        return sorted(out, key=lambda a: a.correction_id)

    def publish(self, attempt: Attempt, last_review_id: int = 0) -> VersionRecord:
        """Write the model's current head as the next immutable version (it becomes the serving one)."""
        metrics = {**attempt.metrics, "val_episodes": self.val_episodes, "last_review_id": last_review_id,
                   "corrections_used": attempt.corrections_used, "last_correction_id": attempt.last_correction_id}

        def fill(tmp: Path, version: str) -> None:
            self.model.save_pretrained(tmp, train_config_yaml=self.train_config_yaml, metrics=metrics)
            config = json.loads((tmp / "config.json").read_text())
            config["model_version"] = version  # RewardFunction.from_pretrained(versions/<n>) names it too
            (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

        record = self.versions.publish(fill, lambda number: f"{self.base_version}-r{number}",
                                       {**attempt.metrics, "last_review_id": float(last_review_id)},
                                       attempt.corrections_used, attempt.last_correction_id)
        self.served, self.served_state = record, self._head_state()
        return record

    # ---- idle work
    def idle_work(self, store: CorrectionStore, should_stop: Callable[[], bool]) -> Iterator[dict | None]:
        """Work for the time no correction waits, one fit per step; yields an event (or None) after each."""
        batch = self.prepare(self.corrections(store, self.served.last_correction_id), store.verdicts())
        held, older = self._holdout_plan(batch, self.served.last_correction_id)
        if held.any():  # not interrupted: the next attempt needs this fit whatever it brings
            self._served_holdout(batch, held, older)
            self._load_head(self.served_state)
            yield None
        size = int(self.options.ensemble)
        if size <= 0 or members_path(self.state_dir, self.served.number).is_file():
            return
        t0 = time.perf_counter()
        seeds = [self.options.seed + 101 * (k + 1) for k in range(size)]
        if self._members0 is None:
            existing = latest_members(self.state_dir, 0)
            if existing is not None:
                self._members0 = [m.state_dict() for m in load_members(existing[1], self.model)]
        if self._members0 is None or len(self._members0) < size:  # version 0's: from scratch, offline data only
            trained = []
            for k in range(size):
                nothing = np.zeros(len(batch.ids), bool)
                state = self._train_member(new_member(self.model, seeds[k]).state_dict(), batch, nothing, nothing,
                                           seeds[k], bootstrap(self.n_offline, k), should_stop,
                                           steps=self.options.ensemble_steps, early_stop=False)
                if state is None:
                    return
                trained.append(state)
                yield None
            self._members0 = trained
            if self.served.number != 0:
                save_members(members_path(self.state_dir, 0), self._heads(self._members0))
        states = self._members0
        if self.served.number != 0:  # later versions' members: from version 0's, like the head
            states = []
            for k in range(size):
                state = self._train_member(self._members0[k], batch, batch.active, batch.gated, seeds[k],
                                           bootstrap(self.n_offline, k), should_stop)
                if state is None:
                    return
                states.append(state)
                yield None
        save_members(members_path(self.state_dir, self.served.number), self._heads(states))
        yield {"event": "ensemble", "number": self.served.number, "members": size,
               "seconds": time.perf_counter() - t0}

    def _train_member(self, start: dict, batch: _Batch, include: np.ndarray, check: np.ndarray, seed: int,
                      offline_scale: np.ndarray, should_stop: Callable[[], bool], **fit) -> dict | None:
        """An ensemble member trained from ``start`` (None when interrupted); the served head is kept aside."""
        served = self.model.reward_head
        self.model.reward_head = self._heads([start])[0]
        try:
            done = self._fit(batch, include, check, start, seed, offline_scale, should_stop=should_stop, **fit)
            return None if done is None else self._head_state()
        finally:
            self.model.reward_head = served
            self.model.eval()

    def _heads(self, states: list[dict]) -> list:
        """Member modules holding ``states``."""
        heads = []
        for k, state in enumerate(states):
            head = new_member(self.model, k)
            head.load_state_dict(state)
            heads.append(head)
        return heads


def retrainer_main(spec: RetrainSpec, triggers: mp.Queue, events: mp.Queue) -> None:
    """Body of the retrainer process (see the module docstring)."""
    import torch

    torch.set_num_threads(max(1, int(spec.options.threads)))
    parent = mp.parent_process()
    try:
        trainer = HeadRetrainer(spec)
    except Exception as exc:
        events.put({"event": "error", "message": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
        return
    setup = {"heldout_accuracy_base": trainer.base_accuracy, "setup_seconds": trainer.setup_seconds,
             "val_episodes": len(trainer.val_episodes)}
    store: CorrectionStore | None = None
    leadership: Leadership | None = None
    leading, standby_told, failures = False, False, 0
    seen, seen_review, last_run = 0, 0, 0.0
    options = spec.options
    work: Iterator[dict | None] | None = None
    idle = False  # there may be idle work (from becoming the leader, and after each attempt, until it completes)
    woken: list[Any] = []

    def waiting() -> bool:
        """A correction or review waits, or the server died (the store lock goes with this process): stop idle
        work."""
        try:
            woken.append(triggers.get_nowait())
        except queue.Empty:
            pass
        return bool(woken) or (parent is not None and not parent.is_alive()) or \
            (store is not None and (store.last_id() != seen or store.last_review_id() != seen_review))

    while parent is None or parent.is_alive():
        try:  # every wake-up so far (they only say "look at the store"); wait only when there is nothing to do
            while True:
                busy = woken or work is not None or (idle and leading)
                woken.append(triggers.get_nowait() if busy else
                             triggers.get(timeout=0.5 if not failures else min(5.0, 0.5 * 2 ** failures)))
        except queue.Empty:
            pass
        if _STOP in woken:
            break
        woken.clear()
        try:
            if store is None:
                store = CorrectionStore(spec.store, readonly=True)
                leadership = store.leadership()
            assert leadership is not None
            if not leading:  # standby: retrain only as the leader (one per store)
                if not leadership.try_acquire():
                    if not standby_told:
                        events.put({"event": "standby", "metrics": setup})
                        standby_told = True
                    failures = 0
                    continue
                leading, standby_told, idle, work = True, False, True, None
                # What a leader that died mid-publish may have left: a partial directory, an unannounced version.
                trainer.versions.remove_partial()
                latest = trainer.versions.latest()
                leadership.announce(latest.number)
                trainer.follow(latest)
                seen, seen_review = latest.last_correction_id, int(latest.metrics.get("last_review_id", 0))
                events.put({"event": "ready", "metrics": setup})
            failures = 0
            newest, reviewed = store.last_id(), store.last_review_id()
            if (newest - seen >= options.every or reviewed != seen_review) and \
                    time.monotonic() - last_run >= options.min_interval_s:
                if quiet(triggers, woken, options.quiet_s):
                    break
                newest, reviewed = store.last_id(), store.last_review_id()
                work, idle = None, True
                last_run, seen, seen_review = time.monotonic(), newest, reviewed
                started = time.time()
                events.put({"event": "training", "corrections": newest, "time": started})
                attempt = trainer.attempt(trainer.corrections(store, newest), store.verdicts())
                attempt.metrics["started_unix"] = started
                event = {"event": "published" if attempt.passed else "rejected", "reason": attempt.reason,
                         "metrics": attempt.metrics, "last_correction_id": attempt.last_correction_id,
                         "assessments": attempt.assessments, "time": time.time()}
                if attempt.passed and not leadership.held():  # lost the lock meanwhile: another replica leads now
                    leading, seen, work = False, 0, None
                    continue
                if attempt.passed:
                    record = trainer.publish(attempt, reviewed)
                    leadership.announce(record.number)
                    event.update(number=record.number, version=record.version, metrics=record.metrics)
                events.put(event)
                continue
            if not idle:
                continue
            if work is None:
                work = trainer.idle_work(store, waiting)
            try:
                event = next(work)
            except StopIteration:  # done, or stopped for a correction (then the attempt restarts it)
                work, idle = None, bool(woken)
                continue
            if event is not None:
                events.put(event)
                if event["event"] == "ensemble":
                    leadership.announce(event["number"])  # replicas pick the ensemble up with the version
        except Exception as exc:
            events.put({"event": "error", "message": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
            work, idle = None, False
            if isinstance(exc, HilrewardError):  # the store is unreachable: reconnect (and compete again) later
                for handle in (leadership, store):
                    if handle is not None:
                        handle.close()
                store, leadership, leading, failures = None, None, False, failures + 1
    for handle in (leadership, store):
        if handle is not None:
            handle.close()


def quiet(triggers: mp.Queue, woken: list[Any], quiet_s: float) -> bool:
    """Wait while wake-ups keep coming less than ``quiet_s`` apart (at most ``4 * quiet_s``), so that a burst of
    corrections trains as one attempt; True when told to stop meanwhile."""
    end = time.monotonic() + 4 * quiet_s
    while quiet_s > 0 and (left := end - time.monotonic()) > 0:
        try:
            woken.append(triggers.get(timeout=min(quiet_s, left)))
        except queue.Empty:
            break
    return _STOP in woken


class Retrainer:
    """Handle on the retrainer process, used by the server."""

    def __init__(self, spec: RetrainSpec) -> None:
        self.spec = spec
        ctx = mp.get_context("spawn")
        self._triggers: mp.Queue = ctx.Queue()
        self._events: mp.Queue = ctx.Queue()
        self._process = ctx.Process(target=retrainer_main, args=(spec, self._triggers, self._events),
                                    name="hilreward-retrainer", daemon=True)

    @classmethod
    def from_serve_config(cls, cfg: Any, versions: VersionStore, store: str, threshold: float) -> "Retrainer":
        return cls(RetrainSpec(versions_root=str(versions.root), store=store, dataset=cfg.dataset,
                               options=cfg.retrain, threshold=threshold, cache_dir=cfg.cache_dir))

    def start(self) -> None:
        self._process.start()

    def notify(self, correction_id: int = 0) -> None:
        """A correction or review was stored (wakes the process; it reads the store itself)."""
        self._triggers.put(int(correction_id))

    def next_event(self, timeout: float) -> dict | None:
        """The next event (``ready``, ``standby``, ``training``, ``published``, ``rejected``, ``ensemble``,
        ``error``), None after ``timeout``."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        if self._process.is_alive():
            self._triggers.put(_STOP)
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(2)
        self._triggers.cancel_join_thread()
        self._events.cancel_join_thread()
