"""``hilreward suspects``: find frames whose label the data itself doubts (k-fold, out-of-fold and in-fold).

    hilreward suspects dataset.root=data/my_set output_dir=runs/suspects model=scratch folds=4

1. split the episodes into ``folds`` groups (never by frame; succeeding and failing episodes spread evenly);
2. per fold, ``train(cfg)`` with that fold's episodes held out (the same trainer, frame and feature caches as
   ``hilreward train``; a killed run resumes fold by fold);
3. score every frame with the fold's best checkpoint (as ``train`` picks it, on the held-out episodes), a model
   that never trained on its episode: an out-of-fold probability ``p``;
4. a frame's out-of-fold disagreement is the probability the model gives to the class it was *not* labelled
   (``p`` for a 0 label, ``1 - p`` for a 1 label), averaged with its neighbours of the same episode and label
   (label errors come in runs: a late onset, a missed or false success span);
5. frames that could reach ``min_score`` are scored again by the other ``folds - 1`` models, those that trained
   on their episode with their label: the in-fold disagreement, averaged likewise. A wrong label contradicts the
   other episodes, so even a model trained on it keeps disagreeing; an episode the model misjudges because it
   is unusual (a pose no other episode has, a near-success that looks like success) is fitted once the model
   sees it. The score is the geometric mean of the two disagreements, the in-fold one mapped onto
   [``min_score ** 2``, 1] (a frame the out-of-fold model doubts completely stays a suspect: the in-fold models can
   memorise a wrong span whose frames look like no other);
6. frames whose score is at least ``min_score`` form suspect *spans* (contiguous frames, one episode, one
   label), ranked by total score.

Writes ``suspects.parquet`` (every frame: episode_index, frame_index, label, probability, score, span_id;
sorted by score, span_id -1 outside spans) and ``spans.json``, and prints the top spans.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import TrainConfig, compose, parse_overrides
from ..data import load_frame_data, open_dataset
from ..errors import ConfigError, DatasetError
from ..evaluation.calibration import sigmoid
from ..training.folds import episode_folds, fold_config, fold_logits
from ..training import train
from ..training.progress import Progress
from ..usage import HelpRequested, wants_help
from ..utils import write_atomic

OWN_KEYS = ("folds", "fold_steps", "top", "min_score", "window")
SPANS_FORMAT = "hilreward.suspects/1"


@dataclass
class SuspectsOptions:
    folds: int = 4
    """Number of folds (groups of episodes); each fold's model scores only episodes it never saw."""
    fold_steps: int = 300
    """Training steps of each fold model, whatever the preset's ``training.steps`` (0: the preset's). The in-fold
    view needs models that learn the pattern rather than every frame; it was measured with 300-step
    ``model=scratch`` folds (the preset itself trains 1200)."""
    top: int = 10
    """Spans printed at the end."""
    min_score: float = 0.5
    """Frames scoring at least this are grouped into spans. Also the floor of the in-fold disagreement
    (``min_score ** 2``), and only frames whose out-of-fold disagreement reaches ``min_score ** 2`` (the least that
    can still score ``min_score``) are scored by the in-fold models."""
    window: int = 2
    """Neighbours on each side whose disagreement is averaged into a frame's (same episode, same label)."""


@dataclass
class Span:
    span_id: int
    episode_index: int
    start: int
    """First frame_index."""
    end: int
    """One past the last frame_index."""
    label: int
    """The label the frames carry."""
    probability: float
    """Mean out-of-fold probability of success over the span."""
    score: float
    """Mean disagreement score over the span."""

    def describe(self) -> str:
        says = "success" if self.label == 0 else "no success"
        return (f"episode {self.episode_index}, frames {self.start}-{self.end - 1}: labelled {self.label}, "
                f"model says {says} (p {self.probability:.2f})")


def main(args: list[str]) -> int:
    if wants_help(args):
        raise HelpRequested(SuspectsOptions, TrainConfig, defaults={TrainConfig: compose([])},
                            note="Its own keys (SuspectsOptions), then every `hilreward train` key: the folds train "
                                 "like `train` (dataset, label, model, training).")
    own = [a for a in args if a.split("=", 1)[0] in OWN_KEYS]
    rest = [a for a in args if a not in own]
    if not any(a.startswith("output_dir=") for a in rest):
        rest.append("output_dir=outputs/suspects")
    opts: SuspectsOptions = parse_overrides(SuspectsOptions, own)
    cfg = compose(rest)
    spans = find_suspects(cfg, opts)
    print(f"{len(spans)} suspect spans; top {min(opts.top, len(spans))}:")
    for span in spans[:opts.top]:
        print(f"  [{span.span_id}] {span.describe()}, score {span.score:.2f}")
    print(f"wrote {Path(cfg.output_dir) / 'suspects.parquet'} and spans.json")
    return 0


