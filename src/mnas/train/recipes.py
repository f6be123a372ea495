"""Training recipes: named sets of ``TrainConfig`` values. A field the config sets wins over its recipe.

``fast``: the default proxy for small datasets on a CPU (tuned on animal-mnist:
docs/results/2026-11-25-training-speed.md).
``mnasnet-imagenet``: the paper's / reference code's full recipe (docs: mnasnet-facts.md §8), literally.
``mnasnet-proxy``: the same with a warm-up and decay that fit a 5-epoch proxy.
"""

from __future__ import annotations

from mnas import MnasError
from mnas.registry import did_you_mean
from mnas.schema import old_name

# Values every recipe starts from; a recipe replaces what it names.
BASE: dict = {
    "epochs": 3.0,
    "batch_size": 64,
    "resolution": 28,
    "width_multiplier": 0.5,
    "dropout": 0.2,
    "optimizer": "sgd",
    "lr": 0.1,
    "lr_ref_batch": 0,
    "momentum": 0.9,
    "nesterov": True,
    "rmsprop_decay": 0.9,
    "eps": 1e-3,
    "weight_decay": 5e-5,
    "weight_decay_bn": False,
    "warmup_epochs": 0.0,
    "schedule": "cosine",
    "decay_rate": 0.97,
    "decay_epochs": 2.4,
    "label_smoothing": 0.0,
    "ema_decay": 0.0,
    "hflip": False,
    "crop_min_area": 0.0,
    "eval_crop": 1.0,
    "normalize": "dataset",
    "bn_momentum": 0.0,
    "zero_init_head": False,
}

RECIPES: dict[str, dict] = {
    "fast": {
        "description": "short CPU proxy for small datasets: SGD+Nesterov, short warm-up, cosine decay",
        "optimizer": "sgd",
        "lr": 0.05,  # better than 0.1 for MnasNet-A1 x0.5 on animal-mnist (docs/results: training speed)
        "momentum": 0.9,
        "weight_decay": 5e-5,
        "warmup_epochs": 0.3,
        "schedule": "cosine",
        "label_smoothing": 0.1,
        "dropout": 0.2,
        "bn_momentum": 0.1,
        "zero_init_head": True,
    },
    "mnasnet-imagenet": {
        "description": "the paper's recipe: RMSProp(TF) 0.9/0.9/1e-3, lr 0.016 x batch/256, 5-epoch warm-up, "
                       "x0.97 every 2.4 epochs, wd 1e-5 (not BN), smoothing 0.1, EMA 0.9999, the model's own dropout "
                       "(0.2; 0 for mnasnet-small)",
        "epochs": 5.0,  # the search's proxy task: 5 epochs [P §5]; the final models trained 350
        "batch_size": 256,
        "resolution": 224,
        "width_multiplier": 1.0,
        "optimizer": "rmsprop",
        "lr": 0.016,
        "lr_ref_batch": 256,
        "momentum": 0.9,
        "rmsprop_decay": 0.9,
        "eps": 1e-3,
        "weight_decay": 1e-5,
        "weight_decay_bn": False,
        "warmup_epochs": 5.0,
        "schedule": "exponential",
        "decay_rate": 0.97,
        "decay_epochs": 2.4,
        "label_smoothing": 0.1,
        "ema_decay": 0.9999,
        "dropout": None,  # the model's own (mnas.space.zoo.dropout_for): the reference trains each so
        # the reference's preprocessing: Inception crop + flip, 87.5 % centre crop, ImageNet's mean/std
        "hflip": True,
        "crop_min_area": 0.08,
        "eval_crop": 0.875,
        "normalize": "imagenet",
    },
}
# The literal recipe's 5-epoch warm-up on a 5-epoch proxy raises the lr for the whole run and never
# decays it; the paper does not publish its proxy schedule. This one fits the proxy's length.
RECIPES["mnasnet-proxy"] = {
    **RECIPES["mnasnet-imagenet"],
    "description": "mnasnet-imagenet with a schedule that fits a 5-epoch proxy: 0.5-epoch warm-up, then "
                   "cosine decay to 0 (the literal recipe's lr only rises in 5 epochs)",
    "warmup_epochs": 0.5,
    "schedule": "cosine",
}

# Full training on CIFAR-sized images (mnas train --dir, mnas retrain), chosen by short MobileNetV2 runs on
# CIFAR-10 (docs/results/2026-11-27-cifar-recipe.md): lr 0.05 beat 0.1 and 0.02, and label smoothing, random-
# resized crops and dropout each cost accuracy. Budgets of a few epochs favour learning fast over regularising.
RECIPES["cifar"] = {
    "description": "full training on 32-px images: SGD+Nesterov lr 0.05, 1-epoch warm-up, cosine, flips, "
                   "EMA 0.999, no dropout, no label smoothing",
    "epochs": 10.0,
    "batch_size": 128,
    "resolution": 32,
    "width_multiplier": 1.0,
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-5,
    "warmup_epochs": 1.0,
    "schedule": "cosine",
    "label_smoothing": 0.0,
    "ema_decay": 0.999,
    "dropout": 0.0,
    "hflip": True,
    "crop_min_area": 0.0,
    "zero_init_head": True,
}

DEFAULT_RECIPE = "fast"


def recipe_values(name: str) -> dict:
    """BASE overlaid with the recipe (without its description)."""
    p = RECIPES.get(name)
    if p is None:
        raise MnasError(f"unknown training recipe {name!r}{did_you_mean(name, RECIPES)}: expected one of "
                        f"{', '.join(RECIPES)}")
    values = dict(BASE)
    values.update({k: v for k, v in p.items() if k != "description"})
    return values


_RENAMED = {"PRESETS": "RECIPES", "DEFAULT_PRESET": "DEFAULT_RECIPE", "preset_values": "recipe_values"}


def __getattr__(name: str):
    return old_name(__name__, name, _RENAMED, globals())
