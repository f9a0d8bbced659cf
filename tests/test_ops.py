"""The operator registry, checked against independent numbers.

Every registered operator is covered by iterating ``ops.REGISTRY``: its NumPy and TensorFlow
implementations must agree (float64 tightly, float32 loosely), never produce NaN, and stay
finite where the registry says they do. The closed forms below are written out here from the
seeds (dissertation §3.1.1, Table 4.1, §4.7; GRAFS Figure 1), with the Python ``math`` module
or explicit series, not with the registry's own code.
"""

import math

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from keras_actfn.backend import keras
from keras_actfn.expr import evaluate, ops, parse

UNARY = sorted(ops.names(1))
BINARY = sorted(ops.names(2))
TERNARY = sorted(ops.names(3))
VARIADIC = sorted(ops.names(ops.VARIADIC))

SPECIAL = np.array([0.0, 1.0, -1.0, 1e-8, -1e-8, 0.5, -0.5, 2.5, -2.5, 1e-4, -1e-4])
GRID = np.unique(np.concatenate([np.linspace(-6.0, 6.0, 241), SPECIAL]))
# 2-D grid for binary operators: negative bases, zero divisors, fractional and integer
# exponents, tiny divisors
_AXIS = np.unique(np.concatenate([np.linspace(-4.0, 4.0, 33), [1e-8, -1e-8, 1.0 / 3.0]]))
GRID_A, GRID_B = (g.ravel() for g in np.meshgrid(_AXIS, _AXIS, indexing="ij"))


# operators whose value may leave float range for large finite inputs, by their registry note
# ("overflows ..." for exp/expm1/sinh/cosh, "grows as x²/x³" for square/cube)
def _may_overflow(op):
    return "overflow" in op.note or "grows as x" in op.note


def np_apply(name, *args):
    with np.errstate(all="ignore"):
        out = ops.get(name).np_fn(*[np.asarray(a, dtype=np.float64) for a in args])
    return np.broadcast_to(np.asarray(out, dtype=np.float64), np.broadcast(*args).shape)


def tf_apply(name, *args, dtype=tf.float64):
    out = ops.get(name).tf_fn(*[tf.constant(a, dtype=dtype) for a in args])
    return np.broadcast_to(np.asarray(out), np.broadcast(*args).shape)


def assert_close(actual, expected, rtol, atol=0.0, what=""):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, what
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    worst = np.argmax(err - bound)
    assert np.all(err <= bound), (
        f"{what}: worst mismatch at index {worst}: got {actual.ravel()[worst]!r}, "
        f"expected {expected.ravel()[worst]!r}")


# ------------------------------------------------------------------- NumPy vs TensorFlow
@pytest.mark.parametrize("name", UNARY)
def test_unary_numpy_and_tf_agree(name):
    ref = np_apply(name, GRID)
    assert not np.isnan(ref).any(), f"NumPy {name} gives NaN"
    assert np.isfinite(ref).all(), f"NumPy {name} is not finite on |x| <= 6"
    got64 = tf_apply(name, GRID, dtype=tf.float64)
    assert got64.dtype == np.float64
    assert np.isfinite(got64).all(), f"TF float64 {name} is not finite on |x| <= 6"
    assert_close(got64, ref, rtol=1e-12, atol=1e-13, what=f"{name} float64")
    x32 = GRID.astype(np.float32)
    got32 = tf_apply(name, x32, dtype=tf.float32)
    assert got32.dtype == np.float32
    assert np.isfinite(got32).all(), f"TF float32 {name} is not finite on |x| <= 6"
    # reference at the float32-rounded inputs, so only the arithmetic is compared
    assert_close(got32, np_apply(name, x32.astype(np.float64)), rtol=2e-5, atol=2e-6,
                 what=f"{name} float32")


