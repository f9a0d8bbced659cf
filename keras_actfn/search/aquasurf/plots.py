"""AQuaSurF figures (dissertation ch. 6): the surrogate embedding (Figure 6.4), a search's
progress (Figure 6.7) and a search's path over the space map (Figure 6.8).

Each function takes plain arrays, draws on a private Agg canvas (``Figure`` +
``FigureCanvasAgg``; no ``pyplot``, no global backend change), saves to ``path`` when one is
given and returns the ``Figure``. Artists carry ``gid`` labels (the ``GID_*`` constants) so
callers and tests can find them. The progress figure is the search report's best-so-far
plot (:func:`keras_actfn.search.report.plot_best_so_far`; its ``GID_*`` ids are the same).
"""

from __future__ import annotations

import os

import numpy as np

from ..report import GID_BASELINE, GID_BEST_LINE, GID_FAILED, GID_POINTS, plot_best_so_far

__all__ = ["plot_embedding", "plot_search_progress", "plot_space_map", "MISSING_COLOR",
           "GID_VALUED", "GID_MISSING", "GID_LABELS", "GID_POINTS", "GID_FAILED",
           "GID_BEST_LINE", "GID_BASELINE", "GID_SPACE", "GID_EVALUATED", "GID_BEST"]

#: colour of points without a value (failed or missing in the table)
MISSING_COLOR = "#b0b0b0"
GID_VALUED = "embedding-valued"      # points coloured by value
GID_MISSING = "embedding-missing"    # points without a value (grey)
GID_LABELS = "embedding-labels"      # markers of the named functions
GID_SPACE = "space-candidates"       # every candidate, light
GID_EVALUATED = "space-evaluated"    # the evaluated candidates, coloured
GID_BEST = "space-best"              # the best evaluated candidate


