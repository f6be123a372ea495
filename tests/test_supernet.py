"""The weight-sharing supernet (issue 29): inheritance, BatchNorm recalibration, kill -9 and resume, the
estimator in the real search loop, a supernet of another space refused. Tiny spaces on 8-px images."""

from __future__ import annotations

import os
import dataclasses
import math
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnas import MnasError
from mnas.space import load_space
from mnas.supernet import SuperNet
from mnas.supernet.evaluate import SupernetEstimator, SupernetEvaluator, extracted_checkpoint, recalibrate
from mnas.supernet.net import decisions_covered
from mnas.supernet.training import net_of, read_checkpoint, structure_of, train_supernet
from mnas.store import Store
from mnas.testing import run_cli, tiny, wait_for, write_config
from mnas.train import TrainTask, load_proxy_data
from mnas.train import checkpoint as ckpt

# Every choice of the paper's space on two small blocks: 4 ops x 2 kernels x 2 SE x 3 skips x 3 widths x 3
# layer counts, a stride-2 block whose first layer changes width (the pooling skip's projection).
TINY_SPACE = """\
name: tiny-supernet
stem: 8
stem_stride: 1
head: 32
choices:
  op: [conv, ds, mb3, mb6]
  kernel: [3, 5]
  se: [0, 0.25]
  skip: [pool, identity, none]
  width: [0.75, 1.0, 1.25]
  layers: [-1, 0, 1]
blocks:
  - {width_base: 16, layers_base: 1, stride: 1, layers: [0, 1]}
  - {width_base: 24, layers_base: 2, stride: 2}
"""
TASK = dict(resolution=8, width_multiplier=1.0, batch_size=16, train_limit=64, holdout=64)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> str:
    """A dataset spec: 160 RGB 8-px images of 4 classes (each class its own colour, plus noise)."""
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.arange(160) % 4
    x = rng.integers(0, 96, (160, 8, 8, 3)) + (np.eye(4, 3)[y] * 128)[:, None, None, :]
    p = tmp_path_factory.mktemp("images") / "tiny.npz"
    np.savez(p, x=x.astype(np.uint8), y=y)
    return f"npz:{p}"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as training runs: two threads on a busy machine made these tests 50x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def space_file(tmp: Path, text: str = TINY_SPACE) -> Path:
    p = tmp / "space.yaml"
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory, images) -> tuple[Path, Path]:
    """(space file, supernet folder): a tiny supernet trained for 5 steps (one checkpoint), once per module."""
    tmp = tmp_path_factory.mktemp("supernet")
    space = space_file(tmp)
    r = train_supernet(load_space(str(space)), TrainTask(**TASK, dataset=images), tmp / "sn", steps=5, every=5)
    assert r.status == "ok" and r.steps == 5
    return space, tmp / "sn"


def covering_archs(net: SuperNet, seed: int = 0, limit: int = 200) -> list:
    """The largest, the smallest and random architectures until every option of every decision is used."""
    space, rng = net.space, random.Random(seed)
    archs = [net.pick("largest"), net.pick("smallest")]
    want = {(d.name, i) for d in space.decisions for i in range(len(d))}
    while decisions_covered(archs, space) != want and len(archs) < limit:
        archs.append(net.sample(rng))
    assert decisions_covered(archs, space) == want
    return archs


@pytest.mark.parametrize("share_skip,kernel_transform", [(True, False), (False, True)])
def test_extracted_model_equals_the_supernet_sub_network(tmp_path, share_skip, kernel_transform):
    torch.manual_seed(0)
    net = SuperNet(load_space(str(space_file(tmp_path))), num_classes=5, in_chans=3, width_multiplier=1.0,
                   share_skip=share_skip, kernel_transform=kernel_transform)
    assert any(".transforms." in k for k in net.state_dict()) == kernel_transform
    with torch.no_grad():  # statistics and kernel transforms away from their initial values: slicing shows
        for name, t in list(net.named_parameters()) + list(net.named_buffers()):
            if "running_var" in name:
                t.uniform_(0.5, 2.0)
            elif "running_mean" in name or "transforms" in name or name.endswith("bn.bias"):
                t.add_(torch.randn_like(t) * 0.1)
    net.eval()
    x = torch.randn(3, 3, 12, 12)
    archs = covering_archs(net)
    for arch in archs:
        model = net.extract(arch).eval()
        assert type(model).__name__ == "MnasNet" and model.arch == arch.canonical
        torch.testing.assert_close(model(x), net(x, arch), rtol=1e-5, atol=1e-5, msg=arch.canonical)
    # the ops differ: the same architecture with another op computes something else
    a, b = archs[0], archs[1]
    assert not torch.allclose(net(x, a), net(x, b))


