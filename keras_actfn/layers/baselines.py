"""Learnable baseline activation functions (dissertation section 4.7) as Keras layers.

Every layer here works under Keras 3 and under the legacy ``tf_keras`` (whichever
:mod:`keras_actfn.backend` resolved), computes with TensorFlow ops, and is registered with
``@serializable`` so a saved model reloads without ``custom_objects``.

=========  ==========================================================  =================
layer      function                                                    default sharing
=========  ==========================================================  =================
PReLU      ``x if x >= 0 else a*x``, ``a`` starts at 0.25              per-neuron
PSwish     ``x * sigmoid(beta*x)``, ``beta`` starts at 1               per-channel
APL        ``max(0,x) + sum_s a_s*max(0, -x + b_s)``, S = 7 hinges     per-neuron
PAU        ``P(x) / (1 + |Q(x)|)``, degrees (5, 4), starts as Leaky    per-layer
           ReLU (slope 0.01)
SPLASH     ``sum_s a+_s*max(0, x - b_s) + a-_s*max(0, -x - b_s)``,     per-layer
           fixed hinges b = (0, 1, 2, 2.5), starts as ReLU
=========  ==========================================================  =================

Parameter sharing (``param_shape``), see :func:`parameter_shape`:

* ``"per-layer"``: one value for the whole layer, a weight of shape ``()``; a parameter with
  ``k`` coefficients (APL's hinges, PAU's polynomial coefficients, SPLASH's slopes) has
  shape ``(k,)``.
* ``"per-channel"``: one value per entry of the last (channel) axis, shape ``(C,)``, or
  ``(C, k)`` for ``k`` coefficients.
* ``"per-neuron"``: one value per entry of every non-batch axis, shape ``input_shape[1:]``,
  or ``input_shape[1:] + (k,)``.

Coefficients always sit on the LAST axis of a weight, so ``w[..., s]`` broadcasts against
the input.
"""

from __future__ import annotations

import functools
from statistics import NormalDist

import numpy as np

from keras_actfn.backend import keras, serializable, tf

from .sharing import PARAM_SHAPES, normalize_param_shape, parameter_shape  # noqa: F401
from .validate import check_int, check_number, check_numbers, from_config

#: the most hinges APL and SPLASH take, and the highest PAU degrees: each hinge or degree
#: adds operations to the layer's graph, and PAU fits its starting coefficients when it is
#: built (a bounded fit: under a second for any pair of degrees up to 10), so a config from
#: a file cannot make loading a model take minutes.
MAX_HINGES = 64
PAU_MAX_DEGREE = 10


class _BroadcastInitializer:
    """Initializer filling a weight with ``values`` along its last axis (or a scalar).

    Deterministic: the same values every time. Only used while building; weights are saved by
    value, so it never needs to be serialized.
    """

    def __init__(self, values):
        self.values = np.asarray(values, dtype=np.float64)

    def __call__(self, shape, dtype=None, **kwargs):
        dtype = tf.as_dtype(dtype or "float32")
        full = np.broadcast_to(self.values, tuple(shape)).astype(dtype.as_numpy_dtype)
        return tf.constant(full, dtype=dtype)


def _param(layer, name, param_shape, input_shape, values, coefficients=None):
    shape = parameter_shape(param_shape, input_shape, coefficients)
    return layer.add_weight(name=name, shape=shape, initializer=_BroadcastInitializer(values),
                            trainable=True)


def _as_input_dtype(weight, x):
    return tf.cast(weight, x.dtype)


class _Baseline(keras.layers.Layer):
    """Shared plumbing: param_shape validation, shape-preserving output, config."""

    default_param_shape = "per-layer"

    def __init__(self, param_shape=None, **kwargs):
        super().__init__(**kwargs)
        self.param_shape = normalize_param_shape(
            self.default_param_shape if param_shape is None else param_shape)

    def _check_number(self, value, field):
        return check_number(value, field, type(self).__name__)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["param_shape"] = self.param_shape
        return config

    @classmethod
    def from_config(cls, config):
        return from_config(super().from_config, config)


