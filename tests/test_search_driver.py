"""The search driver and executors: steady-state loop, reuse, failures as data, exact resume
after SIGKILL, process pools, and the Ray executor's missing-Ray message."""

import concurrent.futures
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from keras_actfn.search.engine.driver import run_search
from keras_actfn.search.engine.executors import (Executor, Finished, InProcessExecutor,
                                          LocalPoolExecutor, RayExecutor, detect_gpus,
                                          run_evaluation)
from keras_actfn.search.engine.store import Store, StoreConfigError, StoreLockedError
from keras_actfn.train.record import EvaluationRecord

from search_fakes import (FakeEvaluator, RandomListSearch, SequenceSearch,
                          crashing_evaluator, fake_score)

TESTS = Path(__file__).resolve().parent
CHILD = TESTS / "search_child.py"


class CountingEvaluator(FakeEvaluator):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __call__(self, text, seed=0):
        self.calls.append((text, seed))
        return super().__call__(text, seed)


def trace(store):
    """What a run did, in completion order: (ask index, text, fitness, reused?)."""
    return [(e.candidate.meta.get("index"), e.text, e.record.fitness(),
             e.reused_from is not None) for e in store.results()]


# --------------------------------------------------------------------------- in-process
def test_search_runs_to_budget_and_failures_are_data(tmp_path):
    algorithm = RandomListSearch(seed=3)
    seen = []
    summary = run_search(algorithm, FakeEvaluator(), tmp_path / "s.db", budget=60,
                         progress=lambda counts, best: seen.append((counts, best)))
    counts = summary.counts
    assert summary.stop_reason == "budget"
    assert counts["finished"] == 60 == algorithm.n_told and counts["pending"] == 0
    assert counts["failed"] > 0 and counts["reused"] > 0
    assert counts["evaluated"] + counts["reused"] == 60
    with Store(tmp_path / "s.db") as store:
        store.select_run()
        results = store.results()
        failed = [e for e in results if e.status == "failed"]
        # the search went on after failures
        assert failed and failed[0].order < 60
        errors = [e for e in failed if e.record.reason == "error"]
        assert errors and all("fake evaluator cannot handle" in e.record.message
                              for e in errors)
        assert all("cosh(" in e.text for e in errors)
        assert all(e.record.reason == "nan_loss" for e in failed if "log(" in e.text
                   and "cosh(" not in e.text)
        nan = [e for e in results if e.text == "expm1(x)"]
        if nan:  # an ok record with NaN metrics is stored with None and ranks last
            assert nan[0].status == "ok" and nan[0].record.validation_accuracy is None
        assert summary.best[0].id == store.best(1)[0].id
        best_fitness = max(e.record.fitness() for e in results)
        assert summary.best_record.validation_accuracy == best_fitness
        assert all(e.worker.endswith(f":{os.getpid()}") or e.worker == "reused"
                   for e in results)
    # progress: once at the start, then after every finished candidate
    assert len(seen) == 61 and seen[0][0]["finished"] == 0 and seen[-1][0]["finished"] == 60
    assert seen[-1][1].validation_accuracy == best_fitness and seen[-1][0]["budget"] == 60
    from keras_actfn.expr.simplify import simplified_text

    # the summary shows each function simplified (min(x, 0) reads min0(x))
    assert "60 candidates" in str(summary)
    assert simplified_text(summary.best[0].text) in str(summary)


