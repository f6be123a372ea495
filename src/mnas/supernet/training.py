"""Supernet training into a folder (``mnas supernet train SPACE --dir DIR``): the sandwich rule with in-place
distillation, checkpointed every N steps, resumable after a kill -9.

Each step trains four sub-networks on one batch: the largest with the labels (cross-entropy with the
recipe's label smoothing), then the smallest and two random ones against the largest's soft predictions
(in-place distillation), the mean of their losses one optimizer step (BigNAS sums them). Chosen over progressive
shrinking because it is one phase with no schedule of stages to tune, trains every size from the first
step (what a CPU budget of a few thousand steps needs), and leaves sub-networks usable without
retraining. ``--sampling progressive`` (Once-for-All's progressive shrinking, ``mnas.supernet.net.STAGES``)
trains the largest alone for the first quarter of the steps, then draws the kernel, then also the depth,
then everything, each step the largest and three drawn sub-networks as above; before its last stage it
sorts every MBConv's hidden channels by importance (``sort_hidden_channels``). Compared at CPU scale in
docs/results/2026-12-07-supernet-sampling.md: no difference shown by its rule, so the sandwich rule stays.

``DIR/supernet.pt`` is written atomically (``mnas.fileio.atomic_write``) every ``every`` steps and at the
end; a kill loses at most the steps since. The batches and sub-networks of a chunk of steps are drawn from
random states saved in the checkpoint, so a resumed run continues as the uninterrupted one would. The
folder is locked for the run (``DIR/train.lock``) like a training folder.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mnas import MnasError, __version__
from mnas.fileio import atomic_write
from mnas.space.mnasnet import MnasNetSpace, _SpaceSpec
from mnas.store.lock import DirectoryLock
from mnas.supernet.net import (KERNEL_TRANSFORM, SHARE_SKIP, WIDTH_STAGE, SuperNet, progressive, sandwich,
                               sort_hidden_channels, space_identity, stage_of)
from mnas.train import checkpoint as ckpt
from mnas.train.config import TrainTask
from mnas.train.optim import lr_factor, make_optimizer
from mnas.train.trainer import amp_name, load_proxy_data, resolve_amp, resolve_device, torch_threads
from mnas.data.feeds import make_feed, normalisation

log = logging.getLogger(__name__)

CHECKPOINT, LOCK_NAME, FORMAT, FORMAT_VERSION = "supernet.pt", "train.lock", "mnas-supernet", 1
SAMPLINGS = ("sandwich", "progressive")  # which sub-networks a step trains (module docstring)
DISTILL = 1.0  # a student's weight on the largest's predictions (the rest on the labels)
# (step, total steps, teacher loss, mean distillation loss) after every step
Progress = Callable[[int, int, float, float], None]


@dataclass
class SupernetRun:
    out: Path
    status: str                   # ok | failed
    error: str | None
    steps: int
    total_steps: int
    resumed_from: int
    seconds: float                # this process's share
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["out"] = str(self.out)
        return d


def checkpoint_path(path: str | Path) -> Path:
    """A supernet folder's checkpoint, or the file itself."""
    p = Path(path).expanduser()
    return p / CHECKPOINT if p.is_dir() or not p.suffix else p


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A supernet checkpoint, checked for its format; a missing, damaged or other file is one line."""
    p = checkpoint_path(path)
    if not p.is_file():
        raise MnasError(f"no supernet at {p}: train one with mnas supernet train SPACE --dir {p.parent}")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        raise MnasError(f"{p} is not a readable supernet checkpoint ({ckpt.first_line(e)})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        what = "an mnas training checkpoint" if isinstance(blob, dict) and blob.get("format") == ckpt.FORMAT \
            else "not a supernet checkpoint"
        raise MnasError(f"{p} is {what}: give the folder of mnas supernet train (its {CHECKPOINT})")
    if blob.get("format_version", 0) > FORMAT_VERSION:
        raise MnasError(f"{p} was written by a newer mnas ({blob.get('mnas_version')}): upgrade mnas")
    blob["path"] = str(p)
    return blob


def space_of(blob: dict[str, Any]) -> MnasNetSpace:
    return MnasNetSpace(_SpaceSpec.model_validate(blob["space"]["spec"]), f"supernet {blob.get('path', '')}")


def check_space(blob: dict[str, Any], space: Any) -> None:
    """Refuse, in one line, a supernet trained over another space than ``space``."""
    have, want = blob["space"], space_identity(space)
    if have["sha"] != want["sha"]:
        raise MnasError(f"{blob.get('path', 'the supernet')} was trained over space {have['name']} "
                        f"({have['sha']}), not {want['name']} ({want['sha']}): use a supernet of this space, or "
                        f"train one with mnas supernet train {want['name']} --dir DIR")


# A supernet's structural options, recorded in its checkpoint: (what a checkpoint from before the option had,
# the default of a new supernet, the CLI flags for True and False).
STRUCTURE = {"share_skip": (True, SHARE_SKIP, "--share-skip", "--no-share-skip"),
             "kernel_transform": (True, KERNEL_TRANSFORM, "--kernel-transform", "--no-kernel-transform")}


def structure_of(blob: dict[str, Any]) -> dict[str, bool]:
    """The structural options a checkpoint's supernet was built with (older checkpoints: their fixed ones)."""
    return {k: bool(blob.get(k, before)) for k, (before, _, _, _) in STRUCTURE.items()}


