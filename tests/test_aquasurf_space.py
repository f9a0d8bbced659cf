"""AQuaSurF search spaces (A.4.3): counts, enumeration order, output de-duplication."""

import itertools

import numpy as np
import pytest

from keras_actfn.expr import ops
from keras_actfn.expr.numeric import fingerprint, fingerprint_key
from keras_actfn.expr.parse import parse
from keras_actfn.search.aquasurf.space import (FOUR_NODE, AquasurfSpace, aquasurf_space,
                                               count_unique, equivalence_classes,
                                               round_outputs, row_digests, time_enumeration,
                                               unique_functions)

U, B, N = ops.AQUASURF_UNARY, ops.AQUASURF_BINARY, ops.AQUASURF_NARY


@pytest.fixture(scope="module")
def space():
    return aquasurf_space()


@pytest.fixture(scope="module")
def outputs(space):
    return np.concatenate([out for _, out in space.batches()])


@pytest.fixture(scope="module")
def classes(space):
    return equivalence_classes(space)


def test_table_a3_operator_counts():
    assert (len(U), len(B), len(N)) == (27, 7, 4)
    assert len(set(U)) == 27 and len(set(B)) == 7


def test_benchmark_space_size_by_formula_and_enumeration(space, outputs):
    assert len(B) * len(U) ** 2 == 5103 == len(space) == space.size()
    assert outputs.shape == (5103, 1000)
    texts = [space.text(i, canonical=False) for i in range(len(space))]
    # independent reference: nested loops in the documented rank order (binary, then the
    # left unary, then the right unary)
    reference = [f"{b}({u1}(x), {u2}(x))" for b, u1, u2 in itertools.product(B, U, U)]
    assert texts == reference
    assert len(set(texts)) == 5103  # both argument orders count


def test_four_node_space_size():
    space = aquasurf_space("four_node")
    assert space.schemas == FOUR_NODE
    u, b, n = len(U), len(B), len(N)
    assert space.schema_sizes() == {
        "binary_unary2_unary": b * u ** 3, "binary_unary_unary2": b * u ** 3,
        "nary_unary_unary_unary": n * u ** 3, "unary_binary_unary_unary": u * b * u * u,
        "unary4": u ** 4}
    assert len(space) == 1_023_516  # the paper's count


def test_texts_parse_back_and_canonical_form(space):
    for i in (0, 1, 27, 729, 2500, 5102):
        call = space.text(i, canonical=False)
        assert parse(call) == space.expr(i)
        assert space.text(i) == str(parse(call))
    assert space.text(5102, canonical=False) == "min(hard_sigmoid(x), hard_sigmoid(x))"
    with pytest.raises(IndexError):
        space.text(5103)


def test_outputs_are_the_fingerprints(space, outputs):
    rng = np.random.default_rng(0)
    for i in rng.choice(len(space), 120, replace=False):
        expected = fingerprint(space.text(int(i), canonical=False))
        np.testing.assert_array_equal(outputs[i], expected)


def test_unique_count_is_stable(space, outputs):
    unique = count_unique(space)
    assert unique == 2750  # the paper reports 2,913; see the module docstring / report
    assert count_unique(space, max_rows=50) == unique  # chunking does not matter
    # insensitive to the rounding: the same classes from 2 to 8 decimals
    for decimals in (2, 8):
        assert len(set(row_digests(outputs, decimals))) == unique


def test_dedup_agrees_with_fingerprint_key(space, classes):
    rng = np.random.default_rng(1)
    # a sample that contains several members of some classes
    reps, counts = np.unique(classes, return_counts=True)
    crowded = reps[counts >= 3][:15]
    sample = set(rng.choice(len(space), 60, replace=False).tolist())
    for r in crowded:
        sample.update(np.flatnonzero(classes == r)[:3].tolist())
    sample = sorted(sample)
    keys = {i: fingerprint_key(space.text(i, canonical=False)) for i in sample}
    for i, j in itertools.combinations(sample, 2):
        assert (keys[i] == keys[j]) == (classes[i] == classes[j]), (space.text(i),
                                                                     space.text(j))
    digests = row_digests(np.stack([fingerprint(space.text(i, canonical=False))
                                    for i in sample]))
    assert [d.hex() for d in digests] == [keys[i] for i in sample]