def test_sub_networks_share_the_largest_weights(tmp_path):
    """Smaller kernels start at the centre of the largest (identity transform); widths are first slices."""
    net = SuperNet(load_space(str(space_file(tmp_path))), num_classes=5)
    big, small = net.pick("largest"), net.pick("smallest")
    sb, ss = net.state_for(big), net.state_for(small)
    # block 2's first layer is an MBConv in the largest, a depthwise-separable in the smallest: separate weights
    assert big.blocks[1].op == "ir" and small.blocks[1].op == "ds"
    key = "blocks.2.ops.1.0.weight"  # the largest's block-2 depthwise conv (after the expansion)
    w5 = sb[key]
    assert w5.shape[-1] == 5 and ss["blocks.1.ops.0.0.weight"].shape[-1] == 3  # the smallest's 3x3 depthwise
    mb3 = dataclasses.replace(big.blocks[1], kernel=3, expansion=3)
    arch3 = dataclasses.replace(big, blocks=(big.blocks[0], mb3))
    w3 = net.state_for(arch3)[key]
    mid3 = mb3.in_ch * 3
    torch.testing.assert_close(w3, w5[:mid3, :, 1:4, 1:4])


@pytest.mark.parametrize("share_skip", [True, False])
def test_skip_choices_share_op_weights_only_with_share_skip(tmp_path, share_skip):
    """``share_skip=False``: a block's identity and no-skip variants read separate weights (its pooling
    projection stays one); ``True``: the same tensors."""
    net = SuperNet(load_space(str(space_file(tmp_path))), num_classes=5, share_skip=share_skip)
    big = net.pick("largest")
    assert big.blocks[1].skip == "identity"
    noskip = dataclasses.replace(big, blocks=(big.blocks[0], dataclasses.replace(big.blocks[1], skip="none")))
    a, b = net.state_for(big), net.state_for(noskip)
    key = "blocks.2.ops.1.0.weight"  # block 2's first layer: its depthwise conv
    assert (a[key].data_ptr() == b[key].data_ptr()) == share_skip
    assert a["blocks.0.ops.0.0.weight"].data_ptr() == b["blocks.0.ops.0.0.weight"].data_ptr()  # block 1: same skip
    ops = set(net.slots[1][0].ops)
    assert ops == ({"cv", "ds", "ir"} if share_skip else
                   {f"{o}_{s}" for o in ("cv", "ds", "ir") for s in ("pool", "identity", "none")})


def test_share_skip_is_recorded_checked_on_resume_and_used_by_eval(trained, images, tmp_path):
    space, folder = trained
    blob = read_checkpoint(folder)
    assert blob["share_skip"] is True
    del blob["share_skip"]  # a checkpoint from before the option: its skips shared weights
    assert net_of(blob).share_skip is True
    r = train_supernet(load_space(str(space)), TrainTask(**TASK, dataset=images), tmp_path / "sn", steps=2,
                       every=1, share_skip=False)
    assert r.status == "ok" and read_checkpoint(tmp_path / "sn")["share_skip"] is False
    assert SupernetEvaluator(tmp_path / "sn", "cpu", 1).net.share_skip is False
    with pytest.raises(MnasError) as e:
        train_supernet(load_space(str(space)), TrainTask(**TASK, dataset=images), tmp_path / "sn", steps=2,
                       every=1, resume=True, share_skip=True)
    assert "share_skip = False" in str(e.value) and "--no-share-skip" in str(e.value) and "\n" not in str(e.value)
    r = run_cli("supernet", "train", space, "--dir", tmp_path / "sn", "--steps", "2", "--resume", "--share-skip")
    assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1 and "--no-share-skip" in r.stderr


