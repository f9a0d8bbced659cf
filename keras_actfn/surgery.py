"""Model surgery: give an existing Keras model new activation functions.

:func:`replace_activations` returns a *new* model in which every matching activation site
of the original holds its own new :class:`~keras_actfn.layers.CustomActivation` (or any
layer a factory makes), with every other weight copied over. The original model is left
as it was.

What counts as an activation site:

* ``kind="layer"``: a standalone activation layer. ``Activation`` layers are named after
  their function (``Activation("relu")`` is ``"relu"``). ``ReLU`` layers are named after
  what they compute: plain ``ReLU()`` is ``"relu"``, ``ReLU(max_value=6)`` is ``"relu6"``,
  a non-zero ``negative_slope`` (without a cap) is ``"leaky_relu"``, a non-zero
  ``threshold`` is ``"thresholded_relu"`` and any other cap or combination is
  ``"clipped_relu"``. ``LeakyReLU``, ``ELU``, ``PReLU`` and ``ThresholdedReLU`` are
  ``"leaky_relu"``, ``"elu"``, ``"prelu"`` and ``"thresholded_relu"``. keras_actfn's own
  layers count too: a ``CustomActivation`` is ``"custom_activation"`` (so a model can be
  operated on again) and the baselines are ``"prelu"``, ``"pswish"``, ``"apl"``, ``"pau"``
  and ``"splash"``.
* ``kind="argument"``: the ``activation=`` of ``Dense``, ``Conv*``, ``DepthwiseConv*``,
  ``SeparableConv*`` or any other layer whose config has an ``activation`` entry, named after
  the function (``keras.activations.relu`` is ``"relu"``).

Names are matched, never layer names: a layer called ``"relu_block"`` holding a tanh is a
``"tanh"`` site. ``"silu"`` and ``"swish"`` are one name (``"swish"``), as are
``"hard_silu"``/``"hard_swish"``. The identity (``None``/``"linear"``) is never a site, and
``Softmax`` layers are not activation layers (they are not elementwise).

A shared layer (one layer object called at several places) is one site: its replacement is
shared the same way. Layers inside nested Sequential/Functional models are visited too; their
sites are reported as ``"outer_model/inner_model/layer"``. A nested *subclassed* model is
copied whole (from its config) without looking inside, and activations applied inside any
custom layer's ``call`` are invisible to surgery: they are code, not graph.

Everything that differs between Keras 3 and ``tf_keras`` in reading and cloning the model
lives in :mod:`keras_actfn.keras_graph`.
"""

from __future__ import annotations

import re
from collections import Counter, namedtuple

from . import keras_graph
from .backend import keras
from .layers import BASELINE_LAYERS, CustomActivation
from .layers.spec import EXPR, resolve_spec

__all__ = ["replace_activations", "find_activation_sites", "hidden_activations",
           "output_layers", "activation_name",
           "standalone_name", "normalize_name", "Site", "SurgeryError"]


class SurgeryError(ValueError):
    """The model cannot be operated on as asked (subclassed model, nothing matched, ...)."""


Site = namedtuple("Site", ["layer_name", "kind", "activation"])
Site.__doc__ = """One replaced (or replaceable) activation site.

``layer_name``: the layer's name, prefixed ``"inner_model/"`` inside nested models.
``kind``: ``"layer"`` (a standalone activation layer, replaced by the new layer, which keeps
its name) or ``"argument"`` (the ``activation=`` of a layer, which now holds the new layer as
its ``activation``). ``activation``: the original activation's resolved name.
"""

IDENTITY_NAMES = frozenset({"linear", "identity", "none"})

_ALIASES = {
    "silu": "swish",
    "hard_silu": "hard_swish",
    "hardswish": "hard_swish",
    "hardsilu": "hard_swish",
    "leakyrelu": "leaky_relu",
    "hardsigmoid": "hard_sigmoid",
    "logsigmoid": "log_sigmoid",
}


def normalize_name(name: str) -> str:
    """Canonical activation name: lower case, ``-``/space as ``_``, aliases resolved."""
    text = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    return _ALIASES.get(text, text)


