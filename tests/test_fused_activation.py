"""CustomActivation's fused path (issue 20): forward and backward each one XLA cluster.

Checks: values and gradients (input and learnable slots) equal to the unfused path within
float32 round-off on random inputs for per-layer, per-channel and per-neuron functions with
clip and center; both against closed forms; the fallback to the unfused path when XLA is
unavailable or cannot compile the function; the option in the config and through a
``.keras`` round trip; one training step equal to the unfused twin's. Shared with the
legacy-Keras suite (tests/legacy/test_fused_legacy.py)."""

import numpy as np
import pytest
import scipy.special as sps

from keras_actfn.backend import keras, tf
from keras_actfn.expr import ops, parse
from keras_actfn.layers import ActivationFunction, CustomActivation
from keras_actfn.layers import custom

CASES = [
    ("x*sigmoid(x)", "per-layer", None, False),
    ("alpha*swish(beta*x)", "per-channel", None, False),
    ("alpha*swish(beta*x)", "per-neuron", None, False),
    ("max(relu(x), cosh(elu(alpha*x))) - beta*tanh(x)/(1 + x*x)", "per-channel", 10.0, True),
]

def _layer(fn, param_shape, clip, center, fused, shape, seed=0):
    layer = CustomActivation(fn, param_shape=param_shape, clip=clip, center=center, fused=fused)
    layer.build(shape)
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.uniform(0.5, 1.5, tuple(w.shape)).astype("float32"))
    return layer


def _value_and_grads(layer, x, dy):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    grads = tape.gradient(y, [x] + list(layer.trainable_weights), output_gradients=dy)
    return [y.numpy()] + [g.numpy() for g in grads]


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(7)
    x = tf.constant(2.0 * rng.standard_normal((3, 4, 5)).astype("float32"))
    dy = tf.constant(rng.standard_normal((3, 4, 5)).astype("float32"))
    return x, dy


@pytest.mark.parametrize("fn,param_shape,clip,center", CASES)
def test_fused_equals_unfused(inputs, fn, param_shape, clip, center):
    x, dy = inputs
    fused = _layer(fn, param_shape, clip, center, True, x.shape)
    plain = _layer(fn, param_shape, clip, center, False, x.shape)
    got, want = _value_and_grads(fused, x, dy), _value_and_grads(plain, x, dy)
    assert fused.fused_in_use is True and plain.fused_in_use is False
    assert len(got) == len(want) == 2 + len(parse(fn).params)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        # float32 round-off, relative to the largest entry (the sums over the batch of the
        # slots' gradients run in another order)
        assert np.max(np.abs(g - w)) <= 1e-5 * max(1.0, np.max(np.abs(w)))


