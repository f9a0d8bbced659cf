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

from ...backend import keras, tf
from ..moments import ChannelMoments, Moments, channel_arrays
from . import register
from .activations import activation_moments


def kernel_columns(kernel: np.ndarray, depthwise: bool = False) -> np.ndarray:
    """The kernel as (fan_in, units): one column per output unit/channel."""
    if depthwise:  # (*window, channels, multiplier): each channel sees its own window only
        window = int(np.prod(kernel.shape[:-2]))
        return kernel.reshape(window, -1)
    return kernel.reshape(-1, kernel.shape[-1])


def _row_moments(kernel_shape, inputs: Moments, kind: str = "dense", groups: int = 1):
    """Input (means, variances) seen by each kernel row, for per-unit output moments.

    Returns arrays shaped ``(fan_in,)`` (every output unit sees the same rows) or
    ``(fan_in | 1, units)`` (grouped and depthwise convolutions: units see different
    input channels). Rows of ``kernel.reshape(-1, units)`` run over the window with the
    input channel fastest, as Keras stores kernels ``(*window, in_channels, units)``.
    """
    if kind == "dense":
        return channel_arrays(inputs, int(kernel_shape[0]))
    if kind == "depthwise":  # (*window, channels, multiplier) -> unit o sees channel o // mult
        channels, mult = int(kernel_shape[-2]), int(kernel_shape[-1])
        mu, nu = channel_arrays(inputs, channels)
        return np.repeat(mu, mult)[None, :], np.repeat(nu, mult)[None, :]
    window = int(np.prod(kernel_shape[:-2]))
    per_group, units = int(kernel_shape[-2]), int(kernel_shape[-1])
    mu, nu = channel_arrays(inputs, per_group * groups)
    if groups == 1:
        return np.tile(mu, window), np.tile(nu, window)
    rows = np.arange(window * per_group) % per_group
    cols = (np.arange(units) // (units // groups)) * per_group
    index = rows[:, None] + cols[None, :]
    return mu[index], nu[index]


def unit_moments(columns: np.ndarray, bias, row_moments, coverage: float = 1.0,
                 row_fractions=None):
    """Per-unit ``(means, variances)`` of ``x @ columns + bias`` for independent inputs.

    ``row_moments`` comes from :func:`_row_moments`. ``coverage`` scales the variance for
    windows that reach into zero padding (the Perron root of the tap matrix, see
    :func:`window_coverage`); ``row_fractions`` (one per kernel row, see
    :func:`tap_fractions`) weight each row's mean by how often it reads inside the input.
    """
    columns = np.asarray(columns, dtype=np.float64)
    mu, nu = row_moments
    if row_fractions is not None:
        shape = (-1,) if mu.ndim == 1 else (-1, 1)
        mu = mu * np.asarray(row_fractions, dtype=np.float64).reshape(shape)
    if mu.ndim == 1:
        means, variances = mu @ columns, nu @ np.square(columns)
    else:
        means = (columns * mu).sum(axis=0)
        variances = (np.square(columns) * nu).sum(axis=0)
    if row_fractions is None:
        means = coverage * means
    variances = coverage * variances
    if bias is not None:
        means = means + np.asarray(bias, dtype=np.float64).reshape(-1)
    return means, variances


def linear_moments(columns: np.ndarray, bias, inputs: Moments, coverage: float = 1.0) -> Moments:
    """Moments of ``x @ columns + bias`` for i.i.d. inputs (a mixture over output units)."""
    columns = np.asarray(columns, dtype=np.float64)
    row = channel_arrays(Moments(inputs.mean, inputs.var), columns.shape[0])
    return ChannelMoments(*unit_moments(columns, bias, row, coverage)).aggregate()


def init_linear(layer, kernel, fan_in: int, inputs: Moments, ctx, bias=None,
                kind: str = "generic", coverage: float = 1.0, groups: int = 1,
                channels_last: bool = True, taps=None) -> Moments:
    """Draw ``kernel`` for output variance ``ctx.signal_variance`` (or propagate if kept).

    ``Var(W) = signal_variance / (fan_in * coverage * E x^2)`` (§5.4; ``coverage``, see
    :func:`window_coverage`, shrinks the effective fan-in of convolutions whose windows
    reach into zero padding). With ``ctx.match_draw`` the drawn kernel is then rescaled by
    one scalar so that *this draw* maps the incoming per-channel moments to variance
    ``signal_variance`` exactly (not only on average over draws), and the per-unit means
    and variances of the draw are passed on.

    ``kind`` says how kernel rows meet input channels: ``"dense"`` (``(fan_in, units)``),
    ``"conv"`` (``(*window, in_channels / groups, units)``), ``"depthwise"``
    (``(*window, channels, multiplier)``); ``"generic"`` kernels (einsum, transposed and
    locally connected layers) are drawn for the aggregate moments only.
    """
    if kind == "generic":
        if not ctx.should_initialize(layer):
            raise ValueError("init_linear(kind='generic') only draws weights; propagate "
                             "through kept weights with the layer's own rule")
        _draw(layer, kernel, fan_in, inputs, ctx, bias, coverage)
        return Moments(0.0, ctx.signal_variance)
    row = _row_moments(tuple(kernel.shape), inputs, kind, groups)
    shape = tuple(kernel.shape)
    fractions = None
    if taps is not None:  # one per window tap -> one per kernel row
        fractions = taps if kind == "depthwise" else np.repeat(taps, shape[-2])
    columns_of = (lambda k: k.reshape(int(np.prod(shape[:-2])), -1)) if kind == "depthwise" \
        else (lambda k: k.reshape(-1, shape[-1]))
    mean_map = _mean_map_rule(layer, kind, inputs, ctx, channels_last)

    covariance = getattr(inputs, "covariance", None)
    if kind != "dense" or covariance is None or covariance.shape != (shape[0], shape[0]):
        covariance = None

    def moments_of(value, b):
        if mean_map is not None:  # exact means per position; local variances as usual
            local = (row[0], _local_rows(inputs, row, kind, shape))
            _, variances = unit_moments(columns_of(value), b, local, coverage)
            return ChannelMoments.from_map(mean_map(value, b), variances)
        means, variances = unit_moments(columns_of(value), b, row, coverage, fractions)
        if covariance is not None:  # correlated inputs (recurrent units): w' S w per unit
            cols = np.asarray(columns_of(value), dtype=np.float64)
            variances = np.einsum("ij,ik,kj->j", cols, covariance, cols)
        return ChannelMoments(means, variances)

    if ctx.should_initialize(layer):
        _draw(layer, kernel, fan_in, inputs, ctx, bias, coverage)
        if not ctx.match_draw:
            return Moments(0.0, ctx.signal_variance)
        value = np.asarray(kernel.numpy(), dtype=np.float64)
        out = moments_of(value, None)
        if out.var > 0:
            scale = float(np.sqrt(ctx.signal_variance / out.var))
            kernel.assign((value * scale).astype(kernel.dtype.name if hasattr(
                kernel.dtype, "name") else kernel.dtype))
            out = out.scaled(scale)
    else:
        out = moments_of(np.asarray(kernel.numpy()), None if bias is None else bias.numpy())
    return out if channels_last else out.aggregate()


def _local_rows(inputs, row, kind, shape):
    """Per-row local variances (position spread excluded) for a convolution kernel."""
    if getattr(inputs, "mean_map", None) is None:
        return row[1]
    window = int(np.prod(shape[:-2]))
    return np.tile(inputs.local_variances, window)


def _mean_map_rule(layer, kind, inputs, ctx, channels_last):
    """For a convolution on a map of known size: ``fn(kernel, bias) -> mean map``, the
    exact mean at every output position of the input's mean map (its tracked map, or its
    per-channel means at every position) under zero padding.

    Deep stacks of 'same' convolutions on small maps (ResNet's 8x8 third stage) build up
    large position-dependent means; a per-channel constant would count them as nothing.
    """
    conv_op = getattr(layer, "convolution_op", None)
    if kind != "conv" or conv_op is None or ctx.node is None or not channels_last or \
            getattr(layer, "groups", 1) != 1 or getattr(layer, "padding", "valid") == "valid":
        return None
    shape = ctx.node.input_shapes[0]
    if any(d is None for d in shape[1:]):
        return None
    given = getattr(inputs, "mean_map", None)
    if given is not None and tuple(given.shape) == tuple(shape[1:]):
        source = given[None].astype(np.float32)
    else:
        mu, _ = channel_arrays(inputs, int(shape[-1]))
        source = np.broadcast_to(mu, (1,) + tuple(shape[1:])).astype(np.float32)

    def rule(value, b):
        out = np.asarray(conv_op(tf.constant(source), tf.constant(value, tf.float32)),
                         dtype=np.float64)[0]
        if b is not None:
            out = out + np.asarray(b, dtype=np.float64).reshape(-1)
        return out

    return rule


def _draw(layer, kernel, fan_in, inputs, ctx, bias, coverage):
    second = inputs.second
    if second <= 0:
        raise FloatingPointError(f"layer {layer.name!r} receives a constant zero signal "
                                 "(E x^2 = 0): no weight scale can restore it")
    ctx.draw(kernel, ctx.signal_variance / (fan_in * coverage * second), fan_in=fan_in)
    if bias is not None:
        ctx.zero(bias)
    ctx.mark_initialized(layer)


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
    layers (which change the map size) the average fraction. (Means shrink differently:
    see :func:`tap_fractions`.)
    """
    spatial = input_shape[2:] if channels_first else input_shape[1:-1]
    fraction = 1.0
    for length, k, stride, rate in zip(spatial, kernel_size, strides, dilation):
        if length is None or padding == "valid" or k == 1:
            continue
        fraction *= _axis_factor(int(length), int(k), int(stride), int(rate), padding)
    return fraction


@functools.lru_cache(maxsize=1024)
def _axis_taps(length, k, stride, rate, padding):
    """``(taps, inside)``: the input index each output position reads with each tap along
    one axis ('same' or 'causal' padding), and whether it lies inside the input."""
    span = (k - 1) * rate + 1
    if padding == "causal":
        out_len, before = length, span - 1
    else:  # "same"
        out_len = -(-length // stride)
        before = max((out_len - 1) * stride + span - length, 0) // 2
    taps = (np.arange(out_len) * stride - before)[:, None] + np.arange(k) * rate
    return taps, (taps >= 0) & (taps < length)


def _axis_factor(length, k, stride, rate, padding):
    taps, inside = _axis_taps(length, k, stride, rate, padding)
    out_len = taps.shape[0]
    if stride == 1 and out_len == length:
        tap_matrix = np.zeros((out_len, length))
        rows = np.repeat(np.arange(out_len), k).reshape(out_len, k)
        tap_matrix[rows[inside], taps[inside]] = 1.0
        return float(np.max(np.abs(np.linalg.eigvals(tap_matrix)))) / k
    return float(inside.mean())


def tap_fractions(input_shape, kernel_size, strides, dilation, padding,
                  channels_first=False) -> np.ndarray:
    """For each tap of the window (flattened, Keras kernel order), the fraction of output
    positions at which it reads inside the input rather than zero padding.

    A constant input ``mu`` gives a channel the mean ``mu * sum_k frac_k W_k`` averaged
    over positions: the center tap always counts, border taps less often.
    """
    spatial = input_shape[2:] if channels_first else input_shape[1:-1]
    fractions = np.ones(())
    for length, k, stride, rate in zip(spatial, kernel_size, strides, dilation):
        axis = np.ones(int(k))
        if length is not None and padding != "valid" and k > 1:
            axis = _tap_axis(int(length), int(k), int(stride), int(rate), padding)
        fractions = np.multiply.outer(fractions, axis)
    return fractions.reshape(-1)


@functools.lru_cache(maxsize=1024)
def _tap_axis(length, k, stride, rate, padding):
    return _axis_taps(length, k, stride, rate, padding)[1].mean(axis=0)


def _conv_coverage(layer, ctx) -> float:
    if ctx.node is None:
        return 1.0
    return window_coverage(ctx.node.input_shapes[0], layer.kernel_size, layer.strides,
                           layer.dilation_rate, layer.padding,
                           getattr(layer, "data_format", "channels_last") == "channels_first")


def _tap_fractions(layer, ctx):
    if ctx.node is None:
        return None
    return tap_fractions(ctx.node.input_shapes[0], layer.kernel_size, layer.strides,
                         layer.dilation_rate, layer.padding,
                         getattr(layer, "data_format", "channels_last") == "channels_first")


def fused_activation(act, pre: Moments, ctx) -> Moments:
    """Apply a weighted layer's own ``activation=`` to its linear part ``pre``, noting
    ``pre`` on the run's record (what the signal plot compares with the target)."""
    record = getattr(ctx, "record", None)
    if record is not None and getattr(record, "pre", None) is None:
        record.pre = Moments(float(pre.mean), float(pre.var))
    return activation_moments(act, pre, ctx)


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") != "channels_first"


def _bias(layer):
    return layer.bias if getattr(layer, "use_bias", False) else None


@register(keras.layers.Dense)
def dense(layer, inputs, ctx):
    fan_in = int(layer.kernel.shape[0])
    pre = init_linear(layer, layer.kernel, fan_in, inputs[0], ctx, _bias(layer), kind="dense")
    return fused_activation(layer.activation, pre, ctx)


def _conv(layer, inputs, ctx):
    kernel = layer.kernel
    fan_in = int(np.prod(kernel.shape[:-1]))  # window * in_channels / groups
    pre = init_linear(layer, kernel, fan_in, inputs[0], ctx, _bias(layer), kind="conv",
                      coverage=_conv_coverage(layer, ctx), groups=int(getattr(layer, "groups", 1)),
                      channels_last=_channels_last(layer), taps=_tap_fractions(layer, ctx))
    return fused_activation(layer.activation, pre, ctx)


register(keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)(_conv)


def _depthwise(layer, inputs, ctx):
    kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
    fan_in = int(np.prod(kernel.shape[:-2]))  # each output sees one input channel's window
    pre = init_linear(layer, kernel, fan_in, inputs[0], ctx, _bias(layer), kind="depthwise",
                      coverage=_conv_coverage(layer, ctx), channels_last=_channels_last(layer),
                      taps=_tap_fractions(layer, ctx))
    return fused_activation(layer.activation, pre, ctx)


register(getattr(keras.layers, "DepthwiseConv1D", None),
         getattr(keras.layers, "DepthwiseConv2D", None))(_depthwise)
