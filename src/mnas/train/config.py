"""The one training schema: ``TrainConfig`` (how a model is trained) and ``TrainTask`` (the same plus the
dataset it trains on). The ``proxy:`` section of an experiment config is the training task of the search's
proxy training; ``mnas retrain`` trains in full with a training task too.

A field a recipe provides defaults to None, "the recipe's value"; validation fills every such field from
the recipe (recipes.py), so a validated config holds the values it trains with and ``model_dump()`` shows
them. A value the config sets always wins over the recipe.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from mnas.data.base import DEFAULT_HOLDOUT
from mnas.registry import did_you_mean
from mnas.schema import Schema, Seed, old_name, renamed
from mnas.train.recipes import DEFAULT_RECIPE, RECIPES, recipe_values

FRACTION = {"ge": 0, "lt": 1}  # a fraction in [0, 1)


class TrainConfig(Schema):
    recipe: str = Field(DEFAULT_RECIPE, description=f"the training recipe unset fields come from: "
                        f"{' | '.join(RECIPES)}")
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
    seed: Seed = Field(0, description="model init, dropout, batch order, augmentation and the held-out split")
    holdout: Optional[Union[int, float]] = Field(
        None, description="validation images held out of the training images, stratified and seeded: a "
        f"count or a fraction; none: the source's val/ or test/ folder if it has one, else {DEFAULT_HOLDOUT}")
    # One thread, not "all cores": the numbers a seed gives then depend on nothing but the seed (oneDNN's
    # reductions split the work by thread count, so another count gives other floats), and training
    # never collapses when other work shares the cores (several threads per training stall each other
    # on a busy machine: docs/results/2026-11-25-training-speed.md). A search runs trials side by side
    # for its parallelism.
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
    init: Optional[str] = Field(None, min_length=1, description="a checkpoint whose weights the model starts "
                                "from (its architecture, at the width trained, must be this one's), e.g. from "
                                "mnas supernet extract")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_recipe(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = renamed(data, {"preset": "recipe"}, "training config")
        given = {k: v for k, v in data.items() if v is not None}
        recipe = given.get("recipe", DEFAULT_RECIPE)
        if not isinstance(recipe, str) or recipe not in RECIPES:
            return data  # the recipe field's check reports it
        return {**recipe_values(recipe), **given}

    @field_validator("holdout")
    @classmethod
    def _count_or_fraction(cls, value: int | float | None) -> int | float | None:
        if value is None or (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0 < value < 1):
            return value
        raise PydanticCustomError("holdout", "expected a count (an integer >= 1) or a fraction in (0, 1)")

    @field_validator("recipe")
    @classmethod
    def _known_recipe(cls, name: str) -> str:
        if name not in RECIPES:
            raise PydanticCustomError("unknown_recipe", "unknown training recipe{hint}: expected one of {names}",
                                      {"names": ", ".join(RECIPES), "hint": did_you_mean(name, RECIPES)})
        return name

    @property
    def peak_lr(self) -> float:
        return self.lr * self.batch_size / self.lr_ref_batch if self.lr_ref_batch else self.lr


class TrainTask(TrainConfig):
    """A ``TrainConfig`` and the data it trains on: the proxy training of each trial of a search (the
    ``proxy:`` section), or a full training (``mnas train``, ``mnas retrain``)."""

    dataset: str = Field("animal-mnist", description="NAME or NAME:PATH (mnas data list)")
    cache: Optional[str] = Field(None, description="a cache folder (mnas data cache): built from the dataset "
                                 "at the proxy resolution on first use, then read memory-mapped")
    estimator: Optional[str] = Field(None, min_length=1, description="where a search trial's accuracy comes "
                                     "from: none or train (proxy training) | supernet:DIR (a trained supernet's "
                                     "sub-network, mnas supernet train)")


def __getattr__(name: str):
    return old_name(__name__, name, {"ProxyConfig": "TrainTask"}, globals())
