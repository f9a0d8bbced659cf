"""Layers without weights to initialize (§5.4): regularization noise, pooling, normalization,
merges, shape and padding layers, and the elementwise-affine preprocessing layers.

Every rule maps the (mean, variance) of i.i.d. Gaussian input elements to the exact
per-element moments of the output under that assumption, in training mode (AutoInit models
the statistics the network sees while it trains). Where output elements are not all alike
(border windows, per-channel gamma/beta, inputs of different sizes), the output moments are
those of the mixture over elements: ``E y = mean_k m_k`` and
``Var y = mean_k (v_k + m_k^2) - (E y)^2``. Several of the dissertation's formulas drop the
``mu^2`` term that a mixture or a product carries; the rules below keep it:

* Dropout (eq. 5.12): kept units are scaled by ``1/(1-rate)``, so ``E y^2 = E x^2/(1-rate)``
  and ``Var y = (nu + rate*mu^2)/(1-rate)``, not ``nu/(1-rate)``. SpatialDropout (eq. 5.11
  says unscaled) is rescaled by both Kerases exactly like Dropout; dropping whole channels
  correlates elements but leaves each element's moments as for Dropout.
* Pooling (eq. 5.16 subtracts ``mu_out`` where ``mu_out^2`` is meant): average pooling gives
  ``Var = nu/K``; max pooling uses the exact moments of the maximum of K i.i.d. normals
  (one-dimensional quadrature, no Monte Carlo). Overlapping windows (stride < pool size)
  correlate neighbouring outputs but do not change any single output's moments, so the
  stride matters only through border windows. With ``padding="same"`` TensorFlow averages
  (or maximizes) border windows over their in-bounds elements only: the rules count the
  in-bounds elements of every window from the input shape and return the exact mixture over
  output positions (full windows are assumed along axes of unknown length).
* Normalization layers (eq. 5.17 gives (0, 1)): the output is ``gamma*xhat + beta`` with the
  layer's current gamma and beta (absent with ``scale=False`` / ``center=False``), so
  ``E y = mean(beta)`` and ``E y^2 = mean(gamma^2*E xhat^2 + beta^2)`` over channels. The
  normalized ``xhat`` has mean 0 and ``E xhat^2 = E[S/(S+eps)]`` with ``S`` the biased
  sample variance of the D normalized elements (``S ~ nu*chi2(D-1)/D``: one-dimensional
  quadrature), so a LayerNormalization over one element outputs ``beta`` exactly.
  BatchNormalization normalizes over the batch, whose size AutoInit does not know: the
  large-batch limit ``nu/(nu+eps)`` is used. A frozen BatchNormalization
  (``trainable=False``) normalizes with its moving statistics in training too, and is then
  an affine map per channel; batch renormalization uses its r/d corrections.
* Multiply (eq. 5.21) and Add/Subtract/Average are exact for independent inputs; the same
  tensor passed twice is recognised (``Add()([x, x])`` is ``2x``, ``Multiply()([x, x])`` is
  ``x^2``). Maximum and Minimum of independent normals with different moments are computed
  exactly by quadrature. Concatenate (eqs. 5.22-5.23) weighs each input by its length
  along the concatenation axis. Dot is eqs. 5.29-5.30.
* ZeroPadding (eq. 5.24 scales the variance by ``1-z``): the output is a mixture of a
  fraction ``z`` of zeros and ``1-z`` of inputs, so ``E y = (1-z) mu``,
  ``E y^2 = (1-z)(nu + mu^2)`` and ``Var y = (1-z) nu + z (1-z) mu^2``.
* UpSampling2D with an interpolating method (eq. 5.25 says unchanged): every output is a
  weighted sum ``sum_k w_k x_k`` of neighbours, so ``Var y = nu*sum_k w_k^2`` (smaller than
  ``nu`` for bilinear). The weights are read off the layer itself by resizing one-hot
  images along each axis (the interpolations are separable), so the rule follows whatever
  the installed Keras does.

Softmax and ``Dot(normalize=True)`` are estimated by Monte Carlo on the layer (the record's
method says so).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ...backend import KERAS3, keras, tf
from ..moments import (ChannelMoments, Moments, channel_arrays, max_of_normals,
                       max_of_transformed, moments_of_sample, quadrature_grid)
from . import register
from .fallback import monte_carlo

L = keras.layers


def _cls(*names):
    return [getattr(L, n, None) for n in names]


# ------------------------------------------------------------------------------ helpers
def _shape(ctx, i=0, output=False):
    """The node's i-th input (or output) shape, or None when there is no node."""
    node = getattr(ctx, "node", None)
    if node is None:
        return None
    shapes = node.output_shapes if output else node.input_shapes
    return tuple(shapes[i]) if i < len(shapes) else None


def _prod(values):
    out = 1
    for v in values:
        out *= int(v)
    return out


