"""CustomActivation under the legacy Keras (tf_keras); runs with TF_USE_LEGACY_KERAS=1."""

import numpy as np

from keras_actfn import backend
from keras_actfn.backend import keras, tf
from keras_actfn.expr import evaluate, parse
from keras_actfn.layers import CustomActivation


def test_backend_is_tf_keras():
    assert backend.LEGACY and not backend.KERAS3
    assert keras.__name__.startswith("tf_keras")


def _model():
    inputs = keras.Input((6, 3))
    h = keras.layers.Dense(4, activation=CustomActivation("alpha*swish(beta*x)"))(inputs)
    h = CustomActivation("min(log(sigmoid(x)), alpha*log(sigmoid(beta*x)))",
                         param_shape="per-neuron")(h)
    h = keras.layers.Conv1D(2, 3)(h)
    h = CustomActivation("x*sigmoid(x)", param_shape="per-layer", clip=10.0, center=True)(h)
    return keras.Model(inputs, h)


def test_values_match_numpy_and_builtin():
    x = tf.constant(np.linspace(-6, 6, 121, dtype="float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = CustomActivation("x*sigmoid(x)")(x[None])[0]
        ref = tf.keras.activations.swish(x)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(ours, x).numpy(), tape.gradient(ref, x).numpy(),
                               rtol=1e-5, atol=1e-6)
    layer = CustomActivation("alpha*x - log(sigmoid(beta*x))", param_shape="per-channel")
    xs = np.random.default_rng(0).normal(size=(5, 3)).astype("float32") * 3
    layer(xs)
    layer.set_weights([np.array([0.5, 1.5, 2.0], "float32"), np.array([2.0, 1.0, 0.7], "float32")])
    expected = evaluate(parse(layer.fn), xs.astype("float64"),
                        {"alpha": np.array([0.5, 1.5, 2.0]), "beta": np.array([2.0, 1.0, 0.7])})
    np.testing.assert_allclose(layer(xs).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_keras_file_round_trip(tmp_path):
    model = _model()
    rng = np.random.default_rng(1)
    model.set_weights([rng.uniform(0.5, 2, w.shape).astype("float32") for w in model.get_weights()])
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    before = model(x).numpy()
    path = str(tmp_path / "legacy.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), before)
