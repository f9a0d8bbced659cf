"""Tests for the learnable baseline activations (keras_actfn.layers.baselines), Keras 3.

The NumPy references (section 4.7 formulas, independent of the layers' TensorFlow code) are in
tests/reference_activations.py, shared with tests/legacy/test_baselines_legacy.py.
"""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from keras_actfn.backend import KERAS3, keras, tf
from keras_actfn.layers import baselines
from keras_actfn.layers.baselines import (APL, BASELINE_LAYERS, PAU, SPLASH, PReLU, PSwish,
                                          parameter_shape)
from reference_activations import (INPUT_SHAPE, PARAM_SHAPES, build_baseline_model,
                                   initial_reference, leaky_relu, ref_pau, ref_splash, reference,
                                   sample)


def base_shape(param_shape):
    return {"per-layer": (), "per-channel": (3,), "per-neuron": (5, 7, 3)}[param_shape]


def short_name(weight):
    return weight.name.split("/")[-1].split(":")[0]


# ------------------------------------------------------------------ parameter_shape


def test_parameter_shape_modes_and_spellings():
    cases = {
        "per-layer": (), "per_layer": (), "PER-LAYER": (),
        "per-channel": (3,), "per_channel": (3,),
        "per-neuron": (5, 7, 3), "Per_Neuron": (5, 7, 3),
    }
    for mode, expected in cases.items():
        assert parameter_shape(mode, (None, 5, 7, 3)) == expected
        assert parameter_shape(mode, tf.TensorShape([8, 5, 7, 3]), coefficients=4) == expected + (4,)
    # per-layer ignores the input entirely, per-channel only needs the last axis
    assert parameter_shape("per-layer", (None, None)) == ()
    assert parameter_shape("per-channel", (None, None, None, 16)) == (16,)
    assert parameter_shape("per-neuron", [None, 10]) == (10,)


@pytest.mark.parametrize("mode,shape,message", [
    ("per-pixel", (None, 5, 3), "per-layer"),
    ("layer", (None, 5, 3), "per-neuron"),
    (None, (None, 5, 3), "per-channel"),
    ("per-neuron", (None, None, 3), "None"),
    ("per-neuron", (None, 5, None), "None"),
    ("per-channel", (None, 5, None), "channel"),
    ("per-channel", (None,), "axis"),
    ("per-neuron", (None,), "axis"),
])
def test_parameter_shape_errors(mode, shape, message):
    with pytest.raises(ValueError, match=message):
        parameter_shape(mode, shape)


def test_parameter_shape_rejects_bad_coefficient_count():
    with pytest.raises(ValueError):
        parameter_shape("per-layer", (None, 3), coefficients=0)
    assert parameter_shape("per-layer", (None, 3), coefficients=1) == (1,)


# ------------------------------------------------------------------ construction


EXPECTED_WEIGHTS = {
    # name -> [(weight name, coefficient tail)]
    "prelu": [("alpha", ())],
    "pswish": [("beta", ())],
    "apl": [("a", (7,)), ("b", (7,))],
    "pau": [("numerator", (6,)), ("denominator", (4,))],
    "splash": [("a_plus", (4,)), ("a_minus", (4,))],
}


@pytest.mark.parametrize("param_shape", PARAM_SHAPES)
@pytest.mark.parametrize("name", sorted(BASELINE_LAYERS))
def test_initial_weight_shapes(name, param_shape):
    layer = BASELINE_LAYERS[name](param_shape=param_shape)
    out = layer(sample().astype("float32"))
    assert tuple(out.shape) == INPUT_SHAPE
    expected = [(w, base_shape(param_shape) + tail) for w, tail in EXPECTED_WEIGHTS[name]]
    got = [(short_name(w), tuple(w.shape)) for w in layer.weights]
    assert got == expected
    assert all(w.trainable for w in layer.weights)
    assert len(layer.trainable_weights) == len(expected)


def test_default_param_shapes_follow_section_4_7():
    defaults = {name: cls().param_shape for name, cls in BASELINE_LAYERS.items()}
    assert defaults == {"prelu": "per-neuron", "pswish": "per-channel", "apl": "per-neuron",
                        "pau": "per-layer", "splash": "per-layer"}
    assert APL().hinges == 7
    assert (PAU().numerator_degree, PAU().denominator_degree) == (5, 4)
    assert SPLASH().hinges == (0.0, 1.0, 2.0, 2.5)


