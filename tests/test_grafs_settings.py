"""GRAFS search settings: gradient accumulation, the warm-restart cosine, the Table 6/7/9
presets and `keras-actfn search grafs --preset`."""

import math
import time

import numpy as np
import pytest

from keras_actfn.backend import keras
from keras_actfn.cli import main
from keras_actfn.data import load_task
from keras_actfn.data.tasks import Task
from keras_actfn.models import mnist1d_cnn
from keras_actfn.search.grafs.search import CosineWarmRestarts, grafs_search, split_search_data
from keras_actfn.search.grafs.settings import PRESETS, get_preset


@pytest.fixture(scope="module")
def mnist1d():
    return load_task("mnist1d").subset(train=320)


# ---------------------------------------------------------------- gradient accumulation

def _toy_task(n=64, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = rng.integers(0, classes, size=n).astype("int32")
    splits = {s: (x, y) for s in ("train", "validation", "test")}
    return Task(name="toy", num_classes=classes, input_shape=(d,), splits=splits)


def _toy_model(seed=3):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((5,))
    h = keras.layers.Activation("relu")(keras.layers.Dense(4)(inp))
    return keras.Model(inp, keras.layers.Dense(3)(h))


def _numpy_sgd_step(weights, x, y, lr):
    """One SGD step on the mean cross-entropy of (x, y), in float64 by hand."""
    w1, b1, w2, b2 = [np.asarray(w, dtype=np.float64) for w in weights]
    x = x.astype(np.float64)
    pre = x @ w1 + b1
    h = np.maximum(pre, 0.0)
    z = h @ w2 + b2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = p.copy()
    dz[np.arange(len(y)), y] -= 1.0
    dz /= len(y)
    dpre = (dz @ w2.T) * (pre > 0)
    grads = [x.T @ dpre, dpre.sum(0), h.T @ dz, dz.sum(0)]
    return [w - lr * g for w, g in zip((w1, b1, w2, b2), grads)]


def _dense_weights(model):
    return [w for layer in model.layers if isinstance(layer, keras.layers.Dense)
            for w in layer.get_weights()]


# tf_keras runs the case that accumulates most; the others check the same arithmetic
@pytest.mark.parametrize("accumulate,batch", [
    (4, 8), pytest.param(1, 32, marks=pytest.mark.single_backend),
    pytest.param(2, 16, marks=pytest.mark.single_backend)])
def test_accumulated_update_equals_one_big_batch_step(accumulate, batch):
    """k micro-batches of b: the weights move as one SGD step on the mean loss of all k*b
    examples (the whole 32-example search-train part, so the batch order does not matter),
    computed independently in NumPy. The warm start holds the cell at ReLU."""
    task = _toy_task()
    base = _toy_model()
    start = _dense_weights(base)
    (xt, yt), _ = split_search_data(*task.arrays("train"), 0.5, seed=0)
    assert len(xt) == 32
    lr = 0.5
    result = grafs_search(base, task, epochs=1, warm_start_epochs=1, batch_size=batch,
                          gradient_accumulation_steps=accumulate, seed=0, verbose=False,
                          train_fraction=0.5,
                          weight_optimizer=keras.optimizers.SGD(lr))
    assert len(result.history) == 1 and result.traces == 1
    expected = _numpy_sgd_step(start, xt, yt, lr)
    got = _dense_weights(result.model)
    assert not np.allclose(got[0], start[0])  # it did move
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_too_little_data_for_one_accumulated_iteration_is_an_error():
    with pytest.raises(ValueError, match="accumulation|examples"):
        grafs_search(_toy_model(), _toy_task(), epochs=1, batch_size=8, train_fraction=0.5,
                     gradient_accumulation_steps=5, verbose=False)


# ---------------------------------------------------------------- warm restarts

def test_cosine_warm_restarts_matches_the_closed_form():
    lr0, period, eta_min = 1e-3, 125, 1e-4
    schedule = CosineWarmRestarts(lr0, period, eta_min)
    steps = np.arange(0, 1001)
    got = np.array([float(schedule(int(t))) for t in steps[::7]] + [float(schedule(124)),
                                                                     float(schedule(125))])
    ts = list(steps[::7]) + [124, 125]
    expected = [eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * (t % period) / period)) / 2
                for t in ts]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-10)
    assert float(schedule(0)) == pytest.approx(lr0) and float(schedule(125)) == pytest.approx(lr0)
    assert float(schedule(62.5)) == pytest.approx((lr0 + eta_min) / 2, rel=1e-5)
    assert CosineWarmRestarts(**schedule.get_config()).get_config() == schedule.get_config()


