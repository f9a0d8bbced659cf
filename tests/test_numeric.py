"""Fingerprints and Gaussian moments against closed forms and seeded Monte Carlo."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from keras_actfn.expr import evaluate, fingerprint, fingerprint_key, gaussian_moments, numeric, \
    parse


# ----------------------------------------------------------------------------- fingerprint
def test_fingerprint_inputs_are_fixed_clipped_normal_samples():
    a = numeric.fingerprint_inputs()
    b = numeric.fingerprint_inputs()
    assert a.shape == (1000,) and a.dtype == np.float64
    assert np.array_equal(a, b)
    assert np.all(a >= -5.0) and np.all(a <= 5.0)
    # N(0, 1) clipped at +-5 has mean 0 and std 0.99999; 1000 draws: SE 0.032 and 0.022
    assert abs(a.mean()) < 0.1
    assert abs(a.std() - 1.0) < 0.07
    assert len(np.unique(a)) == 1000
    # the documented recipe: 1,000 standard-normal draws from a generator seeded with 0
    rng = np.random.default_rng(numeric.FINGERPRINT_SEED)
    assert np.array_equal(a, np.clip(rng.standard_normal(1000), -5.0, 5.0))
    assert not a.flags.writeable  # shared, so read-only


def test_fingerprint_values():
    z = numeric.fingerprint_inputs()
    assert np.array_equal(fingerprint("x"), z)
    assert np.array_equal(fingerprint(parse("x")), z)
    np.testing.assert_allclose(fingerprint("relu(x)"), np.maximum(z, 0), rtol=0, atol=0)
    np.testing.assert_allclose(fingerprint("alpha*x", params={"alpha": 3.0}), 3 * z, rtol=1e-15)
    np.testing.assert_allclose(fingerprint("tanh(x)"), np.tanh(z), rtol=1e-15)
    assert fingerprint("swish(x)").shape == (1000,)
    # every call is the same function of the same points
    assert np.array_equal(fingerprint("gelu(x)"), fingerprint("gelu(x)"))


@pytest.mark.parametrize("a, b", [
    ("x*sigmoid(x)", "swish(x)"),
    ("x + x", "2*x"),
    ("log(sigmoid(x))", "-softplus(-x)"),
    ("max(x, 0)", "relu(x)"),
    ("x^2", "square(x)"),
    ("alpha*x", "x"),  # parameters start at 1
    ("exp(exp(exp(x)))", "1 * exp(exp(exp(x)))"),  # the same overflows match
])
def test_fingerprint_key_equal_for_equivalent_functions(a, b):
    assert fingerprint_key(a) == fingerprint_key(b)


@pytest.mark.parametrize("a, b", [
    ("relu(x)", "x"),
    ("x", "x + 0.001"),
    ("swish(x)", "gelu(x)"),
    ("tanh(x)", "-tanh(x)"),
    ("exp(exp(exp(x)))", "-exp(exp(exp(x)))"),
])
def test_fingerprint_key_differs_for_different_functions(a, b):
    assert fingerprint_key(a) != fingerprint_key(b)


def test_fingerprint_key_rounding_and_params():
    assert fingerprint_key("alpha*x", params={"alpha": 2.0}) == fingerprint_key("2*x")
    # 1e-9 vanishes at 5 decimals (no output sits near a rounding boundary) but not at 12
    assert fingerprint_key("zero(x)") == fingerprint_key("zero(x) + 1e-9")
    assert fingerprint_key("zero(x)", decimals=12) != fingerprint_key("zero(x) + 1e-9",
                                                                      decimals=12)
    assert fingerprint_key("0*x") == fingerprint_key("-0*x") == fingerprint_key("zero(x)")
    key = fingerprint_key("swish(x)")
    assert isinstance(key, str) and len(key) == 40 and int(key, 16) >= 0


# ----------------------------------------------------------------------- Gaussian moments
def _relu_moments(mu, var):
    s = math.sqrt(var)
    a = mu / s
    m1 = mu * norm.cdf(a) + s * norm.pdf(a)
    m2 = (mu * mu + var) * norm.cdf(a) + mu * s * norm.pdf(a)
    return m1, m2


@pytest.mark.parametrize("mu, var", [(0.0, 1.0), (0.7, 2.0), (-1.3, 0.25), (3.0, 1e-4)])
def test_identity_and_square(mu, var):
    m1, m2 = gaussian_moments("x", mu, var)
    assert m1 == pytest.approx(mu, abs=1e-9)
    assert m2 == pytest.approx(mu * mu + var, rel=1e-9, abs=1e-12)
    s1, s2 = gaussian_moments("x^2", mu, var)
    assert s1 == pytest.approx(mu ** 2 + var, rel=1e-9)
    assert s2 == pytest.approx(mu ** 4 + 6 * mu ** 2 * var + 3 * var ** 2, rel=1e-9)


def test_relu_standard_normal():
    m1, m2 = gaussian_moments("relu(x)")
    assert m1 == pytest.approx(1.0 / math.sqrt(2.0 * math.pi), rel=1e-10)
    assert m2 == pytest.approx(0.5, rel=1e-10)


@pytest.mark.parametrize("mu, var", [(0.5, 1.0), (-0.8, 2.5), (2.0, 0.3), (-3.0, 1.0)])
def test_relu_general(mu, var):
    m1, m2 = gaussian_moments("relu(x)", mu, var)
    e1, e2 = _relu_moments(mu, var)
    assert m1 == pytest.approx(e1, rel=1e-9, abs=1e-12)
    assert m2 == pytest.approx(e2, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("fn", ["tanh(x)", "erf(x)", "x^3", "arctan(x)", "softsign(x)"])
@pytest.mark.parametrize("var", [0.5, 1.0, 3.0])
def test_odd_functions_have_zero_mean(fn, var):
    m1, m2 = gaussian_moments(fn, 0.0, var)
    assert abs(m1) < 1e-10
    assert m2 > 0


def test_erf_second_moment_closed_form():
    # E erf(X)^2 for X ~ N(0, s^2) is (2/pi) arcsin(2 s^2 / (1 + 2 s^2))
    for var in (0.5, 1.0, 3.0):
        _, m2 = gaussian_moments("erf(x)", 0.0, var)
        assert m2 == pytest.approx(2 / math.pi * math.asin(2 * var / (1 + 2 * var)), rel=1e-9)


@pytest.mark.parametrize("mu, var", [(0.0, 1.0), (0.3, 0.5), (-1.0, 2.0), (1.0, 4.0)])
def test_exp_lognormal_moments(mu, var):
    m1, m2 = gaussian_moments("exp(x)", mu, var)
    assert m1 == pytest.approx(math.exp(mu + var / 2), rel=1e-9)
    assert m2 == pytest.approx(math.exp(2 * mu + 2 * var), rel=1e-9)


def test_zero_variance_is_a_point_mass():
    assert gaussian_moments("relu(x)", 1.5, 0.0) == (1.5, 2.25)
    assert gaussian_moments("sigmoid(x)", 0.0, 0.0) == (0.5, 0.25)


def test_selu_fixed_point():
    m1, m2 = gaussian_moments("selu(x)", 0.0, 1.0)
    assert abs(m1) < 1e-7
    assert m2 == pytest.approx(1.0, abs=1e-7)


def test_params_default_to_one_and_are_used():
    assert gaussian_moments("alpha*x", 0.2, 1.5) == pytest.approx(gaussian_moments("x", 0.2, 1.5))
    m1, m2 = gaussian_moments("alpha*x + beta", 0.0, 1.0, params={"alpha": 2.0, "beta": 0.5})
    assert m1 == pytest.approx(0.5, abs=1e-10)
    assert m2 == pytest.approx(4.0 + 0.25, rel=1e-9)


# Monte Carlo cross-checks: 1e6 seeded draws; the bound is 6 standard errors
MC_CASES = [
    ("swish(x)", 0.0, 1.0, None),
    ("selu(x)", 0.4, 1.7, None),
    ("x - log(sigmoid(x))", -0.3, 0.8, None),
    ("alpha*x - beta*log(sigmoid(gamma*x))", 0.2, 1.5, {"alpha": 1.3, "beta": 0.7, "gamma": 2.0}),
    ("max(swish(x), alpha*log(sigmoid(relu(x))))", 0.0, 1.0, {"alpha": 0.5}),
    ("hard_sigmoid(x) * elu(x)", 0.5, 2.0, None),
]


@pytest.mark.parametrize("fn, mu, var, params", MC_CASES)
def test_against_monte_carlo(fn, mu, var, params):
    rng = np.random.default_rng(12345)
    x = mu + math.sqrt(var) * rng.standard_normal(1_000_000)
    y = evaluate(parse(fn), x, params)
    mc1, mc2 = y.mean(), np.mean(y * y)
    se1 = y.std() / 1000.0
    se2 = np.std(y * y) / 1000.0
    m1, m2 = gaussian_moments(fn, mu, var, params=params)
    assert abs(m1 - mc1) < 6 * se1 + 1e-12, (m1, mc1, se1)
    assert abs(m2 - mc2) < 6 * se2 + 1e-12, (m2, mc2, se2)


def test_results_are_cached():
    fn, mu, var = "mish(x) * sigmoid(x)", 0.123, 0.789
    before = numeric._moments.cache_info()
    first = gaussian_moments(fn, mu, var)
    after_first = numeric._moments.cache_info()
    second = gaussian_moments(parse(fn), mu, var)  # text and Expr share one entry
    after_second = numeric._moments.cache_info()
    assert after_first.misses == before.misses + 1
    assert after_second.hits == after_first.hits + 1
    assert after_second.misses == after_first.misses
    assert second is first
    # params in any order are one key
    p1 = gaussian_moments("alpha*x + beta", mu, var, params={"alpha": 2, "beta": 3})
    hits = numeric._moments.cache_info().hits
    p2 = gaussian_moments("alpha*x + beta", mu, var, params={"beta": 3.0, "alpha": 2.0})
    assert p2 is p1 and numeric._moments.cache_info().hits == hits + 1


@pytest.mark.parametrize("mean, var", [
    (0.0, -1.0), (float("nan"), 1.0), (0.0, float("nan")), (float("inf"), 1.0),
    (0.0, float("inf")), (-float("inf"), 1.0),
])
def test_bad_input_raises_value_error(mean, var):
    with pytest.raises(ValueError):
        gaussian_moments("relu(x)", mean, var)


def test_bad_function_text_raises_parse_error():
    from keras_actfn.expr import ParseError
    with pytest.raises(ParseError):
        gaussian_moments("relu(x", 0.0, 1.0)


# ------------------------------------------ the quadrature rule, its budget (issue 17, item 2)
def test_kronrod_rule_is_exact_to_degree_3n_plus_1_and_extends_gauss():
    nodes, kronrod, gauss = numeric.kronrod_rule()
    assert nodes.shape == (21,) and np.all(np.diff(nodes) > 0) and np.all(np.abs(nodes) < 1)
    np.testing.assert_allclose(nodes, -nodes[::-1], atol=1e-15)  # symmetric
    gauss_x, gauss_w = np.polynomial.legendre.leggauss(10)
    np.testing.assert_allclose(nodes[1::2], gauss_x, atol=1e-14)  # interleaved with Gauss
    np.testing.assert_allclose(gauss[1::2], gauss_w, atol=1e-15)
    assert np.all(gauss[::2] == 0) and np.all(kronrod > 0)
    for degree in range(32):  # exact: 2/(d+1) for even d, 0 for odd
        exact = 2.0 / (degree + 1) if degree % 2 == 0 else 0.0
        assert nodes ** degree @ kronrod == pytest.approx(exact, abs=1e-14), degree
    assert abs(nodes ** 32 @ kronrod - 2.0 / 33) > 1e-13  # and no further


def _sin_sum(count):
    return "sum_n(" + ",".join(f"sin({k}*x)" for k in range(1, count + 1)) + ")"


def test_hundreds_of_oscillations_are_fast_and_match_the_closed_form():
    # E sin(jZ) sin(kZ) = (exp(-(j-k)^2/2) - exp(-(j+k)^2/2)) / 2 for Z ~ N(0, 1)
    text = _sin_sum(199)  # the probe's 2 KB text: 99 s with point-by-point quadrature
    k = np.arange(1, 200)
    j, k = np.meshgrid(k, k)
    exact = np.sum(np.exp(-0.5 * (j - k) ** 2) - np.exp(-0.5 * (j + k) ** 2)) / 2
    numeric._moments.cache_clear()
    m1, m2 = gaussian_moments(text)
    assert abs(m1) < 1e-9
    assert m2 == pytest.approx(exact, rel=1e-9)


def test_costlier_functions_raise_a_budget_error_quickly():
    import time
    text = _sin_sum(1900)  # ~21 KB
    start = time.perf_counter()
    with pytest.raises(numeric.MomentsBudgetError, match="node evaluations") as info:
        gaussian_moments(text)
    assert time.perf_counter() - start < 10  # budgeted at ~0.3 s; generous for a busy box
    assert isinstance(info.value, ValueError)
    assert "smaller or less oscillatory" in str(info.value)


@pytest.mark.parametrize("fn", ["1/x", "1/(x - 0.3)", "div_eps(1, x)", "1/sqrt(abs(x))"])
def test_poles_give_nan_and_inf_quickly(fn):
    import time
    start = time.perf_counter()
    m1, m2 = numeric._moments(parse(fn), 0.0, 1.0, ())
    assert math.isnan(m1) and m2 == math.inf
    assert time.perf_counter() - start < 2


def test_integrable_singularities_and_kinks_off_the_breaks():
    gamma = 0.5772156649015329
    m1, m2 = gaussian_moments("log(abs(x))")  # E log|Z| = -(gamma + ln 2)/2, var = pi^2/8
    assert m1 == pytest.approx(-(gamma + math.log(2)) / 2, rel=1e-9)
    assert m2 - m1 * m1 == pytest.approx(math.pi ** 2 / 8, rel=1e-8)
    s1, s2 = gaussian_moments("sqrt(abs(x))")  # E|Z|^(1/2) = 2^(1/4) G(3/4)/sqrt(pi)
    assert s1 == pytest.approx(2 ** 0.25 * math.gamma(0.75) / math.sqrt(math.pi), rel=1e-9)
    assert s2 == pytest.approx(math.sqrt(2 / math.pi), rel=1e-9)
    r1, r2 = gaussian_moments("relu(x - 0.3)")  # a kink where no break is placed
    e1, e2 = _relu_moments(-0.3, 1.0)
    assert r1 == pytest.approx(e1, rel=1e-9) and r2 == pytest.approx(e2, rel=1e-9)


def test_largest_tree_within_the_budget():
    from keras_actfn.expr.graph import MAX_SIZE
    wide = "sum_n(" + ",".join(["x"] * (MAX_SIZE - 1)) + ")"  # E (nx)=0, E (nx)^2 = n^2
    m1, m2 = gaussian_moments(wide)
    assert abs(m1) < 1e-9 and m2 == pytest.approx((MAX_SIZE - 1) ** 2, rel=1e-9)


def test_budget_error_is_one_line_with_exit_2_on_the_command_line(capsys):
    from keras_actfn import cli
    from keras_actfn.errors import UserError
    assert issubclass(numeric.MomentsBudgetError, UserError)
    assert cli.main(["show", _sin_sum(1900), "--no-plot"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-actfn show: error: the Gaussian moments of sum_n(sin(1 * x)")
    assert "\n" not in err and "node evaluations" in err
