"""AquasurfSearch: regression-guided picks checked against hand computations."""

import numpy as np
import pytest

from keras_actfn.search.aquasurf.surrogate import (AQUASURF_START_FUNCTIONS, AquasurfSearch,
                                                    find_functions)
from keras_actfn.search.engine.driver import run_search
from keras_actfn.train.record import EvaluationRecord


def record(text, accuracy, **info):
    r = EvaluationRecord(fn=text, task="t", model="m", recipe="r", seed=0, info=dict(info))
    if accuracy is None:
        return r.fail("nan_loss", "diverged")
    r.validation_accuracy = accuracy
    return r


TINY = ["relu(x)", "tanh(x)", "sigmoid(x)", "abs(x)", "softsign(x)", "erf(x)"]
TINY_COORDS = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.5, 0.5], [3.0, 1.0],
                        [-1.0, 1.0]])


def hand_knr(train, values, query):
    """Distance-weighted 3-NN regression written out."""
    out = []
    for q in query:
        d = np.sqrt(((train - q) ** 2).sum(axis=1))
        near = np.argsort(d, kind="stable")[:3]
        w = 1.0 / d[near]
        out.append(float((w * values[near]).sum() / w.sum()))
    return np.array(out)


def test_knr_picks_hand_computed_argmax():
    search = AquasurfSearch(TINY, TINY_COORDS, start=TINY[:3], budget=6)
    asked = [search.ask() for _ in range(3)]
    assert [c.text for c in asked] == TINY[:3]
    assert search.ask() is None  # start set out, nothing told: nothing to regress on
    values = {0: 0.80, 1: 0.30, 2: 0.60}
    for c in asked:
        search.tell(c, record(c.text, values[c.meta["index"]]))
    train = TINY_COORDS[:3]
    y = np.array([values[0], values[1], values[2]])
    query = TINY_COORDS[3:]
    expected = hand_knr(train, y, query)
    np.testing.assert_allclose(search.predict([3, 4, 5]), expected, rtol=1e-12)
    pick = search.ask()
    assert pick.meta["index"] == 3 + int(np.argmax(expected))
    assert pick.text == TINY[pick.meta["index"]]


def test_fewer_than_three_results_and_ties_pick_lowest_index():
    # two told points symmetric about the unevaluated ones -> equal predictions
    fns = ["relu(x)", "tanh(x)", "abs(x)", "erf(x)"]
    coords = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    search = AquasurfSearch(fns, coords, start=fns[:2], budget=4)
    a, b = search.ask(), search.ask()
    search.tell(a, record(a.text, 0.5))
    search.tell(b, record(b.text, 0.5))
    assert search.ask().meta["index"] == 2


def test_never_proposes_twice_and_exhausts():
    rng = np.random.default_rng(0)
    fns = [f"{a:.2f} * x + tanh(x)" for a in np.linspace(-1, 1, 30)] + ["relu(x)"]
    coords = rng.normal(size=(len(fns), 2))
    for regressor in ("knr", "rfr", "svr", "random"):
        search = AquasurfSearch(fns, coords, regressor=regressor, budget=100, seed=1)
        seen = []
        while not search.done():
            c = search.ask()
            assert c is not None
            seen.append(c.meta["index"])
            search.tell(c, record(c.text, float(rng.uniform(0.1, 0.9))))
        assert sorted(seen) == list(range(len(fns))), regressor
        assert search.ask() is None


def test_benchmark_start_is_relu_by_outputs_then_seven_random():
    fns = ["tanh(x)", "max(x, 0)"] + [f"{a:.2f} * x" for a in np.linspace(0.1, 2, 20)]
    coords = np.arange(2 * len(fns), dtype=float).reshape(-1, 2)
    search = AquasurfSearch(fns, coords, seed=3)
    asked = [search.ask() for _ in range(8)]
    assert asked[0].meta["index"] == 1  # ReLU, written as max(x, 0)
    indices = [c.meta["index"] for c in asked]
    assert len(set(indices)) == 8
    assert all(c.mutation == "start" for c in asked)
    other = AquasurfSearch(fns, coords, seed=4)
    assert [other.ask().meta["index"] for _ in range(8)] != indices  # the seed matters
    with pytest.raises(ValueError, match="ReLU"):
        AquasurfSearch(["tanh(x)", "erf(x)"], np.zeros((2, 2)))


