"""Operations of a functional graph (§5.4: arithmetic, matmul 5.28-5.30, reductions 5.31-5.32).

Keras 3 records a call of ``keras.ops.*`` on symbolic tensors as an ``Operation`` node (its
options are attributes of the operation, its operands the node's call arguments); the legacy
``tf_keras`` records a call of a TensorFlow function as a ``TFOpLambda`` (or
``SlicingOpLambda``) layer whose ``function`` is the TensorFlow function itself. The rules
here dispatch on the operation's class, or on the TensorFlow function object (compared after
unwrapping TensorFlow's dispatch decorators, so ``tf.add`` and ``tf.math.add`` are one
function), never on names, and read the options from the node's actual arguments.

Both Kerases share one moment algebra (inputs assumed independent, as in the seeds):

* sums and differences (5.18, 5.20), products (5.21), ``add_n``;
* elementwise functions of one tensor (activations, ``exp``, ``abs``, ``square``, ``x * 2.0``,
  ``1.0 - x``, ``clip``, ...): the real operation is evaluated once on the Gaussian quadrature
  grid of :func:`~keras_actfn.autoinit.moments.gaussian_expect`, with its constant operands
  as they are. A constant operand is a call argument that is not one of the node's input
  tensors; an array constant gives the mixture over its elements. Points where the function
  is undefined (``sqrt``, ``log`` of negatives) are left out and the rest renormalized, with a
  warning;
* elementwise functions of two different tensors other than +, -, * (``divide``,
  ``maximum``, ``pow``, ...): a seeded Monte Carlo over pairs, through the real operation;
* ``matmul``/``dot``/``tensordot``/two-operand ``einsum``: 5.29-5.30 with ``n`` the product of
  the contracted sizes (letters summed in one operand only are reduced first with 5.32); a
  constant matrix operand acts as the weights of a dense layer;
* ``mean``/``sum`` over axes: 5.31/5.32 with ``D`` the product of the reduced sizes; ``max``/
  ``min``: the exact moments of the extreme of ``D`` normals. ``axis=None`` reduces every
  axis but the (unknown) batch axis;
* reshape, transpose, expand/squeeze, slicing, gather, tile, split, unstack, cast: identity
  (5.25); concatenate/stack: the element-weighted mixture (5.22-5.23); constant padding: the
  mixture with the pad value (5.24 generalized);
* softmax and friends: Monte Carlo on the operation alone (no warning: it is the method).

Anything else falls to the Monte Carlo on the operation alone in ``core.estimate`` (with a
one-time warning), which runs the operation with its real constant arguments.
"""

from __future__ import annotations

import importlib
import inspect
import math

import numpy as np

from ...backend import KERAS3, keras, tf
from ..moments import Moments, max_of_normals, quadrature_grid
from . import register
from .fallback import monte_carlo
from .weighted import linear_moments

_MIXTURE_POINTS = 64        # elements of an array constant averaged exactly
_PAIR_SAMPLES = 200_000     # Monte Carlo pairs for elementwise functions of two tensors


class Unsupported(Exception):
    """The analytic rule does not apply to this call; Monte Carlo takes over."""


# ============================================================ moment algebra
def sum_moments(ms, signs=None) -> Moments:
    """Independent sum (5.18); ``signs`` of -1 give differences (5.20)."""
    signs = signs or [1] * len(ms)
    return Moments(sum(s * m.mean for s, m in zip(signs, ms)), sum(m.var for m in ms))


def product_moments(ms) -> Moments:
    """Independent product (5.21)."""
    mean = float(np.prod([m.mean for m in ms]))
    second = float(np.prod([m.second for m in ms]))
    return Moments(mean, max(second - mean * mean, 0.0))


def matmul_moments(a: Moments, b: Moments, n: int) -> Moments:
    """Entries of a product of independent matrices contracting ``n`` terms (5.29-5.30)."""
    return Moments(n * a.mean * b.mean,
                   max(n * (a.second * b.second - a.mean ** 2 * b.mean ** 2), 0.0))


