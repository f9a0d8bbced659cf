"""Evolutionary operators: CAFE mutation and crossover (§3.1.2-3), PANGAEA initial graphs,
mutations with every special rule of §4.1.1, and parameterization (Figure 4.3).

Property tests (hypothesis) check that every operator keeps expressions valid (text round
trip, depth, evaluation) and inside their space; example tests replay the chapter's figures.
"""

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from keras_actfn.expr import evaluate, ops, parse
from keras_actfn.expr.graph import MAX_DEPTH, X, Apply, Const, Param
from keras_actfn.expr.numeric import fingerprint_inputs
from keras_actfn.search import CafeSpace, PangaeaSpace
from keras_actfn.search import mutations as mut

SEEDS = st.integers(0, 2 ** 32 - 1)
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
GRID = np.concatenate([fingerprint_inputs(), np.linspace(-6.0, 6.0, 241), [0.0, -1.0, 1.0]])
PANGAEA_OPS = set(ops.PANGAEA_UNARY) | set(ops.PANGAEA_BINARY)
FIGURE_4_2A = parse("square(tanh(x) + abs(erf(x)))")  # (tanh(x) + |erf(x)|)^2


def assert_valid(expr):
    assert parse(str(expr)) == expr
    assert expr.depth <= MAX_DEPTH
    y = evaluate(expr, fingerprint_inputs())
    assert y.shape == fingerprint_inputs().shape


def assert_in_pangaea_space(expr, params=False):
    for node in expr.walk():
        if isinstance(node, Apply):
            assert node.op.name in PANGAEA_OPS
        elif isinstance(node, Const):
            assert node.value in (0.0, 1.0)  # the second inputs of inserted binaries
        elif isinstance(node, Param):
            assert params
        else:
            assert node == X


def grown_graph(seed, steps):
    """A random initial graph after ``steps`` mutations."""
    rng = np.random.default_rng(seed)
    graph = mut.random_graph(rng)
    for _ in range(steps):
        graph, _ = mut.mutate(graph, rng)
    return graph, rng


def shape(expr):
    """The graph with its operators erased: positions and leaves only."""
    return tuple((p, n.op.arity if isinstance(n, Apply) else str(n))
                 for p, n in mut.positions(expr))


def op_names(expr):
    return [n.op.name for _, n in mut.node_positions(expr)]


# ------------------------------------------------------------------------------ CAFE
@PROPERTY
@given(SEEDS, st.integers(1, 2))
def test_cafe_crossover_and_mutation_stay_in_s_d(seed, depth):
    space = CafeSpace(depth)
    rng = np.random.default_rng(seed)
    a, b = space.sample(rng), space.sample(rng)
    child = space.crossover(a, b, rng)
    assert child in space
    assert_valid(child)
    mutant = space.mutate(child, rng)
    assert mutant in space
    assert_valid(mutant)
    # mutation: exactly one slot differs, and the operator keeps its arity
    before, after = op_names(child), op_names(mutant)
    diff = [i for i, (p, q) in enumerate(zip(before, after)) if p != q]
    assert len(diff) == 1
    assert ops.get(before[diff[0]]).arity == ops.get(after[diff[0]]).arity


@PROPERTY
@given(SEEDS)
def test_cafe_crossover_swaps_one_same_depth_subtree_from_the_other_parent(seed):
    space = CafeSpace(2)
    rng = np.random.default_rng(seed)
    a, b = space.sample(rng), space.sample(rng)
    child = space.crossover(a, b, rng)
    b_subtrees = {n for _, n in mut.node_positions(b)}
    # the child equals a outside one non-root position, which holds a subtree of b
    candidates = []
    for path, node in mut.node_positions(a):
        if not path:
            continue
        donor = mut.subtree(child, path)
        if donor.depth == node.depth and donor in b_subtrees and \
                mut.replace_at(a, path, donor) == child:
            candidates.append(path)
    assert candidates


def test_cafe_crossover_uses_every_depth_and_position():
    space = CafeSpace(2)
    rng = np.random.default_rng(1)
    a = space.unrank(0)
    b = space.unrank(space.size() - 1)  # differs from a in every slot
    depths = Counter()
    for _ in range(400):
        child = space.crossover(a, b, rng)
        # a and b share no operator, so the crossover point is the outermost new operator
        changed = [p for p, n in mut.node_positions(child) if n.op != mut.subtree(a, p).op]
        top = min(changed, key=len)
        depths[mut.subtree(a, top).depth] += 1
    assert set(depths) == {1, 2, 3}  # unary over x, core unit, unary over a core unit