def _umap_axes(ax, title):
    """Axes of a map of the surrogate space: UMAP coordinates carry no units."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    if title:
        ax.set_title(title)


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    if path is not None:
        fig.savefig(os.fspath(path))
    return fig


def _coords(coords, name="coords"):
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {coords.shape}")
    return coords


def _values(values, n, name="values"):
    if values is None:
        return np.full(n, np.nan)
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.shape != (n,):
        raise ValueError(f"{name} has {values.size} entries for {n} points")
    return np.where(np.isfinite(values), values, np.nan)


def _norm(values, vmin, vmax):
    from matplotlib.colors import Normalize  # noqa: PLC0415

    finite = values[np.isfinite(values)]
    low = float(finite.min()) if vmin is None and finite.size else vmin
    high = float(finite.max()) if vmax is None and finite.size else vmax
    if low is None or high is None:
        low, high = 0.0, 1.0
    if high <= low:
        high = low + 1e-12
    return Normalize(vmin=low, vmax=high)


def plot_embedding(coords, values=None, path=None, *, labels=None, title=None,
                   value_label="Validation accuracy", cmap="viridis", vmin=None, vmax=None,
                   point_size=8.0, figsize=(6.0, 5.0)):
    """Figure 6.4: the 2-D surrogate embedding, one point per function, coloured by
    ``values`` (validation accuracy); points with a NaN value (failed or missing) are grey.

    Coloured points are drawn lowest value first, so the best ones end on top (the
    ``GID_VALUED`` collection's offsets are ``coords[valued][argsort(values[valued])]``).
    ``labels``: ``{name: row index}`` of functions to mark with a triangle and their name
    (the paper's six: ELU, -ELU, tanh, -tanh, |x|, -|x|); rows with NaN coordinates (not
    embedded) are not drawn.
    """
    coords = _coords(coords)
    n = coords.shape[0]
    values = _values(values, n)
    placed = np.isfinite(coords).all(axis=1)
    fig = _figure(figsize)
    ax = fig.add_subplot(1, 1, 1)
    missing = placed & np.isnan(values)
    if missing.any():
        ax.scatter(coords[missing, 0], coords[missing, 1], s=point_size, c=MISSING_COLOR,
                   linewidths=0, gid=GID_MISSING, label="failed / no value")
    valued = np.flatnonzero(placed & ~np.isnan(values))
    if valued.size:
        order = valued[np.argsort(values[valued], kind="stable")]
        points = ax.scatter(coords[order, 0], coords[order, 1], s=point_size,
                            c=values[order], cmap=cmap, norm=_norm(values, vmin, vmax),
                            linewidths=0, gid=GID_VALUED)
        fig.colorbar(points, ax=ax, label=value_label)
    for name, row in (labels or {}).items():
        row = int(row)
        if not 0 <= row < n:
            raise ValueError(f"label {name!r}: row {row} outside the {n} points")
        if not placed[row]:
            continue
        ax.scatter([coords[row, 0]], [coords[row, 1]], s=70, marker="^", facecolors="none",
                   edgecolors="red", linewidths=1.5, gid=GID_LABELS)
        ax.annotate(name, (coords[row, 0], coords[row, 1]), xytext=(4, 4),
                    textcoords="offset points", fontsize="small", color="red")
    _umap_axes(ax, title)
    if missing.any():
        ax.legend(loc="best", fontsize="small", markerscale=2)
    fig.tight_layout()
    return _save(fig, path)


def plot_search_progress(values, path=None, *, baselines=None, start_size=None, title=None,
                         value_label="Validation accuracy", figsize=(6.0, 4.0)):
    """Figure 6.7: the value of every evaluated function in evaluation order (points),
    the best so far (a step line), and ``baselines`` (``{name: value}``) as horizontal
    reference lines -- :func:`keras_actfn.search.report.plot_best_so_far` on plain arrays.

    Evaluations without a value (failed) are crosses at the bottom of the axis and do not
    move the best-so-far line. ``start_size``: the start set's size, marked with a vertical
    dotted line after it.
    """
    return plot_best_so_far(values, path, baselines=baselines, start_size=start_size,
                            title=title, value_label=value_label, figsize=figsize)


def plot_space_map(coords, evaluated, values=None, path=None, *, color_by="value",
                   title=None, value_label="Validation accuracy", cmap="viridis",
                   figsize=(6.0, 5.0)):
    """Figure 6.8: every candidate as a small light point, the ``evaluated`` rows (indices
    into ``coords``, in evaluation order) as larger points coloured by their ``values``
    (``color_by="value"``; NaN grey) or by evaluation order (``color_by="order"``), and the
    best evaluated one (highest value) marked with a star.

    The ``GID_EVALUATED`` collection's offsets are ``coords[evaluated]`` in evaluation
    order and its colour array is ``values`` (or ``1..len(evaluated)``); failed ones are in
    a separate grey collection (``GID_MISSING``)."""
    coords = _coords(coords)
    n = coords.shape[0]
    evaluated = np.asarray(evaluated, dtype=np.int64).ravel()
    if evaluated.size and (evaluated.min() < 0 or evaluated.max() >= n):
        raise ValueError(f"evaluated holds row indices outside 0..{n - 1}")
    values = _values(values, evaluated.size, "values")
    if color_by not in ("value", "order"):
        raise ValueError(f"color_by must be 'value' or 'order', got {color_by!r}")
    if not np.isfinite(coords[evaluated]).all():
        raise ValueError("every evaluated row needs finite coordinates")
    fig = _figure(figsize)
    ax = fig.add_subplot(1, 1, 1)
    placed = np.isfinite(coords).all(axis=1)
    ax.scatter(coords[placed, 0], coords[placed, 1], s=3, color="#c4c4c4", linewidths=0,
               gid=GID_SPACE, label="candidates", rasterized=placed.sum() > 5000)
    if color_by == "order":
        shown = np.ones(evaluated.size, dtype=bool)
        colours = np.arange(1, evaluated.size + 1, dtype=np.float64)
        label = "Evaluation order"
    else:
        shown = ~np.isnan(values)
        colours = values
        label = value_label
        failed = evaluated[~shown]
        if failed.size:
            ax.scatter(coords[failed, 0], coords[failed, 1], s=24, color=MISSING_COLOR,
                       edgecolors="black", linewidths=0.3, gid=GID_MISSING, label="failed")
    if shown.any():
        points = ax.scatter(coords[evaluated[shown], 0], coords[evaluated[shown], 1], s=24,
                            c=colours[shown], cmap=cmap,
                            norm=_norm(colours[shown], None, None), edgecolors="black",
                            linewidths=0.3, gid=GID_EVALUATED)
        fig.colorbar(points, ax=ax, label=label)
    if (~np.isnan(values)).any():
        best = evaluated[int(np.nanargmax(values))]
        ax.scatter([coords[best, 0]], [coords[best, 1]], s=220, marker="*", color="red",
                   edgecolors="black", linewidths=0.6, gid=GID_BEST, label="best", zorder=5)
    _umap_axes(ax, title)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return _save(fig, path)