def test_numerically_equivalent_functions_reuse_the_result():
    texts = ["x * sigmoid(x)", "sigmoid(x) * x", "swish(x)", "x * sigmoid(alpha * x)",
             "swish(x)"]
    algorithm = SequenceSearch(texts, seeds=[0, 0, 0, 0, 1])
    evaluator = CountingEvaluator()
    with Store(":memory:") as store:
        summary = run_search(algorithm, evaluator, store, budget=10)
        # evaluated: the first spelling, the parametric one, and swish with another seed
        assert evaluator.calls == [("x * sigmoid(x)", 0), ("x * sigmoid(alpha * x)", 0),
                                   ("swish(x)", 1)]
        results = {e.id: e for e in store.results()}
        first = results[1]
        for reused in (results[2], results[3]):
            assert reused.reused_from == first.id and reused.worker == "reused"
            assert reused.record.validation_accuracy == first.record.validation_accuracy
            assert reused.record.fn == reused.text
            assert reused.record.info["reused_from"] == first.id
            assert reused.record.info["reused_fn"] == "x * sigmoid(x)"
        assert results[4].reused_from is None and results[5].reused_from is None
        assert results[5].record.validation_accuracy == pytest.approx(fake_score("swish(x)", 1))
        # budget counts reused candidates; the summary lists distinct functions
        assert summary.counts["finished"] == 5 and summary.counts["reused"] == 2
        assert summary.stop_reason == "done"
        assert [t for t, _ in algorithm.told] == texts
        assert len({e.text for e in summary.best}) == len(summary.best)
        assert all(e.reused_from is None for e in summary.best)


class ManualExecutor(Executor):
    """Holds up to ``slots`` evaluations and finishes them newest first (results out of
    order, as on a cluster)."""

    name = "manual"

    def __init__(self, slots=3):
        super().__init__()
        self.slots, self.jobs, self.submitted = slots, [], []

    @property
    def capacity(self):
        return self.slots - len(self.jobs)

    def submit(self, eval_id, text, seed):
        self.jobs.append((eval_id, text, seed))
        self.submitted.append(text)

    def wait(self, timeout=None):
        if not self.jobs:
            return []
        eval_id, text, seed = self.jobs.pop()
        data, worker = run_evaluation(self.evaluator, text, seed)
        return [Finished(eval_id, EvaluationRecord.from_dict(data), "manual")]


def test_twin_of_a_running_candidate_waits_for_it():
    texts = ["x * sigmoid(x)", "relu(x)", "swish(x)", "max(x, 0)", "tanh(x)"]
    executor = ManualExecutor(slots=2)
    algorithm = SequenceSearch(texts)
    with Store(":memory:") as store:
        summary = run_search(algorithm, FakeEvaluator(), store, executor=executor)
        # swish(x) and max(x, 0) were asked while their twins were running: never submitted
        assert executor.submitted == ["x * sigmoid(x)", "relu(x)", "tanh(x)"]
        by_text = {e.text: e for e in store.results()}
        assert by_text["swish(x)"].reused_from == by_text["x * sigmoid(x)"].id
        assert by_text["max(x, 0)"].reused_from == by_text["relu(x)"].id
        assert summary.counts == {"asked": 5, "pending": 0, "running": 0, "ok": 5,
                                  "failed": 0, "finished": 5, "reused": 2, "evaluated": 3,
                                  "budget": None}
        # steady state: several asks before the first tell, results out of order
        assert [t for t, _ in algorithm.told][:2] == ["relu(x)", "max(x, 0)"]


def test_reuse_can_be_switched_off():
    evaluator = CountingEvaluator()
    run_search(SequenceSearch(["swish(x)", "x * sigmoid(x)"]), evaluator, ":memory:",
               reuse=False)
    assert [t for t, _ in evaluator.calls] == ["swish(x)", "x * sigmoid(x)"]


def test_evaluator_errors_and_bad_returns_become_failed_records():
    def evaluator(text, seed=0):
        if text == "relu(x)":
            raise MemoryError("out of memory")
        if text == "tanh(x)":
            return {"not": "a record"}
        if text == "abs(x)":
            raise SystemExit(3)
        return FakeEvaluator()(text, seed)

    algorithm = SequenceSearch(["relu(x)", "tanh(x)", "abs(x)", "x", "cosh(x)", "log(x)"])
    with Store(":memory:") as store:
        summary = run_search(algorithm, evaluator, store)
        got = {e.text: e.record for e in store.results()}
    assert got["relu(x)"].reason == "out_of_memory"
    assert got["tanh(x)"].reason == "error" and "returned dict" in got["tanh(x)"].message
    assert got["abs(x)"].reason == "error" and "SystemExit" in got["abs(x)"].message
    assert got["cosh(x)"].reason == "error" and "traceback" in got["cosh(x)"].info
    assert got["log(x)"].reason == "nan_loss"
    assert got["x"].ok
    assert summary.counts["failed"] == 5 and summary.best[0].text == "x"
    assert algorithm.told[-1] == ("log(x)", float("-inf"))


