"""Run a named search end to end: what ``keras-actfn search`` and the scripts call.

:func:`run_named_search` builds the algorithm (:data:`ALGORITHMS`), an evaluator from a
task/model/recipe (:func:`make_evaluator`), an executor (in-process, local process pool,
Ray), runs :func:`~keras_actfn.search.engine.driver.run_search` on a store with a live progress
line, then re-evaluates the best functions next to ReLU over several seeds
(:class:`~keras_actfn.search.pangaea.Rerank`, stored as the run ``"final"`` of the same
store, so a finished search re-reports instantly and an interrupted one resumes).
"""

from __future__ import annotations

import inspect
import math
import os
import sys
import time

import numpy as np

from .cafe import CafeEvolution, CafeExhaustive, CafeRandom
from .pangaea import Pangaea, Rerank
from .engine.evaluator import make_evaluator
from .engine.executors import make_executor
from .spaces import CafeSpace


def _pangaea(budget, seed, context, **options):
    return Pangaea(budget=budget, seed=seed, context=context, **options)


def _pangaea_random(budget, seed, context, **options):
    return Pangaea.random_search(budget=budget, seed=seed, context=context, **options)


def _pangaea_nonparametric(budget, seed, context, **options):
    return Pangaea(budget=budget, seed=seed, context=context, parameterize=False, **options)


