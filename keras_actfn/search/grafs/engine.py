"""GRAFS on the search engine: each search seed is one journaled evaluation.

GRAFS (:mod:`.search`) is gradient-based: one search trains a relaxed network and returns one
function, so there is nothing for an ask/tell algorithm to propose except *which searches to
run*. :class:`GrafsSeeds` therefore asks one candidate per search seed, and
:class:`GrafsSeedEvaluator` -- the evaluator the executors call -- runs :func:`grafs_search`
for that seed and returns an :class:`~keras_actfn.train.record.EvaluationRecord` whose ``fn``
is the function found. Through :func:`~keras_actfn.search.engine.driver.run_search` the searches
get what every other method has: each finished seed is written to the
:class:`~keras_actfn.search.engine.store.Store` (run ``"search"``) before anything else happens, a
killed run re-runs only the seeds that did not finish (and, with ``checkpoint_root``, a seed
that was interrupted resumes from its last saved epoch), a resume with other settings is
refused, and the seeds run one per worker on a process pool or a Ray cluster.
:func:`~keras_actfn.search.grafs.protocol.run_grafs` drives both runs of the protocol on one
store: the seeds, then the found functions next to the baselines as run ``"final"``.

**The candidate text.** A candidate is asked before its search runs, so its text cannot be
the function found. It is a label, ``"grafs seed <s>"`` (:func:`seed_label`), with the
activation the search starts from as ``parent`` (``"relu(x)"``), ``mutation="grafs"`` and
``meta={"seed": s}``; the record's ``fn`` holds the function found. Chosen because:

* the journal reads as what happened -- one row per search, ``grafs seed 3`` (from
  ``relu(x)``) found ``fn`` -- and :class:`~keras_actfn.search.engine.driver.SearchSummary` and
  store queries name the seed. The original activation as text (the other natural choice)
  would give every row the same text, so ``keras-actfn report``, which groups a run's rows
  by candidate text, would merge all seeds into one "function" ``relu(x)``;
* a label does not parse, so its :func:`~keras_actfn.search.engine.base.equivalence_key` is
  ``None``: the driver can never hand one seed's result to another as a "numerically
  equivalent function". :func:`run_grafs` also passes ``reuse=False``, so this does not hang
  on the label alone;
* the records carry no accuracy (a search trains no final model), so the ``"search"`` run
  has no ranked rows and ``keras-actfn report`` neither ranks nor plots labels as
  functions; its final-comparison table (run ``"final"``) lists the found functions and the
  baselines with their accuracies.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import inspect
import math
import os
import pickle
import time
import traceback

import numpy as np

from ...train.record import EvaluationRecord
from ..engine.base import Candidate, SearchAlgorithm, failure_record, json_normalize

__all__ = ["GrafsSeeds", "GrafsSeedEvaluator", "SurgeryModel", "seed_label", "search_history",
           "describe_task", "describe_model", "load_search_task"]

#: the ``recipe`` field of a search record
SEARCH_RECIPE = "grafs_search"

#: ``grafs_search`` arguments the evaluator sets itself (per seed, per process)
_RESERVED = ("model", "task", "seed", "checkpoint", "log", "verbose")


def seed_label(seed: int) -> str:
    """The candidate text of GRAFS search ``seed`` (a label, not a function: see above)."""
    return f"grafs seed {int(seed)}"


def _plain(value):
    """``value`` with NumPy arrays and scalars as lists and numbers, tuples as lists and
    anything else that is not JSON data (a callable, a Keras object) by its name."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return getattr(value, "__name__", None) or type(value).__name__


# --------------------------------------------------------------------------- descriptions
def describe_task(task, search_train=None) -> dict:
    """JSON-safe identity of a task for a stored config: a registry name as it is; a
    :class:`~keras_actfn.data.Task` by name, shape, split sizes and a digest of its training
    data (so another subset or another dataset of the same name is told apart)."""
    out = {"name": task} if isinstance(task, str) else {
        "name": task.name, "kind": task.kind, "num_classes": int(task.num_classes),
        "input_shape": [int(n) for n in task.input_shape],
        "sizes": {split: task.size(split) for split in sorted(task.splits)},
        "train_digest": _digest(*task.arrays("train")),
    }
    if search_train is not None:
        out["search_train"] = int(search_train)
    return out


def _digest(*arrays) -> str:
    hasher = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        hasher.update(f"{array.dtype.str}{array.shape}".encode())
        hasher.update(memoryview(array).cast("B"))
    return hasher.hexdigest()[:16]