@pytest.mark.parametrize("name", BINARY)
def test_binary_numpy_and_tf_agree_on_2d_grid(name):
    ref = np_apply(name, GRID_A, GRID_B)
    assert np.isfinite(ref).all(), f"NumPy {name} is not finite on the grid"
    got64 = tf_apply(name, GRID_A, GRID_B, dtype=tf.float64)
    assert np.isfinite(got64).all(), f"TF float64 {name} is not finite on the grid"
    assert_close(got64, ref, rtol=1e-12, atol=1e-13, what=f"{name} float64")
    a32, b32 = GRID_A.astype(np.float32), GRID_B.astype(np.float32)
    got32 = tf_apply(name, a32, b32, dtype=tf.float32)
    assert np.isfinite(got32).all(), f"TF float32 {name} is not finite on the grid"
    ref32 = np_apply(name, a32.astype(np.float64), b32.astype(np.float64))
    assert_close(got32, ref32, rtol=2e-5, atol=2e-6, what=f"{name} float32")


@pytest.mark.parametrize("name", TERNARY)
def test_ternary_numpy_and_tf_agree(name):
    axis = np.array([-4.0, -1.0, -1e-8, 0.0, 0.5, 3.0])
    a, b, c = (g.ravel() for g in np.meshgrid(axis, axis, axis, indexing="ij"))
    ref = np_apply(name, a, b, c)
    assert np.isfinite(ref).all()
    assert_close(tf_apply(name, a, b, c), ref, rtol=1e-12, atol=1e-13, what=name)
    got32 = tf_apply(name, a, b, c, dtype=tf.float32)
    assert_close(got32, np_apply(name, *(v.astype(np.float32) for v in (a, b, c))),
                 rtol=2e-5, atol=2e-6, what=f"{name} float32")


@pytest.mark.parametrize("name", VARIADIC)
@pytest.mark.parametrize("n", [2, 3, 4])
def test_variadic_numpy_and_tf_agree(name, n):
    rng = np.random.default_rng(7)
    args = [rng.uniform(-3, 3, size=50) for _ in range(n)]
    args[0][:5] = 0.0
    ref = np_apply(name, *args)
    assert np.isfinite(ref).all()
    assert_close(tf_apply(name, *args), ref, rtol=1e-12, atol=1e-13, what=name)


@pytest.mark.parametrize("name", UNARY)
def test_unary_no_nan_at_extreme_finite_inputs(name):
    """Safety rule: never NaN for finite input; inf only for ops documented to overflow."""
    op = ops.get(name)
    x64 = np.array([-1e300, -1e200, -1e155, -1e30, -1e4, -800.0, -100.0, 100.0, 800.0, 1e4,
                    1e30, 1e155, 1e200, 1e300])
    x32 = np.array([-3e38, -1e30, -1e20, -1e4, -100.0, 100.0, 1e4, 1e20, 1e30, 3e38],
                   dtype=np.float32)
    results = {"numpy": np_apply(name, x64), "tf64": tf_apply(name, x64),
               "tf32": tf_apply(name, x32, dtype=tf.float32)}
    for backend, y in results.items():
        assert not np.isnan(y).any(), f"{name} ({backend}) gives NaN at a finite input"
        if not _may_overflow(op):
            assert np.isfinite(y).all(), f"{name} ({backend}) overflows but is not documented to"


@pytest.mark.parametrize("name", BINARY + TERNARY)
def test_multi_input_no_nan_at_extreme_finite_inputs(name):
    op = ops.get(name)
    axis = np.array([-1e300, -1e30, -3.0, -1.0, -0.5, 0.0, 1e-300, 0.5, 1.0, 2.5, 1e30, 1e300])
    args = [g.ravel() for g in np.meshgrid(*([axis] * op.arity), indexing="ij")]
    for backend, y in (("numpy", np_apply(name, *args)), ("tf", tf_apply(name, *args))):
        assert not np.isnan(y).any(), f"{name} ({backend}) gives NaN at a finite input"


def test_safety_rule_is_documented_for_every_operator():
    for name, op in ops.REGISTRY.items():
        assert op.pretty, name
        assert op.note, f"{name} has no note on its asymptotes"


