"""The ``keras-actfn bench`` workflows as library calls (dissertation §6.1, §6.6).

* :class:`TableBuild` -- train every unique function of an AQuaSurF space once, with its
  FIM features at initialization, journaled in a store, and write the Act-Bench table
  (``bench build``); :func:`table_summary` gives the numbers it closes with.
* :func:`replay_table` and :func:`write_replay` -- many table-lookup searches per method,
  their summary, and ``replay.csv``, ``replay.png`` and ``summary.json`` (``bench replay``,
  Figure 6.6).
* :class:`TablePlots` -- a table embedded by each feature kind and coloured by accuracy
  (Figure 6.4), and one replayed search's progress and path through the space (Figures
  6.7, 6.8) (``bench plot``).

:mod:`.benchmark` reads and writes the tables; :mod:`.replay` holds the replay steps these
workflows put together. Nothing here imports TensorFlow until a table is built.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

__all__ = ["EMBEDDING_LABELS", "START_LABELS", "relu_class", "table_functions", "TableBuild",
           "table_summary", "Replay", "replay_table", "write_replay", "TracedSearch",
           "TablePlots"]

#: the functions an embedding plot marks (Figure 6.4): label -> function text
EMBEDDING_LABELS = {"ReLU": "relu(x)", "Swish": "swish(x)", "ELU": "elu(x)",
                    "-ELU": "-elu(x)", "tanh": "tanh(x)", "-tanh": "-tanh(x)",
                    "|x|": "abs(x)", "-|x|": "-abs(x)"}
#: how a progress plot (Figure 6.7) names the AQuaSurF start functions it draws as lines
START_LABELS = {"elu(x)": "ELU", "relu(x)": "ReLU", "selu(x)": "SELU",
                "sigmoid(x)": "sigmoid", "softplus(x)": "Softplus",
                "softsign(x)": "Softsign", "swish(x)": "Swish", "tanh(x)": "tanh"}


def relu_class(space, labels):
    """The equivalence class (of ``labels``) holding ReLU's outputs, or None."""
    from ...expr import fingerprint_key, parse

    relu = fingerprint_key(parse("relu(x)"))
    for i in range(len(space)):
        if fingerprint_key(parse(space.text(i))) == relu:
            return int(labels[i])
    return None


def table_functions(space, limit=None) -> tuple:
    """``(functions, unique)``: what a table of ``space`` trains, and how many unique
    (output-distinct) functions that is. Without ``limit``, the whole space; with it, the
    functions of the first ``limit`` equivalence classes, ReLU's class always among them
    (the replays start from ReLU, §6.6.1)."""
    from .space import count_unique, equivalence_classes

    if limit is None:
        return space, count_unique(space)
    labels = equivalence_classes(space)
    chosen = list(dict.fromkeys(int(v) for v in labels))[:limit]
    relu = relu_class(space, labels)
    if relu is not None and relu not in chosen:
        chosen = chosen[:max(limit - 1, 0)] + [relu]
    keep = np.isin(labels, chosen)
    return [space.text(i) for i in np.flatnonzero(keep)], len(chosen)


class TableBuild:
    """An Act-Bench-style table of an AQuaSurF space, set up to be built with :meth:`run`.

    Every unique function of ``space`` (a schema of
    :func:`~keras_actfn.search.aquasurf.space.aquasurf_space`) is trained once with the
    recipe (``task``/``model`` default to the recipe's, ``epochs`` stretches its schedule)
    and, unless ``fim`` is false, has its FIM features computed at initialization; ``test``
    adds the test-set metrics. Everything is journaled in ``store`` (default
    ``runs/bench_<space>_<task>.db``; building again resumes) and the table goes to ``out``
    (``.json`` or ``.json.gz``). ``limit`` keeps the first ``limit`` unique functions (see
    :func:`table_functions`).

    Setting up creates the folders of the store and the table and trains nothing. An unknown
    recipe or space raises ``ValueError``/``KeyError``; a task or model the recipe cannot
    train raises ``ValueError``/``TypeError``.

    Attributes: ``space`` (the enumerated space), ``space_name``, ``task``, ``model``,
    ``functions``, ``unique`` (how many rows the table will have), ``store``, ``out``,
    ``context`` (the settings the store's run is checked against on resume).
    """

    def __init__(self, space: str = "binary_unary_unary", out: str = "benchmark.json", *,
                 task=None, model=None, recipe: str = "quick", epochs=None, seed: int = 0,
                 store=None, limit=None, fim: bool = True, test: bool = True):
        from ...train import get_recipe
        from ..engine.evaluator import make_evaluator
        from .benchmark import FisherEvaluator
        from .space import aquasurf_space

        chosen = get_recipe(recipe)
        self.space = aquasurf_space(space)
        self.space_name = space
        self.task = task or chosen.task
        self.model = model or chosen.model
        overrides = {"epochs": epochs} if epochs is not None else {}
        evaluator = make_evaluator(task=self.task, model=model, recipe=recipe, test=test,
                                   **overrides)
        if fim:
            evaluator = FisherEvaluator(evaluator, model=self.model, task=self.task)
        self.evaluator = evaluator
        self.functions, self.unique = table_functions(self.space, limit)
        self.seed = seed
        self.store = store or os.path.join("runs", f"bench_{space}_{self.task}.db")
        self.out = out
        for path in (self.store, out):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.context = {"task": self.task, "model": self.model, "recipe": recipe,
                        "epochs": epochs, "space": space, "limit": limit, "fim": fim,
                        "test": test}

    def run(self, workers: int = 1, progress=None):
        """Train what the store does not hold yet on ``workers`` local processes, write the
        table and return it as a :class:`~keras_actfn.search.aquasurf.benchmark.Benchmark`.
        A store whose run has other settings raises ``StoreError``."""
        from ..engine.executors import make_executor
        from .benchmark import build_benchmark

        with make_executor("local", workers) as pool:
            return build_benchmark(self.functions, self.evaluator, self.store, self.out,
                                   seed=self.seed, executor=pool, run_name="benchmark",
                                   context=self.context, progress=progress)


