"""Keras layers: the ``CustomActivation`` layer and the learnable baselines of §4.7."""

from .baselines import APL, BASELINE_LAYERS, PAU, SPLASH, PReLU, PSwish, parameter_shape
from .custom import PARAM_SHAPES, CustomActivation

__all__ = ["CustomActivation", "PARAM_SHAPES", "PReLU", "PSwish", "APL", "PAU", "SPLASH",
           "BASELINE_LAYERS", "parameter_shape"]