@pytest.mark.parametrize("cls", list(BASELINE_LAYERS.values()))
def test_bad_param_shape_raises(cls):
    with pytest.raises(ValueError, match="per-layer.*per-channel.*per-neuron"):
        cls(param_shape="per-element")
    with pytest.raises(ValueError):
        cls(param_shape=3)


def test_bad_hyperparameters_raise():
    for bad in (0, -1, 2.5, "seven"):
        with pytest.raises(ValueError):
            APL(hinges=bad)
    with pytest.raises(ValueError):
        PAU(denominator_degree=0)
    with pytest.raises(ValueError):
        PAU(numerator_degree=-1)
    with pytest.raises(ValueError):
        SPLASH(hinges=())
    with pytest.raises(ValueError):
        SPLASH(hinges=(0.0, float("nan")))


@pytest.mark.parametrize("name", sorted(BASELINE_LAYERS))
def test_config_round_trip(name):
    cls = BASELINE_LAYERS[name]
    layer = cls(param_shape="per_channel", name=f"my_{name}")
    config = layer.get_config()
    assert config["param_shape"] == "per-channel"
    clone = cls.from_config(config)
    assert type(clone) is cls
    assert clone.get_config() == config


# ------------------------------------------------------------------ values at initialization


@pytest.mark.parametrize("param_shape", PARAM_SHAPES)
@pytest.mark.parametrize("name", sorted(BASELINE_LAYERS))
def test_outputs_at_initialization(name, param_shape):
    x = sample(seed=1)
    layer = BASELINE_LAYERS[name](param_shape=param_shape, dtype="float64")
    out = np.asarray(layer(x))
    np.testing.assert_allclose(out, initial_reference(name, x), rtol=1e-12, atol=1e-12)
    # the initial weights themselves, against values computed here
    weights = layer.get_weights()
    full = base_shape(param_shape)
    if name == "prelu":
        np.testing.assert_array_equal(weights[0], np.full(full, 0.25))
    elif name == "pswish":
        np.testing.assert_array_equal(weights[0], np.ones(full))
    elif name == "apl":
        np.testing.assert_array_equal(weights[0], np.zeros(full + (7,)))
        quantiles = stats.norm.ppf(np.arange(1, 8) / 8.0)
        np.testing.assert_allclose(weights[1], np.broadcast_to(quantiles, full + (7,)),
                                   atol=1e-12)
    elif name == "splash":
        np.testing.assert_array_equal(weights[0], np.broadcast_to([1.0, 0, 0, 0], full + (4,)))
        np.testing.assert_array_equal(weights[1], np.zeros(full + (4,)))


@pytest.mark.parametrize("cls", [APL, SPLASH])
def test_apl_and_splash_start_as_exact_relu(cls):
    x = np.concatenate([np.linspace(-6.0, 6.0, 1201), [0.0, -0.0, 1e-30, -1e-30]])
    for dtype in ("float32", "float64"):
        xt = x.astype(dtype)[None, :]
        out = np.asarray(cls(dtype=dtype)(xt))
        np.testing.assert_array_equal(out, np.maximum(xt, 0))


def test_pau_starts_close_to_leaky_relu():
    x = np.linspace(-3.0, 3.0, 12001)
    out = np.asarray(PAU(dtype="float64")(x[None, :]))[0]
    err = np.abs(out - leaky_relu(x))
    assert err.max() <= baselines.PAU_FIT_TOLERANCE
    assert err.max() > 0.02  # the fit is not exact: error peaks near the kink at 0 ...
    assert abs(x[np.argmax(err)]) < 0.05
    assert np.mean(err) < 0.01  # ... and is small on average
    # slope of the two arms, away from the kink
    assert np.polyfit(x[x > 1.0], out[x > 1.0], 1)[0] == pytest.approx(1.0, abs=0.05)
    assert np.polyfit(x[x < -1.0], out[x < -1.0], 1)[0] == pytest.approx(0.01, abs=0.05)


