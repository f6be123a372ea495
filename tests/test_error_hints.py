"""One-line errors that name the fix: a missing runtime names its ``pip install``, a mistyped name gets a "did
you mean", a dry run refuses what the run would refuse; and ``NAME@WIDTH`` read by every command that takes a
model name (one resolver, ``mnas.space.resolve_arch``)."""

from __future__ import annotations

import json
import sys

import pytest

from mnas import MnasError
from mnas.registry import Registry, did_you_mean
from mnas.space import resolve_arch, zoo
from mnas.testing import tiny

TINY_ARCH = "stem8:ds_r1_k3_s1_e1_i8_o8:head16"


def one_line_error(r, *needles):
    lines = r.stderr.strip().splitlines()
    assert r.code == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert all(n in lines[0] for n in needles), lines[0]


def test_openvino_absent_is_one_line_naming_the_extra(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now fails, as when it is not installed
    r = cli("latency", TINY_ARCH, "--backend", "openvino", "--resolution", "16", "--runs", "1", "--no-cache")
    one_line_error(r, "openvino", "pip install 'mnas[latency]'")


def test_dry_run_refuses_a_tensorboard_run_without_tensorboard(cli, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(tiny(tensorboard=True)))
    r = cli("search", tmp_path / "x", "--config", cfg, "--dry-run")
    one_line_error(r, "pip install 'mnas[tensorboard]'")
    assert "checks passed" not in r.stdout and not (tmp_path / "x").exists()


def test_did_you_mean():
    assert did_you_mean("onnxruntim", ["onnxruntime", "torch"]) == " (did you mean 'onnxruntime'?)"
    assert did_you_mean("MobileNetV2", zoo.names()) == " (did you mean 'mobilenet-v2'?)"
    assert did_you_mean("xyz", ["onnxruntime", "torch"]) == ""
    reg = Registry("latency backend", "mnas.test-none", {"onnxruntime": "x:y", "torch": "x:z"})
    with pytest.raises(MnasError, match=r"unknown latency backend 'onnxruntme' \(did you mean 'onnxruntime'\?\)"):
        reg.get("onnxruntme")


@pytest.mark.parametrize("argv,suggestion", [
    (("latency", TINY_ARCH, "--backend", "onnxruntme"), "'onnxruntime'"),
    (("train", "mnasnet-a1", "--recipe", "cifr"), "'cifar'"),
    (("train", "mnasnet-a1", "--dataset", "digit"), "'digits'"),
    (("arch", "show", "mobilenet-v3"), "'mobilenet-v2'"),
    (("arch", "show", "mnasnet-a1", "--space", "mnasnet-cifr"), "'mnasnet-cifar'"),
])
def test_a_close_typo_gets_a_suggestion(cli, argv, suggestion):
    one_line_error(cli(*argv), f"did you mean {suggestion}?")


def test_the_zoo_and_recipes_suggest_too():
    with pytest.raises(MnasError, match="did you mean 'mnasnet-a1'"):
        zoo.get("mnasnet_a1")
    from mnas.train.recipes import recipe_values

    with pytest.raises(MnasError, match="did you mean 'fast'"):
        recipe_values("fats")


def test_name_at_width_is_the_zoo_model_at_that_width():
    label, arch = resolve_arch("mobilenet-v2@0.5")
    assert label == "mobilenet-v2@0.5" and arch == zoo.get("mobilenet-v2", 0.5)
    assert resolve_arch("MobileNet-V2@1")[1] == zoo.get("mobilenet-v2")
    for bad, needle in [("mobilenet-v2@abc", "must be a number"), ("mobilenet-v2@0", "> 0"),
                        ("mobilenetv2@0.5", "did you mean 'mobilenet-v2'"), ("mobilenet-v2@nan", "> 0")]:
        with pytest.raises(MnasError, match=needle):
            resolve_arch(bad)
    with pytest.raises(MnasError, match="give the width once"):
        resolve_arch("mobilenet-v2@0.5", 0.75)


def test_every_command_takes_name_at_width(cli):
    want = zoo.get("mobilenet-v2", 0.5).canonical
    r = cli("arch", "show", "mobilenet-v2@0.5", "--json")
    assert r.code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["arch"] == want and d["name"] == "mobilenet-v2@0.5"
    r = cli("latency", "mobilenet-v2@0.5", "--resolution", "32", "--runs", "1", "--warmup", "0", "--no-cache",
            "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["arch"] == want
    one_line_error(cli("arch", "show", "mobilenet-v2@0.5", "-w", "0.75"), "give the width once")


def test_train_takes_name_at_width_as_the_width_it_trains(cli):
    r = cli("train", "mnasnet-small@0.25", "--dataset", "digits", "--resolution", "8", "--epochs", "0.02")
    assert r.code == 0, r.stderr
    assert r.stdout.startswith("training mnasnet-small@0.25 at width 1, 8 px")  # not 0.25 x the recipe's 0.5
    one_line_error(cli("train", "mnasnet-small@0.25", "-w", "0.5", "--dataset", "digits"), "give the width once")
