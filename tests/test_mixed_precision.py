"""CustomActivation, the GRAFS cell and AutoInit under the ``mixed_float16`` policy (issue 20).

Values travel in float16; the functions are computed in float32 and cast back, finite
values saturating at the float16 range. Each check compares with the float32 computation on
the same (float16-rounded) inputs within float16 tolerance, and that nothing is NaN or inf
where the float32 result is finite. The policy is set and restored by a fixture. Shared with
the legacy-Keras suite (tests/legacy/test_fused_legacy.py)."""

import numpy as np
import pytest

from keras_actfn.backend import keras, tf
from keras_actfn.layers import CustomActivation
from keras_actfn.search.grafs.cell import CellParameters, SearchCell

F16_MAX = float(np.finfo(np.float16).max)
RTOL, ATOL = 2e-3, 1e-4          # float16: 11 significant bits (2^-11 = 4.9e-4 relative)


@pytest.fixture
def mixed():
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def _policy_name(layer):
    policy = getattr(layer, "dtype_policy", None) or getattr(layer, "_dtype_policy")
    return policy.name


def _close16(got, want):
    """``got`` (float16 result) within float16 rounding of ``want`` (float32, or float16's
    largest finite value where ``want`` is beyond it)."""
    got = np.asarray(got, np.float64)
    want = np.clip(np.asarray(want, np.float64), -F16_MAX, F16_MAX)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# half-float trouble spots: exp(12) = 162755 and cosh(12) overflow float16 (their ratio,
# computed there, is inf/inf = NaN; in float32, ~2); x^alpha at x = 300, alpha = 2: 90000;
# a quotient whose divisor underflows float16 (1e-8 -> 0)
FUNCTIONS = ["exp(x)/cosh(x)", "alpha*x/(beta + x*x)", "log(x*x + 1e-8) + sinh(x)/exp(abs(x))",
             "pow(abs(x), alpha)/(1 + abs(x))", "exp(x)"]
X = np.array([[-300.0, -12.0, -3.5, -1e-4, 0.0, 0.25, 1.5, 7.0, 12.0, 300.0]], np.float32)


def _reference(fn, x, params):
    layer = CustomActivation(fn, param_shape="per-layer", fused=False, dtype="float32")
    layer.build(x.shape)
    for w, v in zip(layer.weights, params):
        w.assign(v)
    return layer(tf.constant(x)).numpy()


@pytest.mark.parametrize("fused", [False, True])
def test_custom_activation_under_mixed_float16(mixed, fused):
    x16 = tf.constant(X, tf.float16)
    x_ref = X.astype(np.float16).astype(np.float32)   # the same inputs, as float16 holds them
    for fn in FUNCTIONS:
        layer = CustomActivation(fn, param_shape="per-layer", fused=fused)
        y = layer(x16)
        assert _policy_name(layer) == "mixed_float16"
        assert y.dtype == tf.float16
        assert all(w.dtype == tf.float32 for w in layer.weights)   # slots stay float32
        params = [2.0, 0.5][: len(layer.weights)]
        for w, v in zip(layer.weights, params):
            w.assign(v)
        y = layer(x16).numpy()
        want = _reference(fn, x_ref, params)
        finite = np.isfinite(want)
        assert finite[0, 1:-1].all(), fn          # exp(300) is beyond float32 too
        _close16(y[finite], want[finite])
    # beyond the float16 range, float32-finite values saturate instead of becoming inf;
    # beyond float32's, inf stays inf (the harness's overflow check still sees it)
    got = CustomActivation("exp(x)", fused=fused)(x16).numpy()
    assert got[0, -2] == F16_MAX and got[0, -1] == np.inf
    # float16 arithmetic would give NaN here: exp(12)/cosh(12) is inf/inf
    naive = tf.exp(x16) / tf.cosh(x16)
    assert np.isnan(naive.numpy()[0, -2])


