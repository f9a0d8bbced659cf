"""Issue 17/16 layer hardening under the legacy Keras (tf_keras); TF_USE_LEGACY_KERAS=1.

The same checks as tests/test_layers_hardening.py where the two Kerases differ: saving and
loading, and how a layer's constructor errors reach the caller of ``load_model``.
"""

import json
import zipfile

import numpy as np
import pytest

from keras_actfn import backend
from keras_actfn.backend import keras
from keras_actfn.expr import X, Apply, Const
from keras_actfn.layers import PAU, ActivationFunction, CustomActivation


def _reload(model, tmp_path, name="m.keras"):
    path = str(tmp_path / name)
    model.save(path)
    return keras.models.load_model(path), path


def _one_layer(layer, width=3):
    inputs = keras.Input((width,))
    return keras.Model(inputs, layer(inputs))


def test_runs_under_tf_keras():
    assert backend.LEGACY


def test_the_probes_two_trees_save_and_reload(tmp_path):
    wide = Apply("sum_n", *([X] * 7000))
    deep = Apply("pow", X, Const(-2.0))
    for _ in range(63):
        deep = Apply("tanh", deep)
    x = np.array([[0.25, -1.5, 2.0]], dtype="float32")
    for i, (fn, expected) in enumerate([(wide, 7000 * x), (deep, None)]):
        loaded, _ = _reload(_one_layer(CustomActivation(fn)), tmp_path, f"m{i}.keras")
        assert loaded.layers[-1].fn == fn
        if expected is None:
            expected = x.astype("float64") ** -2
            for _ in range(63):
                expected = np.tanh(expected)
        np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-5)


def _edit(src, dst, class_name, **changes):
    with zipfile.ZipFile(src) as archive:
        files = {n: archive.read(n) for n in archive.namelist()}
    config = json.loads(files["config.json"])
    for layer in config["config"]["layers"]:
        if layer["class_name"] == class_name:
            layer["config"].update(changes)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return dst


@pytest.mark.parametrize("class_name, changes, message", [
    ("CustomActivation", dict(center="false"), "center must be true or false"),
    ("PAU", dict(numerator_degree=300, denominator_degree=300), "numerator_degree"),
])
def test_bad_configs_fail_naming_the_field(tmp_path, class_name, changes, message):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, PAU()(CustomActivation("alpha*x")(inputs)))
    _, path = _reload(model, tmp_path)
    with pytest.raises(ValueError, match=message):
        keras.models.load_model(_edit(path, str(tmp_path / "bad.keras"), class_name, **changes))


def test_scalar_inputs_and_the_aquasurf_alias(tmp_path):
    inputs = keras.Input(shape=())
    layer = CustomActivation("alpha*x + beta")  # per-channel: falls back to per-layer
    model = keras.Model(inputs, ActivationFunction(fn_name="max(relu(x),cosh(elu(x)))")(
        layer(inputs)))
    assert [tuple(w.shape) for w in layer.weights] == [(), ()]
    x = np.linspace(-2, 2, 5).astype("float32")
    h = x + 1.0
    elu = np.where(h > 0, h, np.expm1(np.minimum(h, 0)))
    np.testing.assert_allclose(model(x).numpy(), np.maximum(np.maximum(h, 0), np.cosh(elu)),
                               rtol=1e-5)
    loaded, _ = _reload(model, tmp_path)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=0, atol=0)
    assert loaded.layers[-1].get_config()["fn_name"] == "max(relu(x),cosh(elu(x)))"