def _mixture(means, seconds) -> Moments:
    """Moments of a uniform mixture of components with the given means and E y^2."""
    m1 = float(np.mean(means))
    m2 = float(np.mean(seconds))
    return Moments(m1, max(m2 - m1 * m1, 0.0))


def _affine(scale, offset, x: Moments) -> Moments:
    """``y = scale*x + offset`` with ``scale``/``offset`` broadcast arrays (a mixture)."""
    s, o = np.broadcast_arrays(np.asarray(scale, dtype=np.float64),
                               np.asarray(offset, dtype=np.float64))
    return _mixture(s * x.mean + o, s * s * x.second + 2.0 * s * o * x.mean + o * o)


def _set_method(ctx, method):
    if getattr(ctx, "record", None) is not None:
        ctx.record.method = method


def _warn(ctx, key, message):
    if hasattr(ctx, "warn_once"):
        ctx.warn_once(key, message)


def _monte_carlo(layer, inputs, ctx, shapes=None):
    """Moments of the first output by the shared single-layer sampler (fallback.py)."""
    _set_method(ctx, "monte_carlo")
    return monte_carlo(layer, inputs, ctx, shapes)[0]


def _gaussian_raw_moment(m: Moments, n: int) -> float:
    """E X^n for X ~ N(mean, var): M_n = mu M_{n-1} + (n-1) nu M_{n-2}."""
    prev, cur = 1.0, m.mean
    if n == 0:
        return 1.0
    for k in range(2, n + 1):
        prev, cur = cur, m.mean * cur + (k - 1) * m.var * prev
    return cur


# --------------------------------------------------------------- regularization noise
@register(*_cls("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"))
def dropout(layer, inputs, ctx):
    """Inverted dropout: ``E y = mu``, ``E y^2 = (nu + mu^2)/(1 - rate)``.

    Both Kerases rescale SpatialDropout exactly like Dropout (the spatial variant only shares
    one keep/drop decision per channel), so every element has the same moments.
    """
    m = inputs[0]
    rate = float(getattr(layer, "rate", 0.0))
    if rate <= 0.0:
        return m
    if rate >= 1.0:
        return Moments(0.0, 0.0)
    if isinstance(m, ChannelMoments):  # per channel: a draw's unit offsets stay tracked
        means, variances = m.means, m.variances
        return ChannelMoments(means, (variances + rate * means * means) / (1.0 - rate))
    return Moments(m.mean, m.second / (1.0 - rate) - m.mean * m.mean)


