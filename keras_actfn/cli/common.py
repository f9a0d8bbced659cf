"""What every ``keras-actfn`` command shares: the command registry, the parser assembly,
:func:`main` (user errors as one line with exit status 2, our bugs with a traceback and
exit status 1) and the argparse types of the numeric flags.

A command module registers its function with :func:`command`; ``keras_actfn.cli`` imports
the command modules in the order ``--help`` lists them.
"""

from __future__ import annotations

import argparse
import math
import os
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
    #: ``(args, flags) -> (where, flags)``: how the error for flags the command does not
    #: take names the command and each flag (default: ``name`` and the flags as given)
    unknown: Callable[[argparse.Namespace, list], tuple] | None = None


#: registered subcommands, in the order ``--help`` lists them
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, *, arguments=None, description=None, unknown=None):
    """Decorator registering ``run(args) -> int`` as subcommand ``name``."""

    def register(run):
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        COMMANDS[name] = Command(name, help, arguments or (lambda parser: None), run,
                                 description or run.__doc__, unknown)
        return run

    return register


class UsageError(Exception):
    """Bad command-line input found after parsing; reported without a traceback, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

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
    from .. import _start_tensorflow_quietly, load_all

    _start_tensorflow_quietly()   # parsing and --help never import TensorFlow
    load_all()                    # registers our Keras layers for the models a command loads
    from ..expr import ParseError

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
        from ..errors import user_error_message

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
    """Exit 2 naming the flags the chosen command does not take (a command's ``unknown``
    hook may say more: `search` names the methods that take them)."""
    flags = [e for e in extra if e.startswith("-")] or extra
    where = args.command
    if args._command.unknown is not None:
        where, flags = args._command.unknown(args, flags)
    parser.exit(EXIT_USAGE,
                f"{PROG} {where}: error: unrecognized arguments: {', '.join(flags)}\n")


def _exit_code(code) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_FAILURE


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
