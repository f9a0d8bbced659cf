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

Layout: :class:`CellParameters` (distributions, masks, shrinking, the traced
``cell_function``), the traced cell's blocks (``_unary_block``/``_binary_block`` ->
``_mixed_terms``, whose gradient is chained by hand from the operators' derivative rules
in the registry, ``Operator.derivative`` of :mod:`keras_actfn.expr.ops`, and from
``_PARAMETRIC`` for the learned-parameter terms), :class:`SearchCell` (one activation
site; its per-position path ``_cell_by_position`` is the argmax/unclipped evaluation and the
tests' autodiff reference), then the export (:func:`discretize`, :func:`export_activation`).
"""

from __future__ import annotations

import math

import numpy as np

from ...backend import keras, serializable, tf
from ...expr import Apply, Const, Expr, Param, Var, X, ops, parse
from ...layers.custom import saturating_cast
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
_BOUND = {"sigmoid": 1.0, "tanh": 1.0, "arctan": math.pi / 2, "erf": 1.0}  # sup |f|
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
            removes indices). Assign a new list rather than editing one in place: assigning
            also updates ``unary_mask``/``binary_mask``, the 0/1 variables that traced
            ``"sample"``/``"expected"`` computations read, so a traced step stays valid
            after :meth:`shrink` (no retracing). The ``"argmax"`` mode and a cell without
            clipping read this Python list when traced.
        mode: how cells weigh operators when called with ``training=True``: ``"sample"``
            (a fresh Dirichlet sample per call), ``"expected"`` (``rho / sum(rho)``) or
            ``"argmax"`` (only the operator with the largest concentration). Calls with
            ``training`` false use ``"expected"`` unless the mode is ``"argmax"``.
        use_original: cells compute their original activation instead (the warm-start
            phase's weight updates). A boolean tensor selects at run time (``tf.where``
            of the two), so one traced step serves warm start and search.
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
            # autocast=False here and below: the cells read the search's parameters in
            # float32 under a mixed_float16 policy too
            variable = self.add_weight(name=name, shape=shape, initializer="zeros",
                                       autocast=False)
            variable.assign(self.init_scale * rng.standard_normal(shape).astype("float32"))
            setattr(self, name, variable)
        # one gamma per templated operator per unary position, starting at 1 (the value
        # every learnable slot of the toolkit starts at); BetaMix weight 0 (an even mix)
        self.gamma = self.add_weight(name="gamma", shape=(len(UNARY_POSITIONS), len(_GAMMA_SLOT)),
                                     initializer="ones", autocast=False)
        self.mix_weight = self.add_weight(name="mix_weight", shape=(len(BINARY_POSITIONS),),
                                          initializer="zeros", autocast=False)
        self.unary_mask = self.add_weight(name="unary_mask", shape=shapes["unary_logits"],
                                          initializer="ones", trainable=False, autocast=False)
        self.binary_mask = self.add_weight(name="binary_mask", shape=shapes["binary_logits"],
                                           initializer="ones", trainable=False,
                                           autocast=False)
        self.active = [list(range(len(self.unary))) for _ in UNARY_POSITIONS] + \
                      [list(range(len(self.binary))) for _ in BINARY_POSITIONS]
        self.mode = "sample"
        self.use_original = False
        self.built = True

    # -- structure ------------------------------------------------------------------------
    @property
    def active(self) -> list:
        return self._active

    @active.setter
    def active(self, value) -> None:
        active = [sorted(int(k) for k in a) for a in value]
        if len(active) != len(POSITIONS) or not all(active):
            raise ValueError(f"active needs a non-empty index list for each of the "
                             f"{len(POSITIONS)} positions, got {value!r}")
        masks = [np.zeros(len(self.candidates(p)), dtype=np.float32) for p in range(len(POSITIONS))]
        for p, a in enumerate(active):
            masks[p][a] = 1.0
        nu = len(UNARY_POSITIONS)
        self.unary_mask.assign(np.stack(masks[:nu]))
        self.binary_mask.assign(np.stack(masks[nu:]))
        computed = getattr(self, "_computed", None)
        self._active = active
        blocks = self._active_blocks()
        if computed is None:
            self._computed = blocks
        else:  # keep computing every active operator
            self._computed = [sorted(set(c) | set(b)) for c, b in zip(computed, blocks)]

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

    def _mask(self, position, dtype="float32"):
        """The 0/1 mask variable's row of one position (1 = active)."""
        nu = len(UNARY_POSITIONS)
        row = self.unary_mask[position] if position < nu else self.binary_mask[position - nu]
        return tf.cast(row, dtype)

    def block_concentration(self, unary: bool):
        """``rho`` of all unary (4 x 23) or all binary (2 x 9) positions at once."""
        logits = self.unary_logits if unary else self.binary_logits
        return POSITIVE_MAPS[self.positive](logits) + _MIN_CONCENTRATION

    def block_weights(self, unary: bool, sample: bool, dtype="float32"):
        """Operator weights of every unary (or binary) position, one row per position.

        ``sample``: one reparameterized draw ``alpha ~ Dir(rho)`` per position over its
        active operators (normalized independent ``Gamma(rho_k, 1)`` draws; dropped
        operators' draws are multiplied by 0, so they get weight exactly 0 and no
        gradient). Otherwise ``E[alpha] = rho / sum(rho)`` over the active operators.
        """
        rho = self.block_concentration(unary)
        mask = self.unary_mask if unary else self.binary_mask
        if sample:
            rho = tf.maximum(tf.random.gamma([], rho), _TINY)
        masked = rho * mask
        return tf.cast(masked / tf.reduce_sum(masked, axis=-1, keepdims=True), dtype)

    def expected_weights(self, position: int, dtype="float32"):
        """``E[alpha] = rho / sum(rho)`` over active operators; dropped ones get exactly 0."""
        rho = tf.cast(self.concentration(position), dtype) * self._mask(position, dtype)
        return rho / tf.reduce_sum(rho)

    def sample_weights(self, position: int, dtype="float32"):
        """One reparameterized sample ``alpha ~ Dir(rho)`` over the active operators.

        A Dirichlet sample is a normalized vector of independent ``Gamma(rho_k, 1)`` draws;
        ``tf.random.gamma`` differentiates its draws with respect to ``rho`` (implicit
        reparameterization), so gradients reach the concentrations. Dropped operators'
        draws are masked to exactly 0 (the active ones are then a ``Dir`` sample of their
        own concentrations: a normalized subset of independent Gamma draws).
        """
        draws = tf.maximum(tf.random.gamma([], self.concentration(position)), _TINY)
        draws = draws * self._mask(position)
        return tf.cast(draws / tf.reduce_sum(draws), dtype)

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
        if metric not in ("kl", "l2"):
            raise ValueError(f"metric must be 'kl' or 'l2', got {metric!r}")
        total = tf.constant(0.0)
        for unary in (True, False):  # masks, not the Python list: valid in a traced step
            rho = self.block_concentration(unary)
            mask = self.unary_mask if unary else self.binary_mask
            if metric == "kl":
                total += tf.reduce_sum(_dirichlet_kl_masked(rho, mask))
            else:
                total += tf.reduce_sum(mask * tf.square(rho - 1.0))
        return tf.cast(strength, total.dtype) * total

    # -- what traced cells compute -----------------------------------------------------------
    @property
    def computed(self) -> list:
        """Operator indices a clipped cell computes when traced, per block: unary operators
        on ``x`` (shared by u0, u1, u3), unary on ``b0`` (u2), binary b0, binary b1.

        A superset of the active operators: the masks give the others weight 0, so a step
        traced before drops stays correct. :meth:`specialize` narrows it to the active ones
        (a later trace is then cheaper); re-activating an operator widens it again.
        """
        return self._computed

    def _active_blocks(self, active=None):
        a = self.active if active is None else active
        return [sorted(set(a[0]) | set(a[1]) | set(a[3])), list(a[2]), list(a[4]), list(a[5])]

    def specialize(self) -> bool:
        """Narrow :attr:`computed` to the active operators; True if it changed."""
        blocks = self._active_blocks()
        changed = blocks != self._computed
        self._computed = blocks
        return changed

    def waste(self) -> float:
        """The fraction of :attr:`computed` operators that are no longer active."""
        total = sum(len(b) for b in self._computed)
        return 1.0 - sum(len(b) for b in self._active_blocks()) / total

    def cell_function(self, dtype):
        """The clipped cell on a flat vector given its operator weights, ``f(x, uw, bw)``
        (``uw``: the ``(4, n_unary)``, ``bw``: the ``(2, n_binary)`` weights of
        :meth:`block_weights`), as one ``tf.function`` per (dtype, :attr:`computed`).
        Every activation site of a network, and the cell and weight steps alike, call the
        same traced function (and its one gradient function), so the cell is traced once
        per search rather than once per site and step. The weights are drawn outside it,
        by each call site, so every site and every call still gets its own sample.

        The rows of ``uw`` and ``bw`` must each sum to 1 (as samples and expectations do):
        the cell then knows the inputs of ``u2``, ``b0`` and ``b1`` lie in ``[-l, l]`` and
        leaves out the clips that cannot change them. 16-bit inputs are computed in float32
        (``exp``/``sinh`` at their clamps overflow a half float) and cast back."""
        key = (tf.as_dtype(dtype).name, tuple(map(tuple, self._computed)))
        cache = self.__dict__.setdefault("_cell_functions", {})
        if key not in cache:
            on_x, on_b0, first, second = self._computed
            dtype = tf.as_dtype(dtype)

            def cell(x, uw, bw):
                if dtype.size < 4:
                    x, uw, bw = (tf.cast(v, tf.float32) for v in (x, uw, bw))
                u0, u1, u3 = _unary_block(self, x, (0, 1, 3), uw, on_x)
                b0 = _binary_block(self, 4, u0, u1, bw, first)
                (u2,) = _unary_block(self, b0, (2,), uw, on_b0, bounded=True)
                return tf.cast(_binary_block(self, 5, u2, u3, bw, second), dtype)

            cache[key] = tf.function(cell, autograph=False, input_signature=[
                tf.TensorSpec([None], dtype),
                tf.TensorSpec([len(UNARY_POSITIONS), len(self.unary)], dtype),
                tf.TensorSpec([len(BINARY_POSITIONS), len(self.binary)], dtype)])
        return cache[key]

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


def _dirichlet_kl_masked(a, mask):
    """``KL(Dir(a_S) || Dir(1_S))`` per row over the operators ``S`` where ``mask`` is 1."""
    a = tf.where(mask > 0, a, tf.ones_like(a))  # dropped entries: lgamma(1) = 0 terms
    a0 = tf.reduce_sum(a * mask, axis=-1, keepdims=True)
    n = tf.reduce_sum(mask, axis=-1)
    return (tf.math.lgamma(a0[..., 0]) - tf.reduce_sum(mask * tf.math.lgamma(a), axis=-1)
            - tf.math.lgamma(n)
            + tf.reduce_sum(mask * (a - 1.0) * (tf.math.digamma(a) - tf.math.digamma(a0)),
                            axis=-1))


def clip_values(v, lo, hi):
    """``tf.clip_by_value(v, lo, hi)`` with the same gradient (``g`` where ``lo <= v <= hi``,
    else 0) computed by one mask multiply. TensorFlow's own ClipByValue gradient also
    builds full-size gradients for the bounds, a zeros tensor and selects: on the stacked
    operator outputs of a cell that was about a third of a search step's time on CPU."""
    @tf.custom_gradient
    def clip(v):
        def grad(g):
            inside = tf.logical_and(v >= lo, v <= hi)
            return g * tf.cast(inside, g.dtype)
        return tf.clip_by_value(v, lo, hi), grad
    return clip(v)


def _raw(params, name, inputs, position):
    """An operator's output before clipping (inputs of overflowing ones clamped)."""
    if name == "mix":
        w = tf.cast(params.mix_weight[position - len(UNARY_POSITIONS)], inputs[0].dtype)
        return ops.get("mix").tf_fn(inputs[0], inputs[1], w)
    if params.clip is not None:
        inputs = _clamp_inputs(name, inputs, clip_values)
    return ops.get(name).tf_fn(*inputs)


def _clamp_inputs(name, inputs, clip_fn):
    """The inputs of an operator of ``_INPUT_CLAMP`` clamped with ``clip_fn(v, lo, hi)``
    (the clipped output never depends on the clamp); others unchanged."""
    if name not in _INPUT_CLAMP:
        return list(inputs)
    lo, hi = _INPUT_CLAMP[name]
    return [clip_fn(v, lo, hi) for v in inputs]


def _pick(matrix, rows, cols, dtype):
    """``matrix[rows][:, cols]`` as two products with constant 0/1 matrices: its gradient is
    two small products too (a gather's is a scatter of a dozen nodes)."""
    n_rows, n_cols = matrix.shape
    left = np.eye(n_rows, dtype=np.float32)[list(rows)]
    right = np.eye(n_cols, dtype=np.float32)[:, list(cols)]
    return tf.matmul(tf.cast(left, dtype), tf.matmul(tf.cast(matrix, dtype), tf.cast(right, dtype)))


def _unary_block(params, x, positions, weights, computed, bounded=False):
    """Unary positions that share the input ``x``: each operator of ``computed`` is applied
    once and mixed with every position's weights (one matrix product); the templated
    ``gamma`` operators use each position's own ``gamma``. Operators left out of
    ``computed`` are dropped at every listed position (weight exactly 0)."""
    names = params.unary
    plain = [k for k in computed if names[k] not in _GAMMA_SLOT]
    templated = [k for k in computed if names[k] in _GAMMA_SLOT]
    dtype = x.dtype
    gammas = _pick(params.gamma, positions, [_GAMMA_SLOT[names[k]] for k in templated], dtype)
    out = _mixed_terms([names[k] for k in plain], [x], _pick(weights, positions, plain, dtype),
                       params.clip, [names[k] for k in templated],
                       _pick(weights, positions, templated, dtype), gammas, bounded)
    return tf.unstack(out) if len(positions) > 1 else [out[0]]


def _binary_block(params, position, a, b, weights, computed):
    """One binary position; BetaMix's weight is the parameter of its term."""
    names = params.binary
    index = position - len(UNARY_POSITIONS)
    plain = [k for k in computed if names[k] != "mix"]
    mixes = [k for k in computed if names[k] == "mix"]
    dtype = a.dtype
    mix_weight = tf.reshape(params.mix_weight, [-1, 1])
    out = _mixed_terms([names[k] for k in plain], [a, b], _pick(weights, [index], plain, dtype),
                       params.clip, ["mix"] * len(mixes), _pick(weights, [index], mixes, dtype),
                       _pick(mix_weight, [index], [0] * len(mixes), dtype), bounded=True)
    return out[0]


# The search cell's own values for two operators of the GRAFS space: formulations of sinh
# and arcsinh about twice as fast on CPU as the registry's, within 3e-7 relative of them
# (every other operator computes the registry's ``tf_fn``). The backward pass chains each
# operator's derivative rule from the registry (``Operator.derivative(U, *inputs, raw)``,
# ``U`` the upstream gradient, ``raw`` the unclipped output): a few elementwise products per
# operator instead of the graph TensorFlow derives from each formula (about a fifth of the
# nodes, which is what setting a traced search step up costs). Operators without a rule get
# TensorFlow's gradient.
def _sinh(x):  # inputs clamped to [-30, 30] (_INPUT_CLAMP); u = e^|x| - 1 >= 0
    u = tf.math.expm1(tf.abs(x))
    return tf.sign(x) * (0.5 * u * (u + 2.0) / (u + 1.0))


def _asinh(x):  # |x| beyond 1e18 (arcsinh 42) is clipped to l anyway
    a = tf.minimum(tf.abs(x), 1e18)
    s = a * a
    return tf.sign(x) * tf.math.log1p(a + s / (1.0 + tf.sqrt(1.0 + s)))


def _zero_unless(cond, v):
    return tf.where(cond, v, tf.constant(0, v.dtype))


_VALUES = {"sinh": _sinh, "arcsinh": _asinh}


# Operators with a learned parameter ``t`` (a ``(P, 1)`` column: one value per position):
# name -> (value(t, *inputs) -> (P, N), rule(u, t, *inputs, raw) -> (input gradients summed
# over positions, parameter gradient (P,))). The templated unary operators of
# ops.GRAFS_TEMPLATES and BetaMix (the registry's "mix": sigmoid(t) a + (1 - sigmoid(t)) b,
# whose rule is the registry's derivative summed over the broadcast axes).
def _mix_rule(u, t, a, b, r):
    da, db, dt = ops.get("mix").derivative(u, a, b, t, r)
    return (tf.reduce_sum(da, 0), tf.reduce_sum(db, 0)), tf.reduce_sum(dt, 1)


_PARAMETRIC = {
    "gamma": (lambda t, x: t,  # a constant: (P, 1), broadcast where it is mixed
              lambda u, t, x, r: ((None,), tf.reduce_sum(u, 1))),
    "gamma_mul": (lambda t, x: t * x,
                  lambda u, t, x, r: ((tf.reduce_sum(u * t, 0),), tf.reduce_sum(u * x, 1))),
    "gamma_add": (lambda t, x: x + t,
                  lambda u, t, x, r: ((tf.reduce_sum(u, 0),), tf.reduce_sum(u, 1))),
    "mix": (lambda t, a, b: (lambda s: s * a + (1.0 - s) * b)(tf.sigmoid(t)), _mix_rule),
}


def _within(name, clip, bounded):
    """Whether ``name``'s output always lies in ``[-clip, clip]`` (its clip is the identity):
    a bounded operator, or a non-expansive one of inputs that are already within it."""
    return _BOUND.get(name, math.inf) <= clip or (bounded and name in _NONEXPANSIVE)


def _mixed_terms(names, inputs, rows, clip, param_names=(), param_rows=None, params=None,
                 bounded=False):
    """The mixture ``rows @ clip(op(*inputs) for op in names)`` plus, for each parametric
    operator ``j`` of ``param_names``, ``param_rows[:, j] * clip(op(params[:, j], *inputs))``:
    ``(P, N)`` from flat ``(N,)`` inputs, with the compact gradient of the operators'
    derivative rules (the upstream gradient times each operator's weights, the clip's mask,
    then one rule per term: the registry's ``Operator.derivative``, ``_PARAMETRIC``'s).
    Gradients reach the inputs, both weight matrices and ``params``.

    ``bounded``: the inputs lie in ``[-clip, clip]`` (mixtures of clipped terms), so the
    clips of non-expansive operators are left out with their masks (they change nothing).
    """
    count = len(inputs)
    rules = {name: ops.get(name).derivative for name in names}
    free = [_within(name, clip, bounded) for name in names]
    # clipped terms first, then free ones; w's columns are permuted to match, dw back
    order = [t for t, f in enumerate(free) if not f] + [t for t, f in enumerate(free) if f]
    back = list(np.argsort(order))
    permuted = order != sorted(order)
    n_clip = free.count(False)
    p_clip = [not _within(name, clip, bounded) for name in param_names]
    taped = [name for name in names if rules[name] is None]  # TensorFlow's gradient for these

    @tf.custom_gradient
    def mixed(*args):
        xs, w, pw, theta = list(args[:count]), args[count], args[count + 1], args[count + 2]
        with tf.GradientTape(persistent=len(taped) > 1) as tape:
            tape.watch(xs)
            raws, seen = [], []
            for t in order:  # the rules give the clamps' gradients (0 where they act)
                vs = _clamp_inputs(names[t], xs, tf.clip_by_value)
                raws.append(_VALUES.get(names[t], ops.get(names[t]).tf_fn)(*vs))
                seen.append(vs)
        w = tf.gather(w, order, axis=1) if permuted else w
        groups = []  # (columns, stacked raw outputs, stacked outputs): clipped, then free
        out = 0.0
        for lo, hi, clipped in ((0, n_clip, True), (n_clip, len(order), False)):
            if hi > lo:
                raw = tf.stack(raws[lo:hi])
                y = tf.clip_by_value(raw, -clip, clip) if clipped else raw
                out = out + tf.matmul(w[:, lo:hi], y)
                groups.append((slice(lo, hi), raw if clipped else None, y))
        p_raws = [_PARAMETRIC[name][0](theta[:, j:j + 1], *xs)
                  for j, name in enumerate(param_names)]
        p_ys = [tf.clip_by_value(r, -clip, clip) if c else r for r, c in zip(p_raws, p_clip)]
        for j, y_j in enumerate(p_ys):
            out = out + pw[:, j:j + 1] * y_j
        if not order and all(name == "gamma" for name in param_names):  # constants only
            out = out + tf.zeros_like(xs[0])

        def grad(g):
            parts = [[] for _ in xs]
            dw = dpw = dtheta = None
            if order:
                upstream = []  # each term's upstream gradient, zero where it was clipped
                for cols, raw, _ in groups:
                    u = tf.matmul(w[:, cols], g, transpose_a=True)             # (T, N)
                    u = u if raw is None else _zero_unless(tf.abs(raw) <= clip, u)
                    upstream += tf.unstack(u)
                for t, (u, vs, r) in enumerate(zip(upstream, seen, raws)):
                    name = names[order[t]]
                    if rules[name] is not None:
                        got = rules[name](u, *vs, r)
                        got = (got,) if count == 1 else got
                    else:
                        got = tape.gradient(r, xs, output_gradients=u)
                    for part, d in zip(parts, got):
                        if d is not None:
                            part.append(d)
                dw = tf.concat([tf.matmul(g, y, transpose_b=True) for _, _, y in groups], axis=1)
                dw = tf.gather(dw, back, axis=1) if permuted else dw
            if param_names:
                dpw, dtheta = [], []
                for j, (name, r, y_j) in enumerate(zip(param_names, p_raws, p_ys)):
                    u = pw[:, j:j + 1] * g                                     # (P, N)
                    u = _zero_unless(tf.abs(r) <= clip, u) if p_clip[j] else u
                    got, dt = _PARAMETRIC[name][1](u, theta[:, j:j + 1], *xs, r)
                    for part, d in zip(parts, got):
                        if d is not None:
                            part.append(d)
                    dpw.append(tf.reduce_sum(g * y_j, 1))
                    dtheta.append(dt)
                dpw, dtheta = tf.stack(dpw, 1), tf.stack(dtheta, 1)
            dxs = [tf.add_n(part) if part else tf.zeros_like(x) for part, x in zip(parts, xs)]
            return (*dxs, dw, dpw, dtheta)

        return out, grad

    return mixed(*inputs, rows, param_rows, params)


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
            y = _PARAMETRIC[name][0](gamma, inputs[0])
            if name == "gamma":  # a constant: give it the input's shape
                y = y + tf.zeros_like(inputs[0])
        else:
            y = _raw(params, name, inputs, position)
        if params.clip is not None:
            y = clip_values(y, -params.clip, params.clip)
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
        if inputs.dtype.size < 4:
            # 16-bit compute dtype (mixed_float16): the whole cell in float32 -- its exp,
            # sinh, powers and divisions overflow or lose their precision in half floats,
            # and the original's warm start and the unclipped/argmax paths with them --, the
            # output cast back, finite values saturating at the 16-bit range
            out = self._call(tf.cast(inputs, tf.float32), training)
            return saturating_cast(out, inputs.dtype)
        return self._call(inputs, training)

    def _call(self, inputs, training):
        use_original = self.parameters.use_original
        if self.original is None:
            return self._cell(inputs, training)
        original = ops.get(self.original).tf_fn
        if tf.is_tensor(use_original):  # decided at run time: one trace for both phases
            # a select, not tf.cond: the gradient of a cond over the cell costs more to
            # trace than computing the unused cell costs in the warm start
            return tf.where(use_original, original(inputs), self._cell(inputs, training))
        if use_original:
            return original(inputs)
        return self._cell(inputs, training)

    def _cell(self, inputs, training):
        params = self.parameters
        if params.mode == "argmax" or params.clip is None:
            return self._cell_by_position(inputs, training)
        sample = bool(training) and params.mode == "sample"
        dtype = inputs.dtype
        uw = params.block_weights(True, sample, dtype)   # (4, n_unary): this call's own sample
        bw = params.block_weights(False, sample, dtype)  # (2, n_binary)
        out = params.cell_function(dtype)(tf.reshape(inputs, [-1]), uw, bw)
        return tf.reshape(out, tf.shape(inputs))

    def _cell_by_position(self, inputs, training):
        """Per-position evaluation of the active operators only (``"argmax"`` mode and the
        unclipped cell); reads the Python ``active`` lists, so it is retraced after drops."""
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
        safe = _within(name, bound, all(b for _, b in inputs))
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
