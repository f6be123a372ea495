"""Streamed ``imagefolder:`` datasets: the same tiny generated ImageFolder as a folder, a zip and a tar,
every image mode made RGB, non-images ignored and broken images skipped and counted, seeded splits, and
the one-line errors of bad input."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
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
@pytest.mark.slow  # seconds: kept out of make test-fast
def test_the_cifar10_jpeg_archive_streams():
    data = load_dataset(f"imagefolder:{CIFAR_ZIP}", 32)
    assert data.split == {"folder": "test"} and (data.n_train, data.n_val, data.num_classes) == (50000, 10000, 10)
    assert data.classes[:2] == ("airplane", "automobile")
    cfg = TrainConfig(resolution=32, device="cpu", epochs=1, batch_size=64, train_limit=256, holdout=200,
                      width_multiplier=0.25)
    r = train_proxy(Architecture.parse("stem8:ds_r1_k3_s1_e1_i8_o8:ir_r1_k3_s2_e3_i8_o16:head32"),
                    f"imagefolder:{CIFAR_ZIP}", cfg)
    assert r.ok and r.steps == 4 and (r.train_images, r.val_images) == (256, 200) and r.skipped_images == 0


# -- bounded reading: archives whose members expand without bound, symlink loops, unusual image modes

def _deflated_zeros(mib: int) -> bytes:
    """A raw deflate stream of ``mib`` MiB of zeros, made in milliseconds: one fully flushed block of a
    MiB repeated (each decodes on its own), then the final empty block."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(2 ** 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def _crc_of_zeros(mib: int) -> int:
    crc, chunk = 0, bytes(2 ** 20)
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    return crc


def write_deflated_zip(out: Path, members: list[tuple[str, bytes, int, int]]) -> Path:
    """A zip of members given as (name, raw deflate data, CRC-32, size once inflated), written by hand:
    zipfile would have to deflate every byte itself (PKWARE APPNOTE 4.3.7, 4.3.12, 4.3.16)."""
    local, central = bytearray(), bytearray()
    for name, data, crc, size in members:
        raw = name.encode()
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(data), size, len(raw),
                               0, 0, 0, 0, 0, len(local)) + raw
        local += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), size, len(raw), 0)
        local += raw + data
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(local), 0)
    out.write_bytes(bytes(local + central + end))
    return out


BOMB_CHILD = """
import json, sys
from mnas.cli import main
from mnas.data.imagefolder import open_imagefolder
code = main(["data", "show", "imagefolder:" + sys.argv[1]])
index = open_imagefolder(sys.argv[2])  # declares 1 KiB per member, inflates to 1 GiB
try:
    index.read(0)
    read = "read"
except ValueError as e:
    read = str(e)
# this process's peak RSS: VmHWM (ru_maxrss would include the parent's peak, kept across execve)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"code": code, "read": read, "peak_mib": peak / 1024}))
"""


@pytest.mark.slow  # a few seconds: a process that imports torch; the caps' fast test is the next one
def test_a_zip_bomb_is_refused_and_memory_stays_bounded(tmp_path):
    """The issue's bound: a 10 MB zip whose members expand to 10 GB (real deflate streams, true sizes
    and CRCs) is refused in one line with a peak RSS under 500 MB; and a member whose central directory
    understates its size is inflated only up to what it declares."""
    gib, crc = _deflated_zeros(1024), _crc_of_zeros(1024)
    bomb = write_deflated_zip(tmp_path / "bomb.zip", [(f"bomb/{c}/{k}.png", gib, crc, 2 ** 30)
                                                       for c in ("a", "b") for k in range(5)])
    assert 9 * 2 ** 20 < bomb.stat().st_size < 12 * 2 ** 20
    liar = write_deflated_zip(tmp_path / "liar.zip", [(f"{c}/0.png", _deflated_zeros(1024 if c == "a" else 1), 0,
                                                       1024) for c in ("a", "b")])
    out = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(bomb), str(liar)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    error = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert result["code"] == 2 and len(error) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "bomb/a/0.png expands to 1,024.0 MiB, over the limit of 512.0 MiB per image" in error[0]
    assert result["read"] == "member expands past the 1024 bytes its archive declares"
    assert result["peak_mib"] < 500, result


