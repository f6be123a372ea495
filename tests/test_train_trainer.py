"""The proxy trainer on tiny runs: it learns, it is deterministic, NaN ends a trial cleanly, recipes,
and the config schema that resolves presets."""

from __future__ import annotations

import math

import pytest
import torch

from mnas import MnasError
from mnas.space import Architecture, zoo
from mnas.data import load_dataset
from mnas.train import TrainTask, RMSpropTF, TrainConfig, train_architecture, train_proxy
from mnas.train.optim import lr_factor, param_groups

TINY = Architecture.parse("stem8:ds_r1_k3_s1_e1_i8_o8:ir_r1_k3_s2_e3_i8_o16_se0.25:head32")


def quick(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=32, resolution=8, width_multiplier=1.0, threads=1, device="cpu", lr=0.05)
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_run_learns_digits_and_reports():
    r = train_proxy(TINY, "digits", quick(epochs=4))
    assert r.ok and r.error is None
    assert r.top1 > 0.3  # chance is 0.1
    assert len(r.loss_curve) == 4 and r.loss_curve[-1] < r.loss_curve[0]
    assert r.params > 0 and r.train_images_per_s > 0 and r.seconds >= r.train_seconds > 0
    d = r.to_dict()
    assert {"top1", "train_images_per_s", "seconds", "epochs", "params", "status", "error", "loss_curve"} <= d.keys()


def test_result_records_its_speed_choices():
    """Every result says how it was made fast (or not): a throughput is meaningless without them."""
    r = train_proxy(TINY, "digits", quick(epochs=0.2, batch_size=5000, channels_last=False))
    d = r.to_dict()
    assert {k: d[k] for k in ("device", "amp", "compile", "channels_last", "batch_size")} == \
        {"device": "cpu", "amp": "off", "compile": False, "channels_last": False, "batch_size": r.train_images}
    assert r.batch_size < 5000 and r.started > 0  # capped at the training images it had


def test_same_seed_same_result():
    a = train_proxy(TINY, "digits", quick(epochs=1, seed=3, hflip=True))
    b = train_proxy(TINY, "digits", quick(epochs=1, seed=3, hflip=True))
    c = train_proxy(TINY, "digits", quick(epochs=1, seed=4, hflip=True))
    assert a.loss_curve == b.loss_curve and a.top1 == b.top1
    assert a.loss_curve != c.loss_curve


def test_nan_loss_is_a_failed_result_not_an_exception():
    r = train_proxy(TINY, "digits", quick(epochs=2, lr=1e12, optimizer="sgd", warmup_epochs=0))
    assert r.status == "failed" and r.top1 == 0.0
    assert r.error.startswith("loss became") and " at epoch " in r.error and " step " in r.error


def test_losses_read_in_blocks_give_the_same_curve_and_the_same_first_nan_step(monkeypatch):
    """Without a progress callback the trainer reads the losses every few steps (a GPU then runs ahead of
    Python); the curve, and the step a divergence is reported at, are those of reading every step."""
    from mnas.train import trainer

    monkeypatch.setattr(trainer, "READ_LOSS_EVERY", 4)
    seen = []
    ok = quick(epochs=1, seed=2)
    watched = train_proxy(TINY, "digits", ok, progress=lambda step, total, loss: seen.append(loss))
    blocks = train_proxy(TINY, "digits", ok)
    assert blocks.loss_curve == watched.loss_curve and blocks.top1 == watched.top1
    assert blocks.steps == watched.steps == len(seen) == 44  # 1,437 images in batches of 32
    bad = quick(epochs=2, lr=1e12, optimizer="sgd", warmup_epochs=0)
    diverged = train_proxy(TINY, "digits", bad, progress=lambda *a: None)
    assert diverged.error == "loss became NaN at epoch 1 step 3"  # inside the first block of 4
    assert train_proxy(TINY, "digits", bad).error == diverged.error


def test_mnasnet_a1_on_28px_with_paper_recipe_and_ema():
    """The paper preset end to end (RMSProp TF, warm-up, staircase decay, EMA) on a small subset; at
    28 px A1's feature map reaches 1x1 and still trains."""
    data = load_dataset("animal-mnist", 28)
    cfg = TrainConfig(recipe="mnasnet-imagenet", epochs=0.5, batch_size=32, resolution=28, width_multiplier=0.35,
                      threads=1, train_limit=256, device="cpu")
    assert cfg.optimizer == "rmsprop" and cfg.ema_decay == 0.9999 and cfg.peak_lr == pytest.approx(0.016 / 8)
    r = train_proxy(zoo.get("mnasnet-a1"), data, cfg)
    assert r.ok and r.steps == 4 and 0.0 <= r.top1 <= 1.0 and math.isfinite(r.val_loss)


