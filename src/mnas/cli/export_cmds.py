"""``mnas export [EXPERIMENT] [--rank K | --trial ID] [--weights DIR|CKPT | --random-weights] --format F --out FILE``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mnas import MnasError
from mnas.cli.output import console as _console
from mnas.cli.output import print_json

app = typer.Typer()  # this module's commands; cli/main.py adds them to the root app


def _wide_console():
    """Piped output has no width (rich would fold at 80 columns); give architecture strings room instead."""
    from rich.console import Console
    return _console if _console.is_terminal else Console(width=400)


def _num(v, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def check_choice(directory: Path | None, rank: int | None, trial: int | None, weights: Path | None,
                 random_weights: bool) -> None:
    """Refuse, before any work, the combinations that cannot mean one thing."""
    if rank is not None and trial is not None:
        raise MnasError("give --rank or --trial, not both")
    if weights is not None and random_weights:
        raise MnasError("give --weights DIR|CKPT or --random-weights, not both")
    if directory is None:
        if weights is None:
            raise MnasError("nothing to export: give a checkpoint with --weights DIR|CKPT (mnas train ... --dir DIR),"
                            " or an experiment directory and a trial (mnas export EXPERIMENT --rank K --weights ...)")
        if rank is not None or trial is not None:
            raise MnasError("--rank and --trial pick a trial of an experiment: give its directory too "
                            "(mnas export EXPERIMENT --trial ID --weights ...)")
    elif weights is None and not random_weights:
        pick = f"--trial {trial}" if trial is not None else f"--rank {rank or 1}"
        raise MnasError(f"{directory}: the search trained only a small proxy, so there are no weights to export: "
                        f"train the trial as deployed (mnas train {directory} {pick} --dir DIR), then export it "
                        "(mnas export --weights DIR --format F --out FILE), or export it untrained with "
                        "--random-weights")


@app.command("export")
def export(directory: Optional[Path] = typer.Argument(None, metavar="EXPERIMENT",
                                                     help="experiment directory (optional with --weights)"),
           rank: Optional[int] = typer.Option(None, "--rank", min=1, help="1 (default) = the highest reward, "
                                              "as in mnas report"),
           trial: Optional[int] = typer.Option(None, "--trial", min=1, help="a trial id (mnas trials) instead "
                                               "of a rank"),
           weights: Optional[Path] = typer.Option(None, "--weights", help="a training checkpoint, or the folder "
                                                  "of mnas train --dir (its best.pt): architecture, classes, "
                                                  "channels and resolution come from it"),
           random_weights: bool = typer.Option(False, "--random-weights", help="export the trial freshly "
                                               "initialised (for timing only: its predictions mean nothing)"),
           fmt: str = typer.Option("onnx", "--format", help="onnx | tflite | torchscript | pytorch"),
           out: Path = typer.Option(..., "--out", help="file to write (and FILE.json, its metadata)"),
           measure: bool = typer.Option(True, "--measure/--no-measure", help="re-time the written file"),
           runs: Optional[int] = typer.Option(None, "--runs", min=1, help="override the timed runs"),
           verify: Optional[bool] = typer.Option(None, "--verify/--no-verify", help="compare the file's top-1 on "
                                                 "the checkpoint's validation split with PyTorch's (default: "
                                                 "with --weights)"),
           verify_limit: Optional[int] = typer.Option(None, "--verify-limit", min=1, help="verify on N validation "
                                                      "images only, spread evenly over the classes"),
           quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: post-training static "
                                                  "quantisation (onnx, tflite), calibrated on training images; "
                                                  "its top-1 and latency are reported against float32"),
           dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="a free batch dimension (onnx, "
                                              "torchscript; the default is batch 1)"),
           dataset: Optional[str] = typer.Option(None, "--dataset", help="the checkpoint's dataset where it is "
                                                 "now (SPEC, as mnas train --dataset), if it moved"),
           json: bool = typer.Option(False, "--json")) -> None:
    """Write a trained checkpoint or a searched architecture in a runtime's format, check it against PyTorch
    (outputs, and validation top-1 with trained weights), re-measure the file."""
    from mnas.deploy.export import export_checkpoint, export_trial
    from mnas.model.export import check_format
    from mnas.model.quantize import check_quantize

    console = _wide_console()
    check_quantize(quantize, check_format(fmt))
    if dynamic_batch and fmt.lower() == "tflite":
        raise MnasError("--dynamic-batch: a .tflite file has a fixed input shape (LiteRT resizes it at run time "
                        "with interpreter.resize_tensor_input); leave --dynamic-batch out for tflite")
    check_choice(directory, rank, trial, weights, random_weights)
    kw = dict(measure=measure, runs=runs, verify=verify, dataset=dataset, verify_limit=verify_limit,
              quantize=quantize, dynamic_batch=dynamic_batch)
    if directory is None:
        ranked, res = None, export_checkpoint(weights, fmt, out, **kw)
    else:
        ranked, res = export_trial(directory, rank, fmt, out, trial_id=trial, weights=weights, **kw)
    d = res.to_dict()
    if json:
        print_json(d)
    else:
        _print(console, ranked, res, d)
    if not res.parity_ok:
        p = res.parity
        kind = f"{res.quantize} " if res.quantize else ""
        _console_err().print(f"[red]the {kind}{res.format} file's top-1 differs from PyTorch's by "
                             f"{p['diff_points']:+.2f} points (more than {p['max_diff_points']:g})[/]"
                             + ("; it is written: judge the gap, or ship the float32 file" if res.quantize else ""))
        raise typer.Exit(1)


def _console_err():
    from rich.console import Console
    return Console(stderr=True)


def _print(console, ranked, res, d) -> None:
    if ranked is not None:
        t = ranked.trial
        console.print(f"rank {ranked.rank}: trial {t.id}, accuracy {_num(t.accuracy, '.4f')} (proxy), "
                      f"reward {_num(t.reward, '.4f')}")
    console.print(f"architecture: {res.arch}")
    dims = ["N" if res.metadata.get("batch") == "dynamic" else str(res.input_shape[0]), *map(str, res.input_shape[1:])]
    layout = res.metadata.get("input_layout", "NCHW")
    console.print(f"wrote {res.path} ({res.format}{', ' + res.quantize if res.quantize else ''}, "
                  f"{res.path.stat().st_size / 1e6:.2f} MB), input {'x'.join(dims)} ({layout}), {res.num_classes} "
                  f"classes; metadata in {res.sidecar}")
    console.print(f"weights: {res.weights}")
    rel = res.max_abs_diff / max(res.output_scale, 1e-12)
    if res.quantize:
        console.print(f"{res.quantize} ({d['metadata'].get('calibration')}): max |diff| from float32 PyTorch "
                      f"{res.max_abs_diff:.3g} (outputs up to {res.output_scale:.3g}, relative {rel:.2g})")
    else:
        verdict = "matches PyTorch" if rel < 1e-3 else "[red]DIFFERS from PyTorch[/]"
        console.print(f"{verdict}: max |diff| {res.max_abs_diff:.3g} (outputs up to {res.output_scale:.3g}, "
                      f"relative {rel:.2g})")
    if res.parity:
        p = res.parity
        part = f"{p['images']} of {p['images_total']} (spread over the classes)" if p["limited"] \
            else f"all {p['images']}"
        kind = f" {res.quantize}" if res.quantize else ""
        console.print(f"validation top-1 on {part} images of {p['dataset']}: PyTorch {100 * p['pytorch_top1']:.2f}%, "
                      f"{p['runtime']}{kind} {100 * p['file_top1']:.2f}% ({p['diff_points']:+.2f} points)")
    if res.measured:
        m, f = res.measured, res.measured_fp32
        searched = d.get("search_backend")
        if f is not None:  # an int8 file, timed with its float32 file in interleaved rounds
            line = (f"latency: re-measured {res.quantize} {m.median_ms:.3f} ms, float32 {f.median_ms:.3f} ms "
                    f"({f.median_ms / m.median_ms:.2f}x; median, {res.runtime} {m.runtime_version}, {m.runs} runs "
                    f"each{', rounds interleaved' if m.extra.get('interleaved') else ''}, cv {m.cv:.3f} / {f.cv:.3f})")
        else:
            line = (f"latency: re-measured {m.median_ms:.3f} ms (median, {res.runtime} {m.runtime_version}, "
                    f"{m.runs} runs, cv {m.cv:.3f})")
        if ranked is None:
            console.print(line)
            return
        console.print(f"{line} vs searched {_num(ranked.trial.latency_ms, '.3f')} ms (backend {searched})")
        prefix = (searched or "").split(":")[0].lower()
        if {"ort": "onnxruntime", "tflite": "litert"}.get(prefix, prefix) != res.runtime:
            console.print(f"[yellow]note[/]: the search timed with {searched}, this file runs in "
                          f"{res.runtime}: the two figures come from different runtimes")
        searched_q, q = d["settings"].get("quantize", "none"), res.quantize or "none"
        if searched_q != q:
            console.print(f"[yellow]note[/]: the search timed {'float32' if searched_q == 'none' else searched_q} "
                          f"networks, this file is {'float32' if q == 'none' else q} (latency.quantize)")
        searched_px, px = d.get("searched_resolution"), d["settings"]["resolution"]
        if searched_px is not None and searched_px != px:
            console.print(f"[yellow]note[/]: the search timed {searched_px} px inputs, this file takes {px} px "
                          "(the checkpoint's resolution)")
