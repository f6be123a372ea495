"""The MnasNet factorized hierarchical space, read from YAML: the built-ins ``mnasnet.yaml``,
``mnasnet-paper.yaml`` and ``mnasnet-cifar.yaml`` beside this module, or a user's file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mnas import MnasError
from mnas.schema import read_yaml_file
from mnas.space.arch import Architecture, Block, round_filters
from mnas.space.decisions import Decision, SearchSpace

DEFAULT_SPACE = Path(__file__).with_name("mnasnet.yaml")
PAPER_SPACE = Path(__file__).with_name("mnasnet-paper.yaml")
CIFAR_SPACE = Path(__file__).with_name("mnasnet-cifar.yaml")
ELASTIC_SPACE = Path(__file__).with_name("mnasnet-cifar-elastic.yaml")
BUILTIN_FILES = {"mnasnet": DEFAULT_SPACE, "mnasnet-paper": PAPER_SPACE, "mnasnet-cifar": CIFAR_SPACE,
                 "mnasnet-cifar-elastic": ELASTIC_SPACE}


def space_file(spec: str | Path | None) -> Path:
    """The YAML file of a MnasNet space: a path, or a built-in's name (none: the default space)."""
    if spec is None:
        return DEFAULT_SPACE
    path = Path(spec)
    return BUILTIN_FILES.get(str(spec), path) if not path.exists() else path
DECISIONS = ("op", "kernel", "se", "skip", "width", "layers")
OP_CODES = {"conv": ("cv", 1), "ds": ("ds", 1), "mb1": ("ir", 1)}  # mbN -> ("ir", N) for any N

Scalar = Union[str, int, float]
Skip = Literal["none", "identity", "pool"]