# The standalone activation layer classes of the active Keras (tf_keras still has
# ThresholdedReLU; Keras 3 dropped it).
_ACTIVATION_LAYERS = {name: getattr(keras.layers, name) for name in (
    "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "ThresholdedReLU")
    if hasattr(keras.layers, name)}


# ------------------------------------------------------------------------ naming
def standalone_name(layer):
    """Activation name of a standalone activation layer, or None if ``layer`` is not one."""
    if isinstance(layer, CustomActivation):
        return "custom_activation"
    for name, cls in BASELINE_LAYERS.items():
        if isinstance(layer, cls):
            return name
    def is_a(name):
        return name in _ACTIVATION_LAYERS and isinstance(layer, _ACTIVATION_LAYERS[name])

    if is_a("Activation"):
        return activation_name(layer.activation)
    if is_a("ReLU"):
        return _relu_layer_name(layer.get_config())
    if is_a("LeakyReLU"):
        return "leaky_relu"
    if is_a("ELU"):
        return "elu"
    if is_a("PReLU"):
        return "prelu"
    if is_a("ThresholdedReLU"):
        return "thresholded_relu"
    return None


def _relu_layer_name(config) -> str:
    max_value = config.get("max_value")
    slope = float(config.get("negative_slope") or 0.0)
    threshold = float(config.get("threshold") or 0.0)
    if threshold != 0.0:
        return "thresholded_relu"
    if max_value is None:
        return "leaky_relu" if slope != 0.0 else "relu"
    if slope == 0.0 and float(max_value) == 6.0:
        return "relu6"
    return "clipped_relu"


def activation_name(activation):
    """Resolved name of an activation (string, function, layer, or serialized dict).

    Returns ``None`` for no activation. Functions are named by ``__name__``
    (``keras.activations.silu`` is ``"swish"``); layers by :func:`standalone_name`
    (a ``CustomActivation`` is ``"custom_activation"``), other layers by their snake-cased
    class name.
    """
    if activation is None:
        return None
    if isinstance(activation, str):
        return normalize_name(activation)
    if isinstance(activation, dict):  # a serialized activation taken from a config
        inner = activation.get("config")
        return normalize_name(inner if isinstance(inner, str)
                              else _snake(activation.get("class_name", "unknown")))
    if isinstance(activation, keras.layers.Layer):
        return standalone_name(activation) or _snake(type(activation).__name__)
    name = getattr(activation, "__name__", None)
    if name is None:
        func = getattr(activation, "func", None)  # functools.partial
        name = getattr(func, "__name__", None) or _snake(type(activation).__name__)
    return normalize_name(name)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _argument_activation(layer):
    """Name of a (non-identity) ``activation=`` of a layer, or None."""
    try:
        config = layer.get_config()
    except NotImplementedError:  # a custom layer without get_config cannot be rebuilt anyway
        return None
    if not isinstance(config, dict) or "activation" not in config:
        return None
    live = getattr(layer, "activation", None)
    name = activation_name(live) if callable(live) else activation_name(config["activation"])
    return None if name is None or name in IDENTITY_NAMES else name


def _site_name(layer):
    """(kind, activation name) of a layer's activation site, or None."""
    name = standalone_name(layer)
    if name is not None:
        return None if name in IDENTITY_NAMES else ("layer", name)
    if isinstance(layer, keras.Model):
        return None
    name = _argument_activation(layer)
    return None if name is None else ("argument", name)


# ------------------------------------------------------------------------ targets
def _make_matcher(targets):
    if callable(targets) and not isinstance(targets, (str, bytes)):
        return targets, f"predicate {getattr(targets, '__name__', repr(targets))}"
    if isinstance(targets, str):
        targets = (targets,)
    try:
        wanted = frozenset(normalize_name(t) for t in targets)
    except TypeError:
        raise TypeError("targets must be an activation name, a list of names, or a "
                        f"predicate callable(layer, activation_name) -> bool; got {targets!r}"
                        ) from None
    if not wanted:
        raise ValueError("targets is empty: name at least one activation, e.g. ('relu',)")
    return (lambda layer, name: name in wanted), f"targets {sorted(wanted)}"


# ------------------------------------------------------------------------ factories
def _make_factory(fn, param_shape, layer_kwargs):
    """A ``make(name, like_layer) -> Layer`` for the replacement, validated up front."""
    if "name" in layer_kwargs:
        raise TypeError("replace_activations names each replacement itself; drop name=")
    # text is always function text here: parsed once, so a bad text fails before any cloning
    spec = resolve_spec(fn, keras_names=False, unsupported=(
        "fn must be activation-function text, an Expr, or a zero-argument callable "
        "returning a new Keras layer; got {type}"))
    if spec.kind == EXPR:
        spec.layer(param_shape=param_shape, **layer_kwargs)  # a bad argument fails here

        def make(name, like):
            kwargs = dict(layer_kwargs)
            kwargs.setdefault("dtype", like.dtype_policy)
            kwargs.setdefault("trainable", like.trainable)
            return spec.layer(param_shape=param_shape, name=name, **kwargs)

        return make
    if layer_kwargs or param_shape != "per-channel":
        raise TypeError("param_shape and layer keyword arguments apply to text/Expr "
                        "functions; configure the layer inside your factory instead")

    def make(name, like):
        layer = fn()
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"the factory passed as fn must return a new Keras layer "
                            f"on each call; it returned {type(layer).__name__}")
        return layer

    return make


