"""Augmentation: colour jitter keeps pixels in range and types, does what each strength says, and is
deterministic under a seed, also inside training batches."""

from __future__ import annotations

import numpy as np
import torch

from hilreward.training.augment import GRAY, ColorJitter, hue_matrices
from hilreward.training.batches import PixelBatches

JITTER = ColorJitter(brightness=0.2, contrast=0.2, saturation=0.5, hue=0.05)  # LeRobot's image_transforms ranges


def frames(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 3, 16, 16), generator=torch.Generator().manual_seed(seed))


def test_pixels_stay_in_range_with_their_type():
    u8 = (frames() * 255).round().to(torch.uint8)
    x = u8.float() / 255
    strong = ColorJitter(1.0, 1.0, 1.0, 0.5)
    for jitter in (JITTER, strong):
        y = jitter(x, generator=torch.Generator().manual_seed(1))
        assert y.dtype == torch.float32 and y.shape == x.shape and 0 <= y.min() and y.max() <= 1
        u = jitter(u8, generator=torch.Generator().manual_seed(1))
        assert u.dtype == torch.uint8 and u.shape == x.shape
        assert (u.float() / 255 - y).abs().max() <= 0.5 / 255 + 1e-6  # the same change, rounded once
    assert ColorJitter()(x) is x and not ColorJitter().active


def test_deterministic_under_a_seed():
    x = frames()
    a = JITTER(x, generator=torch.Generator().manual_seed(3))
    b = JITTER(x, generator=torch.Generator().manual_seed(3))
    c = JITTER(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_each_strength_does_what_it_says():
    x = frames() * 0.5 + 0.25  # away from the clamp
    f = torch.tensor([[1.2, 1.0, 1.0, 0.0]], dtype=torch.float64).repeat(len(x), 1)
    assert torch.allclose(ColorJitter(brightness=0.2)(x, f), x * 1.2)
    f = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64).repeat(len(x), 1)
    gray = ColorJitter(saturation=1.0)(x, f)  # saturation 0: every channel is the luma
    luma = (x * torch.tensor(GRAY).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(gray, luma.expand_as(x), atol=1e-6)
    f = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64).repeat(len(x), 1)
    flat = ColorJitter(contrast=1.0)(x, f)  # contrast 0: the image's mean gray everywhere
    assert torch.allclose(flat, luma.mean((2, 3), keepdim=True).expand_as(x), atol=1e-6)
    # a hue turn keeps the luma, changes the colour, and a full turn is the identity
    turned = torch.einsum("bij,bjhw->bihw", hue_matrices(torch.full((len(x),), 0.25)), x)
    assert torch.allclose((turned * torch.tensor(GRAY).view(1, 3, 1, 1)).sum(1, keepdim=True), luma, atol=1e-5)
    assert not torch.allclose(turned, x, atol=1e-2)
    assert torch.allclose(hue_matrices(torch.tensor([1.0]))[0], torch.eye(3), atol=1e-6)


def test_training_batches_jitter_per_camera_and_reproduce_by_step():
    rng = np.random.default_rng(0)
    images = {c: rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8) for c in ("front", "wrist")}
    rows, labels = np.arange(40), np.arange(40) % 2

    def source(color):
        return PixelBatches(images, rows, labels, 8, seed=5, balanced=True, weights=np.ones(40), pad=2, color=color)

    (a, ya), (b, yb) = source(JITTER)[3], source(JITTER)[3]
    assert torch.equal(ya, yb) and all(torch.equal(a[c], b[c]) for c in a)
    plain, y_plain = source(None)[3]
    assert torch.equal(y_plain, ya)  # the same frames and shifts: the jitter's draws come after them
    assert all(0 <= a[c].min() and a[c].max() <= 1 for c in a)
    assert not torch.allclose(a["front"], plain["front"], atol=1e-3)
    # each camera gets its own factors: the brightness change differs between the cameras of one sample
    ratio = {c: a[c].mean((1, 2, 3)) / plain[c].mean((1, 2, 3)) for c in a}
    assert not torch.allclose(ratio["front"], ratio["wrist"], atol=1e-3)
