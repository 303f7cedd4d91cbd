"""The retrainer's model side: offline features, corrections, fits, the gated attempt, published versions.

:class:`HeadRetrainer` holds the served checkpoint, the offline dataset's cached features (and, when the last
stage may adapt, the trunk's), the corrections' features, and what reviews and earlier attempts decided. The
process that drives it, and the order of an attempt, are described in :mod:`.retrainer`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..config import DatasetConfig
from ..curation.edits import edited_labels
from ..deploy.rule import success_probabilities
from ..errors import HilrewardError
from ..models.support import Support, pool_numpy
from ..training.support_bank import pick_rows
from . import gate
from .adapt import LastStage
from .ensemble import bootstrap, latest_members, load_members, members_path, new_member, save_members
from .events import EnsembleReady
from .gate import HeldOut
from .neighbours import NearDuplicates, newest_word, pooled
from .live import LiveConfirmations, LiveEpisodes
from .offline_edits import OfflineEdits
from .store import Assessment, CorrectionStore, Review, StoredCorrection
from .versions import VersionRecord, VersionStore


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
class State:
    """Weights that differ between versions: the head, and the encoder's last stage when it was adapted."""

    head: dict
    last: dict | None = None
    """None: the checkpoint's own last stage (head-only versions)."""


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
    """Corrections that cannot train this model (missing cameras, blank frames) -> why."""
    last_id: int
    boundary: np.ndarray | None = None
    """Within ``retrain.boundary_frames`` steps of a label change (trained lightly, never gated)."""
    offline: np.ndarray | None = None
    """In conflict with offline held-out frames (never trained until a review accepts them)."""
    accepted: np.ndarray | None = None
    """Accepted by review (trains fully; never blamed)."""
    superseded: np.ndarray | None = None
    """A newer correction labelled otherwise on a near-identical frame wins (never trained until a review accepts
    it)."""
    live: np.ndarray | None = None
    """Makes the reward newly fire in recent live episodes (never trained until a review accepts it)."""
    steps: np.ndarray | None = None
    """Step of each in its episode."""

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.live = np.zeros(n, bool) if self.live is None else self.live
        self.steps = np.zeros(n, np.int64) if self.steps is None else self.steps
        self.boundary = np.zeros(n, bool) if self.boundary is None else self.boundary
        self.offline = np.zeros(n, bool) if self.offline is None else self.offline
        self.accepted = np.zeros(n, bool) if self.accepted is None else self.accepted
        self.superseded = np.zeros(n, bool) if self.superseded is None else self.superseded

    @property
    def active(self) -> np.ndarray:
        """Corrections that train."""
        return ~self.rejected & ~self.offline & ~self.superseded & ~self.live

    @property
    def gated(self) -> np.ndarray:
        """Corrections the gate counts."""
        return self.active & ~self.contradicted & ~self.boundary


def boundary_steps(items: list[tuple[int, int, dict[int, float] | None]], threshold: float,
                   window: int) -> np.ndarray:
    """Which corrections of one episode, ``(step, label as success 0/1, served context)``, sit at a label change.

    The episode's implied labels are the served ones (a correction's context: the probabilities the server gave
    the steps around it) overlaid with the human's. A correction is a boundary frame when, within ``window`` steps
    on one side, an implied label differs from its own while the step right next to it on the other side agrees:
    the edge of a run, which a keypress moves by a frame or two. A correction alone inside a run labelled otherwise
    (a frame the served version got wrong among wrong neighbours) is not at an edge, and is gated as usual."""
    served: dict[int, int] = {}
    for _, _, context in items:
        served.update({int(s): int(p >= threshold) for s, p in (context or {}).items()})
    implied = {**served, **{step: label for step, label, _ in items}}
    out = np.zeros(len(items), bool)
    if window <= 0:
        return out
    for i, (step, label, _) in enumerate(items):
        for side in (-1, 1):
            differs = any(implied.get(step + side * d, label) != label for d in range(1, window + 1))
            if differs and implied.get(step - side) == label:
                out[i] = True
    return out


def offline_evidence(checkpoint: Path, train_cfg: Any, episodes: list[int]) -> tuple[list[int], bool]:
    """The checkpoint's held-out episodes among ``episodes`` (those its ``train_config.yaml`` held out and its
    ``metrics.json`` does not list as trained on), and whether there are any: ``([], False)`` when it trained on
    every episode (calibration by folds), whatever the config's split says."""
    held = [e for e in (train_cfg.split.val_episodes or []) if e in set(episodes)]
    metrics = Path(checkpoint) / "metrics.json"
    try:
        trained = set(json.loads(metrics.read_text()).get("train_episodes") or []) if metrics.is_file() else set()
    except (OSError, ValueError, AttributeError):
        trained = set()
    held = [e for e in held if e not in trained]
    return held, bool(held)


class Orphaned(Exception):
    """The server that started this retrainer is gone: nothing it trains now could be recorded or served."""


