"""The top-1 check of an exported file: the checkpoint's validation split scored by PyTorch and by the file in
its own runtime, on the same preprocessed images; the two may differ by float rounding only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from mnas import MnasError

PARITY_RUNTIMES = {"onnx": "onnxruntime", "tflite": "litert", "torchscript": "torch.jit", "pytorch": "torch"}
MAX_DIFF_POINTS = 0.1  # the file's top-1 may differ from PyTorch's by this many points (float rounding only)


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


def verify_top1(model, infer: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...], fmt: str,
                data, cfg, limit: int | None = None) -> dict[str, Any]:
    """Validation top-1 of the PyTorch model (batched) and of the file in its own runtime (its fixed input
    shape, the last chunk padded), on the same preprocessed images (``validation_data``)."""
    import torch

    from mnas.data.feeds import make_feed
    from mnas.train.trainer import torch_threads

    feed = make_feed(data, cfg, torch.device("cpu"), torch.contiguous_format, torch.Generator().manual_seed(0))
    n, torch_ok, file_ok, step = 0, 0, 0, int(shape[0])
    # the training's evaluation thread count (a busy machine stalls more threads)
    try:
        with torch_threads(cfg.threads), torch.inference_mode():
            for xb, yb in feed.val():
                if limit is not None:
                    xb, yb = xb[:limit - n], yb[:limit - n]
                torch_ok += int((model(xb).argmax(1) == yb).sum())
                x = xb.numpy().astype(np.float32)
                for i in range(0, len(x), step):
                    chunk = x[i:i + step]
                    padded = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), np.float32)])
                    pred = np.asarray(infer(padded)).reshape(step, -1)[:len(chunk)].argmax(1)
                    file_ok += int((pred == yb[i:i + step].numpy()).sum())
                n += len(yb)
                if limit is not None and n >= limit:
                    break
    finally:
        feed.close()
    if n == 0:
        raise MnasError(f"no validation image of {data.name} to verify against: pass --dataset SPEC or --no-verify")
    t, f = torch_ok / n, file_ok / n
    return {"pytorch_top1": t, "file_top1": f, "diff_points": 100.0 * (f - t), "images": n,
            "images_total": data.n_val, "limited": n < data.n_val, "runtime": PARITY_RUNTIMES[fmt],
            "dataset": data.name, "max_diff_points": MAX_DIFF_POINTS}