def describe_model(model):
    """JSON-safe identity of a model argument: a registry name, or a builder's
    ``config()`` (when it has one), else its ``name``, else its class name."""
    if isinstance(model, str):
        return model
    describe = getattr(model, "config", None)
    if callable(describe):
        return json_normalize(_plain(describe()), "the model builder's config()")
    name = getattr(model, "name", None) or getattr(model, "__name__", None)
    return str(name) if name else f"{type(model).__module__}.{type(model).__qualname__}"


def _model_label(model) -> str:
    if isinstance(model, str):
        return model
    return str(getattr(model, "name", None) or getattr(model, "__name__", None)
               or type(model).__name__)


# --------------------------------------------------------------------------- history
def _history_columns(history) -> dict:
    """A search's per-epoch records as the record's per-epoch lists (JSON-safe)."""
    keys = list(dict.fromkeys(key for row in history for key in row))
    return {key: [_plain(row.get(key)) for row in history] for key in keys}


def search_history(record: EvaluationRecord) -> list:
    """A search record's history as :attr:`GrafsResult.history` has it: one dict per epoch,
    operator weights as float32 arrays (what :func:`~.protocol.plot_operator_weights`
    takes)."""
    columns = record.history or {}
    length = max((len(values) for values in columns.values()), default=0)
    rows = []
    for i in range(length):
        row = {key: values[i] if i < len(values) else None for key, values in columns.items()}
        if row.get("weights") is not None:
            row["weights"] = [np.asarray(w, dtype=np.float32) for w in row["weights"]]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the algorithm
class GrafsSeeds(SearchAlgorithm):
    """Ask one GRAFS search per seed ``first_seed, ..., first_seed + seeds - 1``.

    Each candidate is :func:`seed_label` ``(s)`` with ``meta={"seed": s}``, ``parent`` the
    activation the searches start from (``original``, e.g. ``"relu(x)"``; ``None`` when
    unknown) and ``mutation="grafs"``; :meth:`tell` keeps the function each seed found
    (``None`` for a search that failed). ``done()`` once every seed is told.

    Args:
        seeds: number of searches.
        first_seed: the first search seed.
        metric: the record field the final comparison ranks by (search records carry none).
        original: text of the activation the searches replace (informational).
        context: JSON-safe description of what is searched (task, model, preset), part of
            :meth:`config`.
    """

    name = "grafs"

    def __init__(self, seeds=5, first_seed=0, metric="validation_accuracy", original=None,
                 context=None):
        if isinstance(seeds, bool) or int(seeds) < 1:
            raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
        self.seeds = int(seeds)
        self.first_seed = int(first_seed)
        self.metric = metric
        self.original = None if original is None else str(original)
        self.context = dict(context or {})
        self.asked = 0
        self.found: dict[int, str | None] = {}  # seed -> function (None: the search failed)

    @property
    def seed_list(self) -> list[int]:
        return [self.first_seed + i for i in range(self.seeds)]

    def ask(self):
        if self.asked >= self.seeds:
            return None
        seed = self.first_seed + self.asked
        candidate = Candidate(seed_label(seed), parent=self.original, mutation="grafs",
                              generation=self.asked, meta={"seed": seed})
        self.asked += 1
        return candidate

    def tell(self, candidate, record):
        seed = int(candidate.meta["seed"])
        if seed not in self.seed_list:
            raise ValueError(f"GrafsSeeds was told about seed {seed}, which it did not ask "
                             f"(seeds {self.seed_list})")
        self.found[seed] = record.fn if record.ok else None

    def done(self):
        return len(self.found) >= self.seeds

    def functions(self) -> list[str]:
        """The functions found, in seed order, failed searches left out (duplicates kept)."""
        return [self.found[s] for s in self.seed_list if self.found.get(s) is not None]

    def state_dict(self):
        return {"asked": self.asked,
                "found": [[seed, self.found[seed]] for seed in sorted(self.found)]}

    def load_state_dict(self, state):
        self.asked = int(state["asked"])
        self.found = {int(seed): fn for seed, fn in state["found"]}

    def config(self):
        return {"algorithm": self.name, "seeds": self.seeds, "first_seed": self.first_seed,
                "seed": self.first_seed, "metric": self.metric, "original": self.original,
                **({"context": self.context} if self.context else {})}


# --------------------------------------------------------------------------- the evaluator
#: per-process cache of registry tasks (and their search subsets): a worker that runs
#: several seeds loads the data once
_TASKS: collections.OrderedDict = collections.OrderedDict()
_TASK_CACHE_SIZE = 2


