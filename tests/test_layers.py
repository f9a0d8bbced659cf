"""CustomActivation: values, parameter shapes, built-in equivalences, saving, clip, center."""

import numpy as np
import pytest

from keras_actfn.backend import keras, tf
from keras_actfn.expr import evaluate, parse
from keras_actfn.layers import CustomActivation
from keras_actfn.layers.custom import activation_layer

RNG = np.random.default_rng(1234)
SHAPE = (3, 5, 4)  # batch, positions, channels


def _randomize(layer_or_model, rng=RNG):
    for v in layer_or_model.weights:
        v.assign(rng.uniform(0.5, 2.0, size=tuple(v.shape)).astype("float32"))


@pytest.mark.parametrize("param_shape, expected", [
    ("per-layer", ()), ("per-channel", (4,)), ("per-neuron", (5, 4)), ("per_channel", (4,))])
def test_parameter_shapes_and_initial_value(param_shape, expected):
    layer = CustomActivation("alpha*swish(beta*x) + gamma", param_shape=param_shape)
    layer.build((None,) + SHAPE[1:])
    assert [tuple(w.shape) for w in layer.weights] == [expected] * 3
    assert all(np.all(w.numpy() == 1.0) for w in layer.weights)
    assert layer.param_names == ("alpha", "beta", "gamma")


@pytest.mark.parametrize("param_shape", ["per-layer", "per-channel", "per-neuron"])
def test_values_match_numpy_with_trained_parameters(param_shape):
    fn = "log(sigmoid(alpha*x)) * beta*arcsinh(x) - gamma"
    layer = CustomActivation(fn, param_shape=param_shape)
    x = RNG.normal(size=SHAPE).astype("float32") * 3
    layer(x)
    _randomize(layer)
    params = {w.name.split("/")[-1]: w.numpy() for w in layer.weights}
    expected = evaluate(parse(fn), x.astype("float64"), params)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=2e-5, atol=2e-5)


def test_parameter_free_and_constant_functions_keep_the_input_shape():
    x = RNG.normal(size=SHAPE).astype("float32")
    assert CustomActivation("alpha", param_shape="per-layer")(x).shape == SHAPE
    np.testing.assert_array_equal(CustomActivation("2")(x).numpy(), np.full(SHAPE, 2.0))
    np.testing.assert_array_equal(CustomActivation("x")(x).numpy(), x)


@pytest.mark.parametrize("text, builtin", [
    ("x*sigmoid(x)", "silu"), ("swish(x)", "silu"), ("relu(x)", "relu"), ("elu(x)", "elu"),
    ("selu(x)", "selu"), ("tanh(x)", "tanh"), ("softplus(x)", "softplus"),
    ("softsign(x)", "softsign"), ("sigmoid(x)", "sigmoid")])
def test_values_and_gradients_equal_keras_builtins(text, builtin):
    x = tf.constant(np.linspace(-6, 6, 241, dtype="float32"))
    ours_layer = CustomActivation(text)
    reference = keras.activations.get(builtin)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = ours_layer(x[None])[0]
        ref = reference(x)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(ours, x).numpy(), tape.gradient(ref, x).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_usable_as_activation_argument_of_dense_and_conv():
    x = RNG.normal(size=(2, 6, 6, 3)).astype("float32")
    fn = "max(swish(x), alpha*log(sigmoid(relu(x))))"
    conv = keras.layers.Conv2D(4, 3, activation=CustomActivation(fn))
    linear = keras.layers.Conv2D(4, 3)
    y = conv(x)
    linear(x)
    linear.set_weights(conv.get_weights()[:2])
    expected = evaluate(parse(fn), linear(x).numpy().astype("float64"))
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-6)
    dense = keras.layers.Dense(5, activation=CustomActivation("alpha*x", param_shape="per-layer"))
    dense(np.ones((1, 3), "float32"))
    assert len(dense.trainable_weights) == 3  # kernel, bias and the activation's alpha


RANDOM_FUNCTIONS = ["alpha*swish(beta*x)", "min(log(sigmoid(x)), alpha*log(sigmoid(beta*x)))",
                    "sum_n(abs(alpha*x), swish(x), sigmoid(beta*x))", "(-2)^alpha + x",
                    "mix(tanh(x), gamma*x, 0.25)", "bessel_i1e(alpha*x) * erfc(x) - 1e-07"]


