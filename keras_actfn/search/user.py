"""``ActivationSearch``: find an activation function for *your* compiled Keras model.

The front door of the toolkit, shaped like keras-tuner's ``Tuner.search`` and ``model.fit``::

    search = ka.ActivationSearch(model, method="pangaea", objective="val_accuracy",
                                 budget=60, store="runs/mine.db")
    search.search(x_train, y_train, validation_data=(x_val, y_val), epochs=5, batch_size=64)
    search.results()            # every candidate, as records and a printable table
    search.best_function        # canonical text
    best = search.best_model()  # your model with it, AutoInit weights, compiled like yours

Data flow: the model travels as :class:`~keras_actfn.train.user_model.UserModel` (its
``.keras`` bytes and ``compile()`` settings), the data as a
:class:`~keras_actfn.data.sources.DataSource`; together they make a
:class:`~keras_actfn.train.user_model.UserEvaluator`, checked once against each other
before anything trains. The method is an ask/tell algorithm from
:data:`~keras_actfn.search.runner.ALGORITHMS` (or GRAFS); the engine
(:func:`~keras_actfn.search.engine.driver.run_search`) runs it on the executor and journals every
candidate in the store, so the same call on the same store resumes. The store's config
holds the model's and the data's fingerprints: another model, other data or other settings
are refused, naming what differs. At the end the best functions and the model's own
activation (:data:`~keras_actfn.train.user_model.ORIGINAL`) train ``final_seeds`` times each
(PANGAEA's reranking), run ``"final"`` of the same store.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..train.record import split_objective
from ..train.user_model import ORIGINAL, UserEvaluator, UserInputError, UserModel

__all__ = ["ActivationSearch", "METHODS", "SearchResults"]

#: method name -> what it is (every one runs on the engine)
METHODS = {
    "pangaea": "PANGAEA regularized evolution of computation graphs (ch. 4)",
    "pangaea-random": "PANGAEA's random-search baseline (§4.4.1)",
    "pangaea-nonparametric": "PANGAEA without learnable parameters",
    "cafe": "CAFE evolution of S_2 trees (ch. 3)",
    "cafe-random": "CAFE random search of S_2",
    "aquasurf": "AQuaSurF: FIM + output features, UMAP, KNR surrogate (ch. 6)",
    "grafs": "GRAFS gradient-based search with a DrNAS-relaxed cell",
}

_EXECUTORS = ("inprocess", "pool", "ray", "local")


class SearchResults(list):
    """The finished candidates of a search (list of
    :class:`~keras_actfn.search.engine.store.Evaluation`, completion order); ``str()`` is a
    table."""

    def __init__(self, evaluations, objective):
        objective = objective or "val_accuracy"
        super().__init__(evaluations)
        self.objective = objective

    @property
    def records(self):
        return [ev.record for ev in self]

    def __str__(self):
        name = split_objective(self.objective)[0]
        head = f"{'#':>4}  {name:>14}  {'status':<18}  {'runtime':>8}  function"
        lines = [head, "-" * (len(head) + 30)]
        for i, ev in enumerate(self, 1):
            rec = ev.record
            value = rec.metric_value(name)
            shown = "-" if value is None or rec.failed else f"{value:.4f}"
            status = "ok" if rec.ok else f"failed: {rec.reason}"
            if rec.info.get("reused_from"):
                status += " (reused)"
            # a GRAFS row is a search: its candidate is a seed, its record the function found
            from ..expr.simplify import simplified_text

            text = simplified_text(rec.fn or ev.text)  # for reading; stored as trained
            if ev.text != rec.fn:
                text = f"{text}  [{ev.text}]"
            lines.append(f"{i:>4}  {shown:>14}  {status:<18}  {rec.runtime_s:>7.1f}s  {text}")
        return "\n".join(lines)


class ActivationSearch:
    """Search an activation function for a user's compiled Keras model.

    Args:
        model: a compiled Sequential/Functional model, a zero-argument builder returning
            one, or a ``.keras`` file. Its ``compile()`` settings are the training recipe.
        method: one of :data:`METHODS`.
        objective: a metric Keras logs (``"val_accuracy"``, ``"val_loss"``, ``"val_auc"``);
            the direction is inferred as keras-tuner does, or given as ``"min:NAME"`` /
            ``"max:NAME"``. ``None``: ``val_accuracy`` when the model logs an accuracy,
            else ``val_loss`` (``accuracy``/``loss`` without validation data).
        budget: candidates evaluated (reused numerical twins included), or for GRAFS the
            number of independent searches when ``seeds`` is not given.
        store: the SQLite journal (default ``runs/<model name>_<method>.db``); the same call
            on the same store resumes.
        executor: ``"inprocess"`` (default), ``"pool"`` (``workers`` processes) or ``"ray"``
            (``ray_address``; ``workers``: evaluations in flight, None: what the cluster's
            free resources hold). Pool workers get the model and data once, as files
            beside the store; Ray workers get them once through Ray's object store (data
            read from folders or tfds: the path, which every node must see).
        ray_options: more :class:`~keras_actfn.search.engine.ray_executor.RayExecutor`
            arguments: ``cpus_per_task``, ``gpus_per_task`` (fractions allowed),
            ``max_retries``, ``data_dir``...
        targets: which activations to replace: ``None`` (every hidden one; the output
            layer's softmax/sigmoid never) or names such as ``("relu",)``.
        autoinit: initialize every candidate with AutoInit (``False``: the model's own
            initializers).
        final_top, final_seeds: the final comparison -- the best ``final_top`` functions
            and the model's own activation, ``final_seeds`` runs each (0: skip).
        loss, optimizer, metrics: compile an uncompiled model with these.
        recipe: train every candidate with this recipe's optimizer and learning-rate
            schedule (a name of :data:`~keras_actfn.train.RECIPES`, e.g. ``"quick"``)
            instead of the model's optimizer; the model's loss and metrics stay.
        **method_options: passed to the algorithm (``population=``, ``sample=`` for
            PANGAEA; ``regressor=``, ``features=`` for AQuaSurF; GRAFS settings...).
    """

    def __init__(self, model, method="pangaea", objective=None, budget=50,
                 store=None, *, seed=0, executor="inprocess", workers=None, ray_address=None,
                 ray_options=None,
                 targets=None, autoinit=True, param_shape="per-channel", final_top=3,
                 final_seeds=3, progress=True, loss=None, optimizer=None, metrics=None,
                 recipe=None, **method_options):
        if method not in METHODS:
            raise UserInputError(f"unknown method {method!r}; choose from "
                                 f"{', '.join(METHODS)}")
        if executor not in _EXECUTORS:
            raise UserInputError(f"executor must be one of inprocess, pool, ray; got "
                                 f"{executor!r}")
        if executor == "ray":
            _require_ray()
        if ray_options and executor != "ray":
            raise UserInputError(f"ray_options ({', '.join(sorted(ray_options))}) apply to "
                                 f"executor='ray'")
        self.ray_options = dict(ray_options or {})
        ray_workers = workers  # None on Ray: as many as the cluster holds
        workers = 1 if workers is None else workers
        for name, value, low in (("budget", budget, 1), ("workers", workers, 1),
                                 ("final_top", final_top, 1), ("final_seeds", final_seeds, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
                    value < low:
                raise UserInputError(f"{name} must be an integer >= {low}, got {value!r}")
        if objective is not None:
            split_objective(objective)  # a direction it cannot infer is an error now
        if loss is not None:
            model = _compiled(model, loss, optimizer, metrics)
        self.user_model = UserModel(model)
        self.method, self.objective, self.budget = method, objective, int(budget)
        self.seed, self.executor, self.workers = int(seed), executor, int(workers)
        self.ray_workers = ray_workers
        self.ray_address = ray_address
        self.targets, self.autoinit, self.param_shape = targets, bool(autoinit), param_shape
        self.final_top, self.final_seeds = int(final_top), int(final_seeds)
        self.progress, self.method_options = progress, dict(method_options)
        self.recipe = recipe
        if recipe is not None:
            from ..train import get_recipe

            try:
                get_recipe(recipe)
            except ValueError as err:
                raise UserInputError(str(err)) from None
        self.store = os.fspath(store) if store is not None else os.path.join(
            "runs", f"{_slug(self.user_model.name)}_{method}.db")
        self.evaluator = None
        self.summary = None
        self.comparison = []
        self._found = []  # GRAFS: the functions its searches found, seed order
        _check_options(method, self.method_options)

    # ------------------------------------------------------------------ running
    def search(self, x=None, y=None, *, validation_data=None, validation_split=None,
               test_data=None, epochs=1, batch_size=None, steps_per_epoch=None,
               validation_steps=None, verbose=0, data_dir=None):
        """Run (or resume) the search; arguments as ``model.fit``. ``x`` may also be a
        data path or name (see :func:`~keras_actfn.data.sources.resolve_data`);
        ``test_data`` joins the final comparison. Returns ``self``."""
        from ..data.sources import DataError, resolve_data

        for name, value in (("epochs", epochs), ("batch_size", batch_size),
                            ("steps_per_epoch", steps_per_epoch),
                            ("validation_steps", validation_steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(
                    value, (int, np.integer)) or value < 1):
                raise UserInputError(f"{name} must be a positive integer, got {value!r}")
        try:
            data = resolve_data(x, y, validation_data=validation_data,
                                validation_split=validation_split, test_data=test_data,
                                input_shape=self.user_model.input_shape, data_dir=data_dir)
        except DataError as err:
            raise UserInputError(str(err)) from None
        evaluator = UserEvaluator(self.user_model, data, epochs=epochs,
                                  batch_size=batch_size or 32, objective=self.objective,
                                  targets=self.targets, autoinit=self.autoinit,
                                  param_shape=self.param_shape, steps_per_epoch=steps_per_epoch,
                                  validation_steps=validation_steps, verbose=verbose,
                                  recipe=self.recipe)
        evaluator.check()
        self.objective = evaluator.objective  # chosen by check() when it was None
        if self.executor == "ray" and all(getattr(split, "kind", None) == "arrays"
                                          for split in data.splits().values()):
            pass  # arrays go to Ray's object store once, with the evaluator
        elif self.executor != "inprocess" and not (self.executor in ("pool", "local")
                                                   and self.workers == 1):
            where = os.path.splitext(os.path.abspath(self.store))[0] + "_data"
            evaluator = UserEvaluator(self.user_model.portable(where), data.portable(where),
                                      **_settings(evaluator))
        self.evaluator = evaluator
        if self.method == "grafs":
            self._run_grafs(evaluator)
        else:
            self._run_engine(evaluator)
        return self

    def _executor(self):
        from .engine.executors import make_executor

        if self.executor == "ray":
            return make_executor("ray", self.ray_workers, self.ray_address, **self.ray_options)
        workers = 1 if self.executor == "inprocess" else self.workers
        return make_executor("local", workers, self.ray_address)

    def _context(self):
        return {"model": self.user_model.name, "data": self.evaluator.data.name,
                "objective": self.objective}

    def _run_engine(self, evaluator):
        from .engine.driver import run_search
        from .runner import ProgressLine, make_algorithm
        from .engine.store import Store

        os.makedirs(os.path.dirname(os.path.abspath(self.store)), exist_ok=True)
        options = dict(self.method_options)
        if self.method == "aquasurf" and options.get("features", "both") != "outputs":
            from .aquasurf.pool import UserFimFeatures

            options["fim"] = UserFimFeatures(evaluator, batch=options.pop("fim_batch", 128))
        with Store(self.store) as journal:
            search_pool = self._executor()
            try:  # on Ray, AQuaSurF's FIM features are computed on the cluster too
                algo = make_algorithm(self.method, self.budget, self.seed, self._context(),
                                      store=journal, metric=self.objective,
                                      workers=search_pool if self.executor == "ray"
                                      else self.workers, **options)
            except BaseException:
                search_pool.close(cancel=True)
                raise
            bar = ProgressLine(self.budget, self.objective) if self.progress else None
            try:
                with search_pool as pool:
                    self.summary = run_search(algo, evaluator, journal, executor=pool,
                                              budget=self.budget, seed=self.seed,
                                              progress=bar, metric=self.objective)
            finally:
                if hasattr(algo, "close"):
                    algo.close()
                if bar is not None:
                    bar.close()
            top = [e.text for e in self.summary.best[:self.final_top]]
            self._final(journal, top, evaluator)

    def _final(self, journal, top, evaluator):
        from .engine.driver import run_search
        from .pangaea import Rerank
        from .runner import comparison_rows

        self.comparison = []
        if self.final_seeds <= 0 or not top:
            return
        final_eval = evaluator.with_test(evaluator.data.test is not None)
        rerank = Rerank([ORIGINAL] + [t for t in top if t != ORIGINAL], runs=self.final_seeds,
                        seed=1000 + self.seed, metric=self.objective, context=self._context())
        from .runner import ProgressLine

        bar = ProgressLine(len(rerank.functions) * self.final_seeds, self.objective,
                           label="final comparison") if self.progress else None
        with self._executor() as pool:
            run_search(rerank, final_eval, journal, executor=pool, seed=self.seed,
                       run_name="final", metric=self.objective, progress=bar)
        if bar is not None:
            bar.close()
        self.comparison = comparison_rows(rerank, ORIGINAL)

    def _run_grafs(self, evaluator):
        from .grafs.user import run_user_grafs

        self.summary, self._found, self.comparison = run_user_grafs(self, evaluator)

    # ------------------------------------------------------------------ results
    def _require(self):
        if self.summary is None:
            raise RuntimeError("no search has run yet: call .search(...) first")

    def results(self, run="search") -> SearchResults:
        """Every finished candidate of the run (``"search"`` or ``"final"``)."""
        from .engine.store import Store

        self._require()
        with Store(self.store) as journal:
            journal.select_run(run)
            return SearchResults(journal.results(), self.objective)

    @property
    def best_function(self) -> str:
        """The best function found: the top of the final comparison (the model's own
        activation left out), or of the search when there was no comparison."""
        self._require()
        for text, mean, *_ in self.comparison:
            if text != ORIGINAL and not math.isnan(mean):
                return text
        if self._found:
            return self._found[0]
        if not self.summary.best:
            raise RuntimeError("no candidate of the search trained successfully")
        return self.summary.best[0].text

    def best_model(self, seed=None):
        """The user's model with :attr:`best_function` at the searched sites, AutoInit
        weights (untrained), compiled like the original. Saves and loads as ``.keras``
        with no ``custom_objects``."""
        self._require()
        model, _ = self.evaluator.build(self.best_function,
                                        self.seed if seed is None else int(seed))
        return model

    def format_comparison(self) -> str:
        from .runner import format_comparison

        name = split_objective(self.objective)[0]
        rows = [(t if t != ORIGINAL else "original activation", *rest)
                for t, *rest in self.comparison]
        return format_comparison(rows, name)

    def plot(self, path="search_progress.png"):
        """Objective per candidate and best so far, the original activation's mean as a
        line; returns the path."""
        from .report import plot_progress

        self._require()
        baseline = next((m for t, m, *_ in self.comparison if t == ORIGINAL), None)
        results = self.results()
        plot_progress(results, path, self.objective, baseline,
                      baseline_label="original activation",
                      title=f"{self.method} on {self.user_model.name}: "
                            f"{os.path.basename(self.store)} ({len(results)} candidates)")
        return path

    def __repr__(self):
        return (f"ActivationSearch(model={self.user_model.name!r}, method={self.method!r}, "
                f"objective={self.objective!r}, budget={self.budget}, store={self.store!r})")


def _require_ray():
    """Fail at once, not after the checks and the data files, when Ray is missing."""
    from .engine.executors import ray_available

    if not ray_available():
        raise UserInputError("executor 'ray' needs Ray: pip install 'keras_actfn[ray]'")


def _check_options(method, options):
    """Refuse an option the method does not take, before anything is written."""
    import inspect

    from .runner import ALGORITHMS

    if method == "grafs":
        from .grafs.user import check_options

        check_options(options)
        return
    if method == "aquasurf":
        from .aquasurf.surrogate import AquasurfSearch

        known = set(inspect.signature(ALGORITHMS[method]).parameters) | set(
            inspect.signature(AquasurfSearch).parameters)
        known -= {"budget", "seed", "context", "options", "store", "workers", "fim",
                  "functions", "coords", "keys", "source", "metric"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UserInputError(f"method aquasurf does not take {', '.join(unknown)}; its "
                                 f"options: {', '.join(sorted(known))}")
        return
    try:  # the evolutionary algorithms are cheap to build: let them check their arguments
        ALGORITHMS[method](1, 0, {}, **options)
    except TypeError as err:
        raise UserInputError(f"method {method}: {err}") from None
    except ValueError as err:
        raise UserInputError(f"method {method}: {err}") from None


def _settings(evaluator):
    return {**{k: getattr(evaluator, k) for k in (
        "epochs", "batch_size", "objective", "targets", "autoinit", "param_shape",
        "steps_per_epoch", "validation_steps", "test", "verbose")},
        "recipe": evaluator.recipe_name}


def _compiled(model, loss, optimizer, metrics):
    from ..backend import keras

    if not isinstance(model, keras.Model) and callable(model):
        model = model()
    if not isinstance(model, keras.Model):
        raise UserInputError(f"loss= compiles a keras.Model; got {type(model).__name__}")
    model.compile(optimizer=optimizer or "adam", loss=loss, metrics=metrics or [])
    return model


def _slug(name):
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name)) or "model"
