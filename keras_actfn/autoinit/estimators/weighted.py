"""Dense and convolution layers (§5.4, eqs. 5.5-5.8).

For ``y = W x + b`` with i.i.d. zero-mean weights, ``Var y = fan_in * Var(W) * E x^2``: the
seeds' formula keeps the mu^2 term here (E x^2 = nu + mu^2), so weights drawn with
``Var(W) = signal_variance / (fan_in * E x^2)`` give pre-activations with mean 0 and
variance ``signal_variance``; the layer's own ``activation=`` is then applied.

Layers kept as they are (``keep=``) or met again (shared layers) propagate through their
actual weights: output unit j has mean ``mu * sum_i W_ij + b_j`` and variance
``nu * sum_i W_ij^2``, and the layer's moments are the mixture over units.
"""

from __future__ import annotations

import numpy as np

from ...backend import keras
from ..moments import Moments
from . import register
from .activations import activation_moments


def kernel_columns(kernel: np.ndarray, depthwise: bool = False) -> np.ndarray:
    """The kernel as (fan_in, units): one column per output unit/channel."""
    if depthwise:  # (*window, channels, multiplier): each channel sees its own window only
        window = int(np.prod(kernel.shape[:-2]))
        return kernel.reshape(window, -1)
    return kernel.reshape(-1, kernel.shape[-1])


def linear_moments(columns: np.ndarray, bias, inputs: Moments) -> Moments:
    """Moments of ``x @ columns + bias`` for i.i.d. inputs (a mixture over output units)."""
    columns = np.asarray(columns, dtype=np.float64)
    unit_mean = inputs.mean * columns.sum(axis=0)
    if bias is not None:
        unit_mean = unit_mean + np.asarray(bias, dtype=np.float64).reshape(-1)
    unit_var = inputs.var * np.square(columns).sum(axis=0)
    return Moments(float(unit_mean.mean()), float(unit_var.mean() + unit_mean.var()))


def init_linear(layer, kernel, fan_in: int, inputs: Moments, ctx, bias=None,
                depthwise=False) -> Moments:
    """Draw ``kernel`` for output variance ``ctx.signal_variance`` (or propagate if kept)."""
    if ctx.should_initialize(layer):
        second = inputs.second
        if second <= 0:
            raise FloatingPointError(f"layer {layer.name!r} receives a constant zero signal "
                                     "(E x^2 = 0): no weight scale can restore it")
        ctx.draw(kernel, ctx.signal_variance / (fan_in * second), fan_in=fan_in)
        if bias is not None:
            ctx.zero(bias)
        ctx.mark_initialized(layer)
        return Moments(0.0, ctx.signal_variance)
    b = None if bias is None else bias.numpy()
    return linear_moments(kernel_columns(kernel.numpy(), depthwise), b, inputs)


def _bias(layer):
    return layer.bias if getattr(layer, "use_bias", False) else None


@register(keras.layers.Dense)
def dense(layer, inputs, ctx):
    fan_in = int(layer.kernel.shape[0])
    pre = init_linear(layer, layer.kernel, fan_in, inputs[0], ctx, _bias(layer))
    return activation_moments(layer.activation, pre, ctx)


def _conv(layer, inputs, ctx):
    kernel = layer.kernel
    fan_in = int(np.prod(kernel.shape[:-1]))  # window * in_channels / groups
    pre = init_linear(layer, kernel, fan_in, inputs[0], ctx, _bias(layer))
    return activation_moments(layer.activation, pre, ctx)


register(keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)(_conv)


def _depthwise(layer, inputs, ctx):
    kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
    fan_in = int(np.prod(kernel.shape[:-2]))  # each output sees one input channel's window
    pre = init_linear(layer, kernel, fan_in, inputs[0], ctx, _bias(layer), depthwise=True)
    return activation_moments(layer.activation, pre, ctx)


register(getattr(keras.layers, "DepthwiseConv1D", None),
         getattr(keras.layers, "DepthwiseConv2D", None))(_depthwise)
