"""``mnas lut build`` and ``mnas lut eval``: a latency table for the user's own device, and its accuracy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from mnas import MnasError
from mnas.cli.output import console, print_json, table
from mnas.cli.progress import LINES_EVERY_S, progress_bar
from mnas.latency.lut.build import CALIBRATE, CLOCKS, ENTRY_RUNS
from mnas.latency.settings import LatencyConfig, LatencySettings

app = typer.Typer()  # this module's commands; cli/main.py adds them to the root app

lut_app = typer.Typer(no_args_is_help=True, help="Latency lookup tables: build on your device, evaluate.")
app.add_typer(lut_app, name="lut")


@lut_app.command("build")
def lut_build(out: Path = typer.Option(..., "--out", "-o", help="table file (JSON); an existing one is resumed"),
              space: Optional[Path] = typer.Option(None, "--space", help="mnasnet, mnasnet-paper, mnasnet-cifar "
                                                   "or a space YAML (default: mnasnet)"),
              backend: str = typer.Option(LatencyConfig.default("backend"), "--backend", "-b",
                                          help="onnxruntime, torch, openvino, litert, remote:URL"),
              resolution: int = typer.Option(LatencySettings.default("resolution"), "--resolution"),
              threads: int = typer.Option(LatencySettings.default("threads"), "--threads"),
              batch: int = typer.Option(LatencySettings.default("batch"), "--batch"),
              num_classes: int = typer.Option(LatencySettings.default("num_classes"), "--num-classes"),
              runs: int = typer.Option(LatencySettings.default("runs"), "--runs",
                                       help="timed runs per whole model (calibration)"),
              entry_runs: int = typer.Option(ENTRY_RUNS, "--entry-runs", min=1, help="timed runs per table entry"),
              passes: int = typer.Option(1, "--passes", min=1, help="measure each entry N times at different "
                                         "moments, keep the fastest (busy machines)"),
              clock: str = typer.Option(CLOCKS[0], "--clock", help="wall, or cpu: the thread's CPU time (1 thread, "
                                        "in-process backends; robust on a shared machine)"),
              warmup: int = typer.Option(LatencySettings.default("warmup"), "--warmup"),
              rounds: int = typer.Option(LatencySettings.default("rounds"), "--rounds"),
              calibrate: int = typer.Option(CALIBRATE, "--calibrate", min=0, help="fit a linear correction on N "
                                            "whole models, applied only if it beats the plain sum on models it "
                                            "was not fitted on (0: plain sum + overhead)"),
              seed: int = typer.Option(0, "--seed", help="seed of the calibration models (their own random "
                                       "stream: no eval seed draws them)"),
              sets: list[str] = typer.Option([], "--set", help="another latency setting KEY=VALUE (repeatable), "
                                             "e.g. a backend's setting: stored with the table, used by its "
                                             "evals and searches"),
              limit: Optional[int] = typer.Option(None, "--limit", min=0, help="stop after N new entries "
                                                  "(resume later)"),
              json: bool = typer.Option(False, "--json")) -> None:
    """Measure every layer configuration of a space on a backend (resumable), optionally calibrate."""
    from mnas.latency.lut.build import build_table

    settings = LatencySettings(resolution=resolution, threads=threads, batch=batch, num_classes=num_classes,
                               runs=runs, warmup=warmup, rounds=rounds)
    settings = with_settings(settings, sets)
    t0 = time.perf_counter()
    if json:
        tbl = build_table(out, space, backend, settings, calibrate=calibrate, limit=limit, seed=seed,
                          entry_runs=entry_runs, clock=clock, passes=passes)
    else:
        with progress_bar("measuring layers", lines=LINES_EVERY_S) as update:  # its total: the entries this run measures
            tbl = build_table(out, space, backend, settings, calibrate=calibrate, limit=limit, seed=seed,
                              progress=update, entry_runs=entry_runs, clock=clock,
                              passes=passes)
    info = {"out": str(out), "backend": tbl.backend, "runtime_version": tbl.runtime_version,
            "space": tbl.space.name, "resolution": resolution, "threads": threads, "clock": tbl.clock,
            "entries": len(tbl.entries),
            "expected_entries": tbl.expected, "complete": tbl.complete, "overhead_ms": tbl.overhead_ms,
            "calibration": ({k: v for k, v in tbl.calibration.items() if k != "samples"} if tbl.calibration else None),
            "this_run_s": round(time.perf_counter() - t0, 1), "build_seconds": round(tbl.build_seconds, 1),
            "device": tbl.device.get("cpu")}
    if json:
        print_json(info)
        return
    console.print(table(f"latency table {out}", ["", "value"], [[k, v] for k, v in info.items()]))
    if not tbl.complete:
        console.print("[yellow]incomplete[/]: run the same command again to measure the rest")


@lut_app.command("eval")
def lut_eval(path: Path = typer.Argument(..., help="table file from 'mnas lut build'"),
             samples: int = typer.Option(50, "--samples", "-n", min=1),
             seed: Optional[int] = typer.Option(None, "--seed", help="seed of the eval's networks (default: "
                                                "drawn now and printed; the table's design never saw it)"),
             target: str = typer.Option("auto", "--target", "-t", help="T for the order accuracy near T: a zoo "
                                        "model or architecture measured beside the networks, or a latency "
                                        "in ms (12.5ms); auto: mnasnet-a1"),
             uncalibrated: bool = typer.Option(False, "--uncalibrated", help="ignore the table's calibration"),
             space: Optional[Path] = typer.Option(None, "--space", help="refuse unless the table is for this space "
                                                  "(a built-in name or a space YAML)"),
             backend: Optional[str] = typer.Option(None, "--backend", "-b", help="refuse unless the table was "
                                                   "built on this backend"),
             resolution: Optional[int] = typer.Option(None, "--resolution", help="refuse unless built at this"),
             partial: bool = typer.Option(False, "--partial", help="an incomplete table: evaluate only the "
                                          "architectures whose layers it all holds (labelled as such)"),
             rescale: bool = typer.Option(True, "--rescale/--no-rescale", help="measure 10 of the table's "
                                          "calibration models again and scale predictions by the machine's "
                                          "speed now against then"),
             sets: list[str] = typer.Option([], "--set", help="a latency setting KEY=VALUE for the real "
                                             "measurements (repeatable): refused unless the table was built "
                                             "with it where it changes what a layer costs"),
             retime_near: bool = typer.Option(True, "--retime-near/--no-retime-near", help="time the networks "
                                              "near T a second time and say how often two timings order "
                                              "them alike (T a model; about 20 % more time)"),
             show_samples: bool = typer.Option(False, "--show-samples", help="include every architecture"),
             plot: Optional[Path] = typer.Option(None, "--plot", help="draw each network's prediction against its "
                                                 "measurement (ms as the search sees them; LAT/T) to this PNG"),
             json: bool = typer.Option(False, "--json")) -> None:
    """Predict N fresh random architectures and measure each for real on the table's backend. Never
    changes the table; refuses an incomplete one unless --partial."""
    from mnas.latency.lut.evaluate import evaluate
    from mnas.latency.lut.table import LatencyTable

    if plot is not None and (plot.is_dir() or plot.suffix.lower() != ".png"):  # before the minutes of timing
        raise MnasError(f"--plot {plot}: give a PNG file name, such as eval.png")
    tbl = LatencyTable.load(path)
    tbl.check(backend=backend, space_yaml=_space_text(space) if space else None,
              settings=tbl.settings.replace(resolution=resolution) if resolution else None)
    if sets:
        wanted = with_settings(tbl.settings, sets)
        tbl.check(settings=wanted)
        tbl.settings = wanted  # in memory only: the eval never writes the table
    drawn = seed is None
    if seed is None:
        from mnas.latency.lut.evaluate import fresh_seed

        seed = fresh_seed()
        if not json:
            console.print(f"eval seed {seed} (drawn now; repeat this eval with --seed {seed})")
    if json:
        res = evaluate(tbl, samples, seed, calibrated=not uncalibrated, partial=partial, rescale=rescale,
                       target=target, retime_near=retime_near)
    else:
        with progress_bar("measuring models", lines=LINES_EVERY_S) as update:
            res = evaluate(tbl, samples, seed, calibrated=not uncalibrated, partial=partial, progress=update,
                           rescale=rescale, target=target, retime_near=retime_near)
    if drawn:
        res["seed_source"] = "drawn"
    if plot is not None:
        from mnas.report.lut_plots import plot_lut_eval

        res["plot"] = str(plot_lut_eval(res, plot))
    if not show_samples:
        res.pop("samples")
    if json:
        print_json(res)
        return
    console.print(table(f"{path} on {res['backend']} @ {res['resolution']}px, {res['threads']} thread(s), "
                        f"{res['clock']} clock{' (calibrated)' if res['calibrated'] else ''}, {res['n']} networks, "
                        f"seed {res['seed']}", *view_rows(res)))
    rows = [["predict_ms", f"{res['predict_ms']:.4g}"]]
    speed = res["search_speed"]
    rows.append(["search's speed factor (references alone, first)",
                 f"{speed['factor']:.3f} from {speed['references']} models" if speed["factor"]
                 else speed.get("note", "not measured")])
    if res["speed_factor"] is not None:
        rows.append(["rescaled: speed factor (references among the networks)",
                     f"{res['speed_factor']:.3f} from {res['references']} models"])
    near = res["near_target"]
    if near:
        acc = "n/a" if near["order_accuracy"] is None else f"{near['order_accuracy']:.1%}"
        rows.append([f"order accuracy near T (±{near['band']:.0%} of T = {near['t_ms']:.3g} ms, {near['target']})",
                     f"{acc} of {near['pairs']} pairs among {near['networks']} networks"])
        again = near.get("second_timing")
        if again and again["timings_agree"] is not None:
            rows.append([f"two timings agree near T ({again['networks_kept']} networks timed again)",
                         f"{again['timings_agree']:.1%} of {again['pairs']} pairs; the table against their mean "
                         f"{again['table_vs_mean']:.1%}"])
    rows.append(["noisy measurements", f"{res['noisy']} of {res['n']}"])
    if res.get("quiet"):
        rows.append(["within_10pct without them", f"{res['quiet']['within_10pct']:.4g}"])
    rows.append(["noisy table entries", f"{res['noisy_entries']} of {res['table_entries']}"])
    rows.append(["seed", f"{res['seed']} ({res['seed_source']}; stream {res['stream']!r}, calibration "
                 f"seed {res['calibration_seed']} on stream {res['calibration_stream']!r})"])
    console.print(table("", ["", "value"], rows))
    if res["seen_by_design"]:
        console.print(f"[yellow]seed {res['seed']}[/]: the method was designed looking at this seed's networks; "
                      "leave --seed out for an honest figure")
    if plot is not None:
        console.print(f"plot: {res['plot']}", soft_wrap=True)  # a path stays whole, to be copied
    load = res["load_average"]
    console.print(f"load average (1, 5, 15 min): {load['start']} at start, {load['end']} at end")
    if res["partial"]:
        console.print(f"[yellow]PARTIAL[/]: the table holds {res['table_entries']} of {res['space_entries']} "
                      f"entries; these figures cover only the {res['n']} of {res['drawn']} drawn architectures "
                      "whose layers it all holds, not the space")


VIEWS = (("unscaled", "unscaled (table as built)"), ("search", "as the search sees it (factor at start)"),
         ("rescaled", "rescaled (factor among the networks)"), ("ratio", "LAT/T, T predicted (target=predict)"),
         ("ratio_t_measured", "LAT/T, T timed (target=measure)"))


def view_rows(res: dict) -> tuple[list[str], list[list[str]]]:
    """The eval's figures side by side: the table as built, as a search scales it, and rescaled."""
    views = [(label, res["views"][key]) for key, label in VIEWS if res["views"].get(key)]

    def pct(m: dict, k: str) -> str:
        lo, hi = m[f"{k}_ci95"]
        return f"{m[k]:.1%} [{lo:.1%}, {hi:.1%}]"

    rows = [["within ±10 % [95 % CI]", *(pct(m, "within_10pct") for _, m in views)],
            ["within ±5 % [95 % CI]", *(pct(m, "within_5pct") for _, m in views)],
            ["MAPE", *(f"{m['mape']:.1%}" for _, m in views)],
            ["max error", *(f"{m['max_ape']:.1%}" for _, m in views)],
            ["bias", *(f"{m['bias']:+.1%}" for _, m in views)],
            ["Kendall tau", *(f"{m['kendall_tau']:.3f}" for _, m in views)]]
    return ["metric", *(label for label, _ in views)], rows