# ------------------------------------------------------------------------ surgery
class _Surgeon:
    def __init__(self, matcher, make):
        self.matcher = matcher
        self.make = make
        self.memo = {}        # id(original layer) -> clone
        self.pairs = []       # (original, clone, site kind or None, replacement or None)
        self.sites = []
        self.seen = Counter()  # every candidate site's activation name, matched or not
        self.made = set()

    def run(self, model, prefix=""):
        if not keras_graph.is_graph_model(model):
            raise SurgeryError(_subclassed_message(model))

        def clone_function(layer):
            key = id(layer)
            if key not in self.memo:
                self.memo[key] = self._clone_layer(layer, prefix)
            return self.memo[key]

        return keras_graph.clone(model, clone_function)

    def _clone_layer(self, layer, prefix):
        if keras_graph.is_graph_model(layer):
            return self.run(layer, prefix + layer.name + "/")
        # A nested subclassed model is one opaque layer: cloned from its config, not entered.
        found = _site_name(layer)
        if found is not None:
            kind, name = found
            self.seen[name] += 1
            if self.matcher(layer, name):
                return self._replace(layer, kind, name, prefix)
        try:
            clone = layer.__class__.from_config(layer.get_config())
        except NotImplementedError as err:
            raise SurgeryError(f"layer {prefix + layer.name!r} ({type(layer).__name__}) cannot be "
                               f"copied: it has no usable get_config ({err})") from err
        self.pairs.append((layer, clone, None, None))
        return clone

    def _replace(self, layer, kind, name, prefix):
        if kind == "layer":
            new = self._fresh(self.make(layer.name, layer))
            replacement = new
        else:
            replacement = self._fresh(self.make(layer.name + "_activation", layer))
            config = layer.get_config()
            config["activation"] = replacement
            try:
                new = layer.__class__.from_config(config)
            except Exception as err:
                raise SurgeryError(
                    f"layer {prefix + layer.name!r} ({type(layer).__name__}) has an activation "
                    f"entry {name!r} but cannot be rebuilt with a layer as its activation "
                    f"({type(err).__name__}: {err}); exclude it with a predicate for targets"
                ) from err
            if getattr(new, "activation", None) is not replacement:
                raise SurgeryError(
                    f"layer {prefix + layer.name!r} ({type(layer).__name__}) did not keep the "
                    "new activation layer as its .activation; exclude it with a predicate")
        self.pairs.append((layer, new, kind, replacement))
        self.sites.append(Site(prefix + layer.name, kind, name))
        return new

    def _fresh(self, layer):
        if id(layer) in self.made:
            raise SurgeryError("the factory passed as fn returned the same layer twice; each "
                               "site needs its own layer (return a new one on every call)")
        self.made.add(id(layer))
        return layer

    def build_replacements(self):
        """Build each ``activation=`` replacement for the output shape of its layer."""
        for _, new, kind, replacement in self.pairs:
            if kind != "argument" or replacement.built:
                continue
            shape = keras_graph.first_output_shape(new)
            if shape is not None:
                replacement.build(shape)

    def copy_weights(self):
        for old, new, kind, replacement in self.pairs:
            if kind == "layer":
                continue  # the replaced activation layer's own weights (PReLU's) are dropped
            source = _own_weights(old, getattr(old, "activation", None) if kind else None)
            target = _own_weights(new, replacement)
            if len(source) != len(target):
                raise SurgeryError(
                    f"layer {old.name!r}: the copy has {len(target)} weights but the original "
                    f"has {len(source)} (is the original model built?)")
            for src, dst in zip(source, target):
                if tuple(src.shape) != tuple(dst.shape):
                    raise SurgeryError(f"layer {old.name!r}: weight shape {tuple(dst.shape)} in "
                                       f"the copy, {tuple(src.shape)} in the original")
                dst.assign(src.numpy())


def _own_weights(layer, activation_layer):
    """``layer.weights`` without those of the layer serving as its activation."""
    if not isinstance(activation_layer, keras.layers.Layer):
        return list(layer.weights)
    extra = {id(v) for v in activation_layer.weights}
    return [v for v in layer.weights if id(v) not in extra]


