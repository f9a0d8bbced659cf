"""AQuaSurF's regression-guided search on the 2-D surrogate space (dissertation §6.6-6.7).

:class:`AquasurfSearch` is an ask/tell :class:`~keras_actfn.search.engine.base.SearchAlgorithm`
over a *fixed* list of candidate functions whose surrogate coordinates (the 2-D UMAP
embedding of :func:`keras_actfn.search.aquasurf.features.embed`) were computed beforehand by
the caller. It never trains and never embeds: it only picks which function to evaluate next.

The procedure, as §6.6.1 and §6.7.1 describe it:

1. Evaluate a start set of eight functions. ``start="benchmark"`` (§6.6.1): ReLU and seven
   other functions drawn at random from the list. ``start="new_task"`` (§6.7.1): the eight
   baselines ELU, ReLU, SELU, sigmoid, Softplus, Softsign, Swish and tanh
   (:data:`AQUASURF_START_FUNCTIONS`). A start function is found in the list by its text, or
   else by equal outputs (:func:`keras_actfn.expr.fingerprint_key`), since an enumerated
   space holds ReLU as e.g. ``relu(x) + zero(x)``.
2. Fit a regressor on (coordinates, fitness) of everything told so far, predict every
   function not yet asked, and ask the one with the highest prediction (ties: the lowest
   index; predictions within 1e-12 relative of the best count as ties). ``"knr"`` is the paper's choice: weighted k-nearest-neighbour regression with
   k = 3 (``KNeighborsRegressor(n_neighbors=3, weights="distance")``; the text says
   "weighted"); ``"rfr"`` and ``"svr"`` are the alternatives of §6.6 with scikit-learn's
   default hyperparameters ("used out of the box"); ``"random"`` is the random-search
   baseline (uniform over the functions not yet asked).
3. Repeat until ``budget`` functions (start set included) have been asked.

**Failures.** In the benchmark datasets a function whose training fails is recorded with
the accuracy it reached, which is chance (0.1 on CIFAR-10; Figure 6.1 shows the mass of
functions at 0.1), and the regressors learn from those points like any other: that is what
steers the search away from bad regions. So a failed record whose metric was measured (a
``below_threshold`` run keeps its validation accuracy) counts with that value; a failed
record with no value (NaN loss, overflow, out of memory) counts with ``failure_fitness``,
by default the task's chance accuracy when the record carries it (``record.info["chance"]``,
set by :func:`keras_actfn.train.evaluate_activation`), else 0. For a loss metric the default
is the worst fitness told so far.

**Asynchronous use.** ``ask`` may be called several times before any ``tell`` (several
workers): a function asked and not yet told is *pending* and is never proposed again, and
each prediction uses exactly the results told so far. After the start set, ``ask`` returns
``None`` until at least one result is known. With fewer than three results KNR uses as many
neighbours as there are results.

**Candidates.** The caller chooses the list, which is where the paper's FIM filter lives:
the regression searches of §6.6 only consider functions with valid FIM eigenvalues (pass
only those, embedded), while random search "did not utilize the FIM eigenvalue filtering
mechanism" (pass the whole list). Equivalent functions should have been merged already
(:func:`keras_actfn.search.aquasurf.space.unique_functions`).

**Parallel mode (A.4.1).** In the paper's production searches, eight workers first computed
FIM eigenvalues for random functions; once 5,000 had them, seven workers evaluated the
best-predicted functions while the eighth kept computing FIM features, so the candidate set
grew during the search. Here the same split maps onto the existing machinery without a
thread system of its own: run the driver (:func:`~keras_actfn.search.engine.driver.run_search`)
with ``workers - 1`` evaluation slots on the current candidate list, and compute FIM features
for more functions in a separate process (e.g. a second ``run_search`` whose evaluator is
:func:`~keras_actfn.search.aquasurf.fim.activation_fim_features`, journaled in its own run
of the store). Between sessions, re-embed the larger list and start a new run name with
the new list: the store refuses to resume a run whose candidate list (``config()`` holds
its hash) changed, and every finished evaluation stays in the store for the driver's reuse
of equivalent results, so nothing is trained twice. Growing the list inside one live run
is not implemented.
"""