def table_summary(bench) -> dict:
    """A table's rows, failed rows, rows with a valid FIM, and ``best``: ``(function,
    validation accuracy)`` of its best row, or None when no row has an accuracy."""
    acc = bench.values("Validation Accuracy")
    return {"functions": len(bench),
            "failed": sum(1 for f in bench.functions if bench.rows[f].get("Status") != "ok"),
            "fim": sum(1 for f in bench.functions
                       if bench.rows[f].get("Fisher log eigenvalue CDF")),
            "best": bench.best() if np.isfinite(acc).any() else None}


@dataclasses.dataclass
class Replay:
    """What :func:`replay_table` found: per method name the
    :class:`~keras_actfn.search.aquasurf.benchmark.ReplayResult` and its
    :func:`~keras_actfn.search.aquasurf.replay.evaluations_summary`; the accuracy that counts
    as top (``threshold``, reached by the ``k`` best rows, the top ``top`` fraction); and
    ``reference``: ``{"ReLU": accuracy}`` when the table has ReLU with a finite one."""

    bench: object
    source: str
    methods: list
    results: dict
    summaries: dict
    threshold: float
    k: int
    top: float
    trials: int
    budget: int
    seed: int
    reference: dict


def replay_table(bench, methods, *, trials: int = 100, budget: int = 100, seed: int = 0,
                 top: float = 0.01, log=None, source=None) -> Replay:
    """Replay ``trials`` searches of ``budget`` evaluations per method (items of
    :func:`~keras_actfn.search.aquasurf.replay.parse_methods`) on the table ``bench`` by
    look-up (nothing is trained), and summarize how fast each reaches the top ``top``
    fraction. ``source`` names the table (default: the path it was read from). Raises
    ``ValueError`` when the table has no finite accuracy (the message starts with
    ``source``) or a method cannot run on it."""
    from .replay import evaluations_summary, replay_methods, top_fraction_threshold
    from .surrogate import find_functions

    source = source if source is not None else bench.path
    values = bench.values("Validation Accuracy")
    try:
        threshold, k = top_fraction_threshold(values, top)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    results = replay_methods(bench, methods, trials=trials, budget=budget, seed=seed, log=log)
    summaries = {name: evaluations_summary(result, threshold)
                 for name, result in results.items()}
    (relu,) = find_functions(["relu(x)"], bench.functions)
    reference = {}
    if relu is not None and np.isfinite(values[relu]):
        reference["ReLU"] = float(values[relu])
    return Replay(bench, source, list(methods), results, summaries, threshold, k, top,
                  trials, budget, seed, reference)


def write_replay(replay: Replay, out) -> None:
    """Write ``replay.csv`` (every trial's best-so-far), ``replay.png`` (Figure 6.6) and
    ``summary.json`` (the settings and each method's summary; NaN written as null) to the
    folder ``out``."""
    from ...train.record import json_safe
    from .benchmark import plot_replay
    from .replay import write_replay_csv

    write_replay_csv(replay.results, os.path.join(out, "replay.csv"))
    plot_replay({m.label: replay.results[m.name] for m in replay.methods},
                os.path.join(out, "replay.png"), reference=replay.reference,
                title=f"{os.path.basename(replay.source)}: {replay.trials} trials")
    payload = {"benchmark": os.path.abspath(replay.source), "functions": len(replay.bench),
               "trials": replay.trials, "budget": replay.budget, "seed": replay.seed,
               "top_fraction": replay.top, "top_threshold": replay.threshold,
               "top_count": replay.k, "relu": replay.reference.get("ReLU"),
               "methods": replay.summaries}
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(json_safe(payload), handle, indent=1, allow_nan=False)


