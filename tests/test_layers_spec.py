"""keras_actfn.layers.spec: the one activation-spec resolver behind activation_layer,
resolve_activation and replace_activations.

The layers made are checked against NumPy closed forms on a grid; the three callers are
checked to sort every spec the same way.
"""

import numpy as np
import pytest

from keras_actfn.backend import keras
from keras_actfn.expr import ParseError, parse
from keras_actfn.layers import CustomActivation, PReLU
from keras_actfn.layers.custom import activation_layer
from keras_actfn.layers.spec import (CALLABLE, EXPR, KERAS_NAME, ActivationSpec, is_keras_name,
                                     resolve_spec)
from keras_actfn.train import resolve_activation

X = np.linspace(-4.0, 4.0, 33, dtype="float32").reshape(-1, 1)
SIGMOID = 1.0 / (1.0 + np.exp(-X.astype("float64")))


@pytest.mark.parametrize("spec, kind, text, reference", [
    ("relu", KERAS_NAME, "relu", np.maximum(X, 0.0)),
    (" gelu ", KERAS_NAME, "gelu", None),
    ("x*sigmoid(x)", EXPR, "x * sigmoid(x)", X * SIGMOID),
    ("2*x", EXPR, None, 2.0 * X),            # no parentheses, still function text
    ("x", EXPR, "x", X),
    (parse("relu(x) - x"), EXPR, None, np.maximum(X, 0.0) - X),
    (keras.activations.tanh, CALLABLE, "tanh", np.tanh(X)),
    (lambda: CustomActivation("x*sigmoid(x)"), CALLABLE, "x * sigmoid(x)", X * SIGMOID),
    (lambda: PReLU(), CALLABLE, "PReLU", np.maximum(X, 0.0) + 0.25 * np.minimum(X, 0.0)),
])
def test_specs_resolve_make_layers_and_name_themselves(spec, kind, text, reference):
    resolved = resolve_spec(spec)
    assert resolved.kind == kind
    if text is not None:
        assert resolved.text() == text
    a, b = resolved.layer(), resolved.layer()
    assert isinstance(a, keras.layers.Layer) and a is not b
    if reference is not None:
        np.testing.assert_allclose(np.asarray(activation_layer(spec)(X)), reference,
                                   rtol=1e-5, atol=1e-6)
    # evaluate_activation sorts the spec the same way and records the same text
    value, recorded = resolve_activation(spec)
    assert value is resolved.value or value == resolved.value
    assert recorded == resolved.text()


def test_keras_names_and_function_text():
    assert is_keras_name("relu") and is_keras_name("swish")
    assert not is_keras_name("x") and not is_keras_name("relu(x)")
    assert not is_keras_name("2*x") and not is_keras_name("no_such_activation")
    # surgery takes function text only: a bare operator name needs its argument there
    with pytest.raises(ParseError, match="parentheses"):
        resolve_spec("relu", keras_names=False)
    with pytest.raises(ParseError, match="unknown name 'foo'"):
        resolve_spec("foo")


def test_names_reach_the_layers():
    assert resolve_spec("alpha*x").layer(name="a1").name == "a1"
    assert resolve_spec("relu").layer(name="r1").name == "r1"
    assert resolve_spec(keras.activations.relu).layer(name="k1").name == "k1"
    made = resolve_spec(lambda: PReLU(name="own")).layer(name="ignored")
    assert made.name == "own"  # a factory's layer keeps the name it was given
    assert resolve_spec("alpha*x").layer(param_shape="per-layer").param_shape == "per-layer"


def test_errors():
    with pytest.raises(TypeError, match="not a layer instance"):
        resolve_spec(PReLU())
    with pytest.raises(TypeError, match="cannot make an activation layer from 3"):
        resolve_spec(3)
    with pytest.raises(TypeError, match="got int"):
        resolve_spec(3, unsupported="fn must be text; got {type}")
    with pytest.raises(TypeError, match="returned int, not a Keras layer"):
        ActivationSpec(CALLABLE, lambda: 3).layer()
    with pytest.raises(TypeError, match="cannot evaluate 3"):
        resolve_activation(3)
    assert ActivationSpec(CALLABLE, lambda: 3).text() == "<lambda>"  # not a layer: its name
