"""The defaults of ``mnas retrain`` and ``retrain()``, in one schema (no heavy imports: the CLI reads it at
start-up)."""

from __future__ import annotations

from pydantic import Field

from mnas.schema import Schema


class RetrainConfig(Schema):
    """What ``mnas retrain`` trains, and how: the defaults of its options and of ``retrain()``."""

    top: int = Field(3, ge=0, description="the K best completed trials by reward")
    # The curve the paper's Table 1 compares against, and its searched model
    references: tuple[str, ...] = Field(("mobilenet-v2@0.5", "mobilenet-v2@0.75", "mobilenet-v2@1.0", "mnasnet-a1"),
                                        description="zoo models NAME[@WIDTH] (a space with the ImageNet stem)")
    # The same curve adapted to 32-px inputs (stride-1 stem), as the space whose searched models they face
    cifar_references: tuple[str, ...] = Field(
        ("mobilenet-v2-cifar@0.5", "mobilenet-v2-cifar@0.75", "mobilenet-v2-cifar@1.0", "mobilenet-v2-cifar@1.4",
         "mnasnet-a1-cifar"), description="zoo models NAME[@WIDTH] (a space with a stride-1 stem: mnasnet-cifar)")
    recipe: str = Field("cifar", description="the training recipe for every model (full training at the "
                        "proxy's small resolution)")
    spread: int = Field(0, ge=0, description="N more completed trials spanning the latency range: the set the "
                        "proxy's Kendall tau is measured on")
