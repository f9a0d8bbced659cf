"""The search store: round trips, WAL, config checks, atomic writes, reuse lookups, locking."""

import json
import math
import sqlite3
import threading

import numpy as np
import pytest

from keras_actfn.search.engine.base import (Candidate, equivalence_key, failure_record,
                                     rng_from_state, rng_state)
from keras_actfn.search.engine.driver import run_search
from keras_actfn.search.engine.store import (SCHEMA_VERSION, Store, StoreConfigError, StoreError,
                                             StoreLockedError)
from keras_actfn.train.record import EvaluationRecord

from search_fakes import FakeEvaluator, RandomListSearch

CONFIG = {"algorithm": {"algorithm": "pangaea", "population": 64, "sample": 16,
                        "task": "mnist1d", "recipe": "quick"}, "seed": 0}


def record(text="x", accuracy=0.5, seed=0, status="ok"):
    rec = EvaluationRecord(fn=text, task="t", model="m", recipe="r", seed=seed,
                           validation_accuracy=accuracy, validation_loss=1.0 - (accuracy or 0),
                           history={"val_accuracy": [accuracy]}, info={"k": (1, 2)})
    if status == "failed":
        rec.fail("nan_loss", "loss became NaN")
    return rec


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs" / "search.db") as s:
        s.open_run(CONFIG)
        yield s


def test_round_trip_pending_running_ok(store, tmp_path):
    cand = Candidate("x * sigmoid(x)", parent="x", mutation="insert", generation=3,
                     meta={"k": 2, "edges": (1, 2)})
    eval_id = store.add_pending(cand, "key1", seed=7, state={"step": 1})
    ev = store.evaluation(eval_id)
    assert ev.status == "pending" and ev.record is None and ev.order is None
    assert ev.candidate == cand and ev.candidate.meta == {"k": 2, "edges": [1, 2]}
    assert ev.seed == 7 and ev.equivalence_key == "key1"
    assert [e.id for e in store.pending()] == [eval_id]

    store.mark_running(eval_id, "host:1")
    ev = store.evaluation(eval_id)
    assert ev.status == "running" and ev.worker == "host:1" and ev.started >= ev.asked
    assert [e.id for e in store.pending()] == [eval_id]  # running still counts as unfinished

    rec = record("x * sigmoid(x)", 0.75)
    assert store.complete(eval_id, rec, {"step": 2, "best": -math.inf}, worker="host:1/gpu0") == 1
    ev = store.evaluation(eval_id)
    assert ev.status == "ok" and ev.order == 1 and ev.worker == "host:1/gpu0"
    assert ev.record == EvaluationRecord.from_dict(rec.to_dict())
    assert ev.record.info == {"k": [1, 2]}
    assert ev.finished >= ev.started
    assert store.pending() == []
    assert store.latest_state() == {"step": 2, "best": -math.inf}
    assert store.counts() == {"asked": 1, "pending": 0, "running": 0, "ok": 1, "failed": 0,
                              "finished": 1, "reused": 0, "evaluated": 1}

    # a second process (here: a second connection) reads the same thing back
    with Store(store.path) as other:
        other.open_run(CONFIG)
        assert [e.record for e in other.results()] == [ev.record]
        assert other.latest_state() == store.latest_state()


def test_results_in_completion_order_and_counts(store):
    ids = [store.add_pending(Candidate(t), None) for t in ("x", "relu(x)", "tanh(x)")]
    store.complete(ids[2], record("tanh(x)", 0.3), None)
    store.complete(ids[0], record("x", status="failed"), None)
    assert [e.id for e in store.results()] == [ids[2], ids[0]]
    assert [e.order for e in store.results()] == [1, 2]
    assert [e.id for e in store.evaluations()] == ids
    counts = store.counts()
    assert (counts["ok"], counts["failed"], counts["pending"], counts["asked"]) == (1, 1, 1, 3)


def test_wal_mode(store):
    assert store.journal_mode == "wal"
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "evaluations", "state"} <= tables
    conn.close()


def test_memory_store():
    with Store(":memory:") as s:
        s.open_run(CONFIG)
        eval_id = s.add_pending(Candidate("x"), None)
        s.complete(eval_id, record(), {"a": 1})
        assert s.counts()["ok"] == 1


