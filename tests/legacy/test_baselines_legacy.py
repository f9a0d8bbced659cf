"""The baseline activation layers under the legacy Keras (tf_keras), TF_USE_LEGACY_KERAS=1.

Collected only in a legacy process (see tests/conftest.py). The NumPy references are the
section 4.7 formulas written out here, independent of the layers' TensorFlow code.
"""

import numpy as np
import pytest

import keras_actfn.backend as backend
from keras_actfn.backend import keras, tf
from keras_actfn.layers import baselines
from keras_actfn.layers.baselines import APL, BASELINE_LAYERS, PAU, SPLASH, PReLU, PSwish

SPLASH_HINGES = np.array([0.0, 1.0, 2.0, 2.5])


def ref_prelu(x, alpha):
    return np.where(x >= 0, x, alpha * x)


def ref_pswish(x, beta):
    return x / (1.0 + np.exp(-beta * x))


def ref_apl(x, a, b):
    return np.maximum(x, 0.0) + np.sum(a * np.maximum(b - x[..., None], 0.0), axis=-1)


def ref_pau(x, num, den):
    xs = x[..., None]
    p = np.sum(num * xs ** np.arange(num.shape[-1]), axis=-1)
    q = np.sum(den * xs ** np.arange(1, den.shape[-1] + 1), axis=-1)
    return p / (1.0 + np.abs(q))


def ref_splash(x, a_plus, a_minus, hinges=SPLASH_HINGES):
    xs = x[..., None]
    return np.sum(a_plus * np.maximum(xs - hinges, 0.0) + a_minus * np.maximum(-xs - hinges, 0.0),
                  axis=-1)


REFERENCES = {"prelu": ref_prelu, "pswish": ref_pswish, "apl": ref_apl, "pau": ref_pau,
              "splash": ref_splash}


def sample(shape=(2, 5, 7, 3), seed=0):
    return np.random.default_rng(seed).normal(scale=1.5, size=shape)


def test_legacy_keras_is_active():
    assert backend.LEGACY is True
    assert backend.KERAS3 is False
    assert keras.__name__ == "tf_keras"
    assert keras.__version__.startswith("2.")
    assert isinstance(PReLU(), keras.layers.Layer)


@pytest.mark.parametrize("param_shape", ["per-layer", "per-channel", "per-neuron"])
@pytest.mark.parametrize("name", sorted(BASELINE_LAYERS))
def test_outputs_match_references(name, param_shape):
    x = sample(seed=1)
    layer = BASELINE_LAYERS[name](param_shape=param_shape, dtype="float64")
    out = np.asarray(layer(tf.constant(x)))
    # at initialization
    if name == "prelu":
        expected = ref_prelu(x, 0.25)
    elif name == "pswish":
        expected = ref_pswish(x, 1.0)
    elif name in ("apl", "splash"):
        expected = np.maximum(x, 0.0)
    else:
        expected = ref_pau(x, np.array(baselines.PAU_INIT_NUMERATOR),
                           np.array(baselines.PAU_INIT_DENOMINATOR))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    # with random weights
    rng = np.random.default_rng(len(name) * 10 + len(param_shape))
    weights = [rng.uniform(-1.0, 1.0, size=w.shape) for w in layer.get_weights()]
    layer.set_weights(weights)
    np.testing.assert_allclose(np.asarray(layer(tf.constant(x))),
                               REFERENCES[name](x, *weights), rtol=1e-12, atol=1e-12)


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
    err = np.abs(out - np.where(x >= 0, x, 0.01 * x)).max()
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


def build_model():
    inputs = keras.Input(shape=(5, 7, 3))
    h = PReLU()(inputs)
    h = PSwish()(h)
    h = APL(hinges=3, param_shape="per-channel")(h)
    h = PAU()(h)
    h = SPLASH(param_shape="per-neuron")(h)
    h = SPLASH(hinges=(0.0, 1.5), param_shape="per-channel")(h)
    return keras.Model(inputs, h)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_save_load_round_trip_without_custom_objects(tmp_path, suffix):
    model = build_model()
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
