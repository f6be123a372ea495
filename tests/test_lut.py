"""Latency tables built for real on onnxruntime (a tiny space at 32 px), evaluated against real
measurements, resumed after an interruption, and every refusal path."""

import json
import random

import pytest

from mnas import MnasError
from mnas.latency import LatencySettings, get_backend, measure
from mnas.latency.lut import LatencyTable, arch_layers, build_table, calibrate_table, evaluate, space_layers
from mnas.space import MnasNetSpace
from mnas.space.arch import Architecture
from mnas.testing import run_cli

TINY = """
name: tiny
stem: 8
head: 32
choices:
  op: [ds, mb3]
  kernel: 3
  se: [0, 0.25]
  skip: [none, identity]
  width: [0.5, 1.0]
  layers: [0, 1]
blocks:
  - {width_base: 16, layers_base: 1, stride: 1}
  - {width_base: 24, layers_base: 1, stride: 2}
"""
SETTINGS = dict(resolution=32, num_classes=10, runs=6, warmup=1, rounds=2, max_remeasures=0)


def settings(**kw):
    return LatencySettings(**{**SETTINGS, **kw})


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("lut") / "tiny.yaml"
    p.write_text(TINY)
    return p


@pytest.fixture(scope="module")
def built(space_file, tmp_path_factory):
    """A table built in two runs: interrupted after 4 entries, then resumed."""
    out = tmp_path_factory.mktemp("lut") / "tiny.json"
    first = build_table(out, space_file, "onnxruntime", settings(), limit=4, entry_runs=3)
    snapshot = dict(first.entries)
    table = build_table(out, space_file, "onnxruntime", settings(), calibrate=4, entry_runs=3)
    return out, snapshot, table


def test_enumeration_covers_every_architecture(space_file):
    space = MnasNetSpace.load(space_file)
    keys = {s.key for s in space_layers(space, 32, num_classes=10)}
    rng = random.Random(0)
    for _ in range(200):
        assert {s.key for s in arch_layers(space.sample(rng), 32, num_classes=10)} <= keys
    # full MnasNet space: every sampled architecture's layers are enumerated, no duplicates
    big = MnasNetSpace.load()
    specs = space_layers(big, 224)
    assert len(specs) == len({s.key for s in specs}) > 1000
    assert {s.key for s in arch_layers(big.sample(rng), 224)} <= {s.key for s in specs}


def test_build_resumes_and_completes(built):
    out, snapshot, table = built
    assert len(snapshot) == 4
    assert table.complete and len(table.entries) == table.expected
    for key, entry in snapshot.items():  # the resumed run kept, not re-measured, the first run's entries
        assert table.entries[key] == entry
    on_disk = LatencyTable.load(out)
    assert on_disk.complete and on_disk.backend == "onnxruntime" and on_disk.device.get("id")
    assert on_disk.settings.resolution == 32 and on_disk.calibration["n"] == 4
    assert all(e["raw_ms"] > 0 and e["ms"] >= 0 and isinstance(e["noisy"], bool) for e in on_disk.entries.values())


def test_eval_against_real_measurements(built):
    _, _, table = built
    res = evaluate(table, samples=4, seed=1)
    assert res["n"] == 4 and len(res["samples"]) == 4
    for k in ("within_10pct", "within_5pct"):
        assert 0 <= res[k] <= 1
    assert res["within_5pct"] <= res["within_10pct"]
    assert res["mape"] >= 0 and res["rmse_ms"] >= 0 and -1 <= res["kendall_tau"] <= 1
    assert 0 < res["predict_ms"] < 50
    assert all(s["measured_ms"] > 0 and s["predicted_ms"] > 0 for s in res["samples"])
    assert res["partial"] is False and res["drawn"] == 4 and res["table_entries"] == res["space_entries"]
    load = res["load_average"]
    assert len(load["start"]) == 3 and len(load["end"]) == 3 and all(x >= 0 for x in load["start"] + load["end"])
    # the calibration models, measured again among them, give the machine's speed now against at build time
    assert res["references"] == 4 and res["speed_factor"] > 0 and 0 <= res["unscaled"]["within_10pct"] <= 1
    arch = Architecture.parse(res["samples"][0]["arch"])
    assert res["samples"][0]["predicted_ms"] == pytest.approx(table.predict(arch) * res["speed_factor"], abs=1e-4)
    # three views side by side: the table as built, as a search scales it (the references timed by
    # themselves first, as at a search's start), and rescaled by the references among the networks
    views = res["views"]
    assert views["rescaled"]["within_10pct"] == res["within_10pct"]
    assert views["unscaled"]["within_10pct"] == res["unscaled"]["within_10pct"]
    assert res["search_speed"]["factor"] > 0 and res["search_speed"]["references"] == 4
    assert views["ratio"] is None  # no T given: no LAT/T to judge
    for view in (v for v in views.values() if v is not None):
        assert view["n"] == 4 and 0 <= view["within_10pct_ci95"][0] <= view["within_10pct"] <= \
            view["within_10pct_ci95"][1] <= 1
    assert res["samples"][0]["unscaled_ms"] == pytest.approx(table.predict(arch), abs=1e-4)
    # the eval's networks come from their own stream, never the calibration's, and say so
    assert res["seed"] == 1 and res["seed_source"] == "given" and res["stream"] == "eval"
    assert res["calibration_seed"] == 0 and res["calibration_stream"] == "calibrate" and res["seen_by_design"]
    # with T a model: LAT/T as a search's reward reads it, the table's ratio of two predictions against the
    # ratio of the two networks measured in the same rounds, whatever the machine's speed
    target = table.space.sample(random.Random(5))
    rel = evaluate(table, samples=3, seed=3, rescale=False, search_view=False, target=target.canonical)
    ratio = rel["views"]["ratio"]
    assert ratio["n"] == 3 and ratio["target_predicted_ms"] == pytest.approx(table.predict(target))
    assert ratio["target_measured_ms"] == rel["near_target"]["t_ms"] > 0
    timings = rel["near_target"]["target_timings"]  # T timed 3 times in the one chunk of rounds, the median kept
    assert len(timings) == 3 and rel["near_target"]["t_ms"] == pytest.approx(sorted(timings)[1])
    assert rel["near_target"]["target_by_chunk"] == [pytest.approx(sorted(timings)[1])]
    # (the samples' ms are rounded to 1e-4, a few % of a 32 px network's 0.03 ms)
    assert all(s["measured_ratio"] == pytest.approx(s["measured_ms"] / rel["near_target"]["t_ms"], rel=0.02)
               for s in rel["samples"])
    errors = [abs((s["unscaled_ms"] / ratio["target_predicted_ms"]) / s["measured_ratio"] - 1) for s in rel["samples"]]
    # the samples' ms are rounded to 1e-4 (a few tenths of a % of a 32 px network's 0.03 ms)
    assert ratio["mape"] == pytest.approx(sum(errors) / 3, rel=0.02, abs=3e-3)
    # T with a layer the table lacks (T need not be in the space): measured for the prediction, as a search
    # does at its start, but never written into the table
    from mnas.latency.lut.evaluate import predict_target

    key = table.layers(target)[1].key
    lacking = LatencyTable.load(table.path)
    del lacking.entries[key]
    pred, filled = predict_target(lacking, target)
    assert filled == 1 and pred > 0 and key not in lacking.entries
    assert key in LatencyTable.load(table.path).entries  # the file is untouched
    plain = evaluate(table, samples=1, seed=1, rescale=False, search_view=False)
    assert plain["speed_factor"] is None and plain["references"] == 0 and "unscaled" not in plain
    assert plain["samples"][0]["predicted_ms"] == pytest.approx(table.predict(arch), abs=1e-4)


