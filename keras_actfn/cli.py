"""The ``keras-actfn`` command line (also ``python -m keras_actfn``).

Each subcommand is one function taking the parsed arguments and returning an exit status,
registered with :func:`command` together with a function that declares its arguments::

    def _demo_arguments(parser):
        parser.add_argument("fn")

    @command("demo", "one-line help", arguments=_demo_arguments)
    def demo(args):
        print(args.fn)
        return 0

Heavy modules (Keras models, training code, matplotlib) are imported inside the command
functions, so building the parser and ``--help`` stay quick.

Exit statuses: 0 success, 1 a command failed at run time, 2 bad usage or bad
activation-function text (the message, with a caret under the offending position, goes to
stderr; no traceback).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable

PROG = "keras-actfn"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


#: registered subcommands, in the order ``--help`` lists them
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, *, arguments=None, description=None):
    """Decorator registering ``run(args) -> int`` as subcommand ``name``."""

    def register(run):
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        COMMANDS[name] = Command(name, help, arguments or (lambda parser: None), run,
                                 description or run.__doc__)
        return run

    return register


class UsageError(Exception):
    """Bad command-line input found after parsing; reported without a traceback, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Discover, inspect and evaluate activation functions for Keras models.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def main(argv=None) -> int:
    """Run the command line; return the exit status (argparse's own exits included)."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            _unknown_arguments(parser, args, extra)
    except SystemExit as stop:  # --help, --version, usage errors
        return _exit_code(stop.code)
    from . import _start_tensorflow_quietly, load_all

    _start_tensorflow_quietly()   # parsing and --help never import TensorFlow
    load_all()                    # registers our Keras layers for the models a command loads
    from .expr import ParseError

    try:
        return int(args._command.run(args) or 0)
    except ParseError as err:
        print(f"{PROG} {args.command}: bad activation function: {err}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as err:
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `keras-actfn ... | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # so the interpreter's final flush is quiet
        os.close(devnull)
        return EXIT_FAILURE
    except Exception as err:  # noqa: BLE001 - the user's errors in one line, our bugs loud
        from .errors import user_error_message

        text = user_error_message(err)
        if text is not None:
            print(f"{PROG} {args.command}: error: {text}", file=sys.stderr)
            return EXIT_USAGE
        import traceback

        traceback.print_exc()
        print(f"{PROG} {args.command}: internal error ({type(err).__name__}); this is a "
              f"bug in keras_actfn, please report it with the traceback above",
              file=sys.stderr)
        return EXIT_FAILURE


def _unknown_arguments(parser, args, extra):
    """Exit 2 naming the flags the chosen command does not take (and, for `search`, the
    methods that do)."""
    flags = [e for e in extra if e.startswith("-")] or extra
    where = f"{PROG} {args.command}"
    if args.command == "search":
        where += f" {args.algorithm}"
        hints = []
        for flag in flags:
            owners = [m for m in SEARCH_METHODS if m != args.algorithm
                      and _method_takes(m, flag.split("=")[0])]
            hints.append(f"{flag} (a flag of: {', '.join(owners)})" if owners else flag)
        flags = hints
    parser.exit(EXIT_USAGE, f"{where}: error: unrecognized arguments: {', '.join(flags)}\n")


def _method_takes(method, flag) -> bool:
    probe = argparse.ArgumentParser(add_help=False)
    _common_search_arguments(probe, method)
    _method_arguments(probe, method)
    return flag in probe._option_string_actions


def _exit_code(code) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_FAILURE


# ---------------------------------------------------------------------------- helpers
def default_plot_name(text: str) -> str:
    """``activation_<slug>_<hash8>.png`` for canonical text: readable, and unique per text."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40].rstrip("_")
    return f"activation_{slug}_{digest}.png" if slug else f"activation_{digest}.png"


def _format_number(value: float) -> str:
    return repr(float(value)) if not math.isfinite(value) else f"{value:.10g}"


# ------------------------------------------------------------ numeric flag types
# Every numeric flag of every command takes one of these as its argparse ``type``: a value
# out of range is a usage error naming the flag (exit 2) before anything runs or is
# created, and 0 is never mistaken for "not given".
def _int_type(minimum, maximum=None, what=None):
    what = what or ("a positive integer" if minimum == 1 else "an integer >= 0"
                    if minimum == 0 else f"an integer >= {minimum}")

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    parse.__name__ = what  # argparse names the type in "invalid <type> value" messages
    return parse


def _float_type(low=None, high=None, *, low_open=False, high_open=False, what):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not math.isfinite(value) or (low is not None and (
                value < low or (low_open and value == low))) or (high is not None and (
                value > high or (high_open and value == high))):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    parse.__name__ = what
    return parse