# --------------------------------------------------------------- independent closed forms
def _vec(fn):
    return np.vectorize(fn, otypes=[np.float64])


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def _bessel_series(v, order):
    """I_order(v) = sum_k (v/2)^(2k+order) / (k! (k+order)!), then scaled by exp(-|v|)."""
    # 40 terms: for |v| <= 6 the last one is below 1e-40 of the sum
    total = sum((v / 2.0) ** (2 * k + order) / float(math.factorial(k) * math.factorial(k + order))
                for k in range(40))
    return total * math.exp(-abs(v))


SELU_LAMBDA_47 = 1.05070098  # §4.7
SELU_ALPHA_47 = 1.67326324

CLOSED_FORMS = {
    "zero": (lambda v: 0.0, 0),
    "one": (lambda v: 1.0, 0),
    "identity": (lambda v: v, 0),
    "neg": (lambda v: -v, 0),
    "abs": (lambda v: v if v >= 0 else -v, 0),
    "square": (lambda v: v * v, 0),
    "cube": (lambda v: v * v * v, 0),
    "sqrt": (lambda v: math.sqrt(v) if v > 0 else 0.0, 0),
    "exp": (math.exp, 0),
    "expm1": (lambda v: math.exp(v) - 1.0, 1e-15),
    "gaussian": (lambda v: math.exp(-v * v), 0),
    "softplus": (lambda v: math.log(1.0 + math.exp(v)), 0),
    "log_abs": (lambda v: math.log(abs(v + 1e-7)) if v + 1e-7 != 0 else 0.0, 0),
    "log": (lambda v: math.log(v) if v > 0 else 0.0, 0),
    "sin": (math.sin, 0),
    "cos": (math.cos, 0),
    "sinh": (lambda v: (math.exp(v) - math.exp(-v)) / 2.0, 1e-15),
    "cosh": (lambda v: (math.exp(v) + math.exp(-v)) / 2.0, 0),
    "tanh": (lambda v: (math.exp(v) - math.exp(-v)) / (math.exp(v) + math.exp(-v)), 1e-15),
    "arcsinh": (lambda v: math.copysign(math.log(abs(v) + math.sqrt(v * v + 1.0)), v), 1e-15),
    "arctan": (math.atan, 0),
    "arctanh": (lambda v: 0.5 * math.log((1.0 + v) / (1.0 - v)) if abs(v) < 1 else 0.0, 1e-15),
    "relu": (lambda v: max(v, 0.0), 0),
    "min0": (lambda v: min(v, 0.0), 0),
    "sigmoid": (_sigmoid, 0),
    "erf": (math.erf, 0),
    "erfc": (math.erfc, 0),
    "sinc": (lambda v: math.sin(v) / v if v != 0 else 1.0, 0),
    "reciprocal": (lambda v: 1.0 / v if v != 0 else 0.0, 0),
    "log_sigmoid": (lambda v: -math.log(1.0 + math.exp(-v)), 0),
    "bessel_i0e": (lambda v: _bessel_series(v, 0), 0),
    "bessel_i1e": (lambda v: _bessel_series(v, 1), 0),
    "elu": (lambda v: v if v >= 0 else math.exp(v) - 1.0, 1e-15),
    "selu": (lambda v: SELU_LAMBDA_47 * (v if v >= 0 else SELU_ALPHA_47 * (math.exp(v) - 1.0)),
             1e-8),
    "swish": (lambda v: v / (1.0 + math.exp(-v)), 0),
    "hard_sigmoid": (lambda v: max(0.0, min(1.0, 0.2 * v + 0.5)), 0),
    "softsign": (lambda v: v / (abs(v) + 1.0), 0),
    "gelu": (None, 0),  # x * Phi(x) with scipy.stats.norm.cdf, below
    "gelu_tanh": (lambda v: 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi)
                                                       * (v + 0.044715 * v ** 3))), 0),
    "leaky_relu": (lambda v: v if v >= 0 else 0.01 * v, 0),
    "elish": (lambda v: v / (1.0 + math.exp(-v)) if v >= 0
              else (math.exp(v) - 1.0) / (1.0 + math.exp(-v)), 1e-15),
    "mish": (lambda v: v * math.tanh(math.log(1.0 + math.exp(v))), 0),
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_unary_closed_form(name):
    fn, extra_atol = CLOSED_FORMS[name]
    if name == "gelu":
        expected = GRID * scipy.stats.norm.cdf(GRID)
    else:
        expected = _vec(fn)(GRID)
    rtol = 1e-7 if name == "selu" else 1e-12  # §4.7 prints SELU's constants to 8 decimals
    for got, what in ((np_apply(name, GRID), "numpy"), (tf_apply(name, GRID), "tf")):
        assert_close(got, expected, rtol=rtol, atol=1e-14 + extra_atol, what=f"{name} {what}")