def test_kernel_transform_is_recorded_checked_on_resume_and_used_by_eval(trained, images, tmp_path):
    """New supernets use a small kernel's centre as it is; ``kernel_transform=True`` adds the learned
    transforms (and checkpoints from before the option had them)."""
    space, folder = trained
    blob = read_checkpoint(folder)
    assert blob["kernel_transform"] is False and not any(".transforms." in k for k in blob["model"])
    assert structure_of({k: v for k, v in blob.items() if k != "kernel_transform"})["kernel_transform"] is True
    task = TrainTask(**TASK, dataset=images)
    r = train_supernet(load_space(str(space)), task, tmp_path / "sn", steps=2, every=1, kernel_transform=True)
    blob = read_checkpoint(tmp_path / "sn")
    assert r.status == "ok" and blob["kernel_transform"] is True and any(".transforms." in k for k in blob["model"])
    assert SupernetEvaluator(tmp_path / "sn", "cpu", 1).net.kernel_transform is True
    with pytest.raises(MnasError) as e:
        train_supernet(load_space(str(space)), task, tmp_path / "sn", steps=2, every=1, resume=True,
                       kernel_transform=False)
    assert "kernel_transform = True" in str(e.value) and "--kernel-transform" in str(e.value)
    r = run_cli("supernet", "train", space, "--dir", tmp_path / "sn", "--steps", "2", "--resume",
                "--no-kernel-transform")
    assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1 and "--kernel-transform" in r.stderr


def test_the_elastic_space_is_cifars_nested_decisions_and_holds_mobilenet_v2():
    """``mnasnet-cifar-elastic``: every architecture is one of ``mnasnet-cifar``'s, every searched block an
    MBConv with the identity skip, so its supernet holds MBConv weights only (block 1: MobileNetV2's SepConv)."""
    from mnas.space import resolve_arch

    elastic, cifar = load_space("mnasnet-cifar-elastic"), load_space("mnasnet-cifar")
    rng = random.Random(0)
    for _ in range(20):
        a = elastic.sample(rng)
        cifar.encode(a)  # raises if a is not in mnasnet-cifar
        assert all(b.op == "ir" and b.expansion in (3, 6) for b in a.blocks[1:]) and a.blocks[0].op == "ds"
        assert all(b.skip == "identity" for b in a.blocks)
    elastic.encode(resolve_arch("mobilenet-v2-cifar")[1])
    net = SuperNet(elastic, num_classes=10, width_multiplier=0.25)
    assert {k for blk in net.slots[1:] for slot in blk for k in slot.ops} == {"ir"}
    assert {k for slot in net.slots[0] for k in slot.ops} == {"ds"}
    with pytest.raises(MnasError, match="b2.skip|skip"):
        elastic.encode(cifar.decode([0] * len(cifar.decisions)))


def test_a_checkpoint_interval_longer_than_an_epoch_trains(trained):
    """64 images in batches of 16 are 4 steps an epoch; 5 steps between checkpoints took empty batches: NaN."""
    blob = read_checkpoint(trained[1])
    assert blob["step"] == 5 and [h["step"] for h in blob["history"]] == [5]
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["kd"]) for h in blob["history"])