def test_cafe_operators_refuse_foreign_trees():
    s1, s2 = CafeSpace(1), CafeSpace(2)
    with pytest.raises(ValueError, match="S_2"):
        s2.crossover(s2.sample(0), s1.sample(0))
    with pytest.raises(ValueError, match="one depth"):
        mut.cafe_crossover(s2.sample(0), s1.sample(0))
    with pytest.raises(ValueError, match="S_1"):
        s1.mutate(parse("sigmoid(x)"))


def test_cafe_mutation_follows_figure_3_1_kinds():
    """Unary operators are replaced by unary ones and binary by binary, never by themselves."""
    s1 = CafeSpace(1)
    rng = np.random.default_rng(5)
    tree = parse("tanh(x) * min0(x)")
    slots = Counter()
    for _ in range(600):
        new = s1.mutate(tree, rng)
        (i,) = [i for i, (p, q) in enumerate(zip(op_names(tree), op_names(new))) if p != q]
        slots[i] += 1
    assert set(slots) == {0, 1, 2}  # the binary and both unary nodes are chosen
    assert stats.chisquare(list(slots.values())).pvalue > 1e-3


# ------------------------------------------------------------------ PANGAEA: initial
def test_random_graph_draws_both_shapes_equally_often():
    rng = np.random.default_rng(0)
    n = 4000
    kinds = Counter()
    roots = Counter()
    for _ in range(n):
        g = mut.random_graph(rng)
        assert_in_pangaea_space(g)
        if g.op.arity == 1:  # unary1(unary2(x))
            assert g.node_count == 2 and g.args[0].op.arity == 1 and g.args[0].args == (X,)
            kinds["chain"] += 1
        else:  # binary(unary1(x), unary2(x))
            assert g.node_count == 3
            assert all(a.op.arity == 1 and a.args == (X,) for a in g.args)
            kinds["binary"] += 1
            roots[g.op.name] += 1
    assert stats.binomtest(kinds["chain"], n, 0.5).pvalue > 1e-3
    assert set(roots) == set(ops.PANGAEA_BINARY)
    assert stats.chisquare(list(roots.values())).pvalue > 1e-3


# ----------------------------------------------------------------- PANGAEA: mutations
@PROPERTY
@given(SEEDS, st.integers(0, 15))
def test_mutate_keeps_graphs_valid_and_in_the_space(seed, steps):
    graph, rng = grown_graph(seed, steps)
    child, name = mut.mutate(graph, rng)
    assert name in mut.MUTATIONS
    assert_valid(child)
    assert_in_pangaea_space(child)
    assert child.node_count >= 1
    if graph.node_count > 7:
        assert name == "remove" and child.node_count < graph.node_count
    if graph.node_count == 1:
        assert name != "remove"


@PROPERTY
@given(SEEDS, st.integers(0, 10))
def test_each_mutation_keeps_graphs_valid(seed, steps):
    graph, rng = grown_graph(seed, steps)
    results = [mut.insert(graph, rng), mut.change(graph, rng), mut.regenerate(graph, rng)]
    if graph.node_count > 1:
        results.append(mut.remove(graph, rng))
    for child in results:
        assert_valid(child)
        assert_in_pangaea_space(child)
        assert child.node_count >= 1


@PROPERTY
@given(SEEDS, st.integers(0, 10), st.sampled_from(ops.PANGAEA_BINARY))
def test_inserting_a_binary_operator_leaves_the_function_unchanged(seed, steps, op):
    graph, rng = grown_graph(seed, steps)
    edge = [p for p, _ in mut.positions(graph)][int(rng.integers(graph.edge_count + 1))]
    child = mut.insert(graph, rng, op=op, edge=edge)
    copied = mut.subtree(graph, edge).node_count if op in ("max", "min") else 0
    assert child.node_count == graph.node_count + 1 + copied
    before, after = evaluate(graph, GRID), evaluate(child, GRID)
    defined = ~np.isnan(before)  # pow's guard maps a NaN base to 0: compare the rest
    np.testing.assert_array_equal(after[defined], before[defined])
    if op != "pow":
        np.testing.assert_array_equal(after, before)


def test_insert_gives_a_binary_operator_its_neutral_second_input():
    for edge, _ in mut.positions(FIGURE_4_2A):
        below = mut.subtree(FIGURE_4_2A, edge)
        for op, second in (("add", Const(0)), ("sub", Const(0)), ("mul", Const(1)),
                           ("div", Const(1)), ("pow", Const(1)), ("max", below),
                           ("min", below)):
            child = mut.insert(FIGURE_4_2A, 0, op=op, edge=edge)
            assert mut.subtree(child, edge) == Apply(op, below, second)
            np.testing.assert_array_equal(evaluate(child, GRID), evaluate(FIGURE_4_2A, GRID))


def test_insert_figure_4_2b():
    child = mut.insert(FIGURE_4_2A, 0, op="swish", edge=(0, 0))  # tanh -> add edge
    assert child == parse("square(swish(tanh(x)) + abs(erf(x)))")