# ---------------------------------------------------------------- presets

def test_presets_equal_the_tables():
    assert set(PRESETS) == {"resnet20_cifar10", "vit_tiny_cifar10", "minigpt_tinystories",
                            "mnist1d_cnn"}
    r = get_preset("resnet20_cifar10")  # Table 6
    assert (r.model, r.task, r.augmentation) == ("resnet_v1_20", "cifar10", "TrivialAugment")
    assert (r.epochs, r.batch_size, r.gradient_accumulation_steps) == (50, 32, 16)
    assert (r.learning_rate, r.betas, r.min_learning_rate) == (0.001, (0.9, 0.999), 0.0)
    assert (r.train_fraction, r.arch_learning_rate, r.arch_betas) == (0.75, 0.1, (0.9, 0.999))
    assert (r.warm_start_epochs, r.start_shrinking_epoch, r.weight_decay) == (1, 2, 0.0)
    assert "Table 6" in r.source and "TrivialAugment" in r.notes
    assert r.kwargs()["augment"] == "trivialaugment"
    v = get_preset("vit_tiny_cifar10")  # Table 7
    assert (v.model, v.task, v.augmentation) == ("vit_tiny", "cifar10", "TrivialAugment")
    assert (v.epochs, v.batch_size, v.gradient_accumulation_steps) == (50, 128, 4)
    assert (v.learning_rate, v.betas, v.min_learning_rate) == (0.001, (0.9, 0.999), 0.0)
    assert (v.train_fraction, v.arch_learning_rate, v.arch_betas) == (0.75, 0.001, (0.9, 0.999))
    assert (v.warm_start_epochs, v.start_shrinking_epoch) == (1, 2)
    assert "Table 7" in v.source and "TrivialAugment" in v.notes and v.targets == ("gelu",)
    g = get_preset("minigpt_tinystories")  # Table 9
    assert (g.model, g.task) == ("mini_gpt", "tinystories")
    assert (g.eval_interval, g.max_iters, g.batch_size, g.gradient_accumulation_steps) == (
        100, 1000, 4, 40)
    assert (g.train_fraction, g.arch_learning_rate, g.arch_betas) == (0.75, 1e-3, (0.9, 0.999))
    assert (g.arch_restart_period, g.arch_min_learning_rate) == (125, 1e-4)
    assert (g.warm_start_iterations, g.start_shrinking_iteration) == (100, 200)
    assert "Table 9" in g.source and "Table 10" in g.notes  # the assumed weight optimizer
    m = get_preset("mnist1d_cnn")
    assert (m.model, m.task, m.epochs, m.batch_size, m.recipe) == (
        "mnist1d_cnn", "mnist1d", 10, 64, "quick")