def test_closed_forms_cover_the_whole_unary_registry_as_shipped():
    """Each operator that ships with keras_actfn has an independent reference above."""
    shipped = {"zero", "one", "identity", "neg", "abs", "square", "cube", "sqrt", "exp",
               "expm1", "gaussian", "softplus", "log_abs", "log", "sin", "cos", "sinh", "cosh",
               "tanh", "arcsinh", "arctan", "arctanh", "relu", "min0", "sigmoid", "erf", "erfc",
               "sinc", "reciprocal", "log_sigmoid", "bessel_i0e", "bessel_i1e", "elu", "selu",
               "swish", "hard_sigmoid", "softsign", "gelu", "gelu_tanh", "leaky_relu", "elish",
               "mish"}
    assert shipped <= set(UNARY)
    assert shipped <= set(CLOSED_FORMS)


def test_special_values():
    cases = {
        ("sinc", (0.0,)): 1.0,
        ("sinc", (1e-9,)): 1.0,
        ("sinc", (math.pi,)): math.sin(math.pi) / math.pi,
        ("reciprocal", (0.0,)): 0.0,
        ("reciprocal", (-4.0,)): -0.25,
        ("div", (3.0, 0.0)): 0.0,
        ("div", (-3.0, 0.0)): 0.0,
        ("div", (0.0, 0.0)): 0.0,
        ("div", (3.0, -2.0)): -1.5,
        ("div_eps", (1.0, 0.0)): 1e7,
        ("div_eps", (1.0, -1e-7)): 0.0,
        ("pow", (-8.0, 1.0 / 3.0)): 0.0,  # undefined over the reals -> 0
        ("pow", (-2.0, 3.0)): -8.0,
        ("pow", (-2.0, -2.0)): 0.25,
        ("pow", (-2.0, 2.5)): 0.0,
        ("pow", (0.0, -1.0)): 0.0,  # 1/0 -> 0
        ("pow", (0.0, 0.0)): 1.0,
        ("pow", (0.0, 0.5)): 0.0,
        ("pow", (0.0, 2.0)): 0.0,
        ("pow", (4.0, 0.5)): 2.0,
        ("pow", (2.0, -3.0)): 0.125,
        ("sqrt", (-4.0,)): 0.0,
        ("sqrt", (0.0,)): 0.0,
        ("log", (-1.0,)): 0.0,
        ("log", (0.0,)): 0.0,
        ("log_abs", (-1e-7,)): 0.0,
        ("arctanh", (1.0,)): 0.0,
        ("arctanh", (-1.0,)): 0.0,
        ("arctanh", (2.0,)): 0.0,
        ("leaky_relu", (-3.0,)): -0.03,
        ("hard_sigmoid", (2.5,)): 1.0,
        ("hard_sigmoid", (-2.5,)): 0.0,
        ("hard_sigmoid", (1.0,)): 0.7,
        ("bessel_i0e", (0.0,)): 1.0,
        ("bessel_i1e", (0.0,)): 0.0,
        ("gate", (0.0, 4.0)): 2.0,
        ("left", (2.0, 7.0)): 2.0,
        ("right", (2.0, 7.0)): 7.0,
        ("max", (-1.0, 2.0)): 2.0,
        ("min", (-1.0, 2.0)): -1.0,
        ("mix", (2.0, 6.0, 0.0)): 4.0,
    }
    for (name, args), expected in cases.items():
        arrays = [np.array([a]) for a in args]
        for backend, got in (("numpy", np_apply(name, *arrays)), ("tf", tf_apply(name, *arrays)),
                             ("tf32", tf_apply(name, *arrays, dtype=tf.float32))):
            tol = 1e-6 if backend == "tf32" else 1e-12
            assert got[0] == pytest.approx(expected, rel=tol, abs=tol), (name, args, backend)


