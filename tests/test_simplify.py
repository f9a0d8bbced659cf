"""The simplifier: each rewrite, and random trees of every search space, checked value for
value against the unsimplified tree on 10,000 inputs (random parameters too)."""

import numpy as np
import pytest

from keras_actfn.expr import evaluate, parse
from keras_actfn.expr.simplify import simplified_text, simplify
from keras_actfn.search.spaces import CafeSpace, PangaeaSpace

X = np.concatenate([np.linspace(-10, 10, 9_000), np.random.default_rng(0).normal(0, 3, 999),
                    [0.0]])


def _same_values(a, b, params=None):
    """Equal at every input, NaN where NaN (-0 equals 0): the rewrites are exact."""
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(evaluate(a, X, params), evaluate(b, X, params))


@pytest.mark.parametrize("text,expected", [
    ("identity(tanh(x))", "tanh(x)"),
    ("left(sin(x), exp(exp(x)))", "sin(x)"),
    ("right(sinh(min(sinh(x), sinh(x))), sinh(x))", "sinh(x)"),  # a GRAFS export
    ("beta * x * 1", "beta * x"),
    ("1 * x / 1", "x"),
    ("sigmoid(x) + 0", "sigmoid(x)"),
    ("0 + x - 0", "x"),
    ("0 - tanh(x)", "-tanh(x)"),
    ("-(-(x))", "x"),
    ("tanh(x) + tanh(x)", "2 * tanh(x)"),
    ("max(square(x), zero(x))", "relu(square(x))"),
    ("max(0, x)", "relu(x)"),
    ("min(x, 0)", "min0(x)"),
    ("x * one(x)", "x"),
    ("x + exp(2) * 0", "x"),
    ("x * (1 + 2)", "x * 3"),
    ("alpha * 1 * x", "alpha * x"),   # parameters stay learnable, never folded
])
def test_each_rewrite(text, expected):
    assert str(simplify(text)) == expected
    _same_values(parse(text), simplify(text), {"alpha": 1.7, "beta": -0.4})


@pytest.mark.parametrize("text,expected", [
    ("x / x", "x / x"), ("tanh(x) - tanh(x)", "tanh(x) - tanh(x)"),
    ("x * zero(x) + alpha", "x * 0 + alpha"), ("pow(x, 1)", "x^1")])
def test_value_dependent_identities_are_left_alone(text, expected):
    """x/x is 0 at 0 (divide_no_nan), f - f and f*0 are NaN where f overflows, the
    registry's pow has its own rules: no rewrite assumes a value."""
    assert str(simplify(text)) == expected
    _same_values(parse(text), simplify(text))


def test_random_trees_of_every_space_keep_their_values():
    rng = np.random.default_rng(1)
    from keras_actfn.expr import ops

    pangaea, cafe = PangaeaSpace(), CafeSpace(2)
    unary = tuple(u for u in ops.GRAFS_UNARY if u not in ops.GRAFS_TEMPLATES)  # templates
    binary = tuple(b for b in ops.GRAFS_BINARY if b not in ("mix", "gate"))  # insertable
    grafs = PangaeaSpace(unary=unary + ("zero", "one"), binary=binary)  # GRAFS's operators
    trees = [pangaea.initial(rng) for _ in range(150)] + \
        [pangaea.random_graph(rng) for _ in range(150)] + \
        [cafe.sample(rng) for _ in range(150)] + [grafs.random_graph(rng) for _ in range(150)]
    from keras_actfn.search.aquasurf.space import aquasurf_space, unique_functions

    a3 = list(unique_functions(aquasurf_space("binary_unary_unary")))
    trees += [parse(a3[i].text) for i in rng.choice(len(a3), 150, replace=False)]
    shrunk = 0
    for tree in trees:
        params = {name: float(v) for name, v in zip(tree.params, rng.uniform(-2, 2, 8))}
        simple = simplify(tree)
        _same_values(tree, simple, params)
        assert simple.node_count <= tree.node_count
        shrunk += simple.node_count < tree.node_count
        assert simplify(simple) == simple  # a fixpoint
    assert shrunk > 20  # the spaces do produce such trees


def test_simplified_text_passes_labels_through():
    assert simplified_text("original") == "original"
    assert simplified_text("grafs seed 3") == "grafs seed 3"
    assert simplified_text("x * 1") == "x"


def test_displayed_constants_have_four_significant_digits():
    text = "0.7312598623 * tanh(x) + 0.2687401377 * x * 1.0000000001"
    assert simplified_text(text) == "0.7313 * tanh(x) + 0.2687 * x * 1"
    full = simplified_text(text, digits=None)
    assert parse(full) == simplify(text) and "0.7312598623" in full


def test_without_folding_constants_stay():
    assert str(simplify("x * (1 + 2) + left(x, 3)", fold=False)) == "x * (1 + 2) + x"
