"""``keras-actfn show``: one activation function's text, math form, parameters, size and
Gaussian moments, and its plot."""

from __future__ import annotations

import hashlib
import math
import os
import re
import sys

from .common import (EXIT_FAILURE, EXIT_OK, PROG, UsageError, command, finite_float,
                     non_negative_int, seed_int)


def default_plot_name(text: str) -> str:
    """``activation_<slug>_<hash8>.png`` for canonical text: readable, and unique per text."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40].rstrip("_")
    return f"activation_{slug}_{digest}.png" if slug else f"activation_{digest}.png"


def _format_number(value: float) -> str:
    return repr(float(value)) if not math.isfinite(value) else f"{value:.10g}"


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
    from ..expr import gaussian_moments, parse

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
        from ..plots import plot_activation
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
