"""Activation functions as immutable expression trees.

A function of one input ``x`` is a tree whose leaves are the input (:data:`X`), numeric
constants (:class:`Const`) and named learnable-parameter slots (:class:`Param`), and whose
inner nodes apply a registry operator (:class:`Apply`). Trees compare and hash by
structure, so they can key dictionaries and de-duplicate populations; ``str(f)`` is the
canonical text, which :func:`keras_actfn.expr.parse` turns back into an equal tree.

Canonical text: ``+ - * / ^`` and unary minus print infix with the fewest parentheses that
keep the structure; every other operator prints in call form (``max(x, 0)``); constants
print as the shortest decimal that reads back to the same float64.
"""

from __future__ import annotations

import math
from typing import Iterator, Mapping

import numpy as np

from . import ops as _ops

#: the names a learnable parameter slot may take, in the order a search hands them out
PARAM_NAMES = ("alpha", "beta", "gamma", "delta", "zeta", "eta", "theta", "kappa", "lambda",
               "mu", "nu", "xi", "rho", "tau", "phi", "chi", "psi", "omega")
_PARAM_PRETTY = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "zeta": "ζ",
                 "eta": "η", "theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
                 "xi": "ξ", "rho": "ρ", "tau": "τ", "phi": "φ", "chi": "χ", "psi": "ψ",
                 "omega": "ω"}

#: the deepest tree allowed (operator nodes on one root-to-leaf path). Printing, parsing and
#: evaluation recurse this deep; every tree within it prints to text that parses back.
MAX_DEPTH = 64

#: the largest tree allowed: nodes of every kind (operators, x, constants, parameters),
#: counted as printed, i.e. a sub-tree used twice counts twice. It bounds the length of the
#: canonical text (:data:`keras_actfn.expr.parse.MAX_LENGTH` is derived from it, so every
#: tree within both limits prints to text the parser accepts) and the cost of evaluating it.
MAX_SIZE = 8192

# precedence for printing: higher binds tighter
_PREC = {"add": 1, "sub": 1, "mul": 2, "div": 2, "neg": 3, "pow": 4}
_ATOM = 5


class Expr:
    """Base of the four node kinds. Immutable; equality and hash are structural.

    An inner node's key holds its children (not their keys), so hashing is O(1) per node
    and equality compares cached hashes before it descends.
    """

    __slots__ = ("_key", "_hash")
    _depth = 0
    _size = 1

    def _freeze(self, key):
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_hash", hash(key))

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name):  # slots can be deleted unless this is closed too
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other):
        return isinstance(other, Expr) and self._hash == other._hash and self._key == other._key

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return self._hash

    def __str__(self):
        return to_text(self)

    def __repr__(self):
        return f"parse({to_text(self)!r})"

    def __reduce__(self):  # pickle/copy as text: the tree is data, never code
        from .parse import parse

        return (parse, (to_text(self),))

    # -- structure ---------------------------------------------------------------------
    @property
    def children(self) -> tuple:
        return ()

    def walk(self) -> Iterator["Expr"]:
        """Every node, parents before children, left to right."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    @property
    def params(self) -> tuple:
        """Distinct parameter slot names in order of first appearance."""
        seen = {}
        for node in self.walk():
            if isinstance(node, Param):
                seen.setdefault(node.name, None)
        return tuple(seen)

    @property
    def node_count(self) -> int:
        """Number of operator nodes (leaves x, constants and parameters not counted)."""
        return sum(isinstance(n, Apply) for n in self.walk())

    @property
    def edge_count(self) -> int:
        """Number of operator inputs: the edges into operator nodes."""
        return sum(len(n.args) for n in self.walk() if isinstance(n, Apply))

    @property
    def depth(self) -> int:
        """Operator nodes on the longest root-to-leaf path."""
        return self._depth

    @property
    def size(self) -> int:
        """Nodes of every kind as the canonical text prints them (a shared sub-tree counts
        once per use); at most :data:`MAX_SIZE`."""
        return self._size

    def substitute(self, values: Mapping[str, float]) -> "Expr":
        """Replace parameter slots named in ``values`` by constants."""
        return _map_leaves(self, lambda n: Const(values[n.name])
                           if isinstance(n, Param) and n.name in values else n)

    def pretty(self) -> str:
        """Math form for people: ``x·σ(x)``."""
        return to_pretty(self)

    # arithmetic builds graphs: x * sigmoid(x) written in Python
    def __add__(self, o): return Apply("add", self, _lift(o))
    def __radd__(self, o): return Apply("add", _lift(o), self)
    def __sub__(self, o): return Apply("sub", self, _lift(o))
    def __rsub__(self, o): return Apply("sub", _lift(o), self)
    def __mul__(self, o): return Apply("mul", self, _lift(o))
    def __rmul__(self, o): return Apply("mul", _lift(o), self)
    def __truediv__(self, o): return Apply("div", self, _lift(o))
    def __rtruediv__(self, o): return Apply("div", _lift(o), self)
    def __pow__(self, o): return Apply("pow", self, _lift(o))
    def __neg__(self): return Apply("neg", self)


class Var(Expr):
    """The input ``x``. Use the singleton :data:`X`."""

    __slots__ = ()

    def __init__(self):
        self._freeze(("x",))


class Const(Expr):
    """A finite numeric constant (stored as float64)."""

    __slots__ = ("value",)

    def __init__(self, value):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"constants must be finite, got {value!r}")
        if value == 0.0:
            value = 0.0  # -0.0 and 0.0 are one constant
        object.__setattr__(self, "value", value)
        self._freeze(("c", value))


class Param(Expr):
    """A named learnable-parameter slot (``alpha``, ``beta``, ...)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        if name not in PARAM_NAMES:
            raise ValueError(f"parameter names are {', '.join(PARAM_NAMES)}; got {name!r}")
        object.__setattr__(self, "name", name)
        self._freeze(("p", name))


