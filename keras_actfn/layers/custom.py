"""``CustomActivation``: the one Keras layer every discovered function becomes."""

from __future__ import annotations

import math

from ..backend import keras, serializable, tf
from ..expr import Apply, Const, Expr, evaluate, gaussian_moments, parse
from .sharing import checked_input_shape, normalize_param_shape, parameter_shape
from .validate import check_bool, check_number, from_config


@serializable
class CustomActivation(keras.layers.Layer):
    """An activation function given as text or as an :class:`~keras_actfn.expr.Expr`.

    Args:
        fn: the function, e.g. ``"alpha*swish(beta*x)"`` or ``"max(relu(x), cosh(elu(x)))"``.
        param_shape: ``"per-layer"`` (one scalar per slot), ``"per-channel"`` (one value per
            channel of the last axis) or ``"per-neuron"`` (one value per non-batch element)
            for the learnable slots (``alpha``, ``beta``, ...), each initialized to 1 as in
            PANGAEA. On an input with no axis but the batch axis (shape ``(batch,)``, one
            scalar per example) there are no channels or neurons to share over, so
            per-channel and per-neuron fall back to one value per layer there (the
            ``param_shape`` setting itself is kept, and saved, as given).
        clip: if given, outputs are bounded to ``[-clip, clip]`` (GRAFS's constraint on
            unbounded operations, with ``clip=10``).
        center: subtract the function's Gaussian mean ``E f(Z)``, ``Z ~ N(0, 1)``, computed
            with the parameters at their initial value 1 (AutoInit++, §5.11).

    The layer works on its own (``x = CustomActivation("x*sigmoid(x)")(x)``) and as the
    ``activation=`` of ``Dense``/``Conv`` layers. Its config holds only the canonical text,
    so saved models reload with ``keras.models.load_model(path)`` once keras_actfn is
    imported: no ``custom_objects``, ``safe_mode`` left on. Every setting is checked, from
    code or from a file alike (``center: "false"`` is an error naming ``center``, not
    centering), and every function the layer accepts prints to text that parses back
    (the tree's and the parser's limits are derived from each other), so every model that
    saves reloads.
    """

    def __init__(self, fn, param_shape="per-channel", clip=None, center=False, **kwargs):
        super().__init__(**kwargs)
        self.fn: Expr = _function(fn, "fn", type(self).__name__)
        self.param_shape = normalize_param_shape(param_shape)
        self.clip = check_number(clip, "clip", type(self).__name__, positive=True,
                                 allow_none=True)
        self.center = check_bool(center, "center", type(self).__name__)
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
        mode = self.param_shape
        rank = checked_input_shape(input_shape).rank
        if rank is not None and rank <= 1:  # (batch,): no channel or neuron axis to share
            mode = "per-layer"
        shape = parameter_shape(mode, input_shape)
        for name in self.fn.params:
            self._slots[name] = self.add_weight(name=name, shape=shape, initializer="ones",
                                                trainable=True)
        super().build(input_shape)

    def call(self, inputs):
        params = {name: tf.cast(w, inputs.dtype) for name, w in self._slots.items()}
        y = _evaluate_tf(self.fn, inputs, params)
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

    @classmethod
    def from_config(cls, config):
        return from_config(super().from_config, config)

    def __repr__(self):
        return f"CustomActivation({str(self.fn)!r}, param_shape={self.param_shape!r})"


# Plain TensorFlow ops with no control flow on tensors: nothing for AutoGraph to convert,
# and converting the tree's evaluation (tf_keras does, inside a layer's call) costs frames
# and time per node: a tree 64 deep exceeded Python's recursion limit, one with 7,000
# inputs took minutes to trace.
@tf.autograph.experimental.do_not_convert
def _evaluate_tf(fn, inputs, params):
    return evaluate(fn, inputs, params, backend="tf")


def _function(fn, field, layer) -> Expr:
    if not isinstance(fn, (str, Expr)):
        raise ValueError(f"{layer}: {field} must be activation-function text such as "
                         f"'x*sigmoid(x)', got {type(fn).__name__}")
    return parse(fn)


@serializable
class ActivationFunction(CustomActivation):
    """The original AQuaSurF layer's interface: ``ActivationFunction(fn_name=...)``.

    Published names load as they are, in AQuaSurF's call form
    (``ActivationFunction(fn_name='max(relu(x),cosh(elu(x)))')``,
    ``'sum_n(abs(x),swish(x),sigmoid(x))'``, ``'prod_n(sigmoid(x),negative(x),hard_sigmoid(x))'``)
    or in infix form. It is a :class:`CustomActivation`: AutoInit, surgery and the
    searches treat it as one.

    Args:
        fn_name: the function's text.
        normalize: as in the original, shift and scale the function so that its output has
            mean 0 and variance 1 for a standard normal input: ``(f(x) - m) / s`` with
            ``m = E f(Z)`` and ``s^2 = Var f(Z)``, ``Z ~ N(0, 1)`` (learnable slots at 1).
            The layer's ``fn`` is that normalized function; the config keeps ``fn_name``
            and ``normalize`` as given.
        param_shape, clip, center, and the Keras layer keywords: as for
            ``CustomActivation`` (AutoInit++ sets ``center`` on the layers it centers).

    Its config holds ``fn_name`` and ``normalize`` (the original's keys) besides
    ``param_shape``, ``clip`` and ``center``; saved models reload with
    ``keras.models.load_model``.
    """

    def __init__(self, fn_name, normalize=False, param_shape="per-channel", clip=None,
                 center=False, **kwargs):
        layer = type(self).__name__
        fn = _function(fn_name, "fn_name", layer)
        normalize = check_bool(normalize, "normalize", layer)
        if normalize:
            fn = _normalized(fn)
        super().__init__(fn, param_shape=param_shape, clip=clip, center=center, **kwargs)
        self.fn_name = fn_name if isinstance(fn_name, str) else str(fn_name)
        self.normalize = normalize

    def get_config(self):
        config = super().get_config()
        del config["fn"]
        config.update(fn_name=self.fn_name, normalize=self.normalize)
        return config

    def __repr__(self):
        return f"ActivationFunction(fn_name={self.fn_name!r}, normalize={self.normalize!r})"


def _normalized(fn: Expr) -> Expr:
    mean, second = gaussian_moments(fn)
    variance = second - mean * mean
    if not (math.isfinite(mean) and math.isfinite(variance) and variance > 0):
        raise ValueError(f"cannot normalize {fn}: its Gaussian mean and variance are "
                         f"{mean} and {max(variance, 0.0) if math.isfinite(variance) else variance}")
    try:
        return Apply("div", Apply("sub", fn, Const(mean)), Const(math.sqrt(variance)))
    except ValueError as err:  # already at the depth or size limit
        raise ValueError(f"cannot normalize {fn}: {err}") from err


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

