"""Real-Ray scenarios of tests/test_ray_cluster.py, run in ONE process tree inside a network
namespace that holds only ``lo`` (``unshare --net``): one local Ray cluster (2 CPUs and one
declared GPU) serves every scenario, and the facts go to a JSON file the tests check.

    unshare --net sh -c 'ip link set lo up && exec python tests/ray_scenarios.py OUT.json'

Modes: ``OUT.json`` (all scenarios) and ``driver STORE ...`` (the search driver that the
kill scenario SIGKILLs and resumes). Nothing here asserts: the tests do, from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

#: the kill scenario's search: RandomListSearch(seed) over search_fakes.EXPRESSIONS
KILL_BUDGET, KILL_SEED, KILL_AT = 10, 3, 4
#: the retry scenario: eight ordinary candidates, one that kills its worker every time,
#: one that kills it the first time only
ORDINARY = ("relu(x)", "tanh(x)", "abs(x)", "elu(x)", "softsign(x)", "erf(x)", "selu(x)",
            "arctan(x)")
ALWAYS, ONCE = "sinh(x)", "square(x)"

_CALLS = 0  # evaluations this process ran (a per-process counter: one process per actor)


def _log_line(path, **fields):
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(fields) + "\n")


class ProbeEvaluator:
    """A fake evaluator that reports where and how it ran (never trains): pid, resources
    Ray assigned, TensorFlow's thread settings, and start/end times to ``log``."""

    def __init__(self, log, marks, delay=0.3):
        self.log, self.marks, self.delay = log, marks, float(delay)

    def __call__(self, text, seed=0):
        global _CALLS
        tf_loaded = "tensorflow" in sys.modules
        start = time.time()
        _log_line(self.log, event="start", text=text, pid=os.getpid(), t=start)
        mark = os.path.join(self.marks, text.replace("(", "_").replace(")", ""))
        if text == ALWAYS or (text == ONCE and not os.path.exists(mark)):
            Path(mark).touch()
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-evaluation
        time.sleep(self.delay)
        _CALLS += 1
        import ray
        import tensorflow as tf

        from search_fakes import fake_score

        from keras_actfn.train.record import EvaluationRecord

        resources = ray.get_runtime_context().get_assigned_resources()
        info = {"pid": os.getpid(), "calls_in_process": _CALLS, "tf_loaded": tf_loaded,
                "resources": {k: float(v) for k, v in resources.items()},
                "intra": tf.config.threading.get_intra_op_parallelism_threads(),
                "inter": tf.config.threading.get_inter_op_parallelism_threads(),
                "env_intra": os.environ.get("TF_NUM_INTRAOP_THREADS"),
                "growth": os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH"),
                "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}
        _log_line(self.log, event="end", text=text, pid=os.getpid(), t=time.time())
        return EvaluationRecord(fn=text, task="fake", model="fake", recipe="fake", seed=seed,
                                validation_accuracy=fake_score(text, seed),
                                runtime_s=time.time() - start, info=info)


class SlowFake:
    """search_fakes.FakeEvaluator with start/end times in a log (the kill scenario)."""

    def __init__(self, log, delay):
        self.log, self.delay = log, float(delay)

    def __call__(self, text, seed=0):
        from search_fakes import FakeEvaluator

        _log_line(self.log, event="start", text=text, pid=os.getpid(), t=time.time())
        record = FakeEvaluator(delay=self.delay)(text, seed=seed)
        _log_line(self.log, event="end", text=text, pid=os.getpid(), t=time.time())
        return record


def _sockets():
    """Every inet socket of this network namespace (psutil reads /proc/net/*)."""
    import psutil

    out = []
    for conn in psutil.net_connections(kind="inet"):
        out.append({"laddr": list(conn.laddr) if conn.laddr else None,
                    "raddr": list(conn.raddr) if conn.raddr else None,
                    "status": conn.status, "pid": conn.pid,
                    "name": _name(conn.pid)})
    return out


def _name(pid):
    import psutil

    try:
        return psutil.Process(pid).name() if pid else None
    except psutil.Error:
        return None


def _records(store_path, run="search"):
    from keras_actfn.search.engine.store import Store

    with Store(store_path) as store:
        store.select_run(run)
        return [[e.text, e.record.to_dict()] for e in store.results()]


# --------------------------------------------------------------------------- driver mode
def driver(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--log", required=True)
    parser.add_argument("--delay", type=float, default=0.4)
    parser.add_argument("--address-file", required=True)
    parser.add_argument("--go-file", default=None)
    args = parser.parse_args(argv)
    import ray
    from search_fakes import RandomListSearch

    from keras_actfn.search.engine.driver import run_search
    from keras_actfn.search.engine.executors import RayExecutor

    # started before the cluster (importing Ray takes a while): wait for its
    # address, and for the go of the scenario when this driver resumes a killed one
    while not os.path.exists(args.address_file):
        time.sleep(0.05)
    with open(args.address_file, encoding="utf-8") as handle:
        address = handle.read().strip()
    ray.init(address=address, log_to_driver=False)
    while args.go_file and not os.path.exists(args.go_file):
        time.sleep(0.05)
    executor = RayExecutor(cpus_per_task=1, gpus_per_task=0, max_in_flight=1)
    print("started", flush=True)
    summary = run_search(RandomListSearch(seed=KILL_SEED), SlowFake(args.log, args.delay),
                         args.store, executor=executor, budget=KILL_BUDGET, seed=0,
                         poll_interval=0.05)
    executor.close()
    print("finished", summary.counts["finished"], flush=True)


# --------------------------------------------------------------------------- scenarios
def start_drivers(tmp):
    """The two drivers of the kill scenario, started at once (see :func:`driver`)."""
    store, log = os.path.join(tmp, "killed.db"), os.path.join(tmp, "kill.log")
    command = [sys.executable, __file__, "driver", store, "--address-file",
               os.path.join(tmp, "address")]
    first = subprocess.Popen(command + ["--log", log], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    second = subprocess.Popen(command + ["--log", log + ".2", "--go-file",
                                         os.path.join(tmp, "go")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return store, log, first, second


def kill_scenario(tmp, out, drivers):
    """A search on Ray (--workers 1) SIGKILLed mid-run, resumed; and the same search run
    uninterrupted in this process as the reference."""
    from search_fakes import FakeEvaluator, RandomListSearch

    from keras_actfn.search.engine.driver import run_search
    from keras_actfn.search.engine.store import Store

    reference = os.path.join(tmp, "reference.db")
    run_search(RandomListSearch(seed=KILL_SEED), FakeEvaluator(), reference,
               budget=KILL_BUDGET, seed=0)
    out["kill_reference"] = _records(reference)
    store, log, child, second = drivers
    deadline, seen = time.time() + 240, 0
    while time.time() < deadline and child.poll() is None:
        if os.path.exists(store):
            try:
                with Store(store) as journal:
                    journal.select_run("search")
                    seen = journal.counts()["finished"]
            except Exception:  # noqa: BLE001 - the store is being created
                seen = 0
            if seen >= KILL_AT:
                break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    out["kill_finished_at_kill"] = seen
    out["kill_log_first"] = _read_log(log)
    Path(tmp, "go").touch()
    stdout, stderr = second.communicate(timeout=240)
    out["kill_resume_stdout"] = stdout[-2000:]
    out["kill_resume_stderr"] = stderr[-3000:]
    out["kill_resumed"] = _records(store)
    out["kill_log_second"] = _read_log(log + ".2")


def _read_log(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as log:
        return [json.loads(line) for line in log if line.strip()]


def _list_search(texts):
    """A SearchAlgorithm asking ``texts`` in order."""
    from keras_actfn.search.engine.base import Candidate, SearchAlgorithm

    class Fixed(SearchAlgorithm):
        name = "fixed-list"

        def __init__(self):
            self.texts, self.asked, self.told = list(texts), 0, 0

        def ask(self):
            if self.asked >= len(self.texts):
                return None
            self.asked += 1
            return Candidate(self.texts[self.asked - 1])

        def tell(self, candidate, record):
            self.told += 1

        def done(self):
            return self.told >= len(self.texts)

        def state_dict(self):
            return {"asked": self.asked, "told": self.told}

        def load_state_dict(self, state):
            self.asked, self.told = state["asked"], state["told"]

        def config(self):
            return {"algorithm": self.name, "texts": self.texts}

    return Fixed()


def retry_scenario(tmp, out, drivers):
    """Workers killed mid-evaluation (retried once, then recorded), resources per task,
    TensorFlow set up once per actor, the data-dir check, and the sockets Ray opened."""
    import ray

    from keras_actfn.search.engine.driver import run_search
    from keras_actfn.search.engine.executors import RayExecutor
    from keras_actfn.search.engine.store import Store

    log, marks = os.path.join(tmp, "retry.log"), os.path.join(tmp, "marks")
    os.makedirs(marks)
    data_dir = os.path.join(tmp, "datasets")
    os.makedirs(data_dir)
    executor = RayExecutor(cpus_per_task=0.5, gpus_per_task=0.5, max_in_flight=2,
                           max_retries=1, data_dir=data_dir)
    started = time.time()
    with Store(":memory:") as store:
        summary = run_search(_list_search(list(ORDINARY) + [ALWAYS, ONCE]),
                             ProbeEvaluator(log, marks), store, executor=executor,
                             poll_interval=0.05)
        out["retry_results"] = [[e.text, e.record.to_dict()] for e in store.results()]
    out["retry_seconds"] = time.time() - started
    out["retry_counts"] = summary.counts
    out["retry_replaced"] = executor.replaced
    out["retry_workers_alive"] = len(executor._slots)
    out["sockets"] = _sockets()
    out["nodes"] = [n.get("NodeManagerAddress") for n in ray.nodes()]
    # the data-dir check of a folder no node has, on the worker still alive (a new one
    # would import TensorFlow again)
    from keras_actfn.search.engine.ray_executor import RayDataDirError

    executor.data_dir = os.path.join(tmp, "not-there")
    try:
        executor._check_data_dir()
        out["data_dir_error"] = None
    except RayDataDirError as err:
        out["data_dir_error"] = str(err)
    executor.close()
    out["retry_log"] = _read_log(log)
    out["retry_marks"] = sorted(os.listdir(marks))


def main(out_path):
    import shutil
    import threading

    out = {"started": time.time()}
    # the namespace holds only lo and this process tree: no one else can reach the
    # cluster, so Ray's token authentication (a token in ~/.ray, shared with the user's
    # own clusters) stays off rather than touching the home folder
    # KERAS_ACTFN_LAZY_IMPORT: this process and the drivers only drive the engine and
    # import no TensorFlow (each import costs seconds of the two cores); Ray's workers
    # import it once when they start (configure_worker), as the tests check
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
                      KERAS_ACTFN_LAZY_IMPORT="1",
                      PYTHONPATH=os.pathsep.join([str(REPO), str(HERE)]))
    tmp = tempfile.mkdtemp(prefix="ray-scenarios-")
    drivers = start_drivers(tmp)  # first: they import the engine while the head starts
    try:
        import ray
        import search_fakes  # noqa: F401 - imported before the scenario threads start

        import keras_actfn.search.engine.driver  # noqa: F401
        import keras_actfn.search.engine.executors  # noqa: F401

        # the head of the one cluster every scenario uses: 2 CPUs, one declared GPU (none
        # is there: it is a resource to hand out in fractions), loopback only
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1")
        address = ray.get_runtime_context().gcs_address
        with open(os.path.join(tmp, "address.part"), "w", encoding="utf-8") as handle:
            handle.write(address)
        os.replace(os.path.join(tmp, "address.part"), os.path.join(tmp, "address"))
        out["address"] = address
        out["ray_started_seconds"] = time.time() - out["started"]

        def run(scenario):
            t = time.time()
            try:
                scenario(tmp, out, drivers)
            except Exception as err:  # noqa: BLE001 - reported to the tests
                import traceback

                out[f"{scenario.__name__}_error"] = traceback.format_exc()[-4000:]
                print(err, file=sys.stderr)
            out[f"{scenario.__name__}_seconds"] = time.time() - t

        # the kill scenario's drivers are other processes: it runs beside the retry
        # scenario, on the other half of the cluster
        killer = threading.Thread(target=run, args=(kill_scenario,))
        killer.start()
        run(retry_scenario)
        killer.join()
    finally:
        for child in drivers[2:]:
            if child.poll() is None:
                child.kill()
        if "ray" in sys.modules:
            sys.modules["ray"].shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
        out["total_seconds"] = time.time() - out["started"]
        with open(out_path, "w", encoding="utf-8") as handle:
            json.dump(out, handle)


if __name__ == "__main__":
    if sys.argv[1] == "driver":
        driver(sys.argv[2:])
    else:
        main(sys.argv[1])
