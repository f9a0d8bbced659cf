"""The operator registry: every operator of every search space in the seeds.

One table serves CAFE (§3.1.1), PANGAEA (Table 4.1), AQuaSurF (Table A.3 plus the n-ary
sum/prod/max/min) and GRAFS (Figure 1). A search space is a subset of these names.

Each operator has a canonical name, aliases (the AQuaSurF and common spellings), an arity
(1, 2, 3, or ``VARIADIC`` for the n-ary reductions), a TensorFlow implementation, a NumPy
implementation that agrees with it, a pretty math template and a note on its asymptotes;
the operators of the GRAFS space also carry a derivative rule (``Operator.derivative``).

Safety rule, applied uniformly: **where the real value is undefined the operator returns 0**.
That is division by zero (``tf.math.divide_no_nan``, as PANGAEA states), the reciprocal of 0,
roots, logs and fractional powers of negative numbers, and ``arctanh`` outside (-1, 1).
Gradients are guarded the same way (no NaN leaks from the untaken branch of a ``where``).
Values that exist but exceed float32 (``exp(100)``) still overflow to inf: that is a property
of the candidate function, and the evaluation harness records it as a failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.special as sps


class _TensorFlowName:
    """``tf.<path>`` resolved on its first call. The operator table below names TensorFlow
    functions (``tf.nn.relu``) when it is built; with this stand-in for the ``tf`` module,
    building it -- and parsing, simplifying, NumPy evaluation, the search engine's
    equivalence keys -- imports no TensorFlow. The first call imports it and rebinds this
    module's ``tf`` to the real module, so function bodies use TensorFlow directly after."""

    __slots__ = ("_path", "_fn")

    def __init__(self, path=()):
        self._path, self._fn = path, None

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _TensorFlowName(self._path + (name,))

    def __call__(self, *args, **kwargs):
        fn = self._fn
        if fn is None:
            import tensorflow

            globals()["tf"] = tensorflow
            fn = tensorflow
            for part in self._path:
                fn = getattr(fn, part)
            self._fn = fn
        return fn(*args, **kwargs)

    def __repr__(self):
        return ".".join(("tf",) + self._path)


tf = _TensorFlowName()

VARIADIC = -1

#: epsilon of the CAFE operators log|x + eps| and x1 / (x2 + eps)
EPS = 1e-7
SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
LEAKY_SLOPE = 0.01  # Leaky ReLU slope of §4.7 and of GRAFS (PyTorch default)


@dataclass(frozen=True)
class Operator:
    name: str
    arity: int
    tf_fn: Callable = field(repr=False, compare=False)
    np_fn: Callable = field(repr=False, compare=False)
    pretty: str = field(compare=False)
    aliases: tuple = field(default=(), compare=False)
    note: str = field(default="", compare=False)
    infix: str | None = field(default=None, compare=False)
    #: ``derivative(upstream, *inputs, output)`` -> the inputs' gradients (see "Derivative
    #: rules" below), or ``None``: TensorFlow differentiates ``tf_fn``
    derivative: Callable | None = field(default=None, repr=False, compare=False)

    def accepts(self, nargs: int) -> bool:
        return nargs >= 2 if self.arity == VARIADIC else nargs == self.arity

    @property
    def arity_text(self) -> str:
        return "2 or more" if self.arity == VARIADIC else str(self.arity)


REGISTRY: dict[str, Operator] = {}
ALIASES: dict[str, str] = {}


def register(op: Operator) -> Operator:
    """Add an operator (users may register their own; names must be new)."""
    for name in (op.name, *op.aliases):
        if name in ALIASES:
            raise ValueError(f"operator name {name!r} is already taken by {ALIASES[name]!r}")
    REGISTRY[op.name] = op
    for name in (op.name, *op.aliases):
        ALIASES[name] = op.name
    return op


def get(name: str) -> Operator:
    """The operator called ``name`` (canonical name or alias)."""
    try:
        return REGISTRY[ALIASES[name]]
    except KeyError:
        raise KeyError(f"unknown operator {name!r}") from None


