"""AQuaSurF candidate pools: FIM features cached in the store, the §6.3.1 filter, the ready
prefix, parallel mode (A.4.1) growing a live search, and the runner's FIM+outputs path."""

import sqlite3
import time

import numpy as np
import pytest

from keras_actfn.search.aquasurf.benchmark import fisher_cdf
from keras_actfn.search.aquasurf.features import cdf_matrix, cdf_vector, fim_vectors
from keras_actfn.search.aquasurf.fim import activation_fim_features
from keras_actfn.search.aquasurf.pool import CandidatePool, FimFeatures, fim_kind
from keras_actfn.search.aquasurf.surrogate import (AQUASURF_START_FUNCTIONS, AquasurfSearch,
                                                    find_functions)
from keras_actfn.search.engine.store import SCHEMA_VERSION, Store
from keras_actfn.train.record import EvaluationRecord


def _record(text, accuracy):
    r = EvaluationRecord(fn=text, task="t", model="m", recipe="r", seed=0)
    r.validation_accuracy = accuracy
    return r


class FakeFim:
    """Stands in for FimFeatures: a CDF from a hash of the text; ``bad`` texts invalid."""

    kind = "fim/fake"

    def __init__(self, bad=()):
        self.bad, self.calls = set(bad), []

    def __call__(self, texts):
        self.calls.extend(texts)
        out = []
        for text in texts:
            if text in self.bad:
                out.append({"cdf": None, "layers": [[4, 10]], "valid": False, "reason": "nan"})
                continue
            r = np.random.default_rng(sum(map(ord, text)))
            cdf = np.cumsum(r.dirichlet(np.ones(4))).round(6)
            cdf[-1] = 1.0
            out.append({"cdf": cdf.tolist(), "layers": [[4, 10]], "valid": True,
                        "reason": ""})
        return out


TEXTS = [f"x * {k}" if k else "relu(x)" for k in range(30)]
OUTPUTS = np.random.default_rng(0).normal(size=(30, 20))


def test_cdf_vector_matches_fim_vectors_of_the_histograms():
    """The eq. 6.16 vector rebuilt from a stored CDF equals fim_vectors of the histograms."""
    rng = np.random.default_rng(1)
    edges = [np.linspace(-100, 100, b + 1) for b in (3, 7)]
    weights = [350, 720]
    funcs = [[(rng.integers(0, 9, size=len(e) - 1).astype(float) + 1, e) for e in edges]
             for _ in range(5)]
    expected = fim_vectors(funcs, weights=weights)
    layers = [[len(e) - 1, w] for e, w in zip(edges, weights)]
    for f, row in zip(funcs, expected):
        cdf = np.concatenate([np.cumsum(c) / c.sum() for c, _ in f])
        np.testing.assert_allclose(cdf_vector(cdf, layers), row, rtol=1e-12)
    with pytest.raises(ValueError, match="does not match"):
        cdf_vector(np.ones(9), layers)
    vectors, valid = cdf_matrix([[0.5, 1.0, 1.0, 1.0], None, [np.nan, 1, 1, 1]], [[4, 10]])
    assert valid.tolist() == [True, False, False]
    np.testing.assert_allclose(vectors[0], [0.5 * 50 / 10, 50 / 10, 50 / 10])