def test_references_are_spread_among_the_networks():
    from mnas.latency.lut.evaluate import _spread

    order = _spread(6, {"ref": 2})
    assert sorted(i for kind, i in order if kind == "eval") == list(range(6)) and len(order) == 8
    assert [i for i, (kind, _) in enumerate(order) if kind == "ref"] == [1, 5]  # before eval 1 and eval 4
    assert _spread(3, {"ref": 0}) == [("eval", 0), ("eval", 1), ("eval", 2)]
    assert _spread(1, {"ref": 3}) == [("ref", 0), ("ref", 1), ("ref", 2), ("eval", 0)]
    # T's copies spread the same way, beside the references
    order = _spread(6, {"ref": 2, "target": 3})
    assert [i for i, (kind, _) in enumerate(order) if kind == "target"] == [2, 5, 9]  # before evals 1, 3, 5
    assert sorted(j for kind, j in order if kind == "target") == [0, 1, 2] and len(order) == 11


def test_eval_is_read_only(built, tmp_path):
    """An incomplete table is refused, or judged only on what it covers; either way its file stays as it was."""
    from mnas.cli import main

    out, _, table = built
    data = json.loads(out.read_text())
    dropped = arch_layers(table.space.sample(random.Random(9)), 32, num_classes=10)[-2].key  # its last layer
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({**data, "entries": {k: v for k, v in data["entries"].items() if k != dropped}}))
    before = partial.read_bytes()
    have = len(data["entries"]) - 1
    with pytest.raises(MnasError, match=f"incomplete: {have} of {have + 1} layer entries .*--partial"):
        evaluate(LatencyTable.load(partial), samples=2, seed=1)
    assert main(["lut", "eval", str(partial), "--samples", "2"]) == 2
    r = run_cli("lut", "eval", str(partial), "--samples", "3", "--seed", "2", "--partial", "--json",
                "--show-samples", "--target", "1ms")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["partial"] is True and res["n"] == 3 and res["drawn"] >= 3
    assert res["table_entries"] == have and res["space_entries"] == have + 1
    for sample in res["samples"]:  # only architectures that do not need the dropped entry
        assert dropped not in {s.key for s in arch_layers(Architecture.parse(sample["arch"]), 32, num_classes=10)}
    assert partial.read_bytes() == before


def test_build_progress_counts_to_the_limit(space_file, tmp_path):
    seen = []
    build_table(tmp_path / "p.json", space_file, "onnxruntime", settings(), limit=2, entry_runs=3,
                progress=lambda done, total, key: seen.append((done, total)))
    assert seen[-1] == (2, 2) and {total for _, total in seen} == {2}


def test_an_int8_table_build_logs_no_onnxruntime_warnings(tmp_path, capfd):
    """Timing quantised layers of the paper's space made onnxruntime print a warning per initializer it
    dropped (hundreds in a build's log); errors only now."""
    build_table(tmp_path / "q.json", None, "onnxruntime", settings(quantize="int8"), limit=4, entry_runs=2)
    assert "Removing initializer" not in capfd.readouterr().err


def test_noisy_measurements_are_flagged_and_counted(built):
    """A measurement whose rounds disagree by more than cv_threshold after the re-measures is flagged."""
    from dataclasses import replace

    _, _, table = built
    strict = replace(table, settings=table.settings.replace(cv_threshold=1e-12), path=None)
    res = evaluate(strict, samples=2, seed=3, search_view=False)
    assert res["noisy"] == 2 and all(s["noisy"] for s in res["samples"]) and res["quiet"] is None
    lenient = replace(table, settings=table.settings.replace(cv_threshold=1e9), path=None)
    res = evaluate(lenient, samples=2, seed=3, search_view=False)
    assert res["noisy"] == 0 and "quiet" not in res and not any(s["noisy"] for s in res["samples"])


def test_lut_backend_predicts(built, space_file):
    out, _, table = built
    be = get_backend(f"lut:{out}")
    arch = MnasNetSpace.load(space_file).sample(random.Random(5))
    r = measure(arch, be, settings())
    assert r.backend == "lut:onnxruntime" and r.extra["predicted"] is True and r.median_ms > 0
    # the table's reference models were timed again here: the prediction is scaled by their speed factor
    assert r.extra["speed_scaled"] is True and r.extra["speed_references"] == 4 and r.extra["speed_factor"] > 0
    assert r.extra["unscaled_ms"] == pytest.approx(table.predict(arch))
    assert r.median_ms == pytest.approx(table.predict(arch) * r.extra["speed_factor"])
    assert table.predict(arch, calibrated=False) > 0
    off = get_backend(f"lut:{out}?speed=off").measure(arch, settings())
    assert off.median_ms == pytest.approx(table.predict(arch)) and off.extra["speed_scaled"] is False