def test_preset_fields_and_overrides():
    cfg = TrainConfig(recipe="mnasnet-imagenet", batch_size=1024, epochs=3)
    assert cfg.peak_lr == pytest.approx(0.064) and cfg.epochs == 3 and cfg.warmup_epochs == 5
    assert (cfg.decay_rate, cfg.decay_epochs, cfg.label_smoothing, cfg.weight_decay) == (0.97, 2.4, 0.1, 1e-5)
    assert TrainConfig().recipe == "fast" and TrainConfig().resolution == 28
    with pytest.raises(MnasError, match="recipe: unknown training recipe"):
        TrainConfig(preset="nope")
    with pytest.raises(MnasError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(MnasError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)
    with pytest.raises(MnasError, match="unknown key"):
        TrainConfig(max_train_samples=10)  # renamed train_limit


def test_proxy_config_takes_the_presets_values_unless_set():
    paper = TrainTask(recipe="mnasnet-imagenet")
    assert (paper.resolution, paper.width_multiplier, paper.epochs, paper.batch_size) == (224, 1.0, 5, 256)
    assert paper.model_dump()["optimizer"] == "rmsprop" and paper.dataset == "animal-mnist"
    assert TrainTask(recipe="mnasnet-imagenet", resolution=32).resolution == 32
    assert TrainTask().recipe == "fast" and TrainTask().lr == 0.05
    # a config file's explicit null means "the preset's value", like leaving the key out
    assert TrainTask.model_validate({"recipe": "mnasnet-imagenet", "lr": None}).lr == 0.016
    assert TrainTask.default("epochs") is None and TrainConfig.default("threads") == 1


def test_train_architecture_uses_the_trial_seed_for_split_and_init():
    proxy = TrainTask(dataset="digits", epochs=1, batch_size=32, resolution=8, width_multiplier=1.0,
                        device="cpu", seed=0)
    r = train_architecture(TINY, proxy, seed=5)
    direct = train_proxy(TINY, load_dataset("digits", 8, seed=5), TrainConfig(**{
        **proxy.model_dump(exclude={"dataset"}), "seed": 5}))
    assert r.ok and r.dataset == "digits" and r.config["seed"] == 5 and r.config["dataset"] == "digits"
    assert (r.top1, r.loss_curve) == (direct.top1, direct.loss_curve)


def test_threads_are_the_configs_whatever_the_load(monkeypatch):
    before = torch.get_num_threads()
    for load in (0.0, 100.0):
        monkeypatch.setattr("os.getloadavg", lambda load=load: (load, load, load))
        assert train_proxy(TINY, "digits", quick(epochs=0.1, threads=1)).threads == 1
        assert train_proxy(TINY, "digits", TrainConfig(epochs=0.1, resolution=8, device="cpu")).threads == 1
    assert train_proxy(TINY, "digits", quick(epochs=0.1, threads=2)).threads == 2
    assert torch.get_num_threads() == before


def test_lr_schedule_warmup_staircase_and_cosine():
    # 10 steps per epoch: 5-epoch warm-up = 50 steps, decay every 2.4 epochs = 24 steps, from step 0
    assert lr_factor(0, 500, 50, "exponential", 0.97, 24) == 0.0
    assert lr_factor(25, 500, 50, "exponential", 0.97, 24) == pytest.approx(0.5)
    assert lr_factor(50, 500, 50, "exponential", 0.97, 24) == pytest.approx(0.97 ** 2)
    assert lr_factor(71, 500, 50, "exponential", 0.97, 24) == pytest.approx(0.97 ** 2)
    assert lr_factor(72, 500, 50, "exponential", 0.97, 24) == pytest.approx(0.97 ** 3)
    assert lr_factor(10, 110, 10, "cosine", 0, 1) == 1.0
    assert lr_factor(60, 110, 10, "cosine", 0, 1) == pytest.approx(0.5)


def test_weight_decay_skips_batchnorm_only():
    from mnas.model import build

    m = build(TINY, 10, 1)
    decay, no_decay = param_groups(m, 1e-5, decay_bn=False)
    bn = sum(p.numel() for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d) for p in mod.parameters())
    assert sum(p.numel() for p in no_decay["params"]) == bn
    assert decay["weight_decay"] == 1e-5 and no_decay["weight_decay"] == 0.0
    assert any(p is m.classifier.bias for p in decay["params"])  # FC and SE biases are decayed, as in TF


def test_rmsprop_tf_matches_hand_computed_steps():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = RMSpropTF([w], lr=0.1, decay=0.9, momentum=0.5, eps=1e-3, weight_decay=0.01)
    g1 = torch.tensor([0.5, 1.0])
    w.grad = g1.clone()
    opt.step()
    # step 1 by hand: g = grad + wd*w; ms starts at 1; eps inside the sqrt; lr inside the momentum buffer
    g = g1 + 0.01 * torch.tensor([1.0, -2.0])
    ms = 0.9 * 1.0 + 0.1 * g * g
    mom = 0.1 * g / torch.sqrt(ms + 1e-3)
    expect = torch.tensor([1.0, -2.0]) - mom
    assert torch.allclose(w.detach(), expect, atol=1e-7)
    # step 2 with a new lr: the old momentum is carried unscaled, only the new term uses lr=0.05
    for group in opt.param_groups:
        group["lr"] = 0.05
    g2 = torch.tensor([-1.0, 0.25])
    w.grad = g2.clone()
    opt.step()
    g = g2 + 0.01 * expect
    ms = 0.9 * ms + 0.1 * g * g
    mom = 0.5 * mom + 0.05 * g / torch.sqrt(ms + 1e-3)
    assert torch.allclose(w.detach(), expect - mom, atol=1e-7)


def test_the_paper_recipe_trains_each_zoo_model_with_its_own_dropout():
    from mnas.train.trainer import build_run

    data = load_dataset("digits", 16)
    for name, expected in (("mnasnet-small", 0.0), ("mnasnet-a1", 0.2)):
        run = build_run(zoo.get(name), data, TrainConfig(recipe="mnasnet-imagenet", resolution=16,
                                                          width_multiplier=0.25, batch_size=32), torch.device("cpu"))
        assert run.model.dropout.p == expected, name
    fixed = build_run(zoo.get("mnasnet-small"), data, TrainConfig(recipe="mnasnet-imagenet", dropout=0.3,
                                                                   resolution=16, width_multiplier=0.25),
                      torch.device("cpu"))
    assert fixed.model.dropout.p == 0.3  # a set value wins over the model's own
