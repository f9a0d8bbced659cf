"""The CAFE and PANGAEA ask/tell algorithms, driven by hand with synthetic records.

Fitness here is a closed-form stand-in for training: how close a function is to a target
(tanh(x)*x + sin(x), which no single operator matches) on a grid, mapped to [0, 1] like
an accuracy. That makes "evolution beats
random search" and every bookkeeping rule checkable in milliseconds.
"""

import numpy as np
import pytest

from keras_actfn.expr import evaluate, parse
from keras_actfn.search import CafeSpace
from keras_actfn.search.cafe import CafeEvolution, CafeExhaustive, CafeRandom, softmax_fitness
from keras_actfn.search.pangaea import Pangaea, Rerank
from keras_actfn.train.record import EvaluationRecord

GRID = np.linspace(-3, 3, 61)
TARGET = np.tanh(GRID) * GRID + np.sin(GRID)


def fake_accuracy(text):
    with np.errstate(all="ignore"):
        y = np.broadcast_to(evaluate(parse(text), GRID), GRID.shape)
    if not np.all(np.isfinite(y)):
        return None
    return float(np.exp(-np.mean((y - TARGET) ** 2)))


def record(text, acc=None, seed=0):
    acc = fake_accuracy(text) if acc is None else acc
    if acc is None:
        return EvaluationRecord(fn=text, task="t", model="m", recipe="r", seed=seed,
                                status="failed", reason="nan_loss", message="synthetic")
    return EvaluationRecord(fn=text, task="t", model="m", recipe="r", seed=seed,
                            validation_accuracy=acc)


def run(algorithm, limit=100000):
    """Serial driver: ask until None, tell each result. Returns (candidate, record) pairs."""
    seen = []
    while not algorithm.done() and len(seen) < limit:
        candidate = algorithm.ask()
        assert candidate is not None, "a serial run never waits"
        rec = record(candidate.text)
        algorithm.tell(candidate, rec)
        seen.append((candidate, rec))
    return seen


# ------------------------------------------------------------------------------ PANGAEA
def test_pangaea_structure_and_threshold():
    algo = Pangaea(population=8, sample=4, budget=60, threshold=0.3, seed=1)
    seen = run(algo)
    assert len(seen) == 60 and algo.done() and algo.ask() is None
    first, rest = seen[:8], seen[8:]
    assert all(c.parent is None and c.mutation is None for c, _ in first)
    valid = [c.text for c, r in seen if r.ok and r.validation_accuracy >= 0.3]
    assert valid[0] in [c.text for c, _ in first]  # so every later candidate is a child
    assert all(c.mutation in ("insert", "remove", "change", "regenerate") for c, _ in rest)
    # parents are members of the population when the child was asked (sliding window)
    assert all(c.parent in valid for c, _ in rest)
    # below-V and failed results never enter the population; it holds the latest P valid
    assert [m[0] for m in algo.population] == valid[-8:]
    assert all(m[1] >= 0.3 for m in algo.population)
    for c, _ in seen:  # canonical text, parses back
        assert str(parse(c.text)) == c.text


def test_pangaea_parameterizes_and_nonparametric_baseline():
    params = [len(parse(c.text).params) for c, _ in run(Pangaea(population=16, budget=80,
                                                                seed=2))]
    assert max(params) >= 2 and min(params) == 0
    assert all(n <= 3 for n in params)
    plain = run(Pangaea(population=16, budget=40, parameterize=False, seed=2))
    assert all(not parse(c.text).params for c, _ in plain)


def test_pangaea_random_search_baseline_ignores_fitness():
    algo = Pangaea.random_search(budget=30, seed=3)
    assert (algo.population_size, algo.sample_size, algo.threshold) == (1, 1, 0.0)
    last_ok = None
    for c, r in run(algo):
        if c.parent is not None:
            # every child mutates the most recent valid function, whatever its fitness
            assert c.parent == last_ok
        if r.ok:
            last_ok = c.text


def test_pangaea_beats_random_search_on_a_synthetic_task():
    def best(algo):
        return max(r.validation_accuracy or 0 for _, r in run(algo))

    evo = [best(Pangaea(population=16, sample=4, budget=150, threshold=0.2, seed=s))
           for s in range(6)]
    rnd = [best(Pangaea.random_search(budget=150, seed=s)) for s in range(6)]
    assert np.mean(evo) > np.mean(rnd), (evo, rnd)


def test_pangaea_waits_for_the_initial_population_when_asynchronous():
    algo = Pangaea(population=4, sample=2, budget=10, threshold=0.0, seed=0)
    asked = [algo.ask() for _ in range(4)]
    assert algo.ask() is None  # nothing valid yet and results outstanding: wait
    algo.tell(asked[0], record(asked[0].text, acc=0.9))
    child = algo.ask()
    assert child is not None and child.parent == asked[0].text


def test_pangaea_all_failures_fall_back_to_random_graphs():
    algo = Pangaea(population=2, sample=2, budget=6, threshold=0.5, seed=0)
    for _ in range(6):
        c = algo.ask()
        assert c.parent is None  # nothing ever valid: keep drawing random graphs
        algo.tell(c, record(c.text, acc=0.1))
    assert algo.done() and algo.population == []


def test_pangaea_state_round_trip_continues_identically():
    a = Pangaea(population=6, sample=3, budget=40, seed=5)
    run(a, limit=15)
    b = Pangaea(population=6, sample=3, budget=40, seed=5)
    b.load_state_dict(a.state_dict())
    assert b.config() == a.config()
    rest_a = [c.text for c, _ in run(a)]
    rest_b = [c.text for c, _ in run(b)]
    assert rest_a == rest_b and len(rest_a) == 25