def net_of(blob: dict[str, Any], device: torch.device | str = "cpu") -> SuperNet:
    """The supernet a checkpoint holds, its weights loaded."""
    d = blob["data"]
    net = SuperNet(space_of(blob), d["num_classes"], d["in_chans"], blob["width_multiplier"], blob["dropout"],
                   **structure_of(blob))
    try:
        net.load_state_dict(blob["model"])
    except (RuntimeError, KeyError) as e:
        raise MnasError(f"{blob.get('path', 'the supernet')}: its weights do not fit its space "
                        f"({ckpt.first_line(e)}): the file is damaged") from None
    return net.to(device)


def train_supernet(space: MnasNetSpace, task: TrainTask, out: str | Path, steps: int, every: int = 50,
                   n_random: int = 2, resume: bool = False, progress: Progress | None = None,
                   ends: str = "fixed", share_skip: bool | None = None,
                   kernel_transform: bool | None = None, sampling: str | None = None) -> SupernetRun:
    """Train a supernet over ``space`` on ``task``'s dataset for ``steps`` training steps into ``out``;
    ``share_skip``: one set of op weights for all of a block's skip choices, or one per choice;
    ``kernel_transform``: learned transforms for the small kernels or none (``SuperNet``). None: the
    checkpoint's on a resume, the default of ``STRUCTURE`` for a new supernet. ``sampling``: ``sandwich`` or
    ``progressive`` (None: the checkpoint's on a resume, ``sandwich`` for a new supernet)."""
    if sampling is not None and sampling not in SAMPLINGS:
        raise MnasError(f"--sampling {sampling!r}: choose one of {', '.join(SAMPLINGS)}")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise MnasError(f"--dir {out} is a file: give a folder to train the supernet into")
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = DirectoryLock(out, LOCK_NAME, what="one supernet training per folder")
    except OSError as e:
        raise MnasError(f"cannot lock {out} ({e.strerror}): choose another --dir") from None
    try:
        given = {"share_skip": share_skip, "kernel_transform": kernel_transform}
        return _train(space, task, out, steps, every, n_random, resume, progress, ends, given, sampling)
    finally:
        lock.release()