def test_new_task_start_finds_the_eight_baselines_by_outputs():
    spelled = ["x * sigmoid(x)", "tanh(x)", "elu(x)", "softsign(x)", "max(0, x)",
               "selu(x)", "sigmoid(x)", "log(1 + exp(x))", "abs(x)", "erf(x)"]
    coords = np.random.default_rng(0).normal(size=(len(spelled), 2))
    search = AquasurfSearch(spelled, coords, start="new_task", budget=9)
    asked = [search.ask() for _ in range(8)]
    # baselines in the paper's order: ELU ReLU SELU sigmoid Softplus Softsign Swish tanh
    assert [c.meta["index"] for c in asked] == [2, 4, 5, 6, 7, 3, 0, 1]
    assert find_functions(AQUASURF_START_FUNCTIONS, spelled) == [2, 4, 5, 6, 7, 3, 0, 1]
    with pytest.raises(ValueError, match="selu"):
        AquasurfSearch(["relu(x)", "tanh(x)"], np.zeros((2, 2)), start="new_task")


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(5)
    fns = [f"{a:.3f} * x + {b:.3f} * tanh(x)" for a, b in rng.uniform(-1, 1, (40, 2))]
    fns.append("relu(x)")
    coords = rng.normal(size=(len(fns), 2))
    score = {i: float(v) for i, v in enumerate(rng.uniform(0.1, 0.9, len(fns)))}

    def step(search, pending):
        c = search.ask()
        if c is not None:
            pending.append(c)
        if len(pending) > 2 or c is None:  # keep up to three outstanding (async)
            done = pending.pop(0)
            search.tell(done, record(done.text, score[done.meta["index"]]))
        return None if c is None else c.meta["index"]

    for regressor in ("rfr", "knr", "random"):
        original = AquasurfSearch(fns, coords, regressor=regressor, budget=30, seed=7)
        pending = []
        for _ in range(12):
            step(original, pending)
        state = original.state_dict()
        import json
        state = json.loads(json.dumps(state))
        copy = AquasurfSearch(fns, coords, regressor=regressor, budget=30, seed=7)
        copy.load_state_dict(state)
        pending_copy = list(pending)
        a = [step(original, pending) for _ in range(15)]
        b = [step(copy, pending_copy) for _ in range(15)]
        assert a == b, regressor
        assert original.state_dict() == copy.state_dict()


def test_async_asks_use_only_told_results_and_skip_pending():
    coords = np.array([[0.0, 0.0], [10.0, 0.0], [0.1, 0.0], [0.2, 0.0], [10.1, 0.0],
                       [10.2, 0.0]])
    fns = ["relu(x)", "tanh(x)", "abs(x)", "erf(x)", "softsign(x)", "sigmoid(x)"]
    search = AquasurfSearch(fns, coords, start=fns[:2], budget=6)
    relu, tanh = search.ask(), search.ask()
    search.tell(relu, record(relu.text, 0.9))  # tanh still running
    first, second = search.ask(), search.ask()
    # with one result every prediction equals it: ties go to the lowest free index
    assert [first.meta["index"], second.meta["index"]] == [2, 3]
    search.tell(tanh, record(tanh.text, 0.2))
    third = search.ask()
    # the points near ReLU are pending, so only 4 and 5 compete, predicted from 2 results
    expected = hand_knr(coords[:2], np.array([0.9, 0.2]), coords[4:])
    assert expected[1] > expected[0]  # 5 sees a little more of ReLU than 4 does
    assert third.meta["index"] == 4 + int(np.argmax(expected))
    with pytest.raises(ValueError, match="did not ask"):
        search.tell(relu, record(relu.text, 0.9))


def test_failed_records_count_as_chance_or_measured_value():
    fns = ["relu(x)", "tanh(x)", "abs(x)"]
    search = AquasurfSearch(fns, np.eye(3)[:, :2], start=fns, budget=3)
    a, b, c = search.ask(), search.ask(), search.ask()
    search.tell(a, record(a.text, None, chance=0.1))
    search.tell(b, record(b.text, None))
    measured = record(c.text, 0.11).fail("below_threshold", "at chance")
    search.tell(c, measured)
    assert search.told == {0: 0.1, 1: 0.0, 2: 0.11}
    other = AquasurfSearch(fns, np.eye(3)[:, :2], start=fns, budget=3, failure_fitness=0.05)
    x = other.ask()
    other.tell(x, record(x.text, None, chance=0.1))
    assert other.told[0] == 0.05


def test_config_changes_with_candidates_and_runs_through_driver(tmp_path):
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from search_fakes import FakeEvaluator

    fns = ["relu(x)", "tanh(x)", "abs(x)", "erf(x)", "softsign(x)", "sigmoid(x)",
           "x * tanh(x)", "arctan(x)", "selu(x)", "elu(x)", "softplus(x)", "swish(x)"]
    coords = np.random.default_rng(0).normal(size=(len(fns), 2))
    a = AquasurfSearch(fns, coords, budget=10)
    assert a.config() != AquasurfSearch(fns, coords + 1e-3, budget=10).config()
    assert a.config() != AquasurfSearch(fns[::-1], coords, budget=10).config()
    log = tmp_path / "calls.txt"
    evaluator = FakeEvaluator(log_path=str(log))
    summary = run_search(AquasurfSearch(fns, coords, budget=10), evaluator,
                         tmp_path / "s.db", budget=6)
    assert summary.counts["finished"] == 6
    summary = run_search(AquasurfSearch(fns, coords, budget=10), evaluator,
                         tmp_path / "s.db")
    assert summary.counts["finished"] == 10
    texts = [line.split("\t")[0] for line in log.read_text().splitlines()]
    assert len(texts) == len(set(texts)) == 10
