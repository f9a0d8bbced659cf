"""Weighted layers beyond Dense/Conv, wrappers and recurrent layers (§5.4).

Every weighted layer here gets weights that take its incoming moments to a pre-activation
with mean 0 and variance ``ctx.signal_variance`` (then its own ``activation=``), or, when it
is kept or met a second time (a shared layer), propagates the moments through the weights it
has. The derivations, in the notation of eqs. 5.5-5.8 (``E x^2 = nu + mu^2``):

* ``SeparableConv{1,2}D``: the depthwise kernel gets ``Var = 1 / (window * c * E x^2)``
  (``c``: the zero-padding coverage of ``weighted.window_coverage``, 1 unless
  ``padding="same"``) so the intermediate (which has no bias) has mean 0 and variance 1;
  the pointwise kernel then sees ``E h^2 = 1`` over ``fan_in = in_channels *
  depth_multiplier`` inputs and gets ``Var = signal_variance / fan_in``. Kept weights: the
  layer is exactly a convolution with the composed kernel
  ``W[k, i, o] = sum_m D[k, i, m] P[i*M + m, o]``.
* ``Conv{1,2,3}DTranspose``: input position ``i`` scatters its window of ``K`` taps to output
  positions ``i*s + k*d - pad``. Counting (input, tap) pairs: ``n`` inputs times ``K`` taps
  land on ``n*s`` outputs, so an interior output position receives on average ``K/s`` taps
  per dimension (``floor`` or ``ceil`` of it, depending on its residue modulo ``s``). The mean
  variance over output positions is therefore ``Var(W) * E x^2 * in_channels * prod(K/s)``:
  the *average* fan-in is ``in_channels * prod(K_d / s_d)``. Borders receive fewer taps; when
  the spatial input shape is known, which taps reach which output position (borders,
  padding, output padding and dilation included) is counted exactly by running a one-hot
  clone of the layer on ones, and the exact average is used; otherwise the interior value.
  Kept weights are propagated as the mixture over output positions, each summing its own
  taps (the ``prod(s)`` interior residue classes when the spatial shape is unknown).
* ``Embedding``: the output elements are entries of the matrix, whatever the input, so the
  matrix is drawn with ``Var = signal_variance`` (input moments are irrelevant); kept
  matrices give the moments of their entries (uniform token usage).
* ``EinsumDense``: the kernel axes whose letters are absent from the output are contracted
  away; ``fan_in`` is the product of their sizes (parsed from ``layer.equation``).
* ``MultiHeadAttention`` / ``GroupQueryAttention``: the query, key and value projections
  (and the sigmoid gate, if any) are EinsumDense rules on their own incoming moments
  (query, key and value inputs may differ). For one query vector ``q`` the logits
  ``q . k_i / sqrt(d)`` are i.i.d. across the keys with variance ``nu_k |W_k q|^2 / d`` (a
  mean of ``k`` shifts every logit equally and cancels in the softmax). With softmax weights
  ``p`` over the keys, value unit ``u`` keeps its mean ``m_u`` (per-unit means set by the
  weights are not averaged away) and its fluctuation shrinks to ``E[sum p_i^2] * v_u``; with
  attention dropout of rate ``r`` (training mode) ``E[sum p^2] * ((v_u + m_u^2)/(1-r) - m_u^2)``.
  When keys and values are projections of the same tensor (self-attention), each value is
  correlated with its own logit and the selection by the softmax keeps part of that
  correlated component: see :func:`attended_variance`. ``E[sum p^2]`` and the correlated
  term come from a small seeded Monte Carlo over query vectors (drawn through the actual
  query weights) and standardized logits, with causal and sliding-window masks. The output
  projection is then initialized for the resulting variance.
* ``TimeDistributed``: the inner layer's rule on the per-step moments (initializing it).
* Recurrent layers (``RNN`` and subclasses: ``GRU``, ``LSTM``, ``SimpleRNN``, ``ConvLSTM``)
  and ``Bidirectional`` keep their default initialization (§5.4 "Recurrent Layers") and are
  estimated by Monte Carlo on the layer alone; an unknown sequence length is taken as
  :data:`RNN_STEPS` steps.

* ``LocallyConnected{1,2}D`` (tf_keras, ``implementation=1``): ``fan_in = window *
  in_channels`` per output position; other implementations: Monte Carlo.
* keras.applications helper layers: ConvNeXt's ``LayerScale`` (``x * gamma``; its small
  start is the design, so gamma is kept) and Inception-ResNet-v2's ``CustomScaleLayer``.

Keeping a wrapper (``keep=``) keeps the layers inside it.

Shared layers and nested models (handled by the graph walk in ``core``): a layer called
more than once gets its weights at the first call the walk meets (the walk visits nodes by
decreasing Keras node depth: the call farthest from the model's outputs first); every later call
propagates its own incoming moments through those weights, so its output is generally not
at ``signal_variance`` unless its inputs have the first call's moments. A model used as a
layer is walked through with its inputs' moments (eq. 5.27); called twice, it is
initialized for its first call like a shared layer; kept (``keep=``), every layer inside
keeps its weights.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re

import numpy as np

from ... import keras_graph
from ...backend import KERAS3, LEGACY, keras, tf
from ..moments import Moments, moments_of_sample
from . import register
from .fallback import monte_carlo, run_on_sample
from .weighted import (_conv_coverage, fused_activation, init_linear, kernel_columns,
                       linear_moments)

RNN_STEPS = 16          # sequence length assumed for a recurrent layer's unknown time axis
ATTENTION_LENGTH = 64   # number of keys assumed when the key sequence length is unknown
_ATTENTION_SEED = 20_250_101
_COVERAGE_LIMIT = 2 ** 24  # (output positions x taps) counted exactly, at most


def _bias(layer):
    bias = getattr(layer, "bias", None)
    return bias if getattr(layer, "use_bias", True) and bias is not None else None


def _np(variable) -> np.ndarray:
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable,
                      dtype=np.float64)


def _keep_inside(ctx, *layers):
    """Layers inside a kept/already-initialized wrapper keep their weights too."""
    for layer in layers:
        if layer is not None:
            ctx.initialized.add(id(layer))


def _call_binding(layer, node):
    """The node's call arguments by parameter name (positional ones bound to the signature)."""
    try:
        sig = inspect.signature(layer.call)
        return dict(sig.bind_partial(*node.call_args, **node.call_kwargs).arguments)
    except (TypeError, ValueError):
        return dict(node.call_kwargs)


