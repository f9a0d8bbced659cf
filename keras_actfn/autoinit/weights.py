"""Drawing weights with a prescribed element variance.

Every distribution here yields zero-mean weights whose element variance is exactly the
requested ``variance`` (in expectation), so AutoInit's formulas hold whichever is chosen:

* ``truncated_normal`` (default): N(0, s^2) cut at +-2s, with s enlarged by 1/0.8796 so the
  truncation does not shrink the variance.
* ``normal`` (the published package's ``untruncated_normal``): N(0, variance).
* ``uniform``: U(-a, a) with a = sqrt(3 * variance).
* ``orthogonal``: the kernel reshaped to (fan_in, fan_out) gets orthonormal columns (or rows),
  scaled so the mean squared element equals ``variance``.
"""

from __future__ import annotations

import math

import numpy as np

DISTRIBUTIONS = ("truncated_normal", "normal", "uniform", "orthogonal")

# standard deviation of N(0, 1) truncated to [-2, 2]
_TRUNC_STD = math.sqrt(1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi)
                       / math.erf(2.0 / math.sqrt(2.0)))


def check_distribution(name: str) -> str:
    name = str(name).lower().replace("-", "_")
    aliases = {"truncnorm": "truncated_normal", "gaussian": "normal",
               "untruncated_normal": "normal"}
    name = aliases.get(name, name)
    if name not in DISTRIBUTIONS:
        raise ValueError("distribution must be one of truncated_normal, untruncated_normal "
                         f"(= normal), uniform, orthogonal; got {name!r}")
    return name


def sample(shape, variance: float, distribution: str, rng: np.random.Generator,
           fan_in: int | None = None) -> np.ndarray:
    """Zero-mean float32 weights of ``shape`` with element variance ``variance``."""
    shape = tuple(int(d) for d in shape)
    if not (variance >= 0 and math.isfinite(variance)):
        raise FloatingPointError(f"cannot draw weights with variance {variance}")
    std = math.sqrt(variance)
    if distribution == "normal":
        out = rng.standard_normal(shape)
    elif distribution == "truncated_normal":
        out = rng.standard_normal(shape)
        bad = np.abs(out) > 2.0
        while bad.any():  # redraw the ~4.6% outside [-2, 2]
            out[bad] = rng.standard_normal(int(bad.sum()))
            bad = np.abs(out) > 2.0
        out /= _TRUNC_STD
    elif distribution == "uniform":
        out = rng.uniform(-math.sqrt(3.0), math.sqrt(3.0), shape)
    elif distribution == "orthogonal":
        out = _orthogonal(shape, rng, fan_in)
    else:
        raise ValueError(f"unknown distribution {distribution!r}")
    return (out * std).astype(np.float32)


def _orthogonal(shape, rng, fan_in):
    size = int(np.prod(shape)) if shape else 1
    rows = fan_in if fan_in else (int(np.prod(shape[:-1])) if len(shape) > 1 else 1)
    cols = max(size // max(rows, 1), 1)
    big, small = max(rows, cols), min(rows, cols)
    q, r = np.linalg.qr(rng.standard_normal((big, small)))
    q *= np.sign(np.diag(r))  # a uniform (Haar) draw, not QR's sign convention
    mat = q if rows >= cols else q.T
    # elements of an orthonormal big x small matrix have mean square 1/big
    return (mat * math.sqrt(big)).reshape(shape)
