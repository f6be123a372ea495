"""Fuzzing (hypothesis) what a dataset's files may hold: archive members (names, declared sizes, bytes)
and the data cache's files (meta.json, the labels' header, the images' length). Whatever they hold: an
index or one ``MnasError`` line, and every member decodes to an image or counts as broken; never a
traceback, never more memory than a member's cap."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from mnas import MnasError
from mnas.data import build_cache, load_dataset
from mnas.data.imagefolder import open_imagefolder
from mnas.data.streaming import decode
from mnas.data.transforms import pil_eval
from test_data_imagefolder import as_zip, make_tree, write_deflated_zip

FUZZ = settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


def _image(mode: str, fmt: str) -> bytes:
    buf = io.BytesIO()
    size = (5, 4)
    im = {"F": lambda: Image.fromarray(np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)),
          "I;16": lambda: Image.fromarray(np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)}.get(
        mode, lambda: Image.new(mode, size))()
    im.save(buf, fmt)
    return buf.getvalue()


IMAGES = [_image("RGB", "JPEG"), _image("L", "PNG"), _image("P", "PNG"), _image("RGBA", "PNG"),
          _image("I;16", "PNG"), _image("F", "TIFF"), _image("CMYK", "TIFF"), _image("1", "BMP")]
SEGMENTS = ["a", "b", "train", "val", "test", "wrap", "..", ".", "", ".hidden", "__MACOSX", "x.png", "y.jpg",
            "é.tif", "z.txt", "c d.bmp"]
# mostly CLASS/FILE under an optional wrapping or split folder, so that many archives index
segments = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map("/".join)
structured = st.tuples(st.sampled_from(["", "wrap/", "train/", "val/", "wrap/train/"]), st.sampled_from("abc"),
                       st.sampled_from(SEGMENTS[11:])).map("{0[0]}{0[1]}/{0[2]}".format)
names = st.integers(0, 3).flatmap(lambda n: segments if n == 0 else structured)
payloads = st.one_of(st.sampled_from(IMAGES), st.binary(max_size=64),
                     st.tuples(st.sampled_from(IMAGES), st.integers(0, 200)).map(lambda t: t[0][:t[1]]))
members = st.lists(st.tuples(names, payloads), min_size=1, max_size=8)


def _check(path: Path) -> None:
    """Index ``path`` and decode every member: MnasError (one line) or images and broken ones."""
    try:
        index = open_imagefolder(str(path))
    except MnasError as e:
        assert "\n" not in str(e)
        event("refused")  # --hypothesis-show-statistics: how many were indexed
        return
    event("indexed")
    for row in range(len(index)):
        out = decode(index, row, lambda im: pil_eval(im, 4, 1.0))
        assert out is None or (out.shape == (3, 4, 4) and out.dtype == np.uint8)
    try:
        data = load_dataset(f"imagefolder:{path}", 4, holdout=1)
        assert data.num_classes >= 2
    except MnasError as e:
        assert "\n" not in str(e)


def _write(kind: str, files: list[tuple[str, bytes]], out: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile's duplicate names
        if kind.startswith("zip"):
            method = zipfile.ZIP_DEFLATED if kind == "zip-deflated" else zipfile.ZIP_STORED
            with zipfile.ZipFile(out, "w", method) as zf:
                for name, data in files:
                    zf.writestr(name or "_", data)
        elif kind == "tar":
            with tarfile.open(out, "w") as tf:
                for name, data in files:
                    info = tarfile.TarInfo(name or "_")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        else:
            out.mkdir()
            for name, data in files:
                parts = [p for p in name.split("/") if p not in ("", ".", "..")]
                try:
                    (out / Path(*parts or ["_"])).parent.mkdir(parents=True, exist_ok=True)
                    (out / Path(*parts or ["_"])).write_bytes(data)
                except OSError:  # a file where a folder is wanted, or the reverse
                    pass
    return out


@settings(FUZZ)
@given(files=members, kind=st.sampled_from(["zip-stored", "zip-deflated", "tar", "folder"]),
       flips=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), max_size=3))
def test_archive_members_never_traceback(files, kind, flips):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(kind, files, Path(tmp) / ("tree" if kind == "folder" else f"data.{kind[:3]}"))
        if flips and path.is_file():  # damage the archive's headers or data
            raw = bytearray(path.read_bytes())
            for at, value in flips:
                raw[at % len(raw)] = value
            path.write_bytes(bytes(raw))
        _check(path)


@settings(FUZZ)
@given(files=st.lists(st.tuples(names, st.sampled_from(IMAGES), st.integers(0, 2 ** 32 - 1), st.booleans()),
                      min_size=1, max_size=6))
def test_declared_sizes_never_traceback(files):
    """Members whose central directory declares any size (true or not) and any CRC."""
    entries = []
    for name, data, size, truthful in files:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = c.compress(data) + c.flush()
        entries.append((name or "_", packed, zlib.crc32(data) if truthful else size & 0xFFFF,
                        len(data) if truthful else size))
    with tempfile.TemporaryDirectory() as tmp:
        _check(write_deflated_zip(Path(tmp) / "sizes.zip", entries))


# -- the cache's files

@pytest.fixture(scope="module")
def good_cache(tmp_path_factory) -> tuple[str, Path]:
    base = tmp_path_factory.mktemp("fuzzcache")
    source = as_zip(make_tree(base / "tree", per_class=3, broken=False), base / "tree.zip")
    spec = f"imagefolder:{source}"
    build_cache(load_dataset(spec, 8, seed=1), base / "cache", workers=0)
    return spec, base / "cache"


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                        max_size=3), max_leaves=8)
META_KEYS = ["format", "source", "resolution", "split", "classes", "n_train", "n_val", "mean", "std", "skipped",
             "skipped_files", "identity", "mnas", "extra"]
DESCRS = ["<i8", "<i4", "|u1", "<f8", "|b1", ">i8", "<U3", "|V8", "|O", "<c16"]
shapes = st.lists(st.integers(0, 10 ** 12) | st.integers(0, 30), max_size=3).map(tuple)


@st.composite
def damages(draw) -> tuple[str, object]:
    what = draw(st.sampled_from(["meta key", "meta bytes", "labels header", "labels bytes", "images size"]))
    if what == "meta key":
        return what, (draw(st.sampled_from(META_KEYS)), draw(st.none() | st.just("delete") | json_values))
    if what == "labels header":
        return what, (draw(st.sampled_from(DESCRS)), draw(shapes), draw(st.booleans()), draw(st.integers(0, 400)))
    if what == "images size":
        return what, draw(st.integers(0, 2000))
    return what, draw(st.binary(max_size=120) | st.integers(0, 500))


def _damage(folder: Path, what: str, how) -> None:
    if what == "meta key":
        meta = json.loads((folder / "meta.json").read_text())
        key, value = how
        if value == "delete":
            meta.pop(key, None)
        else:
            meta[key] = value
        (folder / "meta.json").write_text(json.dumps(meta))
    elif what in ("meta bytes", "labels bytes"):
        target = folder / ("meta.json" if what == "meta bytes" else "labels.npy")
        target.write_bytes(target.read_bytes()[:how] if isinstance(how, int) else how)
    elif what == "labels header":
        descr, shape, fortran, n = how
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
        (folder / "labels.npy").write_bytes(buf.getvalue() + bytes(n))
    else:
        with open(folder / "images.u8", "r+b") as f:
            f.truncate(how)


@settings(FUZZ)
@given(damage=damages())
def test_cache_headers_never_traceback(good_cache, damage):
    spec, good = good_cache
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cache"
        shutil.copytree(good, folder)
        _damage(folder, *damage)
        try:
            data = load_dataset(spec, 8, seed=1, cache=str(folder))
        except MnasError as e:
            assert "\n" not in str(e)
            return
        assert data.n_train + data.n_val == len(data.x_train) + len(data.x_val)
        assert int(max(data.y_train.max(), data.y_val.max())) < data.num_classes
