"""Full training into a folder: ``mnas train ... --dir DIR``, and each model ``mnas retrain`` trains.

After every epoch the run evaluates on the validation split and writes ``DIR/last.pt`` (everything needed to
continue: model, EMA, optimizer, grad scaler, random states, the epoch and the history), then ``DIR/best.pt``
when top-1 improved, then ``DIR/history.json`` / ``history.csv``. The learning-rate schedule is a function of
the step, so a resumed run continues on the same curve; a run killed mid-epoch loses only that epoch. The
folder is locked for the run and kept for one run (``mnas.train.folder``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from mnas import MnasError
from mnas.model import count_params
from mnas.schema import renamed
from mnas.space.arch import Architecture
from mnas.train import checkpoint as ckpt
from mnas.train.config import TrainConfig
from mnas.train.folder import TrainFolder, identity_of, write_text
from mnas.data.datasets import Dataset
from mnas.data.feeds import normalisation
from mnas.train.optim import lr_factor
from mnas.data.streaming import Stream
from mnas.train.trainer import Progress, Run, evaluate, opened_run, resolve_device, train_epoch

log = logging.getLogger(__name__)

HISTORY_JSON, HISTORY_CSV = "history.json", "history.csv"
HISTORY_FIELDS = ("epoch", "steps", "train_loss", "val_top1", "val_loss", "lr", "seconds", "train_images_per_s")
# recipe fields that change how the run computes, not what it learns: a resume may change them
RUNTIME_FIELDS = frozenset({"threads", "workers", "device", "amp", "compile", "eval_batch_size", "cache",
                            "max_bad_fraction", "init"})  # init: a resume starts from last.pt, not from it


@dataclass
class FitResult:
    out: Path
    status: str                      # "ok" | "failed"
    error: Optional[str]
    epochs: int                      # epochs completed (resumed ones included)
    total_epochs: int
    top1: float                      # the last epoch's validation top-1
    best_top1: float
    best_epoch: int
    params: int
    arch: str
    seconds: float                   # this process's share (a resumed run adds to it)
    resumed_from: int = 0            # the epoch the run continued after (0: started fresh)
    history: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["out"] = str(self.out)
        return d


def epochs_of(run: Run) -> int:
    return math.ceil(run.total_steps / run.steps_per_epoch)


def train_full(arch: Architecture, data: Dataset | Stream, cfg: TrainConfig, out: str | Path, name: str = "",
               resume: bool = False, progress: Progress | None = None,
               folder: TrainFolder | None = None) -> FitResult:
    """Train ``arch`` (scaled by ``cfg.width_multiplier``) on ``data`` into ``out``; with ``resume``,
    continue from ``out/last.pt`` when there is one (a finished run returns at once). ``folder``: ``out``
    already claimed (``TrainFolder.claim``, as the CLI does before loading the data); else it is claimed
    here, for the run."""
    out = Path(out).expanduser()
    if data.resolution != cfg.resolution:
        raise MnasError(f"dataset {data.name} is at {data.resolution} px but the recipe asks for {cfg.resolution} px")
    if folder is None:
        with TrainFolder.claim(out, resume) as claimed:
            return train_full(arch, data, cfg, out, name, resume, progress, claimed)
    learned = {k: v for k, v in cfg.model_dump().items() if k not in RUNTIME_FIELDS}
    identity = identity_of(arch.canonical, data, learned)
    folder.check(identity, resume)
    last = out / ckpt.LAST
    t0 = time.perf_counter()
    with opened_run(arch, data, cfg, resolve_device(cfg.device)) as run:
        state = _fresh_state(run, data, cfg, name)
        if last.exists():
            blob = ckpt.read(last, ckpt.LAST)
            state = _restore(run, blob, data, cfg)
            _repair(out, blob)
            folder.record(identity)  # a folder written before run.json existed: checked by _restore
            log.info("resuming %s after epoch %d of %d", out, state["epoch"], state["total_epochs"])
        resumed_from = state["epoch"]
        error = None
        for epoch in range(state["epoch"], state["total_epochs"]):
            error = _one_epoch(run, cfg, epoch, state, out, progress)
            if error is not None:
                break
        h = state["history"]
        return FitResult(out, "failed" if error else "ok", error, state["epoch"], state["total_epochs"],
                         h[-1]["val_top1"] if h else 0.0, state["best_top1"], state["best_epoch"],
                         count_params(run.model), run.arch.canonical, time.perf_counter() - t0, resumed_from, h)


def _repair(out: Path, last: dict[str, Any]) -> None:
    """Finish what a kill (or a full disk) between an epoch's writes left undone: ``best.pt`` when that
    epoch was the best (``last.pt`` is written first and says so), and the history files."""
    best = out / ckpt.BEST
    if last["best_epoch"] == last["epoch"]:
        try:
            stale = ckpt.read(best, ckpt.BEST)["epoch"] != last["epoch"]
        except MnasError:  # missing or damaged: last.pt holds the same weights
            stale = True
        if stale:
            log.info("rewriting %s from %s: the run stopped between the two", best, ckpt.LAST)
            ckpt.write(best, {k: v for k, v in last.items() if k not in ("path", "format", "format_version",
                                                                       "mnas_version")})
    write_history(out, last["history"])


def _fresh_state(run: Run, data: Dataset | Stream, cfg: TrainConfig, name: str) -> dict[str, Any]:
    mean, std = normalisation(data, cfg.normalize)
    meta = ckpt.ModelInfo(arch=run.arch.canonical, name=name or run.arch.canonical, num_classes=data.num_classes,
                          in_chans=data.in_chans, resolution=data.resolution, mean=tuple(mean), std=tuple(std),
                          classes=tuple(data.classes), eval_crop=cfg.eval_crop, dataset=data.name,
                          split=dict(data.split))
    return {"model_info": meta.to_dict(), "recipe": cfg.model_dump(), "epoch": 0, "total_epochs": epochs_of(run),
            "steps": 0, "history": [], "best_top1": -1.0, "best_epoch": 0}


def _restore(run: Run, blob: dict[str, Any], data: Dataset | Stream, cfg: TrainConfig) -> dict[str, Any]:
    ckpt.check_compatible(blob, run.arch.canonical, data.num_classes, data.in_chans)
    recorded = renamed(blob["recipe"], {"preset": "recipe"}, "checkpoint", warn=False)  # written before the rename
    changed = sorted(k for k, v in cfg.model_dump().items()
                     if k not in RUNTIME_FIELDS and recorded.get(k) != v)
    if changed:
        k = changed[0]
        raise MnasError(f"{blob['path']} was trained with {k} = {recorded.get(k)!r}, not {getattr(cfg, k)!r}"
                        f"{f' (and {len(changed) - 1} more setting(s))' if len(changed) > 1 else ''}: resume with "
                        "the same recipe, or train into another --dir folder")
    if blob["total_epochs"] != epochs_of(run) or blob["steps"] > run.total_steps:
        raise MnasError(f"{blob['path']} records epoch {blob['epoch']} of {blob['total_epochs']} after "
                        f"{blob['steps']} steps, which this recipe and dataset do not give: it is damaged or of "
                        "another run; train into another --dir folder")
    try:
        run.model.load_state_dict(blob["model"])
        if run.ema is not None and blob.get("ema") is not None:
            run.ema.module.load_state_dict(blob["ema"])
            run.ema.n_averaged.fill_(int(blob["ema_updates"]))
        run.optimizer.load_state_dict(blob["optimizer"])
        if run.scaler is not None and blob.get("scaler"):
            run.scaler.load_state_dict(blob["scaler"])
        ckpt.set_rng_state(blob["rng"], run.generator)
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as e:
        raise MnasError(f"{blob['path']} cannot be resumed: its saved state does not fit this run "
                        f"({ckpt.first_line(e)}); it is damaged: train into another --dir folder") from None
    return {k: blob[k] for k in ("model_info", "recipe", "epoch", "total_epochs", "steps", "history",
                                 "best_top1", "best_epoch")}


def _one_epoch(run: Run, cfg: TrainConfig, epoch: int, state: dict[str, Any], out: Path,
               progress: Progress | None) -> str | None:
    """Train and evaluate one epoch, then checkpoint it; the error that stopped it, else None."""
    t = time.perf_counter()
    run.model.train()
    steps = min(run.steps_per_epoch, run.total_steps - epoch * run.steps_per_epoch)
    losses, error = train_epoch(run, cfg, epoch, steps, progress)
    if error is not None:
        return error
    train_s = time.perf_counter() - t
    net = run.ema.module if run.ema is not None else run.forward
    top1, val_loss = evaluate(net, run)
    if not math.isfinite(val_loss):
        return f"validation loss is not finite after epoch {epoch + 1} (weights diverged)"
    state["steps"] += len(losses)
    state["epoch"] = epoch + 1
    lr = lr_factor(state["steps"] - 1, run.total_steps, run.warmup_steps, cfg.schedule, cfg.decay_rate,
                   run.decay_steps) * run.base_lrs[0]
    state["history"].append({"epoch": epoch + 1, "steps": state["steps"], "train_loss": sum(losses) / len(losses),
                             "val_top1": top1, "val_loss": val_loss, "lr": lr,
                             "seconds": time.perf_counter() - t,
                             "train_images_per_s": len(losses) * run.batch_size / max(train_s, 1e-9)})
    improved = top1 > state["best_top1"]
    if improved:
        state["best_top1"], state["best_epoch"] = top1, epoch + 1
    blob = {**state, "model": _cpu(run.model.state_dict()),
            "ema": _cpu(run.ema.module.state_dict()) if run.ema is not None else None,
            "ema_updates": int(run.ema.n_averaged) if run.ema is not None else 0,
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "rng": ckpt.rng_state(run.generator)}
    # last.pt first: it is the record of the run (its epoch, its best epoch, its history). A kill (or a full
    # disk) after it and before best.pt leaves best.pt one best behind, which last.pt's best_epoch shows:
    # ckpt.read of the folder then reads last.pt, and the next open rewrites best.pt (_repair). The other
    # order could leave best.pt alone in a folder with nothing to resume.
    ckpt.write(out / ckpt.LAST, blob)
    if improved:
        ckpt.write(out / ckpt.BEST, blob)
    write_history(out, state["history"])
    log.info("epoch %d/%d: loss %.4f, val top-1 %.4f (%.0f s)", epoch + 1, state["total_epochs"],
             state["history"][-1]["train_loss"], top1, state["history"][-1]["seconds"])
    return None


def _cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in sd.items()}


def write_history(out: Path, history: list[dict]) -> None:
    write_text(out / HISTORY_JSON, json.dumps(history, indent=1))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    w.writeheader()
    w.writerows(history)
    write_text(out / HISTORY_CSV, buf.getvalue())


