"""Supernet rank fidelity and cost at CPU scale (issue 29): train a supernet over a space, then for N
architectures (the largest, the smallest and seeded random ones) compare the supernet's accuracy (inherited
weights, recalibrated BatchNorm) with the accuracy of the same architecture trained standalone by the proxy
(same dataset, resolution, width and split): Kendall tau, and candidates evaluated per hour.

    nohup nice -n 15 python benchmarks/supernet_fidelity.py --out runs/sn-fidelity > sn.log 2>&1 &
    python benchmarks/supernet_fidelity.py --out /tmp/sn-smoke --smoke

Resumable: the supernet checkpoints every --every steps (and is resumed), and every standalone training and
supernet evaluation is written to OUT/results.json as it finishes; run the same command again after a kill.
``--phase standalone`` and ``--phase supernet`` run the two halves as two processes side by side (each its own
results file); ``--phase all`` (the default) then adds the summary. Several ``--phase standalone`` processes
share the trainings: each claims the next one no live process holds (a ``flock`` on ``OUT/claims/I-sK``) and
writes it to ``OUT/standalone/``, so a process that finishes its supernet early can join the standalone
trainings. Those per-training files are the record; each process's ``results-standalone.json`` holds only
what it saw.

``--spread N`` picks the random architectures across the space's range instead of uniformly: of N seeded draws,
the one nearest each of evenly spaced multiply-add counts between the fewest and the most drawn.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import torch

from mnas.fileio import atomic_write
from mnas.report.retrained import kendall_tau
from mnas.space import load_space
from mnas.supernet.evaluate import SupernetEvaluator
from mnas.supernet.net import KERNEL_TRANSFORM, SHARE_SKIP
from mnas.supernet.training import CHECKPOINT, read_checkpoint, structure_of, train_supernet
from mnas.space import resolve_arch
from mnas.train import RECIPES, TrainTask, load_proxy_data, train_architecture, train_proxy

# what a supernet read with --supernet must share with the standalone trainings: the same images, split and size
SAME_DATA = ("dataset", "resolution", "width_multiplier", "holdout", "train_limit", "seed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--space", default="mnasnet-cifar")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--width", type=float, default=0.25, help="the proxy's width multiplier")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=600, help="supernet sandwich steps")
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--archs", type=int, default=15)
    ap.add_argument("--epochs", type=float, default=4.0, help="standalone proxy epochs")
    ap.add_argument("--recipe", default="fast", help="the training recipe (mnas.train.RECIPES) of the standalone "
                    "trainings and of a supernet trained here (which keeps no weight average: it reads the last "
                    "step's weights); the flags above override its values")
    ap.add_argument("--supernet", type=Path, default=None,
                    help="read a supernet trained before (its folder) instead of training OUT/supernet: it must "
                         "be complete and trained on the same data, resolution and width")
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--holdout", type=float, default=None, help="held-out images: a count or a fraction "
                    "(default: the dataset's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    ap.add_argument("--random", type=int, default=2, help="random sub-networks per sandwich step")
    ap.add_argument("--ends", default="fixed", help="the sandwich ends: fixed | mixed (mnas.supernet.net.ENDS)")
    ap.add_argument("--sampling", default="sandwich", help="sandwich | progressive (progressive shrinking: "
                    "mnas.supernet.net.STAGES)")
    ap.add_argument("--share-skip", action=argparse.BooleanOptionalAction, default=SHARE_SKIP,
                    help="one set of op weights for all skip choices of a block (--no-share-skip: one per choice)")
    ap.add_argument("--kernel-transform", action=argparse.BooleanOptionalAction, default=KERNEL_TRANSFORM,
                    help="learned transforms for the small kernels' centres")
    ap.add_argument("--arch-seed", type=int, default=None,
                    help="seed of the random architectures (default: drawn at the first run and recorded, so no "
                    "list is chosen after seeing results)")
    ap.add_argument("--references", default="",
                    help="zoo models of the space to include, comma-separated (e.g. mobilenet-v2-cifar)")
    ap.add_argument("--standalone-seeds", type=int, default=1,
                    help="standalone trainings per architecture (same split, other init and order): with 2 or "
                    "more, the proxy's own seed-to-seed tau")
    ap.add_argument("--spread", type=int, default=0,
                    help="draw this many architectures and take the random ones at evenly spaced multiply-add "
                    "counts over their range (0: uniform draws)")
    ap.add_argument("--phase", choices=("all", "supernet", "standalone"), default="all")
    ap.add_argument("--device", default="cpu", help="where every training and reading runs (cpu, cuda); how the "
                    "run computes, not what it learns: not part of the recorded settings")
    ap.add_argument("--amp", default="auto", help="mixed precision on CUDA (auto | off | bf16 | fp16); as --device")
    ap.add_argument("--partial", action="store_true",
                    help="summarise what exists: the supernet at the step it reached (no more training) and the "
                    "architectures whose standalone trainings all finished (a run stopped at a deadline)")
    ap.add_argument("--smoke", action="store_true", help="a minute: 6 steps, 3 architectures, 0.2 epochs")
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.every, args.archs, args.epochs, args.train_limit = 6, 3, 3, 0.2, 256
    torch.set_num_threads(1)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.recipe not in RECIPES:
        raise SystemExit(f"unknown --recipe {args.recipe!r}: expected one of {', '.join(RECIPES)}")
    task = TrainTask(recipe=args.recipe, dataset=args.dataset, resolution=args.resolution, width_multiplier=args.width,
                     batch_size=args.batch_size, epochs=args.epochs, train_limit=args.train_limit, seed=args.seed,
                     **({} if args.holdout is None else
                        {"holdout": int(args.holdout) if args.holdout >= 1 else args.holdout}),
                     **({} if args.lr is None else {"lr": args.lr}), device=args.device, amp=args.amp)
    space = load_space(args.space)
    results_path = out / ("results.json" if args.phase == "all" else f"results-{args.phase}.json")
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if args.arch_seed is None:  # drawn once, then read back from any phase's results
        for p in (results_path, *(out / f"results{x}.json" for x in ("", "-supernet", "-standalone"))):
            if p.exists():
                args.arch_seed = json.loads(p.read_text())["settings"].get("arch_seed")
                break
        if args.arch_seed is None:  # drawn once: two phases started together agree on the first link
            seed_file, tmp = out / "arch_seed", out / f"arch_seed.{os.getpid()}"
            tmp.write_text(str(random.SystemRandom().randrange(10**6)))
            try:
                os.link(tmp, seed_file)  # atomic, and fails where the other phase was first
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
            args.arch_seed = int(seed_file.read_text())
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "phase", "device", "amp", "partial")}
    for k, default in (("sampling", "sandwich"), ("recipe", "fast"), ("supernet", None)):
        if settings[k] == default:  # folders from before the flag hold its default
            del settings[k]
    if "supernet" in settings:
        settings["supernet"] = str(settings["supernet"])
    if results.setdefault("settings", settings) != settings:
        raise SystemExit(f"{results_path} was made with {results['settings']}, not {settings}: use another --out")

    def save() -> None:
        atomic_write(results_path, json.dumps(results, indent=1) + "\n")

    save()  # the settings (the drawn architecture seed) at once: a phase started beside this one reads them

    # 1. the architectures: the largest, the smallest, seeded random ones (a supernet of the settings' space
    # picks them without training: the same list in every phase)
    from mnas.supernet import SuperNet

    probe = SuperNet(space, 2, 1, args.width)
    rng = random.Random(args.arch_seed)
    archs = [probe.pick("largest"), probe.pick("smallest")]
    for name in filter(None, args.references.split(",")):
        a = resolve_arch(name)[1]
        space.encode(a)  # one line naming the decision that does not fit the space
        archs.append(a)
    if args.spread:
        archs += spread_archs(probe, rng, args.spread, args.archs - len(archs), args.resolution, args.width,
                              {x.canonical for x in archs})
    while len(archs) < args.archs:
        a = probe.sample(rng)
        if a.canonical not in {x.canonical for x in archs}:
            archs.append(a)
    models = results.setdefault("models", {})
    for other in ("supernet", "standalone"):  # what the side-by-side phases found
        p = out / f"results-{other}.json"
        if args.phase == "all" and p.exists():
            for k, v in json.loads(p.read_text()).get("models", {}).items():
                models.setdefault(k, {}).update(v)
            if other == "supernet":
                results.setdefault("supernet_train_seconds", json.loads(p.read_text()).get("supernet_train_seconds"))

    if args.supernet is not None and args.phase != "standalone":  # a wrong one refused before any training
        _check_borrowed(args.supernet, task, args, space.name)

    # 2. standalone proxy trainings, shared by every standalone process through claim files
    if args.phase in ("all", "standalone"):
        # architecture by architecture, every seed of one before the next: a run cut short leaves whole
        # architectures for --partial
        items = [(k, i) for i in range(len(archs)) for k in range(args.standalone_seeds)]
        data = None
        for k, i in items:
            a, key = archs[i], "standalone_top1" + (f"_s{k}" if k else "")
            m = models.setdefault(a.canonical, {"index": i})
            m.update(_item(out, i, k))
            if key not in m and _claim(out, i, k):
                m.update(_item(out, i, k))  # finished by another process between the look and the claim
            if key not in m and _claim(out, i, k):
                if k == 0:
                    t = train_architecture(a, task, args.seed)
                    got = dict(index=i, standalone_top1=t.top1, standalone_seconds=t.seconds, params=t.params)
                else:  # the same split, another init and data order
                    data = data or load_proxy_data(task, args.seed)
                    t = train_proxy(a, data, task.model_copy(update={"seed": args.seed + 1000 * k}))
                    got = {key: t.top1}
                atomic_write(out / "standalone" / f"{i}-s{k}.json", json.dumps(got) + "\n")
                m.update(got)
                save()
            if key in m:
                print(f"standalone seed {k} {i + 1}/{len(archs)} {m[key]:.4f}", flush=True)
        if args.phase == "standalone":
            return
    for m in models.values():  # what standalone processes beside this one wrote
        if "index" in m:
            m.update(_item(out, m["index"], 0), **_item(out, m["index"], 1))

    # 3. the supernet (resumed after a kill), then each architecture read from it
    sn = args.supernet or out / "supernet"
    if args.partial and not (sn / CHECKPOINT).is_file():
        raise SystemExit(f"--partial: {sn} holds no checkpoint yet, so there is nothing to read")
    if not args.partial and (not (sn / CHECKPOINT).is_file() or read_checkpoint(sn)["step"] < args.steps):
        t0 = time.time()

        def progress(step: int, total: int, loss: float, kd: float) -> None:
            if step % args.every == 0:
                print(f"supernet step {step}/{total} loss {loss:.3f} kd {kd:.3f} {time.time() - t0:.0f} s",
                      flush=True)

        r = train_supernet(space, task, sn, args.steps, args.every, n_random=args.random,
                           resume=(sn / CHECKPOINT).is_file(), progress=progress, ends=args.ends,
                           share_skip=args.share_skip, kernel_transform=args.kernel_transform,
                           sampling=args.sampling)
        if r.status != "ok":
            raise SystemExit(f"supernet training failed: {r.error}")
    blob = read_checkpoint(sn)
    results["supernet_train_seconds"] = sum(h["seconds"] for h in blob["history"])
    results["supernet_history"] = blob["history"]
    save()
    ev = SupernetEvaluator(sn, args.device, 1)
    for i, a in enumerate(archs):
        m = models.setdefault(a.canonical, {"index": i})
        if "supernet_top1" not in m:
            r = ev.evaluate(a)
            m.update(index=i, supernet_top1=r["top1"], supernet_seconds=r["seconds"])
            save()
        print(f"supernet {i + 1}/{len(archs)} {m['supernet_top1']:.4f} ({m['supernet_seconds']:.1f} s)", flush=True)
    missing = [f"{i}-s{k}" for i, a in enumerate(archs) for k in range(args.standalone_seeds)
               if "standalone_top1" + (f"_s{k}" if k else "") not in models[a.canonical]]
    if args.partial and args.phase == "all":  # only the architectures with every seed trained
        done = [a for a in archs if all("standalone_top1" + (f"_s{k}" if k else "") in models[a.canonical]
                                        for k in range(args.standalone_seeds))]
        if len(done) < 3:
            raise SystemExit(f"--partial: {len(done)} architecture(s) have every standalone seed: too few for tau")
        results["partial"] = {"supernet_step": blob["step"], "supernet_total_steps": blob["total_steps"],
                              "archs_complete": len(done), "archs": len(archs)}
        archs, missing = done, []
    if args.phase == "supernet" or missing:
        if missing and args.phase != "supernet":
            print(f"standalone trainings not finished ({', '.join(missing[:6])}{'...' if len(missing) > 6 else ''}):"
                  " run again after the process holding them", flush=True)
        return
    rows = [models[a.canonical] for a in archs]
    sup, alone = [r["supernet_top1"] for r in rows], [r["standalone_top1"] for r in rows]
    eval_s = sum(r["supernet_seconds"] for r in rows) / len(rows)
    train_s = sum(r["standalone_seconds"] for r in rows) / len(rows)
    results["summary"] = {
        "archs": len(rows), "kendall_tau_p_method": list(kendall_tau(sup, alone)),
        **({} if args.standalone_seeds < 2 else {
            "seed_to_seed_tau_p_method": list(kendall_tau([r["standalone_top1_s1"] for r in rows], alone)),
            "kendall_tau_vs_seed1": list(kendall_tau(sup, [r["standalone_top1_s1"] for r in rows]))}),
        "supernet_eval_seconds_mean": eval_s, "candidates_per_hour": 3600 / eval_s,
        "standalone_seconds_mean": train_s,
        "supernet_cost_in_standalone_trainings": results["supernet_train_seconds"] / train_s,
        "supernet_top1_range": [min(sup), max(sup)], "standalone_top1_range": [min(alone), max(alone)],
    }
    if args.standalone_seeds >= 2:  # the truth with less seed noise: the mean of the two seeds
        mean2 = [(r["standalone_top1"] + r["standalone_top1_s1"]) / 2 for r in rows]
        results["summary"]["kendall_tau_vs_seed_mean"] = list(kendall_tau(sup, mean2))
    save()
    print(json.dumps(results["summary"], indent=1))


def _check_borrowed(sn: Path, task: TrainTask, args: argparse.Namespace, space_name: str) -> None:
    """A supernet read with --supernet: complete, built and trained as the flags say, on the standalone
    trainings' data (one line naming the difference if not)."""
    if not (sn / CHECKPOINT).is_file():
        raise SystemExit(f"--supernet {sn}: no supernet checkpoint there: give the folder of a trained supernet")
    blob = read_checkpoint(sn)
    if blob["step"] < blob["total_steps"] or blob["total_steps"] != args.steps:
        raise SystemExit(f"--supernet {sn}: trained {blob['step']} of {blob['total_steps']} steps, not a "
                         f"finished supernet of --steps {args.steps}")
    built = {"share_skip": args.share_skip, "kernel_transform": args.kernel_transform, "ends": args.ends,
             "sampling": args.sampling, "n_random": args.random}
    recorded = {**structure_of(blob), "ends": blob.get("ends", "fixed"), "sampling": blob.get("sampling") or "sandwich",
                "n_random": blob.get("n_random")}
    other = [f"{k} {recorded[k]!r} here {v!r}" for k, v in built.items() if recorded[k] != v]
    if other:
        raise SystemExit(f"--supernet {sn} was built otherwise ({'; '.join(other)}): match the flags")
    if blob["space"]["name"] != space_name:
        raise SystemExit(f"--supernet {sn} is a supernet of {blob['space']['name']}, not --space {space_name}")
    theirs, ours = blob.get("task", {}), task.model_dump()
    differ = [f"{k} {theirs.get(k)!r} here {ours[k]!r}" for k in SAME_DATA if theirs.get(k) != ours[k]]
    if differ:
        raise SystemExit(f"--supernet {sn} was trained on other data ({'; '.join(differ)}): match the flags")