def find_suspects(cfg: TrainConfig, opts: SuspectsOptions) -> list[Span]:
    """Train one model per fold, score every frame out of fold, write suspects.parquet + spans.json; ranked spans."""
    _validate(opts)
    out = Path(cfg.output_dir)
    ds = open_dataset(cfg.dataset)
    episodes = [e.index for e in ds.episodes] if cfg.dataset.episodes is None else sorted(int(e) for e in cfg.dataset.episodes)
    data = load_frame_data(replace(cfg.dataset, episodes=episodes), cfg.label, tuple(cfg.model.image_size),
                           cache_dir=cfg.cache_dir)
    if data.labels.max(initial=0) > 1:
        raise ConfigError(f"suspects needs binary success labels; {cfg.label.key!r} has classes "
                          f"{sorted(np.unique(data.labels).tolist())[:8]}")
    folds = episode_folds(episodes, data.episode_index, data.labels, opts.folds, cfg.split.seed)
    probability = np.full(len(data), np.nan)
    models, fold_info = [], []
    fold_steps = opts.fold_steps or cfg.training.steps
    bar = Progress(len(folds) * fold_steps, desc="suspects")  # one display over the fold models
    for i, held in enumerate(folds):
        bar.phase(f"suspects: fold {i + 1}/{len(folds)}")
        # no calibration: the fold models only rank frames, and their held-out labels are the ones in doubt
        fold_cfg = fold_config(cfg, episodes, held, out / "folds" / str(i), fold_steps)
        best = train(fold_cfg, progress=bar)
        rows = np.flatnonzero(np.isin(data.episode_index, held))
        probability[rows] = fold_probability(fold_cfg, best, data, rows)
        models.append((fold_cfg, best, rows))
        accuracy = float(((probability[rows] >= 0.5) == (data.labels[rows] == 1)).mean())
        fold_info.append({"episodes": held, "checkpoint": str(best), "agreement_with_labels": accuracy})
    bar.close()
    doubt = disagreement(data.labels, probability, data.episode_index, opts.window)
    # only frames whose score can reach min_score (the in-fold disagreement is at most 1) are scored again
    candidates = np.flatnonzero(doubt >= opts.min_score ** 2)
    print(f"suspects: {len(candidates)} frames scored again by the models that trained on them", flush=True)
    fitted = probability.copy()
    fitted[candidates] = in_fold_probability(models, data, candidates)
    score = suspect_score(data.labels, probability, fitted, data.episode_index, opts.window, opts.min_score)
    spans, span_id = group_spans(data.episode_index, data.frame_index, data.labels, probability, score,
                                 opts.min_score)
    _write(out, data, probability, score, span_id, spans, cfg, opts, fold_info)
    return spans


def fold_probability(cfg: TrainConfig, checkpoint: Path, data, rows: np.ndarray) -> np.ndarray:
    """P(success) of ``rows`` under a fold's model (cached features when its encoder is frozen, pixels otherwise)."""
    return sigmoid(fold_logits(cfg, checkpoint, data, rows))


def in_fold_probability(models: list[tuple[TrainConfig, Path, np.ndarray]], data, rows: np.ndarray) -> np.ndarray:
    """Mean P(success) of ``rows`` under the fold models that trained on them: ``models`` holds each fold's
    (config, checkpoint, held-out rows); a row is scored by every model that did not hold it out."""
    total, count = np.zeros(len(rows)), np.zeros(len(rows))
    for cfg, checkpoint, held in models:
        seen = ~np.isin(rows, held)
        if seen.any():
            total[seen] += fold_probability(cfg, checkpoint, data, rows[seen])
            count[seen] += 1
    return total / np.maximum(count, 1)


def disagreement(labels: np.ndarray, probability: np.ndarray, episode_index: np.ndarray, window: int) -> np.ndarray:
    """Per frame (rows in episode, frame order): the ``probability`` of the class it was *not* labelled,
    averaged with up to ``window`` neighbours on each side that share its episode and label (label errors come in
    runs: a late onset, a missed or a false success span; an isolated doubtful frame scores lower)."""
    labels = np.asarray(labels)
    raw = np.where(labels == 1, 1.0 - probability, probability)
    n = len(raw)
    total, count = raw.copy(), np.ones(n)
    for d in range(1, max(window, 0) + 1):
        for shift in (d, -d):
            src = np.arange(n) - shift
            ok = (src >= 0) & (src < n)
            idx, s = np.flatnonzero(ok), src[ok]
            same = (episode_index[s] == episode_index[idx]) & (labels[s] == labels[idx])
            total[idx[same]] += raw[s[same]]
            count[idx[same]] += 1
    return total / count


