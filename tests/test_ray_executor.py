"""Fast checks of the Ray executor's own logic, without a cluster: the connection retries
and their one-line error, the sorting of failures into system failures (retried) and the
candidate's own, resources and threads per task, the adaptive width, the data-dir check,
the CLI's Ray flags, and AQuaSurF's FIM features on an executor. The behaviour on a real
Ray cluster is tests/test_ray_cluster.py."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is in the test extra: pip install -e '.[test]'")

from keras_actfn import cli  # noqa: E402
from keras_actfn.search.engine import ray_executor as rx  # noqa: E402
from keras_actfn.search.engine.executors import RayExecutor  # noqa: E402
from keras_actfn.search.engine import make_executor  # noqa: E402


class StubRay:
    """The few calls of ``ray`` the tested code paths make, scripted."""

    def __init__(self, failures=(), cluster=None, available=None):
        self.failures = list(failures)
        self.initialized = False
        self.init_calls = 0
        self.cluster = dict(cluster or {"CPU": 2.0})
        self.available = dict(available or self.cluster)
        self.exceptions = ray.exceptions

    def is_initialized(self):
        return self.initialized

    def init(self, address=None, **kwargs):
        self.init_calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.initialized = True

    def shutdown(self):
        self.initialized = False

    def cluster_resources(self):
        return dict(self.cluster)

    def available_resources(self):
        return dict(self.available)

    def wait(self, refs, num_returns=1, timeout=None):
        return list(refs), []


def _executor(stub, monkeypatch, **kwargs):
    executor = RayExecutor(**kwargs)
    executor.ray = stub
    sleeps = []
    monkeypatch.setattr(rx.time, "sleep", sleeps.append)
    return executor, sleeps


# --------------------------------------------------------------------------- connecting
def test_connection_failures_are_retried_with_growing_pauses(monkeypatch):
    stub = StubRay(failures=[ConnectionError("Starting Ray client server failed"),
                             RuntimeError("Failed to connect to GCS at 10.0.0.1:6379")])
    executor, sleeps = _executor(stub, monkeypatch, address="ray://head:10001",
                                 backoff_s=1.5)
    executor.connect()
    assert stub.initialized and stub.init_calls == 3
    assert sleeps == [1.5, 3.0]  # doubled after each failure
    assert executor._started_ray  # ours to shut down
    executor.close()
    assert not stub.initialized


def test_connection_that_keeps_failing_is_one_clear_line(monkeypatch):
    stub = StubRay(failures=[ConnectionError("Starting Ray client server failed")] * 10)
    executor, sleeps = _executor(stub, monkeypatch, address="ray://head:10001",
                                 connect_retries=3, backoff_s=1)
    with pytest.raises(rx.RayConnectionError) as caught:
        executor.connect()
    message = str(caught.value)
    assert stub.init_calls == 4 and sleeps == [1, 2, 4]
    assert "ray://head:10001" in message and "4 attempts" in message
    assert "Starting Ray client server failed" in message and "\n" not in message
    from keras_actfn.errors import user_error_message

    assert user_error_message(caught.value) == message  # the CLI prints it, exit 2


def test_other_errors_at_connection_are_not_retried(monkeypatch):
    stub = StubRay(failures=[ValueError("address must be host:port")])
    executor, sleeps = _executor(stub, monkeypatch, address="bad")
    with pytest.raises(ValueError, match="host:port"):
        executor.connect()
    assert stub.init_calls == 1 and sleeps == []


def test_cli_prints_the_connection_failure_as_one_line(monkeypatch, capsys, tmp_path):
    stub = types.ModuleType("ray")
    state = StubRay(failures=[ConnectionError("Starting Ray client server failed")] * 10)
    for name in ("is_initialized", "init", "shutdown", "cluster_resources", "wait"):
        setattr(stub, name, getattr(state, name))
    stub.exceptions = ray.exceptions
    monkeypatch.setitem(sys.modules, "ray", stub)
    monkeypatch.setattr(rx.time, "sleep", lambda s: None)
    code = cli.main(["search", "pangaea", "--executor", "ray", "--ray-address",
                     "ray://127.0.0.1:10001", "--budget", "1", "--final-seeds", "0", "-q",
                     "--store", str(tmp_path / "s.db")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "could not connect to the Ray cluster at ray://127.0.0.1:10001" in err[0]
    assert state.init_calls == 4


# --------------------------------------------------------------------------- failures
def test_system_failures_are_told_from_the_candidates_own():
    exc = ray.exceptions
    assert rx.classify_system_failure(exc.ActorDiedError()) == "worker_crashed"
    assert rx.classify_system_failure(exc.WorkerCrashedError()) == "worker_crashed"
    assert rx.classify_system_failure(exc.NodeDiedError("node gone")) == "worker_crashed"
    assert rx.classify_system_failure(
        exc.OutOfMemoryError("Task was killed due to the node running low on memory")) \
        == "out_of_memory"
    # every unexpected death lists "the OOM killer" among possible causes: not a verdict
    generic = exc.ActorDiedError()
    assert rx.classify_system_failure(generic) == "worker_crashed"
    assert rx.classify_system_failure(RuntimeError("boom")) is None
    assert rx.classify_system_failure(ValueError("the evaluator's own")) is None


def test_failed_record_after_the_retries(monkeypatch):
    executor, _ = _executor(StubRay(), monkeypatch, max_retries=1)
    executor.evaluator = lambda text, seed=0: None
    done = executor._failure((7, "sinh(x)", 3), 2, "worker_crashed",
                             ray.exceptions.WorkerCrashedError())
    record = done.record
    assert done.eval_id == 7 and record.failed and record.reason == "worker_crashed"
    assert record.fn == "sinh(x)" and record.seed == 3 and record.info["attempts"] == 2
    oom = executor._failure((8, "x", 0), 2, "out_of_memory", ray.exceptions.OutOfMemoryError(
        "running low on memory")).record
    assert oom.reason == "out_of_memory" and "killed for memory" in oom.message


# --------------------------------------------------------------------------- resources
@pytest.mark.parametrize("cpus,threads", [(None, None), (0, None), (0.25, 1), (0.5, 1),
                                          (1, 1), (2, 2), (8, 8)])
def test_tensorflow_threads_follow_the_tasks_cpus(cpus, threads):
    assert rx.task_threads(cpus) == threads


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), 1.5, "two", True])
def test_bad_resources_are_refused(value):
    with pytest.raises(ValueError, match="cpus_per_task"):
        RayExecutor(cpus_per_task=value)


def test_resources_and_width_from_the_python_api():
    executor = make_executor("ray", 3, "auto", cpus_per_task=0.5, gpus_per_task=0.25,
                             max_retries=2)
    assert (executor.cpus_per_task, executor.gpus_per_task) == (0.5, 0.25)
    assert executor.max_in_flight == 3 and executor.max_retries == 2
    assert executor.address == "auto"
    assert make_executor("ray").max_in_flight is None  # follows the cluster
    with pytest.raises(ValueError, match="ray executor only"):
        make_executor("local", 2, cpus_per_task=1)
    with pytest.raises(ValueError, match="max_in_flight"):
        RayExecutor(max_in_flight=0)


def test_default_width_follows_the_free_resources(monkeypatch):
    stub = StubRay(cluster={"CPU": 4.0}, available={"CPU": 4.0})
    executor, _ = _executor(stub, monkeypatch, cpus_per_task=2, gpus_per_task=0,
                            refresh_s=0)
    executor._evaluator_ref = object()  # started
    executor._refresh(force=True)
    assert executor.capacity == 2  # 4 free CPUs / 2 per task
    # two workers placed (holding 4 CPUs), then a node with 6 more CPUs joins
    executor._slots = [rx._Slot(None, None) for _ in range(2)]
    for slot in executor._slots:
        slot.is_ready = True
    stub.available = {"CPU": 6.0}
    executor._refresh()
    assert executor._target == 5  # 2 held + 3 more fit
    # the node leaves: its workers die and are dropped; nothing is free
    executor._slots = executor._slots[:1]
    stub.available = {"CPU": 0.0}
    executor._refresh()
    assert executor._target == 1
    # a worker still being placed: wait for it before looking again
    executor._slots.append(rx._Slot(None, "pending"))
    stub.wait = lambda refs, num_returns=1, timeout=None: ([], list(refs))
    stub.available = {"CPU": 8.0}
    executor._refresh()
    assert executor._target == 1


def test_gpu_width_and_the_explicit_cap(monkeypatch):
    stub = StubRay(cluster={"CPU": 16.0, "GPU": 2.0}, available={"CPU": 16.0, "GPU": 2.0})
    executor, _ = _executor(stub, monkeypatch, gpus_per_task=0.5)
    executor._refresh(force=True)
    assert executor._target == 4  # two GPUs, half a GPU each
    capped, _ = _executor(stub, monkeypatch, gpus_per_task=0.5, max_in_flight=1)
    capped._refresh(force=True)
    assert capped._target == 1  # --workers 1


# --------------------------------------------------------------------------- data dir
def test_data_dir_check(tmp_path):
    assert rx.check_data_dir(tmp_path) is None
    assert rx.check_data_dir(tmp_path / "missing") == "it does not exist"
    (tmp_path / "file").write_text("x")
    assert rx.check_data_dir(tmp_path / "file") == "it is not a folder"


# --------------------------------------------------------------------------- CLI flags
def test_cli_ray_flags_reach_the_executor(monkeypatch, tmp_path):
    seen = {}

    def start(self, evaluator):
        seen.update(cpus=self.cpus_per_task, gpus=self.gpus_per_task,
                    width=self.max_in_flight, retries=self.max_retries,
                    data_dir=self.data_dir, address=self.address)
        raise rx.RayConnectionError("stop here")

    monkeypatch.setattr(RayExecutor, "start", start)
    base = ["search", "pangaea", "--executor", "ray", "--budget", "1", "--final-seeds", "0",
            "-q", "--store", str(tmp_path / "s.db")]
    assert cli.main(base + ["--workers", "1", "--cpus-per-task", "0.5", "--gpus-per-task",
                            "0.25", "--max-retries", "0", "--ray-address", "auto"]) == 2
    assert seen == {"cpus": 0.5, "gpus": 0.25, "width": 1, "retries": 0, "data_dir": None,
                    "address": "auto"}
    seen.clear()
    assert cli.main(base + ["--store", str(tmp_path / "t.db")]) == 2
    assert seen["width"] is None and seen["cpus"] == 1.0 and seen["retries"] == 1


@pytest.mark.parametrize("flags,needle", [
    (["--cpus-per-task", "1"], "--cpus-per-task apply to --executor ray"),
    (["--executor", "ray", "--gpus-per-task", "2.5"], "--gpus-per-task: Ray takes"),
    (["--executor", "ray", "--cpus-per-task", "-1"], "--cpus-per-task"),
    (["--executor", "ray", "--max-retries", "-1"], "--max-retries"),
])
def test_cli_ray_flag_mistakes_are_usage_errors(flags, needle, capsys, tmp_path):
    code = cli.main(["search", "pangaea", "--budget", "1", "--store",
                     str(tmp_path / "s.db"), *flags])
    assert code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()


# --------------------------------------------------------------------------- FIM features
class MapExecutor:
    """Stands in for RayExecutor.map_chunks / submit_chunk: runs chunks here, in reverse
    order (Ray returns them in any order)."""

    def __init__(self):
        self.chunks = []

    def map_chunks(self, function, chunks, on_result=None):
        results = {}
        for index in reversed(range(len(chunks))):
            self.chunks.append(list(chunks[index]))
            results[index] = function(chunks[index])
            if on_result is not None:
                on_result(chunks[index], results[index])
        return [results[i] for i in range(len(chunks))]

    def submit_chunk(self, function, chunk):
        self.chunks.append(list(chunk))
        result = function(chunk)

        class Done:
            def done(self):
                return True

            def result(self):
                return result

            def cancel(self):
                pass

        return Done()


def _fake_fim(texts):
    return [{"cdf": [float(len(t))], "layers": [], "valid": "log" not in t} for t in texts]


def test_fim_features_on_an_executor():
    from keras_actfn.search.aquasurf.pool import CandidatePool

    texts = [f"f{i}(x)" for i in range(10)] + ["log(x)"]
    outputs = np.arange(len(texts) * 3, dtype=float).reshape(len(texts), 3)
    pool = CandidatePool(texts, outputs, features="both", fim=_fake_fim, chunk=3,
                         progress=None)
    executor = MapExecutor()
    assert pool.compute(workers=executor) == len(texts)
    assert sorted(sum(executor.chunks, [])) == sorted(texts)  # every function, on it
    assert pool.entries["f3(x)"]["cdf"] == [5.0] and pool.filtered() == ["log(x)"]
    # parallel mode: one chunk at a time, each submitted when the one before is collected
    background = CandidatePool(texts, outputs, features="both", fim=_fake_fim, chunk=4,
                               progress=None)
    executor = MapExecutor()
    background.start_background(executor=executor)
    assert executor.chunks == []  # nothing runs before it is polled
    assert background.collect() == len(texts)
    assert [len(c) for c in executor.chunks] == [4, 4, 3]
    assert background.missing() == []


# --------------------------------------------------------------------------- user data
def test_user_arrays_go_to_ray_in_memory_not_as_files(monkeypatch, tmp_path):
    """ActivationSearch(executor="ray") with NumPy arrays: the evaluator handed to the
    executor (which puts it in Ray's object store once) holds the arrays themselves, and no
    data files are written beside the store (they would need a shared filesystem)."""
    import pickle

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from user_models import make_data, make_model

    import keras_actfn as ka

    seen = {}

    def start(self, evaluator):
        seen["evaluator"], seen["options"] = evaluator, (self.cpus_per_task,
                                                         self.max_in_flight)
        raise rx.RayConnectionError("stop here")

    monkeypatch.setattr(RayExecutor, "start", start)
    x, y = make_data(n=64)
    store = tmp_path / "user.db"
    search = ka.ActivationSearch(make_model(), method="pangaea", budget=1, store=store,
                                 executor="ray", ray_options={"cpus_per_task": 0.5},
                                 progress=False)
    with pytest.raises(rx.RayConnectionError):
        search.search(x[:48], y[:48], validation_data=(x[48:], y[48:]))
    evaluator = seen["evaluator"]
    assert seen["options"] == (0.5, None)  # workers=None on Ray: follow the cluster
    assert evaluator.data.train.kind == "arrays"
    np.testing.assert_array_equal(evaluator.data.train.x, x[:48])
    assert not (tmp_path / "user_data").exists()
    copy = pickle.loads(pickle.dumps(evaluator))  # what the object store holds
    np.testing.assert_array_equal(copy.data.validation.y, y[48:])
    with pytest.raises(Exception, match="apply to executor='ray'"):
        ka.ActivationSearch(make_model(), executor="pool", ray_options={"cpus_per_task": 1})
