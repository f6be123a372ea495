"""``mnas export``: build a searched architecture at deployment size, write it in a runtime's format, check it
against PyTorch and time that very file with the search's latency settings.

The search trains a small proxy (narrower, lower resolution), so unless full-size weights exist the exported
network is freshly initialised; its BatchNorm statistics are calibrated the way the latency backends do it, so
the file runs at the speed a trained one would (no denormal slow-down) and the outputs are well scaled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mnas import MnasError
from mnas.latency.base import LatencyResult, LatencySettings, get_backend

FORMATS = ("onnx", "tflite", "torchscript", "pytorch")
RUNTIME = {"onnx": "onnxruntime", "tflite": "litert", "torchscript": "torch", "pytorch": "torch"}


@dataclass
class ExportResult:
    path: Path
    format: str
    arch: str
    input_shape: tuple[int, ...]
    num_classes: int
    weights: str  # where the weights came from, in words
    max_abs_diff: float  # exported file's output vs PyTorch eager, same random input
    output_scale: float  # max |PyTorch output|, to read max_abs_diff against
    runtime: str = ""
    measured: LatencyResult | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "arch": self.arch,
                "input_shape": list(self.input_shape), "num_classes": self.num_classes, "weights": self.weights,
                "max_abs_diff": self.max_abs_diff, "output_scale": self.output_scale, "runtime": self.runtime,
                "measured": self.measured.to_dict() if self.measured else None, **self.info}


def build_for_export(arch_text: str, settings: LatencySettings, weights: Path | None = None):
    """(model in eval mode, where its weights came from)."""
    import torch

    from mnas.latency.protocol import calibrate_bn
    from mnas.model import build
    from mnas.space import Architecture

    arch = Architecture.parse(arch_text)
    torch.manual_seed(0)
    model = build(arch, num_classes=settings.num_classes, in_chans=settings.in_chans)
    source = "none: freshly initialised at full size (the search trained only a small proxy)"
    if weights is not None and Path(weights).exists():
        blob = torch.load(weights, map_location="cpu", weights_only=True)
        state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
        try:
            model.load_state_dict(state)
            source = f"trained weights from {weights}"
        except (RuntimeError, KeyError) as e:
            source = (f"none: {weights} does not fit the full-size model ({str(e).splitlines()[0][:120]}); "
                      "freshly initialised")
    if source.startswith("none"):
        calibrate_bn(model, settings.input_shape())
    return model.eval(), source


def write_model(model, arch_text: str, fmt: str, out: Path, settings: LatencySettings) -> None:
    import torch

    shape = settings.input_shape()
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        from mnas.latency.local import onnx_bytes
        out.write_bytes(onnx_bytes(model, shape))
    elif fmt == "tflite":
        from mnas.latency.litert_backend import LiteRtBackend
        out.write_bytes(LiteRtBackend().export(model, shape))
    elif fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, torch.zeros(shape))
        traced.save(str(out))
    elif fmt == "pytorch":
        # plain tensors and strings only, so torch.load(..., weights_only=True) can read it
        torch.save({"arch": arch_text, "num_classes": settings.num_classes, "in_chans": settings.in_chans,
                    "resolution": settings.resolution, "state_dict": model.state_dict()}, out)
    else:
        raise MnasError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")


def load_exported(path: Path, fmt: str, settings: LatencySettings) -> tuple[Callable[[np.ndarray], np.ndarray],
                                                                          tuple[int, ...]]:
    """The file in its own runtime -> (infer(numpy input) -> numpy output, input shape)."""
    path = Path(path)
    if fmt in ("onnx", "tflite"):
        from mnas.latency.litert_backend import LiteRtBackend
        from mnas.latency.onnxruntime_backend import OnnxRuntimeBackend
        be = OnnxRuntimeBackend() if fmt == "onnx" else LiteRtBackend()
        infer, shape = be.load(path.read_bytes(), settings)
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
    if search_backend and fmt in ("onnx", "tflite"):
        try:
            be = get_backend(search_backend)
        except MnasError:
            be = None
        if be is not None and getattr(be, "model_format", None) == fmt and hasattr(be, "measure_bytes"):
            return be.measure_bytes(data, settings), be.name
        if be is not None and hasattr(be, "post_model"):
            info = getattr(be, "_agent_info", lambda: {})()
            if info.get("model_format") == fmt:
                return be.post_model(data, settings), getattr(be, "name", search_backend)
    if fmt == "onnx":
        from mnas.latency.onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend().measure_bytes(data, settings), "onnxruntime"
    if fmt == "tflite":
        from mnas.latency.litert_backend import LiteRtBackend
        return LiteRtBackend().measure_bytes(data, settings), "litert"
    from mnas.latency.torch_backend import TorchBackend
    infer, shape = load_exported(path, fmt, settings)
    return TorchBackend().time_runner(infer, shape, settings, extra={"format": fmt}), "torch"


def export_arch(arch_text: str, fmt: str, out: str | Path, settings: LatencySettings,
                search_backend: str | None = None, weights: Path | None = None,
                measure: bool = True) -> ExportResult:
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise MnasError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    import torch

    from mnas.latency.local import random_input

    out = Path(out)
    model, source = build_for_export(arch_text, settings, weights)
    write_model(model, arch_text, fmt, out, settings)
    infer, shape = load_exported(out, fmt, settings)
    x = random_input(tuple(shape), seed=1)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    got = infer(x)
    if got.shape != ref.shape:
        raise MnasError(f"exported {fmt} output has shape {got.shape}, PyTorch gives {ref.shape}")
    result = ExportResult(out, fmt, arch_text, tuple(shape), settings.num_classes, source,
                          float(np.max(np.abs(got - ref))), float(np.max(np.abs(ref))))
    if measure:
        result.measured, result.runtime = remeasure(out, fmt, settings, search_backend)
    return result


def export_trial(directory: str | Path, rank: int, fmt: str, out: str | Path, measure: bool = True,
                 runs: int | None = None) -> tuple[dict[str, Any], ExportResult]:
    """Export the completed trial at ``rank`` of an experiment; returns (trial row, result)."""
    from mnas.report.summary import open_store, trial_by_rank

    directory = Path(directory)
    with open_store(directory) as store:
        row = trial_by_rank(store, rank)
        latency = store.get_meta("latency") or {}
        train = store.trial(row["id"]).train or {}
    settings = LatencySettings.from_dict(latency.get("settings") or {})
    if runs is not None:
        settings.runs, settings.rounds = runs, min(settings.rounds, runs)
    weights = None
    for cand in (train.get("weights"), train.get("checkpoint"), directory / "weights" / f"{row['id']}.pt"):
        if cand and Path(directory, cand).exists():
            weights = Path(directory, cand)
            break
    res = export_arch(row["arch"], fmt, out, settings, latency.get("backend"), weights, measure)
    res.info.update({"trial": row["id"], "rank": rank, "searched_latency_ms": row["latency_ms"],
                     "search_backend": latency.get("backend"), "settings": settings.to_dict()})
    return row, res