def _moments_of(tensor, ctx, inputs, default=None):
    """Moments of the symbolic ``tensor`` among the node's inputs."""
    if tensor is not None and ctx.node is not None:
        for t, m in zip(ctx.node.inputs, inputs):
            if t is tensor:
                return m
    return default


# ------------------------------------------------------------------- SeparableConv
def _separable(layer, inputs, ctx):
    x = inputs[0]
    depthwise, pointwise = layer.depthwise_kernel, layer.pointwise_kernel
    window = int(np.prod(depthwise.shape[:-2]))
    fan_in = int(pointwise.shape[-2])  # in_channels * depth_multiplier
    bias = _bias(layer)
    coverage = _conv_coverage(layer, ctx)  # 'same' padding: windows reaching into zeros
    if ctx.should_initialize(layer):
        if x.second <= 0:
            raise FloatingPointError(f"layer {layer.name!r} receives a constant zero signal")
        # intermediate: mean 0, variance 1 (no bias between the two kernels)
        ctx.draw(depthwise, 1.0 / (window * coverage * x.second), fan_in=window)
        ctx.draw(pointwise, ctx.signal_variance / fan_in, fan_in=fan_in)
        if bias is not None:
            ctx.zero(bias)
        ctx.mark_initialized(layer)
        pre = Moments(0.0, ctx.signal_variance)
    else:  # exactly a convolution with W[k, i, o] = sum_m D[k, i, m] P[i*M + m, o]
        dw = _np(depthwise)
        pw = _np(pointwise).reshape(dw.shape[-2], dw.shape[-1], -1)
        composed = np.einsum("...im,imo->...io", dw, pw)
        b = None if bias is None else _np(bias)
        pre = linear_moments(kernel_columns(composed), b, x, coverage)
    return fused_activation(layer.activation, pre, ctx)


