"""``mnas supernet train SPACE --dir DIR``, ``mnas supernet eval DIR ARCH...``, ``mnas supernet extract ARCH DIR
--out FILE``: a weight-sharing supernet over a space, its candidates' accuracy, a candidate as a model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from mnas.cli.output import console, print_json, table
from mnas.cli.progress import LINES_EVERY_S, progress_bar
from mnas.train import TrainTask

app = typer.Typer()  # this module's commands; cli/main.py adds them to the root app

supernet_app = typer.Typer(no_args_is_help=True, help="A weight-sharing supernet: train once, then read each "
                           "candidate's accuracy in seconds (proxy.estimator=supernet:DIR).")
app.add_typer(supernet_app, name="supernet")


@supernet_app.command("train")
def supernet_train(space: str = typer.Argument(..., help="mnasnet, mnasnet-cifar, mnasnet-paper or a space YAML"),
                   into: Path = typer.Option(..., "--dir", help="the folder to train into (supernet.pt, train.lock)"),
                   steps: int = typer.Option(1000, "--steps", min=1, help="training steps (4 sub-networks each; "
                                             "progressive: 1 in its first quarter)"),
                   every: int = typer.Option(50, "--every", min=1, help="checkpoint every N steps (a kill loses "
                                             "at most these)"),
                   n_random: int = typer.Option(2, "--random", min=0, help="random sub-networks per step, besides "
                                                "the largest and the smallest (progressive: N + 1 drawn)"),
                   dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="NAME or NAME:PATH (mnas "
                                                         "data list)"),
                   recipe: Optional[str] = typer.Option(None, "--recipe", help="the training recipe (optimizer, "
                                                        "lr, schedule)"),
                   resolution: Optional[int] = typer.Option(None, "--resolution"),
                   width_multiplier: Optional[float] = typer.Option(None, "--width-multiplier", "-w",
                                                                    help="the sub-networks' width (the proxy's)"),
                   batch_size: Optional[int] = typer.Option(None, "--batch-size"),
                   lr: Optional[float] = typer.Option(None, "--lr"),
                   train_limit: Optional[int] = typer.Option(None, "--train-limit", min=1),
                   holdout: Optional[float] = typer.Option(None, "--holdout", help="held-out images: a count or "
                                                           "a fraction"),
                   seed: int = typer.Option(0, "--seed", min=0),
                   threads: int = typer.Option(1, "--threads", min=1),
                   device: str = typer.Option("auto", "--device"),
                   amp: str = typer.Option(TrainTask.default("amp"), "--amp",
                                           help=f"{TrainTask.model_fields['amp'].description}; a resume may "
                                           "change it (each checkpoint chunk records it)"),
                   resume: bool = typer.Option(False, "--resume", help="continue the supernet in --dir"),
                   share_skip: Optional[bool] = typer.Option(None, "--share-skip/--no-share-skip",
                                                             help="one set of op weights for all of a block's "
                                                             "skip choices, or one per choice (default: the "
                                                             "checkpoint's on --resume, else "
                                                             "mnas.supernet.net.SHARE_SKIP)"),
                   kernel_transform: Optional[bool] = typer.Option(
                       None, "--kernel-transform/--no-kernel-transform",
                       help="a learned transform for each small kernel's centre (Once-for-All's), or the centre as "
                       "it is (default: the checkpoint's on --resume, else mnas.supernet.net.KERNEL_TRANSFORM)"),
                   sampling: Optional[str] = typer.Option(
                       None, "--sampling", help="sandwich (every size every step) or progressive (Once-for-All's "
                       "progressive shrinking: the largest first, then kernel, depth, width; default: the "
                       "checkpoint's on --resume, else sandwich)"),
                   json: bool = typer.Option(False, "--json")) -> None:
    """Train a supernet over SPACE with the sandwich rule (or progressive shrinking) and in-place
    distillation; checkpointed every --every steps, resumable after a kill with --resume."""
    from mnas.space import load_space
    from mnas.supernet.training import train_supernet

    given = dict(dataset=dataset, recipe=recipe, resolution=resolution, width_multiplier=width_multiplier,
                 batch_size=batch_size, lr=lr, train_limit=train_limit, seed=seed, threads=threads, device=device,
                 amp=amp, holdout=int(holdout) if holdout is not None and holdout >= 1 else holdout)
    task = TrainTask(**{k: v for k, v in given.items() if v is not None})
    sp = load_space(space)
    # logs: a line per checkpoint (what a kill keeps), none between
    with progress_bar("supernet", detail="loss {task.fields[loss]} kd {task.fields[kd]}", lines=None,
                      line_at=lambda step, total: step % every == 0) as update:
        def progress(step: int, total: int, loss: float, kd: float) -> None:
            update(step, total, loss=f"{loss:.3f}", kd=f"{kd:.3f}")

        r = train_supernet(sp, task, into, steps, every, n_random, resume, progress, share_skip=share_skip,
                           kernel_transform=kernel_transform, sampling=sampling)
    if json:
        print_json(r.to_dict())
    else:
        console.print(f"supernet over {sp.name}: {r.steps}/{r.total_steps} steps"
                      f"{f' (resumed at {r.resumed_from})' if r.resumed_from else ''} in {r.seconds:.0f} s; "
                      f"{into}/supernet.pt")
    if r.status != "ok":
        console.print(f"[red]supernet training failed[/]: {r.error}")
        raise typer.Exit(1)


def _arch(text: str, space) -> object:
    from mnas.space import resolve_arch

    _, arch = resolve_arch(text)
    space.encode(arch)  # an architecture outside the supernet's space: one line naming the decision
    return arch


@supernet_app.command("eval")
def supernet_eval(supernet: Path = typer.Argument(..., help="the folder of mnas supernet train (or its .pt)"),
                  archs: list[str] = typer.Argument(..., help="architectures of its space (canonical strings or "
                                                    "zoo names)"),
                  threads: int = typer.Option(1, "--threads", min=1),
                  json: bool = typer.Option(False, "--json")) -> None:
    """Each architecture's held-out top-1 with inherited weights and recalibrated BatchNorm statistics."""
    from mnas.supernet.evaluate import SupernetEvaluator

    ev = SupernetEvaluator(supernet, "cpu", threads)
    rows = []
    for text in archs:
        r = ev.evaluate(_arch(text, ev.net.space))  # type: ignore[arg-type]
        rows.append({"arch": text, "top1": r["top1"], "val_loss": r["val_loss"], "seconds": r["seconds"]})
    if json:
        print_json(rows)
    else:
        console.print(table(f"supernet {ev.path} (step {ev.blob['step']})", ["arch", "top-1", "loss", "s"],
                            [[r["arch"][:70], f"{r['top1']:.4f}", f"{r['val_loss']:.4f}", f"{r['seconds']:.1f}"]
                             for r in rows]))


