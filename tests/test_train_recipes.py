"""Recipes and learning-rate schedules against the numbers printed in the seeds.

Sources: dissertation appendix A.1 (CAFE), A.2.1 (PANGAEA), A.3.1 (AutoInit), Table A.2
(AQuaSurF) and §4.2 (V = 20%); GRAFS Appendix D.3 (Table 8) and D.5 (Table 10).
Epochs are 0-based: "decreased after epoch 25" means epoch index 25 is the first at the new
rate.
"""

import json
import math

import numpy as np
import pytest

from keras_actfn.train import (RECIPES, Constant, LinearWarmupDecay, PiecewiseConstant, Recipe,
                               WarmupCosine, get_recipe, parse_augment, schedule_from_config,
                               step_table)

approx = pytest.approx


def lr(recipe, epoch):
    return get_recipe(recipe).learning_rate(epoch)


# ------------------------------------------------------------------------------ CAFE A.1
@pytest.mark.parametrize("epoch, expected", [(0, 0.1), (24, 0.1), (24.99, 0.1), (25, 0.02),
                                             (26, 0.02), (39, 0.02), (40, 0.004), (41, 0.004),
                                             (45, 0.0008), (46, 0.0008), (49, 0.0008)])
def test_cafe_search_schedule(epoch, expected):
    assert lr("cafe_search", epoch) == approx(expected, rel=1e-12)


@pytest.mark.parametrize("epoch, expected", [(0, 0.1), (59, 0.1), (60, 0.02), (119, 0.02),
                                             (120, 0.004), (159, 0.004), (160, 0.0008),
                                             (199, 0.0008)])
def test_cafe_final_schedule(epoch, expected):
    assert lr("cafe_final", epoch) == approx(expected, rel=1e-12)


def test_cafe_settings():
    for name, epochs in (("cafe_search", 50), ("cafe_final", 200)):
        r = get_recipe(name)
        assert (r.model, r.task, r.epochs) == ("wrn_28_10", "cifar10", epochs)
        assert (r.optimizer, r.momentum, r.nesterov, r.dropout) == ("sgd", 0.9, True, 0.3)
        assert parse_augment(r.augment) == (True, 0, False)  # horizontal flips only in A.1
        assert r.threshold is None
    assert get_recipe("cafe_wrn_40_4_search").model == "wrn_40_4"
    assert get_recipe("cafe_wrn_40_4_final").task == "cifar100"


# ------------------------------------------------------------------------ PANGAEA A.2.1
@pytest.mark.parametrize("name, epoch, expected", [
    # WRN-10-4: evolution 100 epochs, x0.2 after 30/60/80; final 200, after 60/120/160
    ("pangaea_wrn_10_4_search", 29, 0.1), ("pangaea_wrn_10_4_search", 30, 0.02),
    ("pangaea_wrn_10_4_search", 60, 0.004), ("pangaea_wrn_10_4_search", 80, 0.0008),
    ("pangaea_wrn_10_4_final", 59, 0.1), ("pangaea_wrn_10_4_final", 60, 0.02),
    ("pangaea_wrn_10_4_final", 160, 0.0008),
    # ResNet-v1-56: 0.01 for one epoch, then 0.1; x0.1 after 46/68 (search), 91/137 (final)
    ("pangaea_resnet_v1_56_search", 0, 0.01), ("pangaea_resnet_v1_56_search", 0.5, 0.01),
    ("pangaea_resnet_v1_56_search", 1, 0.1), ("pangaea_resnet_v1_56_search", 45, 0.1),
    ("pangaea_resnet_v1_56_search", 47, 0.01), ("pangaea_resnet_v1_56_search", 67, 0.01),
    ("pangaea_resnet_v1_56_search", 69, 0.001), ("pangaea_resnet_v1_56_search", 99, 0.001),
    ("pangaea_resnet_v1_56_final", 0, 0.01), ("pangaea_resnet_v1_56_final", 1, 0.1),
    ("pangaea_resnet_v1_56_final", 90, 0.1), ("pangaea_resnet_v1_56_final", 92, 0.01),
    ("pangaea_resnet_v1_56_final", 138, 0.001),
    # ResNet-v2-56: the same without the warm-up
    ("pangaea_resnet_v2_56_search", 0, 0.1), ("pangaea_resnet_v2_56_search", 47, 0.01),
    ("pangaea_resnet_v2_56_search", 69, 0.001), ("pangaea_resnet_v2_56_final", 0, 0.1),
    ("pangaea_resnet_v2_56_final", 138, 0.001),
    # All-CNN-C: 0.01, x0.1 after 200/250/300, 350 epochs
    ("pangaea_all_cnn_c_search", 0, 0.01), ("pangaea_all_cnn_c_search", 199, 0.01),
    ("pangaea_all_cnn_c_search", 200, 0.001), ("pangaea_all_cnn_c_search", 250, 1e-4),
    ("pangaea_all_cnn_c_search", 300, 1e-5), ("pangaea_all_cnn_c_final", 349, 1e-5),
])
def test_pangaea_schedules(name, epoch, expected):
    assert lr(name, epoch) == approx(expected, rel=1e-12)


