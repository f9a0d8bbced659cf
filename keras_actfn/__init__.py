"""keras_actfn: discover activation functions for a Keras model and initialize networks for them.

Quick tour::

    import keras_actfn as ka
    f = ka.parse("alpha*x - log(sigmoid(beta*x))")      # an activation function is a value
    layer = ka.CustomActivation(f, param_shape="per-channel")
    model2 = ka.replace_activations(model, "max(swish(x), 0)")   # swap a model's ReLUs
"""

__version__ = "0.1.0"

from .backend import describe as keras_description  # noqa: E402
from .expr import (Expr, ParseError, evaluate, fingerprint, fingerprint_key,  # noqa: E402
                   gaussian_moments, parse)
from .layers import CustomActivation  # noqa: E402
from .layers.baselines import APL, PAU, SPLASH, PReLU, PSwish  # noqa: E402
from .library import BASELINE_FUNCTIONS, DISCOVERED_FUNCTIONS  # noqa: E402
from .surgery import SurgeryError, find_activation_sites, replace_activations  # noqa: E402
from . import models  # noqa: E402,F401 - registers the zoo's layers for .keras loading
from .search.user import ActivationSearch  # noqa: E402

__all__ = ["parse", "Expr", "ParseError", "evaluate", "fingerprint", "fingerprint_key",
           "gaussian_moments", "CustomActivation", "PReLU", "PSwish", "APL", "PAU", "SPLASH",
           "BASELINE_FUNCTIONS", "DISCOVERED_FUNCTIONS", "replace_activations",
           "find_activation_sites", "SurgeryError",
           "ActivationSearch", "keras_description", "__version__"]
