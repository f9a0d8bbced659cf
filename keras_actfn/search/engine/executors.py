"""Run evaluations: in this process, on a local process pool, or on Ray worker actors
(:class:`RayExecutor`, defined in :mod:`keras_actfn.search.engine.ray_executor`).

An executor runs ``evaluator(text, seed=seed)`` for the driver and hands back the records;
it never touches the store (the driver alone writes it). Every executor has the same small
interface:

* ``start(evaluator)``: bind the evaluator (a picklable callable returning an
  :class:`~keras_actfn.train.record.EvaluationRecord`, e.g.
  ``functools.partial(evaluate_activation, task="mnist1d", recipe="quick")``, which is why
  the seed is passed by keyword);
* ``capacity``: free slots; the driver submits only while it is positive;
* ``submit(eval_id, text, seed)``: start one evaluation;
* ``wait(timeout)``: the evaluations finished since the last call, as :class:`Finished`
  tuples, waiting up to ``timeout`` seconds for at least one (``[]`` on timeout or when
  nothing runs);
* ``close(cancel=False)``.

Nothing a candidate does reaches the driver as an exception: an evaluator that raises, returns
something other than a record, or kills its worker process gives a failed record
(``reason="error"``, or ``"out_of_memory"`` for ``MemoryError``) with the cause in
``message`` (DESIGN decision 5).
"""

from __future__ import annotations

import abc
import collections
import concurrent.futures
import functools
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import NamedTuple

from ...train.record import EvaluationRecord
from .base import failure_record

__all__ = ["Executor", "InProcessExecutor", "LocalPoolExecutor", "RayExecutor", "Finished",
           "run_evaluation", "detect_gpus", "make_executor"]


class Finished(NamedTuple):
    """A finished evaluation: its id, its record and the worker that ran it."""

    eval_id: int
    record: EvaluationRecord
    worker: str


def _labels(evaluator) -> dict:
    """task/model/recipe names for a failure record, read from a ``functools.partial``'s
    keywords or the evaluator's attributes (best effort: empty when unknown)."""
    found = {}
    sources = []
    if isinstance(evaluator, functools.partial):
        sources.append(evaluator.keywords or {})
    sources.append({name: getattr(evaluator, name) for name in ("task", "model", "recipe")
                    if hasattr(evaluator, name)})
    for source in sources:
        for name in ("task", "model", "recipe"):
            value = source.get(name)
            if value is not None and name not in found:
                found[name] = getattr(value, "label", None) or getattr(value, "name", None) \
                    or (value if isinstance(value, str) else type(value).__name__)
    return {name: str(found.get(name, "")) for name in ("task", "model", "recipe")}


def ray_available() -> bool:
    """Whether ``import ray`` can work, without importing it (checked before any work)."""
    import importlib.util

    if "ray" in sys.modules:
        return sys.modules["ray"] is not None
    return importlib.util.find_spec("ray") is not None


def _worker_label() -> str:
    label = f"{socket.gethostname()}:{os.getpid()}"
    device = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"{label}/gpu{device}" if device else label


def run_evaluation(evaluator, text: str, seed: int):
    """Run one evaluation where it is called (this process, a pool worker, a Ray task).

    Returns ``(record_dict, worker_label)``; the record travels as its JSON-safe dict, which
    is what the store keeps and what the algorithm is told. Never raises for anything the
    evaluator does (``KeyboardInterrupt`` aside).
    """
    start = time.perf_counter()
    try:
        record = evaluator(text, seed=seed)
        if not isinstance(record, EvaluationRecord):
            raise TypeError(f"the evaluator returned {type(record).__name__}; expected an "
                            f"EvaluationRecord")
        data = record.to_dict()
    except (Exception, SystemExit) as err:  # noqa: BLE001 - failure is data
        reason = "out_of_memory" if isinstance(err, MemoryError) else "error"
        tail = "".join(traceback.format_exception(err)[-6:])[-4000:]
        data = failure_record(text, seed, reason,
                              f"the evaluator raised {type(err).__name__}: {err}"[:1000],
                              runtime_s=time.perf_counter() - start,
                              info={"traceback": tail}, **_labels(evaluator)).to_dict()
    return data, _worker_label()


def _record(data) -> EvaluationRecord:
    return EvaluationRecord.from_dict(dict(data))


