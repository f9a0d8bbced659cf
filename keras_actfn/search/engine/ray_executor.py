"""Evaluations on a Ray cluster: long-lived worker actors, resources per task, and a retry
policy owned by the library.

:class:`RayExecutor` is the Ray counterpart of the local process pool
(:mod:`keras_actfn.search.engine.executors`):

* **Worker reuse.** Evaluations run in long-lived Ray actors, one per slot (a GPU, a GPU
  fraction, or ``cpus_per_task`` CPUs). An actor imports TensorFlow and receives the
  evaluator -- the task, a user's data held in memory -- once, through the object store
  (``ray.put`` once per executor, deserialized once per actor), and keeps it for all its
  evaluations; registry tasks are cached per process by the training code. An actor that
  dies is replaced by a new one. ``reuse_workers=False`` runs each evaluation as a task in
  a fresh worker process instead (``max_calls=1``), which is what the benchmark compares.
* **Resources per task.** Each actor (task) asks Ray for ``cpus_per_task`` CPUs and
  ``gpus_per_task`` GPUs (fractions allowed, as Ray allows: ``0.5`` puts two evaluations
  on one GPU). ``gpus_per_task=None``: 1 when the cluster has GPUs, else 0. TensorFlow's
  intra- and inter-op thread pools are set to the task's CPUs (rounded up, at least 1)
  before TensorFlow starts its runtime, and GPU memory growth is on, so evaluations
  sharing a GPU do not each reserve all of its memory.
* **Tasks in flight.** ``max_in_flight`` (the CLI's ``--workers``) is how many
  evaluations run at once. ``None``: as many as the cluster's free resources hold, looked
  at again every ``refresh_s`` seconds, so the search widens when nodes join and narrows
  when they leave.
* **Retries.** The candidate's own failures (the evaluator raised, NaN loss, TensorFlow
  out of memory inside the evaluation) come back as failed records and are never retried.
  System failures -- the worker process died (segfault, SIGKILL, Ray's memory monitor),
  its node was lost -- are retried ``max_retries`` times (default 1) on a new worker; after
  that the candidate gets a failed record with reason ``worker_crashed`` (or
  ``out_of_memory`` when Ray says the worker was killed for memory) and the search goes
  on. Ray's own retries are off (``max_restarts=0``, ``max_task_retries=0``,
  ``max_retries=0``): one policy, the library's.
* **Data.** ``data_dir``: a tensorflow-datasets folder every node must see at the same
  path (a shared filesystem); it is checked on the first worker before any evaluation and
  a missing or unreadable folder is one clear error naming the path and the node.
* **Connecting.** ``address="auto"`` (a driver on the cluster, e.g. a Ray Job),
  ``"HOST:6379"`` or ``"ray://HOST:10001"`` (Ray Client), or ``None`` (a Ray started on
  this machine). Connection failures are retried ``connect_retries`` times with growing
  pauses, then raised as one :class:`RayConnectionError` line.
"""

from __future__ import annotations

import collections
import math
import os
import re
import socket
import sys
import time

from ...train.user_model import UserInputError
from .base import failure_record
from .executors import Executor, Finished, _labels, _record, run_evaluation

__all__ = ["RayExecutor", "RayConnectionError", "RayDataDirError", "configure_worker",
           "check_data_dir", "classify_system_failure"]


class RayConnectionError(UserInputError):
    """The Ray cluster could not be reached (after the retries)."""


class RayDataDirError(UserInputError):
    """The ``data_dir`` is not readable on a Ray worker."""


def _import_ray():
    try:
        import ray  # noqa: PLC0415 - optional dependency
    except ImportError as err:
        raise ImportError("RayExecutor needs Ray, which is not installed. Install the extra: "
                          "pip install 'keras_actfn[ray]' (or pip install 'ray[default]')") \
            from err
    return ray