def _cafe(budget, seed, context, generations=None, population=50, newcomers=10, elite=5,
          **options):
    # the budget fixes the number of generations: N in the first, N - e in every other
    if generations is None:
        generations = max(1, 1 + (budget - population) // max(population - elite, 1))
    return CafeEvolution(population=population, newcomers=newcomers, elite=elite,
                         generations=generations, seed=seed, context=context, **options)


def _cafe_random(budget, seed, context, depth=2, **options):
    return CafeRandom(space=CafeSpace(depth), budget=budget, seed=seed, context=context,
                      **options)


def _cafe_exhaustive(budget, seed, context, depth=1, **options):
    return CafeExhaustive(space=CafeSpace(depth), stop=budget, seed=seed, context=context,
                          **options)


def _aquasurf(budget, seed, context, regressor="knr", start="new_task",
              space="binary_unary_unary", features="both", fim_initial=None, fim_limit=None,
              fim_batch=128, store=None, workers=1, fim=None, **options):
    """AQuaSurF (ch. 6) on the unique functions of an A.3/A.4.3 space.

    ``features``: the surrogate's features -- ``"both"`` (the paper: FIM eigenvalues of the
    search's own network at initialization plus outputs, UMAP-combined), ``"fim"`` or
    ``"outputs"``. FIM features are computed for the whole pool up front with ``workers``
    processes and cached in ``store``; functions with an invalid FIM are filtered out
    (§6.3.1). ``fim_initial=N``: parallel mode (A.4.1) -- the search starts once N
    functions have features and one extra process computes the rest while it runs.
    ``fim_limit``: at most this many functions in the pool (seeded order, start functions
    first). Random search (``regressor="random"``) uses no features and no filter, as in
    the paper. ``fim``: the FIM feature maker (default: :class:`FimFeatures` of the
    context's registry model and task; a user-model search passes
    :class:`~keras_actfn.search.aquasurf.pool.UserFimFeatures`)."""
    from .aquasurf.features import finite_outputs
    from .aquasurf.pool import CandidatePool, FimFeatures
    from .aquasurf.space import aquasurf_space, unique_functions
    from .aquasurf.surrogate import AQUASURF_START_FUNCTIONS, AquasurfSearch, find_functions

    unique = list(unique_functions(aquasurf_space(space)))
    texts, keys = [u.text for u in unique], [u.key for u in unique]
    outputs = finite_outputs(np.array([u.outputs for u in unique]))
    if regressor == "random":
        return AquasurfSearch(texts, np.zeros((len(texts), 1)), regressor=regressor,
                              start=start, budget=budget, seed=seed, keys=keys,
                              context={**context, "space": space}, **options)
    targets = {"new_task": list(AQUASURF_START_FUNCTIONS), "benchmark": ["relu(x)"]}.get(
        start, start if isinstance(start, (list, tuple)) else [])
    first = [i for i in find_functions(list(targets), texts, keys) if i is not None]
    if features == "outputs":
        fim = None
    elif fim is None:
        from ..train import get_recipe

        model = context.get("model") or get_recipe(context.get("recipe", "quick")).model
        fim = FimFeatures(model=model, task=context.get("task", "mnist1d"), batch=fim_batch)
    pool = CandidatePool(texts, outputs, features=features, fim=fim, store=store, first=first,
                         seed=seed, limit=fim_limit)
    background = fim_initial is not None and pool.uses_fim
    pool.compute(fim_initial if background else None, workers=workers)
    if pool.filtered():
        print(f"FIM filter (§6.3.1): {len(pool.filtered())} functions with invalid features "
              f"left out", file=sys.stderr)
    functions, coords = pool.embed()
    if background:
        pool.start_background(executor=workers if hasattr(workers, "map_chunks") else None)
    return AquasurfSearch(functions, coords, regressor=regressor, start=start, budget=budget,
                          seed=seed, source=pool if background else None,
                          context={**context, "space": space, **pool.describe()}, **options)


#: algorithm name -> factory(budget, seed, context, **options)
ALGORITHMS = {
    "pangaea": _pangaea,
    "pangaea-random": _pangaea_random,
    "pangaea-nonparametric": _pangaea_nonparametric,
    "cafe": _cafe,
    "cafe-random": _cafe_random,
    "cafe-exhaustive": _cafe_exhaustive,
    "aquasurf": _aquasurf,
}


def make_algorithm(name, budget, seed=0, context=None, *, store=None, workers=1, **options):
    """Build a named search. ``store`` and ``workers`` reach the factories that take them
    (AQuaSurF caches FIM features in the store and computes them with the workers)."""
    try:
        factory = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown search {name!r}; available: {sorted(ALGORITHMS)}") from None
    accepted = inspect.signature(factory).parameters
    extra = {key: value for key, value in (("store", store), ("workers", workers))
             if key in accepted}
    return factory(int(budget), int(seed), dict(context or {}), **extra, **options)


class ProgressLine:
    """One status line, rewritten in place on a terminal (a line per update otherwise):
    evaluated / budget, failed, best so far and its formula, elapsed time."""

    def __init__(self, budget, metric="validation_accuracy", stream=None, every=1.0,
                 label=""):
        self.budget, self.metric, self.label = budget, metric, label
        self.stream = stream or sys.stderr
        self.every = every
        self.start = time.perf_counter()
        self.last = -math.inf
        self.tty = getattr(self.stream, "isatty", lambda: False)()

    def __call__(self, counts, best):
        now = time.perf_counter()
        finished = counts.get("finished", 0)
        if now - self.last < self.every and finished < self.budget:
            return
        self.last = now
        best_text = "-"
        if best is not None and best.ok:
            value = best.fitness(self.metric)
            from ..expr.simplify import simplified_text

            best_text = f"{abs(value):.4f}  {simplified_text(best.fn)}"
        head = f"{self.label} " if self.label else ""
        remaining = ""
        if 0 < finished < self.budget:
            left = (now - self.start) / finished * (self.budget - finished)
            remaining = f", ~{left:.0f} s left"
        line = (f"{head}[{finished}/{self.budget}] evaluated {counts.get('evaluated', 0)}, "
                f"failed {counts.get('failed', 0)}, reused {counts.get('reused', 0)} | "
                f"best {best_text} | {now - self.start:.0f} s{remaining}")
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(160))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def run_named_search(algorithm="pangaea", task="mnist1d", recipe="quick", model=None,
                     budget=100, workers=None, store="runs/search.db", executor="local",
                     ray_address=None, seed=0, final_seeds=3, final_top=3,
                     baseline="relu(x)", progress=True, algorithm_options=None,
                     final_recipe=None, final_overrides=None, final_test=False,
                     ray_options=None, **recipe_overrides):
    """Search, then compare the best ``final_top`` functions with ``baseline`` over
    ``final_seeds`` seeds (with ``final_recipe``, e.g. the full 200-epoch schedule, when
    given: the reranking of §4.1.2). Returns ``(summary, comparison rows)``.

    ``workers``: local processes (None: 1), or with ``executor="ray"`` the evaluations in
    flight (None: what the cluster's free resources hold); ``ray_options``: more
    :class:`~keras_actfn.search.engine.ray_executor.RayExecutor` arguments (``cpus_per_task``,
    ``gpus_per_task``, ``max_retries``, ``data_dir``...). On Ray, AQuaSurF's FIM features
    are computed on the cluster too."""
    from .engine.driver import run_search
    from .engine.store import Store

    evaluator = make_evaluator(task=task, model=model, recipe=recipe, **recipe_overrides)
    final_evaluator = evaluator if final_recipe is None and not final_test else \
        make_evaluator(task=task, model=model, recipe=final_recipe or recipe, test=final_test,
                       **(final_overrides or recipe_overrides))
    context = {"task": task, "model": model, "recipe": recipe,
               "overrides": {k: recipe_overrides[k] for k in sorted(recipe_overrides)}}
    directory = os.path.dirname(os.path.abspath(store))
    os.makedirs(directory, exist_ok=True)
    ray_options = dict(ray_options or {})
    data_dir = (recipe_overrides.get("task_options") or {}).get("data_dir")
    if executor == "ray" and data_dir is not None:
        ray_options.setdefault("data_dir", data_dir)  # checked on the first worker
    with Store(store) as journal:
        search_pool = make_executor(executor, workers, ray_address, **ray_options)
        try:
            algo = make_algorithm(algorithm, budget, seed, context, store=journal,
                                  workers=search_pool if executor == "ray" else workers or 1,
                                  **(algorithm_options or {}))
        except BaseException:
            search_pool.close(cancel=True)
            raise
        bar = ProgressLine(budget, algo.metric) if progress else None
        # a caller-given executor is not closed by run_search: the with-blocks release
        # each run's workers (process pool, Ray tasks) when it ends
        try:
            with search_pool as pool:
                summary = run_search(algo, evaluator, journal, executor=pool, budget=budget,
                                     seed=seed, progress=bar)
        finally:
            if hasattr(algo, "close"):
                algo.close()
        if bar is not None:
            bar.close()
        rows = []
        if final_seeds > 0:
            top = [e.text for e in summary.best[:final_top]]
            functions = [baseline] + [t for t in top if t != baseline]
            final = Rerank(functions, runs=final_seeds, seed=1000 + seed, metric=algo.metric,
                           context=context)
            final_bar = ProgressLine(len(functions) * final_seeds, algo.metric,
                                     label="final comparison") if progress else None
            with make_executor(executor, workers, ray_address, **ray_options) as pool:
                run_search(final, final_evaluator, journal, executor=pool, seed=seed,
                           run_name="final", progress=final_bar)
            if final_bar is not None:
                final_bar.close()
            rows = comparison_rows(final, baseline)
    return summary, rows


