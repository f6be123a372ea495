"""Streamed ``imagefolder:`` datasets: the same tiny generated ImageFolder as a folder, a zip and a tar,
every image mode made RGB, non-images ignored and broken images skipped and counted, seeded splits, and
the one-line errors of bad input."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnas import MnasError
from mnas.space import Architecture
from mnas.data import Stream, load_dataset
from mnas.train import TrainConfig, train_proxy
from mnas.data.imagefolder import open_imagefolder

TINY = Architecture.parse("stem8:ds_r1_k3_s1_e1_i8_o8:ir_r1_k3_s2_e3_i8_o16_se0.25:head32")
CLASSES = ("bright", "dark", "striped")
MODES = ("RGB", "L", "P", "RGBA", "CMYK")


def _image(cls: int, k: int, rng: np.random.Generator) -> tuple[str, bytes]:
    """A learnable image of class ``cls`` in one of the modes (JPEG for RGB and CMYK, else PNG)."""
    h, w = 20 + 3 * k % 7, 24 + 5 * k % 9
    x = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    if cls == 0:
        x += 180
    elif cls == 2:
        x[:, ::4] = 250
    im = Image.fromarray(x)
    mode = MODES[k % len(MODES)]
    buf = io.BytesIO()
    if mode in ("RGB", "CMYK"):
        im.convert(mode).save(buf, "JPEG", quality=90)
        return f"{k}.jpg", buf.getvalue()
    if mode == "P":
        im.convert("P").save(buf, "PNG", transparency=0)
    else:
        im.convert(mode).save(buf, "PNG")
    return f"{k}.png", buf.getvalue()


def make_tree(root: Path, per_class: int = 10, split: bool = False, broken: bool = True) -> Path:
    rng = np.random.default_rng(0)
    for part in ("train", "val") if split else ("",):
        for c, name in enumerate(CLASSES):
            folder = root / part / name
            folder.mkdir(parents=True)
            for k in range(per_class if part != "val" else 3):
                fname, data = _image(c, k, rng)
                (folder / fname).write_bytes(data)
    (root / "README.txt").write_text("not an image")
    if broken:
        (root / ("train" if split else "") / "dark" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root


def as_zip(tree: Path, out: Path, compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(out, "w", compression) as zf:
        for f in sorted(tree.rglob("*")):
            zf.write(f, f"wrap/{f.relative_to(tree)}")  # a wrapping folder, like cifar10/ in the CIFAR zip
    return out


def as_tar(tree: Path, out: Path, mode: str = "w") -> Path:
    with tarfile.open(out, mode) as tf:
        tf.add(tree, arcname=".")
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("imagefolder")
    tree = make_tree(base / "tree")
    return {"folder": tree, "zip": as_zip(tree, base / "tree.zip", zipfile.ZIP_DEFLATED),
            "tar": as_tar(tree, base / "tree.tar")}


@pytest.mark.parametrize("kind", ["folder", "zip", "tar"])
def test_every_kind_indexes_the_same_images(sources, kind):
    index = open_imagefolder(str(sources[kind]))
    assert index.kind == kind and index.classes == CLASSES and len(index) == 31  # 30 images + broken.jpg
    assert index.ignored == 1 and index.val_folder is None  # README.txt
    data = load_dataset(f"imagefolder:{sources[kind]}", 12, holdout=6, seed=1)
    assert isinstance(data, Stream) and data.in_chans == 3 and (data.n_train, data.n_val) == (25, 6)
    assert data.split == {"holdout": 6, "seed": 1}
    assert np.bincount(index.labels[data.val_rows]).tolist() == [2, 2, 2]  # stratified, the count exact
    assert index.read(0) == (sources["folder"] / index.name(0).removeprefix("wrap/")).read_bytes()


def test_training_streams_counts_broken_images_and_is_seeded(sources):
    cfg = TrainConfig(epochs=2, batch_size=8, resolution=16, width_multiplier=1.0, device="cpu", lr=0.05,
                      holdout=0.2, workers=1, max_bad_fraction=0.1, hflip=True, crop_min_area=0.3, eval_crop=0.875)
    a = train_proxy(TINY, f"imagefolder:{sources['zip']}", cfg)
    b = train_proxy(TINY, f"imagefolder:{sources['zip']}", cfg.model_copy(update={"workers": 2}))
    assert a.ok and a.skipped_images == 1 and a.val_images + a.train_images == 31
    assert a.loss_curve == b.loss_curve and a.top1 == b.top1  # augmentation does not depend on the workers
    with pytest.raises(MnasError, match=r"1 of 31 images .* could not be decoded .* dark/broken\.jpg"):
        train_proxy(TINY, f"imagefolder:{sources['tar']}", cfg.model_copy(update={"max_bad_fraction": 0.0,
                                                                                 "workers": 0}))


def test_train_and_val_folders_are_the_split_unless_a_holdout_is_set(tmp_path):
    tree = make_tree(tmp_path / "tree", per_class=4, split=True, broken=False)
    data = load_dataset(f"imagefolder:{as_zip(tree, tmp_path / 's.zip')}", 8)
    assert data.split == {"folder": "val"} and (data.n_train, data.n_val) == (12, 9)
    held = load_dataset(f"imagefolder:{tree}", 8, holdout=3)
    assert held.split == {"holdout": 3, "seed": 0} and (held.n_train, held.n_val) == (9, 3)


def test_every_mode_becomes_rgb(sources):
    from mnas.data.streaming import DecodedImages

    index = open_imagefolder(str(sources["folder"]))
    rows = np.flatnonzero([not n.endswith(b"broken.jpg") for n in index.names])
    images = DecodedImages(index, rows, 10, train=False)
    shapes = {tuple(images[i][0].shape) for i in range(len(rows))}
    assert shapes == {(3, 10, 10)}


def _error(spec: str) -> str:
    with pytest.raises(MnasError) as e:
        load_dataset(spec, 8)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_input_is_one_line(tmp_path):
    empty = make_tree(tmp_path / "empty", per_class=2, broken=False)
    (empty / "nothing").mkdir()
    assert "with no images: nothing" in _error(f"imagefolder:{empty}")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.jpg").write_bytes(b"x")
    assert "no class folders" in _error(f"imagefolder:{flat}")
    no_images = tmp_path / "no_images"
    for cls in ("a", "b"):
        (no_images / cls).mkdir(parents=True)
        (no_images / cls / "notes.txt").write_text("x")
    assert "no images" in _error(f"imagefolder:{no_images}")
    (tmp_path / "damaged.zip").write_bytes(b"PK\x03\x04 not really")
    assert "not a readable zip" in _error(f"imagefolder:{tmp_path / 'damaged.zip'}")
    (tmp_path / "notes.txt").write_text("hello")
    assert "neither a folder" in _error(f"imagefolder:{tmp_path / 'notes.txt'}")
    gz = as_tar(empty, tmp_path / "c.tar.gz", "w:gz")
    assert "compressed tar" in _error(f"imagefolder:{gz}")
    classless = tmp_path / "classless"
    (classless / "train").mkdir(parents=True)
    (classless / "val" / "cat").mkdir(parents=True)
    (classless / "train" / "x.jpg").write_bytes(b"x")
    assert "no class folders" in _error(f"imagefolder:{classless}")
    extra = make_tree(tmp_path / "extra", per_class=2, split=True, broken=False)
    shutil.copytree(extra / "val" / "dark", extra / "val" / "zebra")
    assert "zebra in val/ but not in train/" in _error(f"imagefolder:{extra}")


CIFAR_ZIP = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg.zip"


@pytest.mark.skipif(not CIFAR_ZIP.is_file(), reason="needs the shared CIFAR-10 JPEG archive (../shared/datasets)")
def test_the_cifar10_jpeg_archive_streams():
    data = load_dataset(f"imagefolder:{CIFAR_ZIP}", 32)
    assert data.split == {"folder": "test"} and (data.n_train, data.n_val, data.num_classes) == (50000, 10000, 10)
    assert data.classes[:2] == ("airplane", "automobile")
    cfg = TrainConfig(resolution=32, device="cpu", epochs=1, batch_size=64, train_limit=256, holdout=200,
                      width_multiplier=0.25)
    r = train_proxy(Architecture.parse("stem8:ds_r1_k3_s1_e1_i8_o8:ir_r1_k3_s2_e3_i8_o16:head32"),
                    f"imagefolder:{CIFAR_ZIP}", cfg)
    assert r.ok and r.steps == 4 and (r.train_images, r.val_images) == (256, 200) and r.skipped_images == 0
