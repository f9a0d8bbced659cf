"""The baseline activation layers under the legacy Keras (tf_keras), TF_USE_LEGACY_KERAS=1.

Collected only in a legacy process (see tests/conftest.py). The NumPy references (section 4.7
formulas, independent of the layers' TensorFlow code) are in tests/reference_activations.py,
shared with the Keras 3 tests.
"""

import numpy as np
import pytest

import keras_actfn.backend as backend
from keras_actfn.backend import keras, tf
from keras_actfn.layers import baselines
from keras_actfn.layers.baselines import APL, BASELINE_LAYERS, PAU, SPLASH, PReLU, PSwish
from reference_activations import (PARAM_SHAPES, build_baseline_model, initial_reference,
                                   leaky_relu, reference, sample)


def test_legacy_keras_is_active():
    assert backend.LEGACY is True
    assert backend.KERAS3 is False
    assert keras.__name__ == "tf_keras"
    assert keras.__version__.startswith("2.")
    assert isinstance(PReLU(), keras.layers.Layer)


@pytest.mark.parametrize("param_shape", PARAM_SHAPES)
@pytest.mark.parametrize("name", sorted(BASELINE_LAYERS))
def test_outputs_match_references(name, param_shape):
    x = sample(seed=1)
    layer = BASELINE_LAYERS[name](param_shape=param_shape, dtype="float64")
    out = np.asarray(layer(tf.constant(x)))
    # at initialization
    np.testing.assert_allclose(out, initial_reference(name, x), rtol=1e-12, atol=1e-12)
    # with random weights
    rng = np.random.default_rng(len(name) * 10 + len(param_shape))
    weights = [rng.uniform(-1.0, 1.0, size=w.shape) for w in layer.get_weights()]
    layer.set_weights(weights)
    np.testing.assert_allclose(np.asarray(layer(tf.constant(x))),
                               reference(name, x, weights), rtol=1e-12, atol=1e-12)


def test_weight_shapes_and_names():
    x = tf.constant(sample().astype("float32"))
    shapes = {}
    for name, cls in BASELINE_LAYERS.items():
        layer = cls(param_shape="per-channel")
        layer(x)
        shapes[name] = [(w.name.split("/")[-1].split(":")[0], tuple(w.shape))
                        for w in layer.trainable_weights]
    assert shapes == {
        "prelu": [("alpha", (3,))],
        "pswish": [("beta", (3,))],
        "apl": [("a", (3, 7)), ("b", (3, 7))],
        "pau": [("numerator", (3, 6)), ("denominator", (3, 4))],
        "splash": [("a_plus", (3, 4)), ("a_minus", (3, 4))],
    }


def test_pau_starts_close_to_leaky_relu():
    x = np.linspace(-3.0, 3.0, 6001)
    out = np.asarray(PAU(dtype="float64")(tf.constant(x[None, :])))[0]
    err = np.abs(out - leaky_relu(x)).max()
    assert err <= baselines.PAU_FIT_TOLERANCE


def test_gradients_finite_and_nonzero():
    x = tf.constant(sample(shape=(8, 3), seed=2).astype("float32"))
    for cls in BASELINE_LAYERS.values():
        layer = cls(param_shape="per-channel")
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2)
        grads = tape.gradient(loss, layer.trainable_weights)
        assert all(np.all(np.isfinite(g.numpy())) for g in grads)
        assert np.any(grads[0].numpy() != 0)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_save_load_round_trip_without_custom_objects(tmp_path, suffix):
    model = build_baseline_model()
    rng = np.random.default_rng(11)
    for layer in model.layers[1:]:
        layer.set_weights([rng.uniform(-0.5, 0.5, size=w.shape) for w in layer.get_weights()])
    x = sample(seed=5).astype("float32")
    expected = model.predict(x, verbose=0)
    assert not np.allclose(expected, np.maximum(x, 0))
    path = str(tmp_path / f"baselines{suffix}")
    model.save(path)
    restored = keras.models.load_model(path)
    assert [type(layer) for layer in restored.layers[1:]] == [PReLU, PSwish, APL, PAU, SPLASH,
                                                              SPLASH]
    for old, new in zip(model.layers[1:], restored.layers[1:]):
        assert new.get_config() == old.get_config()
    np.testing.assert_array_equal(restored.predict(x, verbose=0), expected)