register(getattr(keras.layers, "SeparableConv1D", None),
         getattr(keras.layers, "SeparableConv2D", None))(_separable)


# ------------------------------------------------------------------- Conv*Transpose
def _tuple(value, rank):
    if value is None:
        return (1,) * rank
    if isinstance(value, int):
        return (value,) * rank
    return tuple(int(v) for v in value)


def tap_coverage(layer, input_shape):
    """(output positions, taps) 0/1 matrix: which kernel taps reach each output position.

    Counted exactly (borders, padding, output padding, dilation) by running a clone of the
    layer with one input channel and one output channel per tap, a one-hot kernel, on an
    all-ones input. None when the spatial input shape is unknown.
    """
    if input_shape is None or any(d is None for d in input_shape[1:-1]):
        return None
    kernel_shape = tuple(int(d) for d in layer.kernel.shape[:-2])
    taps = int(np.prod(kernel_shape))
    strides = _tuple(layer.strides, len(kernel_shape))
    positions = np.prod([(int(n) + 1) * s + k for n, s, k in
                         zip(input_shape[1:-1], strides, kernel_shape)])
    if positions * taps > _COVERAGE_LIMIT:
        return None
    config = dict(layer.get_config(), filters=taps, use_bias=False, activation=None,
                  name=f"{layer.name}_taps")
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "bias_constraint"):
        config.pop(key, None)
    clone = type(layer).from_config(config)
    ones = tf.constant(np.ones((1,) + tuple(int(d) for d in input_shape[1:-1]) + (1,),
                               dtype=np.float32))
    clone(ones)
    one_hot = np.eye(taps, dtype=np.float32).reshape(kernel_shape + (taps, 1))
    clone.kernel.assign(one_hot)
    out = np.asarray(clone(ones), dtype=np.float64)
    return out.reshape(-1, taps)


def transpose_fan_in(layer, input_shape=None) -> float:
    """Average number of (input channel, tap) pairs feeding one output element.

    ``in_channels * prod(K_d / s_d)`` in the interior (see the module docstring); exact
    (borders included) when the spatial part of ``input_shape`` is known.
    """
    in_channels = int(layer.kernel.shape[-1])
    coverage = tap_coverage(layer, input_shape)
    if coverage is not None and coverage.sum() > 0:
        return in_channels * float(coverage.sum(axis=1).mean())
    rank = len(layer.kernel.shape) - 2
    k = _tuple(tuple(layer.kernel.shape[:rank]), rank)
    s = _tuple(layer.strides, rank)
    return in_channels * float(np.prod([kd / sd for kd, sd in zip(k, s)]))


def _transpose_kept(layer, x: Moments, input_shape=None) -> Moments:
    """Moments through kept transposed-conv weights: the mixture over output positions
    (exact coverage when the spatial shape is known, else the ``prod(s)`` interior residue
    classes, equally frequent) and output channels."""
    w = _np(layer.kernel)  # (*K, out, in)
    rank = w.ndim - 2
    col_sum = w.sum(axis=-1).reshape(-1, w.shape[-2])          # (taps, out)
    col_sq = np.square(w).sum(axis=-1).reshape(-1, w.shape[-2])
    coverage = tap_coverage(layer, input_shape)
    if coverage is None:
        strides = _tuple(layer.strides, rank)
        dilation = _tuple(getattr(layer, "dilation_rate", 1), rank)
        classes = []
        for d in range(rank):  # tap k of axis d reaches the outputs o = k * dilation (mod s)
            k, s = w.shape[d], strides[d]
            onehot = np.zeros((s, k))
            onehot[(np.arange(k) * dilation[d]) % s, np.arange(k)] = 1.0
            classes.append(onehot)
        coverage = classes[0]
        for onehot in classes[1:]:
            coverage = np.einsum("pa,qb->pqab", coverage, onehot).reshape(
                coverage.shape[0] * onehot.shape[0], -1)
    unit_mean = x.mean * (coverage @ col_sum)                  # (positions, out)
    bias = _bias(layer)
    if bias is not None:
        unit_mean = unit_mean + _np(bias)
    unit_var = x.var * (coverage @ col_sq)
    return Moments(float(unit_mean.mean()), float(unit_var.mean() + unit_mean.var()))