def test_pangaea_config_and_bad_arguments():
    cfg = Pangaea(context={"task": "mnist1d"}).config()
    assert cfg["algorithm"] == "pangaea" and cfg["population"] == 64 and cfg["sample"] == 16
    assert cfg["budget"] == 1000 and cfg["threshold"] == 0.2 and cfg["context"]["task"] == \
        "mnist1d"
    with pytest.raises(ValueError, match="population"):
        Pangaea(population=0)


def test_rerank_runs_each_function_with_distinct_seeds():
    algo = Rerank(["relu(x)", "x*sigmoid(x)", "tanh(x)"], runs=2, seed=10)
    seen = []
    while not algo.done():
        c = algo.ask()
        seen.append(c)
        algo.tell(c, record(c.text, seed=c.meta["seed"]))
    assert [c.meta["seed"] for c in seen] == [10, 11] * 3
    ranking = algo.ranking()
    scores = {t: fake_accuracy(t) for t in algo.functions}
    assert ranking[0][0] == max(scores, key=scores.get) and len(ranking[0][2]) == 2
    b = Rerank(["relu(x)", "x*sigmoid(x)", "tanh(x)"], runs=2, seed=10)
    b.load_state_dict(algo.state_dict())
    assert b.ranking() == ranking


# --------------------------------------------------------------------------------- CAFE
def test_softmax_fitness_is_eq_3_2():
    values = np.array([0.5, 0.7, -np.inf, 0.1])
    p = softmax_fitness(values)
    expected = np.exp([0.5, 0.7, 0.1]) / np.exp([0.5, 0.7, 0.1]).sum()
    np.testing.assert_allclose(p[[0, 1, 3]], expected)
    assert p[2] == 0.0
    np.testing.assert_allclose(softmax_fitness([-np.inf] * 4), 0.25)


def test_cafe_exhaustive_enumerates_s1():
    algo = CafeExhaustive()
    texts = set()
    while (c := algo.ask()) is not None:
        texts.add(c.text)
        algo.tell(c, record(c.text, acc=0.5))
    assert len(texts) == CafeSpace(1).size() == 3456 and algo.done()


def test_cafe_random_samples_s2_members():
    algo = CafeRandom(budget=20, seed=0)
    space = CafeSpace(2)
    seen = run(algo)
    assert len(seen) == 20 and all(parse(c.text) in space for c, _ in seen)


def test_cafe_evolution_generations_elites_and_newcomers():
    n, m, e, g = 12, 3, 2, 4
    algo = CafeEvolution(population=n, newcomers=m, elite=e, generations=g, seed=7)
    seen = run(algo)
    space = CafeSpace(2)
    assert all(parse(c.text) in space for c, _ in seen)
    by_gen = {}
    for c, r in seen:
        by_gen.setdefault(c.generation, []).append((c, r))
    assert sorted(by_gen) == list(range(g))
    assert len(by_gen[0]) == n
    for gen in range(1, g):
        batch = [c for c, _ in by_gen[gen]]
        assert len(batch) == n - e  # the elites are not evaluated again
        children = [c for c in batch if c.mutation == "crossover+mutation"]
        assert len(children) == n - m - e and all(len(c.meta["parents"]) == 2 for c in children)
        # parents are members: evaluated earlier (elites may be several generations old)
        prev = {c.text for k in range(gen) for c, _ in by_gen[k]}
        assert all(set(c.meta["parents"]) <= prev for c in children)
    assert algo.done() and algo.ask() is None


def test_cafe_evolution_state_round_trip_mid_generation():
    a = CafeEvolution(population=10, newcomers=2, elite=2, generations=3, seed=1)
    run(a, limit=14)
    b = CafeEvolution(population=10, newcomers=2, elite=2, generations=3, seed=1)
    b.load_state_dict(a.state_dict())
    assert [c.text for c, _ in run(a)] == [c.text for c, _ in run(b)]


def test_cafe_loss_metric_uses_negative_loss():
    algo = CafeEvolution(population=6, newcomers=1, elite=1, generations=2, seed=0,
                         metric="validation_loss")
    c = algo.ask()
    rec = EvaluationRecord(fn=c.text, task="t", model="m", recipe="r", seed=0,
                           validation_loss=0.3)
    algo.tell(c, rec)
    assert algo.members[0][1] == pytest.approx(-0.3)


def test_every_algorithm_names_itself_under_algorithm():
    """One key for the algorithm's name in every config (reports and the runner read it)."""
    from keras_actfn.search.aquasurf.benchmark import ListAlgorithm
    from keras_actfn.search.aquasurf.surrogate import AquasurfSearch
    from keras_actfn.search.grafs.engine import GrafsSeeds

    fns = ["relu(x)", "tanh(x)", "sigmoid(x)", "abs(x)"]
    algorithms = {"cafe-exhaustive": CafeExhaustive(), "cafe-random": CafeRandom(),
                  "cafe-evolution": CafeEvolution(), "pangaea": Pangaea(),
                  "rerank": Rerank(fns), "list": ListAlgorithm(fns),
                  "aquasurf": AquasurfSearch(fns, np.arange(8.0).reshape(4, 2), start=fns[:2]),
                  "grafs": GrafsSeeds(seeds=1)}
    for expected, algorithm in algorithms.items():
        config = algorithm.config()
        assert config["algorithm"] == expected and "name" not in config, expected
