"""AutoInit core: distributions, in-place guarantees, rules lookup, fallback, errors."""

import math
import warnings

import numpy as np
import pytest

from keras_actfn.autoinit import AutoInit, AutoInitError, Moments, gaussian_expect
from keras_actfn.autoinit.moments import max_of_normals
from keras_actfn.autoinit.weights import DISTRIBUTIONS, sample
from keras_actfn.backend import keras
from keras_actfn.expr import evaluate, gaussian_moments, parse
from keras_actfn.layers import CustomActivation


def mlp(activation="relu", widths=(64, 64, 64), input_dim=32):
    inp = keras.Input((input_dim,))
    x = inp
    for w in widths:
        x = keras.layers.Dense(w, activation=activation)(x)
    return keras.Model(inp, keras.layers.Dense(10)(x))


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("shape", [(300, 200), (3, 3, 40, 60), (50, 400)])
def test_every_distribution_draws_the_requested_variance(distribution, shape):
    rng = np.random.default_rng(0)
    w = sample(shape, 0.37, distribution, rng).astype(np.float64)
    n = w.size
    # variance of the sample variance of n draws with kurtosis <= 3: ~ 2 v^2 / n
    assert abs(w.var() - 0.37) < 5 * 0.37 * math.sqrt(2.0 / n) + (1e-6 if distribution ==
                                                                    "orthogonal" else 0)
    assert abs(w.mean()) < 5 * math.sqrt(0.37 / n)
    if distribution == "truncated_normal":
        assert np.abs(w).max() <= 2 * math.sqrt(0.37) / 0.8796 + 1e-6
    if distribution == "uniform":
        assert np.abs(w).max() <= math.sqrt(3 * 0.37) + 1e-6


def test_orthogonal_columns_are_orthogonal():
    w = sample((3, 3, 16, 32), 1.0, "orthogonal", np.random.default_rng(1), fan_in=144)
    cols = w.reshape(144, 32).astype(np.float64)
    gram = cols.T @ cols
    np.testing.assert_allclose(gram, np.eye(32) * gram[0, 0], atol=1e-4)


def test_gaussian_expect_agrees_with_adaptive_quadrature():
    for text in ("relu(x)", "swish(x)", "hard_sigmoid(x)", "alpha*x - log(sigmoid(x))",
                 "max(swish(x), alpha*log(sigmoid(relu(x))))", "abs(x)^0.5"):
        expr = parse(text)
        for mean, var in ((0.0, 1.0), (0.8, 0.3), (-1.5, 4.0)):
            m1, m2 = gaussian_moments(expr, mean, var)
            fast = gaussian_expect(lambda x: evaluate(expr, x), mean, var)
            # kinks cost ~1e-7; the infinite-slope cusp of |x|^0.5 costs up to ~7e-5
            tol = 1e-4 if "^0.5" in text else 1e-6
            assert abs(fast.mean - m1) < tol * (1 + abs(m1)), (text, mean, var)
            assert abs(fast.var - (m2 - m1 * m1)) < tol * (1 + m2), (text, mean, var)


def test_max_of_normals_matches_monte_carlo_and_closed_form():
    e1, e2 = max_of_normals(2)
    assert abs(e1 - 1 / math.sqrt(math.pi)) < 1e-8 and abs(e2 - 1.0) < 1e-8  # closed forms
    z = np.random.default_rng(0).standard_normal((400_000, 9)).max(axis=1)
    e1, e2 = max_of_normals(9)
    assert abs(e1 - z.mean()) < 5 * z.std() / math.sqrt(z.size)
    assert abs(e2 - (z * z).mean()) < 5 * (z * z).std() / math.sqrt(z.size)


def test_weights_are_set_in_place_and_compile_state_survives():
    model = mlp()
    model.compile(optimizer="adam", loss="mse")
    variables = {id(v): v for v in model.weights}
    before = [v.numpy().copy() for v in model.weights]
    optimizer = model.optimizer
    returned = AutoInit(seed=0).initialize_model(model)
    assert returned is model and model.optimizer is optimizer
    assert {id(v) for v in model.weights} == set(variables)
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.weights)]
    assert all(changed[0::2])  # every kernel was redrawn
    assert all(np.all(v.numpy() == 0) for v in model.weights[1::2])  # biases zeroed
    model.fit(np.zeros((8, 32)), np.zeros((8, 10)), verbose=0, epochs=1)


