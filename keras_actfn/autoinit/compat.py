"""The published AutoInit package's interfaces, on top of ours.

Code written for the original package (``from autoinit import AutoInit``) runs against
keras_actfn with a change of import line. This module holds what that needs beyond
:class:`~keras_actfn.autoinit.core.AutoInit`'s own signature:

* :func:`resolve_model`: ``initialize_model`` and ``AutoInitVisualizer.visualize`` take a
  model, a model config dict or a JSON string (or, ours, a path to a saved model);
* :class:`LayerOutputDistributionEstimator`: the original's estimator interface
  (``Estimator(layer, estimator_config, signal_variance).estimate(means_in, vars_in)``),
  usable in ``custom_distribution_estimators`` next to our rule functions;
* :class:`CenteredUnitNorm`: the kernel constraint of ``"constrain_weights": True``;
* :data:`WEIGHT_INIT_KEYS` and :func:`check_weight_init_config`.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import numpy as np

from ..backend import KERAS3, keras, serializable, tf
from .moments import Moments, gaussian_expect

#: every key ``weight_init_config`` understands, with its default
WEIGHT_INIT_KEYS = {
    "distribution": "truncated_normal",
    "constrain_weights": False,
    "monte_carlo_samples": None,            # None: our element budget (mc_samples=)
    "recurrent_monte_carlo_samples": None,  # None: as many sequences as the budget allows
}


class ModelInputError(ValueError):
    """``model`` is neither a model, a config dict, a JSON object string nor a saved file."""


# ------------------------------------------------------------------------ model input
def resolve_model(model, custom_objects=None, who="initialize_model"):
    """``(keras_model, built_here)`` for a model, a config dict, a JSON string or a path.

    A ``str``/``bytes`` is a JSON model when it parses as a JSON *object*; any other
    string is a path to a saved model (``.keras``, ``.h5``, SavedModel folder) or to a
    ``.json`` file holding a model's JSON. ``built_here`` is True when the model was
    built from a config (so it is new, and ours to return).
    """
    if isinstance(model, keras.Model):
        return model, False
    if isinstance(model, dict):
        return _from_config(model, custom_objects, "the config dict"), True
    if isinstance(model, bytes):
        model = model.decode("utf-8", errors="replace")
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        text = os.fspath(model) if not isinstance(model, str) else model
        parsed, reason = _json_object(text)
        if parsed is not None:
            return _from_config(parsed, custom_objects, "the JSON string"), True
        path = Path(text)
        if not path.exists():
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise ModelInputError(
                f"{who}: the string {shown!r} is neither a JSON model ({reason}) nor an "
                "existing file; pass a keras.Model, model.get_config(), model.to_json() or "
                "the path of a saved model")
        if path.suffix.lower() == ".json":
            parsed, reason = _json_object(path.read_text())
            if parsed is None:
                raise ModelInputError(f"{who}: {path} is not a JSON model ({reason})")
            return _from_config(parsed, custom_objects, str(path)), True
        try:
            return keras.models.load_model(path, custom_objects=custom_objects), True
        except Exception as err:  # noqa: BLE001 - one line naming the file instead
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ModelInputError(f"{who}: cannot load a model from {path}: {first[:200]}") \
                from err
    raise ModelInputError(f"{who}: model must be a keras.Model, a config dict, a JSON string "
                          f"or a path; got {type(model).__name__}")


def _json_object(text):
    """``(dict, None)`` when ``text`` is a JSON object, else ``(None, why not)``."""
    stripped = text.strip()
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as err:
        if stripped.startswith("{"):
            return None, f"invalid JSON: {err.msg} at character {err.pos}"
        return None, "not JSON"
    if not isinstance(value, dict):
        return None, f"valid JSON but not a JSON object: a {type(value).__name__}"
    return value, None


def looks_like_keras2(config) -> bool:
    """A config written by Keras 2 / tf_keras: its version stamp, or Keras-2-only fields."""
    version = str(config.get("keras_version", "")) if isinstance(config, dict) else ""
    if version.startswith("2."):
        return True
    text = json.dumps(config, default=str)
    return any(f'"{key}"' in text for key in ("time_major", "batch_input_shape"))


def _from_config(config, custom_objects, what):
    custom_objects = dict(custom_objects or {})
    config = copy.deepcopy(config)  # Keras pops keys from the dict it is given
    wrapped = "class_name" in config and "config" in config
    inner = config["config"] if wrapped else config
    try:
        if wrapped and config["class_name"] not in ("Functional", "Model"):
            with keras.utils.custom_object_scope(custom_objects):
                return keras.models.model_from_json(json.dumps(config),
                                                    custom_objects=custom_objects)
        if "input_layers" not in inner and "layers" in inner:  # a Sequential's config
            return keras.Sequential.from_config(inner, custom_objects=custom_objects)
        model = keras.Model.from_config(inner, custom_objects=custom_objects)
        if "input_layers" in inner and not getattr(model, "inputs", None):
            # Keras 3 falls back to a plain Model() when a layer class is unknown
            raise ValueError("a layer class of the config is unknown")
        return model
    except Exception as err:  # noqa: BLE001 - Keras raises many kinds; one line instead
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if KERAS3 and looks_like_keras2(config):
            raise ModelInputError(
                f"Keras 3 cannot rebuild {what}: it was written by Keras 2 ({first[:160]}). "
                "Run with TF_USE_LEGACY_KERAS=1 (pip install tf_keras) to load it with the "
                "legacy Keras") from err
        raise ModelInputError(f"cannot rebuild a model from {what}: {first[:200]} (custom "
                              "layers need custom_objects={name: class})") from err


# --------------------------------------------------------------------- config keys
def check_weight_init_config(config) -> dict:
    """``config`` with defaults filled in; unknown keys raise, listing the known ones."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(WEIGHT_INIT_KEYS))
    if unknown:
        raise ValueError(f"weight_init_config: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"known keys are {', '.join(WEIGHT_INIT_KEYS)}")
    out = dict(WEIGHT_INIT_KEYS, **config)
    for key in ("monte_carlo_samples", "recurrent_monte_carlo_samples"):
        value = out[key]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or value < 1:
            raise ValueError(f"weight_init_config[{key!r}] must be a positive number of "
                             f"samples (e.g. 1e5); got {value!r}")
        out[key] = int(value)
    if not isinstance(out["constrain_weights"], (bool, np.bool_)):
        raise ValueError("weight_init_config['constrain_weights'] must be True or False; got "
                         f"{out['constrain_weights']!r}")
    return out


# ---------------------------------------------------------------- estimator interface
class LayerOutputDistributionEstimator:
    """The published package's estimator interface, for ``custom_distribution_estimators``.

    Subclass it and override :meth:`estimate`; AutoInit constructs one per layer call as
    ``cls(layer, estimator_config, signal_variance)`` and calls
    ``estimate(means_in, vars_in)`` with one float per input tensor (in call order),
    expecting ``(mean_out, var_out)``. ``estimator_config`` is the ``weight_init_config``
    in effect (defaults filled in).

    A weighted custom layer may initialize its weights inside :meth:`estimate` as the
    original package did, by setting an ``<name>_initializer`` attribute of the layer
    (e.g. ``self.layer.kernel_initializer = ...``): AutoInit then draws the variable
    ``<name>`` (or ``<name>_kernel``) from it in place. Assigning the weights directly
    (``self.layer.kernel.assign(...)``) works too.
    """

    def __init__(self, layer, estimator_config, signal_variance=1.0):
        self.layer = layer
        self.estimator_config = estimator_config
        self.signal_variance = signal_variance

    def estimate(self, means_in, vars_in):
        raise NotImplementedError(f"{type(self).__name__} must override "
                                  "estimate(means_in, vars_in) -> (mean_out, var_out)")

    def _mapped_distribution(self, function, input_mean=0.0, input_var=1.0):
        """``(E f(X), Var f(X))`` for ``X ~ N(input_mean, input_var)`` (``function`` may be
        a NumPy, TensorFlow or plain scalar function)."""
        def vectorized(x):
            try:
                y = function(tf.constant(x, dtype=tf.float32))
                return np.asarray(y, dtype=np.float64)
            except Exception:  # noqa: BLE001 - a scalar Python function: map it
                return np.array([float(function(float(v))) for v in x])

        m = gaussian_expect(vectorized, float(input_mean), float(input_var))
        return m.mean, m.var


def is_estimator_class(value) -> bool:
    """An original-style estimator class (constructed per layer, with ``estimate``)."""
    return isinstance(value, type) and callable(getattr(value, "estimate", None))


def class_rule(estimator_cls):
    """Our rule ``fn(layer, inputs, ctx)`` running an original-style estimator class."""
    def rule(layer, inputs, ctx):
        before = _initializers(layer)
        weights_before = [np.array(w.numpy(), copy=True) for w in layer.weights]
        estimator = estimator_cls(layer, dict(ctx.estimator_config), ctx.signal_variance)
        out = estimator.estimate([float(m.mean) for m in inputs],
                                 [float(m.var) for m in inputs])
        try:
            mean, var = (float(v) for v in out)
        except (TypeError, ValueError):
            raise ValueError(f"{estimator_cls.__name__}.estimate must return (mean, var); got "
                             f"{out!r}") from None
        changed = [name for name, init in _initializers(layer).items()
                   if before.get(name) is not init]
        if changed and ctx.should_initialize(layer):
            _draw_from_initializers(layer, changed)
            ctx.mark_initialized(layer)
        elif any(not np.array_equal(a, np.asarray(w.numpy()))
                 for a, w in zip(weights_before, layer.weights)):
            ctx.mark_initialized(layer)  # the estimator assigned weights itself
        if ctx.record is not None:
            ctx.record.method = f"estimator:{estimator_cls.__name__}"
        return Moments(mean, var)

    rule.estimator_class = estimator_cls
    return rule


def _initializers(layer) -> dict:
    return {name[:-len("_initializer")]: value for name, value in vars(layer).items()
            if name.endswith("_initializer") and value is not None}


def _draw_from_initializers(layer, names):
    for name in names:
        variable = getattr(layer, name, None)
        if variable is None or not hasattr(variable, "assign"):
            variable = getattr(layer, f"{name}_kernel", None)
        if variable is None or not hasattr(variable, "assign"):
            continue
        initializer = keras.initializers.get(getattr(layer, f"{name}_initializer"))
        value = initializer(tuple(variable.shape), dtype=variable.dtype)
        variable.assign(value)


# ----------------------------------------------------------------------- constraint
@serializable
class CenteredUnitNorm(keras.constraints.Constraint):
    """Keep a kernel's empirical mean at 0 and its per-unit scale fixed during training.

    ``w -> gain * (w - mean(w, axis)) / sqrt(n * var(w, axis))`` with ``n`` the fan-in
    (``mode="fan_in"``), fan-out or their average: after every update each output unit's
    weights have mean 0 (so the kernel's mean is 0) and standard deviation
    ``gain / sqrt(n)``. ``axis`` are the kernel axes of one
    output unit (0 for Dense, (0, 1) for Conv1D, (0, 1, 2) for Conv2D...). AutoInit's
    ``"constrain_weights": True`` attaches one whose gain reproduces the scale it drew.
    """

    def __init__(self, axis=0, gain=1.0, mode="fan_in"):
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"mode must be fan_in, fan_out or fan_avg; got {mode!r}")
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else int(axis)
        self.gain = float(gain)
        self.mode = mode

    def _neurons(self, shape):
        shape = [int(d) for d in shape]
        if len(shape) < 2:
            fan_in = fan_out = shape[0] if shape else 1
        else:
            field = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[-2] * field, shape[-1] * field
        return {"fan_in": fan_in, "fan_out": fan_out,
                "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]

    def __call__(self, w):
        n = float(self._neurons(w.shape))
        centered = w - tf.reduce_mean(w, axis=self.axis, keepdims=True)
        var = tf.reduce_mean(tf.square(centered), axis=self.axis, keepdims=True)
        return self.gain * centered / tf.sqrt(n * var + 1e-12)

    def get_config(self):
        return {"axis": self.axis, "gain": self.gain, "mode": self.mode}


def unit_axes(kernel_shape):
    """The axes holding one output unit's weights: every axis but the last."""
    return list(range(len(kernel_shape) - 1)) if len(kernel_shape) > 2 else 0


def attach_constraint(layer):
    """Constrain ``layer``'s kernel (Dense/Conv/Depthwise) to its current mean 0 and scale."""
    for attr, var_name in (("kernel_constraint", "kernel"),
                           ("depthwise_constraint", "depthwise_kernel")):
        variable = getattr(layer, var_name, None)
        if variable is None or not hasattr(layer, attr):
            continue
        w = np.asarray(variable.numpy(), dtype=np.float64)
        constraint = CenteredUnitNorm(axis=unit_axes(w.shape), gain=1.0)
        n = constraint._neurons(w.shape)
        std = float(np.sqrt(np.mean(np.var(w, axis=tuple(np.atleast_1d(constraint.axis))))))
        constraint.gain = std * math.sqrt(n)
        setattr(layer, attr, constraint)
        try:
            variable.constraint = constraint
        except AttributeError:  # tf.Variable (legacy Keras): the property has no setter
            variable._constraint = constraint
        return constraint
    return None


__all__ = ["LayerOutputDistributionEstimator", "CenteredUnitNorm", "ModelInputError",
           "WEIGHT_INIT_KEYS", "check_weight_init_config", "resolve_model",
           "looks_like_keras2", "attach_constraint"]