def test_recalibration_changes_only_batchnorm_statistics(trained):
    space, folder = trained
    ev = SupernetEvaluator(folder, calibration_batches=2)
    arch = ev.net.pick("smallest")
    before = {k: v.clone() for k, v in ev.net.extract(arch).state_dict().items()}
    model = ev.net.extract(arch)
    recalibrate(model, ev.calibration)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    stats = {k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert changed and changed <= stats
    assert {k for k in changed if k.endswith("running_mean")}  # the statistics did move
    assert all(m.momentum == 0.01 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not model.training
    r = ev.evaluate(arch)
    assert 0.0 <= r["top1"] <= 1.0 and r["source"].startswith("supernet:") and r["val_images"] == 64


def test_extracted_checkpoint_is_a_standalone_training_checkpoint(trained, tmp_path):
    space, folder = trained
    ev = SupernetEvaluator(folder, calibration_batches=2)
    arch = ev.net.sample(random.Random(3))
    out = tmp_path / "sub.pt"
    ckpt.write(out, extracted_checkpoint(ev, arch))
    model = ckpt.load_model(ckpt.read(out))  # the trainer's and the exporter's reader
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(model(x), ev.model(arch)(x))


def test_extracted_checkpoint_fine_tunes_with_init(trained, images, tmp_path):
    space, folder = trained
    arch = SuperNet(load_space(str(space)), 4).sample(random.Random(5)).canonical
    out = tmp_path / "sub.pt"
    r = run_cli("supernet", "extract", arch, folder, "--out", out)
    assert r.code == 0, r.stderr
    blob = ckpt.read(out)
    cfg = TrainTask(**TASK, dataset=images, init=str(out))
    from mnas.space import Architecture
    from mnas.train.trainer import build_run

    run = build_run(Architecture.parse(arch), load_proxy_data(cfg, 0), cfg, torch.device("cpu"))
    assert all(torch.equal(v, blob["model"][k]) for k, v in run.model.state_dict().items())
    common = ["-w", "1", "--init", out, "-d", images, "--resolution", "8", "--epochs", "0.25", "--holdout", "64"]
    assert run_cli("train", arch, *common).code == 0
    r = run_cli("train", "mnasnet-a1", *common)
    assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1 and "--init" in r.stderr


@pytest.mark.slow
def test_kill_9_during_training_then_resume_loses_at_most_one_interval(tmp_path, images):
    space = space_file(tmp_path)
    folder = tmp_path / "sn"
    args = ["supernet", "train", space, "--dir", folder, "--steps", "12", "--every", "1", "-d", images,
            "--resolution", "8", "-w", "1", "--batch-size", "16", "--train-limit", "64", "--holdout", "64"]
    proc = subprocess.Popen([sys.executable, "-m", "mnas", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ck = folder / "supernet.pt"
    try:
        wait_for(lambda: ck.is_file() and read_checkpoint(ck)["step"] >= 2 or proc.poll() is not None)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    lines = [ln for ln in proc.stderr.read().splitlines() if ln.startswith("supernet ")]  # a line per checkpoint
    last_logged = int(lines[-1].split()[1].split("/")[0])
    kept = read_checkpoint(ck)["step"]
    # 12 steps, killed after the 2nd: on a busy machine the kill may land steps later, not after the last
    assert 2 <= kept < 12 and kept >= last_logged - 1  # a kill loses at most one interval (1 step here)
    again = run_cli(*args)
    assert again.code == 2 and "add --resume" in again.stderr  # no silent restart over the checkpoint
    r = run_cli(*args, "--resume", "--json")
    assert r.code == 0, r.stderr
    assert f'"resumed_from": {kept}' in r.stdout and '"steps": 12' in r.stdout
    # the resumed run is the uninterrupted one: the same weights as a run that was never killed
    ref = train_supernet(load_space(str(space)), TrainTask(**TASK, dataset=images), tmp_path / "ref", 12, 1)
    assert ref.status == "ok"
    a, b = read_checkpoint(ck)["model"], read_checkpoint(tmp_path / "ref")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_supernet_of_another_space_is_refused_in_one_line(trained, tmp_path):
    space, folder = trained
    est = SupernetEstimator(str(folder))
    est.check(load_space(str(space)))  # its own space passes
    with pytest.raises(MnasError) as e:
        est.check(load_space("mnasnet-cifar"))
    assert "tiny-supernet" in str(e.value) and "mnasnet-cifar" in str(e.value) and "\n" not in str(e.value)
    # resuming it over another space: refused by the CLI in one line, exit 2
    other = tmp_path / "other.yaml"
    other.write_text(TINY_SPACE.replace("kernel: [3, 5]", "kernel: [3, 7]"))
    r = run_cli("supernet", "train", other, "--dir", folder, "--steps", "2", "--resume")
    assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1 and "was trained over space" in r.stderr
    # an architecture of another space: one line naming the decision
    r = run_cli("supernet", "eval", folder, "mnasnet-a1")
    assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1


def test_a_pruner_beside_the_supernet_estimator_is_refused_in_one_line(trained, tmp_path):
    """A pruner stops proxy trainings; the supernet estimator trains none, so a pruner would do nothing."""
    space, folder = trained
    cfg = tiny(**{"trials": 2, "space": str(space), "proxy.estimator": f"supernet:{folder}",
                  "pruner.name": "median"})
    r = run_cli("search", tmp_path / "search", "--config", write_config(tmp_path, cfg))
    assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "pruner.name=none" in r.stderr and not (tmp_path / "search" / "experiment.db").exists()
    # an experiment stored before the check still opens: its pruner did nothing, and is read as none
    from mnas.search.config import config_from_dict, config_from_stored

    stored = config_from_dict(tiny(**{"trials": 2, "space": str(space),
                                      "proxy.estimator": f"supernet:{folder}"})).model_dump(mode="json")
    stored["pruner"]["name"] = "median"
    assert config_from_stored(stored).pruner.name == "none"


@pytest.mark.slow
def test_the_supernet_estimator_runs_in_the_real_search_loop(trained, images, tmp_path):
    space, folder = trained
    cfg = tiny(**{"trials": 2, "space": str(space), "proxy.estimator": f"supernet:{folder}",
                  "latency.resolution": 8, "proxy.dataset": images, "proxy.resolution": 8})
    out = tmp_path / "search"
    r = run_cli("search", out, "--config", write_config(tmp_path, cfg), "--json")
    assert r.code == 0, r.stderr
    with Store(out, readonly=True) as store:
        trials = store.trials()
    done = [t for t in trials if t.status.value == "completed"]
    assert len(done) == 2
    for t in done:
        assert t.train["source"] == f"supernet:{folder}" and t.train["steps"] == 0
        assert 0.0 <= t.accuracy <= 1.0


def test_mixed_sandwich_ends_draw_op_and_skip_at_the_extreme_sizes(tmp_path):
    """``ends="mixed"``: both ends draw every block's op type and skip (each type and skip turns up in a few
    steps), while kernel, SE, width and layers stay at the largest (smallest) option and the MBConv
    expansion at the largest (smallest) of its type; ``"fixed"`` keeps the old two networks."""
    from mnas.supernet.net import sandwich

    net = SuperNet(load_space(str(space_file(tmp_path))), num_classes=5)
    rng = random.Random(0)
    seen: dict[str, set] = {"largest": set(), "smallest": set()}
    for _ in range(40):
        big, small, *rest = sandwich(net, rng, 1, ends="mixed")
        assert len(rest) == 1
        for which, arch in (("largest", big), ("smallest", small)):
            for i, b in enumerate(arch.blocks):
                seen[which].add((i, b.op, b.skip))
                assert b.kernel == (5 if which == "largest" else 3)
                assert b.se == (0.25 if which == "largest" else 0.0)
                if b.op == "ir":
                    assert b.expansion == (6 if which == "largest" else 3)
            assert arch.blocks[1].repeats == (3 if which == "largest" else 1)
    want = {(i, op, skip) for i in range(2) for op in ("cv", "ds", "ir") for skip in ("pool", "identity", "none")}
    assert seen["largest"] == want and seen["smallest"] == want
    fixed = sandwich(net, rng, 0, ends="fixed")
    assert fixed == [net.pick("largest"), net.pick("smallest")]
    with pytest.raises(MnasError, match="sandwich ends 'both'"):
        sandwich(net, rng, 0, ends="both")


@pytest.mark.slow
def test_one_supernet_specialises_for_several_backends_side_by_side(trained, tmp_path):
    """``mnas supernet specialise``: a search per (backend, T) with the supernet as the accuracy source, each
    search's rank-1 model timed on every backend at the supernet's image size, a table, a JSON file and a plot;
    the same command again resumes (no new trial, the same models); a bad target is one line, exit 2."""
    import json

    space, folder = trained
    base = write_config(tmp_path, {k: v for k, v in tiny(trials=2).items() if k not in ("proxy", "space")})
    out = tmp_path / "spec"
    args = ("supernet", "specialise", folder, "-o", out, "-t", "onnxruntime=0.5", "-t", "torch=2", "--trials", "2",
            "--config", base)
    r = run_cli(*args)
    assert r.code == 0, r.stderr
    assert "supernet top-1" in r.stdout and "search 2/2: torch" in r.stderr
    res = json.loads((out / "specialised.json").read_text())
    assert res["backends"] == ["onnxruntime", "torch"] and res["timing"]["resolution"] == 8
    assert [(m["backend"], m["target_ms"]) for m in res["models"]] == [("onnxruntime", 0.5), ("torch", 2.0)]
    for m in res["models"]:
        with Store(Path(m["experiment"]), readonly=True) as store:
            trials = store.trials()
            assert {t.train["source"] for t in trials} == {f"supernet:{folder}"} and len(trials) == 2
            assert store.get_meta("latency")["backend"] == m["backend"]
        assert m["arch"] in {t.arch for t in trials} and 0.0 <= m["accuracy"] <= 1.0
        assert set(m["latency_ms"]) == {"onnxruntime", "torch"} and all(v > 0 for v in m["latency_ms"].values())
    assert (out / "specialised.png").stat().st_size > 10_000
    again = run_cli(*args, "--json")
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["models"] == res["models"]
    for m in res["models"]:
        with Store(Path(m["experiment"]), readonly=True) as store:
            assert len(store.trials()) == 2  # resumed at its budget: no new trial
    bad = run_cli("supernet", "specialise", folder, "-o", out, "-t", "onnxruntime")
    assert bad.code == 2 and len(bad.stderr.strip().splitlines()) == 1 and "BACKEND=T" in bad.stderr


MICRO_SPACE = """\
name: micro-supernet
stem: 8
stem_stride: 1
head: 32
choices:
  op: [mb3, mb6]
  kernel: [3, 5]
  se: [0]
  skip: [identity]
  width: [1.0]
  layers: [0]
blocks:
  - {width_base: 16, layers_base: 1, stride: 1}
  - {width_base: 24, layers_base: 2, stride: 2}
"""


@pytest.mark.slow
def test_a_supernet_table_runs_in_the_tabular_benchmark_harness(images, tmp_path):
    """``mnas supernet table``: every architecture of a small space read from the supernet and timed, a CSV that
    ``mnas bench strategies --space`` runs strategies on; a rerun keeps the rows read before (a kill's cut
    line read again); a space too large for a table is refused in one line."""
    import csv
    import itertools
    import json

    from mnas.supernet.table import supernet_table

    space = space_file(tmp_path, MICRO_SPACE)
    sp = load_space(str(space))
    assert sp.size == 16
    folder = tmp_path / "sn"
    assert train_supernet(sp, TrainTask(**TASK, dataset=images), folder, steps=3, every=3).status == "ok"
    out = tmp_path / "micro.csv"
    r = run_cli("supernet", "table", folder, "-o", out, "--backend", "torch")
    assert r.code == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    every = {sp.decode(t).canonical for t in itertools.product(*map(range, sp.cardinalities))}
    assert len(rows) == 16 and {x["arch"] for x in rows} == every
    ev = SupernetEvaluator(folder, "cpu")
    first = rows[0]
    assert float(first["supernet_accuracy"]) == ev.evaluate(sp.parse(first["arch"]))["top1"]
    assert all(float(x["torch_latency_ms"]) > 0 for x in rows)
    # resumed: rows already in the partial file are kept as they are, a cut last line is read again
    partial = out.with_name(out.name + ".partial")
    done = run_cli("supernet", "table", folder, "-o", out, "--backend", "torch")  # complete: not read again
    assert done.code == 2 and "exists and is complete" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    out.unlink()

    def killed(i: int, n: int) -> None:
        if i == 3:
            raise KeyboardInterrupt  # as a kill after three rows

    with pytest.raises(KeyboardInterrupt):
        supernet_table(folder, out, "torch", progress=killed)
    lines = partial.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["header"]["backend"] == "torch" and not out.exists()
    partial.write_text(lines[0] + "\n" + "".join(json.dumps({**json.loads(x), "torch_latency_ms": 123.0 + i}) + "\n"
                                                 for i, x in enumerate(lines[1:])) + '{"arch": "cut')
    other = run_cli("supernet", "table", folder, "-o", out, "--backend", "onnxruntime")  # another backend: refused
    assert other.code == 2 and "other readings" in other.stderr and len(other.stderr.strip().splitlines()) == 1
    assert run_cli("supernet", "table", folder, "-o", out, "--backend", "torch").code == 0
    again = list(csv.DictReader(out.open()))
    kept = {x["arch"]: float(x["torch_latency_ms"]) for x in again}
    assert sorted(kept[json.loads(x)["arch"]] for x in lines[1:]) == [123.0, 124.0, 125.0] and len(again) == 16
    assert not partial.exists()
    # the harness: strategies on the supernet's landscape
    b = run_cli("bench", "strategies", "--table", out, "--space", space, "--strategies", "random,evolution",
                "--budget", "8", "--seeds", "2", "--jobs", "1", "--json")
    assert b.code == 0, b.stderr
    rep = json.loads(b.stdout)
    assert rep["table"]["rows"] == 16 and set(rep["budgets"]["8"]) == {"random", "evolution"}
    # a space too large for a table: one line, exit 2
    big = run_cli("supernet", "table", folder, "-o", out, "--limit", "10")
    assert big.code == 2 and len(big.stderr.strip().splitlines()) == 1 and "16 architectures" in big.stderr


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_sandwich_step_runs_in_mixed_precision_with_float32_losses(tmp_path, dtype):
    """The CUDA path's mixed precision, tried under the CPU's autocast: the network computes in ``dtype``,
    the losses stay float32 and finite, float16 steps through its loss scaler, and the weights move."""
    from mnas.supernet.training import sandwich_step

    torch.manual_seed(0)
    net = SuperNet(load_space(str(space_file(tmp_path))), num_classes=4)
    seen: set[torch.dtype] = set()
    net.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))  # the logits, before the float32 loss
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    scaler = (torch.amp.GradScaler("cpu", init_scale=16.0, growth_interval=1) if dtype == torch.float16
              else None)
    xb, yb = torch.randn(8, 3, 8, 8), torch.arange(8) % 4
    loss, kd = sandwich_step(net, opt, xb, yb, random.Random(0), 1, 0.1, amp=dtype, scaler=scaler)
    assert seen == {dtype}
    assert math.isfinite(loss) and math.isfinite(kd) and loss > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters()))
    if scaler is not None:
        assert scaler.get_scale() == 32.0  # the step went through the scaler, which grew after a good step
    seen.clear()
    sandwich_step(net, opt, xb, yb, random.Random(0), 1, 0.1)
    assert seen == {torch.float32}