class Executor(abc.ABC):
    """The interface the driver uses (see the module docstring)."""

    #: a short name, written to the store as the worker of a submitted evaluation
    name = "executor"

    def __init__(self):
        self.evaluator = None

    def start(self, evaluator) -> None:
        """Bind the evaluator; call before :meth:`submit` (the driver does)."""
        if not callable(evaluator):
            raise TypeError(f"the evaluator must be callable as evaluator(text, seed=seed), "
                            f"got {type(evaluator).__name__}")
        self.evaluator = evaluator

    def _need_evaluator(self):
        if self.evaluator is None:
            raise RuntimeError(f"{type(self).__name__}.start(evaluator) was not called")
        return self.evaluator

    @property
    @abc.abstractmethod
    def capacity(self) -> int:
        """How many more evaluations can be submitted now."""

    @abc.abstractmethod
    def submit(self, eval_id: int, text: str, seed: int) -> None:
        """Start evaluating ``text`` with training seed ``seed``."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> list[Finished]:
        """Finished evaluations; waits up to ``timeout`` s for one (``None``: until one)."""

    def close(self, cancel: bool = False) -> None:
        """Release workers; ``cancel`` abandons evaluations still running."""

    def _failed(self, eval_id, text, seed, message, worker) -> Finished:
        record = failure_record(text, seed, "error", message, **_labels(self.evaluator))
        return Finished(eval_id, record, worker)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close(cancel=exc_type is not None)


class InProcessExecutor(Executor):
    """Runs each evaluation in this process, one at a time (the default).

    ``submit`` queues; ``wait`` runs the queued evaluation and returns it.
    """

    name = "in-process"

    def __init__(self):
        super().__init__()
        self._queue = collections.deque()

    @property
    def capacity(self) -> int:
        return 0 if self._queue else 1

    def submit(self, eval_id, text, seed):
        self._need_evaluator()
        if self._queue:
            raise RuntimeError("InProcessExecutor runs one evaluation at a time; call wait() "
                               "before submitting another")
        self._queue.append((int(eval_id), str(text), int(seed)))

    def wait(self, timeout=None):
        if not self._queue:
            return []
        eval_id, text, seed = self._queue.popleft()
        data, worker = run_evaluation(self.evaluator, text, seed)
        return [Finished(eval_id, _record(data), worker)]

    def close(self, cancel=False):
        self._queue.clear()


# --------------------------------------------------------------------------- process pool
def detect_gpus() -> list[str]:
    """The GPUs this machine offers, as ``CUDA_VISIBLE_DEVICES`` entries, without importing
    TensorFlow (which would reserve GPU memory in the driver process).

    ``CUDA_VISIBLE_DEVICES`` when set (empty or ``-1``: none); otherwise the indices
    ``nvidia-smi`` lists; otherwise none.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [item.strip() for item in visible.split(",") if item.strip()]
        return [] if devices in ([], ["-1"]) else devices
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