# --------------------------------------------------------------------------------------
# PReLU and PSwish
# --------------------------------------------------------------------------------------


@serializable
class PReLU(_Baseline):
    """Parametric ReLU: ``x`` if ``x >= 0`` else ``alpha * x`` (He et al. 2015).

    ``alpha`` is learnable, per neuron by default, initialized to ``alpha_init`` (0.25).
    """

    default_param_shape = "per-neuron"

    def __init__(self, param_shape="per-neuron", alpha_init=0.25, **kwargs):
        super().__init__(param_shape=param_shape, **kwargs)
        self.alpha_init = self._check_number(alpha_init, "alpha_init")

    def build(self, input_shape):
        self.alpha = _param(self, "alpha", self.param_shape, input_shape, self.alpha_init)
        super().build(input_shape)

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        alpha = _as_input_dtype(self.alpha, x)
        return tf.where(x >= 0, x, alpha * x)

    def get_config(self):
        config = super().get_config()
        config["alpha_init"] = self.alpha_init
        return config


@serializable
class PSwish(_Baseline):
    """Parametric Swish: ``x * sigmoid(beta * x)`` (Ramachandran et al. 2017).

    ``beta`` is learnable, per channel by default, initialized to ``beta_init`` (1, i.e.
    Swish/SiLU).
    """

    default_param_shape = "per-channel"

    def __init__(self, param_shape="per-channel", beta_init=1.0, **kwargs):
        super().__init__(param_shape=param_shape, **kwargs)
        self.beta_init = self._check_number(beta_init, "beta_init")

    def build(self, input_shape):
        self.beta = _param(self, "beta", self.param_shape, input_shape, self.beta_init)
        super().build(input_shape)

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        beta = _as_input_dtype(self.beta, x)
        return x * tf.sigmoid(beta * x)

    def get_config(self):
        config = super().get_config()
        config["beta_init"] = self.beta_init
        return config


# --------------------------------------------------------------------------------------
# APL
# --------------------------------------------------------------------------------------


def apl_initial_hinges(hinges: int) -> np.ndarray:
    """Initial APL hinge locations ``b_s``: the ``s/(S+1)`` quantiles of N(0, 1).

    Section 4.7 does not say how APL is initialized, so this is our choice. The ``S`` hinges
    split the real line into ``S + 1`` intervals of equal probability under a standard normal,
    the distribution a well-initialized network's pre-activations roughly follow, so every
    hinge starts where inputs actually fall (for S = 7: 0, +-0.32, +-0.67, +-1.15).
    Symmetric about 0 and deterministic.
    """
    normal = NormalDist()
    return np.array([normal.inv_cdf(s / (hinges + 1)) for s in range(1, hinges + 1)])


@serializable
class APL(_Baseline):
    """Adaptive piecewise linear unit (Agostinelli et al. 2015).

    ``f(x) = max(0, x) + sum_{s=1..S} a_s * max(0, -x + b_s)`` with ``S = hinges``; ``a``
    and ``b`` are learnable (per neuron by default), weights of shape
    ``parameter_shape(param_shape, input_shape, S)``.

    Initialization (ours; section 4.7 gives none): ``a_s = 0``, so the unit starts as
    exactly ReLU and training begins from the standard baseline, and ``b_s`` at the equally
    spaced quantiles of N(0, 1) (:func:`apl_initial_hinges`), so the hinges cover the range
    of typical pre-activations. The gradient with respect to ``a_s`` at the start,
    ``max(0, b_s - x)``, is then non-zero for a fixed fraction of inputs at every hinge.
    """

    default_param_shape = "per-neuron"

    def __init__(self, hinges=7, param_shape="per-neuron", **kwargs):
        super().__init__(param_shape=param_shape, **kwargs)
        self.hinges = check_int(hinges, "hinges", "APL", 1, MAX_HINGES)

    def build(self, input_shape):
        s = self.hinges
        self.a = _param(self, "a", self.param_shape, input_shape, np.zeros(s), s)
        self.b = _param(self, "b", self.param_shape, input_shape, apl_initial_hinges(s), s)
        super().build(input_shape)

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        a = _as_input_dtype(self.a, x)
        b = _as_input_dtype(self.b, x)
        out = tf.nn.relu(x)
        for s in range(self.hinges):
            out = out + a[..., s] * tf.nn.relu(b[..., s] - x)
        return out

    def get_config(self):
        config = super().get_config()
        config["hinges"] = self.hinges
        return config


