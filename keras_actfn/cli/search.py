"""``keras-actfn search METHOD``: a journaled, resumable search (PANGAEA, CAFE, AQuaSurF,
GRAFS) of a zoo model or the user's own model file, and its flags, per method."""

from __future__ import annotations

import argparse
import os

from .common import (EXIT_FAILURE, EXIT_OK, PROG, UsageError, command, non_negative_float,
                     non_negative_int, open_fraction, positive_int, seed_int, unit_interval)



#: the methods of `search`, with the flags only they take (every other flag is common)
SEARCH_METHODS = {
    "pangaea": "PANGAEA: regularized evolution of computation graphs (ch. 4)",
    "pangaea-random": "PANGAEA's random-search baseline (each candidate mutates the last)",
    "pangaea-nonparametric": "PANGAEA without learnable parameters",
    "cafe": "CAFE: evolution of S_2 trees (ch. 3)",
    "cafe-random": "CAFE: random search of S_2",
    "cafe-exhaustive": "CAFE: every function of S_1",
    "aquasurf": "AQuaSurF: FIM + output features, UMAP, KNR surrogate (ch. 6)",
    "grafs": "GRAFS: gradient-based search with a DrNAS-relaxed cell",
}


def _common_search_arguments(p, method):
    p.add_argument("--model", default=None,
                   help="a saved Keras model (.keras, compiled: its compile() settings are "
                        "the training recipe) or a zoo model name (default: the recipe's)")
    p.add_argument("--data", default=None, metavar="DATA",
                   help="with a model file: an .npz (x_train y_train [x_val y_val x_test "
                        "y_test]), a folder of images in class sub-folders, a saved "
                        "tf.data folder, tfds:NAME or a task name")
    p.add_argument("--task", default=None, help="zoo search: task name (default: the "
                                                "recipe's)")
    p.add_argument("--recipe", default=None,
                   help="training recipe of every candidate (zoo search: default quick, "
                        "MNIST-1D; model file: its optimizer and schedule replace yours)")
    if method != "grafs":
        p.add_argument("--budget", type=positive_int, default=100, metavar="N",
                       help="candidates to evaluate (PANGAEA's C; default 100)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="W",
                   help="evaluations in parallel: W TensorFlow processes (default 1; one "
                        "GPU each when there are GPUs), or with --executor ray at most W "
                        "evaluations in flight (default: as many as the cluster's free "
                        "resources hold, followed as nodes join and leave)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where evaluations run: local (this process, or --workers "
                        "processes) or ray (a Ray cluster; pip install "
                        "'keras_actfn[ray]'; see docs/cluster.md)")
    _ray_arguments(p)
    p.add_argument("--store", default=None, metavar="PATH",
                   help="SQLite journal (default runs/<method>_<task or model>.db); the "
                        "same command on the same store resumes the search")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed of the search's random choices and of every candidate's "
                        "training (default 0)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs per candidate (zoo: scales the recipe's; model file: "
                        "default 1)")
    p.add_argument("--final-seeds", type=non_negative_int, default=3, metavar="N",
                   help="train the top functions and the baseline N times each at the end "
                        "(0: skip; default 3)")
    p.add_argument("--final-top", type=positive_int, default=3, metavar="K",
                   help="how many of the best functions the final comparison trains "
                        "(default 3)")
    p.add_argument("--objective", default=None, metavar="METRIC",
                   help="model file: the metric to optimize, any name Keras logs "
                        "(default val_accuracy if logged, else val_loss; 'min:NAME'/"
                        "'max:NAME' to give the direction)")
    p.add_argument("--validation-split", type=open_fraction, default=None, metavar="F",
                   help="model file: hold out this fraction of the training data when the "
                        "data has no validation split (default 0.1)")
    p.add_argument("--out", default=None, metavar="FILE.keras",
                   help="model file: save the model with the best function (AutoInit "
                        "weights, compiled like yours) here")
    if method != "grafs":
        p.add_argument("--batch-size", type=positive_int, default=None, metavar="B",
                       help="model file: batch size (default 32)")
        p.add_argument("--targets", default=None, metavar="A[,B]",
                       help="model file: activations to replace (default: every hidden "
                            "one; the output layer's never)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")