def names(arity: int | None = None) -> list[str]:
    """Canonical operator names, optionally only those of one arity."""
    return [n for n, op in REGISTRY.items() if arity is None or op.arity == arity]


def _op(name, arity, tf_fn, np_fn, pretty, aliases=(), note="", infix=None, derivative=None):
    return register(Operator(name, arity, tf_fn, np_fn, pretty, tuple(aliases), note, infix,
                             derivative))


# ---------------------------------------------------------------------------------------
# Guarded evaluation: compute fn only where ``ok`` holds, 0 elsewhere, with gradients that
# stay finite (the inner ``where`` keeps the untaken branch away from the singular point).
def _tf_guard(ok, fn, x, safe_value=1.0, fill=0.0):
    safe_x = tf.where(ok, x, tf.cast(safe_value, x.dtype))
    return tf.where(ok, fn(safe_x), tf.cast(fill, x.dtype))


def _np_guard(ok, fn, x, safe_value=1.0, fill=0.0):
    safe_x = np.where(ok, x, safe_value)
    with np.errstate(all="ignore"):
        return np.where(ok, fn(safe_x), fill)


def _np_sigmoid(x):
    return sps.expit(x)


def _np_softplus(x):
    return np.logaddexp(0.0, x)


def _tf_sinc(x):
    small = tf.abs(x) < 1e-4
    big = _tf_guard(~small, lambda v: tf.sin(v) / v, x)
    return tf.where(small, 1.0 - x * x / 6.0, big)


def _np_sinc(x):
    small = np.abs(x) < 1e-4
    return np.where(small, 1.0 - x * x / 6.0, _np_guard(~small, lambda v: np.sin(v) / v, x))


def _tf_pow(a, b):
    a, b = _tf_broadcast(a, b)
    b_is_int = tf.equal(b, tf.round(b))
    ok = (a > 0) | ((a < 0) & b_is_int) | (tf.equal(a, 0) & (b >= 0))
    # 0^b with 0 <= b < 1 takes its exact value (1 or 0) off tf.pow, whose gradient there is
    # 0*inf = NaN (b = 0) or inf (0 < b < 1); the slope is 0 there, as for the guarded sqrt
    zero_base = tf.equal(a, 0) & (b < 1)
    direct = ok & ~zero_base
    y = tf.pow(tf.where(direct, a, tf.ones_like(a)), b)
    at_zero = tf.where(ok & tf.equal(b, 0), tf.ones_like(a), tf.zeros_like(a))
    return tf.where(direct, y, at_zero)


def _np_pow(a, b):
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    ok = (a > 0) | ((a < 0) & (b == np.round(b))) | ((a == 0) & (b >= 0))
    with np.errstate(all="ignore"):
        return np.where(ok, np.power(np.where(ok, a, 1.0), b), 0.0)


def _tf_broadcast(a, b):
    a = tf.convert_to_tensor(a)
    b = tf.convert_to_tensor(b, dtype=a.dtype)
    shape = tf.broadcast_dynamic_shape(tf.shape(a), tf.shape(b))
    return tf.broadcast_to(a, shape), tf.broadcast_to(b, shape)


def _tf_div(a, b):
    a, b = _tf_broadcast(a, b)
    ok = tf.not_equal(b, 0)
    return tf.where(ok, a / tf.where(ok, b, tf.ones_like(b)), tf.zeros_like(a))


def _np_div(a, b):
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    ok = b != 0
    with np.errstate(all="ignore"):
        return np.where(ok, a / np.where(ok, b, 1.0), 0.0)


def _np_gelu(x):
    return 0.5 * x * sps.erfc(-x / math.sqrt(2.0))


def _tf_gelu(x):
    return 0.5 * x * tf.math.erfc(-x / math.sqrt(2.0))


_GELU_C = math.sqrt(2.0 / math.pi)


def _np_elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def _np_selu(x):
    return SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _tf_elish(x):
    return tf.sigmoid(x) * tf.where(x >= 0, x, tf.math.expm1(tf.minimum(x, 0.0)))


