"""AutoInit end to end: signal propagation in deep unnormalized ResNets, and the closed-form
special cases (He, LeCun, SELU's fixed point) measured on the weights it draws.

Every check here is empirical: a model is run on seeded Gaussian input and the variance of
each weighted layer's output (its pre-activation: the Conv2D/Dense layers of ``resnet_v1``
carry no ``activation=``) is measured, or the drawn weights' sample variance is compared
with the formula, within the sampling error of that many weights.

AutoInit's scalar model (the published one, ``match_draw=False``) controls the *expected*
output variance over weight draws: one draw of a 16-channel unnormalized ResNet-v1 wanders
far from it (up to ~13x here). Two things the scalar model cannot see make the difference:
the post-Add ReLU stream has a large mean, which each draw turns into per-channel offsets
with only C_out degrees of freedom; and zero padding makes those means lower at the
borders, which in the 8x8 third stage grows into most of the signal. ``match_draw=True``
(the default) tracks per-channel means and variances plus the mean map of every feature
map, and rescales each kernel for the draw it got: one draw then stays within [0.5, 2] of
the target at every weighted layer, which is what is asserted.
"""

import warnings

import numpy as np
import pytest

from keras_actfn.autoinit import AutoInit
from keras_actfn.backend import keras
from keras_actfn.models import resnet_depth_config, resnet_v1

WEIGHTED = (keras.layers.Conv2D, keras.layers.Dense)
BAND = (0.5, 2.0)  # empirical / target variance