def test_binary_closed_forms_on_grid():
    a, b = GRID_A, GRID_B
    sig = 1.0 / (1.0 + np.exp(-a))
    expected = {
        "add": a + b, "sub": a - b, "mul": a * b,
        "max": np.where(a > b, a, b), "min": np.where(a < b, a, b),
        "gate": sig * b, "left": a, "right": b,
        "div": np.array([x / y if y != 0 else 0.0 for x, y in zip(a, b)]),
        "div_eps": np.array([x / (y + 1e-7) if y + 1e-7 != 0 else 0.0 for x, y in zip(a, b)]),
    }

    def real_pow(x, y):
        if x > 0:
            return math.pow(x, y)
        if x == 0:
            return 0.0 if y < 0 else math.pow(x, y)
        return math.pow(x, y) if float(y).is_integer() else 0.0

    expected["pow"] = np.array([real_pow(x, y) for x, y in zip(a, b)])
    for name, ref in expected.items():
        for backend, got in (("numpy", np_apply(name, a, b)), ("tf", tf_apply(name, a, b))):
            assert_close(got, ref, rtol=1e-12, atol=1e-15, what=f"{name} {backend}")


def test_mix_is_the_grafs_convex_combination():
    rng = np.random.default_rng(1)
    a, b, w = rng.normal(size=(3, 200)) * 3
    s = np.array([_sigmoid(v) for v in w])
    ref = s * a + (1.0 - s) * b
    assert_close(np_apply("mix", a, b, w), ref, rtol=1e-12, atol=1e-14)
    assert_close(tf_apply("mix", a, b, w), ref, rtol=1e-12, atol=1e-14)
    # w -> +inf selects x1, w -> -inf selects x2
    assert_close(np_apply("mix", a, b, np.full(200, 50.0)), a, rtol=1e-12, atol=1e-12)
    assert_close(np_apply("mix", a, b, np.full(200, -50.0)), b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_nary_reductions(n):
    rng = np.random.default_rng(n)
    args = [rng.normal(size=30) for _ in range(n)]
    refs = {"sum_n": sum(args), "prod_n": math.prod(args),
            "max_n": np.array([max(col) for col in zip(*args)]),
            "min_n": np.array([min(col) for col in zip(*args)])}
    for name, ref in refs.items():
        assert_close(np_apply(name, *args), ref, rtol=1e-12, atol=1e-14, what=name)
        assert_close(tf_apply(name, *args), ref, rtol=1e-12, atol=1e-14, what=name)
    # broadcasting a scalar input against vectors
    assert_close(np_apply("sum_n", args[0], np.float64(2.0), args[1]), args[0] + 2 + args[1],
                 rtol=1e-12)


# ------------------------------------------------------------------------- gradients
def tf_grads(name, *args, dtype=tf.float64):
    ts = [tf.constant(a, dtype=dtype) for a in args]
    with tf.GradientTape(persistent=True) as tape:
        for t in ts:
            tape.watch(t)
        y = ops.get(name).tf_fn(*ts)
        y = tf.reduce_sum(y * tf.ones_like(ts[0]))  # broadcast to the inputs' shape
    grads = tape.gradient(y, ts, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [g.numpy() for g in grads]


@pytest.mark.parametrize("name", UNARY)
def test_unary_gradient_finite_everywhere_on_grid(name):
    points = np.unique(np.concatenate([GRID, [0.0, 1.0, -1.0, -1e-7, 1e-6, -1e-6]]))
    for dtype in (tf.float64, tf.float32):
        (g,) = tf_grads(name, points.astype(dtype.as_numpy_dtype), dtype=dtype)
        bad = points[~np.isfinite(g)]
        assert bad.size == 0, f"{name} {dtype.name}: non-finite gradient at {bad}"


# kinks, poles and guard boundaries: the finite-difference check stays away from these
_KINKS = {"abs": [0], "relu": [0], "min0": [0], "leaky_relu": [0], "selu": [0], "elu": [0],
          "sqrt": [0], "log": [0], "reciprocal": [0], "arctanh": [-1, 1],
          "hard_sigmoid": [-2.5, 2.5], "log_abs": [-1e-7], "sinc": [-1e-4, 1e-4],
          "bessel_i0e": [0]}  # exp(-|x|) scaling: slopes -+1 on the two sides of 0


@pytest.mark.parametrize("name", UNARY)
def test_unary_gradient_matches_central_differences(name):
    kinks = np.array(_KINKS.get(name, []), dtype=float)
    x = GRID[np.all(np.abs(GRID[:, None] - kinks[None, :]) > 0.05, axis=1)] if kinks.size \
        else GRID
    (g,) = tf_grads(name, x)
    h = 1e-6
    fd = (np_apply(name, x + h) - np_apply(name, x - h)) / (2 * h)
    scale = np.maximum(1.0, np.abs(np_apply(name, x)))
    assert np.all(np.abs(g - fd) <= 1e-5 * scale), (
        f"{name}: gradient differs from central differences by up to "
        f"{np.max(np.abs(g - fd) / scale):.3g}")


def test_guarded_gradients_at_the_singular_points():
    """Guards give slope 0 at the replaced points, with no NaN from the untaken branch."""
    for name, point in (("sqrt", 0.0), ("log", 0.0), ("reciprocal", 0.0), ("arctanh", 1.0),
                        ("arctanh", -1.0), ("log_abs", -1e-7), ("sqrt", -3.0), ("log", -3.0)):
        (g,) = tf_grads(name, np.array([point]))
        assert g[0] == 0.0, (name, point, g)
    (g,) = tf_grads("sinc", np.array([0.0]))
    assert g[0] == 0.0  # sinc is even: flat at 0


@pytest.mark.parametrize("name", BINARY)
def test_binary_gradients_finite_on_2d_grid(name):
    # float32 leaves out the +-1e-8 entries: (1e-8)^-4 has a true slope of 4e40
    coarse = (np.abs(GRID_A) >= 1e-3) | (GRID_A == 0)
    for dtype, (a, b) in ((tf.float64, (GRID_A, GRID_B)),
                          (tf.float32, (GRID_A[coarse], GRID_B[coarse]))):
        ga, gb = tf_grads(name, a, b, dtype=dtype)
        for which, g in (("x1", ga), ("x2", gb)):
            bad = ~np.isfinite(g)
            assert not bad.any(), (f"{name} {dtype.name} d/d{which} not finite at "
                                   f"{list(zip(a[bad][:4], b[bad][:4]))}")


def test_pow_gradient_at_zero_base():
    a = np.array([0.0, 0.0, 0.0, 0.0, 0.0])
    b = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    ga, gb = tf_grads("pow", a, b)
    assert np.all(np.isfinite(ga)) and np.all(np.isfinite(gb))
    assert ga.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]  # d/da a^b at a = 0 for b = 1 is 1
    assert tf_apply("pow", a, b).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "div_eps", "pow", "gate", "left",
                                  "right", "max", "min"])
