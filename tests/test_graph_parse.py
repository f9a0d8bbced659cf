"""Expression trees and the parser: round trips, structure, and hostile input.

Random graphs come from a hypothesis strategy over every registry operator, so operators added
later are exercised automatically.
"""

import copy
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_actfn.expr import (PARAM_NAMES, X, Apply, ArityError, Const, Expr, Param, ParseError,
                              UnknownNameError, Var, evaluate, ops, parse, to_text)
from keras_actfn.expr.parse import MAX_DEPTH, MAX_LENGTH, MAX_NESTING

XS = np.concatenate([np.linspace(-5.0, 5.0, 41), [0.0, 1e-8, -1e-8]])


def same_bits(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


# ------------------------------------------------------------------ hand-picked round trips
ROUND_TRIPS = [
    "log(sigmoid(alpha*x)) * beta*arcsinh(x)",
    "x - log(sigmoid(x))",
    "max(swish(x), 0)",
    "relu(x)^2",
    "max(relu(x),cosh(elu(x)))",
    "sum_n(abs(x),swish(x),sigmoid(x))",
    "-x",
    "--x",
    "-(x + 1)",
    "-sigmoid(x)",
    "1e-07",
    "-2.5",
    "x * 1e-07 - 2.5",
    "(-2)^x",
    "2^3^x",
    "-x^2",
    "x^-2",
    "(x^2)^3",
    "(-x)^2",
    "x - (x - x)",
    "x / (x * x)",
    "x - -2",
    "x * -x",
    "neg(2)",
    "neg(-2)",
    "-neg(2)",
    "pow(neg(2), x)",
    "x^neg(2)",
    "(x + 1)^(x - 1)",
    "alpha*x - beta*log(sigmoid(gamma*x))",
    "mix(relu(x), swish(x), alpha)",
    "prod_n(x, x + 1, x - 1, alpha)",
    "1e+300 * x + 5e-324",
    "lambda * x + omega",
    "pi * x",
]


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_parse_print_parse_round_trip(text):
    g = parse(text)
    printed = str(g)
    assert printed == to_text(g)
    again = parse(printed)
    assert again == g and hash(again) == hash(g)
    assert str(again) == printed  # the canonical text is a fixed point
    assert same_bits(evaluate(g, XS, {"alpha": 1.5, "beta": -0.5}),
                     evaluate(again, XS, {"alpha": 1.5, "beta": -0.5}))


def test_canonical_text_of_known_examples():
    cases = {
        "log(sigmoid(alpha*x)) * beta*arcsinh(x)": "log_sigmoid(alpha * x) * beta * arcsinh(x)",
        "x - log(sigmoid(x))": "x - log_sigmoid(x)",
        "max(relu(x),cosh(elu(x)))": "max(relu(x), cosh(elu(x)))",
        "sum_n(abs(x),swish(x),sigmoid(x))": "sum_n(abs(x), swish(x), sigmoid(x))",
        "mul(x, sigmoid(x))": "x * sigmoid(x)",
        "max(x, x, 0)": "max_n(x, x, 0)",
        "-(x^2)": "-x^2",
        "x^(-2)": "x^-2",
        "pow(-2, x)": "(-2)^x",
        "1e-7": "1e-07",
        "-0": "0",
        "2.50": "2.5",
        "silu(x)": "swish(x)",
        "ln(x)": "log(x)",
        "x ** 2": "x^2",
        "((x))": "x",
    }
    for text, canonical in cases.items():
        assert str(parse(text)) == canonical, text


def test_operator_precedence_and_associativity():
    c = Const
    assert parse("2^3^x") == Apply("pow", c(2), Apply("pow", c(3), X))
    assert parse("-x^2") == Apply("neg", Apply("pow", X, c(2)))
    assert parse("-2^x") == Apply("neg", Apply("pow", c(2), X))
    assert parse("(-2)^x") == Apply("pow", c(-2), X)
    assert parse("-2") == c(-2) and parse("-2.5") == c(-2.5) and parse("1e-07") == c(1e-7)
    assert parse("-x") == Apply("neg", X)
    assert parse("x - x - x") == Apply("sub", Apply("sub", X, X), X)
    assert parse("x / x / x") == Apply("div", Apply("div", X, X), X)
    assert parse("x + x * x") == Apply("add", X, Apply("mul", X, X))
    assert parse("x * x ^ 2") == Apply("mul", X, Apply("pow", X, c(2)))
    assert parse("x ^ -x") == Apply("pow", X, Apply("neg", X))
    # numbers: -2^2 is -(2^2) = -4, (-2)^2 = 4
    assert evaluate(parse("-2^2"), np.zeros(1))[0] == -4.0
    assert evaluate(parse("(-2)^2"), np.zeros(1))[0] == 4.0
    assert evaluate(parse("2^3^2"), np.zeros(1))[0] == 512.0


def test_log_sigmoid_fusion_and_nary_rewrites():
    assert parse("log(sigmoid(x))") == Apply("log_sigmoid", X)
    assert parse("log(sigmoid(x))") == parse("log_sigmoid(x)")
    assert parse("log(x)") == Apply("log", X)
    assert parse("min(x, x, x)") == Apply("min_n", X, X, X)
    assert parse("max(x, 1)") == Apply("max", X, Const(1))
    x = np.array([-800.0, -30.0, 0.0, 30.0])
    y = evaluate(parse("log(sigmoid(x))"), x)
    assert np.all(np.isfinite(y)) and y[0] == pytest.approx(-800.0)  # stable, not log(0)


@pytest.mark.parametrize("infix, call", [
    ("x*sigmoid(x)", "mul(x, sigmoid(x))"),
    ("x + 2*x - x/3", "sub(add(x, mul(2, x)), div(x, 3))"),
    ("relu(x)^2", "pow(relu(x), 2)"),
    ("-x", "neg(x)"),
    ("alpha*x - log(sigmoid(beta*x))", "sub(mul(alpha, x), log_sigmoid(mul(beta, x)))"),
])
def test_infix_and_call_forms_agree(infix, call):
    a, b = parse(infix), parse(call)
    assert a == b
    params = {"alpha": 0.7, "beta": 1.9}
    assert same_bits(evaluate(a, XS, params), evaluate(b, XS, params))
    ref = {"x*sigmoid(x)": XS / (1 + np.exp(-XS)), "relu(x)^2": np.maximum(XS, 0) ** 2,
           "-x": -XS}.get(infix)
    if ref is not None:
        np.testing.assert_allclose(evaluate(a, XS), ref, rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------------------- random graphs
def _consts():
    return st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0, -2.5, 1e-7, 1e-300, -1e-300, 5e-324,
                         1.7976931348623157e308, -1.7976931348623157e308, 1e16, 123456.789,
                         0.1, 1.0 / 3.0, math.pi]),
    ).map(Const)


