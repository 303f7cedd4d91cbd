"""``hilreward export format=lerobot``: a folder stock LeRobot loads by path and that gives hilreward's decisions.

Here: the refusals, the threshold LeRobot's strict ``>`` needs, the written layout, the check that leaves nothing
behind, and the encoder loaded by transformers' own ``AutoModel`` (as LeRobot loads it). In LeRobot 0.6.1's venv
(``tests/peer_lerobot_export.py``, skipped without it): LeRobot's ``Classifier.from_pretrained`` and its stock
``RewardClassifierProcessorStep(pretrained_path=...)`` on 120 rendered frames, with a ResNet-10 classifier whose
head is trained on drawer4.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hilreward.cli import main
from hilreward.config import DatasetConfig, LabelConfig
from hilreward.data import load_frame_data
from hilreward.errors import CheckpointError
from hilreward.models import ClassifierConfig, RewardClassifier
from hilreward.models.lerobot_export import export_lerobot, strict_threshold
from hilreward.models.members import member_encoder
from hilreward.models.registry import build_encoder
from hilreward.models.loading import load_classifier
from hilreward.training.features import compute_features, fit_head

from conftest import FIXTURES, ROOT
from test_integrations_lerobot import PEER_PYTHON
from support import DRAWER4


def trained_resnet(tmp_path_factory, layout: str):
    """A ResNet-10 (frozen random encoder in ``layout``) whose head is trained on drawer4 episodes 0-1, with a
    temperature and a threshold other than 1 and 0.5 (both must survive the export)."""
    cache = str(tmp_path_factory.getbasetemp() / "hilreward-cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = RewardClassifier(ClassifierConfig(encoder="resnet10", camera_keys=["front", "wrist"],
                                                  image_size=[128, 128], latent_dim=32, hidden_dim=32,
                                                  encoder_options={"layout": layout}))
        data = load_frame_data(DatasetConfig(root=str(DRAWER4)), LabelConfig(), (128, 128), cache_dir=cache)
        rows = np.flatnonzero(np.isin(data.episode_index, [0, 1]))
        features = compute_features(model, data, cache_dir=cache, rows=rows)
        fit_head(model, features, data.labels[rows], steps=150)
    finally:
        torch.set_num_threads(threads)
    model.config.temperature, model.config.threshold = 1.6, 0.6123
    return model.save_pretrained(tmp_path_factory.mktemp(f"r10-{layout}") / "best")


@pytest.fixture(scope="module")
def resnet_ckpt(tmp_path_factory):
    """HIL-SERL's layout (GroupNorm, JAX padding): the default ResNet-10."""
    return trained_resnet(tmp_path_factory, "hilserl")


@pytest.fixture(scope="module")
def resnet_ckpt_bn(tmp_path_factory):
    """The transformers layout (BatchNorm, with running statistics and a counter LeRobot must not trip on)."""
    return trained_resnet(tmp_path_factory, "transformers")


def test_strict_threshold_decides_as_at_or_above_on_every_float32():
    for t in (0.5, 0.6123, 0.5927767666176089, 1e-3, 0.999):
        s = strict_threshold(t)
        near = np.float32(t) + np.arange(-50, 51, dtype=np.float32) * np.spacing(np.float32(t))
        p = torch.from_numpy(near)
        assert torch.equal(p > s, torch.from_numpy(near.astype(np.float64) >= t)), t  # LeRobot's test, in float32
        assert s <= t and len(repr(s)) <= 12  # often t itself: float32(t) may lie below t


