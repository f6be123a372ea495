"""``mnas export``: build a searched architecture at deployment size, write it in a runtime's format, check it
against PyTorch and time that very file with the search's latency settings.

The search trains a small proxy (narrower, lower resolution), so unless full-size weights exist the exported
network is freshly initialised; its BatchNorm statistics are calibrated the way the latency backends do it, so
the file runs at the speed a trained one would (no denormal slow-down) and the outputs are well scaled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mnas import MnasError
from mnas.latency import LatencyResult, LatencySettings, get_backend
from mnas.latency.litert_backend import LiteRtBackend
from mnas.latency.local import random_input
from mnas.latency.onnxruntime_backend import OnnxRuntimeBackend
from mnas.latency.torch_backend import TorchBackend

log = logging.getLogger(__name__)

FORMATS = ("onnx", "tflite", "torchscript", "pytorch")
# the runtime each model file is checked and, failing the search's own backend, timed in
FILE_RUNTIMES = {"onnx": OnnxRuntimeBackend, "tflite": LiteRtBackend}


@dataclass
class ExportResult:
    path: Path
    format: str
    arch: str
    input_shape: tuple[int, ...]
    num_classes: int
    weights: str  # where the weights came from, in words
    weights_loaded: bool  # trained weights were loaded (else freshly initialised, BatchNorm calibrated)
    max_abs_diff: float  # exported file's output vs PyTorch eager, same random input
    output_scale: float  # max |PyTorch output|, to read max_abs_diff against
    runtime: str = ""
    measured: LatencyResult | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "arch": self.arch,
                "input_shape": list(self.input_shape), "num_classes": self.num_classes, "weights": self.weights,
                "weights_loaded": self.weights_loaded,
                "max_abs_diff": self.max_abs_diff, "output_scale": self.output_scale, "runtime": self.runtime,
                "measured": self.measured.to_dict() if self.measured else None, **self.info}


def build_for_export(arch_text: str, settings: LatencySettings, weights: Path | None = None):
    """(model prepared by ``mnas.model.export.prepare``, where its weights came from, whether trained weights
    were loaded). Fresh weights get calibrated BatchNorm statistics; trained ones are kept as they are."""
    import torch

    from mnas.model import build
    from mnas.model.export import prepare
    from mnas.space import Architecture

    torch.manual_seed(0)
    model = build(Architecture.parse(arch_text), num_classes=settings.num_classes, in_chans=settings.in_chans)
    source, loaded = "none: freshly initialised at full size (the search trained only a small proxy)", False
    if weights is not None and Path(weights).exists():
        blob = torch.load(weights, map_location="cpu", weights_only=True)
        state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
        try:
            model.load_state_dict(state)
            source, loaded = f"trained weights from {weights}", True
        except (RuntimeError, KeyError) as e:
            source = (f"none: {weights} does not fit the full-size model ({str(e).splitlines()[0][:120]}); "
                      "freshly initialised")
    return prepare(model, settings.input_shape(), calibrate=not loaded), source, loaded


def write_model(model, arch_text: str, fmt: str, out: Path, settings: LatencySettings) -> None:
    import torch

    from mnas.model.export import export

    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "pytorch":
        # plain tensors and strings only, so torch.load(..., weights_only=True) can read it
        torch.save({"arch": arch_text, "num_classes": settings.num_classes, "in_chans": settings.in_chans,
                    "resolution": settings.resolution, "state_dict": model.state_dict()}, out)
    else:
        out.write_bytes(export(model, fmt, settings.input_shape()))


def load_exported(path: Path, fmt: str, settings: LatencySettings) -> tuple[Callable[[np.ndarray], np.ndarray],
                                                                          tuple[int, ...]]:
    """The file in its own runtime -> (infer(numpy input) -> numpy output, input shape)."""
    path = Path(path)
    if fmt in FILE_RUNTIMES:
        infer, shape = FILE_RUNTIMES[fmt]().load(path.read_bytes(), settings)
        return (lambda x: np.asarray(infer(x))), shape
    import torch

    if fmt == "torchscript":
        model = torch.jit.load(str(path), map_location="cpu").eval()
    elif fmt == "pytorch":
        from mnas.model import build
        from mnas.space import Architecture
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = build(Architecture.parse(blob["arch"]), num_classes=int(blob["num_classes"]),
                      in_chans=int(blob["in_chans"]))
        model.load_state_dict(blob["state_dict"])
        model.eval()
    else:
        raise MnasError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")

    def infer(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return infer, settings.input_shape()


def remeasure(path: Path, fmt: str, settings: LatencySettings, search_backend: str | None) -> tuple[LatencyResult, str]:
    """Time the exported file: on the search's backend when it takes this format (onnxruntime, openvino,
    litert, a remote agent), otherwise in the format's own runtime. Returns (result, runtime name)."""
    data = Path(path).read_bytes()
    if search_backend:
        try:
            be = get_backend(search_backend)
            takes_file = be.model_format == fmt
        except MnasError as e:  # e.g. its agents are down or its token is gone: time the file here instead
            log.info("search backend %s unavailable (%s); timing in the format's own runtime", search_backend, e)
            takes_file = False
        if takes_file:
            return be.measure_file(data, settings), be.name
    if fmt in FILE_RUNTIMES:
        be = FILE_RUNTIMES[fmt]()
        return be.measure_file(data, settings), be.name
    infer, shape = load_exported(path, fmt, settings)
    return TorchBackend().time_runner(infer, shape, settings, extra={"format": fmt}), "torch"