def test_pangaea_settings():
    wrn = get_recipe("pangaea_wrn_10_4_final")
    assert (wrn.epochs, wrn.nesterov, wrn.dropout, wrn.l2) == (200, True, 0.3, 5e-4)
    assert parse_augment(wrn.augment) == (True, 4, False)
    assert get_recipe("pangaea_wrn_10_4_search").epochs == 100
    res = get_recipe("pangaea_resnet_v1_56_final")
    assert (res.epochs, res.momentum, res.nesterov, res.dropout, res.l2) == \
        (200, 0.9, False, None, 1e-4)
    assert parse_augment(res.augment) == (True, 4, False)
    cnn = get_recipe("pangaea_all_cnn_c_final")
    assert (cnn.epochs, cnn.dropout, cnn.l2) == (350, 0.5, 1e-3)
    assert parse_augment(cnn.augment) == (True, 5, False)
    for name in RECIPES:
        if name.startswith("pangaea_"):
            r = get_recipe(name)
            # §4.2: the residual networks on CIFAR-100; §4.4.5: All-CNN-C on CIFAR-10
            assert r.task == ("cifar10" if "all_cnn_c" in name else "cifar100")
            # §4.2: V = 20% during evolution; final training discards nothing
            assert r.threshold == (0.2 if name.endswith("_search") else None)


# ------------------------------------------------------------------------ AutoInit A.3.1
def test_autoinit_recipes():
    cnn = get_recipe("autoinit_all_cnn_c")
    assert (cnn.task, cnn.epochs, cnn.momentum, cnn.dropout, cnn.l2) == \
        ("cifar10", 350, 0.9, 0.5, 1e-3)
    assert cnn.learning_rate(0) == 0.01 and cnn.learning_rate(300) == approx(1e-5)
    res = get_recipe("autoinit_resnet_v1_56")
    assert (res.l2, res.dropout, parse_augment(res.augment)) == (1e-4, None, (True, 4, False))
    # §5.9: linearly to 0.1 over five epochs, linearly down for 20; All-CNN-C decay / 10
    sc = get_recipe("autoinit_superconvergence_all_cnn_c")
    assert (sc.epochs, sc.l2) == (25, 1e-4)
    assert [sc.learning_rate(t) for t in (0, 2.5, 5, 15, 25)] == \
        approx([0.0, 0.05, 0.1, 0.05, 0.0])
    coat = get_recipe("autoinit_coatnet")
    assert (coat.optimizer, coat.weight_decay, coat.batch_size, coat.epochs) == \
        ("adamw", 0.02, 256, 105)
    assert coat.learning_rate(0) == approx(1e-4) and coat.learning_rate(6) == approx(4e-4)
    assert coat.learning_rate(3) == approx(2.5e-4)
    assert dict(coat.autoinit_options) == {"signal_variance": 0.01}
    assert dict(coat.task_options) == {"image_size": 160}


# ------------------------------------------------------------------- AQuaSurF Table A.2
@pytest.mark.parametrize("name, epochs", [("aquasurf_all_cnn_c_search", 25),
                                          ("aquasurf_all_cnn_c_full", 50),
                                          ("aquasurf_resnet_56_search", 25),
                                          ("aquasurf_resnet_56_full", 50)])
def test_aquasurf_cifar_recipes(name, epochs):
    r = get_recipe(name)
    assert (r.epochs, r.batch_size, r.optimizer, r.momentum, r.l2) == \
        (epochs, 128, "sgd", 0.9, 1e-4)
    # linear warm-up to 0.1 for five epochs (in both lengths), then linear decay to 0
    assert r.learning_rate(0) == 0.0
    assert r.learning_rate(2.5) == approx(0.05)
    assert r.learning_rate(5) == approx(0.1)
    assert r.learning_rate(5 + (epochs - 5) / 2) == approx(0.05)
    assert r.learning_rate(epochs) == approx(0.0, abs=1e-15)
    if "all_cnn_c" in name:
        assert (r.model, r.dropout, parse_augment(r.augment)) == \
            ("all_cnn_c", 0.5, (True, 4, False))
        assert dict(r.task_options)["normalize"] is True
    else:
        assert (r.model, r.dropout, parse_augment(r.augment)) == \
            ("resnet_v1_56", None, (True, 5, False))
        assert dict(r.task_options)["normalize"] is False