def test_iteration_preset_maps_onto_epochs_of_eval_interval():
    kw = get_preset("minigpt_tinystories").kwargs()
    assert (kw["epochs"], kw["steps_per_epoch"], kw["warm_start_epochs"],
            kw["start_shrinking_epoch"]) == (10, 100, 1, 2)
    assert (kw["gradient_accumulation_steps"], kw["arch_restart_period"]) == (40, 125)
    kw6 = get_preset("resnet20_cifar10").kwargs()
    assert "steps_per_epoch" not in kw6 and (kw6["epochs"], kw6["start_shrinking_epoch"]) == (
        50, 2)
    with pytest.raises(ValueError, match="multiple of eval_interval"):
        get_preset("minigpt_tinystories").replace(warm_start_iterations=150).kwargs()
    with pytest.raises(ValueError, match="resnet20_cifar10"):
        get_preset("nope")
    # a new warm start moves S = 2 E0 along
    assert get_preset("resnet20_cifar10").replace(warm_start_epochs=3).kwargs()[
        "start_shrinking_epoch"] == 6
    small = get_preset("minigpt_tinystories").replace(max_iters=4, eval_interval=1,
                                                      warm_start_iterations=1)
    assert (small.start_shrinking_iteration, small.kwargs()["start_shrinking_epoch"]) == (2, 2)


@pytest.mark.single_backend   # preset arithmetic; the search under tf_keras: the smoke test
def test_scaled_down_table9_preset_runs_iteration_based(mnist1d):
    """Table 9 scaled down on the MNIST-1D CNN: 6 iterations as 3 records of 2, warm start
    2 iterations, shrinking from iteration 4, accumulation 3, the cell's warm restarts."""
    settings = get_preset("minigpt_tinystories").replace(
        max_iters=6, eval_interval=2, warm_start_iterations=2, start_shrinking_iteration=4,
        batch_size=16, gradient_accumulation_steps=3, arch_restart_period=3,
        targets=("relu",))
    result = grafs_search(mnist1d_cnn(), mnist1d, seed=0, respecialize=1.0, verbose=False,
                          **settings.kwargs())
    assert [h["phase"] for h in result.history] == ["warm", "search", "search"]
    assert [h["dropped"] for h in result.history] == [0, 104, 0]
    assert result.traces == 1 and result.history[-1]["operators_left"] == [1] * 6
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["valid_loss"])
               for h in result.history)


# ---------------------------------------------------------------- command line

def test_cli_lists_presets_and_rejects_unknown(capsys):
    assert main(["search", "grafs", "--list-presets"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out
    assert "Table 9" in out
    code = main(["search", "grafs", "--preset", "resnet20", "-q"])
    assert code != 0
    err = capsys.readouterr().err
    assert "resnet20_cifar10" in err and "minigpt_tinystories" in err


@pytest.mark.single_backend   # the command line; the search under tf_keras: the smoke test
def test_cli_preset_scaled_down_on_mnist1d(capsys, tmp_path):
    """Table 6's preset with the flags overriding it: the MNIST-1D CNN, 2 epochs, 400
    training examples, batch 8 x 4 accumulated, no evaluation; well under a minute. The
    preset's TrivialAugment is left out (MNIST-1D is not images), and a rerun with the same
    --store finds the search finished."""
    argv = ["search", "grafs", "--preset", "resnet20_cifar10", "--task", "mnist1d",
            "--model", "cnn", "--epochs", "2", "--subset", "400", "--batch-size", "8",
            "--accumulation", "4", "--seeds", "1", "--final-seeds", "0",
            "--checkpoint", str(tmp_path / "ckpt"), "--store", str(tmp_path / "g.db")]
    start = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - start
    assert code == 0
    out = capsys.readouterr().out
    assert "resnet20_cifar10: mnist1d_cnn on mnist1d, batch 8 x 4, 2 epochs" in out
    assert "Table 6" in out and "not augmented" in out
    assert "GRAFS epoch 2/2 [search]" in out and "seed 0: " in out
    assert seconds < 60
    found = [line for line in out.splitlines() if line.startswith("seed 0: ")]
    assert (tmp_path / "ckpt" / "seed0" / "state.json").exists()
    assert main(argv) == 0
    again = capsys.readouterr().out
    # the journal has the finished seed: the rerun neither searches nor loads the checkpoint
    assert "GRAFS epoch" not in again and "resumed from" not in again
    assert [line for line in again.splitlines() if line.startswith("seed 0: ")][0].split(
        "  (")[0] == found[0].split("  (")[0]