def reduce_moments(kind: str, m: Moments, size: int) -> Moments:
    """Mean (5.31), sum (5.32), max or min of ``size`` i.i.d. N(mean, var) elements."""
    size = max(int(size), 1)
    if kind == "mean":
        return Moments(m.mean, m.var / size)
    if kind == "sum":
        return Moments(size * m.mean, size * m.var)
    e1, e2 = max_of_normals(size)
    std = math.sqrt(max(m.var, 0.0))
    sign = 1.0 if kind == "max" else -1.0
    return Moments(m.mean + sign * std * e1, m.var * max(e2 - e1 * e1, 0.0))


def mixture(parts) -> Moments:
    """Moments of a mixture: ``parts`` is [(Moments, weight)] (5.22-5.23)."""
    total = float(sum(w for _, w in parts))
    mean = sum(w * m.mean for m, w in parts) / total
    second = sum(w * m.second for m, w in parts) / total
    return Moments(mean, max(second - mean * mean, 0.0))


def grid_expect(fn, m: Moments, warn=None) -> Moments:
    """``gaussian_expect`` tolerating points where ``fn`` is undefined (NaN): they are left out
    and the remaining mass renormalized (``warn(mass_left_out)`` is called)."""
    if m.var <= 0:
        y = np.asarray(fn(np.array([float(m.mean)])), dtype=np.float64).reshape(-1)[0]
        return Moments(float(y), 0.0)
    z, w = quadrature_grid()
    with np.errstate(all="ignore"):
        y = np.asarray(fn(m.mean + math.sqrt(m.var) * z), dtype=np.float64).reshape(-1)
        ok = ~np.isnan(y)
        mass = float(w[ok].sum() / w.sum())
        if mass < 1e-3:
            raise Unsupported("the function is undefined almost everywhere on the input "
                              "distribution")
        if mass < 1.0 - 1e-9 and warn is not None:
            warn(1.0 - mass)
        ww = w[ok] / w[ok].sum()
        m1 = float(np.dot(ww, y[ok]))
        m2 = float(np.dot(ww, y[ok] * y[ok]))
    return Moments(m1, max(m2 - m1 * m1, 0.0) if math.isfinite(m2) else math.inf)


# ============================================================ one call of one operation
def _is_array(v) -> bool:
    return isinstance(v, (np.ndarray, np.generic)) or tf.is_tensor(v) or \
        (hasattr(v, "numpy") and hasattr(v, "shape"))


def _shape(v):
    return tuple(v.shape) if hasattr(v, "shape") else np.shape(v)


def _size(shape) -> int:
    """Elements per example: product of the known non-batch dimensions."""
    return int(np.prod([d for d in shape[1:] if d is not None] or [1]))


class OpCall:
    """The node being estimated: which arguments are tensors, their moments, and how to
    run the real operation with values substituted for them."""

    def __init__(self, op, inputs, ctx):
        self.op, self.inputs, self.ctx, self.node = op, inputs, ctx, ctx.node
        self.by_id = {id(t): m for t, m in zip(self.node.inputs, inputs)}
        seen, self.tensors = set(), []
        for t in self.node.inputs:
            if id(t) not in seen:
                seen.add(id(t))
                self.tensors.append(t)

    def is_tensor(self, v) -> bool:
        return id(v) in self.by_id

    def moments(self, v) -> Moments:
        return self.by_id[id(v)]

    def constants(self):
        """Array-valued constant operands (size > 1) among the call's arguments."""
        leaves = tf.nest.flatten([list(self.node.call_args), dict(self.node.call_kwargs)])
        return [v for v in leaves if not self.is_tensor(v) and _is_array(v)
                and int(np.prod(_shape(v))) > 1]

    def run(self, values: dict, replace: dict | None = None):
        """Call the operation with ``values[id(tensor)]`` for its tensors and
        ``replace[id(constant)]`` for constants."""
        table = dict(replace or {})
        table.update(values)

        def swap(v):
            return table.get(id(v), v)

        args = [swap(a) if not isinstance(a, (list, tuple)) else type(a)(swap(b) for b in a)
                for a in self.node.call_args]
        kwargs = {k: swap(v) if not isinstance(v, (list, tuple)) else
                  type(v)(swap(b) for b in v) for k, v in self.node.call_kwargs.items()}
        kwargs.pop("training", None)
        kwargs.pop("mask", None)
        return self.op(*args, **kwargs)

    def warn(self, key, message):
        self.ctx.warn_once((type(self.op), key), f"{self.op.name}: {message}")


def _to_np(y) -> np.ndarray:
    return np.asarray(y, dtype=np.float64).reshape(-1)