def _conv_transpose(layer, inputs, ctx):
    x = inputs[0]
    shape = ctx.node.input_shapes[0] if ctx.node is not None else None
    if ctx.should_initialize(layer):
        pre = init_linear(layer, layer.kernel, transpose_fan_in(layer, shape), x, ctx,
                          _bias(layer))
    else:
        pre = _transpose_kept(layer, x, shape)
    return fused_activation(layer.activation, pre, ctx)


register(getattr(keras.layers, "Conv1DTranspose", None),
         getattr(keras.layers, "Conv2DTranspose", None),
         getattr(keras.layers, "Conv3DTranspose", None))(_conv_transpose)


# ------------------------------------------------------------------- Embedding
def _reverse_calls(layer) -> bool:
    """True when an embedding is also called with ``reverse=True`` (a tied read-out,
    ``h @ E^T``, the convention of keras_hub's ReversibleEmbedding and our TiedEmbedding)."""
    return any(node.call_kwargs.get("reverse") for node in keras_graph.layer_nodes(layer))


@register(keras.layers.Embedding)
def _embedding(layer, inputs, ctx):
    """Lookup: entries of the matrix. Tied read-out (``reverse=True``): ``h @ E^T``.

    A tied matrix serves two masters; AutoInit sizes it for the read-out, whose logits feed
    a softmax and must not saturate it: ``Var(E) = signal_variance / d`` assumes the read-out
    input has ``E h^2 = 1`` (GPT-style models put a LayerNorm there), so the lookup outputs
    variance ``signal_variance / d`` -- small, as GPT-2's 0.02 standard deviation is.
    """
    matrix = layer.embeddings
    reverse = ctx.node is not None and bool(ctx.node.call_kwargs.get("reverse"))
    if ctx.should_initialize(layer):
        tied = reverse or _reverse_calls(layer)
        width = int(matrix.shape[1])
        variance = ctx.signal_variance / width if tied else ctx.signal_variance
        ctx.draw(matrix, variance, fan_in=int(matrix.shape[0]))
        ctx.mark_initialized(layer)
        if not reverse:
            return Moments(0.0, variance)
    values = _np(matrix)
    if reverse:  # logits: each of the vocabulary's outputs sums d products
        x = inputs[0]
        unit_mean = x.mean * values.sum(axis=1)
        unit_var = x.var * np.square(values).sum(axis=1)
        return Moments(float(unit_mean.mean()), float(unit_var.mean() + unit_mean.var()))
    return Moments(float(values.mean()), float(values.var()))


# ------------------------------------------------------------------- EinsumDense
def parse_einsum_dense(equation: str):
    """``"abc,cd->abd"`` -> (input spec, kernel spec, output spec), ellipses kept."""
    eq = equation.replace(" ", "")
    match = re.fullmatch(r"([a-zA-Z.]+),([a-zA-Z.]+)->([a-zA-Z.]*)", eq)
    if not match:
        raise ValueError(f"cannot parse EinsumDense equation {equation!r}")
    return match.group(1), match.group(2), match.group(3)


def einsum_fan_in(equation: str, kernel_shape) -> int:
    """Product of the kernel dimensions contracted away (letters not in the output)."""
    _, kspec, ospec = parse_einsum_dense(equation)
    return int(np.prod([int(kernel_shape[i]) for i, c in enumerate(kspec) if c not in ospec]
                       or [1]))


def einsum_units(layer, x: Moments):
    """Per-unit (mean, variance) arrays of an EinsumDense's output for i.i.d. input ``x``.

    The arrays broadcast over the output letters (size 1 along letters the kernel and bias
    do not carry): unit ``u`` has mean ``mu * sum W_u + b_u`` and variance
    ``nu * sum W_u^2``, sums over the contracted kernel axes.
    """
    _, kspec, ospec = parse_einsum_dense(layer.equation)
    out = ospec.replace(".", "")
    w = _np(layer.kernel)
    contracted = tuple(i for i, c in enumerate(kspec) if c not in ospec)
    col_sum, col_sq = w.sum(axis=contracted), np.square(w).sum(axis=contracted)
    free = [c for c in kspec if c in ospec]       # axes of col_sum / col_sq, kernel order
    target = sorted(free, key=out.index)          # the same letters in output order

    def to_output_order(a):  # broadcastable over the output letters
        a = np.transpose(a, [free.index(c) for c in target])
        return a.reshape([a.shape[target.index(c)] if c in target else 1 for c in out])

    unit_mean = x.mean * to_output_order(col_sum)
    unit_var = x.var * to_output_order(col_sq)
    bias = getattr(layer, "bias", None)
    if bias is not None:
        b = _np(bias)
        unit_mean = unit_mean + b.reshape((1,) * (len(out) - b.ndim) + b.shape)  # a suffix
    shape = np.broadcast_shapes(unit_mean.shape, unit_var.shape)
    return np.broadcast_to(unit_mean, shape), np.broadcast_to(unit_var, shape)