def test_store_caches_features_by_kind_and_upgrades_old_stores(tmp_path):
    path = tmp_path / "s.db"
    with Store(path) as store:
        assert store.put_features("a", [("f", {"v": 1}), ("g", [1, 2])]) == 2
        assert store.put_features("a", [("f", {"v": 9}), ("h", None)]) == 1  # first wins
        assert store.features("a") == {"f": {"v": 1}, "g": [1, 2], "h": None}
        assert store.features("b") == {}
    # a layout-1 store (no features table) is upgraded in place when opened
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE features")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.put_features("a", [("f", 1)]) == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_pool_order_filter_ready_prefix_and_cache(tmp_path):
    fim = FakeFim(bad={"x * 3", "x * 7"})
    with Store(tmp_path / "s.db") as store:
        pool = CandidatePool(TEXTS, OUTPUTS, features="both", fim=fim, store=store,
                             first=[5, 0], seed=3, progress=None)
        assert pool.order[:2] == [5, 0] and sorted(pool.order) == list(range(30))
        assert pool.ready() == []  # nothing computed: the prefix stops at the first function
        assert pool.compute(10) == 10
        assert fim.calls == [TEXTS[i] for i in pool.order[:10]]
        expected = [i for i in pool.order[:10] if TEXTS[i] not in fim.bad]
        assert pool.ready() == expected
        assert pool.compute() == 20 and len(fim.calls) == 30
        assert sorted(pool.filtered()) == ["x * 3", "x * 7"]
        texts, coords = pool.embed()
        assert len(texts) == 28 and coords.shape == (28, 2) and np.isfinite(coords).all()
        assert not set(texts) & fim.bad
        # a second pool on the same store computes nothing
        again = CandidatePool(TEXTS, OUTPUTS, features="both", fim=FakeFim(), store=store,
                              first=[5, 0], seed=3, progress=None)
        assert again.compute() == 0 and again.ready() == pool.ready()
    with pytest.raises(ValueError, match="needs a FimFeatures"):
        CandidatePool(TEXTS, OUTPUTS, features="fim")
    with pytest.raises(ValueError, match="features must be"):
        CandidatePool(TEXTS, OUTPUTS, features="eigen", fim=fim)
    limited = CandidatePool(TEXTS, OUTPUTS, features="outputs", first=[4], limit=6,
                            progress=None)
    assert limited.order[0] == 4 and len(limited.order) == 6 and len(limited.ready()) == 6


class GrowingSource:
    """A source that grows the list by 2 functions at each poll, with new coordinates."""

    def __init__(self, texts, coords, start):
        self.texts, self.coords, self.size, self.polls = texts, coords, start, 0

    def poll(self):
        self.polls += 1
        if self.size >= len(self.texts):
            return None
        self.size += 2
        return self.texts[:self.size], self.coords[:self.size] * 1.5

    def describe(self):
        return {"kind": "test"}


def test_search_grows_its_candidate_list_keeping_results():
    coords = np.stack([np.arange(12.0), np.zeros(12)], axis=1)
    # fitness rises along the first coordinate
    fitness = {t: 0.1 + 0.05 * i for i, t in enumerate(TEXTS[:12])}
    source = GrowingSource(TEXTS[:12], coords, 4)
    search = AquasurfSearch(TEXTS[:4], coords[:4], start=TEXTS[:2], budget=8, source=source)
    assert search.config()["candidates"] == "growing"
    assert search.config()["source"] == {"kind": "test"}
    asked = []
    while not search.done():
        c = search.ask()
        asked.append(c.text)
        search.tell(c, _record(c.text, fitness[c.text]))
    assert asked[:2] == TEXTS[:2]
    assert len(search.functions) == 12  # grew 4 -> 12 over the polls
    # KNR walks right along the rising fitness, onto functions that only arrived by growth
    assert asked[2:] == TEXTS[2:8]
    assert {search.functions[i] for i in search.told} == set(asked)
    with pytest.raises(ValueError, match="start with the current one"):
        search.extend(TEXTS[1:13], coords)
    # resuming with a shorter list than the state refers to is refused
    state = search.state_dict()
    short = AquasurfSearch(TEXTS[:4], coords[:4], start=TEXTS[:2], budget=8)
    with pytest.raises(ValueError, match="only 4 candidates"):
        short.load_state_dict(state)


def test_fim_features_entry_matches_direct_computation():
    fim = FimFeatures(model="mnist1d_mlp", task="mnist1d", batch=32)
    assert fim.kind == fim_kind("mnist1d_mlp", "mnist1d", 32, 0, "model")
    (entry, bad) = fim(["tanh(x)", "no_such_op(x)"])
    direct = activation_fim_features("tanh(x)", "mnist1d_mlp", "mnist1d", batch=32)
    assert entry["valid"] and entry["cdf"] == fisher_cdf(direct)
    assert entry["layers"] == [[len(l.histogram), l.num_params] for l in direct.layers]
    assert not bad["valid"] and bad["cdf"] is None and "no_such_op" in bad["reason"]


