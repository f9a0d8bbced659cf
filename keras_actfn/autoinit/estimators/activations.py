"""Activation functions (§5.4, eqs. 5.9-5.10): E f(X), Var f(X) for X ~ N(mu, nu).

One mechanism covers every elementwise activation: evaluate it once on the standard-normal
quadrature grid (:func:`~keras_actfn.autoinit.moments.gaussian_expect`). Keras activation
functions and parameter-free activation layers are simply called on the grid (no table of
names to keep in sync); ``CustomActivation`` is evaluated from its expression in float64
with its parameters as they are now (per-channel values form a mixture over channels).
"""

from __future__ import annotations

import functools

import numpy as np

from ...backend import keras, tf
from ...expr import evaluate
from ...layers import CustomActivation
from ..moments import Moments, gaussian_expect
from . import register

_NOT_ELEMENTWISE = {"softmax", "log_softmax"}
_MAX_CHANNELS = 64  # per-channel parameter sets averaged exactly up to this many


def activation_moments(act, moments: Moments, ctx) -> Moments:
    """Moments after applying ``act`` (callable, Keras name, or CustomActivation)."""
    if act is None:
        return moments
    if isinstance(act, str):
        act = keras.activations.get(act)
    if isinstance(act, CustomActivation):
        return _custom_moments(act, moments, ctx)
    name = getattr(act, "__name__", type(act).__name__)
    if name == "linear":
        return moments
    if name in _NOT_ELEMENTWISE:
        return _softmax_like(act, moments, ctx)
    return _callable_moments(act, moments.mean, moments.var)


@functools.lru_cache(maxsize=4096)
def _callable_moments(fn, mean, var):
    def numpy_fn(x):
        return np.asarray(fn(tf.constant(x[None, :], dtype=tf.float32)), dtype=np.float64)[0]

    return gaussian_expect(numpy_fn, mean, var)


def _softmax_like(fn, moments, ctx):
    # the shape the activation acts on: a Dense(..., activation='softmax') node's output
    shape = ctx.node.output_shapes[0] if ctx.node is not None else (None, 10)
    x = ctx.gaussian_input(shape, moments)
    y = np.asarray(fn(tf.constant(x)), dtype=np.float64)
    return Moments(float(y.mean()), float(y.var()))


def _custom_moments(layer: CustomActivation, moments, ctx):
    if ctx is not None and ctx.center and not layer.center:
        layer.center = True  # AutoInit++ (§5.11): f - E f(Z), Z ~ N(0, 1), parameters at 1
        from ...expr import gaussian_moments
        layer.shift = gaussian_moments(layer.fn)[0]
    params = {}
    if layer.built:
        params = {name: np.asarray(w.numpy(), dtype=np.float64).reshape(-1)
                  for name, w in layer._slots.items()}
    size = max([p.size for p in params.values()] + [1])
    if size > 1 and all(np.all(p == p.flat[0]) for p in params.values()):
        params, size = {k: p[:1] for k, p in params.items()}, 1
    picks = np.linspace(0, size - 1, min(size, _MAX_CHANNELS)).round().astype(int)
    m1 = m2 = 0.0
    for i in picks:
        values = tuple((k, float(p[i % p.size])) for k, p in sorted(params.items()))
        m = _expr_moments(layer.fn, values, float(layer.shift), layer.clip, moments.mean,
                          moments.var)
        m1 += m.mean
        m2 += m.var + m.mean * m.mean
    m1, m2 = m1 / len(picks), m2 / len(picks)
    return Moments(m1, max(m2 - m1 * m1, 0.0))


@functools.lru_cache(maxsize=8192)
def _expr_moments(expr, params, shift, clip, mean, var):
    values = dict(params)

    def numpy_fn(x):
        y = evaluate(expr, x, values) - shift
        return np.clip(y, -clip, clip) if clip is not None else y

    return gaussian_expect(numpy_fn, mean, var)


@register(keras.layers.Activation)
def _activation_layer(layer, inputs, ctx):
    return activation_moments(layer.activation, inputs[0], ctx)


@register(CustomActivation)
def _custom_layer(layer, inputs, ctx):
    return _custom_moments(layer, inputs[0], ctx)


def _parameter_free_layer(layer, inputs, ctx):
    if layer.weights:  # e.g. PReLU: parameters per neuron -> Monte Carlo on the layer
        from .fallback import monte_carlo
        return monte_carlo(layer, inputs, ctx)
    return _callable_moments(layer, inputs[0].mean, inputs[0].var)


register(*[getattr(keras.layers, n, None) for n in
           ("ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "PReLU")])(_parameter_free_layer)