# ============================================================ rule bodies (both Kerases)
def elementwise(call: OpCall, kind=None, operands=None) -> Moments:
    """An elementwise operation; ``kind`` in {'add', 'sub', 'mul'} marks +, -, *."""
    tensors = call.tensors
    if len(tensors) == 2 and kind and operands is not None and len(operands) >= 2 and \
            all(call.is_tensor(o) for o in operands[:2]):
        a, b = (call.moments(o) for o in operands[:2])
        if kind == "add":
            return sum_moments([a, b])
        if kind == "sub":
            return sum_moments([a, b], [1, -1])
        return product_moments([a, b])
    if len(tensors) == 1:
        return _unary(call, tensors[0])
    if len(tensors) == 2 and not call.constants():
        return _pairs(call, tensors)
    raise Unsupported("elementwise operation of more than two tensors or with array "
                      "constants and several tensors")


def _unary(call: OpCall, tensor) -> Moments:
    m = call.moments(tensor)
    consts = call.constants()
    if len(consts) > 1:
        raise Unsupported("several array constants")

    def warn(mass):
        call.warn("domain", f"undefined on {mass:.2e} of the Gaussian input mass; "
                            "AutoInit conditions the moments on its domain")

    # the grid along the first axis, size-1 axes for the rest: the operation sees a tensor of
    # the symbolic input's rank, and an array constant (replaced by one of its elements, with
    # its rank kept) broadcasts against it exactly as it does in the model
    rank = max(len(_shape(tensor)), 1)

    def with_constant(replace):
        def fn(x):
            g = tf.constant(np.asarray(x, dtype=np.float32).reshape((-1,) + (1,) * (rank - 1)))
            y = _to_np(call.run({id(tensor): g}, replace))
            if y.size != g.shape[0]:
                raise Unsupported("the operation is not elementwise")
            return y
        return fn

    if not consts:
        return grid_expect(with_constant(None), m, warn)
    const = consts[0]
    values = _to_np(const)
    dtype = np.asarray(const).dtype
    picks = np.unique(np.linspace(0, values.size - 1, min(values.size, _MIXTURE_POINTS))
                      .round().astype(int))
    parts = [(grid_expect(with_constant({id(const): np.full((1,) * len(_shape(const)),
                                                            values[i], dtype=dtype)}),
                          m, warn), 1.0) for i in picks]
    return mixture(parts)


def _pairs(call: OpCall, tensors) -> Moments:
    """Seeded Monte Carlo over independent pairs through the real operation."""
    rng = np.random.default_rng(4321)
    n = min(_PAIR_SAMPLES, max(call.ctx.mc_samples, 1000))
    values = {}
    for t in tensors:
        m = call.moments(t)
        x = rng.standard_normal(n) * math.sqrt(max(m.var, 0.0)) + m.mean
        values[id(t)] = tf.constant(x.astype(np.float32))
    y = _to_np(call.run(values))
    if y.size != n:
        raise Unsupported("the operation is not elementwise")
    ok = np.isfinite(y)
    if call.ctx.record is not None:
        call.ctx.record.method = "monte_carlo"
    return Moments(float(y[ok].mean()), float(y[ok].var()))


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(1, ndim))
    axes = [axis] if isinstance(axis, (int, np.integer)) else list(np.asarray(axis).reshape(-1))
    return tuple(sorted({int(a) % ndim for a in axes}))


def reduction(call: OpCall, kind: str, tensor, axis) -> Moments:
    if not call.is_tensor(tensor):
        raise Unsupported("reduction of a constant")
    shape = _shape(tensor)
    if tf.is_tensor(axis) or (hasattr(axis, "shape") and not isinstance(axis, np.ndarray)):
        axis = np.asarray(axis)
    axes = _normalize_axes(axis, len(shape))
    dims = [shape[a] for a in axes if a != 0]
    if any(d is None for d in dims):
        raise Unsupported(f"reduction over an axis of unknown size (shape {shape})")
    return reduce_moments(kind, call.moments(tensor), int(np.prod(dims or [1])))


def _dim(shape, index):
    try:
        return shape[index]
    except IndexError:
        return None