def test_aquasurf_mobilevit():
    r = get_recipe("aquasurf_mobilevit")
    assert (r.model, r.task, r.batch_size, r.epochs, r.optimizer, r.weight_decay) == \
        ("mobilevit_v2_050", "imagenette", 256, 105, "adamw", 0.02)
    assert r.learning_rate(0) == approx(1e-4)
    assert r.learning_rate(5) == approx(4e-3)
    assert r.learning_rate(55) == approx((4e-3 + 1e-6) / 2)  # cosine half-way
    assert r.learning_rate(105) == approx(1e-6)


# -------------------------------------------------------------------------- GRAFS D.3/D.5
@pytest.mark.parametrize("name, model", [("grafs_eval_resnet20", "resnet_v1_20"),
                                         ("grafs_eval_resnet32", "resnet_v1_32"),
                                         ("grafs_eval_vit_tiny", "vit_tiny"),
                                         ("grafs_eval_vit_small", "vit_small")])
def test_grafs_image_recipes(name, model):
    r = get_recipe(name)
    assert (r.model, r.epochs, r.batch_size, r.optimizer, r.betas) == \
        (model, 500, 512, "adam", (0.9, 0.999))
    assert r.learning_rate(0) == approx(1e-3)
    assert r.learning_rate(250) == approx(5e-4)  # cosine annealing, eta_min 0
    assert r.learning_rate(500) == approx(0.0, abs=1e-15)
    assert r.l2 == 0.0 and not r.weight_decay  # Table 8: Adam, no weight decay


@pytest.mark.parametrize("name", ["grafs_eval_mini_gpt", "grafs_eval_tiny_gpt",
                                  "grafs_eval_small_gpt"])
def test_grafs_language_recipes(name):
    r = get_recipe(name)
    assert (r.task, r.batch_size, r.gradient_accumulation_steps) == ("tinystories", 16, 40)
    assert (r.optimizer, r.weight_decay, r.betas) == ("adamw", 0.1, (0.9, 0.99))
    # max_iters 10,000 optimizer updates of 40 accumulated micro-batches each
    assert r.epochs * r.steps_per_epoch // r.gradient_accumulation_steps == 10_000
    assert r.learning_rate(0) == approx(6e-4)
    assert r.learning_rate(r.epochs) == approx(1e-4)


# ------------------------------------------------------------------------------ quick
def test_quick_recipe():
    q = get_recipe("quick")
    assert (q.model, q.task) == ("mnist1d_cnn", "mnist1d")
    assert get_recipe("quick_mlp").model == "mnist1d_mlp"
    assert 0.1 < q.threshold < 0.33  # above chance, below the linear activation


# ------------------------------------------------------------------------------ scaling
@pytest.mark.parametrize("name", ["cafe_search", "cafe_final", "pangaea_resnet_v1_56_search",
                                  "aquasurf_resnet_56_search", "grafs_eval_vit_tiny",
                                  "autoinit_coatnet", "quick"])
@pytest.mark.parametrize("epochs", [1, 4, 10])
def test_scaled_recipes_keep_the_shape(name, epochs):
    r = get_recipe(name)
    s = r.scaled(epochs=epochs)
    f = epochs / r.epochs
    assert s.epochs == epochs
    for t in np.linspace(0, r.epochs, 97):
        assert s.learning_rate(t * f) == approx(r.learning_rate(t), rel=1e-9, abs=1e-15)
    assert s.label == f"{name}[epochs={epochs}]"
    assert (s.model, s.task, s.batch_size, s.optimizer) == (r.model, r.task, r.batch_size,
                                                           r.optimizer)


def test_scaled_cafe_milestones():
    s = get_recipe("cafe_search").scaled(epochs=5)  # milestones 2.5, 4, 4.5
    assert [s.learning_rate(t) for t in (2.4, 2.5, 3.9, 4.0, 4.5)] == \
        approx([0.1, 0.02, 0.02, 0.004, 0.0008])


