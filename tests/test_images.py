"""hilreward.images: one uint8 resize for the frame cache, the torch model and the ONNX backend; layering."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hilreward.errors import InputError
from hilreward.images import model_pixels, resize, resize_uint8, to_uint8_hwc


@pytest.mark.parametrize("shape", [(2, 48, 48), (1, 97, 131), (3, 20, 28), (1, 32, 32)])
def test_model_pixels_are_the_frame_cache_pixels(shape):
    n, h, w = shape
    frames = np.random.default_rng(h).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    cached = torch.from_numpy(resize_uint8(frames, (32, 32))).permute(0, 3, 1, 2).float().div_(255.0)  # training
    as_uint8 = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)
    assert torch.equal(model_pixels(as_uint8, (32, 32)), cached)  # bit for bit
    if (h, w) != (32, 32):  # the unrounded float resize (the torch path before) gives other pixels
        assert not torch.equal(resize(as_uint8, (32, 32)), cached)


def test_float_frames_go_to_the_8_bit_grid_and_back_to_uint8():
    frames = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    chw = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    np.testing.assert_array_equal(to_uint8_hwc(chw), frames)
    np.testing.assert_array_equal(to_uint8_hwc(chw[0].numpy()), frames[0])
    assert to_uint8_hwc(frames) is frames
    off_grid = chw + 0.3 / 255.0  # e.g. after LeRobot's own float resize
    assert torch.equal(model_pixels(off_grid, (24, 24)), model_pixels(chw, (24, 24)))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        to_uint8_hwc(chw * 255.0)
    with pytest.raises(InputError, match="uint8"):
        to_uint8_hwc(np.zeros((4, 4), np.int32))


def test_layers_import_one_way():
    """data knows no models; deploy knows no serving and loads no grpc, and nothing LeRobot's own venv lacks (it
    imports the reward rule from src: no scikit-learn, scipy, matplotlib, omegaconf, nor evaluation or training)."""
    code = ("import sys, json, hilreward.data, hilreward.images; a = sorted(m for m in sys.modules if m.startswith("
            "'hilreward.models')); import hilreward.deploy; b = sorted(m for m in sys.modules if 'grpc' in m or "
            "m.startswith(('hilreward.serving', 'hilreward.evaluation', 'hilreward.training', 'sklearn', 'scipy', "
            "'matplotlib', 'omegaconf'))); print(json.dumps([a, b]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    models_after_data, beyond_deploy = json.loads(out.strip().splitlines()[-1])
    assert models_after_data == [] and beyond_deploy == []