LEAVES = st.one_of(st.just(X), _consts(), st.sampled_from(PARAM_NAMES).map(Param))
OP_NAMES = sorted(ops.REGISTRY)


def _apply(children):
    def build(name):
        op = ops.get(name)
        n = st.integers(2, 4) if op.arity == ops.VARIADIC else st.just(op.arity)
        return n.flatmap(lambda k: st.lists(children, min_size=k, max_size=k)).map(
            lambda args: Apply(name, *args))

    return st.sampled_from(OP_NAMES).flatmap(build)


def graphs(depth=4):
    """Random Expr trees at most ``depth`` operators deep."""
    strategy = LEAVES
    for _ in range(depth):
        inner = _apply(strategy)
        strategy = st.one_of(LEAVES, inner, inner)  # two in three nodes are operators
    return strategy


RANDOM = settings(max_examples=250, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@RANDOM
@given(graphs())
def test_random_graph_round_trip(g):
    text = str(g)
    again = parse(text)
    assert again == g
    assert hash(again) == hash(g)
    assert str(again) == text
    assert again.depth == g.depth and again.node_count == g.node_count
    assert again.params == g.params
    params = {name: 0.5 + i / 7 for i, name in enumerate(PARAM_NAMES)}
    assert same_bits(evaluate(g, XS, params), evaluate(again, XS, params))


@RANDOM
@given(graphs(depth=3))
def test_random_graph_pickle_copy_and_pretty(g):
    assert pickle.loads(pickle.dumps(g)) == g
    assert copy.deepcopy(g) == g and copy.copy(g) == g
    assert isinstance(g.pretty(), str) and g.pretty()
    assert repr(g) == f"parse({str(g)!r})"


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(graphs(depth=3))
def test_random_graph_tf_backend_shapes_and_dtypes(g):
    for dtype in (tf.float64, tf.float32):
        y = evaluate(g, tf.constant(XS, dtype=dtype), {"alpha": 2.0}, backend="tf")
        assert y.dtype == dtype and tuple(y.shape) == XS.shape
    y = evaluate(g, XS, {"alpha": 2.0})
    assert y.dtype == np.float64 and y.shape == XS.shape


# ---------------------------------------------------------------- equality and hashing
def test_structural_equality_across_construction_paths():
    built = X * Apply("sigmoid", X)
    by_hand = Apply("mul", Var(), Apply(ops.get("logistic"), X))
    for other in (parse("x*sigmoid(x)"), parse("mul(x, sigmoid(x))"),
                  parse("multiply( x ,logistic(x) )"), by_hand):
        assert other == built and hash(other) == hash(built) and not (other != built)
    assert Const(2) == Const(2.0) == parse("2") == parse("2.0") == parse("20e-1")
    assert Const(0.0) == Const(-0.0) and hash(Const(0.0)) == hash(Const(-0.0))
    assert Param("alpha") == parse("alpha") and Var() == X
    assert 2 * X == parse("2*x") and X - 1 == parse("x - 1") and -X == parse("-x")
    assert X ** 2 == parse("x^2") and 1 / X == parse("1/x") and 1 - X == parse("1 - x")
    assert len({parse("x*sigmoid(x)"), built, by_hand}) == 1
    lookup = {parse("swish(x)"): "swish"}
    assert lookup[parse("silu(x)")] == "swish"


def test_different_graphs_differ():
    distinct = [parse(t) for t in (
        "x", "alpha", "beta", "1", "1.0000000000000002", "-1", "x*sigmoid(x)", "swish(x)",
        "sigmoid(x)*x", "x + 1", "1 + x", "x - 1", "x^2", "square(x)", "max(x, 0)", "relu(x)",
        "max_n(x, 0, 0)", "sum_n(x, x)", "x + x", "2*x", "log(x)", "log_sigmoid(x)", "neg(2)",
        "-2", "left(x, 1)", "right(x, 1)", "mix(x, 1, alpha)", "mix(1, x, alpha)")]
    assert len(set(distinct)) == len(distinct)
    for i, a in enumerate(distinct):
        for b in distinct[i + 1:]:
            assert a != b
    assert parse("x") != "x" and parse("1") != 1.0  # an Expr never equals a non-Expr


def test_immutability():
    g = parse("alpha*x + sigmoid(x)")
    c, p, a = Const(2.5), Param("beta"), parse("neg(x)")
    for obj, attr, value in ((X, "foo", 1), (c, "value", 3.0), (p, "name", "gamma"),
                             (a, "op", ops.get("abs")), (a, "args", (Const(1),)),
                             (g, "_hash", 0), (g, "_key", ())):
        with pytest.raises(AttributeError):
            setattr(obj, attr, value)
    for obj, attr in ((c, "value"), (p, "name"), (a, "args"), (g, "_key")):
        with pytest.raises(AttributeError):
            delattr(obj, attr)
    assert c.value == 2.5 and p.name == "beta" and a.args == (X,)
    assert g == parse("alpha*x + sigmoid(x)")
    assert isinstance(a.args, tuple)


def test_construction_validation():
    with pytest.raises(ValueError):
        Const(float("inf"))
    with pytest.raises(ValueError):
        Const(float("nan"))
    with pytest.raises(ValueError):
        Param("a")
    with pytest.raises(ValueError):
        Apply("add", X)
    with pytest.raises(ValueError):
        Apply("sum_n", X)
    with pytest.raises(TypeError):
        Apply("add", X, 1.0)
    with pytest.raises(KeyError):
        Apply("nope", X)
    with pytest.raises(TypeError):
        parse(3.0)
    assert parse(X) is X  # an Expr passes through


# ------------------------------------------------------------------- structural measures
@pytest.mark.parametrize("text, nodes, edges, depth, params", [
    ("x", 0, 0, 0, ()),
    ("2", 0, 0, 0, ()),
    ("alpha", 0, 0, 0, ("alpha",)),
    ("relu(x)", 1, 1, 1, ()),
    ("x*sigmoid(x)", 2, 3, 2, ()),
    ("log(sigmoid(alpha*x)) * beta*arcsinh(x)", 5, 8, 4, ("alpha", "beta")),
    ("alpha*x - beta*log(sigmoid(gamma*x))", 5, 9, 4, ("alpha", "beta", "gamma")),
    ("gamma*x + alpha*gamma", 3, 6, 2, ("gamma", "alpha")),
    ("sum_n(abs(x),swish(x),sigmoid(x))", 4, 6, 2, ()),
    ("max(relu(x),cosh(elu(x)))", 4, 5, 3, ()),
    ("mix(x, relu(x), alpha)", 2, 4, 2, ("alpha",)),
    ("x*sigmoid(x) + x*sigmoid(x)", 5, 8, 3, ()),  # a tree: repeats count twice
    ("--x", 2, 2, 2, ()),
    ("-2", 0, 0, 0, ()),
])
def test_structure_measures(text, nodes, edges, depth, params):
    g = parse(text)
    assert (g.node_count, g.edge_count, g.depth, g.params) == (nodes, edges, depth, params)


def test_walk_and_children():
    g = parse("max(relu(x), cosh(alpha))")
    kinds = [type(n).__name__ if not isinstance(n, Apply) else n.op.name for n in g.walk()]
    assert kinds == ["max", "relu", "Var", "cosh", "Param"]
    assert g.children == (parse("relu(x)"), parse("cosh(alpha)"))
    assert X.children == () and Const(1).children == ()
    assert g.with_args(X, X) == parse("max(x, x)")


def test_substitute():
    g = parse("alpha*x - beta*log(sigmoid(gamma*x))")
    h = g.substitute({"alpha": 2, "gamma": 0.5, "omega": 9})
    assert h == parse("2*x - beta*log_sigmoid(0.5*x)")
    assert h.params == ("beta",)
    assert g.params == ("alpha", "beta", "gamma")  # the original is untouched
    values = {"alpha": 2.0, "beta": -1.25, "gamma": 0.5}
    assert np.allclose(evaluate(g.substitute(values), XS), evaluate(g, XS, values),
                       rtol=1e-15, atol=0)
    assert g.substitute({}) == g
    assert parse("x").substitute({"alpha": 1}) == X


def test_pickle_round_trip_of_known_graphs():
    for text in ROUND_TRIPS:
        g = parse(text)
        back = pickle.loads(pickle.dumps(g, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == g and hash(back) == hash(g) and type(back) is type(g)
    assert pickle.loads(pickle.dumps(X)) is X or pickle.loads(pickle.dumps(X)) == X


# -------------------------------------------------------------------------- evaluation
def test_evaluate_shapes_backends_and_params():
    x = np.linspace(-3, 3, 7)
    for text in ("2", "alpha", "sigmoid(alpha)", "x", "left(1, x)", "sum_n(1, 2, 3)"):
        y = evaluate(parse(text), x, {"alpha": 0.25})
        assert y.shape == x.shape, text
        for dtype in (tf.float32, tf.float64):
            yt = evaluate(parse(text), tf.constant(x, dtype), {"alpha": 0.25}, backend="tf")
            assert yt.shape == x.shape and yt.dtype == dtype, text
            np.testing.assert_allclose(yt.numpy(), y, rtol=1e-6)
    # parameters default to 1
    assert np.array_equal(evaluate(parse("alpha*x"), x), x)
    # per-channel parameters broadcast
    y = evaluate(parse("alpha*x"), np.ones((2, 3)), {"alpha": np.array([1.0, 2.0, 3.0])})
    assert np.array_equal(y, np.array([[1.0, 2.0, 3.0]] * 2))
    with pytest.raises(ValueError):
        evaluate(parse("x"), x, backend="torch")


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("value", [2.0, np.float64(2.0), np.float32(2.0), 2])
def test_tf_backend_accepts_plain_number_params(dtype, value):
    x = np.linspace(-2, 2, 5)
    for text in ("alpha/x", "pow(alpha, x)", "max_n(alpha, x, x)", "mix(x, alpha, alpha)",
                 "sigmoid(alpha)", "alpha"):
        y = evaluate(parse(text), tf.constant(x, dtype), {"alpha": value}, backend="tf")
        assert y.dtype == dtype and y.shape == x.shape, text
        np.testing.assert_allclose(y.numpy(), evaluate(parse(text), x, {"alpha": 2.0}),
                                   rtol=1e-6, err_msg=text)


def test_tf_backend_gradients_reach_variables():
    alpha = tf.Variable(1.5, dtype=tf.float64)
    x = tf.constant(np.linspace(-2, 2, 9))
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(evaluate(parse("x*sigmoid(alpha*x)"), x, {"alpha": alpha},
                                   backend="tf"))
    g = tape.gradient(y, alpha).numpy()
    xs = x.numpy()
    s = 1 / (1 + np.exp(-1.5 * xs))
    assert g == pytest.approx(np.sum(xs * xs * s * (1 - s)), rel=1e-12)


# ------------------------------------------------------------------------------ errors
TOKENS = (["x", "alpha", "beta", "pi", "lambda", "0", "1", "2.5", "1e-7", "1e400", ".5", "3.",
           "+", "-", "*", "/", "^", "**", "(", ")", ",", " ", "  ", "sigmoid", "max", "min",
           "sum_n", "mix", "log", "pow", "sigmod", "foo", "_", "e", "E", "$", "#", "\t", "\n",
           "√", "σ", "٣"] + sorted(ops.ALIASES))


def _parse_or_parse_error(text):
    try:
        g = parse(text)
    except ParseError as err:
        assert isinstance(err.position, int) and 0 <= err.position <= max(len(text), MAX_LENGTH)
        assert isinstance(str(err), str)
        return None
    assert isinstance(g, Expr)
    assert parse(str(g)) == g
    return g


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_random_text_raises_only_parse_error(text):
    _parse_or_parse_error(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=30).map("".join))
def test_fuzz_token_soup_raises_only_parse_error(text):
    _parse_or_parse_error(text)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["(", ")", "-", "x", "+", "^", "sigmoid(", ","]),
                min_size=50, max_size=400).map("".join))