@dataclasses.dataclass
class TracedSearch:
    """One replayed search (:meth:`TablePlots.trace`) of ``method``: ``rows`` of the table
    it evaluated, in order, their accuracies ``values``, the coordinates ``coords`` it
    searched, and the table's ``functions``."""

    method: object
    rows: np.ndarray
    values: np.ndarray
    coords: np.ndarray
    functions: list

    def best(self):
        """``(accuracy, function, evaluation number from 1)`` of the best evaluation, or
        None when none has an accuracy."""
        if not np.isfinite(self.values).any():
            return None
        best = int(np.nanargmax(self.values))
        return self.values[best], self.functions[self.rows[best]], best + 1


class TablePlots:
    """The plots of a table: its rows embedded by each of ``features`` (feature kinds of
    :data:`~keras_actfn.search.aquasurf.replay.FEATURE_KINDS`) and coloured by validation
    accuracy, and, for a ``trace`` method (an item of
    :func:`~keras_actfn.search.aquasurf.replay.parse_methods`), one replayed search. ``seed``
    seeds UMAP and the traced search.

    The embeddings are computed when the object is made: ``ValueError`` when a feature kind
    cannot be embedded (a table without FIM data, too few rows).
    """

    def __init__(self, bench, features, trace=None, seed: int = 0):
        from .replay import benchmark_coordinates
        from .surrogate import find_functions

        self.bench, self.features, self.method, self.seed = bench, list(features), trace, seed
        self.values = bench.values("Validation Accuracy")
        names = list(EMBEDDING_LABELS)
        found = find_functions([EMBEDDING_LABELS[n] for n in names], bench.functions)
        self.labels = {n: i for n, i in zip(names, found) if i is not None}
        needed = self.features + ([trace.feature] if trace and trace.feature else [])
        #: feature kind -> (coordinates, mask of the embedded rows)
        self.coordinates = {feature: benchmark_coordinates(bench, feature, seed=seed)
                            for feature in dict.fromkeys(needed)}

    def embeddings(self, out):
        """Write ``embedding_<feature>.png`` (Figure 6.4) per feature kind to the folder
        ``out``, yielding each path once it is written."""
        from .plots import plot_embedding

        for feature in self.features:
            coords, mask = self.coordinates[feature]
            path = os.path.join(out, f"embedding_{feature}.png")
            plot_embedding(coords, self.values, path, labels=self.labels,
                           title=f"{int(mask.sum())} functions embedded by {feature}")
            yield path

    def trace(self, budget: int = 100) -> TracedSearch:
        """Replay one search of the ``trace`` method with ``budget`` evaluations: a
        regression search over the rows its feature kind embeds, random search over every
        row. ``ValueError`` when it cannot run on the table."""
        from .replay import trace_search

        method = self.method
        if method.feature is None:
            coords, _ = self.coordinates.get(self.features[0])
            candidates = None
        else:
            coords, mask = self.coordinates[method.feature]
            candidates = np.flatnonzero(mask)
        rows, values = trace_search(
            self.bench, np.nan_to_num(coords) if method.feature else None, method.regressor,
            budget=budget, seed=self.seed, candidates=candidates)
        return TracedSearch(method, rows, values, coords, self.bench.functions)

    def progress(self, traced: TracedSearch, out) -> str:
        """Write ``progress_<method>.png`` (Figure 6.7: each evaluation and the best so far,
        with the start functions the table holds as lines) to ``out``; return its path."""
        from .plots import plot_search_progress
        from .surrogate import AQUASURF_START_FUNCTIONS, find_functions

        wanted = list(AQUASURF_START_FUNCTIONS)
        rows = find_functions(wanted, self.bench.functions)
        baselines = {START_LABELS.get(w, w): float(self.values[i])
                     for w, i in zip(wanted, rows)
                     if i is not None and np.isfinite(self.values[i])}
        path = os.path.join(out, f"progress_{traced.method.name}.png")
        plot_search_progress(traced.values, path, baselines=baselines, start_size=8,
                             title=f"{traced.method.label}, seed {self.seed}")
        return path

    def space_map(self, traced: TracedSearch, out) -> str:
        """Write ``space_map_<method>.png`` (Figure 6.8: the evaluated rows on the
        embedding) to ``out``; return its path."""
        from .plots import plot_space_map

        coords, rows, values = traced.coords, traced.rows, traced.values
        on_map = np.isfinite(coords[rows]).all(axis=1)
        path = os.path.join(out, f"space_map_{traced.method.name}.png")
        plot_space_map(coords, rows[on_map], values[on_map], path,
                       title=f"{traced.method.label}: {rows.size} evaluations")
        return path