def _subclassed_message(model) -> str:
    return (f"{type(model).__name__} is a subclassed model: its layers are connected by Python "
            "code in call(), not by a layer graph, so its activations cannot be found or "
            "swapped. Either build the model with the Functional API (keras.Model(inputs, "
            "outputs)) or keras.Sequential and call replace_activations on that, or apply "
            "keras_actfn.CustomActivation(fn) inside the model's call() yourself.")


def replace_activations(model, fn, targets=("relu",), param_shape="per-channel",
                        return_sites=False, keep_weights=True, **layer_kwargs):
    """Return a copy of ``model`` whose matching activation sites use ``fn``.

    Args:
        model: a built Sequential or Functional model of the active Keras (nested
            Sequential/Functional models inside it are handled too).
        fn: activation-function text (``"x*sigmoid(x)"``), an
            :class:`~keras_actfn.expr.Expr`, or a zero-argument callable returning a new
            Keras layer (e.g. ``lambda: keras_actfn.PReLU()``) for inserting other layers.
        targets: an activation name or names to replace (``"relu"``, ``"swish"``/``"silu"``,
            ``"gelu"``, ``"relu6"``, ...; see the module docstring for how layers are named),
            or a predicate ``callable(layer, activation_name) -> bool`` called once for every
            activation site of the model (the identity never is one).
        param_shape: how :class:`CustomActivation` shares its parameters (text/Expr only).
        return_sites: also return the list of replaced :class:`Site` records.
        keep_weights: copy every other weight from ``model`` (default); ``False`` leaves
            the copy with fresh weights from each layer's initializers (a model to train
            from scratch, e.g. one candidate of a search).
        **layer_kwargs: more ``CustomActivation`` arguments (``clip=``, ``center=``,
            ``dtype=``, ``trainable=``; not ``name=``).

    Every site gets its own new layer. A standalone activation layer is replaced by a layer
    with the same name; a layer's ``activation=`` becomes a layer named
    ``"<layer>_activation"``. Unless given in ``layer_kwargs``, each ``CustomActivation``
    takes the dtype policy and ``trainable`` flag of the layer it replaces. All other
    weights are copied exactly; the original model is not modified.

    Returns:
        The new model, or ``(model, sites)`` with ``return_sites=True``.

    Raises:
        SurgeryError: for a subclassed model (no layer graph; build it functionally, or use
            ``CustomActivation`` inside its ``call``), or when no site matched ``targets``:
            an unchanged copy is never returned silently. The message lists the activation
            names the model does have.
        TypeError, ValueError, ParseError: for a bad ``fn``, ``targets`` or layer argument.
    """
    make = _make_factory(fn, param_shape, layer_kwargs)
    matcher, described = _make_matcher(targets)
    surgeon = _Surgeon(matcher, make)
    new_model = surgeon.run(model)
    if not surgeon.sites:
        found = ", ".join(f"{n} ({c})" for n, c in sorted(surgeon.seen.items())) or "none"
        raise SurgeryError(f"no activation site of model {model.name!r} matched {described}; "
                           f"its activation sites are: {found}")
    surgeon.build_replacements()
    if keep_weights:
        surgeon.copy_weights()
    if return_sites:
        return new_model, list(surgeon.sites)
    return new_model


_NOT_ELEMENTWISE = frozenset({"softmax", "log_softmax"})


def output_layers(model) -> list:
    """The layers whose outputs are outputs of ``model`` (entering nested graph models)."""
    if isinstance(model, keras.Sequential):
        found = [model.layers[-1]] if model.layers else []
    else:
        found = [keras_graph.tensor_layer(t) for t in getattr(model, "outputs", None) or []]
    out = []
    for layer in found:
        out.append(layer)
        if keras_graph.is_graph_model(layer):
            out.extend(output_layers(layer))
    return out


def hidden_activations(model):
    """A ``targets`` predicate matching every activation site of ``model`` except those of
    the layers that produce its outputs (a classifier's softmax/sigmoid stays) and softmax
    anywhere (it is not elementwise)."""
    outputs = frozenset(id(layer) for layer in output_layers(model))

    def hidden(layer, name):
        return id(layer) not in outputs and name not in _NOT_ELEMENTWISE

    return hidden


def find_activation_sites(model):
    """List every activation site of ``model`` as :class:`Site` records, changing nothing.

    The names are what ``targets`` matches; use this to choose them.
    """
    if not keras_graph.is_graph_model(model):
        raise SurgeryError(_subclassed_message(model))
    sites = []
    for path, layer in keras_graph.walk_layers(model, enter=keras_graph.is_graph_model):
        found = None if keras_graph.is_graph_model(layer) else _site_name(layer)
        if found is not None:
            sites.append(Site(path + layer.name, *found))
    return sites
