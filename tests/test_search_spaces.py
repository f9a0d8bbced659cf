"""Search spaces: CAFE's S_d (§3.1.1) and the PANGAEA space size of §4.9 / Table 4.11.

Sizes are checked three ways: against the numbers printed in the dissertation, against the
closed forms, and against brute-force enumeration written here independently of the library.
"""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from keras_actfn.expr import evaluate, ops, parse
from keras_actfn.expr.graph import MAX_DEPTH, X, Apply, Param
from keras_actfn.expr.numeric import fingerprint_inputs
from keras_actfn.search import (CafeSpace, PangaeaSpace, count_graph_shapes,
                                pangaea_space_sizes)

# Table 4.11 as printed: (nodes j, binary nodes b_g, unary nodes u_g, edges e_g, arrangements)
TABLE_4_11_ROWS = [
    (1, 0, 1, 2, 1),
    (2, 0, 2, 3, 1),
    (3, 0, 3, 4, 1), (3, 1, 2, 5, 1),
    (4, 0, 4, 5, 1), (4, 1, 3, 6, 3),
    (5, 0, 5, 6, 1), (5, 1, 4, 7, 6), (5, 2, 3, 8, 2),
    (6, 0, 6, 7, 1), (6, 1, 5, 8, 10), (6, 2, 4, 9, 10),
    (7, 0, 7, 8, 1), (7, 1, 6, 9, 15), (7, 2, 5, 10, 30), (7, 3, 4, 11, 1),
]
# the table's "Activation Functions" column, one figure per G_j
TABLE_4_11_FUNCTIONS = {1: 108, 2: 5_832, 3: 427_923, 4: 31_177_872, 5: 2_210_558_364,
                        6: 152_059_087_566, 7: 10_015_741_690_785}
TABLE_4_11_TOTAL = 10_170_042_948_450  # eq. 4.16


def assert_valid(expr):
    assert parse(str(expr)) == expr
    assert expr.depth <= MAX_DEPTH
    y = evaluate(expr, fingerprint_inputs())
    assert y.shape == fingerprint_inputs().shape


# --------------------------------------------------------------------------------- CAFE
def test_cafe_operators_are_those_of_section_3_1_1():
    space = CafeSpace(1)
    assert len(space.unary) == 24 and len(space.binary) == 6
    assert space.unary == tuple(ops.CAFE_UNARY) and space.binary == tuple(ops.CAFE_BINARY)


def test_s1_has_3456_function_strings_by_formula_and_by_enumeration():
    space = CafeSpace(depth=1)
    assert space.size() == 24 * 24 * 6 == 3_456
    members = list(space.enumerate())
    assert len(members) == 3_456
    assert len(set(members)) == 3_456
    assert len({str(m) for m in members}) == 3_456
    for m in members:  # every member is binary(unary1(x), unary2(x))
        assert m.op.name in space.binary
        assert [a.op.name in space.unary and a.args == (X,) for a in m.args] == [True, True]
        assert m.node_count == 3 and m.depth == 2


def test_every_s1_member_is_a_valid_expression():
    for m in CafeSpace(1).enumerate():
        assert_valid(m)


def test_s2_size_is_the_exact_figure_behind_over_41_billion():
    s2 = CafeSpace(2)
    assert s2.size() == 3_456 ** 3 == 41_278_242_816
    assert 41e9 < s2.size() < 42e9
    # S_d has 2^d - 1 core units, each a binary and two unary choices
    assert CafeSpace(3).size() == 3_456 ** 7
    assert CafeSpace(1, unary=("tanh", "relu"), binary=("add",)).size() == 4


def test_s2_members_are_balanced_core_unit_trees():
    s2 = CafeSpace(2)
    rng = np.random.default_rng(3)
    for _ in range(50):
        m = s2.sample(rng)
        assert m.depth == 4 and m.node_count == 9
        binaries = [n for n in m.walk() if isinstance(n, Apply) and n.op.arity == 2]
        assert len(binaries) == 3
        for core in m.args:  # unary(core_unit(x)) on both sides
            assert core.op.name in s2.unary
            assert core.args[0].op.name in s2.binary
            assert all(a.op.name in s2.unary and a.args == (X,) for a in core.args[0].args)
        assert_valid(m)


