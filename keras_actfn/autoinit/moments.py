"""Signal moments and the fast Gaussian expectations AutoInit propagates.

``Moments(mean, var)`` describes the distribution of one tensor's elements. Activation
moments use :func:`gaussian_expect`, a vectorized composite Simpson rule on a fixed grid of
standard-normal quantiles: one batched call of the function per (function, mean, var),
exact to ~1e-7 for kinked functions (relu, hard_sigmoid) and ~1e-4 for cusps like
sqrt|x|, and ~100x faster than calling
adaptive quadrature point by point (which :func:`keras_actfn.expr.gaussian_moments` does
for the user-facing API).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import numpy as np


class Moments(NamedTuple):
    mean: float
    var: float

    @property
    def second(self) -> float:
        """E x^2 = var + mean^2."""
        return self.var + self.mean * self.mean

    def check(self, where: str = "") -> "Moments":
        if not (math.isfinite(self.mean) and math.isfinite(self.var)) or self.var < 0:
            raise FloatingPointError(f"non-finite or negative moments {tuple(self)} {where}")
        return self


class SourcedMoments(Moments):
    """Aggregate moments of ``fn(X)``, ``X`` Gaussian, that remember ``source = (fn, pre)``.

    Two moments do not fix a distribution: the maximum of K rectified Gaussians is not the
    maximum of K Gaussians with the same mean and variance. Elementwise activations attach
    their function and Gaussian input moments so max pooling can use the real law.
    """

    source = None


def with_source(moments: Moments, fn, pre: Moments) -> Moments:
    """``moments`` remembering that they are those of ``fn(X)``, ``X ~ pre`` (Gaussian).

    When ``pre`` itself is ``g(Z)`` with ``Z`` Gaussian, the law is ``fn(g(Z))``."""
    inner = getattr(pre, "source", None)
    if inner is not None:
        g, pre = inner
        outer = fn

        def fn(x, rows=None):
            return outer(np.asarray(g(x), dtype=np.float32))
    if isinstance(moments, ChannelMoments):
        moments.source = (fn, pre)
        return moments
    out = SourcedMoments(float(moments.mean), float(moments.var))
    out.source = (fn, pre)
    return out


class ChannelMoments(Moments):
    """Moments that also know each channel's (mean, variance) along the last axis.

    As a tuple it is the aggregate ``(mean, var)`` over all elements (the mixture over
    channels: mean of the means; mean of the variances plus the variance of the means), so
    every estimator that only reads ``.mean``/``.var`` sees the same numbers as before.
    Channel-aware estimators (weighted layers, elementwise activations, Add/Subtract/Average,
    global average pooling) read ``.means``/``.variances`` instead: a weight draw gives each
    channel its own offset, and a ReLU after an Add turns those offsets into different
    output moments per channel, which the aggregate alone cannot follow.

    Feature maps may also carry ``mean_map`` (the mean at every position and channel,
    batch axis dropped) with ``local_variances`` (each channel's variance at a position);
    ``.variances`` then include the spread of the map over positions, so rules that know
    nothing of maps still see the right per-channel totals. Zero padding makes border
    means lower, and in deep stacks of 'same' convolutions on small maps those
    position-dependent means grow into most of the signal.
    """

    mean_map = None
    source = None  # see SourcedMoments
    covariance = None  # of the channels, when a Monte Carlo sample gave them
    sample = None  # that sample (batch axis first)

    @classmethod
    def from_map(cls, mean_map, local_variances) -> "ChannelMoments":
        mean_map = np.asarray(mean_map, dtype=np.float64)
        flat = mean_map.reshape(-1, mean_map.shape[-1])
        local = np.maximum(np.asarray(local_variances, dtype=np.float64).reshape(-1), 0.0)
        self = cls(flat.mean(axis=0), local + flat.var(axis=0))
        self.mean_map, self.local_variances = mean_map, local
        return self

    def __new__(cls, means, variances):
        means = np.asarray(means, dtype=np.float64).reshape(-1)
        variances = np.maximum(np.asarray(variances, dtype=np.float64).reshape(-1), 0.0)
        if means.shape != variances.shape or means.size == 0:
            raise ValueError(f"per-channel means {means.shape} and variances "
                             f"{variances.shape} must be equal, non-empty vectors")
        self = super().__new__(cls, float(means.mean()),
                               float(variances.mean() + means.var()))
        self.means, self.variances = means, variances
        self.local_variances = variances
        return self

    def scaled(self, factor: float) -> "ChannelMoments":
        """Moments of ``factor * x``."""
        if self.mean_map is not None:
            return ChannelMoments.from_map(self.mean_map * factor,
                                           self.local_variances * factor * factor)
        return ChannelMoments(self.means * factor, self.variances * factor * factor)

    def aggregate(self) -> Moments:
        """The plain aggregate ``Moments`` (channels forgotten)."""
        return Moments(self.mean, self.var)

    @property
    def channels(self) -> int:
        return self.means.size

    def check(self, where: str = "") -> "ChannelMoments":
        super().check(where)
        if not (np.all(np.isfinite(self.means)) and np.all(np.isfinite(self.variances))):
            raise FloatingPointError(f"non-finite per-channel moments {where}")
        return self


def channel_arrays(moments: Moments, channels: int):
    """``(means, variances)`` of ``channels`` channels: the tracked ones when ``moments``
    has them for that many channels, else the aggregate repeated."""
    if isinstance(moments, ChannelMoments) and moments.channels == channels:
        return moments.means, moments.variances
    return (np.full(channels, float(moments.mean)),
            np.full(channels, max(float(moments.var), 0.0)))


_Z_LIMIT = 12.0
_GRID_POINTS = 12001  # odd: Simpson's rule


@functools.lru_cache(maxsize=1)
def quadrature_grid():
    """Simpson nodes z on [-12, 12] and weights already multiplied by the normal density."""
    return _simpson_normal(_Z_LIMIT, _GRID_POINTS)


def _simpson_normal(limit: float, points: int):
    z = np.linspace(-limit, limit, points)
    h = z[1] - z[0]
    w = np.ones_like(z)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    w *= h / 3.0 * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return z, w


def gaussian_expect(fn: Callable[[np.ndarray], np.ndarray], mean: float, var: float) -> Moments:
    """Moments of ``fn(X)`` for ``X ~ N(mean, var)``; ``fn`` is elementwise and vectorized."""
    if var <= 0:
        y = float(np.asarray(fn(np.array([float(mean)])), dtype=np.float64).reshape(-1)[0])
        return Moments(y, 0.0)
    z, w = quadrature_grid()
    with np.errstate(all="ignore"):
        y = np.asarray(fn(mean + math.sqrt(var) * z), dtype=np.float64)
        m1 = float(np.dot(w, y))
        m2 = float(np.dot(w, y * y))
    return Moments(m1, max(m2 - m1 * m1, 0.0) if math.isfinite(m2) else math.inf)


_CHANNEL_GRID_POINTS = 201  # per-channel expectations: ~2e-4 relative at a kink, 60x cheaper


@functools.lru_cache(maxsize=1)
def _channel_grid():
    return _simpson_normal(8.0, _CHANNEL_GRID_POINTS)


def gaussian_expect_channels(fn: Callable[[np.ndarray], np.ndarray], means, variances,
                             extra=None) -> ChannelMoments:
    """Per-channel moments of ``fn(X_c)``, ``X_c ~ N(means[c], variances[c])``.

    ``fn`` receives a (channels, grid) array (and ``extra``, if given, is passed through as
    its second argument, e.g. per-channel parameters shaped (channels, 1)); one batched call.
    """
    z, w = _channel_grid()
    means = np.asarray(means, dtype=np.float64)
    sds = np.sqrt(np.maximum(np.asarray(variances, dtype=np.float64), 0.0))
    # float32 grid: the Keras functions compute in float32 anyway, and sums of 801 terms
    # keep ~1e-6 relative accuracy; half the memory traffic of float64
    x = (means[:, None] + sds[:, None] * z[None, :]).astype(np.float32)
    with np.errstate(all="ignore"):
        y = np.asarray(fn(x) if extra is None else fn(x, extra))
        if y.dtype not in (np.float32, np.float64):
            y = y.astype(np.float64)
        y = np.broadcast_to(y, x.shape)
        wy = w.astype(y.dtype)
        m1 = (y @ wy).astype(np.float64)
        m2 = ((y * y) @ wy).astype(np.float64)
        var = np.where(np.isfinite(m2), np.maximum(m2 - m1 * m1, 0.0), np.inf)
    return ChannelMoments(m1, var)


@functools.lru_cache(maxsize=64)
def max_of_normals(k: int) -> tuple:
    """(E, E^2) of the maximum of ``k`` i.i.d. N(0, 1) variables, by 1-D quadrature.

    The density of the maximum is k * phi(z) * Phi(z)^(k-1): exact moments for max pooling
    of any window size, no Monte Carlo needed.
    """
    from scipy.special import log_ndtr

    z, w = quadrature_grid()
    with np.errstate(all="ignore"):
        # w already carries phi(z); multiply by k * Phi(z)^(k-1) computed in log space
        factor = k * np.exp((k - 1) * log_ndtr(z))
    e1 = float(np.dot(w * factor, z))
    e2 = float(np.dot(w * factor, z * z))
    return e1, e2


_LAW_GRID_POINTS = 2001
_LAW_MAX_CHANNELS = 512  # wider: one Gaussian with the aggregate moments


@functools.lru_cache(maxsize=1)
def _law_grid():
    z, w = _simpson_normal(8.0, _LAW_GRID_POINTS)
    return z, w / w.sum()


def max_of_transformed(fn, pre: Moments, window_sizes: dict) -> Moments:
    """Moments of ``max(fn(X_1), ..., fn(X_K))`` for i.i.d. ``X_i ~ pre`` (Gaussian), mixed
    over window sizes ``{K: fraction}``.

    The law of ``fn(X)`` is discretized on a quadrature grid (values sorted, cumulative
    probabilities F); the maximum of K draws puts mass ``F_i^K - F_(i-1)^K`` on the i-th
    value. Exact up to the grid for any elementwise ``fn``, monotone or not. Per-channel
    ``pre`` (:class:`ChannelMoments`) gives per-channel output moments.
    """
    z, w = _law_grid()
    per_channel = isinstance(pre, ChannelMoments) and pre.channels <= _LAW_MAX_CHANNELS
    if per_channel:
        means, variances = pre.means, pre.variances
    else:
        means, variances = np.array([float(pre.mean)]), np.array([max(float(pre.var), 0.0)])
    x = means[:, None] + np.sqrt(np.maximum(variances, 0.0))[:, None] * z[None, :]
    with np.errstate(all="ignore"):
        y = np.asarray(fn(x.astype(np.float32)), dtype=np.float64)
    y = np.broadcast_to(y, x.shape)
    order = np.argsort(y, axis=1)
    ys = np.take_along_axis(y, order, axis=1)
    cdf = np.clip(np.cumsum(w[order], axis=1), 0.0, 1.0)
    total = sum(window_sizes.values())
    m1 = np.zeros(len(means))
    m2 = np.zeros(len(means))
    for k, p in window_sizes.items():
        top = cdf ** int(k)
        mass = np.diff(np.concatenate([np.zeros((len(means), 1)), top], axis=1), axis=1)
        m1 += p / total * (mass * ys).sum(axis=1)
        m2 += p / total * (mass * ys * ys).sum(axis=1)
    if per_channel:
        return ChannelMoments(m1, np.maximum(m2 - m1 * m1, 0.0))
    return Moments(float(m1[0]), max(float(m2[0] - m1[0] ** 2), 0.0))


_MAX_COVARIANCE_UNITS = 1024
_MAX_SAMPLE_ELEMENTS = 2_000_000


def moments_of_sample(y: np.ndarray) -> Moments:
    """Per-unit (last axis) moments of a Monte Carlo sample ``y`` (batch axis first).

    Attached: ``covariance`` of the units (a Dense layer drawn on correlated inputs fits
    ``w' S w``, not ``sum w^2 var``) and the ``sample`` itself, so shape layers (Flatten,
    Reshape...) downstream can be run on it and keep both.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim < 2 or y.shape[-1] < 2:
        return Moments(float(y.mean()), float(y.var()))
    flat = y.reshape(-1, y.shape[-1])
    out = ChannelMoments(flat.mean(axis=0), flat.var(axis=0))
    if flat.shape[-1] <= _MAX_COVARIANCE_UNITS and flat.shape[0] > flat.shape[-1]:
        out.covariance = np.cov(flat, rowvar=False, bias=True)
    if y.size <= _MAX_SAMPLE_ELEMENTS:
        out.sample = y
    return out
