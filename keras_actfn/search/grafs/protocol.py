"""The GRAFS protocol end to end: several searches, then the found functions against the
baselines through the evaluation harness (what ``keras-actfn search grafs`` runs).

GRAFS §3: five searches with different seeds give up to five functions; each is trained
with the evaluation recipe next to ReLU, SiLU, GELU, ELU and LeakyReLU (Tables 1-3). The
ratio of a search's time to one evaluation run of the same model is the paper's overhead
measure (Tables 11-13).
"""

from __future__ import annotations

import math

import numpy as np

#: the baselines of GRAFS Tables 1-3
BASELINES = ("relu(x)", "x*sigmoid(x)", "gelu(x)", "elu(x)", "leaky_relu(x)")

#: short model names accepted by the command line
MODEL_ALIASES = {"cnn": "mnist1d_cnn", "mlp": "mnist1d_mlp"}


def run_grafs(task=None, model=None, epochs=None, warm_start_epochs=None, seeds=5,
              recipe=None, eval_seeds=3, baselines=BASELINES, batch_size=None,
              plot=None, log=print, preset="mnist1d_cnn", search_train=None, checkpoint=None,
              **search_options):
    """``seeds`` GRAFS searches, then every found function and every baseline trained
    ``eval_seeds`` times with ``recipe`` (``eval_seeds=0``: no evaluation). Returns a dict
    with ``searches`` (function, seconds, history per seed), ``table`` (rows: function,
    mean, std, n, kind), ``overhead`` (mean search seconds / mean seconds of one ReLU
    evaluation run) and ``settings`` (the :class:`GrafsSettings` used).

    ``preset`` (a name of :data:`~.settings.PRESETS` or a :class:`GrafsSettings`; default
    ``"mnist1d_cnn"``: 10 epochs of the MNIST-1D CNN) gives the model, task, recipe and
    search settings; ``task``, ``model``, ``epochs`` (for an iteration-based preset: the
    number of ``eval_interval`` blocks), ``warm_start_epochs`` (iterations for an
    iteration-based preset), ``batch_size`` and ``recipe`` override it, and
    ``search_options`` override or extend the ``grafs_search`` arguments.
    ``search_train``: search on a class-balanced subset of that many training examples.
    ``checkpoint``: a directory; search ``s`` saves its state in ``<checkpoint>/seed<s>`` after
    every epoch, and a rerun resumes each search where it stopped (finished ones return at
    once)."""
    import os

    from ...data import load_task
    from ...models import build_model
    from ...train import evaluate_activation
    from .search import grafs_search
    from .settings import GrafsSettings, get_preset

    settings = preset if isinstance(preset, GrafsSettings) else get_preset(preset)
    changes = {"model": MODEL_ALIASES.get(model, model) if model else None,
               "task": task if isinstance(task, str) else None,
               "batch_size": batch_size, "recipe": recipe}
    if settings.iteration_based:
        if epochs is not None:
            changes["max_iters"] = int(epochs) * int(settings.eval_interval)
        changes["warm_start_iterations"] = warm_start_epochs
    else:
        changes["epochs"] = epochs
        changes["warm_start_epochs"] = warm_start_epochs
    settings = settings.replace(**changes)
    options = {**settings.kwargs(), **search_options}
    model = settings.model
    task_obj = task if task is not None and not isinstance(task, str) else load_task(
        settings.task)
    search_task = task_obj if search_train is None else task_obj.subset(train=int(search_train))
    if "augment" not in search_options and options.get("augment") and len(
            search_task.input_shape) != 3:  # a preset's image augmentation on another task
        log(f"note: {settings.name}'s augmentation ({settings.augmentation}) is for images; "
            f"task {search_task.name!r} is not one, so the search data are not augmented")
        options.pop("augment")
    recipe = settings.recipe
    searches = []
    for seed in range(int(seeds)):
        log(f"--- GRAFS search {seed + 1}/{seeds} (seed {seed}) ---")
        where = None if checkpoint is None else os.path.join(os.fspath(checkpoint),
                                                             f"seed{seed}")
        result = grafs_search(lambda: build_model(model, task=task_obj), search_task,
                              **{**options, "seed": seed, "log": log, "checkpoint": where})
        searches.append({"seed": seed, "function": result.function,
                         "seconds": result.seconds, "history": result.history})
        log(f"found: {result.function}  ({result.seconds:.1f} s)")
    if plot is not None and searches:
        plot_operator_weights(searches[0]["history"], plot)

    found = list(dict.fromkeys(s["function"] for s in searches))
    rows, eval_seconds = [], []
    groups = (("found", found), ("baseline", list(baselines))) if int(eval_seeds) > 0 else ()
    for kind, functions in groups:
        for fn in functions:
            values = []
            for s in range(int(eval_seeds)):
                record = evaluate_activation(fn, task=task_obj.name, model=model,
                                             recipe=recipe, seed=s)
                if fn == "relu(x)":
                    eval_seconds.append(record.runtime_s)
                if record.ok and record.validation_accuracy is not None:
                    values.append(record.validation_accuracy)
            mean = float(np.mean(values)) if values else math.nan
            std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
            rows.append({"function": fn, "mean": mean, "std": std, "n": len(values),
                         "kind": kind})
    rows.sort(key=lambda r: -r["mean"] if not math.isnan(r["mean"]) else math.inf)
    search_s = float(np.mean([s["seconds"] for s in searches])) if searches else math.nan
    one_eval = float(np.mean(eval_seconds)) if eval_seconds else math.nan
    return {"searches": searches, "table": rows, "search_seconds": search_s,
            "evaluation_seconds": one_eval, "overhead": search_s / one_eval
            if one_eval and not math.isnan(one_eval) else math.nan, "settings": settings}


def format_table(rows, metric="validation accuracy"):
    head = f"{'function':<52} {'kind':>8}  {metric + ' (mean ± std)':>30}"
    lines = [head, "-" * len(head)]
    for r in rows:
        text = r["function"] if len(r["function"]) <= 52 else r["function"][:49] + "..."
        value = "failed" if math.isnan(r["mean"]) else (
            f"{r['mean']:.4f} ± {r['std']:.4f} (n={r['n']})" if not math.isnan(r["std"])
            else f"{r['mean']:.4f} (n={r['n']})")
        lines.append(f"{text:<52} {r['kind']:>8}  {value:>30}")
    return "\n".join(lines)


def plot_operator_weights(history, path=None, top=4):
    """Expected operator weights over epochs, one panel per cell position; the ``top``
    operators of each position's last epoch are labelled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ...expr import ops
    from .cell import POSITIONS, UNARY_POSITIONS

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(12, 6), dpi=100)
    FigureCanvasAgg(fig)
    for p, position in enumerate(POSITIONS):
        ax = fig.add_subplot(2, 3, p + 1)
        names = ops.GRAFS_UNARY if position in UNARY_POSITIONS else ops.GRAFS_BINARY
        weights = np.array([np.asarray(h["weights"][p], dtype=float) for h in history])
        last = weights[-1]
        labelled = set(np.argsort(-last)[:top])
        for k in range(weights.shape[1]):
            ax.plot(epochs, weights[:, k], linewidth=1.6 if k in labelled else 0.6,
                    alpha=1.0 if k in labelled else 0.35,
                    label=names[k] if k in labelled and k < len(names) else None)
        ax.set_title(position, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("weight", fontsize=8)
        ax.legend(fontsize=6, frameon=False, loc="upper left")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


__all__ = ["run_grafs", "format_table", "plot_operator_weights", "BASELINES", "MODEL_ALIASES"]