positive_int = _int_type(1)
non_negative_int = _int_type(0)
#: a seed: NumPy and TensorFlow take 0 .. 2**32 - 1
seed_int = _int_type(0, 2**32 - 1, "a seed (an integer from 0 to 4294967295)")
finite_float = _float_type(what="a finite number")
positive_float = _float_type(0.0, low_open=True, what="a number > 0")
non_negative_float = _float_type(0.0, what="a number >= 0")
#: a share of something: (0, 1]
fraction = _float_type(0.0, 1.0, low_open=True, what="a fraction in (0, 1]")
#: a held-out share: (0, 1)
open_fraction = _float_type(0.0, 1.0, low_open=True, high_open=True,
                            what="a fraction in (0, 1)")
#: a probability-like threshold: [0, 1]
unit_interval = _float_type(0.0, 1.0, what="a number in [0, 1]")
_positive, _non_negative = positive_int, non_negative_int  # the names flags used first


# ------------------------------------------------------------------------------ show
def _show_arguments(p):
    p.add_argument("fn", help='activation-function text, e.g. "alpha*swish(beta*x)"')
    p.add_argument("-o", "--output", metavar="PATH",
                   help="where to write the PNG (default: activation_<slug>_<hash>.png "
                        "in the current directory)")
    p.add_argument("--range", nargs=2, type=finite_float, default=(-5.0, 5.0),
                   metavar=("LOW", "HIGH"),
                   dest="x_range", help="input range of the plot (default: -5 5)")
    p.add_argument("--samples", type=non_negative_int, default=30, metavar="N",
                   help="curves drawn at random parameters ~ U(0.5, 2) (default: 30)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the parameter draws")
    p.add_argument("--no-plot", action="store_true", help="print the summary only")


