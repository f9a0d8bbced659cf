"""The GRAFS search cell (Figure 1, right) relaxed with DrNAS (§2, Appendix B).

The cell computes ``f(x) = b1(u2(b0(u0(x), u1(x))), u3(x))``: four unary positions (edges)
``u0..u3`` and two binary positions (vertices) ``b0, b1``. During the search each position is
a weighted sum of its still-active operators. The weights of a position are a sample
``alpha ~ Dir(rho)`` whose concentration ``rho`` is a positive smooth map of unconstrained
parameters; every call of every :class:`SearchCell` draws its own sample (the variance
reduction of §2), and sampling is reparameterized (``tf.random.gamma`` carries implicit
reparameterization gradients to its concentration), so the validation loss trains ``rho``.

One activation function is searched per network: the distribution parameters, the
learnable ``gamma`` of the unary operators ``gamma``, ``gamma*x``, ``x + gamma`` and the
BetaMix weight of the binary ``mix`` operator live in one :class:`CellParameters` that every
cell of the network references. Every operator output ``y`` is clipped to ``[-l, l]``
(``l = 10``: "constraining unbounded operations").
"""

from __future__ import annotations

import math

import numpy as np

from ...backend import keras, serializable, tf
from ...expr import Apply, Const, Expr, Param, Var, X, ops, parse
from .schedule import drop_ops

__all__ = ["CellParameters", "SearchCell", "UNARY_POSITIONS", "BINARY_POSITIONS",
           "POSITIONS", "POSITIVE_MAPS", "discretize", "export_activation"]

UNARY_POSITIONS = ("u0", "u1", "u2", "u3")
BINARY_POSITIONS = ("b0", "b1")
#: position order used for every per-position list (4 unary then 2 binary, as D = 4x23 + 2x9)
POSITIONS = UNARY_POSITIONS + BINARY_POSITIONS

#: smooth maps from unconstrained parameters to positive concentrations. DrNAS uses
#: ELU(beta) + 1 (concentration 1 at beta = 0, the anchor); softplus and exp are offered too.
POSITIVE_MAPS = {
    "elu1": lambda b: tf.nn.elu(b) + 1.0,
    "softplus": tf.nn.softplus,
    "exp": tf.exp,
}
_MIN_CONCENTRATION = 1e-4  # keeps Gamma sampling and the KL finite when the map nears 0
_TINY = 1e-30

# Operators whose float32 value overflows for large inputs get their input clamped first.
# The clamp never changes the clipped output: at the clamp the value is already beyond l
# (exp(30), sinh(30), (1e6)^2, (1e6)^3 are all >> 10); it keeps inf out of the backward pass
# (0 * inf = NaN through the clip's zero gradient).
_INPUT_CLAMP = {"exp": (-1e30, 30.0), "sinh": (-30.0, 30.0), "square": (-1e6, 1e6),
                "cube": (-1e6, 1e6)}

# For export: operators with |f(x)| <= max(|inputs|) (so a clip of the output is redundant
# when the inputs are already within [-l, l]) and operators bounded by 1 everywhere.
_NONEXPANSIVE = frozenset({"identity", "neg", "abs", "relu", "min0", "leaky_relu", "elu",
                           "swish", "gelu", "arcsinh", "arctan", "max", "min", "gate", "mix",
                           "left", "right"})
_BOUNDED = frozenset({"sigmoid", "tanh", "arctan", "erf"})
_GAMMA_SLOT = {name: i for i, name in enumerate(ops.GRAFS_TEMPLATES)}


def _template(name):
    return parse(ops.GRAFS_TEMPLATES[name])


def _check_ops(names, arity, what):
    for name in names:
        if name in ops.GRAFS_TEMPLATES:
            if arity != 1:
                raise ValueError(f"{name!r} is a unary template and cannot be a {what} operator")
            continue
        op = ops.get(name)
        if name == "mix" and arity == 2:
            continue  # BetaMix: binary in the cell, its third input is the learned weight
        if op.arity != arity:
            raise ValueError(f"{what} operators must take {arity} input(s); {name!r} takes "
                             f"{op.arity_text}")