def matmul(call: OpCall, a, b, transpose_a=False, transpose_b=False) -> Moments:
    """``a @ b`` (batched); a constant 2-D operand acts as dense weights."""
    sa, sb = _shape(a), _shape(b)
    if call.is_tensor(a) and call.is_tensor(b):
        if a is b:
            raise Unsupported("product of a tensor with itself")
        n = _dim(sa, -2 if transpose_a else -1) if len(sa) > 1 else _dim(sa, 0)
        if n is None:
            n = _dim(sb, (-1 if transpose_b else -2) if len(sb) > 1 else 0)
        if n is None:
            raise Unsupported("contracted size unknown")
        return matmul_moments(call.moments(a), call.moments(b), int(n))
    if call.is_tensor(a) and np.ndim(b) == 2:   # x @ W: the columns of W
        w = _to_np(b).reshape(sb)
        return linear_moments(w.T if transpose_b else w, None, call.moments(a))
    if call.is_tensor(b) and np.ndim(a) == 2:   # W @ x: out[i, j] = sum_k W[i, k] x[k, j]
        w = _to_np(a).reshape(sa)
        return linear_moments(w if transpose_a else w.T, None, call.moments(b))
    raise Unsupported("matmul with a constant operand that is not a matrix")


def tensordot(call: OpCall, a, b, axes) -> Moments:
    if not (call.is_tensor(a) and call.is_tensor(b)) or a is b:
        raise Unsupported("tensordot with a constant or with itself")
    sa, sb = _shape(a), _shape(b)
    if isinstance(axes, (int, np.integer)):
        ia, ib = list(range(len(sa) - int(axes), len(sa))), list(range(int(axes)))
    else:
        ia, ib = ([int(v)] if np.ndim(v) == 0 else [int(u) for u in v] for v in axes)
    n = 1
    for i, j in zip(ia, ib):
        d = sa[i] if sa[i] is not None else sb[j]
        if d is None:
            raise Unsupported("contracted size unknown")
        n *= int(d)
    return matmul_moments(call.moments(a), call.moments(b), n)


def _einsum_parse(equation: str, count: int):
    eq = equation.replace(" ", "")
    if "->" in eq:
        lhs, out = eq.split("->")
    else:
        lhs = eq
        letters = [c for c in lhs if c.isalpha()]
        out = ("..." if "..." in lhs else "") + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1))
    specs = lhs.split(",")
    if len(specs) != count:
        raise Unsupported("einsum operands do not match the equation")
    return specs, out


def _letter_sizes(spec, shape):
    if "..." in spec:
        left, right = spec.split("...")
        pairs = list(zip(left, shape[:len(left)])) + \
            list(zip(right, shape[len(shape) - len(right):] if right else []))
    else:
        pairs = list(zip(spec, shape))
    return dict(pairs)


def einsum(call: OpCall, equation: str, operands) -> Moments:
    if not all(call.is_tensor(o) for o in operands) or len(operands) > 2:
        raise Unsupported("einsum with constants or more than two operands")
    specs, out = _einsum_parse(equation, len(operands))
    letters = [[c for c in s if c.isalpha()] for s in specs]
    if any(len(set(ls)) != len(ls) for ls in letters):
        raise Unsupported("einsum with a repeated index (a diagonal)")
    sizes = {}
    for spec, o in zip(specs, operands):
        for c, d in _letter_sizes(spec, _shape(o)).items():
            if d is not None:
                sizes[c] = int(d)

    def size(cs):
        if any(c not in sizes for c in cs):
            raise Unsupported("contracted size unknown")
        return int(np.prod([sizes[c] for c in cs] or [1]))

    reduced = []
    for i, (ls, o) in enumerate(zip(letters, operands)):
        others = set().union(*[set(x) for j, x in enumerate(letters) if j != i])
        own = [c for c in ls if c not in out and c not in others]
        reduced.append(reduce_moments("sum", call.moments(o), size(own)))
    if len(operands) == 1:
        return reduced[0]
    if operands[0] is operands[1]:
        raise Unsupported("einsum of a tensor with itself")
    shared = [c for c in letters[0] if c in letters[1] and c not in out]
    return matmul_moments(reduced[0], reduced[1], size(shared))


def identity(call: OpCall, tensor=None) -> Moments:
    tensor = tensor if tensor is not None and call.is_tensor(tensor) else call.tensors[0]
    return call.moments(tensor)