def test_pau_fit_reproduces_stored_constants():
    numerator, denominator, error = baselines.fit_pau_coefficients()
    assert len(numerator) == 6 and len(denominator) == 4
    assert error <= baselines.PAU_FIT_TOLERANCE
    stored_error = baselines.pau_fit_error(baselines.PAU_INIT_NUMERATOR,
                                           baselines.PAU_INIT_DENOMINATOR)
    assert stored_error <= baselines.PAU_FIT_TOLERANCE
    assert stored_error == pytest.approx(error, abs=1e-6)
    np.testing.assert_allclose(numerator, baselines.PAU_INIT_NUMERATOR, atol=1e-5)
    np.testing.assert_allclose(denominator, baselines.PAU_INIT_DENOMINATOR, atol=1e-5)
    # independent check of the stored constants' quality on a different grid
    x = np.linspace(-3.0, 3.0, 7919)
    got = ref_pau(x, np.array(baselines.PAU_INIT_NUMERATOR),
                  np.array(baselines.PAU_INIT_DENOMINATOR))
    assert np.abs(got - leaky_relu(x)).max() <= baselines.PAU_FIT_TOLERANCE


def test_fit_pau_script_prints_the_stored_constants(capsys):
    path = Path(__file__).resolve().parent.parent / "scripts" / "fit_pau.py"
    spec = importlib.util.spec_from_file_location("fit_pau_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([]) == 0
    printed = capsys.readouterr().out
    blocks = {}
    for name in ("PAU_INIT_NUMERATOR", "PAU_INIT_DENOMINATOR"):
        body = printed.split(f"{name} = (")[1].split(")")[0]
        blocks[name] = [float(v) for v in re.findall(r"[-+0-9.e]+", body)]
    np.testing.assert_allclose(blocks["PAU_INIT_NUMERATOR"], baselines.PAU_INIT_NUMERATOR,
                               atol=1e-6)
    np.testing.assert_allclose(blocks["PAU_INIT_DENOMINATOR"], baselines.PAU_INIT_DENOMINATOR,
                               atol=1e-6)
    error = float(re.search(r"max \|error\| = ([0-9.e-]+)", printed).group(1))
    assert error <= baselines.PAU_FIT_TOLERANCE


def test_pau_other_degrees_are_fitted():
    layer = PAU(numerator_degree=3, denominator_degree=2, dtype="float64")
    x = np.linspace(-3.0, 3.0, 601)
    out = np.asarray(layer(x[None, :]))[0]
    num, den = layer.get_weights()
    assert num.shape == (4,) and den.shape == (2,)
    np.testing.assert_allclose(out, ref_pau(x, num, den), rtol=1e-12, atol=1e-12)
    assert np.abs(out - leaky_relu(x)).max() < 0.2


# ------------------------------------------------------------------ random weights


def random_weights(layer, rng):
    weights = []
    for w in layer.get_weights():
        weights.append(rng.uniform(-1.0, 1.0, size=w.shape))
    return weights


@pytest.mark.parametrize("param_shape", PARAM_SHAPES)
@pytest.mark.parametrize("name", sorted(BASELINE_LAYERS))
def test_outputs_with_random_weights(name, param_shape):
    seed = [sorted(BASELINE_LAYERS).index(name), PARAM_SHAPES.index(param_shape)]
    rng = np.random.default_rng(seed)
    x = sample(seed=2)
    layer = BASELINE_LAYERS[name](param_shape=param_shape, dtype="float64")
    layer(x)
    weights = random_weights(layer, rng)
    layer.set_weights(weights)
    out = np.asarray(layer(x))
    np.testing.assert_allclose(out, reference(name, x, weights), rtol=1e-12, atol=1e-12)
    # float32 layer agrees to float32 precision
    layer32 = BASELINE_LAYERS[name](param_shape=param_shape)
    layer32(x.astype("float32"))
    layer32.set_weights([w.astype("float32") for w in weights])
    out32 = np.asarray(layer32(x.astype("float32")))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, reference(name, x.astype("float32").astype(np.float64),
                                                [w.astype("float32") for w in weights]),
                               rtol=1e-4, atol=1e-5)