# SELU's constants (Klambauer et al. 2017), as AlphaDropout uses them.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@register(*_cls("AlphaDropout"))
def alpha_dropout(layer, inputs, ctx):
    """AlphaDropout: ``y = a*(x*k + alpha'*(1-k)) + b`` with ``k ~ Bernoulli(1-rate)``,
    ``alpha' = -alpha*scale`` of SELU, ``a = ((1-rate)(1+rate*alpha'^2))^(-1/2)`` and
    ``b = -a*alpha'*rate`` (the Keras implementation's affine correction). Before the affine
    map the element is a mixture: ``x`` with probability ``1-rate``, ``alpha'`` otherwise.
    """
    m = inputs[0]
    rate = float(getattr(layer, "rate", 0.0))
    if not 0.0 < rate < 1.0:
        return m
    alpha_p = -_SELU_ALPHA * _SELU_SCALE
    keep = 1.0 - rate
    a = (keep * (1.0 + rate * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * rate
    inner_mean = keep * m.mean + rate * alpha_p
    inner_second = keep * m.second + rate * alpha_p ** 2
    return Moments(a * inner_mean + b, a * a * max(inner_second - inner_mean ** 2, 0.0))


@register(*_cls("GaussianNoise"))
def gaussian_noise(layer, inputs, ctx):
    """Additive N(0, stddev^2): ``E y = mu``, ``Var y = nu + stddev^2``."""
    m = inputs[0]
    std = float(getattr(layer, "stddev", 0.0))
    return m if std <= 0 else Moments(m.mean, m.var + std * std)


@register(*_cls("GaussianDropout"))
def gaussian_dropout(layer, inputs, ctx):
    """Multiplicative N(1, rate/(1-rate)): ``E y = mu``, ``E y^2 = (nu + mu^2)/(1-rate)``."""
    m = inputs[0]
    rate = float(getattr(layer, "rate", 0.0))
    if not 0.0 < rate < 1.0:
        return m
    return Moments(m.mean, m.second / (1.0 - rate) - m.mean * m.mean)


# ------------------------------------------------------------------------------ pooling
def _spatial_axes(ndim, data_format):
    if data_format == "channels_first":
        return list(range(2, ndim))
    return list(range(1, ndim - 1))


def window_counts(size, pool, stride, padding):
    """In-bounds elements of every pooling window along one axis (TensorFlow's rule).

    ``valid``: every window is full. ``same``: ``ceil(size/stride)`` windows, the input
    padded by ``max((out-1)*stride + pool - size, 0)`` of which the smaller half goes first;
    padded positions are ignored by TensorFlow's average and max pooling.
    """
    if size is None:
        return np.array([pool])
    if padding == "valid":
        n_out = max((size - pool) // stride + 1, 0)
        return np.full(n_out, pool)
    n_out = -(-size // stride)
    pad_before = max((n_out - 1) * stride + pool - size, 0) // 2
    start = np.arange(n_out) * stride - pad_before
    return np.minimum(start + pool, size) - np.maximum(start, 0)


def window_size_distribution(counts_per_axis):
    """``{K: fraction of output positions whose window holds K elements}``."""
    dist = {1: 1.0}
    for counts in counts_per_axis:
        counts = np.asarray(counts)
        if counts.size == 0:
            return {}
        values, freq = np.unique(counts, return_counts=True)
        new = {}
        for k, p in dist.items():
            for v, f in zip(values, freq):
                key = k * int(v)
                new[key] = new.get(key, 0.0) + p * f / counts.size
        dist = new
    return dist


def _max_moments(m: Moments, dist) -> Moments:
    """Mixture over window sizes K of the maximum of K i.i.d. N(mu, nu)."""
    sd = math.sqrt(max(m.var, 0.0))
    means, seconds, weights = [], [], []
    for k, p in dist.items():
        e1, e2 = max_of_normals(int(k))
        means.append(m.mean + sd * e1)
        seconds.append(m.mean ** 2 + 2.0 * m.mean * sd * e1 + m.var * e2)
        weights.append(p)
    w = np.asarray(weights) / np.sum(weights)
    m1 = float(np.dot(w, means))
    return Moments(m1, max(float(np.dot(w, seconds)) - m1 * m1, 0.0))


def _pool_dist(layer, ctx):
    shape = _shape(ctx)
    pool = tuple(layer.pool_size)
    strides = tuple(layer.strides or pool)
    padding = str(layer.padding).lower()
    if shape is None:
        sizes = [None] * len(pool)
    else:
        sizes = [shape[a] for a in _spatial_axes(len(shape), layer.data_format)]
    return window_size_distribution(
        [window_counts(s, k, st, padding) for s, k, st in zip(sizes, pool, strides)])


@register(*_cls("AveragePooling1D", "AveragePooling2D", "AveragePooling3D"))
def average_pooling(layer, inputs, ctx):
    """``E y = mu``, ``Var y = nu * E[1/K]`` over output positions (K = in-bounds elements
    of the window: the pool size, smaller at borders with ``padding="same"``)."""
    m = inputs[0]
    dist = _pool_dist(layer, ctx)
    if not dist:
        return m
    inv_k = sum(p / k for k, p in dist.items())
    return Moments(m.mean, m.var * inv_k)


@register(*_cls("MaxPooling1D", "MaxPooling2D", "MaxPooling3D"))
def max_pooling(layer, inputs, ctx):
    """Exact moments of the maximum of K i.i.d. N(mu, nu): ``mu + sqrt(nu) * max of K
    standard normals`` (a mixture over border window sizes with ``padding="same"``)."""
    m = inputs[0]
    dist = _pool_dist(layer, ctx)
    if not dist:
        return m
    source = getattr(m, "source", None)
    if source is not None and _channels_last_pool(layer):  # the real law of the input
        _set_method(ctx, "analytic (input law)")
        return max_of_transformed(source[0], source[1], dist)
    return _max_moments(m, dist)


def _channels_last_pool(layer):
    return getattr(layer, "data_format", "channels_last") != "channels_first"


def _global_k(layer, ctx):
    shape = _shape(ctx)
    if shape is None:
        return None
    fmt = getattr(layer, "data_format", "channels_last")
    sizes = [shape[a] for a in _spatial_axes(len(shape), fmt)]
    if any(s is None for s in sizes):
        _warn(ctx, ("global-pool", layer.name),
              f"AutoInit: {layer.name!r} pools over axes of unknown length; assuming one "
              "element (moments unchanged). Give the model's Input a full shape.")
        return None
    return _prod(sizes)


@register(*_cls("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D"))
def global_average_pooling(layer, inputs, ctx):
    """``E y = mu``, ``Var y = nu/K`` with K the product of the pooled (spatial) axes."""
    m = inputs[0]
    k = _global_k(layer, ctx)
    if not k:
        return m
    if isinstance(m, ChannelMoments) and \
            getattr(layer, "data_format", "channels_last") != "channels_first":
        if m.mean_map is not None:  # the map averages out exactly; local noise by 1/K
            return ChannelMoments(m.means, m.local_variances / k)
        return ChannelMoments(m.means, m.variances / k)  # channels stay the last axis
    return Moments(m.mean, m.var / k)


@register(*_cls("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D"))
def global_max_pooling(layer, inputs, ctx):
    """Maximum of K i.i.d. normals, K the product of the pooled (spatial) axes."""
    m = inputs[0]
    k = _global_k(layer, ctx)
    if not k:
        return m
    source = getattr(m, "source", None)
    if source is not None and _channels_last_pool(layer):
        _set_method(ctx, "analytic (input law)")
        return max_of_transformed(source[0], source[1], {k: 1.0})
    return _max_moments(m, {k: 1.0})


# ------------------------------------------------------------------------ normalization
_QUANTILES = 4096


@functools.lru_cache(maxsize=256)
def _chi2_grid(df: int):
    """Midpoint quantiles of chi2(df): E f(W) ~= mean f(grid)."""
    from scipy.stats import chi2

    u = (np.arange(_QUANTILES) + 0.5) / _QUANTILES
    return chi2.ppf(u, df)


def sample_variance_grid(nu: float, n):
    """Points S (equally likely) of the biased sample variance of ``n`` i.i.d. N(., nu):
    ``S = nu*chi2(n-1)/n``; None (n unknown) is the large-sample limit S = nu."""
    if n is None or n > 10 ** 7:
        return np.array([float(nu)])
    n = int(n)
    if n <= 1:
        return np.array([0.0])
    return nu * _chi2_grid(n - 1) / n


def normalized_second(nu: float, eps: float, n) -> float:
    """E xhat^2 = E[S/(S+eps)] of ``(x - mean)/sqrt(S + eps)`` over n elements."""
    s = sample_variance_grid(nu, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(s + eps > 0, s / (s + eps), 0.0)
    return float(np.mean(r))


def _weight(layer, name, enabled):
    if not enabled:
        return None
    w = getattr(layer, name, None)
    if w is None:
        return None
    return np.asarray(w.numpy() if hasattr(w, "numpy") else w, dtype=np.float64)


def _gamma_beta(layer):
    gamma = _weight(layer, "gamma", getattr(layer, "scale", True))
    beta = _weight(layer, "beta", getattr(layer, "center", True))
    return (1.0 if gamma is None else gamma), (0.0 if beta is None else beta)


def _axes(axis, ndim):
    axes = [axis] if isinstance(axis, int) else list(axis)
    return sorted(int(a) % ndim for a in axes)


def _count(shape, axes):
    if shape is None:
        return None
    sizes = [shape[a] for a in axes]
    return None if any(s is None for s in sizes) else _prod(sizes)


@register(*_cls("BatchNormalization"))
def batch_normalization(layer, inputs, ctx):
    """Training mode: per channel ``y = gamma*(x - mean_B)/sqrt(var_B + eps) + beta``.

    ``E y = mean(beta)``, ``E y^2 = mean(gamma^2 f + beta^2)`` with ``f = nu/(nu+eps)`` (the
    batch size is unknown: large-batch limit). A frozen layer (``trainable=False``) uses its
    moving statistics even in training: per channel the affine map
    ``gamma (x - mm)/sqrt(mv + eps) + beta``. With batch renormalization the normalized value
    becomes ``xhat*r + d``, ``r = clip(sqrt(nu+eps)/sigma_R)``, ``d = clip((mu - mu_R)/sigma_R)``.
    """
    m = inputs[0]
    eps = float(layer.epsilon)
    gamma, beta = _gamma_beta(layer)
    if not layer.trainable:
        mm = np.asarray(layer.moving_mean.numpy(), dtype=np.float64)
        mv = np.asarray(layer.moving_variance.numpy(), dtype=np.float64)
        s = gamma / np.sqrt(mv + eps)
        return _affine(s, beta - s * mm, m)
    xhat = Moments(0.0, m.var / (m.var + eps) if m.var + eps > 0 else 0.0)
    if getattr(layer, "renorm", False):
        clip = dict(getattr(layer, "renorm_clipping", None) or {})
        r_mean = np.asarray(layer.renorm_mean.numpy(), dtype=np.float64)
        r_std = np.maximum(np.asarray(layer.renorm_stddev.numpy(), dtype=np.float64),
                           math.sqrt(eps))
        r = math.sqrt(m.var + eps) / r_std
        d = (m.mean - r_mean) / r_std
        if clip.get("rmin") is not None:
            r = np.maximum(r, clip["rmin"])
        if clip.get("rmax") is not None:
            r = np.minimum(r, clip["rmax"])
        if clip.get("dmax") is not None:
            d = np.clip(d, -clip["dmax"], clip["dmax"])
        return _affine(gamma * r, gamma * d + beta, xhat)
    return _affine(gamma, beta, xhat)


@register(*_cls("LayerNormalization"))
def layer_normalization(layer, inputs, ctx):
    """``y = gamma*(x - mean_D)/sqrt(S + eps) + beta`` over the D elements of ``axis``:
    ``xhat`` has mean 0 and ``E xhat^2 = E[S/(S+eps)]`` exactly (S the biased sample variance
    of D normals). Keras 3's deprecated ``rms_scaling=True`` does not center:
    ``y = gamma*x/sqrt(S + eps)``, for which (the sample mean being independent of S)
    ``E xhat = mu E[(S+eps)^-1/2]`` and ``E xhat^2 = (mu^2 + nu/D) E[1/(S+eps)] +
    E[S/(S+eps)]``."""
    m = inputs[0]
    eps = float(layer.epsilon)
    shape = _shape(ctx)
    d = None if shape is None else _count(shape, _axes(layer.axis, len(shape)))
    gamma, beta = _gamma_beta(layer)
    if getattr(layer, "rms_scaling", False):
        s = sample_variance_grid(m.var, d)
        d_eff = d if d is not None else math.inf
        with np.errstate(divide="ignore"):
            mean = m.mean * float(np.mean(1.0 / np.sqrt(s + eps)))
            second = (m.mean ** 2 + m.var / d_eff) * float(np.mean(1.0 / (s + eps))) + \
                float(np.mean(s / (s + eps)))
        return _affine(gamma, 0.0, Moments(mean, max(second - mean * mean, 0.0)))
    return _affine(gamma, beta, Moments(0.0, normalized_second(m.var, eps, d)))


@register(*_cls("GroupNormalization"))
def group_normalization(layer, inputs, ctx):
    """As LayerNormalization over each group: ``D = (channels/groups) * spatial size``;
    gamma/beta are per channel."""
    m = inputs[0]
    eps = float(layer.epsilon)
    shape = _shape(ctx)
    d = None
    if shape is not None:
        d = _count(shape, list(range(1, len(shape))))
        d = None if d is None else d // int(layer.groups)
    gamma, beta = _gamma_beta(layer)
    return _affine(gamma, beta, Moments(0.0, normalized_second(m.var, eps, d)))


@register(*_cls("UnitNormalization"))
def unit_normalization(layer, inputs, ctx):
    """``y = x/||x||`` over D elements: ``E y^2 = 1/D`` exactly (the squares sum to one).

    For the mean write ``x = mu + sqrt(nu) z``: with ``a = sum(x)/sqrt(D) ~ N(sqrt(D) mu, nu)``
    and the rest of the squared norm ``nu*W``, ``W ~ chi2(D-1)`` independent of ``a``,
    ``E y = E[a/sqrt(a^2 + nu W)]/sqrt(D)`` (two-dimensional quadrature; about
    ``mu/sqrt(D(nu + mu^2))`` for large D).
    """
    m = inputs[0]
    shape = _shape(ctx)
    d = None if shape is None else _count(shape, _axes(layer.axis, len(shape)))
    if d is None:
        _warn(ctx, ("unit-norm", layer.name),
              f"AutoInit: {layer.name!r} normalizes over axes of unknown length; assuming "
              "one element (y = sign(x)).")
        d = 1
    return Moments(*unit_norm_moments(m.mean, m.var, int(d)))


@functools.lru_cache(maxsize=1024)
def unit_norm_moments(mu: float, nu: float, d: int):
    second = 1.0 / d
    if nu <= 0:  # a constant vector: sign(mu)/sqrt(D) everywhere
        return (math.copysign(1.0, mu) / math.sqrt(d) if mu != 0 else 0.0), 0.0
    if d == 1:  # sign(x)
        mean = math.erf(mu / math.sqrt(2.0 * nu))
        return mean, 1.0 - mean * mean
    z = np.linspace(-10.0, 10.0, 2001)
    w = np.ones_like(z)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    w *= (z[1] - z[0]) / 3.0 * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    a = math.sqrt(d) * mu + math.sqrt(nu) * z
    q = nu * _chi2_grid(d - 1)[::8]  # 512 equally likely points
    with np.errstate(divide="ignore", invalid="ignore"):
        t = a[:, None] / np.sqrt(a[:, None] ** 2 + q[None, :])
    t = np.nan_to_num(t)
    mean = float(np.dot(w, t.mean(axis=1))) / math.sqrt(d)
    return mean, max(second - mean * mean, 0.0)


# ------------------------------------------------------------------------------- merges
def _distinct(inputs, ctx):
    """[(moments, multiplicity, first index)] of the distinct input tensors, in order."""
    node = getattr(ctx, "node", None)
    keys = [id(t) for t in node.inputs] if node is not None and \
        len(node.inputs) == len(inputs) else list(range(len(inputs)))
    seen = {}
    for i, (k, m) in enumerate(zip(keys, inputs)):
        if k in seen:
            seen[k][1] += 1
        else:
            seen[k] = [m, 1, i]
    return [tuple(v) for v in seen.values()]


def _linear(inputs, coeffs, ctx) -> Moments:
    """``sum_i c_i x_i`` for independent distinct tensors (repeats add their coefficients)."""
    node = getattr(ctx, "node", None)
    keys = [id(t) for t in node.inputs] if node is not None and \
        len(node.inputs) == len(inputs) else list(range(len(inputs)))
    total = {}
    for k, m, c in zip(keys, inputs, coeffs):
        total[k] = (m, total.get(k, (m, 0.0))[1] + c)
    channels = {m.channels for m, _ in total.values() if isinstance(m, ChannelMoments)}
    if len(channels) == 1:  # per-channel: each channel's means and variances combine alike
        n = channels.pop()
        maps = {m.mean_map.shape for m, _ in total.values()
                if getattr(m, "mean_map", None) is not None}
        if len(maps) == 1:  # position-dependent means add exactly; local variances add
            shape = maps.pop()
            mean_map = sum(c * (m.mean_map if getattr(m, "mean_map", None) is not None
                                else np.broadcast_to(channel_arrays(m, n)[0], shape))
                           for m, c in total.values())
            local = sum(c * c * (m.local_variances if getattr(m, "mean_map", None) is not None
                                 else channel_arrays(m, n)[1]) for m, c in total.values())
            return ChannelMoments.from_map(mean_map, local)
        arrays = [(channel_arrays(m, n), c) for m, c in total.values()]
        return ChannelMoments(sum(c * mu for (mu, _), c in arrays),
                              sum(c * c * nu for (_, nu), c in arrays))
    mean = sum(c * m.mean for m, c in total.values())
    var = sum(c * c * m.var for m, c in total.values())
    return Moments(mean, var)


@register(*_cls("Add"))
def add(layer, inputs, ctx):
    """Eq. 5.18: means and variances add (independent inputs)."""
    return _linear(inputs, [1.0] * len(inputs), ctx)


@register(*_cls("Subtract"))
def subtract(layer, inputs, ctx):
    """Eq. 5.20: ``mu1 - mu2``, ``nu1 + nu2``."""
    return _linear(inputs, [1.0, -1.0], ctx)


@register(*_cls("Average"))
def average(layer, inputs, ctx):
    """Eq. 5.19: ``mean(mu_i)``, ``sum(nu_i)/N^2``."""
    n = len(inputs)
    return _linear(inputs, [1.0 / n] * n, ctx)


@register(*_cls("Multiply"))
def multiply(layer, inputs, ctx):
    """Eq. 5.21: ``E y = prod mu_i``, ``E y^2 = prod (nu_i + mu_i^2)``; a tensor appearing k
    times contributes its Gaussian moments ``E x^k`` and ``E x^2k``."""
    mean, second = 1.0, 1.0
    for m, k, _ in _distinct(inputs, ctx):
        mean *= _gaussian_raw_moment(m, k)
        second *= _gaussian_raw_moment(m, 2 * k)
    return Moments(mean, max(second - mean * mean, 0.0))


def max_of_independent(moments) -> Moments:
    """Exact moments of ``max(X_1..X_N)``, ``X_i ~ N(mu_i, nu_i)`` independent.

    ``E g(max) = sum_i E[g(X_i) prod_{j != i} P(X_j < X_i)]``: one quadrature per input on
    the standard-normal grid. Constant inputs (variance 0) are point masses; ties between
    them are counted once.
    """
    from scipy.special import ndtr

    z, w = quadrature_grid()
    sds = [math.sqrt(max(m.var, 0.0)) for m in moments]
    m1 = m2 = 0.0
    for i, (mi, si) in enumerate(zip(moments, sds)):
        if si > 0:
            x, wi = mi.mean + si * z, w
        else:
            x, wi = np.array([mi.mean]), np.array([1.0])
        p = np.ones_like(x)
        for j, (mj, sj) in enumerate(zip(moments, sds)):
            if j == i:
                continue
            if sj > 0:
                p = p * ndtr((x - mj.mean) / sj)
            else:
                p = p * ((x > mj.mean) | ((x == mj.mean) & (j > i)))
        m1 += float(np.dot(wi, x * p))
        m2 += float(np.dot(wi, x * x * p))
    return Moments(m1, max(m2 - m1 * m1, 0.0))


@register(*_cls("Maximum"))
def maximum(layer, inputs, ctx):
    """Exact maximum of independent normals (repeated tensors count once)."""
    return max_of_independent([m for m, _, _ in _distinct(inputs, ctx)])


@register(*_cls("Minimum"))
def minimum(layer, inputs, ctx):
    """``min(X) = -max(-X)``."""
    neg = max_of_independent([Moments(-m.mean, m.var) for m, _, _ in _distinct(inputs, ctx)])
    return Moments(-neg.mean, neg.var)


@register(*_cls("Concatenate"))
def concatenate(layer, inputs, ctx):
    """Eqs. 5.22-5.23: the mixture of the inputs weighted by their length along the
    concatenation axis (other axes agree). Unknown lengths: equal weights, with a warning."""
    node = getattr(ctx, "node", None)
    weights = None
    if node is not None:
        shapes = node.input_shapes
        sizes = [s[int(layer.axis) % len(s)] for s in shapes]
        if all(s is not None for s in sizes):
            weights = np.asarray(sizes, dtype=np.float64)
        else:
            _warn(ctx, ("concat", layer.name),
                  f"AutoInit: {layer.name!r} concatenates along an axis of unknown length; "
                  "weighing its inputs equally.")
    if weights is None:
        weights = np.ones(len(inputs))
    weights = weights / weights.sum()
    m1 = float(sum(w * m.mean for w, m in zip(weights, inputs)))
    m2 = float(sum(w * m.second for w, m in zip(weights, inputs)))
    return Moments(m1, max(m2 - m1 * m1, 0.0))


def _dot_axes(layer, shapes):
    axes = layer.axes
    n1, n2 = len(shapes[0]), len(shapes[1])
    if isinstance(axes, int):
        return [axes % n1, axes % n2] if axes < 0 else [axes, axes]
    return [int(axes[0]) % n1, int(axes[1]) % n2]


@register(*_cls("Dot"))
def dot(layer, inputs, ctx):
    """Eqs. 5.29-5.30 over the contracted axis of length n: ``E y = n mu1 mu2``,
    ``Var y = n((nu1 + mu1^2)(nu2 + mu2^2) - mu1^2 mu2^2)``; ``Dot([x, x])`` contracting the
    same axis is ``sum x_k^2``: ``E = n E x^2``, ``Var = n (E x^4 - (E x^2)^2)``.
    ``normalize=True`` (cosine similarity) and other self-products: Monte Carlo on the layer.
    """
    shapes = _shape_list(ctx, len(inputs))
    same = len(_distinct(inputs, ctx)) == 1 and len(inputs) == 2
    if getattr(layer, "normalize", False) or shapes is None:
        return _monte_carlo(layer, inputs, ctx)
    axes = _dot_axes(layer, shapes)
    n = shapes[0][axes[0]] or shapes[1][axes[1]]
    if n is None:
        return _monte_carlo(layer, inputs, ctx)
    if same:
        if axes[0] != axes[1]:
            return _monte_carlo(layer, inputs, ctx)
        m = inputs[0]
        m2, m4 = _gaussian_raw_moment(m, 2), _gaussian_raw_moment(m, 4)
        return Moments(n * m2, n * max(m4 - m2 * m2, 0.0))
    a, b = inputs
    return Moments(n * a.mean * b.mean,
                   n * max(a.second * b.second - (a.mean * b.mean) ** 2, 0.0))


def _shape_list(ctx, n):
    node = getattr(ctx, "node", None)
    if node is None or len(node.input_shapes) != n:
        return None
    return node.input_shapes


# ------------------------------------------------------------------- shape and padding
def _identity(layer, inputs, ctx):
    """Eq. 5.25: rearranging or repeating i.i.d. elements leaves their moments unchanged.

    Inputs that carry a Monte Carlo sample (recurrent layers: correlated, unequal units)
    have the layer run on that sample, so the units' covariance follows the new layout.
    """
    sample = getattr(inputs[0], "sample", None)
    if sample is not None and len(inputs) == 1:
        try:
            out = layer(tf.constant(sample.astype("float32")))
        except Exception:  # noqa: BLE001 - a layout the sample does not fit: moments only
            return inputs[0]
        return moments_of_sample(np.asarray(out, dtype=np.float64))
    return inputs[0]


register(*_cls("Cropping1D", "Cropping2D", "Cropping3D", "Reshape", "Flatten", "Permute",
               "RepeatVector", "Identity", "UpSampling1D", "UpSampling3D"))(_identity)


@register(*_cls("Masking"))
def masking(layer, inputs, ctx):
    """A step is zeroed only when all its features equal ``mask_value``: probability 0 for
    continuous inputs, certainty for a constant input equal to it."""
    m = inputs[0]
    if m.var <= 0 and m.mean == float(getattr(layer, "mask_value", 0.0)):
        return Moments(0.0, 0.0)
    return m


@register(*_cls("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"))
def zero_padding(layer, inputs, ctx):
    """A fraction z of zeros: ``E y = (1-z) mu``, ``E y^2 = (1-z)(nu + mu^2)``, so
    ``Var y = (1-z) nu + z(1-z) mu^2``; z from the input and output shapes (axes of unknown
    length are left out)."""
    m = inputs[0]
    shape_in, shape_out = _shape(ctx), _shape(ctx, output=True)
    if shape_in is None or shape_out is None:
        return m
    kept = 1.0
    for a, b in zip(shape_in[1:], shape_out[1:]):
        if a is not None and b is not None and b > 0:
            kept *= a / b
        elif a is None or b is None:
            _warn(ctx, ("zeropad", layer.name),
                  f"AutoInit: {layer.name!r} pads an axis of unknown length; its zeros are "
                  "not counted.")
    return Moments(kept * m.mean, max(kept * m.second - (kept * m.mean) ** 2, 0.0))


def _resize_profile(layer, n, axis, fmt):
    """Interpolation weights of the layer along one spatial axis (0: height, 1: width):
    (sum_k w_k, sum_k w_k^2) of every output position, from resizing n one-hot images whose
    other spatial axis has length 1."""
    eye = np.eye(n, dtype="float32")
    spatial = [n, 1] if axis == 0 else [1, n]
    x = eye.reshape([n] + spatial + [1])
    if fmt == "channels_first":
        x = np.transpose(x, (0, 3, 1, 2))
    y = np.asarray(layer(tf.constant(x)), dtype=np.float64)
    if fmt == "channels_first":
        y = np.transpose(y, (0, 2, 3, 1))
    a = y[:, :, 0, 0] if axis == 0 else y[:, 0, :, 0]  # (input k, output o)
    return a.sum(axis=0), np.square(a).sum(axis=0)


@register(*_cls("UpSampling2D"))
def up_sampling_2d(layer, inputs, ctx):
    """Nearest: repeats elements (identity). Interpolating methods: ``y = sum_k w_k x_k``
    with weights read off the layer per axis (separable): ``E y = mu E[r]``,
    ``E y^2 = nu E[q] + mu^2 E[r^2]`` with ``r = sum w``, ``q = sum w^2`` per position."""
    m = inputs[0]
    if str(getattr(layer, "interpolation", "nearest")) == "nearest":
        return m
    shape = _shape(ctx)
    fmt = getattr(layer, "data_format", "channels_last")
    if shape is None:
        return m
    sizes = shape[2:4] if fmt == "channels_first" else shape[1:3]
    mean_r, mean_r2, mean_q = 1.0, 1.0, 1.0
    for axis, n in enumerate(sizes):
        if n is None:
            _warn(ctx, ("upsample", layer.name),
                  f"AutoInit: {layer.name!r} interpolates along an axis of unknown length; "
                  "treating that axis as a copy.")
            continue
        r, q = _resize_profile(layer, int(n), axis, fmt)
        mean_r *= float(r.mean())
        mean_r2 *= float(np.mean(r * r))
        mean_q *= float(q.mean())
    mean = m.mean * mean_r
    return Moments(mean, max(m.var * mean_q + m.mean ** 2 * mean_r2 - mean * mean, 0.0))


# ------------------------------------------------------------- elementwise affine layers
def _array(v):
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float64)


@register(*_cls("Rescaling"))
def rescaling(layer, inputs, ctx):
    """``y = scale*x + offset``; array-valued scale/offset give a mixture over their
    (broadcast) elements. Keras 3 reshapes an array scale to (C, 1, 1) under a global
    ``channels_first`` image format, and so does this rule."""
    scale, offset = _array(layer.scale), _array(layer.offset)
    if KERAS3 and scale.ndim > 0 and keras.backend.image_data_format() == "channels_first":
        scale = scale.reshape(scale.shape + (1,) * (3 - scale.ndim))
    return _affine(scale, offset, inputs[0])


@register(*_cls("Normalization"))
def normalization(layer, inputs, ctx):
    """The preprocessing layer: ``(x - mean)/max(sqrt(var), eps)`` with its adapted (or given)
    mean and variance per feature, or ``mean + x*max(sqrt(var), eps)`` with ``invert=True``:
    a mixture over features."""
    mean, variance = _array(layer.mean), _array(layer.variance)
    std = np.maximum(np.sqrt(variance), keras.backend.epsilon())
    if getattr(layer, "invert", False):
        return _affine(std, mean, inputs[0])
    return _affine(1.0 / std, -mean / std, inputs[0])


@register(*_cls("Softmax"))
def softmax(layer, inputs, ctx):
    """Monte Carlo on the layer over the real length of the softmax axis (other axes of
    length 1, as many rows as ``ctx.mc_samples`` allows). The mean is exactly 1/D and the
    result does not depend on the input mean (softmax is shift invariant)."""
    shape = _shape(ctx)
    if shape is None:
        return _monte_carlo(layer, inputs, ctx)
    axes = _axes(getattr(layer, "axis", -1), len(shape))
    if any(shape[a] is None for a in axes):
        _warn(ctx, ("softmax", layer.name),
              f"AutoInit: {layer.name!r} has a softmax axis of unknown length; sampling it "
              "with length 1.")
    probe = [None] + [shape[a] if a in axes else 1 for a in range(1, len(shape))]
    return _monte_carlo(layer, inputs, ctx, shapes=[tuple(probe)])
