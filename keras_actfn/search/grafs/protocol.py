"""The GRAFS protocol end to end: several searches, then the found functions against the
baselines through the evaluation harness (what ``keras-actfn search grafs`` runs).

GRAFS §3: five searches with different seeds give up to five functions; each is trained
with the evaluation recipe next to ReLU, SiLU, GELU, ELU and LeakyReLU (Tables 1-3). The
ratio of a search's time to one evaluation run of the same model is the paper's overhead
measure (Tables 11-13).

Both stages run on the search engine (:mod:`.engine`): the searches are the run
``"search"`` of a :class:`~keras_actfn.search.engine.store.Store` (one journaled evaluation per
seed, :class:`~.engine.GrafsSeeds` + :class:`~.engine.GrafsSeedEvaluator`), the comparison
is the run ``"final"`` (:class:`~keras_actfn.search.pangaea.Rerank`, as for PANGAEA), so a
killed protocol resumes where it stopped and both stages run on any executor.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

#: the baselines of GRAFS Tables 1-3
BASELINES = ("relu(x)", "x*sigmoid(x)", "gelu(x)", "elu(x)", "leaky_relu(x)")

#: short model names accepted by the command line
MODEL_ALIASES = {"cnn": "mnist1d_cnn", "mlp": "mnist1d_mlp"}


def _original_text(targets):
    """``"relu(x)"`` for targets ``("relu",)``: the first target naming a registry
    operator, as function text (``None`` if none does)."""
    from ...expr import ops

    names = [targets] if isinstance(targets, str) else [] if callable(targets) \
        else list(targets or ())
    for name in names:
        try:
            return f"{ops.get(name).name}(x)"
        except (KeyError, TypeError, ValueError):
            continue
    return None


class _SeedLog:
    """``run_search`` progress callback: a line for each search that finishes (and, on a
    resume, one saying how many the store already holds)."""

    def __init__(self, store, log, seeds):
        self.store, self.log, self.seeds = store, log, seeds
        self.seen = None

    def __call__(self, counts, best):
        results = self.store.results()
        if self.seen is None:
            self.seen = len(results)
            if results:
                self.log(f"resuming: {len(results)} of {self.seeds} GRAFS searches are "
                         f"already in the store {self.store.path}")
            return
        for ev in results[self.seen:]:
            record = ev.record
            seed = ev.candidate.meta.get("seed")
            if record.ok:
                self.log(f"found: {record.fn}  ({record.runtime_s:.1f} s, seed {seed})")
            else:
                self.log(f"GRAFS search with seed {seed} failed ({record.reason}): "
                         f"{record.message}")
        self.seen = len(results)


def _open_store(store):
    """``(store, owned)``: a :class:`Store` for ``store`` (a Store, a path, or ``None`` for
    a temporary in-memory one) and whether this call must close it."""
    from ..engine.store import Store

    if isinstance(store, Store):
        return store, False
    return Store(":memory:" if store is None else store), True


def _executor(executor, workers, ray_address):
    """A context manager over the executor: a name is made (and closed after the run), an
    :class:`~keras_actfn.search.engine.executors.Executor` given is used and left open."""
    import contextlib

    from ..engine.executors import Executor
    from ..engine.executors import make_executor

    if isinstance(executor, Executor):
        return contextlib.nullcontext(executor)
    return make_executor(executor, workers, ray_address)


def run_grafs(task=None, model=None, epochs=None, warm_start_epochs=None, seeds=5,
              recipe=None, eval_seeds=3, baselines=BASELINES, batch_size=None,
              plot=None, log=print, preset="mnist1d_cnn", search_train=None, checkpoint=None,
              store=None, executor="local", workers=1, ray_address=None,
              eval_overrides=None, **search_options):
    """``seeds`` GRAFS searches, then every found function and every baseline trained
    ``eval_seeds`` times with ``recipe`` (``eval_seeds=0``: no evaluation). Returns a dict
    with ``searches`` (function, seconds, history per seed; a failed search is left out
    and listed in ``failed_searches``), ``table`` (rows: function, mean, std, n, kind),
    ``search_seconds``, ``evaluation_seconds``, ``overhead`` (mean search seconds / mean
    seconds of one ReLU evaluation run), ``settings`` (the :class:`GrafsSettings` used) and
    ``store`` (the journal's path).

    ``preset`` (a name of :data:`~.settings.PRESETS` or a :class:`GrafsSettings`; default
    ``"mnist1d_cnn"``: 10 epochs of the MNIST-1D CNN) gives the model, task, recipe and
    search settings; ``task`` (a name or a :class:`~keras_actfn.data.Task`), ``model`` (a
    registry name, an alias of :data:`MODEL_ALIASES`, or a picklable zero-argument builder
    of a Keras model), ``epochs`` (for an iteration-based preset: the number of
    ``eval_interval`` blocks), ``warm_start_epochs`` (iterations for an iteration-based
    preset), ``batch_size`` and ``recipe`` override it, and ``search_options`` override or
    extend the ``grafs_search`` arguments. ``eval_overrides``: recipe changes for the
    evaluation runs (``{"epochs": 2}``...; see :func:`~keras_actfn.train.evaluate_activation`).
    ``search_train``: search on a class-balanced subset of that many training examples.
    ``checkpoint``: a directory; search ``s`` saves its state in ``<checkpoint>/seed<s>`` after
    every epoch, and a rerun resumes each search where it stopped (finished ones return at
    once).

    The engine: the searches run through :func:`~keras_actfn.search.engine.driver.run_search` as
    the run ``"search"`` of ``store`` (a :class:`~keras_actfn.search.engine.store.Store` or a path;
    ``None``: a temporary in-memory store), one seed per worker (``executor="local"`` with
    ``workers > 1``: a process pool; ``"ray"``: a Ray cluster at ``ray_address``; or an
    executor object); the comparison is the run ``"final"`` of the same store. Called again
    with the same store, finished searches and finished evaluations are not repeated; other
    settings raise :class:`~keras_actfn.search.engine.store.StoreConfigError`."""
    from ...data import Task
    from ..engine.driver import run_search
    from .engine import (GrafsSeedEvaluator, GrafsSeeds, describe_model, load_search_task,
                         search_history)
    from .search import check_checkpoint_root, check_search_settings, checkpoint_lock
    from .settings import GrafsSettings, get_preset

    settings = preset if isinstance(preset, GrafsSettings) else get_preset(preset)
    builder = None if model is None or isinstance(model, str) else model
    changes = {"model": MODEL_ALIASES.get(model, model) if isinstance(model, str) else None,
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
    check_search_settings(**options)  # before anything is loaded, built or made
    model = builder if builder is not None else settings.model
    task_spec = task if isinstance(task, Task) else settings.task
    search_task = load_search_task(task_spec, search_train)  # also checks the name
    if "augment" not in search_options and options.get("augment") and len(
            search_task.input_shape) != 3:  # a preset's image augmentation on another task
        log(f"note: {settings.name}'s augmentation ({settings.augmentation}) is for images; "
            f"task {search_task.name!r} is not one, so the search data are not augmented")
        options.pop("augment")
    recipe = settings.recipe
    seeds = int(seeds)
    evaluator = GrafsSeedEvaluator(model, task_spec, options, search_train=search_train,
                                   checkpoint_root=checkpoint, verbose=True, log=log)
    original = _original_text(options.get("targets", ("relu",)))
    algorithm = GrafsSeeds(seeds, first_seed=0, original=original,
                           context={"preset": settings.name,
                                    "model": describe_model(model),
                                    "task": getattr(task_spec, "name", task_spec)})

    # everything that can be checked is, before the store or a folder is made; then one
    # process at a time uses the checkpoint root (each search also locks its seed folder)
    held = contextlib.ExitStack()
    if checkpoint is not None:
        check_checkpoint_root(checkpoint)  # a file, not a folder: said before making one
        held.enter_context(checkpoint_lock(checkpoint))
    try:
        if checkpoint is not None:
            check_checkpoint_root(checkpoint)  # every seed's state, read under the lock
        journal, owned = _open_store(store)
    except BaseException:
        held.close()
        raise
    try:
        with _executor(executor, workers, ray_address) as pool:
            run_search(algorithm, evaluator, journal, executor=pool, seed=algorithm.first_seed,
                       run_name="search", reuse=False,
                       progress=_SeedLog(journal, log, seeds))
        searches, failed = [], []
        for ev in sorted(journal.results(), key=lambda e: e.candidate.meta["seed"]):
            record, seed = ev.record, int(ev.candidate.meta["seed"])
            if record.ok:
                searches.append({"seed": seed, "function": record.fn,
                                 "seconds": record.runtime_s,
                                 "history": search_history(record)})
            else:
                failed.append({"seed": seed, "reason": record.reason,
                               "message": record.message})
        if not searches:
            raise RuntimeError(f"every GRAFS search failed; the first: {failed[0]['message']} "
                               f"(the store {journal.path} keeps failed searches: use a new "
                               f"store to run them again)" if failed
                               else "no GRAFS search finished")
        if plot is not None:
            plot_operator_weights(searches[0]["history"], plot)

        found = list(dict.fromkeys(s["function"] for s in searches))
        rows, eval_seconds = [], []
        if int(eval_seeds) > 0:
            with _executor(executor, workers, ray_address) as pool:
                rows, eval_seconds = _final_comparison(
                    journal, pool, found, baselines, task_spec, model, recipe,
                    int(eval_seeds), eval_overrides or {}, options.get("targets", ("relu",)),
                    log=log)
        path = journal.path
    finally:
        if owned:
            journal.close()
        held.close()
    search_s = float(np.mean([s["seconds"] for s in searches]))
    one_eval = float(np.mean(eval_seconds)) if eval_seconds else math.nan
    return {"searches": searches, "failed_searches": failed, "table": rows,
            "search_seconds": search_s, "evaluation_seconds": one_eval,
            "overhead": search_s / one_eval if one_eval and not math.isnan(one_eval)
            else math.nan, "settings": settings, "store": path}


class _LogStream:
    """A text stream whose lines go to ``log`` (the progress line of the comparison)."""

    def __init__(self, log):
        self.log = log

    def write(self, text):
        if text.strip():
            self.log(text.strip())

    def flush(self):
        pass


def _final_comparison(journal, executor, found, baselines, task_spec, model, recipe,
                      eval_seeds, overrides, targets, log=None):
    """The found functions and the baselines, ``eval_seeds`` runs each, as the run
    ``"final"`` of ``journal`` on ``executor``; returns ``(table rows, seconds of each ReLU
    run)``. A function found and also a baseline is evaluated once, as found."""
    from ...expr import parse
    from ..engine.driver import run_search
    from ..pangaea import Rerank
    from ..engine.evaluator import make_evaluator
    from .engine import SurgeryModel, _plain, describe_model, describe_task

    shown = {}  # canonical text -> (text shown in the table, kind)
    for kind, functions in (("found", found), ("baseline", list(baselines))):
        for fn in functions:
            shown.setdefault(str(parse(fn)), (fn, kind))
    eval_model = model if isinstance(model, str) else SurgeryModel(model, targets)
    evaluator = make_evaluator(task=task_spec, model=eval_model, recipe=recipe, **overrides)
    rerank = Rerank(list(shown), runs=eval_seeds, seed=0, metric="validation_accuracy",
                    context={"task": describe_task(task_spec),
                             "model": describe_model(eval_model), "recipe": recipe,
                             "overrides": _plain(overrides)})
    from ..runner import ProgressLine

    bar = None if log is None else ProgressLine(
        len(shown) * int(eval_seeds), "validation_accuracy", stream=_LogStream(log),
        every=10.0, label="final comparison")
    run_search(rerank, evaluator, journal, executor=executor, seed=0, run_name="final",
               progress=bar)
    records = {}
    for ev in journal.results():  # the run "final", selected by run_search
        records.setdefault(ev.text, []).append(ev.record)
    relu = str(parse("relu(x)"))
    rows, eval_seconds = [], []
    for canonical, (text, kind) in shown.items():
        runs = records.get(canonical, [])
        if canonical == relu:
            eval_seconds += [r.runtime_s for r in runs]
        values = [r.validation_accuracy for r in runs
                  if r.ok and r.validation_accuracy is not None]
        mean = float(np.mean(values)) if values else math.nan
        std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        rows.append({"function": text, "mean": mean, "std": std, "n": len(values),
                     "kind": kind})
    rows.sort(key=lambda r: -r["mean"] if not math.isnan(r["mean"]) else math.inf)
    return rows, eval_seconds


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


#: what each cell position computes, f(x) = b1(u2(b0(u0(x), u1(x))), u3(x))
_POSITION_ROLES = {"u0": "u0: unary on x (1st input of b0)",
                   "u1": "u1: unary on x (2nd input of b0)",
                   "u2": "u2: unary on b0's output", "u3": "u3: unary on x (2nd input of b1)",
                   "b0": "b0: binary of u0, u1", "b1": "b1: binary of u2, u3 (the output)"}


def plot_operator_weights(history, path=None, top=4):
    """Expected operator weights over epochs, one panel per cell position (titled with
    what the position computes in ``f(x) = b1(u2(b0(u0(x), u1(x))), u3(x))``). The ``top``
    operators of each position's last epoch get their own colour, marker and legend entry;
    the others are thin grey lines (counted in the legend); epochs are whole numbers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from ...expr import ops
    from .cell import POSITIONS, UNARY_POSITIONS

    epochs = [h["epoch"] for h in history]
    styles = [("tab:blue", "o"), ("tab:orange", "s"), ("tab:green", "^"), ("tab:red", "D"),
              ("tab:purple", "v"), ("tab:brown", "P"), ("tab:pink", "X"), ("tab:olive", "*")]
    fig = Figure(figsize=(13, 7), dpi=100)
    FigureCanvasAgg(fig)
    for p, position in enumerate(POSITIONS):
        ax = fig.add_subplot(2, 3, p + 1)
        names = ops.GRAFS_UNARY if position in UNARY_POSITIONS else ops.GRAFS_BINARY
        weights = np.array([np.asarray(h["weights"][p], dtype=float) for h in history])
        order = [int(k) for k in np.argsort(-weights[-1])]
        shown = order[:min(top, len(styles))]
        for k in order[len(shown):]:
            ax.plot(epochs, weights[:, k], color="0.75", linewidth=0.6, zorder=1)
        handles = []
        for (color, marker), k in zip(styles, shown):
            label = names[k] if k < len(names) else f"operator {k}"
            line, = ax.plot(epochs, weights[:, k], color=color, marker=marker, markersize=4,
                            linewidth=1.6, zorder=2, label=f"{label} ({weights[-1, k]:.2f})")
            handles.append(line)
        others = len(order) - len(shown)
        if others:
            handles.append(Line2D([], [], color="0.75", linewidth=0.6,
                                  label=f"{others} other operators"))
        ax.set_title(_POSITION_ROLES.get(position, position), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("expected weight", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(handles=handles, fontsize=7, frameon=True, framealpha=0.85,
                  loc="upper left")
    fig.suptitle("GRAFS operator weights per cell position (final weight in brackets)",
                 fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


__all__ = ["run_grafs", "format_table", "plot_operator_weights", "BASELINES", "MODEL_ALIASES"]
