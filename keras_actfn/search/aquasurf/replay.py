"""Replaying searches on a benchmark table: coordinates, method lists, summaries (§6.6).

What ``keras-actfn bench replay`` / ``bench plot`` do, callable from scripts:

* :func:`benchmark_coordinates` — the surrogate coordinates of a table's rows for one
  feature kind: ``"outputs"`` (UMAP of the :func:`~keras_actfn.search.aquasurf.features.\
output_features` fingerprints of each row's function), ``"fim"`` (UMAP of
  :func:`~keras_actfn.search.aquasurf.benchmark.cdf_vectors`, Manhattan = eq. 6.16) or
  ``"both"`` (the union of the two fuzzy graphs, :func:`~keras_actfn.search.aquasurf.\
features.embed`). Only the rows with a valid FIM are embedded when the table has FIM
  data at all (the paper's filter, §6.6: the regression searches and Figure 6.4 only see
  those); the other rows get NaN coordinates.
* :func:`parse_methods` — ``"knr-both,knr-fim,random"`` into :class:`Method` items.
* :func:`replay_methods` — :func:`~keras_actfn.search.aquasurf.benchmark.replay_search` for
  each method, coordinates computed once per feature kind, regression searches restricted
  to the embedded rows, random search over every row.
* :func:`top_fraction_threshold`, :func:`evaluations_summary`, :func:`format_summary`,
  :func:`write_replay_csv` — the numbers ``bench replay`` prints and writes.
* :func:`trace_search` — one replayed search, step by step (which rows it evaluated), for
  the Figure 6.7 / 6.8 plots.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os

import numpy as np

from .benchmark import (Benchmark, ReplayResult, _lookup_inputs, cdf_vectors, load_benchmark,
                        lookup_search, replay_search)
from .surrogate import REGRESSORS

__all__ = ["FEATURE_KINDS", "CHECKPOINTS", "Method", "parse_methods", "benchmark_coordinates",
           "fim_rows", "replay_methods", "top_fraction_threshold", "evaluations_summary",
           "format_summary", "write_replay_csv", "trace_search"]

#: feature kinds of the surrogate (rows of Figure 6.4)
FEATURE_KINDS = ("both", "fim", "outputs")
#: evaluation counts whose mean best-so-far ``bench replay`` prints
CHECKPOINTS = (10, 25, 50, 100)
_FEATURE_LABELS = {"both": "FIM + outputs", "fim": "FIM", "outputs": "outputs"}


@dataclasses.dataclass(frozen=True)
class Method:
    """One replayed search: ``regressor`` (``knr``/``rfr``/``svr``/``random``) and, for a
    regression, the surrogate ``feature`` kind (``both``/``fim``/``outputs``)."""

    name: str
    regressor: str
    feature: str | None

    @property
    def label(self) -> str:
        if self.feature is None:
            return "Random"
        return f"{self.regressor.upper()} ({_FEATURE_LABELS[self.feature]})"


def parse_methods(text) -> list:
    """``"knr-both,knr-fim,random"`` (or a list of such names) -> ``[Method, ...]``.

    A name is ``random`` or ``REGRESSOR-FEATURE`` with REGRESSOR in knr/rfr/svr and FEATURE
    in both/fim/outputs. Raises ``ValueError`` naming the bad entry."""
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [str(n).strip().lower() for n in names if str(n).strip()]
    if not names:
        raise ValueError("no search method given (e.g. knr-both,knr-fim,knr-outputs,random)")
    methods = []
    for name in names:
        if name == "random":
            methods.append(Method("random", "random", None))
            continue
        regressor, _, feature = name.partition("-")
        if regressor not in REGRESSORS[:-1] or feature not in FEATURE_KINDS:
            raise ValueError(
                f"unknown search method {name!r}: expected 'random' or REGRESSOR-FEATURE with "
                f"REGRESSOR in {', '.join(REGRESSORS[:-1])} and FEATURE in "
                f"{', '.join(FEATURE_KINDS)} (e.g. knr-both)")
        methods.append(Method(name, regressor, feature))
    if len({m.name for m in methods}) != len(methods):
        raise ValueError(f"a search method is listed twice: {', '.join(names)}")
    return methods


def fim_rows(benchmark: Benchmark) -> np.ndarray:
    """Boolean mask of the rows with a valid FIM feature (a usable "Fisher log eigenvalue
    CDF" entry)."""
    return cdf_vectors(benchmark)[1]


def benchmark_coordinates(benchmark, feature: str = "both", seed: int = 0, rows=None,
                          outputs=None) -> tuple:
    """``(coords, embedded)``: ``(len(benchmark), 2)`` UMAP coordinates of the table's rows
    for ``feature`` (``"both"``, ``"fim"`` or ``"outputs"``), NaN where a row was not
    embedded, and the boolean mask of embedded rows.

    ``rows``: optional mask or indices of the rows to embed. Default: the rows with a valid
    FIM when any row has one (every row for ``"outputs"`` on a table without FIM data);
    ``"fim"`` and ``"both"`` always need valid FIM rows and raise ``ValueError`` otherwise.
    ``outputs``: precomputed :func:`output_features` of every row (saves recomputing).
    """
    from .features import embed, output_features  # noqa: PLC0415

    if not isinstance(benchmark, Benchmark):
        benchmark = load_benchmark(benchmark)
    if feature not in FEATURE_KINDS:
        raise ValueError(f"unknown feature {feature!r}; expected one of {FEATURE_KINDS}")
    n = len(benchmark)
    vectors, valid = cdf_vectors(benchmark)
    if rows is None:
        mask = valid.copy() if valid.any() else np.ones(n, dtype=bool)
    else:
        rows = np.asarray(rows)
        mask = rows.astype(bool) if rows.dtype == bool else np.isin(np.arange(n), rows)
        if mask.shape != (n,):
            raise ValueError(f"rows mask has shape {mask.shape} for {n} rows")
    if feature != "outputs":
        if not valid.any():
            raise ValueError(f"feature {feature!r} needs FIM data, but no row of the table has "
                             f"a valid 'Fisher log eigenvalue CDF' entry (built with --no-fim?)")
        if (mask & ~valid).any():
            raise ValueError(f"feature {feature!r}: {int((mask & ~valid).sum())} of the rows "
                             f"asked for have no valid FIM feature")
    if mask.sum() < 4:
        raise ValueError(f"only {int(mask.sum())} rows to embed; UMAP needs at least 4")
    index = np.flatnonzero(mask)
    out_features = None
    if feature in ("outputs", "both"):
        if outputs is None:
            out_features = output_features([benchmark.functions[i] for i in index])
        else:
            outputs = np.asarray(outputs, dtype=np.float64)
            if outputs.shape[0] != n:
                raise ValueError(f"outputs has {outputs.shape[0]} rows for {n} functions")
            out_features = outputs[index]
    fim = vectors[index] if feature in ("fim", "both") else None
    embedded = embed(fim_features=fim, outputs=out_features, seed=seed)
    coords = np.full((n, embedded.shape[1]), np.nan)
    coords[index] = embedded
    return coords, mask


def replay_methods(benchmark, methods, trials: int = 100, budget: int = 100, seed: int = 0,
                   metric: str = "Validation Accuracy", log=None, coordinates=None) -> dict:
    """Replay every method; returns ``{method name: ReplayResult}`` in the given order.

    Regression searches only consider the embedded rows (valid FIM, see
    :func:`benchmark_coordinates`); random search considers every row. Coordinates are
    computed once per feature kind (with UMAP seed ``seed``) unless given in
    ``coordinates`` (``{feature: (coords, mask)}``, filled in as computed).
    ``log``: optional ``print``-like callable for progress messages.
    """
    import time  # noqa: PLC0415

    from .features import output_features  # noqa: PLC0415

    if not isinstance(benchmark, Benchmark):
        benchmark = load_benchmark(benchmark)
    if isinstance(methods, str) or not all(isinstance(m, Method) for m in methods):
        methods = parse_methods(methods)
    if not methods:
        raise ValueError("no search method given")
    if int(trials) < 1 or int(budget) < 1:
        raise ValueError(f"trials and budget must be >= 1, got {trials} and {budget}")
    coordinates = {} if coordinates is None else coordinates
    if any(m.feature is not None for m in methods):
        _check_relu_candidate(benchmark)
    outputs = None
    results = {}
    for method in methods:
        start = time.perf_counter()
        if method.feature is None:
            result = replay_search(benchmark, "random", trials=trials, budget=budget,
                                   metric=metric, seed=seed, label=method.label)
        else:
            if method.feature not in coordinates:
                if outputs is None and method.feature != "fim":
                    outputs = output_features(benchmark.functions)
                coordinates[method.feature] = benchmark_coordinates(
                    benchmark, method.feature, seed=seed, outputs=outputs)
                if log:
                    log(f"embedded {int(coordinates[method.feature][1].sum())} rows by "
                        f"{method.feature} in {time.perf_counter() - start:.1f} s")
            coords, mask = coordinates[method.feature]
            result = replay_search(benchmark, method.regressor, trials=trials, budget=budget,
                                   coords=np.nan_to_num(coords), metric=metric, seed=seed,
                                   candidates=np.flatnonzero(mask), label=method.label)
        results[method.name] = result
        if log:
            log(f"{method.name}: {trials} trials x {result.evaluations.size} evaluations in "
                f"{time.perf_counter() - start:.1f} s")
    return results


def _check_relu_candidate(benchmark):
    """Replayed searches start from ReLU (§6.6.1): with the FIM filter on, ReLU's row needs
    a valid FIM, or no regression search can start."""
    from .surrogate import find_functions  # noqa: PLC0415

    valid = fim_rows(benchmark)
    if not valid.any():
        return
    (relu,) = find_functions(["relu(x)"], benchmark.functions)
    if relu is None:
        raise ValueError("the table has no ReLU row (by text or by outputs); replayed "
                         "searches start from ReLU (§6.6.1)")
    if not valid[relu]:
        raise ValueError(f"ReLU's row {benchmark.functions[relu]!r} has no valid FIM "
                         f"feature, so the regression searches (restricted to valid-FIM rows) "
                         f"cannot start from it; use random or rebuild its FIM")


def top_fraction_threshold(values, fraction: float = 0.01) -> tuple:
    """``(threshold, k)``: the k-th highest finite value, ``k = ceil(fraction * m)`` (at
    least 1) for the ``m`` finite values, so "reaching the top 1%" means a best-so-far of at
    least ``threshold`` (ties with the k-th value count as top too)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.sort(values[np.isfinite(values)])[::-1]
    if finite.size == 0:
        raise ValueError("the table has no finite values to rank")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    k = max(1, math.ceil(fraction * finite.size - 1e-9))
    return float(finite[k - 1]), k


def evaluations_summary(result: ReplayResult, threshold: float,
                        checkpoints=CHECKPOINTS) -> dict:
    """Per method numbers: ``mean_best`` (evaluation count -> mean best-so-far, for the
    checkpoints within the budget), ``median_to_top`` (median over the trials of the
    evaluations needed to reach ``threshold``; trials that never do count as infinitely many,
    so the median is NaN when fewer than half reach it), ``fraction_reached`` and
    ``mean_to_top_reached`` (mean over the trials that reached it)."""
    reach = result.evaluations_to_reach(threshold)
    hits = np.isfinite(reach)
    ranked = np.sort(np.where(hits, reach, np.inf))
    m = ranked.size
    median = 0.5 * (ranked[(m - 1) // 2] + ranked[m // 2])
    mean_best = {int(c): float(result.mean[c - 1]) for c in checkpoints
                 if c <= result.evaluations.size}
    return {"label": result.label, "mean_best": mean_best,
            "median_to_top": float(median) if math.isfinite(median) else math.nan,
            "fraction_reached": float(hits.mean()),
            "mean_to_top_reached": float(reach[hits].mean()) if hits.any() else math.nan,
            "trials": int(m), "budget": int(result.evaluations.size)}


def format_summary(summaries: dict, threshold: float, k: int, checkpoints=CHECKPOINTS,
                   fraction: float = 0.01) -> str:
    """The table ``bench replay`` prints (one line per method): mean best-so-far at the
    checkpoints, median evaluations to reach the top ``fraction`` and the share of trials
    that reached it."""
    top = f"top-{fraction * 100:.3g}%"
    head = f"{'method':<14}" + "".join(f"{'best@' + str(c):>10}" for c in checkpoints) + \
        f"{'median to ' + top:>18}{'reached':>9}"
    lines = [f"{top}: the {k} best functions (validation accuracy >= {threshold:.4f})",
             head, "-" * len(head)]
    for name, s in summaries.items():
        cells = "".join(f"{s['mean_best'][c]:>10.4f}" if c in s["mean_best"] else f"{'-':>10}"
                        for c in checkpoints)
        median = s["median_to_top"]
        shown = f"{median:g}" if math.isfinite(median) else f">{s['budget']}"
        lines.append(f"{name:<14}{cells}{shown:>18}{s['fraction_reached']:>9.0%}")
    return "\n".join(lines)


def write_replay_csv(results: dict, path) -> None:
    """``method, evaluations, mean, lower, upper`` rows, one per method and count."""
    with open(os.fspath(path), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "evaluations", "mean", "lower", "upper"])
        for name, result in results.items():
            for j, count in enumerate(result.evaluations):
                writer.writerow([name, int(count), repr(float(result.mean[j])),
                                 repr(float(result.lower[j])), repr(float(result.upper[j]))])


def trace_search(benchmark, coords=None, regressor: str = "knr", budget: int = 100,
                 seed: int = 0, candidates=None, metric: str = "Validation Accuracy",
                 start="benchmark") -> tuple:
    """One search replayed on the table: ``(rows, values)``, the table rows it evaluated
    in order and their ``metric`` values (NaN where the table has none)."""
    benchmark, coords, index = _lookup_inputs(benchmark, coords, regressor, candidates)
    values = benchmark.values(metric)
    rows = lookup_search(benchmark, coords, index, values, regressor, start,
                         min(budget, index.size), seed, "loss" in metric.lower())
    return rows, values[rows]