# --------------------------------------------------------------------------------------
# PAU
# --------------------------------------------------------------------------------------

PAU_FIT_INTERVAL = (-3.0, 3.0)
PAU_FIT_POINTS = 6001
PAU_LEAKY_SLOPE = 0.01

# Output of scripts/fit_pau.py (fit_pau_coefficients(5, 4)), rounded to 12 significant
# digits: least squares on 6001 equally spaced points of [-3, 3]; max |error| against
# Leaky ReLU (slope 0.01) on that grid is 0.03356, reached at x = 0.
PAU_INIT_NUMERATOR = (
    3.35634368368e-02, 5.04999998903e-01, 1.65317607454e+00,
    2.00936705588e+00, 9.31452425982e-01, 1.52325739086e-01,
)
PAU_INIT_DENOMINATOR = (
    -1.74894078190e-08, 3.97894469688e+00, -1.98822253401e-08,
    3.01635130594e-01,
)
# Tolerance a fit (or the constants above) must meet: max |PAU(x) - leaky_relu(x)| on the
# fit interval.
PAU_FIT_TOLERANCE = 0.035


def pau_numpy(x, numerator, denominator):
    """``P(x) / (1 + |Q(x)|)`` in NumPy; ``numerator`` = a_0..a_m, ``denominator`` = b_1..b_n."""
    x = np.asarray(x, dtype=np.float64)
    p = np.polynomial.polynomial.polyval(x, np.asarray(numerator, dtype=np.float64))
    q = np.polynomial.polynomial.polyval(x, np.r_[0.0, np.asarray(denominator, np.float64)])
    return p / (1.0 + np.abs(q))


def _leaky_relu(x, slope=PAU_LEAKY_SLOPE):
    return np.where(x >= 0, x, slope * x)


def pau_fit_error(numerator, denominator, interval=PAU_FIT_INTERVAL, points=PAU_FIT_POINTS):
    """Max |PAU(x) - leaky_relu(x)| over ``points`` equally spaced x in ``interval``."""
    x = np.linspace(interval[0], interval[1], points)
    return float(np.max(np.abs(pau_numpy(x, numerator, denominator) - _leaky_relu(x))))


#: the most residual evaluations of the Levenberg-Marquardt refinement in
#: :func:`fit_pau_coefficients` (each with its Jacobian, a few milliseconds at degree 10)
PAU_FIT_MAX_EVALUATIONS = 300


def pau_residual_jacobian(x, numerator, denominator):
    """d PAU(x) / d(a_0..a_m, b_1..b_n) at each x: ``x^j / D`` for the numerator and
    ``-P sign(Q) x^k / D^2`` for the denominator, with ``D = 1 + |Q(x)|``."""
    x = np.asarray(x, dtype=np.float64)
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    powers = np.vander(x, max(numerator.size, denominator.size + 1), increasing=True)
    powers_p = powers[:, :numerator.size]
    powers_q = powers[:, 1:denominator.size + 1]
    p = powers_p @ numerator
    q = powers_q @ denominator
    d = 1.0 + np.abs(q)
    return np.concatenate([powers_p / d[:, None],
                           (-p * np.sign(q) / (d * d))[:, None] * powers_q], axis=1)


