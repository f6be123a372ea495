"""The top-1 check of an exported file: the checkpoint's validation split scored by PyTorch and by the file in
its own runtime, on the same preprocessed images; the two may differ by float rounding only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from mnas import MnasError

PARITY_RUNTIMES = {"onnx": "onnxruntime", "tflite": "litert", "torchscript": "torch.jit", "pytorch": "torch"}
MAX_DIFF_POINTS = 0.1  # the file's top-1 may differ from PyTorch's by this many points (float rounding only)
MAX_INT8_DIFF_POINTS = 1.0  # an int8 file's top-1 may lose this many points against float32 PyTorch
CALIBRATION_IMAGES = 128  # training images an int8 export calibrates its activation ranges on


def validation_data(blob: dict[str, Any], dataset: str | None = None):
    """The checkpoint's validation split, normalised with the checkpoint's own mean/std -> (data, recipe).
    ``dataset`` replaces the recorded spec (the data moved); it must have the checkpoint's classes."""
    import dataclasses

    from mnas.train import checkpoint as ckpt
    from mnas.train.config import TrainConfig
    from mnas.data.datasets import load_dataset

    meta = ckpt.info(blob)
    recipe = blob.get("recipe") or {}
    split = meta.split or {}
    spec = dataset or ckpt.recorded_dataset(blob)  # a recorded path is checked before anything reads it
    cache = recipe.get("cache") if dataset is None and recipe.get("cache") and Path(recipe["cache"]).is_dir() \
        and not ckpt.in_virtual_fs(recipe["cache"]) else None  # the training's own cache: same split, decoded
    try:
        data = load_dataset(spec, meta.resolution, split.get("holdout"), int(split.get("seed", 0)), cache)
    except (MnasError, OSError) as e:
        raise MnasError(f"cannot load {spec}, the validation data of {blob['path']} ({' '.join(str(e).split())}): "
                        "pass --dataset SPEC where it is now, or --no-verify") from None
    if (data.num_classes, data.in_chans) != (meta.num_classes, meta.in_chans) or \
            (data.classes and meta.classes and tuple(data.classes) != tuple(meta.classes)):
        raise MnasError(f"dataset {spec} has {data.num_classes} classes, {data.in_chans} channel(s); "
                        f"{blob['path']} was trained for {meta.num_classes} classes, {meta.in_chans} channel(s) "
                        f"on {meta.dataset or 'another dataset'}: pass its dataset with --dataset SPEC, or --no-verify")
    data = dataclasses.replace(data, mean=tuple(meta.mean), std=tuple(meta.std))
    cfg = TrainConfig(**{**{k: v for k, v in recipe.items() if k in TrainConfig.model_fields},
                         "device": "cpu", "normalize": "dataset", "eval_crop": meta.eval_crop,
                         "resolution": meta.resolution})
    return data, cfg


def stratified(labels: np.ndarray, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` items, in their original order, taken class by class in turn: the k-th
    item of every class before the (k+1)-th of any (each class's items in their original order).
    Deterministic, and every class is represented once ``limit`` reaches the number of classes."""
    labels = np.asarray(labels).reshape(-1)
    if limit >= len(labels):
        return np.arange(len(labels))
    order = np.argsort(labels, kind="stable")
    ranked = labels[order]
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - np.searchsorted(ranked, ranked, side="left")
    return np.sort(np.lexsort((labels, rank))[:limit])  # by rank within the class, then by class


def _labels(data, split: str) -> np.ndarray:
    """The labels of a dataset's ``split`` (train | val), in memory or streamed, without decoding an image."""
    if hasattr(data, "index"):  # mnas.data.streaming.Stream
        return np.asarray(data.index.labels)[data.train_rows if split == "train" else data.val_rows]
    return (data.y_train if split == "train" else data.y_val).numpy()


def val_subset(data, keep: np.ndarray, split: str = "val"):
    """``data`` whose validation split is the items ``keep`` of its ``split`` (the feed's val() then serves
    them, preprocessed for evaluation: no augmentation)."""
    import dataclasses

    import torch

    if hasattr(data, "index"):
        rows = data.train_rows if split == "train" else data.val_rows
        return dataclasses.replace(data, val_rows=rows[keep])
    x, y = (data.x_train, data.y_train) if split == "train" else (data.x_val, data.y_val)
    idx = torch.from_numpy(np.asarray(keep, np.int64))
    return dataclasses.replace(data, x_val=x[idx], y_val=y[idx])


def calibration_images(data, cfg, n: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """``n`` training images, spread over the classes (``stratified``), preprocessed exactly as the
    validation images are (resize, centre crop, the checkpoint's mean/std): float32 NCHW batches."""
    import torch

    from mnas.data.feeds import make_feed

    sub = val_subset(data, stratified(_labels(data, "train"), n), "train")
    feed = make_feed(sub, cfg, torch.device("cpu"), torch.contiguous_format, torch.Generator().manual_seed(0))
    try:
        with torch.inference_mode():
            return [xb.numpy().astype(np.float32) for xb, _ in feed.val()]
    finally:
        feed.close()


def verify_top1(model, infer: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...], fmt: str,
                data, cfg, limit: int | None = None, max_diff_points: float = MAX_DIFF_POINTS) -> dict[str, Any]:
    """Validation top-1 of the PyTorch model (batched) and of the file in its own runtime (its fixed input
    shape, the last chunk padded), on the same preprocessed images (``validation_data``). ``limit``: that
    many images, spread over the classes (``stratified``)."""
    import torch

    from mnas.data.feeds import make_feed
    from mnas.train.trainer import torch_threads

    total = data.n_val
    if limit is not None and limit < total:
        data = val_subset(data, stratified(_labels(data, "val"), limit))
    feed = make_feed(data, cfg, torch.device("cpu"), torch.contiguous_format, torch.Generator().manual_seed(0))
    n, torch_ok, file_ok, step = 0, 0, 0, int(shape[0])
    # the training's evaluation thread count (a busy machine stalls more threads)
    try:
        with torch_threads(cfg.threads), torch.inference_mode():
            for xb, yb in feed.val():
                torch_ok += int((model(xb).argmax(1) == yb).sum())
                x = xb.numpy().astype(np.float32)
                for i in range(0, len(x), step):
                    chunk = x[i:i + step]
                    padded = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), np.float32)])
                    pred = np.asarray(infer(padded)).reshape(step, -1)[:len(chunk)].argmax(1)
                    file_ok += int((pred == yb[i:i + step].numpy()).sum())
                n += len(yb)
    finally:
        feed.close()
    if n == 0:
        raise MnasError(f"no validation image of {data.name} to verify against: pass --dataset SPEC or --no-verify")
    t, f = torch_ok / n, file_ok / n
    return {"pytorch_top1": t, "file_top1": f, "diff_points": 100.0 * (f - t), "images": n,
            "images_total": total, "limited": n < total, "sampled": "stratified" if n < total else "all",
            "runtime": PARITY_RUNTIMES[fmt], "dataset": portable_spec(data.name), "max_diff_points": max_diff_points}


def portable_spec(spec: str | None) -> str | None:
    """A dataset spec without the folders above its data: ``NAME:PATH`` -> ``NAME:BASENAME``, a bare path ->
    its basename, a registered name as it is. What an exported file's metadata records, so that it names no
    directory of the machine it was made on."""
    if not spec:
        return spec
    name, sep, path = spec.partition(":")
    if sep and path:
        return f"{name}:{_basename(path)}"
    return _basename(spec) if ("/" in spec or "\\" in spec) else spec


def _basename(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rpartition("/")[2] or path