def test_rank_and_unrank_are_inverse_and_follow_enumeration_order():
    s1 = CafeSpace(1)
    members = list(s1.enumerate())
    for i in range(0, 3_456, 7):
        assert s1.unrank(i) == members[i]
        assert s1[i] == members[i]
    assert [s1.rank(m) for m in members] == list(range(3_456))
    assert list(s1.enumerate(100, 110)) == members[100:110]
    s2 = CafeSpace(2)
    head = list(itertools.islice(s2.enumerate(), 5))  # lazy over 41 billion
    assert head == [s2.unrank(i) for i in range(5)]
    rng = np.random.default_rng(0)
    for i in [0, 1, s2.size() - 1, *map(int, rng.integers(0, s2.size(), 30))]:
        assert s2.rank(s2.unrank(i)) == i
    with pytest.raises(IndexError):
        s2.unrank(s2.size())
    with pytest.raises(IndexError):
        s1.unrank(-1)


def test_membership():
    s1, s2 = CafeSpace(1), CafeSpace(2)
    member = parse("tanh(x) * min0(x)")  # the best S_1 function of Figure 3.6
    assert member in s1 and member not in s2
    assert parse("tanh(x) + x") not in s1  # x is not a unary operator node
    assert parse("add(tanh(x), arctan(x))") not in s1  # arctan is not in §3.1.1
    assert parse("x") not in s1
    with pytest.raises(ValueError, match="not in S_1"):
        s1.rank(parse("sigmoid(x)"))


def test_sample_is_uniform_over_s1():
    s1 = CafeSpace(1)
    rng = np.random.default_rng(12345)
    n = 3_456 * 10
    counts = np.bincount([s1.rank(s1.sample(rng)) for _ in range(n)], minlength=3_456)
    assert counts.sum() == n
    assert stats.chisquare(counts).pvalue > 1e-3


def test_sample_accepts_seeds_and_is_reproducible():
    s2 = CafeSpace(2)
    assert s2.sample(7) == s2.sample(7)
    assert s2.sample(np.random.default_rng(7)) == s2.sample(7)


def test_cafe_space_config_round_trip_and_errors():
    space = CafeSpace(2)
    config = space.get_config()
    assert config == {"kind": "cafe", "depth": 2, "unary": list(ops.CAFE_UNARY),
                      "binary": list(ops.CAFE_BINARY)}
    assert CafeSpace.from_config(config) == space
    assert CafeSpace(1) != space
    with pytest.raises(ValueError, match="depth"):
        CafeSpace(0)
    with pytest.raises(ValueError, match="deep"):
        CafeSpace(MAX_DEPTH)
    with pytest.raises(ValueError, match="unary operators must take 1"):
        CafeSpace(1, unary=("add",))
    with pytest.raises(ValueError, match="kind"):
        CafeSpace.from_config({"kind": "pangaea"})


# ------------------------------------------------------------------------------ PANGAEA
def test_pangaea_operators_are_table_4_1():
    space = PangaeaSpace()
    assert len(space.unary) == 27 and len(space.binary) == 7


def test_table_4_11_every_row():
    sizes = pangaea_space_sizes()
    got = [(r.nodes, r.binary, r.unary, r.edges, r.arrangements) for r in sizes.rows]
    assert got == TABLE_4_11_ROWS
    assert sizes.by_nodes == TABLE_4_11_FUNCTIONS
    for row in sizes.rows:  # eq. 4.12 times the arrangements
        placements = sum(math.comb(row.edges, i) for i in range(4))
        assert row.functions == row.arrangements * 27 ** row.unary * 7 ** row.binary * placements


def test_table_4_11_total():
    assert pangaea_space_sizes().total == TABLE_4_11_TOTAL
    assert PangaeaSpace().size() == TABLE_4_11_TOTAL
    assert PangaeaSpace().sizes().total == TABLE_4_11_TOTAL


def test_unrestricted_shapes_differ_from_the_table_only_in_the_last_row():
    """All 5 skeletons with 3 binary nodes fit §4.9's definition; the table counts 1."""
    free = pangaea_space_sizes(max_binary_depth=None)
    table = pangaea_space_sizes()
    assert count_graph_shapes(4, 3) == 5 and count_graph_shapes(4, 3, max_binary_depth=2) == 1
    differing = [(a, b) for a, b in zip(free.rows, table.rows) if a != b]
    assert [(a.binary, a.unary, a.arrangements, b.arrangements) for a, b in differing] == \
        [(3, 4, 5, 1)]
    assert free.by_nodes[7] == 10_184_901_486_849
    assert free.total == 10_339_202_744_514


