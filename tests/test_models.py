"""hilreward.models: encoder registry, head gradients, preprocessing, checkpoints, ResNet-10 weight layouts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hilreward.errors import CheckpointError, EncoderError, InputError
from hilreward.models import ClassifierConfig, RewardClassifier, build_encoder, list_encoders
from hilreward.models.resnet10 import same_padding

CAMS = ["observation.images.front", "observation.images.wrist"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def tiny_model(**overrides) -> RewardClassifier:
    cfg = dict(encoder="tiny", camera_keys=["front", "wrist"], image_size=[32, 32], latent_dim=16, hidden_dim=16)
    cfg.update(overrides)
    return RewardClassifier(ClassifierConfig(**cfg))


def frames(batch=3, h=32, w=32, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8) for k in CAMS}


# --- registry -------------------------------------------------------------------------------------


def test_unknown_encoder_lists_known_ones():
    assert {"resnet10", "small_cnn", "tiny", "hf:", "timm:", "torchvision:"} <= set(list_encoders())
    with pytest.raises(EncoderError) as err:
        build_encoder("resnet11")
    for name in ("resnet10", "small_cnn", "tiny", "hf:", "timm:", "torchvision:"):
        assert name in str(err.value)


def test_pretrained_resnet10_offline_without_cache_names_both_ways_out(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    with pytest.raises(EncoderError) as err:
        build_encoder("resnet10", pretrained=True)
    msg = str(err.value)
    assert "helper2424/resnet10" in msg and "not available" in msg
    assert "model.weights=" in msg and "model.pretrained=false" in msg
    with pytest.raises(EncoderError, match="do not exist"):
        build_encoder("resnet10", weights=str(tmp_path / "no-such-folder"))
    with pytest.raises(EncoderError, match="would be ignored"):
        build_encoder("resnet10", pretrained=False, weights=str(tmp_path))


@pytest.mark.parametrize("lib,spec", [("timm", "timm:resnet18"), ("torchvision", "torchvision:resnet18"),
                                      ("transformers", "hf:some/repo")])
def test_optional_backbone_library_missing_says_how_to_install(lib, spec, monkeypatch):
    monkeypatch.setitem(sys.modules, lib, None)  # as if not installed (import raises ImportError)
    with pytest.raises(EncoderError, match=f"pip install {lib}"):
        build_encoder(spec)


def test_weights_fingerprint_is_stable_and_tracks_weights():
    torch.manual_seed(1)
    a = build_encoder("tiny")
    torch.manual_seed(1)
    b = build_encoder("tiny")
    assert a.weights_fingerprint() == b.weights_fingerprint()
    with torch.no_grad():
        next(b.parameters()).add_(1e-3)
    assert a.weights_fingerprint() != b.weights_fingerprint()
    assert len(a.weights_fingerprint()) == 16


# --- gradients and freezing -----------------------------------------------------------------------


@pytest.mark.parametrize("encoder,size", [("tiny", 32), ("resnet10", 64)])
@pytest.mark.parametrize("freeze", ["all", "last", "none"])
def test_every_trainable_parameter_gets_a_gradient_and_no_frozen_one_does(encoder, size, freeze):
    model = RewardClassifier(ClassifierConfig(encoder=encoder, camera_keys=CAMS, image_size=[size, size],
                                              freeze=freeze, latent_dim=32, hidden_dim=32))
    model.train()
    pixels = model.preprocess(frames(batch=4, h=size, w=size))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(pixels), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    loss.backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"
        else:
            assert p.grad is None, f"frozen {name} got a gradient"
    head = [n for n, _ in model.reward_head.named_parameters()]
    assert all(f"reward_head.{n}" in trainable for n in head)  # the whole head learns (LeRobot: only the last MLP)
    enc_trainable = [n for n in trainable if n.startswith("encoder.")]
    last_stage = {id(p) for p in model.encoder.stages()[-1].parameters()}
    if freeze == "all":
        assert enc_trainable == []
    elif freeze == "last":
        assert enc_trainable and all(id(p) in last_stage for n, p in model.named_parameters() if n in enc_trainable)
    else:
        assert len(enc_trainable) == len(list(model.encoder.parameters()))


def test_frozen_encoder_stays_in_eval_mode_and_keeps_batchnorm_statistics():
    enc = build_encoder("resnet10", pretrained=False, options={"layout": "transformers"}, freeze="all")
    model = RewardClassifier(ClassifierConfig(encoder="resnet10", camera_keys=["front"], image_size=[64, 64]), enc)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items() if "running" in k}
    assert before
    model.train()
    assert model.reward_head.training and not any(m.training for m in model.encoder.modules())
    model(model.preprocess({"front": np.full((4, 64, 64, 3), 200, np.uint8)})).sum().backward()
    after = model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

    model.encoder.set_freeze("last")
    model.train()
    last = model.encoder.stages()[-1]
    assert all(m.training for m in last.modules())
    assert not any(m.training for s in model.encoder.stages()[:-1] for m in s.modules())


# --- preprocessing -------------------------------------------------------------------------------


def test_uint8_hwc_and_float_chw_inputs_give_equal_probabilities():
    model = tiny_model()
    raw = frames(batch=2, h=40, w=48)  # not the model size: both go through the same resize
    as_float = {k.split(".")[-1]: torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255 for k, v in raw.items()}
    p_uint8 = model.predict_proba(raw)
    p_float = model.predict_proba(as_float)
    np.testing.assert_allclose(p_uint8, p_float, rtol=0, atol=1e-6)
    single = model.predict_proba({k: torch.from_numpy(v[1]) for k, v in raw.items()})  # unbatched torch uint8
    np.testing.assert_allclose(single, p_uint8[1:], atol=1e-6)
    assert p_uint8.shape == (2,) and ((p_uint8 > 0) & (p_uint8 < 1)).all()


def test_resize_uint8_gives_the_pixels_the_model_sees():
    from hilreward.images import resize_uint8

    model = tiny_model()
    raw = frames(batch=2, h=96, w=80)
    small = {k: resize_uint8(v, (32, 32)) for k, v in raw.items()}
    assert small[CAMS[0]].shape == (2, 32, 32, 3) and small[CAMS[0]].dtype == np.uint8
    np.testing.assert_array_equal(model.predict_proba(small), model.predict_proba(raw))


def test_84x84_and_640x480_inputs_work():
    model = RewardClassifier(ClassifierConfig(encoder="resnet10", camera_keys=CAMS, image_size=[84, 84],
                                              latent_dim=16, hidden_dim=16))
    assert model.config.feature_shape == [512, 3, 3]  # LeRobot's fixed 4x4 grid cannot take 84x84
    assert model.predict_proba(frames(batch=2, h=84, w=84)).shape == (2,)
    assert model.predict_proba(frames(batch=1, h=480, w=640)).shape == (1,)
    wide = tiny_model(image_size=[48, 64])
    assert wide.config.feature_shape == [16, 12, 16]
    assert wide.predict_proba(frames(batch=2, h=480, w=640)).shape == (2,)


def test_bad_inputs_raise_input_error_naming_what_is_expected():
    model = tiny_model()
    good = frames(batch=2)
    with pytest.raises(InputError, match="missing camera 'observation.images.wrist'.*front.*wrist"):
        model.predict_proba({"front": good[CAMS[0]]})
    with pytest.raises(InputError, match=r"\(H,W,3\)"):
        model.predict_proba({**good, CAMS[1]: np.zeros((2, 32, 32, 4), np.uint8)})
    with pytest.raises(InputError, match=r"\(3,H,W\)"):
        model.predict_proba({**good, CAMS[1]: np.zeros((2, 32, 32, 3), np.float32)})
    with pytest.raises(InputError, match="int64"):
        model.predict_proba({**good, CAMS[1]: np.zeros((2, 32, 32, 3), np.int64)})
    with pytest.raises(InputError, match=r"in \[0, 1\].*divide by 255"):
        model.predict_proba({**good, CAMS[1]: torch.full((2, 3, 32, 32), 255.0)})
    with pytest.raises(InputError, match="batch sizes"):
        model.predict_proba({**good, CAMS[1]: good[CAMS[1]][:1]})


def test_multiclass_probabilities_sum_to_one():
    model = tiny_model(num_classes=3)
    probs = model.predict_proba(frames(batch=5))
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    logits = model(model.preprocess(frames(batch=2)))
    assert logits.shape == (2, 3)


# --- checkpoints --------------------------------------------------------------------------------


def test_save_then_load_gives_identical_probabilities(tmp_path):
    model = tiny_model(threshold=0.7)
    with torch.no_grad():  # make the weights differ from a fresh build
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    target = tmp_path / "ckpt"
    out = model.save_pretrained(target, train_config_yaml="model:\n  encoder: tiny\n", metrics={"accuracy": 0.98})
    assert sorted(os.listdir(out)) == ["config.json", "metrics.json", "model.safetensors", "train_config.yaml"]
    assert os.listdir(tmp_path) == ["ckpt"]  # no temp dirs left
    config = json.loads((out / "config.json").read_text())
    assert config["camera_keys"] == CAMS and config["image_size"] == [32, 32] and config["threshold"] == 0.7
    assert config["encoder"] == "tiny" and config["version"] and config["feature_shape"] == [16, 8, 8]
    loaded = RewardClassifier.from_pretrained(target)
    x = frames(batch=4, h=50, w=60)
    np.testing.assert_array_equal(model.predict_proba(x), loaded.predict_proba(x))
    assert loaded.threshold == 0.7 and not loaded.training
    model.save_pretrained(target)  # overwriting an existing checkpoint works
    assert RewardClassifier.from_pretrained(target).predict_proba(x).shape == (4,)



def test_read_weights_with_a_prefix_reads_only_those_tensors(tmp_path):
    from hilreward.models.checkpoint import read_weights

    model = tiny_model()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    target = model.save_pretrained(tmp_path / "ckpt")
    head = read_weights(target, prefix="reward_head.")
    want = model.reward_head.state_dict()
    assert sorted(head) == sorted(want)
    for k, v in want.items():
        torch.testing.assert_close(head[k], v, rtol=0, atol=0)
    assert len(read_weights(target)) == len(model.state_dict()) > len(head)

def test_broken_checkpoints_raise_checkpoint_error(tmp_path):
    good = tiny_model().save_pretrained(tmp_path / "good")
    with pytest.raises(CheckpointError, match="does not exist"):
        RewardClassifier.from_pretrained(tmp_path / "missing")

    truncated = tiny_model().save_pretrained(tmp_path / "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt.*re-save"):
        RewardClassifier.from_pretrained(truncated)

    no_config = tiny_model().save_pretrained(tmp_path / "no_config")
    (no_config / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        RewardClassifier.from_pretrained(no_config)

    config = json.loads((good / "config.json").read_text())
    newer = tiny_model().save_pretrained(tmp_path / "newer")
    (newer / "config.json").write_text(json.dumps({**config, "format_version": 99, "version": "9.0"}))
    with pytest.raises(CheckpointError, match="upgrade hilreward"):
        RewardClassifier.from_pretrained(newer)

    mismatch = tiny_model().save_pretrained(tmp_path / "mismatch")
    (mismatch / "config.json").write_text(json.dumps({**config, "latent_dim": 8}))
    with pytest.raises(CheckpointError, match="does not fit"):
        RewardClassifier.from_pretrained(mismatch)


def test_push_to_hub_uploads_a_complete_checkpoint(tmp_path, monkeypatch):
    import huggingface_hub

    calls = {}

    def create_repo(self, repo_id, private=False, exist_ok=False, **kw):
        calls["create"] = (repo_id, private, exist_ok)

    def upload_folder(self, repo_id, folder_path, commit_message=None, **kw):  # the network edge
        calls["files"] = sorted(os.listdir(folder_path))
        calls["config"] = json.loads((Path(folder_path) / "config.json").read_text())
        return "https://huggingface.co/user/clf/commit/abc"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    saved = tiny_model().save_pretrained(tmp_path / "ckpt", train_config_yaml="a: 1\n", metrics={"accuracy": 1.0})
    url = RewardClassifier.from_pretrained(saved).push_to_hub("user/clf", private=True)
    assert calls["create"] == ("user/clf", True, True) and url.endswith("/abc")
    assert calls["files"] == ["config.json", "metrics.json", "model.safetensors", "train_config.yaml"]
    assert calls["config"]["camera_keys"] == CAMS


def test_bad_model_options_raise_config_error():
    from hilreward.errors import ConfigError

    with pytest.raises(ConfigError, match="num_classes"):
        tiny_model(num_classes=1)
    with pytest.raises(ConfigError, match="image_size"):
        tiny_model(image_size=[32])
    with pytest.raises(ConfigError, match="model.freeze='some': use one of all, last, none"):
        tiny_model(freeze="some")


def test_check_cameras_rejects_a_checkpoint_for_another_camera_set():
    model = tiny_model()
    assert model.check_cameras(["front", "wrist", "top"]) == CAMS
    with pytest.raises(CheckpointError, match=r"checkpoint expects cameras .*front.*wrist.*got"):
        model.check_cameras(["observation.images.top", "front"])


def test_from_train_config_uses_the_model_group():
    from hilreward.config import compose

    cfg = compose(["model=scratch", "model.latent_dim=32", "model.hidden_dim=32", "model.num_classes=3"])
    model = RewardClassifier.from_train_config(cfg, ["front", "observation.images.wrist"])
    assert model.config.encoder == "small_cnn" and model.config.image_size == [96, 96]
    assert model.config.camera_keys == CAMS and model.config.freeze == "none"
    assert model.parameter_counts()["trainable"] == model.parameter_counts()["total"]
    assert model.predict_proba(frames(batch=2, h=96, w=96)).shape == (2, 3)


# --- ResNet-10 weight layouts -------------------------------------------------------------------


def test_jax_same_padding_puts_the_extra_pixel_after():
    assert same_padding(128, 3, 2) == (0, 1)  # ceil(128/2) = 64 outputs
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(32, 3, 1) == (1, 1)
    assert same_padding(16, 1, 2) == (0, 0)
    enc = build_encoder("resnet10", pretrained=False)
    assert enc.feature_shape((128, 128)) == (512, 4, 4) and enc.feature_shape((84, 84)) == (512, 3, 3)


@pytest.mark.parametrize("h,w", [(64, 64), (21, 21), (42, 33)])
def test_fast_max_pool_equals_torch_max_pool(h, w):
    import math

    import torch.nn.functional as F

    from hilreward.models.resnet10 import max_pool_3x3_s2

    x = torch.randn(2, 4, h, w)
    assert torch.equal(max_pool_3x3_s2(x, (1, 1, 1, 1)), F.max_pool2d(x, 3, 2, 1))
    (top, bottom), (left, right) = same_padding(h, 3, 2), same_padding(w, 3, 2)
    expected = F.max_pool2d(F.pad(x, (left, right, top, bottom), value=-math.inf), 3, 2)
    assert torch.equal(max_pool_3x3_s2(x, (left, right, top, bottom)), expected)


def _hilserl_state() -> dict[str, torch.Tensor]:
    """The key names of helper2424/resnet10 (and lerobot/resnet10): custom HIL-SERL port, GroupNorm."""
    g = torch.Generator().manual_seed(3)
    state = {"embedder.0.weight": torch.randn(64, 3, 7, 7, generator=g),
             "embedder.1.weight": torch.rand(64, generator=g), "embedder.1.bias": torch.rand(64, generator=g)}
    chans = [64, 64, 128, 256, 512]
    for i in range(4):
        cin, cout = chans[i], chans[i + 1]
        p = f"encoder.stages.{i}."
        state[p + "conv1.conv.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        state[p + "conv2.conv.weight"] = torch.randn(cout, cout, 3, 3, generator=g) * 0.05
        for n in ("norm1", "norm2"):
            state[p + n + ".weight"], state[p + n + ".bias"] = torch.rand(cout, generator=g), torch.rand(cout, generator=g)
        if cin != cout:
            state[p + "shortcut.0.conv.weight"] = torch.randn(cout, cin, 1, 1, generator=g) * 0.05
            state[p + "shortcut.1.weight"] = torch.rand(cout, generator=g)
            state[p + "shortcut.1.bias"] = torch.rand(cout, generator=g)
    return state


def test_resnet10_loads_the_hilserl_hub_layout(tmp_path):
    from safetensors.torch import save_file

    state = _hilserl_state()
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "resnet10", "hidden_act": "silu",
                                                      "embedding_size": 64, "hidden_sizes": [64, 128, 256, 512],
                                                      "depths": [1, 1, 1, 1]}))
    enc = build_encoder("resnet10", weights=str(tmp_path))
    assert enc.options["layout"] == "hilserl" and enc.options["act"] == "silu"
    net = enc.backbone
    assert torch.equal(net.stem[0].weight, state["embedder.0.weight"])
    assert torch.equal(net.stages[2].shortcut[0].weight, state["encoder.stages.2.shortcut.0.conv.weight"])
    assert torch.equal(net.stages[3].norm2.bias, state["encoder.stages.3.norm2.bias"])
    assert isinstance(net.stages[0].act1, torch.nn.SiLU) and isinstance(net.stem[1], torch.nn.GroupNorm)

    (tmp_path / "config.json").write_text(json.dumps({"hidden_act": "relu", "depths": [2, 2, 2, 2]}))
    with pytest.raises(EncoderError, match="one block per stage"):
        build_encoder("resnet10", weights=str(tmp_path))
    save_file({k: v for k, v in state.items() if "stages.3.conv2" not in k}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EncoderError, match="missing.*stages.3.conv2"):
        build_encoder("resnet10", weights=str(tmp_path))


def test_resnet10_loads_a_transformers_folder_and_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ResNetConfig(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[1, 1, 1, 1],
                                       layer_type="basic", hidden_act="relu")
    ref = transformers.ResNetModel(config).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a mis-mapped buffer shows
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.2, 0.2)
    ref.save_pretrained(str(tmp_path / "resnet10"))
    enc = build_encoder("resnet10", weights=str(tmp_path / "resnet10"))
    assert enc.options["layout"] == "transformers"
    x = torch.randn(2, 3, 96, 112)
    with torch.no_grad():
        expected = ref(pixel_values=x).last_hidden_state
        got = enc(x)
    assert got.shape == expected.shape == (2, 512, 3, 4)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    via_hf = build_encoder(f"hf:{tmp_path / 'resnet10'}")  # the same folder through transformers' AutoModel
    with torch.no_grad():
        torch.testing.assert_close(via_hf(x), expected, atol=1e-5, rtol=1e-5)

    # Classifiers on these weights reload without network or the original folder.
    x = {"front": frames(batch=2, h=64, w=64)[CAMS[0]]}
    models = [RewardClassifier(ClassifierConfig(encoder=e.spec, camera_keys=["front"], image_size=[64, 64],
                                                latent_dim=16, hidden_dim=16), e) for e in (enc, via_hf)]
    saved = [m.save_pretrained(tmp_path / f"ckpt{i}") for i, m in enumerate(models)]
    (tmp_path / "resnet10" / "model.safetensors").unlink()
    for model, path in zip(models, saved):
        np.testing.assert_array_equal(RewardClassifier.from_pretrained(path).predict_proba(x), model.predict_proba(x))


@pytest.mark.parametrize("encoder,size", [("tiny", 32), ("resnet10", 64)])
def test_encoder_weights_can_come_from_a_hilreward_checkpoint(tmp_path, encoder, size):
    enc = build_encoder(encoder, pretrained=False, options={"layout": "transformers"} if encoder == "resnet10" else None)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.01)
    model = RewardClassifier(ClassifierConfig(encoder=encoder, camera_keys=["front"], image_size=[size, size],
                                              latent_dim=8, hidden_dim=8), enc)
    saved = model.save_pretrained(tmp_path / "ckpt")
    reused = build_encoder(encoder, pretrained=True, weights=str(saved))
    assert reused.options == enc.options
    assert reused.weights_fingerprint() == enc.weights_fingerprint()
