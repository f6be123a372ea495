"""The paper's config runs as written on an ImageNet-layout folder (issue 13, point 4): a tiny generated folder
of JPEGs stands in for ImageNet. Overridden, and only because the stand-in is tiny or this machine has no
cluster: the dataset path, the budget (2 trials), a held-out fraction instead of 50,000 images, the local
executor instead of a Ray cluster (so training runs here: batch 8 instead of 256, which at 224 px would need
more memory than this machine has, as the start-up check says), and no reference timings."""

import json

import numpy as np
import pytest
from PIL import Image

from mnas.testing import run_cli as mnas

CLASSES = ("n01440764", "n01443537", "n01484850")  # ImageNet-style synset folder names


def make_imagenet_layout(root, per_class=8, size=72):
    rng = np.random.default_rng(0)
    for k, cls in enumerate(CLASSES):
        d = root / "train" / cls
        d.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size + 8 * k, 3), dtype=np.uint8)
            pixels[..., k] = 255  # each class leans towards one colour
            Image.fromarray(pixels).save(d / f"{cls}_{i}.JPEG", quality=85)
    return root / "train"


@pytest.mark.slow
def test_the_paper_config_runs_on_an_imagenet_layout_folder(tmp_path):
    folder = make_imagenet_layout(tmp_path / "imagenet")
    run = tmp_path / "run"
    r = mnas("search", run, "-c", "configs/mnasnet-imagenet.yaml", "--set", f"proxy.dataset=imagefolder:{folder}",
             "--set", "trials=2", "--set", "proxy.holdout=0.25", "--set", "executor.kind=local",
             "--set", "proxy.batch_size=8", "--set", "references=false")
    assert r.returncode == 0, r.stderr
    trials = json.loads(mnas("trials", run, "--json").stdout)
    assert len(trials) == 2 and all(t["status"] == "completed" for t in trials), trials
    shown = json.loads(mnas("config", "show", "configs/mnasnet-imagenet.yaml", "--json").stdout)
    assert shown["proxy"]["resolution"] == 224 and shown["space"] == "mnasnet-paper"
