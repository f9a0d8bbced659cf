"""``keras-actfn report``: the top functions of a search journal, and its plots."""

from __future__ import annotations

import os

from .common import EXIT_OK, UsageError, command, positive_int


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
    from ..search.report import write_report

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