def _units_moments(unit_mean, unit_var) -> Moments:
    return Moments(float(np.mean(unit_mean)),
                   float(np.mean(unit_var) + np.var(unit_mean)))


@register(getattr(keras.layers, "EinsumDense", None))
def einsum_dense(layer, inputs, ctx):
    x = inputs[0]
    if ctx.should_initialize(layer):
        fan_in = einsum_fan_in(layer.equation, layer.kernel.shape)
        pre = init_linear(layer, layer.kernel, fan_in, x, ctx, getattr(layer, "bias", None))
    else:
        pre = _units_moments(*einsum_units(layer, x))
    return fused_activation(getattr(layer, "activation", None), pre, ctx)


# ------------------------------------------------------------------- attention
def _attention_spec(layer):
    """The pieces of an attention layer the rule needs (MHA and GQA, both Kerases)."""
    def get(*names):
        return next((getattr(layer, n) for n in names if hasattr(layer, n)), None)

    use_gate = get("_use_gate", "use_gate")
    return dict(q=layer._query_dense, k=layer._key_dense, v=layer._value_dense,
                o=layer._output_dense,
                gate=getattr(layer, "_gate_dense", None) if use_gate else None,
                dropout=float(get("_dropout", "dropout") or 0.0),
                axes=get("_attention_axes"), window=get("_sliding_window", "sliding_window"))


def _seq_length(shape, axes):
    axes = tuple(range(1, len(shape) - 1)) if axes is None else tuple(axes)
    dims = [shape[a] for a in axes]
    if any(d is None for d in dims):
        return None
    return int(np.prod(dims or [1]))


def _per_head(units, kernel_shape):
    """(heads, head_dim) view of per-unit arrays of a projection ending in (heads, dim)."""
    heads, dim = int(kernel_shape[-2]), int(kernel_shape[-1])
    a = np.broadcast_to(units, units.shape[:-2] + (heads, dim))
    return a.reshape(-1, heads, dim).mean(axis=0)


def _softmax_over_keys(logits, n_keys, n_queries, causal, window, rng):
    """Row-wise softmax of ``logits`` (samples, keys) under the layer's masks."""
    samples = logits.shape[0]
    if causal or window:
        t = rng.integers(0, int(n_queries or n_keys), samples)[:, None]
        j = np.arange(n_keys)[None, :]
        allowed = np.ones((samples, n_keys), dtype=bool)
        if causal:
            allowed &= j <= t
        if window:
            allowed &= np.abs(t - j) < int(window)
        allowed[~allowed.any(axis=1), 0] = True
        logits = np.where(allowed, logits, -np.inf)
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _head_kernels(sub):
    """A projection's kernel as (fan_in, heads, dim) and its bias as (heads, dim)."""
    shape = tuple(sub.kernel.shape)
    heads, dim = int(shape[-2]), int(shape[-1])
    w = _np(sub.kernel).reshape(-1, heads, dim)
    bias = getattr(sub, "bias", None)
    b = np.zeros((heads, dim)) if bias is None else \
        np.broadcast_to(_np(bias).reshape(-1, heads, dim).mean(axis=0), (heads, dim))
    return w, b


