"""LeRobot reward_classifier checkpoints load without LeRobot and match LeRobot's own probabilities.

The fixture (tests/fixtures/lerobot_classifier) was made by LeRobot 0.6.1 itself with
make_fixture.py (a tiny transformers ResNet encoder, trained a few steps); expected.json holds
LeRobot's probabilities on frames.npz with its saved normalisation applied.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from hilreward.deploy import RewardFunction, import_lerobot, is_lerobot_checkpoint, load_classifier
from hilreward.errors import CheckpointError

from conftest import FIXTURES

FIXTURE = FIXTURES / "lerobot_classifier"
CHECKPOINT = FIXTURE / "checkpoint"


@pytest.fixture(scope="module")
def expected():
    return json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(scope="module")
def frames(expected):
    stored = np.load(FIXTURE / "frames.npz", allow_pickle=False)
    return {key: stored[key.replace(".", "_")] for key in expected["cameras"]}


def test_probabilities_match_lerobot(expected, frames):
    model = import_lerobot(CHECKPOINT)
    probs = model.predict_proba(frames)
    assert probs.shape == (len(expected["probabilities"]),)
    np.testing.assert_allclose(probs, expected["probabilities"], atol=1e-4, rtol=0)
    # per-camera calls (no cross-camera batching) give the same numbers
    with torch.inference_mode():
        pixels = model.preprocess(frames)
        separate = {k: model.encoder(v) for k, v in pixels.items()}
        np.testing.assert_allclose(torch.sigmoid(model.head(separate)).numpy(), probs, atol=1e-6)


def test_saved_normalisation_is_applied(expected, frames):
    """Without the saved mean/std we get what LeRobot's deployment step gets: other probabilities."""
    model = import_lerobot(CHECKPOINT)
    with torch.inference_mode():
        raw = {k: torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255 for k, v in frames.items()}
        unnormalised = torch.sigmoid(model(raw)).numpy()
    np.testing.assert_allclose(unnormalised, expected["probabilities_unnormalised"], atol=1e-4, rtol=0)
    assert np.abs(unnormalised - np.array(expected["probabilities"])).max() > 0.1


def test_reward_function_loads_lerobot_checkpoints(expected, frames):
    assert is_lerobot_checkpoint(CHECKPOINT)
    fn = RewardFunction.from_pretrained(CHECKPOINT)
    assert fn.options.success_threshold == 0.5
    results = fn.batch(frames)
    np.testing.assert_allclose([r.probability for r in results], expected["probabilities"], atol=1e-4, rtol=0)
    assert [float(r.success) for r in results] == expected["predict_reward"]
    single = fn({"front": frames["observation.images.front"][1], "wrist": frames["observation.images.wrist"][1]})
    assert single.probability == pytest.approx(expected["probabilities"][1], abs=1e-4)
    assert load_classifier(CHECKPOINT).config.camera_keys == expected["cameras"]


def test_missing_normalisation_is_refused(tmp_path):
    broken = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT, broken)
    (broken / "classifier_preprocessor.json").unlink()
    with pytest.raises(CheckpointError, match="classifier_preprocessor.json"):
        import_lerobot(broken)


def test_wrong_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT, broken)
    state = load_file(str(broken / "model.safetensors"))
    del state["classifier_head.4.weight"]
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match="classifier_head.4.weight"):
        import_lerobot(broken)
    (broken / "config.json").write_text(json.dumps({"type": "act"}))
    assert not is_lerobot_checkpoint(broken)
    with pytest.raises(CheckpointError, match="reward_classifier"):
        import_lerobot(broken)


def test_eval_and_predict_take_lerobot_checkpoints(tmp_path):
    """`hilreward eval` / `predict` judge what users already trained with LeRobot."""
    import pyarrow.parquet as pq

    from hilreward.config import DatasetConfig, LabelConfig
    from hilreward.data import load_frame_data
    from hilreward.errors import ConfigError
    from hilreward.evaluation import evaluate, predict

    drawer4 = DatasetConfig(root=str(FIXTURES / "drawer4"), episodes=[2, 3])
    metrics = evaluate(CHECKPOINT, drawer4, output_dir=tmp_path / "eval", report=False)
    assert metrics["frames"] == metrics["positives"] + metrics["negatives"] > 0
    assert metrics["threshold"] == 0.5
    table = pq.read_table(tmp_path / "eval" / "predictions.parquet").to_pydict()
    data = load_frame_data(drawer4, LabelConfig(), (128, 128))
    rows = [0, len(data) // 2, len(data) - 1]
    want = import_lerobot(CHECKPOINT).predict_proba({k: np.array(data.images[k][rows]) for k in data.camera_keys})
    np.testing.assert_allclose(np.array(table["probability"])[rows], want, atol=1e-5, rtol=0)
    out = predict(CHECKPOINT, drawer4, tmp_path / "pred.parquet")
    np.testing.assert_allclose(pq.read_table(out).column("probability").to_numpy()[rows], want, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="LeRobot checkpoint"):
        evaluate(CHECKPOINT, drawer4, output_dir=tmp_path / "eval2", write_threshold=True)
