"""A shorter tree with the same values: for reading found functions.

:func:`simplify` rewrites a tree bottom-up with identities that hold *exactly* under the
registry's own definitions (IEEE float arithmetic included), until nothing changes:

===============================  =====================================================
rewrite                          why it is exact
===============================  =====================================================
``identity(f)`` -> ``f``         the identity
``left(a, b)`` -> ``a``,         defined as ``a + 0*b`` (``zeros_like``): the other
``right(a, b)`` -> ``b``         input never reaches the value
``zero(f)`` -> ``0``,            ``zeros_like`` / ``ones_like``: constant whatever ``f``
``one(f)`` -> ``1``
``f * 1``, ``1 * f``, ``f / 1``  IEEE: multiplying or dividing by 1 returns the operand
-> ``f``
``f + 0``, ``0 + f``, ``f - 0``  IEEE: adding 0 returns the operand (``-0 + 0`` aside,
-> ``f``                         which compares equal)
``0 - f`` -> ``-f``              IEEE negation
``-(-f)`` -> ``f``               negation is exact
``f + f`` -> ``2 * f``           IEEE: ``x + x`` and ``2x`` round identically
``max(f, f)``, ``min(f, f)``     the same value twice
-> ``f``
``max(f, 0)``, ``max(0, f)``     the registry's relu / min0 *are* these
-> ``relu(f)``; ``min(f, 0)``,
``min(0, f)`` -> ``min0(f)``
an operator of constants only    folded to one constant (the registry's NumPy form, float64)
===============================  =====================================================

No rewrite needs a condition on the value of ``f`` (``f / f`` is *not* 1 where ``f`` is 0,
``f - f`` is not 0 where ``f`` overflows, so neither is rewritten); learnable parameters are
never folded. Searches train and store the text they proposed: the simplified form is
for display (tables, reports, the progress line) and for people reading an exported
function. ``tests/test_simplify.py`` checks every rule and random trees of every search
space against their simplified forms on 10,000 inputs.
"""

from __future__ import annotations

import numpy as np

from .graph import Apply, Const, Expr

__all__ = ["simplify", "simplified_text"]

_ABSORB = {"mul": 1.0, "div": 1.0, "add": 0.0, "sub": 0.0}


def _const(node, value=None) -> bool:
    return isinstance(node, Const) and (value is None or node.value == value)



def _fold(node: Apply) -> Expr:
    from .numeric import evaluate

    value = np.asarray(evaluate(node, np.zeros(1)), dtype=float).reshape(-1)[0]
    return Const(value) if np.isfinite(value) else node


def _rewrite(node: Apply, fold: bool = True) -> Expr:
    name, args = node.op.name, node.args
    if name == "identity":
        return args[0]
    if name == "left":
        return args[0]
    if name == "right":
        return args[1]
    if name == "zero":
        return Const(0.0)
    if name == "one":
        return Const(1.0)
    if name == "neg" and isinstance(args[0], Apply) and args[0].op.name == "neg":
        return args[0].args[0]
    if len(args) == 2:
        a, b = args
        if name in ("mul", "div") and _const(b, 1.0):
            return a
        if name == "mul" and _const(a, 1.0):
            return b
        if name in ("add", "sub") and _const(b, 0.0):
            return a
        if name == "add" and _const(a, 0.0):
            return b
        if name == "sub" and _const(a, 0.0):
            return Apply("neg", b)
        if name == "add" and a == b:
            return Apply("mul", Const(2.0), a)
        if name in ("max", "min") and a == b:
            return a
        if name == "max" and (_const(b, 0.0) or _const(a, 0.0)):
            return Apply("relu", a if _const(b, 0.0) else b)
        if name == "min" and (_const(b, 0.0) or _const(a, 0.0)):
            return Apply("min0", a if _const(b, 0.0) else b)
    if fold and all(isinstance(a, Const) for a in args):
        return _fold(node)
    return node


def _simplify_once(node: Expr, fold: bool) -> Expr:
    if not isinstance(node, Apply):
        return node
    new = node.with_args(*(_simplify_once(a, fold) for a in node.args))
    return _rewrite(new, fold) if isinstance(new, Apply) else new


def simplify(expr, fold: bool = True) -> Expr:
    """The simplified tree of ``expr`` (text or :class:`Expr`); see the module docstring.

    ``fold=False`` leaves constant subexpressions as they are: folding computes them once
    in float64, while a float32 layer computes them in float32 (a last-bit difference), so
    a function that will be *trained* (a GRAFS export) is simplified without folding and
    computes exactly what the unsimplified one did."""
    from .parse import parse

    node = parse(expr) if isinstance(expr, str) else expr
    for _ in range(64):  # every pass shrinks the tree or stops
        new = _simplify_once(node, fold)
        if new == node:
            return node
        node = new
    return node


def simplified_text(text: str, digits: int | None = 4) -> str:
    """What tables and plots show: ``str(simplify(text))`` with constants to ``digits``
    significant digits (a GRAFS mixing weight 0.73125986... reads 0.7313; ``None``: full
    precision). ``text`` unchanged when it is not a function (a label such as
    ``original``, text that does not parse). For reading only: the store keeps the
    function as trained, at full precision."""
    from .graph import _map_leaves

    try:
        node = simplify(text)
        if digits is not None:
            node = _map_leaves(node, lambda leaf: Const(float(f"{leaf.value:.{int(digits)}g}"))
                               if isinstance(leaf, Const) else leaf)
        return str(node)
    except Exception:  # noqa: BLE001 - display only: show what was stored
        return text