def test_kept_layers_are_untouched_and_propagated_through_their_weights():
    keras.utils.set_random_seed(0)
    model = mlp(widths=(512, 512))  # wide: one draw of weights is close to its expectation
    keep = model.layers[1]
    keep.kernel.assign(keep.kernel.numpy() * 5.0)  # a "pretrained" layer with a big scale
    before = [w.numpy().copy() for w in keep.weights]
    init = AutoInit(keep=[keep.name], seed=0)
    _, est = init.initialize_model(model, return_estimates=True)
    for b, w in zip(before, keep.weights):
        np.testing.assert_array_equal(b, w.numpy())
    x = np.random.default_rng(0).standard_normal((20000, 32)).astype("float32")
    pre = x @ keep.kernel.numpy() + keep.bias.numpy()
    relu = np.maximum(pre, 0)
    assert abs(est[keep.name].mean - relu.mean()) < 0.05 * relu.std() + 0.01
    assert abs(est[keep.name].var / relu.var() - 1) < 0.1
    # the next layer compensates the big scale: its output is back to unit variance
    nxt = model.layers[2]
    y = np.maximum(relu @ nxt.kernel.numpy(), 0)
    assert abs(est[nxt.name].var / y.var() - 1) < 0.15


@pytest.mark.parametrize("variance", [0.25, 1.0, 3.0])
def test_signal_variance_is_reached_at_weighted_layers(variance):
    model = mlp(activation=None, widths=(256, 256))
    AutoInit(signal_variance=variance, seed=1).initialize_model(model)
    probe = keras.Model(model.inputs[0], [l.output for l in model.layers[1:]])
    x = np.random.default_rng(2).standard_normal((4096, 32)).astype("float32")
    for out in probe(x):
        second = float(np.mean(np.square(out.numpy())))
        assert 0.8 * variance < second < 1.25 * variance


def test_user_rules_apply_to_subclasses_and_win():
    class MyDense(keras.layers.Dense):
        pass

    calls = []

    def rule(layer, inputs, ctx):
        calls.append(layer.name)
        return Moments(0.5, 2.0)

    inp = keras.Input((8,))
    out = keras.layers.Dense(3)(MyDense(4)(inp))
    model = keras.Model(inp, out)
    init = AutoInit(custom_distribution_estimators={keras.layers.Dense: rule})
    _, est = init.initialize_model(model, return_estimates=True)
    assert len(calls) == 2 and est[model.layers[1].name] == Moments(0.5, 2.0)