def test_insert_chooses_operators_and_edges_uniformly():
    rng = np.random.default_rng(2)
    # on the bare input x (one edge) the inserted operator is the root: uniform over all 34
    names = Counter(mut.insert(X, rng).op.name for _ in range(34 * 60))
    assert set(names) == PANGAEA_OPS
    assert stats.chisquare([names[n] for n in sorted(PANGAEA_OPS)]).pvalue > 1e-3
    graph = parse("tanh(x) + erf(x)")  # 5 edges
    edges = Counter()
    for _ in range(2500):
        child = mut.insert(graph, rng, op="swish")
        (path,) = [p for p, n in mut.positions(child)
                   if isinstance(n, Apply) and n.op.name == "swish"]
        edges[path] += 1
    assert len(edges) == 5
    assert stats.chisquare(list(edges.values())).pvalue > 1e-3


def test_remove_figure_4_2c_keeps_one_input_at_random():
    outcomes = {mut.remove(FIGURE_4_2A, seed, node=(0,)) for seed in range(40)}
    assert outcomes == {parse("square(tanh(x))"), parse("square(abs(erf(x)))")}
    # a unary node's input is rewired to its output
    assert mut.remove(FIGURE_4_2A, 0, node=(0, 1)) == parse("square(tanh(x) + erf(x))")
    assert mut.remove(FIGURE_4_2A, 0, node=()) == parse("tanh(x) + abs(erf(x))")


def test_remove_never_leaves_a_graph_without_nodes():
    graph = parse("tanh(x) + 0")  # as an insert of + on the output edge of tanh(x) leaves it
    assert {mut.remove(graph, seed, node=()) for seed in range(30)} == {parse("tanh(x)")}
    with pytest.raises(ValueError, match="at least two"):
        mut.remove(parse("tanh(x)"), 0)


def test_remove_on_a_one_node_graph_becomes_change():
    rng = np.random.default_rng(0)
    for graph in (parse("tanh(x)"), parse("x + 1"), parse("max(x, x)")):
        for _ in range(20):
            child, name = mut.mutate(graph, rng, mutation="remove")
            assert name == "change"
            assert child.node_count == 1
            assert child.op.arity == graph.op.arity and child.op != graph.op
            assert child.args == graph.args
    names = Counter(mut.mutate(parse("tanh(x)"), rng)[1] for _ in range(800))
    assert "remove" not in names
    assert set(names) == {"insert", "change", "regenerate"}
    assert stats.binomtest(names["change"], 800, 0.5).pvalue > 1e-3  # its own 1/4 + remove's


def test_more_than_seven_nodes_forces_remove():
    rng = np.random.default_rng(0)
    eight = parse("tanh(erf(abs(sigmoid(exp(relu(elu(selu(x))))))))")
    seven = parse("tanh(erf(abs(sigmoid(exp(relu(elu(x)))))))")
    assert eight.node_count == 8 and seven.node_count == 7
    for mutation in (None, *mut.MUTATIONS):
        child, name = mut.mutate(eight, rng, mutation=mutation)
        assert name == "remove" and child.node_count == 7
    assert set(Counter(mut.mutate(seven, rng)[1] for _ in range(200))) == set(mut.MUTATIONS)
    big = parse("max(tanh(x) + erf(x), tanh(x) + erf(x)) * sigmoid(abs(x))")  # 9 nodes
    child, name = PangaeaSpace(max_nodes=8).mutate(big, rng, mutation="change")
    assert name == "remove"


def test_mutations_are_equally_likely():
    rng = np.random.default_rng(4)
    names = Counter(mut.mutate(FIGURE_4_2A, rng)[1] for _ in range(2000))
    assert set(names) == set(mut.MUTATIONS)
    assert stats.chisquare([names[m] for m in mut.MUTATIONS]).pvalue > 1e-3


@PROPERTY
@given(SEEDS, st.integers(0, 10))
def test_change_replaces_one_operator_by_another_of_the_same_arity(seed, steps):
    graph, rng = grown_graph(seed, steps)
    child = mut.change(graph, rng)
    assert shape(child) == shape(graph)
    before, after = op_names(graph), op_names(child)
    diff = [i for i, (p, q) in enumerate(zip(before, after)) if p != q]
    assert len(diff) == 1
    old, new = ops.get(before[diff[0]]), ops.get(after[diff[0]])
    assert old.arity == new.arity
    assert new.name in (ops.PANGAEA_UNARY if new.arity == 1 else ops.PANGAEA_BINARY)


def test_change_figure_4_2d():
    child = mut.change(FIGURE_4_2A, 0, node=(0,))
    assert child.args[0].op.name in set(ops.PANGAEA_BINARY) - {"add"}
    assert child.args[0].args == FIGURE_4_2A.args[0].args


