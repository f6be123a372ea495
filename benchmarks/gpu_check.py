"""Every GPU measurement of mnas in one call, written to one JSON file: made for a GPU machine lent for
minutes (no network, the working tree and at most 64 MiB of carried files).

Sections, each stopped by its own deadline (a share of ``--budget``); the JSON is rewritten after each one,
so whatever happens later, what was measured is on disk:

1. ``tests``: ``pytest -m gpu tests/test_gpu.py``, the outcome of every test.
2. ``throughput``: training images/s of mnas's trainer (its own step loop: ``build_run`` + ``train_epoch``)
   for MobileNetV2 and MnasNet-A1 at 32 px (the zoo's CIFAR-stem variants where the zoo has them, else the
   ImageNet-stem models; ``models`` records which) and 224 px, synthetic data on the device, float32 vs bf16
   vs bf16 + ``torch.compile`` (and bf16 with ``cudnn.benchmark`` for MobileNetV2: both in a child process,
   killed at the deadline); the anchor: a
   plain PyTorch AMP (bf16) channels-last loop over timm's ``mobilenetv2_100`` (and ``semnasnet_100``,
   MnasNet-A1) at the same batch and resolution.
3. ``real_vs_synthetic``: the same training step (the cifar recipe's flips) fed the CIFAR-10 training
   images held on the device, the same images streamed from their JPEG archive through the DataLoader
   workers and pinned memory, and synthetic images on the device.
4. ``trials_per_hour``: proxy trials of ``configs/cifar10.yaml`` (the CIFAR-10 training images instead of
   the JPEG archive) with the local executor at N = 1, 2, 4, 8 workers on the one GPU; training only (the
   latency step is stubbed out: it runs on the CPU and does not change with N), trials starting as workers
   free up (a latency backend timed elsewhere), and once at N = 4 with the latency windows of a backend
   timed here (each wave waits for its slowest training).
5. ``converge``: MobileNetV2 (CIFAR stem where the zoo has it) trained on CIFAR-10 train, scored on test,
   for as many epochs (up to ``--epochs``) as the time left allows.

CIFAR-10 travels as a compact pack (``prep``): the original JPEG bytes of all 60,000 images in one
uncompressed .npz (about 53 MiB), decoded on the GPU machine in seconds.

    python benchmarks/gpu_check.py prep [--zip /work/shared/datasets/cifar10-jpeg.zip] [--out gpu-data/cifar10-jpeg.npz]
    PYTHONPATH=src python benchmarks/gpu_check.py --data gpu-data/cifar10-jpeg.npz --out gpu_check.json --budget 540
    PYTHONPATH=src python benchmarks/gpu_check.py --smoke --out /tmp/gpu_check.json     # CPU, under a minute

``--smoke`` runs every section end to end on the CPU with tiny sizes (no compile: inductor's C++ build
takes minutes on a CPU); its numbers mean nothing, its JSON has every field.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:  # run from the working tree: the GPU machine has no installed mnas
    sys.path.insert(0, str(SRC))

DEFAULT_ZIP = "/work/shared/datasets/cifar10-jpeg.zip"
DEFAULT_PACK = "gpu-data/cifar10-jpeg.npz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# the shares of --budget each section may use; converge takes whatever is left
SHARES = {"tests": 0.18, "throughput": 0.12, "compile": 0.12, "real_vs_synthetic": 0.05, "trials_per_hour": 0.24}
SECTIONS = ("tests", "throughput", "real_vs_synthetic", "trials_per_hour", "converge")


# -- the CIFAR-10 pack

def prep(zip_path: str, out: str, limit: int | None = None) -> dict[str, Any]:
    """Pack the JPEG bytes of the archive's images (train and test) into one uncompressed .npz."""
    blobs, labels, train = [], [], []
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
        for split in ("train", "test"):
            part = [n for n in names if n.split("/")[-3] == split]
            if limit is not None:  # a class-balanced subset: every class's first images
                part = [n for c in CLASSES for n in [m for m in part if m.split("/")[-2] == c][:limit // 10]]
            for n in part:
                blobs.append(z.read(n))
                labels.append(CLASSES.index(n.split("/")[-2]))
                train.append(split == "train")
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{out}.tmp.npz"
    np.savez(tmp, jpeg=np.frombuffer(b"".join(blobs), np.uint8), offsets=offsets,
             labels=np.asarray(labels, np.int64), train=np.asarray(train, bool), classes=np.asarray(CLASSES))
    os.replace(tmp, out)
    return {"out": out, "images": len(blobs), "train": int(sum(train)), "bytes": os.path.getsize(out)}


def decode_pack(path: str) -> dict[str, np.ndarray]:
    """The pack's images decoded: x_train/x_test uint8 (N, 32, 32, 3), y_train/y_test int64."""
    from PIL import Image

    with np.load(path, allow_pickle=False) as z:
        jpeg, offsets, labels, train = z["jpeg"], z["offsets"], z["labels"], z["train"]
    raw = jpeg.tobytes()
    x = np.stack([np.asarray(Image.open(io.BytesIO(raw[offsets[i]:offsets[i + 1]])).convert("RGB"))
                  for i in range(len(labels))])
    return {"x_train": x[train], "y_train": labels[train], "x_test": x[~train], "y_test": labels[~train]}


def subset_pack(path: str, out: str, train: int, test: int) -> str:
    """A pack of a seeded random ``train`` training and ``test`` test images of the pack at ``path``."""
    with np.load(path, allow_pickle=False) as z:
        jpeg, offsets, labels, is_train, classes = z["jpeg"], z["offsets"], z["labels"], z["train"], z["classes"]
    rng = np.random.default_rng(0)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(is_train))[:train],
                                   rng.permutation(np.flatnonzero(~is_train))[:test]]))
    parts = [jpeg[offsets[i]:offsets[i + 1]] for i in keep]
    new_offsets = np.zeros(len(keep) + 1, np.int64)
    new_offsets[1:] = np.cumsum([len(p) for p in parts])
    np.savez(out, jpeg=np.concatenate(parts), offsets=new_offsets, labels=labels[keep], train=is_train[keep],
             classes=classes)
    return out