def test_config_mismatch_refused_by_run_search(tmp_path):
    path = tmp_path / "c.db"
    run_search(RandomListSearch(seed=1), FakeEvaluator(), path, budget=3)
    with pytest.raises(StoreConfigError, match="algorithm.seed: stored 1, requested 2"):
        run_search(RandomListSearch(seed=2), FakeEvaluator(), path, budget=3)
    with pytest.raises(StoreConfigError, match=r"(?s)^(?!.*algorithm\.seed).*\bseed: stored 0"):
        run_search(RandomListSearch(seed=1), FakeEvaluator(), path, budget=3, seed=5)


def test_second_driver_on_the_same_store_is_refused(tmp_path):
    path = tmp_path / "l.db"
    with Store(path) as holder:
        with holder.driver_lock():
            with pytest.raises(StoreLockedError):
                run_search(RandomListSearch(), FakeEvaluator(), path, budget=2)


def test_resume_continues_exactly(tmp_path):
    """Stopping at a budget and resuming with a larger one equals one longer run."""
    run_search(RandomListSearch(seed=4), FakeEvaluator(), tmp_path / "one.db", budget=50)
    for budget in (7, 20, 20, 33, 50):
        summary = run_search(RandomListSearch(seed=4), FakeEvaluator(), tmp_path / "two.db",
                             budget=budget)
        assert summary.counts["finished"] == budget
    with Store(tmp_path / "one.db") as one, Store(tmp_path / "two.db") as two:
        one.select_run()
        two.select_run()
        assert trace(one) == trace(two) and len(trace(one)) == 50
        assert one.latest_state()["digest"] == two.latest_state()["digest"]


def test_algorithm_done_and_stalled():
    summary = run_search(RandomListSearch(limit=5), FakeEvaluator(), ":memory:", budget=100)
    assert summary.stop_reason == "done" and summary.counts["finished"] == 5

    class Stuck(SequenceSearch):
        def done(self):
            return False

    with pytest.warns(RuntimeWarning, match="proposed nothing"):
        summary = run_search(Stuck(["x"]), FakeEvaluator(), ":memory:")
    assert summary.stop_reason == "stalled" and summary.counts["finished"] == 1


def test_run_search_argument_checks():
    with pytest.raises(TypeError, match="SearchAlgorithm"):
        run_search(object(), FakeEvaluator(), ":memory:")
    with pytest.raises(ValueError, match="budget"):
        run_search(RandomListSearch(), FakeEvaluator(), ":memory:", budget=-1)

    class Bad(SequenceSearch):
        def ask(self):
            return "x"

    with pytest.raises(TypeError, match="expected a Candidate"):
        run_search(Bad(["x"]), FakeEvaluator(), ":memory:")


def test_pending_candidates_are_rerun_first(tmp_path):
    """A store left with asked-but-unfinished candidates (as a killed search leaves it):
    the resumed driver finishes them before asking anything new, each exactly once."""
    path = tmp_path / "p.db"
    evaluator = CountingEvaluator()

    class Killed(Exception):
        pass

    class DieAfterSubmit(InProcessExecutor):
        def wait(self, timeout=None):
            raise Killed

    with pytest.raises(Killed):
        run_search(RandomListSearch(seed=2), evaluator, path, executor=DieAfterSubmit(),
                   budget=10)
    with Store(path) as store:
        store.select_run()
        pending = store.pending()
        assert len(pending) == 1 and pending[0].status == "running"
    run_search(RandomListSearch(seed=2), evaluator, path, budget=10)
    assert evaluator.calls[0][0] == pending[0].text
    with Store(path) as store:
        store.select_run()
        assert store.results()[0].id == pending[0].id
        assert store.counts()["finished"] == 10