@serializable
class CellParameters(keras.layers.Layer):
    """The search state shared by all :class:`SearchCell` layers of one network.

    Args:
        unary: names of the unary candidates (default: the 23 of GRAFS Figure 1).
        binary: names of the binary candidates (default: the 9 of Figure 1; ``"mix"`` is
            BetaMix ``sigmoid(w) x1 + (1 - sigmoid(w)) x2`` with its own learned ``w``).
        positive: ``"elu1"`` (DrNAS), ``"softplus"`` or ``"exp"``: the map to concentrations.
        clip: ``l``, the bound on every operator output; ``None`` turns clipping off.
        init_scale: the unconstrained parameters start at ``init_scale * N(0, 1)`` (DrNAS
            uses 1e-3), so every concentration starts near the anchor.
        seed: seed of that initialization.

    Attributes:
        active: per position, the indices of operators still in play (progressive shrinking
            removes indices; plain Python state read when a cell is traced, so a traced
            function must be rebuilt after :meth:`shrink`).
        mode: how cells weigh operators when called with ``training=True``: ``"sample"``
            (a fresh Dirichlet sample per call), ``"expected"`` (``rho / sum(rho)``) or
            ``"argmax"`` (only the operator with the largest concentration). Calls with
            ``training`` false use ``"expected"`` unless the mode is ``"argmax"``.
        use_original: cells compute their original activation instead (the warm-start
            phase's weight updates).
    """

    def __init__(self, unary=ops.GRAFS_UNARY, binary=ops.GRAFS_BINARY, positive="elu1",
                 clip=10.0, init_scale=1e-3, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.unary = tuple(unary)
        self.binary = tuple(binary)
        _check_ops(self.unary, 1, "unary")
        _check_ops(self.binary, 2, "binary")
        if positive not in POSITIVE_MAPS:
            raise ValueError(f"positive must be one of {sorted(POSITIVE_MAPS)}, got {positive!r}")
        self.positive = positive
        if clip is not None:
            clip = float(clip)
            if not (clip > 0 and math.isfinite(clip)):
                raise ValueError(f"clip must be a positive finite bound or None, got {clip}")
        self.clip = clip
        self.init_scale = float(init_scale)
        self.seed = seed
        rng = np.random.default_rng(seed)
        shapes = {"unary_logits": (len(UNARY_POSITIONS), len(self.unary)),
                  "binary_logits": (len(BINARY_POSITIONS), len(self.binary))}
        for name, shape in shapes.items():
            variable = self.add_weight(name=name, shape=shape, initializer="zeros")
            variable.assign(self.init_scale * rng.standard_normal(shape).astype("float32"))
            setattr(self, name, variable)
        # one gamma per templated operator per unary position, starting at 1 (the value
        # every learnable slot of the toolkit starts at); BetaMix weight 0 (an even mix)
        self.gamma = self.add_weight(name="gamma", shape=(len(UNARY_POSITIONS), len(_GAMMA_SLOT)),
                                     initializer="ones")
        self.mix_weight = self.add_weight(name="mix_weight", shape=(len(BINARY_POSITIONS),),
                                          initializer="zeros")
        self.active = [list(range(len(self.unary))) for _ in UNARY_POSITIONS] + \
                      [list(range(len(self.binary))) for _ in BINARY_POSITIONS]
        self.mode = "sample"
        self.use_original = False
        self.built = True

    # -- structure ------------------------------------------------------------------------
    def candidates(self, position: int) -> tuple:
        """Operator names of one position (the full list; see ``active`` for what is left)."""
        return self.unary if position < len(UNARY_POSITIONS) else self.binary

    @property
    def position_sizes(self) -> list:
        return [len(self.candidates(p)) for p in range(len(POSITIONS))]

    @property
    def search_variables(self) -> list:
        """Variables the outer (validation) step trains: concentrations, gamma, BetaMix."""
        return [self.unary_logits, self.binary_logits, self.gamma, self.mix_weight]

    # -- distributions ----------------------------------------------------------------------
    def concentration(self, position: int):
        """``rho`` of one position over its full operator list (dropped ones included)."""
        if position < len(UNARY_POSITIONS):
            logits = self.unary_logits[position]
        else:
            logits = self.binary_logits[position - len(UNARY_POSITIONS)]
        return POSITIVE_MAPS[self.positive](logits) + _MIN_CONCENTRATION

    def _mask(self, position, dtype):
        mask = np.zeros(len(self.candidates(position)), dtype=np.float32)
        mask[self.active[position]] = 1.0
        return tf.constant(mask, dtype=dtype)

    def expected_weights(self, position: int, dtype="float32"):
        """``E[alpha] = rho / sum(rho)`` over active operators; dropped ones get exactly 0."""
        rho = tf.cast(self.concentration(position), dtype) * self._mask(position, dtype)
        return rho / tf.reduce_sum(rho)

    def sample_weights(self, position: int, dtype="float32"):
        """One reparameterized sample ``alpha ~ Dir(rho)`` over the active operators.

        A Dirichlet sample is a normalized vector of independent ``Gamma(rho_k, 1)`` draws;
        ``tf.random.gamma`` differentiates its draws with respect to ``rho`` (implicit
        reparameterization), so gradients reach the concentrations.
        """
        active = self.active[position]
        rho = tf.gather(self.concentration(position), active)
        draws = tf.maximum(tf.random.gamma([], rho), _TINY)
        alpha = draws / tf.reduce_sum(draws)
        return tf.cast(tf.scatter_nd(np.asarray(active)[:, None], alpha,
                                     [len(self.candidates(position))]), dtype)

    def argmax_index(self, position: int) -> int:
        """Index (into the full list) of the active operator with the largest ``rho``."""
        rho = self.concentration(position).numpy()
        return max(self.active[position], key=lambda k: (rho[k], -k))

    def argmax_names(self) -> list:
        return [self.candidates(p)[self.argmax_index(p)] for p in range(len(POSITIONS))]

    def anchor_penalty(self, strength: float, metric: str = "kl"):
        """DrNAS's anchor regularizer ``lambda * d(rho, 1)`` summed over positions.

        ``metric="kl"``: ``KL(Dir(rho) || Dir(1))`` over the active operators (closed form);
        ``metric="l2"``: ``sum (rho - 1)^2``.
        """
        total = tf.constant(0.0)
        for p in range(len(POSITIONS)):
            rho = tf.gather(self.concentration(p), self.active[p])
            if metric == "kl":
                total += _dirichlet_kl(rho, tf.ones_like(rho))
            elif metric == "l2":
                total += tf.reduce_sum(tf.square(rho - 1.0))
            else:
                raise ValueError(f"metric must be 'kl' or 'l2', got {metric!r}")
        return tf.cast(strength, total.dtype) * total

    # -- shrinking ----------------------------------------------------------------------------
    def shrink(self, count: int) -> None:
        """Procedure DropOps: drop ``count`` operators with the lowest concentrations."""
        if count <= 0:
            return
        scores = [self.concentration(p).numpy() for p in range(len(POSITIONS))]
        self.active = drop_ops(self.active, scores, count)

    def operators_left(self) -> list:
        return [len(a) for a in self.active]

    def get_config(self):
        config = super().get_config()
        config.update(unary=list(self.unary), binary=list(self.binary), positive=self.positive,
                      clip=self.clip, init_scale=self.init_scale, seed=self.seed)
        return config


def _dirichlet_kl(a, b):
    a0, b0 = tf.reduce_sum(a), tf.reduce_sum(b)
    return (tf.math.lgamma(a0) - tf.reduce_sum(tf.math.lgamma(a)) - tf.math.lgamma(b0)
            + tf.reduce_sum(tf.math.lgamma(b))
            + tf.reduce_sum((a - b) * (tf.math.digamma(a) - tf.math.digamma(a0))))


@serializable
class SearchCell(keras.layers.Layer):
    """One activation site of a network under search.

    Args:
        parameters: the :class:`CellParameters` shared by all cells of the network.
        original: the activation this cell replaces (an operator name such as ``"relu"``),
            computed instead of the cell while ``parameters.use_original`` is set (warm start).
    """

    def __init__(self, parameters: CellParameters, original=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(parameters, CellParameters):
            raise TypeError(f"parameters must be a CellParameters, got {type(parameters).__name__}")
        self.parameters = parameters
        self.original = original
        if original is not None:
            ops.get(original)

    def _weights(self, position, training, dtype):
        params = self.parameters
        if params.mode == "argmax":
            return None
        if training and params.mode == "sample":
            return params.sample_weights(position, dtype)
        return params.expected_weights(position, dtype)

    def _apply(self, position, name, inputs):
        params = self.parameters
        dtype = inputs[0].dtype
        if name in _GAMMA_SLOT:
            gamma = tf.cast(params.gamma[position, _GAMMA_SLOT[name]], dtype)
            x = inputs[0]
            if name == "gamma":
                y = gamma + tf.zeros_like(x)
            elif name == "gamma_mul":
                y = gamma * x
            else:
                y = x + gamma
        elif name == "mix":
            w = tf.cast(params.mix_weight[position - len(UNARY_POSITIONS)], dtype)
            y = ops.get("mix").tf_fn(inputs[0], inputs[1], w)
        else:
            if name in _INPUT_CLAMP and params.clip is not None:
                lo, hi = _INPUT_CLAMP[name]
                inputs = [tf.clip_by_value(v, lo, hi) for v in inputs]
            y = ops.get(name).tf_fn(*inputs)
        if params.clip is not None:
            y = tf.clip_by_value(y, -params.clip, params.clip)
        return y

    def _position(self, position, inputs, training):
        params = self.parameters
        names = params.candidates(position)
        weights = self._weights(position, training, inputs[0].dtype)
        active = params.active[position]
        if weights is None:
            if len(active) == 1:
                return self._apply(position, names[active[0]], inputs)
            # select (not weigh by a one-hot) so an unclipped inf elsewhere cannot make NaN;
            # tf.argmax takes the first maximum, as argmax_index does
            rho = tf.gather(params.concentration(position), active)
            outs = tf.stack([self._apply(position, names[k], inputs) for k in active])
            return tf.gather(outs, tf.argmax(rho))
        if len(active) == 1:
            k = active[0]
            return weights[k] * self._apply(position, names[k], inputs)
        outs = [weights[k] * self._apply(position, names[k], inputs) for k in active]
        return tf.add_n(outs)

    def call(self, inputs, training=None):
        if self.parameters.use_original and self.original is not None:
            return ops.get(self.original).tf_fn(inputs)
        u0 = self._position(0, [inputs], training)
        u1 = self._position(1, [inputs], training)
        b0 = self._position(4, [u0, u1], training)
        u2 = self._position(2, [b0], training)
        u3 = self._position(3, [inputs], training)
        return self._position(5, [u2, u3], training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        # a cell is search-time scaffolding: the search exports a CustomActivation instead
        config = super().get_config()
        config.update(original=self.original)
        return config


# ------------------------------------------------------------------------------ export
def _substitute(template: Expr, x: Expr, gamma: float) -> Expr:
    if isinstance(template, Var):
        return x
    if isinstance(template, Param):
        return Const(gamma)
    if isinstance(template, Apply):
        return template.with_args(*(_substitute(a, x, gamma) for a in template.args))
    return template


def _clip_expr(e: Expr, bound: float) -> Expr:
    return Apply("min", Apply("max", e, Const(-bound)), Const(bound))


def discretize(source, clip: bool = False) -> Expr:
    """The discretized cell as an expression: the argmax operator of every position.

    Args:
        source: a :class:`CellParameters` or a :class:`SearchCell` (its parameters).
        clip: also write the search cell's clipping of operator outputs,
            ``min(max(y, -l), l)`` (left out where it cannot change a value: operators
            bounded by 1, and non-expansive operators of already bounded inputs). The
            paper's published functions are written without it (the default).

    Learned ``gamma`` values and BetaMix weights become constants; the result evaluates to
    the outputs of a cell whose parameters are in ``mode="argmax"`` (with clipping set as
    ``clip`` says).
    """
    params = source.parameters if isinstance(source, SearchCell) else source
    if not isinstance(params, CellParameters):
        raise TypeError(f"expected CellParameters or SearchCell, got {type(source).__name__}")
    bound = params.clip if clip else None
    gammas = params.gamma.numpy().astype(np.float64)
    mix = params.mix_weight.numpy().astype(np.float64)
    names = params.argmax_names()

    def node(position, inputs):
        # inputs: list of (expr, bounded) pairs
        name = names[position]
        exprs = [e for e, _ in inputs]
        if name in _GAMMA_SLOT:
            gamma = float(gammas[position, _GAMMA_SLOT[name]])
            if name == "gamma" and bound is not None:
                return Const(min(max(gamma, -bound), bound)), True
            e = _substitute(_template(name), exprs[0], gamma)
        elif name == "mix":
            w = float(mix[position - len(UNARY_POSITIONS)])
            e = Apply("mix", exprs[0], exprs[1], Const(w))
        else:
            e = Apply(name, *exprs)
        if bound is None:
            return e, False
        safe = (name in _BOUNDED and bound >= 1.0) or (name in _NONEXPANSIVE and all(b for _, b in inputs))
        return (e if safe else _clip_expr(e, bound)), True

    x = (X, False)
    u0 = node(0, [x])
    u1 = node(1, [x])
    b0 = node(4, [u0, u1])
    u2 = node(2, [b0])
    u3 = node(3, [x])
    return node(5, [u2, u3])[0]


def export_activation(source, clip: bool = False, **kwargs):
    """The discretized cell as a :class:`~keras_actfn.layers.CustomActivation` layer."""
    from ...layers import CustomActivation

    return CustomActivation(str(discretize(source, clip=clip)), **kwargs)
