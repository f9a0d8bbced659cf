"""Tabular activation-function benchmarks in the Act-Bench layout (dissertation §6.1, §6.6).

A benchmark is a table with one row per *unique* function (output-equivalent functions
merged): train/validation/test accuracy and loss, runtime, the equivalent spellings, and the
FIM eigenvalue feature. With it a search costs a table look-up per evaluation, so a search
algorithm can be run 100 times and its mean best-so-far curve compared with others
(Figure 6.6).

**File layout** (what :func:`build_benchmark` writes and :func:`load_benchmark` reads;
the layout of the published Act-Bench JSON files): one JSON object; each key is a function
name, each value an object with::

    "Train Accuracy", "Validation Accuracy", "Test Accuracy",
    "Train Loss", "Validation Loss", "Test Loss"      numbers (null: not measured)
    "Runtime (s)"                                      number
    "Equivalent Activation Functions"                  list of names with the same outputs
    "Fisher log eigenvalue CDF"                        list of numbers, or null

Ours adds ``"Status"`` (``"ok"``/``"failed"``) and ``"Failure Reason"``, which other readers
ignore. The reader is lenient: key spelling is matched without case, spaces, underscores
or punctuation, and the short names ``train_acc``, ``val_acc``, ``val_loss``... are
accepted. An earlier published variant keys each row by a tuple of equivalent names
(``"('min(selu(x),square(x))', 'min(square(x),selu(x))')"``) with the chosen name under
``"Activation Function"``; that is read too (the tuple is parsed as quoted strings, never
evaluated). A ``.json.gz`` file is decompressed.

The "Fisher log eigenvalue CDF" we write is, per weighted layer, the cumulative
distribution of that layer's log eigenvalues over its §6.5 histogram bins (⌊|θ_l|/100⌋
equal bins on [-100, 100]), the layers concatenated; ``null`` for an invalid FIM.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import re

import numpy as np

from ..engine.base import Candidate, SearchAlgorithm
from ..engine.driver import run_search
from ..engine.store import Store
from .surrogate import AquasurfSearch, REGRESSORS

__all__ = ["Benchmark", "ListAlgorithm", "FisherEvaluator", "build_benchmark",
           "load_benchmark", "write_benchmark", "replay_search", "ReplayResult", "plot_replay",
           "FIELDS", "fisher_cdf", "fisher_layer_sizes", "fim_entry", "cdf_vectors"]

#: record field -> Act-Bench key
FIELDS = {"train_accuracy": "Train Accuracy", "validation_accuracy": "Validation Accuracy",
          "test_accuracy": "Test Accuracy", "train_loss": "Train Loss",
          "validation_loss": "Validation Loss", "test_loss": "Test Loss",
          "runtime_s": "Runtime (s)"}
EQUIVALENTS = "Equivalent Activation Functions"
FISHER = "Fisher log eigenvalue CDF"
#: ours: per weighted layer ``[histogram bins, weights]``, so the CDF can be split by layer
FISHER_LAYERS = "Fisher Layer Sizes"
STATUS, REASON = "Status", "Failure Reason"


def _squash(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


_ALIASES = {}
for _field, _key in FIELDS.items():
    for _alias in (_field, _key):
        _ALIASES[_squash(_alias)] = _key
for _alias, _key in {"train_acc": "Train Accuracy", "val_acc": "Validation Accuracy",
                     "valid_accuracy": "Validation Accuracy", "test_acc": "Test Accuracy",
                     "val_loss": "Validation Loss", "valid_loss": "Validation Loss",
                     "runtime": "Runtime (s)", "runtime_seconds": "Runtime (s)",
                     "equivalent_functions": EQUIVALENTS, "equivalents": EQUIVALENTS,
                     "equivalent activation functions": EQUIVALENTS,
                     "fisher_cdf": FISHER, "fisher log eigenvalue cdf": FISHER,
                     "status": STATUS, "failure_reason": REASON, "reason": REASON,
                     "activation function": "Activation Function",
                     "W&B Run Configs": "W&B Run Configs"}.items():
    _ALIASES[_squash(_alias)] = _key


@dataclasses.dataclass
class Benchmark:
    """A loaded benchmark: ``functions`` (row names, file order) and ``rows`` (name ->
    dict with the Act-Bench keys; unknown keys kept as they were)."""

    functions: list
    rows: dict
    path: str | None = None

    def __len__(self):
        return len(self.functions)

    def values(self, key: str = "Validation Accuracy") -> np.ndarray:
        """One column as float64 (NaN where missing); ``key`` in any accepted spelling."""
        key = _ALIASES.get(_squash(key), key)
        out = np.full(len(self.functions), np.nan)
        for i, name in enumerate(self.functions):
            value = self.rows[name].get(key)
            try:
                out[i] = float(value)
            except (TypeError, ValueError):
                pass
        return out

    def equivalents(self, name: str) -> list:
        return list(self.rows[name].get(EQUIVALENTS) or [name])

    def best(self, key: str = "Validation Accuracy") -> tuple:
        """``(name, value)`` of the best row (highest accuracy / lowest loss)."""
        values = self.values(key)
        if "loss" in _squash(key):
            values = -values
        i = int(np.nanargmax(values))
        return self.functions[i], float(self.values(key)[i])


# ------------------------------------------------------------------------- evaluating
class ListAlgorithm(SearchAlgorithm):
    """Ask every given function once, in order (one run each, training seed = the run's)."""

    name = "list"

    def __init__(self, functions, context: dict | None = None):
        self.functions = [str(f) for f in functions]
        self.context = dict(context or {})
        self.position = 0
        self.n_told = 0

    def ask(self):
        if self.position >= len(self.functions):
            return None
        index = self.position
        self.position += 1
        return Candidate(self.functions[index], mutation="benchmark", meta={"index": index})

    def tell(self, candidate, record):
        self.n_told += 1

    def done(self):
        return self.n_told >= len(self.functions)

    def state_dict(self):
        return {"position": self.position, "n_told": self.n_told}

    def load_state_dict(self, state):
        self.position, self.n_told = int(state["position"]), int(state["n_told"])

    def config(self):
        import hashlib  # noqa: PLC0415
        digest = hashlib.sha1("\n".join(self.functions).encode()).hexdigest()
        return {"algorithm": self.name, "num_functions": len(self.functions),
                "functions_sha1": digest, **self.context}


def _group(functions):
    """``[(representative, [equivalent texts...])]`` in first-appearance order."""
    from ...expr import fingerprint_key, parse  # noqa: PLC0415
    from .space import AquasurfSpace, equivalence_classes  # noqa: PLC0415

    if isinstance(functions, AquasurfSpace):
        labels = equivalence_classes(functions)
        groups: dict = {}
        for i, rep in enumerate(labels):
            groups.setdefault(int(rep), []).append(functions.text(i))
        return [(members[0], members) for members in groups.values()]
    groups = {}
    for fn in functions:
        text = getattr(fn, "text", fn)
        text = str(parse(text))
        with np.errstate(all="ignore"):
            key = fingerprint_key(text)
        groups.setdefault(key, []).append(text)
    return [(members[0], list(dict.fromkeys(members))) for members in groups.values()]


def fisher_cdf(result):
    """The "Fisher log eigenvalue CDF" entry for a FIM result: per layer, the cumulative
    share of log eigenvalues in each §6.5 histogram bin, layers concatenated (``None`` for
    an invalid result). A plain sequence is taken as already computed."""
    if result is None:
        return None
    layers = getattr(result, "layers", None)
    if layers is None:
        values = np.asarray(result, dtype=np.float64).ravel()
        return [float(v) for v in values] if np.isfinite(values).all() else None
    if not getattr(result, "valid", True):
        return None
    cdf = []
    for layer in layers:
        counts = np.asarray(layer.histogram, dtype=np.float64)
        total = counts.sum()
        cdf.extend((np.cumsum(counts) / total if total > 0 else counts).tolist())
    return [round(float(v), 8) for v in cdf]


def fisher_layer_sizes(result):
    """``[[bins, weights], ...]`` per layer of a FIM result (the "Fisher Layer Sizes" entry)."""
    return [[int(len(layer.histogram)), int(layer.num_params)] for layer in result.layers]


def cdf_vectors(benchmark, rows=None) -> tuple:
    """``(vectors, valid)`` from the benchmark's "Fisher log eigenvalue CDF" column: vectors
    whose Manhattan distances equal eq. 6.16 (see
    :func:`~keras_actfn.search.aquasurf.features.cdf_vector`), and the mask of rows with a
    valid FIM. Uses each row's "Fisher Layer Sizes" (written by our builder); a published
    table without them gets plain Manhattan distance on the CDF."""
    from .features import cdf_matrix  # noqa: PLC0415

    names = benchmark.functions if rows is None else [benchmark.functions[i] for i in rows]
    return cdf_matrix([benchmark.rows[name].get(FISHER) for name in names],
                      [benchmark.rows[name].get(FISHER_LAYERS) or None for name in names])


def fim_entry(result) -> dict:
    """The JSON-safe FIM features of one function, as records and caches keep them:
    ``{"cdf", "layers", "valid", "reason"}`` (``cdf`` None when invalid)."""
    return {"cdf": fisher_cdf(result), "layers": fisher_layer_sizes(result),
            "valid": bool(result.valid), "reason": result.reason or ""}


class FisherEvaluator:
    """Picklable evaluator: ``evaluator(text, seed=...)`` then the FIM features of the same
    function on ``model`` / ``task`` (one batch at AutoInit, computed by
    :class:`~keras_actfn.search.aquasurf.pool.FimFeatures`), stored in ``record.info``
    (``fisher_cdf``, ``fisher_layers``, ``fisher_valid``, ``fisher_reason``, ``fisher_s``)
    so a benchmark build journals both in one pass. A FIM that cannot be computed leaves
    ``fisher_cdf`` null and says why."""

    def __init__(self, evaluator, model: str = "mnist1d_cnn", task: str = "mnist1d",
                 batch: int = 128, fim_seed: int = 0):
        from .pool import FimFeatures  # noqa: PLC0415

        self.evaluator = evaluator
        self.features = FimFeatures(model=model, task=task, batch=batch, seed=fim_seed)

    def __call__(self, text, seed: int = 0):
        import time  # noqa: PLC0415

        record = self.evaluator(text, seed=seed)
        start = time.perf_counter()
        (entry,) = self.features([text])
        record.info.update({f"fisher_{key}": value for key, value in entry.items()})
        record.info["fisher_s"] = round(time.perf_counter() - start, 4)
        return record


def _number(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def build_benchmark(functions, evaluator, store_path, path_json, fim=None, *, seed: int = 0,
                    executor=None, run_name: str = "benchmark", context: dict | None = None,
                    progress=None) -> Benchmark:
    """Evaluate every unique function once and write the Act-Bench JSON.

    Args:
        functions: texts (or :class:`UniqueFunction` items), or an
            :class:`~keras_actfn.search.aquasurf.space.AquasurfSpace`. Output-equivalent
            functions are merged (first one named); the others are listed under
            "Equivalent Activation Functions".
        evaluator: ``evaluator(text, seed=...) -> EvaluationRecord`` (what
            :func:`~keras_actfn.search.engine.driver.run_search` takes).
        store_path: the search store journaling every evaluation; calling again with the
            same arguments resumes and evaluates only what is missing.
        path_json: where the JSON goes (``.gz`` suffix: gzip-compressed).
        fim: optional FIM features: a mapping name -> FisherResult (or a precomputed CDF
            list), or a callable ``fim(text) -> FisherResult``.
        seed: training seed of every evaluation.
        executor, progress: passed to :func:`run_search`.
        run_name: the run in the store.
        context: extra JSON-safe config (task, model, recipe) stored with the run.

    Returns:
        The :class:`Benchmark` written.
    """
    groups = _group(functions)
    if not groups:
        raise ValueError("build_benchmark needs at least one function")
    representatives = [rep for rep, _ in groups]
    algorithm = ListAlgorithm(representatives, context=context)
    own_store = not isinstance(store_path, Store)
    store = Store(store_path) if own_store else store_path
    try:
        run_search(algorithm, evaluator, store, executor=executor, seed=seed,
                   progress=progress, run_name=run_name)
        records = {}
        for ev in store.evaluations():
            if ev.is_finished:
                records[ev.text] = ev.record
    finally:
        if own_store:
            store.close()
    rows = {}
    for rep, members in groups:
        record = records.get(rep)
        row = {key: None for key in FIELDS.values()}
        if record is not None:
            for field, key in FIELDS.items():
                row[key] = _number(getattr(record, field))
            row[STATUS] = record.status
            row[REASON] = record.reason
        row[EQUIVALENTS] = list(members)
        if fim is not None:
            source = fim(rep) if callable(fim) else fim.get(rep)
            row[FISHER] = fisher_cdf(source)
            if getattr(source, "layers", None):
                row[FISHER_LAYERS] = fisher_layer_sizes(source)
        elif record is not None and "fisher_cdf" in record.info:  # from a FisherEvaluator
            row[FISHER] = record.info["fisher_cdf"]
            if record.info.get("fisher_layers"):
                row[FISHER_LAYERS] = record.info["fisher_layers"]
        rows[rep] = row
    benchmark = Benchmark(representatives, rows, str(path_json))
    write_benchmark(benchmark, path_json)
    return benchmark


def write_benchmark(benchmark: Benchmark, path) -> None:
    """Write ``benchmark`` as Act-Bench JSON (gzip when ``path`` ends in ``.gz``)."""
    data = {name: benchmark.rows[name] for name in benchmark.functions}
    text = json.dumps(data, indent=1, allow_nan=False)
    path = os.fspath(path)
    tmp = path + ".tmp"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(tmp, "wt", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


_QUOTED = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""")


def _tuple_names(key: str):
    """Names in a key written as a Python tuple of strings, or None if it is not one."""
    stripped = key.strip()
    if not (stripped.startswith("(") and stripped.endswith(")")):
        return None
    names = [a if a else b for a, b in _QUOTED.findall(stripped)]
    return names or None


def load_benchmark(path) -> Benchmark:
    """Read a benchmark written by :func:`build_benchmark` or a published Act-Bench file
    (see the module docstring for the layout and the spellings accepted)."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object mapping function names to rows, "
                         f"got {type(data).__name__}")
    functions, rows = [], {}
    for key, raw in data.items():
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: the row of {key!r} must be an object, got "
                             f"{type(raw).__name__}")
        row = {}
        for field, value in raw.items():
            row[_ALIASES.get(_squash(str(field)), field)] = value
        names = _tuple_names(key)
        name = key
        if names is not None:
            name = row.get("Activation Function") or names[0]
            row.setdefault(EQUIVALENTS, names)
        equivalents = row.get(EQUIVALENTS)
        if not isinstance(equivalents, list) or not equivalents:
            equivalents = [name]
        if name not in equivalents:
            equivalents = [name] + list(equivalents)
        row[EQUIVALENTS] = [str(e) for e in equivalents]
        if name in rows:
            raise ValueError(f"{path}: function {name!r} appears twice")
        functions.append(name)
        rows[name] = row
    return Benchmark(functions, rows, path)


# ------------------------------------------------------------------------- replaying
@dataclasses.dataclass
class ReplayResult:
    """Mean best-so-far of ``trials`` replayed searches, per evaluation count.

    ``evaluations[j]`` = j + 1; ``mean``, ``lower``, ``upper`` (the 95% confidence interval
    of the mean, Student t) and ``best_so_far`` (trials x budget) are in the metric's units.
    """

    method: str
    label: str
    evaluations: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    best_so_far: np.ndarray
    metric: str

    @property
    def ci_halfwidth(self) -> np.ndarray:
        return (self.upper - self.lower) / 2

    def evaluations_to_reach(self, value: float) -> np.ndarray:
        """Per trial, the evaluations needed for best-so-far >= ``value`` (NaN if never)."""
        hit = self.best_so_far >= value
        first = np.argmax(hit, axis=1).astype(np.float64) + 1
        first[~hit.any(axis=1)] = np.nan
        return first


def _record_for(name, value, is_loss):
    from ...train.record import EvaluationRecord  # noqa: PLC0415
    record = EvaluationRecord(fn=name, task="benchmark", model="benchmark", recipe="table",
                              seed=0)
    if value is None or not math.isfinite(value):
        return record.fail("error", "no result in the benchmark table")
    if is_loss:
        record.validation_loss = value
    else:
        record.validation_accuracy = value
    return record


def _lookup_inputs(benchmark, coords, method, candidates):
    """``(benchmark, coords, index)`` checked for a table look-up search."""
    if not isinstance(benchmark, Benchmark):
        benchmark = load_benchmark(benchmark)
    n = len(benchmark)
    if coords is None:
        if method != "random":
            raise ValueError(f"method {method!r} needs the rows' surrogate coordinates")
        coords = np.zeros((n, 1))
    coords = np.asarray(coords, dtype=np.float64)
    if coords.shape[0] != n:
        raise ValueError(f"coords has {coords.shape[0]} rows for a benchmark of {n} functions")
    index = np.arange(n) if candidates is None else np.asarray(candidates, dtype=np.int64)
    return benchmark, coords, index


def lookup_search(benchmark, coords, index, values, method, start, budget, seed, is_loss,
                  failure_fitness=None) -> np.ndarray:
    """One :class:`AquasurfSearch` over the rows ``index`` answered from the table
    (``values``): the rows it evaluated, in order."""
    search = AquasurfSearch([benchmark.functions[i] for i in index], coords[index],
                            regressor=method, start=start, budget=budget, seed=seed,
                            metric="validation_loss" if is_loss else "validation_accuracy",
                            failure_fitness=failure_fitness)
    rows = []
    while not search.done():
        candidate = search.ask()
        if candidate is None:
            break
        row = int(index[candidate.meta["index"]])
        search.tell(candidate, _record_for(candidate.text, values[row], is_loss))
        rows.append(row)
    return np.asarray(rows, dtype=np.int64)


def replay_search(benchmark, method: str = "knr", trials: int = 100, budget: int = 100,
                  coords=None, *, start="benchmark", metric: str = "Validation Accuracy",
                  seed: int = 0, candidates=None, label: str | None = None,
                  failure_fitness: float | None = None) -> ReplayResult:
    """Run ``trials`` searches by table look-up (nothing is trained) and summarize them.

    Args:
        benchmark: a :class:`Benchmark` (or a path to one).
        method: ``"knr"``, ``"rfr"``, ``"svr"`` or ``"random"``.
        trials: independent searches (seeds ``seed``, ``seed + 1``...).
        budget: evaluations per search, start set included (§6.6: 100).
        coords: ``(len(benchmark), d)`` surrogate coordinates of the rows (e.g.
            :func:`~keras_actfn.search.aquasurf.features.embed`); needed unless
            ``method="random"``.
        start: start set (see :class:`AquasurfSearch`): ReLU + 7 random by default.
        metric: the benchmark column searched and reported.
        candidates: optional row indices the search may pick (e.g. the functions with a
            valid FIM, the paper's filter for the regression searches); best-so-far is
            always measured on the table.
        label: legend label (default: the method's name).
        failure_fitness: as in :class:`AquasurfSearch` (missing table values).
    """
    if method not in REGRESSORS:
        raise ValueError(f"unknown method {method!r}; expected one of {REGRESSORS}")
    if int(trials) < 1:
        raise ValueError(f"trials must be >= 1, got {trials!r}")
    benchmark, coords, index = _lookup_inputs(benchmark, coords, method, candidates)
    values = benchmark.values(metric)
    is_loss = "loss" in _squash(metric)
    budget = int(min(budget, len(index)))
    curves = np.full((int(trials), budget), np.nan)
    for trial in range(int(trials)):
        rows = lookup_search(benchmark, coords, index, values, method, start, budget,
                             seed + trial, is_loss, failure_fitness)
        found = (-values[rows] if is_loss else values[rows]).astype(np.float64)
        found[np.isnan(found)] = -np.inf
        best = np.maximum.accumulate(found) if found.size else found
        best = np.where(np.isfinite(best), best, np.nan)
        curves[trial, :best.size] = -best if is_loss else best
    mean = np.nanmean(curves, axis=0)
    count = np.sum(~np.isnan(curves), axis=0)
    std = np.nanstd(curves, axis=0, ddof=1) if trials > 1 else np.zeros(budget)
    from scipy import stats  # noqa: PLC0415
    t = stats.t.ppf(0.975, np.maximum(count - 1, 1)) if trials > 1 else 0.0
    half = np.where(count > 1, t * std / np.sqrt(np.maximum(count, 1)), 0.0)
    return ReplayResult(method=method, label=label or method.upper(),
                        evaluations=np.arange(1, budget + 1), mean=mean, lower=mean - half,
                        upper=mean + half, best_so_far=curves, metric=metric)


def plot_replay(results, path=None, *, title: str | None = None, reference: dict | None = None,
                figsize=(6.0, 4.0)):
    """Figure 6.6-style curves: mean best-so-far per evaluation with a shaded 95% CI.

    ``results``: a :class:`ReplayResult`, a list of them, or a dict label -> result.
    ``reference``: horizontal lines, e.g. ``{"ReLU": 0.87}``. Saves to ``path`` when given;
    returns the matplotlib ``Figure``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    if isinstance(results, ReplayResult):
        items = [(results.label, results)]
    elif isinstance(results, dict):
        items = list(results.items())
    else:
        items = [(r.label, r) for r in results]
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, result in items:
        line, = ax.plot(result.evaluations, result.mean, label=label, linewidth=1.5)
        ax.fill_between(result.evaluations, result.lower, result.upper,
                        color=line.get_color(), alpha=0.2, linewidth=0)
    for label, value in (reference or {}).items():
        ax.axhline(value, color="black", linestyle="--", linewidth=1, label=label)
    metric = items[0][1].metric if items else "Validation Accuracy"
    ax.set_xlabel("Activation functions evaluated")
    ax.set_ylabel(f"Best {metric} so far")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path))
    return fig
