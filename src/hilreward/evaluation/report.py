"""``report.html``: one self-contained page (plots as inline base64 PNG, inline CSS, no script).

Sections: headline numbers, threshold table with the evidence it rests on, the comparison with a
second checkpoint (``compare=``), ROC and PR curves, threshold sweep, reliability diagram,
confusion matrix, per-episode probability traces (jitter and gross errors marked apart), a gallery
of the worst false positives / negatives (every camera), per-episode table, dataset summary and config.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import calibration as C
from . import metrics as M
from .episodes import episode_metrics
from ..utils import write_atomic

OUTCOME_COLOURS = {"detected": "#2e7d32", "early": "#f9a825", "gross_early": "#c62828", "false_success": "#8e0038",
                   "missed": "#ef6c00", "no_success": "#546e7a"}
OUTCOME_TEXT = {"detected": "detected", "early": "early (jitter)", "gross_early": "GROSS early",
                "false_success": "GROSS: fires, never succeeds", "missed": "missed", "no_success": "no success"}
COMPARE_COLOUR = "#ef6c00"
MAX_TRACES = 48


@dataclass
class GalleryItem:
    """One frame shown in the error gallery."""

    kind: str
    """``false positive`` or ``false negative``."""
    episode: int
    """Episode index."""
    frame: int
    """Frame index within the episode."""
    probability: float
    """P(success) the model gave the frame."""
    images: dict[str, np.ndarray] = field(default_factory=dict)
    """Camera key -> uint8 (H, W, 3)."""


@dataclass
class Comparison:
    """A second checkpoint scored on the same frames (``hilreward eval compare=``)."""

    names: tuple[str, str]
    """Short names of the evaluated checkpoint and the compared one."""
    preds: M.Predictions
    """The compared checkpoint's predictions."""
    metrics: dict
    """The compared checkpoint's metrics (also ``metrics["compare"]``)."""


def worst_errors(preds: M.Predictions, threshold: float, per_kind: int = 6) -> list[tuple[str, int]]:
    """(kind, row) of the most confident false positives and false negatives, worst first."""
    y = np.asarray(preds.labels) == 1
    p = np.asarray(preds.probs, dtype=np.float64)
    fp = np.flatnonzero(~y & (p >= threshold))
    fn = np.flatnonzero(y & (p < threshold))
    fp = fp[np.argsort(-p[fp], kind="stable")][:per_kind]
    fn = fn[np.argsort(p[fn], kind="stable")][:per_kind]
    return [("false positive", int(i)) for i in fp] + [("false negative", int(i)) for i in fn]


