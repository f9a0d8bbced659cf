"""keras_actfn: discover activation functions for a Keras model and initialize networks for them.

Quick tour::

    import keras_actfn as ka
    f = ka.parse("alpha*x - log(sigmoid(beta*x))")      # an activation function is a value
    layer = ka.CustomActivation(f, param_shape="per-channel")
    model2 = ka.replace_activations(model, "max(swish(x), 0)")   # swap a model's ReLUs
"""

__version__ = "0.1.0"

import os as _os  # noqa: E402
import sys as _sys  # noqa: E402


def _start_tensorflow_quietly():
    """The command line: import TensorFlow and let it find its devices with the native
    stderr pointed at /dev/null. TensorFlow >= 2.16 prints its start-up notices (oneDNN,
    CUDA stubs, cuInit on a machine without a GPU) before its log level applies, so no
    environment variable hides them; they are not the user's business. Python errors
    still surface (the descriptor is restored before anything is raised further)."""
    _sys.stderr.flush()
    saved = _os.dup(2)
    devnull = _os.open(_os.devnull, _os.O_WRONLY)
    _os.dup2(devnull, 2)
    _os.close(devnull)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        _os.dup2(saved, 2)
        _os.close(saved)


if "tensorflow" not in _sys.modules and (
        _os.path.basename(_sys.argv[0] or "").startswith("keras-actfn")
        or (_sys.argv and _sys.argv[0] == "-m")):  # `python -m keras_actfn` imports us first
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _start_tensorflow_quietly()

from .backend import describe as keras_description  # noqa: E402
from .expr import (Expr, ParseError, evaluate, fingerprint, fingerprint_key,  # noqa: E402
                   gaussian_moments, parse, simplify)
from .layers import CustomActivation  # noqa: E402
from .layers.baselines import APL, PAU, SPLASH, PReLU, PSwish  # noqa: E402
from .library import BASELINE_FUNCTIONS, DISCOVERED_FUNCTIONS  # noqa: E402
from .surgery import SurgeryError, find_activation_sites, replace_activations  # noqa: E402
from . import models  # noqa: E402,F401 - registers the zoo's layers for .keras loading
from .search.user import ActivationSearch  # noqa: E402

__all__ = ["parse", "simplify", "Expr", "ParseError", "evaluate", "fingerprint", "fingerprint_key",
           "gaussian_moments", "CustomActivation", "PReLU", "PSwish", "APL", "PAU", "SPLASH",
           "BASELINE_FUNCTIONS", "DISCOVERED_FUNCTIONS", "replace_activations",
           "find_activation_sites", "SurgeryError",
           "ActivationSearch", "keras_description", "__version__"]