def _ray_arguments(p):
    """The --executor ray flags (docs/cluster.md)."""
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="the Ray cluster: auto (the driver runs on the cluster, e.g. as a "
                        "Ray Job), HOST:6379, or ray://HOST:10001 (Ray Client); default: "
                        "a Ray started on this machine")
    p.add_argument("--cpus-per-task", type=non_negative_float, default=None, metavar="C",
                   help="Ray: CPUs each evaluation holds, fractions allowed (default 1); "
                        "also its TensorFlow intra/inter-op threads (rounded up)")
    p.add_argument("--gpus-per-task", type=non_negative_float, default=None, metavar="G",
                   help="Ray: GPUs each evaluation holds, fractions allowed (0.5: two per "
                        "GPU, memory growth on; default 1 when the cluster has GPUs, else 0)")
    p.add_argument("--max-retries", type=non_negative_int, default=None, metavar="N",
                   help="Ray: re-runs of a candidate whose worker died (default 1); a "
                        "candidate's own failure is never re-run")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="tensorflow-datasets folder (with --executor ray every node must "
                        "read it at this path; checked on the first worker)")


def _ray_options(args) -> dict:
    """RayExecutor arguments from the flags; a Ray flag without --executor ray, or a
    resource Ray refuses, is a usage error naming the flag."""
    from ..search.engine.ray_executor import _resource

    given = {flag: value for flag, value in (
        ("--cpus-per-task", args.cpus_per_task), ("--gpus-per-task", args.gpus_per_task),
        ("--max-retries", args.max_retries)) if value is not None}
    if args.executor != "ray":
        if given or args.ray_address is not None:
            flags = sorted(given) + (["--ray-address"] if args.ray_address else [])
            raise UsageError(f"{', '.join(flags)} apply to --executor ray")
        return {}
    options = {}
    for flag, name in (("--cpus-per-task", "cpus_per_task"),
                       ("--gpus-per-task", "gpus_per_task")):
        if flag in given:
            try:
                options[name] = _resource(flag, given[flag])
            except ValueError as err:
                raise UsageError(str(err)) from None
    if "--max-retries" in given:
        options["max_retries"] = given["--max-retries"]
    if args.data_dir is not None:
        options["data_dir"] = args.data_dir
    return options