def _np_elish(x):
    return _np_sigmoid(x) * np.where(x >= 0, x, np.expm1(np.minimum(x, 0.0)))


def _tf_hard_sigmoid(x):
    return tf.clip_by_value(0.2 * x + 0.5, 0.0, 1.0)


def _np_hard_sigmoid(x):
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def _tf_nary(reduce):
    def fn(*args):
        return reduce(tf.stack(_tf_broadcast_all(args), axis=0), axis=0)

    return fn


def _tf_broadcast_all(args):
    args = [tf.convert_to_tensor(a) for a in args]
    first = args[0]
    if all(a.dtype == first.dtype and a.shape.as_list() == first.shape.as_list()
           for a in args[1:]) and first.shape.rank is not None:
        # one static shape (the common case: every input an elementwise function of x):
        # no per-input ops, which in a graph with thousands of inputs took seconds each
        # thousand (tf.stack still checks the shapes at run time)
        return args
    args = [tf.cast(a, first.dtype) for a in args]
    shape = tf.shape(args[0])
    for a in args[1:]:
        shape = tf.broadcast_dynamic_shape(shape, tf.shape(a))
    return [tf.broadcast_to(a, shape) for a in args]


def _np_nary(reduce):
    def fn(*args):
        return reduce(np.stack(np.broadcast_arrays(*[np.asarray(a, float) for a in args])), axis=0)

    return fn


def _np_mix(a, b, w):
    s = _np_sigmoid(w)
    return s * a + (1.0 - s) * b


def _tf_mix(a, b, w):
    s = tf.sigmoid(w)
    return s * a + (1.0 - s) * b


# ---------------------------------------------------------------------- derivative rules
# ``Operator.derivative(u, *inputs, output)``: the inputs' gradients given ``u``, the
# gradient flowing into the output, and ``output``, the operator's value on those inputs
# (rules reuse it: exp' = exp). A unary rule returns one tensor, a binary one a pair, mix a
# triple, each in the broadcast shape of ``u`` and the inputs (a caller that broadcast an
# input sums over those axes); ``None`` for an input the output does not depend on. Where
# the guarded operator is the constant 0 (sqrt of x <= 0) the rule is 0, and at a kink it
# takes the side TensorFlow's gradient of ``tf_fn`` takes (relu' = 0 at 0; at a tie max and
# min pass ``u`` to their first input). The rules are the chain rule's factors written out:
# a few elementwise products instead of the graph TensorFlow derives from each formula,
# which keeps GRAFS's hand-chained cell gradient (:mod:`keras_actfn.search.grafs.cell`)
# cheap to trace. Operators without a rule are differentiated by TensorFlow.
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_ONE_OVER_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _zero_unless(ok, v):
    return tf.where(ok, v, tf.constant(0, v.dtype))


def _d_identity(u, x, y):
    return u


def _d_neg(u, x, y):
    return -u


def _d_abs(u, x, y):
    return u * tf.sign(x)


def _d_square(u, x, y):
    return 2.0 * u * x


def _d_cube(u, x, y):
    return 3.0 * u * tf.square(x)


def _d_sqrt(u, x, y):
    return _zero_unless(x > 0, 0.5 * u / y)


def _d_exp(u, x, y):
    return u * y


def _d_sigmoid(u, x, y):
    return u * y * (1.0 - y)


def _d_softplus(u, x, y):
    return u * tf.sigmoid(x)


def _d_sinh(u, x, y):
    return u * tf.sqrt(1.0 + tf.square(y))  # cosh = sqrt(1 + sinh^2)


def _d_tanh(u, x, y):
    return u * (1.0 - tf.square(y))


def _d_arcsinh(u, x, y):
    return u * tf.math.rsqrt(1.0 + tf.square(x))


def _d_arctan(u, x, y):
    return u / (1.0 + tf.square(x))


def _d_erf(u, x, y):
    return _TWO_OVER_SQRT_PI * u * tf.exp(-tf.square(x))