from __future__ import annotations

import hashlib
import math
import warnings

import numpy as np

from ..engine.base import Candidate, SearchAlgorithm, rng_from_state, rng_state

__all__ = ["AquasurfSearch", "REGRESSORS", "AQUASURF_START_FUNCTIONS", "make_regressor",
           "find_functions", "candidates_digest"]

#: regressor names accepted by :class:`AquasurfSearch`
REGRESSORS = ("knr", "rfr", "svr", "random")

#: the eight start functions of a search on a new task (§6.7.1), in the paper's order
#: (not :data:`keras_actfn.BASELINE_FUNCTIONS`, the 13 fixed baselines of §4.7)
AQUASURF_START_FUNCTIONS = ("elu(x)", "relu(x)", "selu(x)", "sigmoid(x)", "softplus(x)",
                            "softsign(x)", "swish(x)", "tanh(x)")

START_SIZE = 8  # ReLU + seven random functions in benchmark mode (§6.6.1)


def make_regressor(name: str, random_state: int | None = None):
    """The scikit-learn regressor behind ``name`` (``"knr"``, ``"rfr"``, ``"svr"``)."""
    if name == "knr":
        from sklearn.neighbors import KNeighborsRegressor  # noqa: PLC0415
        return KNeighborsRegressor(n_neighbors=3, weights="distance")
    if name == "rfr":
        from sklearn.ensemble import RandomForestRegressor  # noqa: PLC0415
        return RandomForestRegressor(random_state=random_state)
    if name == "svr":
        from sklearn.svm import SVR  # noqa: PLC0415
        return SVR()
    raise ValueError(f"unknown regressor {name!r}; expected one of {REGRESSORS[:-1]}")


def candidates_digest(functions, coords) -> str:
    """SHA-1 over the candidate texts and their coordinates (rounded to 1e-9), so a config
    changes when either does."""
    digest = hashlib.sha1()
    for text in functions:
        digest.update(text.encode())
        digest.update(b"\n")
    digest.update(np.ascontiguousarray(np.round(np.asarray(coords, np.float64), 9) + 0.0,
                                       dtype="<f8").tobytes())
    return digest.hexdigest()


def find_functions(targets, functions, keys=None) -> list:
    """Index in ``functions`` of each text in ``targets`` (``None`` where absent).

    A target is matched first by canonical text, then by equal outputs
    (:func:`keras_actfn.expr.fingerprint_key`; ``keys`` may hold the candidates' keys
    already, e.g. :attr:`UniqueFunction.key`). The first match in list order wins.
    """
    from ...expr import fingerprint_key, parse  # noqa: PLC0415

    def canonical(text):
        try:
            return str(parse(text))
        except Exception:  # noqa: BLE001 - an unparsable candidate simply matches nothing
            return None

    targets = [str(parse(t)) for t in targets]
    found = [None] * len(targets)
    exact = {}
    for i, text in enumerate(functions):
        exact.setdefault(text, i)
    for j, target in enumerate(targets):
        found[j] = exact.get(target)
    if all(f is not None for f in found):
        return found
    # a second, canonical pass (texts written differently) before fingerprinting everything
    canon = {}
    for i, text in enumerate(functions):
        canon.setdefault(canonical(text), i)
    for j, target in enumerate(targets):
        if found[j] is None:
            found[j] = canon.get(target)
    if all(f is not None for f in found):
        return found
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        wanted = {fingerprint_key(t): j for j, t in reversed(list(enumerate(targets)))
                  if found[j] is None}
        for i, text in enumerate(functions):
            if not wanted:
                break
            if keys is not None:
                key = keys[i]
            else:
                try:
                    key = fingerprint_key(text)
                except Exception:  # noqa: BLE001
                    continue
            j = wanted.pop(key, None)
            if j is not None:
                found[j] = i
                for other, t in enumerate(targets):  # duplicates among the targets
                    if found[other] is None and t == targets[j]:
                        found[other] = i
    return found