def pack_to_zip(path: str, out: str) -> str:
    """The pack as the archive it came from (an ImageFolder inside a ZIP, stored): for the streamed loader."""
    with np.load(path, allow_pickle=False) as z:
        jpeg, offsets, labels, train = z["jpeg"], z["offsets"], z["labels"], z["train"]
    raw = jpeg.tobytes()
    counts: dict[tuple[str, int], int] = {}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for i, (label, is_train) in enumerate(zip(labels.tolist(), train.tolist())):
            split = "train" if is_train else "test"
            k = counts[(split, label)] = counts.get((split, label), -1) + 1
            zf.writestr(f"cifar10/{split}/{CLASSES[label]}/{k:04d}.jpg", raw[offsets[i]:offsets[i + 1]])
    return out


def cifar_dataset(images: dict[str, np.ndarray], resolution: int = 32):
    """CIFAR-10 train (all of it) with the test images as the validation split, as mnas's Dataset."""
    import torch

    from mnas.data.base import Dataset

    def nchw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()

    x_train = nchw(images["x_train"])
    xf = x_train.float().div_(255.0)
    mean = tuple(float(v) for v in xf.mean(dim=(0, 2, 3)))
    std = tuple(float(v) for v in xf.std(dim=(0, 2, 3)))
    return Dataset("cifar10", x_train, torch.from_numpy(images["y_train"]), nchw(images["x_test"]),
                   torch.from_numpy(images["y_test"]), 10, 3, resolution, mean, std, CLASSES,
                   {"validation": "the 10,000 test images"})


@functools.lru_cache(maxsize=2)
def synthetic_dataset(n: int, resolution: int, seed: int = 0):
    import torch

    from mnas.data.base import Dataset

    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, resolution, resolution), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset("synthetic", x, y, x[:64], y[:64], 10, 3, resolution, (0.5,) * 3, (0.25,) * 3)


# -- measurements