@supernet_app.command("extract")
def supernet_extract(arch: str = typer.Argument(..., help="an architecture of the supernet's space"),
                     supernet: Path = typer.Argument(..., help="the folder of mnas supernet train (or its .pt)"),
                     out: Path = typer.Option(..., "--out", "-o", help="the checkpoint file to write (.pt)"),
                     json: bool = typer.Option(False, "--json")) -> None:
    """The sub-network as a standalone checkpoint (inherited weights, recalibrated BatchNorm statistics):
    mnas export --weights FILE ships it, mnas train fine-tunes it."""
    from mnas.fileio import check_outputs
    from mnas.supernet.evaluate import SupernetEvaluator, extracted_checkpoint
    from mnas.supernet.training import checkpoint_path
    from mnas.train import checkpoint as ckpt

    check_outputs([out], [(checkpoint_path(supernet), "the supernet")])
    ev = SupernetEvaluator(supernet, "cpu")
    a = _arch(arch, ev.net.space)
    blob = extracted_checkpoint(ev, a, name=arch if len(arch) < 80 else "supernet")  # type: ignore[arg-type]
    ckpt.write(out, blob)
    result = {"out": str(out), "arch": blob["model_info"]["arch"], "supernet": ev.path, "step": ev.blob["step"]}
    if json:
        print_json(result)
    else:
        console.print(f"wrote {out}: {result['arch'][:80]} from {ev.path} (step {ev.blob['step']}); fine-tune it "
                      f"with mnas train '{result['arch']}' -w 1 --init {out}, ship it with mnas export --weights "
                      f"{out}")