def test_an_overflowing_float16_step_is_skipped_not_a_failure(tmp_path):
    """A loss scale too large for float16 overflows the gradients: the scaler skips that step and lowers the
    scale, the weights stay put, and the loss reported (unscaled) stays finite."""
    from mnas.supernet.training import sandwich_step

    torch.manual_seed(0)
    net = SuperNet(load_space(str(space_file(tmp_path))), num_classes=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)
    loss, kd = sandwich_step(net, opt, torch.randn(8, 3, 8, 8), torch.arange(8) % 4, random.Random(0), 1, 0.1,
                             amp=torch.float16, scaler=scaler)
    assert math.isfinite(loss) and math.isfinite(kd)
    assert all(torch.equal(a, p) for a, p in zip(before, net.parameters()))
    assert scaler.get_scale() < 2.0 ** 40


def test_a_float16_supernet_keeps_its_loss_scale_across_a_resume(tmp_path, images, monkeypatch):
    """With float16 forced (what CUDA without bfloat16 gets), the checkpoint holds the scaler's state, each
    chunk records ``fp16``, and a resumed run ends with the weights of the uninterrupted one."""
    import mnas.supernet.training as training

    monkeypatch.setattr(training, "resolve_amp", lambda amp, device: torch.float16)
    space, task = load_space(str(space_file(tmp_path))), TrainTask(**TASK, dataset=images)
    ref = train_supernet(space, task, tmp_path / "ref", 4, 2)
    assert ref.status == "ok"

    def killed(step, total, loss, kd):  # dies during the second chunk, after the first one's checkpoint
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_supernet(space, task, tmp_path / "sn", 4, 2, progress=killed)
    assert read_checkpoint(tmp_path / "sn")["step"] == 2
    r = train_supernet(space, task, tmp_path / "sn", 4, 2, resume=True)
    assert r.status == "ok" and r.resumed_from == 2
    blob, want = read_checkpoint(tmp_path / "sn"), read_checkpoint(tmp_path / "ref")
    assert [h["amp"] for h in blob["history"]] == ["fp16", "fp16"]
    # the scaler resumed where it was: its count of good steps (towards the next growth) spans the kill
    assert blob["scaler"] == want["scaler"] and want["scaler"]["_growth_tracker"] == 4
    assert all(torch.equal(want["model"][k], blob["model"][k]) for k in want["model"])


