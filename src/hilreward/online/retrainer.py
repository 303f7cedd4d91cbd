"""The ever-correcting loop: human corrections -> a validated new model version, off the serving path.

:class:`Retrainer` runs :func:`retrainer_main` in a separate process (``spawn``), so training
never competes with Predict for the server's GIL. At start the process loads the served
checkpoint (``versions/0``), the offline dataset and its frozen-encoder features
(``training.compute_features``, cached on disk). It then wakes on every new correction (or
every ``retrain.every``-th, at most once per ``retrain.min_interval_s``) and:

1. resets the head to the checkpoint's head and trains it (``training.fit_head``) on the
   offline training episodes' features plus every stored correction, class-balanced, with each
   correction weighted like ``retrain.correction_weight`` offline frames of its class, in chunks
   of ``retrain.check_every`` steps, stopping as soon as enough corrections are fixed (at most
   ``retrain.steps``): the smallest update that does the job, so the rest of what the
   checkpoint knew moves as little as possible;
2. gates the result: accuracy on the checkpoint's held-out episodes may drop by at most
   ``retrain.tolerance`` and at least ``retrain.min_fixed`` of the corrections must now be
   classified as the human labelled them;
3. publishes a passing head as the next immutable ``versions/<n>/`` and tells the server,
   which swaps it in between requests. A failing one is reported and dropped.

It retrains only while it leads the store (``store.leadership()``): with several replicas on one
PostgreSQL store every replica runs a retrainer, set up and on standby, and the one holding the
advisory lock trains; when it dies another takes the lock within a second. A new leader first
removes what a predecessor that died mid-publish left and announces the newest version, then
announces each version it publishes, so every replica serves the same one.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DatasetConfig
from ..errors import HilrewardError
from .store import CorrectionStore, Leadership, StoredCorrection
from .versions import VersionRecord, VersionStore

_STOP = "stop"


@dataclass
class RetrainSpec:
    """Everything the retrainer process needs (picklable)."""

    versions_root: str
    """``<state_dir>/versions``; version 0 is the served checkpoint."""
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
        base_dir = self.versions.path(0)
        self.base_version = self.versions.get(0).version
        self.model = RewardClassifier.from_pretrained(base_dir).eval()
        self.base_state = {k: v.clone() for k, v in self.model.reward_head.state_dict().items()}
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
        self.train_features = {c: np.asarray(f[train_rows]) for c, f in features.items()}
        self.val_features = {c: np.asarray(f[val_rows]) for c, f in features.items()}
        self.train_labels = np.asarray(data.labels[train_rows], dtype=np.int64)
        self.val_labels = np.asarray(data.labels[val_rows], dtype=np.int64)
        self.base_accuracy = self._accuracy(self.val_features, self.val_labels)
        # The first optimizer step pays seconds of one-time torch imports: pay them now, not after a correction.
        from ..training.features import fit_head

        fit_head(self.model, {k: v[:2] for k, v in self.train_features.items()}, self.train_labels[:2], steps=1)
        self.model.reward_head.load_state_dict(self.base_state)
        self.model.eval()
        self.setup_seconds = time.perf_counter() - t0
        self._correction_features: dict[int, dict[str, np.ndarray]] = {}

    # ---- model helpers
    def _predict(self, features: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        n = len(next(iter(features.values())))
        out = []
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, n, 512):
                logits = self.model.head({c: torch.from_numpy(np.asarray(f[s:s + 512], dtype=np.float32))
                                          for c, f in features.items()})
                probs = self.model.probabilities(logits)
                if self.model.config.num_classes == 2:
                    out.append((probs >= self.spec.threshold).long().numpy())
                else:
                    out.append(probs.argmax(-1).numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def _accuracy(self, features: dict[str, np.ndarray], labels: np.ndarray) -> float:
        if len(labels) == 0:
            return float("nan")
        return float((self._predict(features) == labels).mean())

    def _encode(self, correction: StoredCorrection) -> dict[str, np.ndarray] | None:
        cached = self._correction_features.get(correction.id)
        if cached is None:
            frames = correction.correction.frames
            if any(k not in frames for k in self.model.camera_keys):
                return None  # a correction from another camera setup cannot train this model
            with self._torch.inference_mode():
                feats = self.model.encode(self.model.preprocess({k: frames[k][None] for k in self.model.camera_keys}))
            cached = {k: v.float().numpy().astype(np.float16) for k, v in feats.items()}
            self._correction_features[correction.id] = cached
        return cached

    # ---- one run
    def attempt(self, corrections: list[StoredCorrection]) -> Attempt:
        """Train the head on the offline data plus ``corrections`` and gate it (the model keeps the new head)."""
        from ..training.features import fit_head

        t0 = time.perf_counter()
        usable = [(c, f) for c in corrections if (f := self._encode(c)) is not None]
        if not usable:
            return Attempt(False, reason="no correction has this model's cameras")
        corr_labels = np.array([c.correction.label for c, _ in usable], dtype=np.int64)
        corr_features = {k: np.concatenate([f[k] for _, f in usable]) for k in self.model.camera_keys}
        features = {k: np.concatenate([self.train_features[k], corr_features[k]]) for k in self.model.camera_keys}
        labels = np.concatenate([self.train_labels, corr_labels])
        classes, counts = np.unique(self.train_labels, return_counts=True)
        per_class = dict(zip(classes.tolist(), counts.tolist()))
        offline_w = 1.0 / np.array([per_class[int(y)] for y in self.train_labels], dtype=np.float64)
        corr_w = np.array([self.options.correction_weight / per_class.get(int(y), 1) for y in corr_labels])
        weights = np.concatenate([offline_w, corr_w])
        self.model.reward_head.load_state_dict(self.base_state)
        # The smallest update that fixes the corrections: train in chunks, stop once enough are fixed.
        # Only the corrections decide when to stop, so the held-out gate below stays an unbiased test.
        steps, train_seconds, loss = 0, 0.0, float("nan")
        chunk = max(1, min(self.options.check_every, self.options.steps))
        while True:
            n = min(chunk, self.options.steps - steps)
            stats = fit_head(self.model, features, labels, weights, steps=n, batch_size=self.options.batch_size,
                             lr=self.options.lr, seed=self.options.seed + 7919 * steps)
            steps, train_seconds, loss = steps + n, train_seconds + stats["seconds"], stats["loss"]
            self.model.eval()
            fixed = self._predict(corr_features) == corr_labels
            if fixed.mean() >= self.options.min_fixed or steps >= self.options.steps:
                break
        accuracy = self._accuracy(self.val_features, self.val_labels)
        metrics = {"heldout_accuracy": accuracy, "heldout_accuracy_base": self.base_accuracy,
                   "corrections_fixed": float(fixed.mean()), "train_steps": float(steps),
                   "train_seconds": train_seconds, "retrain_seconds": time.perf_counter() - t0,
                   "train_loss": float(loss)}
        reasons = []
        if not np.isnan(accuracy) and accuracy < self.base_accuracy - self.options.tolerance:
            reasons.append(f"held-out accuracy {accuracy:.4f} < {self.base_accuracy:.4f} - tolerance "
                           f"{self.options.tolerance}")
        if fixed.mean() < self.options.min_fixed:
            wrong = [c.id for (c, _), ok in zip(usable, fixed) if not ok]
            reasons.append(f"corrections {wrong[:10]} still classified against their label "
                           f"({fixed.mean():.2%} fixed < min_fixed {self.options.min_fixed:.2%})")
        return Attempt(not reasons, metrics, "; ".join(reasons), len(usable), max(c.id for c, _ in usable))

    def publish(self, attempt: Attempt) -> VersionRecord:
        """Write the model's current head as the next immutable version."""
        metrics = {**attempt.metrics, "val_episodes": self.val_episodes,
                   "corrections_used": attempt.corrections_used, "last_correction_id": attempt.last_correction_id}

        def fill(tmp: Path, version: str) -> None:
            self.model.save_pretrained(tmp, train_config_yaml=self.train_config_yaml, metrics=metrics)
            config = json.loads((tmp / "config.json").read_text())
            config["model_version"] = version  # RewardFunction.from_pretrained(versions/<n>) names it too
            (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

        return self.versions.publish(fill, lambda number: f"{self.base_version}-r{number}", attempt.metrics,
                                     attempt.corrections_used, attempt.last_correction_id)


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
    seen, last_run = 0, 0.0
    options = spec.options
    while parent is None or parent.is_alive():
        try:
            if triggers.get(timeout=0.5 if not failures else min(5.0, 0.5 * 2 ** failures)) == _STOP:
                break
        except queue.Empty:
            pass
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
                leading, standby_told = True, False
                # What a leader that died mid-publish may have left: a partial directory, an unannounced version.
                trainer.versions.remove_partial()
                latest = trainer.versions.latest()
                leadership.announce(latest.number)
                seen = latest.last_correction_id
                events.put({"event": "ready", "metrics": setup})
            failures = 0
            newest = store.last_id()
            if newest - seen < options.every or time.monotonic() - last_run < options.min_interval_s:
                continue
            last_run, seen = time.monotonic(), newest
            attempt = trainer.attempt(store.read(0, newest))
            if not attempt.passed:
                events.put({"event": "rejected", "reason": attempt.reason, "metrics": attempt.metrics})
            elif not leadership.held():  # lost the lock meanwhile (a cut connection): another replica leads now
                leading, seen = False, 0
            else:
                record = trainer.publish(attempt)
                leadership.announce(record.number)
                events.put({"event": "published", "number": record.number, "version": record.version,
                            "metrics": record.metrics, "time": time.time()})
        except Exception as exc:
            events.put({"event": "error", "message": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
            if isinstance(exc, HilrewardError):  # the store is unreachable: reconnect (and compete again) later
                for handle in (leadership, store):
                    if handle is not None:
                        handle.close()
                store, leadership, leading, failures = None, None, False, failures + 1
    for handle in (leadership, store):
        if handle is not None:
            handle.close()


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

    def notify(self, correction_id: int) -> None:
        """A correction was stored (wakes the process; it reads the store itself)."""
        self._triggers.put(int(correction_id))

    def next_event(self, timeout: float) -> dict | None:
        """The next event (``ready``, ``standby``, ``published``, ``rejected``, ``error``), None after ``timeout``."""
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
