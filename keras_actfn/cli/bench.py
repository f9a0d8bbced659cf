"""``keras-actfn bench build|replay|plot``: the flags and the printed lines of the AQuaSurF
benchmark workflows, which live in :mod:`keras_actfn.search.aquasurf.bench`."""

from __future__ import annotations

import os

from .common import EXIT_OK, UsageError, command, fraction, positive_int, seed_int


def _bench_arguments(p):
    sub = p.add_subparsers(dest="bench_action", metavar="ACTION")
    sub.required = True
    b = sub.add_parser(
        "build", help="train every unique function of a space once: an Act-Bench table",
        description="Train every unique (output-distinct) function of an AQuaSurF space once "
                    "with the recipe, compute its FIM features at initialization, journal "
                    "everything in --store (re-running resumes) and write the Act-Bench JSON.")
    b.add_argument("--space", default="binary_unary_unary",
                   help="AQuaSurF space schema (default: binary_unary_unary, Table A.3)")
    b.add_argument("--task", default=None, help="task name (default: the recipe's)")
    b.add_argument("--model", default=None, help="model name (default: the recipe's)")
    b.add_argument("--recipe", default="quick", help="training recipe (default: quick)")
    b.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                   help="train N epochs (the schedule is stretched to fit)")
    b.add_argument("--workers", type=positive_int, default=1, metavar="W",
                   help="evaluations in parallel (W TensorFlow processes)")
    b.add_argument("--seed", type=seed_int, default=0, help="training seed of every function")
    b.add_argument("--store", default=None, metavar="PATH",
                   help="SQLite journal (default runs/bench_<space>_<task>.db)")
    b.add_argument("--out", required=True, metavar="FILE",
                   help="the table (.json, or .json.gz for gzip)")
    b.add_argument("--limit", type=positive_int, default=None, metavar="K",
                   help="only the first K unique functions (a smoke run)")
    b.add_argument("--no-fim", action="store_true", help="skip the FIM features")
    b.add_argument("--no-test", action="store_true", help="skip the test-set metrics")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    r = sub.add_parser(
        "replay", help="replay searches on a table (Figure 6.6)",
        description="Replay --trials searches per method by table look-up (nothing is "
                    "trained) and write replay.csv, replay.png and summary.json to --out. "
                    "Regression searches consider only rows with a valid FIM (the paper's "
                    "filter); random search considers every row. Methods: random, or "
                    "REGRESSOR-FEATURE with REGRESSOR knr/rfr/svr and FEATURE "
                    "both/fim/outputs.")
    r.add_argument("benchmark", help="a table written by `bench build` (or an Act-Bench file)")
    r.add_argument("--methods", default="knr-both,knr-fim,knr-outputs,random",
                   help="comma-separated (default: knr-both,knr-fim,knr-outputs,random)")
    r.add_argument("--trials", type=positive_int, default=100,
                   help="searches per method (default 100)")
    r.add_argument("--budget", type=positive_int, default=100,
                   help="evaluations per search, start set included (default 100)")
    r.add_argument("--seed", type=seed_int, default=0,
                   help="first trial's seed and UMAP's seed")
    r.add_argument("--top", type=fraction, default=0.01, metavar="FRACTION",
                   help="what counts as a top function (default 0.01: the top 1%%)")
    r.add_argument("--out", required=True, metavar="DIR")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    pl = sub.add_parser(
        "plot", help="embedding of a table coloured by accuracy (Figures 6.4, 6.7, 6.8)",
        description="Write embedding_<feature>.png (Figure 6.4: the rows embedded by UMAP, "
                    "coloured by validation accuracy) and, unless --trace none, the progress "
                    "(Figure 6.7) and space map (Figure 6.8) of one replayed search.")
    pl.add_argument("benchmark")
    pl.add_argument("--out", required=True, metavar="DIR")
    pl.add_argument("--features", default="both",
                   help="comma-separated feature kinds: both, fim, outputs (default: both)")
    pl.add_argument("--seed", type=seed_int, default=0,
                    help="UMAP seed and the traced search's")
    pl.add_argument("--trace", default="knr-both", metavar="METHOD",
                   help="method of the traced search (default knr-both; none: skip)")
    pl.add_argument("--budget", type=positive_int, default=100,
                    help="the traced search's budget")


def _bench_table(path):
    from ..search.aquasurf.benchmark import load_benchmark

    if not os.path.exists(path):
        raise UsageError(f"no benchmark table at {path!r}")
    try:
        bench = load_benchmark(path)
    except (ValueError, OSError, EOFError) as err:
        raise UsageError(f"cannot read {path}: {err}") from None
    if len(bench) == 0:
        raise UsageError(f"{path} holds no functions")
    return bench


