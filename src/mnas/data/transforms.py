"""Image preprocessing, one definition for both data paths: the reference's Inception-style
random-resized crop (area ``min_area``..1 of the image, aspect 3/4..4/3, then a horizontal flip) for
training, and a centre crop of ``eval_crop`` of the shorter side, resized, for evaluation.

Streamed images (Pillow, in DataLoader workers) are cropped from the decoded photo; in-memory datasets
(uint8 tensors already at the proxy resolution) are cropped per batch on the device with an affine
sampling grid. torchvision is not used: its wheels here are CUDA builds that fail on the CPU torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the reference's constants, in [0, 1] units
IMAGENET_STD = (0.229, 0.224, 0.225)
ASPECT = (3 / 4, 4 / 3)
TRIES = 10  # the reference draws up to 10 boxes before it falls back to the whole image


def sample_crop(rng: np.random.Generator, width: int, height: int, min_area: float) -> tuple[int, int, int, int]:
    """A random (left, top, right, bottom) box covering ``min_area``..1 of the image, aspect ratio
    log-uniform in 3/4..4/3; the whole image when no draw fits."""
    area = width * height
    log_lo, log_hi = math.log(ASPECT[0]), math.log(ASPECT[1])
    for _ in range(TRIES):
        target = area * rng.uniform(min_area, 1.0)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    return 0, 0, width, height


def centre_box(width: int, height: int, fraction: float) -> tuple[int, int, int, int]:
    """The centred square of side ``fraction`` x the shorter side."""
    side = max(1, int(round(min(width, height) * fraction)))
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def to_rgb(im):
    """Any Pillow mode as RGB: grey, CMYK and palette are converted, alpha is dropped (a palette with a
    transparent colour goes through RGBA, which Pillow asks for). Grey of more than 8 bits is scaled to
    8 (Pillow's own conversion clips it: a 16-bit PNG would come out near white, a float TIFF black);
    a mode Pillow cannot make RGB raises ValueError, which counts the image as broken."""
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I") or im.mode == "F":
        im = _grey_to_8_bits(im)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    return im.convert("RGB")


def _grey_to_8_bits(im):
    """16-bit grey (``I;16*``) divided by 257; 32-bit integer grey (``I``) the same when it is above 255
    (16-bit data: PNG and TIFF decoders give it as ``I``), kept when within 0..255; float grey (``F``)
    times 255 when within [0, 1], kept when within [0, 255]. Other ranges have no one reading: refused."""
    from PIL import Image

    a = np.asarray(im)
    if a.size == 0:
        raise ValueError("empty image")
    lo, hi = float(a.min()), float(a.max())
    if im.mode.startswith("I;16"):
        scale = 255 / 65535
    elif im.mode == "I" and 0 <= lo and hi <= 65535:
        scale = 255 / 65535 if hi > 255 else 1.0
    elif im.mode == "F" and np.isfinite(lo) and np.isfinite(hi) and 0 <= lo and hi <= 255:
        scale = 255.0 if hi <= 1.0 else 1.0
    else:
        raise ValueError(f"{im.mode} image with values {lo:g}..{hi:g}: not 8-bit, 16-bit or [0, 1] grey")
    return Image.fromarray(np.round(a.astype(np.float32) * np.float32(scale)).astype(np.uint8), "L")


def pil_train(im, resolution: int, min_area: float, hflip: bool, rng: np.random.Generator) -> np.ndarray:
    """A decoded image -> uint8 (C, R, R): random-resized crop (or the centre square when ``min_area``
    is 0), then a random flip."""
    box = sample_crop(rng, *im.size, min_area) if min_area > 0 else centre_box(*im.size, 1.0)
    out = _crop_resize(im, box, resolution)
    if hflip and rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def pil_eval(im, resolution: int, crop: float) -> np.ndarray:
    """A decoded image -> uint8 (C, R, R): the centre ``crop`` of the shorter side, resized."""
    return np.ascontiguousarray(_crop_resize(im, centre_box(*im.size, crop), resolution).transpose(2, 0, 1))


def _crop_resize(im, box: tuple[int, int, int, int], resolution: int) -> np.ndarray:
    """``box`` of ``im`` resized to R x R as uint8 (H, W, 3). A JPEG is decoded by libjpeg at 1/2, 1/4
    or 1/8 scale when the box stays >= 2R wide (``draft``): a 256-px photo for a 32-px proxy then decodes
    several times faster (docs/results/2026-11-27-data-pipeline.md)."""
    from PIL import Image

    full_w, full_h = im.size
    scale = min(box[2] - box[0], box[3] - box[1]) / (2 * resolution)
    if im.format == "JPEG" and scale >= 2:
        im.draft(im.mode, (math.ceil(full_w / scale), math.ceil(full_h / scale)))
    sx, sy = im.size[0] / full_w, im.size[1] / full_h
    scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    return np.asarray(to_rgb(im).resize((resolution, resolution), Image.BILINEAR, box=scaled))


def batch_crops(x: torch.Tensor, min_area: float, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """The training crop for an in-memory batch (float (B, C, R, R), already at the output size):
    each image's random box (and flip) resampled bilinearly back to R x R in one ``grid_sample``."""
    b, _, h, w = x.shape
    rng = np.random.default_rng(int(torch.randint(2 ** 62, (1,), generator=generator)))
    theta = np.zeros((b, 2, 3), dtype=np.float32)
    for i in range(b):
        left, top, right, bottom = sample_crop(rng, w, h, min_area)
        flip = -1.0 if hflip and rng.random() < 0.5 else 1.0
        # normalised coordinates in [-1, 1]: output -> input maps the unit square onto the box
        theta[i, 0] = (flip * (right - left) / w, 0.0, (left + right) / w - 1.0)
        theta[i, 1] = (0.0, (bottom - top) / h, (top + bottom) / h - 1.0)
    grid = F.affine_grid(torch.from_numpy(theta).to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def batch_centre_crop(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """The evaluation crop for an in-memory batch: the centre ``fraction`` resized back to R x R."""
    if fraction >= 1.0:
        return x
    h, w = x.shape[-2:]
    left, top, right, bottom = centre_box(w, h, fraction)
    return F.interpolate(x[..., top:bottom, left:right], size=(h, w), mode="bilinear", align_corners=False,
                         antialias=False)