def test_config_mismatch_is_refused_with_the_differing_keys(tmp_path):
    path = tmp_path / "a.db"
    with Store(path) as s:
        s.open_run(CONFIG)
    changed = json.loads(json.dumps(CONFIG))
    changed["algorithm"]["population"] = 32
    changed["algorithm"]["extra"] = True
    del changed["algorithm"]["sample"]
    with Store(path) as s:
        with pytest.raises(StoreConfigError) as info:
            s.open_run(changed)
    message = str(info.value)
    assert "algorithm.population: stored 64, requested 32" in message
    assert "algorithm.sample: stored 16, requested <absent>" in message
    assert "algorithm.extra: stored <absent>, requested true" in message
    assert "algorithm.task" not in message
    assert "new store path" in message and str(path) in message
    assert set(info.value.differences) == {"algorithm.population", "algorithm.sample",
                                           "algorithm.extra"}
    # the same config (tuples and key order do not matter) resumes; another run name is new
    same = {"seed": 0, "algorithm": dict(reversed(list(CONFIG["algorithm"].items())))}
    with Store(path) as s:
        assert s.open_run(same) == 1
        assert s.open_run(changed, name="rerank") == 2
        assert [r["name"] for r in s.runs()] == ["search", "rerank"]


def test_config_must_be_json_safe(store):
    with pytest.raises(TypeError, match="JSON-safe"):
        store.open_run({"f": object()}, name="other")
    with pytest.raises(TypeError, match="JSON-safe"):
        store.open_run({"v": float("nan")}, name="other")


def test_methods_need_a_run(tmp_path):
    with Store(tmp_path / "b.db") as s:
        with pytest.raises(StoreError, match="open_run"):
            s.pending()
        with pytest.raises(StoreError, match="no run 'search'"):
            s.select_run()