class HeadRetrainer:
    """Loads the base model, offline features and held-out split; trains and gates versions; publishes them.

    Despite the name it adapts the encoder's last stage too with ``retrain.scope=last|auto`` (:mod:`.adapt`)."""

    def __init__(self, spec: RetrainSpec) -> None:
        import torch

        from ..config import TrainConfig, from_yaml
        from ..data import load_frame_data, split_episodes
        from ..evaluation.episodes import DEFAULT_TOLERANCE_S
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
        self.base_state = State(self._head_state())
        self.base_support = self.model.support
        """The checkpoint's support bank (None: it has none; its versions then have none either)."""
        self._support_vector_of: dict[int, np.ndarray] = {}
        self._last_support_vectors: np.ndarray | None = None
        cfg_path = base_dir / "train_config.yaml"
        self.train_config_yaml = cfg_path.read_text() if cfg_path.is_file() else None
        train_cfg = from_yaml(self.train_config_yaml) if self.train_config_yaml else TrainConfig()

        t0 = time.perf_counter()
        self.dataset = replace(spec.dataset, cameras=list(self.model.camera_keys))
        data = load_frame_data(self.dataset, train_cfg.label, tuple(self.model.config.image_size),
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
        features = compute_features(self.model, data, cache_dir=spec.cache_dir)
        val_mask = np.isin(data.episode_index, held)
        train_rows, val_rows = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
        self.val_features = {c: np.asarray(f[val_rows]) for c, f in features.items()}
        self.held = HeldOut(np.asarray(data.episode_index[val_rows]), np.asarray(data.frame_index[val_rows]),
                            float(data.fps or 0.0), DEFAULT_TOLERANCE_S if data.fps else 0.0,
                            int(spec.consecutive))
        # Offline labels as recorded; reviews that accept a conflicts_offline correction relabel some (an edits
        # file in the state dir, applied to these on every attempt).
        self._train_at = (np.asarray(data.episode_index[train_rows]), np.asarray(data.frame_index[train_rows]))
        self._recorded = (np.asarray(data.labels[train_rows], dtype=np.int64),
                          np.asarray(data.labels[val_rows], dtype=np.int64))
        self.val_labels = self._recorded[1].copy()
        # The feature pool: the offline training rows, then one row per correction (grown as needed).
        self.n_offline = len(train_rows)
        offline = {c: np.asarray(f[train_rows]) for c, f in features.items()}
        self._pool = {c: np.concatenate([f, np.zeros((256, *f.shape[1:]), f.dtype)]) for c, f in offline.items()}
        self._pool_labels = np.concatenate([self._recorded[0], np.zeros(256, np.int64)])
        self._used = self.n_offline
        self._row_of: dict[int, int] = {}
        self._unusable: dict[int, str] = {}
        self._vector_of: dict[int, np.ndarray] = {}
        self._weigh_offline()
        self.near = NearDuplicates(pooled(offline, self.model.camera_keys), self._recorded[0],
                                   self._train_at[0], self._train_at[1], radius=self.options.contradiction_radius)
        del offline
        # The encoder's last stage and the trunk's outputs (its inputs), when more than the head may adapt.
        self.stage: LastStage | None = None
        self._trunk: dict[str, np.ndarray] | None = None
        self.val_trunk: dict[str, np.ndarray] | None = None
        self.scope = self.options.scope
        if self.scope != "head":
            try:
                self.stage = LastStage(self.model)
            except HilrewardError:
                if self.scope == "last":
                    raise
                self.scope = "head"  # auto on an encoder whose last stage cannot adapt alone: head only
        if self.stage is not None:
            trunk = compute_features(self.model, data, cache_dir=spec.cache_dir, part=("trunk", self.stage.trunk))
            self.val_trunk = {c: np.asarray(f[val_rows]) for c, f in trunk.items()}
            self._trunk = {c: np.concatenate([np.asarray(f[train_rows]), np.zeros((256, *f.shape[1:]), f.dtype)])
                           for c, f in trunk.items()}
        self._stage_prefix = self._prefix_of(self.stage.module) if self.stage else ""
        self.edits = OfflineEdits(self.state_dir, self.dataset, train_cfg.label.key, train_cfg.label.threshold) \
            if self.model.config.num_classes == 2 else None
        self._relabel()
        self.base_accuracy = self._accuracy(self.base_state)

        self.follow(self.versions.latest())
        self._members0: list[dict] | None = None
        self._holdout_heads: dict[tuple, dict] = {}
        self._conflicts: dict[int, str] = {}
        """Corrections the gate found in conflict (id -> why): contradicted from then on."""
        self._superseded_by: dict[int, int] = {}
        """The latest prepare's superseded corrections -> the newer one that wins."""
        self._offline_conflicts: dict[int, tuple[str, dict]] = {}
        """Corrections that made offline held-out episodes wrong (id -> (why, conflict record)): left out."""
        self._live_conflicts: dict[int, tuple[str, dict]] = {}
        """Corrections that made the reward newly fire in recent live episodes (id -> (why, record)): left out."""
        # Live traffic (:mod:`.live`): the episodes the server recorded, their features (encoded once each).
        self.live_store = LiveEpisodes(self.state_dir / "live")
        self.live_confirmed = LiveConfirmations(self.state_dir)
        self._live_cache: dict[tuple[int, float], tuple] = {}
        self.live = gate.LiveEvidence(np.zeros(0, np.int64), np.zeros(0, np.int64), int(spec.consecutive))
        self.live_features: dict[str, np.ndarray] = {}
        self.live_trunk: dict[str, np.ndarray] | None = None
        self._served_features: tuple[int, dict[str, np.ndarray]] | None = None
        self.orphaned: Callable[[], bool] = lambda: False
        """True once the server that runs this retrainer died (checked between optimizer steps of an attempt)."""
        # The first optimizer step pays seconds of one-time torch imports: pay them now, not after a correction.
        from ..training.features import fit_head

        fit_head(self.model, {k: v[:2] for k, v in self._pool.items()}, self._pool_labels[:2], steps=1)
        self._load(self.base_state)
        self.setup_seconds = time.perf_counter() - t0

    # ---- model helpers
    def _head_state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.reward_head.state_dict().items()}

    def _prefix_of(self, module) -> str:
        return next(name for name, m in self.model.named_modules() if m is module) + "."

    def _load(self, state: State) -> None:
        self.model.reward_head.load_state_dict(state.head)
        if self.stage is not None:
            self.stage.load(state.last)
        self.model.eval()

    def follow(self, record: VersionRecord) -> None:
        """Take ``record`` as the serving version (at start, and when this retrainer becomes the leader)."""
        if getattr(self, "served", None) is None or self.served.number != record.number:
            self.served = record
            self.served_state = self.base_state if record.number == 0 else self._state_of_version(record.number)

    def _state_of_version(self, number: int) -> State:
        from ..models.checkpoint import read_weights

        folder = self.versions.path(number)
        last = None
        if self.stage is not None:
            stored = read_weights(folder, prefix=self._stage_prefix)
            base = self.stage.base
            if any(not self._torch.equal(stored[k], base[k]) for k in base if k in stored):
                last = stored
        return State(read_weights(folder, prefix="reward_head."), last)

    def _success(self, probs: np.ndarray) -> np.ndarray:
        """Success probability of class probabilities (the binary probability itself)."""
        return success_probabilities(probs, self.spec.success_class)

    def _run(self, state: State, where: str, rows: np.ndarray | None = None,
             penultimate: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, penultimate features or None) of ``state`` on pool ``rows``, the held-out rows
        (``where="val"``) or the live rows (``where="live"``)."""
        torch = self._torch
        adapted = state.last is not None
        if where in ("val", "live"):
            if where == "val":
                source, total = (self.val_trunk if adapted else self.val_features), len(self.val_labels)
            else:
                source, total = (self.live_trunk if adapted else self.live_features), len(self.live.steps)
            pick = (lambda f, a, b: f[a:b]) if rows is None else (lambda f, a, b: f[rows[a:b]])
            n = total if rows is None else len(rows)
        else:
            source = self._trunk if adapted else self._pool
            pick = lambda f, a, b: f[rows[a:b]]  # noqa: E731
            n = len(rows)
        assert source is not None
        self._load(state)
        grabbed: list = []
        hook = self.model.reward_head.mlp[-1].register_forward_pre_hook(
            lambda _m, inputs: grabbed.append(inputs[0].numpy().copy())) if penultimate else None
        out = []
        try:
            with torch.inference_mode():
                for s in range(0, n, 512):
                    x = {c: torch.from_numpy(np.asarray(pick(f, s, s + 512), dtype=np.float32))
                         for c, f in source.items()}
                    if adapted:
                        x = {c: self.stage.module(v) for c, v in x.items()}
                    out.append(self.model.probabilities(self.model.head(x)).numpy())
        finally:
            if hook is not None:
                hook.remove()
        probs = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
        return probs, (np.concatenate(grabbed) if grabbed else None) if penultimate else None

    def _classes(self, probs: np.ndarray) -> np.ndarray:
        if self.model.config.num_classes == 2:
            return (probs >= self.spec.threshold).astype(np.int64)
        return probs.argmax(-1)

    def _accuracy(self, state: State) -> float:
        if len(self.val_labels) == 0:
            return float("nan")
        return float((self._classes(self._run(state, "val")[0]) == self.val_labels).mean())

    def _judge(self, rows: np.ndarray, state: State) -> tuple[np.ndarray, np.ndarray]:
        """(class, success probability) of pool ``rows`` under ``state``."""
        if len(rows) == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        probs = self._run(state, "pool", rows)[0]
        return self._classes(probs), self._success(probs).astype(np.float64)

    # ---- offline labels
    def _weigh_offline(self) -> None:
        offline_labels = self._pool_labels[:self.n_offline]
        classes, counts = np.unique(offline_labels, return_counts=True)
        self.per_class = dict(zip(classes.tolist(), counts.tolist()))
        self.offline_weights = 1.0 / np.array([self.per_class[int(y)] for y in offline_labels], dtype=np.float64)

    def _relabel(self) -> bool:
        """Apply the offline edits file (reviews' relabels) to the offline labels; True when they changed."""
        if self.edits is None:
            return False
        edits = self.edits.read()
        train = edited_labels(*self._train_at, self._recorded[0], edits)
        val = edited_labels(self.held.episode_index, self.held.frame_index, self._recorded[1], edits)
        if np.array_equal(train, self._pool_labels[:self.n_offline]) and np.array_equal(val, self.val_labels):
            return False
        self._pool_labels[:self.n_offline] = train
        self.val_labels = val
        self._weigh_offline()
        self.near.relabel(train)
        self._holdout_heads.clear()
        return True

    def _review_relabels(self, verdicts: dict[int, Review]) -> int:
        """Relabel the offline frames of each ``conflicts_offline`` correction a review accepted (once); returns
        how many edits were added."""
        added = 0
        for cid, (_, record) in list(self._offline_conflicts.items()):
            review = verdicts.get(cid)
            if review is None or review.verdict != "accept":
                continue
            if self.edits is not None:
                added += self.edits.relabel(cid, record, review.reviewer or "review")
            del self._offline_conflicts[cid]
        if added:
            self._relabel()
        return added

    def remember(self, statuses: dict[int, Assessment]) -> None:
        """Take the conflicts an earlier attempt (maybe of a process killed since) named from the store."""
        for cid, a in statuses.items():
            if a.status == "conflicts_offline" and a.conflict and cid not in self._offline_conflicts:
                self._offline_conflicts[cid] = (a.detail, a.conflict)
            elif a.status == "conflicts_live" and a.conflict and cid not in self._live_conflicts:
                self._live_conflicts[cid] = (a.detail, a.conflict)


    # ---- corrections -> pool rows
    def _add(self, corrections: list[StoredCorrection]) -> None:
        """Give each new correction a pool row with its features (encoded once, in one batch), or note why it
        cannot train this model."""
        torch = self._torch
        fresh = []
        for c in corrections:
            if c.id in self._row_of or c.id in self._unusable:
                continue
            frames = c.correction.frames
            missing = [k for k in self.model.camera_keys if k not in frames]
            blank = [k for k in self.model.camera_keys if k in frames and np.ptp(np.asarray(frames[k])) <= 2]
            if missing or blank:
                self._unusable[c.id] = (f"has no frame of camera(s) {', '.join(missing)} of this model" if missing else
                                        f"the frame of {', '.join(blank)} is blank (one colour): nothing to learn from")
            else:
                fresh.append(c)
        if not fresh:
            return
        feats, trunk = self._encode([{k: c.correction.frames[k][None] for k in self.model.camera_keys}
                                     for c in fresh], support=True)
        if self._last_support_vectors is not None:
            for c, v in zip(fresh, self._last_support_vectors):
                self._support_vector_of[c.id] = v
        while self._used + len(fresh) > len(self._pool_labels):  # grow the pool
            extra = max(256, self._used - self.n_offline)
            grow = lambda pool: {c: np.concatenate([f, np.zeros((extra, *f.shape[1:]), f.dtype)])  # noqa: E731
                                 for c, f in pool.items()}
            self._pool = grow(self._pool)
            if self._trunk is not None:
                self._trunk = grow(self._trunk)
            self._pool_labels = np.concatenate([self._pool_labels, np.zeros(extra, np.int64)])
        rows = slice(self._used, self._used + len(fresh))
        for c, f in feats.items():
            self._pool[c][rows] = f
        if trunk is not None and self._trunk is not None:
            for c, f in trunk.items():
                self._trunk[c][rows] = f
        self._pool_labels[rows] = [int(c.correction.label) for c in fresh]
        vectors = pooled(feats, self.model.camera_keys)
        for i, c in enumerate(fresh):
            self._row_of[c.id] = self._used + i
            self._vector_of[c.id] = vectors[i]
        self._used += len(fresh)
        self._served_features = None

    def _encode(self, frames: list[dict[str, np.ndarray]],
                support: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
        """(features, trunk outputs or None) of frames (each a dict camera -> uint8 (B, H, W, 3)) under the
        checkpoint's encoder, in batches of 256 frames; with ``support`` and a support bank that has its own
        encoder, the frames' support vectors go to ``self._last_support_vectors``."""
        torch = self._torch
        keys = self.model.camera_keys
        feats: dict[str, list] = {k: [] for k in keys}
        trunk: dict[str, list] = {k: [] for k in keys}
        described: list = []
        self._load(self.base_state)
        with torch.inference_mode():
            for start in range(0, len(frames), 256):
                each = [self.model.preprocess(f) for f in frames[start:start + 256]]
                pixels = {k: torch.cat([p[k] for p in each]) for k in keys}
                if support and self.base_support is not None and self.base_support.encoder is not None:
                    described.append(self.base_support.describe({}, pixels, keys).numpy())
                if self.stage is not None:  # the trunk once; the checkpoint's last stage on it gives the features
                    trunk_t = {k: self.stage.trunk(v) for k, v in pixels.items()}
                    for k, v in trunk_t.items():
                        feats[k].append(self.stage.module(v).float().numpy())
                        trunk[k].append(v.float().numpy())
                else:
                    for k, v in self.model.encode(pixels).items():
                        feats[k].append(v.float().numpy())
        cat = lambda parts: {k: np.concatenate(v) for k, v in parts.items()}  # noqa: E731
        self._last_support_vectors = np.concatenate(described) if described else None
        return cat(feats), (cat(trunk) if self.stage is not None else None)

    # ---- live traffic
    def _load_live(self) -> None:
        """The newest ``retrain.live_episodes`` live episodes the server recorded (:mod:`.live`), each encoded once."""
        count = int(self.options.live_episodes)
        keys = self.model.camera_keys
        episodes = [e for e in self.live_store.newest(count) if all(k in e.frames for k in keys) and len(e)] \
            if count > 0 else []
        cache = {}
        for e in episodes:
            key = (e.episode_id, e.updated)
            cache[key] = self._live_cache.get(key) or (e.steps, *self._encode([{k: e.frames[k] for k in keys}]))
        self._live_cache = cache
        parts = list(cache.items())
        ids = [np.full(len(steps), ep, np.int64) for (ep, _), (steps, _, _) in parts]
        self.live = gate.LiveEvidence(np.concatenate(ids) if ids else np.zeros(0, np.int64),
                                      np.concatenate([v[0] for _, v in parts]) if parts else np.zeros(0, np.int64),
                                      int(self.spec.consecutive))
        feature_shape = tuple(self.val_features[keys[0]].shape[1:])
        self.live_features = {k: np.concatenate([v[1][k] for _, v in parts]) if parts else
                              np.zeros((0, *feature_shape), np.float32) for k in keys}
        self.live_trunk = None
        if self.stage is not None and self.val_trunk is not None:
            trunk_shape = tuple(self.val_trunk[keys[0]].shape[1:])
            self.live_trunk = {k: np.concatenate([v[2][k] for _, v in parts]) if parts else
                               np.zeros((0, *trunk_shape), np.float32) for k in keys}

    def _live_labelled(self, batch: _Batch) -> dict[int, int]:
        """Live episode -> the earliest step a human labels success in it: an active correction labelled success,
        or a review that accepted a ``conflicts_live`` correction (confirming the firings it was shown)."""
        out = dict(self.live_confirmed.read())
        for i in np.flatnonzero(batch.active & (batch.labels >= 0)):
            if self._is_success(int(batch.labels[i])):
                episode = batch.groups[i][0]
                out[episode] = min(out.get(episode, 1 << 62), int(batch.steps[i]))
        return out

    def _live_check(self, batch: _Batch, candidate: State) -> tuple[gate.LiveCheck, np.ndarray | None]:
        """The candidate next to the serving version on the live episodes, and its penultimate live features."""
        opts = self.options
        if not len(self.live.steps):
            return gate.LiveCheck(0, [], [], 0, 0, 0), None
        served = self._success(self._run(self.served_state, "live")[0])
        probs, live_repr = self._run(candidate, "live", penultimate=True)
        return gate.live_check(self.live, served, self._success(probs), self.spec.threshold,
                               self._live_labelled(batch), int(opts.live_tolerance), int(opts.live_early_steps)), \
            live_repr

    def _live_verdict(self, check: gate.LiveCheck) -> tuple[list[gate.LiveFiring], str, str]:
        """The firings that refuse the candidate, why ('' when it may publish) and their kind (``early``,
        ``newly_fires``): it newly fires in more live
        episodes than ``retrain.live_share`` allows, or fires early in more than ``retrain.live_early_share`` allows
        and more than the serving version does."""
        opts = self.options
        early_allowed = max(int(np.floor(opts.live_early_share * check.episodes)), check.early_serving)
        if len(check.early or []) > early_allowed:
            return list(check.early or []), (
                f"fires within the first {opts.live_early_steps} steps of {len(check.early or [])} of the "
                f"{check.episodes} recent live episodes (the serving version: {check.early_serving}; at most "
                f"{early_allowed}): " + "; ".join(f.describe() for f in (check.early or [])[:5])), "early"
        allowed = gate.live_allowance(check.episodes, opts.live_share)
        if len(check.newly or []) > allowed:
            return list(check.newly or []), (
                f"newly fires in {len(check.newly or [])} of the {check.episodes} recent live episodes that no "
                f"correction labels success (at most {allowed}): " +
                "; ".join(f.describe() for f in (check.newly or [])[:5])), "newly_fires"
        return [], "", ""

    def _blame_live(self, batch: _Batch, candidate: State, firings: list[gate.LiveFiring], live_repr: np.ndarray,
                    kind: str, rerun: int) -> int:
        """Name the success-labelled corrections most alike the live frames the candidate newly fires on as
        ``conflicts_live`` (each rerun twice as many per firing); returns how many."""
        labels = np.array([self._is_success(int(y)) for y in batch.labels])
        eligible = batch.active & ~batch.accepted & (labels == 1)  # boundary frames too: they train, and a firing
        if not eligible.any() or live_repr is None:                 # where the policy goes is no keypress jitter
            return 0
        _, corr_repr = self._run(candidate, "pool", batch.rows, penultimate=True)
        found = [gate.Regression(f.episode, kind, "right", f.rows, 0) for f in firings]
        picked = gate.blame(found, live_repr, corr_repr, labels, eligible, self.options.blame_per_regression << rerun)
        for i, (reg, row) in picked.items():
            record = gate.live_record(firings, (int(self.live.episode_ids[row]), int(self.live.steps[row])), kind)
            shown = ", ".join(f"{e}@{t}" for e, t in record["firings"][:6])
            why = (f"training on it makes the reward newly fire in {len(firings)} recent live episode(s) no correction "
                   f"labels success (episode@step: {shown}; most alike: live episode {record['episode']} step "
                   f"{record['frame']}): accept if those are successes, reject to drop it")
            self._live_conflicts[int(batch.ids[i])] = (why, record)
        return len(picked)

    def _review_live(self, verdicts: dict[int, Review]) -> int:
        """A review that accepts a ``conflicts_live`` correction confirms the live firings it was shown (they are
        successes): they stop counting, and it trains. Returns how many were confirmed."""
        confirmed = 0
        for cid, (_, record) in list(self._live_conflicts.items()):
            review = verdicts.get(cid)
            if review is None or review.verdict != "accept":
                continue
            confirmed += self.live_confirmed.confirm(record.get("firings", []))
            del self._live_conflicts[cid]
        return confirmed

    def corrections(self, store: CorrectionStore, upto: int) -> list[StoredCorrection]:
        """The stored corrections up to id ``upto``; frames are read (PNG-decoded) only for those not seen yet."""
        seen = max([*self._row_of, *self._unusable], default=0)
        fresh = {c.id: c for c in store.read(seen, upto)}
        return [fresh.get(c.id, c) for c in store.read(0, upto, frames=False)]

    def _is_success(self, label: int) -> int:
        classes = self.model.config.num_classes
        return int(label == (self.spec.success_class % classes if classes > 2 else 1))

    def prepare(self, corrections: list[StoredCorrection], verdicts: dict[int, Review]) -> _Batch:
        """Encode the corrections (once each) and sort them: unusable, rejected, conflicting, contradicted,
        boundary, gated."""
        self._add(corrections)
        usable = [c for c in corrections if c.id in self._row_of]
        rows = [self._row_of[c.id] for c in usable]
        unusable = {c.id: self._unusable[c.id] for c in corrections if c.id in self._unusable}
        ids = np.array([c.id for c in usable], dtype=np.int64)
        labels = np.array([c.correction.label for c in usable], dtype=np.int64)
        rejected = np.array([getattr(verdicts.get(int(i)), "verdict", "") == "reject" for i in ids], dtype=bool)
        accepted = np.array([getattr(verdicts.get(int(i)), "verdict", "") == "accept" for i in ids], dtype=bool)
        keep = np.flatnonzero(~rejected)
        vectors = np.stack([self._vector_of[int(i)] for i in ids[keep]]) if len(keep) else np.zeros((0, 0), np.float32)
        # The newest word wins: of two near-identical corrections labelled otherwise, the older is superseded (an
        # accepting review is a newer word than any correction).
        word = [(1, verdicts[int(ids[k])].id) if accepted[k] else (0, int(ids[k])) for k in keep]
        superseded = np.zeros(len(ids), bool)
        details: dict[int, str] = {}
        self._superseded_by = {}
        for older, newer in newest_word(self.near.pairs(vectors, labels[keep]), word).items():
            a, b = keep[older], keep[newer]
            superseded[a] = True
            self._superseded_by[int(ids[a])] = int(ids[b])
            details[int(ids[a])] = (f"superseded by correction {int(ids[b])} labelled {int(labels[b])} on a "
                                    "near-identical frame (the newest word wins): accept this one to make it win")
        found = self.near.find([int(i) for i in ids[keep]], vectors, labels[keep])
        contradicted = np.array([int(i) in found or int(i) in self._conflicts for i in ids], dtype=bool) \
            & ~accepted & ~rejected & ~superseded
        offline = np.array([int(i) in self._offline_conflicts for i in ids], dtype=bool) & ~accepted & ~rejected \
            & ~superseded
        live = np.array([int(i) in self._live_conflicts for i in ids], dtype=bool) & ~accepted & ~rejected \
            & ~superseded & ~offline
        details.update({cid: why for cid, why in self._conflicts.items() if cid not in details})
        details.update({cid: c.detail for cid, c in found.items() if cid not in details})
        details.update({cid: why for cid, (why, _) in self._offline_conflicts.items()})
        details.update({cid: why for cid, (why, _) in self._live_conflicts.items()})
        # Boundary frames: per episode, from the corrections' steps and the served labels around them.
        boundary = np.zeros(len(ids), bool)
        by_group: dict[tuple[int, int], list[int]] = {}
        for i, c in enumerate(usable):
            if not rejected[i] and not superseded[i]:
                by_group.setdefault((c.correction.episode, c.correction.env_index), []).append(i)
        window = int(self.options.boundary_frames)
        for members in by_group.values():
            members.sort(key=lambda i: (usable[i].correction.step, usable[i].id))
            latest = {usable[i].correction.step: i for i in members}  # the newest label of a step counts
            picked = sorted(latest.values(), key=lambda i: usable[i].correction.step)
            flags = boundary_steps([(usable[i].correction.step, self._is_success(usable[i].correction.label),
                                     usable[i].correction.context) for i in picked],
                                   self.spec.threshold, window)
            for i, flag in zip(picked, flags):
                boundary[i] = flag
            for i in members:  # an older label of the same step follows the newest
                boundary[i] = boundary[latest[usable[i].correction.step]]
        boundary &= ~accepted & ~contradicted & ~offline & ~superseded & ~live
        for i in np.flatnonzero(boundary):
            details[int(ids[i])] = (f"within {window} step(s) of a label change in episode {usable[i].correction.episode}"
                                    " (a keypress lands late): trained lightly, not gated")
        for i in ids[rejected]:
            review = verdicts[int(i)]
            details[int(i)] = f"rejected by {review.reviewer or 'review'}" + (f": {review.note}" if review.note else "")
        return _Batch(ids, np.array(rows, dtype=np.int64), labels,
                      [(c.correction.episode, c.correction.env_index) for c in usable], rejected, contradicted,
                      details, unusable, max([c.id for c in corrections], default=0), boundary, offline, accepted,
                      superseded, live, np.array([c.correction.step for c in usable], dtype=np.int64))

    def _weights(self, batch: _Batch, include: np.ndarray) -> np.ndarray:
        """Sampling weight of each correction of ``batch`` (0 outside ``include``)."""
        opts = self.options
        per = np.array([self.per_class.get(int(y), 1) for y in batch.labels], dtype=np.float64)
        w = np.where(batch.contradicted, opts.contradicted_weight,
                     np.where(batch.boundary, opts.boundary_weight, opts.correction_weight)) / per
        return np.where(include & batch.active, w, 0.0)

    # ---- training
    def _fit(self, batch: _Batch, include: np.ndarray, check: np.ndarray, start: State, seed: int,
             offline_scale: np.ndarray | None = None, steps: int | None = None, early_stop: bool = True,
             should_stop: Callable[[], bool] | None = None, adapt: bool = False,
             features: dict[str, np.ndarray] | None = None) -> dict | None:
        """Train from ``start`` (the head; with ``adapt`` the encoder's last stage too) on the offline rows plus
        the ``include`` d corrections, in chunks, until ``min_fixed`` of the ``check`` ed ones are classified as
        labelled (or ``steps``). The model keeps the result; returns the fit's numbers, or None when
        ``should_stop`` interrupted it."""
        from ..training.features import fit_head

        n = self._used
        weights = np.zeros(n)
        weights[:self.n_offline] = self.offline_weights * (1.0 if offline_scale is None else offline_scale)
        weights[batch.rows] = self._weights(batch, include)
        if adapt:
            source = self._trunk
        elif features is None and start.last is not None:  # head only, on a version whose last stage adapted
            source = self._features_of(start)
        else:
            source = features or self._pool
        assert source is not None
        inputs = {k: v[:n] for k, v in source.items()}
        labels = self._pool_labels[:n]
        self._load(start)
        if adapt:
            assert self.stage is not None
            self.stage.trainable()
        judged: dict[str, Any] = {}

        def current() -> State:
            return State(self._head_state(), self.stage.state() if adapt and self.stage is not None else start.last)

        def enough(done: int) -> bool:  # every check_every steps, one optimizer throughout
            fixed = self._judge(batch.rows, current())[0] == batch.labels
            self.model.train()
            judged.update(fixed=fixed, fraction=float(fixed[check].mean()) if check.any() else 1.0)
            return early_stop and done >= self.options.min_steps and judged["fraction"] >= self.options.min_fixed

        stats = fit_head(self.model, inputs, labels, weights, steps=int(steps or self.options.steps),
                         batch_size=self.options.batch_size, lr=self.options.lr, seed=seed,
                         should_stop=lambda: self.orphaned() or (should_stop is not None and should_stop()),
                         check=enough, check_every=self.options.check_every,
                         stage=self.stage.module if adapt and self.stage is not None else None)
        self.model.eval()
        if stats["stopped"] == "should_stop":
            if self.orphaned():
                raise Orphaned
            return None
        return {**judged, "steps": stats["steps"], "seconds": stats["seconds"], "loss": stats["loss"],
                "state": current()}

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
            fit = self._fit(batch, include, include & batch.gated, self.base_state, self.options.seed,
                            steps=self.options.holdout_steps, early_stop=False)
            assert fit is not None
            while len(self._holdout_heads) >= 4:
                self._holdout_heads.pop(next(iter(self._holdout_heads)))
            self._holdout_heads[key] = fit["state"].head
        return self._judge(batch.rows[held], State(self._holdout_heads[key]))[0] == batch.labels[held]

    # ---- one run
    def attempt(self, corrections: list[StoredCorrection], verdicts: dict[int, Review] | None = None) -> Attempt:
        """Train a candidate on the offline data plus ``corrections``, gate it against the serving version
        (:mod:`.gate`), and leave it in the model. Whatever the gate refuses, the attempt looks for what it can
        publish: conflicts the held-out corrections gate finds become contradicted, corrections that make offline
        held-out episodes wrong become ``conflicts_offline``, and it runs again without them; so every attempt
        ends in a version, or in named corrections that a review resolves."""
        opts, verdicts = self.options, verdicts or {}
        t0 = time.perf_counter()
        relabels = self._review_relabels(verdicts)
        confirmed = self._review_live(verdicts)
        self._load_live()
        batch = self.prepare(corrections, verdicts)
        metrics: dict[str, float] = {"prepare_seconds": time.perf_counter() - t0, "offline_relabels": float(relabels),
                                     "live_confirmed": float(confirmed)}
        reasons: list[str] = []
        conflicts: dict[int, str] = {}
        for _ in range(opts.max_reruns + 1):  # held-out corrections gate: conflicts become contradicted, run again
            reasons.clear()
            found_c = {k: v for k, v in self._holdout_gate(batch, metrics, reasons).items() if k not in self._conflicts}
            if not found_c:
                break
            conflicts.update(found_c)
            self._conflicts.update(found_c)
            batch = self.prepare(corrections, verdicts)
        served_probs = self._run(self.served_state, "val")[0]
        served_fixed = self._judge(batch.rows, self.served_state)[0] == batch.labels
        adapt = self.scope == "last"
        train_s, named, dropped, named_live = 0.0, 0, 0, 0
        for rerun in range(opts.max_reruns + 1):
            tried = self._try(batch, adapt, served_probs)
            train_s += tried["seconds"]
            if self.scope == "auto" and not adapt and batch.gated.any() and \
                    (tried["fit"]["fraction"] < opts.min_fixed or tried["found"]):
                # the head alone leaves corrections unfixed or moves old states: the last stage adapts too
                deeper = self._try(batch, True, served_probs)
                train_s += deeper["seconds"]
                if (len(deeper["found"]), -deeper["fit"]["fraction"]) < (len(tried["found"]), -tried["fit"]["fraction"]):
                    tried, adapt = deeper, True
            fit, found = tried["fit"], tried["found"]
            candidate: State = fit["state"]
            predicted, success = self._judge(batch.rows, candidate)
            fixed = predicted == batch.labels
            gated = batch.gated
            newly, broken = int((fixed & ~served_fixed & gated).sum()), int((~fixed & served_fixed & gated).sum())
            live, live_repr = self._live_check(batch, candidate)
            firings, live_reason, kind = self._live_verdict(live)
            if rerun == opts.max_reruns:
                break
            if found:  # offline regressions: leave out the corrections that pushed it there, run again
                blamed = self._blame(batch, candidate, found, tried["held_repr"], rerun)
                if not blamed:
                    break
                named += blamed
            elif firings:  # it would pay where the policy goes and no human said success: the same, on live frames
                assert live_repr is not None
                blamed = self._blame_live(batch, candidate, firings, live_repr, kind, rerun)
                if not blamed:
                    break
                named_live += blamed
            elif broken and newly <= broken:  # trained on, yet wrong where the serving version was right
                for i in np.flatnonzero(gated & served_fixed & ~fixed):
                    self._conflicts[int(batch.ids[i])] = ("classified otherwise by a model trained on it, though the "
                                                          "serving version classifies it as labelled: the newer "
                                                          "corrections or the offline data say otherwise")
                dropped += broken
            else:
                break
            batch = self.prepare(corrections, verdicts)
        counts, counts_served = tried["counts"], tried["counts_served"]
        accuracy = self._accuracy(candidate)
        metrics.update({
            f"{self.evidence}_accuracy": accuracy, f"{self.evidence}_accuracy_base": self.base_accuracy,
            "offline_heldout": float(self.heldout),
            "corrections_fixed": float(fixed[gated].mean()) if gated.any() else 1.0,
            "corrections_fixed_serving": float(served_fixed[gated].mean()) if gated.any() else 1.0,
            "corrections_newly_fixed": float(newly), "corrections_broken": float(broken),
            "corrections_gated": float(gated.sum()), "corrections_boundary": float(batch.boundary.sum()),
            "corrections_contradicted": float(batch.contradicted.sum()),
            "corrections_conflicts_offline": float(batch.offline.sum()),
            "corrections_named_offline": float(named), "corrections_named_broken": float(dropped),
            "corrections_rejected": float(batch.rejected.sum()),
            "corrections_unusable": float(len(batch.unusable)), "reruns": float(rerun),
            "adapted_last_stage": float(candidate.last is not None), "train_seconds": train_s,
            "corrections_conflicting": float(len(conflicts)), "retrain_seconds": time.perf_counter() - t0,
            "corrections_superseded": float(batch.superseded.sum()),
            "corrections_conflicts_live": float(batch.live.sum()), "corrections_named_live": float(named_live),
            **live.metrics(),
            "train_steps": float(fit["steps"]), "train_loss": float(fit["loss"]),
            **{f"{self.evidence}_{k}": float(v) for k, v in counts.items()},
            **{f"{self.evidence}_{k}_serving": float(v) for k, v in counts_served.items()}})
        if found:
            reasons.append(f"{self.evidence_text} " + "; ".join(r.describe(self.held.frame_index) for r in found) +
                           f" after {rerun} rerun(s) without the corrections blamed (the rest are boundary frames or "
                           "accepted by review: reject those, or relabel the episode)")
        if live_reason:
            reasons.append(f"live: {live_reason} after {rerun} rerun(s) without the corrections blamed (the rest are "
                           "accepted by review or labelled failure)")
        if broken and newly <= broken:
            wrong = [int(i) for i in batch.ids[gated & ~fixed]]
            reasons.append(f"fixes {newly} gated correction(s) the serving version gets wrong and breaks {broken}"
                           + (f"; still wrong: {wrong[:10]}" if wrong else ""))
        self.candidate_support = self._support_for(candidate, batch)
        self._load(candidate)
        self.candidate = candidate
        assessments = self._assess(batch, fixed, success)
        return Attempt(not reasons, metrics, "; ".join(reasons), int(batch.active.sum()), batch.last_id,
                       assessments)

    def _try(self, batch: _Batch, adapt: bool, served_probs: np.ndarray) -> dict:
        """Fit a candidate (``adapt``: the last stage too) and find its offline regressions."""
        fit = self._fit(batch, batch.active, batch.gated, self.base_state, self.options.seed, adapt=adapt)
        assert fit is not None
        probs, held_repr = self._run(fit["state"], "val", penultimate=True)
        found, counts_served, counts = gate.regressions(self.held, self.val_labels, self._success(served_probs),
                                                        self._success(probs), self.spec.threshold,
                                                        tuple(self.options.veto))
        return {"fit": fit, "held_repr": held_repr, "found": found, "counts": counts, "counts_served": counts_served,
                "seconds": fit["seconds"]}

    def _holdout_gate(self, batch: _Batch, metrics: dict, reasons: list[str]) -> dict[int, str]:
        """Gate (c), on the corrections the candidate does not train on: the conflicts it finds (id -> why)."""
        opts = self.options
        held, older = self._holdout_plan(batch, self.served.last_correction_id)
        new = batch.active & (batch.ids > self.served.last_correction_id)
        if not (held.any() and new.any()):
            return {}
        t0 = time.perf_counter()
        before = np.zeros(len(batch.ids), dtype=bool)
        before[held] = self._served_holdout(batch, held, older)
        trial = self._fit(batch, batch.active & ~held, batch.gated & ~held, self.base_state, opts.seed,
                          steps=opts.holdout_steps, early_stop=False)
        assert trial is not None
        right, total = int(trial["fixed"][held].sum()), int(held.sum())
        metrics.update({"holdout_corrections": float(total), "holdout_accuracy": right / total,
                        "holdout_accuracy_serving": float(before.sum()) / total,
                        "holdout_seconds": time.perf_counter() - t0})
        if right >= before.sum() - max(1.0, opts.holdout_tolerance * total):
            return {}
        broken = held & before & ~trial["fixed"]
        ids = [int(i) for i in batch.ids[broken]]
        reasons.append(f"the new corrections make held-out corrections {ids[:10]} of recent episodes wrong "
                       f"({right}/{total} right; without the new ones {int(before.sum())}/{total}; "
                       f"holdout_tolerance {opts.holdout_tolerance} but at least one)")
        return self._conflicts_of(batch, broken, new & batch.gated)

    def _blame(self, batch: _Batch, candidate: State, found: list, held_repr: np.ndarray, rerun: int) -> int:
        """Name the corrections that pushed the candidate into ``found`` (offline regressions) as conflicts_offline;
        returns how many. Each rerun blames twice as many per regression."""
        eligible = batch.active & ~batch.boundary & ~batch.accepted
        if not eligible.any():
            return 0
        _, corr_repr = self._run(candidate, "pool", batch.rows, penultimate=True)
        labels = np.array([self._is_success(int(y)) for y in batch.labels])
        picked = gate.blame(found, held_repr, corr_repr, labels, eligible, self.options.blame_per_regression << rerun)
        for i, (reg, row) in picked.items():
            record = gate.conflict_record(reg, row, self.held.frame_index)
            why = (f"training on it makes {self.evidence_text} episode {record['episode']} {reg.kind.replace('_', ' ')} "
                   f"(frames {record['start']}-{record['end'] - 1} labelled {record['label']}; most alike frame "
                   f"{record['frame']}): accept to relabel those frames, reject to drop it")
            self._offline_conflicts[int(batch.ids[i])] = (why, record)
        return len(picked)

    @staticmethod
    def _conflicts_of(batch: _Batch, broken: np.ndarray, new: np.ndarray) -> dict[int, str]:
        """The held-out corrections the new ones made wrong, and the new ones labelled otherwise than one of
        them (those push it across), or every new one when none is: id -> why. These are other states than the
        ones they make wrong (near-identical ones are settled by the newest word, :func:`.neighbours.newest_word`):
        both sides go to review."""
        labels = set(batch.labels[broken].tolist())
        culprits = new & np.array([bool(labels - {y}) for y in batch.labels.tolist()], dtype=bool)
        if not culprits.any():
            culprits = new
        if not broken.any():
            return {}
        victims, blamed = [int(i) for i in batch.ids[broken]], [int(i) for i in batch.ids[culprits]]
        by = f"newer corrections {blamed[:10]}" if blamed else "newer corrections (boundary frames, contradicted ones)"
        out = {i: f"made wrong by {by} (held-out corrections gate)" for i in victims}
        out.update({i: f"makes held-out corrections {victims[:10]} of recent episodes wrong (held-out corrections "
                       "gate)" for i in blamed})
        return out

    def _assess(self, batch: _Batch, fixed: np.ndarray, success: np.ndarray) -> list[Assessment]:
        out = [Assessment(cid, "unusable", -1.0, why) for cid, why in batch.unusable.items()]
        for i, cid in enumerate(batch.ids.tolist()):
            conflict = None
            if batch.rejected[i]:
                status = "rejected"
            elif batch.superseded[i]:
                status, conflict = "superseded", {"by": self._superseded_by[cid]}
            elif batch.offline[i]:
                status, conflict = "conflicts_offline", self._offline_conflicts[cid][1]
            elif batch.live[i]:
                status, conflict = "conflicts_live", self._live_conflicts[cid][1]
            elif batch.contradicted[i]:
                status = "contradicted"
            elif batch.boundary[i]:
                status = "boundary"
            else:
                status = "fixed" if fixed[i] else "unfixed"
            detail = batch.details.get(cid, "")
            if status in ("contradicted", "boundary"):
                detail += "; classified as labelled" if fixed[i] else "; classified otherwise"
            out.append(Assessment(cid, status, float(success[i]), detail, conflict=conflict))
        return sorted(out, key=lambda a: a.correction_id)

    def _support_for(self, state: State, batch: _Batch) -> Support | None:
        """The support bank of a version (:mod:`hilreward.models.support`): the checkpoint's, plus the corrections
        it trains on (not contradicted): the humans' labels in new states become what the cautious reward
        compares with. A version whose encoder's last stage adapted describes frames differently: its bank is
        built again, on the offline training frames (as many as the checkpoint's bank holds) and the corrections."""
        base = self.base_support
        if base is None:
            return None
        own = batch.active & ~batch.contradicted
        ids = batch.ids[own]
        success = np.array([self._is_success(int(y)) for y in batch.labels[own]], dtype=bool)
        keys = self.model.camera_keys
        if base.encoder is not None:  # its own frozen encoder: the corrections' vectors were computed with it
            vectors = np.stack([self._support_vector_of[int(i)] for i in ids]) if len(ids) else np.zeros((0, 1))
            return base.extended(vectors, success)
        if state.last is None:  # the checkpoint's encoder: the corrections' pooled features
            return base.extended(pool_numpy({k: self._pool[k][batch.rows[own]] for k in keys}, keys), success)
        offline = self._pool_labels[:self.n_offline]
        offline_success = np.array([self._is_success(int(y)) for y in offline], dtype=bool)
        picked = pick_rows(offline, offline_success, int(base.vectors.shape[0]))
        rows = np.concatenate([picked, batch.rows[own]]).astype(np.int64)
        labels = np.concatenate([offline_success[picked], success])
        episodes = np.concatenate([self._train_at[0][picked], -1 - np.array([batch.groups[i][0] for i in
                                                                             np.flatnonzero(own)], np.int64)])
        assert self._trunk is not None and self.stage is not None
        self.stage.load(state.last)
        with self._torch.inference_mode():
            features = {k: self.stage.module(self._torch.from_numpy(np.asarray(self._trunk[k][rows], dtype=np.float32)))
                        .numpy() for k in keys}
        return Support.build(pool_numpy(features, keys), labels, episodes, k=base.k)

    def publish(self, attempt: Attempt, last_review_id: int = 0) -> VersionRecord:
        """Write the attempt's candidate (in the model) as the next immutable version (it becomes the serving one)."""
        metrics = {**attempt.metrics, "val_episodes": self.val_episodes, "last_review_id": last_review_id,
                   "corrections_used": attempt.corrections_used, "last_correction_id": attempt.last_correction_id}
        self._load(self.candidate)
        self.model.set_support(self.candidate_support, self.spec.success_class)

        def fill(tmp: Path, version: str) -> None:
            self.model.save_pretrained(tmp, train_config_yaml=self.train_config_yaml, metrics=metrics)
            config = json.loads((tmp / "config.json").read_text())
            config["model_version"] = version  # RewardFunction.from_pretrained(versions/<n>) names it too
            (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

        record = self.versions.publish(fill, lambda number: f"{self.base_version}-r{number}",
                                       {**attempt.metrics, "last_review_id": float(last_review_id)},
                                       attempt.corrections_used, attempt.last_correction_id)
        self.served, self.served_state = record, self.candidate
        return record

    # ---- idle work
    def _features_of(self, state: State) -> dict[str, np.ndarray]:
        """Pool features under ``state``'s encoder: the offline ones, or (an adapted last stage) computed once
        per serving version from the trunk's."""
        if state.last is None:
            return self._pool
        if self._served_features is None or self._served_features[0] != self.served.number:
            torch = self._torch
            assert self._trunk is not None and self.stage is not None
            self.stage.load(state.last)
            out = {c: np.zeros((len(f), *self.model.config.feature_shape), np.float16) for c, f in self._pool.items()}
            with torch.inference_mode():
                for c, f in self._trunk.items():
                    for s in range(0, self._used, 512):
                        x = torch.from_numpy(np.asarray(f[s:s + 512], dtype=np.float32))
                        out[c][s:s + len(x)] = self.stage.module(x).numpy()
            self._served_features = (self.served.number, out)
        return self._served_features[1]

    def idle_work(self, store: CorrectionStore, should_stop: Callable[[], bool]) -> Iterator[EnsembleReady | None]:
        """Work for the time no correction waits, one fit per step; yields an event (or None) after each."""
        batch = self.prepare(self.corrections(store, self.served.last_correction_id), store.verdicts())
        held, older = self._holdout_plan(batch, self.served.last_correction_id)
        if held.any():  # not interrupted: the next attempt needs this fit whatever it brings
            self._served_holdout(batch, held, older)
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
        if self.served.number != 0:  # later versions' members: from version 0's, like the head, on its features
            features = self._features_of(self.served_state)
            states = []
            for k in range(size):
                state = self._train_member(self._members0[k], batch, batch.active, batch.gated, seeds[k],
                                           bootstrap(self.n_offline, k), should_stop, features=features)
                if state is None:
                    return
                states.append(state)
                yield None
        save_members(members_path(self.state_dir, self.served.number), self._heads(states))
        yield EnsembleReady(self.served.number, size, time.perf_counter() - t0)

    def _train_member(self, start: dict, batch: _Batch, include: np.ndarray, check: np.ndarray, seed: int,
                      offline_scale: np.ndarray, should_stop: Callable[[], bool], **fit) -> dict | None:
        """An ensemble member trained from ``start`` (None when interrupted); the served head is kept aside."""
        served = self.model.reward_head
        self.model.reward_head = self._heads([start])[0]
        try:
            done = self._fit(batch, include, check, State(start), seed, offline_scale, should_stop=should_stop,
                             **fit)
            return None if done is None else done["state"].head
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
