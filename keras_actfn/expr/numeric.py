"""Numbers about activation functions: output fingerprints and Gaussian moments.

* :func:`fingerprint` — the function's outputs at 1,000 fixed N(0, 1) samples clipped to
  [-5, 5] (the output feature of AQuaSurF, A.4.1); :func:`fingerprint_key` turns it into a
  hashable key so numerically equivalent functions (``x*sigmoid(x)`` and ``swish(x)``)
  de-duplicate.
* :func:`gaussian_moments` — E f(X) and E f(X)^2 for X ~ N(mu, sigma^2) by adaptive
  Gauss-Kronrod quadrature, vectorized (every round evaluates the function once, on all
  the points of all the intervals it refines) and bounded by a work budget, cached
  (``CustomActivation(center=True)``, AutoInit++ centering and ``keras-actfn show`` need
  them).
"""

from __future__ import annotations

import functools
import hashlib
import math

import numpy as np
from numpy.polynomial import legendre

from ..errors import UserError
from .graph import Expr, evaluate
from .parse import parse

FINGERPRINT_SIZE = 1000
FINGERPRINT_SEED = 0
FINGERPRINT_CLIP = 5.0


@functools.lru_cache(maxsize=1)
def fingerprint_inputs() -> np.ndarray:
    """The fixed sample points: 1,000 N(0, 1) draws (seed 0) clipped to [-5, 5]."""
    rng = np.random.default_rng(FINGERPRINT_SEED)
    samples = rng.standard_normal(FINGERPRINT_SIZE)
    samples = np.clip(samples, -FINGERPRINT_CLIP, FINGERPRINT_CLIP)
    samples.setflags(write=False)
    return samples


def fingerprint(fn, params=None) -> np.ndarray:
    """Outputs of ``fn`` (text or Expr) at :func:`fingerprint_inputs`, float64.

    Parameters take the value 1 unless given, as they are at initialization.
    """
    return evaluate(parse(fn), fingerprint_inputs(), params)


def fingerprint_key(fn, decimals: int = 5, params=None) -> str:
    """A hex digest equal for functions whose fingerprints agree to ``decimals`` places.

    NaN and +-inf are kept as themselves, so functions that overflow in the same places
    still match.
    """
    y = fingerprint(fn, params)
    with np.errstate(all="ignore"):
        rounded = np.round(y, decimals) + 0.0  # + 0.0 folds -0.0 into 0.0
    rounded = np.where(np.isnan(rounded), np.nan, rounded)  # one NaN bit pattern
    return hashlib.sha1(rounded.astype("<f8").tobytes()).hexdigest()


class MomentsBudgetError(UserError, ValueError):
    """Computing a function's Gaussian moments would take more work than
    :data:`MOMENTS_WORK_BUDGET` allows (a function far larger or more oscillatory than an
    activation function needs to be). A user error: the command line prints it as one
    line with exit status 2."""


#: the most work :func:`gaussian_moments` may do for one (function, mean, variance):
#: node evaluations, i.e. the tree's size times the points it is evaluated at (plus a fixed
#: charge per batch for NumPy's per-call overhead). 2e7 is about 0.2-0.5 s of NumPy; the
#: activation functions of the searches need a few thousand to a few hundred thousand.
MOMENTS_WORK_BUDGET = 20_000_000
_BATCH_CHARGE = 256
#: the most intervals the adaptive rule splits [-12, 12] (in z) into; a function whose
#: moments do not converge by then (a pole such as 1/x) gets (nan, inf)
_MAX_INTERVALS = 2000
_EPSABS, _EPSREL = 1e-11, 1e-9
_MIN_WIDTH = 1e-9
_Z_LIMIT = 12.0  # the normal mass beyond 12 sigma is below 1e-32


@functools.lru_cache(maxsize=1)
def kronrod_rule(n: int = 10):
    """The (2n+1)-point Gauss-Kronrod rule on [-1, 1], computed (not tabulated).

    Returns ``(nodes, kronrod_weights, gauss_weights)``: ``gauss_weights`` is zero except at
    the ``n`` Gauss-Legendre nodes, so ``f @ kronrod_weights - f @ gauss_weights`` is the
    usual error estimate. The ``n + 1`` added nodes are the zeros of the Stieltjes
    polynomial ``E`` of degree ``n + 1``, fixed by ``int E P_n P_k = 0`` for ``k <= n``;
    the Kronrod weights make the rule exact for degree ``2n``, and the node choice makes it
    exact up to degree ``3n + 1``.
    """
    gauss_x, gauss_w = legendre.leggauss(n)
    qx, qw = legendre.leggauss(2 * n + 8)  # exact for the degree-(3n+1) products below
    basis = legendre.legvander(qx, n + 1)
    weighted = qw * basis[:, n]
    lhs = np.array([[np.sum(weighted * basis[:, j] * basis[:, k]) for j in range(n + 1)]
                    for k in range(n + 1)])
    rhs = -np.array([np.sum(weighted * basis[:, n + 1] * basis[:, k]) for k in range(n + 1)])
    coefficients, *_ = np.linalg.lstsq(lhs, rhs, rcond=None)
    extra = np.sort(legendre.legroots(np.append(coefficients, 1.0)).real)
    nodes = np.sort(np.concatenate([gauss_x, extra]))
    moments = np.zeros(2 * n + 1)
    moments[0] = 2.0
    kronrod_w = np.linalg.solve(legendre.legvander(nodes, 2 * n).T, moments)
    gauss_full = np.zeros_like(nodes)
    for x, w in zip(gauss_x, gauss_w):
        gauss_full[np.argmin(np.abs(nodes - x))] = w
    for array in (nodes, kronrod_w, gauss_full):
        array.setflags(write=False)
    return nodes, kronrod_w, gauss_full