def _train(space: MnasNetSpace, task: TrainTask, out: Path, steps: int, every: int, n_random: int, resume: bool,
           progress: Progress | None, ends: str = "fixed",
           given: dict[str, bool | None] | None = None, sampling: str | None = None) -> SupernetRun:
    path = out / CHECKPOINT
    blob, given = None, given or {}
    if path.is_file():
        if not resume:
            have = read_checkpoint(path)
            raise MnasError(f"{out} holds a supernet at step {have['step']} of {have['total_steps']}: add --resume "
                            "to continue it, or choose another --dir")
        blob = read_checkpoint(path)
        check_space(blob, space)
        if blob["total_steps"] != steps:
            raise MnasError(f"{out} trains for {blob['total_steps']} steps, not {steps}: resume with "
                            f"--steps {blob['total_steps']}")
        structure = structure_of(blob)
        for k, v in given.items():
            if v is not None and structure[k] != v:
                flag = STRUCTURE[k][2] if structure[k] else STRUCTURE[k][3]
                raise MnasError(f"{out} holds a supernet with {k} = {structure[k]}, not {v}: resume with {flag} "
                                "(or without either), or train into another --dir")
        had = blob.get("sampling", "sandwich")
        if sampling is not None and sampling != had:
            raise MnasError(f"{out} trains with --sampling {had}, not {sampling}: resume with --sampling {had} (or "
                            "without it), or train into another --dir")
        sampling = had
        recorded = TrainTask.model_validate({**blob["task"], **_runtime(task)})
        changed = sorted(k for k, v in recorded.model_dump().items() if v != getattr(task, k))
        if changed:
            k = changed[0]
            raise MnasError(f"{out} trains with {k} = {getattr(recorded, k)!r}, not {getattr(task, k)!r}: resume "
                            "with the same settings, or train into another --dir")
        task = recorded
    elif resume:
        raise MnasError(f"--resume: {out} holds no {CHECKPOINT}, so there is nothing to continue: run without "
                        "--resume")
    else:
        structure = {k: default if given.get(k) is None else bool(given[k])
                     for k, (_, default, _, _) in STRUCTURE.items()}
        sampling = sampling or "sandwich"
    t0 = time.perf_counter()
    device = resolve_device(task.device)
    amp = resolve_amp(task.amp, device)  # None on the CPU: float32 there, as in the proxy trainer
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    data = load_proxy_data(task, task.seed)
    with torch_threads(task.threads):
        torch.manual_seed(task.seed)
        gen = torch.Generator().manual_seed(task.seed)
        rng = random.Random(task.seed)
        net = SuperNet(space, data.num_classes, data.in_chans, task.width_multiplier, task.dropout or 0.0,
                       **structure)
        if task.zero_init_head:
            torch.nn.init.zeros_(net.classifier.weight)
        net.to(device)
        feed = make_feed(data, task, device, torch.contiguous_format, gen)
        try:
            bs = min(task.batch_size, feed.n_train)
            steps_per_epoch = max(1, feed.n_train // bs)
            opt = _undecayed_transforms(make_optimizer(net, task), net)
            base_lrs = [g["lr"] for g in opt.param_groups]
            warmup = round(task.warmup_epochs * steps_per_epoch)
            decay_steps = max(1e-9, task.decay_epochs * steps_per_epoch)
            # "sorted_at": the step at which progressive shrinking sorted the hidden channels (None: not yet)
            state: dict[str, Any] = {"step": 0, "history": [], "sorted_at": None}
            if blob is not None:
                if (blob["data"]["num_classes"], blob["data"]["in_chans"]) != (data.num_classes, data.in_chans):
                    raise MnasError(f"{path} was trained on another dataset: choose another --dir")
                net.load_state_dict(blob["model"])
                opt.load_state_dict(blob["optimizer"])
                ckpt.set_rng_state(blob["rng"], gen)
                rng.setstate(_py_state(blob["rng"]["sampler"]))
                if scaler is not None and blob.get("scaler"):
                    scaler.load_state_dict(blob["scaler"])
                state = {"step": blob["step"], "history": blob["history"], "sorted_at": blob.get("sorted_at")}
                log.info("resuming %s at step %d of %d", out, state["step"], steps)
            resumed_from, error = state["step"], None
            meta = {**_meta(space, task, data, net, steps, every, n_random), "ends": ends, "sampling": sampling,
                    **structure}
            net.train()
            while state["step"] < steps and error is None:
                chunk_start, n = time.perf_counter(), min(every, steps - state["step"])
                losses: list[tuple[float, float]] = []
                for xb, yb in _batches(feed, bs, n, steps_per_epoch):
                    f = lr_factor(state["step"], steps, warmup, task.schedule, task.decay_rate, decay_steps)
                    for g, lr in zip(opt.param_groups, base_lrs):
                        g["lr"] = lr * f
                    archs = None
                    if sampling == "progressive":
                        stage = stage_of(state["step"], steps)
                        if stage >= WIDTH_STAGE and state["sorted_at"] is None:
                            n_sorted = sort_hidden_channels(net, opt)
                            log.info("step %d: hidden channels of %d MBConv ops sorted by importance", state["step"],
                                     n_sorted)
                            state["sorted_at"] = state["step"]
                        archs = progressive(net, rng, n_random, stage)
                    loss, kd = sandwich_step(net, opt, xb, yb, rng, n_random, task.label_smoothing, ends=ends,
                                             amp=amp, scaler=scaler, archs=archs)
                    if not (math.isfinite(loss) and math.isfinite(kd)):
                        error = f"loss became {loss if not math.isfinite(loss) else kd} at step {state['step'] + 1}"
                        break
                    state["step"] += 1
                    losses.append((loss, kd))
                    if progress is not None:
                        progress(state["step"], steps, loss, kd)
                if error is None and losses:
                    state["history"].append({"step": state["step"], "loss": sum(a for a, _ in losses) / len(losses),
                                             "kd": sum(b for _, b in losses) / len(losses),
                                             "seconds": time.perf_counter() - chunk_start,
                                             "amp": amp_name(amp)})
                    _write(path, {**meta, "step": state["step"], "history": state["history"],
                                  "sorted_at": state["sorted_at"],
                                  "model": net.state_dict(), "optimizer": opt.state_dict(),
                                  "rng": {**ckpt.rng_state(gen), "sampler": _py_list(rng.getstate())},
                                  "scaler": scaler.state_dict() if scaler is not None else None})
        finally:
            feed.close()
    return SupernetRun(out, "failed" if error else "ok", error, state["step"], steps, resumed_from,
                       time.perf_counter() - t0, state["history"])


def _batches(feed: Any, bs: int, n: int, steps_per_epoch: int) -> Any:
    """``n`` batches, a new permutation at least every ``steps_per_epoch`` (an epoch holds no more)."""
    while n > 0:
        k = min(n, steps_per_epoch)
        yield from feed.epoch(bs, k)
        n -= k


def _undecayed_transforms(opt: torch.optim.Optimizer, net: SuperNet) -> torch.optim.Optimizer:
    """The kernel transforms start at the identity: weight decay would pull them towards 0, not back to it."""
    ids = {id(p) for name, p in net.named_parameters() if ".transforms." in name}
    if not ids:
        return opt
    moved = [p for g in opt.param_groups for p in g["params"] if id(p) in ids]
    for g in opt.param_groups:
        g["params"] = [p for p in g["params"] if id(p) not in ids]
    free = next((g for g in opt.param_groups if g["weight_decay"] == 0.0), None)
    if free is not None:
        free["params"].extend(moved)
    else:
        opt.add_param_group({"params": moved, "weight_decay": 0.0})
    return opt


def sandwich_step(net: SuperNet, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor,
                  rng: random.Random, n_random: int, label_smoothing: float,
                  distill: float = DISTILL, ends: str = "fixed", amp: torch.dtype | None = None,
                  scaler: torch.amp.GradScaler | None = None,
                  archs: list[Any] | None = None) -> tuple[float, float]:
    """One optimizer step of the sandwich rule on the mean of the sub-networks' losses (their sum, with the
    recipe's learning rate, diverged: docs/results/2026-12-06-supernet.md); returns (the largest's loss, the
    students' mean distillation loss). A student's loss is ``distill`` x the cross-entropy to the largest's predictions + the rest x the
    cross-entropy to the labels.

    ``amp``: the forward passes run under autocast in that dtype (the losses in float32); ``scaler``: float16's
    loss scaling (bfloat16 needs none). ``archs``: the step's sub-networks, the teacher first (progressive
    shrinking's); None: the sandwich rule's."""
    opt.zero_grad(set_to_none=True)
    teacher, *students = archs if archs is not None else sandwich(net, rng, n_random, ends)

    def forward(arch: Any) -> torch.Tensor:
        with torch.autocast(xb.device.type, dtype=amp, enabled=amp is not None):
            return net(xb, arch).float()

    def backward(value: torch.Tensor) -> None:
        (scaler.scale(value) if scaler is not None else value).backward()

    logits = forward(teacher)
    loss = F.cross_entropy(logits, yb, label_smoothing=label_smoothing)
    scale = 1.0 / (1 + len(students))  # the mean of the sub-networks' losses: the recipe's step size
    backward(loss * scale)
    soft = logits.detach().softmax(1)
    kd_sum = 0.0
    for arch in students:
        out = forward(arch)
        kd = -(soft * F.log_softmax(out, 1)).sum(1).mean()
        total = distill * kd
        if distill < 1:
            total = total + (1 - distill) * F.cross_entropy(out, yb, label_smoothing=label_smoothing)
        backward(total * scale)
        kd_sum += float(kd.detach())
    if scaler is not None:
        scaler.step(opt)  # skips the step when a gradient overflowed
        scaler.update()
    else:
        opt.step()
    return float(loss.detach()), kd_sum / max(1, len(students))


def _meta(space: MnasNetSpace, task: TrainTask, data: Any, net: SuperNet, steps: int, every: int,
          n_random: int) -> dict[str, Any]:
    mean, std = normalisation(data, task.normalize)
    ident = space_identity(space)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "mnas_version": __version__,
            "space": {"name": ident["name"], "sha": ident["sha"], "spec": space.spec.model_dump(exclude_none=True)},
            "task": task.model_dump(), "width_multiplier": net.width_multiplier, "dropout": net.dropout,
            "data": {"name": data.name, "num_classes": int(data.num_classes), "in_chans": int(data.in_chans),
                     "resolution": int(data.resolution), "classes": [str(c) for c in data.classes],
                     "split": _plain(data.split),
                     "mean": [float(x) for x in mean], "std": [float(x) for x in std]},
            "total_steps": steps, "every": every, "n_random": n_random}


def _plain(split: Any) -> dict[str, Any]:
    if not isinstance(split, dict):
        return {}
    return {str(k): v for k, v in split.items() if v is None or isinstance(v, (int, float, str))}


# what a resume may change: how the run computes, not what it learns
_RUNTIME = ("threads", "workers", "device", "amp", "compile", "eval_batch_size", "cache", "max_bad_fraction")


def _runtime(task: TrainTask) -> dict[str, Any]:
    return {k: getattr(task, k) for k in _RUNTIME}


def _py_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_state(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _write(path: Path, blob: dict[str, Any]) -> None:
    try:
        atomic_write(path, lambda f: torch.save(blob, f))
    except OSError as e:
        raise MnasError(f"cannot write {path} ({e.strerror or type(e).__name__}); the previous checkpoint is "
                        "kept: free space, then continue with --resume") from None