def _shapes(n, leaf_ok):
    """Every tree shape with n operator nodes whose x leaves feed unary nodes; written here
    independently of the library. Yields (unary count, binary count, binary depth)."""
    if n == 0:
        if leaf_ok:
            yield (0, 0, 0)
        return
    for u, b, d in _shapes(n - 1, True):
        yield (u + 1, b, d)
    for left_n in range(1, n - 1):
        for lu, lb, ld in _shapes(left_n, False):
            for ru, rb, rd in _shapes(n - 1 - left_n, False):
                yield (lu + ru, lb + rb + 1, 1 + max(ld, rd))


def test_graph_shape_counts_match_brute_force():
    for n in range(1, 8):
        seen = {}
        for u, b, d in _shapes(n, False):
            key = (u, b)
            all_count, shallow_count = seen.get(key, (0, 0))
            seen[key] = (all_count + 1, shallow_count + (d <= 2))
        for (u, b), (all_count, shallow_count) in seen.items():
            assert count_graph_shapes(u, b) == all_count
            assert count_graph_shapes(u, b, max_binary_depth=2) == shallow_count
        for b in range(n + 1):
            if (n - b, b) not in seen:
                assert count_graph_shapes(n - b, b) == 0


def _all_graphs(n, unary, binary, leaf_ok):
    """Every expression with n operator nodes over the given operators (x feeds unaries)."""
    if n == 0:
        if leaf_ok:
            yield X
        return
    for inner in _all_graphs(n - 1, unary, binary, True):
        for op in unary:
            yield Apply(op, inner)
    for left_n in range(1, n - 1):
        for left in _all_graphs(left_n, unary, binary, False):
            for right in _all_graphs(n - 1 - left_n, unary, binary, False):
                for op in binary:
                    yield Apply(op, left, right)


def _with_params(expr, edges):
    """expr with a parameter multiplying each position (path) in ``edges``, named in preorder."""
    names = dict(zip(sorted(edges), ("alpha", "beta", "gamma")))

    def build(node, path):
        if isinstance(node, Apply):
            node = node.with_args(*(build(a, path + (i,)) for i, a in enumerate(node.args)))
        return Apply("mul", Param(names[path]), node) if path in names else node

    return build(expr, ())


def _paths(expr, path=()):
    yield path
    for i, a in enumerate(expr.children):
        yield from _paths(a, path + (i,))


def test_equation_4_12_matches_counting_actual_expressions():
    """A small space (2 unary, 2 binary operators, up to 2 parameters, 4 nodes) counted by
    building every distinct parameterized expression."""
    unary, binary, max_params, max_nodes = ("tanh", "exp"), ("add", "max"), 2, 4
    distinct = set()
    for n in range(1, max_nodes + 1):
        for graph in _all_graphs(n, unary, binary, False):
            paths = list(_paths(graph))
            assert len(paths) == graph.edge_count + 1
            for k in range(max_params + 1):
                for edges in itertools.combinations(paths, k):
                    distinct.add(_with_params(graph, set(edges)))
    sizes = pangaea_space_sizes(2, 2, max_params, max_nodes, max_binary_depth=None)
    assert len(distinct) == sizes.total
    assert sizes.total == pangaea_space_sizes(2, 2, max_params, max_nodes).total


def test_pangaea_space_config_and_errors():
    space = PangaeaSpace()
    config = space.get_config()
    assert config["kind"] == "pangaea" and config["max_nodes"] == 7 and config["max_params"] == 3
    assert PangaeaSpace.from_config(config) == space
    assert PangaeaSpace(max_params=0) != space
    with pytest.raises(ValueError, match="no second input"):
        PangaeaSpace(binary=("add", "gate"))
    with pytest.raises(ValueError, match="at least two"):
        PangaeaSpace(binary=("add",))
    with pytest.raises(ValueError, match="at most 3"):
        space.parameterize(parse("tanh(x)"), 4)
