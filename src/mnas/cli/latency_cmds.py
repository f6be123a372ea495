"""``mnas latency NAME|STRING``: measure an architecture on a runtime, here or on a device agent."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mnas import MnasError
from mnas.cli.output import console, print_json, table
from mnas.latency.settings import LatencyConfig, LatencySettings

app = typer.Typer()  # this module's commands; cli/main.py adds them to the root app


def _help(field: str) -> str:
    return LatencyConfig.model_fields[field].description or ""


@app.command("latency")
def latency(name: str = typer.Argument(..., help="zoo name (or NAME@WIDTH), canonical string, or TPU/timm "
                                                 "block strings"),
            backend: Optional[str] = typer.Option(None, "--backend", "-b", help=f"{_help('backend')} "
                                                  f"(default {LatencyConfig.default('backend')})"),
            threads: int = typer.Option(LatencySettings.default("threads"), "--threads", help=_help("threads")),
            resolution: int = typer.Option(LatencySettings.default("resolution"), "--resolution",
                                           help=_help("resolution")),
            batch: int = typer.Option(LatencySettings.default("batch"), "--batch", help=_help("batch")),
            runs: int = typer.Option(LatencySettings.default("runs"), "--runs", help=_help("runs")),
            warmup: int = typer.Option(LatencySettings.default("warmup"), "--warmup", help=_help("warmup")),
            rounds: int = typer.Option(LatencySettings.default("rounds"), "--rounds", help=_help("rounds")),
            cv_threshold: float = typer.Option(LatencySettings.default("cv_threshold"), "--cv-threshold",
                                               help=_help("cv_threshold")),
            pin_core: Optional[int] = typer.Option(LatencySettings.default("pin_core"), "--pin-core",
                                                   help=_help("pin_core")),
            clock: str = typer.Option(LatencySettings.default("clock"), "--clock", help=_help("clock")),
            quantize: str = typer.Option(LatencySettings.default("quantize"), "--quantize", help=_help("quantize")),
            width_multiplier: float = typer.Option(1.0, "--width-multiplier", "-w"),
            agent: Optional[list[str]] = typer.Option(None, "--agent",
                                                      help="device agent URL (mnas device serve; repeat or "
                                                           "comma-separate for a pool)"),
            token_file: Optional[Path] = typer.Option(None, "--token-file", help="agent bearer token file"),
            cache: Optional[Path] = typer.Option(None, "--cache", help="cache file or directory "
                                                 "(default ~/.cache/mnas/latency.sqlite)"),
            no_cache: bool = typer.Option(False, "--no-cache", help="always measure"),
            json: bool = typer.Option(False, "--json")) -> None:
    """Measure an architecture's latency (median of round medians, ms per batch)."""
    from mnas.latency import LatencyCache, get_backend, measure
    from mnas.space import resolve_arch

    label, arch = resolve_arch(name, width_multiplier)
    settings = LatencySettings(resolution=resolution, batch=batch, threads=threads, runs=runs, warmup=warmup,
                               rounds=rounds, cv_threshold=cv_threshold, pin_core=pin_core, clock=clock,
                               quantize=quantize)
    token = {"token_file": str(token_file) if token_file else None}
    if agent:
        urls = [u.strip() for d in agent for u in d.split(",") if u.strip()]
        be = get_backend(f"remote:{','.join(urls)}", **token)
        if backend and not backend.startswith("remote"):
            served = be.info()["backend"]
            if served != backend:
                raise MnasError(f"--backend {backend} but the agent serves {served}; drop --backend or "
                                f"start the agent with --backend {backend}")
    else:
        spec = backend or LatencyConfig.default("backend")
        be = get_backend(spec, **token) if spec.partition(":")[0].lower() == "remote" else get_backend(spec)
    result = measure(arch, be, settings, None if no_cache else LatencyCache(cache))
    info = {"name": label, **result.to_dict()}
    if json:
        print_json(info)
        return
    rows = [["median", f"{result.median_ms:.3f} ms"], ["p10 / p90", f"{result.p10_ms:.3f} / {result.p90_ms:.3f} ms"],
            ["mean ± std", f"{result.mean_ms:.3f} ± {result.std_ms:.3f} ms"],
            ["cv (round medians)", f"{result.cv:.2%}"], ["runs", f"{result.runs} in {result.rounds} rounds, "
                                                                  f"{result.warmup} warm-up"],
            ["re-measures", result.remeasures], ["backend", f"{result.backend} {result.runtime_version}"],
            ["settings", f"batch {result.batch}, {result.resolution}px, {result.threads} thread(s)"
                          + (f", {settings.quantize}" if settings.quantize != "none" else "")],
            ["device", f"{result.device.get('cpu')} ({result.device.get('cores')} cores, {result.device.get('os')})"],
            ["cached", result.cached], ["measured at", result.time]]
    console.print(table(f"latency of {label}", ["", "value"], rows))