def test_fused_matches_the_closed_form(inputs):
    """alpha*swish(beta*x) per channel: y = a b x s(bx), dy/dx = a b (s + b x s (1 - s)),
    dL/da = sum dy b x s, dL/db = sum dy a x (s + b x s (1 - s))."""
    x, dy = inputs
    layer = _layer("alpha*swish(beta*x)", "per-channel", None, False, True, x.shape, seed=3)
    y, gx, ga, gb = _value_and_grads(layer, x, dy)
    a, b = (w.numpy().astype(np.float64) for w in layer.trainable_weights)
    names = [w.name.split("/")[-1].split(":")[0] for w in layer.trainable_weights]
    assert names == ["alpha", "beta"]
    xv, d = x.numpy().astype(np.float64), dy.numpy().astype(np.float64)
    s = sps.expit(b * xv)
    slope = s + b * xv * s * (1 - s)
    np.testing.assert_allclose(y, a * b * xv * s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx, d * a * b * slope, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ga, (d * b * xv * s).sum(axis=(0, 1)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gb, (d * a * xv * slope).sum(axis=(0, 1)), rtol=1e-5, atol=1e-5)


def test_first_call_inside_a_tape_records_the_gradient():
    """The one-off lowering check runs on the first call, here inside the caller's tape: the
    gradient is still recorded (dy/dx = alpha (1 - tanh^2), dL/dalpha = sum tanh)."""
    x = tf.constant(np.linspace(-2.0, 2.0, 12, dtype=np.float32).reshape(3, 4))
    layer = _layer("alpha*tanh(x)", "per-channel", None, False, True, x.shape, seed=5)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    gx, ga = tape.gradient(y, [x] + list(layer.trainable_weights))
    assert layer.fused_in_use is True
    alpha, t = layer.trainable_weights[0].numpy(), np.tanh(x.numpy())
    np.testing.assert_allclose(gx.numpy(), alpha * (1 - t * t), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ga.numpy(), t.sum(axis=0), rtol=1e-5, atol=1e-6)


def test_one_training_step_equals_the_unfused_twins():
    """Inside Keras's compiled train step (graph mode): same loss, same updated weights."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 6)).astype("float32")
    y = rng.integers(0, 3, 16)
    results = []
    for fused in (True, False):
        keras.utils.set_random_seed(1)
        inputs = keras.Input((6,))
        h = keras.layers.Dense(8)(inputs)
        h = CustomActivation("alpha*swish(beta*x)", param_shape="per-channel", fused=fused)(h)
        outputs = keras.layers.Dense(3, activation="softmax")(h)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        losses = [float(np.asarray(model.train_on_batch(x, y)).reshape(-1)[0]) for _ in range(3)]
        results.append((losses, [w.numpy() for w in model.weights], model.layers[2]))
    (l1, w1, act1), (l2, w2, act2) = results
    assert act1.fused_in_use is True and act2.fused_in_use is False
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    assert l1[-1] < l1[0]                      # it trains
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_falls_back_when_xla_is_unavailable(inputs, monkeypatch):
    x, dy = inputs
    monkeypatch.setattr(custom, "_XLA", False)
    layer = _layer("alpha*swish(beta*x)", "per-channel", None, False, True, x.shape)
    plain = _layer("alpha*swish(beta*x)", "per-channel", None, False, False, x.shape)
    got, want = _value_and_grads(layer, x, dy), _value_and_grads(plain, x, dy)
    assert layer.fused_in_use is False
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.fixture
def uncompilable_operator():
    """An operator XLA cannot compile (a Python function inside the graph)."""
    name = "host_double"

    def tf_fn(x):
        y = tf.numpy_function(lambda v: (2.0 * v).astype(v.dtype), [x], x.dtype)
        return tf.ensure_shape(y, x.shape)

    op = ops.register(ops.Operator(name, 1, tf_fn, lambda v: 2.0 * np.asarray(v), "2{0}"))
    yield op
    ops.REGISTRY.pop(name, None)
    ops.ALIASES.pop(name, None)


def test_falls_back_when_the_function_cannot_be_compiled(inputs, uncompilable_operator):
    x, _ = inputs
    layer = _layer("alpha*host_double(x)", "per-channel", None, False, True, x.shape)
    y = layer(x).numpy()
    assert layer.fused_in_use is False
    alpha = layer.trainable_weights[0].numpy()
    np.testing.assert_allclose(y, alpha * 2.0 * x.numpy(), rtol=1e-6)
    # and the same function's check is cached: no second lowering attempt
    checks = [k for k in custom._FUSABLE if k[0][0] == "alpha * host_double(x)"]
    assert len(checks) == 1 and custom._FUSABLE[checks[0]] is False


def test_auto_fuses_only_where_a_gpu_is_visible(inputs, monkeypatch):
    x, _ = inputs
    monkeypatch.setattr(custom, "_GPU", False)
    layer = _layer("x*sigmoid(x)", "per-layer", None, False, "auto", x.shape)
    layer(x)
    assert layer.fused_in_use is False
    monkeypatch.setattr(custom, "_GPU", True)
    layer(x)
    assert layer.fused_in_use is True


def test_the_option_is_checked_and_kept_in_the_config():
    layer = CustomActivation("x*sigmoid(x)", fused=False)
    assert layer.get_config()["fused"] is False
    assert CustomActivation("x*sigmoid(x)").get_config()["fused"] == "auto"
    assert CustomActivation.from_config(layer.get_config()).fused is False
    af = ActivationFunction(fn_name="swish(x)", fused=True)
    assert af.get_config()["fused"] is True
    for bad in ("yes", 1, None, "false"):
        with pytest.raises(ValueError, match="fused must be true, false or 'auto'"):
            CustomActivation("x*sigmoid(x)", fused=bad)
    # a config written before the option existed loads with the default
    old = CustomActivation("x*sigmoid(x)").get_config()
    del old["fused"]
    assert CustomActivation.from_config(old).fused == "auto"


@pytest.mark.parametrize("fused", [True, False, "auto"])
def test_keras_file_round_trip(tmp_path, fused):
    inputs = keras.Input((4, 3))
    h = CustomActivation("alpha*swish(beta*x)", param_shape="per-channel", fused=fused)(inputs)
    h = ActivationFunction(fn_name="max(relu(x),cosh(elu(x)))", fused=fused)(h)
    model = keras.Model(inputs, h)
    model.layers[1].weights[0].assign(np.array([0.5, 1.5, 2.0], "float32"))
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype("float32")
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [l.fused for l in loaded.layers[1:]] == [fused, fused]
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-7)