def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mnas_images_per_s(arch_name: str, data, cfg, warm: int, steps: int) -> dict[str, Any]:
    """Images/s of the trainer's own step loop after ``warm`` steps (cuDNN's autotuning, a compile)."""
    import torch

    from mnas.space import zoo
    from mnas.train.trainer import opened_run, resolve_device, train_epoch

    device = resolve_device(cfg.device)
    with opened_run(zoo.get(arch_name), data, cfg, device) as run:
        run.model.train()
        t = time.perf_counter()
        _, error = train_epoch(run, cfg, 0, warm, None)
        sync(device)
        warm_s = time.perf_counter() - t
        t = time.perf_counter()
        _, error2 = train_epoch(run, cfg, 1, steps, None)
        sync(device)
        dt = time.perf_counter() - t
        amp = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[run.amp_dtype]
    return {"images_per_s": steps * cfg.batch_size / dt, "warmup_s": warm_s, "steps": steps, "error": error or error2,
            "amp": amp, "compile": cfg.compile, "channels_last": cfg.channels_last, "batch_size": cfg.batch_size,
            "device": str(device)}


def timm_images_per_s(model_name: str, resolution: int, batch: int, warm: int, steps: int, device_name: str,
                      amp: bool = True) -> dict[str, Any]:
    """The anchor: the loop one writes with timm and PyTorch AMP (bf16), channels-last, data on the device."""
    import timm
    import torch
    import torch.nn.functional as F

    device = torch.device(device_name)
    torch.manual_seed(0)
    model = timm.create_model(model_name, num_classes=10).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-5)
    x = torch.randn(batch, 3, resolution, resolution, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    model.train()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warm):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    dt = time.perf_counter() - t
    return {"images_per_s": steps * batch / dt, "steps": steps, "amp": "bf16" if amp else "off",
            "channels_last": True, "batch_size": batch, "timm": timm.__version__, "device": str(device)}