def test_fuzz_long_soups_raise_only_parse_error(text):
    _parse_or_parse_error(text)


@pytest.mark.parametrize("text", [
    "(" * 5000 + "x" + ")" * 5000,
    "x" + "+x" * 10000,
    "x" + "+x" * 9000,
    "x" + "*x" * 5000,
    "-" * 5000 + "x",
    "-" * 5000 + "2",
    "x" + "^x" * 5000,
    "sigmoid(" * 2000 + "x" + ")" * 2000,
    "(" * 100000,
    "max(" * 3000,
])
def test_deep_or_long_input_gives_parse_error_not_recursion_error(text):
    with pytest.raises(ParseError):
        parse(text)


def test_limits_are_generous_enough_for_real_formulas():
    assert parse("(" * (MAX_NESTING - 1) + "x" + ")" * (MAX_NESTING - 1)) == X
    chain = parse("x" + "+x" * MAX_DEPTH)
    assert chain.depth == MAX_DEPTH


@pytest.mark.parametrize("text, suggestion", [
    ("sigmod(x)", "sigmoid"),
    ("swsh(x)", "swish"),
    ("arcsin(x)", "arcsinh"),
    ("x * alpah", "alpha"),
    ("reluu(x)", "relu"),
])
def test_unknown_names_suggest_close_matches(text, suggestion):
    with pytest.raises(UnknownNameError) as info:
        parse(text)
    assert suggestion in info.value.suggestions
    assert suggestion in str(info.value)
    assert isinstance(info.value, ParseError)


