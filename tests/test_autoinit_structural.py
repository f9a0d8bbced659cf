"""AutoInit rules of the weight-free layers (estimators/structural.py) against the real layers.

Every rule's prediction for a tiny one-layer model is compared with a Monte Carlo estimate
from running the actual Keras layer (``training=True``) on a large seeded Gaussian input
with the same moments, over a grid of input means and variances. Output elements of one
batch item may be correlated (spatial dropout, pooling windows, normalization), so the
standard errors come from the spread of per-item statistics across the (independent) batch
items: per-item means for the mean, per-item mean squared deviations from the overall mean
for the variance. Tolerance: K_SE = 4 standard errors plus a small relative slack (REL_MEAN
of the output's root mean square for the mean, REL_VAR of the variance) for float32
rounding; the Monte Carlo rules (Softmax, Dot(normalize=True)) get 1-3 % more for the
rule's own sampling error.
"""

import itertools
import math
import warnings

import numpy as np
import pytest

from keras_actfn.autoinit import AutoInit
from keras_actfn.autoinit.estimators import structural as S
from keras_actfn.autoinit.moments import Moments
from keras_actfn.backend import KERAS3, keras

L = keras.layers
MEANS = (0.0, 0.7, -1.5)
VARS = (0.3, 1.0, 4.0)
GRID = list(itertools.product(MEANS, VARS))
PAIRS = [((0.0, 1.0), (0.7, 0.3)), ((0.7, 4.0), (-1.5, 1.0)), ((-1.5, 0.3), (0.0, 4.0)),
         ((0.7, 1.0), (0.7, 1.0))]
N_ELEMENTS = 2 ** 17   # input elements per Monte Carlo reference, at least
N_OUTPUTS = 2 ** 16    # output elements, at least
K_SE = 4.0
REL_MEAN = 2e-3
REL_VAR = 5e-3


# ------------------------------------------------------------------------------ helpers
def _predict(model, layer, moments, method="analytic"):
    """AutoInit's estimate for ``layer``; ``moments`` is one (mean, var) per model input."""
    means = [m for m, _ in moments]
    varis = [v for _, v in moments]
    ai = AutoInit(input_data_mean=means, input_data_var=varis)
    _, est = ai.initialize_model(model, return_estimates=True)
    (rec,) = [r for r in ai.records if r.layer == layer.name]
    assert rec.method == method, (layer.name, rec.method)
    return est[layer.name]