def _autoinit(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Monte Carlo notices for layers without a rule
        return AutoInit(**kwargs).initialize_model(model)


def _weighted(model):
    return [layer for layer in model.layers if isinstance(layer, WEIGHTED)]


def _probe(model, layers):
    return keras.Model(model.inputs, [layer.output for layer in layers])


def _variances(probe, x):
    return np.array([float(np.var(np.asarray(o, dtype=np.float64))) for o in probe([x])])


def _gaussian(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


# ------------------------------------------------------------------------- the ResNets
@pytest.mark.parametrize("depth, params", [(56, 0.85e6), (110, 1.7e6), (164, 1.7e6)])
def test_resnet_v1_parameter_counts(depth, params):
    """He et al. (2016): ResNet-56 0.85M, ResNet-110 1.7M, ResNet-164 (bottleneck) 1.7M."""
    model = resnet_v1(depth)
    assert model.count_params() == pytest.approx(params, rel=0.05)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    projections = [c for c in convs if c.name.endswith("_proj")]
    # the depth counts the main-path weighted layers: convolutions plus the read-out
    assert len(convs) - len(projections) + 1 == depth
    assert model.output_shape == (None, 10)


def test_resnet_depth_conventions():
    assert resnet_depth_config(20) == (3, False)
    assert resnet_depth_config(110) == (18, False)
    assert resnet_depth_config(164) == (18, True)     # 9n + 2, bottleneck (He et al.)
    assert resnet_depth_config(812) == (90, True)
    assert resnet_depth_config(164, bottleneck=False) == (27, False)
    for bad in (21, 7):
        with pytest.raises(ValueError, match="depth"):
            resnet_depth_config(bad)
    with pytest.raises(ValueError, match="9n"):
        resnet_depth_config(32, bottleneck=True)


def test_resnet_activation_specs():
    from keras_actfn import CustomActivation

    model = resnet_v1(20, input_shape=(8, 8, 3), activation="x*sigmoid(x)", batchnorm=False)
    acts = [layer for layer in model.layers if isinstance(layer, CustomActivation)]
    assert len(acts) == 1 + 9 * 2 and acts[0].name == "stem_act"
    model = resnet_v1(20, input_shape=(8, 8, 3), activation=lambda: keras.layers.ELU())
    assert sum(isinstance(layer, keras.layers.ELU) for layer in model.layers) == 19
    assert sum(isinstance(layer, keras.layers.BatchNormalization)
               for layer in model.layers) == 19 + 2


# ------------------------------------------------------------------ deep unnormalized ResNet
@pytest.fixture(scope="module")
def resnet110():
    """ResNet-v1-110 without BatchNormalization: 278 layers, 112 of them weighted."""
    model = resnet_v1(110, batchnorm=False, input_shape=(32, 32, 3))
    layers = _weighted(model)
    probe = _probe(model, layers)
    x = _gaussian((8, 32, 32, 3))
    default = _variances(probe, x)          # he_normal convolutions, as built
    scalar = []
    for seed in range(3):                   # the published scalar model, one draw each
        _autoinit(model, seed=seed, match_draw=False)
        scalar.append(_variances(probe, x))
    tracked = []
    for seed in range(3):                   # per-channel tracking, one draw each
        _autoinit(model, seed=seed)
        tracked.append(_variances(probe, x))
    return {"model": model, "layers": layers, "default": default, "autoinit": tracked[0],
            "scalar_draws": np.array(scalar), "tracked_draws": np.array(tracked)}


def test_resnet110_is_deep_and_unnormalized(resnet110):
    model = resnet110["model"]
    assert len(model.layers) >= 100
    assert len(resnet110["layers"]) == 112  # stem + 54 blocks x 2 convs, 2 projections, logits
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    # no weighted layer applies an activation itself: its output is the pre-activation
    assert all(layer.get_config().get("activation") in (None, "linear")
               for layer in resnet110["layers"])


def test_default_init_explodes_autoinit_does_not(resnet110):
    default, auto = resnet110["default"], resnet110["autoinit"]
    # default (he_normal): the residual stream doubles its variance every block
    last = default[-10:]
    assert np.all((last > BAND[1]) | (last < BAND[0])), last
    assert default[-1] > 1e6 and np.all(default[-10:] > 1e6)
    # AutoInit, one weight draw: ~15 orders of magnitude below the default init at the end
    s = 1.0
    assert np.all(np.isfinite(auto))
    assert default[-1] / auto[-1] > 1e6
    for draw in resnet110["tracked_draws"]:
        assert np.median(draw) == pytest.approx(s, rel=0.25)


def test_tracking_channels_beats_the_scalar_model_on_every_draw(resnet110):
    """Worst layer's deviation |log(var / target)| per draw: the published scalar model
    (mean over draws right, one draw off by up to ~13x) vs per-channel tracking."""
    worst = lambda draws: np.abs(np.log(draws)).max(axis=1)  # noqa: E731
    scalar, tracked = worst(resnet110["scalar_draws"]), worst(resnet110["tracked_draws"])
    assert np.all(tracked < np.log(2)), np.exp(tracked)
    assert np.all(tracked < scalar), (np.exp(tracked), np.exp(scalar))
    assert np.exp(scalar).max() > 4  # the gap the tracking closes is real


def test_every_weighted_layer_within_band_for_one_draw(resnet110):
    """The issue's requirement, for each of three independent draws."""
    for seed, draw in enumerate(resnet110["tracked_draws"]):
        bad = [(layer.name, round(v, 3)) for layer, v in zip(resnet110["layers"], draw)
               if not BAND[0] <= v <= BAND[1]]
        assert not bad, (seed, bad)


def test_tracked_channel_moments_match_the_network():
    """Per-channel means AutoInit predicts for one draw vs the network's, measured on
    Gaussian input (ResNet-v1-20 without BatchNormalization, 16x16 input)."""
    model = resnet_v1(20, batchnorm=False, input_shape=(16, 16, 3))
    ai = AutoInit(seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, est = ai.initialize_model(model, return_estimates=True)
    sites = [layer for layer in model.layers if isinstance(layer, WEIGHTED) or
             layer.name.endswith("_out")]
    outs = _probe(model, sites)([_gaussian((256, 16, 16, 3), seed=6)])
    for layer, out in zip(sites, outs):
        out = np.asarray(out, dtype=np.float64)
        out = out.reshape(-1, out.shape[-1])
        pred = est[layer.name]
        spread = out.mean(axis=0).std()
        # channel means: the prediction follows the draw (per-channel offsets up to ~3)
        np.testing.assert_allclose(pred.means, out.mean(axis=0), rtol=0.1,
                                   atol=0.1 * max(1.0, spread) + 0.05, err_msg=layer.name)
        assert pred.var == pytest.approx(out.var(), rel=0.2), layer.name


def test_autoinit_is_unbiased_over_weight_draws():
    """Mean over 12 AutoInit draws of every weighted layer's output variance is within
    [0.8, 1.25] x signal_variance (ResNet-v1-56 without BatchNormalization: 142 layers).
    Measured: [0.94, 1.07] over 10 draws, [0.95, 1.09] over 40 -- a band tighter than the
    single-draw BAND, which more draws would not make more telling."""
    model = resnet_v1(56, batchnorm=False, input_shape=(32, 32, 3))
    layers = _weighted(model)
    probe = _probe(model, layers)
    x = _gaussian((4, 32, 32, 3))
    s = 2.0  # a non-unit target: every layer should follow it
    draws = []
    for seed in range(12):
        _autoinit(model, seed=seed, signal_variance=s)
        draws.append(_variances(probe, x))
    mean = np.mean(draws, axis=0) / s
    bad = [(layer.name, round(v, 3)) for layer, v in zip(layers, mean)
           if not 0.8 <= v <= 1.25]
    assert not bad, bad


def test_same_padding_on_small_maps_keeps_variance():
    inputs = keras.Input((4, 4, 32))
    x = inputs
    for _ in range(8):
        x = keras.layers.Conv2D(32, 3, padding="same")(x)
    model = keras.Model(inputs, x)
    _autoinit(model, seed=0)
    v = _variances(_probe(model, _weighted(model)), _gaussian((256, 4, 4, 32)))
    assert np.all((v > BAND[0]) & (v < BAND[1])), v


# ----------------------------------------------------------- closed-form special cases
def _relative_tolerance(n, sigmas=5.0):
    # sample variance of n zero-mean weights: relative standard error sqrt((kurtosis-1)/n),
    # kurtosis <= 3 for the (truncated) normal draws
    return sigmas * np.sqrt(2.0 / n)


def _assert_weight_variance(layer, expected):
    kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
    n = kernel.size
    assert abs(kernel.mean()) < 5 * np.sqrt(expected / n)
    assert kernel.var() == pytest.approx(expected, rel=_relative_tolerance(n)), layer.name
    if layer.use_bias:
        assert np.all(layer.bias.numpy() == 0.0)


def _gauss_expect(fn, var=1.0, points=200):
    """E fn(Z), Z ~ N(0, var), by Gauss-Hermite (independent of AutoInit's quadrature)."""
    z, w = np.polynomial.hermite_e.hermegauss(points)
    return float(np.sum(w * fn(np.sqrt(var) * z)) / np.sqrt(2.0 * np.pi))


@pytest.mark.parametrize("s", [1.0, 0.5])
def test_relu_mlp_gets_he_initialization(s):
    inputs = keras.Input((64,))
    x = inputs
    for width in (512, 512, 256):
        x = keras.layers.Dense(width, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    _autoinit(model, seed=1, signal_variance=s, match_draw=False)  # the closed form itself
    layers = _weighted(model)
    # first layer: zero-mean unit-variance input, E x^2 = 1 -> s / fan_in
    _assert_weight_variance(layers[0], s / 64)
    # deeper: s / (fan_in * E relu(z)^2), z ~ N(0, s); E relu(z)^2 = s/2 -> He's 2/fan_in
    second = _gauss_expect(lambda z: np.maximum(z, 0.0) ** 2, var=s)
    assert second == pytest.approx(s / 2, rel=1e-9)
    for layer in layers[1:]:
        fan_in = layer.kernel.shape[0]
        _assert_weight_variance(layer, s / (fan_in * second))
        assert s / (fan_in * second) == pytest.approx(2.0 / fan_in)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_relu_cnn_gets_he_initialization(padding):
    inputs = keras.Input((12, 12, 3))
    x = inputs
    for filters in (64, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding=padding)(x)
        x = keras.layers.ReLU()(x)
    model = keras.Model(inputs, x)
    _autoinit(model, seed=2, match_draw=False)
    convs = _weighted(model)

    def border_factor(length):
        # 'same' 3-tap windows: the tap matrix is the tridiagonal all-ones band, whose
        # Perron root is 1 + 2 cos(pi / (L + 1)); per layer the signal keeps root / 3
        return 1.0 if padding == "valid" else ((1 + 2 * np.cos(np.pi / (length + 1))) / 3) ** 2

    sizes = [12, 10, 8] if padding == "valid" else [12, 12, 12]
    _assert_weight_variance(convs[0], 1.0 / (3 * 3 * 3) / border_factor(sizes[0]))
    for conv, size in zip(convs[1:], sizes[1:]):
        fan_in = int(np.prod(conv.kernel.shape[:-1]))
        _assert_weight_variance(conv, 2.0 / fan_in / border_factor(size))


@pytest.mark.parametrize("activation", [None, "tanh"])
def test_linear_and_tanh_mlp_get_lecun_initialization(activation):
    inputs = keras.Input((128,))
    x = inputs
    for _ in range(4):
        x = keras.layers.Dense(256, activation=activation)(x)
    model = keras.Model(inputs, x)
    _autoinit(model, seed=3)
    layers = _weighted(model)
    _assert_weight_variance(layers[0], 1.0 / 128)
    second = 1.0 if activation is None else _gauss_expect(lambda z: np.tanh(z) ** 2)
    for layer in layers[1:]:
        _assert_weight_variance(layer, 1.0 / (256 * second))


def test_deep_selu_mlp_stays_at_the_fixed_point():
    inputs = keras.Input((64,))
    x = inputs
    for _ in range(32):
        x = keras.layers.Dense(256, activation="selu")(x)
    model = keras.Model(inputs, x)
    _autoinit(model, seed=4)
    outs = _probe(model, _weighted(model))([_gaussian((2048, 64), seed=5)])
    for i, out in enumerate(outs):
        out = np.asarray(out, dtype=np.float64)
        assert abs(out.mean()) < 0.1, (i, out.mean())
        assert 0.8 <= out.var() <= 1.25, (i, out.var())
