"""AutoInit: analytic mean/variance-preserving weight initialization (dissertation ch. 5)."""

from .compat import CenteredUnitNorm, LayerOutputDistributionEstimator
from .core import AutoInit, AutoInitError, Context, Record
from .moments import Moments, gaussian_expect
from .visualize import AutoInitVisualizer

__all__ = ["AutoInit", "AutoInitError", "Context", "Record", "Moments", "gaussian_expect",
           "AutoInitVisualizer", "LayerOutputDistributionEstimator", "CenteredUnitNorm"]