def concatenation(call: OpCall, values) -> Moments:
    values = list(values)
    if not all(call.is_tensor(v) for v in values):
        raise Unsupported("concatenation with a constant")
    return mixture([(call.moments(v), _size(_shape(v))) for v in values])


def padding(call: OpCall, tensor, constant_mode: bool, value) -> Moments:
    m = call.moments(tensor)
    if not constant_mode:
        return m  # reflect/symmetric/edge padding repeats existing values
    before, after = _size(_shape(tensor)), _size(call.node.output_shapes[0])
    if after <= before:
        return m
    value = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0])
    return mixture([(m, before), (Moments(value, 0.0), after - before)])


def monte_carlo_method(call: OpCall) -> list:
    """The documented method for softmax-like operations: Monte Carlo on the op alone."""
    if call.ctx.record is not None:
        call.ctx.record.method = "monte_carlo"
    return monte_carlo(call.op, call.inputs, call.ctx)


def _guard(body):
    """Run ``body(call)``; Monte Carlo (with a one-time warning) when it does not apply."""
    def rule(op, inputs, ctx):
        if ctx.node is None:
            return monte_carlo(op, inputs, ctx)
        call = OpCall(op, inputs, ctx)
        try:
            return body(call)
        except (Unsupported, NotImplementedError, ValueError, TypeError,
                tf.errors.OpError) as err:
            key = getattr(op, "function", None) or type(op)
            ctx.warn_once((key, str(err)), f"AutoInit: {op.name}: {err}; estimating its "
                                           "output moments by Monte Carlo on the op alone")
            return monte_carlo_method(call)
    return rule


# ============================================================ Keras 3 operations
def _k3_classes(module, names):
    mod = importlib.import_module(f"{keras.__name__}.src.ops.{module}")
    return [getattr(mod, n) for n in names if hasattr(mod, n)]


def _k3_kinds(module, kinds: dict) -> dict:
    """{operation class: kind} for the classes of ``kinds`` this Keras has."""
    mod = importlib.import_module(f"{keras.__name__}.src.ops.{module}")
    return {getattr(mod, n): k for n, k in kinds.items() if hasattr(mod, n)}


def _kind_of(op, kinds: dict):
    return next((k for c, k in kinds.items() if isinstance(op, c)), None)


if KERAS3:
    _LINEAR = _k3_kinds("numpy", {"Add": "add", "Subtract": "sub", "Multiply": "mul"})

    def _k3_elementwise(call):
        return elementwise(call, _kind_of(call.op, _LINEAR), list(call.node.call_args[:2]))

    register(*_k3_classes("numpy", [
        "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "DivideNoNan", "FloorDivide",
        "Mod", "Fmod", "Power", "Maximum", "Minimum", "Fmax", "Fmin", "Hypot", "Arctan2",
        "Logaddexp", "Logaddexp2", "Heaviside", "Absolute", "Abs", "Fabs", "Negative",
        "Square", "Sqrt", "Cbrt", "Exp", "Exp2", "Expm1", "Log", "Log1p", "Log2", "Log10",
        "Tanh", "Sinh", "Cosh", "Arcsinh", "Arctanh", "Arctan", "Sin", "Cos", "Tan", "Arcsin",
        "Arccos", "Sign", "Reciprocal", "Round", "Floor", "Ceil", "Trunc", "Clip", "Sinc",
        "Deg2rad", "Rad2deg", "NanToNum", "Conjugate", "Conj", "Real"]),
        *_k3_classes("math", ["Rsqrt", "Erf", "Erfc", "Erfinv"]),
        *_k3_classes("nn", [
            "Relu", "Relu6", "Sigmoid", "SparseSigmoid", "Softplus", "Softsign", "SoftShrink",
            "SparsePlus", "Silu", "Squareplus", "LogSigmoid", "LeakyRelu", "HardSigmoid",
            "HardSilu", "Elu", "Selu", "Gelu", "Celu", "TanhShrink", "HardTanh", "HardShrink",
            "Threshold"]))(_guard(_k3_elementwise))

    _REDUCE = _k3_kinds("numpy", {"Mean": "mean", "Sum": "sum", "Max": "max", "Amax": "max",
                                  "Min": "min", "Amin": "min"})

    def _k3_reduce(call):
        return reduction(call, _kind_of(call.op, _REDUCE), call.node.call_args[0],
                         call.op.axis)

    register(*_REDUCE)(_guard(_k3_reduce))

    def _k3_matmul(call):
        a, b = call.node.call_args[:2]
        return matmul(call, a, b)

    register(*_k3_classes("numpy", ["Matmul", "Dot"]))(_guard(_k3_matmul))
    register(*_k3_classes("numpy", ["Tensordot"]))(_guard(
        lambda call: tensordot(call, *call.node.call_args[:2], call.op.axes)))
    register(*_k3_classes("numpy", ["Einsum"]))(_guard(
        lambda call: einsum(call, call.op.subscripts, list(call.node.call_args))))

    register(*_k3_classes("numpy", [
        "Reshape", "Transpose", "ExpandDims", "Squeeze", "GetItem", "Flip", "Fliplr",
        "Flipud", "Roll", "Rot90", "Moveaxis", "Swapaxes", "Ravel", "Tile", "Repeat",
        "BroadcastTo", "Copy", "Take", "TakeAlongAxis", "Split", "ArraySplit", "Hsplit",
        "Vsplit", "Dsplit", "Sort"]),
        *_k3_classes("core", ["Slice", "Unstack", "Cast", "StopGradient", "ConvertToTensor"]),
        *_k3_classes("nn", ["DepthToSpace", "SpaceToDepth"]))(_guard(identity))

    def _k3_concat(call):
        args = call.node.call_args
        values = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args[:2]
        return concatenation(call, values)

    register(*_k3_classes("numpy", ["Concatenate", "Stack", "Hstack", "Vstack", "Dstack",
                                    "Append"]))(_guard(_k3_concat))

    def _k3_pad(call):
        args, kwargs = call.node.call_args, call.node.call_kwargs
        value = kwargs.get("constant_values", args[1] if len(args) > 1 else None)
        return padding(call, args[0], str(call.op.mode).lower() == "constant", value)

    register(*_k3_classes("numpy", ["Pad"]))(_guard(_k3_pad))
    register(*_k3_classes("nn", ["Softmax", "LogSoftmax"]),
             *_k3_classes("math", ["Logsumexp"]))(_guard(monte_carlo_method))