def test_refusals(built, space_file, tmp_path):
    out, _, table = built
    be = get_backend(f"lut:{out}")
    arch = MnasNetSpace.load(space_file).sample(random.Random(2))
    with pytest.raises(MnasError, match="resolution=32, asked for resolution=64"):
        be.measure(arch, settings(resolution=64))
    with pytest.raises(MnasError, match="threads=1, asked for threads=2"):
        be.measure(arch, settings(threads=2))
    from mnas.space import zoo
    with pytest.raises(MnasError, match="outside the table's space"):
        be.measure(zoo.get("mnasnet-a1"), settings())
    with pytest.raises(MnasError, match="built on backend 'onnxruntime', asked for 'torch'"):
        table.check(backend="torch")
    with pytest.raises(MnasError, match="another space"):
        table.check(space_yaml=TINY.replace("stem: 8", "stem: 16"))
    with pytest.raises(MnasError, match="predicts architectures"):
        be.measure_model(None, (1, 3, 32, 32))
    with pytest.raises(MnasError, match="does not exist"):
        get_backend(f"lut:{tmp_path / 'nope.json'}")
    with pytest.raises(MnasError, match="unknown lut option"):
        get_backend(f"lut:{out}?colour=red")
    # an existing table file is never overwritten with another configuration
    with pytest.raises(MnasError, match="holds a table built for"):
        build_table(out, space_file, "onnxruntime", settings(resolution=48), limit=0, entry_runs=3)


def test_missing_entries_refused_or_measured(space_file, tmp_path):
    out = tmp_path / "partial.json"
    build_table(out, space_file, "onnxruntime", settings(), limit=1, entry_runs=3)  # the stem only
    arch = MnasNetSpace.load(space_file).sample(random.Random(3))
    with pytest.raises(MnasError, match="lacks .* layer configuration"):
        get_backend(f"lut:{out}?missing=refuse").measure(arch, settings())
    r = get_backend(f"lut:{out}").measure(arch, settings())  # default: measure on demand, then predict
    assert r.extra["measured_on_demand"] == len(arch_layers(arch, 32, num_classes=10)) - 1
    saved = LatencyTable.load(out)
    assert all(s.key in saved.entries for s in arch_layers(arch, 32, num_classes=10))
    with pytest.raises(MnasError, match="at least 3 models"):
        calibrate_table(saved, get_backend("onnxruntime"), 1)


def test_cli_build_eval_and_errors(built, space_file, tmp_path):
    out, _, table = built
    # without --seed: a seed drawn now, reported; the figures unscaled, as the search sees them, rescaled
    r = run_cli("lut", "eval", str(out), "--samples", "2", "--target", "1ms", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["n"] == 2 and res["backend"] == "onnxruntime" and "kendall_tau" in res and "samples" not in res
    assert res["seed_source"] == "drawn" and res["seed"] >= 1000 and not res["seen_by_design"]
    assert all(res["views"][k]["n"] == 2 for k in ("unscaled", "search", "rescaled"))
    assert res["near_target"]["target"] == "1 ms" and res["near_target"]["t_ms"] == 1.0
    # the terminal: the columns side by side (the rescaled one without --no-rescale), T measured for real
    from mnas.cli.lut_cmds import view_rows
    from mnas.latency.lut.evaluate import resolve_target

    assert [h.split(" (")[0] for h in view_rows(res)[0]] == ["metric", "unscaled", "as the search sees it",
                                                              "rescaled"]
    assert resolve_target(table, "auto")[0] == "mnasnet-a1" and resolve_target(table, "12.5ms")[2] == 12.5
    target = table.space.sample(random.Random(11)).canonical
    png = tmp_path / "plots" / "eval.png"
    r = run_cli("lut", "eval", str(out), "--samples", "1", "--no-rescale", "--target", target, "--plot", str(png),
                env={"COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "plot: " in r.stdout
    flat = " ".join(r.stdout.split())
    # the table's cells may wrap wherever the console's width was settled (another test's): words, not phrases
    for word in ("unscaled", "built)", "search", "sees", "start)", "±10", "CI]", "order", "accuracy", "near"):
        assert word in flat, word
    seed = int(flat.split("eval seed ")[1].split()[0])
    assert seed >= 1000 and f"--seed {seed}" in flat and f"{seed} (drawn; stream 'eval'" in flat
    for bad in (tmp_path, tmp_path / "eval.svg"):  # refused before any timing
        r = run_cli("lut", "eval", str(out), "--samples", "1", "--plot", str(bad))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "give a PNG file name" in r.stderr
    r = run_cli("lut", "eval", str(out), "--samples", "1", "--target", "-3ms")
    assert r.returncode == 2 and "positive number" in r.stderr
    r = run_cli("lut", "eval", str(out), "--backend", "torch", "--samples", "1")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "built on backend" in r.stderr
    r = run_cli("lut", "eval", str(out), "--resolution", "224", "--samples", "1")
    assert r.returncode == 2 and "resolution=32" in r.stderr
    build = ["lut", "build", "--space", str(space_file), "--resolution", "32", "--num-classes", "10",
             "--runs", "6", "--warmup", "1", "--rounds", "2", "--entry-runs", "3", "--json", "--out"]
    r = run_cli(*build, str(out), "--calibrate", "0")  # a complete table: nothing left to measure
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["complete"] and info["entries"] == info["expected_entries"] and info["calibration"]["n"] == 4
    r = run_cli(*build, str(out), "--threads", "2")
    assert r.returncode == 2 and "holds a table built for other settings" in r.stderr
    r = run_cli(*build, str(out) + ".x", "--backend", f"lut:{out}")
    assert r.returncode == 2 and "real backend" in r.stderr
    # --set: another latency setting (a backend's, such as int8) stored with the table, which its evals use
    # and refuse to change where it changes what a layer costs
    r = run_cli(*build, str(out) + ".set", "--limit", "0", "--calibrate", "0", "--set", "cv_threshold=0.2")
    assert r.returncode == 0, r.stderr
    assert LatencyTable.load(str(out) + ".set").settings.cv_threshold == 0.2
    r = run_cli("lut", "eval", str(out), "--set", "threads=2", "--samples", "1")
    assert r.returncode == 2 and "threads=1, asked for threads=2" in r.stderr
    for bad, why in (("colour=red", "not a latency setting"), ("runs", "give KEY=VALUE")):
        r = run_cli("lut", "eval", str(out), "--set", bad, "--samples", "1")
        assert r.returncode == 2 and why in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize("damage, why", [
    ({"overhead_ms": "abc"}, "overhead_ms: Input should be a valid number"),
    ({"settings": None}, "settings: Input should be a valid dictionary"),
    ({"entries": {"stem": {"ms": "fast"}}}, "entries.stem.ms"),
    ({"calibration": {"features": ["sum_ms", "layers"], "coef": [1.0]}}, "one coefficient per feature"),
    ({"calibration": {"features": ["colour"], "coef": [1.0]}}, "calibration.features.0"),
    ({"space": None}, "space: Input should be a valid dictionary"),
])
def test_a_damaged_table_is_one_line(built, tmp_path, damage, why):
    from mnas.cli import main

    out, _, _ = built
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(out.read_text()), **damage}))
    with pytest.raises(MnasError, match=why):
        LatencyTable.load(bad)
    assert main(["lut", "eval", str(bad), "--samples", "1"]) == 2


