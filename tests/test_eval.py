"""evaluate() / predict() / `hilreward eval|predict` end to end on tests/fixtures/drawer4 with a tiny checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from hilreward.cli import main as cli_main
from hilreward.config import DatasetConfig, LabelConfig, TrainConfig, to_yaml
from hilreward.data import load_frame_data
from hilreward.errors import CheckpointError, ConfigError, DatasetError, EvidenceError
from hilreward.evaluation import metrics as M
from hilreward.evaluation.evaluate import evaluate, predict
from hilreward.models import ClassifierConfig, RewardClassifier

DRAWER4 = Path(__file__).parent / "fixtures" / "drawer4"
SIZE = [32, 32]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_checkpoint(path, cameras=("front", "wrist"), num_classes=2, val_episodes=(2, 3), label_key="next.reward",
                    seed=0):
    torch.manual_seed(seed)
    model = RewardClassifier(ClassifierConfig(encoder="tiny", camera_keys=list(cameras), image_size=SIZE,
                                              latent_dim=16, hidden_dim=16, num_classes=num_classes))
    cfg = TrainConfig()
    cfg.dataset.root = str(DRAWER4)
    cfg.label.key = label_key
    cfg.split.val_episodes = list(val_episodes) if val_episodes else None
    return model.save_pretrained(path, train_config_yaml=to_yaml(cfg))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.getbasetemp() / "hilreward-cache")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "best")


@pytest.fixture(scope="module")
def heldout_run(ckpt, tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("eval")
    result = evaluate(ckpt, heldout=True, consecutive=2, output_dir=out, batch_size=50, cache_dir=cache_dir)
    return result, out


def test_metrics_json_has_the_stable_keys(heldout_run):
    result, out = heldout_run
    written = json.loads((out / "metrics.json").read_text())
    assert set(M.STABLE_KEYS) <= set(written)
    assert list(written)[: len(M.STABLE_KEYS)] == list(M.STABLE_KEYS)
    assert written == json.loads(json.dumps(result))
    # drawer4 episodes 2 (succeeds from frame 91 on) and 3 (never succeeds) were held out
    assert (written["episodes"], written["frames"], written["positives"]) == (2, 298, 58)
    assert written["consecutive"] == 2 and written["threshold"] == 0.5
    assert [r["episode"] for r in written["per_episode"]] == [2, 3]
    assert written["per_episode"][1]["onset_frame"] is None
    assert written["config"]["dataset"]["episodes"] == [2, 3]
    assert written["label_alignment"] == "align=auto (current): next.reward shifted to the frame it judges"


def test_predictions_parquet_matches_model_and_metrics(heldout_run, ckpt, cache_dir):
    result, out = heldout_run
    table = pq.read_table(out / "predictions.parquet")
    assert table.column_names == ["episode_index", "frame_index", "label", "probability"]
    pred = table.to_pydict()
    assert len(pred["label"]) == 298 and set(pred["episode_index"]) == {2, 3}
    data = load_frame_data(DatasetConfig(root=str(DRAWER4), episodes=[2, 3]), LabelConfig(), tuple(SIZE),
                           cache_dir=cache_dir)
    assert pred["label"] == data.labels.tolist()
    # the batched evaluation agrees with predict_proba on the same frames
    model = RewardClassifier.from_pretrained(ckpt)
    rows = [0, 97, 200, 297]
    direct = model.predict_proba({k: np.array(v[rows]) for k, v in data.images.items()})
    np.testing.assert_allclose(np.array(pred["probability"])[rows], direct, rtol=1e-5, atol=1e-6)
    # every frame metric is a function of the written predictions
    again = M.compute_metrics(M.Predictions(np.array(pred["episode_index"]), np.array(pred["frame_index"]),
                                            np.array(pred["label"]), np.array(pred["probability"])),
                              threshold=0.5, consecutive=2, fps=10)
    for key in ("accuracy", "precision", "recall", "auroc", "average_precision", "ece", "false_terminations",
                "gross_false_terminations", "missed_successes", "rule_threshold", "recommended_interval"):
        assert again[key] == result[key], key


def test_two_heldout_episodes_do_not_move_the_threshold(heldout_run, ckpt, tmp_path, cache_dir):
    result, _ = heldout_run
    # 58 positive frames, but in one succeeding episode: the rule's threshold is reported, not recommended
    ev = result["threshold_evidence"]
    assert (ev["positives"], ev["success_episodes"], ev["failed_episodes"], ev["enough"]) == (58, 1, 1, False)
    assert result["recommended_threshold"] == 0.5 and "too little evidence" in ev["reason"]
    rec = {r["name"]: r for r in result["thresholds"]}["recommended"]
    assert rec["threshold"] == 0.5
    # write_threshold=true refuses (after writing the outputs) and leaves the checkpoint alone ...
    copy = shutil.copytree(ckpt, tmp_path / "ckpt")
    before = (copy / "config.json").read_text()
    with pytest.raises(EvidenceError, match="force=true"):
        evaluate(copy, heldout=True, write_threshold=True, report=False, output_dir=tmp_path / "o", cache_dir=cache_dir)
    assert (copy / "config.json").read_text() == before and (tmp_path / "o" / "metrics.json").is_file()
    # ... unless forced, which writes the rule's threshold
    forced = evaluate(copy, heldout=True, write_threshold=True, force=True, report=False, output_dir=tmp_path / "o",
                      cache_dir=cache_dir)
    assert forced["threshold_written"] == forced["rule_threshold"] == RewardClassifier.from_pretrained(copy).threshold


def test_report_is_self_contained(heldout_run):
    _, out = heldout_run
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 6
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for section in ("ROC and precision-recall", "Calibration", "Per-episode", "Worst false positives", "Dataset", "Config"):
        assert section in page
    assert "too little evidence" in page and "next.reward shifted to the frame it judges" in page


def test_write_threshold_round_trip(ckpt, tmp_path, cache_dir):
    copy = shutil.copytree(ckpt, tmp_path / "ckpt")
    before = json.loads((copy / "config.json").read_text())
    result = evaluate(copy, DatasetConfig(root=str(DRAWER4)), write_threshold=True, report=False,
                      output_dir=tmp_path / "out", cache_dir=cache_dir)
    assert result["threshold_evidence"]["enough"]  # 4 episodes, 3 of them succeed
    assert RewardClassifier.from_pretrained(copy).threshold == result["recommended_threshold"] != 0.5
    after = json.loads((copy / "config.json").read_text())
    assert {k: v for k, v in after.items() if k != "threshold"} == {k: v for k, v in before.items() if k != "threshold"}
    # the next evaluation takes its metrics at the written threshold
    again = evaluate(copy, DatasetConfig(root=str(DRAWER4)), report=False, output_dir=tmp_path / "out2",
                     cache_dir=cache_dir)
    assert again["threshold"] == result["recommended_threshold"]
    assert again["thresholds"][1]["name"] == "checkpoint" and again["thresholds"][1]["threshold"] == again["threshold"]


def test_cli_eval_keeps_checkpoint_label_and_applies_overrides(tmp_path, cache_dir, capsys, monkeypatch):
    monkeypatch.setenv("HILREWARD_CACHE", cache_dir)
    ckpt = make_checkpoint(tmp_path / "ckpt", label_key="observation.success")
    out = tmp_path / "out"
    rc = cli_main(["eval", f"checkpoint={ckpt}", f"dataset.root={DRAWER4}", "dataset.episodes=[0,3]",
                   "label.align=next", "consecutive=3", "target_precision=0.9", "report=false",
                   f"output_dir={out}"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "recommended_threshold" in printed and "gross" in printed and "read as recorded" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["label"] == {"key": "observation.success", "threshold": 0.5, "align": "next"}
    assert (m["episodes"], m["frames"], m["consecutive"], m["target_precision"]) == (2, 298, 3, 0.9)
    assert not (out / "report.html").exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["eval", f"dataset.root={DRAWER4}"]) == 1
    assert "checkpoint=" in capsys.readouterr().err
    assert cli_main(["eval", f"checkpoint={tmp_path / 'nope'}"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_bad_requests_raise_clear_errors(tmp_path, ckpt, cache_dir):
    ds = DatasetConfig(root=str(DRAWER4))
    top = make_checkpoint(tmp_path / "top", cameras=("top",))
    with pytest.raises(DatasetError, match="observation.images.top"):
        evaluate(top, ds, output_dir=tmp_path / "o", cache_dir=cache_dir)
    no_split = make_checkpoint(tmp_path / "nosplit", val_episodes=None)
    with pytest.raises(CheckpointError, match="split.val_episodes"):
        evaluate(no_split, heldout=True, output_dir=tmp_path / "o", cache_dir=cache_dir)
    with pytest.raises(ConfigError, match="heldout"):
        evaluate(ckpt, DatasetConfig(root=str(DRAWER4), episodes=[0]), heldout=True, output_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match="consecutive"):
        evaluate(ckpt, ds, consecutive=0, output_dir=tmp_path / "o")
    with pytest.raises(DatasetError, match="no.such.key"):
        evaluate(ckpt, ds, LabelConfig(key="no.such.key"), output_dir=tmp_path / "o", cache_dir=cache_dir)


def test_multiclass_checkpoint(tmp_path, cache_dir):
    ckpt = make_checkpoint(tmp_path / "mc", num_classes=3)
    m = evaluate(ckpt, DatasetConfig(root=str(DRAWER4), episodes=[0]), output_dir=tmp_path / "out",
                 cache_dir=cache_dir)
    assert set(M.STABLE_KEYS) <= set(m) and m["recommended_threshold"] is None
    assert np.array(m["confusion_matrix"]).shape == (3, 3) and np.sum(m["confusion_matrix"]) == 149
    cols = pq.read_table(tmp_path / "out" / "predictions.parquet").column_names
    assert cols[-3:] == ["prob_class_0", "prob_class_1", "prob_class_2"] and "probability" in cols
    with pytest.raises(ConfigError, match="binary"):
        evaluate(ckpt, DatasetConfig(root=str(DRAWER4), episodes=[0]), write_threshold=True, report=False,
                 output_dir=tmp_path / "out2", cache_dir=cache_dir)


def test_predict_without_labels(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("HILREWARD_CACHE", cache_dir)
    ckpt = make_checkpoint(tmp_path / "ckpt", label_key="not.recorded")  # the dataset has no such column
    out = tmp_path / "p" / "probs.parquet"
    assert cli_main(["predict", f"checkpoint={ckpt}", f"dataset.root={DRAWER4}", "dataset.episodes=[1]",
                     f"output={out}"]) == 0
    t = pq.read_table(out).to_pydict()
    assert list(t) == ["episode_index", "frame_index", "timestamp", "probability", "success"]
    assert len(t["probability"]) == 149 and set(t["episode_index"]) == {1}
    assert t["success"] == [p >= 0.5 for p in t["probability"]]
    with_labels = predict(make_checkpoint(tmp_path / "c2"), DatasetConfig(root=str(DRAWER4), episodes=[1]),
                          tmp_path / "l.parquet", cache_dir=cache_dir)
    assert "label" in pq.read_table(with_labels).column_names


def test_compare_two_checkpoints_on_the_same_frames(tmp_path, ckpt, cache_dir, capsys, monkeypatch):
    monkeypatch.setenv("HILREWARD_CACHE", cache_dir)
    other = make_checkpoint(tmp_path / "other" / "checkpoints" / "best", cameras=("front",), seed=1)
    out = tmp_path / "cmp"
    assert cli_main(["eval", f"checkpoint={ckpt}", f"compare={other}", "heldout=true", f"output_dir={out}"]) == 0
    printed = capsys.readouterr().out
    assert "compared on the same frames" in printed and "other/best" in printed
    m = json.loads((out / "metrics.json").read_text())
    alone = evaluate(other, heldout=False, dataset=DatasetConfig(root=str(DRAWER4), episodes=[2, 3]), report=False,
                     output_dir=tmp_path / "alone", cache_dir=cache_dir)
    assert m["compare"]["checkpoint"] == str(other) and m["compare"]["auroc"] == alone["auroc"]
    assert m["compare"]["per_episode"] == alone["per_episode"]
    table = pq.read_table(out / "predictions.parquet")
    assert table.column_names[-1] == "probability_compare"
    alone_probs = pq.read_table(tmp_path / "alone" / "predictions.parquet").column("probability").to_numpy()
    np.testing.assert_allclose(table.column("probability_compare").to_numpy(), alone_probs)
    page = (out / "report.html").read_text()
    assert "<h2>Comparison</h2>" in page and "other/best" in page


def test_compared_checkpoints_get_names_that_tell_them_apart():
    from hilreward.evaluation.evaluate import short_names

    assert short_names(Path("/r/a/checkpoints/best"), Path("/r/b/checkpoints/best")) == ("a/best", "b/best")
    assert short_names(Path("/r/s600/run/checkpoints/best"), Path("/r/s300/run/checkpoints/best")) == (
        "s600/run/best", "s300/run/best")