def test_complete_is_atomic(store, monkeypatch):
    eval_id = store.add_pending(Candidate("x"), "k", state={"s": 1})
    store.mark_running(eval_id, "w")

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    # fail after the result row is written and before the state: nothing may remain
    monkeypatch.setattr(store, "_insert_state", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.complete(eval_id, record(), {"s": 2})
    ev = store.evaluation(eval_id)
    assert ev.status == "running" and ev.record is None and ev.order is None
    assert ev.finished is None
    assert store.latest_state() == {"s": 1}
    assert store.lookup("k") is None
    # the same for an ask: no candidate without its state
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.add_pending(Candidate("relu(x)"), None, state={"s": 3})
    assert [e.text for e in store.evaluations()] == ["x"]
    monkeypatch.undo()
    # and afterwards the evaluation completes normally, exactly once
    store.complete(eval_id, record(), {"s": 2})
    assert store.latest_state() == {"s": 2}
    with pytest.raises(StoreError, match="already finished"):
        store.complete(eval_id, record(), {"s": 3})
    with pytest.raises(StoreError, match="already finished"):
        store.mark_running(eval_id, "w")
    with pytest.raises(StoreError, match="does not exist"):
        store.complete(9999, record(), None)
    assert store.latest_state() == {"s": 2}


def test_bad_state_or_record_writes_nothing(store):
    eval_id = store.add_pending(Candidate("x"), None)
    with pytest.raises(TypeError, match="algorithm state"):
        store.complete(eval_id, record(), {"rng": object()})
    with pytest.raises(TypeError, match="EvaluationRecord"):
        store.complete(eval_id, {"fn": "x"}, None)
    assert store.evaluation(eval_id).status == "pending"


def test_lookup_finds_finished_equivalents_only(store):
    a = store.add_pending(Candidate("x * sigmoid(x)"), "swish-key", seed=0)
    b = store.add_pending(Candidate("swish(x)"), "swish-key", seed=0)
    c = store.add_pending(Candidate("swish(x)"), "swish-key", seed=1)
    assert store.lookup("swish-key") is None  # pending ones are not results
    assert store.lookup(None) is None
    store.complete(b, record("swish(x)", 0.6), None, reused_from=None)
    store.complete(a, record("x * sigmoid(x)", 0.6), None, reused_from=b)
    assert store.lookup("swish-key").id == b          # the original, not the reused copy
    assert store.lookup("swish-key", seed=0).id == b
    assert store.lookup("swish-key", seed=1) is None  # another training seed is not reused
    store.complete(c, record("swish(x)", 0.4, seed=1), None)
    assert store.lookup("swish-key", seed=1).id == c
    assert store.counts()["reused"] == 1 and store.counts()["evaluated"] == 2


def test_best_ranks_successes_by_the_metric(store):
    values = {"a(x)": 0.4, "b(x)": 0.9, "c(x)": None, "d(x)": 0.9, "e(x)": 0.7}
    ids = {}
    for text, acc in values.items():
        ids[text] = store.add_pending(Candidate(text), text)
    for text, acc in values.items():
        store.complete(ids[text], record(text, acc), None)
    failed = store.add_pending(Candidate("f(x)"), "f")
    store.complete(failed, record("f(x)", 0.99, status="failed"), None)
    copy = store.add_pending(Candidate("b2(x)"), "b(x)")
    store.complete(copy, record("b2(x)", 0.9), None, reused_from=ids["b(x)"])
    assert [e.text for e in store.best(3)] == ["b(x)", "d(x)", "e(x)"]  # ties: first finished
    assert [e.text for e in store.best(10)] == ["b(x)", "d(x)", "e(x)", "a(x)"]
    assert [e.text for e in store.best(3, distinct=False)] == ["b(x)", "d(x)", "b2(x)"]
    assert [e.text for e in store.best(2, metric="validation_loss")] == ["b(x)", "d(x)"]
    assert store.best(0) == []


def test_states_are_pruned_to_keep_states(tmp_path):
    with Store(tmp_path / "c.db", keep_states=3) as s:
        s.open_run(CONFIG)
        for i in range(10):
            s.save_state({"i": i})
        assert s.latest_state() == {"i": 9} and s.state_count() == 10
        rows = s.read("SELECT seq FROM state ORDER BY seq")
        assert [r[0] for r in rows] == [8, 9, 10]


def test_tables_of_other_modules_through_write_and_read(tmp_path):
    """The public hook FunctionDatabase uses: a transaction is all or nothing, rowcount
    counts the rows an executemany changed, a read-only store reads and refuses writes."""
    path = tmp_path / "ext.db"

    def add(cur):
        cur.executemany("INSERT OR IGNORE INTO ext VALUES (?)", [("a",), ("b",), ("a",)])
        return cur.rowcount

    def broken(cur):
        cur.execute("INSERT INTO ext VALUES ('c')")
        raise RuntimeError("stop")

    with Store(path) as s:
        assert not s.in_memory
        s.write(lambda cur: cur.execute("CREATE TABLE IF NOT EXISTS ext (k TEXT PRIMARY KEY)"))
        assert s.write(add) == 2 and s.write(add) == 0  # the second time every row exists
        with pytest.raises(RuntimeError, match="stop"):
            s.write(broken)
        assert s.read("SELECT k FROM ext ORDER BY k") == [("a",), ("b",)]
    with Store(path, readonly=True) as r:
        assert r.read("SELECT COUNT(*) FROM ext WHERE k > ?", ("a",)) == [(1,)]
        with pytest.raises(StoreError, match="read-only"):
            r.write(add)
        with pytest.raises(StoreError, match="no such table"):
            r.read("SELECT * FROM missing")
    with Store(":memory:") as m:
        assert m.in_memory


def test_concurrent_writers_lose_nothing(tmp_path):
    """Two connections writing at once (SQLite locks the same way across threads and
    processes): every write lands, completion positions stay unique."""
    path = tmp_path / "d.db"
    Store(path).close()
    errors = []

    def writer(tag):
        try:
            with Store(path, timeout=10) as s:
                s.open_run(CONFIG)
                for i in range(40):
                    eval_id = s.add_pending(Candidate(f"{tag}{i}(x)"), None, state={"t": tag})
                    s.mark_running(eval_id, tag)
                    s.complete(eval_id, record(f"{tag}{i}(x)"), {"t": tag, "i": i})
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store(path) as s:
        s.open_run(CONFIG)
        results = s.results()
        assert len(results) == 80 and s.counts()["finished"] == 80
        assert sorted(e.order for e in results) == list(range(1, 81))
        assert len({e.text for e in results}) == 80


def test_driver_lock_is_exclusive(tmp_path):
    path = tmp_path / "e.db"
    with Store(path) as a, Store(path) as b:
        with a.driver_lock():
            with pytest.raises(StoreLockedError, match="another search process"):
                with b.driver_lock():
                    pass
        with b.driver_lock():  # released
            pass


def test_not_a_store(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open the search store"):
        Store(junk)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a keras_actfn search store"):
        Store(other)
    newer = tmp_path / "newer.db"
    Store(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="layout version 99"):
        Store(newer)


# --------------------------------------------------------------------------- base helpers
def test_candidate_validation_and_round_trip():
    cand = Candidate("relu(x)", meta={"a": (1, 2)})
    assert Candidate.from_dict(json.loads(json.dumps(cand.to_dict()))) == cand
    assert hash(cand) == hash(Candidate("relu(x)", meta={"a": [1, 2]}))
    with pytest.raises(TypeError, match="text"):
        Candidate("")
    with pytest.raises(TypeError, match="generation"):
        Candidate("x", generation=1.5)
    with pytest.raises(ValueError, match="generation"):
        Candidate("x", generation=-1)
    with pytest.raises(TypeError, match="JSON-safe"):
        Candidate("x", meta={"f": object()})
    with pytest.raises(ValueError, match="unknown Candidate field"):
        Candidate.from_dict({"text": "x", "colour": 1})


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.Philox,
                                           np.random.MT19937])