def test_unknown_name_with_no_close_match():
    with pytest.raises(UnknownNameError) as info:
        parse("qqqqqq(x)")
    assert info.value.suggestions == ()


@pytest.mark.parametrize("text, position", [
    ("max(x)", 0),
    ("x + sigmoid(x, x)", 4),
    ("mix(x, x)", 0),
    ("sum_n(x)", 0),
    ("add(x, x, x)", 0),
])
def test_wrong_arity(text, position):
    with pytest.raises(ArityError) as info:
        parse(text)
    assert info.value.position == position


@pytest.mark.parametrize("text, position, kind", [
    ("x + * x", 4, ParseError),
    ("sigmod(x)", 0, UnknownNameError),
    ("x * sigmod(x)", 4, UnknownNameError),
    ("  foo", 2, UnknownNameError),
    ("x $ 2", 2, ParseError),
    ("(x + 1", 6, ParseError),
    ("x + 1)", 5, ParseError),
    ("x +", 3, ParseError),
    ("", 0, ParseError),
    ("   ", 0, ParseError),
    ("2x", 1, ParseError),
    ("relu + x", 4, ParseError),  # operator without its parentheses
    ("x(2)", 0, ParseError),
    ("+x", 0, ParseError),
    ("1e400", 0, ParseError),
    ("max(x,)", 6, ParseError),
    ("f(x)", 0, UnknownNameError),
])
def test_error_positions(text, position, kind):
    with pytest.raises(kind) as info:
        parse(text)
    assert info.value.position == position, str(info.value)
    assert info.value.text == text
    if text.strip():
        assert "^" in str(info.value)  # the caret line points at the spot


