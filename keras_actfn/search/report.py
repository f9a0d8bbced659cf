"""Read a search store back: top-k table and the plots of dissertation ch. 4.

* :func:`top_functions`: distinct functions ranked by mean fitness over their evaluations
  (several seeds of the same function are averaged), with runtime.
* :func:`plot_progress`: best-so-far against evaluations, each new best annotated with its
  formula (Fig. 4.4 style), drawn by :func:`plot_best_so_far` -- the one best-so-far plot,
  which AQuaSurF's Figure 6.7 (:func:`~keras_actfn.search.aquasurf.plots.plot_search_progress`)
  draws from plain arrays too.
* :func:`plot_population`: fitness of the population over time -- for every evaluation,
  the P most recent valid results (PANGAEA's sliding window; CAFE: the generation), median
  and quartiles (Fig. 4.7 style).
* :func:`plot_top_shapes`: the top functions' shapes, with the spread of shapes their
  learnable parameters can reach (``plot_activation``).
* :func:`write_report`: all of it into a directory.
"""

from __future__ import annotations

import math
import os
import textwrap

import numpy as np

from ..expr import parse
from ..train.record import split_objective
from ..train.user_model import ORIGINAL
from .engine.store import Store


def _metric_value(record, metric):
    value = record.fitness(metric)
    return abs(value) if math.isfinite(value) else math.nan


def load_results(store_path, run="search"):
    """``(config, [Evaluation...])`` of a run, in completion order."""
    if not os.path.exists(store_path):
        raise FileNotFoundError(f"no search store at {store_path!r}")
    with Store(store_path, readonly=True) as store:  # a report never writes the store
        store.select_run(run)
        return store.run_config(), store.results()


def top_functions(results, k=10, metric="validation_accuracy"):
    """``[{"fn", "mean", "std", "runs", "runtime_s", "first"}]`` best first (failed runs of
    a function count as failures, not as zeros: a function must succeed to rank)."""
    groups: dict = {}
    for ev in results:
        groups.setdefault(ev.text, []).append(ev)
    rows = []
    for text, evs in groups.items():
        values = [_metric_value(ev.record, metric) for ev in evs if ev.record is not None and
                  ev.record.ok]
        values = [v for v in values if not math.isnan(v)]
        if not values:
            continue
        runtimes = [ev.record.runtime_s for ev in evs if ev.record is not None]
        rows.append({"fn": text, "mean": float(np.mean(values)),
                     "std": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
                     "runs": len(values), "failed": len(evs) - len(values),
                     "runtime_s": float(np.mean(runtimes)) if runtimes else math.nan,
                     "first": min(ev.order or 0 for ev in evs)})
    lower_is_better = split_objective(metric)[1] == "min"
    rows.sort(key=lambda r: r["mean"], reverse=not lower_is_better)
    return rows[:k]


def format_top(rows, metric="validation_accuracy"):
    head = f"{'#':>3}  {'function':<50}  {metric + ' (mean ± std)':>32}  {'runtime':>8}"
    lines = [head, "-" * len(head)]
    from ..expr.simplify import simplified_text

    for i, r in enumerate(rows, 1):
        fn = simplified_text(r["fn"])  # for reading; the store keeps what was trained
        text = fn if len(fn) <= 50 else fn[:47] + "..."
        spread = f" ± {r['std']:.4f}" if not math.isnan(r["std"]) else ""
        value = f"{r['mean']:.4f}{spread} (n={r['runs']})"
        lines.append(f"{i:>3}  {text:<50}  {value:>32}  {r['runtime_s']:>7.1f}s")
    return "\n".join(lines)


