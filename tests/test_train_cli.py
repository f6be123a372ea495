"""``mnas train`` and ``mnas data``: JSON fields, one-line errors with exit code 2, a dataset plugin."""

from __future__ import annotations

import json

import numpy as np

from mnas.cli import main
from mnas.testing import install_plugin, plugins_on_path, run_cli


def test_data_list_json(capsys):
    assert main(["data", "list", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert {"animal-mnist", "npz", "cifar10"} <= {d["name"] for d in items}


def test_train_json_on_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (80, 8, 8), dtype=np.uint8)
    y = np.arange(80) % 2
    x[y == 1, :, :4] = 255  # a learnable difference between the classes
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    code = main(["train", "stem8:ds_r1_k3_s1_e1_i8_o8:head16", "--dataset", f"npz:{path}", "--epochs", "1",
                 "--resolution", "8", "--width-multiplier", "1", "--batch-size", "16", "--json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert code == 0 and out["status"] == "ok"
    # stderr is not a terminal: no bar, a progress line at the end with its loss (stdout keeps the document)
    assert "training 4/4 (" in captured.err and " loss " in captured.err
    assert out["threads"] == 1 and out["config"]["lr"] == 0.05  # the schema's default, the preset's lr
    assert {"top1", "train_images_per_s", "seconds", "epochs", "params"} <= out.keys()
    assert out["epochs"] == 1 and out["train"] == 64 and out["val"] == 16


def _one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    return err


def test_missing_path_and_unknown_dataset_exit_2(tmp_path, capsys):
    err = _one_line_error(capsys, ["train", "mnasnet-a1", "--dataset", f"npz:{tmp_path / 'nope.npz'}"])
    assert "not found" in err
    err = _one_line_error(capsys, ["train", "mnasnet-a1", "--dataset", "imagenet21k"])
    assert "unknown dataset" in err
    assert "recipe" in _one_line_error(capsys, ["train", "mnasnet-a1", "--recipe", "slow"])
    assert "greater than 0" in _one_line_error(capsys, ["train", "mnasnet-a1", "--epochs", "0"])


TOY_DATASET = '''
import numpy as np

def load(path, resolution):
    """two classes: dark and light squares"""
    x = np.zeros((100, 8, 8), dtype=np.uint8)
    x[50:] = 220
    return x, np.repeat([0, 1], 50), ["dark", "light"]
'''


def test_a_pip_installed_dataset_plugin_needs_no_line_in_mnas(tmp_path):
    root = install_plugin(tmp_path / "site", "toy_dataset", TOY_DATASET, {"mnas.datasets": {"toy": "toy_dataset:load"}})
    with plugins_on_path(root):
        listed = run_cli("data", "list", "--json", check=True)
        trained = run_cli("train", "mnasnet-a1", "--dataset", "toy", "--epochs", "1", "--resolution", "16",
                          "--width-multiplier", "0.25", "--json", check=True)
    assert {"name": "toy", "spec": "toy", "description": "two classes: dark and light squares",
            "available": True} in json.loads(listed.stdout)
    out = json.loads(trained.stdout)
    assert out["dataset"] == out["config"]["dataset"] == "toy"
    assert out["status"] == "ok" and (out["train"], out["val"]) == (80, 20)