# --------------------------------------------------------------------------- on the worker
def task_threads(cpus) -> int | None:
    """TensorFlow threads for a task holding ``cpus`` CPUs: rounded up, at least 1
    (``None`` when the task holds no CPUs: TensorFlow's default)."""
    if cpus is None or float(cpus) <= 0:
        return None
    return max(1, int(math.ceil(float(cpus) - 1e-9)))


def configure_worker(cpus=None) -> dict:
    """Prepare this process for evaluations: TensorFlow's intra/inter-op threads set to
    :func:`task_threads` ``(cpus)`` and GPU memory growth on. Environment variables first
    (they hold even if TensorFlow is imported later), then TensorFlow's own settings when
    its runtime has not started yet. Returns what was set."""
    threads = task_threads(cpus)
    if threads is not None:
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
            os.environ[name] = str(threads)
    os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    import tensorflow as tf  # noqa: PLC0415 - once per worker process

    notes = []
    if threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError as err:  # the runtime already started: the env vars stand
            notes.append(f"threads: {err}")
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError) as err:
            notes.append(f"memory growth: {err}")
    return {"threads": threads, "gpus": len(gpus), "pid": os.getpid(),
            "host": socket.gethostname(), "notes": notes}


def check_data_dir(path) -> str | None:
    """``None`` when ``path`` is a readable folder on this machine, else why not."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.exists(path):
        return "it does not exist"
    if not os.path.isdir(path):
        return "it is not a folder"
    try:
        os.listdir(path)
    except OSError as err:
        return f"it cannot be listed ({err.strerror or err})"
    if not os.access(path, os.R_OK | os.X_OK):
        return "it is not readable"
    return None


class EvaluationWorker:
    """The body of a worker actor: set up once, then evaluate candidate after candidate."""

    def __init__(self, evaluator, cpus=None):
        self.setup = configure_worker(cpus)
        self.evaluator = evaluator
        self.calls = 0

    def ready(self) -> dict:
        return {**self.setup, "calls": self.calls}

    def set_evaluator(self, evaluator):
        """A new run on the same workers (e.g. a search's final comparison)."""
        self.evaluator = evaluator
        return True

    def check_path(self, path):
        return check_data_dir(path), socket.gethostname(), _node_ip()

    def evaluate(self, text, seed):
        self.calls += 1
        return run_evaluation(self.evaluator, text, seed)


def _node_ip():
    try:
        import ray  # noqa: PLC0415

        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - only for messages
        return "?"


def evaluate_in_fresh_process(evaluator, text, seed, cpus=None):
    """A task body for ``reuse_workers=False``: set up, evaluate, and (``max_calls=1``)
    let Ray retire the process."""
    configure_worker(cpus)
    return run_evaluation(evaluator, text, seed)


# --------------------------------------------------------------------------- failures
#: what Ray says when its memory monitor killed a worker (not the generic "the OOM killer
#: may have..." list of causes every unexpected death carries)
_MEMORY = re.compile(r"running low on memory|memory monitor|killed due to memory|"
                     r"OutOfMemoryError", re.IGNORECASE)


def classify_system_failure(err) -> str | None:
    """``"out_of_memory"`` or ``"worker_crashed"`` for a failure of the worker or its node
    (retried by the policy), ``None`` for anything else."""
    ray = sys.modules.get("ray")
    exceptions = getattr(ray, "exceptions", None)
    if exceptions is None:
        return None
    if isinstance(err, exceptions.OutOfMemoryError):
        return "out_of_memory"
    system = tuple(getattr(exceptions, name) for name in (
        "RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError",
        "LocalRayletDiedError", "RaySystemError") if hasattr(exceptions, name))
    if isinstance(err, system):
        return "out_of_memory" if _MEMORY.search(str(err)) else "worker_crashed"
    return None


def _short(err, limit=600) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}"[:limit]


_CONNECTION = re.compile(r"connect|client server|timed? ?out|unavailable|refused|"
                         r"failed to get cluster id", re.IGNORECASE)


