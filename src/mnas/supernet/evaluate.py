"""A candidate's accuracy from a trained supernet: its weights inherited (``SuperNet.extract``), its
BatchNorm statistics recalibrated on a few batches of training images, top-1 on the held-out split the
supernet never trained on. Seconds per candidate instead of a proxy training.

Every candidate is recalibrated on the same batches (drawn once from a fixed seed), so two candidates differ
only by their weights. The data is the supernet's own (its recorded dataset, resolution, split and
normalisation): a supernet is only comparable with itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnas import MnasError
from mnas.space.arch import Architecture
from mnas.supernet.training import check_space, net_of, read_checkpoint
from mnas.train import checkpoint as ckpt
from mnas.train.config import TrainTask
from mnas.train.trainer import load_proxy_data, resolve_device, torch_threads
from mnas.data.feeds import make_feed

CALIBRATION_BATCHES = 8
CALIBRATION_SEED = 12345


@torch.no_grad()
def recalibrate(model: nn.Module, batches: list[torch.Tensor]) -> nn.Module:
    """Reset every BatchNorm's running statistics and set them to the plain average over ``batches``
    (forwards in training mode, no gradients): only the running statistics change. Returns the model in
    eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    model.train()
    try:
        for xb in batches:
            model(xb)
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
    return model.eval()


@torch.inference_mode()
def top1(model: nn.Module, batches: Any) -> tuple[float, float]:
    """(top-1, mean cross-entropy) over ``(images, labels)`` batches."""
    model.eval()
    correct, loss, seen = 0, 0.0, 0
    for xb, yb in batches:
        logits = model(xb).float()
        loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
        seen += len(yb)
    if not seen:
        raise MnasError("no validation image to evaluate on")
    return correct / seen, loss / seen


class SupernetEvaluator:
    """A trained supernet and its data, loaded once: ``evaluate(arch)`` for each candidate."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 1,
                 calibration_batches: int = CALIBRATION_BATCHES, blob: dict[str, Any] | None = None) -> None:
        self.blob = blob if blob is not None else read_checkpoint(path)  # blob: the checkpoint, read already
        self.path = self.blob["path"]
        self.device = resolve_device(device)
        self.threads = threads
        self.task = TrainTask.model_validate({**self.blob["task"], "device": str(self.device)})
        with torch_threads(threads):
            self.net = net_of(self.blob, self.device).eval()
            self.data = load_proxy_data(self.task, self.task.seed)
            gen = torch.Generator().manual_seed(CALIBRATION_SEED)
            self.feed = make_feed(self.data, self.task, self.device, torch.contiguous_format, gen)
            bs = min(self.task.batch_size, self.feed.n_train)
            self.calibration = [xb for xb, _ in self.feed.epoch(bs, calibration_batches)]
            self.val = list(self.feed.val())
        self.feed.close()

    def check_space(self, space: Any) -> None:
        check_space(self.blob, space)

    def model(self, arch: Architecture) -> nn.Module:
        """The sub-network with inherited weights and recalibrated BatchNorm statistics, in eval mode."""
        with torch_threads(self.threads):
            return recalibrate(self.net.extract(arch).to(self.device), self.calibration)

    def evaluate(self, arch: Architecture) -> dict[str, Any]:
        """A result shaped like a proxy training's (``TrainResult.to_dict()``'s main fields), marked with its
        source."""
        t0 = time.perf_counter()
        with torch_threads(self.threads):
            model = self.model(arch)
            acc, loss = top1(model, self.val)
        seconds = time.perf_counter() - t0
        return {"status": "ok", "error": None, "top1": acc, "val_loss": loss, "loss_curve": [],
                "seconds": seconds, "eval_seconds": seconds, "train_seconds": 0.0, "steps": 0, "epochs": 0.0,
                "params": sum(p.numel() for p in model.parameters()), "dataset": self.data.name,
                "arch": self.net.scaled(arch).canonical, "device": str(self.device), "threads": self.threads,
                "val_images": self.data.n_val, "split": getattr(self.data, "split", {}),
                "source": f"supernet:{self.path}", "supernet_step": self.blob["step"],
                "calibration_batches": len(self.calibration)}


def extracted_checkpoint(evaluator: SupernetEvaluator, arch: Architecture, name: str = "") -> dict[str, Any]:
    """A standalone training checkpoint (``mnas.train.checkpoint`` format, epoch 0) of the sub-network with
    inherited weights and recalibrated statistics: ``mnas train --init`` fine-tunes it and ``mnas export
    --weights`` ships it."""
    model = evaluator.model(arch)
    d, task = evaluator.blob["data"], evaluator.task
    info = ckpt.ModelInfo.from_dict({"arch": evaluator.net.scaled(arch).canonical, "name": name or "supernet",
                                     "num_classes": d["num_classes"], "in_chans": d["in_chans"],
                                     "resolution": d["resolution"], "mean": d["mean"], "std": d["std"],
                                     "classes": d["classes"], "eval_crop": task.eval_crop, "dataset": d["name"],
                                     "split": d["split"]})
    recipe = {k: v for k, v in task.model_dump().items() if v is None or isinstance(v, (bool, int, float, str))}
    return {"model_info": info.to_dict(), "recipe": recipe, "epoch": 0, "total_epochs": 0, "steps": 0,
            "history": [], "best_top1": -1.0, "best_epoch": 0,
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "optimizer": {"state": {}, "param_groups": []}, "rng": ckpt.rng_state(torch.Generator()),
            "supernet": {"path": evaluator.path, "step": evaluator.blob["step"],
                         "space": evaluator.blob["space"]["name"]}}


_EVALUATORS: dict[tuple[str, float, str], SupernetEvaluator] = {}


def evaluator_for(path: str | Path, device: str = "cpu", threads: int = 1) -> SupernetEvaluator:
    """One evaluator per supernet file and version in a process (a search evaluates many candidates)."""
    p = Path(path).expanduser()
    file = p / "supernet.pt" if p.is_dir() else p
    try:
        mtime = file.stat().st_mtime
    except OSError:
        mtime = 0.0
    key = (str(file.resolve()), mtime, device)
    if key not in _EVALUATORS:
        _EVALUATORS.clear()
        _EVALUATORS[key] = SupernetEvaluator(p, device, threads)
    return _EVALUATORS[key]


class SupernetEstimator:
    """The search's accuracy source ``supernet:DIR`` (``proxy.estimator``, ``mnas.run.estimators``)."""

    def __init__(self, arg: str) -> None:
        if not arg:
            raise MnasError("proxy.estimator supernet needs the supernet's folder: supernet:DIR "
                            "(mnas supernet train SPACE --dir DIR)")
        self.path = arg

    def check(self, space: Any) -> None:
        """Before the first trial: the supernet exists, reads, and covers the search's space."""
        check_space(read_checkpoint(self.path), space)

    def evaluate(self, arch_text: str, proxy: TrainTask, seed: int) -> dict[str, Any]:
        device = "cpu" if proxy.device == "auto" and not torch.cuda.is_available() else proxy.device
        result = evaluator_for(self.path, device, proxy.threads).evaluate(Architecture.parse(arch_text))
        return {**result, "source": f"supernet:{self.path}"}  # as the config names it
