"""End-of-training calibration: temperature and threshold chosen on held-out episodes, stored in the checkpoint,
applied inside the model, so RewardFunction and the ONNX backend use them unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hilreward.config import DatasetConfig, LabelConfig
from hilreward.data import load_frame_data
from hilreward.deploy import RewardFunction
from hilreward.evaluation.calibration import CALIBRATION_TEMPERATURE_RANGE
from hilreward.models import FORMAT_VERSION, ClassifierConfig, RewardClassifier
from hilreward.training.calibrate import calibrate_checkpoint, summary_line
from hilreward.evaluation.inference import batched_logits

DRAWER4 = Path(__file__).parent / "fixtures" / "drawer4"


def test_calibration_is_stored_and_used_by_reward_function(tmp_path):
    torch.manual_seed(0)
    model = RewardClassifier(ClassifierConfig(encoder="tiny", camera_keys=["front", "wrist"], image_size=[32, 32],
                                              latent_dim=16, hidden_dim=16))
    ckpt = model.save_pretrained(tmp_path / "best")
    data = load_frame_data(DatasetConfig(root=str(DRAWER4)), LabelConfig(), (32, 32))  # the session cache
    rows = np.arange(len(data))  # the 4 episodes (3 succeed, 185 positive frames): enough evidence
    cal = calibrate_checkpoint(ckpt, data, rows, fallback_threshold=0.5)
    stored = json.loads((ckpt / "config.json").read_text())
    assert stored["temperature"] == cal.temperature != 1.0 and stored["threshold"] == cal.threshold
    assert CALIBRATION_TEMPERATURE_RANGE[0] <= cal.temperature <= CALIBRATION_TEMPERATURE_RANGE[1]
    assert stored["calibration"]["enough"] and stored["calibration"]["episodes"] == [0, 1, 2, 3]
    assert stored["format_version"] == FORMAT_VERSION == 2
    assert "threshold" in summary_line(cal) and "95 % intervals" in summary_line(cal)

    # the model divides its logits by the stored temperature; the reward function takes the stored threshold
    loaded = RewardClassifier.from_pretrained(ckpt)
    raw = batched_logits(loaded, rows[:64], data.images)
    frames = {k: np.asarray(v[:64]) for k, v in data.images.items()}
    expected = 1 / (1 + np.exp(-raw / cal.temperature))
    np.testing.assert_allclose(loaded.predict_proba(frames), expected, atol=1e-6)
    fn = RewardFunction.from_pretrained(ckpt, mode="dense")
    assert fn.options.success_threshold == cal.threshold
    probs = fn.relabel(frames)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    results = fn.batch(frames)
    assert [r.success for r in results] == list(probs >= cal.threshold)
    # ONNX (exported from the calibrated checkpoint) gives the same tempered probabilities
    onnx = RewardFunction.from_pretrained(ckpt, backend="onnx", mode="dense")
    np.testing.assert_allclose(onnx.relabel(frames), probs, atol=1e-4)