def _exit_with_parent():
    """Exit as soon as the parent (the driver) is gone: a worker of a killed search would
    otherwise train its current candidate to the end -- maybe hours, holding a GPU -- for a
    result nobody will collect (the resumed search re-runs it)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(devices, counter):
    """Pool-worker initializer: pin this worker to one GPU, round-robin over ``devices``."""
    _exit_with_parent()
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    os.environ["KERAS_ACTFN_WORKER"] = str(index)
    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices[index % len(devices)])
        # workers sharing a GPU must not each reserve all of its memory
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


class LocalPoolExecutor(Executor):
    """Evaluations on ``workers`` local processes, one TensorFlow process each.

    Workers start with the ``spawn`` method: a fresh interpreter per worker, never a fork of
    a process that has TensorFlow (and maybe a GPU context) loaded. Each worker imports
    TensorFlow once and keeps it for all its evaluations.

    GPUs: ``gpus="auto"`` uses :func:`detect_gpus`; pass a list of ``CUDA_VISIBLE_DEVICES``
    entries to choose, or ``None``/``[]`` to leave the environment alone. With GPUs, worker
    ``i`` sees only GPU ``gpus[i % len(gpus)]`` (``CUDA_VISIBLE_DEVICES`` is set in the
    worker before TensorFlow loads), so with ``workers == len(gpus)`` each worker owns one
    GPU; with more workers than GPUs they share round-robin, with memory growth on
    (``TF_FORCE_GPU_ALLOW_GROWTH``). The default ``workers`` is the number of GPUs, or 1.
    Without GPUs each worker's TensorFlow uses all CPU cores; on a CPU-only machine a
    single worker is usually as fast.

    A worker that dies (segfault, killed for memory) breaks the whole pool. The evaluations
    that were running on it are then re-run one at a time on a fresh pool: one that kills
    its worker again, alone, gets a failed record; the others finish normally.
    """

    name = "local-pool"

    def __init__(self, workers: int | None = None, gpus="auto", start_method: str = "spawn"):
        super().__init__()
        self.gpus = detect_gpus() if gpus == "auto" else [str(g) for g in (gpus or [])]
        if workers is None:
            workers = max(len(self.gpus), 1)
        if isinstance(workers, bool) or int(workers) < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = int(workers)
        self.start_method = start_method
        self._pool = None
        self._futures: dict = {}   # future -> ((eval_id, text, seed), pool it runs on)
        self._suspects = collections.deque()  # jobs to re-run alone after a pool broke
        self._solo = None  # the future of a suspect running alone

    def _make_pool(self):
        context = multiprocessing.get_context(self.start_method)
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=context, initializer=_init_worker,
            initargs=(tuple(self.gpus), context.Value("i", 0)))

    def _submit(self, job):
        """Submit on the current pool (made lazily); a pool found broken is replaced."""
        for _ in range(2):
            if self._pool is None:
                self._pool = self._make_pool()
            pool = self._pool
            try:
                future = pool.submit(run_evaluation, self.evaluator, job[1], job[2])
            except (concurrent.futures.process.BrokenProcessPool, RuntimeError):
                # it broke since the last wait(); its running futures will report it there
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
                continue
            self._futures[future] = (job, pool)
            return future
        raise RuntimeError("could not start a process pool for the evaluations")

    @property
    def capacity(self) -> int:
        if self._suspects or self._solo is not None:
            return 0  # isolating a worker crash: nothing else runs meanwhile
        return max(self.workers - len(self._futures), 0)

    def submit(self, eval_id, text, seed):
        self._need_evaluator()
        if self.capacity <= 0:
            raise RuntimeError("no free worker: submit only while capacity > 0")
        self._submit((int(eval_id), str(text), int(seed)))

    def wait(self, timeout=None):
        if self._suspects and self._solo is None and not self._futures:
            self._solo = self._submit(self._suspects.popleft())
        if not self._futures:
            return []
        done, _ = concurrent.futures.wait(list(self._futures), timeout=timeout,
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        finished, broken = self._collect(done)
        if broken:
            # a dead worker breaks its pool: the pool's other running futures fail with it
            dead = {pool for _, _, pool in broken}
            siblings = [f for f, (_, pool) in self._futures.items() if pool in dead]
            concurrent.futures.wait(siblings, timeout=60)
            more_finished, more_broken = self._collect(siblings, stuck_is_broken=True)
            finished += more_finished
            broken += more_broken
            for pool in dead:
                if self._pool is pool:
                    self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            for job, solo, _ in broken:
                if solo:  # it ran alone, so it is what killed the worker
                    finished.append(self._failed(
                        *job, "the worker process died while evaluating this candidate "
                        "(crash, or killed for memory), also when it was re-run alone",
                        self.name))
            self._suspects.extend(sorted(job for job, solo, _ in broken if not solo))
        return finished

    def _collect(self, futures, stuck_is_broken=False):
        """Results of ``futures``: ``(finished, [(job, ran_alone, pool)] of broken ones)``."""
        finished, broken = [], []
        for future in futures:
            if not future.done() and not stuck_is_broken:
                continue
            job, pool = self._futures.pop(future)
            solo = future is self._solo
            if solo:
                self._solo = None
            if not future.done():
                broken.append((job, solo, pool))
                continue
            try:
                data, worker = future.result()
                finished.append(Finished(job[0], _record(data), worker))
            except concurrent.futures.process.BrokenProcessPool:
                broken.append((job, solo, pool))
            except Exception as err:  # noqa: BLE001 - e.g. an unpicklable evaluator
                finished.append(self._failed(
                    *job, f"the process pool could not run the evaluation: "
                    f"{type(err).__name__}: {err}"[:1000], self.name))
        return finished, broken

    def close(self, cancel=False):
        pools = {pool for _, pool in self._futures.values()} | {self._pool}
        pools.discard(None)
        self._pool = None
        self._futures.clear()
        self._suspects.clear()
        self._solo = None
        for pool in pools:
            if cancel:
                # evaluations in progress cannot be interrupted politely; stop their
                # processes (they are still pending in the store, so a resume re-runs them)
                processes = list((getattr(pool, "_processes", None) or {}).values())
                pool.shutdown(wait=False, cancel_futures=True)
                for process in processes:
                    if process.is_alive():
                        process.terminate()
                for process in processes:
                    process.join(timeout=10)
            else:
                pool.shutdown(wait=True)


# --------------------------------------------------------------------------- Ray
# the Ray executor lives in its own module (actors, retry policy, resources per task); it is
# re-exported here, where the other executors are
from .ray_executor import RayExecutor  # noqa: E402


def make_executor(kind="local", workers=None, ray_address=None, **ray_options):
    """An executor by name: ``"local"``/``"pool"`` (``workers`` processes; 1 or None: in
    this process), ``"inprocess"``, or ``"ray"`` (a
    :class:`~keras_actfn.search.engine.ray_executor.RayExecutor` at ``ray_address`` with at
    most ``workers`` evaluations in flight -- None: what the cluster's free resources hold --
    and ``ray_options`` such as ``cpus_per_task``, ``gpus_per_task``, ``max_retries``,
    ``data_dir``)."""
    if kind == "ray":
        return RayExecutor(address=ray_address, max_in_flight=workers, **ray_options)
    if ray_options:
        raise ValueError(f"{', '.join(sorted(ray_options))} apply to the ray executor only")
    workers = 1 if workers is None else workers
    if kind in ("local", "pool") and int(workers) > 1:
        return LocalPoolExecutor(workers=int(workers))
    if kind not in ("local", "pool", "inprocess"):
        raise ValueError(f"unknown executor {kind!r}; expected local or ray")
    return InProcessExecutor()