def test_export_writes_lerobots_layout_and_says_what_to_set(resnet_ckpt, tmp_path, capsys):
    out = tmp_path / "lerobot"
    assert main(["export", f"checkpoint={resnet_ckpt}", "format=lerobot", f"output={out}"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["path"] == str(out.resolve()) and said["threshold"] == pytest.approx(0.6123)
    assert said["success_threshold"] == strict_threshold(0.6123) and said["max_abs_diff"] <= 1e-6
    assert said["lerobot_config"]["env.processor.reward_classifier"]["success_threshold"] == said["success_threshold"]
    config = json.loads((out / "config.json").read_text())
    assert config["type"] == "reward_classifier" and config["model_type"] == "cnn" and config["num_cameras"] == 2
    assert list(config["input_features"]) == ["observation.images.front", "observation.images.wrist"]
    assert config["model_name"] == str((out / "hilreward_encoder").resolve())
    assert config["latent_dim"] == 32 and config["image_embedding_pooling_dim"] == 8
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        last = f.get_tensor("classifier_head.4.weight")
    assert {"encoders.observation_images_front.1.kernel", "classifier_head.0.weight", "encoder.backbone.stem.0.weight"
            } <= keys
    ours = RewardClassifier.from_pretrained(resnet_ckpt)
    assert torch.allclose(last, ours.reward_head.mlp[4].weight / 1.6)  # the temperature, folded
    with pytest.raises(CheckpointError, match=f"hilreward's export for LeRobot's own step; in hilreward load the "
                       f"checkpoint it was made from \\({resnet_ckpt}\\)"):
        load_classifier(out)
    readme = (out / "README.md").read_text()
    assert f"\"success_threshold\": {said['success_threshold']}" in readme and "0.6123" in readme


def test_export_refuses_other_models_in_one_line_naming_the_step_route(tmp_path, capsys):
    tiny = RewardClassifier(ClassifierConfig(encoder="tiny", camera_keys=["front"], image_size=[32, 32],
                                             latent_dim=8, hidden_dim=8)).save_pretrained(tmp_path / "tiny")
    assert main(["export", f"checkpoint={tiny}", "format=lerobot", f"output={tmp_path / 'x'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot export to LeRobot's Classifier: its encoder is 'tiny'") and "\n" not in err
    assert "HilrewardRewardStep" in err and not (tmp_path / "x").exists()
    small = RewardClassifier(ClassifierConfig(encoder="resnet10", camera_keys=["front"], image_size=[64, 64]))
    with pytest.raises(CheckpointError, match=r"encoder map is \(2, 2\) at image_size \[64, 64\].*HilrewardRewardStep"):
        export_lerobot(small, tmp_path / "y")
    three = RewardClassifier(ClassifierConfig(encoder="resnet10", camera_keys=["front"], num_classes=3))
    with pytest.raises(CheckpointError, match="3 classes"):
        export_lerobot(three, tmp_path / "y")
    members = RewardClassifier(dataclasses.replace(ClassifierConfig(encoder="resnet10", camera_keys=["front"]),
                                                   members=2),
                               member_encoder([build_encoder("resnet10", pretrained=False) for _ in range(2)]))
    assert members.config.feature_shape[1:] == [4, 4]  # LeRobot's map: only the members stand in the way
    with pytest.raises(CheckpointError, match="an ensemble of 2 members.*HilrewardRewardStep"):
        export_lerobot(members, tmp_path / "y")
    assert main(["export", f"checkpoint={FIXTURES / 'lerobot_classifier' / 'checkpoint'}", "format=lerobot",
                 f"output={tmp_path / 'z'}"]) == 1
    assert "already a LeRobot reward_classifier" in capsys.readouterr().err


def test_a_failed_check_writes_nothing(resnet_ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="nothing was written"):
        export_lerobot(RewardClassifier.from_pretrained(resnet_ckpt), tmp_path / "out", atol=-1.0)
    assert not (tmp_path / "out").exists() and not any(tmp_path.iterdir())


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers is not installed")
def test_transformers_automodel_loads_the_encoder_as_lerobot_does(resnet_ckpt, tmp_path):
    """LeRobot builds the encoder with ``AutoModel.from_pretrained(model_name, trust_remote_code=True)``: the
    written code, config and weights give hilreward's feature maps from raw float frames of any size."""
    out = export_lerobot(RewardClassifier.from_pretrained(resnet_ckpt), tmp_path / "lerobot").model_name
    rng = np.random.default_rng(1)
    frames = {size: rng.integers(0, 256, (2, 3, *size), dtype=np.uint8) for size in ((128, 128), (120, 150))}
    np.savez(tmp_path / "frames.npz", **{f"{h}x{w}": v for (h, w), v in frames.items()})
    code = ("import sys, numpy as np, torch\nfrom transformers import AutoModel\n"
            "enc = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()\n"
            "frames = np.load(sys.argv[2])\n"
            "with torch.no_grad():\n"
            "    maps = {k: enc(torch.from_numpy(v).float() / 255).last_hidden_state.numpy() for k, v in frames.items()}\n"
            "np.savez(sys.argv[3], **maps)\n")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code, out, str(tmp_path / "frames.npz"), str(tmp_path / "maps.npz")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    maps = np.load(tmp_path / "maps.npz")
    ours = RewardClassifier.from_pretrained(resnet_ckpt)
    for (h, w), v in frames.items():
        with torch.inference_mode():
            want = ours.encode(ours.preprocess({k: torch.from_numpy(v).float() / 255 for k in ours.camera_keys}))
        np.testing.assert_allclose(maps[f"{h}x{w}"], want[ours.camera_keys[0]].numpy(), atol=1e-5)


@pytest.mark.skipif(not PEER_PYTHON.exists(), reason=f"no LeRobot peer venv at {PEER_PYTHON.parent.parent} "
                    "(../shared/peer/setup_lerobot.sh makes it; CI has none)")
@pytest.mark.slow  # 16-23 s each in LeRobot's own venv: make test runs it, make test-fast leaves it out
@pytest.mark.parametrize("layout", ["resnet_ckpt", "resnet_ckpt_bn"])
def test_stock_lerobot_loads_the_export_by_path_and_decides_as_hilreward(layout, request, tmp_path):
    resnet_ckpt = request.getfixturevalue(layout)
    exported = export_lerobot(RewardClassifier.from_pretrained(resnet_ckpt), tmp_path / "lerobot")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "HF_HUB_OFFLINE": "1"}
    result = tmp_path / "peer.json"
    proc = subprocess.run([str(PEER_PYTHON), str(ROOT / "tests" / "peer_lerobot_export.py"), "--checkpoint",
                           str(resnet_ckpt), "--export", exported.path, "--dataset", str(DRAWER4), "--episodes", "2",
                           "3", "--window", "75", "135", "--out", str(result)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(result.read_text())
    assert r["lerobot"] == "0.6.1" and r["python"].startswith("3.12")
    assert r["load_warnings"] == [] and r["encoder_class"] == "HilrewardEncoder"  # every weight found, none left over
    assert r["frames"] == 120
    assert r["same_size"]["max_abs_diff"] <= 1e-4 and r["other_size"]["max_abs_diff"] <= 1e-4
    assert r["stock_step"] == r["reward_function"]  # reward and done, frame by frame
    dones = [d for _, d in r["stock_step"]]
    assert any(dones) and not all(dones)