def suspect_score(labels: np.ndarray, out_of_fold: np.ndarray, in_fold: np.ndarray, episode_index: np.ndarray,
                  window: int, min_score: float) -> np.ndarray:
    """Per frame: the geometric mean of its out-of-fold disagreement and its in-fold one (``out_of_fold`` and
    ``in_fold`` are P(success) from the models that did not and did train on its episode), the latter mapped onto
    [``min_score ** 2``, 1]. High where both doubt the label; a frame the out-of-fold model misjudges but a model
    trained on its episode fits is more likely the model's error. The floor keeps a frame the out-of-fold model
    doubts completely a suspect however well the in-fold models fit it: they can memorise a wrong span whose
    frames look like no other."""
    floor = min_score ** 2
    fitted = disagreement(labels, in_fold, episode_index, window)
    return np.sqrt(disagreement(labels, out_of_fold, episode_index, window) * (floor + (1 - floor) * fitted))


def group_spans(episode_index: np.ndarray, frame_index: np.ndarray, labels: np.ndarray, probability: np.ndarray,
                score: np.ndarray, min_score: float) -> tuple[list[Span], np.ndarray]:
    """Contiguous frames (one episode, one label) scoring >= ``min_score``, ranked by total score; and the span id
    of every frame (-1 outside spans)."""
    hit = score >= min_score
    span_of = np.full(len(score), -1, dtype=np.int64)
    runs = []
    i, n = 0, len(score)
    while i < n:
        if not hit[i]:
            i += 1
            continue
        j = i + 1
        while (j < n and hit[j] and episode_index[j] == episode_index[i] and labels[j] == labels[i]
               and frame_index[j] == frame_index[j - 1] + 1):
            j += 1
        runs.append((i, j))
        i = j
    runs.sort(key=lambda r: (-float(score[r[0]:r[1]].sum()), r[0]))
    spans = []
    for sid, (a, b) in enumerate(runs):
        span_of[a:b] = sid
        spans.append(Span(sid, int(episode_index[a]), int(frame_index[a]), int(frame_index[b - 1]) + 1,
                          int(labels[a]), float(probability[a:b].mean()), float(score[a:b].mean())))
    return spans, span_of


def load_suspects(directory: str | Path) -> tuple[dict, "object"]:
    """(spans.json content, suspects.parquet as a pyarrow Table) of a ``hilreward suspects`` output folder."""
    import pyarrow.parquet as pq

    directory = Path(directory).expanduser()
    spans, table = directory / "spans.json", directory / "suspects.parquet"
    if not (spans.is_file() and table.is_file()):
        raise ConfigError(f"{directory} is not a `hilreward suspects` output (spans.json and suspects.parquet are "
                          f"missing); run hilreward suspects dataset.root=... output_dir={directory} first")
    try:
        meta = json.loads(spans.read_text())
        return meta, pq.read_table(table)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {directory}'s suspects ({exc}); run hilreward suspects again") from None


def _validate(opts: SuspectsOptions) -> None:
    if opts.window < 0:
        raise ConfigError(f"window={opts.window} must be >= 0")
    if opts.fold_steps < 0:
        raise ConfigError(f"fold_steps={opts.fold_steps} must be >= 0 (0: the preset's training.steps)")
    if not 0.0 < opts.min_score <= 1.0:
        raise ConfigError(f"min_score={opts.min_score} must be in (0, 1]")


def _write(out: Path, data, probability, score, span_id, spans: list[Span], cfg: TrainConfig,
           opts: SuspectsOptions, folds: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq


    order = np.lexsort((data.frame_index, data.episode_index, -score))
    table = pa.table({"episode_index": pa.array(data.episode_index[order], pa.int64()),
                      "frame_index": pa.array(data.frame_index[order], pa.int64()),
                      "label": pa.array(data.labels[order], pa.int64()),
                      "probability": pa.array(probability[order], pa.float32()),
                      "score": pa.array(score[order], pa.float32()),
                      "span_id": pa.array(span_id[order], pa.int64())})
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".suspects.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.replace(out / "suspects.parquet")
    doc = {"format": SPANS_FORMAT, "dataset_root": str(Path(cfg.dataset.root).resolve()) if cfg.dataset.root else None,
           "dataset_repo_id": cfg.dataset.repo_id, "dataset_fingerprint": data.fingerprint,
           "label_key": cfg.label.key, "label_threshold": cfg.label.threshold, "label_align": cfg.label.align,
           "options": {"folds": opts.folds, "min_score": opts.min_score, "window": opts.window},
           "folds": folds, "spans": [vars(s) for s in spans]}
    write_atomic(out / "spans.json", json.dumps(doc, indent=1) + "\n")