# ----------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100})
    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=110)
    fig.clf()
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _curve_figure(records: list[dict], mark_step: Optional[int] = None):
    """Loss and accuracy over the steps of a run (training every log, held-out at every eval), or None."""
    series = {k: [(r["step"], r[k]) for r in records if k in r and r.get("phase", "model") == "model"]
              for k in ("train/loss", "eval/loss", "train/accuracy", "eval/accuracy")}
    if not any(series.values()):
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, what in zip(axes, ("loss", "accuracy")):
        for side, style in (("train", "-"), ("eval", "o-")):
            pts = series[f"{side}/{what}"]
            if pts:
                ax.plot(*zip(*pts), style, ms=3, lw=1.2,
                        label="training batches" if side == "train" else "held-out episodes")
        if mark_step is not None:
            ax.axvline(mark_step, color="0.5", lw=0.8, ls="--")
        ax.set_xlabel("step")
        ax.set_ylabel(what)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def read_history(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` (one JSON object per line: ``step``, ``elapsed_s``, ``phase`` and metrics
    such as ``train/loss``, ``eval/accuracy``; a torn last line, from a killed run, is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def training_curve_png(records: list[dict], mark_step: Optional[int] = None) -> Optional[bytes]:
    """The training curve of ``metrics.jsonl`` records as PNG bytes (None when they hold no loss or accuracy)."""
    fig = _curve_figure(records, mark_step)
    return None if fig is None else base64.b64decode(_png(fig))


def _image_png(img: np.ndarray, scale: int = 1) -> str:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _marks(metrics: dict) -> list[tuple[str, float, str]]:
    """(label, threshold, colour) of the thresholds marked on the curves, without repeats."""
    out: list[tuple[str, float, str]] = []
    for name, t, colour in (("0.5", 0.5, "#555"), ("threshold", metrics["threshold"], "#1565c0"),
                            ("recommended", metrics.get("recommended_threshold"), "#c62828")):
        if t is not None and all(t != seen for _, seen, _ in out):
            out.append((name if name == "0.5" else f"{name} {t:.3g}", t, colour))
    return out


def roc_pr_figure(preds: M.Predictions, metrics: dict) -> str:
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    y, p = np.asarray(preds.labels) == 1, np.asarray(preds.probs, dtype=np.float64)
    fpr, tpr, _ = M.roc_curve(y, p)
    a.plot(fpr, tpr, color="#1565c0", lw=2)
    a.plot([0, 1], [0, 1], color="#999", lw=1, ls="--")
    auroc = metrics.get("auroc")
    a.set(title=f"ROC (AUROC {auroc:.4f})" if auroc is not None else "ROC", xlabel="false positive rate",
          ylabel="true positive rate", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    prec, rec, _ = M.pr_curve(y, p)
    b.plot(np.r_[rec, 0.0], np.r_[prec, 1.0], drawstyle="steps-post", color="#6a1b9a", lw=2)
    ap = metrics.get("average_precision")
    b.set(title=f"Precision-recall (AP {ap:.4f})" if ap is not None else "Precision-recall", xlabel="recall",
          ylabel="precision", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    for label, t, colour in _marks(metrics):
        m = M.binary_metrics(y, p, t)
        a.plot(m["fpr"], m["recall"], "o", color=colour, label=label, ms=7, mfc="none", mew=2)
        b.plot(m["recall"], m["precision"], "o", color=colour, label=label, ms=7, mfc="none", mew=2)
    a.legend(loc="lower right", fontsize=8)
    b.legend(loc="lower left", fontsize=8)
    return _png(fig)


def sweep_figure(preds: M.Predictions, metrics: dict, consecutive: int) -> str:
    plt = _plt()
    grid = np.linspace(0.0, 1.0, 101)
    y, p = np.asarray(preds.labels), np.asarray(preds.probs, dtype=np.float64)
    tol = metrics.get("tolerance_frames") or 0.0  # episode_metrics in frames: fps 1, tolerance in frames
    rows = [(M.binary_metrics(y, p, t),
             episode_metrics(preds.episode_index, preds.frame_index, y, p, t, consecutive, 1.0, tol)) for t in grid]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(grid, [r[0]["precision"] for r in rows], label="precision", color="#6a1b9a")
    a.plot(grid, [r[0]["recall"] for r in rows], label="recall", color="#1565c0")
    a.plot(grid, [r[0]["accuracy"] for r in rows], label="accuracy", color="#2e7d32")
    a.set(title="Frame metrics vs threshold", xlabel="threshold", ylim=(-0.02, 1.02))
    b.plot(grid, [r[1]["false_terminations"] for r in rows], label="false terminations (strict)", color="#f9a825")
    b.plot(grid, [r[1]["gross_false_terminations"] for r in rows], label="gross false terminations",
           color="#c62828", lw=2)
    b.plot(grid, [r[1]["missed_successes"] for r in rows], label="missed successes", color="#ef6c00", ls="--")
    b.set(title=f"Episode errors vs threshold (consecutive={consecutive})", xlabel="threshold",
          ylabel="episodes")
    b.yaxis.get_major_locator().set_params(integer=True)
    for ax in (a, b):
        for label, t, colour in _marks(metrics):
            ax.axvline(t, color=colour, ls=":", lw=1.2)
        ax.legend(fontsize=8)
    return _png(fig)


def reliability_figure(preds: M.Predictions, metrics: dict) -> str:
    plt = _plt()
    bins = C.reliability_bins(preds.labels, preds.probs)
    centres = (bins["edges"][:-1] + bins["edges"][1:]) / 2
    fig, (a, b) = plt.subplots(2, 1, figsize=(4.4, 4.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    used = bins["count"] > 0
    a.bar(centres[used], bins["accuracy"][used], width=0.1, color="#90caf9", edgecolor="#1565c0",
          label="fraction positive")
    a.plot(bins["confidence"][used], bins["accuracy"][used], "o-", color="#1565c0", ms=4, label="per bin")
    a.plot([0, 1], [0, 1], "--", color="#999", label="perfect calibration")
    a.set(title=f"Reliability (ECE {metrics['ece']:.4f}, T {metrics['temperature']:.3g})",
          ylabel="fraction positive", xlim=(0, 1), ylim=(-0.02, 1.04))
    a.legend(fontsize=7, loc="upper left")
    b.bar(centres, bins["count"], width=0.1, color="#b0bec5", edgecolor="#546e7a")
    b.set(xlabel="predicted probability", ylabel="frames")
    b.set_yscale("log" if bins["count"].max() > 50 else "linear")
    return _png(fig)


def confusion_figure(metrics: dict) -> str:
    plt = _plt()
    cm = np.asarray(metrics["confusion_matrix"])
    k = cm.shape[0]
    names = ["no success", "success"] if k == 2 else [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(cm, cmap="Blues")
    ax.grid(False)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=12,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    thr = metrics.get("threshold")
    ax.set(xlabel="predicted", ylabel="true",
           title=f"Confusion matrix (p >= {thr:.3g})" if thr is not None else "Confusion matrix (arg-max)")
    return _png(fig)


def _episode_trace(preds: M.Predictions, episode: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame_index, probability, label) of one episode in frame order."""
    sel = np.asarray(preds.episode_index) == episode
    order = np.argsort(np.asarray(preds.frame_index)[sel], kind="stable")
    return (np.asarray(preds.frame_index)[sel][order], np.asarray(preds.probs, dtype=np.float64)[sel][order],
            np.asarray(preds.labels)[sel][order])


def _title(row: dict) -> str:
    err = row["onset_error_frames"]
    detail = f" {err:+d}" if err else ""
    return f"ep {row['episode']}: {OUTCOME_TEXT[row['outcome']]}{detail}"


def traces_figure(preds: M.Predictions, metrics: dict, compare: Optional[Comparison] = None) -> str:
    """Probability over time per episode. A fire inside the tolerance before the onset (shaded) is jitter (amber
    triangle); a fire before it, or in an episode that never succeeds, is a gross error (red cross)."""
    plt = _plt()
    per_episode = metrics["per_episode"][:MAX_TRACES]
    other_rows = {r["episode"]: r for r in compare.metrics["per_episode"]} if compare else {}
    tol = metrics.get("tolerance_frames") or 0.0
    ncols = 4 if len(per_episode) > 3 else max(1, len(per_episode))
    nrows = int(np.ceil(len(per_episode) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols, 2.1 * nrows), squeeze=False, sharey=True)
    for ax, row in zip(axes.flat, per_episode):
        f, p, y = _episode_trace(preds, row["episode"])
        ax.fill_between(f, 0, y == 1, step="mid", color="#a5d6a7", alpha=0.5, lw=0, label="labelled success")
        ax.plot(f, p, color="#1565c0", lw=1.3, label="P(success)")
        ax.axhline(metrics["threshold"], color="#1565c0", ls=":", lw=1, label="threshold")
        if metrics.get("recommended_threshold") is not None:
            ax.axhline(metrics["recommended_threshold"], color="#c62828", ls=":", lw=1, label="recommended")
        if row["onset_frame"] is not None:
            ax.axvline(row["onset_frame"], color="#2e7d32", lw=1.2, label="true onset")
            if tol:
                ax.axvspan(row["onset_frame"] - tol, row["onset_frame"], color="#fff59d", alpha=0.6, lw=0,
                           label="tolerance (jitter)")
        if compare:
            cf, cp, _ = _episode_trace(compare.preds, row["episode"])
            ax.plot(cf, cp, color=COMPARE_COLOUR, lw=1.1, ls="--", label=f"P(success), {compare.names[1]}")
            crow = other_rows.get(row["episode"])
            if crow and crow["firing_frame"] is not None:
                ax.plot(crow["firing_frame"], cp[np.searchsorted(cf, crow["firing_frame"])], "v", mfc="none",
                        color=COMPARE_COLOUR, ms=8, mew=1.5, label=f"fires, {compare.names[1]}")
        colour = OUTCOME_COLOURS[row["outcome"]]
        if row["firing_frame"] is not None:
            gross = row["outcome"] in ("gross_early", "false_success")
            ax.plot(row["firing_frame"], p[np.searchsorted(f, row["firing_frame"])], "X" if gross else "v",
                    color=colour, ms=10 if gross else 8, label="fires: gross error" if gross else "fires")
        ax.set_title(_title(row), color=colour, fontsize=9, fontweight="bold" if row["outcome"] in
                     ("gross_early", "false_success") else "normal")
        ax.set_ylim(-0.03, 1.03)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(per_episode):]:
        ax.axis("off")
    legend: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="upper center", ncol=min(len(legend), 5), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, 1.0 + 0.2 / max(nrows, 1)))
    fig.tight_layout()
    return _png(fig)


# ----------------------------------------------------------------------------- HTML

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f5f6f8;color:#1f2933}
header{background:#1f2933;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#cbd2d9;font-size:13px}
main{max-width:1220px;margin:0 auto;padding:16px 32px 48px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:16px 20px;margin:16px 0}
h2{font-size:16px;margin:0 0 10px} .muted{color:#616e7c;font-size:12px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:10px 14px}
.card .v{font-size:22px;font-weight:600} .card .k{font-size:11px;color:#616e7c;text-transform:uppercase}
.bad .v{color:#c62828} .good .v{color:#2e7d32}
table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #e4e7eb;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#f5f6f8}
tr.rec td{background:#fff3e0;font-weight:600}
img.plot{max-width:100%;display:block;margin:6px auto}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;background:#f5f6f8;border-radius:6px;padding:8px;text-align:center}
figure img{width:128px;height:128px;image-rendering:pixelated;margin:0 2px}
figcaption{font-size:11.5px;margin-top:4px} .fp{color:#c62828} .fn{color:#ef6c00}
pre{background:#f5f6f8;padding:10px;border-radius:6px;font-size:11.5px;overflow:auto;max-height:420px}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:11px}
p.warn{background:#fff3e0;border-left:4px solid #ef6c00;padding:6px 10px}
"""


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _img(b64: str, alt: str) -> str:
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _cards(m: dict) -> str:
    def bad(key: str) -> str:
        return "bad" if m[key] else "good"

    items = [("accuracy", m["accuracy"], ""), ("balanced acc.", m["balanced_accuracy"], ""),
             ("precision", m["precision"], ""), ("recall", m["recall"], ""), ("AUROC", m["auroc"], ""),
             ("avg. precision", m["average_precision"], ""), ("ECE", m["ece"], ""),
             ("gross false terminations", m["gross_false_terminations"], bad("gross_false_terminations")),
             ("false successes in failed episodes", m["false_successes_in_failed_episodes"],
              bad("false_successes_in_failed_episodes")),
             ("false terminations (strict)", m["false_terminations"], ""),
             ("missed successes", m["missed_successes"], bad("missed_successes")),
             ("|onset error| median / p90", _pair(m["onset_error_median_frames"], m["onset_error_p90_frames"]), ""),
             ("threshold", m["threshold"], ""), ("recommended", m["recommended_threshold"], "")]
    return "".join(f'<div class="card {cls}"><div class="v">{_fmt(v, 3)}</div><div class="k">{k}</div></div>'
                   for k, v, cls in items)


def _pair(a: Optional[float], b: Optional[float]) -> Optional[str]:
    return None if a is None else f"{a:g} / {b:g}"


THRESHOLD_COLUMNS = [("threshold", "threshold"), ("precision", "precision"), ("recall", "recall"),
                     ("accuracy", "accuracy"), ("gross_false_terminations", "gross false term."),
                     ("false_successes_in_failed_episodes", "false succ. in failed"),
                     ("false_terminations", "false term. (strict)"), ("missed_successes", "missed"),
                     ("onset_error_median_frames", "|onset err.| median"),
                     ("onset_error_p90_frames", "|onset err.| p90")]


def _threshold_table(m: dict) -> str:
    head = "<tr><th>choice</th>" + "".join(f"<th>{c}</th>" for _, c in THRESHOLD_COLUMNS) + "</tr>"
    labels = {"0.5": "0.5", "checkpoint": "checkpoint's threshold", "given": "given threshold",
              "target_precision": f"precision ≥ {m['target_precision']:g}, max recall",
              "zero_gross_false_terminations": "lowest with 0 gross false terminations",
              "zero_false_terminations": "lowest with 0 false terminations (strict)",
              "recommended": "recommended"}
    body = ""
    for row in m["thresholds"]:
        cls = ' class="rec"' if row["name"] == "recommended" else ""
        cells = "".join(f"<td>{_fmt(row.get(k), 1 if k.startswith('onset') else 4)}</td>"
                        for k, _ in THRESHOLD_COLUMNS)
        body += f"<tr{cls}><td>{html.escape(labels.get(row['name'], row['name']))}</td>{cells}</tr>"
    return f"<table>{head}{body}</table>"


def _evidence(m: dict) -> str:
    """What the recommended threshold rests on, and its bootstrap intervals."""
    ev = m["threshold_evidence"]
    cls = "" if ev["enough"] else ' class="warn"'
    text = (f"<p{cls}><b>Recommended {m['recommended_threshold']:.4g}</b>: {html.escape(ev['reason'])}. "
            f"This set: {ev['positives']} positive frames, {ev['success_episodes']} succeeding and "
            f"{ev['failed_episodes']} failed episodes (the threshold moves only with ≥ {ev['min_positives']} positive "
            f"frames and ≥ {ev['min_success_episodes']} succeeding episodes).")
    iv = m.get("recommended_interval")
    if iv:
        text += (" 95 % bootstrap intervals over episodes at it: precision "
                 f"[{iv['precision'][0]:.3f}, {iv['precision'][1]:.3f}], recall [{iv['recall'][0]:.3f}, "
                 f"{iv['recall'][1]:.3f}], episodes with a gross false termination "
                 f"[{iv['gross_false_termination_rate'][0]:.0%}, {iv['gross_false_termination_rate'][1]:.0%}].")
    return text + "</p>"


COMPARE_KEYS = ["threshold", "accuracy", "precision", "recall", "auroc", "average_precision", "ece",
                "gross_false_terminations", "false_successes_in_failed_episodes", "false_terminations",
                "missed_successes", "onset_error_median_frames", "onset_error_p90_frames", "recommended_threshold"]


def _compare_table(m: dict, compare: Comparison) -> str:
    """Headline metrics of both checkpoints (each at its own threshold), then per-episode outcomes side by side."""
    other, names = compare.metrics, compare.names
    head = f"<tr><th>metric</th><th>{html.escape(names[0])}</th><th>{html.escape(names[1])}</th></tr>"
    body = "".join(f"<tr><td>{k.replace('_', ' ')}</td><td>{_fmt(m.get(k))}</td><td>{_fmt(other.get(k))}</td></tr>"
                   for k in COMPARE_KEYS)
    rows = {r["episode"]: r for r in other["per_episode"]}
    ep_head = (f"<tr><th>episode</th><th>onset</th><th>{html.escape(names[0])}</th>"
               f"<th>{html.escape(names[1])}</th></tr>")
    ep_body = ""
    for r in m["per_episode"]:
        o = rows.get(r["episode"])
        ep_body += (f"<tr><td>{r['episode']}</td><td>{_fmt(r['onset_frame'])}</td><td>{_pill(r)}</td>"
                    f"<td>{_pill(o) if o else '–'}</td></tr>")
    return (f'<div class="row"><table style="width:auto">{head}{body}</table>'
            f'<table style="width:auto">{ep_head}{ep_body}</table></div>')


def _pill(r: dict) -> str:
    err = f" {r['onset_error_frames']:+d}" if r.get("onset_error_frames") else ""
    return (f'<span class="pill" style="background:{OUTCOME_COLOURS[r["outcome"]]}">'
            f'{html.escape(OUTCOME_TEXT[r["outcome"]])}{err}</span>')


def _episode_table(m: dict) -> str:
    cols = ["episode", "frames", "onset_frame", "firing_frame", "onset_error_frames", "max_probability_before_onset"]
    head = "<tr>" + "".join(f"<th>{c.replace('_', ' ')}</th>" for c in cols) + "<th>outcome</th></tr>"
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r[c], 3)}</td>" for c in cols) + f"<td>{_pill(r)}</td></tr>"
                   for r in m["per_episode"])
    return f"<table>{head}{body}</table>"


def _gallery(items: list[GalleryItem]) -> str:
    if not items:
        return '<p class="muted">No misclassified frames at this threshold.</p>'
    out = []
    for it in items:
        imgs = "".join(f'<img alt="{html.escape(cam)}" title="{html.escape(cam)}" '
                       f'src="data:image/png;base64,{_image_png(img)}">' for cam, img in it.images.items())
        cls = "fp" if it.kind == "false positive" else "fn"
        cams = " · ".join(html.escape(c.rsplit(".", 1)[-1]) for c in it.images)
        out.append(f'<figure>{imgs}<figcaption><b class="{cls}">{it.kind}</b> p={it.probability:.3f}<br>'
                   f'episode {it.episode}, frame {it.frame}<br><span class="muted">{cams}</span>'
                   f'</figcaption></figure>')
    return f'<div class="gallery">{"".join(out)}</div>'


def _kv_table(d: dict) -> str:
    return "<table>" + "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>"
                               for k, v in d.items()) + "</table>"


def render_report(metrics: dict, preds: M.Predictions, gallery: list[GalleryItem], summary: dict,
                  config: dict, title: str = "hilreward evaluation",
                  compare: Optional[Comparison] = None, history: Optional[list[dict]] = None,
                  history_step: Optional[int] = None) -> str:
    """The report page as one HTML string, with a second checkpoint side by side when ``compare`` is given, and the
    training curve of the checkpoint's run when its ``history`` (``metrics.jsonl`` records) is known."""
    binary = preds.binary
    consecutive = metrics.get("consecutive", 1)
    alignment = summary.get("label alignment")
    parts = [f"<header><h1>{html.escape(title)}</h1><p>{html.escape(str(summary.get('checkpoint', '')))} on "
             f"{html.escape(str(summary.get('dataset', '')))} · {metrics['episodes']} episodes · "
             f"{metrics['frames']} frames"
             + (f" · labels: {html.escape(str(alignment))}" if alignment else "") + "</p></header><main>"]
    if binary:
        tol_s = metrics.get("tolerance_s") or 0.0
        parts.append(f'<div class="cards">{_cards(metrics)}</div>')
        parts.append("<section><h2>Threshold choice</h2>" + _threshold_table(metrics) + _evidence(metrics) +
                     f'<p class="muted">Episode metrics use the deployment rule: the reward fires on the first frame '
                     f'that completes {consecutive} consecutive frame(s) with p ≥ threshold. A fire up to '
                     f'{tol_s:g} s ({_fmt(metrics.get("tolerance_frames"), 1)} frames) before the labelled onset is '
                     f'jitter (<i>early</i>); a fire before that, or in an episode that never succeeds, is a '
                     f'<b>gross false termination</b>. The rule: no gross false termination at the precision target; '
                     f'the strict threshold (no early fire at all) only when it costs little recall.</p></section>')
        if compare is not None:
            parts.append("<section><h2>Comparison</h2>" + _compare_table(metrics, compare)
                         + '<p class="muted">Each checkpoint at its own threshold, on the same frames.</p></section>')
        parts.append("<section><h2>ROC and precision-recall</h2>" + _img(roc_pr_figure(preds, metrics), "roc pr")
                     + _img(sweep_figure(preds, metrics, consecutive), "threshold sweep") + "</section>")
        parts.append('<section><h2>Calibration and confusion</h2><div class="row">'
                     + _img(reliability_figure(preds, metrics), "reliability")
                     + _img(confusion_figure(metrics), "confusion matrix") + "</div>"
                     f'<p class="muted">The checkpoint divides its logits by '
                     f'T={metrics["checkpoint_temperature"]:.3g}; '
                     f'a further T={metrics["temperature"]:.3g} would fit this set best (ECE then '
                     f'{_fmt(metrics.get("ece_calibrated"))}).</p></section>')
        shown = min(len(metrics["per_episode"]), MAX_TRACES)
        parts.append("<section><h2>Per-episode probability over time</h2>"
                     + _img(traces_figure(preds, metrics, compare), "episode traces")
                     + f'<p class="muted">Showing {shown} of {len(metrics["per_episode"])} episodes. Green band: '
                     f'labelled success; vertical line: true onset; yellow band: the tolerance before it; triangle: '
                     f'where the reward fires (amber title: jitter); red cross: a gross false termination.</p>'
                     + _episode_table(metrics) + "</section>")
        parts.append("<section><h2>Worst false positives and false negatives</h2>" + _gallery(gallery)
                     + "</section>")
    else:
        top = {k: metrics[k] for k in ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "auroc",
                                       "average_precision", "ece", "temperature")}
        parts.append("<section><h2>Multi-class metrics</h2>" + _kv_table(top) + "</section>")
        parts.append("<section><h2>Calibration and confusion</h2><div class=\"row\">"
                     + _img(reliability_figure(preds, metrics), "reliability")
                     + _img(confusion_figure(metrics), "confusion matrix") + "</div></section>")
    curve = _curve_figure(history, history_step) if history else None
    if curve is not None:
        parts.append("<section><h2>Training</h2>" + _img(_png(curve), "training curve")
                     + '<p class="muted">Loss and accuracy of the run that made this checkpoint: on its training '
                     'batches every log step, on its held-out episodes at every evaluation'
                     + (f'; the dashed line is the step of this checkpoint ({history_step})' if history_step else '')
                     + '.</p></section>')
    parts.append("<section><h2>Dataset</h2>" + _kv_table(summary) + "</section>")
    parts.append("<section><h2>Config</h2><pre>" + html.escape(json.dumps(config, indent=2, default=str))
                 + "</pre></section></main>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            + "".join(parts) + "</body></html>")


def write_report(path: str | os.PathLike, metrics: dict, preds: M.Predictions, gallery: list[GalleryItem],
                 summary: dict, config: dict, title: Optional[str] = None,
                 compare: Optional[Comparison] = None, history: Optional[list[dict]] = None,
                 history_step: Optional[int] = None) -> Path:
    """Render and write ``report.html`` atomically."""
    path = Path(path)
    page = render_report(metrics, preds, gallery, summary, config, title or "hilreward evaluation", compare,
                         history, history_step)
    return write_atomic(path, page)