# -------------------------------------------------------------------- seed formulas
SEED_FILE = Path(__file__).parent / "data" / "seed_formulas.txt"
SEED_X = np.linspace(-5.0, 5.0, 1001)


def _seed_entries():
    """(group, line number, text, may_overflow) for every formula line of the data file."""
    entries, group = [], None
    for lineno, raw in enumerate(SEED_FILE.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("# ==="):
            group = stripped[len("# ==="):].strip()
            continue
        text, _, comment = raw.partition("#")
        text = text.strip()
        if text:
            entries.append((group, lineno, text, "overflows" in comment))
    return entries


SEED_ENTRIES = _seed_entries()


@pytest.mark.parametrize("group, lineno, text, may_overflow", SEED_ENTRIES,
                         ids=[f"line{e[1]}" for e in SEED_ENTRIES])
def test_seed_formula_parses_round_trips_and_evaluates(group, lineno, text, may_overflow):
    assert group, f"line {lineno} has no '# === table' header above it"
    g = parse(text)
    again = parse(str(g))
    assert again == g and hash(again) == hash(g)
    y = evaluate(g, SEED_X)
    assert y.shape == SEED_X.shape
    assert not np.isnan(y).any(), f"{text} gives NaN on [-5, 5]"
    if not may_overflow:
        assert np.isfinite(y).all(), f"{text} is not finite on [-5, 5]"
    y_tf = evaluate(g, tf.constant(SEED_X), backend="tf").numpy()
    np.testing.assert_allclose(y_tf, y, rtol=1e-9, atol=1e-12, err_msg=text)


def test_seed_file_covers_the_tables():
    groups = {}
    for group, _, text, _ in SEED_ENTRIES:
        groups.setdefault(group, []).append(text)
    headers = " | ".join(groups)
    for table in ("Figure 3.1", "Table 3.1", "Table 3.2", "Table 3.3", "Figure 3.6",
                  "Figure 4.2", "Figure 4.3", "Table 4.2", "Table 4.3", "Table 4.4", "Table 4.5",
                  "Table 4.6", "Table 4.7", "Figure 4.6", "Table 4.8", "§4.7", "Figure 5.6",
                  "Table 6.1", "Table 6.2", "GRAFS Figure 1", "GRAFS Appendix F, Eq. 1",
                  "GRAFS Appendix F, Eq. 2", "GRAFS Appendix F, Eq. 3"):
        assert table in headers, table
    assert sum(len(v) for k, v in groups.items() if "Table 3.1" in k) == 14
    assert sum(len(v) for k, v in groups.items() if "Table 4.2" in k) == 30
    assert sum(len(v) for k, v in groups.items() if "Table 4.8" in k) == 19
    assert sum(len(v) for k, v in groups.items() if "Table 6.1" in k) == 17
    assert len(groups["GRAFS Appendix F, Eq. 1 (ResNet20 / CIFAR10)"]) == 6  # F^3: two readings
    assert len(groups["GRAFS Appendix F, Eq. 2 (ViT-tiny / CIFAR10)"]) == 5
    assert len(groups["GRAFS Appendix F, Eq. 3 (miniGPT / TinyStories)"]) == 5
    assert len(SEED_ENTRIES) >= 200


def test_seed_formulas_use_the_operators_the_seeds_name():
    used = set()
    for _, _, text, _ in SEED_ENTRIES:
        used |= {n.op.name for n in parse(text).walk() if isinstance(n, Apply)}
    for name in ("swish", "log_sigmoid", "bessel_i0e", "erfc", "hard_sigmoid", "expm1",
                 "div_eps", "log_abs", "gaussian", "leaky_relu", "elish", "mish", "gelu",
                 "sqrt", "selu", "softsign", "arcsinh", "sinh", "cosh"):
        assert name in used, name


def _seed_value(text, x, params=None):
    return evaluate(parse(text), np.array([float(x)]), params)[0]


def test_seed_formula_spot_values():
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    cases = [
        ("relu(x)^3", 2.0, 8.0),
        ("0.5004*relu(x)^2 + 0.4996*relu(x)", 2.0, 0.5004 * 4 + 0.4996 * 2),
        ("swish(x)/selu(1)", 1.0, sig(1.0) / 1.0507009873554805),
        ("elu(elu(alpha*x) + log(sigmoid(0)))", 0.0, -0.5),  # elu(-ln 2) = 1/2 - 1
        ("alpha*x - beta*log(sigmoid(gamma*x))", 1.0, 1.0 + math.log(1.0 + math.exp(-1.0))),
        ("min(x^2, sinh(x))^2 * leaky_relu(x)", -1.0, math.sinh(-1.0) ** 2 * -0.01),
        ("(exp(1) - 1) * swish(x)", 1.0, (math.e - 1) * sig(1.0)),
        ("cosh(1) * swish(x)", -2.0, math.cosh(1) * -2.0 * sig(-2.0)),
        ("arctan(x) * min(x, 0)", -1.0, math.atan(-1.0) * -1.0),
        ("sigmoid(x) * erf(x)", 0.5, sig(0.5) * math.erf(0.5)),
        ("x * erfc(elu(x))", -1.0, -math.erfc(math.exp(-1.0) - 1.0)),
        ("selu(sinh(expm1(arctan(x))))", 1.0,
         1.0507009873554805 * math.sinh(math.exp(math.atan(1.0)) - 1.0)),
        ("0.5775*relu(x) + 0.4225*swish(x)", 3.0, 0.5775 * 3 + 0.4225 * 3 * sig(3.0)),
        ("max(div_eps(min(x^3, 0), max(sin(x), 0)), 0) - min(x^2, max(x, 0))", -1.0,
         0.0 - 0.0),  # -1/eps is negative: max(., 0) = 0
        ("max(div_eps(min(x^3, 0), max(sin(x), 0)), 0) - min(x^2, max(x, 0))", 0.5,
         -0.25),
        ("-(arctan(x^3) * cos(1)) * -(arctan(min(x, 0)) * max(abs(x), 0))", -2.0,
         math.atan(-8.0) * math.cos(1.0) * math.atan(-2.0) * 2.0),
    ]
    for text, x, expected in cases:
        assert _seed_value(text, x) == pytest.approx(expected, rel=1e-12, abs=1e-15), text


def test_section_4_7_closed_forms_match_the_registry():
    """The §4.7 definitions, parsed from text, equal the registry operators."""
    pairs = {
        "max(x, 0)": "relu(x)",
        "0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3)))": "gelu_tanh(x)",
        "max(0, min(1, 0.2*x + 0.5))": "hard_sigmoid(x)",
        "x*tanh(softplus(x))": "mish(x)",
        "(1 + exp(-x))^-1": "sigmoid(x)",
        "log(exp(x) + 1)": "softplus(x)",
        "x/(abs(x) + 1)": "softsign(x)",
        "x*sigmoid(x)": "swish(x)",
        "(exp(x) - exp(-x))/(exp(x) + exp(-x))": "tanh(x)",
        "relu(x) + alpha*min(x, 0)": "x",  # PReLU with its slot at 1 is the identity
    }
    for closed, op in pairs.items():
        np.testing.assert_allclose(evaluate(parse(closed), SEED_X), evaluate(parse(op), SEED_X),
                                   rtol=1e-12, atol=1e-14, err_msg=closed)


def test_every_tree_within_the_depth_limit_round_trips_and_deeper_trees_are_refused():
    from keras_actfn.expr.graph import MAX_DEPTH as GRAPH_MAX_DEPTH
    g = X
    for i in range(GRAPH_MAX_DEPTH):  # alternate shapes that each add a nesting level
        g = Apply(("sigmoid", "neg", "pow")[i % 3], *((g,) if i % 3 < 2 else (Const(-2.0), g)))
    assert g.depth == GRAPH_MAX_DEPTH
    assert parse(str(g)) == g
    assert pickle.loads(pickle.dumps(g)) == g
    with pytest.raises(ValueError, match="deeper"):
        Apply("sigmoid", g)


def test_long_chains_fail_at_the_first_operator_past_the_limit():
    from keras_actfn.expr.graph import MAX_DEPTH as GRAPH_MAX_DEPTH
    with pytest.raises(ParseError, match="deep") as info:
        parse("x" + "+x" * 5000)
    assert info.value.position == 1 + 2 * GRAPH_MAX_DEPTH  # the 65th '+'


def test_fusions_apply_to_graphs_built_in_code_too():
    built = Apply("log", Apply("sigmoid", Param("alpha") * X))
    assert built == parse("log_sigmoid(alpha * x)") == parse("log(sigmoid(alpha*x))")
    assert parse(str(built)) == built and built.op.name == "log_sigmoid"


# ------------------------------------------- the tree's limits and the parser's agree (issue 17)
def test_a_wide_sum_prints_past_the_old_length_limit_and_parses_back():
    wide = Apply("sum_n", *([X] * 7000))  # the probe's tree: 21,005 characters
    text = str(wide)
    assert len(text) > 20_000
    assert parse(text) == wide
    assert wide.size == 7001


def test_a_negative_constant_deep_inside_parses_back():
    deep = Apply("pow", X, Const(-2.0))  # prints x^-2: the minus adds no nesting level
    for _ in range(63):
        deep = Apply("tanh", deep)
    assert deep.depth == MAX_DEPTH
    assert str(deep).endswith("x^-2" + ")" * 63)
    assert parse(str(deep)) == deep


def test_size_limit_is_enforced_by_the_constructor_and_the_parser():
    from keras_actfn.expr.graph import MAX_SIZE
    assert Apply("sum_n", *([X] * (MAX_SIZE - 1))).size == MAX_SIZE
    with pytest.raises(ValueError, match="larger than"):
        Apply("sum_n", *([X] * MAX_SIZE))
    # shared sub-trees count once per use, as printed: no small object prints huge text
    half = Apply("sum_n", *([X] * (MAX_SIZE // 2)))
    with pytest.raises(ValueError, match="larger than"):
        Apply("add", half, half)
    with pytest.raises(ParseError, match="larger than") as info:
        parse("sum_n(" + ",".join(["x"] * MAX_SIZE) + ")")
    assert info.value.position == 0  # the call that would exceed it


def _widest_leaf(i):
    # constants printing 24 characters, negative (wrapped when they are a power's base)
    return Const(-(1.2345678901234567 + i * 1e-16) * 1e-300)


def test_the_longest_printable_trees_fit_the_parsers_length_limit():
    from keras_actfn.expr.graph import MAX_SIZE
    leaves = [_widest_leaf(i) for i in range(MAX_SIZE - 1)]
    assert max(len(str(c)) for c in leaves) == 24
    flat = Apply("sum_n", *leaves)
    pairs = Apply("sum_n", *[Apply("pow", leaves[2 * i], leaves[2 * i + 1])
                             for i in range((MAX_SIZE - 1) // 3)])
    for tree in (flat, pairs):
        text = str(tree)
        assert len(text) <= MAX_LENGTH
        assert parse(text) == tree
        assert _token_count(text) <= 5 * tree.size  # within MAX_TOKENS (6 per node)


def _token_count(text):
    from keras_actfn.expr.parse import _Parser
    return len(_Parser(text).tokens) - 1  # the end marker is not a token of the text


def test_nesting_of_printed_text_within_both_parser_limits():
    from keras_actfn.expr.parse import MAX_PREFIX
    # every node adds one level of parentheses and one prefix: ((-x)^-(...)) shapes
    g = X
    for i in range(MAX_DEPTH):
        g = (Apply("neg", g) if i % 2 else Apply("pow", Const(-3.5), g))
    assert g.depth == MAX_DEPTH
    assert parse(str(g)) == g
    h = Const(-2.0)
    for i in range(MAX_DEPTH):  # (((-2)^x)^x)^x...: the leaf's parentheses too
        h = Apply("pow", h, X) if i % 2 else Apply("neg", h)
    assert parse(str(h)) == h
    assert MAX_NESTING == MAX_DEPTH + 1 and MAX_PREFIX == MAX_DEPTH
    assert _token_count(str(g)) <= 5 * g.size and _token_count(str(h)) <= 5 * h.size


def test_token_limit_stops_long_texts_early():
    from keras_actfn.expr.parse import MAX_TOKENS
    import time
    start = time.perf_counter()
    with pytest.raises(ParseError, match=f"more than {MAX_TOKENS} tokens"):
        parse("sum_n(" + "x," * MAX_TOKENS + "x)")
    assert time.perf_counter() - start < 5


def _deep_tree(draw_ops, draw_leaf, depth):
    g = draw_leaf(0)
    for i in range(depth):
        op = draw_ops(i)
        if op.arity == 1:
            g = Apply(op, g)
        else:
            other = draw_leaf(i + 1)
            g = Apply(op, g, other) if i % 2 else Apply(op, other, g)
    return g


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(sorted({ops.get(n).name for n in ops.ALIASES})),
                min_size=1, max_size=MAX_DEPTH),
       st.lists(st.one_of(st.just(X), st.sampled_from([Param("alpha"), Param("lambda")]),
                          st.floats(allow_nan=False, allow_infinity=False).map(Const)),
                min_size=MAX_DEPTH + 1, max_size=MAX_DEPTH + 1))
def test_fuzz_deepest_trees_of_any_operators_round_trip(names, leaves):
    usable = [ops.get(n) for n in names if ops.get(n).arity in (1, 2)
              or ops.get(n).accepts(2)]
    if not usable:
        return

    def pick(i):
        return usable[i % len(usable)]

    try:
        g = _deep_tree(pick, lambda i: leaves[i], len(usable))
    except ValueError:  # e.g. a fusion shortened nothing but an arity did not fit
        return
    assert parse(str(g)) == g
    assert len(str(g)) <= MAX_LENGTH
    assert _token_count(str(g)) <= 5 * g.size


def _recurse_then(n, fn):
    return fn() if n == 0 else _recurse_then(n - 1, fn)


@pytest.mark.parametrize("text, depth", [
    ("sigmoid(" * MAX_NESTING + "-" * MAX_DEPTH + "x" + ")" * MAX_NESTING, None),
    ("sigmoid(-" * MAX_DEPTH + "x" + ")" * MAX_DEPTH, None),
    ("(" * MAX_NESTING + "x^" * MAX_DEPTH + "x" + ")" * MAX_NESTING, MAX_DEPTH),
    ("sigmoid(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH, MAX_DEPTH),
])
def test_the_deepest_texts_stay_far_from_the_recursion_limit(text, depth):
    # both nesting limits at once, called 300 frames down a caller's stack: a tree or a
    # ParseError, never a RecursionError
    if depth is None:
        with pytest.raises(ParseError, match="deep"):
            _recurse_then(300, lambda: parse(text))
    else:
        assert _recurse_then(300, lambda: parse(text)).depth == depth