def guarded(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One measurement; its error (out of memory, a model this timm lacks) recorded instead of raised, so
    the rest of its section still runs."""
    try:
        return measure()
    except Exception as e:  # noqa: BLE001
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"error": f"{type(e).__name__}: {str(e)[:300]}"}


def in_child(kind: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One measurement in a child process, killed at ``timeout`` (a compile cannot be stopped otherwise)."""
    if timeout <= 5:
        return {"skipped": "no time left in this section"}
    try:
        r = subprocess.run([sys.executable, __file__, "_child", kind, json.dumps(args)], capture_output=True,
                           text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": _pythonpath()})
    except subprocess.TimeoutExpired:
        return {"skipped": f"stopped at the section's deadline ({timeout:.0f} s)"}
    lines = r.stdout.strip().splitlines()
    if r.returncode or not lines:
        return {"error": f"exit {r.returncode}: {(r.stderr.strip().splitlines() or [''])[-1][:300]}"}
    return json.loads(lines[-1])


def _pythonpath() -> str:
    return os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)


def _child(kind: str, args: dict[str, Any]) -> None:
    from mnas.train import TrainConfig

    if kind == "mnas":
        if args.get("cudnn_benchmark"):
            import torch

            torch.backends.cudnn.benchmark = True  # autotuned convolutions: for this process only
        data = synthetic_dataset(args["n"], args["resolution"])
        out = mnas_images_per_s(args["arch"], data, TrainConfig(**args["cfg"]), args["warm"], args["steps"])
    else:
        out = timm_images_per_s(**args)
    print(json.dumps(out))


class Check:
    """The JSON being built: sections, deadlines, atomic rewrites."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.started = args, time.monotonic()
        self.end = self.started + args.budget
        self.out: dict[str, Any] = {"script": "benchmarks/gpu_check.py", "smoke": args.smoke, "budget_s": args.budget,
                                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sections": {}}
        self.write()

    def left(self) -> float:
        return self.end - time.monotonic()

    def deadline(self, share: float) -> float:
        return min(self.end, time.monotonic() + share * self.args.budget)

    def write(self) -> None:
        self.out["wall_s"] = round(time.monotonic() - self.started, 1)
        path = Path(self.args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(self.out, f, indent=1, default=str)
        os.replace(tmp, path)

    def section(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        t = time.monotonic()
        if name in self.args.skip:
            result: dict[str, Any] = {"skipped": "--skip"}
        elif self.left() <= 1 and not self.args.smoke:  # the smoke's sections are tiny: each one runs
            result = {"skipped": "the budget was spent before this section"}
        else:
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - recorded; the next section still runs
                result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
        result["seconds"] = round(time.monotonic() - t, 1)
        self.out["sections"][name] = result
        self.write()
        status = result.get("error") or (result["skipped"] if isinstance(result.get("skipped"), str) else "done")
        print(f"[gpu_check] {name}: {status} "
              f"({result['seconds']} s)", file=sys.stderr, flush=True)


# -- the sections

def environment(device) -> dict[str, Any]:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": str(device), "cpus": os.cpu_count(), "host": platform.node()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
    try:
        import timm

        env["timm"] = timm.__version__
    except Exception as e:  # noqa: BLE001 - e.g. a broken torchvision under it
        env["timm"] = None
        env["timm_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return env


def run_tests(check: Check, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        xml = Path(d) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-v", "-m", "gpu", "-p", "no:cacheprovider", f"--junitxml={xml}",
               str(ROOT / "tests" / "test_gpu.py")]
        try:
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                               env={**os.environ, "PYTHONPATH": _pythonpath()})
        except subprocess.TimeoutExpired as e:
            text = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            # the outcomes pytest -v printed before the deadline
            done = [{"name": line.split("::", 1)[1].split()[0], "outcome": word.lower()}
                    for line in text.splitlines() if "::" in line
                    for word in ("PASSED", "FAILED", "SKIPPED", "ERROR") if f" {word}" in line]
            return {"error": f"stopped at the section's deadline ({timeout:.0f} s)", "tests": done,
                    "output_tail": text[-3000:]}
        tests = []
        if xml.exists():
            for case in ET.parse(xml).getroot().iter("testcase"):
                outcome, message = "passed", ""
                for tag in ("failure", "error", "skipped"):
                    el = case.find(tag)
                    if el is not None:
                        outcome, message = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag], \
                            (el.get("message") or "")[:500]
                        break
                tests.append({"name": case.get("name"), "outcome": outcome, "seconds": float(case.get("time", 0)),
                              "message": message})
    summary = (r.stdout.strip().splitlines() or [""])[-1]
    return {"returncode": r.returncode, "summary": summary, "tests": tests,
            "passed": sum(t["outcome"] == "passed" for t in tests), "failed": sum(t["outcome"] in ("failed", "error")
                                                                                  for t in tests),
            "skipped": sum(t["outcome"] == "skipped" for t in tests), "output_tail": r.stdout[-6000:]}


def zoo_models() -> dict[str, str]:
    """The models at 32 px: the CIFAR-stem variants where the zoo has them."""
    from mnas.space import zoo

    names = set(zoo.names())
    return {base: (f"{base}-cifar" if f"{base}-cifar" in names else base) for base in ("mobilenet-v2", "mnasnet-a1")}


def throughput(check: Check, device, smoke: bool) -> dict[str, Any]:
    from mnas.train import TrainConfig

    deadline = check.deadline(SHARES["throughput"])
    compile_deadline = deadline + SHARES["compile"] * check.args.budget
    cifar = zoo_models()
    sizes = {32: 4 if smoke else 256, 224: 2 if smoke else 128}
    warm, steps = (1, 2) if smoke else (10, 40)
    out: dict[str, Any] = {"models_32px": cifar, "models_224px": {b: b for b in cifar},
                           "note": "synthetic uint8 images on the device; no EMA, no flips (the anchor has neither)",
                           "runs": []}
    check.out["sections"]["throughput"] = out  # partial until the section ends: each run is written as it ends
    timm_ok = environment(device).get("timm") is not None
    timm_names = {"mobilenet-v2": "mobilenetv2_100", "mnasnet-a1": "semnasnet_100"}
    plan = []
    for res, bs in sizes.items():
        for base in cifar:
            arch = cifar[base] if res == 32 else base
            for mode in ("fp32", "bf16", "bf16+cudnn.benchmark", "bf16+compile"):
                if mode != "bf16+cudnn.benchmark" or base == "mobilenet-v2":
                    plan.append((res, bs, base, arch, mode))
            if arch != base:  # the anchor's model (ImageNet stem) at this size too, for the like-for-like ratio
                plan.append((res, bs, base, base, "bf16"))
    # the runs in a child process last (compiled ones at the very end: each costs a compile); they have
    # their own share of the budget
    plan.sort(key=lambda p: ("+" in p[4], p[4] == "bf16+compile"))
    for res, bs, base, arch, mode in plan:
        row: dict[str, Any] = {"model": arch, "resolution": res, "batch_size": bs, "mode": mode}
        cfg = dict(recipe="cifar", batch_size=bs, resolution=res, width_multiplier=1.0, device=str(device),
                   amp="off" if mode == "fp32" else "bf16", compile=mode == "bf16+compile", channels_last=True,
                   ema_decay=0.0, hflip=False, crop_min_area=0.0, dropout=0.0, epochs=1.0)
        n = bs * max(warm, steps)
        if mode == "bf16+compile" and smoke:
            row["skipped"] = "smoke: torch.compile's C++ build takes minutes on a CPU"
        elif "+" in mode:  # a compile, or a process-wide flag: in a child process, killed at the deadline
            row.update(in_child("mnas", {"arch": arch, "n": n, "resolution": res, "cfg": cfg,
                                         "warm": 3 if mode == "bf16+compile" else warm, "steps": steps,
                                         "cudnn_benchmark": mode == "bf16+cudnn.benchmark"},
                                compile_deadline - time.monotonic()))
        elif time.monotonic() > deadline:
            row["skipped"] = "stopped at the section's deadline"
        else:
            row.update(guarded(lambda: mnas_images_per_s(arch, synthetic_dataset(n, res), TrainConfig(**cfg), warm,
                                                         steps)))
        out["runs"].append(row)
        check.write()
    out["anchor"] = []
    for res, bs in sizes.items():
        for base, name in timm_names.items():
            row = {"model": f"timm:{name}", "same_as": base, "resolution": res, "batch_size": bs, "mode": "bf16"}
            if not timm_ok:
                row["skipped"] = f"timm does not import here: {environment(device).get('timm_error')}"
            elif time.monotonic() > deadline + 30:
                row["skipped"] = "stopped at the section's deadline"
            else:
                row.update(guarded(lambda: timm_images_per_s(name, res, bs, warm, steps, str(device),
                                                             amp=device.type == "cuda")))
            out["anchor"].append(row)
    # the goal's ratio: mnas bf16 against the anchor, same model, batch and resolution (ImageNet stem)
    ratios = []
    for a in out["anchor"]:
        m = next((r for r in out["runs"] if r["model"] == a["same_as"] and r["resolution"] == a["resolution"]
                  and r["mode"] == "bf16" and "images_per_s" in r), None)
        if m and "images_per_s" in a:
            ratios.append({"model": a["same_as"], "resolution": a["resolution"],
                           "mnas_over_anchor": round(m["images_per_s"] / a["images_per_s"], 3)})
    out["mnas_over_anchor"] = ratios
    return out


def real_vs_synthetic(check: Check, device, images: dict[str, np.ndarray] | None, pack: str | None,
                      smoke: bool) -> dict[str, Any]:
    """The same training step fed three ways: CIFAR-10 held on the device (how mnas trains a dataset that
    fits), CIFAR-10 streamed from its JPEG archive through the DataLoader workers and pinned memory (how it
    trains one that does not), and synthetic images on the device."""
    from mnas.data import load_dataset
    from mnas.train import TrainConfig

    if images is None or pack is None:
        return {"skipped": "no CIFAR-10 pack (--data)"}
    arch = zoo_models()["mobilenet-v2"]
    bs = 4 if smoke else 256
    warm, steps = (1, 2) if smoke else (10, 60)
    workers = 1 if smoke else max(1, min(8, (os.cpu_count() or 2) - 2))
    cfg = TrainConfig(recipe="cifar", batch_size=bs, resolution=32, width_multiplier=1.0, device=str(device),
                      amp="auto", ema_decay=0.0, epochs=1.0, workers=workers)  # the recipe's flips, as in training
    real = cifar_dataset(images)
    out: dict[str, Any] = {"model": arch, "batch_size": bs, "loader_workers": workers,
                           "augmentation": {"hflip": cfg.hflip, "crop_min_area": cfg.crop_min_area},
                           "memory": mnas_images_per_s(arch, real, cfg, warm, steps)}
    out["synthetic"] = mnas_images_per_s(arch, synthetic_dataset(bs * max(warm, steps), 32), cfg, warm, steps)
    check.write()
    deadline = check.deadline(SHARES["real_vs_synthetic"])
    if time.monotonic() < deadline:
        with tempfile.TemporaryDirectory() as d:
            out["streamed"] = guarded(lambda: mnas_images_per_s(
                arch, load_dataset(f"imagefolder:{pack_to_zip(pack, str(Path(d) / 'cifar10.zip'))}", 32), cfg,
                warm, steps))
    else:
        out["streamed"] = {"skipped": "stopped at the section's deadline"}
    syn = out["synthetic"]["images_per_s"]
    out["memory_over_synthetic"] = round(out["memory"]["images_per_s"] / syn, 3)
    if "images_per_s" in out["streamed"]:
        out["streamed_over_synthetic"] = round(out["streamed"]["images_per_s"] / syn, 3)
    return out


def trials_per_hour(check: Check, device, images: dict[str, np.ndarray] | None, smoke: bool) -> dict[str, Any]:
    import random

    from mnas.run import local
    from mnas.search.config import load_config
    from mnas.space import load_space

    cfg = load_config(ROOT / "configs" / "cifar10.yaml")
    workdir = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    if smoke or images is None:
        proxy = cfg.proxy.model_copy(update={"dataset": "digits", "cache": None, "holdout": 0.2, "resolution": 16,
                                             "train_limit": 128, "epochs": 1.0, "batch_size": 32,
                                             "device": str(device)})
        data_note = "digits (smoke)" if smoke else "digits: no CIFAR-10 pack"
    else:
        npz = workdir / "cifar10-train.npz"
        np.savez(npz, x=images["x_train"], y=images["y_train"])
        proxy = cfg.proxy.model_copy(update={"dataset": f"npz:{npz}", "cache": None, "device": str(device)})
        data_note = "CIFAR-10 training images (npz in memory; the config streams the JPEG archive into a cache)"
    space = load_space(cfg.space)
    rng = random.Random(0)
    archs = [space.decode(space.sample_tokens(rng)).canonical for _ in range(200)]
    counts = (1, 2) if smoke else (1, 2, 4, 8)
    windowed = 2 if smoke else 4  # also with the latency windows of a backend timed here
    share = (SHARES["trials_per_hour"] * check.args.budget) / (len(counts) + 1)
    from mnas.run import trial

    lat = local.LatencyMeasurement({}, 0.0, 0, 0)
    real_measure = local.measure_latency
    # training only: the latency step runs on the CPU, the same for every N (in-process for N = 1)
    local.measure_latency = trial.measure_latency = lambda arch, job: lat
    out: dict[str, Any] = {"proxy": proxy.model_dump(), "data": data_note,
                           "latency": "stubbed out: trials/hour of the training alone. windows false: a backend "
                                      "timed elsewhere (a device agent), trials start as workers free up; true: "
                                      "one timed here, each wave waits for its slowest training", "runs": []}
    check.out["sections"]["trials_per_hour"] = out  # partial until the section ends
    try:
        for n, windows in [(n, False) for n in counts] + [(windowed, True)]:
            out["runs"].append(_trials_at(n, archs, proxy, windows, time.monotonic() + share, check))
            check.write()
    finally:
        local.measure_latency = trial.measure_latency = real_measure
    base = out["runs"][0].get("steady_trials_per_hour")
    for r in out["runs"]:
        if base and r.get("steady_trials_per_hour"):
            r["speedup_over_1"] = round(r["steady_trials_per_hour"] / base, 2)
    return out


def _trials_at(n: int, archs: list[str], proxy, windows: bool, deadline: float, check: Check) -> dict[str, Any]:
    """Trials on ``n`` workers until ``deadline`` (or later, until two waves finished, at most 30 s more);
    those still training then are stopped and not counted."""
    from mnas.latency import LatencySettings
    from mnas.run import ExecutorConfig, LatencyJob, TrialJob
    from mnas.run.local import LocalExecutor

    ex = LocalExecutor(ExecutorConfig(workers=n))
    job_latency = LatencyJob("onnxruntime" if windows else "remote:http://stub.invalid", LatencySettings())
    t0, finished, submitted = time.monotonic(), [], 0
    hard = min(check.end, deadline + (5 if check.args.smoke else 30))

    def more() -> bool:
        now = time.monotonic()
        return now < hard and (now < deadline or len(finished) < 2 * n)

    try:
        while more():
            while ex.in_flight() < n:
                ex.submit(TrialJob(submitted, archs[submitted % len(archs)], job_latency, proxy, 0))
                submitted += 1
            for t in ex.wait(timeout=max(0.1, (deadline if time.monotonic() < deadline else hard)
                                         - time.monotonic())):
                finished.append((time.monotonic() - t0, t))
    finally:
        ex.shutdown()
    ok = [(s, t) for s, t in finished if t.status == "completed"]
    times = sorted(s for s, _ in ok)
    row: dict[str, Any] = {"workers": n, "windows": windows, "submitted": submitted, "completed": len(ok),
                           "failed": len(finished) - len(ok), "wall_s": round(time.monotonic() - t0, 1),
                           "errors": sorted({t.error for _, t in finished if t.error})[:3]}
    if ok:
        row["trials_per_hour"] = round(3600 * len(ok) / times[-1], 1)  # worker start-up included
        row["mean_train_s"] = round(sum(t.train["train_seconds"] for _, t in ok) / len(ok), 2)
        row["devices"] = sorted({t.train["device"] for _, t in ok})
    if len(times) > n:  # after the first n: start-up and data loading left out
        row["steady_trials_per_hour"] = round(3600 * (len(times) - n) / (times[-1] - times[n - 1]), 1)
    return row


def converge(check: Check, device, images: dict[str, np.ndarray] | None, smoke: bool) -> dict[str, Any]:
    from mnas.space import zoo
    from mnas.train import TrainConfig
    from mnas.train.full import train_full

    if images is None:
        return {"skipped": "no CIFAR-10 pack (--data)"}
    arch = zoo_models()["mobilenet-v2"]
    data = cifar_dataset(images)
    settings = {"recipe": "cifar", "device": str(device), "epochs": float(check.args.epochs),
                **json.loads(check.args.converge_set)}
    if smoke:
        settings.update(epochs=1.0, batch_size=8, train_limit=64, eval_batch_size=64)
    # fit the epochs to the time left (the schedule depends on them): real_vs_synthetic's images/s on the
    # data held on the device estimates an epoch; a run still stops at the deadline, keeping its epochs
    rate = (check.out["sections"].get("real_vs_synthetic", {}).get("memory") or {}).get("images_per_s")
    left = max(10.0, check.left()) if smoke else check.left() - 25  # the smoke's run is tiny: let it finish
    if left < 30 and not smoke:
        return {"skipped": f"{max(0.0, left):.0f} s left: too little for an epoch"}
    cfg = TrainConfig(**settings)
    n_train = min(data.n_train, cfg.train_limit or data.n_train)
    if rate and not smoke:
        # batch 128 against the measured 256, the EMA, the evaluation of 10,000 images and the checkpoint
        per_epoch = 1.3 * n_train / rate + 3
        fit = max(1, min(int(cfg.epochs), int(left // per_epoch)))
        if fit < cfg.epochs:
            cfg = TrainConfig(**{**settings, "epochs": float(fit)})
    out: dict[str, Any] = {"model": arch, "config": cfg.model_dump(), "train_images": n_train,
                           "test_images": data.n_val}

    class OutOfTime(Exception):
        pass

    def stop(signum, frame):
        raise OutOfTime

    # an alarm, not a progress callback: with one, the trainer would read every step's loss (a GPU sync)
    previous = signal.signal(signal.SIGALRM, stop)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        outer, _ = signal.setitimer(signal.ITIMER_REAL, max(0.1, left))  # a timer already set: restored after
        try:
            r = train_full(zoo.get(arch), data, cfg, Path(d) / "run", name=arch)
            signal.setitimer(signal.ITIMER_REAL, 0)
            out.update(status=r.status, error=r.error, epochs=r.epochs, top1=r.top1, best_top1=r.best_top1,
                       best_epoch=r.best_epoch, history=r.history)
        except OutOfTime:
            history_file = Path(d) / "run" / "history.json"
            history = json.loads(history_file.read_text()) if history_file.exists() else []
            out.update(status="stopped at the deadline", epochs=len(history),
                       top1=history[-1]["val_top1"] if history else None,
                       best_top1=max((h["val_top1"] for h in history), default=None), history=history)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if outer:
                signal.setitimer(signal.ITIMER_REAL, max(0.001, outer - (time.perf_counter() - t)))
        out["train_s"] = round(time.perf_counter() - t, 1)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["prep"]:
        ap = argparse.ArgumentParser(prog="gpu_check.py prep", description="write the compact CIFAR-10 pack")
        ap.add_argument("--zip", default=DEFAULT_ZIP)
        ap.add_argument("--out", default=str(ROOT / DEFAULT_PACK))
        ap.add_argument("--limit", type=int, help="at most this many images per split (class-balanced)")
        a = ap.parse_args(argv[1:])
        info = prep(a.zip, a.out, a.limit)
        print(json.dumps(info))
        return info
    if argv[:1] == ["_child"]:
        _child(argv[1], json.loads(argv[2]))
        return {}
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu_check.json", help="the JSON file to write")
    ap.add_argument("--data", help=f"the CIFAR-10 pack (`prep`; default {DEFAULT_PACK} when it exists)")
    ap.add_argument("--budget", type=float, default=540.0, help="seconds for everything (default 540)")
    ap.add_argument("--epochs", type=int, default=30, help="converge: at most this many epochs")
    ap.add_argument("--converge-set", default="{}", help="converge: JSON of TrainConfig values over the cifar "
                    "recipe, e.g. '{\"weight_decay\": 5e-4, \"batch_size\": 256, \"lr\": 0.1}'")
    ap.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {','.join(SECTIONS)}")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the script, not the GPU")
    args = ap.parse_args(argv)
    args.skip = {s for s in args.skip.split(",") if s}
    if args.smoke and "--budget" not in argv:
        args.budget = 45.0
    import torch

    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    check = Check(args)
    check.out["environment"] = environment(device)
    if device.type != "cuda" and not args.smoke:
        check.out["warning"] = "torch sees no CUDA device: these are CPU numbers"
    images = None
    pack = args.data or (str(ROOT / DEFAULT_PACK) if (ROOT / DEFAULT_PACK).exists() else None)
    t = time.monotonic()
    if args.smoke:  # a tiny pack, so every section runs in seconds
        tiny = str(Path(tempfile.mkdtemp(prefix="gpu_check_")) / "pack.npz")
        if pack:
            pack = subset_pack(pack, tiny, 256, 128)
        elif Path(DEFAULT_ZIP).exists():
            pack = prep(DEFAULT_ZIP, tiny, limit=300)["out"]
    if pack:
        images = decode_pack(pack)
        check.out["data"] = {"pack": pack, "bytes": os.path.getsize(pack), "train": len(images["y_train"]),
                             "test": len(images["y_test"]), "decode_s": round(time.monotonic() - t, 1)}
    else:
        check.out["data"] = {"pack": None, "note": "no CIFAR-10 pack: sections that need it are skipped"}
    check.write()
    smoke = args.smoke
    check.section("tests", lambda: run_tests(check, max(30.0, SHARES["tests"] * args.budget)))
    check.section("throughput", lambda: throughput(check, device, smoke))
    check.section("real_vs_synthetic", lambda: real_vs_synthetic(check, device, images, pack, smoke))
    check.section("trials_per_hour", lambda: trials_per_hour(check, device, images, smoke))
    check.section("converge", lambda: converge(check, device, images, smoke))
    check.out["finished"] = True
    check.write()
    return check.out


if __name__ == "__main__":
    main()
