"""``CustomActivation``: the one Keras layer every discovered function becomes."""

from __future__ import annotations

import math

from ..backend import keras, serializable, tf
from ..expr import Expr, evaluate, gaussian_moments, parse
from .sharing import normalize_param_shape, parameter_shape


@serializable
class CustomActivation(keras.layers.Layer):
    """An activation function given as text or as an :class:`~keras_actfn.expr.Expr`.

    Args:
        fn: the function, e.g. ``"alpha*swish(beta*x)"`` or ``"max(relu(x), cosh(elu(x)))"``.
        param_shape: ``"per-layer"`` (one scalar per slot), ``"per-channel"`` (one value per
            channel of the last axis) or ``"per-neuron"`` (one value per non-batch element)
            for the learnable slots (``alpha``, ``beta``, ...), each initialized to 1 as in
            PANGAEA.
        clip: if given, outputs are bounded to ``[-clip, clip]`` (GRAFS's constraint on
            unbounded operations, with ``clip=10``).
        center: subtract the function's Gaussian mean ``E f(Z)``, ``Z ~ N(0, 1)``, computed
            with the parameters at their initial value 1 (AutoInit++, §5.11).

    The layer works on its own (``x = CustomActivation("x*sigmoid(x)")(x)``) and as the
    ``activation=`` of ``Dense``/``Conv`` layers. Its config holds only the canonical text,
    so saved models reload with ``keras.models.load_model(path)`` once keras_actfn is
    imported: no ``custom_objects``, ``safe_mode`` left on.
    """

    def __init__(self, fn, param_shape="per-channel", clip=None, center=False, **kwargs):
        super().__init__(**kwargs)
        self.fn: Expr = parse(fn)
        self.param_shape = normalize_param_shape(param_shape)
        if clip is not None:
            clip = float(clip)
            if not (clip > 0 and math.isfinite(clip)):
                raise ValueError(f"clip must be a positive finite bound, got {clip}")
        self.clip = clip
        self.center = bool(center)
        self.shift = 0.0
        if self.center:
            self.shift = gaussian_moments(self.fn)[0]
            if not math.isfinite(self.shift):
                raise ValueError(f"cannot center {self.fn}: its Gaussian mean is {self.shift}")
        self._slots = {}

    @property
    def param_names(self) -> tuple:
        return self.fn.params

    def build(self, input_shape):
        shape = parameter_shape(self.param_shape, input_shape)
        for name in self.fn.params:
            self._slots[name] = self.add_weight(name=name, shape=shape, initializer="ones",
                                                trainable=True)
        super().build(input_shape)

    def call(self, inputs):
        params = {name: tf.cast(w, inputs.dtype) for name, w in self._slots.items()}
        y = evaluate(self.fn, inputs, params, backend="tf")
        if self.shift:
            y = y - tf.cast(self.shift, y.dtype)
        if self.clip is not None:
            y = tf.clip_by_value(y, -tf.cast(self.clip, y.dtype), tf.cast(self.clip, y.dtype))
        return y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(fn=str(self.fn), param_shape=self.param_shape, clip=self.clip,
                      center=self.center)
        return config

    def __repr__(self):
        return f"CustomActivation({str(self.fn)!r}, param_shape={self.param_shape!r})"


def activation_layer(spec, **kwargs):
    """A fresh activation layer from a flexible spec (one new layer per call).

    ``spec`` may be activation-function text (``"x*sigmoid(x)"``) or an ``Expr`` ->
    ``CustomActivation``; a Keras activation name (``"relu"``) -> ``keras.layers.Activation``;
    a zero-argument factory returning a layer (``lambda: PReLU()``) -> its result; a Keras
    activation callable (``keras.activations.relu``) -> ``Activation`` wrapping it.
    ``kwargs`` go to ``CustomActivation`` (``param_shape``, ``clip``, ``center``, ``name``).
    A ``name`` names the layer made from text, an ``Expr``, a Keras name or an activation
    callable; a factory's layer keeps the name the factory gave it (sites of one model
    built from one factory would otherwise need unique names from the caller).
    """
    if isinstance(spec, Expr):
        return CustomActivation(spec, **kwargs)
    if isinstance(spec, str):
        if "(" in spec or spec.strip() == "x":
            return CustomActivation(spec, **kwargs)
        return keras.layers.Activation(spec, name=kwargs.get("name"))
    if isinstance(spec, keras.layers.Layer):
        raise TypeError("pass a factory (e.g. `lambda: PReLU()`) or text, not a layer instance: "
                        "each activation site needs its own layer")
    if callable(spec):
        try:
            made = spec()
        except TypeError:  # an activation function such as keras.activations.relu
            return keras.layers.Activation(spec, name=kwargs.get("name"))
        if not isinstance(made, keras.layers.Layer):
            raise TypeError(f"activation factory returned {type(made).__name__}, not a Keras layer")
        return made
    raise TypeError(f"cannot make an activation layer from {spec!r}")

