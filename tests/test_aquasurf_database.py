"""FunctionDatabase: AQuaSurF's workflow for a user's own training script (issue 16).

Schema strings count as Tables A.3 / A.4.3 say; spellings group as independent fingerprints
group them; FIM features are those of ``fisher_eigenvalues`` on the user's model; several
processes (forked here: they never touch TensorFlow) computing features or asking for
functions never get the same class, and a SIGKILLed worker's claim is released."""

import math
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
from scipy import special

from keras_actfn.expr import fingerprint_key
from keras_actfn.expr.numeric import fingerprint, fingerprint_inputs
from keras_actfn.search.aquasurf import database as afd
from keras_actfn.search.aquasurf.database import FunctionDatabase, FunctionDatabaseError
from keras_actfn.search.aquasurf.space import (ORIGINAL_EXTRA_UNARY, OPERATOR_SETS,
                                               AquasurfSpace)

FOUR_NODE = ["binary(unary(unary(x)),unary(x))", "binary(unary(x),unary(unary(x)))",
             "n-ary(unary(x),unary(x),unary(x))", "unary(binary(unary(x),unary(x)))",
             "unary(unary(unary(unary(x))))"]


def _expected_size(schema, unary=27, binary=7, nary=4):
    """The original's enumeration: one operator per slot word, every combination."""
    n = schema.count("n-ary")
    return nary ** n * binary ** schema.count("binary") * unary ** schema.count("unary")


# ----------------------------------------------------------------------------- schemas
def test_schema_strings_count_as_tables_a3_and_a43():
    three = AquasurfSpace("binary(unary(x),unary(x))")
    assert len(three) == _expected_size("binary(unary(x),unary(x))") == 5103  # Table A.3
    four = AquasurfSpace(FOUR_NODE)                        # counted, never materialized
    assert len(four) == sum(_expected_size(s) for s in FOUR_NODE) == 1_023_516  # A.4.3
    # the original README's own summary: 1,023,516 plus its 8 baseline functions
    assert len(four) + 8 == 1_023_524
    deep = "unary(binary(unary(unary(x)),n-ary(unary(x),x,unary(unary(x)),x)))"
    assert len(AquasurfSpace(deep)) == _expected_size(deep)
    # the same members as the named schema, in the same order
    named = AquasurfSpace("binary_unary_unary")
    assert [three.text(i) for i in (0, 77, 5102)] == [named.text(i) for i in (0, 77, 5102)]


def test_schema_string_errors_name_the_mistake():
    # A.4.3 prints the first four-node graph with a two-input unary node
    with pytest.raises(ValueError, match="position 7: unary takes one input, got 2"):
        AquasurfSpace("binary(unary(unary(x), unary(x)), unary(x))")
    with pytest.raises(ValueError, match="'foo' is neither unary, binary, n-ary"):
        AquasurfSpace("binary(foo(x),unary(x))")
    with pytest.raises(ValueError, match="binary takes two inputs, got 1"):
        AquasurfSpace("binary(x)")