def _method_arguments(p, method):
    if method in ("pangaea", "pangaea-nonparametric"):
        p.add_argument("--population", type=positive_int, default=None, help="PANGAEA P")
        p.add_argument("--sample", type=positive_int, default=None, help="PANGAEA S")
        p.add_argument("--threshold", type=unit_interval, default=None,
                       help="PANGAEA V (0.2 = 20%%)")
    elif method == "cafe":
        p.add_argument("--population", type=positive_int, default=None, help="CAFE N")
        p.add_argument("--newcomers", type=non_negative_int, default=None,
                       help="CAFE m: random newcomers per generation (default 10)")
        p.add_argument("--elite", type=non_negative_int, default=None,
                       help="CAFE e: best kept unchanged per generation (default 5)")
    elif method == "aquasurf":
        p.add_argument("--regressor", choices=("knr", "rfr", "svr", "random"), default=None,
                       help="the surrogate regressor (default knr; random: random search)")
        p.add_argument("--features", choices=("both", "fim", "outputs"), default=None,
                       help="surrogate features (default both: FIM eigenvalues + outputs)")
        p.add_argument("--space", default=None,
                       help="binary_unary_unary (Table A.3, default) or four_node")
        p.add_argument("--start", choices=("new_task", "benchmark"), default=None,
                       help="start from the eight baselines (default) or ReLU + 7 random")
        p.add_argument("--fim-initial", type=positive_int, default=None, metavar="N",
                       help="parallel mode (A.4.1): start once N functions have FIM "
                            "features; one extra process computes the rest during the "
                            "search")
        p.add_argument("--fim-limit", type=positive_int, default=None, metavar="N",
                       help="at most N functions in the pool (the paper: 5,000)")
    elif method == "grafs":
        p.add_argument("--seeds", type=positive_int, default=5, metavar="N",
                       help="independent searches (the paper: 5), journaled one by one")
        p.add_argument("--warm-start", type=non_negative_int, default=None, metavar="E0",
                       help="warm-start epochs, iterations for an iteration-based preset "
                            "(default: the preset's; shrinking starts at 2*E0)")
        p.add_argument("--preset", default=None, metavar="NAME",
                       help="named search settings (GRAFS Tables 6, 7, 9 or the quick "
                            "default mnist1d_cnn); the other flags override it")
        p.add_argument("--list-presets", action="store_true",
                       help="print the presets and their sources, then exit")
        p.add_argument("--batch-size", type=positive_int, default=None, metavar="B",
                       help="micro-batch size")
        p.add_argument("--accumulation", type=positive_int, default=None, metavar="K",
                       help="gradient accumulation steps (one update per K micro-batches)")
        p.add_argument("--max-iters", type=positive_int, default=None, metavar="N",
                       help="iterations of an iteration-based preset (Table 9)")
        p.add_argument("--eval-interval", type=positive_int, default=None, metavar="N",
                       help="iterations per record of an iteration-based preset")
        p.add_argument("--shrink-start", type=positive_int, default=None, metavar="S",
                       help="first epoch (iteration-based preset: iteration) with drops")
        p.add_argument("--subset", type=positive_int, default=None, metavar="N",
                       help="search on N training examples (class-balanced; smoke runs)")
        p.add_argument("--final-epochs", type=positive_int, default=None, metavar="E",
                       help="epochs of each final-comparison run (default: the preset "
                            "recipe's; smoke runs)")
        p.add_argument("--targets", default=None, metavar="A[,B]",
                       help="activations the search cells replace (default: the preset's; "
                            "model file: every hidden one)")
        p.add_argument("--plot", default=None, metavar="PNG",
                       help="operator weights over epochs of the first search")
        p.add_argument("--checkpoint", default=None, metavar="DIR",
                       help="save each search after every epoch in DIR/seed<S> (default: "
                            "beside the store); a rerun resumes")


def _search_arguments(p):
    sub = p.add_subparsers(dest="algorithm", metavar="METHOD",
                           help="; ".join(f"{k}" for k in SEARCH_METHODS))
    sub.required = True
    for method, text in SEARCH_METHODS.items():
        m = sub.add_parser(method, help=text, description=text + ". Flags a method does "
                           "not use are errors.")
        _common_search_arguments(m, method)
        _method_arguments(m, method)


def _unknown_flags(args, flags):
    """The error for flags the method does not take names the method, and for each flag
    the methods that do take it."""
    hints = []
    for flag in flags:
        owners = [m for m in SEARCH_METHODS if m != args.algorithm
                  and _method_takes(m, flag.split("=")[0])]
        hints.append(f"{flag} (a flag of: {', '.join(owners)})" if owners else flag)
    return f"{args.command} {args.algorithm}", hints


def _method_takes(method, flag) -> bool:
    probe = argparse.ArgumentParser(add_help=False)
    _common_search_arguments(probe, method)
    _method_arguments(probe, method)
    return flag in probe._option_string_actions