# --------------------------------------------------------------------------- SIGKILL
def _child(store, budget, seed, delay, die_at=None):
    command = [sys.executable, str(CHILD), str(store), "--budget", str(budget), "--seed",
               str(seed), "--delay", str(delay)]
    if die_at:
        command += ["--die-at", die_at]
    # the child drives the engine with a fake evaluator: it needs no TensorFlow
    # (KERAS_ACTFN_LAZY_IMPORT), and test_the_engine_runs_without_tensorflow checks it has none
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(TESTS.parent),
               KERAS_ACTFN_LAZY_IMPORT="1")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_sigkill_at_any_point_loses_and_duplicates_nothing(tmp_path):
    """Kill a searching child process with SIGKILL, at the most dangerous windows and at
    random moments, resume until the budget is done: the journal equals an uninterrupted
    run's exactly (same candidates, same results, same order, same best)."""
    budget, seed, delay = 40, 11, 0.05
    reference = tmp_path / "reference.db"
    run_search(RandomListSearch(seed=seed), FakeEvaluator(), reference, budget=budget,
               seed=seed)

    path = tmp_path / "killed.db"
    rng = random.Random(1234)
    plan = ["before-pending:3", "before-submit:2", "in-complete:2", "before-complete:3",
            "after-complete:2", None, None]
    cut_short = []
    for die_at in plan:
        child = _child(path, budget, seed, delay, die_at)
        if die_at is None:  # a kill from outside at a random moment of the search
            assert child.stdout.readline().strip() == "started"
            time.sleep(rng.uniform(0.05, 0.6))
            child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=120)
        # a random kill may come after the search finished (exit status 0)
        assert child.returncode in ((-signal.SIGKILL,) if die_at else (-signal.SIGKILL, 0)), \
            err[-2000:]
        with Store(path) as store:
            store.select_run()
            cut_short.append(store.counts()["finished"] < budget)
    # every planned kill, and at least one random one, stopped the search midway
    assert all(cut_short[:5]) and any(cut_short[5:])
    child = _child(path, budget, seed, delay)  # then let it finish
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err[-2000:]
    assert out.split()[-1] == str(budget)

    with Store(reference) as ref, Store(path) as store:
        ref.select_run()
        store.select_run()
        evaluations = store.evaluations()
        # every asked candidate has exactly one finished result; nothing is left over
        assert store.pending() == []
        assert store.counts()["finished"] == budget == len(evaluations)
        indices = [e.candidate.meta["index"] for e in evaluations]
        assert sorted(indices) == list(range(budget))      # no ask lost, none duplicated
        assert sorted(e.order for e in evaluations) == list(range(1, budget + 1))
        state = store.latest_state()
        assert state["n_asked"] == state["n_told"] == budget and state["outstanding"] == []
        # deterministic (in-process executor): the very same search as without kills
        assert trace(store) == trace(ref)
        assert state["digest"] == ref.latest_state()["digest"]
        assert [e.text for e in store.best(5)] == [e.text for e in ref.best(5)]


def test_the_engine_runs_without_tensorflow(tmp_path):
    """A process that only drives the engine (a search, its journal, equivalence keys, a
    fake evaluator) imports no TensorFlow when the package is imported lazily."""
    child = _child(tmp_path / "s.db", 6, 3, 0.0)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err[-2000:]
    assert "tensorflow imported: False" in out and out.split()[-1] == "6", out


# --------------------------------------------------------------------------- process pool
def test_local_pool_two_workers_lose_nothing(tmp_path, monkeypatch):
    # the workers only run the fake evaluator: they need not import TensorFlow (the
    # library's lazy mode, inherited by the spawned workers)
    monkeypatch.setenv("KERAS_ACTFN_LAZY_IMPORT", "1")
    log = tmp_path / "calls.log"
    path = tmp_path / "pool.db"
    budget = 16
    with LocalPoolExecutor(workers=2, gpus=None) as executor:
        summary = run_search(RandomListSearch(seed=5), FakeEvaluator(delay=0.15,
                                                                     log_path=str(log)),
                             path, executor=executor, budget=budget, poll_interval=0.2)
    assert summary.counts["finished"] == budget and summary.counts["pending"] == 0
    with Store(path) as store:
        store.select_run()
        evaluations = store.evaluations()
        assert sorted(e.candidate.meta["index"] for e in evaluations) == list(range(budget))
        evaluated = [e for e in evaluations if e.reused_from is None]
        workers = {e.worker for e in evaluated}
        assert len(workers) == 2 and all(w.split(":")[-1].isdigit() for w in workers)
        assert os.getpid() not in {int(w.split(":")[-1]) for w in workers}
        state = store.latest_state()
        assert state["n_told"] == budget and state["outstanding"] == []
    # each evaluated candidate ran exactly once, in the workers
    calls = log.read_text().splitlines()
    assert len(calls) == len(evaluated)
    assert sorted(c.split("\t")[0] for c in calls) == sorted(e.text for e in evaluated)