def attended_variance(q_in: Moments, k_in: Moments, v_in: Moments, spec, vm, n_keys,
                      n_queries, causal, shared_kv: bool, samples: int, seed=_ATTENTION_SEED):
    """Per query head: ``E sum p_i^2`` and the covariance over value units of the attended
    values ``o_u = sum_i p_i d_i v_iu`` around their means ``m_u``.

    Given one query vector ``q`` (sampled exactly: ``q = x W_q + b_q`` with i.i.d. Gaussian
    ``x``), the logits ``l_i = q . k_i / sqrt(d)`` are i.i.d. across keys with variance
    ``s2 = nu_k |W_k q|^2 / d`` (key means shift all logits equally). Values have covariance
    ``C = nu_v W_v^T W_v`` over units. When keys and values are projections of the same
    tensor, ``v_i`` is correlated with ``l_i``: ``c = Cov(l, v) = nu_k W_v^T W_k q / sqrt(d)``;
    writing ``v_i = m + (c / s2)(l_i - E l) + e_i`` with ``e`` independent of the logits,
    ``E (o - m)(o - m)^T = m m^T S r/(1-r) + c c^T / s2 (T - S/(1-r)) + C S/(1-r)`` with
    ``S = sum p_i^2``, ``T = (sum p_i z_i)^2 + r/(1-r) sum p_i^2 z_i^2`` (``z`` the
    standardized logits), averaged over queries; ``r`` is the attention dropout rate in
    training mode (``d_i`` the scaled dropout masks). Without dropout and correlation this
    is ``E[sum p^2] * C``. Returns (heads,) and (heads, dim_v, dim_v) arrays.
    """
    rng = np.random.default_rng(seed)
    wq, bq = _head_kernels(spec["q"])
    wk, _ = _head_kernels(spec["k"])
    wv, _ = _head_kernels(spec["v"])
    q_heads, kv_heads, d = wq.shape[1], wk.shape[1], wq.shape[2]
    rate = spec["dropout"]
    keep = 1.0 - rate
    x = rng.standard_normal((samples, wq.shape[0])) * math.sqrt(max(q_in.var, 0.0)) + q_in.mean
    sums, covariances = [], []
    for h in range(q_heads):
        j = h * kv_heads // q_heads  # grouped-query attention shares key/value heads
        q = x @ wq[:, h, :] + bq[h]                      # (samples, d)
        a = q @ wk[:, j, :].T / math.sqrt(d)             # (samples, fan_in of the keys)
        s2 = np.maximum(k_in.var * np.sum(a * a, axis=1), 1e-30)
        z = rng.standard_normal((samples, max(int(n_keys), 1)))
        p = _softmax_over_keys(z * np.sqrt(s2)[:, None], z.shape[1], n_queries, causal,
                               spec["window"], rng)
        s = np.sum(p * p, axis=1)
        t = np.sum(p * z, axis=1) ** 2 + rate / keep * np.sum(p * p * z * z, axis=1)
        values_cov = v_in.var * wv[:, j, :].T @ wv[:, j, :]
        cov = values_cov * s.mean() / keep + np.outer(vm[j], vm[j]) * (s.mean() * rate / keep)
        if shared_kv:
            c = k_in.var * (a @ wv[:, j, :])             # (samples, dim_v)
            weight = (t - s / keep) / s2
            cov = cov + (c * weight[:, None]).T @ c / samples
        sums.append(float(s.mean()))
        covariances.append(cov)
    return np.array(sums), np.array(covariances)


def _output_through_weights(sub, means, covariances):
    """Moments of the output projection for attended values with per-unit ``means``
    (heads, dim_v) and per-head covariances, through its actual kernel and bias: output unit
    ``e`` has mean ``sum w_e . m + b_e`` and variance ``sum_h w_eh^T C_h w_eh``."""
    w = _np(sub.kernel)
    heads, dim = means.shape
    if w.shape[:2] != (heads, dim):
        return None
    w = w.reshape(heads, dim, -1)                                   # (heads, dim_v, units)
    unit_mean = np.einsum("hd,hde->e", means, w)
    bias = getattr(sub, "bias", None)
    if bias is not None:
        b = _np(bias).reshape(-1)
        if b.size not in (1, unit_mean.size):
            return None
        unit_mean = unit_mean + b
    unit_var = np.einsum("hde,hdf,hfe->e", w, covariances, w)
    return _units_moments(unit_mean, unit_var)