def _d_min0(u, x, y):
    return _zero_unless(x <= 0, u)


def _d_relu(u, x, y):
    return _zero_unless(x > 0, u)


def _d_gelu(u, x, y):
    return u * (0.5 * tf.math.erfc(-x * math.sqrt(0.5))
                + _ONE_OVER_SQRT_2PI * x * tf.exp(-0.5 * tf.square(x)))


def _d_swish(u, x, y):
    s = tf.sigmoid(x)
    return u * (s + y * (1.0 - s))


def _d_elu(u, x, y):
    return tf.where(x > 0, u, u * (y + 1.0))


def _d_leaky_relu(u, x, y):
    return tf.where(x >= 0, u, LEAKY_SLOPE * u)


def _d_add(u, a, b, y):
    return u, u


def _d_sub(u, a, b, y):
    return u, -u


def _d_mul(u, a, b, y):
    return u * b, u * a


def _d_max(u, a, b, y):
    first = a >= b
    return _zero_unless(first, u), _zero_unless(~first, u)


def _d_min(u, a, b, y):
    first = a <= b
    return _zero_unless(first, u), _zero_unless(~first, u)


def _d_gate(u, a, b, y):
    s = tf.sigmoid(a)
    return u * b * s * (1.0 - s), u * s


def _d_left(u, a, b, y):
    return u, None


def _d_right(u, a, b, y):
    return None, u


def _d_mix(u, a, b, w, y):
    s = tf.sigmoid(w)
    return u * s, u * (1.0 - s), u * (a - b) * (s * (1.0 - s))


_NEVER = "finite everywhere"
_OVER = "overflows float32 to inf for large |x|"

# ---------------------------------------------------------------------- unary operators
_op("zero", 1, tf.zeros_like, np.zeros_like, "0", note="constant 0")
_op("one", 1, tf.ones_like, np.ones_like, "1", note="constant 1")
_op("identity", 1, tf.identity, lambda x: np.asarray(x, float), "{0}", ["linear", "id"], _NEVER,
    derivative=_d_identity)
_op("neg", 1, tf.negative, np.negative, "−{0:a}", ["negative"], _NEVER, infix="-",
    derivative=_d_neg)
_op("abs", 1, tf.abs, np.abs, "|{0}|", [], _NEVER, derivative=_d_abs)
_op("square", 1, tf.square, np.square, "{0:a}²", ["sqr"], "grows as x²", derivative=_d_square)
_op("cube", 1, lambda x: x * x * x, lambda x: x * x * x, "{0:a}³", [], "grows as x³",
    derivative=_d_cube)
_op("sqrt", 1, lambda x: _tf_guard(x > 0, tf.sqrt, x), lambda x: _np_guard(x > 0, np.sqrt, x),
    "√{0:a}", [], "0 for x <= 0 (undefined for x < 0); derivative infinite at 0+",
    derivative=_d_sqrt)
_op("exp", 1, tf.exp, np.exp, "e^{0:a}", [], "0 as x -> -inf; " + _OVER, derivative=_d_exp)
_op("expm1", 1, tf.math.expm1, np.expm1, "(e^{0:a} − 1)", ["exp_minus_1", "exp_m1"],
    "-1 as x -> -inf; " + _OVER)
_op("gaussian", 1, lambda x: tf.exp(-tf.square(x)), lambda x: np.exp(-np.square(x)),
    "e^(−{0:a}²)", ["gauss", "exp_neg_square"], "0 at both ends, 1 at 0")
_op("softplus", 1, tf.nn.softplus, _np_softplus, "softplus({0})", [],
    "0 as x -> -inf, ~x as x -> inf (computed stably)", derivative=_d_softplus)
_op("log_abs", 1,
    lambda x: _tf_guard(tf.not_equal(x + EPS, 0), lambda v: tf.math.log(tf.abs(v + EPS)), x),
    lambda x: _np_guard(x + EPS != 0, lambda v: np.log(np.abs(v + EPS)), x),
    "log|{0} + ε|", ["log_abs_eps"], "-inf at x = -eps is replaced by 0; grows as log|x|")