def test_splash_custom_hinges():
    hinges = (0.0, 0.5, 3.0)
    layer = SPLASH(hinges=hinges, param_shape="per-channel", dtype="float64")
    x = sample(shape=(4, 3), seed=3)
    layer(x)
    weights = random_weights(layer, np.random.default_rng(3))
    layer.set_weights(weights)
    np.testing.assert_allclose(np.asarray(layer(x)),
                               ref_splash(x, *weights, hinges=np.array(hinges)),
                               rtol=1e-12, atol=1e-12)
    assert layer.get_config()["hinges"] == [0.0, 0.5, 3.0]


# ------------------------------------------------------------------ gradients


def _loss_fn(layer, x, probe):
    return tf.reduce_sum(layer(x) * probe)


@pytest.mark.parametrize("name", sorted(BASELINE_LAYERS))
def test_parameter_gradients_match_finite_differences(name):
    rng = np.random.default_rng(7)
    x = tf.constant(sample(shape=(6, 3), seed=4))
    probe = tf.constant(rng.normal(size=(6, 3)))
    layer = BASELINE_LAYERS[name](param_shape="per-channel", dtype="float64")
    layer(x)
    weights = [w + rng.uniform(-0.3, 0.3, size=w.shape) for w in layer.get_weights()]
    layer.set_weights(weights)
    with tf.GradientTape() as tape:
        loss = _loss_fn(layer, x, probe)
    grads = [np.asarray(g) for g in tape.gradient(loss, layer.trainable_weights)]
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert any(np.any(g != 0) for g in grads)

    h = 1e-6
    for index, w in enumerate(weights):
        numeric = np.zeros_like(w)
        for pos in np.ndindex(w.shape):
            values = []
            for step in (h, -h):
                trial = [v.copy() for v in weights]
                trial[index][pos] += step
                layer.set_weights(trial)
                values.append(float(_loss_fn(layer, x, probe)))
            numeric[pos] = (values[0] - values[1]) / (2 * h)
        np.testing.assert_allclose(grads[index], numeric, rtol=1e-5, atol=1e-6)
    layer.set_weights(weights)


@pytest.mark.parametrize("name", sorted(BASELINE_LAYERS))
def test_gradients_finite_at_initialization(name):
    x = tf.constant(np.concatenate([[0.0], np.linspace(-4.0, 4.0, 33)])[None, :])
    layer = BASELINE_LAYERS[name](param_shape="per-layer", dtype="float64")
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y)
    for g in tape.gradient(loss, layer.trainable_weights) + [tape.gradient(loss, x)]:
        assert np.all(np.isfinite(np.asarray(g)))
    del tape


# ------------------------------------------------------------------ saving


def test_keras_save_load_round_trip_without_custom_objects(tmp_path):
    assert KERAS3
    model = build_baseline_model()
    rng = np.random.default_rng(11)
    for layer in model.layers[1:]:
        layer.set_weights([rng.uniform(-0.5, 0.5, size=w.shape) for w in layer.get_weights()])
    x = sample(seed=5).astype("float32")
    expected = np.asarray(model(x))
    path = tmp_path / "baselines.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    classes = [type(layer) for layer in restored.layers[1:]]
    assert classes == [PReLU, PSwish, APL, PAU, SPLASH, SPLASH]
    for old, new in zip(model.layers[1:], restored.layers[1:]):
        assert new.get_config() == old.get_config()
        for a, b in zip(old.get_weights(), new.get_weights()):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(restored(x)), expected)
    assert not np.allclose(expected, np.maximum(x, 0))  # the weights really were changed


def test_layers_train_in_a_model():
    def dense(units, seed):
        return keras.layers.Dense(
            units, kernel_initializer=keras.initializers.GlorotUniform(seed=seed))

    model = keras.Sequential([keras.Input(shape=(4,)), dense(4, 0), PReLU(), PAU(),
                              APL(hinges=2), SPLASH(), PSwish(), dense(1, 1)])
    x = sample(shape=(32, 4), seed=6, scale=1.0).astype("float32")
    y = np.mean(x ** 2, axis=1, keepdims=True)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, epochs=5, batch_size=8, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    # every weight moves (APL's b only once its a has left 0, after the first step)
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    assert changed == [True] * len(before)
