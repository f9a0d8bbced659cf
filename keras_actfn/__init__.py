"""keras_actfn: discover activation functions for a Keras model and initialize networks for them.

Quick tour::

    import keras_actfn as ka
    f = ka.parse("alpha*x - log(sigmoid(beta*x))")      # an activation function is a value
    layer = ka.CustomActivation(f, param_shape="per-channel")
    model2 = ka.replace_activations(model, "max(swish(x), 0)")   # swap a model's ReLUs

Importing the package as a library loads TensorFlow and registers the package's Keras
layers, so ``keras.models.load_model`` finds them without ``custom_objects``. The
``keras-actfn`` command imports nothing heavy until a sub-command needs it (``--help``
answers in a fraction of a second); the exports below resolve lazily there. So do they in
a process started with ``KERAS_ACTFN_LAZY_IMPORT=1``: one that only drives the search
engine (``keras_actfn.search.engine`` imports no TensorFlow) or reads stores, where a
TensorFlow start-up is seconds of waste; call :func:`load_all` there before loading a
``.keras`` file that holds the package's layers.
"""

__version__ = "0.1.0"

import importlib as _importlib
import os as _os
import sys as _sys

from ._lazy import lazy_exports

#: public name -> the module (relative to this package) that defines it
_EXPORTS = {
    "Expr": ".expr", "ParseError": ".expr", "evaluate": ".expr", "fingerprint": ".expr",
    "fingerprint_key": ".expr", "gaussian_moments": ".expr", "parse": ".expr",
    "simplify": ".expr",
    "CustomActivation": ".layers", "ActivationFunction": ".layers",
    "APL": ".layers.baselines", "PAU": ".layers.baselines", "SPLASH": ".layers.baselines",
    "PReLU": ".layers.baselines", "PSwish": ".layers.baselines",
    "BASELINE_FUNCTIONS": ".library", "DISCOVERED_FUNCTIONS": ".library",
    "SurgeryError": ".surgery", "find_activation_sites": ".surgery",
    "replace_activations": ".surgery",
    "ActivationSearch": ".search.user", "UserInputError": ".train.user_model",
    "evaluate_activation": ".train",
    "AutoInit": ".autoinit", "AutoInitVisualizer": ".autoinit",
    "keras_description": (".backend", "describe"),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
__all__.append("__version__")


def load_all():
    """Import every export now: registers the package's Keras layers (CustomActivation,
    the baselines, the model zoo's layers) for ``.keras`` loading."""
    for name in _EXPORTS:
        __getattr__(name)
    _importlib.import_module(".models", __name__)


def _start_tensorflow_quietly():
    """For the command line: import TensorFlow and let it find its devices with the native
    stderr pointed at /dev/null. TensorFlow >= 2.16 prints its start-up notices (oneDNN,
    CUDA stubs, cuInit on a machine without a GPU) before its log level applies, so no
    environment variable hides them; they are not the user's business. Python errors
    still surface (the descriptor is restored before anything is raised further)."""
    if "tensorflow" in _sys.modules:
        return
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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


def _started_by_command_line() -> bool:
    """True when this import is the ``keras-actfn`` entry point or ``python -m keras_actfn``
    (which imports the package with ``sys.argv[0] == "-m"``)."""
    argv0 = _sys.argv[0] if _sys.argv else ""
    return _os.path.basename(argv0 or "").startswith("keras-actfn") or argv0 == "-m"


def _lazy() -> bool:
    return _started_by_command_line() or _os.environ.get("KERAS_ACTFN_LAZY_IMPORT") == "1"


if not _lazy():
    load_all()