def test_gradients_under_mixed_float16(mixed):
    fn = "alpha*swish(beta*x) + exp(x)/cosh(x)"
    x = np.linspace(-12.0, 12.0, 24, dtype=np.float32).reshape(2, 3, 4)
    x_ref = x.astype(np.float16).astype(np.float32)
    results = []
    for fused, dtype in ((False, None), (True, None), (False, "float32")):
        layer = CustomActivation(fn, param_shape="per-channel", fused=fused, dtype=dtype)
        xt = tf.constant(x_ref, tf.float32 if dtype else tf.float16)
        layer.build(xt.shape)
        layer.weights[0].assign([0.5, 1.0, 1.5, 2.0])
        layer.weights[1].assign([1.0, 0.75, 1.25, 0.5])
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt)
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        grads = tape.gradient(loss, [xt] + layer.trainable_weights)
        results.append((y.numpy(), [g.numpy() for g in grads]))
    (y_a, g_a), (y_b, g_b), (y_ref, g_ref) = results
    for y, g in ((y_a, g_a), (y_b, g_b)):
        _close16(y, y_ref)
        assert g[0].dtype == np.float16 and g[1].dtype == g[2].dtype == np.float32
        _close16(g[0], g_ref[0])
        for got, want in zip(g[1:], g_ref[1:]):   # float32 sums of float32 terms
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_grafs_cell_under_mixed_float16(mixed):
    x_ref = np.linspace(-40.0, 40.0, 33).astype(np.float16).astype(np.float32)
    outs = {}
    for name, dtype in (("mixed", None), ("float32", "float32")):
        for clip in (10.0, None):
            params = CellParameters(unary=("exp", "sinh", "square", "identity", "tanh"),
                                    binary=("add", "mul", "max"), clip=clip, seed=3,
                                    dtype=dtype)
            cell = SearchCell(params, dtype=dtype)
            xt = tf.constant(x_ref, tf.float32 if dtype else tf.float16)
            y = cell(xt, training=False)
            if dtype is None:
                assert y.dtype == tf.float16
                assert all(v.dtype == tf.float32 for v in params.weights)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                total = tf.reduce_sum(tf.cast(cell(xt, training=False), tf.float32))
            g = tape.gradient(total, params.trainable_weights)
            outs[name, clip] = (y.numpy(), [None if v is None else v.numpy() for v in g])
    for clip in (10.0, None):
        y16, g16 = outs["mixed", clip]
        y32, g32 = outs["float32", clip]
        finite = np.isfinite(y32)
        assert finite.any()
        assert np.all(np.isfinite(y16[finite]))
        _close16(y16[finite], y32[finite])
        assert sum(b is not None for b in g32) >= 2
        for a, b in zip(g16, g32):
            assert (a is None) == (b is None)
            if b is not None and np.all(np.isfinite(b)):
                assert np.all(np.isfinite(a))
                np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * max(1.0, np.abs(b).max()))


def test_autoinit_under_mixed_float16(mixed):
    from keras_actfn.autoinit import AutoInit
    from keras_actfn.models import build_model

    models = {}
    for name in ("mixed", "float32"):
        if name == "float32":
            keras.mixed_precision.set_global_policy("float32")
        keras.utils.set_random_seed(0)
        model = build_model("mnist1d_cnn", activation="alpha*swish(beta*x)", channels=6)
        AutoInit(seed=0).initialize_model(model)
        models[name] = model
        keras.mixed_precision.set_global_policy("mixed_float16")
    mixed_model, f32_model = models["mixed"], models["float32"]
    assert _policy_name(mixed_model.layers[1]) == "mixed_float16"
    # the same weights, computed from the same moments (variables are float32 under both)
    for a, b in zip(mixed_model.weights, f32_model.weights):
        assert a.dtype == b.dtype == tf.float32
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    x = np.random.default_rng(0).standard_normal((8, 40, 1)).astype(np.float16)
    y16 = mixed_model(x, training=False).numpy()
    y32 = f32_model(x.astype(np.float32), training=False).numpy()
    assert np.all(np.isfinite(y16))
    # a few layers of float16 storage: ~1e-3 relative each, on probabilities in [0, 1]
    np.testing.assert_allclose(y16.astype(np.float64), y32, atol=1e-2)
