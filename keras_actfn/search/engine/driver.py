"""The search loop: ask the algorithm, evaluate on an executor, journal, tell.

:func:`run_search` connects a :class:`~keras_actfn.search.engine.base.SearchAlgorithm`, an
evaluator, a :class:`~keras_actfn.search.engine.store.Store` and an executor. It is steady-state:
whenever the executor has a free slot the algorithm is asked for the next candidate, so no
worker idles at a generation boundary the algorithm does not need (dissertation B.2.2).

Order of events, which is what makes a killed search resume exactly:

1. ``candidate = algorithm.ask()``; then, in ONE transaction, the candidate (``pending``)
   and ``algorithm.state_dict()``. Killed before the commit: the state on disk predates
   the ask, so the resumed algorithm asks the same candidate again. Killed after: the
   candidate is pending and the algorithm's state knows it asked it.
2. The evaluation is marked ``running`` and submitted. A candidate numerically equivalent
   to one already finished (same :func:`~keras_actfn.search.engine.base.equivalence_key` and
   training seed) is not evaluated: it gets a copy of that record
   (``record.info["reused_from"]`` = the source's id); one equivalent to a candidate still
   running waits for it.
3. A finished record is normalized to exactly what the store will hold, told to the
   algorithm, and then, in ONE transaction, the record (``ok``/``failed``) and
   ``algorithm.state_dict()`` after the tell are written. Killed before the commit: the
   state on disk predates the tell and the evaluation is still pending, so it is re-run and
   told once. Killed after: both are on disk.

On start (and on resume) the driver checks the run's config
(:class:`~keras_actfn.search.engine.store.StoreConfigError` if it differs), loads the latest
algorithm state, and re-submits every unfinished evaluation before asking anything new.
Each asked candidate therefore gets exactly one finished result.

**Budget** counts finished candidates of the run, across resumptions, *reused ones
included*: it is the number of candidates the algorithm hears back about (like PANGAEA's C),
which keeps a search that keeps proposing known functions finite. ``counts["evaluated"]``
is the number actually trained. Candidates already asked are always finished, so a resumed
run may end a little over a smaller budget.

**Determinism.** With the in-process executor, a deterministic evaluator and an algorithm
whose ``state_dict`` is complete (random generator included), a search that is killed and
resumed any number of times produces exactly the same sequence of candidates and results,
and the same best function, as an uninterrupted run with the same seeds. With several
workers (process pool, Ray) results arrive in timing-dependent order, so the sequence is
not reproducible; nothing is lost or duplicated either way.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
import warnings

from ...train.record import EvaluationRecord
from .base import Candidate, SearchAlgorithm, equivalence_key
from .executors import Executor, Finished, InProcessExecutor
from .store import Evaluation, Store

__all__ = ["run_search", "search_config", "SearchSummary"]


def search_config(algorithm: SearchAlgorithm, evaluator=None, seed: int = 0) -> dict:
    """The config a run is stored under: ``{"algorithm": algorithm.config(), "seed": seed}``
    plus ``"evaluator": evaluator.config()`` when the evaluator has a ``config`` method
    (a plain ``functools.partial`` has none: put task/model/recipe in the algorithm's
    config)."""
    config = {"algorithm": algorithm.config(), "seed": int(seed)}
    describe = getattr(evaluator, "config", None)
    if callable(describe):
        config["evaluator"] = describe()
    return config


@dataclasses.dataclass
class SearchSummary:
    """What :func:`run_search` returns.

    Attributes:
        best: the top evaluations (distinct functions, best first) by ``metric``.
        counts: :meth:`Store.counts` at the end, plus ``budget``.
        stop_reason: ``"budget"`` (budget reached), ``"done"`` (the algorithm finished) or
            ``"stalled"`` (the algorithm proposed nothing while nothing was running).
        metric: the record field ranked by.
        run_id, store_path: where the journal is.
        elapsed_s: wall time of this call.
    """

    best: list
    counts: dict
    stop_reason: str
    metric: str
    run_id: int
    store_path: str
    elapsed_s: float

    @property
    def best_record(self) -> EvaluationRecord | None:
        return self.best[0].record if self.best else None

    def __str__(self):
        from ...expr.simplify import simplified_text

        c = self.counts
        lines = [f"search stopped ({self.stop_reason}) after {c['finished']} candidates: "
                 f"{c['evaluated']} evaluated, {c['reused']} reused, {c['failed']} failed "
                 f"[{self.elapsed_s:.1f} s, store {self.store_path}]"]
        if self.best:
            lines.append(f"{'rank':>4}  {self.metric:>19}  {'runtime':>8}  function")
            for rank, ev in enumerate(self.best, 1):
                value = getattr(ev.record, self.metric, None)
                shown = "-" if value is None else f"{value:.4f}"
                lines.append(f"{rank:>4}  {shown:>19}  {ev.record.runtime_s:>7.1f}s  "
                             f"{simplified_text(ev.text)}")
        return "\n".join(lines)


def _normalized(record: EvaluationRecord) -> EvaluationRecord:
    """Exactly the record the store will hold (JSON round trip: NaN -> None, tuples ->
    lists), so a resumed algorithm is told the same thing as an uninterrupted one."""
    return EvaluationRecord.from_dict(record.to_dict())


def _reused_copy(source: Evaluation, target: Evaluation) -> EvaluationRecord:
    data = source.record.to_dict()
    data["fn"] = target.text
    data["info"] = {**data.get("info", {}), "reused_from": source.id, "reused_fn": source.text}
    return EvaluationRecord.from_dict(data)


class _Driver:
    def __init__(self, algorithm, store, executor, budget, seed, progress, metric, reuse,
                 poll_interval):
        self.algorithm, self.store, self.executor = algorithm, store, executor
        self.budget, self.seed, self.progress = budget, seed, progress
        self.metric, self.reuse, self.poll_interval = metric, reuse, poll_interval
        self.queue = collections.deque(store.pending())  # unfinished: re-run these first
        self.running: dict[int, tuple[Evaluation, tuple | None]] = {}
        self.waiting = collections.defaultdict(list)  # key -> evaluations awaiting a twin
        self.running_keys: dict[tuple, int] = {}
        counts = store.counts()
        self.finished = counts["finished"]
        self.outstanding = counts["pending"] + counts["running"]
        top = store.best(1, metric)
        self.best = top[0].record if top else None
        self.stop_reason = "budget"

    # -------------------------------------------------------------- bookkeeping
    def _report(self):
        if self.progress is not None:
            counts = self.store.counts()
            counts["budget"] = self.budget
            self.progress(counts, self.best)

    def _finish(self, ev: Evaluation, record: EvaluationRecord, worker=None, reused_from=None):
        record = _normalized(record)
        self.algorithm.tell(ev.candidate, record)
        self.store.complete(ev.id, record, self.algorithm.state_dict(), worker=worker,
                            reused_from=reused_from)
        self.finished += 1
        self.outstanding -= 1
        if reused_from is None and record.ok:
            fitness = record.fitness(self.metric)
            if math.isfinite(fitness) and (self.best is None
                                           or fitness > self.best.fitness(self.metric)):
                self.best = record
        self._report()

    # -------------------------------------------------------------- dispatch
    def _dispatch(self, ev: Evaluation):
        key = (ev.equivalence_key, ev.seed) if self.reuse and ev.equivalence_key else None
        if key is not None:
            source = self.store.lookup(ev.equivalence_key, seed=ev.seed)
            if source is not None:
                self._finish(ev, _reused_copy(source, ev), worker="reused",
                             reused_from=source.id)
                return
            if key in self.running_keys:
                self.waiting[key].append(ev)
                return
            self.running_keys[key] = ev.id
        self.store.mark_running(ev.id, self.executor.name)
        self.executor.submit(ev.id, ev.text, ev.seed)
        self.running[ev.id] = (ev, key)

    def _ask(self) -> bool:
        """Ask one candidate and dispatch it; False when the algorithm gives none now."""
        candidate = self.algorithm.ask()
        if candidate is None:
            return False
        if not isinstance(candidate, Candidate):
            raise TypeError(f"{type(self.algorithm).__name__}.ask() returned "
                            f"{type(candidate).__name__}; expected a Candidate or None")
        seed = int(candidate.meta.get("seed", self.seed))
        key = equivalence_key(candidate.text) if self.reuse else None
        eval_id = self.store.add_pending(candidate, key, seed=seed,
                                         state=self.algorithm.state_dict())
        self.outstanding += 1
        self._dispatch(self.store.evaluation(eval_id))
        return True

    def _fill(self):
        while self.executor.capacity > 0:
            if self.queue:
                self._dispatch(self.queue.popleft())
            elif self.budget is not None and self.finished + self.outstanding >= self.budget:
                self.stop_reason = "budget"
                return
            elif self.algorithm.done():
                self.stop_reason = "done"
                return
            elif not self._ask():
                self.stop_reason = "stalled"
                return

    def _on_finished(self, item: Finished):
        if item.eval_id not in self.running:
            raise RuntimeError(f"the executor returned evaluation {item.eval_id}, which the "
                               f"driver did not submit")
        ev, key = self.running.pop(item.eval_id)
        self._finish(ev, item.record, worker=item.worker)
        if key is None:
            return
        self.running_keys.pop(key, None)
        twins = self.waiting.pop(key, [])
        if twins:
            source = self.store.evaluation(ev.id)
            for twin in twins:
                self._finish(twin, _reused_copy(source, twin), worker="reused",
                             reused_from=source.id)

    # -------------------------------------------------------------- loop
    def run(self) -> str:
        self._report()
        while True:
            self._fill()
            if not self.running:
                if self.queue:
                    raise RuntimeError(f"the executor {type(self.executor).__name__} reports "
                                       f"no capacity with nothing running")
                break
            for item in self.executor.wait(timeout=self.poll_interval):
                self._on_finished(item)
        if self.stop_reason == "stalled" and self.algorithm.done():
            self.stop_reason = "done"
        if self.stop_reason == "stalled":
            warnings.warn(f"{type(self.algorithm).__name__}.ask() proposed nothing while no "
                          f"evaluation was running; stopping the search", RuntimeWarning,
                          stacklevel=3)
        return self.stop_reason


def run_search(algorithm: SearchAlgorithm, evaluator, store, executor: Executor | None = None,
               budget: int | None = None, seed: int = 0, progress=None, *,
               metric: str | None = None, top_k: int = 5, run_name: str = "search",
               reuse: bool = True, poll_interval: float = 1.0) -> SearchSummary:
    """Run (or resume) a search until ``budget`` candidates are finished or the algorithm
    is done; every step journaled in ``store`` first (see the module docstring).

    Args:
        algorithm: a :class:`~keras_actfn.search.engine.base.SearchAlgorithm`, freshly built with
            the search's settings; its state is restored from the store when resuming.
        evaluator: picklable ``evaluator(text, seed=seed) -> EvaluationRecord``, e.g.
            ``functools.partial(evaluate_activation, task="mnist1d", recipe="quick")``.
        store: a :class:`~keras_actfn.search.engine.store.Store` or a path to one.
        executor: where evaluations run; default :class:`InProcessExecutor`. An executor
            passed in is started with ``evaluator`` and left open.
        budget: finished candidates (reused included) at which the run stops, counted over
            the whole run including earlier sessions; ``None``: until ``algorithm.done()``.
        seed: training seed of every evaluation (a candidate's ``meta["seed"]`` overrides
            it). Part of the stored config.
        progress: ``progress(counts, best_record)`` after every finished candidate (and once
            at the start); ``counts`` is :meth:`Store.counts` plus ``"budget"``.
        metric: record field for "best" (default: ``algorithm.metric``).
        top_k: how many top functions the summary lists.
        run_name: the run within the store (one store can hold e.g. a search and its
            reranking).
        reuse: reuse results of numerically equivalent functions.
        poll_interval: seconds between checks while evaluations run elsewhere.

    Returns:
        A :class:`SearchSummary`.

    Raises:
        StoreConfigError: the store holds this run with a different config.
        StoreLockedError: another process is running a search on this store.
    """
    if not isinstance(algorithm, SearchAlgorithm):
        raise TypeError(f"algorithm must be a SearchAlgorithm, got {type(algorithm).__name__}")
    if budget is not None and (isinstance(budget, bool) or int(budget) < 0):
        raise ValueError(f"budget must be a non-negative integer or None, got {budget!r}")
    budget = None if budget is None else int(budget)
    metric = metric or getattr(algorithm, "metric", None) or "validation_accuracy"
    started = time.perf_counter()
    own_store = not isinstance(store, Store)
    if own_store:
        store = Store(store)
    own_executor = executor is None
    executor = InProcessExecutor() if own_executor else executor
    ok = False
    try:
        run_id = store.open_run(search_config(algorithm, evaluator, seed), name=run_name)
        with store.driver_lock():
            state = store.latest_state()
            if state is not None:
                algorithm.load_state_dict(state)
            executor.start(evaluator)
            driver = _Driver(algorithm, store, executor, budget, int(seed), progress, metric,
                             reuse, float(poll_interval))
            stop_reason = driver.run()
            if algorithm.done() and not store.pending():
                store.set_run_status("done")
        summary = SearchSummary(best=store.best(top_k, metric),
                                counts={**store.counts(), "budget": budget},
                                stop_reason=stop_reason, metric=metric, run_id=run_id,
                                store_path=store.path,
                                elapsed_s=time.perf_counter() - started)
        ok = True
        return summary
    finally:
        if own_executor:
            executor.close(cancel=not ok)
        if own_store:
            store.close()