# ============================================================ tf_keras TFOpLambda
def innermost(fn):
    """``fn`` with TensorFlow's decorators (dispatch, deprecation, export) peeled off."""
    seen = {id(fn)}
    while True:
        nxt = getattr(fn, "__wrapped__", None)
        if nxt is None and hasattr(fn, "_tf_decorator"):
            nxt = getattr(fn._tf_decorator, "decorated_target", None)
        if nxt is None or id(nxt) in seen:
            return fn
        seen.add(id(nxt))
        fn = nxt


def _bind(function, node):
    try:
        bound = inspect.signature(function).bind(*node.call_args, **node.call_kwargs)
    except (TypeError, ValueError):
        raise Unsupported("cannot bind the call arguments to the function's signature")
    bound.apply_defaults()
    return dict(bound.arguments)


def _first_two(args: dict):
    return [v for k, v in args.items() if k not in ("name",)][:2]


def _tf_elementwise(kind=None):
    def body(call, args):
        return elementwise(call, kind, _first_two(args))
    return body


def _tf_add_n(call, args):
    values = list(args["inputs"])
    if len({id(v) for v in values}) == len(values) and all(call.is_tensor(v) for v in values):
        return sum_moments([call.moments(v) for v in values])
    return elementwise(call)


def _tf_reduce(kind):
    def body(call, args):
        axis = args.get("axis")
        if axis is None:
            axis = args.get("reduction_indices")
        return reduction(call, kind, args["input_tensor"], axis)
    return body


def _tf_matmul(call, args):
    return matmul(call, args["a"], args["b"],
                  bool(args.get("transpose_a") or args.get("adjoint_a")),
                  bool(args.get("transpose_b") or args.get("adjoint_b")))


def _tf_einsum(call, args):
    return einsum(call, args["equation"], list(args["inputs"]))


def _tf_tensordot(call, args):
    return tensordot(call, args["a"], args["b"], args["axes"])


def _tf_identity(call, args):
    return identity(call)


def _tf_concat(call, args):
    return concatenation(call, args["values"])


def _tf_pad(call, args):
    mode = str(args.get("mode", "CONSTANT")).upper()
    return padding(call, args["tensor"], mode == "CONSTANT", args.get("constant_values", 0))


