"""``mnas latency NAME|STRING``: measure an architecture on a runtime, here or on a device agent."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mnas import MnasError
from mnas.cli.app import app
from mnas.cli.output import console, print_json, table


@app.command("latency")
def latency(name: str = typer.Argument(..., help="zoo name, canonical string, or TPU/timm block strings"),
            backend: Optional[str] = typer.Option(None, "--backend", "-b",
                                                  help="onnxruntime (default), torch, openvino, litert, "
                                                       "remote:URL[,URL]"),
            threads: int = typer.Option(1, "--threads", min=1),
            resolution: int = typer.Option(224, "--resolution", min=8),
            batch: int = typer.Option(1, "--batch", min=1),
            runs: int = typer.Option(30, "--runs", min=1, help="timed runs (split into --rounds rounds)"),
            warmup: int = typer.Option(5, "--warmup", min=0),
            rounds: int = typer.Option(5, "--rounds", min=1),
            cv_threshold: float = typer.Option(0.05, "--cv-threshold", help="re-measure above this CV"),
            pin_core: Optional[int] = typer.Option(None, "--pin-core", help="pin to this CPU core"),
            clock: str = typer.Option("wall", "--clock", help="wall (elapsed) or cpu (this process's CPU "
                                      "time: robust on a loaded machine, single-threaded runs)"),
            width_multiplier: float = typer.Option(1.0, "--width-multiplier", "-w"),
            device: Optional[list[str]] = typer.Option(None, "--device",
                                                       help="device agent URL (repeat or comma-separate "
                                                            "for a pool)"),
            token_file: Optional[Path] = typer.Option(None, "--token-file", help="agent bearer token file"),
            cache: Optional[Path] = typer.Option(None, "--cache", help="cache file or directory "
                                                 "(default ~/.cache/mnas/latency.sqlite)"),
            no_cache: bool = typer.Option(False, "--no-cache", help="always measure"),
            json: bool = typer.Option(False, "--json")) -> None:
    """Measure an architecture's latency (median of round medians, ms per batch)."""
    from mnas.latency import LatencySettings, get_backend, measure
    from mnas.latency.cache import LatencyCache
    from mnas.space import resolve_arch

    label, arch = resolve_arch(name, width_multiplier)
    settings = LatencySettings(resolution=resolution, batch=batch, threads=threads, runs=runs, warmup=warmup,
                               rounds=rounds, cv_threshold=cv_threshold, pin_core=pin_core,
                               clock=clock)
    if device:
        from mnas.latency.remote import RemoteBackend
        urls = [u.strip() for d in device for u in d.split(",") if u.strip()]
        be = RemoteBackend(urls, token_file=str(token_file) if token_file else None)
        if backend and not backend.startswith("remote"):
            served = be._agent_info()["backend"]
            if served != backend:
                raise MnasError(f"--backend {backend} but the agent serves {served}; drop --backend or "
                                f"start the agent with --backend {backend}")
    else:
        if token_file and (backend or "").startswith("remote"):
            import os
            os.environ["MNAS_DEVICE_TOKEN_FILE"] = str(token_file)
        be = get_backend(backend or "onnxruntime")
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
            ["settings", f"batch {result.batch}, {result.resolution}px, {result.threads} thread(s)"],
            ["device", f"{result.device.get('cpu')} ({result.device.get('cores')} cores, {result.device.get('os')})"],
            ["cached", result.cached], ["measured at", result.time]]
    console.print(table(f"latency of {label}", ["", "value"], rows))