def _search_grafs(args) -> int:
    from ..search.grafs.protocol import MODEL_ALIASES, format_table, run_grafs
    from ..search.grafs.settings import get_preset

    settings = get_preset(args.preset or "mnist1d_cnn")  # an unknown name lists them
    if settings.iteration_based:
        if args.epochs is not None:
            raise ValueError(f"preset {settings.name} counts iterations: use --max-iters "
                             f"and --eval-interval instead of --epochs")
        settings = settings.replace(max_iters=args.max_iters, eval_interval=args.eval_interval,
                                    warm_start_iterations=args.warm_start,
                                    start_shrinking_iteration=args.shrink_start)
    else:
        if args.max_iters is not None or args.eval_interval is not None:
            raise ValueError(f"preset {settings.name} counts epochs: use --epochs")
        settings = settings.replace(epochs=args.epochs, warm_start_epochs=args.warm_start,
                                    start_shrinking_epoch=args.shrink_start)
    targets = tuple(t.strip() for t in args.targets.split(",")) if args.targets else None
    # --recipe defaults to quick for every search: a preset's own recipe wins over that
    recipe = args.recipe  # None: the preset's own recipe
    settings = settings.replace(gradient_accumulation_steps=args.accumulation,
                                targets=targets, task=args.task, batch_size=args.batch_size,
                                model=MODEL_ALIASES.get(args.model, args.model), recipe=recipe)
    if not args.quiet:
        print(settings.describe())
    store = args.store or os.path.join("runs", f"grafs_{settings.task}.db")
    _check_store(store)
    executor = _grafs_executor(args)
    try:
        result = run_grafs(preset=settings, seeds=args.seeds,
                           search_train=args.subset, eval_seeds=max(args.final_seeds, 0),
                           plot=args.plot, log=(lambda *a: None) if args.quiet else print,
                           checkpoint=args.checkpoint, store=store, executor=executor,
                           workers=args.workers, ray_address=args.ray_address,
                           eval_overrides=({"epochs": args.final_epochs}
                                           if args.final_epochs else None))
    finally:
        if not isinstance(executor, str):
            executor.close()
    print()
    for s in result["searches"]:
        print(f"seed {s['seed']}: {s['function']}  ({s['seconds']:.1f} s)")
    if result["table"]:
        print()
        print(format_table(result["table"]))
        print()
        print(f"search time / one evaluation run: {result['search_seconds']:.1f} s / "
              f"{result['evaluation_seconds']:.1f} s = {result['overhead']:.2f}")
    if args.plot:
        print(f"plot: {args.plot}")
    print(f"journal: {store} (the same command resumes; {PROG} report {store})")
    return EXIT_OK


def _grafs_executor(args):
    """``--executor``'s name, or on Ray a RayExecutor made with the Ray flags: each GRAFS
    seed is one evaluation on it (run_grafs leaves an executor it is given open: the
    caller closes it)."""
    if args.executor != "ray":
        return args.executor
    from ..search.engine.executors import RayExecutor

    try:
        return RayExecutor(address=args.ray_address, max_in_flight=args.ray_workers,
                           **args.ray_options)
    except ValueError as err:
        raise UsageError(str(err)) from None


#: method flags passed to the algorithm, per method
_METHOD_OPTIONS = {
    "pangaea": ("population", "sample", "threshold"),
    "pangaea-nonparametric": ("population", "sample", "threshold"),
    "cafe": ("population", "newcomers", "elite"),
    "aquasurf": ("regressor", "features", "space", "start", "fim_initial", "fim_limit"),
}


def _method_options(args) -> dict:
    return {key: getattr(args, key) for key in _METHOD_OPTIONS.get(args.algorithm, ())
            if getattr(args, key, None) is not None}


def _check_store(path):
    """The store path can be written (a StoreError naming the file and the cause, exit 2,
    before anything is created)."""
    from ..search.engine.store import check_store_path

    check_store_path(path)


def _discard_new_store(path):
    """Remove a store this command created when the search was refused before it wrote a
    run (the file, its journal and lock), so a rejected command leaves nothing behind."""
    from ..search.engine.store import Store, StoreError

    try:
        with Store(path, readonly=True) as store:
            if store.runs():
                return
    except StoreError:
        return
    for end in ("", "-wal", "-shm", ".lock"):
        try:
            os.remove(path + end)
        except OSError:
            pass