def test_supernet_training_on_the_cpu_stays_in_float32(trained):
    """``amp`` applies on CUDA only (autocast on the CPU is slower for these models): each checkpointed chunk
    records the precision it trained in."""
    _, folder = trained
    blob = read_checkpoint(folder)
    assert blob["task"]["amp"] == "auto"
    assert [h["amp"] for h in blob["history"]] == ["off"]


@pytest.mark.parametrize("share_skip,optimizer", [(True, "sgd"), (False, "adam")])
def test_sorting_hidden_channels_keeps_the_largest_and_moves_the_optimizer_state(tmp_path, share_skip, optimizer):
    """Progressive shrinking sorts each MBConv's hidden channels by importance before it draws the expansion:
    the largest sub-network (every hidden channel) computes what it did, the projection's most important
    inputs come first, the optimizer's momentum moves with its weights; a block offering mb1 is left alone."""
    from mnas.supernet.net import sort_hidden_channels

    torch.manual_seed(0)
    net = SuperNet(load_space(str(space_file(tmp_path))), num_classes=5, share_skip=share_skip)
    with torch.no_grad():
        for name, t in net.named_buffers():
            if "running_var" in name:
                t.uniform_(0.5, 2.0)
            elif "running_mean" in name:
                t.normal_(0, 0.1)
    opt = (torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(net.parameters(), lr=0.01))
    state_key = "momentum_buffer" if optimizer == "sgd" else "exp_avg"
    x = torch.randn(4, 3, 8, 8)
    net(x, net.pick("largest")).square().mean().backward()
    opt.step()
    net.eval()
    largest, smallest = net.pick("largest"), net.pick("smallest")
    before = net(x, largest).detach(), net(x, smallest).detach()
    pw = net.slots[1][0].op("ir", "identity").convs["pw"].weight  # the largest's (identity skip)
    old_w, old_m = pw.detach().clone(), opt.state[pw][state_key].clone()
    copies = 1 if share_skip else 3  # without share_skip, one MBConv op per skip choice (pool, identity, none)
    assert sort_hidden_channels(net, opt) == copies * sum(len(s) for s in net.slots)
    importance = pw.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:]) and not torch.equal(pw, old_w)
    order = old_w.abs().sum(dim=(0, 2, 3)).argsort(descending=True)
    torch.testing.assert_close(opt.state[pw][state_key], old_m[:, order])
    torch.testing.assert_close(net(x, largest), before[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(net(x, smallest), before[1])  # no MBConv in the smallest: untouched
    with_mb1 = SuperNet(load_space(str(space_file(tmp_path, TINY_SPACE.replace("mb3, mb6", "mb1, mb6")))), 5)
    assert sort_hidden_channels(with_mb1) == 0


@pytest.mark.parametrize("stop, kept_sorted_at", [(6, None), (8, 6)])
def test_progressive_shrinking_draws_more_decisions_each_stage_and_resumes(tmp_path, images, stop, kept_sorted_at):
    """Stopped before the hidden channels were sorted (at step 6, 0-based) or after, a resumed training ends
    where the uninterrupted one did, having sorted them once, at step 6."""
    from mnas.supernet.net import STAGES, progressive, stage_of

    space = load_space(str(space_file(tmp_path)))
    net = SuperNet(space, num_classes=4)
    assert [stage_of(s, 8) for s in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    rng = random.Random(0)
    largest = space.encode(net.pick("largest"))
    assert progressive(net, rng, 2, 0) == [net.pick("largest")]  # the first stage: the largest alone
    for stage in (1, 2, 3):
        teacher, *students = progressive(net, rng, 30, stage)
        assert teacher == net.pick("largest") and len(students) == 31
        drawn = {d.name.split(".", 1)[1] for a in students
                 for d, t, big in zip(space.decisions, space.encode(a), largest) if t != big}
        assert drawn == set(STAGES[stage])  # every decision of the stage drawn, no other
    task = TrainTask(**TASK, dataset=images)
    ref = train_supernet(space, task, tmp_path / "ref", steps=8, every=1, sampling="progressive")
    blob = read_checkpoint(tmp_path / "ref")
    assert ref.status == "ok" and blob["sampling"] == "progressive" and blob["sorted_at"] == 6

    def stop_there(step, total, loss, kd):
        if step == stop:
            raise KeyboardInterrupt  # as a kill would, after the checkpoint of the step before

    with pytest.raises(KeyboardInterrupt):
        train_supernet(space, task, tmp_path / "sn", steps=8, every=1, sampling="progressive", progress=stop_there)
    assert read_checkpoint(tmp_path / "sn")["sorted_at"] == kept_sorted_at
    with pytest.raises(MnasError) as e:
        train_supernet(space, task, tmp_path / "sn", steps=8, every=1, resume=True, sampling="sandwich")
    assert "--sampling progressive" in str(e.value) and "\n" not in str(e.value)
    r = train_supernet(space, task, tmp_path / "sn", steps=8, every=1, resume=True)  # the checkpoint's sampling
    assert r.status == "ok" and r.resumed_from == stop - 1
    assert read_checkpoint(tmp_path / "sn")["sorted_at"] == 6  # sorted once, at step 6 (a second sort: 7)
    a, b = read_checkpoint(tmp_path / "sn")["model"], blob["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed = uninterrupted
    r = run_cli("supernet", "train", space_file(tmp_path), "--dir", tmp_path / "x", "--steps", "2",
                "--sampling", "shrink", "-d", images)
    assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1 and "sandwich, progressive" in r.stderr