_op("log", 1, lambda x: _tf_guard(x > 0, tf.math.log, x), lambda x: _np_guard(x > 0, np.log, x),
    "log({0})", ["ln"], "0 for x <= 0 (undefined there); log(sigmoid(.)) parses to log_sigmoid")
_op("sin", 1, tf.sin, np.sin, "sin({0})", [], "periodic, bounded")
_op("cos", 1, tf.cos, np.cos, "cos({0})", [], "periodic, bounded")
_op("sinh", 1, tf.sinh, np.sinh, "sinh({0})", [], _OVER, derivative=_d_sinh)
_op("cosh", 1, tf.cosh, np.cosh, "cosh({0})", [], _OVER)
_op("tanh", 1, tf.tanh, np.tanh, "tanh({0})", [], "bounded in (-1, 1)", derivative=_d_tanh)
_op("arcsinh", 1, tf.asinh, np.arcsinh, "arcsinh({0})", ["asinh"], "grows as log|x|",
    derivative=_d_arcsinh)
_op("arctan", 1, tf.atan, np.arctan, "arctan({0})", ["atan"], "bounded in (-pi/2, pi/2)",
    derivative=_d_arctan)
_op("arctanh", 1, lambda x: _tf_guard(tf.abs(x) < 1, tf.atanh, x, 0.0),
    lambda x: _np_guard(np.abs(x) < 1, np.arctanh, x, 0.0),
    "arctanh({0})", ["atanh"], "0 for |x| >= 1 (undefined there); poles at +-1")
_op("relu", 1, tf.nn.relu, lambda x: np.maximum(x, 0.0), "max{{{0}, 0}}", ["max0"], _NEVER,
    derivative=_d_relu)
_op("min0", 1, lambda x: tf.minimum(x, 0.0), lambda x: np.minimum(x, 0.0), "min{{{0}, 0}}",
    ["min_zero", "relu_neg"], _NEVER, derivative=_d_min0)
_op("sigmoid", 1, tf.sigmoid, _np_sigmoid, "σ({0})", ["logistic"], "bounded in (0, 1)",
    derivative=_d_sigmoid)
# the clip (erf(+-10) is +-1 to double precision) keeps tf.math.erf off its float64 NaN
# for |x| > ~1.3e154
_op("erf", 1, lambda x: tf.math.erf(tf.clip_by_value(x, -10.0, 10.0)), sps.erf, "erf({0})", [],
    "bounded in (-1, 1)", derivative=_d_erf)
_op("erfc", 1, tf.math.erfc, sps.erfc, "erfc({0})", [], "bounded in (0, 2)")
_op("sinc", 1, _tf_sinc, _np_sinc, "sinc({0})", [], "sin(x)/x, 1 at x = 0 (unnormalized)")
_op("reciprocal", 1,
    lambda x: _tf_guard(tf.not_equal(x, 0), tf.math.reciprocal, x),
    lambda x: _np_guard(x != 0, np.reciprocal, x),
    "{0:a}⁻¹", ["inv", "inverse"], "1/x; 0 at x = 0 (pole); 0 as |x| -> inf")
_op("log_sigmoid", 1, tf.math.log_sigmoid, lambda x: -_np_softplus(-x), "log σ({0})",
    ["logsigmoid"], "~x as x -> -inf (computed stably), 0 as x -> inf")
_op("bessel_i0e", 1, tf.math.special.bessel_i0e, sps.i0e, "i0e({0})", ["i0e"],
    "1 at 0, decays as 1/sqrt(2 pi |x|)")
_op("bessel_i1e", 1, tf.math.special.bessel_i1e, sps.i1e, "i1e({0})", ["i1e"],
    "0 at 0, odd, decays as sign(x)/sqrt(2 pi |x|)")
_op("elu", 1, tf.nn.elu, _np_elu, "ELU({0})", [], "-1 as x -> -inf, linear for x > 0",
    derivative=_d_elu)