def fit_pau_coefficients(numerator_degree=5, denominator_degree=4,
                         interval=PAU_FIT_INTERVAL, points=PAU_FIT_POINTS,
                         slope=PAU_LEAKY_SLOPE):
    """Fit PAU coefficients so ``P(x)/(1+|Q(x)|)`` approximates Leaky ReLU on ``interval``.

    Method (deterministic):

    1. Linearized start: assuming ``1 + Q(x) > 0``, ``P(x)/(1+Q(x)) = f(x)`` becomes the
       linear system ``P(x) - f(x) Q(x) = f(x)``, solved by linear least squares on the grid.
    2. Refinement: Levenberg-Marquardt (``scipy.optimize.least_squares(method="lm")``) on the
       true residuals ``P(x)/(1+|Q(x)|) - f(x)`` at the same grid, with their exact
       Jacobian (:func:`pau_residual_jacobian`) and at most :data:`PAU_FIT_MAX_EVALUATIONS`
       evaluations: the default degrees converge in about 30, and degrees that cannot fit
       Leaky ReLU (a constant numerator) stop there instead of wandering for a minute
       while a model loads. The better of the start and the refinement is returned.

    Returns ``(numerator, denominator, max_abs_error)``: tuples of floats ``a_0..a_m`` and
    ``b_1..b_n`` and the max |error| on the grid.
    """
    from scipy import optimize  # only needed when fitting

    m, n = int(numerator_degree), int(denominator_degree)
    if m < 0 or n < 1:
        raise ValueError(f"PAU needs numerator_degree >= 0 and denominator_degree >= 1, "
                         f"got {numerator_degree}, {denominator_degree}")
    x = np.linspace(interval[0], interval[1], int(points))
    f = _leaky_relu(x, slope)
    design = np.concatenate(
        [x[:, None] ** np.arange(m + 1), -f[:, None] * x[:, None] ** np.arange(1, n + 1)],
        axis=1)
    start, *_ = np.linalg.lstsq(design, f, rcond=None)

    def residuals(c):
        return pau_numpy(x, c[:m + 1], c[m + 1:]) - f

    def jacobian(c):
        return pau_residual_jacobian(x, c[:m + 1], c[m + 1:])

    result = optimize.least_squares(residuals, start, jac=jacobian, method="lm", xtol=1e-15,
                                    ftol=1e-15, gtol=1e-15, max_nfev=PAU_FIT_MAX_EVALUATIONS)
    best = result.x if np.sum(result.fun ** 2) <= np.sum(residuals(start) ** 2) else start
    numerator = tuple(float(v) for v in best[:m + 1])
    denominator = tuple(float(v) for v in best[m + 1:])
    return numerator, denominator, float(np.max(np.abs(residuals(best))))


@functools.lru_cache(maxsize=None)
def pau_initial_coefficients(numerator_degree=5, denominator_degree=4):
    """Initial ``(numerator, denominator)`` approximating Leaky ReLU (slope 0.01).

    The default degrees (5, 4) use the stored constants; other degrees are fitted on first
    use with :func:`fit_pau_coefficients` (a fraction of a second) and cached.
    """
    if (numerator_degree, denominator_degree) == (5, 4):
        return PAU_INIT_NUMERATOR, PAU_INIT_DENOMINATOR
    numerator, denominator, _ = fit_pau_coefficients(numerator_degree, denominator_degree)
    return numerator, denominator


