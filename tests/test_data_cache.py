"""The memory-mapped cache: built once from a streamed source, read without it, refused for another
source, resolution or split; ``proxy.cache`` builds it on first use and trials train from it."""

from __future__ import annotations

import json

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