def export_arch(arch_text: str, fmt: str, out: str | Path, settings: LatencySettings,
                search_backend: str | None = None, weights: Path | None = None,
                measure: bool = True) -> ExportResult:
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise MnasError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    import torch

    out = Path(out)
    model, source, loaded = build_for_export(arch_text, settings, weights)
    write_model(model, arch_text, fmt, out, settings)
    infer, shape = load_exported(out, fmt, settings)
    x = random_input(tuple(shape), seed=1)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    got = infer(x)
    if got.shape != ref.shape:
        raise MnasError(f"exported {fmt} output has shape {got.shape}, PyTorch gives {ref.shape}")
    result = ExportResult(out, fmt, arch_text, tuple(shape), settings.num_classes, source, loaded,
                          float(np.max(np.abs(got - ref))), float(np.max(np.abs(ref))))
    if measure:
        result.measured, result.runtime = remeasure(out, fmt, settings, search_backend)
    return result


def export_trial(directory: str | Path, rank: int | None, fmt: str, out: str | Path, measure: bool = True,
                 runs: int | None = None, trial_id: int | None = None) -> tuple[dict[str, Any], ExportResult]:
    """Export the completed trial at ``rank`` (or with id ``trial_id``) of an experiment; returns (trial row,
    result)."""
    from mnas.report.summary import open_store, trial_by_id, trial_by_rank

    directory = Path(directory)
    with open_store(directory) as store:
        row = trial_by_id(store, trial_id) if trial_id is not None else trial_by_rank(store, rank or 1)
        latency = store.get_meta("latency") or {}
        train = store.trial(row["id"]).train or {}
    settings = LatencySettings.from_dict(latency.get("settings") or {})
    if runs is not None:
        settings = settings.replace(runs=runs, rounds=min(settings.rounds, runs))
    weights = None
    for cand in (train.get("weights"), train.get("checkpoint"), directory / "weights" / f"{row['id']}.pt"):
        if cand and Path(directory, cand).exists():
            weights = Path(directory, cand)
            break
    res = export_arch(row["arch"], fmt, out, settings, latency.get("backend"), weights, measure)
    res.info.update({"trial": row["id"], "rank": row["rank"], "searched_latency_ms": row["latency_ms"],
                     "search_backend": latency.get("backend"), "settings": settings.to_dict()})
    return row, res