def test_original_operator_set_has_31_unary_operators():
    original = OPERATOR_SETS["original"]["unary"]
    assert len(original) == 31 and len(OPERATOR_SETS["table_a3"]["unary"]) == 27
    assert ORIGINAL_EXTRA_UNARY == ("elish", "leakyrelu", "mish", "gelu")
    assert "negative" in original and "neg" not in original     # the original's spellings
    assert set(original) - set(OPERATOR_SETS["table_a3"]["unary"]) == set(ORIGINAL_EXTRA_UNARY)
    space = AquasurfSpace("binary(unary(x),unary(x))", **OPERATOR_SETS["original"])
    assert len(space) == 7 * 31 * 31
    # the four extras compute what the original code's definitions do (closed forms)
    x = fingerprint_inputs()
    sig = 1 / (1 + np.exp(-x))
    closed = {"elish": np.where(x > 0, x * sig, (np.exp(x) - 1) * sig),
              "leakyrelu": np.where(x > 0, x, 0.01 * x),
              "mish": x * np.tanh(np.log1p(np.exp(x))),
              "gelu": 0.5 * x * (1 + special.erf(x / math.sqrt(2)))}
    for name, expected in closed.items():
        np.testing.assert_allclose(fingerprint(f"{name}(x)"), expected, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- populate
def test_populate_groups_spellings_as_fingerprints_do(tmp_path):
    db = FunctionDatabase(tmp_path / "afd.db", baseline_fns=(), progress=False)
    assert db.populate(schema="unary(unary(x))") == 729
    assert db.populate(schema="binary(unary(x),unary(x))") == 5103
    assert db.populate(schema="unary(unary(x))") == 0              # already there
    texts = [r[0] for r in db._read("SELECT text FROM afd_functions")]
    # the original's names: one operator per slot word, written without spaces
    unary = OPERATOR_SETS["table_a3"]["unary"]
    assert {t for t in texts if t.count("(") == 2} == \
        {f"{a}({b}(x))" for a in unary for b in unary}
    assert "negative(relu(x))" in texts
    classes = dict(db._read("SELECT text, class FROM afd_functions"))
    # the independent grouping: parse + evaluate + hash each spelling on its own
    keys = {t: fingerprint_key(t) for t in texts}
    by_key = {}
    for t in texts:
        by_key.setdefault(keys[t], set()).add(classes[t])
    assert all(len(ids) == 1 for ids in by_key.values())           # one class per key
    assert len(set(classes.values())) == len(by_key)                # and one key per class
    counts = db.counts()
    assert counts["functions"] == 729 + 5103 and counts["unique"] == len(by_key)
    # an explicit spelling joins its class; the original's names work too
    assert db.populate(fn_names_list=["max(x, 0)", "x*sigmoid(x)"]) == 2
    assert {"max(x,0)", "relu(identity(x))", "add(relu(x),zero(x))"} <= \
        set(db.equivalents("relu(x)"))
    assert "x*sigmoid(x)" in db.equivalents("swish(identity(x))")
    with pytest.raises(ValueError, match=r"cannot add 'relu\(x' to the database"):
        db.populate(functions=["relu(x"])
    db.close()


# ----------------------------------------------------------------------------- results
def test_results_propagate_to_every_equivalent_spelling(tmp_path):
    db = FunctionDatabase(tmp_path / "afd.db", baseline_fns=(), progress=False)
    db.populate(functions=["add(tanh(x),selu(x))", "add(selu(x),tanh(x))", "relu(x)",
                           "sum_n(selu(x),tanh(x),zero(x))"])
    assert db.mark_running("add(tanh(x), selu(x))")
    assert db.result("add(selu(x),tanh(x))")["status"] == "running"
    db.report("add(tanh(x),selu(x))", val_acc=0.71, train_acc=0.8, train_loss=0.6,
              val_loss=0.9, test_acc=0.7, test_loss=0.95, runtime=12.5, info={"epochs": 3})
    for twin in ("add(selu(x),tanh(x))", "sum_n(selu(x),tanh(x),zero(x))", "tanh(x)+selu(x)"):
        got = db.result(twin)
        assert got["status"] == "done" and got["val_acc"] == 0.71 and got["runtime"] == 12.5
        assert got["test_loss"] == 0.95 and got["info"] == {"epochs": 3}
    # the original's call, one column at a time
    db.update_for_all_equivalent_fns("relu(x)", "status", "running")
    db.update_for_all_equivalent_fns("relu(x)", "val_acc", 0.75)
    db.update_for_all_equivalent_fns("relu(x)", "status", "done")
    with pytest.raises(ValueError, match="unknown column 'accuracy'"):
        db.update_for_all_equivalent_fns("relu(x)", "accuracy", 1.0)
    with pytest.raises(FunctionDatabaseError, match="'sin[(]x[)]' is not in the database"):
        db.report("sin(x)", val_acc=0.5)
    lines = []
    counts = db.summary(file=_Lines(lines))
    assert counts["functions"] == 4 and counts["unique"] == 2
    assert counts["evaluated"] == 4 and counts["evaluated_unique"] == 2
    assert "Best so far: relu(x) with validation accuracy 0.7500" in "".join(lines)
    assert "Number of unique activation functions: 2" in "".join(lines)
    db.close()


class _Lines:
    def __init__(self, out):
        self.out = out

    def write(self, text):
        self.out.append(text)

    def flush(self):
        pass


# ----------------------------------------------------------------------------- real FIM
def test_fim_features_are_those_of_the_users_model(tmp_path):
    from keras_actfn import CustomActivation
    from keras_actfn.backend import keras
    from keras_actfn.search.aquasurf.benchmark import fim_entry
    from keras_actfn.search.aquasurf.fim import fisher_eigenvalues

    def build_model(fn):
        inputs = keras.Input((12,))
        h = CustomActivation(fn)(keras.layers.Dense(40)(inputs))
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 12)).astype("float32")
    y = rng.integers(0, 3, size=24)
    db = FunctionDatabase(tmp_path / "afd.db", build_model, x, y,
                          loss=keras.losses.SparseCategoricalCrossentropy(),
                          baseline_fns=("relu(x)", "tanh(x)"), progress=False)
    db.populate(functions=["swish(x)", "exp(exp(exp(exp(x))))"])
    assert db.compute_fim() == 4
    assert db.compute_fim() == 0                                    # resumable: nothing left
    for fn in ("relu(x)", "swish(x)"):
        keras.utils.set_random_seed(0)
        expected = fim_entry(fisher_eigenvalues(build_model(fn), x, y, labels="data",
                                                output="probs"))
        got = db.fim_features(fn)
        assert got["valid"] and got["layers"] == expected["layers"] == [[5, 520], [1, 123]]
        np.testing.assert_allclose(got["cdf"], expected["cdf"], atol=1e-7)
    bad = db.result("exp(exp(exp(exp(x))))")
    assert bad["fim_valid"] is False and "non-finite" in bad["fim_reason"]
    with pytest.raises(FunctionDatabaseError, match="loss 'mse': the FIM features use the "
                                                    "categorical log-likelihood"):
        FunctionDatabase(tmp_path / "afd.db", build_model, x, y, loss="mse",
                         progress=False).compute_fim()
    with pytest.raises(FunctionDatabaseError, match="needs a model"):
        FunctionDatabase(tmp_path / "other.db", samples=x, progress=False).compute_fim()
    db.close()