def test_cpu_clock_table(space_file, tmp_path):
    """--clock cpu: the thread's CPU time, for machines shared with other jobs; one thread only."""
    out = tmp_path / "cpu.json"
    t = build_table(out, space_file, "onnxruntime", settings(), limit=3, entry_runs=3, clock="cpu")
    assert t.clock == "cpu" and len(t.entries) == 3 and all(e["raw_ms"] > 0 for e in t.entries.values())
    assert LatencyTable.load(out).clock == "cpu"
    with pytest.raises(MnasError, match="clock cpu"):  # resuming with the other clock is refused
        build_table(out, space_file, "onnxruntime", settings(), limit=0, entry_runs=3)
    with pytest.raises(MnasError, match="needs --threads 1"):
        build_table(tmp_path / "cpu2.json", space_file, "onnxruntime", settings(threads=2), limit=1, entry_runs=3,
                    clock="cpu")


def test_calibration_is_judged_on_models_it_was_not_fitted_on(built):
    """The correction is kept only if, left out one model at a time, it beats the plain sum."""
    from dataclasses import replace

    from mnas.latency.lut.table import SE_BIG_CHOICES

    _, _, table = built
    cal = table.calibration
    assert cal["n"] == 4 and len(cal["samples"]) == 4 and cal["loo_mape"] > 0 and cal["plain_mape"] > 0
    # the se_big threshold is chosen on the calibration networks alone, by the same leave-one-out error
    assert cal["stream"] == "calibrate" and set(cal["se_big_loo_mape"]) == {str(t) for t in SE_BIG_CHOICES}
    assert cal["loo_mape"] == pytest.approx(min(cal["se_big_loo_mape"].values()), abs=1e-6)
    assert cal["se_big_bytes"] in SE_BIG_CHOICES and table.se_big_bytes == cal["se_big_bytes"]
    se_arch = next(a for a in (table.space.sample(random.Random(i)) for i in range(100))
                   if any(s.se > 0 for s in table.layers(a) if s.kind == "layer"))
    low = replace(table, calibration={**cal, "se_big_bytes": 1}, path=None)  # every SE layer counts as big
    se_sum = sum(table.entries[s.key]["ms"] for s in table.layers(se_arch) if s.kind == "layer" and s.se > 0)
    assert low.features(se_arch)["se_big_ms"] == pytest.approx(se_sum) and se_sum > 0
    assert cal["applied"] == (cal["loo_mape"] < cal["plain_mape"])
    arch = table.space.sample(random.Random(5))
    plain = table.predict(arch, calibrated=False)
    fitted = sum(c * table.features(arch)[f] for f, c in zip(cal["features"], cal["coef"]))
    for applied in (True, False):
        t = replace(table, calibration={**cal, "applied": applied}, path=None)
        assert t.predict(arch) == pytest.approx(fitted if applied else plain)
        assert evaluate(t, samples=2, seed=6, search_view=False)["calibrated"] is applied


def test_a_table_of_sequentially_timed_entries_is_not_resumed(built, space_file, tmp_path):
    out, _, _ = built
    old = tmp_path / "old.json"
    data = json.loads(out.read_text())
    old.write_text(json.dumps({k: v for k, v in data.items() if k != "entry_method"}))  # an older mnas's file
    assert LatencyTable.load(old).entry_method == "sequential"
    with pytest.raises(MnasError, match="entries timed sequential"):
        build_table(old, space_file, "onnxruntime", settings(), entry_runs=3)


def test_second_pass_keeps_the_fastest(space_file, tmp_path):
    out = tmp_path / "passes.json"
    first = dict(build_table(out, space_file, "onnxruntime", settings(), limit=2, entry_runs=3).entries)
    again = build_table(out, space_file, "onnxruntime", settings(), limit=2, entry_runs=3, passes=2).entries
    assert set(again) == set(first)
    for key, old in first.items():
        assert again[key]["passes"] == 2 and again[key]["raw_ms"] <= old["raw_ms"]