def _check_method_options(args):
    """Relations between a method's flags that its algorithm would refuse only after the
    store is made (CAFE's m + e < N, AQuaSurF's schema name)."""
    if args.algorithm == "cafe":
        import inspect

        from ..search.runner import ALGORITHMS

        defaults = {k: v.default for k, v in
                    inspect.signature(ALGORITHMS["cafe"]).parameters.items()}
        population, newcomers, elite = (
            getattr(args, k) if getattr(args, k) is not None else defaults[k]
            for k in ("population", "newcomers", "elite"))
        if newcomers + elite >= population:
            raise UsageError(f"--newcomers + --elite must be below --population; got "
                             f"{newcomers} + {elite} with population {population}")
    if args.algorithm == "aquasurf" and args.space is not None:
        from ..search.aquasurf.space import aquasurf_space

        try:
            aquasurf_space(args.space)
        except (ValueError, KeyError) as err:
            raise UsageError(f"--space: {err}") from None


def _is_model_file(text) -> bool:
    return text is not None and (text.endswith((".keras", ".h5")) or os.path.isfile(text))


@command("search", "search an activation function for your model file or a zoo model "
                   "(PANGAEA, CAFE, AQuaSurF, GRAFS), journaled and resumable",
         arguments=_search_arguments, unknown=_unknown_flags)
def search(args) -> int:
    """Run a search: every candidate is trained (AutoInit, then your model's compile()
    settings or the zoo recipe), every result is journaled in the SQLite store before the
    algorithm sees it, and a killed search resumes from the store. At the end the best
    functions and the baseline (your model's own activation, or ReLU) are trained
    --final-seeds times each and compared in a table.

    Your own model: --model my_model.keras --data data.npz (or an image folder, a saved
    tf.data folder, tfds:NAME); --out best.keras saves the model with the best function."""
    if args.executor == "ray":
        from ..search.engine.executors import ray_available

        if not ray_available():  # at the start, never after work
            raise UsageError("--executor ray needs Ray: pip install 'keras_actfn[ray]'")
    args.ray_options = _ray_options(args)
    # --workers: local processes (default 1); on Ray the evaluations in flight (default:
    # what the cluster's free resources hold)
    args.ray_workers = args.workers
    if args.workers is None:
        args.workers = 1
    if getattr(args, "list_presets", False):
        from ..search.grafs.settings import format_presets

        print(format_presets())
        return EXIT_OK
    if _is_model_file(args.model) or args.data is not None:
        return _search_user_model(args)
    user_only = [flag for flag, value in (("--objective", args.objective),
                                          ("--validation-split", args.validation_split),
                                          ("--out", args.out)) if value is not None]
    if args.algorithm != "grafs" and args.batch_size is not None:
        user_only.append("--batch-size")
    if user_only:
        raise UsageError(f"{', '.join(user_only)} apply to a search of your own model "
                         f"(--model FILE.keras --data DATA)")
    if args.algorithm == "grafs":
        try:
            return _search_grafs(args)
        except (ValueError, TypeError) as err:
            raise UsageError(str(err)) from None
    return _search_zoo(args)