# ----------------------------------------------------------------------------- processes
def fake_features(log_path, block=None):
    """Features of a function from its outputs (a CDF of 8 bins), logging each call as
    "pid text"; ``block``: a file whose presence makes the first call hang (a worker to
    SIGKILL); functions with ``exp`` are invalid (the §6.3.1 filter)."""

    def features(text):
        with open(log_path, "a") as log:
            log.write(f"{os.getpid()} {text}\n")
        if block is not None and os.path.exists(block):
            time.sleep(600)
        time.sleep(0.03)
        if "exp" in text:
            return {"cdf": None, "layers": [[8, 800]], "valid": False, "reason": "nan"}
        counts, _ = np.histogram(np.clip(fingerprint(text), -3, 3), bins=8, range=(-3, 3))
        cdf = np.cumsum(counts) / counts.sum()
        return {"cdf": cdf.round(6).tolist(), "layers": [[8, 800]], "valid": True,
                "reason": ""}

    return features


def _single_thread():
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)


def _fim_worker(path, log_path, block, start):
    _single_thread()
    db = FunctionDatabase(path, baseline_fns=(), lease=300.0, progress=False,
                          features_fn=fake_features(log_path, block))
    start.wait()
    db.compute_fim()
    db.close()


def _calls(log_path):
    with open(log_path) as log:
        return [line.rstrip("\n").split(" ", 1) for line in log]


