"""The one training schema: ``TrainConfig`` (a proxy training run) and ``ProxyConfig`` (the same plus the
dataset: the ``proxy:`` section of an experiment config).

A field a preset provides defaults to None, "the preset's value"; validation fills every such field from
the preset (recipes.py), so a validated config holds the values it trains with and ``model_dump()`` shows
them. A value the config sets always wins over the preset.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from mnas.data.base import DEFAULT_HOLDOUT
from mnas.schema import Schema
from mnas.train.recipes import DEFAULT_PRESET, PRESETS, preset_values

FRACTION = {"ge": 0, "lt": 1}  # a fraction in [0, 1)


class TrainConfig(Schema):
    preset: str = Field(DEFAULT_PRESET, description=f"the recipe unset fields come from: {' | '.join(PRESETS)}")
    epochs: Optional[float] = Field(None, gt=0, description="may be fractional; steps = ceil(epochs * "
                                    "steps per epoch)")
    batch_size: Optional[int] = Field(None, ge=1)
    resolution: Optional[int] = Field(None, ge=4, description="images are resized to this once, when loaded")
    width_multiplier: Optional[float] = Field(None, gt=0, description="the proxy's width (arch.scaled())")
    dropout: Optional[float] = Field(None, **FRACTION)
    optimizer: Optional[Literal["sgd", "adam", "adamw", "rmsprop"]] = Field(
        None, description="sgd | adam | adamw | rmsprop (TensorFlow 1's, rmsprop_tf.py)")
    lr: Optional[float] = Field(None, ge=0, description="peak learning rate (per lr_ref_batch images if that "
                                "is > 0)")
    lr_ref_batch: Optional[int] = Field(None, ge=0, description="> 0: the lr scales as lr * batch_size / "
                                        "lr_ref_batch")
    momentum: Optional[float] = Field(None, **FRACTION)
    nesterov: Optional[bool] = Field(None, description="sgd only")
    rmsprop_decay: Optional[float] = Field(None, **FRACTION)
    eps: Optional[float] = Field(None, ge=0, description="rmsprop / adam epsilon")
    weight_decay: Optional[float] = Field(None, ge=0, description="an L2 term (coupled) except for adamw "
                                          "(decoupled)")
    weight_decay_bn: Optional[bool] = Field(None, description="false: BatchNorm weights and biases are not "
                                            "decayed")
    warmup_epochs: Optional[float] = Field(None, ge=0, description="linear warm-up from 0")
    schedule: Optional[Literal["cosine", "exponential", "constant"]] = Field(
        None, description="cosine | exponential (staircase, counted from step 0) | constant")
    decay_rate: Optional[float] = Field(None, gt=0, description="exponential: lr *= decay_rate every "
                                        "decay_epochs")
    decay_epochs: Optional[float] = Field(None, gt=0)
    label_smoothing: Optional[float] = Field(None, **FRACTION)
    ema_decay: Optional[float] = Field(None, **FRACTION, description="> 0: evaluate an EMA of the weights (TF's "
                                       "num_updates warm-up)")
    hflip: Optional[bool] = Field(None, description="random horizontal flips")
    crop_min_area: Optional[float] = Field(None, ge=0, le=1, description="> 0: random-resized crop for "
                                           "training, area from this fraction of the image to all of it, "
                                           "aspect 3/4..4/3 (the reference: 0.08); 0: the whole image")
    eval_crop: Optional[float] = Field(None, gt=0, le=1, description="evaluation: the centre square of this "
                                       "fraction of the shorter side (the reference: 0.875)")
    normalize: Optional[Literal["dataset", "imagenet"]] = Field(
        None, description="dataset (the training split's per-channel mean/std) | imagenet (the reference's "
        "constants)")
    zero_init_head: Optional[bool] = Field(None, description="start the classifier at 0 (loss starts at "
                                           "ln(classes))")
    bn_momentum: Optional[float] = Field(None, ge=0, le=1, description="PyTorch convention; 0: the "
                                         "builder's (TF 0.99 = 0.01)")
    seed: int = Field(0, ge=0, description="model init, dropout, batch order, augmentation and the held-out split")
    holdout: Optional[Union[int, float]] = Field(
        None, description="validation images held out of the training images, stratified and seeded: a "
        f"count or a fraction; none: the source's val/ or test/ folder if it has one, else {DEFAULT_HOLDOUT}")
    # One thread, not "all cores": the numbers a seed gives then depend on nothing but the seed (oneDNN's
    # reductions split the work by thread count, so another count gives other floats), and training
    # never collapses when other work shares the cores (on the busy 2-core box 2 threads trained at
    # 9 images/s, 1 thread at 116). A search runs trials side by side for its parallelism.
    threads: int = Field(1, ge=1, description="torch threads for the run (restored after); recorded in "
                         "the result")
    device: str = Field("auto", description="auto (cuda when there is one) | cpu | cuda | cuda:N")
    channels_last: bool = True
    amp: Literal["auto", "off", "bf16", "fp16"] = Field("auto", description="mixed precision on CUDA: auto "
                                                        "(bf16 where supported, else fp16 with a grad scaler) "
                                                        "| off | bf16 | fp16; never on the CPU")
    compile: bool = Field(False, description="torch.compile the model (pays off on long GPU runs only)")
    workers: int = Field(2, ge=0, description="DataLoader worker processes that decode streamed images")
    max_bad_fraction: float = Field(0.01, **FRACTION, description="streamed images that may fail to decode "
                                    "(skipped and counted) before the run fails")
    eval_batch_size: int = Field(1000, ge=1)
    train_limit: Optional[int] = Field(None, ge=1, description="train on a seeded subset of at most this "
                                       "many training images; none: all")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        given = {k: v for k, v in data.items() if v is not None}
        preset = given.get("preset", DEFAULT_PRESET)
        if not isinstance(preset, str) or preset not in PRESETS:
            return data  # the preset field's check reports it
        return {**preset_values(preset), **given}

    @field_validator("holdout")
    @classmethod
    def _count_or_fraction(cls, value: int | float | None) -> int | float | None:
        if value is None or (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0 < value < 1):
            return value
        raise PydanticCustomError("holdout", "expected a count (an integer >= 1) or a fraction in (0, 1)")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        if name not in PRESETS:
            raise PydanticCustomError("unknown_preset", "unknown training preset: expected one of {names}",
                                      {"names": ", ".join(PRESETS)})
        return name

    @property
    def peak_lr(self) -> float:
        return self.lr * self.batch_size / self.lr_ref_batch if self.lr_ref_batch else self.lr


class ProxyConfig(TrainConfig):
    """How each sampled architecture is trained in a search: a ``TrainConfig`` and the data."""

    dataset: str = Field("animal-mnist", description="NAME or NAME:PATH (mnas data list)")
    cache: Optional[str] = Field(None, description="a cache folder (mnas data cache): built from the dataset "
                                 "at the proxy resolution on first use, then read memory-mapped")