def test_unique_functions_are_distinct_representatives(space, classes):
    reps = list(unique_functions(space))
    assert len(reps) == 2750
    assert [r.index for r in reps] == sorted(set(classes.tolist()))
    rounded = round_outputs(np.stack([r.outputs for r in reps]))
    assert len(np.unique(rounded.view(np.void(8 * 1000)))) == len(reps)
    text, out = reps[0]  # unpacks as (text, outputs)
    assert text == space.text(0) and out.shape == (1000,)
    for r in reps[:: 300]:
        assert fingerprint_key(r.text) == r.key


@pytest.mark.parametrize("a, b", [
    ("add(relu(x), tanh(x))", "add(tanh(x), relu(x))"),
    ("max(relu(x), zero(x))", "max(relu(x), relu(x))"),
    ("mul(identity(x), sigmoid(x))", "max(swish(x), swish(x))"),
    ("sub(identity(x), neg(x))", "add(identity(x), identity(x))"),
    ("mul(one(x), elu(x))", "min(elu(x), elu(x))"),
])
def test_known_equivalences_collapse(space, classes, a, b):
    index = {space.text(i, canonical=False): i for i in range(len(space))}
    assert classes[index[a]] == classes[index[b]]


def test_different_functions_stay_apart(space, classes):
    index = {space.text(i, canonical=False): i for i in range(len(space))}
    assert classes[index["add(relu(x), zero(x))"]] != classes[index["add(softplus(x), zero(x))"]]
    assert classes[index["sub(relu(x), tanh(x))"]] != classes[index["sub(tanh(x), relu(x))"]]


SMALL = dict(unary=("zero", "one", "identity", "neg", "relu", "abs"), binary=("add", "max"),
             nary=("sum_n", "max_n"))


def test_four_node_schemas_on_small_pools():
    space = AquasurfSpace("four_node", **SMALL)
    u, b, n = 6, 2, 2
    assert len(space) == 2 * b * u ** 3 + n * u ** 3 + u * b * u * u + u ** 4
    texts = [space.text(i, canonical=False) for i in range(len(space))]
    us, bs, ns = SMALL["unary"], SMALL["binary"], SMALL["nary"]
    reference = (
        [f"{p}({a}({c}(x)), {d}(x))" for p, a, c, d in itertools.product(bs, us, us, us)]
        + [f"{p}({a}(x), {c}({d}(x)))" for p, a, c, d in itertools.product(bs, us, us, us)]
        + [f"{p}({a}(x), {c}(x), {d}(x))" for p, a, c, d in itertools.product(ns, us, us, us)]
        + [f"{o}({p}({a}(x), {c}(x)))" for o, p, a, c in itertools.product(us, bs, us, us)]
        + [f"{a}({c}({d}({e}(x))))" for a, c, d, e in itertools.product(us, us, us, us)])
    assert texts == reference
    outputs = np.concatenate([out for _, out in space.batches(max_rows=40)])
    rng = np.random.default_rng(2)
    for i in rng.choice(len(space), 150, replace=False):
        np.testing.assert_array_equal(outputs[i], fingerprint(texts[i]))
    # by-text reference for the class count
    assert count_unique(space) == len({fingerprint_key(t) for t in texts})


def test_time_enumeration_reports_counts():
    timing = time_enumeration("binary_unary_unary")
    assert timing["size"] == 5103 and timing["unique"] == 2750
    assert timing["per_schema"]["binary_unary_unary"]["new_unique"] == 2750
    assert timing["seconds"] > 0


def test_config_round_trip_and_errors():
    space = aquasurf_space("four_node")
    assert AquasurfSpace.from_config(space.get_config()) == space
    assert "1,023,516" in repr(space)
    with pytest.raises(ValueError, match="unknown schema"):
        aquasurf_space("ternary")
    with pytest.raises(KeyError):
        AquasurfSpace(unary=("relu", "no_such_op"))