def _tf_table():
    """{innermost TensorFlow function: rule body}, built once."""
    v1 = tf.compat.v1
    groups = [
        (_tf_elementwise("add"), [tf.math.add, tf.__operators__.add, tf.nn.bias_add]),
        (_tf_elementwise("sub"), [tf.math.subtract]),
        (_tf_elementwise("mul"), [tf.math.multiply]),
        (_tf_elementwise(), [
            tf.nn.relu, tf.nn.relu6, tf.nn.elu, tf.nn.selu, tf.nn.gelu, tf.nn.silu,
            tf.nn.swish, tf.nn.softplus, tf.nn.softsign, tf.nn.leaky_relu, tf.math.sigmoid,
            tf.math.tanh, tf.math.log_sigmoid, tf.math.exp, tf.math.expm1, tf.math.log,
            tf.math.log1p, tf.math.sqrt, tf.math.rsqrt, tf.math.square, tf.math.abs,
            tf.math.negative, tf.math.sin, tf.math.cos, tf.math.erf, tf.math.erfc,
            tf.math.reciprocal, tf.math.sign, tf.math.round, tf.math.floor, tf.math.ceil,
            tf.clip_by_value, tf.math.pow, tf.math.maximum, tf.math.minimum,
            tf.math.truediv, tf.math.divide, tf.math.divide_no_nan, tf.math.floordiv,
            tf.math.floormod, tf.math.squared_difference, tf.math.softplus,
            tf.math.atan2 if hasattr(tf.math, "atan2") else None]),
        (_tf_add_n, [tf.math.add_n]),
        (_tf_reduce("mean"), [tf.math.reduce_mean, v1.reduce_mean]),
        (_tf_reduce("sum"), [tf.math.reduce_sum, v1.reduce_sum]),
        (_tf_reduce("max"), [tf.math.reduce_max, v1.reduce_max]),
        (_tf_reduce("min"), [tf.math.reduce_min, v1.reduce_min]),
        (_tf_matmul, [tf.linalg.matmul]),
        (_tf_einsum, [tf.einsum]),
        (_tf_tensordot, [tf.tensordot]),
        (_tf_identity, [
            tf.reshape, tf.transpose, v1.transpose, tf.expand_dims, v1.expand_dims,
            tf.squeeze, v1.squeeze, tf.identity, tf.tile, tf.gather, v1.gather, tf.gather_nd,
            tf.reverse, tf.roll, tf.broadcast_to, tf.cast, tf.stop_gradient,
            tf.nn.depth_to_space, tf.nn.space_to_depth, tf.strided_slice, tf.slice,
            tf.split, tf.unstack, tf.repeat, tf.__operators__.getitem]),
        (_tf_concat, [tf.concat, tf.stack]),
        (_tf_pad, [tf.pad, v1.pad]),
        ("mc", [tf.nn.softmax, v1.nn.softmax, tf.nn.log_softmax, tf.math.reduce_logsumexp]),
    ]
    table = {}
    for body, fns in groups:
        for fn in fns:
            if fn is not None:
                table[innermost(fn)] = body
    return table


_TABLE = None


def tf_op_rule(layer, inputs, ctx):
    """Rule of a ``TFOpLambda``: dispatch on ``layer.function``; unknown ones: Monte Carlo."""
    global _TABLE
    if _TABLE is None:
        _TABLE = _tf_table()
    body = _TABLE.get(innermost(layer.function))
    if body is None:
        ctx.warn_once(("tf-function", innermost(layer.function)),
                      f"AutoInit has no rule for {layer.name} (TensorFlow function "
                      f"{getattr(layer.function, '__name__', layer.function)!r}); estimating "
                      "its output moments by Monte Carlo on the op alone")
        if ctx.record is not None:
            ctx.record.method = "monte_carlo"
        return monte_carlo(layer, inputs, ctx)
    if body == "mc":
        return _guard(monte_carlo_method)(layer, inputs, ctx)
    return _guard(lambda call: body(call, _bind(layer.function, call.node)))(
        layer, inputs, ctx)


def _tf_op_layer_classes():
    try:
        mod = importlib.import_module(f"{keras.__name__}.src.layers.core.tf_op_layer")
    except ImportError:
        return []
    return [getattr(mod, "TFOpLambda", None)]


if not KERAS3:
    register(*_tf_op_layer_classes())(tf_op_rule)
