"""report.html renders in headless Chromium without console errors, and every plot decodes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from hilreward.config import DatasetConfig
from hilreward.evaluation import metrics as M
from hilreward.evaluation.evaluate import evaluate
from hilreward.evaluation.report import worst_errors
from hilreward.models import ClassifierConfig, RewardClassifier

DRAWER4 = Path(__file__).parent / "fixtures" / "drawer4"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Injected into a copy of the report (the report itself has no script): records page errors and,
# once loaded, how many images decoded, in a <pre> that --dump-dom reads back.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || (e.target && e.target.tagName))), true);
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const status = {images: imgs.length, decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
                  widths: imgs.map(i => i.naturalWidth), errors: window.__errors,
                  sections: Array.from(document.querySelectorAll("h2")).map(h => h.textContent)};
  const pre = document.createElement("pre");
  pre.id = "probe-status";
  pre.textContent = JSON.stringify(status);
  document.body.appendChild(pre);
});
</script>"""


def test_worst_errors_pick_the_most_confident_mistakes():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.9, 0.6, 0.2, 0.1, 0.45, 0.8])
    preds = M.Predictions(np.zeros(6, int), np.arange(6), y, p)
    assert worst_errors(preds, 0.5) == [("false positive", 0), ("false positive", 1), ("false negative", 3),
                                        ("false negative", 4)]
    assert worst_errors(preds, 0.5, per_kind=1) == [("false positive", 0), ("false negative", 3)]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = RewardClassifier(ClassifierConfig(encoder="tiny", camera_keys=["front", "wrist"], image_size=[32, 32],
                                              latent_dim=16, hidden_dim=16))
    ckpt = model.save_pretrained(tmp / "ckpt")
    evaluate(ckpt, DatasetConfig(root=str(DRAWER4), episodes=[2, 3]), output_dir=tmp / "eval",
             cache_dir=str(tmp_path_factory.getbasetemp() / "hilreward-cache"))
    return tmp / "eval" / "report.html"


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed: run `make sysdeps` (bash scripts/sysdeps.sh --with-browser)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--enable-logging=stderr", "--v=0", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_report_renders_in_chromium(report, tmp_path):
    page = report.read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    run = _chromium(probed.as_uri(), tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    m = re.search(r'<pre id="probe-status">(.*?)</pre>', run.stdout, re.S)
    assert m, run.stdout[-2000:]
    status = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert status["errors"] == []
    assert status["images"] >= 6 + 2 * 4  # 6 plots + both cameras of the gallery frames
    assert status["decoded"] == status["images"] and min(status["widths"]) > 0
    assert {"Threshold choice", "ROC and precision-recall", "Calibration and confusion", "Dataset",
            "Config"} <= set(status["sections"])


def test_report_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "shot.png"
    run = _chromium(report.as_uri(), tmp_path / "profile", "--hide-scrollbars", "--virtual-time-budget=10000",
                   f"--screenshot={shot}", "--window-size=1000,1400")
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (1400, 1000) and img.std() > 20  # dark header, cards and plots, not an empty page