def test_expansion_caps_refuse_each_way_and_pass_real_images(tmp_path, monkeypatch, sources):
    import mnas.data.imagefolder as imagefolder

    def refusal(path: Path) -> str:  # the index, not load_dataset: that is cached in-process by path
        with pytest.raises(MnasError) as e:
            open_imagefolder(str(path))
        assert "\n" not in str(e.value)
        return str(e.value)

    ten, crc = _deflated_zeros(10), _crc_of_zeros(10)
    steep = write_deflated_zip(tmp_path / "steep.zip", [(f"{c}/0.png", ten, crc, 10 * 2 ** 20) for c in "ab"])
    assert "a/0.png expands 1011 times (0.0 MiB to 10.0 MiB), over the limit of 100 (a zip bomb?)" in \
        refusal(steep)
    # a ratio within the limit per member, over it in all: the small members are under RATIO_FLOOR
    monkeypatch.setattr(imagefolder, "RATIO_FLOOR", 15 * 2 ** 20)
    assert "its 2 images expand to 20.0 MiB from an archive of 0.0 MiB" in refusal(steep)
    monkeypatch.setattr(imagefolder, "MAX_MEMBER_BYTES", 500)
    assert "expands to 0.0 MiB, over the limit of 0.0 MiB per image" in refusal(sources["tar"])
    with pytest.raises(ValueError, match="over 500 bytes"):  # a folder's file is read up to the cap
        open_imagefolder(str(sources["folder"])).read(0)
    monkeypatch.undo()
    index = open_imagefolder(str(sources["zip"]))  # a deflated archive of real images: within every cap
    assert index.deflated.any() and all(index.read(i) for i in range(len(index)))