def _random_function(rng, depth=3):
    """A random parametric expression built from the registry (text form)."""
    from keras_actfn.expr import ops
    unary = ops.PANGAEA_UNARY
    binary = ops.PANGAEA_BINARY
    if depth == 0:
        return rng.choice(["x", "alpha*x", "beta*x", "x"])
    if rng.random() < 0.5:
        return f"{rng.choice(unary)}({_random_function(rng, depth - 1)})"
    return (f"{rng.choice(binary)}({_random_function(rng, depth - 1)}, "
            f"{_random_function(rng, depth - 1)})")


def test_keras_file_round_trip_without_custom_objects(tmp_path):
    rng = np.random.default_rng(7)
    functions = RANDOM_FUNCTIONS + [_random_function(rng) for _ in range(6)]
    inputs = keras.Input((8, 3))
    h = inputs
    for i, fn in enumerate(functions):
        shape = ("per-layer", "per-channel", "per-neuron")[i % 3]
        h = keras.layers.Dense(3)(h)
        h = CustomActivation(fn, param_shape=shape, clip=10.0, center=(i % 2 == 0)
                             if parse(fn).params == () else False)(h)
    model = keras.Model(inputs, h)
    _randomize(model, np.random.default_rng(3))
    x = rng.normal(size=(4, 8, 3)).astype("float32")
    before = model(x).numpy()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects, safe_mode on
    np.testing.assert_array_equal(loaded(x).numpy(), before)
    texts = [l.get_config()["fn"] for l in loaded.layers if isinstance(l, CustomActivation)]
    assert [parse(t) for t in texts] == [parse(f) for f in functions]


def test_config_round_trip():
    layer = CustomActivation("alpha*x - log(sigmoid(beta*x))", param_shape="per-neuron",
                             clip=3.0, center=True, name="act")
    clone = CustomActivation.from_config(layer.get_config())
    assert clone.fn == layer.fn and clone.param_shape == "per-neuron"
    assert clone.clip == 3.0 and clone.center and clone.name == "act"


def test_clip_bounds_outputs_and_stops_gradients():
    layer = CustomActivation("exp(x)", clip=10.0)
    x = tf.constant([[-1.0, 0.0, 2.0, 3.0, 50.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    np.testing.assert_allclose(y.numpy(), np.minimum(np.exp(x.numpy()), 10.0), rtol=1e-6)
    grad = tape.gradient(y, x).numpy()
    assert grad[0, -1] == 0.0 and grad[0, -2] == 0.0 and np.isclose(grad[0, 2], np.exp(2.0))


def test_center_subtracts_the_gaussian_mean():
    x = np.random.default_rng(0).standard_normal((1, 400_000)).astype("float32")
    for fn in ("relu(x)", "swish(x)", "exp(x)"):
        y = CustomActivation(fn, center=True)(x).numpy().astype("float64")
        stderr = y.std() / np.sqrt(y.size)
        assert abs(y.mean()) < 5 * stderr, (fn, y.mean(), stderr)
    assert np.isclose(CustomActivation("relu(x)", center=True).shift, 1 / np.sqrt(2 * np.pi))


def test_parameters_train():
    layer = CustomActivation("alpha*swish(beta*x)")
    x = tf.constant(RNG.normal(size=(16, 4)).astype("float32"))
    layer(x)
    opt = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(layer(x) - 1.0))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(np.all(np.isfinite(g.numpy())) and np.any(g.numpy() != 0) for g in grads)
    opt.apply_gradients(zip(grads, layer.trainable_weights))
    assert not np.allclose(layer.weights[0].numpy(), 1.0)


@pytest.mark.parametrize("kwargs, error", [
    (dict(fn="x*sigmod(x)"), ValueError), (dict(fn="x", param_shape="per-pixel"), ValueError),
    (dict(fn="x", clip=-1), ValueError), (dict(fn="exp(exp(exp(x)))", center=True), ValueError),
    (dict(fn=3.0), ValueError)])
def test_bad_arguments_raise_clear_errors(kwargs, error):
    with pytest.raises(error):
        CustomActivation(**kwargs)


def test_per_neuron_needs_known_shape():
    with pytest.raises(ValueError, match="per-neuron"):
        CustomActivation("alpha*x", param_shape="per-neuron").build((None, None, 3))


def test_activation_layer_specs():
    assert isinstance(activation_layer("x*sigmoid(x)"), CustomActivation)
    assert isinstance(activation_layer("relu"), keras.layers.Activation)
    assert isinstance(activation_layer(lambda: keras.layers.ReLU()), keras.layers.ReLU)
    a, b = activation_layer("relu(x)"), activation_layer("relu(x)")
    assert a is not b
    with pytest.raises(TypeError):
        activation_layer(CustomActivation("x"))