def test_rng_state_round_trip(bit_generator):
    rng = np.random.Generator(bit_generator(5))
    rng.random(3)
    state = json.loads(json.dumps(rng_state(rng)))
    restored = rng_from_state(state)
    assert np.array_equal(rng.random(5), restored.random(5))
    with pytest.raises(ValueError, match="bit generator"):
        rng_from_state({"bit_generator": "Mystery"})


def test_equivalence_key():
    swish = equivalence_key("x*sigmoid(x)")
    assert swish is not None
    assert equivalence_key("sigmoid(x)*x") == swish
    assert equivalence_key("swish(x)") == swish
    assert equivalence_key("mul(x, sigmoid(x))") == swish
    assert equivalence_key("relu(x)") == equivalence_key("max(x, 0)") != swish
    # a learnable parameter makes a different function, however it starts
    param = equivalence_key("x*sigmoid(alpha*x)")
    assert param != swish
    assert equivalence_key("x*sigmoid(beta*x)") == param            # renaming is not new
    assert equivalence_key("sigmoid(alpha*x)*x") == param
    assert equivalence_key("alpha*x*sigmoid(x)") != param
    assert equivalence_key("x*sigmoid(alpha*beta*x)") not in (param, swish)
    assert equivalence_key("not a (function") is None


def test_failure_record():
    rec = failure_record("x", 3, "error", "boom", task="t")
    assert rec.failed and rec.reason == "error" and rec.seed == 3 and rec.task == "t"
    with pytest.raises(ValueError, match="unknown failure reason"):
        failure_record("x", 0, "meh", "")


# --------------------------------------------------------------------------- old layouts
#: the layout-2 store as keras_actfn wrote it before the equivalence key's column had its
#: name (``fingerprint``, indexed by ``evaluations_by_fingerprint``)
LAYOUT_2 = """
CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, config TEXT NOT NULL,
    created REAL NOT NULL, status TEXT NOT NULL DEFAULT 'open');
CREATE TABLE evaluations (id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id),
    candidate TEXT NOT NULL, parent TEXT, mutation TEXT,
    generation INTEGER NOT NULL DEFAULT 0, meta TEXT NOT NULL DEFAULT '{}',
    fingerprint TEXT, seed INTEGER, worker TEXT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'ok', 'failed')),
    record TEXT, reused_from INTEGER REFERENCES evaluations(id), completion INTEGER,
    asked REAL NOT NULL, started REAL, finished REAL,
    CHECK ((status IN ('ok', 'failed')) = (record IS NOT NULL)),
    CHECK ((status IN ('ok', 'failed')) = (completion IS NOT NULL)));
CREATE INDEX evaluations_by_status ON evaluations(run, status);
CREATE INDEX evaluations_by_fingerprint ON evaluations(run, fingerprint, seed);
CREATE UNIQUE INDEX evaluations_by_completion ON evaluations(run, completion);
CREATE TABLE state (run INTEGER NOT NULL REFERENCES runs(id), seq INTEGER NOT NULL,
    state TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (run, seq));
CREATE TABLE features (kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (kind, key));
PRAGMA user_version = 2;
"""