@PROPERTY
@given(SEEDS, st.integers(0, 10))
def test_regenerate_replaces_every_operator_and_keeps_the_structure(seed, steps):
    graph, rng = grown_graph(seed, steps)
    child = mut.regenerate(graph, rng)
    assert shape(child) == shape(graph)
    for old, new in zip(op_names(graph), op_names(child)):
        assert old != new and ops.get(old).arity == ops.get(new).arity


def test_mutate_handles_graphs_outside_the_usual_range():
    # no node at all: only an insert can act
    child, name = mut.mutate(X, 0)
    assert name == "insert" and child.node_count >= 1
    with pytest.raises(ValueError, match="one of"):
        mut.mutate(FIGURE_4_2A, 0, mutation="crossover")


# ------------------------------------------------------------- PANGAEA: parameters
@PROPERTY
@given(SEEDS, st.integers(0, 10), st.integers(0, 3))
def test_parameterize_adds_k_distinct_slots_that_start_as_the_identity(seed, steps, k):
    graph, rng = grown_graph(seed, steps)
    edges = graph.edge_count + 1
    param = mut.parameterize(graph, k, rng)
    assert_valid(param)
    assert_in_pangaea_space(param, params=True)
    expected = min(k, edges)
    assert param.params == ("alpha", "beta", "gamma")[:expected]  # in reading order
    slots = [n for n in param.walk() if isinstance(n, Param)]
    assert len(slots) == expected  # each slot used once
    for node in param.walk():  # each slot multiplies one edge
        if isinstance(node, Apply) and any(isinstance(a, Param) for a in node.args):
            assert node.op.name == "mul" and isinstance(node.args[0], Param)
    np.testing.assert_array_equal(evaluate(param, GRID), evaluate(graph, GRID))
    assert mut.strip_parameters(param) == graph


def test_parameterize_figure_4_3():
    graph = parse("sigmoid(abs(x) - arctan(x))")
    paths = [p for p, _ in mut.positions(graph)]
    assert len(paths) == graph.edge_count + 1 == 6
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(300):
        seen.add(mut.parameterize(graph, 3, rng))
    assert len(seen) == 20  # C(6, 3) edge sets, each its own function string
    assert parse("alpha*sigmoid(beta*abs(x) - arctan(gamma*x))") in seen


def test_parameterize_edges_are_uniform_and_k_is_clipped():
    graph = parse("tanh(x) + erf(x)")  # edges: output, into +, into +, from x, from x
    rng = np.random.default_rng(9)
    where = Counter()
    for _ in range(2500):
        p = mut.parameterize(graph, 1, rng)
        (path,) = [q for q, n in mut.positions(p)
                   if isinstance(n, Apply) and n.op.name == "mul"]
        where[path] += 1
    assert len(where) == 5
    assert stats.chisquare(list(where.values())).pvalue > 1e-3
    one_node = parse("tanh(x)")  # two edges: k = 3 puts a slot on each
    assert mut.parameterize(one_node, 3, 0) == parse("alpha*tanh(beta*x)")
    assert mut.parameterize(one_node, 0, 0) == one_node
    with pytest.raises(ValueError, match="k must be"):
        mut.parameterize(one_node, -1, 0)


def test_parameterize_continues_after_existing_names():
    p = mut.parameterize(parse("alpha*tanh(x)"), 2, 0)
    assert set(p.params) == {"alpha", "beta", "gamma"}


def test_strip_parameters():
    assert mut.strip_parameters(parse("alpha*sigmoid(beta*abs(x) - arctan(gamma*x))")) == \
        parse("sigmoid(abs(x) - arctan(x))")
    assert mut.strip_parameters(parse("tanh(x)*alpha + beta")) == parse("tanh(x) + 1")


@PROPERTY
@given(SEEDS, st.integers(0, 8))
def test_pangaea_space_child_and_initial(seed, steps):
    space = PangaeaSpace()
    rng = np.random.default_rng(seed)
    parent = space.initial(rng)
    assert len(parent.params) <= 3
    for _ in range(steps):
        parent, name = space.child(parent, rng)
        assert name in mut.MUTATIONS
        assert len(parent.params) <= 3
        assert_valid(parent)
        assert_in_pangaea_space(parent, params=True)
    plain = PangaeaSpace(max_params=0)
    child, _ = plain.child(parent, rng)
    assert child.params == ()


def test_parameter_count_is_uniform_over_0_to_3():
    space = PangaeaSpace()
    rng = np.random.default_rng(11)
    graph = FIGURE_4_2A  # 7 edges: every k fits
    counts = Counter(len(space.parameterize(graph, rng=rng).params) for _ in range(2000))
    assert set(counts) == {0, 1, 2, 3}
    assert stats.chisquare([counts[k] for k in range(4)]).pvalue > 1e-3