def _figure(width=7.0, height=4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


#: artist ids of :func:`plot_best_so_far`'s figure, for callers and tests
GID_POINTS = "progress-points"       # one point per evaluated function
GID_FAILED = "progress-failed"       # evaluations without a value
GID_BEST_LINE = "progress-best"      # best so far
GID_BASELINE = "progress-baseline"   # reference lines (one per baseline)

#: colours and line styles of the baselines, in order
_BASELINE_COLORS = ("tab:red", "tab:green", "tab:purple", "tab:brown", "tab:olive")
_BASELINE_STYLES = ("--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1)))


def _running_best(values, lower_is_better=False):
    """``(best, improved)``: the best of ``values`` so far after each entry (NaN entries --
    failures -- never move it; NaN before the first value) and the indices where it
    improved."""
    best = np.full(len(values), np.nan)
    current, improved = math.nan, []
    for i, v in enumerate(values):
        if not math.isnan(v) and (math.isnan(current) or (v < current if lower_is_better
                                                          else v > current)):
            current = v
            improved.append(i)
        best[i] = current
    return best, improved


def best_so_far(results, metric="validation_accuracy"):
    """``(values, best, improvements)``: the metric per finished evaluation (NaN for
    failures), the running best, and ``[(index, value, fn)]`` where the best improved."""
    values = np.array([_metric_value(ev.record, metric) if ev.record is not None and
                       ev.record.ok else np.nan for ev in results])
    best, improved = _running_best(values, split_objective(metric)[1] == "min")
    return values, best, [(i, values[i], results[i].text) for i in improved]


def plot_best_so_far(values, path=None, *, texts=None, failed=None, lower_is_better=False,
                     baselines=None, start_size=None, annotate=6, title=None,
                     value_label="validation accuracy", low_percentile=0.0,
                     figsize=(6.0, 4.0)):
    """Best so far against evaluations (Fig. 4.4 and Fig. 6.7): every evaluation's value
    (points), the running best (a step line) and ``baselines`` (``{label: value}``,
    horizontal lines). Draws on a private Agg canvas, saves to ``path`` when given and
    returns the ``Figure``; artists carry the ``GID_*`` ids.

    ``values``: one per evaluation, in order; NaN or infinite: no value. ``failed``: which
    evaluations failed (default: those without a value); they are crosses on the lower
    edge, counted in the legend, and never move the best. ``texts``: each evaluation's
    function -- the last ``annotate`` improvements are numbered on the curve and spelled
    out in a panel beside the axes. ``start_size``: a dotted line after the start set.
    ``low_percentile``: the axis starts at that percentile of the values (a search's long
    tail of poor functions would flatten the curve) or below the lowest baseline.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no evaluations to plot")
    values = np.where(np.isfinite(values), values, np.nan)
    failed = np.isnan(values) if failed is None else np.asarray(failed, bool).ravel()
    best, improved = _running_best(values, lower_is_better)
    fig, ax = _figure(*figsize)
    if texts is not None:  # room for the panel of new bests on the right
        fig.subplots_adjust(left=0.08, right=0.62, bottom=0.13, top=0.88)
    n = np.arange(1, values.size + 1)
    ax.scatter(n[~failed], values[~failed], s=8, color="0.6", zorder=1, gid=GID_POINTS,
               label=f"evaluations ({int((~failed).sum())})")
    ax.step(n, best, where="post", color="tab:blue", linewidth=2, label="best so far",
            zorder=2, gid=GID_BEST_LINE)
    baselines = {str(k): float(v) for k, v in (baselines or {}).items()
                 if v is not None and math.isfinite(v)}
    for i, (label, value) in enumerate(baselines.items()):
        ax.axhline(value, color=_BASELINE_COLORS[i % len(_BASELINE_COLORS)],
                   linestyle=_BASELINE_STYLES[i % len(_BASELINE_STYLES)], linewidth=1,
                   zorder=0, gid=GID_BASELINE, label=label)
    finite = values[~np.isnan(values)]
    if finite.size or baselines:
        known = list(baselines.values())
        lo = min([np.percentile(finite, low_percentile)] + known if finite.size else known)
        hi = max(list(finite) + known)
        pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
        ax.set_ylim(lo - 2 * pad, hi + pad)
        floor = lo - pad
    else:
        low, high = ax.get_ylim()
        floor = low + 0.025 * (high - low)
    if failed.any():
        ax.scatter(n[failed], np.full(int(failed.sum()), floor), marker="x", s=14,
                   color="tab:red", zorder=3, gid=GID_FAILED,
                   label=f"failed ({int(failed.sum())})")
    if start_size:
        ax.axvline(float(start_size) + 0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0.5, values.size + 0.5)
    if texts is not None and annotate > 0:
        _number_improvements(fig, ax, [(i, values[i], texts[i]) for i in improved][-annotate:])
    ax.set_xlabel("functions evaluated")
    ax.set_ylabel(value_label)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small", frameon=True, framealpha=0.9)
    ax.set_title(title or f"search progress ({values.size} candidates)", fontsize=10)
    if texts is None:
        fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


def _number_improvements(fig, ax, shown):
    """Number each ``(index, value, text)`` on the curve, no two numbers overlapping, and
    list them in a panel right of the axes."""
    from ..expr.simplify import simplified_text

    lines = []
    renderer = fig.canvas.get_renderer()
    placed = []
    for k, (i, v, text) in enumerate(shown, 1):
        # the first offset whose box overlaps no number placed before (close improvements)
        for dx, dy in ((0, 5), (9, 5), (0, 15), (9, 15), (-9, 15), (0, 25), (9, 25)):
            note = ax.annotate(str(k), (i + 1, v), xytext=(dx, dy), textcoords="offset points",
                               ha="center", va="bottom", fontsize=7, color="tab:blue",
                               fontweight="bold")
            box = note.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            note.remove()
            note = None
        if note is None:  # every offset taken: keep the last one rather than drop a number
            note = ax.annotate(str(k), (i + 1, v), xytext=(0, 35), textcoords="offset points",
                               ha="center", va="bottom", fontsize=7, color="tab:blue",
                               fontweight="bold")
            box = note.get_window_extent(renderer)
        placed.append(box)
        text = simplified_text(text)
        short = text if len(text) <= 44 else text[:41] + "..."
        lines.append(f"{k}. {v:.4f} at #{i + 1}\n   {short}")
    if lines:
        fig.text(0.64, 0.88, "new bests\n\n" + "\n".join(lines), va="top", ha="left",
                 fontsize=7, family="monospace")


def plot_progress(results, path=None, metric="validation_accuracy", baseline=None,
                  annotate=6, baseline_label="ReLU", title=None):
    """Best-so-far vs the evaluations of a run (:func:`plot_best_so_far`). The last
    ``annotate`` improvements are numbered on the curve and spelled out in a panel beside
    the plot (labels on the curve overlap as soon as two improvements are close); failed
    candidates are drawn as crosses on the lower edge and counted in the legend; ``title``
    (e.g. the store and method) heads it."""
    values, _, _ = best_so_far(results, metric)
    failed = np.array([ev.record is None or not ev.record.ok for ev in results], bool)
    baselines = {} if baseline is None or math.isnan(baseline) else {
        f"{baseline_label} ({baseline:.4f})": baseline}
    return plot_best_so_far(values, path, texts=[ev.text for ev in results], failed=failed,
                            lower_is_better=split_objective(metric)[1] == "min",
                            baselines=baselines, annotate=annotate, title=title,
                            value_label=metric.replace("_", " "), low_percentile=10,
                            figsize=(10.0, 4.2))


def population_fitness(results, window, metric="validation_accuracy", threshold=-math.inf):
    """Per finished evaluation: quartiles of the ``window`` most recent valid values."""
    recent, rows = [], []
    for ev in results:
        if ev.record is not None and ev.record.ok:
            v = _metric_value(ev.record, metric)
            if not math.isnan(v) and v >= threshold:
                recent.append(v)
                recent = recent[-window:]
        rows.append(np.percentile(recent, [25, 50, 75, 100]) if recent else [np.nan] * 4)
    return np.array(rows)


def plot_population(results, window=64, path=None, metric="validation_accuracy",
                    threshold=-math.inf, title=None):
    """Quartiles and best of the ``window`` most recent valid functions after each
    evaluation (PANGAEA's population; for other methods a sliding window of the same
    size, and ``title`` should say so). The legend sits below the axes, off the band."""
    q = population_fitness(results, window, metric, threshold)
    fig, ax = _figure(height=4.6)
    n = np.arange(1, len(q) + 1)
    ax.fill_between(n, q[:, 0], q[:, 2], color="tab:green", alpha=0.25,
                    label="population 25-75%")
    ax.plot(n, q[:, 1], color="tab:green", linewidth=2, label="population median")
    ax.plot(n, q[:, 3], color="tab:blue", linewidth=1, label="population best")
    ax.set_xlabel("functions evaluated")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title or f"population: the {window} most recent valid functions",
                 fontsize="small")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize="small",
              frameon=False)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


def plot_top_shapes(rows, path=None, columns=3, metric="validation_accuracy"):
    """The top functions' shapes: blue at the initial parameters (every one 1), orange
    with the parameters drawn from U(0.5, 2) (the shapes training can reach), as the
    figure's legend says. Each panel is headed by its rank and ``metric`` (mean over its
    runs), then the function, wrapped between terms (never inside a name)."""
    from matplotlib.lines import Line2D

    from ..expr.simplify import simplified_text
    from ..plots import plot_activation

    rows = list(rows)
    if not rows:
        raise ValueError("no successful functions to plot")
    columns = min(columns, len(rows))
    lines = math.ceil(len(rows) / columns)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * columns, 3.2 * lines + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    name = split_objective(metric)[0].replace("_", " ")
    for i, row in enumerate(rows):
        ax = fig.add_subplot(lines, columns, i + 1)
        plot_activation(row["fn"], ax=ax, param_samples=20)
        text = textwrap.wrap(simplified_text(row["fn"]), 42, break_long_words=False,
                             break_on_hyphens=False)
        if len(text) > 2:
            text = text[:2]
            text[-1] += " ..."
        runs = f" (n={row['runs']})" if row.get("runs", 1) > 1 else ""
        ax.set_title("\n".join([f"#{i + 1}  {name} {row['mean']:.4f}{runs}", *text]),
                     fontsize=7)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend(handles=[Line2D([], [], color="tab:blue", linewidth=2.5,
                               label="parameters at their initial value 1"),
                        Line2D([], [], color="tab:orange", linewidth=0.8, alpha=0.6,
                               label="parameters drawn from U(0.5, 2)")],
               loc="lower center", ncol=2, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    if path is not None:
        fig.savefig(path)
    return fig


def write_report(store_path, out_dir=None, k=10, run="search", stream=None):
    """Top-k table (printed and returned) and PNGs next to the store (or in ``out_dir``)."""
    config, results = load_results(store_path, run)
    metric = _find(config, "metric") or "validation_accuracy"
    rows = top_functions(results, k, metric)
    out_dir = out_dir or os.path.splitext(store_path)[0] + "_report"
    os.makedirs(out_dir, exist_ok=True)
    baseline = None
    try:
        _, final = load_results(store_path, "final")
        relu = str(parse("relu(x)"))
        base_rows = [r for r in top_functions(final, 1000, metric) if r["fn"] == ORIGINAL]
        label = "original activation"
        if not base_rows:
            base_rows = [r for r in top_functions(final, 1000, metric) if r["fn"] == relu]
            label = "ReLU"
        baseline = base_rows[0]["mean"] if base_rows else None
    except Exception:  # noqa: BLE001 - a search without a final comparison has no baseline
        final = []
    paths = {"progress": os.path.join(out_dir, "progress.png"),
             "population": os.path.join(out_dir, "population.png"),
             "top_functions": os.path.join(out_dir, "top_functions.png")}
    method = (config or {}).get("algorithm") or "search"
    if isinstance(method, dict):  # the run's config: {"algorithm": {algorithm config}, ...}
        method = method.get("algorithm") or "search"
    plot_progress(results, paths["progress"], metric, baseline,
                  baseline_label=label if baseline is not None else "ReLU",
                  title=f"{method}: {os.path.basename(store_path)} ({len(results)} "
                        f"candidates)")
    window = int(_find(config, "population") or 64)
    kept = {"pangaea": "PANGAEA's population", "cafe-evolution": "about one CAFE generation"}
    population_title = (f"{method}: the {window} most recent valid functions ("
                        f"{kept.get(method, f'a sliding window; {method} keeps no population')})")
    threshold = _find(config, "threshold")
    plot_population(results, window, paths["population"], metric, title=population_title,
                    threshold=threshold if threshold is not None else -math.inf)
    shapes = [r for r in rows if r["fn"] != ORIGINAL]
    if shapes:
        plot_top_shapes(shapes[: min(6, len(shapes))], paths["top_functions"],
                        metric=metric)
    else:
        paths.pop("top_functions")
    text = [f"store: {store_path}  ({len(results)} finished evaluations)",
            format_top(rows, metric)]
    if final:
        text += ["", "final comparison (several seeds):",
                 format_top(top_functions(final, 1000, metric), metric)]
    text += ["", "plots: " + ", ".join(paths.values())]
    return "\n".join(text), paths


def _find(config, key):
    """The first value of ``key`` anywhere in a nested config dict."""
    if isinstance(config, dict):
        if key in config:
            return config[key]
        for value in config.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


__all__ = ["load_results", "top_functions", "format_top", "best_so_far", "plot_best_so_far",
           "plot_progress", "population_fitness", "plot_population", "plot_top_shapes",
           "write_report"]