_op("selu", 1, tf.nn.selu, _np_selu, "SELU({0})", [],
    "-lambda*alpha as x -> -inf, lambda*x for x > 0")
# x*sigmoid(x) rather than tf.nn.silu: the fused op recomputes the sigmoid in its custom
# gradient, which costs more time than the saved activation memory on the sizes we measured
# (benchmarks/bench_activation_speed.py)
_op("swish", 1, lambda x: x * tf.sigmoid(x), lambda x: x * _np_sigmoid(x), "Swish({0})", ["silu"],
    "x*sigmoid(x): 0 as x -> -inf, ~x as x -> inf", derivative=_d_swish)
_op("hard_sigmoid", 1, _tf_hard_sigmoid, _np_hard_sigmoid, "HardSigmoid({0})",
    ["hardsigmoid"], "max(0, min(1, 0.2x + 0.5)) as in §4.7")
_op("softsign", 1, tf.nn.softsign, lambda x: x / (1.0 + np.abs(x)), "Softsign({0})", [],
    "bounded in (-1, 1)")
_op("gelu", 1, _tf_gelu, _np_gelu, "GELU({0})", [], "exact x*Phi(x); 0 as x -> -inf",
    derivative=_d_gelu)
_op("gelu_tanh", 1,
    lambda x: 0.5 * x * (1.0 + tf.tanh(_GELU_C * (x + 0.044715 * x * x * x))),
    lambda x: 0.5 * x * (1.0 + np.tanh(_GELU_C * (x + 0.044715 * x * x * x))),
    "GELUₜ({0})", ["gelu_approx"], "the tanh approximation of §4.7")
# not tf.nn.leaky_relu: it keeps its slope as a float32 attribute (0.0099999998 in float64)
_op("leaky_relu", 1, lambda x: tf.where(x >= 0, x, LEAKY_SLOPE * x),
    lambda x: np.where(x >= 0, x, LEAKY_SLOPE * x), "LeakyReLU({0})", ["leakyrelu"],
    "slope 0.01 for x < 0", derivative=_d_leaky_relu)
_op("elish", 1, _tf_elish, _np_elish, "ELiSH({0})", [], "-> 0 as x -> -inf, ~x as x -> inf")
_op("mish", 1, lambda x: x * tf.tanh(tf.nn.softplus(x)),
    lambda x: x * np.tanh(_np_softplus(x)), "Mish({0})", [], "x*tanh(softplus(x))")

# --------------------------------------------------------------------- binary operators
_op("add", 2, tf.add, np.add, "{0} + {1}", ["plus"], _NEVER, infix="+", derivative=_d_add)
_op("sub", 2, tf.subtract, np.subtract, "{0} − {1}", ["subtract", "minus"], _NEVER, infix="-",
    derivative=_d_sub)
_op("mul", 2, tf.multiply, np.multiply, "{0}·{1}", ["multiply", "times"], _NEVER, infix="*",
    derivative=_d_mul)
_op("div", 2, _tf_div, _np_div, "{0}/{1}", ["divide", "div_no_nan"],
    "x1/x2 with 0 where x2 = 0 (divide_no_nan)", infix="/")
_op("div_eps", 2, lambda a, b: _tf_div(a, b + EPS), lambda a, b: _np_div(a, b + EPS),
    "{0}/({1} + ε)", ["div_epsilon"], "x1/(x2 + eps) (CAFE); 0 where x2 = -eps")
_op("pow", 2, _tf_pow, _np_pow, "{0:a}^{1:a}", ["power"],
    "x1^x2; 0 where undefined (x1 < 0 with non-integer x2, 0 to a negative power)",
    infix="^")
_op("max", 2, tf.maximum, np.maximum, "max{{{0}, {1}}}", ["maximum"], _NEVER, derivative=_d_max)
_op("min", 2, tf.minimum, np.minimum, "min{{{0}, {1}}}", ["minimum"], _NEVER, derivative=_d_min)
_op("gate", 2, lambda a, b: tf.sigmoid(a) * b, lambda a, b: _np_sigmoid(a) * b,
    "σ({0})·{1:a}", ["sigmoid_mul"], "sigmoid(x1)*x2 (GRAFS)", derivative=_d_gate)