def _bench_out_dir(path):
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--out {path} exists and is not a directory")
    os.makedirs(path, exist_ok=True)
    return path


def _bench_build(args) -> int:
    from ..search.aquasurf.bench import TableBuild, table_summary
    from ..search.engine.store import StoreError
    from ..search.runner import ProgressLine

    try:
        build = TableBuild(args.space, args.out, task=args.task, model=args.model,
                           recipe=args.recipe, epochs=args.epochs, seed=args.seed,
                           store=args.store, limit=args.limit, fim=not args.no_fim,
                           test=not args.no_test)
    except (ValueError, KeyError, TypeError) as err:
        raise UsageError(str(err)) from None
    progress = None if args.quiet else ProgressLine(budget=build.unique, every=10)
    print(f"space:       {args.space} ({len(build.space)} functions, {build.unique} unique"
          f"{'' if args.limit is None else ', --limit'})")
    print(f"training:    {build.model} on {build.task}, recipe {args.recipe}"
          f"{'' if args.epochs is None else f', {args.epochs} epochs'}; FIM "
          f"{'off' if args.no_fim else 'on'}; store {build.store}", flush=True)
    try:
        bench = build.run(workers=args.workers, progress=progress)
    except (ValueError, StoreError) as err:  # e.g. the store's run has other settings
        raise UsageError(str(err)) from None
    finally:
        if progress is not None:
            progress.close()
    summary = table_summary(bench)
    print(f"functions:   {summary['functions']} ({summary['failed']} failed; "
          f"{summary['fim']} with a valid FIM)")
    if summary["best"] is not None:
        name, value = summary["best"]
        print(f"best:        {value:.4f}  {name}")
    print(f"table:       {os.path.abspath(args.out)}")
    return EXIT_OK


def _bench_replay(args) -> int:
    from ..search.aquasurf.bench import replay_table, write_replay
    from ..search.aquasurf.replay import format_summary, parse_methods

    try:
        methods = parse_methods(args.methods)
    except ValueError as err:
        raise UsageError(str(err)) from None
    bench = _bench_table(args.benchmark)
    out = _bench_out_dir(args.out)
    log = None if args.quiet else (lambda message: print(message, flush=True))
    try:
        replay = replay_table(bench, methods, trials=args.trials, budget=args.budget,
                              seed=args.seed, top=args.top, log=log, source=args.benchmark)
    except ValueError as err:
        raise UsageError(str(err)) from None
    write_replay(replay, out)
    print(format_summary(replay.summaries, replay.threshold, replay.k, fraction=args.top))
    print(f"\nwrote {os.path.join(out, 'replay.csv')}, replay.png and summary.json")
    return EXIT_OK


def _bench_plot(args) -> int:
    from ..search.aquasurf.bench import TablePlots
    from ..search.aquasurf.replay import FEATURE_KINDS, parse_methods

    features = [f.strip() for f in args.features.split(",") if f.strip()]
    bad = [f for f in features if f not in FEATURE_KINDS]
    if bad or not features:
        raise UsageError(f"--features: expected a comma-separated list of "
                         f"{', '.join(FEATURE_KINDS)}; got {args.features!r}")
    trace = None
    if args.trace.lower() != "none":
        try:
            (trace,) = parse_methods(args.trace)
        except ValueError as err:
            raise UsageError(f"--trace: {err}") from None
    bench = _bench_table(args.benchmark)
    out = _bench_out_dir(args.out)
    try:
        plots = TablePlots(bench, features, trace, seed=args.seed)
    except ValueError as err:
        raise UsageError(str(err)) from None
    for path in plots.embeddings(out):
        print(f"embedding:   {path}")
    if trace is not None:
        try:
            traced = plots.trace(budget=args.budget)
        except ValueError as err:
            raise UsageError(str(err)) from None
        print(f"progress:    {plots.progress(traced, out)}")
        print(f"space map:   {plots.space_map(traced, out)}")
        best = traced.best()
        if best is not None:
            value, function, evaluation = best
            print(f"best found:  {value:.4f}  {function} (evaluation {evaluation})")
    return EXIT_OK


@command("bench", "build Act-Bench-style tables, replay searches on them, plot them",
         arguments=_bench_arguments)
def bench(args) -> int:
    """AQuaSurF benchmark tables (dissertation §6.1, §6.6): `bench build` trains every unique
    function of a space once and writes the table; `bench replay` runs many table-lookup
    searches per method and compares them (Figure 6.6, evaluations to reach a top-1%
    function); `bench plot` draws the table's embedding coloured by accuracy (Figure 6.4)
    and one replayed search's progress and path (Figures 6.7, 6.8)."""
    actions = {"build": _bench_build, "replay": _bench_replay, "plot": _bench_plot}
    return actions[args.bench_action](args)
