"""One source for the configuration: the dataclasses hold every key and default, the YAML presets only what they
change, and a checkpoint's config shares the model keys."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from hilreward.config import CONF_DIR, ModelConfig, ModelSettings, TrainConfig, compose
from hilreward.errors import ConfigError
from hilreward.models import ClassifierConfig


def test_compose_without_overrides_is_the_python_defaults():
    assert compose([]) == TrainConfig()


def _leaves(data: dict, prefix: str = ""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_the_yaml_files_hold_no_default_and_no_unknown_key():
    """A YAML value equal to the Python default is a second source that can drift; an unknown key is a typo."""
    defaults = dict(_leaves(dataclasses.asdict(TrainConfig())))
    files = sorted(CONF_DIR.rglob("*.yaml"))
    assert [f.relative_to(CONF_DIR).as_posix() for f in files] == ["model/resnet10.yaml", "model/scratch.yaml",
                                                                     "train.yaml"]
    for path in files:
        data = yaml.safe_load(path.read_text()) or {}
        data.pop("defaults", None)
        if path.parent.name == "model" and "model" not in data and data:  # a group file without @package _global_
            data = {"model": data}
        for key, value in _leaves(data):
            assert key in defaults, f"{path.name}: unknown key {key}"
            assert value != defaults[key], f"{path.name}: {key}={value!r} is the default already"
    scratch = compose(["model=scratch"])
    assert scratch.model.encoder == "small_cnn" and scratch.training.steps == 1200
    assert scratch.model.spatial_features == ModelConfig().spatial_features  # what the preset leaves alone


def test_a_checkpoint_config_shares_the_model_keys_and_their_defaults():
    names = {f.name for f in dataclasses.fields(ModelSettings)}
    assert names <= {f.name for f in dataclasses.fields(ClassifierConfig)}
    assert names <= {f.name for f in dataclasses.fields(ModelConfig)}
    for name in names:
        assert getattr(ClassifierConfig(), name) == getattr(ModelConfig(), name), name
    cfg = compose(["model=scratch", "model.threshold=0.7", "model.num_classes=3"])
    built = ClassifierConfig.from_train_config(cfg, ["front"])
    assert {n: getattr(built, n) for n in names} == {n: getattr(cfg.model, n) for n in names}
    assert built.camera_keys == ["observation.images.front"]


def test_training_calibrate_is_a_choice_with_its_old_spellings():
    assert [compose([f"training.calibrate={v}"]).training.calibrate for v in ("auto", "cv", "true", "false", "HELDOUT")] \
        == ["auto", "cv", "heldout", "off", "heldout"]
    with pytest.raises(ConfigError, match="training.calibrate='sometimes': use one of auto, heldout, cv, off"):
        compose(["training.calibrate=sometimes"])
    with pytest.raises(ConfigError, match=r"training.steps=abc \(Value 'abc' of type 'str' could not be converted"):
        compose(["training.steps=abc"])