def test_binary_gradients_match_central_differences(name):
    rng = np.random.default_rng(3)
    a = rng.uniform(0.3, 3.0, size=40) * rng.choice([-1.0, 1.0], size=40)
    b = rng.uniform(0.3, 3.0, size=40) * rng.choice([-1.0, 1.0], size=40)
    if name == "pow":  # smooth region of a^b: positive bases
        a = np.abs(a)
    if name in ("max", "min"):  # away from the tie a == b
        b = np.where(np.abs(a - b) < 0.1, b + 0.5, b)
    ga, gb = tf_grads(name, a, b)
    h = 1e-6
    fa = (np_apply(name, a + h, b) - np_apply(name, a - h, b)) / (2 * h)
    fb = (np_apply(name, a, b + h) - np_apply(name, a, b - h)) / (2 * h)
    scale = np.maximum(1.0, np.abs(np_apply(name, a, b)))
    assert np.all(np.abs(ga - fa) <= 1e-5 * scale), name
    assert np.all(np.abs(gb - fb) <= 1e-5 * scale), name


# ------------------------------------------------------------------- Keras equivalence
KERAS_PAIRS = {
    "swish": lambda t: keras.activations.silu(t),
    "relu": lambda t: keras.activations.relu(t),
    "elu": lambda t: keras.activations.elu(t),
    "selu": lambda t: keras.activations.selu(t),
    "softplus": lambda t: keras.activations.softplus(t),
    "softsign": lambda t: keras.activations.softsign(t),
    "tanh": lambda t: keras.activations.tanh(t),
    "sigmoid": lambda t: keras.activations.sigmoid(t),
    "gelu": lambda t: keras.activations.gelu(t, approximate=False),
}