def _search_zoo(args) -> int:
    from ..search.runner import format_comparison, run_named_search
    from ..train import get_recipe

    if args.targets is not None:
        raise UsageError("--targets applies to a search of your own model (--model "
                         "FILE.keras); a zoo model is built with the candidate everywhere")
    try:
        args.recipe = args.recipe or "quick"
        task = args.task or get_recipe(args.recipe).task
    except ValueError as err:
        raise UsageError(str(err)) from None
    overrides = {"epochs": args.epochs} if args.epochs is not None else {}
    if args.data_dir is not None:  # the recipe's own task options kept
        overrides["task_options"] = {**get_recipe(args.recipe).option("task_options"),
                                     "data_dir": args.data_dir}
    store = args.store or os.path.join("runs", f"{args.algorithm}_{task}.db")
    _check_method_options(args)
    _check_store(store)
    existed = os.path.lexists(store)
    try:
        summary, rows = run_named_search(
            args.algorithm, task=task, recipe=args.recipe, model=args.model,
            budget=args.budget, store=store, executor=args.executor,
            workers=args.ray_workers if args.executor == "ray" else args.workers,
            ray_options=args.ray_options,
            ray_address=args.ray_address, seed=args.seed, final_seeds=args.final_seeds,
            final_top=args.final_top, progress=not args.quiet,
            algorithm_options=_method_options(args), **overrides)
    except (ValueError, TypeError) as err:
        if not existed:  # a check this command does not make up front: leave nothing
            _discard_new_store(store)
        raise UsageError(str(err)) from None
    print(summary)
    if rows:
        print()
        print(format_comparison(rows))
    print(f"\nreport and plots: {PROG} report {store}")
    return EXIT_OK


def _search_user_model(args) -> int:
    """`search METHOD --model FILE --data DATA`: ActivationSearch from the command line."""
    from ..search.user import ActivationSearch
    from ..train.user_model import UserInputError

    if args.data is None:
        raise UsageError(f"--model {args.model} needs --data (an .npz, an image folder, a "
                         f"saved tf.data folder or tfds:NAME)")
    if args.model is None or not _is_model_file(args.model):
        raise UsageError(f"--data needs --model FILE.keras (a compiled Keras model); got "
                         f"--model {args.model}. For a zoo task use --task")
    if args.task is not None:
        raise UsageError("--task apply to zoo searches; with --model FILE give your data "
                         "with --data")
    options = _method_options(args)
    if getattr(args, "final_epochs", None) is not None:
        raise UsageError("--final-epochs applies to zoo GRAFS runs; with --model FILE the "
                         "final comparison trains with --epochs")
    if args.algorithm == "grafs":
        options.update({k: getattr(args, k) for k in (
            "warm_start", "preset", "accumulation", "max_iters", "eval_interval",
            "shrink_start", "subset", "checkpoint") if getattr(args, k) is not None})
        options["seeds"] = args.seeds
    targets = tuple(t.strip() for t in args.targets.split(",")) if args.targets else None
    store = args.store or os.path.join(
        "runs", f"{args.algorithm}_{os.path.splitext(os.path.basename(args.model))[0]}.db")
    _check_store(store)
    try:
        search = ActivationSearch(
            args.model, method=args.algorithm, objective=args.objective,
            budget=getattr(args, "budget", None) or args.seeds, store=store, seed=args.seed,
            executor="ray" if args.executor == "ray" else "pool",
            workers=args.ray_workers if args.executor == "ray" else args.workers,
            ray_options=args.ray_options or None,
            ray_address=args.ray_address, targets=targets, final_top=args.final_top,
            final_seeds=args.final_seeds, progress=not args.quiet, recipe=args.recipe,
            **options)
        search.search(args.data, validation_split=args.validation_split,
                      epochs=args.epochs or 1, batch_size=args.batch_size,
                      data_dir=args.data_dir)
    except (UserInputError, ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    print(search.summary)
    if search.comparison:
        print()
        print(search.format_comparison())
    try:
        best = search.best_function
    except RuntimeError as err:  # every candidate failed: a result, not a crash
        print(f"\n{err}; see {PROG} report {store} for each candidate's reason")
        return EXIT_FAILURE
    print(f"\nbest function: {best}")
    if args.out:
        model = search.best_model()
        model.save(args.out)
        print(f"model with it (AutoInit weights, compiled like yours): {args.out}")
    print(f"report and plots: {PROG} report {store}")
    return EXIT_OK
