"""Keras layers: the ``CustomActivation`` layer and the learnable baselines of §4.7."""

from .baselines import APL, BASELINE_LAYERS, PAU, SPLASH, PReLU, PSwish
from .custom import ActivationFunction, CustomActivation, activation_layer
from .sharing import PARAM_SHAPES, normalize_param_shape, parameter_shape

__all__ = ["CustomActivation", "ActivationFunction", "activation_layer", "PReLU", "PSwish", "APL", "PAU", "SPLASH",
           "BASELINE_LAYERS", "PARAM_SHAPES", "normalize_param_shape", "parameter_shape"]
