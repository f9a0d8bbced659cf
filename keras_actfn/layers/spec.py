"""One resolver of activation specs: what a caller may pass where an activation is wanted.

A spec is activation-function text (``"x*sigmoid(x)"``) or an
:class:`~keras_actfn.expr.Expr`, a Keras activation name (``"relu"``), a zero-argument
factory returning a new Keras layer (``lambda: PReLU()``), or a Keras activation callable
(``keras.activations.relu``). :func:`resolve_spec` sorts a spec into an
:class:`ActivationSpec` once (text is parsed there, so a bad function fails before anything
is built); the spec then makes a fresh layer per activation site (:meth:`ActivationSpec.layer`)
and names itself for records (:meth:`ActivationSpec.text`).

Used by :func:`~keras_actfn.layers.custom.activation_layer` (the model zoo's builders),
:func:`~keras_actfn.train.evaluate.resolve_activation` and
:func:`~keras_actfn.surgery.replace_activations` (which takes function text only: there
``"relu"`` is a parse error, not Keras's ReLU).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..backend import keras
from ..expr import Expr, parse
from .custom import CustomActivation

#: the kinds of :class:`ActivationSpec`
EXPR, KERAS_NAME, CALLABLE = "expr", "keras", "callable"

LAYER_INSTANCE = ("pass a layer factory (e.g. `lambda: PReLU()`) or function text, not a "
                  "layer instance: every activation site needs its own layer")

__all__ = ["ActivationSpec", "resolve_spec", "is_keras_name", "EXPR", "KERAS_NAME", "CALLABLE"]


class ActivationSpec(NamedTuple):
    """A resolved activation spec.

    ``kind``: :data:`EXPR` (``value`` is the parsed :class:`~keras_actfn.expr.Expr`),
    :data:`KERAS_NAME` (``value`` is the Keras activation name) or :data:`CALLABLE`
    (``value`` is a layer factory or a Keras activation function: which one shows only
    when it is called).
    """

    kind: str
    value: Any

    def text(self) -> str:
        """The canonical text for records: the function's text, the Keras name, the text
        of the ``CustomActivation`` (or the class name of the layer) a factory makes (it is
        called once to see), or a callable's ``__name__``."""
        if self.kind == EXPR:
            return str(self.value)
        if self.kind == KERAS_NAME:
            return self.value
        name = getattr(self.value, "__name__", None)
        try:
            made = self.value()
        except Exception:  # noqa: BLE001 - a Keras activation callable needs its input
            return name or repr(self.value)
        if isinstance(made, CustomActivation):
            return str(made.fn)
        if isinstance(made, keras.layers.Layer):
            return type(made).__name__
        return name or repr(self.value)

    def layer(self, **kwargs):
        """A new layer (one per call): ``CustomActivation(expr, **kwargs)``, a Keras
        ``Activation`` (named ``kwargs["name"]``) for a Keras name or activation callable,
        or what a factory returns (its own name kept)."""
        if self.kind == EXPR:
            return CustomActivation(self.value, **kwargs)
        if self.kind == KERAS_NAME:
            return keras.layers.Activation(self.value, name=kwargs.get("name"))
        try:
            made = self.value()
        except TypeError:  # an activation function such as keras.activations.relu
            return keras.layers.Activation(self.value, name=kwargs.get("name"))
        if not isinstance(made, keras.layers.Layer):
            raise TypeError(f"activation factory returned {type(made).__name__}, not a Keras layer")
        return made


def is_keras_name(text: str) -> bool:
    """Whether ``text`` is a bare name Keras knows as an activation (``"relu"``, ``"gelu"``);
    ``"x"`` and anything with parentheses or operators is function text."""
    if "(" in text or text == "x" or not text.isidentifier():
        return False
    try:
        keras.activations.get(text)
    except (ValueError, TypeError):
        return False  # not a Keras name: the parser says what is wrong with it
    return True


def resolve_spec(spec, *, keras_names=True,
                 unsupported="cannot make an activation layer from {spec!r}") -> ActivationSpec:
    """Sort ``spec`` into an :class:`ActivationSpec`.

    Text is a Keras activation name when ``keras_names`` and :func:`is_keras_name` say so,
    and is parsed otherwise (:class:`~keras_actfn.expr.ParseError` for bad text). A layer
    instance is a ``TypeError`` (each site needs its own layer); so is any other
    non-callable, with ``unsupported`` formatted with ``spec`` and ``type`` (the name of
    its type) as the message.
    """
    if isinstance(spec, Expr):
        return ActivationSpec(EXPR, spec)
    if isinstance(spec, str):
        text = spec.strip()
        if keras_names and is_keras_name(text):
            return ActivationSpec(KERAS_NAME, text)
        return ActivationSpec(EXPR, parse(text))
    if isinstance(spec, keras.layers.Layer):
        raise TypeError(LAYER_INSTANCE)
    if callable(spec):
        return ActivationSpec(CALLABLE, spec)
    raise TypeError(unsupported.format(spec=spec, type=type(spec).__name__))