def _is_connection_error(err) -> bool:
    return isinstance(err, (ConnectionError, TimeoutError)) or bool(
        _CONNECTION.search(str(err)))


# --------------------------------------------------------------------------- the executor
class _Slot:
    """One worker actor and what it is doing."""

    def __init__(self, actor, ready_ref):
        self.actor, self.ready_ref = actor, ready_ref
        self.is_ready = False
        self.job = None


class RayExecutor(Executor):
    """Evaluations on a Ray cluster (see the module docstring).

    Args:
        address: ``None`` (start Ray here), ``"auto"``, ``"HOST:6379"`` or
            ``"ray://HOST:10001"``.
        cpus_per_task: CPUs each evaluation holds (fractions allowed); also its
            TensorFlow thread count (rounded up). Default 1.
        gpus_per_task: GPUs each evaluation holds (fractions allowed); ``None``: 1 when
            the cluster has GPUs, else 0.
        max_in_flight: evaluations at once (the CLI's ``--workers``); ``None``: what the
            cluster's free resources hold, followed as nodes come and go.
        max_retries: re-runs of a candidate whose worker died (default 1).
        reuse_workers: long-lived actors (default) or a fresh process per evaluation.
        data_dir: a folder every node must read (checked on the first worker).
        init_kwargs: more ``ray.init`` arguments (``runtime_env``, ``namespace``...).
        connect_retries: connection attempts after the first; ``backoff_s``: the first
            pause, doubled after each failure.
        refresh_s: how often the default ``max_in_flight`` looks at the cluster again.
        num_cpus_per_task, num_gpus_per_task: older names of ``cpus_per_task``,
            ``gpus_per_task``.
    """

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_task: float | None = None,
                 gpus_per_task: float | None = None, max_in_flight: int | None = None,
                 max_retries: int = 1, reuse_workers: bool = True, data_dir=None,
                 init_kwargs: dict | None = None, connect_retries: int = 3,
                 backoff_s: float = 2.0, refresh_s: float = 10.0, *,
                 num_cpus_per_task: float | None = None,
                 num_gpus_per_task: float | None = None):
        super().__init__()
        self.ray = _import_ray()
        if cpus_per_task is None:
            cpus_per_task = 1 if num_cpus_per_task is None else num_cpus_per_task
        if gpus_per_task is None:
            gpus_per_task = num_gpus_per_task
        self.cpus_per_task = _resource("cpus_per_task", cpus_per_task)
        self.gpus_per_task = None if gpus_per_task is None else _resource("gpus_per_task",
                                                                          gpus_per_task)
        if max_in_flight is not None and (isinstance(max_in_flight, bool)
                                          or int(max_in_flight) < 1):
            raise ValueError(f"max_in_flight (--workers) must be a positive integer or None, "
                             f"got {max_in_flight!r}")
        if isinstance(max_retries, bool) or int(max_retries) < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        self.address = address
        self.max_in_flight = None if max_in_flight is None else int(max_in_flight)
        self.max_retries = int(max_retries)
        self.reuse_workers = bool(reuse_workers)
        self.data_dir = None if data_dir is None else os.fspath(data_dir)
        self.init_kwargs = dict(init_kwargs or {})
        self.connect_retries, self.backoff_s = int(connect_retries), float(backoff_s)
        self.refresh_s = float(refresh_s)
        self._started_ray = False
        self._evaluator_ref = None
        self._actor_class = None
        self._fresh = None
        self._slots: list[_Slot] = []
        self._refs: dict = {}       # object ref -> (job, slot or None, attempt)
        self._retry = collections.deque()  # (job, attempt) waiting for a worker
        self._target = 1
        self._refreshed = -math.inf
        self.replaced = 0  # workers replaced after they died (for reports and tests)

    # ------------------------------------------------------------------ older names
    @property
    def num_cpus_per_task(self):
        return self.cpus_per_task

    @property
    def num_gpus_per_task(self):
        return self.gpus_per_task

    # ------------------------------------------------------------------ start
    def connect(self) -> None:
        """``ray.init`` (unless Ray is up), retrying connection failures with back-off."""
        ray = self.ray
        if ray.is_initialized():
            return
        pause, last = self.backoff_s, None
        for attempt in range(self.connect_retries + 1):
            try:
                ray.init(address=self.address, **self.init_kwargs)
                self._started_ray = True
                return
            except Exception as err:  # noqa: BLE001 - sorted below
                if not _is_connection_error(err):
                    raise
                last = err
                try:
                    if ray.is_initialized():
                        ray.shutdown()
                except Exception:  # noqa: BLE001 - cleaning up a failed start
                    pass
                if attempt < self.connect_retries:
                    time.sleep(pause)
                    pause *= 2
        where = self.address or "a new local Ray"
        raise RayConnectionError(
            f"could not connect to the Ray cluster at {where} after "
            f"{self.connect_retries + 1} attempts ({_short(last, 200)}); check the address "
            f"and that the cluster is up (`ray status`), or run the search on the cluster as "
            f"a Ray Job (docs/cluster.md)")

    def start(self, evaluator):
        super().start(evaluator)
        ray = self.ray
        self.connect()
        if self.gpus_per_task is None:
            self.gpus_per_task = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        self._evaluator_ref = ray.put(evaluator)  # once: every worker reads this copy
        options = {"num_cpus": self.cpus_per_task, "num_gpus": self.gpus_per_task}
        if self.reuse_workers:
            self._actor_class = ray.remote(EvaluationWorker).options(
                max_restarts=0, max_task_retries=0, **options)
        else:
            self._fresh = ray.remote(max_calls=1, max_retries=0, **options)(
                evaluate_in_fresh_process)
        # started again (the next run of a protocol, e.g. GRAFS's final comparison): the
        # workers it has keep TensorFlow and take the new evaluator (an actor runs its
        # calls in order, so every later evaluation sees it)
        self._refs.clear()
        self._retry.clear()
        for slot in self._slots:
            slot.job = None
            slot.actor.set_evaluator.remote(self._evaluator_ref)
        self._refresh(force=True)
        if self.reuse_workers:  # all workers start at once (importing TensorFlow is slow)
            for _ in range(self._target - len(self._slots)):
                self._new_slot()
        if self.data_dir is not None:
            self._check_data_dir()

    def _check_data_dir(self):
        ray = self.ray
        if self.reuse_workers:
            slot = self._slots[0] if self._slots else self._new_slot()
            ref = slot.actor.check_path.remote(self.data_dir)
        else:
            ref = ray.remote(_check_remote).options(
                num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                max_retries=0).remote(self.data_dir)
        problem, host, ip = ray.get(ref)
        if problem is not None:
            raise RayDataDirError(
                f"--data-dir {self.data_dir} is not readable on the Ray worker on {host} "
                f"({ip}): {problem}; every node of the cluster must see the dataset at that "
                f"path (a shared filesystem), or prepare it there first (tfds build NAME "
                f"--data_dir {self.data_dir})")

    # ------------------------------------------------------------------ slots
    def _per_task(self):
        if self.gpus_per_task:
            return "GPU", self.gpus_per_task
        return "CPU", self.cpus_per_task

    def _refresh(self, force=False):
        """The default width: the slots our workers hold plus those the free resources
        hold, looked at every ``refresh_s`` seconds (not while a new worker is still being
        placed: its resources are not free and not ours yet)."""
        if self.max_in_flight is not None:
            self._target = self.max_in_flight
            return
        now = time.monotonic()
        if not force and now - self._refreshed < self.refresh_s:
            return
        self._poll_ready()
        if any(not slot.is_ready for slot in self._slots):
            return
        self._refreshed = now
        key, per = self._per_task()
        if per <= 0:
            total = self.ray.cluster_resources().get("CPU", 1)
            self._target = max(int(total), 1)
            return
        free = self.ray.available_resources().get(key, 0.0)
        held = len(self._slots) if self.reuse_workers else len(self._refs)
        self._target = max(held + int(free / per + 1e-9), 1)

    def _poll_ready(self):
        pending = [slot for slot in self._slots if not slot.is_ready]
        if not pending:
            return
        ready, _ = self.ray.wait([s.ready_ref for s in pending], num_returns=len(pending),
                                 timeout=0)
        ready = set(ready)
        for slot in pending:
            if slot.ready_ref in ready:
                slot.is_ready = True

    def _new_slot(self) -> _Slot:
        actor = self._actor_class.remote(self._evaluator_ref, self.cpus_per_task)
        slot = _Slot(actor, actor.ready.remote())
        self._slots.append(slot)
        return slot

    def _drop_slot(self, slot):
        if slot in self._slots:
            self._slots.remove(slot)
        try:
            self.ray.kill(slot.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - it is gone already
            pass

    def _busy(self) -> int:
        return len(self._refs)

    @property
    def capacity(self) -> int:
        if self._evaluator_ref is None:
            return max((self.max_in_flight or 1) - self._busy(), 0)
        self._refresh()
        return max(self._target - self._busy() - len(self._retry), 0)

    def _launch(self, job, attempt):
        eval_id, text, seed = job
        if self.reuse_workers:
            slot = next((s for s in self._slots if s.job is None), None)
            if slot is None:
                slot = self._new_slot()
            slot.job = job
            ref = slot.actor.evaluate.remote(text, seed)
        else:
            slot = None
            ref = self._fresh.remote(self._evaluator_ref, text, seed, self.cpus_per_task)
        self._refs[ref] = (job, slot, attempt)

    def submit(self, eval_id, text, seed):
        self._need_evaluator()
        if self._evaluator_ref is None:
            raise RuntimeError("RayExecutor.start(evaluator) was not called")
        if self.capacity <= 0:
            raise RuntimeError("no free slot: submit only while capacity > 0")
        self._launch((int(eval_id), str(text), int(seed)), 1)

    def _relaunch(self):
        while self._retry and self._target - self._busy() > 0:
            self._launch(*self._retry.popleft())
        # workers beyond the width (the cluster shrank, or a retry is done) are let go
        if self.reuse_workers:
            for slot in [s for s in self._slots if s.job is None][
                    max(self._target - self._busy(), 0):]:
                self._drop_slot(slot)

    def wait(self, timeout=None):
        self._refresh()
        self._relaunch()
        if not self._refs:
            return []
        refs = list(self._refs)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:  # take everything that is ready, not just the first
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        finished = []
        for ref in ready:
            job, slot, attempt = self._refs.pop(ref)
            if slot is not None:
                slot.job = None
            try:
                data, worker = self.ray.get(ref)
                record = _record(data)
                if attempt > 1:
                    record.info = {**record.info, "attempts": attempt}
                finished.append(Finished(job[0], record, worker))
            except Exception as err:  # noqa: BLE001 - sorted by the retry policy
                kind = classify_system_failure(err)
                if slot is not None and (kind is not None or not _alive(self.ray, slot)):
                    self._drop_slot(slot)
                    self.replaced += 1
                if kind is not None and attempt <= self.max_retries:
                    self._retry.append((job, attempt + 1))
                    continue
                finished.append(self._failure(job, attempt, kind, err))
        self._relaunch()
        return finished

    def _failure(self, job, attempt, kind, err) -> Finished:
        eval_id, text, seed = job
        if kind is None:
            reason = "error"
            message = f"the Ray task failed: {_short(err)}"
        else:
            reason = kind
            what = "was killed for memory" if kind == "out_of_memory" else "died"
            message = (f"the Ray worker {what} while evaluating this candidate, on each of "
                       f"{attempt} attempt(s) (max_retries={self.max_retries}): {_short(err)}")
        record = failure_record(text, seed, reason, message[:1000],
                                info={"attempts": attempt, "ray_error": type(err).__name__},
                                **_labels(self.evaluator))
        return Finished(eval_id, record, self.name)

    def close(self, cancel=False):
        if cancel:
            for ref in list(self._refs):
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
        self._refs.clear()
        self._retry.clear()
        for slot in list(self._slots):
            self._drop_slot(slot)
        self._evaluator_ref = None
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = False

    # ------------------------------------------------------------------ map (FIM features)
    def _chunk_remote(self):
        ray = self.ray
        self.connect()
        if self.gpus_per_task is None:
            self.gpus_per_task = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        return ray.remote(_run_chunk).options(
            num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=0)

    def submit_chunk(self, function, chunk) -> "ChunkFuture":
        """``function(chunk)`` as one Ray task with this executor's resources; a
        ``concurrent.futures``-like handle (``done``, ``result``, ``cancel``) whose result
        is retried per the policy when its worker dies."""
        return ChunkFuture(self, self._chunk_remote(), function, chunk)

    def map_chunks(self, function, chunks, on_result=None):
        """``[function(chunk) for chunk in chunks]`` as Ray tasks with this executor's
        resources (GPUs when it has them), at most the executor's width at once, each
        retried per the policy when its worker dies. ``on_result(chunk, result)`` is
        called as results arrive (any order); returns the results in chunk order."""
        ray = self.ray
        remote = self._chunk_remote()
        function_ref = ray.put(function)
        chunks = list(chunks)
        results = [None] * len(chunks)
        todo = collections.deque((i, 1) for i in range(len(chunks)))
        running: dict = {}
        self._refresh(force=True)
        while todo or running:
            while todo and len(running) < max(self._target, 1):
                index, attempt = todo.popleft()
                ref = remote.remote(function_ref, chunks[index], self.cpus_per_task)
                running[ref] = (index, attempt)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                index, attempt = running.pop(ref)
                try:
                    results[index] = ray.get(ref)
                except Exception as err:  # noqa: BLE001
                    if classify_system_failure(err) and attempt <= self.max_retries:
                        todo.append((index, attempt + 1))
                        continue
                    raise
                if on_result is not None:
                    on_result(chunks[index], results[index])
        return results


class ChunkFuture:
    """One chunk task of :meth:`RayExecutor.submit_chunk`."""

    def __init__(self, executor, remote, function, chunk):
        self.executor, self.remote = executor, remote
        self.function, self.chunk = function, chunk
        self.attempt = 1
        self.ref = remote.remote(function, chunk, executor.cpus_per_task)

    def done(self) -> bool:
        ready, _ = self.executor.ray.wait([self.ref], timeout=0)
        return bool(ready)

    def result(self):
        while True:
            try:
                return self.executor.ray.get(self.ref)
            except Exception as err:  # noqa: BLE001 - the retry policy decides
                if classify_system_failure(err) is None or \
                        self.attempt > self.executor.max_retries:
                    raise
                self.attempt += 1
                self.ref = self.remote.remote(self.function, self.chunk,
                                              self.executor.cpus_per_task)

    def cancel(self):
        try:
            self.executor.ray.cancel(self.ref, force=True)
        except Exception:  # noqa: BLE001 - best effort
            pass


def _run_chunk(function, chunk, cpus=None):
    configure_worker(cpus)
    return function(chunk)


def _check_remote(path):
    return check_data_dir(path), socket.gethostname(), _node_ip()


def _alive(ray, slot) -> bool:
    try:
        ready, _ = ray.wait([slot.actor.ready.remote()], timeout=5)
        return bool(ready)
    except Exception:  # noqa: BLE001
        return False


def _resource(name, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0 (fractions allowed), got "
                         f"{value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a number >= 0 (fractions allowed), got {value!r}")
    if number > 1 and number != int(number):
        raise ValueError(f"{name}: Ray takes fractions only below 1 (0.25, 0.5) or whole "
                         f"numbers above; got {value!r}")
    return number
