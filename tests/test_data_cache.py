"""The memory-mapped cache: built once from a streamed source, read without it, refused for another
source, resolution or split; ``proxy.cache`` builds it on first use and trials train from it."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from mnas import MnasError
from mnas.cli import main
from mnas.data import load_dataset
from mnas.train import TrainTask, train_architecture
from mnas.data.streaming import DecodedImages
from test_data_imagefolder import TINY, as_zip, make_tree


def test_cache_holds_the_decoded_split_and_is_read_without_the_source(tmp_path, capsys):
    source = as_zip(make_tree(tmp_path / "tree", per_class=6), tmp_path / "tree.zip")
    spec, out = f"imagefolder:{source}", tmp_path / "c16"
    assert main(["data", "cache", spec, "--resolution", "16", "--dir", str(out), "--holdout", "3",
                 "--max-bad-fraction", "0.1", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["train"], info["val"], info["streamed"]) == (15, 3, False)  # broken.jpg skipped
    meta = json.loads((out / "meta.json").read_text())
    assert meta["split"] == {"holdout": 3, "seed": 0} and meta["skipped_files"] == ["wrap/dark/broken.jpg"]
    assert (out / "images.u8").stat().st_size == 18 * 3 * 16 * 16

    stream = load_dataset(spec, 16, holdout=3)
    expected = DecodedImages(stream.index, stream.val_rows, 16, train=False)
    source.unlink()  # the cache is read on its own
    cached = load_dataset(spec, 16, holdout=3, cache=str(out))
    assert torch.equal(cached.x_val, torch.stack([expected[i][0] for i in range(3)]))
    assert isinstance(cached.x_train.numpy().base, np.memmap) or cached.x_train.numpy().base is not None
    for wrong in ({"holdout": 4}, {"seed": 1}):
        with pytest.raises(MnasError, match="holds imagefolder:.* at 16 px, split"):
            load_dataset(spec, 16, **{"holdout": 3, **wrong}, cache=str(out))
    with pytest.raises(MnasError, match="this run asks for .* at 32 px"):
        load_dataset(spec, 32, holdout=3, cache=str(out))
    assert main(["data", "cache", spec, "--resolution", "16", "--dir", str(out)]) == 2
    assert "a cache already" in capsys.readouterr().err


def test_proxy_cache_is_built_on_first_use_and_trains(tmp_path):
    source = as_zip(make_tree(tmp_path / "tree", per_class=8, split=True), tmp_path / "tree.zip")
    proxy = TrainTask(dataset=f"imagefolder:{source}", cache=str(tmp_path / "cache"), resolution=12,
                        width_multiplier=1.0, epochs=1, batch_size=8, device="cpu", workers=0, max_bad_fraction=0.1)
    first = train_architecture(TINY, proxy, seed=0)
    assert first.ok and first.split == {"folder": "val", "cache": str((tmp_path / "cache").resolve())}
    assert (first.train_images, first.val_images) == (24, 9)
    again = train_architecture(TINY, proxy, seed=0)
    assert (again.top1, again.loss_curve) == (first.top1, first.loss_curve)
    with pytest.raises(MnasError, match="held in memory already"):
        train_architecture(TINY, TrainTask(dataset="digits", cache=str(tmp_path / "other")), seed=0)
    with pytest.raises(MnasError, match="no cache at"):
        load_dataset(proxy.dataset, 12, cache=str(tmp_path / "other"))


def cache_cli(args: list[str]) -> int:
    return main(["data", "cache", *args, "--resolution", "16", "--workers", "0"])


def _refusal(spec: str, cache, **kw) -> str:
    with pytest.raises(MnasError) as e:
        load_dataset(spec, 16, cache=str(cache), **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_cache_is_refused_when_its_source_is_replaced_at_the_same_path(tmp_path, capsys):
    """The cache was keyed by path only: another dataset at the same path trained on the stale cache."""
    source = as_zip(make_tree(tmp_path / "a", per_class=4, broken=False), tmp_path / "data.zip")
    spec, out = f"imagefolder:{source}", tmp_path / "cache"
    assert cache_cli([spec, "--dir", str(out), "--holdout", "3"]) == 0
    assert load_dataset(spec, 16, holdout=3, cache=str(out)).n_train == 9
    os.utime(source, ns=(1, 1))  # the same archive touched: its index still matches, the cache is used
    assert load_dataset(spec, 16, holdout=3, cache=str(out)).n_train == 9
    as_zip(make_tree(tmp_path / "b", per_class=6, broken=False), source)  # another dataset, same path
    why = _refusal(spec, out, holdout=3)
    assert f"cache {out} was built from another dataset at {source} (12 images; now 18 images): rebuild it " \
           f"with 'mnas data cache {spec} --resolution 16 --dir {out} --holdout 3 --rebuild'" == why
    assert cache_cli([spec, "--dir", str(out), "--holdout", "3", "--rebuild"]) == 0
    assert load_dataset(spec, 16, holdout=3, cache=str(out)).n_train == 15
    # a folder: an image added to a class changes that folder's time, and the index
    tree = make_tree(tmp_path / "tree", per_class=4, broken=False)
    spec = f"imagefolder:{tree}"
    assert cache_cli([spec, "--dir", str(tmp_path / "fc")]) == 0
    shutil.copy(tree / "dark" / "1.png", tree / "dark" / "new.png")
    assert "(12 images; now 13 images): rebuild it" in _refusal(spec, tmp_path / "fc")
    capsys.readouterr()
    other = tmp_path / "other"
    (other / "notes").mkdir(parents=True)
    assert cache_cli([spec, "--dir", str(other), "--rebuild"]) == 2
    assert "is not a cache (it holds other files)" in capsys.readouterr().err and (other / "notes").is_dir()


def _put(path, data) -> None:
    path.write_bytes(data) if isinstance(data, bytes) else np.save(path, data)


def test_a_damaged_cache_is_one_line_naming_the_command_that_rebuilds_it(tmp_path):
    source = as_zip(make_tree(tmp_path / "tree", per_class=3, broken=False), tmp_path / "tree.zip")
    spec, good = f"imagefolder:{source}", tmp_path / "good"
    assert cache_cli([spec, "--dir", str(good), "--seed", "2"]) == 0
    meta = json.loads((good / "meta.json").read_text())
    text = (good / "meta.json").read_bytes()
    damages = {
        "truncated meta": ("meta.json", text[:len(text) // 2]),
        "garbage meta": ("meta.json", b"\xff\xfe\x00garbage"),
        "meta not an object": ("meta.json", b"[1, 2]"), "deep meta": ("meta.json", b"[" * 100000),
        "missing key": ("meta.json", {k: v for k, v in meta.items() if k != "n_train"}),
        "wrong type": ("meta.json", {**meta, "resolution": "sixteen"}),
        "NaN mean": ("meta.json", {**meta, "mean": [float("nan")] * 3}),
        "zero std": ("meta.json", {**meta, "std": [0, 0, 0]}),
        "one class": ("meta.json", {**meta, "classes": ["a"]}),
        "more images": ("meta.json", {**meta, "n_train": meta["n_train"] + 1}),
        "bad identity": ("meta.json", {**meta, "identity": {"path": 3}}),
        "old format": ("meta.json", {**meta, "format": 1}),
        "no meta": ("meta.json", None), "no images": ("images.u8", None), "no labels": ("labels.npy", None),
        "short images": ("images.u8", b"\x00" * 100),
        "float labels": ("labels.npy", np.zeros(meta["n_train"] + meta["n_val"])),
        "short labels": ("labels.npy", np.zeros(3, np.int64)),
        "label out of range": ("labels.npy", np.full(meta["n_train"] + meta["n_val"], 7)),
        "object labels": ("labels.npy", np.array([None] * (meta["n_train"] + meta["n_val"]))),
        "garbage labels": ("labels.npy", b"\x93NUMPY garbage"),
        "labels claiming a huge shape": ("labels.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<i8', 'fortran_order': "
                                         b"False, 'shape': (1000000000000,), }" + b" " * 50 + b"\n"),
    }
    rebuild = f"mnas data cache {spec} --resolution 16 --dir {{}} --seed 2 --rebuild"
    for k, (what, (name, data)) in enumerate(damages.items()):
        bad = tmp_path / f"bad{k}"
        shutil.copytree(good, bad)
        if data is None:
            (bad / name).unlink()
        elif isinstance(data, dict):
            (bad / name).write_text(json.dumps(data))
        else:
            _put(bad / name, data)
        why = _refusal(spec, bad, seed=2)
        assert why.endswith(f"rebuild it with '{rebuild.format(bad)}'") and str(bad) in why, (what, why)
    assert cache_cli([spec, "--dir", str(tmp_path / "bad0"), "--seed", "2", "--rebuild"]) == 0
    assert load_dataset(spec, 16, seed=2, cache=str(tmp_path / "bad0")).n_train == 6