def _sample(shape, moments, seed, out=1):
    """A seeded Gaussian batch: at least N_ELEMENTS inputs and N_OUTPUTS outputs (``out``:
    output elements per item), at most 2**21 inputs."""
    size = max(math.prod(shape), 1)
    batch = max(256, N_ELEMENTS // size, N_OUTPUTS // max(out, 1))
    batch = min(batch, max(256, 2 ** 21 // size))
    rng = np.random.default_rng(seed)
    mean, var = moments
    return (rng.standard_normal((batch,) + tuple(shape)) * math.sqrt(var) + mean
            ).astype("float32")


def _reference(layer, xs):
    """The layer's training-mode output, one row per batch item (float64)."""
    arg = xs[0] if len(xs) == 1 else list(xs)
    y = np.asarray(layer(arg, training=True), dtype=np.float64)
    return y.reshape(y.shape[0], -1)


def _compare(pred, y, k=K_SE, rel_mean=REL_MEAN, rel_var=REL_VAR, label=""):
    """``pred`` vs the moments of ``y`` (rows: independent items, columns: elements that may
    be correlated). Standard errors from the spread of per-item statistics: the mean's from
    per-item means, the variance's from per-item mean squared deviations from the overall
    mean (delta method)."""
    b = y.shape[0]
    item_mean = y.mean(axis=1)
    m = item_mean.mean()
    item_dev = np.square(y - m).mean(axis=1)
    v = item_dev.mean()
    se_m = item_mean.std() / math.sqrt(b)
    se_v = item_dev.std() / math.sqrt(b)
    tol_m = k * se_m + rel_mean * math.sqrt(v + m * m) + 1e-5
    tol_v = k * se_v + rel_var * max(v, pred.var) + 1e-5
    assert abs(pred.mean - m) <= tol_m, f"{label}: mean {pred.mean} vs MC {m} (tol {tol_m})"
    assert abs(pred.var - v) <= tol_v, f"{label}: var {pred.var} vs MC {v} (tol {tol_v})"


def _model(make, shapes, same_input=False):
    inputs = [keras.Input(tuple(s)) for s in shapes]
    layer = make()
    if same_input:
        out = layer([inputs[0], inputs[0]])
    else:
        out = layer(inputs[0] if len(inputs) == 1 else inputs)
    return keras.Model(inputs, out), layer


def check_single(make, shape, grid=GRID, method="analytic", setup=None, **tol):
    """Rule vs real layer for one-input layers over the grid of input moments."""
    model, layer = _model(make, [shape])
    out = math.prod(d for d in model.output_shape[1:])
    if setup is not None:
        setup(layer)
    for i, (mean, var) in enumerate(grid):
        pred = _predict(model, layer, [(mean, var)], method)
        y = _reference(layer, [_sample(shape, (mean, var), seed=i, out=out)])
        _compare(pred, y, label=f"{layer.name} mu={mean} nu={var}", **tol)


def check_merge(make, shapes, pairs=PAIRS, method="analytic", **tol):
    """Rule vs real layer for merges of independent inputs with different moments."""
    model, layer = _model(make, shapes)
    out = math.prod(d for d in model.output_shape[1:])
    for i, moments in enumerate(pairs):
        pred = _predict(model, layer, list(moments), method)
        xs = [_sample(s, mo, seed=100 * i + j, out=out)
              for j, (s, mo) in enumerate(zip(shapes, moments))]
        batch = min(x.shape[0] for x in xs)
        y = _reference(layer, [x[:batch] for x in xs])
        _compare(pred, y, label=f"{layer.name} {moments}", **tol)


def _randomize(layer, seed=0):
    """Give gamma/beta (and other weights) non-trivial values."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        name = w.name.split("/")[-1].split(":")[0]
        if "gamma" in name:
            w.assign(rng.uniform(0.3, 2.0, tuple(w.shape)).astype("float32"))
        elif "beta" in name:
            w.assign(rng.normal(0.0, 0.8, tuple(w.shape)).astype("float32"))
        elif "moving_mean" in name:
            w.assign(rng.normal(0.0, 1.0, tuple(w.shape)).astype("float32"))
        elif "moving_variance" in name:
            w.assign(rng.uniform(0.2, 3.0, tuple(w.shape)).astype("float32"))


# ------------------------------------------------------------------ regularization noise
@pytest.mark.parametrize("make,shape", [
    (lambda: L.Dropout(0.3), (64,)),
    (lambda: L.Dropout(0.5, noise_shape=(None, 1, 8)), (8, 8)),
    (lambda: L.SpatialDropout1D(0.4), (16, 8)),
    (lambda: L.SpatialDropout2D(0.3), (8, 8, 4)),
    (lambda: L.SpatialDropout3D(0.25), (4, 4, 4, 4)),
    (lambda: L.AlphaDropout(0.2), (64,)),
    (lambda: L.AlphaDropout(0.6), (64,)),
    (lambda: L.GaussianNoise(0.5), (64,)),
    (lambda: L.GaussianDropout(0.3), (64,)),
], ids=["dropout", "dropout-noise-shape", "spatial1d", "spatial2d", "spatial3d", "alpha0.2",
        "alpha0.6", "gauss-noise", "gauss-dropout"])
def test_noise_layers(make, shape):
    check_single(make, shape)


def test_dropout_keeps_mu_squared_term():
    """Var y = (nu + rate mu^2)/(1 - rate), not the dissertation's nu/(1 - rate)."""
    out = S.dropout(L.Dropout(0.5), [Moments(2.0, 1.0)], None)
    assert out == pytest.approx(Moments(2.0, (1.0 + 0.5 * 4.0) / 0.5))


# ------------------------------------------------------------------------------ pooling
@pytest.mark.parametrize("make,shape", [
    (lambda: L.AveragePooling1D(3, strides=2, padding="same"), (15, 2)),
    (lambda: L.AveragePooling2D(2), (8, 8, 2)),
    (lambda: L.AveragePooling2D((2, 3), strides=(1, 2), padding="same"), (7, 9, 2)),
    (lambda: L.AveragePooling3D(2, padding="same"), (5, 5, 5, 1)),
    (lambda: L.MaxPooling1D(4), (16, 2)),
    (lambda: L.MaxPooling2D(3, strides=2, padding="same"), (9, 8, 2)),
    (lambda: L.MaxPooling2D(3, strides=1), (6, 6, 2)),
    (lambda: L.MaxPooling3D(2), (4, 4, 4, 2)),
    (lambda: L.MaxPooling3D(3, strides=2, padding="same"), (5, 4, 5, 1)),
    (lambda: L.GlobalAveragePooling1D(), (20, 3)),
    (lambda: L.GlobalAveragePooling2D(keepdims=True), (6, 7, 3)),
    (lambda: L.GlobalAveragePooling2D(data_format="channels_first"), (3, 6, 7)),
    (lambda: L.GlobalAveragePooling3D(), (3, 4, 5, 2)),
    (lambda: L.GlobalMaxPooling1D(), (20, 3)),
    (lambda: L.GlobalMaxPooling1D(data_format="channels_first"), (3, 20)),
    (lambda: L.GlobalMaxPooling2D(), (6, 6, 2)),
    (lambda: L.GlobalMaxPooling3D(keepdims=True), (3, 3, 3, 2)),
], ids=["avg1-same", "avg2", "avg2-same-strided", "avg3-same", "max1", "max2-same",
        "max2-overlap", "max3", "max3-same", "gap1", "gap2-keepdims", "gap2-cf", "gap3", "gmp1",
        "gmp1-cf", "gmp2", "gmp3-keepdims"])
def test_pooling(make, shape):
    check_single(make, shape)


def test_unknown_pooled_length_warns_and_keeps_moments():
    inp = keras.Input((None, 3))
    layer = L.GlobalAveragePooling1D()
    model = keras.Model(inp, layer(inp))
    with pytest.warns(UserWarning, match="unknown length"):
        assert _predict(model, layer, [(0.5, 2.0)]) == Moments(0.5, 2.0)


def test_window_counts_same_padding():
    # 7 elements, window 3, stride 2: 4 windows, padding total 2 -> one before, one after
    assert list(S.window_counts(7, 3, 2, "same")) == [2, 3, 3, 2]
    assert list(S.window_counts(8, 2, 2, "valid")) == [2, 2, 2, 2]
    dist = S.window_size_distribution([[2, 3], [1, 1]])
    assert dist == pytest.approx({2: 0.5, 3: 0.5})


# ------------------------------------------------------------------------ normalization
def _bn_frozen():
    layer = L.BatchNormalization()
    layer.trainable = False
    return layer


NORM_CASES = [
    (lambda: L.BatchNormalization(), (4, 3)),
    (lambda: L.BatchNormalization(center=False), (6,)),
    (lambda: L.BatchNormalization(scale=False, epsilon=0.1), (6,)),
    (lambda: L.BatchNormalization(axis=1), (3, 4)),
    (_bn_frozen, (5,)),
    (lambda: L.LayerNormalization(), (8,)),
    (lambda: L.LayerNormalization(epsilon=0.2), (3,)),
    (lambda: L.LayerNormalization(axis=[1, 2]), (4, 3)),
    (lambda: L.LayerNormalization(), (1,)),
    (lambda: L.LayerNormalization(center=False), (5,)),
    (lambda: L.GroupNormalization(groups=2), (5, 4)),
    (lambda: L.GroupNormalization(groups=3, epsilon=0.05), (6,)),
    (lambda: L.UnitNormalization(), (8,)),
    (lambda: L.UnitNormalization(), (2,)),
    (lambda: L.UnitNormalization(), (1,)),
    (lambda: L.UnitNormalization(axis=[1, 2]), (3, 4)),
]


@pytest.mark.parametrize("make,shape", NORM_CASES, ids=[
    "bn", "bn-nocenter", "bn-noscale", "bn-axis1", "bn-frozen", "ln", "ln-eps", "ln-2axes",
    "ln-1elem", "ln-nocenter", "gn", "gn-eps", "unit8", "unit2", "unit1", "unit-2axes"])
def test_normalization(make, shape):
    check_single(make, shape, setup=_randomize)


def test_batch_renormalization():
    def setup(layer):
        _randomize(layer)
        layer.renorm_mean.assign(np.array([0.5, -0.3, 0.0], "float32"))
        layer.renorm_stddev.assign(np.array([0.8, 1.7, 1.0], "float32"))

    def make():
        return L.BatchNormalization(renorm=True, renorm_momentum=1.0,
                                    renorm_clipping={"rmax": 1.5, "rmin": 0.5, "dmax": 0.8})
    check_single(make, (3,), setup=setup)


if KERAS3:  # rms_scaling exists only in Keras 3; the legacy process does not define it
    def test_layer_normalization_rms_scaling():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_single(lambda: L.LayerNormalization(rms_scaling=True), (4,), setup=_randomize)
            check_single(lambda: L.LayerNormalization(rms_scaling=True, epsilon=0.5), (2,),
                         setup=_randomize)


def test_normalization_uses_gamma_beta():
    layer = L.LayerNormalization()
    layer.build((None, 4))
    layer.gamma.assign(np.array([1.0, 2.0, 0.5, 1.0], "float32"))
    layer.beta.assign(np.array([1.0, -1.0, 0.0, 2.0], "float32"))
    out = S.layer_normalization(layer, [Moments(0.0, 1e6)], None)  # eps negligible
    assert out.mean == pytest.approx(0.5)
    assert out.var == pytest.approx((1 + 4 + 0.25 + 1) / 4 + (1 + 1 + 4) / 4 - 0.25, rel=1e-6)


# ------------------------------------------------------------------------------- merges
@pytest.mark.parametrize("make", [L.Add, L.Subtract, L.Average, L.Multiply, L.Maximum,
                                  L.Minimum], ids=lambda c: c.__name__)
def test_two_input_merges(make):
    check_merge(make, [(32,), (32,)])


@pytest.mark.parametrize("make", [L.Add, L.Average, L.Multiply, L.Maximum, L.Minimum],
                         ids=lambda c: c.__name__)
def test_three_input_merges(make):
    triples = [((0.0, 1.0), (0.7, 0.3), (-1.5, 4.0)), ((0.7, 4.0), (0.7, 4.0), (0.0, 0.3))]
    check_merge(make, [(32,)] * 3, pairs=triples)


@pytest.mark.parametrize("make", [L.Add, L.Subtract, L.Multiply, L.Maximum,
                                  lambda: L.Dot(axes=1)], ids=["add", "sub", "mul", "max",
                                                               "dot"])
def test_same_tensor_twice(make):
    model, layer = _model(make, [(16,)], same_input=True)
    for i, (mean, var) in enumerate(GRID):
        pred = _predict(model, layer, [(mean, var)])
        x = _sample((16,), (mean, var), seed=i)
        y = _reference(layer, [x, x])
        _compare(pred, y, label=f"{layer.name} mu={mean} nu={var}")


def test_maximum_with_constant_inputs():
    out = S.max_of_independent([Moments(1.0, 0.0), Moments(1.0, 0.0), Moments(0.0, 0.0)])
    assert out == pytest.approx(Moments(1.0, 0.0))
    out = S.max_of_independent([Moments(0.0, 1.0), Moments(0.0, 0.0)])  # relu of N(0, 1)
    assert out.mean == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-6)
    assert out.var == pytest.approx(0.5 - 1 / (2 * math.pi), rel=1e-6)


@pytest.mark.parametrize("make,shapes", [
    (lambda: L.Concatenate(), [(4, 3), (4, 7)]),
    (lambda: L.Concatenate(axis=1), [(2, 3), (5, 3)]),
    (lambda: L.Dot(axes=1), [(16,), (16,)]),
    (lambda: L.Dot(axes=(1, 2)), [(5, 3), (4, 5)]),
], ids=["concat-last", "concat-axis1", "dot", "dot-axes"])
def test_concatenate_and_dot(make, shapes):
    check_merge(make, shapes)


def test_dot_normalize_is_monte_carlo():
    check_merge(lambda: L.Dot(axes=1, normalize=True), [(6,), (6,)], method="monte_carlo",
                rel_mean=0.03, rel_var=0.03)


# -------------------------------------------------------------------- shape and padding
@pytest.mark.parametrize("make,shape", [
    (lambda: L.ZeroPadding1D((1, 2)), (6, 2)),
    (lambda: L.ZeroPadding2D(((1, 0), (2, 1))), (5, 4, 2)),
    (lambda: L.ZeroPadding3D(1), (3, 3, 3, 1)),
    (lambda: L.Cropping1D(1), (6, 2)),
    (lambda: L.Cropping2D(1), (6, 6, 2)),
    (lambda: L.Cropping3D(1), (4, 4, 4, 1)),
    (lambda: L.Reshape((4, 8)), (32,)),
    (lambda: L.Flatten(), (4, 8)),
    (lambda: L.Permute((2, 1)), (4, 8)),
    (lambda: L.RepeatVector(3), (8,)),
    (lambda: L.Identity(), (8,)),
    (lambda: L.Masking(0.0), (5, 4)),
    (lambda: L.UpSampling1D(2), (8, 2)),
    (lambda: L.UpSampling2D(2), (4, 4, 2)),
    (lambda: L.UpSampling2D((2, 3), interpolation="bilinear"), (5, 4, 2)),
    (lambda: L.UpSampling2D(2, interpolation="bicubic"), (6, 6, 1)),
    (lambda: L.UpSampling2D(2, data_format="channels_first", interpolation="bilinear"),
     (1, 4, 5)),
    (lambda: L.UpSampling3D(2), (2, 2, 2, 1)),
], ids=["zp1", "zp2", "zp3", "crop1", "crop2", "crop3", "reshape", "flatten", "permute",
        "repeat", "identity", "masking", "up1", "up2", "up2-bilinear", "up2-bicubic",
        "up2-bilinear-cf", "up3"])
def test_shape_layers(make, shape):
    check_single(make, shape)


def test_zero_padding_is_a_mixture():
    """Var y = (1-z) nu + z(1-z) mu^2, not the dissertation's (1-z) nu."""
    model, layer = _model(lambda: L.ZeroPadding1D((1, 1)), [(2, 1)])  # z = 1/2
    pred = _predict(model, layer, [(2.0, 1.0)])
    assert pred == pytest.approx(Moments(1.0, 0.5 * 1.0 + 0.25 * 4.0))


# ----------------------------------------------------------- elementwise affine layers
def _adapted_normalization(invert=False):
    layer = L.Normalization(axis=-1, invert=invert)
    rng = np.random.default_rng(7)
    layer.adapt(rng.normal([1.0, -2.0, 0.0], [0.5, 3.0, 1.0], (512, 3)).astype("float32"))
    return layer


@pytest.mark.parametrize("make,shape", [
    (lambda: L.Rescaling(1.0 / 255), (16,)),
    (lambda: L.Rescaling(2.0, offset=-1.0), (16,)),
    (lambda: L.Rescaling(scale=[0.5, 2.0, -1.0], offset=[0.1, -0.2, 0.3]), (4, 3)),
    (lambda: L.Normalization(mean=[1.0, -2.0, 0.5], variance=[4.0, 0.25, 1.0]), (2, 3)),
    (lambda: L.Normalization(mean=[1.0, -2.0, 0.5], variance=[4.0, 0.25, 1.0], invert=True),
     (2, 3)),
    (_adapted_normalization, (3,)),
    (lambda: _adapted_normalization(invert=True), (3,)),
], ids=["rescale", "rescale-offset", "rescale-arrays", "norm", "norm-invert", "norm-adapted",
        "norm-adapted-invert"])
def test_affine_layers(make, shape):
    check_single(make, shape)


@pytest.mark.parametrize("make,shape", [
    (lambda: L.Softmax(), (10,)),
    (lambda: L.Softmax(axis=1), (6, 3)),
], ids=["softmax", "softmax-axis1"])
def test_softmax_is_monte_carlo(make, shape):
    check_single(make, shape, grid=[(0.0, 0.3), (0.7, 1.0), (-1.5, 4.0)],
                 method="monte_carlo", rel_mean=0.01, rel_var=0.03)


# ----------------------------------------------------------------------------- registry
def test_every_layer_has_a_rule():
    from keras_actfn.autoinit import estimators

    estimators.load_all()
    names = """Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D AlphaDropout
    GaussianNoise GaussianDropout AveragePooling1D AveragePooling2D AveragePooling3D
    MaxPooling1D MaxPooling2D MaxPooling3D GlobalAveragePooling1D GlobalAveragePooling2D
    GlobalAveragePooling3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D
    BatchNormalization LayerNormalization GroupNormalization UnitNormalization Add Subtract
    Average Multiply Maximum Minimum Concatenate Dot ZeroPadding1D ZeroPadding2D
    ZeroPadding3D Cropping1D Cropping2D Cropping3D Reshape Flatten Permute UpSampling1D
    UpSampling2D UpSampling3D RepeatVector Identity Masking Rescaling Normalization
    Softmax""".split()
    missing = [n for n in names if getattr(L, n, None) is not None and
               getattr(L, n) not in estimators.REGISTRY]
    assert not missing
