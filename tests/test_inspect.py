"""``hilreward inspect``: counts, guidance verdict, warnings, contact sheet, one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

from fixtures.datasets import DRAWER4, write_synthetic
from hilreward import cli
from hilreward.config import DatasetConfig, LabelConfig
from hilreward.data import LeRobotDataset
from hilreward.data.inspect import InspectOptions, inspect_dataset, main


def test_inspect_drawer4(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([f"dataset.root={DRAWER4}", f"output_dir={out}", "samples=3", "image_size=[64,64]"]) == 0
    text = capsys.readouterr().out
    labels = LeRobotDataset.open(DRAWER4).labels()
    pos, neg = int(labels.sum()), int((labels == 0).sum())
    assert "episodes  4   frames 596" in text
    assert f"positives {pos}   negatives {neg}" in text
    assert "observation.images.front         128x128  video (av1)" in text
    assert "verdict   BELOW GUIDANCE" in text and "more negative" in text
    assert "warning: 1 episode(s) have no positive frame: 3" in text
    assert f"contact sheet: {out / 'contact_sheet.png'}" in text
    img = Image.open(out / "contact_sheet.png")
    assert img.size[0] >= 3 * 64 and img.size[1] >= 4 * 64  # 2 cameras x (positive, negative) rows of 3
    pixels = np.asarray(img.convert("RGB"))
    assert pixels.std() > 20  # frames were pasted, not a blank page
    summary = json.loads((out / "summary.json").read_text())
    assert summary["positives"] == pos and summary["negatives"] == neg
    assert [e["positives"] for e in summary["per_episode"]][3] == 0
    assert summary["per_episode"][0]["first_positive"] == int(np.argmax(labels[:149]))


def test_inspect_alignment_and_episode_selection(tmp_path):
    base = dict(output_dir=str(tmp_path), samples=2, image_size=[32, 32])
    cur = inspect_dataset(InspectOptions(dataset=DatasetConfig(root=str(DRAWER4), episodes=[0, 1]), **base))
    nxt = inspect_dataset(InspectOptions(dataset=DatasetConfig(root=str(DRAWER4), episodes=[0, 1]),
                                         label=LabelConfig(align="next"), **base))
    assert cur.frames == 298 and cur.episodes == 2
    assert nxt.positives == cur.positives + 2  # 'next' fires one frame early in each successful episode
    assert cur.positives_other_align == nxt.positives
    assert "align=auto (current): next.reward shifted to the frame it judges" in cur.text()
    assert "align=next: next.reward read as recorded" in nxt.text()
    assert [e["first_positive"] for e in nxt.per_episode] == [e["first_positive"] - 1 for e in cur.per_episode]
    assert not cur.warnings


def test_inspect_warnings(tmp_path):
    none = inspect_dataset(InspectOptions(dataset=DatasetConfig(root=str(DRAWER4), cameras=["front"]),
                                          label=LabelConfig(threshold=2.0), output_dir=str(tmp_path / "a"),
                                          samples=2, image_size=[32, 32]))
    assert none.positives == 0 and none.verdict.startswith("NOT USABLE")
    assert any("no positive frames" in w for w in none.warnings)

    rewards = [np.array([0.0, 0.3, 0.7, 0.9], np.float32), np.array([0.0, 0.2, 0.6], np.float32)]
    write_synthetic(tmp_path / "float", lengths=(4, 3), rewards=rewards)
    fl = inspect_dataset(InspectOptions(dataset=DatasetConfig(root=str(tmp_path / "float")),
                                        label=LabelConfig(align="next"), output_dir=str(tmp_path / "b"),
                                        samples=2, image_size=[32, 32]))
    assert fl.positives == 3
    assert any("is not 0/1" in w and "value >= 0.5" in w for w in fl.warnings)

    broken = tmp_path / "broken"
    shutil.copytree(DRAWER4, broken)
    (broken / "videos" / "observation.images.wrist" / "chunk-000" / "file-000.mp4").unlink()
    rep = inspect_dataset(InspectOptions(dataset=DatasetConfig(root=str(broken)), output_dir=str(tmp_path / "c"),
                                         samples=2, image_size=[32, 32]))
    assert rep.cameras["observation.images.wrist"]["missing"]
    assert any("camera 'observation.images.wrist': video file(s) missing" in w for w in rep.warnings)
    assert (tmp_path / "c" / "contact_sheet.png").is_file()  # the other camera still makes a sheet


def test_inspect_non_dataset_is_one_line(tmp_path, capsys):
    assert cli.main(["inspect", f"dataset.root={tmp_path}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "info.json is missing" in err[0]
    assert cli.main(["inspect", "dataset.nope=1"]) == 1
    assert capsys.readouterr().err.startswith("error: unknown key 'dataset.nope'")
