"""``python -m keras_actfn``: the same command line as ``keras-actfn``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
