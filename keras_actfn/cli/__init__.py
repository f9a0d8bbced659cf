"""The ``keras-actfn`` command line (also ``python -m keras_actfn``).

One module per subcommand (:mod:`.show`, :mod:`.autoinit`, :mod:`.evaluate`,
:mod:`.search`, :mod:`.report`, :mod:`.bench`); :mod:`.common` holds what they share. Each
subcommand is one function taking the parsed arguments and returning an exit status,
registered with :func:`~keras_actfn.cli.common.command` together with a function that
declares its arguments::

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

# importing a command module registers its command; --help lists them in this order
from . import show, autoinit, evaluate, search, report, bench  # noqa: E402,F401,I001
from .common import main

__all__ = ["main"]