_op("left", 2, lambda a, b: a + tf.zeros_like(b), lambda a, b: a + np.zeros_like(b),
    "{0}", ["L", "left_proj"], "projection onto x1 (GRAFS L)", derivative=_d_left)
_op("right", 2, lambda a, b: b + tf.zeros_like(a), lambda a, b: b + np.zeros_like(a),
    "{1}", ["R", "right_proj"], "projection onto x2 (GRAFS R)", derivative=_d_right)

# ------------------------------------------------------------------- ternary and n-ary
_op("mix", 3, _tf_mix, _np_mix, "σ({2})·{0:a} + (1 − σ({2}))·{1:a}", ["beta_mix"],
    "sigmoid(w)*x1 + (1 - sigmoid(w))*x2, the GRAFS mixing operator with weight w",
    derivative=_d_mix)
_op("sum_n", VARIADIC, _tf_nary(tf.reduce_sum), _np_nary(np.sum), "Σ({args})",
    ["sum"], "sum of all inputs")
_op("prod_n", VARIADIC, _tf_nary(tf.reduce_prod), _np_nary(np.prod), "Π({args})",
    ["prod", "product"], "product of all inputs")
_op("max_n", VARIADIC, _tf_nary(tf.reduce_max), _np_nary(np.max), "max{{{args}}}", [],
    "maximum of all inputs")
_op("min_n", VARIADIC, _tf_nary(tf.reduce_min), _np_nary(np.min), "min{{{args}}}", [],
    "minimum of all inputs")

# --------------------------------------------------------------- search-space subsets
CAFE_UNARY = ("zero", "one", "identity", "neg", "abs", "square", "cube", "sqrt", "exp",
              "gaussian", "softplus", "log_abs", "sin", "sinh", "arcsinh", "cos", "cosh",
              "tanh", "arctanh", "relu", "min0", "sigmoid", "erf", "sinc")
CAFE_BINARY = ("add", "sub", "mul", "div_eps", "max", "min")

PANGAEA_UNARY = ("zero", "one", "identity", "neg", "abs", "reciprocal", "square", "exp",
                 "erf", "erfc", "sinh", "cosh", "tanh", "expm1", "sigmoid", "log_sigmoid",
                 "arcsinh", "arctan", "bessel_i0e", "bessel_i1e", "relu", "elu", "selu",
                 "swish", "softplus", "softsign", "hard_sigmoid")
PANGAEA_BINARY = ("add", "sub", "mul", "div", "pow", "max", "min")

# Table A.3 holds the same 27 unary and 7 binary operators as Table 4.1 (27*27*7 = 5,103
# three-node functions); the n-ary node of A.4.3 uses sum, product, max and min.
AQUASURF_UNARY = PANGAEA_UNARY
AQUASURF_BINARY = PANGAEA_BINARY
AQUASURF_NARY = ("sum_n", "prod_n", "max_n", "min_n")

# GRAFS Figure 1 (23 unary, 9 binary). The OCR of the figure lists "x" twice; the second is
# read as |x|. The three unary entries with a learnable gamma are not registry operators but
# small expressions over it (GRAFS_TEMPLATES); on export gamma becomes a learned constant.
GRAFS_UNARY = ("identity", "neg", "abs", "square", "cube", "sqrt", "exp", "gamma",
               "gamma_mul", "gamma_add", "sigmoid", "softplus", "sinh", "tanh", "arcsinh",
               "arctan", "erf", "min0", "relu", "gelu", "swish", "elu", "leaky_relu")
GRAFS_BINARY = ("add", "sub", "mul", "max", "min", "gate", "mix", "left", "right")
GRAFS_TEMPLATES = {"gamma": "gamma", "gamma_mul": "gamma*x", "gamma_add": "x + gamma"}
