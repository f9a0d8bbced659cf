"""Checks for the settings of the package's layers, whoever passes them.

A layer's settings come from Python code or from a ``.keras`` file's JSON config, which is
untrusted: ``center: "false"`` must not turn centering on (``bool("false")`` is True), a
hinge count of 10**9 must not build a graph of 10**9 operations. Each check returns the
value in its canonical Python type or raises ``ValueError`` naming the layer, the field,
what it accepts and what it got.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["check_bool", "check_number", "check_int", "check_numbers", "from_config"]


def from_config(parent_from_config, config):
    """``parent_from_config(config)`` (Keras's ``Layer.from_config``), with our own errors
    raised as they are.

    Keras 3 turns every exception of a layer's constructor into a ``TypeError`` that begins
    "Error when deserializing class ..." and prints the whole config, and ``load_model``
    wraps that once more; the ``ValueError`` naming the field (or the bad function text)
    is what the user needs, so it is re-raised unwrapped. ``tf_keras`` does not wrap.
    """
    try:
        return parent_from_config(config)
    except TypeError as err:
        cause = err.__context__
        if isinstance(cause, ValueError) and not isinstance(cause, TypeError):
            raise cause from None
        raise


def _got(value) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} ({type(value).__name__})"


def _is_real(value) -> bool:
    return (isinstance(value, (numbers.Real, np.floating, np.integer))
            and not isinstance(value, (bool, np.bool_)))


def check_bool(value, field: str, layer: str) -> bool:
    """``value`` as a bool; only ``True``/``False`` (JSON ``true``/``false``) pass."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{layer}: {field} must be true or false (a boolean), got {_got(value)}")


def check_number(value, field: str, layer: str, *, positive: bool = False,
                 allow_none: bool = False):
    """``value`` as a finite float (``None`` passes through when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if _is_real(value):
        number = float(value)
        if math.isfinite(number) and (number > 0 or not positive):
            return number
    what = "a positive finite number" if positive else "a finite number"
    if allow_none:
        what += " or null"
    raise ValueError(f"{layer}: {field} must be {what}, got {_got(value)}")


def check_int(value, field: str, layer: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; integral floats (``7.0``) pass, bools do not."""
    if _is_real(value) and math.isfinite(float(value)) and float(value) == int(value):
        number = int(value)
        if low <= number <= high:
            return number
    raise ValueError(f"{layer}: {field} must be an integer from {low} to {high}, "
                     f"got {_got(value)}")


def check_numbers(value, field: str, layer: str, max_items: int) -> tuple:
    """``value`` as a non-empty tuple of at most ``max_items`` finite floats."""
    if isinstance(value, (list, tuple, np.ndarray)) and 1 <= len(value) <= max_items \
            and all(_is_real(v) and math.isfinite(float(v)) for v in value):
        return tuple(float(v) for v in value)
    raise ValueError(f"{layer}: {field} must be a list of 1 to {max_items} finite numbers, "
                     f"got {_got(value)}")
