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

import functools

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


def linear_moments(columns: np.ndarray, bias, inputs: Moments, coverage: float = 1.0) -> Moments:
    """Moments of ``x @ columns + bias`` for i.i.d. inputs (a mixture over output units).

    ``coverage`` is the average fraction of a window that lies inside the input (zero
    padding): each output sums that fraction of its taps.
    """
    columns = np.asarray(columns, dtype=np.float64)
    unit_mean = coverage * inputs.mean * columns.sum(axis=0)
    if bias is not None:
        unit_mean = unit_mean + np.asarray(bias, dtype=np.float64).reshape(-1)
    unit_var = coverage * inputs.var * np.square(columns).sum(axis=0)
    return Moments(float(unit_mean.mean()), float(unit_var.mean() + unit_mean.var()))


def init_linear(layer, kernel, fan_in: int, inputs: Moments, ctx, bias=None,
                depthwise=False, coverage: float = 1.0) -> Moments:
    """Draw ``kernel`` for output variance ``ctx.signal_variance`` (or propagate if kept).

    ``coverage`` (see :func:`window_coverage`) shrinks the effective fan-in of convolutions
    whose windows reach into zero padding.
    """
    if ctx.should_initialize(layer):
        second = inputs.second
        if second <= 0:
            raise FloatingPointError(f"layer {layer.name!r} receives a constant zero signal "
                                     "(E x^2 = 0): no weight scale can restore it")
        ctx.draw(kernel, ctx.signal_variance / (fan_in * coverage * second), fan_in=fan_in)
        if bias is not None:
            ctx.zero(bias)
        ctx.mark_initialized(layer)
        return Moments(0.0, ctx.signal_variance)
    b = None if bias is None else bias.numpy()
    return linear_moments(kernel_columns(kernel.numpy(), depthwise), b, inputs, coverage)


def window_coverage(input_shape, kernel_size, strides, dilation, padding,
                    channels_first=False) -> float:
    """Factor by which zero padding shrinks a convolution's output variance.

    1 for ``valid`` padding and for unknown spatial sizes. With ``same``/``causal`` padding
    border outputs reach into zeros. A single layer on a uniform input loses the average
    in-bounds fraction of its taps (a 3x3 window on a 4x4 map: 69%). In a stack of
    stride-1 convolutions, though, the variance profile settles into the dominant mode of
    the window's tap matrix A (higher in the middle), and each layer then scales the signal
    by the Perron root of A divided by the window size (4x4 map: 76%; 32x32: 99.4%). Deep
    networks are what AutoInit is for, so stride-1 layers use the Perron root and strided
    layers (which change the map size) the average fraction.
    """
    spatial = input_shape[2:] if channels_first else input_shape[1:-1]
    fraction = 1.0
    for length, k, stride, rate in zip(spatial, kernel_size, strides, dilation):
        if length is None or padding == "valid" or k == 1:
            continue
        fraction *= _axis_factor(int(length), int(k), int(stride), int(rate), padding)
    return fraction


@functools.lru_cache(maxsize=1024)
def _axis_factor(length, k, stride, rate, padding):
    span = (k - 1) * rate + 1
    if padding == "causal":
        out_len, before = length, span - 1
    else:  # "same"
        out_len = -(-length // stride)
        before = max((out_len - 1) * stride + span - length, 0) // 2
    starts = np.arange(out_len) * stride - before
    taps = starts[:, None] + np.arange(k) * rate
    inside = (taps >= 0) & (taps < length)
    if stride == 1 and out_len == length:
        tap_matrix = np.zeros((out_len, length))
        rows = np.repeat(np.arange(out_len), k).reshape(out_len, k)
        tap_matrix[rows[inside], taps[inside]] = 1.0
        return float(np.max(np.abs(np.linalg.eigvals(tap_matrix)))) / k
    return float(inside.mean())


def _conv_coverage(layer, ctx) -> float:
    if ctx.node is None:
        return 1.0
    return window_coverage(ctx.node.input_shapes[0], layer.kernel_size, layer.strides,
                           layer.dilation_rate, layer.padding,
                           getattr(layer, "data_format", "channels_last") == "channels_first")


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
    pre = init_linear(layer, kernel, fan_in, inputs[0], ctx, _bias(layer),
                      coverage=_conv_coverage(layer, ctx))
    return activation_moments(layer.activation, pre, ctx)


register(keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)(_conv)


def _depthwise(layer, inputs, ctx):
    kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
    fan_in = int(np.prod(kernel.shape[:-2]))  # each output sees one input channel's window
    pre = init_linear(layer, kernel, fan_in, inputs[0], ctx, _bias(layer), depthwise=True,
                      coverage=_conv_coverage(layer, ctx))
    return activation_moments(layer.activation, pre, ctx)


register(getattr(keras.layers, "DepthwiseConv1D", None),
         getattr(keras.layers, "DepthwiseConv2D", None))(_depthwise)
