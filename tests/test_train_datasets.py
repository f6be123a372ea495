"""Proxy datasets: every built-in loads from small files written here, splits are stratified and seeded,
and a loader registered by name is used like a built-in."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from mnas import MnasError
from mnas.registry import Registry
from mnas.data import datasets, list_datasets, load_dataset
from mnas.data.datasets import stratified_split
from mnas.data.feeds import batch_preparer


def test_animal_mnist_default_split():
    d = load_dataset("animal-mnist", 28)
    assert (d.n_train, d.n_val, d.num_classes, d.in_chans) == (8000, 2000, 10, 1)
    assert d.x_train.dtype == torch.uint8 and d.x_train.shape[1:] == (1, 28, 28)
    assert torch.bincount(d.y_val).tolist() == [200] * 10
    assert load_dataset("animal-mnist", 28) is d  # cached in-process
    assert d.classes[0] == "bear"


def test_builtin_small_sets_and_resize():
    d = load_dataset("digits", 16)
    assert d.x_train.shape[1:] == (1, 16, 16) and d.n_train + d.n_val == 1797
    m = load_dataset("mnist-5k", 14, holdout=0.1)
    assert m.n_val == 500 and m.x_val.shape[1:] == (1, 14, 14)
    x = batch_preparer(m, torch.device("cpu"), torch.channels_last)(m.x_train[:256])
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 0.3 and 0.7 < float(x.std()) < 1.3


def test_split_is_seeded_and_disjoint():
    y = np.repeat(np.arange(3), 10)
    a_tr, a_va = stratified_split(y, 0.2, 0)
    b_tr, b_va = stratified_split(y, 0.2, 0)
    c_tr, c_va = stratified_split(y, 0.2, 1)
    assert torch.equal(a_va, b_va) and not torch.equal(a_va, c_va)
    assert len(a_va) == 6 and set(a_tr.tolist()).isdisjoint(a_va.tolist())
    assert np.bincount(y[a_va.numpy()]).tolist() == [2, 2, 2]


def test_npz_grey_and_colour(tmp_path):
    rng = np.random.default_rng(0)
    grey = tmp_path / "g.npz"
    np.savez(grey, x=rng.integers(0, 256, (20, 10, 10), dtype=np.uint8), y=np.arange(20) % 2)
    d = load_dataset(f"npz:{grey}", 12)
    assert (d.in_chans, d.num_classes, d.n_val) == (1, 2, 4) and d.x_train.shape[-1] == 12
    colour = tmp_path / "c.npz"
    np.savez(colour, x=rng.random((12, 3, 8, 8)).astype(np.float32), y=np.arange(12) % 3)  # NCHW floats in [0,1]
    d = load_dataset(f"npz:{colour}", 8)
    assert d.in_chans == 3 and d.num_classes == 3 and int(d.x_train.max()) > 200
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 4, 4)))
    with pytest.raises(MnasError, match="'x'"):
        load_dataset(f"npz:{bad}", 8)


def test_cifar10_and_cifar100_pickles(tmp_path):
    rng = np.random.default_rng(0)
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    for i in (1, 2):
        with open(c10 / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                         b"labels": list(range(10))}, f)
    with open(c10 / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    d = load_dataset(f"cifar10:{tmp_path}", 16)  # the parent folder is accepted too
    assert (d.in_chans, d.num_classes, d.n_train + d.n_val) == (3, 10, 20) and d.classes[3] == "c3"
    c100 = tmp_path / "c100"
    c100.mkdir()
    with open(c100 / "train", "wb") as f:
        pickle.dump({b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8), b"fine_labels": [0, 1] * 4}, f)
    d = load_dataset(f"cifar100:{c100}", 32)
    assert d.num_classes == 2 and d.x_train.shape[1:] == (3, 32, 32)
    with pytest.raises(MnasError, match="cifar10"):
        load_dataset(f"cifar10:{c100}", 32)


def test_imagefolder_streams_grey_and_colour_as_rgb(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "rgb" / cls).mkdir(parents=True)
        (tmp_path / "grey" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "rgb" / cls / f"{i}.png")
            Image.fromarray(rng.integers(0, 256, (9, 9), dtype=np.uint8)).save(tmp_path / "grey" / cls / f"{i}.png")
    d = load_dataset(f"imagefolder:{tmp_path / 'rgb'}", 16)
    assert d.in_chans == 3 and d.classes == ("cat", "dog") and (d.n_train, d.n_val) == (4, 2)
    assert load_dataset(f"imagefolder:{tmp_path / 'grey'}", 8).in_chans == 3


def test_a_holdout_count_is_exact_and_stratified():
    y = np.repeat(np.arange(3), [10, 20, 30])
    tr, va = stratified_split(y, 12, 0)
    assert len(va) == 12 and np.bincount(y[va.numpy()]).tolist() == [2, 4, 6]
    assert len(stratified_split(y, 7, 0)[1]) == 7  # shares 1.17 / 2.33 / 3.5: largest remainders
    d = load_dataset("digits", 8, holdout=500)
    assert d.n_val == 500 and d.split == {"holdout": 500, "seed": 0}
    with pytest.raises(MnasError, match="cannot hold out 60"):
        stratified_split(y, 60, 0)


def test_errors_are_one_line_mnas_errors(tmp_path):
    with pytest.raises(MnasError, match="unknown dataset"):
        load_dataset("imagenet", 28)
    with pytest.raises(MnasError, match="not found"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}", 28)
    with pytest.raises(MnasError, match="needs a path"):
        load_dataset("cifar10", 28)
    names = {d["name"] for d in list_datasets()}
    assert names == {"animal-mnist", "mnist-5k", "digits", "imagefolder", "cifar10", "cifar100", "npz"}


def test_a_registered_loader_is_a_dataset(monkeypatch, tmp_path):
    def two_blobs(path, resolution):
        """two classes of constant images"""
        x = np.zeros((40, 6, 6), dtype=np.uint8)
        x[20:] = 200
        return x, np.repeat([0, 1], 20), ["dark", "light"]

    def floats(path, resolution):
        return np.zeros((4, 6, 6), dtype=np.float32), np.zeros(4, dtype=np.int64), ["a"]

    def folder(path, resolution):
        return two_blobs(path, resolution)

    folder.takes_path = True
    registry = Registry("dataset", "mnas.datasets.none", builtins={})
    for name, loader in {"blobs": two_blobs, "floats": floats, "folder": folder}.items():
        registry.register(name, loader)
    monkeypatch.setattr(datasets, "DATASETS", registry)

    d = load_dataset("blobs", 12, seed=7)
    assert (d.name, d.classes, d.n_val, d.x_train.shape[-1]) == ("blobs", ("dark", "light"), 8, 12)
    assert load_dataset(f"folder:{tmp_path}", 12).name == f"folder:{tmp_path.resolve()}"
    with pytest.raises(MnasError, match="takes no path"):
        load_dataset(f"blobs:{tmp_path}", 12)
    with pytest.raises(MnasError, match="needs a path"):
        load_dataset("folder", 12)
    with pytest.raises(MnasError, match="expected uint8"):
        load_dataset("floats", 12)
    listed = {d["name"]: d for d in list_datasets()}
    assert listed["blobs"]["description"] == "two classes of constant images" and listed["blobs"]["available"]
    assert listed["folder"]["spec"] == "folder:PATH"
