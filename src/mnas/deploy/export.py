"""``mnas export``: a network in a runtime's format, checked against PyTorch and timed as a file.

The weights come from a training checkpoint (``mnas train ... --dir DIR``), which also fixes the classes,
input channels, resolution and normalisation; with them, the file's top-1 on the checkpoint's validation
split is computed in the file's own runtime and compared with PyTorch's. A searched architecture may also be
exported freshly initialised (the search trains only a small proxy): asked for explicitly, its BatchNorm
statistics calibrated the way the latency backends do it, so the file runs at the speed a trained one would.
Every export writes ``FILE.json`` beside the file: what an application needs to feed it.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from mnas import MnasError, __version__
from mnas.fileio import atomic_write, check_outputs
from mnas.latency import LatencyResult, LatencySettings, get_backend
from mnas.latency.litert_backend import LiteRtBackend
from mnas.latency.fingerprint import fingerprint
from mnas.latency.local import random_input
from mnas.latency.protocol import make_result, time_interleaved
from mnas.latency.onnxruntime_backend import OnnxRuntimeBackend
from mnas.latency.torch_backend import TorchBackend
from mnas.model.export import check_format
from mnas.model.quantize import check_quantize
from mnas.deploy.parity import (MAX_DIFF_POINTS, MAX_INT8_DIFF_POINTS, calibration_images, portable_spec,
                                validation_data, verify_top1)

if TYPE_CHECKING:
    from mnas.store.query import RankedTrial

log = logging.getLogger(__name__)

# the runtime each model file is checked and, failing the search's own backend, timed in
FILE_RUNTIMES = {"onnx": OnnxRuntimeBackend, "tflite": LiteRtBackend}
TORCHSCRIPT_META = "mnas.json"  # the extra file a TorchScript export carries its metadata in
TFLITE_META = "mnas"  # the metadata entry of a .tflite file holding the same JSON (labels included)
TFLITE_LABELS = "labels.txt"  # and its class names, one a line, as TFLite classifiers read them
FILE_LAYOUTS = {"tflite": "NHWC"}  # a file's input layout (the others: NCHW, as in PyTorch)
NOISE_CALIBRATION = "noise: standard-normal inputs (random weights; for timing only)"
RANDOM_SOURCE = "none: freshly initialised at full size (the search trained only a small proxy)"


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
    measured_fp32: LatencyResult | None = None  # an int8 export: the float32 file, timed interleaved with it
    quantize: str | None = None
    checkpoint: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    sidecar: Path | None = None
    parity: dict[str, Any] | None = None  # validation top-1 of PyTorch and of the file (None: not verified)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def weights_source(self) -> str:
        return "checkpoint" if self.checkpoint else "random"

    @property
    def parity_ok(self) -> bool:
        return self.parity is None or abs(self.parity["diff_points"]) <= self.parity["max_diff_points"]

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "arch": self.arch,
                "input_shape": list(self.input_shape), "num_classes": self.num_classes, "weights": self.weights,
                "weights_loaded": self.weights_loaded, "weights_source": self.weights_source,
                "checkpoint": self.checkpoint, "metadata": self.metadata,
                "sidecar": str(self.sidecar) if self.sidecar else None, "parity": self.parity,
                "max_abs_diff": self.max_abs_diff, "output_scale": self.output_scale, "runtime": self.runtime,
                "measured": self.measured.to_dict() if self.measured else None, "quantize": self.quantize,
                "measured_fp32": self.measured_fp32.to_dict() if self.measured_fp32 else None, **self.info}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    from mnas.train import checkpoint as ckpt

    return ckpt.read(path)


def checkpoint_settings(blob: dict[str, Any], base: LatencySettings | None = None) -> LatencySettings:
    """``base`` (the search's latency settings, else the defaults) at the checkpoint's input and classes."""
    from mnas.train import checkpoint as ckpt

    meta = ckpt.info(blob)
    return (base or LatencySettings()).replace(resolution=meta.resolution, in_chans=meta.in_chans,
                                               num_classes=meta.num_classes)


def metadata(arch_text: str, settings: LatencySettings, blob: dict[str, Any] | None, name: str = "",
             fmt: str = "onnx", quantize: str | None = None, dynamic_batch: bool = False,
             calibration: str | None = None) -> dict[str, Any]:
    """What an application needs to feed the file and read its output (the ONNX metadata, FILE.json). It
    names no directory: the checkpoint and the dataset appear by file name (``portable_spec``)."""
    layout = FILE_LAYOUTS.get(fmt, "NCHW")
    d: dict[str, Any] = {"mnas_arch": arch_text, "mnas_name": name or arch_text, "resolution": settings.resolution,
                         "in_chans": settings.in_chans, "num_classes": settings.num_classes,
                         "input_layout": layout, "batch": "dynamic" if dynamic_batch else settings.batch,
                         "quantize": quantize or "none", "mnas_version": __version__}
    if quantize:
        d["calibration"] = calibration or NOISE_CALIBRATION
    if blob is None:
        d["weights"] = "random: freshly initialised, not trained (predictions are meaningless)"
        return d
    from mnas.train import checkpoint as ckpt

    meta = ckpt.info(blob)
    crop = "" if meta.eval_crop >= 1 else (f"the centre square of {meta.eval_crop:g} of the shorter side, ")
    d.update({"mnas_name": meta.name, "classes": list(meta.classes), "mean": list(meta.mean), "std": list(meta.std),
              "eval_crop": meta.eval_crop, "weights": f"trained: {Path(blob['path']).name}, epoch "
              f"{blob.get('epoch')}", "dataset": portable_spec(meta.dataset),
              "preprocessing": f"{crop}resized to {meta.resolution}x{meta.resolution}, float32 {layout}, per channel "
                               "input = (pixel / 255 - mean) / std; the output is one logit per class"
                               + (" (a full-integer file quantises the input and dequantises the output with its "
                                  "tensors' scale and zero point)" if quantize and fmt == "tflite" else "")})
    return d


def build_for_export(arch_text: str, settings: LatencySettings, blob: dict[str, Any] | None = None):
    """(model prepared by ``mnas.model.export.prepare``, where its weights came from, whether trained weights
    were loaded). Fresh weights get calibrated BatchNorm statistics; trained ones are kept as they are."""
    import torch

    from mnas.model import build
    from mnas.model.export import prepare
    from mnas.space import Architecture

    if blob is not None:
        from mnas.train import checkpoint as ckpt

        model = ckpt.load_model(blob)
        return prepare(model, settings.input_shape(), calibrate=False), \
            f"trained weights from {blob['path']} (epoch {blob.get('epoch')})", True
    torch.manual_seed(0)
    model = build(Architecture.parse(arch_text), num_classes=settings.num_classes, in_chans=settings.in_chans)
    return prepare(model, settings.input_shape(), calibrate=True), RANDOM_SOURCE, False


def write_model(model, arch_text: str, fmt: str, out: Path, settings: LatencySettings,
                meta: dict[str, Any] | None = None, dynamic_batch: bool = False, quantize: str | None = None,
                calibration: list[np.ndarray] | None = None) -> None:
    """Write the file, with ``meta`` inside (ONNX metadata_props, a TorchScript extra file, the pytorch dict,
    TFLite metadata entries: ``TFLITE_META`` and ``TFLITE_LABELS``). ``dynamic_batch``, ``quantize`` and
    ``calibration``: as ``mnas.model.export.export`` takes them."""
    import torch

    from mnas.model.export import export

    meta = meta or {}
    if fmt == "pytorch":
        # plain tensors, strings, numbers and lists only, so torch.load(..., weights_only=True) can read it
        blob = {"arch": arch_text, "num_classes": settings.num_classes, "in_chans": settings.in_chans,
                "resolution": settings.resolution, "metadata": meta, "state_dict": model.state_dict()}
        _write(out, lambda f: torch.save(blob, f))
        return
    data = export(model, fmt, settings.input_shape(), dynamic_batch, quantize, calibration)
    if fmt == "tflite":
        data = tflite_with_metadata(data, meta)
    elif fmt == "onnx":
        import onnx

        proto = onnx.load_from_string(data)
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v if isinstance(v, str) else json.dumps(v))
        data = proto.SerializeToString()
    elif fmt == "torchscript":
        buf = io.BytesIO()
        torch.jit.save(torch.jit.load(io.BytesIO(data), map_location="cpu"), buf,
                       _extra_files={TORCHSCRIPT_META: json.dumps(meta)})
        data = buf.getvalue()
    _write(out, data)


def tflite_with_metadata(data: bytes, meta: dict[str, Any]) -> bytes:
    """The .tflite flatbuffer with ``meta`` (JSON) and its class names (a text file, one a line) embedded as
    metadata entries, read back by ``read_metadata``."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    entries = {TFLITE_META: json.dumps(meta).encode()}
    if meta.get("classes"):
        entries[TFLITE_LABELS] = "".join(f"{c}\n" for c in meta["classes"]).encode()
    model.metadata = [m for m in model.metadata or [] if _text(m.name) not in entries]
    for key, blob in entries.items():
        buf = schema.BufferT()
        buf.data = np.frombuffer(blob, np.uint8)
        model.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name, entry.buffer = key, len(model.buffers) - 1
        model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def tflite_metadata(data: bytes) -> dict[str, bytes]:
    """A .tflite file's metadata entries, name -> bytes."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    out = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buf = model.Buffers(entry.Buffer())
        out[_text(entry.Name())] = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
    return out


def _text(name: str | bytes | None) -> str:
    return name.decode() if isinstance(name, bytes) else (name or "")


def _write(path: Path, data) -> None:
    """``atomic_write``, a failure (a full disk) one line: the previous file at ``path`` stays as it was."""
    try:
        atomic_write(path, data)
    except OSError as e:
        raise MnasError(f"cannot write {path} ({e.strerror or e}): nothing was written there; free some space "
                        "or give another --out") from None


def check_finite_weights(model, source: str) -> None:
    """Refuse weights (parameters and BatchNorm statistics) holding NaN or infinity: the file would compute
    nothing but NaN."""
    import torch

    for name, tensor in model.state_dict().items():
        if torch.is_floating_point(tensor) and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise MnasError(f"{source}: {name} holds {bad} NaN or infinite value(s): the training diverged; "
                            "export a checkpoint from before (e.g. best.pt) or retrain with a lower lr")


def export_inputs(blob: dict[str, Any] | None, directory: str | Path | None = None,
                  dataset: str | None = None) -> list[tuple[Path, str]]:
    """The files an export reads, which its --out may never be: the experiment's store, the checkpoint and
    the checkpoints beside it (a training folder's best.pt and last.pt, its run.json and train.lock), the
    dataset file it verifies on."""
    from mnas.store.sqlite import store_files

    inputs: list[tuple[Path, str]] = []
    if directory is not None:
        inputs += [(p, f"a file of the experiment {directory}") for p in store_files(directory)]
        from mnas.search.mirror import MIRROR_NAME
        inputs.append((Path(directory) / MIRROR_NAME, f"the live view of the experiment {directory}"))
    if blob is not None:
        from mnas.train import checkpoint as ckpt
        from mnas.train import folder

        path = Path(blob["path"])
        inputs.append((path, "the checkpoint exported"))
        inputs += [(path.with_name(n), "a checkpoint of the training folder") for n in (ckpt.BEST, ckpt.LAST)]
        # the folder's record of its run and its lock (mnas.train.folder): a resume checks the one, a second
        # training is kept out by the other
        inputs += [(path.with_name(n), "a file of the training folder") for n in (folder.IDENTITY, folder.LOCK_NAME)]
        spec = dataset or ckpt.info(blob).dataset
        if spec and spec.partition(":")[2]:  # NAME:PATH, e.g. npz:data.npz
            inputs.append((Path(spec.partition(":")[2]), f"the dataset {spec}"))
    return inputs


def read_metadata(path: str | Path, fmt: str) -> dict[str, Any]:
    """The metadata written inside an exported file (a .tflite file: its FILE.json), JSON values decoded."""
    path = Path(path)
    if fmt == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return {k: _json_or_text(v) for k, v in props.items()}
    if fmt == "torchscript":
        import torch

        extra = {TORCHSCRIPT_META: ""}
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        return json.loads(extra[TORCHSCRIPT_META] or "{}")
    if fmt == "pytorch":
        import torch

        return torch.load(path, map_location="cpu", weights_only=True).get("metadata", {})
    embedded = tflite_metadata(path.read_bytes()).get(TFLITE_META)
    return json.loads(embedded) if embedded else json.loads(Path(f"{path}.json").read_text())


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def load_exported(path: Path, fmt: str, settings: LatencySettings) -> tuple[Callable[[np.ndarray], np.ndarray],
                                                                          tuple[int, ...]]:
    """The file in its own runtime -> (infer(numpy input) -> numpy output, input shape)."""
    path, fmt = Path(path), check_format(fmt)
    if fmt in FILE_RUNTIMES:
        infer, shape = FILE_RUNTIMES[fmt]().load(path.read_bytes(), settings)
        if FILE_LAYOUTS.get(fmt) == "NHWC":  # callers feed NCHW, as PyTorch takes it
            n, h, w, c = shape
            return (lambda x: np.asarray(infer(np.ascontiguousarray(x.transpose(0, 2, 3, 1))))), (n, c, h, w)
        return (lambda x: np.asarray(infer(x))), shape
    import torch

    if fmt == "torchscript":
        model = torch.jit.load(str(path), map_location="cpu").eval()
    else:  # pytorch
        from mnas.model import build
        from mnas.space import Architecture
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = build(Architecture.parse(blob["arch"]), num_classes=int(blob["num_classes"]),
                      in_chans=int(blob["in_chans"]))
        model.load_state_dict(blob["state_dict"])
        model.eval()

    def infer(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return infer, settings.input_shape()


def remeasure(path: Path, fmt: str, settings: LatencySettings, search_backend: str | None,
              reference: bytes | None = None) -> tuple[LatencyResult, str] | tuple[LatencyResult, str, LatencyResult]:
    """Time the exported file: on the search's backend when it takes this format (onnxruntime, openvino,
    litert, a remote agent), otherwise in the format's own runtime. Returns (result, runtime name); with
    ``reference`` (the float32 file of an int8 export) also the reference's result, both timed on the same
    backend (in the format's own runtime: their rounds interleaved, ``time_interleaved``)."""
    data = Path(path).read_bytes()
    if search_backend:
        try:
            be = get_backend(search_backend)
            takes_file = be.model_format == fmt
        except MnasError as e:  # e.g. its agents are down or its token is gone: time the file here instead
            log.info("search backend %s unavailable (%s); timing in the format's own runtime", search_backend, e)
            takes_file = False
        if takes_file:
            if reference is not None:
                return be.measure_file(data, settings), be.name, be.measure_file(reference, settings)
            return be.measure_file(data, settings), be.name
    if fmt in FILE_RUNTIMES:
        be = FILE_RUNTIMES[fmt]()
        if reference is not None:
            int8, fp32 = _interleaved(be, [data, reference], settings)
            return int8, be.name, fp32
        return be.measure_file(data, settings), be.name
    infer, shape = load_exported(path, fmt, settings)
    return TorchBackend().time_runner(infer, shape, settings, extra={"format": fmt}), "torch"


def _interleaved(be, files: list[bytes], settings: LatencySettings) -> list[LatencyResult]:
    """Time model files in one local runtime, their rounds interleaved (``time_interleaved``): a slow phase
    of the machine lands on all of them alike, so their ratio holds even on a busy one."""
    runners = [be.load(f, settings) for f in files]
    inputs = [random_input(shape) for _, shape in runners]
    timings = time_interleaved([lambda i=i: runners[i][0](inputs[i]) for i in range(len(files))], settings)
    return [make_result(t, settings, shape, be.name, be.runtime_version(), fingerprint(), None,
                        {**be.extra(), "interleaved": len(files)}, settings.resolution)
            for t, (_, shape) in zip(timings, runners)]


def export_arch(arch_text: str, fmt: str, out: str | Path, settings: LatencySettings,
                search_backend: str | None = None, blob: dict[str, Any] | None = None, measure: bool = True,
                verify: bool | None = None, dataset: str | None = None, verify_limit: int | None = None,
                name: str = "", directory: str | Path | None = None, quantize: str | None = None,
                dynamic_batch: bool = False) -> ExportResult:
    """Write ``arch_text`` (with the checkpoint ``blob``'s weights, else freshly initialised) as ``fmt``, its
    metadata inside and in ``out.json``; compare the file with PyTorch on a random input, and with ``verify``
    (default: when there are weights) on the validation split; with ``measure``, time the file. ``out`` may be
    none of the files read (the checkpoint, ``directory``'s store); every file is written atomically.
    ``quantize`` "int8": post-training static quantisation calibrated on ``CALIBRATION_IMAGES`` training
    images (noise for random weights); its top-1 may then lose ``MAX_INT8_DIFF_POINTS`` against float32
    PyTorch, and with ``measure`` the float32 file is timed too, interleaved with it. ``dynamic_batch``: the
    batch dimension is free (ONNX, TorchScript)."""
    fmt = check_format(fmt)
    quantize = check_quantize(quantize, fmt)
    settings = settings.replace(quantize="none")  # what the file is, not what a search timed
    if dynamic_batch and fmt == "tflite":
        raise MnasError("--dynamic-batch: a .tflite file has a fixed input shape (LiteRT resizes it at run time "
                        "with interpreter.resize_tensor_input); leave --dynamic-batch out for tflite")
    verify = blob is not None if verify is None else verify
    if verify and blob is None:
        raise MnasError("--verify needs trained weights (--weights DIR|CKPT): random ones have nothing to verify")
    import torch

    out = Path(out)
    check_outputs([out, _sidecar(out)], export_inputs(blob, directory, dataset if verify else None))
    val = validation_data(blob, dataset) if verify else None  # before writing: a missing dataset fails fast
    calibration, described = None, None
    if quantize and blob is not None:
        try:
            data, cfg = val or validation_data(blob, dataset)
        except MnasError as e:
            raise MnasError(f"--quantize {quantize} calibrates on the training images: {e}".replace(
                ", or --no-verify", "")) from None
        calibration = calibration_images(data, cfg)
        described = (f"{sum(len(b) for b in calibration)} images of the training split of "
                     f"{portable_spec(data.name)}, spread over the classes")
    model, source, loaded = build_for_export(arch_text, settings, blob)
    if loaded:
        check_finite_weights(model, blob["path"])
    meta = metadata(arch_text, settings, blob, name, fmt, quantize, dynamic_batch, described)
    # the file and FILE.json are written and checked under temporary names beside --out, then renamed over
    # it together: a failure (a full disk, a file that does not match PyTorch) leaves the previous pair as is
    staged = [out.with_name(f".{p.name}.{os.getpid()}.staged") for p in (out, _sidecar(out))]
    try:
        write_model(model, arch_text, fmt, staged[0], settings, meta, dynamic_batch, quantize, calibration)
        infer, shape = load_exported(staged[0], fmt, settings)
        file_shape = _file_shape(tuple(shape), fmt)
        x = random_input(tuple(shape), seed=1)
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
        got = infer(x)
        if got.shape != ref.shape:
            raise MnasError(f"exported {fmt} output has shape {got.shape}, PyTorch gives {ref.shape}")
        result = ExportResult(out, fmt, arch_text, file_shape, settings.num_classes, source, loaded,
                              float(np.max(np.abs(got - ref))), float(np.max(np.abs(ref))),
                              checkpoint=blob["path"] if blob is not None else None, metadata=meta,
                              quantize=quantize)
        if val is not None:
            result.parity = verify_top1(model, infer, tuple(shape), fmt, *val, verify_limit,
                                        MAX_INT8_DIFF_POINTS if quantize else MAX_DIFF_POINTS)
        _write(staged[1], json.dumps({**meta, "file": out.name, "format": fmt, "input_shape": list(file_shape),
                                      "verified": result.parity}, indent=1) + "\n")
        os.replace(staged[0], out)
        os.replace(staged[1], _sidecar(out))
    finally:
        for p in staged:
            p.unlink(missing_ok=True)
    result.sidecar = _sidecar(out)
    if measure and quantize:
        from mnas.model.export import export

        fp32 = export(model, fmt, settings.input_shape(), dynamic_batch)
        result.measured, result.runtime, result.measured_fp32 = remeasure(
            out, fmt, settings.replace(quantize=quantize), search_backend, fp32)
        result.measured_fp32.extra["quantize"] = "none"
    elif measure:
        result.measured, result.runtime = remeasure(out, fmt, settings, search_backend)
    return result


def _file_shape(nchw: tuple[int, ...], fmt: str) -> tuple[int, ...]:
    """The input shape as the file declares it (``FILE_LAYOUTS``)."""
    if FILE_LAYOUTS.get(fmt) == "NHWC":
        n, c, h, w = nchw
        return (n, h, w, c)
    return nchw


def export_checkpoint(weights: str | Path, fmt: str, out: str | Path, measure: bool = True, runs: int | None = None,
                      verify: bool | None = None, dataset: str | None = None,
                      verify_limit: int | None = None, quantize: str | None = None,
                      dynamic_batch: bool = False) -> ExportResult:
    """Export a training checkpoint (a file, or a ``mnas train --dir`` folder: its best.pt) on its own: the
    architecture, classes, channels and resolution all come from it."""
    from mnas.train import checkpoint as ckpt

    blob = read_checkpoint(weights)
    settings = _with_runs(checkpoint_settings(blob), runs)
    meta = ckpt.info(blob)
    res = export_arch(meta.arch, fmt, out, settings, None, blob, measure, verify, dataset, verify_limit, meta.name,
                      quantize=quantize, dynamic_batch=dynamic_batch)
    res.info.update({"settings": settings.to_dict(), "epoch": blob.get("epoch"), "best_top1": blob.get("best_top1")})
    return res


def export_trial(directory: str | Path, rank: int | None, fmt: str, out: str | Path, measure: bool = True,
                 runs: int | None = None, trial_id: int | None = None, weights: str | Path | None = None,
                 verify: bool | None = None, dataset: str | None = None,
                 verify_limit: int | None = None, quantize: str | None = None,
                 dynamic_batch: bool = False) -> tuple[RankedTrial, ExportResult]:
    """Export the completed trial at ``rank`` (or with id ``trial_id``) of an experiment, with the checkpoint
    ``weights`` of that architecture (else freshly initialised); returns (the trial, the result). Latency
    settings: the search's, at the checkpoint's resolution, channels and classes."""
    from mnas.store import Store
    from mnas.store.query import trial_by_id, trial_by_rank
    from mnas.train import checkpoint as ckpt

    with Store(directory, readonly=True) as store:
        ranked = trial_by_id(store, trial_id) if trial_id is not None else trial_by_rank(store, rank or 1)
        latency = store.meta().latency
    trial = ranked.trial
    searched = settings = LatencySettings.from_dict(latency.get("settings") or {})
    blob, name = None, ""
    if weights is not None:
        blob = read_checkpoint(weights)
        meta = ckpt.info(blob)
        if meta.arch != trial.arch:
            raise MnasError(f"{blob['path']} holds {meta.name} ({_short(meta.arch)}), not trial {trial.id}'s "
                            f"architecture ({_short(trial.arch)}): train that one as deployed (mnas train {directory} "
                            f"--trial {trial.id} --dir DIR, then mnas export --weights DIR ...) or export the "
                            "checkpoint alone (mnas export --weights PATH)")
        settings, name = checkpoint_settings(blob, settings), meta.name
    settings = _with_runs(settings, runs)
    res = export_arch(trial.arch, fmt, out, settings, latency.get("backend"), blob, measure, verify, dataset,
                      verify_limit, name or f"trial {trial.id}", directory, quantize, dynamic_batch)
    res.info.update({"trial": trial.id, "rank": ranked.rank, "searched_latency_ms": trial.latency_ms,
                     "search_backend": latency.get("backend"), "searched_resolution": searched.resolution,
                     "settings": settings.to_dict()})
    return ranked, res


def _sidecar(out: Path) -> Path:
    return Path(f"{out}.json")


def _with_runs(settings: LatencySettings, runs: int | None) -> LatencySettings:
    return settings if runs is None else settings.replace(runs=runs, rounds=min(settings.rounds, runs))


def _short(arch: str, n: int = 60) -> str:
    return arch if len(arch) <= n else f"{arch[:n]}..."
