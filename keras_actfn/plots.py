"""Pictures of activation functions.

matplotlib is an optional extra (``pip install 'keras_actfn[plots]'``), so it is imported
inside the functions. Figures are drawn on a private Agg canvas (``Figure`` plus
``FigureCanvasAgg``): nothing here selects or changes the global matplotlib backend, and no
figure is registered with ``pyplot``, so calling these from a script, a notebook or a
headless server behaves the same and leaks no open figures.
"""

from __future__ import annotations

import textwrap

import numpy as np

from .expr import evaluate, parse

#: ``gid`` of the curve at the initial parameters (all 1)
GID_INITIAL = "activation-initial"
#: ``gid`` of each curve drawn at random parameters
GID_SAMPLE = "activation-sample"
#: ``gid`` of the horizontal and vertical lines through the origin
GID_ZERO = "zero-line"

_POINTS = 501
_TITLE_WIDTH = 60


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError("plotting needs matplotlib: pip install 'keras_actfn[plots]'") from err


def _finite_or_nan(y):
    y = np.asarray(y, dtype=np.float64)
    return np.where(np.isfinite(y), y, np.nan)


def plot_activation(fn, path=None, x_range=(-5, 5), param_samples=30, param_range=(0.5, 2.0),
                    seed=0, ax=None):
    """Draw an activation function; return the matplotlib ``Figure``.

    The function is drawn at its initial parameters (every slot 1) as a bold line. If it has
    learnable parameters, ``param_samples`` thin, semi-transparent curves show it with each
    parameter drawn independently from ``U(param_range)`` (seeded by ``seed``), which gives a
    feel for the family of shapes training can reach. The title is the pretty math form.

    Args:
        fn: activation-function text or an :class:`~keras_actfn.expr.Expr`.
        path: if given, the figure is saved there (PNG unless the suffix says otherwise).
        x_range: ``(low, high)`` of the plotted inputs.
        param_samples: number of random-parameter curves (ignored without parameters).
        param_range: ``(low, high)`` of the uniform parameter distribution.
        seed: seed of the parameter draws.
        ax: an existing matplotlib ``Axes`` to draw into (its figure is returned and, with
            ``path``, saved); by default a new 6x4-inch figure is made.

    Values that are not finite (overflow, 0/0) are left as gaps in the curves.
    """
    _require_matplotlib()
    expr = parse(fn)
    low, high = (float(v) for v in x_range)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"x_range must be two finite numbers, low < high; got {x_range!r}")
    p_low, p_high = (float(v) for v in param_range)
    if not (np.isfinite(p_low) and np.isfinite(p_high) and p_low <= p_high):
        raise ValueError(f"param_range must be two finite numbers, low <= high; "
                         f"got {param_range!r}")
    param_samples = int(param_samples)
    if param_samples < 0:
        raise ValueError(f"param_samples must be >= 0, got {param_samples}")

    if ax is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure

    x = np.linspace(low, high, _POINTS)
    names = expr.params
    ax.axhline(0.0, color="0.6", linewidth=0.8, zorder=1, gid=GID_ZERO)
    ax.axvline(0.0, color="0.6", linewidth=0.8, zorder=1, gid=GID_ZERO)

    if names and param_samples:
        rng = np.random.default_rng(seed)
        draws = rng.uniform(p_low, p_high, size=(param_samples, len(names)))
        for i, row in enumerate(draws):
            values = dict(zip(names, row))
            ax.plot(x, _finite_or_nan(evaluate(expr, x, values)), color="tab:orange",
                    linewidth=0.8, alpha=0.35, zorder=2, gid=GID_SAMPLE,
                    label=(f"parameters ~ U({p_low:g}, {p_high:g})" if i == 0 else None))

    initial = _finite_or_nan(evaluate(expr, x))
    label = "parameters = 1" if names else None
    ax.plot(x, initial, color="tab:blue", linewidth=2.5, zorder=3, gid=GID_INITIAL,
            label=label)

    ax.set_xlim(low, high)
    _set_ylim(ax, initial)
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    title = expr.pretty()
    ax.set_title("\n".join(textwrap.wrap(title, _TITLE_WIDTH)) or title)
    if names:
        ax.legend(loc="best", fontsize="small", frameon=False)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


def _set_ylim(ax, initial):
    """Fit the bold curve with room around it, widened for the sampled curves within reason.

    Autoscaling alone lets one sampled curve that explodes (``exp(beta*x)`` with beta = 2)
    flatten the picture; the y-range here is the initial curve's range, extended to the
    sampled curves only up to three times that span.
    """
    finite = initial[np.isfinite(initial)]
    if finite.size == 0:
        return
    lo, hi = float(finite.min()), float(finite.max())
    span = max(hi - lo, 1e-3 * max(abs(hi), abs(lo), 1.0), 1e-6)
    others = [line.get_ydata() for line in ax.lines if line.get_gid() == GID_SAMPLE]
    if others:
        ys = np.concatenate([np.asarray(y, dtype=float) for y in others])
        ys = ys[np.isfinite(ys)]
        if ys.size:
            lo = max(min(lo, float(ys.min())), lo - span)
            hi = min(max(hi, float(ys.max())), hi + span)
            span = hi - lo
    pad = 0.05 * span
    ax.set_ylim(lo - pad, hi + pad)


__all__ = ["plot_activation", "GID_INITIAL", "GID_SAMPLE", "GID_ZERO"]