def load_search_task(task, search_train=None):
    """The task a search trains on: a registry name loaded (cached in this process) or a
    :class:`~keras_actfn.data.Task` as it is, reduced to a class-balanced subset of
    ``search_train`` training examples when given."""
    if isinstance(task, str):
        key = (task, search_train)
        if key in _TASKS:
            _TASKS.move_to_end(key)
            return _TASKS[key]
        from ...data import load_task

        full = _TASKS.get((task, None)) or load_task(task)
        loaded = full if search_train is None else full.subset(train=int(search_train))
        _TASKS[key] = loaded
        while len(_TASKS) > _TASK_CACHE_SIZE:
            _TASKS.popitem(last=False)
        return loaded
    return task if search_train is None else task.subset(train=int(search_train))


def _is_out_of_memory(err) -> bool:
    return isinstance(err, MemoryError) or "ResourceExhausted" in type(err).__name__


class GrafsSeedEvaluator:
    """``evaluator(text, seed=s)``: run one GRAFS search with seed ``s`` and return its
    record -- what the executors call for each :class:`GrafsSeeds` candidate.

    Picklable (it goes to process-pool and Ray workers): it holds names, settings and data,
    never a live Keras object; the model is built and the task loaded in the process that
    runs the search.

    Args:
        model: a registry model name (``"mnist1d_cnn"``) or a picklable zero-argument
            callable returning a Keras model. Its ``config()`` (if any), else its ``name``,
            identifies it in :meth:`config`.
        task: a registry task name or a :class:`~keras_actfn.data.Task`.
        settings: ``grafs_search`` keyword arguments (e.g. ``GrafsSettings.kwargs()``),
            everything but the model, task, seed, checkpoint and logging.
        search_train: search on a class-balanced subset of that many training examples.
        checkpoint_root: a directory; the search of seed ``s`` saves its state after every
            epoch in ``<checkpoint_root>/seed<s>`` and resumes from it when run again (a
            finished one returns its saved result at once). Not part of :meth:`config`.
        verbose: the search logs a line per epoch (and one when it starts).
        log: where those lines go (default ``print``). A log that cannot be pickled (a
            lambda) stays behind when the evaluator goes to another process: searches
            there log nothing.

    The record: ``fn`` the function found (canonical text), ``runtime_s`` the search's
    seconds, ``epochs_run`` its epochs, ``history`` its per-epoch lists (see
    :func:`search_history`), ``info`` the GRAFS specifics (``grafs_seed``,
    ``function_clipped``, ``traces``, the final ``train_loss``/``valid_loss`` of the
    search split, ``operators_left``, ``search_model_params``). No accuracy: a search
    trains no final model. A search that raises gives a failed record (``reason="error"``,
    ``"out_of_memory"``) with the traceback in ``info``: failure is data.
    """

    recipe = SEARCH_RECIPE

    def __init__(self, model, task, settings=None, *, search_train=None, checkpoint_root=None,
                 verbose=True, log=None):
        from ...data import Task

        if not isinstance(model, str) and not callable(model):
            raise TypeError(f"model must be a registry name or a zero-argument callable "
                            f"returning a Keras model, got {type(model).__name__}")
        if not isinstance(task, (str, Task)):
            raise TypeError(f"task must be a registry name or a keras_actfn.data.Task, got "
                            f"{type(task).__name__}")
        if isinstance(model, str):
            from ...models.registry import MODELS

            if model not in MODELS:
                raise ValueError(f"unknown model {model!r}; available: {sorted(MODELS)}")
        if isinstance(task, str):
            from ...data.tasks import TASK_LOADERS

            if task not in TASK_LOADERS:
                raise ValueError(f"unknown task {task!r}; available: {sorted(TASK_LOADERS)}")
        settings = dict(settings or {})
        reserved = sorted(set(settings) & set(_RESERVED))
        if reserved:
            raise TypeError(f"settings {reserved} are set by GrafsSeedEvaluator (per seed); "
                            f"pass the search settings only")
        from .search import grafs_search

        accepted = set(inspect.signature(grafs_search).parameters) - set(_RESERVED)
        unknown = sorted(set(settings) - accepted)
        if unknown:
            raise TypeError(f"unknown grafs_search setting(s) {unknown}; expected some of "
                            f"{sorted(accepted)}")
        if search_train is not None and int(search_train) < 1:
            raise ValueError(f"search_train must be a positive number of examples, got "
                             f"{search_train!r}")
        self.model = model
        self.task = task
        self.settings = settings
        self.search_train = None if search_train is None else int(search_train)
        self.checkpoint_root = None if checkpoint_root is None else os.fspath(checkpoint_root)
        self.verbose = bool(verbose)
        self.log = log
        self._task_config = describe_task(task, self.search_train)  # digest once

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = dict(self.__dict__)
        if state.get("log") is not None:
            try:
                pickle.dumps(state["log"])
            except Exception:  # noqa: BLE001 - a lambda or a bound method of a live object
                state["log"] = None
                state["verbose"] = False
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    # ------------------------------------------------------------------ description
    def config(self) -> dict:
        """What defines the searches (JSON-safe): model, task, subset and settings."""
        return {"evaluator": SEARCH_RECIPE, "model": describe_model(self.model),
                "task": self._task_config,
                "settings": json_normalize(_plain(self.settings), "the GRAFS settings")}

    def __repr__(self):
        return (f"GrafsSeedEvaluator(model={_model_label(self.model)!r}, "
                f"task={self._task_config['name']!r}, search_train={self.search_train})")

    # ------------------------------------------------------------------ one search
    def checkpoint_for(self, seed: int) -> str | None:
        """The checkpoint directory of seed ``seed`` (``None`` without a root)."""
        if self.checkpoint_root is None:
            return None
        return os.path.join(self.checkpoint_root, f"seed{int(seed)}")

    def _labels(self):
        return {"task": self._task_config["name"], "model": _model_label(self.model),
                "recipe": SEARCH_RECIPE}

    def __call__(self, text, seed=0) -> EvaluationRecord:
        from . import search as grafs  # looked up per call: tests count calls through it

        seed = int(seed)
        start = time.perf_counter()
        log = self.log if self.log is not None else print
        try:
            task = load_search_task(self.task, self.search_train)
            if isinstance(self.model, str):
                from ...models import build_model

                builder = functools.partial(build_model, self.model, task=task)
            else:
                builder = self.model
            if self.verbose:
                log(f"--- GRAFS search, seed {seed} ---")
            result = grafs.grafs_search(builder, task, **self.settings, seed=seed,
                                        verbose=self.verbose, log=log,
                                        checkpoint=self.checkpoint_for(seed))
            last = result.history[-1] if result.history else {}
            info = {"grafs_seed": seed, "function_clipped": result.function_clipped,
                    "traces": int(result.traces),
                    "train_loss": _plain(last.get("train_loss")),
                    "valid_loss": _plain(last.get("valid_loss")),
                    "operators_left": _plain(last.get("operators_left")),
                    "search_model_params": int(result.model.count_params()),
                    "checkpoint": self.checkpoint_for(seed)}
            return EvaluationRecord(fn=result.function, seed=seed,
                                    runtime_s=float(result.seconds),
                                    epochs_run=len(result.history),
                                    history=_history_columns(result.history), info=info,
                                    autoinit="off", **self._labels())
        except Exception as err:  # noqa: BLE001 - failure is data
            reason = "out_of_memory" if _is_out_of_memory(err) else "error"
            tail = "".join(traceback.format_exception(err)[-6:])[-4000:]
            elapsed = time.perf_counter() - start
            return failure_record(text, seed, reason,
                                  f"the GRAFS search raised {type(err).__name__}: {err}"[:1000],
                                  runtime_s=elapsed if math.isfinite(elapsed) else 0.0,
                                  info={"grafs_seed": seed, "traceback": tail},
                                  **self._labels())


# --------------------------------------------------------------------------- final models
class SurgeryModel:
    """A model argument of :func:`~keras_actfn.train.evaluate_activation` made from a
    zero-argument builder: ``SurgeryModel(builder)(activation=spec, task=task)`` builds the
    model and swaps its ``targets`` activations for ``spec`` by surgery. Picklable when the
    builder is; the final comparison uses it for a user's model."""

    def __init__(self, builder, targets=("relu",)):
        if not callable(builder):
            raise TypeError(f"builder must be a zero-argument callable returning a Keras "
                            f"model, got {type(builder).__name__}")
        self.builder = builder
        self.targets = targets if callable(targets) or isinstance(targets, str) \
            else tuple(targets)
        self.__name__ = _model_label(builder)

    def __call__(self, activation=None, task=None):
        from ...surgery import replace_activations

        model = self.builder()
        if activation is None:
            return model
        return replace_activations(model, activation, targets=self.targets)

    def config(self):
        return {"builder": describe_model(self.builder), "targets": _plain(self.targets)}