def _value_and_grad(fn, x, dtype):
    t = tf.constant(x, dtype=dtype)
    with tf.GradientTape() as tape:
        tape.watch(t)
        y = fn(t)
    return np.asarray(y, dtype=np.float64), tape.gradient(y, t).numpy().astype(np.float64)


@pytest.mark.parametrize("name", sorted(KERAS_PAIRS))
@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
def test_matches_keras_builtin_values_and_gradients(name, dtype):
    x = GRID.astype(dtype.as_numpy_dtype)
    tol = 1e-7 if dtype == tf.float64 else 2e-6  # Keras' exact GELU rounds sqrt(1/2)
    for fn, what in ((ops.get(name).tf_fn, "operator"),
                     (lambda t: evaluate(parse(f"{name}(x)"), t, backend="tf"), "graph")):
        y, g = _value_and_grad(fn, x, dtype)
        ky, kg = _value_and_grad(KERAS_PAIRS[name], x, dtype)
        assert_close(y, ky, rtol=tol, atol=tol, what=f"{name} {what} value")
        assert_close(g, kg, rtol=tol, atol=tol, what=f"{name} {what} gradient")


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
def test_x_times_sigmoid_graph_matches_keras_silu(dtype):
    x = GRID.astype(dtype.as_numpy_dtype)
    tol = 1e-12 if dtype == tf.float64 else 1e-6
    y, g = _value_and_grad(lambda t: evaluate(parse("x*sigmoid(x)"), t, backend="tf"), x, dtype)
    ky, kg = _value_and_grad(keras.activations.silu, x, dtype)
    assert_close(y, ky, rtol=tol, atol=tol)
    assert_close(g, kg, rtol=tol, atol=tol)


# ------------------------------------------------------------------ search-space subsets
def test_search_space_sizes():
    assert len(ops.CAFE_UNARY) == 24 and len(ops.CAFE_BINARY) == 6
    assert len(ops.PANGAEA_UNARY) == 27 and len(ops.PANGAEA_BINARY) == 7
    assert len(ops.GRAFS_UNARY) == 23 and len(ops.GRAFS_BINARY) == 9
    assert len(ops.AQUASURF_UNARY) == 27 and len(ops.AQUASURF_BINARY) == 7
    assert set(ops.AQUASURF_NARY) == {"sum_n", "prod_n", "max_n", "min_n"}
    assert 27 * 27 * 7 == 5103
    assert len(ops.AQUASURF_UNARY) ** 2 * len(ops.AQUASURF_BINARY) == 5103  # Table A.3
    assert len(ops.CAFE_UNARY) ** 2 * len(ops.CAFE_BINARY) == 3456  # S_1 of §3.2.1
    assert 4 * len(ops.GRAFS_UNARY) + 2 * len(ops.GRAFS_BINARY) == 110  # GRAFS Appendix C