def comparison_rows(rerank: Rerank, baseline: str):
    """``[(text, mean, std, n, is_baseline)]`` best first, failures as NaN."""
    from ..expr import parse
    from ..train.user_model import ORIGINAL

    base = baseline if baseline == ORIGINAL else str(parse(baseline))
    rows = []
    for text, _, values in rerank.ranking():
        vals = np.array([abs(v) if np.isfinite(v) else np.nan for v in values])
        ok = vals[np.isfinite(vals)]
        mean = float(ok.mean()) if ok.size else math.nan
        std = float(ok.std(ddof=1)) if ok.size > 1 else math.nan
        rows.append((text, mean, std, int(ok.size), text == base))
    return rows


def format_comparison(rows, metric="validation_accuracy"):
    head = f"{'function':<48}  {metric:>22}  {'runs':>4}"
    lines = [head, "-" * len(head)]
    from ..expr.simplify import simplified_text

    for text, mean, std, n, is_base in rows:
        text = simplified_text(text)  # for reading; the store keeps what was trained
        shown = text if len(text) <= 46 else text[:43] + "..."
        tag = " (baseline)" if is_base else ""
        value = "failed" if math.isnan(mean) else (
            f"{mean:.4f} ± {std:.4f}" if not math.isnan(std) else f"{mean:.4f}")
        lines.append(f"{shown + tag:<48}  {value:>22}  {n:>4}")
    return "\n".join(lines)