def test_profile_charges_every_node_to_its_layer(built, capsys):
    from mnas.cli import main
    from mnas.latency.lut.profile import owner, profile_arch

    assert owner("/stem/stem.2/Relu_output_0_nchwc", 3) == 0
    assert owner("/blocks/blocks.2/ops/ops.1/Mul", 3) == 3
    assert owner("/classifier/Gemm", 3) == owner("/Flatten", 3) == 4
    assert owner("ReorderInput_token_12", 3) is None
    out, _, table = built
    arch = table.space.sample(random.Random(4))
    p = profile_arch(table, arch, runs=3, warmup=1)
    assert [r["layer"] for r in p["layers"]] == [s.key for s in arch_layers(arch, 32, num_classes=10)]
    assert all(r["in_network_ms"] > 0 for r in p["layers"])  # every layer's nodes were found by name
    assert 0 < p["sum_nodes_ms"] <= p["call_ms"]
    assert main(["lut", "profile", str(out), "-n", "1", "--runs", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["profiles"]) == 1 and len(res["load_average"]["start"]) == 3


def test_clopper_pearson_bounds():
    from mnas.latency.lut.evaluate import clopper_pearson, metrics

    lo, hi = clopper_pearson(50, 50)
    assert lo == pytest.approx(0.025 ** (1 / 50), abs=1e-9) and round(lo, 3) == 0.929 and hi == 1.0
    assert clopper_pearson(0, 10) == pytest.approx([0.0, 1 - 0.025 ** (1 / 10)])
    lo, hi = clopper_pearson(190, 200)  # 95 % of 200: the bounds straddle the goal
    assert lo == pytest.approx(0.9099, abs=1e-4) and hi == pytest.approx(0.9757, abs=1e-4)
    m = metrics([1.0, 2.0, 3.3], [1.0, 2.0, 3.0])  # two within ±5 %, all three within ±10 %
    assert m["within_5pct_ci95"] == pytest.approx(clopper_pearson(2, 3))
    assert m["within_10pct_ci95"] == pytest.approx(clopper_pearson(3, 3))


def test_pairwise_order_accuracy_near_target():
    from mnas.latency.lut.evaluate import pairwise_near

    measured = [9.5, 10.0, 10.4, 10.9, 20.0, 5.0, 12.0]
    # near T = 10 (±10 %): the first four, 6 pairs; 10.0 and 10.4 predicted in the wrong order, and the far
    # networks predicted wildly wrong, which must not count
    predicted = [9.4, 10.5, 10.2, 11.2, 1.0, 30.0, 9.0]
    r = pairwise_near(predicted, measured, 10.0)
    assert r["networks"] == 4 and r["pairs"] == 6 and r["order_accuracy"] == pytest.approx(5 / 6)
    tie = pairwise_near([9.4, 10.3, 10.3, 11.2], measured[:4], 10.0)  # a tie in the prediction counts half
    assert tie["order_accuracy"] == pytest.approx(5.5 / 6)
    assert pairwise_near(predicted, measured, 100.0) == {"t_ms": 100.0, "band": 0.1, "networks": 0, "pairs": 0,
                                                         "order_accuracy": None}


def test_pairs_near_and_their_order_agreement():
    from mnas.latency.lut.evaluate import order_agreement, pairs_near

    values = [0.95, 1.02, 1.02, 1.08, 1.3, 0.7]
    # within ±10 % of 1: the first four; the two equal values make no pair
    assert pairs_near(values, 1.0, 0.10) == [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]
    assert pairs_near(values, 2.0, 0.10) == [] and order_agreement([1.0], [1.0], []) is None
    pairs = [(0, 1), (0, 3), (1, 3)]
    assert order_agreement([1, 2, 3, 4], values, pairs) == 1.0
    assert order_agreement([4, 3, 2, 1], values, pairs) == 0.0
    assert order_agreement([1, 1, 3, 3], values, pairs) == pytest.approx(2.5 / 3)  # a tie counts half
    assert order_agreement([1, 2, 3, 4], [1, 1, 1, 1], pairs) == 0.5  # in either figure


def test_eval_never_draws_a_calibration_network(built):
    from mnas.latency.lut.evaluate import draw

    _, _, table = built
    cal = {s["arch"] for s in table.calibration["samples"]}
    # the tiny space is small enough that 1,500 draws of the eval stream meet the calibration networks
    rng = random.Random("eval:7")
    assert cal & {table.space.sample(rng).canonical for _ in range(1500)}
    archs, _ = draw(table, 1500, 7, partial=False)
    assert len(archs) == 1500 and not cal & {a.canonical for a in archs}


def _fake_training(monkeypatch):
    monkeypatch.setattr("mnas.run.trial.train_proxy_job", lambda arch, proxy, seed, *a, **k: {"status": "ok", "top1": 0.5})


def test_search_on_a_table_applies_and_records_the_speed_factor(built, space_file, tmp_path, monkeypatch):
    """lut:PATH in a search: the references timed at its start and again every N predictions; each trial
    records the factor and the unscaled figure; a table from another machine is used unscaled, flagged."""
    import mnas.latency.lut.backend as lut_backend
    from mnas.search.config import config_from_dict
    from mnas.search.driver import Search
    from mnas.testing import tiny

    out, _, table = built
    timings = []

    def fake_references(tbl, n=10, also=()):
        timings.append(tbl.path)
        return {"factor": 1.25, "references": 4, "ratios": [1.25] * 4, "time": f"t{len(timings)}",
                "also_ms": [5.0] * len(also)}

    monkeypatch.setattr(lut_backend, "time_references", fake_references)
    monkeypatch.setattr(lut_backend, "_SPEEDS", {})
    _fake_training(monkeypatch)
    latency = {"resolution": 32, "num_classes": 10, "runs": 3, "warmup": 1}
    # evolution-latency: its screen predicts each candidate before the trial does (speed=hold, not counted)
    cfg = config_from_dict(tiny(trials=3, space=str(space_file), live_view=False,
                                strategy={"name": "evolution-latency"},
                                latency={**latency, "backend": f"lut:{out}?every=2"}))
    with Search.open(cfg, tmp_path / "run") as search:
        search.run()
        trials = search.store.trials()
    assert [t.status.value for t in trials] == ["completed"] * 3
    assert len(timings) == 2  # at the start, then after 2 predictions
    for t in trials:
        extra = t.latency["extra"]
        assert extra["speed_scaled"] is True and extra["speed_factor"] == 1.25
        assert t.latency_ms == pytest.approx(extra["unscaled_ms"] * 1.25)
        assert extra["unscaled_ms"] == pytest.approx(table.predict(Architecture.parse(t.arch)))
    assert sorted(t.latency["extra"]["speed_time"] for t in trials) == ["t1", "t1", "t2"]
    # the local executor keeps trainings off the machine only while the references are due to be timed
    from mnas.run import local
    from mnas.run.trial import LatencyJob, TrialJob, run_trial

    def job(spec):
        return TrialJob(9, trials[0].arch, LatencyJob(spec, settings()), cfg.proxy)
    assert not local.times_here(job(f"lut:{out}?every=2"))  # 1 prediction since the last timing
    assert local.times_here(job(f"lut:{out}?every=1")) and not local.times_here(job(f"lut:{out}?speed=off"))
    # a latency screen's many predictions use the factor in force, neither re-timing nor counting
    from mnas.latency.lut.backend import hold_speed

    held = get_backend(hold_speed(f"lut:{out}?every=2"))
    for _ in range(3):
        r = held.measure(Architecture.parse(trials[0].arch), settings())
    assert len(timings) == 2 and r.extra["speed_time"] == "t2" and r.extra["speed_factor"] == 1.25
    assert not local.times_here(job(f"lut:{out}?every=2"))
    assert hold_speed("onnxruntime") == "onnxruntime" and hold_speed(f"lut:{out}?speed=off").endswith("speed=off")

    # the same table as if built on another machine: no real backend for it here, the figure unscaled
    elsewhere = tmp_path / "elsewhere.json"
    data = json.loads(out.read_text())
    elsewhere.write_text(json.dumps({**data, "device": {**data["device"], "id": "another", "cpu": "a phone"}}))
    t = run_trial(job(f"lut:{elsewhere}"))
    extra = t.latency["extra"]
    assert len(timings) == 2 and extra["speed_scaled"] is False and extra["speed_factor"] is None
    assert "built on 'a phone'" in extra["speed_note"] and t.latency_ms == pytest.approx(extra["unscaled_ms"])


def test_speed_options_are_checked(built):
    out, _, _ = built
    for spec, why in ((f"lut:{out}?speed=maybe", "choose on, off or hold"), (f"lut:{out}?every=0", "at least 1"),
                      (f"lut:{out}?minutes=soon", "give a number")):
        with pytest.raises(MnasError, match=why):
            get_backend(spec)


def test_lat_over_t_on_a_table_does_not_move_with_a_re_timed_speed_factor(built, monkeypatch):
    """T is predicted once; a trial's LAT/T is the table's own ratio, so a factor re-timed on a busy machine
    moves the absolute figure a trial records, not the reward's LAT/T."""
    import mnas.latency.lut.backend as lut_backend
    from mnas.run.trial import LatencyJob, measure_latency

    out, _, table = built
    factors = iter([1.0, 2.0, 2.0])
    monkeypatch.setattr(lut_backend, "time_references", lambda tbl, n=10, also=(): {
        "factor": next(factors), "references": 4, "ratios": [], "time": "t", "also_ms": [9.0] * len(also)})
    monkeypatch.setattr(lut_backend, "_SPEEDS", {})
    arch, reference = table.space.sample(random.Random(1)), table.space.sample(random.Random(2))
    job = LatencyJob(f"lut:{out}?every=1", settings(), reference=reference.canonical,
                     anchor_ms=table.predict(reference))
    first, second = measure_latency(arch.canonical, job), measure_latency(arch.canonical, job)
    assert second.absolute_ms == pytest.approx(2 * first.absolute_ms)  # the machine "slowed down"
    assert first.latency_ms == second.latency_ms == pytest.approx(table.predict(arch))  # LAT/T x T did not
    assert first.ratio == pytest.approx(table.predict(arch) / table.predict(reference))


def test_lat_over_t_with_t_timed_divides_by_t_at_the_tables_speed(built, monkeypatch):
    """lut:PATH?target=measure: T's model is timed once, in the same call as the references, and each LAT/T
    is the unscaled prediction over T brought back to the table's speed (T timed / that timing's factor);
    a factor re-timed later moves the absolute figures, not LAT/T."""
    import mnas.latency.lut.backend as lut_backend
    from mnas.latency.lut import speed as lut_speed
    from mnas.run.trial import LatencyJob, measure_latency

    out, _, table = built
    calls = []

    def real_references(tbl, n=10, also=()):  # the real timing, recorded
        calls.append([a.canonical for a in also])
        return lut_speed.time_references(tbl, n=n, also=also)

    monkeypatch.setattr(lut_backend, "time_references", real_references)
    monkeypatch.setattr(lut_backend, "_SPEEDS", {})
    arch, reference = table.space.sample(random.Random(1)), table.space.sample(random.Random(2))
    job = LatencyJob(f"lut:{out}?every=1&target=measure", settings(), reference=reference.canonical,
                     anchor_ms=10.0)
    first, second = measure_latency(arch.canonical, job), measure_latency(arch.canonical, job)
    assert calls == [[reference.canonical], []]  # T timed with the references once, not again
    rel = first.latency["extra"]["relative"]
    assert rel["target"] == "measured" and rel["target_timed_ms"] > 0
    speed = next(iter(lut_backend._SPEEDS.values()))
    frame = speed.targets[reference.canonical]["frame_ms"]
    assert rel["reference_ms"] == pytest.approx(frame) and frame != pytest.approx(table.predict(reference), rel=1e-9)
    assert first.ratio == second.ratio == pytest.approx(table.predict(arch) / frame)
    assert first.latency_ms == pytest.approx(first.ratio * 10.0)
    # the same with target=predict: T's prediction, as before
    job = LatencyJob(f"lut:{out}?target=predict", settings(), reference=reference.canonical, anchor_ms=10.0)
    predicted = measure_latency(arch.canonical, job)
    assert predicted.ratio == pytest.approx(table.predict(arch) / table.predict(reference))
    assert predicted.latency["extra"]["relative"]["target"] == "predicted"
    # speed=off: nothing is timed here, T is predicted and the result says why
    job = LatencyJob(f"lut:{out}?speed=off&target=measure", settings(), reference=reference.canonical,
                     anchor_ms=10.0)
    off = measure_latency(arch.canonical, job)
    assert off.ratio == pytest.approx(predicted.ratio) and "speed=off" in off.latency["extra"]["relative"]["target_note"]
    assert len(calls) == 2
    with pytest.raises(MnasError, match="choose measure or predict"):
        get_backend(f"lut:{out}?target=guess")


def test_the_speed_factor_times_as_many_references_as_asked(built, monkeypatch):
    """lut:PATH?references=N|all: the factor's timing uses the first N calibration networks, or all."""
    import mnas.latency.lut.backend as lut_backend

    out, _, table = built
    asked = []

    def references(tbl, n=10, also=()):
        asked.append(n)
        return {"factor": 1.0, "references": n, "ratios": [], "time": "t", "also_ms": [1.0] * len(also)}

    monkeypatch.setattr(lut_backend, "time_references", references)
    arch = table.space.sample(random.Random(1))
    for spec, n in ((f"lut:{out}", 10), (f"lut:{out}?references=all", len(table.calibration["samples"])),
                    (f"lut:{out}?references=3", 3)):
        monkeypatch.setattr(lut_backend, "_SPEEDS", {})
        get_backend(spec).measure(arch, settings())
        assert asked[-1] == n
    for bad in ("0", "some"):
        with pytest.raises(MnasError, match=r"references=40 \(or all\)"):
            get_backend(f"lut:{out}?references={bad}")
    with pytest.raises(MnasError, match="e.g. 40, or all"):
        lut_backend.LutBackend(table, references="ALL")
    # one factor per table and number of references: the two do not share a timing
    monkeypatch.setattr(lut_backend, "_SPEEDS", {})
    before = len(asked)
    for spec in (f"lut:{out}", f"lut:{out}?references=3", f"lut:{out}"):
        get_backend(spec).measure(arch, settings())
    assert asked[before:] == [10, 3]


def test_eval_judges_lat_over_t_with_t_timed_at_the_search_start(built):
    """lut eval's ratio_t_measured view: T timed beside the references of the search view, divided by that
    timing's factor, against the ratio measured in the eval's own rounds."""
    _, _, table = built
    target = table.space.sample(random.Random(5))
    res = evaluate(table, samples=3, seed=3, target=target.canonical)
    view, search = res["views"]["ratio_t_measured"], res["search_speed"]
    assert search["also_ms"][0] == view["target_timed_ms"] > 0
    assert view["target_frame_ms"] == pytest.approx(view["target_timed_ms"] / search["factor"])
    assert view["target_measured_ms"] == res["near_target"]["t_ms"]
    errors = [abs((s["unscaled_ms"] / view["target_frame_ms"]) / s["measured_ratio"] - 1) for s in res["samples"]]
    # the samples' ms are rounded to 1e-4 (a few tenths of a % of a 32 px network's 0.03 ms)
    assert view["n"] == 3 and view["mape"] == pytest.approx(sum(errors) / 3, rel=0.02, abs=3e-3)
    # without the search view there is no T timed at a search's start to judge
    assert evaluate(table, samples=1, seed=3, search_view=False, target=target.canonical)["views"][
        "ratio_t_measured"] is None


def test_t_that_cannot_be_timed_is_predicted_and_not_tried_again(built, monkeypatch):
    """target=measure where T's model fails on the backend: the references are timed alone, LAT/T divides
    by T's prediction with the reason on the record, and T is not tried again on the next trial."""
    import mnas.latency.lut.backend as lut_backend
    from mnas.run.trial import LatencyJob, measure_latency

    out, _, table = built
    calls = []

    def references(tbl, n=10, also=()):
        calls.append(len(also))
        if also:
            raise MnasError("the runtime cannot load this model")
        return {"factor": 1.1, "references": 4, "ratios": [], "time": "t", "also_ms": []}

    monkeypatch.setattr(lut_backend, "time_references", references)
    monkeypatch.setattr(lut_backend, "_SPEEDS", {})
    arch, reference = table.space.sample(random.Random(1)), table.space.sample(random.Random(2))
    job = LatencyJob(f"lut:{out}?target=measure", settings(), reference=reference.canonical, anchor_ms=10.0)
    first, second = measure_latency(arch.canonical, job), measure_latency(arch.canonical, job)
    assert calls == [1, 0]  # one failed try with T, the references alone, and nothing more
    for m in (first, second):
        rel = m.latency["extra"]["relative"]
        assert rel["target"] == "predicted" and "could not be timed" in rel["target_note"]
        assert m.ratio == pytest.approx(table.predict(arch) / table.predict(reference))
        assert m.latency["extra"]["speed_factor"] == 1.1


def test_t_is_timed_between_the_references_and_left_out_of_the_factor(built, monkeypatch):
    """time_references with also=[T]: T sits in the middle of the references' interleaved rounds, its
    figure comes back on its own, and the factor is the references' alone."""
    from mnas.latency.lut import speed as lut_speed

    _, _, table = built
    refs = lut_speed.references(table)
    then = {a.canonical: ms for a, ms in refs}
    target = table.space.sample(random.Random(9))
    seen = []

    def timed(backend, archs, settings, clock="wall", progress=None):
        from mnas.latency.lut.build import Timed

        seen.extend(a.canonical for a in archs)
        # each reference at exactly twice its build-time figure; T at 123 ms
        return [Timed(123.0 if a.canonical == target.canonical else 2 * then[a.canonical], False, 0.0, False)
                for a in archs]

    monkeypatch.setattr(lut_speed, "measure_archs", timed)
    r = lut_speed.time_references(table, also=[target])
    assert r["also_ms"] == [123.0] and r["factor"] == pytest.approx(2.0) and r["ratios"] == [2.0] * len(refs)
    assert len(seen) == len(refs) + 1 and seen.index(target.canonical) == len(refs) // 2
    assert lut_speed.time_references(table)["also_ms"] == []


def test_t_is_timed_in_every_chunk_of_rounds():
    from mnas.latency.lut.evaluate import NETWORK_CHUNK, _spread, _with_target

    order = _with_target(_spread(130, {"ref": 10}), 3)
    assert len(order) == 140 + 3 * 3 and sorted(i for kind, i in order if kind == "eval") == list(range(130))
    chunks = [order[c:c + NETWORK_CHUNK] for c in range(0, len(order), NETWORK_CHUNK)]
    assert [sum(kind == "target" for kind, _ in ch) for ch in chunks] == [3, 3, 3]
    assert [j for kind, j in order if kind == "target"] == list(range(9))


def test_each_networks_lat_over_t_divides_by_t_in_its_own_chunk(built, monkeypatch):
    """The machine twice as slow in the second chunk of rounds as in the first: every network's measured
    LAT/T is still its own ms over T's in the same chunk, so a table whose ratios are exact scores 100 %."""
    import importlib

    from mnas.latency.lut.build import Timed
    from mnas.latency.lut.speed import references

    _, _, table = built
    target = table.space.sample(random.Random(5))
    then = {a.canonical: ms for a, ms in references(table)}
    ev = importlib.import_module("mnas.latency.lut.evaluate")  # the package's "evaluate" is the function
    monkeypatch.setattr(ev, "NETWORK_CHUNK", 8)

    def timed(backend, archs, settings, clock="wall", progress=None):
        out = []
        for i, a in enumerate(archs):
            slow = 1.0 if i // 8 == 0 else 2.0
            ms = then.get(a.canonical) or table.predict(a, check_space=False)
            out.append(Timed(ms * slow, False, 0.0, False))
        return out

    monkeypatch.setattr(ev, "measure_archs", timed)
    res = ev.evaluate(table, samples=8, seed=11, search_view=False, target=target.canonical)
    t = table.predict(target)  # 8 networks, 4 references and 3 copies of T a chunk of 8: three chunks
    assert res["near_target"]["target_by_chunk"] == pytest.approx([t, 2 * t, 2 * t])
    ratio = res["views"]["ratio"]
    assert ratio["within_10pct"] == 1.0 and ratio["mape"] == pytest.approx(0, abs=1e-4)
    # one T for all (the median of the chunks) would have put half of the ratios 33-50 % off
    one_t = [s["measured_ms"] / res["near_target"]["t_ms"] for s in res["samples"]]
    assert max(abs(r / s["measured_ratio"] - 1) for r, s in zip(one_t, res["samples"])) > 0.3


def test_eval_times_the_networks_near_t_a_second_time(built, monkeypatch):
    """Only the networks within ±15 % of T are timed again, shuffled, and mapped back to their own first
    timing; a second timing equal to the first agrees on every pair near T, one that reverses them on none;
    the table is judged on the same pairs against the two timings' mean."""
    import importlib

    from mnas.latency.lut.build import Timed

    _, _, table = built
    target = table.space.sample(random.Random(5))
    ev = importlib.import_module("mnas.latency.lut.evaluate")
    archs, _ = ev.draw(table, 8, 11, False)
    names = [a.canonical for a in archs]
    assert len(set(names)) == 8
    # LAT/T by network: five near T, three far (not timed again)
    first = dict(zip(names, [0.97, 1.5, 1.02, 0.5, 1.04, 0.94, 2.0, 1.07]))
    near = [0, 2, 4, 5, 7]
    t_ms = 3.0
    calls = []

    def timed(backend, models, settings, clock="wall", progress=None):
        calls.append([m.canonical for m in models])
        out = []
        for m in models:
            r = 1.0 if m.canonical == target.canonical else first.get(m.canonical, 1.0)
            if len(calls) == 2 and reverse and m.canonical in first:
                r = 1.0 + (1.0 - r) / 2  # every pair in the other order, still near T; the mean keeps the first's
            out.append(Timed(t_ms * r, False, 0.0, False))
        return out

    monkeypatch.setattr(ev, "measure_archs", timed)
    for reverse in (False, True):
        calls.clear()
        res = ev.evaluate(table, samples=8, seed=11, search_view=False, target=target.canonical)
        again = res["near_target"]["second_timing"]
        assert again["networks_kept"] == 5 and again["samples"] == near
        assert sorted(calls[1]) == sorted([names[i] for i in near] + [target.canonical] * ev.TARGET_PER_CHUNK)
        assert [c for c in calls[1] if c != target.canonical] != [names[i] for i in near]  # shuffled
        assert [a for a, _ in again["ratios"]] == pytest.approx([first[names[i]] for i in near])
        assert again["pairs"] == 10 and again["networks"] == 5
        truth = [first[names[i]] for i in near]
        if reverse:
            assert [b for _, b in again["ratios"]] == pytest.approx([1.0 + (1.0 - r) / 2 for r in truth])
            assert again["timings_agree"] == 0.0
        else:
            assert [b for _, b in again["ratios"]] == pytest.approx(truth)
            assert again["timings_agree"] == 1.0
        # the table against the mean, which orders the five as the first timing does in both cases
        pred = [res["samples"][i]["unscaled_ms"] for i in near]
        right = sum((pred[a] - pred[b]) * (truth[a] - truth[b]) > 0 for a in range(5) for b in range(a + 1, 5))
        # the samples' predictions are rounded to 0.1 µs: a pair tied there may differ in the figure's own
        ties = sum(pred[a] == pred[b] for a in range(5) for b in range(a + 1, 5))
        assert right / 10 - 1e-9 <= again["table_vs_mean"] <= (right + ties) / 10 + 1e-9
    res = ev.evaluate(table, samples=8, seed=11, search_view=False, target=target.canonical, retime_near=False)
    assert "second_timing" not in res["near_target"]


def test_retime_divides_by_t_in_each_chunk(built, monkeypatch):
    """``retime`` over several chunks of rounds, the machine twice as slow in the second: each network's
    LAT/T is its ms over T's in its own chunk, mapped back through the shuffle."""
    import importlib

    from mnas.latency.lut.build import Timed

    _, _, table = built
    ev = importlib.import_module("mnas.latency.lut.evaluate")
    monkeypatch.setattr(ev, "NETWORK_CHUNK", 8)
    target = table.space.sample(random.Random(5))
    archs, _ = ev.draw(table, 10, 3, False)
    ratio = {a.canonical: 0.5 + 0.1 * k for k, a in enumerate(archs)}
    assert len(ratio) == 10

    def timed(backend, models, settings, clock="wall", progress=None):
        return [Timed((2.0 if p // 8 else 1.0) * 4.0 * ratio.get(m.canonical, 1.0), False, 0.0, False)
                for p, m in enumerate(models)]

    monkeypatch.setattr(ev, "measure_archs", timed)
    r = ev.retime(table, target, archs, seed=1)
    assert r["t_by_chunk"] == pytest.approx([4.0, 8.0])  # 5 networks and 3 copies of T a chunk
    assert r["ratio"] == pytest.approx([ratio[a.canonical] for a in archs])
    assert sorted(r["ms"]) != sorted(4.0 * x for x in ratio.values())  # the second chunk did run slower


def _eval_result(noisy: bool, ratio: bool) -> dict:
    """An eval's result as ``evaluate`` returns it, for 4 networks (the plot reads nothing else)."""
    view = {"within_10pct": 0.75, "within_10pct_ci95": [0.194, 0.994], "kendall_tau": 0.667}
    samples = [{"arch": f"a{i}", "predicted_ms": m, "measured_ms": m * e, "unscaled_ms": m, "noisy": noisy and i == 0,
                "measured_ratio": m * e / 5.0} for i, (m, e) in enumerate([(4.0, 1.02), (5.0, 0.97), (6.0, 1.3),
                                                                          (7.5, 1.01)])]
    return {"n": 4, "backend": "onnxruntime", "resolution": 224, "seed": 77, "samples": samples,
            "search_speed": {"factor": 1.05},
            "views": {"search": view, "unscaled": view,
                      "ratio": {**view, "kendall_tau": 0.333, "target_predicted_ms": 5.1} if ratio else None},
            "near_target": {"target": "mnasnet-a1"} if ratio else None}


@pytest.mark.parametrize("noisy, ratio", [(True, True), (False, False)])
def test_lut_eval_plot_draws_what_the_search_sees_and_lat_over_t(tmp_path, noisy, ratio):
    from mnas.report.lut_plots import plot_lut_eval

    path = plot_lut_eval(_eval_result(noisy, ratio), tmp_path / "e.png", formats=("svg",))
    assert path.read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "e.svg").read_text()
    assert "ms as the search sees them" in svg and "75.0% within ±10 % [19.4%, 99.4%], tau 0.667" in svg
    assert ("measurement flagged noisy" in svg) == noisy
    assert ("LAT/T, T = mnasnet-a1" in svg and "tau 0.333" in svg) == ratio
    assert ("no LAT/T" in svg) == (not ratio)
    with pytest.raises(ValueError, match="no samples"):
        plot_lut_eval({**_eval_result(noisy, ratio), "samples": []}, tmp_path / "f.png")
