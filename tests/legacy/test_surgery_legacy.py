"""replace_activations under tf_keras (the legacy Keras), with a keras-cv-attention-models model.

Collected only in a process started with TF_USE_LEGACY_KERAS=1 (see tests/conftest.py). The
models and helpers are in tests/surgery_models.py, shared with the Keras 3 tests.
"""

import numpy as np
import pytest

from keras_actfn import backend
from keras_actfn.backend import keras
from keras_actfn.layers import CustomActivation
from keras_actfn.surgery import SurgeryError, find_activation_sites, replace_activations
import surgery_models
from surgery_models import (X, Subclassed, activation_layer, copy_by_name, custom_layers, outputs,
                            relu_layer)

L = keras.layers


def build_functional(act="relu", relu_layer=relu_layer):
    """The shared functional model with its DepthwiseConv2D(act) block: 5 activation sites."""
    return surgery_models.build_functional(act, relu_layer, depthwise=True)


def build_sequential(act="relu", relu_layer=relu_layer):
    """The shared sequential model without an Activation after BN: 3 activation sites."""
    return surgery_models.build_sequential(act, relu_layer, activation_after_bn=False)


def test_backend_is_legacy_tf_keras():
    assert backend.LEGACY and not backend.KERAS3
    assert keras.__name__ == "tf_keras"


@pytest.mark.parametrize("builder", [build_functional, build_sequential])
def test_relu_text_reproduces_the_original_exactly(builder):
    model = builder()
    new, sites = replace_activations(model, "relu(x)", return_sites=True)
    assert len(sites) == len(custom_layers(new)) == (5 if builder is build_functional else 3)
    np.testing.assert_allclose(outputs(new), outputs(model), rtol=0, atol=1e-6)
    assert np.abs(outputs(model)).max() > 0.1


def test_swish_matches_an_independently_built_swish_model_and_weights_are_kept():
    model = build_functional()
    reference = build_functional(act="swish", relu_layer=activation_layer("swish"))
    copy_by_name(model, reference)
    before = [w.numpy().copy() for w in model.weights]
    new = replace_activations(model, "x*sigmoid(x)")
    expected = outputs(reference)
    np.testing.assert_allclose(outputs(new), expected, rtol=0, atol=1e-6)
    assert np.abs(expected - outputs(model)).max() > 1e-2

    for layer in model.layers:  # untouched weights copied bit for bit, original unchanged
        copy = new.get_layer(layer.name)
        skip = {id(v) for v in getattr(getattr(copy, "activation", None), "weights", [])}
        mine = [w for w in copy.weights if id(w) not in skip]
        if not isinstance(copy, CustomActivation):
            assert [w.numpy().tobytes() for w in mine] == \
                [w.numpy().tobytes() for w in layer.weights]
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))
    assert not custom_layers(model)


def test_parametric_fn_trains_and_reloads_as_keras_file(tmp_path):
    new = replace_activations(build_functional(), "alpha*swish(beta*x)")
    customs = custom_layers(new)
    assert [tuple(w.shape) for c in customs for w in c.weights] == \
        [(4,), (4,), (4,), (4,), (4,), (4,), (4,), (4,), (5,), (5,)]
    start = [w.numpy().copy() for c in customs for w in c.weights]
    new.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    new.fit(X, np.ones((4, 3), "float32"), batch_size=4, epochs=1, verbose=0)
    after = [w.numpy() for c in customs for w in c.weights]
    assert all(np.abs(a - b).max() > 0 for a, b in zip(after, start))
    path = str(tmp_path / "legacy.keras")
    new.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(outputs(loaded), outputs(new), rtol=0, atol=1e-6)


def test_subclassed_model_raises():
    model = Subclassed(units=2)
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(SurgeryError, match="subclassed"):
        replace_activations(model, "x")


@pytest.fixture(scope="module")
def mobilevit_model():
    from keras_cv_attention_models import mobilevit

    return mobilevit.MobileViT_V2_050(input_shape=(64, 64, 3), num_classes=10, pretrained=None,
                                      classifier_activation=None)


def test_kecam_mobilevit_swish_sites_are_replaced_exactly(mobilevit_model):
    model = mobilevit_model
    assert isinstance(model, keras.Model) and type(model).__module__.startswith("tf_keras")
    swish_layers = [layer.name for layer in model.layers if isinstance(layer, L.Activation)
                    and layer.get_config()["activation"] == "swish"]
    assert len(swish_layers) == 25
    assert [s.layer_name for s in find_activation_sites(model)] == swish_layers

    x = np.random.RandomState(5).rand(2, 64, 64, 3).astype("float32")
    expected = outputs(model, x)
    new, sites = replace_activations(model, "swish(x)", targets="silu", return_sites=True)
    assert sorted(s.layer_name for s in sites) == sorted(swish_layers)
    customs = [layer for layer in new.layers if isinstance(layer, CustomActivation)]
    assert len(customs) == len(sites) == 25 and len({id(c) for c in customs}) == 25
    assert not [layer for layer in new.layers if isinstance(layer, L.Activation)
                and layer.get_config()["activation"] == "swish"]
    np.testing.assert_allclose(outputs(new, x), expected, rtol=0, atol=1e-5)
    assert np.abs(expected).max() > 1e-3
    assert len(new.weights) == len(model.weights)  # "swish(x)" has no parameters
