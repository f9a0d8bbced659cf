"""Shared models and helpers for the model-surgery tests, Keras 3 and legacy (tests/legacy).

Not a test module (no ``test_`` prefix): ``tests/test_surgery.py`` and
``tests/legacy/test_surgery_legacy.py`` import it; ``tests/`` is on ``sys.path`` because
``tests/conftest.py`` lives there. Keras comes from ``keras_actfn.backend``, which picks Keras 3
or tf_keras per process, so the same builders make Keras 3 models in one process and tf_keras
models in the legacy one. Where the two test files want different models, the builders take a
parameter (``depthwise``, ``activation_after_bn``, the activation names) rather than being copied.
"""

import numpy as np

from keras_actfn.backend import keras
from keras_actfn.layers import CustomActivation

L = keras.layers
X = np.random.RandomState(0).randn(4, 8, 8, 3).astype("float32")


def relu_layer(name):
    return L.ReLU(name=name)


def activation_layer(activation):
    """A stand-in for ``relu_layer``: makes ``Activation(activation)`` layers of a given name.

    The SiLU is spelled "silu" in the Keras 3 tests and "swish" in the legacy ones.
    """
    def make(name):
        return L.Activation(activation, name=name)

    return make


def build_functional(act="relu", relu_layer=relu_layer, depthwise=False):
    """Conv(act) -> [Conv -> BN -> Activation(act)] + skip -> ReLU -> GAP -> Dense(act) -> Dense.

    ``depthwise=False``: the block's conv is ``Conv2D`` "c2" without an activation (4 sites).
    ``depthwise=True`` (the legacy tests): it is ``DepthwiseConv2D(act)`` "dw", one more site.
    """
    inp = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(4, 3, padding="same", activation=act, name="c1")(inp)
    if depthwise:
        y = L.DepthwiseConv2D(3, padding="same", activation=act, name="dw")(x)
    else:
        y = L.Conv2D(4, 3, padding="same", name="c2")(x)
    y = L.BatchNormalization(name="bn")(y)
    y = L.Activation(act, name="a1")(y)
    x = L.Add(name="add")([x, y])
    x = relu_layer("r1")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(5, activation=act, name="d1")(x)
    out = L.Dense(3, name="out")(x)
    return randomize(keras.Model(inp, out, name="func"))


def build_sequential(act="relu", relu_layer=relu_layer, activation_after_bn=True):
    """Conv(act) -> BN [-> Activation(act) "a1"] -> ReLU -> Flatten -> Dense(act) -> Dense.

    ``activation_after_bn=True``: 4 sites; ``False`` (the legacy tests): no "a1", 3 sites.
    """
    layers = [
        keras.Input((8, 8, 3)),
        L.Conv2D(4, 3, activation=act, name="c1"),
        L.BatchNormalization(name="bn"),
    ]
    if activation_after_bn:
        layers.append(L.Activation(act, name="a1"))
    layers += [
        relu_layer("r1"),
        L.Flatten(name="flat"),
        L.Dense(6, activation=act, name="d1"),
        L.Dense(3, name="out"),
    ]
    return randomize(keras.Sequential(layers, name="seq"))


def randomize(model, seed=1):
    """Give every weight (biases and BN statistics included) a distinct random value."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            v = rng.normal(0.0, 0.5, tuple(w.shape)).astype("float32")
            if "variance" in w.name:
                v = np.abs(v) + 0.5
            values.append(v)
        if values:
            layer.set_weights(values)
    return model


def copy_by_name(source, target):
    """Copy the weights of every ``target`` layer from ``source``'s layer of the same name."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def outputs(model, x=X):
    return np.asarray(model(x, training=False))


def custom_layers(model):
    """Every CustomActivation in a model: standalone layers and layers' activations."""
    found = []
    for layer in model.layers:
        if isinstance(layer, CustomActivation):
            found.append(layer)
        elif isinstance(getattr(layer, "activation", None), CustomActivation):
            found.append(layer.activation)
    return found


class Subclassed(keras.Model):
    """A subclassed model (no layer graph to operate on) around one ``Dense(units, "relu")``."""

    def __init__(self, units=3):
        super().__init__()
        self.dense = L.Dense(units, activation="relu")

    def call(self, inputs):
        return self.dense(inputs)