def test_runner_fim_path_filters_caches_and_runs_in_parallel_mode(tmp_path, monkeypatch):
    """make_algorithm('aquasurf', features='both') computes FIM features of the pool on the
    search's model, keeps only valid ones, caches them; parallel mode grows the search."""
    from keras_actfn.search.runner import make_algorithm

    calls = []
    original = FimFeatures.__call__

    def counted(self, texts):
        calls.extend(texts)
        return original(self, texts)

    monkeypatch.setattr(FimFeatures, "__call__", counted)
    context = {"task": "mnist1d", "model": "mnist1d_mlp", "recipe": "quick"}
    with Store(tmp_path / "s.db") as store:
        algo = make_algorithm("aquasurf", 12, 0, context, store=store, fim_limit=24,
                              fim_batch=32)
        kind = fim_kind("mnist1d_mlp", "mnist1d", 32)
        cached = store.features(kind)
        assert len(cached) == 24 and len(calls) == 24
        valid = {t for t, e in cached.items() if e["valid"]}
        assert set(algo.functions) == valid
        assert algo.config()["features"] == "both" and algo.config()["fim"]["batch"] == 32
        # the eight baselines come first and are asked first
        first = [algo.ask().text for _ in range(8)]
        assert find_functions(list(AQUASURF_START_FUNCTIONS), first) == list(range(8))
        calls.clear()
        again = make_algorithm("aquasurf", 12, 0, context, store=store, fim_limit=24,
                               fim_batch=32)
        assert calls == [] and again.functions == algo.functions
        assert again.config() == algo.config()

        # parallel mode: start with 30 functions' features, a background process adds more
        grow = make_algorithm("aquasurf", 30, 0, context, store=store, fim_limit=40,
                              fim_batch=32, fim_initial=30)
        try:
            assert grow.source is not None and grow.config()["candidates"] == "growing"
            size = len(grow.functions)
            assert size <= 30
            deadline = time.time() + 240
            while len(grow.functions) == size and time.time() < deadline:
                c = grow.ask()
                if c is not None:
                    grow.tell(c, _record(c.text, 0.5))
                time.sleep(0.5)
            assert len(grow.functions) > size
            # same seeded order: the smaller pool's functions are a prefix of the grown one
            assert grow.functions[:len(algo.functions)] == algo.functions
        finally:
            grow.close()
        assert len(store.features(kind)) > 30


def _fake_train(text, seed=0):
    return _record(text, 0.5)


def test_fisher_evaluator_journals_fim_with_each_record(tmp_path):
    """FisherEvaluator: the record carries the same FIM entry a direct computation gives,
    and build_benchmark writes it as the Act-Bench CDF column with the layer sizes."""
    from keras_actfn.search.aquasurf.benchmark import (FisherEvaluator, build_benchmark,
                                                       cdf_vectors, fim_entry)

    evaluator = FisherEvaluator(_fake_train, model="mnist1d_mlp", task="mnist1d", batch=32)
    record = evaluator("tanh(x)")
    direct = fim_entry(activation_fim_features("tanh(x)", "mnist1d_mlp", "mnist1d", batch=32))
    assert record.info["fisher_cdf"] == direct["cdf"]
    assert record.info["fisher_layers"] == direct["layers"]
    assert record.info["fisher_valid"] is True and record.info["fisher_s"] >= 0
    bench = build_benchmark(["tanh(x)", "relu(x)", "max(x, 0)"], evaluator,
                            tmp_path / "s.db", tmp_path / "b.json.gz")
    assert bench.functions == ["tanh(x)", "relu(x)"]
    assert bench.rows["tanh(x)"]["Fisher log eigenvalue CDF"] == direct["cdf"]
    vectors, valid = cdf_vectors(bench)
    assert valid.all()
    np.testing.assert_allclose(vectors[0], cdf_vector(direct["cdf"], direct["layers"]))
