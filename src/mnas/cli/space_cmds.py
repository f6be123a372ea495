"""``mnas space show``, ``mnas arch show``, ``mnas arch sample``."""

from __future__ import annotations

import random
from typing import Optional

import typer

from mnas import MnasError
from mnas.cli.output import console, print_json, table
from mnas.space import MnasNetSpace, arch_to_timm, arch_to_tpu, load_space, resolve_arch, zoo

app = typer.Typer()  # this module's commands; cli/main.py adds them to the root app

space_app = typer.Typer(no_args_is_help=True, help="Search spaces.")
arch_app = typer.Typer(no_args_is_help=True, help="Architectures: show, sample.")
app.add_typer(space_app, name="space")
app.add_typer(arch_app, name="arch")

SpaceOpt = typer.Option(None, "--space", help="a space name (mnasnet, mnasnet-paper, mnasnet-cifar, nb201, ...) "
                        "or a space YAML file (default: mnasnet)")


def _mnasnet_space(spec: str | None) -> MnasNetSpace:
    s = load_space(spec)
    if not isinstance(s, MnasNetSpace):
        raise MnasError(f"space {s.name!r} holds no MnasNet architectures: give a MnasNet-style space")
    return s


@space_app.command("show")
def space_show(space: Optional[str] = SpaceOpt, json: bool = typer.Option(False, "--json")) -> None:
    """The space's decisions, its size and why it has that size."""
    s = load_space(space)
    info = s.describe()
    if json:
        print_json(info)
        return
    rows = [[d.name, ", ".join(str(c) for c in d.choices)] for d in s.decisions]
    console.print(table(f"space {s.name} ({s.source})", ["decision", "choices"], rows))
    console.print(f"{len(s.decisions)} decisions; size {s.size:,} (~{float(s.size):.2e}) architectures")
    if info.get("note"):
        console.print(info["note"])


@arch_app.command("show")
def arch_show(name: str = typer.Argument(..., help="zoo name (or NAME@WIDTH), canonical string, or TPU/timm "
                                                   "block strings"),
              width_multiplier: float = typer.Option(1.0, "--width-multiplier", "-w"),
              resolution: int = typer.Option(224, "--resolution", min=8),
              num_classes: int = typer.Option(1000, "--num-classes", min=1),
              space: Optional[str] = SpaceOpt,
              json: bool = typer.Option(False, "--json")) -> None:
    """An architecture's strings, parameters, MACs and whether it lies in a space (without --space: mnasnet,
    or mnasnet-cifar for a stride-1 stem)."""
    import torch

    from mnas.model import build, profile

    label, arch = resolve_arch(name, width_multiplier)
    # without --space, a stride-1 stem is judged against the CIFAR space it belongs with, not mnasnet
    s = _mnasnet_space(space if space is not None or arch.stem_stride == 2 else "mnasnet-cifar")
    try:
        s.encode(arch)
        in_space, why = True, ""
    except MnasError as e:
        in_space, why = False, str(e)
    # on the meta device tensors have shapes but no storage: counting parameters and multiply-adds needs
    # no memory and no arithmetic, so the largest architecture the parser accepts is shown in seconds
    with torch.device("meta"):
        prof = profile(build(arch, num_classes=num_classes), resolution)
    timm, timm_why = _timm(arch)
    info = {"name": label, "arch": arch.canonical, "digest": arch.digest, "tpu": _dialect(arch_to_tpu, arch),
            "timm": timm, "timm_inexact_because": timm_why, "stem_stride": arch.stem_stride,
            "width_multiplier": width_multiplier,
            "resolution": resolution, "num_classes": num_classes, "params": prof.params, "macs": prof.macs,
            "layers": arch.layers, "space": s.name, "in_space": in_space, "not_in_space_because": why or None}
    if json:
        print_json(info)
        return
    rows = [[k, v if not isinstance(v, list) else " ".join(v)] for k, v in info.items() if v is not None]
    console.print(table(label, ["field", "value"], rows))


def _dialect(convert, arch):
    """The block strings, or None where the dialect cannot write an op (regular conv, pooling skip) or the
    stem (block strings have none: read back, they give the reference's stride-2 stem)."""
    if arch.stem_stride != 2:
        return None
    try:
        return convert(arch)
    except MnasError:
        return None


def _timm(arch):
    """timm's block strings and None, or None and why timm would build another network from any string."""
    if arch.stem_stride != 2:
        return None, (f"a stride-{arch.stem_stride} stem: timm's block strings have no stem, and timm builds "
                      "a stride-2 one")
    try:
        return arch_to_timm(arch), None
    except MnasError as e:
        return None, str(e)


@arch_app.command("sample")
def arch_sample(seed: int = typer.Option(0, "--seed"), n: int = typer.Option(1, "-n", "--n", min=1),
                space: Optional[str] = SpaceOpt, json: bool = typer.Option(False, "--json")) -> None:
    """Canonical strings of random architectures of the space."""
    s = load_space(space)
    rng = random.Random(seed)
    archs = [s.sample(rng).canonical for _ in range(n)]
    if json:
        print_json(archs)
        return
    for a in archs:
        print(a)


@arch_app.command("list")
def arch_list(json: bool = typer.Option(False, "--json")) -> None:
    """The model zoo."""
    if json:
        print_json([{"name": e.name, "arch": e.arch().canonical, "layers": e.arch().layers, "note": e.note}
                    for e in zoo.ZOO.values()])
        return
    console.print(table("zoo", ["name", "stem", "stem stride", "layers", "note"],
                        [[e.name, e.stem, e.stem_stride, e.arch().layers, e.note] for e in zoo.ZOO.values()]))
