"""Published models as architectures (block strings from the TPU reference; see docs/search-space.md), with
the training settings the reference gives each model, and their CIFAR variants (``-cifar``: a stride-1 stem
and block 2 at stride 1, for 32-px inputs; docs/search-space.md, "The CIFAR variant")."""

from __future__ import annotations

from dataclasses import dataclass

from mnas import MnasError
from mnas.registry import did_you_mean
from mnas.space.arch import Architecture
from mnas.space.blockstr import arch_from_tpu

REFERENCE_DROPOUT = 0.2  # the TPU reference's default dropout before the classifier (mnasnet-small: 0)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    tpu_blocks: str
    stem: int = 32
    stem_stride: int = 2  # 1 in the CIFAR variants
    dropout: float = REFERENCE_DROPOUT
    scale_head: bool = False  # MobileNetV2 widens its head above 1.0; MnasNet keeps 1280
    note: str = ""

    def arch(self, width_multiplier: float = 1.0) -> Architecture:
        base = arch_from_tpu(self.tpu_blocks, stem=self.stem, stem_stride=self.stem_stride)
        return base.scaled(width_multiplier, scale_head=self.scale_head)


ZOO: dict[str, ZooEntry] = {e.name: e for e in [
    ZooEntry("mnasnet-a1", "r1_k3_s11_e1_i32_o16_noskip r2_k3_s22_e6_i16_o24 r3_k5_s22_e3_i24_o40_se0.25 "
             "r4_k3_s22_e6_i40_o80 r2_k3_s11_e6_i80_o112_se0.25 r3_k5_s22_e6_i112_o160_se0.25 "
             "r1_k3_s11_e6_i160_o320", note="paper Table 1: 3.9M params, 312M MAdds, 75.2% top-1, 78 ms"),
    ZooEntry("mnasnet-b1", "r1_k3_s11_e1_i32_o16_noskip r3_k3_s22_e3_i16_o24 r3_k5_s22_e3_i24_o40 "
             "r3_k5_s22_e6_i40_o80 r2_k3_s11_e6_i80_o96 r4_k5_s22_e6_i96_o192 r1_k3_s11_e6_i192_o320_noskip",
             note="paper Table 2 (no SE): 4.4M params, 315M MAdds, 74.5% top-1, 77 ms"),
    ZooEntry("mnasnet-small", "r1_k3_s11_e1_i16_o8 r1_k3_s22_e3_i8_o16 r2_k3_s22_e6_i16_o16 "
             "r4_k5_s22_e6_i16_o32_se0.25 r3_k3_s11_e6_i32_o32_se0.25 r3_k5_s22_e6_i32_o88_se0.25 "
             "r1_k3_s11_e6_i88_o144", stem=8, dropout=0.0,
             note="TPU reference; 2.0M params, 68M MAdds, ~66% top-1 (Table 4's 22 ms search)"),
    ZooEntry("mnasnet-d1", "r1_k3_s11_e9_i32_o24 r3_k3_s22_e9_i24_o36 r5_k3_s22_e9_i36_o48 "
             "r4_k5_s22_e9_i48_o96 r5_k7_s11_e3_i96_o96 r3_k3_s22_e9_i96_o80 r1_k7_s11_e6_i80_o320_noskip",
             note="MnasFPN backbone (arXiv:1912.01106), classifier variant"),
    ZooEntry("mobilenet-v2", "r1_k3_s11_e1_i32_o16 r2_k3_s22_e6_i16_o24 r3_k3_s22_e6_i24_o32 "
             "r4_k3_s22_e6_i32_o64 r3_k3_s11_e6_i64_o96 r3_k3_s22_e6_i96_o160 r1_k3_s11_e6_i160_o320",
             scale_head=True, note="the skeleton of the MnasNet space; paper: 3.4M params, 300M MAdds, 75 ms"),
    # the CIFAR variants: the blocks above with block 2's stride 2 -> 1, and a stride-1 stem (total stride 8)
    ZooEntry("mobilenet-v2-cifar", "r1_k3_s11_e1_i32_o16 r2_k3_s11_e6_i16_o24 r3_k3_s22_e6_i24_o32 "
             "r4_k3_s22_e6_i32_o64 r3_k3_s11_e6_i64_o96 r3_k3_s22_e6_i96_o160 r1_k3_s11_e6_i160_o320",
             stem_stride=1, scale_head=True,
             note="MobileNetV2 for 32-px inputs (as in kuangliu/pytorch-cifar): 2.2M params, 88M MACs at 32 px "
                  "with 10 classes; the skeleton of mnasnet-cifar"),
    ZooEntry("mnasnet-a1-cifar", "r1_k3_s11_e1_i32_o16_noskip r2_k3_s11_e6_i16_o24 "
             "r3_k5_s22_e3_i24_o40_se0.25 r4_k3_s22_e6_i40_o80 r2_k3_s11_e6_i80_o112_se0.25 "
             "r3_k5_s22_e6_i112_o160_se0.25 r1_k3_s11_e6_i160_o320", stem_stride=1,
             note="MnasNet-A1 adapted like mobilenet-v2-cifar"),
]}


def get(name: str, width_multiplier: float = 1.0) -> Architecture:
    try:
        entry = ZOO[name.lower()]
    except KeyError:
        raise MnasError(f"unknown model {name!r}{did_you_mean(name, ZOO)}: choose one of {', '.join(ZOO)}") \
            from None
    return entry.arch(width_multiplier)


def names() -> list[str]:
    return list(ZOO)


def find(arch: Architecture) -> ZooEntry | None:
    """The zoo entry whose width-1.0 architecture is ``arch`` (what the trainer holds before it applies
    the config's width multiplier), or None."""
    return next((e for e in ZOO.values() if e.arch() == arch), None)


def dropout_for(arch: Architecture) -> float:
    """The model's own dropout: its zoo entry's, else the reference default (every searched model)."""
    entry = find(arch)
    return entry.dropout if entry else REFERENCE_DROPOUT