class _Choices(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    op: Union[Scalar, list[Scalar]] = None  # type: ignore[assignment]
    kernel: Union[int, list[int]] = None  # type: ignore[assignment]
    se: Union[float, list[float]] = None  # type: ignore[assignment]
    skip: Union[Skip, list[Skip]] = None  # type: ignore[assignment]
    width: Union[float, list[float]] = None  # type: ignore[assignment]
    layers: Union[int, list[int]] = None  # type: ignore[assignment]


class _BlockSpec(_Choices):
    width_base: int = Field(gt=0)
    layers_base: int = Field(gt=0)
    stride: Literal[1, 2]


class _SpaceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = "mnasnet"
    note: str = ""  # what the space is and why it has its size; `mnas space show` prints it
    stem: int = Field(32, gt=0)
    stem_stride: Literal[1, 2] = 2  # 1: the CIFAR variant (32-px inputs), docs/search-space.md
    head: int = Field(1280, gt=0)
    choices: _Choices
    blocks: list[_BlockSpec] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _complete(cls, v: _Choices) -> _Choices:
        if missing := [k for k in DECISIONS if getattr(v, k) is None]:
            raise ValueError(f"choices lacks {', '.join(missing)}")
        return v


def op_code(op: str) -> tuple[str, int]:
    if op in OP_CODES:
        return OP_CODES[op]
    if op.startswith("mb") and op[2:].isdigit() and int(op[2:]) >= 1:
        return "ir", int(op[2:])
    raise MnasError(f"unknown conv op {op!r}: expected conv, ds or mbN (MBConv with expansion N)")


class MnasNetSpace(SearchSpace):
    def __init__(self, spec: _SpaceSpec, source: str = "builtin") -> None:
        self.spec, self.source, self.name = spec, source, spec.name
        self.stem, self.head, self.stem_stride = spec.stem, spec.head, spec.stem_stride
        decisions = []
        self._fixed: list[dict[str, Any]] = []
        for i, blk in enumerate(spec.blocks, 1):
            fixed = {}
            for key in DECISIONS:
                value = getattr(blk, key)
                value = getattr(spec.choices, key) if value is None else value
                options = _dedupe(value if isinstance(value, list) else [value])
                if key == "layers":
                    options = _dedupe([d for d in options if blk.layers_base + d >= 1])
                    if not options:
                        raise MnasError(f"block {i}: no layer count choice leaves at least one layer")
                if key == "op":
                    for op in options:
                        op_code(str(op))
                if key == "width":  # rounding to 8 can merge multipliers (0.75 and 1.0 of 16 are both 16)
                    options = _distinct_widths(blk.width_base, options)
                if len(options) == 1:
                    fixed[key] = options[0]
                else:
                    decisions.append(Decision(f"b{i}.{key}", tuple(options)))
            self._fixed.append(fixed)
        self.decisions = tuple(decisions)

    @classmethod
    def paper(cls) -> MnasNetSpace:
        return cls.load(PAPER_SPACE)

    @classmethod
    def cifar(cls) -> MnasNetSpace:
        return cls.load(CIFAR_SPACE)

    @classmethod
    def cifar_elastic(cls) -> MnasNetSpace:
        return cls.load(ELASTIC_SPACE)

    @classmethod
    def load(cls, path: str | Path | None = None) -> MnasNetSpace:
        path = Path(path) if path else DEFAULT_SPACE
        raw = read_yaml_file(path, "space file")  # bounded: size, nesting, aliases
        if not isinstance(raw, dict) or raw.get("name", "mnasnet") == "nb201":
            if isinstance(raw, dict):
                raise MnasError(f"space file {path} describes {raw.get('name')!r}, not a MnasNet space")
            raise MnasError(f"space file {path} must hold a mapping")
        try:
            return cls(_SpaceSpec.model_validate(raw), str(path))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise MnasError(f"space file {path}: {where}: {err['msg']}") from None

    def block_values(self, tokens: Sequence[int]) -> list[dict[str, Any]]:
        vals = self.values(tokens)
        return [{k: fixed.get(k, vals.get(f"b{i}.{k}")) for k in DECISIONS}
                for i, fixed in enumerate(self._fixed, 1)]

    def decode(self, tokens: Sequence[int]) -> Architecture:
        blocks, prev = [], self.stem
        for blk, v in zip(self.spec.blocks, self.block_values(tokens)):
            op, e = op_code(str(v["op"]))
            out = round_filters(blk.width_base, float(v["width"]))
            blocks.append(Block(op, blk.layers_base + int(v["layers"]), int(v["kernel"]), blk.stride, e,
                                prev, out, float(v["se"]), str(v["skip"])))
            prev = out
        return Architecture(tuple(blocks), self.stem, self.head, self.stem_stride)

    def encode(self, arch: Architecture) -> tuple[int, ...]:  # type: ignore[override]
        if arch.stem != self.stem or arch.head != self.head:
            raise MnasError(f"stem/head {arch.stem}/{arch.head} differ from the space's {self.stem}/{self.head}")
        if arch.stem_stride != self.stem_stride:
            raise MnasError(f"stem stride {arch.stem_stride} differs from the space's {self.stem_stride}")
        if len(arch.blocks) != len(self.spec.blocks):
            raise MnasError(f"{len(arch.blocks)} blocks, the space has {len(self.spec.blocks)}")
        tokens: list[int] = []
        prev = self.stem
        for i, (blk, b) in enumerate(zip(self.spec.blocks, arch.blocks), 1):
            if b.stride != blk.stride or b.in_ch != prev:
                raise MnasError(f"block {i}: stride {b.stride} / input {b.in_ch} do not follow the skeleton")
            prev = b.out_ch
            observed = {"kernel": b.kernel, "se": b.se, "skip": b.skip,
                        "layers": b.repeats - blk.layers_base}
            for key in DECISIONS:
                name = f"b{i}.{key}"
                decision = next((d for d in self.decisions if d.name == name), None)
                options = decision.choices if decision else (self._fixed[i - 1][key],)
                idx = _match(key, options, b, blk.width_base, observed)
                if idx is None:
                    shown = ", ".join(str(o) for o in options)
                    raise MnasError(f"block {i}: {key} of {b.to_string()} is not one of {shown}")
                if decision:
                    tokens.append(idx)
        return tuple(tokens)

    def parse(self, text: str) -> Architecture:
        return Architecture.parse(text)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "size": self.size, "note": self.spec.note,
                "stem": self.stem, "stem_stride": self.stem_stride,
                "head": self.head, "decisions": [{"name": d.name, "choices": list(d.choices)}
                                                 for d in self.decisions],
                "blocks": [{**blk.model_dump(include={"width_base", "layers_base", "stride"}),
                            "fixed": fixed} for blk, fixed in zip(self.spec.blocks, self._fixed)]}


def _match(key: str, options: Sequence[Any], b: Block, width_base: int, observed: dict) -> int | None:
    for idx, opt in enumerate(options):
        if key == "op":
            ok = op_code(str(opt)) == (b.op, b.expansion)
        elif key == "width":
            ok = round_filters(width_base, float(opt)) == b.out_ch
        else:
            ok = opt == observed[key]
        if ok:
            return idx
    return None


def _distinct_widths(base: int, multipliers: list[Any]) -> list[Any]:
    """One multiplier per distinct channel count, the one nearest 1.0, in the given order."""
    best: dict[int, float] = {}
    for m in multipliers:
        ch = round_filters(base, float(m))
        if ch not in best or abs(float(m) - 1) < abs(best[ch] - 1):
            best[ch] = float(m)
    return _dedupe([best[round_filters(base, float(m))] for m in multipliers])


def _dedupe(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out
