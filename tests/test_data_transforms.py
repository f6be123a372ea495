"""The reference's preprocessing, written with Pillow and numpy: random-resized crop within its area and
aspect bounds, the 87.5 % centre crop, and the same crops on in-memory batches."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mnas.data.transforms import batch_centre_crop, batch_crops, centre_box, pil_eval, pil_train, sample_crop


def test_random_resized_crop_stays_in_its_bounds():
    rng = np.random.default_rng(0)
    boxes = [sample_crop(rng, 400, 300, 0.08) for _ in range(500)]
    areas = np.array([(r - l) * (b - t) / 120000 for l, t, r, b in boxes])
    aspects = np.array([(r - l) / (b - t) for l, t, r, b in boxes])
    assert all(0 <= l < r <= 400 and 0 <= t < b <= 300 for l, t, r, b in boxes)
    assert areas.min() >= 0.075 and areas.max() <= 1.0 and areas.std() > 0.1
    assert aspects.min() > 0.74 and aspects.max() < 1.35
    assert sample_crop(rng, 10, 1000, 0.9) == (0, 0, 10, 1000)  # no draw fits: the whole image


def test_pil_crops_are_seeded_and_the_centre_crop_is_the_centre():
    x = np.zeros((256, 320, 3), dtype=np.uint8)
    x[16:240, 48:272] = 255  # white exactly inside the centre 87.5 % of the shorter side
    im = Image.fromarray(x)
    assert centre_box(320, 256, 0.875) == (48, 16, 272, 240)
    # the resampling filter reaches one pixel past the box at its edge
    assert pil_eval(im, 32, 0.875)[:, 1:-1, 1:-1].min() == 255 and pil_eval(im, 32, 1.0)[:, 0, 0].max() < 10
    a = pil_train(im, 24, 0.08, True, np.random.default_rng(5))
    b = pil_train(im, 24, 0.08, True, np.random.default_rng(5))
    assert a.shape == (3, 24, 24) and np.array_equal(a, b)
    assert {pil_train(im, 24, 0.08, True, np.random.default_rng(s)).tobytes() for s in range(6)}.__len__() > 1


def test_batch_crops_on_in_memory_tensors():
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(batch_crops(x, 1.0, False, g), x, atol=1e-4)  # the whole image, no flip
    flipped = [batch_crops(x, 1.0, True, g) for _ in range(8)]
    assert any(torch.allclose(f[0], x[0].flip(-1), atol=1e-4) for f in flipped)
    crop = batch_crops(x, 0.08, False, g)
    assert crop.shape == x.shape and not torch.allclose(crop, x)
    centre = batch_centre_crop(x, 0.5)
    assert centre.shape == x.shape and centre.min() > x[0].min() and centre[0].max() < x[0].max()