def gaussian_moments(fn, mean: float = 0.0, var: float = 1.0, params=None):
    """``(E f(X), E f(X)^2)`` for ``X ~ N(mean, var)``, by adaptive quadrature.

    ``params`` maps parameter names to scalars (default 1). Results are cached per
    (function, mean, var, params). Where the integral does not converge (a pole such as
    ``1/x``, an overflow) the mean is ``nan`` and the second moment ``inf``.

    Raises :class:`MomentsBudgetError` (a ``ValueError``) when the function would need more
    than :data:`MOMENTS_WORK_BUDGET` node evaluations (e.g. a sum of hundreds of fast
    oscillations); every activation function of the searches takes a few milliseconds.
    """
    expr = parse(fn)
    frozen = tuple(sorted((k, float(v)) for k, v in (params or {}).items()))
    return _moments(expr, float(mean), float(var), frozen)


@functools.lru_cache(maxsize=65536)
def _moments(expr: Expr, mean: float, var: float, params: tuple):
    if not (math.isfinite(mean) and math.isfinite(var)) or var < 0:
        raise ValueError(f"need a finite mean and a finite variance >= 0, got {mean}, {var}")
    values = dict(params)
    if var == 0:
        y = float(evaluate(expr, np.array([mean]), values)[0])
        return y, y * y
    std = math.sqrt(var)
    nodes, kronrod_w, gauss_w = kronrod_rule()
    cost = expr.size
    work = 0

    def integrate(lo, hi):
        """Kronrod estimates and error bounds of both integrands on [lo_i, hi_i]."""
        nonlocal work
        work += cost * (lo.size * nodes.size + _BATCH_CHARGE)
        if work > MOMENTS_WORK_BUDGET:
            text = str(expr)
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise MomentsBudgetError(
                f"the Gaussian moments of {shown} need more than {MOMENTS_WORK_BUDGET:,} "
                f"node evaluations ({cost} nodes, still not converged on "
                f"{lo.size} intervals); use a smaller or less oscillatory function")
        half = 0.5 * (hi - lo)
        z = (0.5 * (hi + lo))[:, None] + half[:, None] * nodes
        y = evaluate(expr, mean + std * z.ravel(), values).reshape(z.shape)
        density = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        with np.errstate(all="ignore"):
            integrands = np.stack([y * density, y * y * density])  # (2, intervals, nodes)
            kronrod = half * (integrands @ kronrod_w)
            gauss = half * (integrands @ gauss_w)
            return kronrod, np.abs(kronrod - gauss), np.isfinite(integrands).all(axis=2)

    # start from panels that break where kinks are likely: x = 0 and hard_sigmoid's hinges
    breaks = sorted({(b - mean) / std for b in (0.0, -2.5, 2.5)
                     if abs((b - mean) / std) < _Z_LIMIT})
    edges = np.array([-_Z_LIMIT, *breaks, _Z_LIMIT])
    lo, hi = edges[:-1], edges[1:]
    estimate, error, finite = integrate(lo, hi)
    diverged = ~finite.all(axis=1)  # per moment: a NaN or an overflow somewhere
    while True:
        total = estimate.sum(axis=1)
        tolerance = _tolerance(total)
        open_ = ~diverged & (error.sum(axis=1) > tolerance)
        if not open_.any() or lo.size >= _MAX_INTERVALS:
            break
        # split every interval holding more than its share of an open moment's tolerance
        # an interval narrower than _MIN_WIDTH is not split further: a singularity sits
        # there, and a moment whose error such intervals alone exceed cannot converge
        splittable = hi - lo > _MIN_WIDTH
        diverged |= open_ & (error[:, ~splittable].sum(axis=1) > tolerance)
        open_ &= ~diverged
        weight = np.where(open_[:, None] & splittable, error / tolerance[:, None], 0.0)
        if not weight.any():
            break
        split = (weight * lo.size > 1.0).any(axis=0)
        split[np.argmax(weight.max(axis=0))] = True
        room = _MAX_INTERVALS - lo.size
        picked = np.flatnonzero(split)
        if picked.size > room:  # keep the worst intervals within the interval limit
            worst = np.argsort(-weight[:, picked].max(axis=0))
            picked = np.sort(picked[worst[:max(room, 1)]])
        mid = 0.5 * (lo[picked] + hi[picked])
        new_lo = np.concatenate([lo[picked], mid])
        new_hi = np.concatenate([mid, hi[picked]])
        new_estimate, new_error, new_finite = integrate(new_lo, new_hi)
        diverged |= ~new_finite.all(axis=1)
        keep = np.ones(lo.size, dtype=bool)
        keep[picked] = False
        lo = np.concatenate([lo[keep], new_lo])
        hi = np.concatenate([hi[keep], new_hi])
        estimate = np.concatenate([estimate[:, keep], new_estimate], axis=1)
        error = np.concatenate([error[:, keep], new_error], axis=1)
    total = estimate.sum(axis=1)
    converged = ~diverged & (error.sum(axis=1) <= _tolerance(total))
    first = float(total[0]) if converged[0] else math.nan
    second = float(total[1]) if converged[1] else math.inf
    return first, second


def _tolerance(total):
    """Error allowed for (E f, E f^2): relative to E f^2 for the second moment and to the
    larger of |E f| and the RMS sqrt(E f^2) for the mean (a mean near 0, as of an odd
    function, is then accurate relative to the function's scale, like the second moment)."""
    with np.errstate(all="ignore"):
        rms = math.sqrt(abs(total[1])) if math.isfinite(total[1]) else 0.0
    scale = np.array([max(abs(total[0]), rms), abs(total[1])])
    return np.maximum(_EPSABS, _EPSREL * np.nan_to_num(scale, nan=0.0, posinf=0.0))