@lut_app.command("profile")
def lut_profile(path: Path = typer.Argument(..., help="onnxruntime table file from 'mnas lut build'"),
                samples: int = typer.Option(3, "--samples", "-n", min=1, help="random architectures to profile"),
                seed: int = typer.Option(0, "--seed"),
                runs: int = typer.Option(20, "--runs", min=1, help="profiled calls per network"),
                json: bool = typer.Option(False, "--json")) -> None:
    """Each table entry beside the same layer's time inside a whole network (onnxruntime's profiler):
    where the table's error comes from. Read-only; needs a table that holds the drawn architectures."""
    from mnas.latency.lut.evaluate import draw, load_average
    from mnas.latency.lut.profile import profile_arch
    from mnas.latency.lut.table import LatencyTable

    tbl = LatencyTable.load(path)
    load_start = load_average()
    archs, _ = draw(tbl, samples, seed, partial=True)
    res = {"table": str(path), "profiles": [profile_arch(tbl, a, runs) for a in archs],
           "load_average": {"start": load_start, "end": load_average()}}
    if json:
        print_json(res)
        return
    for p in res["profiles"]:
        rows = [[r["layer"], r["entry_ms"], r["in_network_ms"], r["ratio"]] for r in p["layers"]]
        rows.append(["(inserted by the runtime: reorders)", "", p["unattributed_ms"], ""])
        rows.append(["sum + overhead / profiled nodes / whole call", round(p["sum_entries_ms"] + p["overhead_ms"], 4),
                     p["sum_nodes_ms"], p["call_ms"]])
        console.print(table(p["arch"], ["layer", "entry ms", "in network ms", "ratio"], rows))
    load = res["load_average"]
    console.print(f"load average (1, 5, 15 min): {load['start']} at start, {load['end']} at end")


def with_settings(settings: LatencySettings, sets: list[str]) -> LatencySettings:
    """``settings`` with each ``KEY=VALUE`` of ``--set`` applied (validated like any setting)."""
    changes = {}
    for item in sets:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise MnasError(f"--set {item!r}: give KEY=VALUE, e.g. --set rounds=8")
        if key not in LatencySettings.model_fields:
            raise MnasError(f"--set {key}: not a latency setting; choose from "
                            f"{', '.join(sorted(LatencySettings.model_fields))}")
        changes[key] = value
    return settings.replace(**changes) if changes else settings


def _space_text(space: Path) -> str:
    from mnas.space.mnasnet import space_file

    path = space_file(space)
    try:
        return path.read_text()
    except OSError as e:
        raise MnasError(f"--space {space}: cannot read {path} ({e.strerror or e}): give a built-in space name "
                        "or a space YAML file") from None