def _layout(path):
    """(user_version, evaluations' columns, index names) of the store file ``path``."""
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(evaluations)")]
        indexes = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'evaluations'"
            " AND sql IS NOT NULL")}
        return version, columns, indexes
    finally:
        conn.close()


def _layout_2_copy(source, target):
    """Write ``target`` by hand as a layout-2 store holding ``source``'s runs, evaluations
    and states, each run's algorithm named under "name" as the surrogate and the benchmark
    replay wrote it then."""
    conn = sqlite3.connect(target)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(LAYOUT_2)
    conn.execute("ATTACH DATABASE ? AS current", (str(source),))
    for table in ("runs", "evaluations", "state"):  # the same columns in the same order
        conn.execute(f"INSERT INTO main.{table} SELECT * FROM current.{table}")
    for run_id, text in conn.execute("SELECT id, config FROM main.runs").fetchall():
        config = json.loads(text)
        config["algorithm"]["name"] = config["algorithm"].pop("algorithm")
        conn.execute("UPDATE main.runs SET config = ? WHERE id = ?",
                     (json.dumps(config, sort_keys=True), run_id))
    conn.commit()
    conn.execute("DETACH DATABASE current")
    conn.close()


def test_a_layout_2_store_reads_as_it_is_and_resumes_upgraded(tmp_path):
    """A store written before ``fingerprint`` became ``equivalence_key`` and before every
    algorithm named itself under "algorithm": read-only it is read unchanged; resumed, it is
    upgraded in place and the search continues exactly as one uninterrupted run."""
    one, current, old = tmp_path / "one.db", tmp_path / "current.db", tmp_path / "old.db"
    run_search(RandomListSearch(seed=4), FakeEvaluator(), one, budget=30)
    run_search(RandomListSearch(seed=4), FakeEvaluator(), current, budget=12)
    _layout_2_copy(current, old)
    assert _layout(old) == (2, _layout(current)[1][:7] + ["fingerprint"]
                            + _layout(current)[1][8:],
                            {"evaluations_by_status", "evaluations_by_fingerprint",
                             "evaluations_by_completion"})

    with Store(current) as reference, Store(old, readonly=True) as legacy:
        reference.select_run()
        legacy.select_run()
        assert legacy.run_config() == reference.run_config()  # "name" read as "algorithm"
        assert legacy.run_config()["algorithm"]["algorithm"] == "random-list"
        assert [r["config"] for r in legacy.runs()] == [reference.run_config()]
        assert legacy.evaluations() == reference.evaluations()
        keys = [(e.equivalence_key, e.seed) for e in reference.results()]
        assert all(key is not None for key, _ in keys)
        assert [legacy.lookup(*k).id for k in keys] == [reference.lookup(*k).id for k in keys]
        assert legacy.counts() == reference.counts() and legacy.counts()["finished"] == 12
        assert legacy.latest_state() == reference.latest_state()
    assert _layout(old)[0] == 2 and "fingerprint" in _layout(old)[1]  # nothing written

    # resumed: upgraded when opened, then on to the budget like the uninterrupted run
    summary = run_search(RandomListSearch(seed=4), FakeEvaluator(), old, budget=30)
    assert summary.counts["finished"] == 30
    version, columns, indexes = _layout(old)
    assert (version, columns) == (SCHEMA_VERSION, _layout(current)[1])
    assert "equivalence_key" in columns and "fingerprint" not in columns
    assert indexes == _layout(current)[2] and "evaluations_by_equivalence_key" in indexes
    with Store(one) as a, Store(old) as b:
        a.select_run()
        b.select_run()
        assert [(e.text, e.record.fitness(), e.reused_from, e.equivalence_key)
                for e in a.results()] == [(e.text, e.record.fitness(), e.reused_from,
                                           e.equivalence_key) for e in b.results()]
        assert a.latest_state()["digest"] == b.latest_state()["digest"]
        # a run config still naming its algorithm under "name" resumes the same run
        legacy_config = b.run_config()
        legacy_config["algorithm"]["name"] = legacy_config["algorithm"].pop("algorithm")
        assert b.open_run(legacy_config) == b.run_id == 1
        legacy_config["algorithm"]["seed"] = 5
        with pytest.raises(StoreConfigError, match="algorithm.seed: stored 4, requested 5"):
            b.open_run(legacy_config)