class AquasurfSearch(SearchAlgorithm):
    """Regression on surrogate coordinates: evaluate the best-predicted function next.

    Args:
        functions: candidate texts, one per (unique) function.
        coords: ``(len(functions), d)`` finite surrogate coordinates (d = 2 in the paper).
        regressor: ``"knr"`` (default, the paper's pick), ``"rfr"``, ``"svr"`` or
            ``"random"``.
        start: ``"benchmark"`` (ReLU + 7 random), ``"new_task"`` (the eight baselines) or
            a list of texts to start from.
        budget: functions to ask in all, start set included (the paper: 100 beyond the
            start set on new tasks, 100 in all on the benchmarks).
        seed: seeds the random choices (start set, random search, forests).
        metric: record field maximized (losses are negated, see
            :meth:`EvaluationRecord.fitness`).
        failure_fitness: value a failed record without a measured metric counts as
            (default: chance accuracy from ``record.info["chance"]``, else 0; the worst
            told fitness for a loss metric).
        keys: optional output fingerprint keys of ``functions`` (speeds up finding the
            start functions by outputs).
        context: JSON-safe extras for :meth:`config` (task, model, recipe...).
        source: optional growing candidate list (parallel mode, A.4.1): an object whose
            ``poll()`` returns None or ``(functions, coords)``, a longer list starting with
            the current one and new coordinates for all (e.g.
            :class:`~keras_actfn.search.aquasurf.pool.CandidatePool`); polled at each ask.
            The config then names the source (``source.describe()``) instead of hashing the
            list, so a resumed search may start from a longer list.

    Candidates carry ``meta={"index": i}``, the position in ``functions``.
    """

    name = "aquasurf"

    def __init__(self, functions, coords, regressor: str = "knr", start="benchmark",
                 budget: int = 100, seed: int = 0, metric: str = "validation_accuracy",
                 failure_fitness: float | None = None, keys=None, context: dict | None = None,
                 source=None):
        self.source = source
        self.functions = [str(f) for f in functions]
        n = len(self.functions)
        if n == 0:
            raise ValueError("AquasurfSearch needs at least one candidate function")
        coords = self._check_coords(coords, n)
        if regressor not in REGRESSORS:
            raise ValueError(f"unknown regressor {regressor!r}; expected one of {REGRESSORS}")
        if isinstance(budget, bool) or int(budget) < 1:
            raise ValueError(f"budget must be a positive integer, got {budget!r}")
        if failure_fitness is not None and not math.isfinite(float(failure_fitness)):
            raise ValueError(f"failure_fitness must be finite or None, got {failure_fitness!r}")
        self.coords = coords
        self.regressor = regressor
        self.start = start if isinstance(start, str) else [str(s) for s in start]
        self.budget = int(budget)
        self.seed = int(seed)
        self.metric = metric
        self.failure_fitness = None if failure_fitness is None else float(failure_fitness)
        self.context = dict(context or {})
        self.keys = None if keys is None else list(keys)
        self.digest = candidates_digest(self.functions, coords)
        self.rng = np.random.default_rng(self.seed)
        self.start_indices = self._start_set()
        self.asked: list[int] = []        # indices in ask order
        self.pending: list[int] = []      # asked, not told
        self.told: dict[int, float | None] = {}  # index -> regression target (None: unknown)
        self._canonical: dict[int, str] = {}

    @staticmethod
    def _check_coords(coords, n):
        coords = np.asarray(coords, dtype=np.float64)
        if coords.ndim == 1:
            coords = coords[:, None]
        if coords.ndim != 2 or coords.shape[0] != n:
            raise ValueError(f"coords must have shape ({n}, d) to match the {n} functions, "
                             f"got {coords.shape}")
        if not np.isfinite(coords).all():
            raise ValueError("coords must be finite (embed only functions with valid features)")
        return coords

    def extend(self, functions, coords) -> None:
        """Grow the candidate list: ``functions`` must start with the current list (indices
        stay valid); ``coords`` replaces every function's coordinates."""
        functions = [str(f) for f in functions]
        if functions[:len(self.functions)] != self.functions:
            raise ValueError("a grown candidate list must start with the current one")
        coords = self._check_coords(coords, len(functions))
        if coords.shape[1] != self.coords.shape[1]:
            raise ValueError(f"coordinates changed dimension: {self.coords.shape[1]} -> "
                             f"{coords.shape[1]}")
        self.functions, self.coords, self.keys = functions, coords, None

    def close(self) -> None:
        """Release the source (its background process), if any."""
        if self.source is not None and hasattr(self.source, "close"):
            self.source.close()

    # ------------------------------------------------------------------ start set
    def _start_set(self) -> list:
        n = len(self.functions)
        if self.start == "benchmark":
            (relu,) = find_functions(["relu(x)"], self.functions, self.keys)
            if relu is None:
                raise ValueError("benchmark start needs ReLU among the candidate functions "
                                 "(by text or by outputs); none of the functions matches")
            others = np.setdiff1d(np.arange(n), [relu])
            k = min(START_SIZE - 1, len(others))
            chosen = self.rng.choice(others, size=k, replace=False) if k else []
            return [int(relu)] + [int(i) for i in chosen]
        if self.start == "new_task":
            targets = list(AQUASURF_START_FUNCTIONS)
        elif isinstance(self.start, list):
            targets = self.start
        else:
            raise ValueError(f"start must be 'benchmark', 'new_task' or a list of texts, got "
                             f"{self.start!r}")
        found = find_functions(targets, self.functions, self.keys)
        missing = [t for t, i in zip(targets, found) if i is None]
        if missing:
            raise ValueError(f"start function(s) {missing} are not among the candidates (by "
                             f"text or by outputs); add them to the list and embed them too")
        unique = []
        for i in found:
            if i not in unique:
                unique.append(int(i))
        return unique

    # ------------------------------------------------------------------ ask / tell
    def _text(self, index: int) -> str:
        text = self._canonical.get(index)
        if text is None:
            from ...expr import parse  # noqa: PLC0415
            try:
                text = str(parse(self.functions[index]))
            except Exception:  # noqa: BLE001 - the evaluator records the failure
                text = self.functions[index]
            self._canonical[index] = text
        return text

    def _candidate(self, index: int, mutation: str) -> Candidate:
        self.asked.append(index)
        self.pending.append(index)
        return Candidate(self._text(index), mutation=mutation, generation=len(self.asked) - 1,
                         meta={"index": index})

    def _targets(self):
        indices = np.array(sorted(self.told), dtype=np.int64)
        values = np.array([np.nan if self.told[i] is None else self.told[i] for i in indices])
        if np.isnan(values).any():
            known = values[~np.isnan(values)]
            values[np.isnan(values)] = known.min() if known.size else 0.0
        return indices, values

    def predict(self, indices=None) -> np.ndarray:
        """The regressor's predictions (fit on everything told so far) at ``indices``
        (default: every function). Needs at least one told result."""
        if not self.told:
            raise RuntimeError("nothing has been told yet; there is nothing to fit")
        if self.regressor == "random":
            raise RuntimeError("random search makes no predictions")
        train, values = self._targets()
        query = np.arange(len(self.functions)) if indices is None else np.asarray(indices)
        model = self._fitted(train, values)
        return np.asarray(model.predict(self.coords[query]), dtype=np.float64)

    def _fitted(self, train, values):
        if self.regressor == "rfr":
            model = make_regressor("rfr", random_state=int(self.rng.integers(2 ** 31)))
        else:
            model = make_regressor(self.regressor)
        if self.regressor == "knr" and len(train) < 3:
            model.set_params(n_neighbors=len(train))
        return model.fit(self.coords[train], values)

    def ask(self) -> Candidate | None:
        if len(self.asked) >= self.budget:
            return None
        if self.source is not None:
            update = self.source.poll()
            if update is not None:
                self.extend(*update)
        for index in self.start_indices:
            if index not in self.told and index not in self.pending:
                return self._candidate(index, "start")
        free = np.ones(len(self.functions), dtype=bool)
        free[self.asked] = False
        if not free.any():
            return None
        candidates = np.flatnonzero(free)
        if self.regressor == "random":
            return self._candidate(int(candidates[self.rng.integers(len(candidates))]),
                                   "random")
        if not self.told:
            return None  # wait for the first result: there is nothing to regress on
        predictions = self.predict(candidates)
        top = float(np.max(predictions))
        # ties (up to rounding: 0.9 * w / w need not be 0.9 exactly) go to the lowest index
        tied = np.flatnonzero(predictions >= top - 1e-12 * max(1.0, abs(top)))
        best = int(candidates[int(tied[0])])
        return self._candidate(best, self.regressor)

    def _target(self, record) -> float | None:
        fitness = record.fitness(self.metric)
        if math.isfinite(fitness):
            return float(fitness)
        raw = getattr(record, self.metric, None)
        if raw is not None and math.isfinite(float(raw)):  # a failed run that was measured
            return -float(raw) if self.metric.endswith("_loss") else float(raw)
        if self.failure_fitness is not None:
            return self.failure_fitness
        if self.metric.endswith("_loss"):
            return None  # resolved to the worst known fitness at fit time
        chance = record.info.get("chance") if isinstance(record.info, dict) else None
        try:
            chance = float(chance)
        except (TypeError, ValueError):
            chance = None
        return chance if chance is not None and math.isfinite(chance) else 0.0

    def tell(self, candidate: Candidate, record) -> None:
        index = candidate.meta.get("index") if isinstance(candidate.meta, dict) else None
        if index not in self.pending:
            raise ValueError(f"told about {candidate.text!r} (index {index}), which this "
                             f"search did not ask or was already told about")
        self.pending.remove(index)
        self.told[int(index)] = self._target(record)

    def done(self) -> bool:
        limit = min(self.budget, len(self.functions))
        return len(self.told) >= limit and not self.pending

    # ------------------------------------------------------------------ results
    def results(self) -> list:
        """``(text, target)`` of every told function, in ask order."""
        return [(self.functions[i], self.told[i]) for i in self.asked if i in self.told]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"rng": rng_state(self.rng), "start": list(self.start_indices),
                "asked": list(self.asked), "pending": list(self.pending),
                "told": [[i, v] for i, v in self.told.items()]}

    def load_state_dict(self, state: dict) -> None:
        self.rng = rng_from_state(state["rng"])
        self.start_indices = [int(i) for i in state["start"]]
        self.asked = [int(i) for i in state["asked"]]
        self.pending = [int(i) for i in state["pending"]]
        self.told = {int(i): (None if v is None else float(v)) for i, v in state["told"]}
        known = [*self.start_indices, *self.asked]
        if known and max(known) >= len(self.functions):
            raise ValueError(f"the saved search refers to function #{max(known)} but only "
                             f"{len(self.functions)} candidates were given; resume with the "
                             f"same (or a grown) candidate list")

    def config(self) -> dict:
        candidates = {"num_functions": len(self.functions), "candidates_sha1": self.digest}
        if self.source is not None:  # grows during the run and between sessions
            candidates = {"candidates": "growing",
                          "source": self.source.describe() if hasattr(self.source, "describe")
                          else type(self.source).__name__}
        return {"algorithm": self.name, "regressor": self.regressor,
                "start": self.start, "budget": self.budget, "seed": self.seed,
                "metric": self.metric, "failure_fitness": self.failure_fitness,
                "coords_dim": int(self.coords.shape[1]), **candidates, **self.context}