class FakeBrokenPool:
    """Stands in for a ProcessPoolExecutor whose worker dies on ``sinh(``: the pool breaks
    and every future still running on it fails with ``BrokenProcessPool``."""

    made = 0

    def __init__(self):
        type(self).made += 1
        self.futures, self.broken, self.lock = [], False, threading.Lock()

    def submit(self, fn, evaluator, text, seed):
        if self.broken:
            raise concurrent.futures.process.BrokenProcessPool("broken")
        future = concurrent.futures.Future()
        self.futures.append(future)

        def work():
            if "sinh(" in text:
                time.sleep(0.05)
                with self.lock:
                    self.broken = True
                    for f in self.futures:
                        if not f.done():
                            f.set_exception(concurrent.futures.process.BrokenProcessPool(
                                "a process in the pool was terminated abruptly"))
                return
            result = fn(evaluator, text, seed)
            time.sleep(0.2)
            with self.lock:
                if not future.done():
                    future.set_result(result)

        threading.Thread(target=work, daemon=True).start()
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def test_pool_worker_crash_is_isolated_and_recorded():
    executor = LocalPoolExecutor(workers=2, gpus=None)
    executor._make_pool = FakeBrokenPool
    FakeBrokenPool.made = 0
    texts = ["tanh(x)", "sinh(x)", "relu(x)", "abs(x)", "erf(x)"]
    with Store(":memory:") as store:
        summary = run_search(SequenceSearch(texts), FakeEvaluator(), store,
                             executor=executor, poll_interval=0.05)
        got = {e.text: e for e in store.results()}
    assert summary.counts["finished"] == 5 and summary.counts["failed"] == 1
    assert got["sinh(x)"].record.reason == "error"
    assert "worker process died" in got["sinh(x)"].record.message
    assert all(got[t].status == "ok" for t in texts if t != "sinh(x)")
    # first pool, tanh re-run alone, sinh alone (breaks it again), then a fresh one
    assert FakeBrokenPool.made == 3


@pytest.mark.slow
def test_real_pool_worker_crash(tmp_path):
    """The same with real processes: a worker calling os._exit mid-evaluation."""
    texts = ["tanh(x)", "sinh(x)", "relu(x)"]
    with LocalPoolExecutor(workers=2, gpus=None) as executor:
        summary = run_search(SequenceSearch(texts), crashing_evaluator, tmp_path / "r.db",
                             executor=executor, poll_interval=0.2)
    assert summary.counts["finished"] == 3 and summary.counts["failed"] == 1


def test_pool_gpu_assignment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert detect_gpus() == ["0", "1"]
    executor = LocalPoolExecutor(gpus="auto")
    assert executor.workers == 2 and executor.gpus == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert LocalPoolExecutor(gpus="auto").workers == 1
    with pytest.raises(ValueError, match="workers"):
        LocalPoolExecutor(workers=0)
    # the initializer pins worker i to gpus[i % n]
    from keras_actfn.search.engine import executors

    class Counter:
        value = 0

        def get_lock(self):
            return threading.Lock()

    counter = Counter()
    seen = []
    for _ in range(3):
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        executors._init_worker(("3", "5"), counter)
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["3", "5", "3"]


# --------------------------------------------------------------------------- Ray
def test_ray_executor_without_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"keras_actfn\[ray\]"):
        RayExecutor()


# The Ray executor itself (actors, retry policy, resources per task, connection retries) is
# checked in tests/test_ray_executor.py (its logic, fast) and tests/test_ray_cluster.py (a
# real local Ray cluster in a loopback-only network namespace).