@command("show", "describe one activation function and plot it", arguments=_show_arguments)
def show(args) -> int:
    """Print an activation function's canonical text, math form, parameter slots, size and
    Gaussian moments E f(Z), E f(Z)^2 for Z ~ N(0, 1) at the initial parameters (all 1),
    then plot it (bold: parameters 1; thin: parameters drawn from U(0.5, 2))."""
    from .expr import gaussian_moments, parse

    low, high = args.x_range
    if not low < high:
        raise UsageError(f"--range needs LOW < HIGH; got {low:g} {high:g}")

    expr = parse(args.fn)
    text = str(expr)
    mean, second = gaussian_moments(expr)
    params = expr.params
    print(f"text:        {text}")
    print(f"math:        {expr.pretty()}")
    print(f"parameters:  {', '.join(params) if params else '(none)'}")
    print(f"nodes:       {expr.node_count}")
    print(f"E f(Z):      {_format_number(mean)}    (Z ~ N(0, 1), parameters = 1)")
    print(f"E f(Z)^2:    {_format_number(second)}")
    if args.no_plot:
        return EXIT_OK

    try:
        from .plots import plot_activation
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        print(f"{PROG} show: cannot plot: {err}", file=sys.stderr)
        return EXIT_FAILURE
    path = args.output or default_plot_name(text)
    try:
        plot_activation(expr, path=path, x_range=(low, high), param_samples=args.samples,
                        seed=args.seed)
    except OSError as err:
        print(f"{PROG} show: cannot write {path}: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"plot:        {os.path.abspath(path)}")
    return EXIT_OK


# -------------------------------------------------------------------------- autoinit
def _autoinit_arguments(p):
    p.add_argument("model", help="saved Keras model (.keras, or .h5)")
    p.add_argument("-o", "--output", metavar="PATH", required=True,
                   help="where to save the initialized model (.keras)")
    p.add_argument("--plot", metavar="PNG",
                   help="also draw predicted vs empirical signal propagation, default "
                        "initialization vs AutoInit (Figures 5.2/5.3 of the dissertation)")
    p.add_argument("--signal-variance", type=positive_float, default=1.0, metavar="V",
                   help="target output variance of every weighted layer (default: 1)")
    p.add_argument("--distribution", default="truncated_normal",
                   choices=("truncated_normal", "normal", "uniform", "orthogonal"),
                   help="weight distribution (default: truncated_normal)")
    p.add_argument("--input-mean", type=finite_float, nargs="+", default=[0.0], metavar="M",
                   help="mean of the model's input data (one value, or one per input)")
    p.add_argument("--input-var", type=positive_float, nargs="+", default=[1.0], metavar="V",
                   help="variance of the model's input data (one value, or one per input)")
    p.add_argument("--seed", type=seed_int, default=None,
                   help="seed of the weight draws (default: random, printed)")
    p.add_argument("--keep", nargs="+", default=[], metavar="NAME",
                   help="layers whose weights stay as they are (pretrained or frozen)")
    p.add_argument("--plot-samples", type=_int_type(2), default=32, metavar="N",
                   help="Gaussian input samples behind the plot's empirical moments "
                        "(default: 32)")
    p.add_argument("--no-table", action="store_true",
                   help="print the summary only, not one line per layer")


def _looks_like_keras_file(path) -> bool:
    import zipfile

    with open(path, "rb") as handle:
        head = handle.read(8)
    return head == b"\x89HDF\r\n\x1a\n" or zipfile.is_zipfile(path)


def _load_keras_model(path):
    from .backend import KERAS3, keras

    if not os.path.exists(path):
        raise UsageError(f"no such file: {path}")
    if os.path.isdir(path):
        if KERAS3:
            raise UsageError(f"{path} is a directory, not a saved Keras model file")
    elif not _looks_like_keras_file(path):
        raise UsageError(f"{path} is not a saved Keras model (neither a .keras zip archive "
                         "nor an HDF5 file)")
    try:
        return keras.models.load_model(path)
    except Exception as err:  # noqa: BLE001 - any loader failure means "not a Keras model"
        raise UsageError(f"cannot load {path} as a Keras model: {_load_cause(err)}") from None


def _load_cause(err) -> str:
    """One line for a failed ``load_model``: the error of ours in the chain (a ParseError, a
    bad config value: Keras wraps them in generic "could not be deserialized" errors), else
    the innermost one, with the layer class Keras names, if any."""
    chain, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or err.__context__
    from .expr import ParseError

    ours = [e for e in chain if type(e).__module__.startswith("keras_actfn.")]
    root = next((e for e in chain if isinstance(e, ParseError)), None) or (
        ours[-1] if ours else chain[-1])
    text = str(root).strip()
    if "Exception encountered:" in text:  # Keras's wrapper text: the cause is its tail
        text = text.rsplit("Exception encountered:", 1)[1].strip()
    lines = text.splitlines()
    message = lines[0].strip() if lines else type(root).__name__
    if isinstance(root, ParseError) and root.text:
        shown = root.text if len(root.text) <= 80 else root.text[:80] + "..."
        message = f"bad activation function {shown!r}: {message}"
    layer = None
    for item in chain:
        found = re.search(r"deserializing class '([^']+)'", str(item))
        if found:
            layer = found.group(1)
    return f"layer {layer}: {message}" if layer and layer not in message else message


def _scalar_or_list(values):
    return values[0] if len(values) == 1 else list(values)


@command("autoinit", "initialize a saved model's weights with AutoInit",
         arguments=_autoinit_arguments)
def autoinit(args) -> int:
    """Load a saved Keras model, set its weights with AutoInit (dissertation ch. 5) so every
    weighted layer outputs mean 0 and variance --signal-variance for inputs of the given
    moments, save it, and print AutoInit's per-layer predictions. With --plot, also draw
    predicted and measured signal propagation before and after AutoInit."""
    import secrets

    from .autoinit import AutoInit, AutoInitError
    from .backend import KERAS3

    if KERAS3 and not args.output.endswith((".keras", ".h5")):
        raise UsageError(f"-o must end in .keras (or .h5); got {args.output}")
    model = _load_keras_model(args.model)
    from .autoinit.visualize import _all_layers

    names = {layer.name for layer in _all_layers(model)}
    unknown = [name for name in args.keep if name not in names]
    if unknown:
        raise UsageError(f"--keep: no layer named {', '.join(map(repr, unknown))} in "
                         f"{args.model}")
    seed = args.seed if args.seed is not None else secrets.randbits(31)
    kwargs = dict(signal_variance=args.signal_variance, distribution=args.distribution,
                  keep=tuple(args.keep), seed=seed)
    mean, var = _scalar_or_list(args.input_mean), _scalar_or_list(args.input_var)

    try:
        if args.plot:
            from .autoinit import AutoInitVisualizer

            AutoInitVisualizer().visualize(model, path=args.plot, input_data_mean=mean,
                                           input_data_var=var, samples=args.plot_samples,
                                           seed=seed, autoinit_kwargs=kwargs)
        init = AutoInit(input_data_mean=mean, input_data_var=var, **kwargs)
        model = init.initialize_model(model)
    except (AutoInitError, FloatingPointError) as err:
        raise UsageError(str(err)) from None
    except ImportError as err:  # pragma: no cover - matplotlib missing
        print(f"{PROG} autoinit: cannot plot: {err}", file=sys.stderr)
        return EXIT_FAILURE

    records = init.records
    if not args.no_table:
        width = max([len(r.layer) for r in records] + [5])
        print(f"{'#':>4}  {'layer':<{width}}  {'weights':<11}  {'mean':>11}  {'variance':>11}")
        for i, rec in enumerate(records, 1):
            how = "AutoInit" if rec.initialized else (
                "kept" if rec.layer in args.keep else rec.method)
            out = rec.outputs[0]
            print(f"{i:>4}  {rec.layer:<{width}}  {how:<11}  {out.mean:>11.4g}  "
                  f"{out.var:>11.4g}")
    initialized = sum(1 for r in records if r.initialized)
    last = init.output_moments[0]
    print(f"model:       {args.model} ({getattr(model, 'name', '')}, {len(records)} layers)")
    print(f"seed:        {seed}")
    print(f"initialized: {initialized} of {len(records)} layers "
          f"(signal variance {args.signal_variance:g}, {args.distribution})")
    print(f"output:      mean {last.mean:.6g}, variance {last.var:.6g} (predicted)")
    try:
        model.save(args.output)
    except OSError as err:
        print(f"{PROG} autoinit: cannot write {args.output}: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"saved:       {os.path.abspath(args.output)}")
    if args.plot:
        print(f"plot:        {os.path.abspath(args.plot)}")
    return EXIT_OK


# -------------------------------------------------------------------------- evaluate
def _evaluate_arguments(p):
    p.add_argument("fn", help='activation-function text ("x*sigmoid(x)") or a Keras '
                              'activation name ("relu")')
    p.add_argument("--recipe", default="quick",
                   help="training recipe (default: quick, MNIST-1D in seconds); see "
                        "docs/evaluation.md for the papers' recipes")
    p.add_argument("--task", default=None, help="task name (default: the recipe's)")
    p.add_argument("--model", default=None, help="model name (default: the recipe's)")
    p.add_argument("--seeds", type=positive_int, default=1, metavar="N",
                   help="train N times, with seeds SEED .. SEED+N-1 (default: 1)")
    p.add_argument("--seed", type=seed_int, default=0, help="the first seed (default: 0)")
    p.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                   help="train N epochs; the learning-rate schedule is stretched to fit")
    p.add_argument("--subset", type=positive_int, default=None, metavar="N",
                   help="train on a class-balanced subset of N training examples")
    p.add_argument("--test", action="store_true", help="also measure test accuracy")
    p.add_argument("--no-autoinit", action="store_true",
                   help="keep the model's own initialization instead of AutoInit")
    p.add_argument("--json", metavar="PATH", help="also write the records to PATH as JSON")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no Keras progress output, only the summary lines")


def _mean_std(values):
    if not values:
        return None, None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) \
        if len(values) > 1 else 0.0
    return mean, std