def _fork():
    return multiprocessing.get_context("fork")


def test_parallel_fim_workers_never_compute_a_function_twice(tmp_path):
    path, log_path, block = str(tmp_path / "afd.db"), str(tmp_path / "calls.log"), \
        str(tmp_path / "block")
    db = FunctionDatabase(path, baseline_fns=(), progress=False)
    db.populate(schema="unary(x)")
    db.populate(functions=["x*sigmoid(x)", "max(x, 0)"])            # twins: not new classes
    n_classes = db.counts()["unique"]
    db.close()
    ctx = _fork()
    # a worker that claims a function and hangs; SIGKILL it mid-computation
    open(block, "w").close()
    go = ctx.Event()
    go.set()
    victim = ctx.Process(target=_fim_worker, args=(path, log_path, block, go))
    victim.start()
    deadline = time.time() + 30
    while not (os.path.exists(log_path) and _calls(log_path)) and time.time() < deadline:
        time.sleep(0.05)
    ((victim_pid, victim_text),) = _calls(log_path)
    assert int(victim_pid) == victim.pid
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    os.remove(block)
    db = FunctionDatabase(path, baseline_fns=(), progress=False)
    ((state, worker),) = db._read("SELECT fim_state, fim_worker FROM afd_classes WHERE "
                                  "text = ?", (victim_text,))
    assert state == "claimed" and f"/{victim.pid}/" in worker     # its lease is 300 s away
    db.close()
    # two workers at once on the rest, the killed worker's claim included
    start = ctx.Event()
    workers = [ctx.Process(target=_fim_worker, args=(path, log_path, None, start))
               for _ in range(2)]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    calls = _calls(log_path)[1:]
    texts = [t for _, t in calls]
    assert len(texts) == len(set(texts)) == n_classes                # each class once
    assert victim_text in texts                                      # the released claim
    assert {int(p) for p, _ in calls} == {w.pid for w in workers}    # both did work
    db = FunctionDatabase(path, baseline_fns=(), progress=False)
    counts = db.counts()
    assert counts["with_eigenvalues"] == n_classes
    assert counts["valid_eigenvalues"] == n_classes - sum("exp" in t for t in texts)
    db.close()


def test_expired_leases_are_released_and_live_ones_kept(tmp_path):
    db = FunctionDatabase(tmp_path / "afd.db", baseline_fns=(), progress=False)
    db.populate(functions=["relu(x)", "tanh(x)", "sin(x)"])
    now = time.time()
    db._write(lambda cur: cur.executemany(
        "UPDATE afd_classes SET fim_state = 'claimed', fim_worker = ?, fim_lease = ? "
        "WHERE text = ?", [("elsewhere/12/a", now - 1, "relu(x)"),
                           ("elsewhere/13/b", now + 300, "tanh(x)")]))
    db._write(lambda cur: cur.execute(
        "UPDATE afd_classes SET status = 'running', worker = 'elsewhere/14/c', lease = ? "
        "WHERE text = 'sin(x)'", (now - 1,)))
    assert db.release_stale() == 2
    states = dict(db._read("SELECT text, fim_state FROM afd_classes"))
    assert states == {"relu(x)": "todo", "tanh(x)": "claimed", "sin(x)": "todo"}
    assert db.result("sin(x)")["status"] == "not evaluated"
    db.close()


def test_heartbeat_keeps_a_live_claim_and_its_end_lets_it_lapse(tmp_path):
    path = tmp_path / "afd.db"
    holder = FunctionDatabase(path, baseline_fns=(), lease=0.4, progress=False)
    holder.populate(functions=["relu(x)", "tanh(x)"])
    assert holder.mark_running("tanh(x)")
    other = FunctionDatabase(path, baseline_fns=(), lease=0.4, progress=False)
    time.sleep(1.0)                       # 2.5 leases: renewed every 0.1 s meanwhile
    assert other.release_stale() == 0 and other.result("tanh(x)")["status"] == "running"
    assert not other.mark_running("tanh(x)")                 # held by a live process
    holder.close()                        # no more heartbeats (the process lives on)
    time.sleep(0.6)
    assert other.release_stale() == 1 and other.mark_running("tanh(x)")
    other.close()


