"""``report.html``: one self-contained page (plots as inline base64 PNG, inline CSS, no script).

Sections: headline numbers, threshold table, ROC and PR curves, threshold sweep, reliability
diagram, confusion matrix, per-episode probability traces, a gallery of the worst false
positives / negatives (every camera), per-episode table, dataset summary and config.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import metrics as M

OUTCOME_COLOURS = {"detected": "#2e7d32", "false_termination": "#c62828", "missed": "#ef6c00",
                   "no_success": "#546e7a"}
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
    b.step(np.r_[0.0, rec], np.r_[prec[0] if prec.size else 1.0, prec], where="post", color="#6a1b9a", lw=2)
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
    rows = [(M.binary_metrics(y, p, t),
             M.episode_metrics(preds.episode_index, preds.frame_index, y, p, t, consecutive)) for t in grid]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(grid, [r[0]["precision"] for r in rows], label="precision", color="#6a1b9a")
    a.plot(grid, [r[0]["recall"] for r in rows], label="recall", color="#1565c0")
    a.plot(grid, [r[0]["accuracy"] for r in rows], label="accuracy", color="#2e7d32")
    a.set(title="Frame metrics vs threshold", xlabel="threshold", ylim=(-0.02, 1.02))
    b.plot(grid, [r[1]["false_terminations"] for r in rows], label="false terminations", color="#c62828")
    b.plot(grid, [r[1]["missed_successes"] for r in rows], label="missed successes", color="#ef6c00")
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
    bins = M.reliability_bins(preds.labels, preds.probs)
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


def traces_figure(preds: M.Predictions, metrics: dict) -> str:
    plt = _plt()
    per_episode = metrics["per_episode"][:MAX_TRACES]
    ncols = 4 if len(per_episode) > 3 else max(1, len(per_episode))
    nrows = int(np.ceil(len(per_episode) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols, 2.1 * nrows), squeeze=False, sharey=True)
    ep_all = np.asarray(preds.episode_index)
    for ax, row in zip(axes.flat, per_episode):
        sel = ep_all == row["episode"]
        order = np.argsort(np.asarray(preds.frame_index)[sel], kind="stable")
        f = np.asarray(preds.frame_index)[sel][order]
        p = np.asarray(preds.probs, dtype=np.float64)[sel][order]
        y = np.asarray(preds.labels)[sel][order]
        ax.fill_between(f, 0, y == 1, step="mid", color="#a5d6a7", alpha=0.5, lw=0, label="labelled success")
        ax.plot(f, p, color="#1565c0", lw=1.3, label="P(success)")
        ax.axhline(metrics["threshold"], color="#1565c0", ls=":", lw=1, label="threshold")
        if metrics.get("recommended_threshold") is not None:
            ax.axhline(metrics["recommended_threshold"], color="#c62828", ls=":", lw=1, label="recommended")
        if row["onset_frame"] is not None:
            ax.axvline(row["onset_frame"], color="#2e7d32", lw=1.2, label="true onset")
        colour = OUTCOME_COLOURS[row["outcome"]]
        if row["firing_frame"] is not None:
            ax.plot(row["firing_frame"], p[np.searchsorted(f, row["firing_frame"])], "v", color=colour, ms=8,
                    label="fires")
        detail = f" +{row['delay_frames']}" if row["delay_frames"] else ""
        ax.set_title(f"ep {row['episode']}: {row['outcome'].replace('_', ' ')}{detail}", color=colour, fontsize=9)
        ax.set_ylim(-0.03, 1.03)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(per_episode):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1.0 + 0.12 / max(nrows, 1)))
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
    items = [("accuracy", m["accuracy"], ""), ("balanced acc.", m["balanced_accuracy"], ""),
             ("precision", m["precision"], ""), ("recall", m["recall"], ""), ("AUROC", m["auroc"], ""),
             ("avg. precision", m["average_precision"], ""), ("ECE", m["ece"], ""),
             ("false terminations", m["false_terminations"], "bad" if m["false_terminations"] else "good"),
             ("missed successes", m["missed_successes"], "bad" if m["missed_successes"] else "good"),
             ("mean delay (frames)", m["mean_detection_delay_frames"], ""),
             ("threshold", m["threshold"], ""), ("recommended", m["recommended_threshold"], "")]
    return "".join(f'<div class="card {cls}"><div class="v">{_fmt(v, 3)}</div><div class="k">{k}</div></div>'
                   for k, v, cls in items)


def _threshold_table(m: dict) -> str:
    cols = [("threshold", "threshold"), ("precision", "precision"), ("recall", "recall"), ("f1", "F1"),
            ("accuracy", "accuracy"), ("fpr", "FPR"), ("false_terminations", "false term."),
            ("missed_successes", "missed"), ("mean_detection_delay_frames", "delay (frames)")]
    head = "<tr><th>choice</th>" + "".join(f"<th>{c}</th>" for _, c in cols) + "</tr>"
    labels = {"0.5": "0.5", "checkpoint": "checkpoint's threshold", "given": "given threshold",
              "target_precision": f"precision ≥ {m['target_precision']:g}, max recall",
              "zero_false_terminations": "lowest with 0 false terminations",
              "recommended": "recommended (max of the two)"}
    body = ""
    for row in m["thresholds"]:
        cls = ' class="rec"' if row["name"] == "recommended" else ""
        cells = "".join(f"<td>{_fmt(row.get(k))}</td>" for k, _ in cols)
        body += f"<tr{cls}><td>{html.escape(labels.get(row['name'], row['name']))}</td>{cells}</tr>"
    return f"<table>{head}{body}</table>"


def _episode_table(m: dict) -> str:
    cols = ["episode", "frames", "onset_frame", "firing_frame", "delay_frames", "max_probability_before_onset"]
    head = "<tr>" + "".join(f"<th>{c.replace('_', ' ')}</th>" for c in cols) + "<th>outcome</th></tr>"
    body = ""
    for r in m["per_episode"]:
        pill = f'<span class="pill" style="background:{OUTCOME_COLOURS[r["outcome"]]}">' \
               f'{r["outcome"].replace("_", " ")}</span>'
        body += "<tr>" + "".join(f"<td>{_fmt(r[c], 3)}</td>" for c in cols) + f"<td>{pill}</td></tr>"
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
                  config: dict, title: str = "hilreward evaluation") -> str:
    """The report page as one HTML string."""
    binary = preds.binary
    consecutive = metrics.get("consecutive", 1)
    parts = [f"<header><h1>{html.escape(title)}</h1><p>{html.escape(str(summary.get('checkpoint', '')))} on "
             f"{html.escape(str(summary.get('dataset', '')))} · {metrics['episodes']} episodes · "
             f"{metrics['frames']} frames</p></header><main>"]
    if binary:
        parts.append(f'<div class="cards">{_cards(metrics)}</div>')
        parts.append("<section><h2>Threshold choice</h2>" + _threshold_table(metrics) +
                     f'<p class="muted">Episode metrics use the deployment rule: the reward fires on the first frame '
                     f'that completes {consecutive} consecutive frame(s) with p ≥ threshold (consecutive='
                     f'{consecutive}). A false termination fires before the labelled success, or in an episode '
                     f'that never succeeds.</p></section>')
        parts.append("<section><h2>ROC and precision-recall</h2>" + _img(roc_pr_figure(preds, metrics), "roc pr")
                     + _img(sweep_figure(preds, metrics, consecutive), "threshold sweep") + "</section>")
        parts.append('<section><h2>Calibration and confusion</h2><div class="row">'
                     + _img(reliability_figure(preds, metrics), "reliability")
                     + _img(confusion_figure(metrics), "confusion matrix") + "</div>"
                     f'<p class="muted">ECE after temperature scaling (T={metrics["temperature"]:.3g}): '
                     f'{_fmt(metrics.get("ece_calibrated"))}.</p></section>')
        shown = min(len(metrics["per_episode"]), MAX_TRACES)
        parts.append("<section><h2>Per-episode probability over time</h2>"
                     + _img(traces_figure(preds, metrics), "episode traces")
                     + f'<p class="muted">Showing {shown} of {len(metrics["per_episode"])} episodes. Green band: '
                     f'labelled success; vertical line: true onset; triangle: where the reward fires.</p>'
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
    parts.append("<section><h2>Dataset</h2>" + _kv_table(summary) + "</section>")
    parts.append("<section><h2>Config</h2><pre>" + html.escape(json.dumps(config, indent=2, default=str))
                 + "</pre></section></main>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            + "".join(parts) + "</body></html>")


def write_report(path: str | os.PathLike, metrics: dict, preds: M.Predictions, gallery: list[GalleryItem],
                 summary: dict, config: dict, title: Optional[str] = None) -> Path:
    """Render and write ``report.html`` atomically."""
    path = Path(path)
    page = render_report(metrics, preds, gallery, summary, config, title or "hilreward evaluation")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(page)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path