def test_scaled_width_and_subset():
    q = get_recipe("quick").scaled(width=0.4, subset=1000)
    assert dict(q.model_kwargs) == {"channels": 10}
    assert dict(q.subset) == {"train": 1000}
    assert q.label == "quick[subset=train:1000,width=0.4]"
    assert dict(get_recipe("quick_mlp").scaled(width=0.25).model_kwargs) == {"width": 25}
    q2 = q.scaled(subset={"validation": 100}, width=0.5)
    assert dict(q2.subset) == {"train": 1000, "validation": 100}
    assert dict(q2.model_kwargs) == {"channels": 5}
    with pytest.raises(ValueError, match="no width argument"):
        get_recipe("pangaea_resnet_v1_56_search").scaled(width=0.5)
    with pytest.raises(ValueError, match="positive integer"):
        get_recipe("quick").scaled(epochs=0)


def test_replace_and_validation():
    q = get_recipe("quick")
    assert q.replace(threshold=0.5).threshold == 0.5
    with pytest.raises(ValueError, match="unknown recipe field"):
        q.replace(learning_rat=0.1)
    with pytest.raises(ValueError, match="optimizer"):
        q.replace(optimizer="rmsprop")
    with pytest.raises(ValueError, match="threshold"):
        q.replace(threshold=20)
    with pytest.raises(ValueError, match="unknown augmentation"):
        q.replace(augment="flip+rotate")
    with pytest.raises(ValueError, match="epochs"):
        q.replace(epochs=-1)
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("no_such_recipe")
    assert get_recipe(q) is q


def test_parse_augment():
    assert parse_augment(None) is None and parse_augment("none") is None
    assert parse_augment("task") == "task"
    assert parse_augment("flip") == (True, 0, False)
    assert parse_augment("pad5") == (False, 5, False)
    assert parse_augment("flip+pad4") == (True, 4, False)


def test_every_recipe_names_a_registered_model_and_task():
    from keras_actfn.data.tasks import TASK_LOADERS
    from keras_actfn.models.registry import MODELS

    for name, r in RECIPES.items():
        assert r.model in MODELS, name
        assert r.task in TASK_LOADERS, name
        assert r.source, name


def test_recipes_round_trip_through_json():
    for name, r in RECIPES.items():
        data = json.loads(json.dumps(r.to_dict(), allow_nan=False))
        assert Recipe.from_dict(data) == r, name
        assert r.describe().startswith(name)


# ----------------------------------------------------------------------------- schedules
def test_schedule_validation_and_config():
    with pytest.raises(ValueError, match="increasing"):
        PiecewiseConstant(0.1, (30, 10))
    with pytest.raises(ValueError, match="warmup_lr"):
        PiecewiseConstant(0.1, (10,), warmup_epochs=1)
    with pytest.raises(ValueError, match="exceeds"):
        LinearWarmupDecay(0.1, warmup_epochs=10, total_epochs=5)
    with pytest.raises(ValueError, match="learning rate"):
        Constant(math.nan)
    for s in (Constant(0.3), PiecewiseConstant(0.1, (2, 4), 0.5, 1, 0.01),
              LinearWarmupDecay(0.1, 1, 5, start=0.01, end=0.001), WarmupCosine(1e-3, 0, 7)):
        assert schedule_from_config(json.loads(json.dumps(s.to_config()))) == s
        assert s.describe()


def test_step_table_samples_each_step():
    s = LinearWarmupDecay(1.0, warmup_epochs=1, total_epochs=3)
    table = step_table(s, steps_per_epoch=4, epochs=3)
    assert table.shape == (12,)
    assert table[:5] == approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert table[-1] == approx(s(11 / 4))
    with pytest.raises(ValueError):
        step_table(s, 0, 3)


def test_keras_schedule_matches_the_table():
    from keras_actfn.train.schedules import keras_schedule

    s = get_recipe("pangaea_resnet_v1_56_search").scaled(epochs=4).schedule
    k = keras_schedule(s, steps_per_epoch=10, epochs=4)
    for step in (0, 3, 4, 5, 17, 18, 19, 27, 28, 39, 50):
        assert float(k(step)) == approx(s(min(step, 39) / 10), rel=1e-6)


def test_unnormalized_resnet_recipe_builds_without_batchnorm():
    from keras_actfn.backend import keras
    from keras_actfn.models import build_model

    r = get_recipe("autoinit_resnet_v1_56_no_bn")
    model = build_model(r.model, **dict(r.model_kwargs), input_shape=(8, 8, 3))
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert get_recipe("cafe_search").scaled(width=0.1).model_kwargs == (("width", 1),)