def _project(sub, x, ctx):
    """Initialize a projection for ``signal_variance`` (unless kept), then return its
    per-unit moments computed from the weights it now has."""
    if ctx.should_initialize(sub):
        fan_in = einsum_fan_in(sub.equation, sub.kernel.shape)
        init_linear(sub, sub.kernel, fan_in, x, ctx, getattr(sub, "bias", None))
    return einsum_units(sub, x)


def _attention(layer, inputs, ctx):
    spec = _attention_spec(layer)
    node = ctx.node
    bound = _call_binding(layer, node) if node is not None else {}
    q_in = _moments_of(bound.get("query"), ctx, inputs, inputs[0])
    v_in = _moments_of(bound.get("value"), ctx, inputs, inputs[min(1, len(inputs) - 1)])
    k_in = _moments_of(bound.get("key"), ctx, inputs, v_in)
    key = bound.get("key")
    shared_kv = key is None or key is bound.get("value")
    initialize = ctx.should_initialize(layer)
    if not initialize:
        _keep_inside(ctx, spec["q"], spec["k"], spec["v"], spec["o"], spec["gate"])
    _project(spec["q"], q_in, ctx)
    _project(spec["k"], k_in, ctx)
    vm = _per_head(_project(spec["v"], v_in, ctx)[0], spec["v"].kernel.shape)  # unit means

    key_tensor = key if key is not None else bound.get("value")
    n_keys = _seq_length(tuple(key_tensor.shape), spec["axes"]) \
        if key_tensor is not None else None
    if n_keys is None:
        ctx.warn_once(("attention-length", id(layer)),
                      f"{layer.name}: unknown key sequence length; AutoInit assumes "
                      f"{ATTENTION_LENGTH} keys for the softmax statistics")
        n_keys = ATTENTION_LENGTH
    query = bound.get("query")
    n_queries = _seq_length(tuple(query.shape), spec["axes"]) if query is not None else None
    causal = bool(bound.get("use_causal_mask", False))
    q_heads = int(spec["q"].kernel.shape[-2])
    samples = int(max(250, min(2000, 400_000 // (n_keys * q_heads))))
    sums, covariances = attended_variance(q_in, k_in, v_in, spec, vm, n_keys, n_queries,
                                          causal, shared_kv, samples)
    kv_heads = vm.shape[0]
    means = np.stack([vm[h * kv_heads // q_heads] for h in range(q_heads)])
    variances = np.diagonal(covariances, axis1=1, axis2=2)
    mixed = Moments(float(means.mean()), float(variances.mean() + means.var()))
    out = None
    if spec["gate"] is not None:
        g = einsum_dense(spec["gate"], [q_in], ctx)  # its sigmoid activation included
        mean = mixed.mean * g.mean
        mixed = Moments(mean, max(mixed.second * g.second - mean * mean, 0.0))
    elif not ctx.should_initialize(spec["o"]):
        out = _output_through_weights(spec["o"], means, covariances)
    if out is None:
        out = einsum_dense(spec["o"], [mixed], ctx)
    if initialize:
        ctx.mark_initialized(layer)
    if node is not None and len(node.outputs) == 2:  # return_attention_scores=True
        p_mean = 1.0 / n_keys
        return [out, Moments(p_mean, max(float(np.mean(sums)) / n_keys - p_mean ** 2, 0.0))]
    return out


register(getattr(keras.layers, "MultiHeadAttention", None),
         getattr(keras.layers, "GroupQueryAttention", None))(_attention)


# ------------------------------------------------------------------- wrappers
class _Spec:
    """Stands in for a symbolic tensor of ``shape`` in a synthetic graph node."""

    def __init__(self, shape):
        self.shape = tuple(shape)


@register(keras.layers.TimeDistributed)
def _time_distributed(layer, inputs, ctx):
    from ..core import estimate, propagate

    inner = layer.layer
    if not ctx.should_initialize(layer):
        _keep_inside(ctx, inner, *getattr(inner, "_flatten_layers", lambda: [])())
    outer = ctx.node
    if outer is not None:
        spec_in = _Spec((None,) + tuple(outer.input_shapes[0][2:]))
        spec_out = _Spec((None,) + tuple(outer.output_shapes[0][2:]))
        ctx.node = keras_graph.GraphNode(inner, [spec_in], [spec_out], (spec_in,), {})
    try:
        if keras_graph.is_model(inner):
            out = propagate(inner, [inputs[0]], ctx, [])
        else:
            out = estimate(inner, [inputs[0]], ctx)
    finally:
        ctx.node = outer
    return out


def _recurrent(layer, inputs, ctx):
    """Default initialization kept (§5.4); moments by Monte Carlo on the layer alone.

    The layer runs through the shared sampler (``fallback.run_on_sample``: a seeded batch
    drawn from the incoming law, Gaussian or an activation of a Gaussian when the input
    remembers one) with ``recurrent_monte_carlo_samples`` sequences (default: as many as
    ``mc_samples`` elements allow); an unknown time axis is taken as :data:`RNN_STEPS`
    steps. Its outputs are returned per unit (the last axis) with the units'
    covariance: recurrent units are correlated and unequal, and a Dense head drawn for
    the aggregate alone misses its target by 10-50% on a single draw; with the covariance
    the head's draw is fitted exactly (``match_draw``).
    """
    if ctx.record is not None:
        ctx.record.method = "monte_carlo"
    node = ctx.node
    shapes = node.input_shapes if node is not None else [(None, RNN_STEPS, 8)] * len(inputs)
    shapes = [(shape[0], RNN_STEPS) + tuple(shape[2:])
              if len(shape) >= 3 and shape[1] is None else shape  # the time axis
              for shape in shapes]
    outputs = run_on_sample(layer, inputs, ctx, shapes,
                            batch=getattr(ctx, "recurrent_samples", None))
    return [moments_of_sample(y) for y in outputs]


register(getattr(keras.layers, "RNN", None), getattr(keras.layers, "Bidirectional", None),
         getattr(keras.layers, "GRU", None), getattr(keras.layers, "LSTM", None),
         getattr(keras.layers, "SimpleRNN", None))(_recurrent)


# ------------------------------------------------------------------- LocallyConnected
def _locally_connected(layer, inputs, ctx):
    kernel = layer.kernel
    if getattr(layer, "implementation", 1) != 1 or len(kernel.shape) != 3:
        if ctx.record is not None:
            ctx.record.method = "monte_carlo"
        return monte_carlo(layer, inputs, ctx)
    fan_in = int(kernel.shape[1])  # (positions, window * in_channels, filters)
    x = inputs[0]
    bias = _bias(layer)
    if ctx.should_initialize(layer):
        pre = init_linear(layer, kernel, fan_in, x, ctx, bias)
    else:
        w = _np(kernel)
        cols = np.transpose(w, (1, 0, 2)).reshape(fan_in, -1)
        pre = linear_moments(cols, None if bias is None else _np(bias).reshape(-1), x)
    return fused_activation(layer.activation, pre, ctx)


if LEGACY:
    register(getattr(keras.layers, "LocallyConnected1D", None),
             getattr(keras.layers, "LocallyConnected2D", None))(_locally_connected)


# ------------------------------------------------------------------- keras.applications
def _applications_class(module, name):
    if not KERAS3:
        return None
    try:
        mod = importlib.import_module(f"{keras.__name__}.src.applications.{module}")
    except ImportError:
        return None
    return getattr(mod, name, None)


def _layer_scale(layer, inputs, ctx):
    """ConvNeXt's ``x * gamma`` (per channel). Its small constant start is the design
    (residual blocks begin near the identity), so gamma is kept and propagated through."""
    gamma = _np(layer.gamma).reshape(-1)
    x = inputs[0]
    means = x.mean * gamma
    return Moments(float(means.mean()), float(np.mean(x.var * gamma ** 2) + means.var()))


def _custom_scale(layer, inputs, ctx):
    """Inception-ResNet-v2's ``inputs[0] + inputs[1] * scale`` (independent inputs, 5.18)."""
    a, b = inputs[0], inputs[1]
    s = float(layer.scale)
    return Moments(a.mean + s * b.mean, a.var + s * s * b.var)


register(_applications_class("convnext", "LayerScale"))(_layer_scale)
register(_applications_class("inception_resnet_v2", "CustomScaleLayer"))(_custom_scale)