#: compositions stored as one numerically stable operator, whoever builds them (parser or
#: code): log(sigmoid(e)) is log_sigmoid(e), so every tree still prints to text that
#: parses back to an equal tree
FUSIONS = {("log", "sigmoid"): "log_sigmoid"}


class Apply(Expr):
    """An operator applied to sub-expressions.

    Built in ``__new__`` (there is no ``__init__``) so a fusion can hand back the fused node.
    """

    __slots__ = ("op", "args", "_depth", "_size")

    def __new__(cls, op, *args):
        op = op if isinstance(op, _ops.Operator) else _ops.get(op)
        args = tuple(args)
        if len(args) == 1 and isinstance(args[0], Apply):
            fused = FUSIONS.get((op.name, args[0].op.name))
            if fused:
                return Apply(fused, *args[0].args)
        self = super().__new__(cls)
        if not op.accepts(len(args)):
            raise ValueError(f"{op.name} takes {op.arity_text} inputs, got {len(args)}")
        for a in args:
            if not isinstance(a, Expr):
                raise TypeError(f"operator inputs must be Expr, got {type(a).__name__}")
        depth = 1 + max(a._depth for a in args)
        if depth > MAX_DEPTH:
            raise ValueError(f"expression deeper than {MAX_DEPTH} operators")
        size = 1 + sum(a._size for a in args)
        if size > MAX_SIZE:
            raise ValueError(f"expression larger than {MAX_SIZE} nodes (got {size})")
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "_depth", depth)
        object.__setattr__(self, "_size", size)
        self._freeze((op.name,) + args)
        return self

    @property
    def children(self):
        return self.args

    def with_args(self, *args) -> "Apply":
        return Apply(self.op, *args)


X = Var()


def _lift(v) -> Expr:
    return v if isinstance(v, Expr) else Const(v)


def _map_leaves(node, fn):
    if isinstance(node, Apply):
        return node.with_args(*(_map_leaves(a, fn) for a in node.args))
    return fn(node)


# ------------------------------------------------------------------------- printing
def _format_const(v: float) -> str:
    text = repr(v)
    return text[:-2] if text.endswith(".0") else text


def _prec(node) -> int:
    if isinstance(node, Apply) and node.op.name in _PREC:
        return _PREC[node.op.name]
    if isinstance(node, Const) and node.value < 0:
        return _PREC["neg"]  # "-2" reads like a negation: keep it out of a power's base
    return _ATOM