def test_a_member_that_is_not_what_its_archive_declares_is_a_broken_image(tmp_path):
    from mnas.data.streaming import DecodedImages

    png = io.BytesIO()
    Image.new("RGB", (6, 6), (200, 10, 10)).save(png, "PNG")
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    good = c.compress(png.getvalue()) + c.flush()
    crc, n = zlib.crc32(png.getvalue()), len(png.getvalue())
    archive = write_deflated_zip(tmp_path / "liars.zip", [
        ("a/good.png", good, crc, n), ("a/short.png", good[:len(good) // 2], crc, n),
        ("b/long.png", good, crc, n - 1), ("b/garbage.png", b"\x00not deflate", crc, n),
        ("b/good.png", good, crc, n)])
    index = open_imagefolder(str(archive))
    images = DecodedImages(index, np.arange(len(index)), 4, train=False)
    broken = sorted(images[i][2] for i in range(len(index)) if images[i][0] is None)
    assert broken == ["a/short.png", "b/garbage.png", "b/long.png"]


def test_symlinks_to_folders_are_not_followed(tmp_path):
    """A link to .. looped back over the tree (24 images became 984 with wrong labels): folders that
    are links are not followed, so the count and labels stay right; links to image files are read."""
    root = make_tree(tmp_path / "tree", per_class=2, broken=False)
    outside = tmp_path / "outside" / "cls"
    outside.mkdir(parents=True)
    image = next((root / "bright").iterdir())
    (outside / "x.png").write_bytes(image.read_bytes())
    (root / "bright" / "loop").symlink_to("..")
    (root / "dark" / "self").symlink_to(".")
    (root / "elsewhere").symlink_to(outside)  # would be a fourth class, from outside the root
    (root / "alias").symlink_to("striped")    # the same images twice, under another label
    (root / "striped" / "linked.png").symlink_to(image)
    index = open_imagefolder(str(root))
    assert index.classes == CLASSES and len(index) == 7
    for name, label in zip(index.names, index.labels):
        assert name.decode().split("/")[0] == CLASSES[label]
    assert index.read(int(np.flatnonzero(index.names == b"striped/linked.png")[0])) == image.read_bytes()
    only_links = tmp_path / "only_links"
    only_links.mkdir()
    (only_links / "a").symlink_to(root / "bright")
    (only_links / "b").symlink_to(root / "dark")
    assert "2 symlink(s) to folders are not followed: a, b" in _error(f"imagefolder:{only_links}")


def test_a_file_that_is_not_regular_is_a_broken_image(tmp_path):
    root = make_tree(tmp_path / "tree", per_class=2, broken=False)
    os.mkfifo(root / "dark" / "fifo.png")  # opening it for reading would wait for a writer forever
    (root / "dark" / "zero.png").symlink_to("/dev/zero")  # reading it would never end
    index = open_imagefolder(str(root))
    for name in (b"dark/fifo.png", b"dark/zero.png"):
        with pytest.raises(ValueError, match="not a regular file"):
            index.read(int(np.flatnonzero(index.names == name)[0]))


def _saved(im: Image.Image, fmt: str, **kw) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_unusual_modes_decode_to_the_right_pixels():
    """16-bit and float grey came out near white or black (Pillow clips them to 8 bits): they are scaled;
    palette, alpha and CMYK keep their colours; a float image of no known range is refused."""
    from mnas.data.transforms import pil_eval

    grey16 = np.full((5, 5), 40000, np.uint16)
    cases = [
        (_saved(Image.fromarray(grey16), "PNG"), "I;16", 156),  # 40000 / 65535 x 255
        (_saved(Image.fromarray(grey16), "TIFF"), "I;16", 156),
        (_saved(Image.fromarray(grey16.astype(np.int32)), "TIFF"), "I", 156),
        (_saved(Image.fromarray(np.full((5, 5), 100, np.int32)), "TIFF"), "I", 100),  # 8-bit values held as I
        (_saved(Image.fromarray(np.full((5, 5), 0.5, np.float32)), "TIFF"), "F", 128),
        (_saved(Image.fromarray(np.full((5, 5), 100.0, np.float32)), "TIFF"), "F", 100),
        (_saved(Image.new("LA", (5, 5), (90, 40)), "PNG"), "LA", 90),
        (_saved(Image.new("RGBA", (5, 5), (10, 20, 30, 0)), "PNG"), "RGBA", (10, 20, 30)),
        (_saved(Image.new("RGB", (5, 5), (10, 20, 30)).quantize(2), "PNG"), "P", (10, 20, 30)),
        (_saved(Image.new("RGB", (5, 5), (10, 20, 30)).quantize(2), "PNG", transparency=0), "P", (10, 20, 30)),
        (_saved(Image.new("CMYK", (5, 5), (0, 255, 0, 0)), "TIFF"), "CMYK", (255, 0, 255)),
    ]
    for im, mode, value in cases:
        assert im.mode == mode
        out = pil_eval(im, 4, 1.0)
        assert out.shape == (3, 4, 4) and out.dtype == np.uint8
        want = np.broadcast_to(np.array(value, dtype=np.uint8).reshape(-1, 1, 1), out.shape)
        assert np.array_equal(out, want), (mode, out[:, 0, 0])
    for values in (np.full((5, 5), -3.0), np.full((5, 5), 1e6), np.full((5, 5), np.nan)):
        with pytest.raises(ValueError, match="F image with values"):
            pil_eval(_saved(Image.fromarray(values.astype(np.float32)), "TIFF"), 4, 1.0)


def test_a_dataset_of_one_class_is_refused(tmp_path):
    for part in ("train", "val"):  # train/cat and val/cat: one class, top-1 1.0 whatever the network
        (tmp_path / "one" / part / "cat").mkdir(parents=True)
        for k in range(4):
            Image.new("RGB", (6, 6), (k, k, k)).save(tmp_path / "one" / part / "cat" / f"{k}.png")
    assert "(train/) has one class folder (cat): a classifier needs at least two classes" in \
        _error(f"imagefolder:{tmp_path / 'one'}")
    npz = tmp_path / "one.npz"
    np.savez(npz, x=np.zeros((6, 4, 4), np.uint8), y=np.full(6, 3))
    assert "images of one class only (3): a classifier needs at least two classes" in _error(f"npz:{npz}")


def test_npz_contents_are_validated_in_one_line(tmp_path):
    def npz_error(**arrays) -> str:
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.npz"
        np.savez(path, **arrays)
        return _error(f"npz:{path}")

    x = np.zeros((4, 5, 5), np.uint8)
    assert "x holds 0 image(s); a dataset needs at least 2" in npz_error(x=np.zeros((0, 5, 5), np.uint8),
                                                                       y=np.zeros(0, np.int64))
    assert "y holds label 1099511627776; labels are class numbers 0..99999" in \
        npz_error(x=x, y=np.array([0, 1, 0, 2 ** 40]))
    assert "x holds values 0..40000; images are integers 0..255 or floats in [0, 1]" in \
        npz_error(x=np.array([0, 40000, 1, 2], np.uint16).reshape(4, 1, 1) * np.ones((5, 5), np.uint16),
                  y=np.arange(4) % 2)
    assert "x holds NaN or infinite values" in npz_error(x=np.full((4, 5, 5), np.nan), y=np.arange(4) % 2)
    assert "x is of dtype complex128" in npz_error(x=np.zeros((4, 5, 5), complex), y=np.arange(4) % 2)
    assert "x must be (N, H, W)" in npz_error(x=np.zeros((4, 0, 5), np.uint8), y=np.arange(4) % 2)
    assert "y must be 4 non-negative integer labels" in npz_error(x=x, y=np.array([0.5, 1, 0, 1]))
    # a header declaring a terabyte over a few bytes of data: refused before numpy allocates it
    huge = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": (10 ** 6, 1000, 1000)}
    np.lib.format.write_array_header_1_0(huge, header)
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", huge.getvalue() + b"\x00" * 64)
        zf.writestr("y.npy", b"")
    assert "array 'x' of shape (1000000, 1000, 1000) is 931.3 GiB, over the 4 GiB" in _error(f"npz:{path}")