def test_unknown_layer_falls_back_to_monte_carlo_once_per_class():
    class Triple(keras.layers.Layer):
        def call(self, x):
            return 3.0 * x + 1.0

    inp = keras.Input((16,))
    x = Triple()(Triple()(inp))
    model = keras.Model(inp, keras.layers.Dense(4)(x))
    init = AutoInit(input_data_mean=0.5, input_data_var=2.0, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, est = init.initialize_model(model, return_estimates=True)
    assert sum("Monte Carlo" in str(w.message) for w in caught) == 1
    first = est[model.layers[1].name]
    assert abs(first.mean - 2.5) < 0.05 and abs(first.var / 18.0 - 1) < 0.05
    assert [r.method for r in init.records][:2] == ["monte_carlo", "monte_carlo"]


def test_autoinit_plus_plus_centers_custom_activations():
    inp = keras.Input((32,))
    x = keras.layers.Dense(64)(inp)
    x = CustomActivation("swish(x)")(x)
    x = keras.layers.Dense(64, activation=CustomActivation("relu(x)"))(x)
    model = keras.Model(inp, x)
    # the published behaviour: every pre-activation is N(0, 1) -> centered exactly
    _, est = AutoInit(center_activations=True, seed=0, match_draw=False).initialize_model(
        model, return_estimates=True)
    acts = [l for l in model.layers if isinstance(l, CustomActivation)]
    assert acts[0].center and math.isclose(acts[0].shift, gaussian_moments("swish(x)")[0])
    assert model.layers[-1].activation.center
    assert abs(est[acts[0].name].mean) < 1e-6
    y = model(np.random.default_rng(0).standard_normal((8192, 32)).astype("float32")).numpy()
    assert abs(y.mean()) < 0.1
    # per-unit tracking of this draw: unit u is N(0, v_u) with v_u near 1, so the centered
    # activation's mean is near 0 per unit and its tracked value matches the empirical one
    _, est = AutoInit(center_activations=True, seed=0).initialize_model(model,
                                                                          return_estimates=True)
    x = np.random.default_rng(1).standard_normal((20000, 32)).astype("float32")
    h = keras.Model(model.inputs, acts[0].output)([x]).numpy()
    assert abs(est[acts[0].name].mean) < 0.01
    np.testing.assert_allclose(est[acts[0].name].means, h.mean(axis=0), atol=0.01)


@pytest.mark.parametrize("kwargs", [dict(input_data_mean=float("nan")),
                                    dict(input_data_var=-1.0),
                                    dict(input_data_var=float("inf")),
                                    dict(input_data_mean=[0.0, 1.0])])
def test_bad_input_moments_raise(kwargs):
    with pytest.raises(AutoInitError):
        AutoInit(**kwargs).initialize_model(mlp())


@pytest.mark.parametrize("kwargs", [dict(signal_variance=0.0), dict(signal_variance=float("nan")),
                                    dict(distribution="cauchy"),
                                    dict(weight_init_config={"scale": 2}),
                                    dict(custom_distribution_estimators={"Dense": print})])
def test_bad_arguments_raise(kwargs):
    with pytest.raises((AutoInitError, ValueError)):
        AutoInit(**kwargs)


def test_model_without_functional_graph_gets_a_clear_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(3)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(AutoInitError, match="functional graph"):
        AutoInit().initialize_model(net)


def test_seed_makes_weights_reproducible():
    a, b = mlp(), mlp()
    AutoInit(seed=7).initialize_model(a)
    AutoInit(seed=7).initialize_model(b)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())


def test_published_api_shape():
    init = AutoInit(weight_init_config={"distribution": "uniform"}, input_data_mean=0.0,
                    input_data_var=1.0, custom_distribution_estimators=None,
                    signal_variance=1.0)
    model, est = init.initialize_model(mlp(), return_estimates=True, custom_objects=None)
    assert isinstance(model, keras.Model) and init.distribution == "uniform"
    assert all(isinstance(m, Moments) for m in est.values())
    w = model.layers[2].kernel.numpy()
    assert np.abs(w).max() <= math.sqrt(3 * w.var() * 1.2)  # uniform support


def test_per_channel_quadrature_matches_relu_closed_form():
    """E relu(X), E relu(X)^2 for X ~ N(m, s^2): m*Phi(m/s) + s*phi(m/s) and
    (m^2 + s^2)*Phi(m/s) + m*s*phi(m/s), per channel, on the coarse per-channel grid."""
    from scipy.stats import norm

    from keras_actfn.autoinit.moments import gaussian_expect_channels

    means = np.array([-3.0, -1.0, -0.2, 0.0, 0.3, 1.0, 2.5, 6.0])
    sds = np.array([0.05, 0.5, 1.0, 1.0, 2.0, 0.3, 4.0, 1.5])
    got = gaussian_expect_channels(lambda x: np.maximum(x, 0.0), means, sds ** 2)
    u = means / sds
    m1 = means * norm.cdf(u) + sds * norm.pdf(u)
    m2 = (means ** 2 + sds ** 2) * norm.cdf(u) + means * sds * norm.pdf(u)
    scale = np.sqrt(means ** 2 + sds ** 2)  # kinks in the far tail: absolute error matters
    assert np.all(np.abs(got.means - m1) <= 2e-3 * np.abs(m1) + 1e-4 * scale)
    assert np.all(np.abs(got.variances - (m2 - m1 ** 2)) <= 5e-3 * (m2 - m1 ** 2) +
                  1e-4 * scale ** 2)
