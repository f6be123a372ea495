"""``mnas lut build`` and ``mnas lut eval``: a latency table for the user's own device, and its accuracy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from mnas import MnasError
from mnas.cli.output import console, print_json, table
from mnas.cli.progress import progress_bar
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
              seed: int = typer.Option(0, "--seed", help="seed of the calibration models"),
              limit: Optional[int] = typer.Option(None, "--limit", min=0, help="stop after N new entries "
                                                  "(resume later)"),
              json: bool = typer.Option(False, "--json")) -> None:
    """Measure every layer configuration of a space on a backend (resumable), optionally calibrate."""
    from mnas.latency.lut.build import build_table

    settings = LatencySettings(resolution=resolution, threads=threads, batch=batch, num_classes=num_classes,
                               runs=runs, warmup=warmup, rounds=rounds)
    t0 = time.perf_counter()
    if json:
        tbl = build_table(out, space, backend, settings, calibrate=calibrate, limit=limit, seed=seed,
                          entry_runs=entry_runs, clock=clock, passes=passes)
    else:
        with progress_bar("measuring layers") as update:  # its total: the entries this run measures
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
             seed: int = typer.Option(0, "--seed"),
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
             show_samples: bool = typer.Option(False, "--show-samples", help="include every architecture"),
             json: bool = typer.Option(False, "--json")) -> None:
    """Predict N fresh random architectures and measure each for real on the table's backend. Never
    changes the table; refuses an incomplete one unless --partial."""
    from mnas.latency.lut.evaluate import evaluate
    from mnas.latency.lut.table import LatencyTable

    tbl = LatencyTable.load(path)
    tbl.check(backend=backend, space_yaml=_space_text(space) if space else None,
              settings=tbl.settings.replace(resolution=resolution) if resolution else None)
    if json:
        res = evaluate(tbl, samples, seed, calibrated=not uncalibrated, partial=partial, rescale=rescale)
    else:
        with progress_bar("measuring models") as update:
            res = evaluate(tbl, samples, seed, calibrated=not uncalibrated, partial=partial, progress=update,
                           rescale=rescale)
    if not show_samples:
        res.pop("samples")
    if json:
        print_json(res)
        return
    keys = ("n", "within_10pct", "within_5pct", "mape", "max_ape", "rmse_ms", "kendall_tau", "bias", "predict_ms")
    rows = [[k, f"{res[k]:.4g}" if isinstance(res[k], float) else res[k]] for k in keys]
    if res["speed_factor"] is not None:
        rows.append(["machine speed factor (now / at build)", f"{res['speed_factor']:.3f} from {res['references']} "
                     f"models; unscaled within_10pct {res['unscaled']['within_10pct']:.4g}"])
    rows.append(["noisy measurements", f"{res['noisy']} of {res['n']}"])
    if res.get("quiet"):
        rows.append(["within_10pct without them", f"{res['quiet']['within_10pct']:.4g}"])
    rows.append(["noisy table entries", f"{res['noisy_entries']} of {res['table_entries']}"])
    console.print(table(f"{path} on {res['backend']} @ {res['resolution']}px, {res['threads']} thread(s), "
                        f"{res['clock']} clock"
                        f"{' (calibrated)' if res['calibrated'] else ''}", ["metric", "value"], rows))
    load = res["load_average"]
    console.print(f"load average (1, 5, 15 min): {load['start']} at start, {load['end']} at end")
    if res["partial"]:
        console.print(f"[yellow]PARTIAL[/]: the table holds {res['table_entries']} of {res['space_entries']} "
                      f"entries; these figures cover only the {res['n']} of {res['drawn']} drawn architectures "
                      "whose layers it all holds, not the space")


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


def _space_text(space: Path) -> str:
    from mnas.space.mnasnet import space_file

    path = space_file(space)
    try:
        return path.read_text()
    except OSError as e:
        raise MnasError(f"--space {space}: cannot read {path} ({e.strerror or e}): give a built-in space name "
                        "or a space YAML file") from None