def experiment_main(argv=None, **settings):
    """Command line of the ``scripts/`` experiments: the paper's settings by default,
    ``--smoke`` for a minute-long run on mock data (CI), everything overridable (arguments
    of :func:`_experiment`). A user's mistake (data not on this machine, a store of another
    search, a bad value) is one line on stderr and exit status 2; a bug of ours keeps its
    traceback."""
    from ..errors import user_error_message

    try:
        return _experiment(argv, **settings)
    except (ValueError, TypeError, RuntimeError, OSError) as err:
        text = user_error_message(err)
        if text is None and isinstance(err, (ValueError, TypeError)):
            text = " ".join(str(err).split())
        if text is None:
            raise
        print(f"{os.path.basename(sys.argv[0] or 'experiment')}: error: {text}",
              file=sys.stderr)
        return 2


def _experiment(argv=None, *, description, algorithm, recipe, final_recipe, task=None,
                budget=1000, algorithm_options=None):
    import argparse
    import contextlib

    from ..train import get_recipe

    task = task or get_recipe(recipe).task
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--store", default=f"runs/{algorithm}_{get_recipe(recipe).model}_"
                                           f"{task}.db")
    parser.add_argument("--budget", type=int, default=budget)
    parser.add_argument("--workers", type=int, default=None,
                        help="local processes (default 1), or Ray evaluations in flight "
                             "(default: what the cluster's free resources hold)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--cpus-per-task", type=float, default=None,
                        help="Ray: CPUs per evaluation (default 1; also its TensorFlow "
                             "threads)")
    parser.add_argument("--gpus-per-task", type=float, default=None,
                        help="Ray: GPUs per evaluation, fractions allowed (default 1 when "
                             "the cluster has GPUs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data_dir")
    parser.add_argument("--final-seeds", type=int, default=2,
                        help="full-schedule runs per top function (the paper: 2)")
    parser.add_argument("--final-top", type=int, default=10,
                        help="functions reranked (the paper: top 10, top 3 reported)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the task, model, recipes and search settings, then stop")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run on tfds mock data: 1 epoch on 256 images, 2 candidates, "
                             "WRNs at 1/8 width")
    args = parser.parse_args(argv)
    ray_options = {key: value for key, value in (("cpus_per_task", args.cpus_per_task),
                                                 ("gpus_per_task", args.gpus_per_task))
                   if value is not None}
    if ray_options and args.executor != "ray":
        parser.error("--cpus-per-task and --gpus-per-task apply to --executor ray")
    overrides, final_overrides = {}, None
    if args.data_dir:
        overrides["task_options"] = {"data_dir": args.data_dir}
    mock = contextlib.nullcontext()
    if args.smoke:
        import tensorflow_datasets as tfds

        overrides.update(epochs=1, subset={"train": 256})
        from ..train import WIDTH_ARGUMENTS

        if get_recipe(recipe).model in WIDTH_ARGUMENTS:
            overrides["width"] = 0.125
        overrides["task_options"] = {**overrides.get("task_options", {}),
                                     "validation_size": 0.1}
        final_overrides = overrides
        args.budget, args.final_top, args.final_seeds = 2, 1, 1
        mock = tfds.testing.mock_data(num_examples=2000)
    with mock:
        if args.dry_run:
            context = {"task": task, "recipe": recipe}
            algo = make_algorithm(algorithm, args.budget, args.seed, context,
                                  **(algorithm_options or {}))
            for name, extra in ((recipe, overrides), (final_recipe, final_overrides or
                                                      overrides)):
                make_evaluator(task=task, recipe=name, **extra)
            print(f"ok: {algorithm} ({algo.config()['algorithm']}), task {task}, recipes "
                  f"{recipe} / {final_recipe}, budget {args.budget}")
            return 0
        summary, rows = run_named_search(
            algorithm, task=task, recipe=recipe, budget=args.budget, workers=args.workers,
            store=args.store, executor=args.executor, ray_address=args.ray_address,
            seed=args.seed, final_seeds=args.final_seeds, final_top=args.final_top,
            algorithm_options=algorithm_options, final_recipe=final_recipe,
            final_overrides=final_overrides, ray_options=ray_options, **overrides)
    print(summary)
    print()
    print(format_comparison(rows))
    return 0


__all__ = ["experiment_main", "ALGORITHMS", "make_algorithm", "run_named_search", "comparison_rows", "format_comparison", "ProgressLine"]
