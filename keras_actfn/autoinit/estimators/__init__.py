"""Per-layer moment estimators: ``g_layer: (mu_in, nu_in) -> (mu_out, nu_out)`` of §5.3.

An estimator is ``fn(layer, inputs, ctx) -> Moments | list[Moments]`` where ``inputs`` is a
list with one :class:`~keras_actfn.autoinit.moments.Moments` per input tensor (in call
order) and ``ctx`` is the :class:`~keras_actfn.autoinit.core.Context` of the run (weight
drawing, the node's call arguments, Monte Carlo helpers). Estimators of weighted layers
draw the layer's weights through ``ctx`` when ``ctx.should_initialize(layer)`` and
otherwise propagate through the weights the layer has.

Lookup walks the class's MRO, so a subclass of ``Dense`` uses the ``Dense`` rule unless it
registers its own; user rules (``custom_distribution_estimators``) come first. Layers with
no rule are estimated by Monte Carlo on that layer alone (with a one-time warning).
"""

from __future__ import annotations

from typing import Callable

REGISTRY: dict[type, Callable] = {}


def register(*classes):
    """Decorator: ``@register(keras.layers.Dense)`` makes ``fn`` the rule for those classes."""
    def wrap(fn):
        for cls in classes:
            if cls is not None:
                REGISTRY[cls] = fn
        return fn
    return wrap


def lookup(obj, custom: dict | None = None):
    """The rule for ``obj`` (a layer or an operation), or None."""
    for cls in type(obj).__mro__:
        if custom and cls in custom:
            return custom[cls]
        if cls in REGISTRY:
            return REGISTRY[cls]
    return None


def load_all():
    """Import every estimator module so their ``@register`` decorators run."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
