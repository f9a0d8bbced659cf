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
from ..moments import (ChannelMoments, Moments, gaussian_expect, gaussian_expect_channels,
                       with_source)
from . import register
from .fallback import draw_sample, monte_carlo

_NOT_ELEMENTWISE = {"softmax", "log_softmax"}
_MAX_CHANNELS = 64  # per-channel parameter sets averaged exactly up to this many
_MAX_TRACKED = 4096  # wider layers fall back to aggregate moments (memory: channels x grid)


def activation_moments(act, moments: Moments, ctx) -> Moments:
    """Moments after applying ``act`` (callable, Keras name, or CustomActivation).

    Per-channel input moments (:class:`ChannelMoments`) give per-channel output moments:
    every channel is integrated with its own mean and variance (and its own parameters,
    for a per-channel ``CustomActivation``) in one batched call.
    """
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
        return _softmax_like(act, moments.aggregate() if _tracked(moments) else moments, ctx)
    fn = _tf_on_numpy(act)
    if _tracked(moments):
        return with_source(_per_channel(fn, moments), fn, moments)
    return with_source(_callable_moments(act, moments.mean, moments.var), fn, moments)


_MAP_POINTS = 65  # mean values at which a map's expectations are tabulated
_VAR_POINTS = 9  # variances (geometric) of the shared table of a channel-independent fn


def _per_channel(fn, moments: ChannelMoments, shared: bool = True) -> ChannelMoments:
    """Apply elementwise ``fn(x, channel_of_row)`` to per-channel moments, or, when the
    moments carry a mean map, to every position.

    Map expectations are tabulated over the range of the means and interpolated (they are
    smooth in the mean): one table over (mean, log variance) shared by all channels when
    ``fn`` ignores the channel (``shared``), so the cost does not grow with the width;
    else one row of means per channel.
    """
    channels = moments.channels
    if moments.mean_map is None:
        return gaussian_expect_channels(fn, moments.means, moments.variances,
                                        np.arange(channels))
    flat = moments.mean_map.reshape(-1, channels)
    local = moments.local_variances
    if shared:
        grid = np.linspace(flat.min(), flat.max(), _MAP_POINTS)
        lo, hi = max(float(local.min()), 1e-12), max(float(local.max()), 1e-12)
        lv = np.log(np.geomspace(lo, hi, _VAR_POINTS) if hi > lo * 1.0001 else [lo])
        rows_m = np.tile(grid, lv.size)
        rows_v = np.repeat(np.exp(lv), _MAP_POINTS)
        table = gaussian_expect_channels(fn, rows_m, rows_v, np.zeros(rows_m.size, int))
        t1 = table.means.reshape(lv.size, _MAP_POINTS)
        t2 = (table.variances + table.means ** 2).reshape(lv.size, _MAP_POINTS)
        # per channel: interpolate the table along log-variance, then along the mean
        lvc = np.log(np.maximum(local, 1e-12))
        if lv.size > 1:
            pos = np.clip(np.interp(lvc, lv, np.arange(lv.size)), 0, lv.size - 1)
            i0 = np.minimum(np.floor(pos).astype(int), lv.size - 2)
            frac = (pos - i0)[:, None]
            m1 = t1[i0] * (1 - frac) + t1[i0 + 1] * frac
            m2 = t2[i0] * (1 - frac) + t2[i0 + 1] * frac
        else:
            m1, m2 = np.repeat(t1, channels, 0), np.repeat(t2, channels, 0)
        grids = np.broadcast_to(grid, (channels, _MAP_POINTS))
    else:
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        grids = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, _MAP_POINTS)[None, :]
        table = gaussian_expect_channels(fn, grids.reshape(-1), np.repeat(local, _MAP_POINTS),
                                         np.repeat(np.arange(channels), _MAP_POINTS))
        m1 = table.means.reshape(channels, _MAP_POINTS)
        m2 = (table.variances + table.means ** 2).reshape(channels, _MAP_POINTS)
    e1, e2 = np.empty_like(flat), np.empty_like(flat)
    for c in range(channels):
        e1[:, c] = np.interp(flat[:, c], grids[c], m1[c])
        e2[:, c] = np.interp(flat[:, c], grids[c], m2[c])
    local_out = np.maximum(e2 - e1 * e1, 0.0).mean(axis=0)
    return ChannelMoments.from_map(e1.reshape(moments.mean_map.shape), local_out)