@serializable
class PAU(_Baseline):
    """Padé activation unit (Molina et al. 2020).

    ``f(x) = (sum_{j=0..m} a_j x^j) / (1 + |sum_{k=1..n} b_k x^k|)`` with ``m =
    numerator_degree`` and ``n = denominator_degree``. The weights ``numerator`` (``m + 1``
    coefficients ``a_0..a_m``) and ``denominator`` (``n`` coefficients ``b_1..b_n``) are
    learnable, per layer by default, and start at a least-squares fit of Leaky ReLU with slope
    0.01 on [-3, 3] (:func:`pau_initial_coefficients`). Outside that interval the initial
    function drifts away from Leaky ReLU (for x -> +-inf it tends to ``a_m/b_n * x``).
    """

    default_param_shape = "per-layer"

    def __init__(self, numerator_degree=5, denominator_degree=4, param_shape="per-layer",
                 **kwargs):
        super().__init__(param_shape=param_shape, **kwargs)
        self.numerator_degree = check_int(numerator_degree, "numerator_degree", "PAU", 0,
                                          PAU_MAX_DEGREE)
        self.denominator_degree = check_int(denominator_degree, "denominator_degree", "PAU",
                                            1, PAU_MAX_DEGREE)

    def build(self, input_shape):
        m, n = self.numerator_degree, self.denominator_degree
        numerator, denominator = pau_initial_coefficients(m, n)
        self.numerator = _param(self, "numerator", self.param_shape, input_shape, numerator,
                                m + 1)
        self.denominator = _param(self, "denominator", self.param_shape, input_shape,
                                  denominator, n)
        super().build(input_shape)

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        a = _as_input_dtype(self.numerator, x)
        b = _as_input_dtype(self.denominator, x)
        # Horner's scheme: P = a_0 + x(a_1 + x(...)), Q = x(b_1 + x(b_2 + ...)).
        p = a[..., self.numerator_degree] + tf.zeros_like(x)
        for j in range(self.numerator_degree - 1, -1, -1):
            p = p * x + a[..., j]
        q = b[..., self.denominator_degree - 1] + tf.zeros_like(x)
        for k in range(self.denominator_degree - 2, -1, -1):
            q = q * x + b[..., k]
        q = q * x
        return p / (1.0 + tf.abs(q))

    def get_config(self):
        config = super().get_config()
        config["numerator_degree"] = self.numerator_degree
        config["denominator_degree"] = self.denominator_degree
        return config


# --------------------------------------------------------------------------------------
# SPLASH
# --------------------------------------------------------------------------------------


@serializable
class SPLASH(_Baseline):
    """Simple piecewise linear and adaptive with symmetric hinges (Tavakoli et al. 2021).

    ``f(x) = sum_s a+_s max(0, x - b_s) + a-_s max(0, -x - b_s)`` over the fixed hinges
    ``b = hinges`` (default ``(0, 1, 2, 2.5)``, i.e. S = 7 symmetric hinges). The slopes
    ``a_plus`` and ``a_minus`` are learnable (per layer by default), one per hinge on the last
    axis; they start as ``a+_1 = 1`` and all others 0, so with ``b_1 = 0`` the unit starts as
    exactly ReLU. The hinges are not learnable.
    """

    default_param_shape = "per-layer"

    def __init__(self, hinges=(0.0, 1.0, 2.0, 2.5), param_shape="per-layer", **kwargs):
        super().__init__(param_shape=param_shape, **kwargs)
        self.hinges = check_numbers(hinges, "hinges", "SPLASH", MAX_HINGES)

    def build(self, input_shape):
        s = len(self.hinges)
        first = np.zeros(s)
        first[0] = 1.0
        self.a_plus = _param(self, "a_plus", self.param_shape, input_shape, first, s)
        self.a_minus = _param(self, "a_minus", self.param_shape, input_shape, np.zeros(s), s)
        super().build(input_shape)

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        a_plus = _as_input_dtype(self.a_plus, x)
        a_minus = _as_input_dtype(self.a_minus, x)
        out = tf.zeros_like(x)
        for s, hinge in enumerate(self.hinges):
            b = tf.constant(hinge, dtype=x.dtype)
            out = out + a_plus[..., s] * tf.nn.relu(x - b) + a_minus[..., s] * tf.nn.relu(-x - b)
        return out

    def get_config(self):
        config = super().get_config()
        config["hinges"] = list(self.hinges)
        return config


BASELINE_LAYERS = {"prelu": PReLU, "pswish": PSwish, "apl": APL, "pau": PAU, "splash": SPLASH}

__all__ = [
    "PARAM_SHAPES", "normalize_param_shape", "parameter_shape", "PReLU", "PSwish", "APL",
    "apl_initial_hinges", "PAU", "PAU_INIT_NUMERATOR", "PAU_INIT_DENOMINATOR",
    "PAU_FIT_INTERVAL", "PAU_FIT_TOLERANCE", "fit_pau_coefficients", "pau_fit_error",
    "pau_initial_coefficients", "pau_numpy", "pau_residual_jacobian", "SPLASH",
    "BASELINE_LAYERS", "MAX_HINGES", "PAU_MAX_DEGREE", "PAU_FIT_MAX_EVALUATIONS",
]