def to_text(node: Expr) -> str:
    """Canonical text: parses back to an equal tree."""
    if isinstance(node, Var):
        return "x"
    if isinstance(node, Const):
        return _format_const(node.value)
    if isinstance(node, Param):
        return node.name
    name = node.op.name
    args = node.args
    if name == "neg" and not isinstance(args[0], Const):
        return "-" + _wrap(args[0], _PREC["neg"])
    if name in ("add", "sub", "mul", "div"):
        p = _PREC[name]
        return f"{_wrap(args[0], p)} {node.op.infix} {_wrap(args[1], p + 1)}"
    if name == "pow":
        return f"{_wrap(args[0], _ATOM)}^{_wrap(args[1], _PREC['neg'])}"
    return f"{name}({', '.join(to_text(a) for a in args)})"


def _wrap(node, min_prec) -> str:
    text = to_text(node)
    return f"({text})" if _prec(node) < min_prec else text


class _Pretty:
    """Format-spec hook: ``{0:a}`` in a template parenthesizes a non-atomic argument."""

    def __init__(self, node):
        self.node = node

    def __format__(self, spec):
        text = to_pretty(self.node)
        if spec == "a" and _prec(self.node) < _ATOM and not text.startswith("("):
            return f"({text})"
        return text


def to_pretty(node: Expr) -> str:
    """Unicode math form, for plots and tables."""
    if isinstance(node, Var):
        return "x"
    if isinstance(node, Const):
        return _format_const(node.value)
    if isinstance(node, Param):
        return _PARAM_PRETTY[node.name]
    name, args = node.op.name, node.args
    if name in ("add", "sub", "mul", "div"):
        p = _PREC[name]
        left = _pretty_wrap(args[0], p)
        right = _pretty_wrap(args[1], p + 1)
        return node.op.pretty.format(_Raw(left), _Raw(right))
    if name == "pow":
        return f"{_pretty_wrap(args[0], _ATOM)}^{_pretty_wrap(args[1], _ATOM)}"
    if node.op.arity == _ops.VARIADIC:
        return node.op.pretty.format(args=", ".join(to_pretty(a) for a in args))
    return node.op.pretty.format(*(_Pretty(a) for a in args))


class _Raw(str):
    def __format__(self, spec):
        return str(self)


def _pretty_wrap(node, min_prec):
    text = to_pretty(node)
    return f"({text})" if _prec(node) < min_prec else text


# ------------------------------------------------------------------------ evaluation
def evaluate(node: Expr, x, params: Mapping | None = None, backend: str = "numpy"):
    """Evaluate ``node`` at ``x``.

    ``backend="numpy"`` computes in float64 with the NumPy implementations;
    ``backend="tf"`` builds TensorFlow ops (use it inside layers and ``tf.function``).
    Parameter slots missing from ``params`` take the value 1 (their initial value).
    The result has the shape of ``x`` broadcast with the parameters.
    """
    params = params or {}
    if backend == "numpy":
        x = np.asarray(x, dtype=np.float64)

        def const(v):
            return np.float64(v)

        def fn(op):
            return op.np_fn

        with np.errstate(all="ignore"):
            y = _evaluate(node, x, params, const, fn, {})
            return np.broadcast_to(y, np.broadcast_shapes(np.shape(y), x.shape)).copy()
    if backend == "tf":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        # plain numbers (Python or NumPy) take the input's dtype; tensors pass as they are
        params = {k: v if tf.is_tensor(v) or isinstance(v, tf.Variable)
                  else tf.constant(np.asarray(v, dtype=x.dtype.as_numpy_dtype))
                  for k, v in params.items()}

        def const(v):
            return tf.constant(v, dtype=x.dtype)

        def fn(op):
            return op.tf_fn

        y = _evaluate(node, x, params, const, fn, {})
        if y.shape != x.shape:  # constants and parameter-only functions
            y = y + tf.zeros_like(x)
        return y
    raise ValueError(f"backend must be 'numpy' or 'tf', got {backend!r}")


def _evaluate(node, x, params, const, fn, memo):
    hit = memo.get(node)
    if hit is not None:
        return hit
    if isinstance(node, Var):
        out = x
    elif isinstance(node, Const):
        out = const(node.value)
    elif isinstance(node, Param):
        out = params[node.name] if node.name in params else const(1.0)
    else:
        out = fn(node.op)(*(_evaluate(a, x, params, const, fn, memo) for a in node.args))
    memo[node] = out
    return out