def spread_archs(probe, rng: random.Random, pool: int, n: int, resolution: int, width: float,
                 taken: set[str]) -> list:
    """``n`` architectures spanning the space: of ``pool`` seeded draws, the one whose multiply-adds at
    ``resolution`` (the width-scaled network) are nearest each of ``n`` evenly spaced values between the
    fewest and the most drawn (each architecture once)."""
    from mnas.model import build
    from mnas.model.profile import count_macs

    if pool < n:
        raise SystemExit(f"--spread {pool}: draw at least as many architectures as are picked ({n})")
    drawn = {}
    for _ in range(pool):
        a = probe.sample(rng)
        if a.canonical not in taken:
            drawn[a.canonical] = a
    macs = {c: count_macs(build(a.scaled(width), 10), resolution) for c, a in drawn.items()}
    lo, hi = min(macs.values()), max(macs.values())
    picked: list = []
    for q in range(n):  # evenly spaced targets between the fewest and the most multiply-adds drawn
        target = lo + (q + 0.5) / n * (hi - lo)
        best = min((c for c in drawn if drawn[c] not in picked), key=lambda c: (abs(macs[c] - target), c))
        picked.append(drawn[best])
    return picked


def _item(out: Path, i: int, k: int) -> dict:
    p = out / "standalone" / f"{i}-s{k}.json"
    return json.loads(p.read_text()) if p.exists() else {}


