"""``keras-actfn autoinit``: set a saved model's weights with AutoInit and save it."""

from __future__ import annotations

import os
import re
import sys

from .common import (EXIT_FAILURE, EXIT_OK, PROG, UsageError, _int_type, command,
                     finite_float, positive_float, seed_int)


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
    from ..backend import KERAS3, keras

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
    from ..expr import ParseError

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

    from ..autoinit import AutoInit, AutoInitError
    from ..backend import KERAS3

    if KERAS3 and not args.output.endswith((".keras", ".h5")):
        raise UsageError(f"-o must end in .keras (or .h5); got {args.output}")
    model = _load_keras_model(args.model)
    from ..keras_graph import all_layers

    names = {layer.name for layer in all_layers(model)}
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
            from ..autoinit import AutoInitVisualizer

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