@supernet_app.command("specialise")
def supernet_specialise(supernet: Path = typer.Argument(..., help="the folder of mnas supernet train"),
                        out: Path = typer.Option(..., "--out", "-o", help="the folder of the searches and the "
                                                 "report (run the same command again to resume)"),
                        targets: list[str] = typer.Option(..., "--target", "-t", help="BACKEND=T, T in ms or a "
                                                          "zoo model timed on BACKEND; once per device"),
                        trials: int = typer.Option(200, "--trials", min=1, help="trials of each search"),
                        config: Optional[Path] = typer.Option(None, "--config", "-c", help="a search config whose "
                                                              "strategy, reward and latency settings each search "
                                                              "starts from"),
                        json: bool = typer.Option(False, "--json")) -> None:
    """A search per device with the supernet as the accuracy source, then each search's best model timed on
    every device's backend, side by side (a table, OUT/specialised.json and OUT/specialised.png)."""
    from mnas.report.specialise import PLOT, RESULT, parse_target, specialise
    from mnas.search.config import read_yaml

    parsed = [parse_target(t) for t in targets]
    base = read_yaml(config) if config is not None else None
    r = specialise(supernet, out, parsed, trials, base,
                   say=lambda line: print(line, file=sys.stderr, flush=True))  # progress; stdout keeps the result
    if json:
        print_json(r)
        return
    backends = r["backends"]
    console.print(table(f"specialised from {r['supernet']} (step {r['supernet_step']}); latency at "
                        f"{r['timing']['resolution']} px, ms (median)",
                        ["searched for", "T (ms)", "trial", "supernet top-1", *backends],
                        [[f"{m['backend']}={m['target']}", f"{m['target_ms']:.3g}" if m["target_ms"] else "-",
                          str(m["trial"]), f"{m['accuracy']:.4f}",
                          *(f"{m['latency_ms'][b]:.3f}" for b in backends)] for m in r["models"]]))
    console.print(f"{out / RESULT}, {out / PLOT}; each search: mnas report {out}/<folder>")


@supernet_app.command("table")
def supernet_table_cmd(supernet: Path = typer.Argument(..., help="the folder of mnas supernet train"),
                       out: Path = typer.Option(..., "--out", "-o", help="the CSV to write (run the same command "
                                                "again to resume)"),
                       backend: str = typer.Option("onnxruntime", "--backend", "-b", help="the latency backend"),
                       limit: Optional[int] = typer.Option(None, "--limit", min=1, help="the most architectures a "
                                                           "table reads, each a supernet reading and a timing "
                                                           "(default: mnas.supernet.table.LIMIT, 20,000)"),
                       json: bool = typer.Option(False, "--json")) -> None:
    """Every architecture of a small space with its supernet accuracy and measured latency: a benchmark table for
    mnas bench strategies --table CSV --space SPACE."""
    from mnas.supernet.table import LIMIT, space_reference, supernet_table
    from mnas.supernet.training import read_checkpoint

    blob = read_checkpoint(supernet)
    with progress_bar("architectures", lines=LINES_EVERY_S) as update:
        supernet_table(supernet, out, backend, LIMIT if limit is None else limit, progress=update, blob=blob)
    space = space_reference(blob, out.with_name(out.stem + ".space.yaml"))
    if json:
        print_json({"table": str(out), "space": space})
    else:
        console.print(f"wrote {out}; compare strategies on it: mnas bench strategies --table {out} --space {space}")