@command("evaluate", "train a model with an activation function and report its fitness",
         arguments=_evaluate_arguments)
def evaluate(args) -> int:
    """Train the recipe's model on its task with the activation function (AutoInit
    initialization, the recipe's optimizer and learning-rate schedule) once per seed, and
    print one summary line per seed and the mean +- standard deviation over the seeds.
    A candidate fails when its loss becomes NaN/inf, its activation overflows, or its
    validation accuracy stays at chance or below the recipe's threshold V; the exit status
    is then 1 (0 when every seed is ok, 2 for bad usage or bad function text)."""
    import json

    from .data import DatasetUnavailableError
    from .train.evaluate import evaluate_activation, prepare, resolve_activation

    spec, text = resolve_activation(args.fn)  # ParseError: exit 2 via main()
    overrides = {k: v for k, v in (("epochs", args.epochs), ("subset", args.subset))
                 if v is not None}
    try:
        plan = prepare(task=args.task, model=args.model, recipe=args.recipe, **overrides)
    except DatasetUnavailableError as err:
        print(f"{PROG} evaluate: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    recipe = plan.recipe
    print(f"function:    {text}")
    print(f"recipe:      {recipe.label} ({plan.model_name} on {plan.task.name}, "
          f"{recipe.epochs} epochs, batch {recipe.batch_size}; "
          f"lr {recipe.schedule.describe()})")
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    records = []
    for seed in range(args.seed, args.seed + args.seeds):
        record = evaluate_activation(spec, task=plan.task, model=plan.model, recipe=recipe,
                                     seed=seed, autoinit=not args.no_autoinit,
                                     test=args.test, verbose=verbose)
        records.append(record)
        print(f"seed {seed}: {record.summary()}", flush=True)

    ok = [r for r in records if r.ok]
    summary = {"seeds": len(records), "ok": len(ok), "failed": len(records) - len(ok)}
    metrics = ["validation_accuracy", "validation_loss", "train_accuracy", "runtime_s"]
    if args.test:
        metrics.insert(3, "test_accuracy")
    short = {"validation_accuracy": "val_acc", "validation_loss": "val_loss",
             "train_accuracy": "train_acc", "test_accuracy": "test_acc", "runtime_s": "time"}
    parts = []
    for metric in metrics:
        values = [getattr(r, metric) for r in ok if getattr(r, metric) is not None]
        mean, std = _mean_std(values)
        summary[metric] = {"mean": mean, "std": std}
        if mean is not None:
            unit = " s" if metric == "runtime_s" else ""
            digits = 1 if metric == "runtime_s" else 4
            parts.append(f"{short[metric]} {mean:.{digits}f} +- {std:.{digits}f}{unit}")
    failed = [r for r in records if r.failed]
    tail = f"; failed: {', '.join(sorted({r.reason for r in failed}))}" if failed else ""
    if parts:
        print(f"mean +- std over {len(ok)} ok of {len(records)} seeds: {'  '.join(parts)}"
              f"{tail}")
    else:
        print(f"all {len(records)} seeds failed{tail}")
    if args.json:
        payload = {"fn": text, "recipe": recipe.to_dict(), "task": plan.task.name,
                   "model": plan.model_name, "records": [r.to_dict() for r in records],
                   "summary": summary}
        try:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, indent=2, allow_nan=False)
        except OSError as err:
            print(f"{PROG} evaluate: cannot write {args.json}: {err}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"json:        {os.path.abspath(args.json)}")
    return EXIT_OK if not failed else EXIT_FAILURE


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
        p.add_argument("--budget", type=_positive, default=100, metavar="N",
                       help="candidates to evaluate (PANGAEA's C; default 100)")
    p.add_argument("--workers", type=_positive, default=None, metavar="W",
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
    p.add_argument("--epochs", type=_positive, default=None,
                   help="epochs per candidate (zoo: scales the recipe's; model file: "
                        "default 1)")
    p.add_argument("--final-seeds", type=_non_negative, default=3, metavar="N",
                   help="train the top functions and the baseline N times each at the end "
                        "(0: skip; default 3)")
    p.add_argument("--final-top", type=_positive, default=3, metavar="K",
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
        p.add_argument("--batch-size", type=_positive, default=None, metavar="B",
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
    from .search.engine.ray_executor import _resource

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
        p.add_argument("--population", type=_positive, default=None, help="PANGAEA P")
        p.add_argument("--sample", type=_positive, default=None, help="PANGAEA S")
        p.add_argument("--threshold", type=unit_interval, default=None,
                       help="PANGAEA V (0.2 = 20%%)")
    elif method == "cafe":
        p.add_argument("--population", type=_positive, default=None, help="CAFE N")
        p.add_argument("--newcomers", type=_non_negative, default=None,
                       help="CAFE m: random newcomers per generation (default 10)")
        p.add_argument("--elite", type=_non_negative, default=None,
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
        p.add_argument("--fim-initial", type=_positive, default=None, metavar="N",
                       help="parallel mode (A.4.1): start once N functions have FIM "
                            "features; one extra process computes the rest during the "
                            "search")
        p.add_argument("--fim-limit", type=_positive, default=None, metavar="N",
                       help="at most N functions in the pool (the paper: 5,000)")
    elif method == "grafs":
        p.add_argument("--seeds", type=_positive, default=5, metavar="N",
                       help="independent searches (the paper: 5), journaled one by one")
        p.add_argument("--warm-start", type=non_negative_int, default=None, metavar="E0",
                       help="warm-start epochs, iterations for an iteration-based preset "
                            "(default: the preset's; shrinking starts at 2*E0)")
        p.add_argument("--preset", default=None, metavar="NAME",
                       help="named search settings (GRAFS Tables 6, 7, 9 or the quick "
                            "default mnist1d_cnn); the other flags override it")
        p.add_argument("--list-presets", action="store_true",
                       help="print the presets and their sources, then exit")
        p.add_argument("--batch-size", type=_positive, default=None, metavar="B",
                       help="micro-batch size")
        p.add_argument("--accumulation", type=_positive, default=None, metavar="K",
                       help="gradient accumulation steps (one update per K micro-batches)")
        p.add_argument("--max-iters", type=_positive, default=None, metavar="N",
                       help="iterations of an iteration-based preset (Table 9)")
        p.add_argument("--eval-interval", type=_positive, default=None, metavar="N",
                       help="iterations per record of an iteration-based preset")
        p.add_argument("--shrink-start", type=positive_int, default=None, metavar="S",
                       help="first epoch (iteration-based preset: iteration) with drops")
        p.add_argument("--subset", type=_positive, default=None, metavar="N",
                       help="search on N training examples (class-balanced; smoke runs)")
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


def _search_grafs(args) -> int:
    from .search.grafs.protocol import MODEL_ALIASES, format_table, run_grafs
    from .search.grafs.settings import get_preset

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
                           workers=args.workers, ray_address=args.ray_address)
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
    from .search.engine.executors import RayExecutor

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
    from .search.engine.store import check_store_path

    check_store_path(path)


def _discard_new_store(path):
    """Remove a store this command created when the search was refused before it wrote a
    run (the file, its journal and lock), so a rejected command leaves nothing behind."""
    from .search.engine.store import Store, StoreError

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

        from .search.runner import ALGORITHMS

        defaults = {k: v.default for k, v in
                    inspect.signature(ALGORITHMS["cafe"]).parameters.items()}
        population, newcomers, elite = (
            getattr(args, k) if getattr(args, k) is not None else defaults[k]
            for k in ("population", "newcomers", "elite"))
        if newcomers + elite >= population:
            raise UsageError(f"--newcomers + --elite must be below --population; got "
                             f"{newcomers} + {elite} with population {population}")
    if args.algorithm == "aquasurf" and args.space is not None:
        from .search.aquasurf.space import aquasurf_space

        try:
            aquasurf_space(args.space)
        except (ValueError, KeyError) as err:
            raise UsageError(f"--space: {err}") from None


def _is_model_file(text) -> bool:
    return text is not None and (text.endswith((".keras", ".h5")) or os.path.isfile(text))


@command("search", "search an activation function for your model file or a zoo model "
                   "(PANGAEA, CAFE, AQuaSurF, GRAFS), journaled and resumable",
         arguments=_search_arguments)
def search(args) -> int:
    """Run a search: every candidate is trained (AutoInit, then your model's compile()
    settings or the zoo recipe), every result is journaled in the SQLite store before the
    algorithm sees it, and a killed search resumes from the store. At the end the best
    functions and the baseline (your model's own activation, or ReLU) are trained
    --final-seeds times each and compared in a table.

    Your own model: --model my_model.keras --data data.npz (or an image folder, a saved
    tf.data folder, tfds:NAME); --out best.keras saves the model with the best function."""
    if args.executor == "ray":
        from .search.engine.executors import ray_available

        if not ray_available():  # at the start, never after work
            raise UsageError("--executor ray needs Ray: pip install 'keras_actfn[ray]'")
    args.ray_options = _ray_options(args)
    # --workers: local processes (default 1); on Ray the evaluations in flight (default:
    # what the cluster's free resources hold)
    args.ray_workers = args.workers
    if args.workers is None:
        args.workers = 1
    if getattr(args, "list_presets", False):
        from .search.grafs.settings import format_presets

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
    from .search.runner import format_comparison, run_named_search
    from .train import get_recipe

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
    from .search.user import ActivationSearch
    from .train.user_model import UserInputError

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


def _report_arguments(p):
    p.add_argument("store", help="a search journal written by `keras-actfn search`")
    p.add_argument("--top", type=positive_int, default=10, metavar="K",
                   help="functions in the table and the shape plot (default 10)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where the PNGs go (default: next to the store)")


@command("report", "top functions of a search journal, with progress and shape plots",
         arguments=_report_arguments)
def report(args) -> int:
    """Print the top-K functions (mean +- std over their runs, runtime) and the final
    comparison against ReLU, and write best-so-far, population-fitness and function-shape
    plots as PNGs."""
    from .search.report import write_report

    if not os.path.exists(args.store):
        raise UsageError(f"no search store at {args.store!r}")
    out = args.out or os.path.splitext(args.store)[0] + "_report"
    _check_writable_folder(out, "--out" if args.out else
                           "the report folder (beside the store; choose one with --out DIR)")
    text, _ = write_report(args.store, out_dir=out, k=args.top)
    print(text)
    return EXIT_OK


def _check_writable_folder(path, what):
    """UsageError unless ``path`` is, or can be made as, a folder this process can write
    (found before anything is written)."""
    probe = os.path.abspath(path)
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UsageError(f"{what} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: the folder {probe} is not writable")


# ----------------------------------------------------------------------------- bench
_BENCH_LABELS = {"ReLU": "relu(x)", "Swish": "swish(x)", "ELU": "elu(x)", "-ELU": "-elu(x)",
                 "tanh": "tanh(x)", "-tanh": "-tanh(x)", "|x|": "abs(x)", "-|x|": "-abs(x)"}
_BASELINE_NAMES = {"elu(x)": "ELU", "relu(x)": "ReLU", "selu(x)": "SELU",
                   "sigmoid(x)": "sigmoid", "softplus(x)": "Softplus",
                   "softsign(x)": "Softsign", "swish(x)": "Swish", "tanh(x)": "tanh"}


def _relu_class(space, labels):
    """The equivalence class (of ``labels``) holding ReLU's outputs, or None."""
    from .expr import fingerprint_key, parse

    relu = fingerprint_key(parse("relu(x)"))
    for i in range(len(space)):
        if fingerprint_key(parse(space.text(i))) == relu:
            return int(labels[i])
    return None


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
    b.add_argument("--limit", type=_positive, default=None, metavar="K",
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
    from .search.aquasurf.benchmark import load_benchmark

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
    import numpy as np

    from .search.aquasurf.benchmark import FisherEvaluator, build_benchmark
    from .search.aquasurf.space import aquasurf_space, count_unique, equivalence_classes
    from .search.engine.evaluator import make_evaluator
    from .search.engine.executors import make_executor
    from .search.runner import ProgressLine
    from .search.engine.store import StoreError
    from .train import get_recipe

    try:
        recipe = get_recipe(args.recipe)
        space = aquasurf_space(args.space)
    except (ValueError, KeyError) as err:
        raise UsageError(str(err)) from None
    task = args.task or recipe.task
    model = args.model or recipe.model
    overrides = {"epochs": args.epochs} if args.epochs is not None else {}
    try:
        evaluator = make_evaluator(task=task, model=args.model, recipe=args.recipe,
                                   test=not args.no_test, **overrides)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    if not args.no_fim:
        evaluator = FisherEvaluator(evaluator, model=model, task=task)
    if args.limit is not None:
        labels = equivalence_classes(space)
        chosen = list(dict.fromkeys(int(v) for v in labels))[:args.limit]
        relu = _relu_class(space, labels)  # replays start from ReLU (§6.6.1): keep its row
        if relu is not None and relu not in chosen:
            chosen = chosen[:max(args.limit - 1, 0)] + [relu]
        keep = np.isin(labels, chosen)
        functions = [space.text(i) for i in np.flatnonzero(keep)]
        total = len(chosen)
    else:
        functions, total = space, count_unique(space)
    store = args.store or os.path.join("runs", f"bench_{args.space}_{task}.db")
    for path in (store, args.out):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    context = {"task": task, "model": model, "recipe": args.recipe, "epochs": args.epochs,
               "space": args.space, "limit": args.limit, "fim": not args.no_fim,
               "test": not args.no_test}
    progress = None if args.quiet else ProgressLine(budget=total, every=10)
    print(f"space:       {args.space} ({len(space)} functions, {total} unique"
          f"{'' if args.limit is None else ', --limit'})")
    print(f"training:    {model} on {task}, recipe {args.recipe}"
          f"{'' if args.epochs is None else f', {args.epochs} epochs'}; FIM "
          f"{'off' if args.no_fim else 'on'}; store {store}", flush=True)
    try:
        with make_executor("local", args.workers) as pool:
            bench = build_benchmark(functions, evaluator, store, args.out, seed=args.seed,
                                    executor=pool, run_name="benchmark", context=context,
                                    progress=progress)
    except (ValueError, StoreError) as err:  # e.g. the store's run has other settings
        raise UsageError(str(err)) from None
    finally:
        if progress is not None:
            progress.close()
    acc = bench.values("Validation Accuracy")
    failed = sum(1 for f in bench.functions if bench.rows[f].get("Status") != "ok")
    fim = sum(1 for f in bench.functions if bench.rows[f].get("Fisher log eigenvalue CDF"))
    print(f"functions:   {len(bench)} ({failed} failed; {fim} with a valid FIM)")
    if np.isfinite(acc).any():
        name, value = bench.best()
        print(f"best:        {value:.4f}  {name}")
    print(f"table:       {os.path.abspath(args.out)}")
    return EXIT_OK


def _bench_replay(args) -> int:
    import json

    import numpy as np

    from .search.aquasurf.benchmark import plot_replay
    from .search.aquasurf.replay import (evaluations_summary, format_summary, parse_methods,
                                         replay_methods, top_fraction_threshold,
                                         write_replay_csv)
    from .search.aquasurf.surrogate import find_functions

    try:
        methods = parse_methods(args.methods)
    except ValueError as err:
        raise UsageError(str(err)) from None
    bench = _bench_table(args.benchmark)
    out = _bench_out_dir(args.out)
    values = bench.values("Validation Accuracy")
    try:
        threshold, k = top_fraction_threshold(values, args.top)
    except ValueError as err:
        raise UsageError(f"{args.benchmark}: {err}") from None
    log = None if args.quiet else (lambda message: print(message, flush=True))
    try:
        results = replay_methods(bench, methods, trials=args.trials, budget=args.budget,
                                 seed=args.seed, log=log)
    except ValueError as err:
        raise UsageError(str(err)) from None
    summaries = {name: evaluations_summary(result, threshold)
                 for name, result in results.items()}
    write_replay_csv(results, os.path.join(out, "replay.csv"))
    (relu,) = find_functions(["relu(x)"], bench.functions)
    reference = {}
    if relu is not None and np.isfinite(values[relu]):
        reference["ReLU"] = float(values[relu])
    plot_replay({m.label: results[m.name] for m in methods}, os.path.join(out, "replay.png"),
                reference=reference,
                title=f"{os.path.basename(args.benchmark)}: {args.trials} trials")
    payload = {"benchmark": os.path.abspath(args.benchmark), "functions": len(bench),
               "trials": args.trials, "budget": args.budget, "seed": args.seed,
               "top_fraction": args.top, "top_threshold": threshold, "top_count": k,
               "relu": reference.get("ReLU"), "methods": summaries}
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(_json_safe(payload), handle, indent=1, allow_nan=False)
    print(format_summary(summaries, threshold, k, fraction=args.top))
    print(f"\nwrote {os.path.join(out, 'replay.csv')}, replay.png and summary.json")
    return EXIT_OK


def _json_safe(value):
    """NaN/inf -> None, numpy scalars -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


def _bench_plot(args) -> int:
    import numpy as np

    from .search.aquasurf.plots import plot_embedding, plot_search_progress, plot_space_map
    from .search.aquasurf.replay import (FEATURE_KINDS, benchmark_coordinates, parse_methods,
                                         trace_search)
    from .search.aquasurf.surrogate import BASELINE_FUNCTIONS, find_functions

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
    values = bench.values("Validation Accuracy")
    names = list(_BENCH_LABELS)
    found = find_functions([_BENCH_LABELS[n] for n in names], bench.functions)
    labels = {n: i for n, i in zip(names, found) if i is not None}
    coordinates = {}
    needed = list(features) + ([trace.feature] if trace and trace.feature else [])
    for feature in dict.fromkeys(needed):
        try:
            coordinates[feature] = benchmark_coordinates(bench, feature, seed=args.seed)
        except ValueError as err:
            raise UsageError(str(err)) from None
    for feature in features:
        coords, mask = coordinates[feature]
        path = os.path.join(out, f"embedding_{feature}.png")
        plot_embedding(coords, values, path, labels=labels,
                       title=f"{int(mask.sum())} functions embedded by {feature}")
        print(f"embedding:   {path}")
    if trace is not None:
        if trace.feature is None:
            coords, mask = coordinates.get(features[0])
            candidates = None
        else:
            coords, mask = coordinates[trace.feature]
            candidates = np.flatnonzero(mask)
        try:
            rows, found_values = trace_search(
                bench, np.nan_to_num(coords) if trace.feature else None, trace.regressor,
                budget=args.budget, seed=args.seed, candidates=candidates)
        except ValueError as err:
            raise UsageError(str(err)) from None
        wanted = list(BASELINE_FUNCTIONS)
        base_rows = find_functions(wanted, bench.functions)
        baselines = {_BASELINE_NAMES.get(w, w): float(values[i])
                     for w, i in zip(wanted, base_rows)
                     if i is not None and np.isfinite(values[i])}
        path = os.path.join(out, f"progress_{trace.name}.png")
        plot_search_progress(found_values, path, baselines=baselines, start_size=8,
                             title=f"{trace.label}, seed {args.seed}")
        print(f"progress:    {path}")
        on_map = np.isfinite(coords[rows]).all(axis=1)
        path = os.path.join(out, f"space_map_{trace.name}.png")
        plot_space_map(coords, rows[on_map], found_values[on_map], path,
                       title=f"{trace.label}: {rows.size} evaluations")
        print(f"space map:   {path}")
        best = int(np.nanargmax(found_values)) if np.isfinite(found_values).any() else None
        if best is not None:
            print(f"best found:  {found_values[best]:.4f}  {bench.functions[rows[best]]} "
                  f"(evaluation {best + 1})")
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