_HELD: dict[str, int] = {}  # claim name -> the descriptor holding its lock, for this process's life


def _claim(out: Path, i: int | str, k: int) -> bool:
    """Claim training (i, seed k) for this process: an exclusive ``flock`` on ``OUT/claims/i-sk``, held until the
    process ends (the kernel drops it on a kill -9, so a restarted run takes the item over); False when another
    live process holds it. The file also names its holder's pid (created with it, atomically), which is what
    the claims of earlier versions of this script checked: a live holder named there is respected too."""
    import fcntl

    d = out / "claims"
    d.mkdir(exist_ok=True)
    (out / "standalone").mkdir(exist_ok=True)
    name = f"{i}-s{k}"
    if name in _HELD:
        return True
    p, tmp = d / name, d / f".{name}.{os.getpid()}"
    tmp.write_text(str(os.getpid()))
    try:
        os.link(tmp, p)  # a new claim file already holding this pid, or the existing one
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    fd = os.open(p, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        named = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if named.isdigit() and int(named) != os.getpid() and _alive(int(named)):
            raise BlockingIOError  # an earlier version's live claim: no flock, only its pid
    except BlockingIOError:
        os.close(fd)
        return False
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _HELD[name] = fd
    return True


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process of these benchmarks (a reused pid belongs to something else)."""
    try:
        return b"benchmarks/supernet_" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


if __name__ == "__main__":
    main()
