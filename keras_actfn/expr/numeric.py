"""Numbers about activation functions: output fingerprints and Gaussian moments.

* :func:`fingerprint` — the function's outputs at 1,000 fixed N(0, 1) samples clipped to
  [-5, 5] (the output feature of AQuaSurF, A.4.1); :func:`fingerprint_key` turns it into a
  hashable key so numerically equivalent functions (``x*sigmoid(x)`` and ``swish(x)``)
  de-duplicate.
* :func:`gaussian_moments` — E f(X) and E f(X)^2 for X ~ N(mu, sigma^2) by adaptive
  quadrature, cached (AutoInit and AutoInit++ centering need them).
"""

from __future__ import annotations

import functools
import hashlib
import math
import warnings

import numpy as np
from scipy import integrate

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


def gaussian_moments(fn, mean: float = 0.0, var: float = 1.0, params=None):
    """``(E f(X), E f(X)^2)`` for ``X ~ N(mean, var)``, by adaptive quadrature.

    ``params`` maps parameter names to scalars (default 1). Results are cached per
    (function, mean, var, params). Where the integral does not converge (a pole such as
    ``1/x``, an overflow) the mean is ``nan`` and the second moment ``inf``.
    """
    expr = parse(fn)
    frozen = tuple(sorted((k, float(v)) for k, v in (params or {}).items()))
    return _moments(expr, float(mean), float(var), frozen)


_Z_LIMIT = 12.0  # the normal mass beyond 12 sigma is below 1e-32


@functools.lru_cache(maxsize=65536)
def _moments(expr: Expr, mean: float, var: float, params: tuple):
    if not (math.isfinite(mean) and math.isfinite(var)) or var < 0:
        raise ValueError(f"need a finite mean and a finite variance >= 0, got {mean}, {var}")
    values = dict(params)
    if var == 0:
        y = float(evaluate(expr, np.array([mean]), values)[0])
        return y, y * y
    std = math.sqrt(var)

    def f(z):
        return float(evaluate(expr, np.array([mean + std * z]), values)[0])

    def density(z):
        return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    # break the interval where kinks are likely: x = 0 and the hinges of hard_sigmoid
    breaks = sorted({(b - mean) / std for b in (0.0, -2.5, 2.5)
                     if abs((b - mean) / std) < _Z_LIMIT})
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        for power in (1, 2):
            out = integrate.quad(lambda z: (f(z) if power == 1 else f(z) * f(z)) * density(z),
                                 -_Z_LIMIT, _Z_LIMIT, points=breaks or None, limit=400,
                                 epsabs=1e-11, epsrel=1e-9, full_output=1)
            # a fourth item means quad did not converge: a pole (1/x) or a divergent tail.
            # E f^2 of such a function is unbounded; its mean is not to be trusted either.
            converged = len(out) == 3 and math.isfinite(out[0])
            results.append(out[0] if converged else (math.nan if power == 1 else math.inf))
    return results[0], results[1]