def test_search_space_members_are_registered_without_duplicates():
    for space in (ops.CAFE_UNARY, ops.CAFE_BINARY, ops.PANGAEA_UNARY, ops.PANGAEA_BINARY,
                  ops.AQUASURF_NARY, ops.GRAFS_UNARY, ops.GRAFS_BINARY):
        assert len(set(space)) == len(space)
    for name in ops.CAFE_UNARY + ops.PANGAEA_UNARY:
        assert ops.get(name).arity == 1, name
    for name in ops.CAFE_BINARY + ops.PANGAEA_BINARY:
        assert ops.get(name).arity == 2, name
    for name in ops.AQUASURF_NARY:
        assert ops.get(name).arity == ops.VARIADIC
    for name in ops.GRAFS_UNARY:
        assert name in ops.REGISTRY or name in ops.GRAFS_TEMPLATES, name
        if name in ops.REGISTRY:
            assert ops.get(name).arity == 1, name
    for name in ops.GRAFS_BINARY:
        assert name in ops.REGISTRY, name
        assert ops.get(name).arity in (2, 3), name  # mix also takes its weight
    for key, text in ops.GRAFS_TEMPLATES.items():
        f = parse(text)
        assert f.params == ("gamma",), key
    x = np.linspace(-2, 2, 5)
    assert np.allclose(evaluate(parse(ops.GRAFS_TEMPLATES["gamma_mul"]), x, {"gamma": 3.0}), 3 * x)
    assert np.allclose(evaluate(parse(ops.GRAFS_TEMPLATES["gamma_add"]), x, {"gamma": 3.0}), x + 3)
    assert np.allclose(evaluate(parse(ops.GRAFS_TEMPLATES["gamma"]), x, {"gamma": 3.0}), 3.0)


def test_pangaea_search_space_sizes_of_table_4_11():
    """Equation 4.12 with U = 27, B = 7, E = 3 reproduces the first rows of Table 4.11."""
    U, B = len(ops.PANGAEA_UNARY), len(ops.PANGAEA_BINARY)

    def size(u, b, e):
        return U ** u * B ** b * sum(math.comb(e, i) for i in range(4))

    assert size(1, 0, 2) == 108
    assert size(2, 0, 3) == 5832
    assert size(3, 0, 4) + size(2, 1, 5) == 427_923


def test_registry_lookup_and_registration_rules():
    assert ops.get("silu") is ops.get("swish")
    assert ops.get("L") is ops.get("left")
    assert ops.get("div_no_nan").name == "div"
    with pytest.raises(KeyError):
        ops.get("no_such_operator")
    assert set(ops.names()) == set(ops.REGISTRY)
    assert set(ops.names(1)) | set(ops.names(2)) | set(ops.names(3)) \
        | set(ops.names(ops.VARIADIC)) == set(ops.REGISTRY)
    for alias, canonical in ops.ALIASES.items():
        assert canonical in ops.REGISTRY, alias
    before = (dict(ops.REGISTRY), dict(ops.ALIASES))
    clash = ops.Operator("brand_new", 1, tf.identity, np.asarray, "{0}", ("swish",))
    with pytest.raises(ValueError):
        ops.register(clash)  # an alias may not take an existing name
    assert (dict(ops.REGISTRY), dict(ops.ALIASES)) == before  # nothing half-registered
    sum_op = ops.get("sum_n")
    assert sum_op.accepts(2) and sum_op.accepts(7) and not sum_op.accepts(1)
    assert ops.get("mix").accepts(3) and not ops.get("mix").accepts(2)
    assert sum_op.arity_text == "2 or more" and ops.get("pow").arity_text == "2"