def _suggest_worker(path, log_path, start, out, count):
    _single_thread()
    db = FunctionDatabase(path, baseline_fns=("relu(x)", "tanh(x)"), lease=300.0,
                          progress=False, features_fn=fake_features(log_path))
    start.wait()
    out.put([db.suggest() for _ in range(count)])
    start.wait()                    # stay alive (claims held) until both have asked
    db.close()


def test_suggest_from_two_processes_never_returns_equivalent_functions(tmp_path):
    path, log_path = str(tmp_path / "afd.db"), str(tmp_path / "calls.log")
    db = FunctionDatabase(path, baseline_fns=("relu(x)", "tanh(x)"), progress=False,
                          features_fn=fake_features(log_path))
    db.populate(schema="unary(x)")
    db.populate(functions=["x*sigmoid(x)", "max(x, 0)", "sum_n(x, zero(x), zero(x))"])
    db.compute_fim()
    # the baselines come first, in order, then the regression
    first, second = db.suggest(), db.suggest()
    assert (first, second) == ("relu(x)", "tanh(x)")
    db.report(first, val_acc=0.9)
    db.report(second, val_acc=0.5)
    ids, coords = db.embedding()
    texts = dict(db._read("SELECT id, text FROM afd_classes"))
    pos = {texts[c]: coords[i] for i, c in enumerate(ids)}
    # weighted 2-NN prediction (1/d weights), computed here: the argmax over free classes
    free = [t for t in pos if t not in ("relu(x)", "tanh(x)")]

    def predicted(t):
        d1, d2 = (np.linalg.norm(pos[t] - pos[b]) for b in ("relu(x)", "tanh(x)"))
        return 0.9 if d1 == 0 else (0.9 / d1 + 0.5 / d2) / (1 / d1 + 1 / d2)

    best = max(free, key=lambda t: (predicted(t), -ids.index(db._class_id(t))))
    assert db.suggest() == best
    db.release(best)
    assert all("exp" not in t for t in pos)                          # §6.3.1 filter
    db.close()
    ctx = _fork()
    start, out = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_suggest_worker, args=(path, log_path, start, out, 6))
               for _ in range(2)]
    for w in workers:
        w.start()
    got = [out.get(timeout=60), out.get(timeout=60)]
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    suggested = got[0] + got[1]
    keys = [fingerprint_key(t) for t in suggested]
    assert len(set(keys)) == 12                                      # no twins at all
    assert not set(keys) & {fingerprint_key("relu(x)"), fingerprint_key("tanh(x)")}
    db = FunctionDatabase(path, baseline_fns=(), progress=False)
    # the workers ranked on the parent's stored embedding: UMAP was fitted once
    assert db._read("SELECT COUNT(*) FROM afd_embeddings")[0][0] == 1
    # the workers exited without reporting: their 12 claims are released
    assert db.counts()["running_unique"] == 12
    assert db.release_stale() == 12 and db.counts()["running_unique"] == 0
    db.close()


def test_nothing_to_suggest_says_what_to_do(tmp_path):
    db = FunctionDatabase(tmp_path / "afd.db", baseline_fns=(), progress=False)
    db.populate(functions=["relu(x)", "tanh(x)"])
    with pytest.raises(FunctionDatabaseError, match="nothing to suggest: .*no other has "
                                                    "usable features; run compute_fim"):
        db.suggest()
    db.close()


def test_exports():
    from keras_actfn.search import aquasurf

    assert aquasurf.FunctionDatabase is afd.FunctionDatabase