def _tracked(moments) -> bool:
    return isinstance(moments, ChannelMoments) and moments.channels <= _MAX_TRACKED


def _tf_on_numpy(fn):
    def numpy_fn(x, rows=None):
        return np.asarray(fn(tf.constant(x, dtype=tf.float32)), dtype=np.float64)
    return numpy_fn


@functools.lru_cache(maxsize=4096)
def _callable_moments(fn, mean, var):
    def numpy_fn(x):
        return np.asarray(fn(tf.constant(x[None, :], dtype=tf.float32)), dtype=np.float64)[0]

    return gaussian_expect(numpy_fn, mean, var)


def _softmax_like(fn, moments, ctx):
    # the shape the activation acts on: a Dense(..., activation='softmax') node's output
    shape = ctx.node.output_shapes[0] if ctx.node is not None else (None, 10)
    x = draw_sample(shape, moments, ctx, law=False)
    y = np.asarray(fn(tf.constant(x)), dtype=np.float64)
    return Moments(float(y.mean()), float(y.var()))


def _custom_moments(layer: CustomActivation, moments, ctx):
    if ctx is not None and ctx.center and not layer.center:
        layer.center = True  # AutoInit++ (§5.11): f - E f(Z), Z ~ N(0, 1), parameters at 1
        from ...expr import gaussian_moments
        layer.shift = gaussian_moments(layer.fn)[0]
    params = {}
    if layer.built:
        params = {name: np.asarray(w.numpy(), dtype=np.float64) for name, w in
                  layer._slots.items()}
    if all(p.size == 1 for p in params.values()):  # one law for every element
        scalars = {k: float(p.reshape(-1)[0]) for k, p in params.items()}
        fn = _expr_function(layer.fn, tuple(sorted(scalars.items())), float(layer.shift),
                            layer.clip)
    else:
        fn = None
    if _tracked(moments) and all(p.ndim == 0 or p.shape == (moments.channels,)
                                 for p in params.values()):
        out = _custom_channel_moments(layer, moments, params)
        return out if fn is None else with_source(out, fn, moments)
    moments = moments.aggregate() if isinstance(moments, ChannelMoments) else moments
    params = {name: p.reshape(-1) for name, p in params.items()}
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
    out = Moments(m1, max(m2 - m1 * m1, 0.0))
    return out if fn is None else with_source(out, fn, moments)


def _expr_function(expr, params, shift, clip):
    """The NumPy form of a CustomActivation with scalar parameters (for laws, not moments)."""
    values = dict(params)

    def numpy_fn(x, rows=None):
        y = evaluate(expr, np.asarray(x, dtype=np.float64), values) - shift
        return np.clip(y, -clip, clip) if clip is not None else y

    return numpy_fn


def _custom_channel_moments(layer, moments, params):
    """Per-layer or per-channel parameters: channel c uses its own values."""
    shift, clip = float(layer.shift), layer.clip

    def numpy_fn(x, rows):
        values = {name: (p if p.ndim == 0 else p[rows][:, None]) for name, p in params.items()}
        y = evaluate(layer.fn, x, values) - shift
        return np.clip(y, -clip, clip) if clip is not None else y

    return _per_channel(numpy_fn, moments,
                        shared=all(p.ndim == 0 for p in params.values()))


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
        return monte_carlo(layer, inputs, ctx)
    fn = _tf_on_numpy(layer)
    if _tracked(inputs[0]):
        return with_source(_per_channel(fn, inputs[0]), fn, inputs[0])
    return with_source(_callable_moments(layer, inputs[0].mean, inputs[0].var), fn, inputs[0])


register(*[getattr(keras.layers, n, None) for n in
           ("ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "PReLU")])(_parameter_free_layer)
