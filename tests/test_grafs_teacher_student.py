"""GRAFS teacher-student: does the search recover the activation that labelled the data?

A fixed random network ``y = v . tanh(W x + b)`` (2 inputs, 4 hidden units) labels Gaussian
inputs; GRAFS searches a student of the same shape (its original activation: ReLU) under a
mean-squared-error loss, and the exported function is compared with tanh.

Criterion (what "recovered" means). A Dense layer before and after the activation absorbs
any affine map of the activation's input and output, so the data identify the activation
only up to ``a f(c x + d) + b``. The found ``f`` recovers tanh when the best such map brings
it within a relative RMS error of ``TOLERANCE`` of tanh on 241 points of [-3, 3]
(RMS of the residual / standard deviation of tanh there). The bound admits tanh and its exact
affine equivalents (``sigmoid``: ``tanh(x) = 2 sigmoid(2x) - 1``) and rejects the nearest
other candidates of the search space: erf (1.0%), arctan (2.5%), arcsinh (5.5%), and every
non-saturating function (about 23%) -- checked below against the closed forms.

Search settings: 100 epochs (one warm start, shrinking from epoch 2), Adam(1e-2) for the
weights and for the cell. Measured (Keras 3, CPU, the cell of 2026-11-24: one traced cell
function, Dirichlet draws per site) over seeds 0-23: recovered in 14 of 24 (errors
0.0005-0.0087); the others ended on ReLU/ELU-like functions (0.22-0.23, 6 seeds), abs (an
even function, 1.0) or saturating mixtures just outside the bound (0.014, 0.034). The
earlier cell (2026-11-23, other random streams) recovered 5 of seeds 0-7, this one 4 of
them: the rate, not a seed set, is what the slow test checks, over 24 seeds. Every
recovered function is a mixture of saturating operators (tanh, erf, arctan, arcsinh) whose
argmax export matches tanh after the affine fit; the failures lock into non-saturating
operators in the first, largest drops (log schedule), before the student's weights have
settled. With 60 epochs, 4-5 of 8; with the ResNet20 cell learning rate of Table 6,
Adam(0.1), most seeds ended on erf-like mixtures (4-30% error); with the ViT setting,
Adam(1e-3), on saturating mixtures 1-4% away from tanh.
"""

import numpy as np
import pytest
from scipy.optimize import least_squares

from keras_actfn.backend import keras
from keras_actfn.data.tasks import Task
from keras_actfn.expr import evaluate, parse
from keras_actfn.search.grafs.search import grafs_search

TOLERANCE = 0.008
GRID = np.linspace(-3.0, 3.0, 241)
INPUTS, HIDDEN, EXAMPLES = 2, 4, 4096


def affine_error(text, reference=np.tanh, grid=GRID):
    """min over (a, b, c, d) of RMS(a f(c x + d) + b - ref(x)) / std(ref(x)) on ``grid``."""
    fn = parse(text)
    target = reference(grid)

    def f(v):
        with np.errstate(all="ignore"):
            return np.asarray(evaluate(fn, v), dtype=float) * np.ones_like(v)

    def residual(inner):
        y = f(inner[0] * grid + inner[1])
        design = np.stack([y, np.ones_like(grid)], axis=1)
        if not np.all(np.isfinite(design)):
            return np.full_like(grid, 1e3)
        outer, *_ = np.linalg.lstsq(design, target, rcond=None)
        return design @ outer - target

    best = np.inf
    for scale in (0.5, 1.0, 2.0, -1.0):
        fit = least_squares(residual, [scale, 0.0])
        best = min(best, float(np.sqrt(np.mean(fit.fun ** 2)) / np.std(target)))
    return best


def teacher_task(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 1.0, (INPUTS, HIDDEN))
    b = rng.normal(0.0, 0.5, HIDDEN)
    v = rng.normal(0.0, 1.0 / np.sqrt(HIDDEN), (HIDDEN, 1))
    x = rng.normal(0.0, 1.0, (EXAMPLES, INPUTS)).astype("float32")
    y = np.tanh(x @ w + b) @ v
    y = ((y - y.mean()) / y.std()).astype("float32")
    splits = {s: (x, y) for s in ("train", "validation", "test")}
    return Task(name="tanh_teacher", num_classes=1, input_shape=(INPUTS,), splits=splits,
                kind="regression")


def student():
    inputs = keras.Input((INPUTS,))
    h = keras.layers.Activation("relu")(keras.layers.Dense(HIDDEN)(inputs))
    return keras.Model(inputs, keras.layers.Dense(1)(h))


def search(task, seed):
    result = grafs_search(student, task, epochs=100, warm_start_epochs=1, batch_size=64,
                          learning_rate=1e-2, arch_learning_rate=1e-2,
                          loss=keras.losses.MeanSquaredError(), seed=seed, verbose=False)
    return result.function, affine_error(result.function)


def test_criterion_against_closed_forms():
    assert affine_error("tanh(x)") < 1e-6
    assert affine_error("sigmoid(x)") < 1e-4  # tanh(x) = 2 sigmoid(2x) - 1
    assert affine_error("3 * tanh(0.5 * x - 1) + 2", lambda v: np.tanh(0.5 * v - 1)) < 1e-4
    # the nearest distinct candidates fail, with the margins quoted in the docstring
    for text, low, high in (("erf(x)", 0.009, 0.012), ("arctan(x)", 0.02, 0.03),
                            ("arcsinh(x)", 0.05, 0.06), ("relu(x)", 0.2, 0.3),
                            ("x*sigmoid(x)", 0.2, 0.3), ("x", 0.2, 0.3)):
        error = affine_error(text)
        assert low < error < high, (text, error)
        assert error > TOLERANCE


def test_grafs_recovers_tanh_in_most_seeds():
    task = teacher_task()
    found = [search(task, seed) for seed in range(3)]
    recovered = [text for text, error in found if error < TOLERANCE]
    assert len(recovered) >= 2, found


@pytest.mark.slow
def test_grafs_recovers_tanh_in_most_of_24_seeds():
    task = teacher_task()  # ~5 minutes on 2 CPU cores
    found = [search(task, seed) for seed in range(24)]
    recovered = [text for text, error in found if error < TOLERANCE]
    assert len(recovered) >= 13, found  # a majority
