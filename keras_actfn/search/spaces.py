"""Search spaces: CAFE's balanced core-unit trees ``S_d`` (§3.1.1) and PANGAEA's computation
graphs (§4.1.1, §4.9).

A space is a subset of the operator registry plus a graph shape. Spaces only describe and
produce candidates (sizes, enumeration, sampling, the evolutionary operators); they never
train. ``get_config()`` describes a space as plain data, so a search store can refuse to
resume a run made with a different space.

CAFE: ``S_d``
    A core unit is ``binary(unary1(x), unary2(x))``; ``S_d`` holds the balanced trees of core
    units of depth ``d``: ``S_0 = {x}`` and ``S_d = {binary(unary1(t1), unary2(t2)) : t1, t2
    in S_(d-1)}``. ``S_2`` is ``core_unit1(core_unit2(x), core_unit3(x))``. A tree of
    ``S_d`` has ``n = 2^d - 1`` core units, so ``n`` binary and ``2n`` unary nodes, and its
    operator depth is ``2d``.

PANGAEA
    Graphs of unary and binary operators (Table 4.1) grown from ``unary1(unary2(x))`` and
    ``binary(unary1(x), unary2(x))`` by the mutations of :mod:`keras_actfn.search.mutations`,
    with up to three multiplicative parameters. :func:`pangaea_space_sizes` counts the space
    as §4.9 does (Table 4.11).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Iterator

from ..expr import ops as _ops
from ..expr.graph import MAX_DEPTH, X, Apply, Expr
from . import mutations as _mut


class _Configurable:
    """``from_config`` for the spaces: the inverse of ``get_config`` (whose ``kind`` names
    the class)."""

    kind = ""

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        kind = config.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ValueError(f"expected a {cls.kind!r} space config, got kind {kind!r}")
        return cls(**config)


class CafeSpace(_Configurable):
    """The CAFE search space ``S_d`` (§3.1.1) over the given unary and binary operators.

    ``size()`` counts *function strings*, i.e. distinct trees: every assignment of an
    operator to each of the ``n = 2^d - 1`` binary and ``2n`` unary slots is one member, so
    ``|S_d| = (U^2 * B)^n``. With the 24 unary and 6 binary operators of §3.1.1 that is
    ``|S_1| = 24^2 * 6 = 3,456`` and ``|S_2| = 3,456^3 = 41,278,242,816`` (the chapter's
    "over 41 billion"). Different strings can compute one function (``x + zero(x)`` and
    ``max(x, identity(x))``...); they are counted apart, as in the chapter.

    Members are ranked in mixed radix: the operator slots in preorder (a node before its
    inputs, left input before right), each slot's digit being the operator's position in
    ``unary`` or ``binary``, the first slot most significant. :meth:`enumerate` yields
    members in rank order; :meth:`unrank` and :meth:`rank` convert; :meth:`sample` is
    uniform over members.
    """

    kind = "cafe"

    def __init__(self, depth: int = 1, unary=_ops.CAFE_UNARY, binary=_ops.CAFE_BINARY):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
        if 2 * depth > MAX_DEPTH:
            raise ValueError(f"S_{depth} trees are {2 * depth} operators deep; the most an "
                             f"expression may be is {MAX_DEPTH} (depth <= {MAX_DEPTH // 2})")
        self.depth = depth
        self.unary = _mut._canonical(unary, 1, "unary")
        self.binary = _mut._canonical(binary, 2, "binary")
        self._unary_digit = {name: i for i, name in enumerate(self.unary)}
        self._binary_digit = {name: i for i, name in enumerate(self.binary)}
        self.core_units = 2 ** depth - 1

    # -- size and ranking ----------------------------------------------------------------
    def size(self) -> int:
        """``|S_d| = (U^2 B)^(2^d - 1)``, an exact integer."""
        return (len(self.unary) ** 2 * len(self.binary)) ** self.core_units

    @functools.cached_property
    def _slot_pools(self) -> tuple:
        """The operator set of each slot, in preorder."""
        def slots(d):
            if d == 0:
                return []
            below = slots(d - 1)
            return [self.binary, self.unary] + below + [self.unary] + below

        return tuple(slots(self.depth))

    @functools.cached_property
    def _radices(self) -> tuple:
        return tuple(len(pool) for pool in self._slot_pools)

    def unrank(self, index: int) -> Expr:
        """The member of rank ``index`` (0 <= index < size())."""
        index = _as_index(index)
        if not 0 <= index < self.size():
            raise IndexError(f"rank {index} is outside S_{self.depth} (size {self.size()})")
        digits = []
        for radix in reversed(self._radices):
            index, digit = divmod(index, radix)
            digits.append(digit)
        digits.reverse()
        return self._build_digits(digits)

    __getitem__ = unrank

    def _build_digits(self, digits) -> Expr:
        return self._build_names(iter([pool[d] for pool, d in zip(self._slot_pools, digits)]))

    def rank(self, expr: Expr) -> int:
        """The rank of ``expr``; ``ValueError`` if it is not a member of this space."""
        digits = []
        self._digits(expr, self.depth, digits, expr)
        index = 0
        for radix, digit in zip(self._radices, digits):
            index = index * radix + digit
        return index

    def _digits(self, node, d, out, whole):
        def fail(why):
            raise ValueError(f"{whole} is not in S_{self.depth}: {why}")

        if d == 0:
            if node != X:
                fail(f"expected x where {node} is")
            return
        if not isinstance(node, Apply) or node.op.name not in self._binary_digit:
            fail(f"expected a binary operator of {list(self.binary)} at {node}")
        out.append(self._binary_digit[node.op.name])
        for arg in node.args:
            if not isinstance(arg, Apply) or arg.op.name not in self._unary_digit:
                fail(f"expected a unary operator of {list(self.unary)} at {arg}")
            out.append(self._unary_digit[arg.op.name])
            self._digits(arg.args[0], d - 1, out, whole)

    def __contains__(self, expr) -> bool:
        try:
            self.rank(expr)
        except ValueError:
            return False
        return True

    def enumerate(self, start: int = 0, stop: int | None = None) -> Iterator[Expr]:
        """Members of rank ``start`` up to (not including) ``stop``, lazily, in rank order.

        With no arguments this is the whole space (exhaustive search of ``S_1``); ranges
        let workers split an enumeration.
        """
        size = self.size()
        stop = size if stop is None else min(_as_index(stop), size)
        start = _as_index(start)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        if start == 0 and stop == size:  # the whole space: no rank arithmetic
            for names in itertools.product(*self._slot_pools):
                yield self._build_names(iter(names))
            return
        for index in range(start, stop):
            yield self.unrank(index)

    def _build_names(self, names: Iterator[str], d: int | None = None) -> Expr:
        d = self.depth if d is None else d
        if d == 0:
            return X
        binary = next(names)
        left = Apply(next(names), self._build_names(names, d - 1))
        right = Apply(next(names), self._build_names(names, d - 1))
        return Apply(binary, left, right)

    # -- sampling and evolution ------------------------------------------------------------
    def sample(self, rng=None) -> Expr:
        """A member drawn uniformly: every slot's operator drawn uniformly and independently."""
        rng = _mut.as_rng(rng)
        return self._build_digits([int(rng.integers(r)) for r in self._radices])

    def mutate(self, tree: Expr, rng=None) -> Expr:
        """CAFE mutation (§3.1.2); see :func:`~keras_actfn.search.mutations.cafe_mutate`."""
        self._check_member(tree, "mutate")
        return _mut.cafe_mutate(tree, rng, unary=self.unary, binary=self.binary)

    def crossover(self, a: Expr, b: Expr, rng=None) -> Expr:
        """CAFE crossover (§3.1.3); see :func:`~keras_actfn.search.mutations.cafe_crossover`."""
        self._check_member(a, "crossover")
        self._check_member(b, "crossover")
        return _mut.cafe_crossover(a, b, rng)

    def _check_member(self, tree, what):
        if tree not in self:
            raise ValueError(f"{what} takes members of S_{self.depth}; {tree} is not one")

    # -- config ----------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"kind": self.kind, "depth": self.depth, "unary": list(self.unary),
                "binary": list(self.binary)}

    def __eq__(self, other):
        return isinstance(other, CafeSpace) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((self.kind, self.depth, self.unary, self.binary))

    def __repr__(self):
        return (f"CafeSpace(depth={self.depth}, {len(self.unary)} unary, "
                f"{len(self.binary)} binary; size={self.size():,})")


def _as_index(value) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"ranks are integers, got {type(value).__name__}")
    return value.__index__()


# --------------------------------------------------------------------------- PANGAEA
@dataclass(frozen=True)
class GraphFamily:
    """Graphs with ``binary`` binary and ``unary`` unary nodes (one row of Table 4.11)."""

    nodes: int
    binary: int
    unary: int
    edges: int
    arrangements: int
    functions: int  # all arrangements of the row together


@dataclass(frozen=True)
class PangaeaSpaceSize:
    """The PANGAEA space counted as in §4.9: the rows of Table 4.11 and their sums."""

    rows: tuple
    by_nodes: dict  # j -> number of activation functions with j nodes (the table's column)
    total: int


@functools.lru_cache(maxsize=None)
def _shapes(unary: int, binary: int, max_binary_depth: float, leaf_ok: bool) -> int:
    """Shapes of a subtree with the given node counts whose ``x`` leaves all feed unary
    nodes and with at most ``max_binary_depth`` binary nodes on any path; ``leaf_ok`` says
    whether the subtree may be the bare ``x`` (only the input of a unary node may)."""
    if unary == 0 and binary == 0:
        return 1 if leaf_ok else 0
    total = 0
    if unary > 0:  # a unary root over a subtree that may be x
        total += _shapes(unary - 1, binary, max_binary_depth, True)
    if binary > 0 and max_binary_depth >= 1:  # a binary root over two operator subtrees
        for u in range(unary + 1):
            for b in range(binary):
                left = _shapes(u, b, max_binary_depth - 1, False)
                if left:
                    total += left * _shapes(unary - u, binary - 1 - b, max_binary_depth - 1,
                                            False)
    return total


def count_graph_shapes(unary: int, binary: int, max_binary_depth: int | None = None) -> int:
    """The number of graph arrangements with ``unary`` unary and ``binary`` binary nodes.

    A graph's inputs are ``x``, and every ``x`` feeds a unary node (``binary(x, x)`` is not a
    PANGAEA graph, ``binary(unary1(x), unary2(x))`` is); binary nodes may feed binary nodes
    (eq. 4.14). ``max_binary_depth`` bounds the binary nodes on any path from input to
    output (``None``: no bound). See :func:`pangaea_space_sizes` for why it matters.
    """
    if unary < 0 or binary < 0:
        raise ValueError(f"node counts must be >= 0, got {unary} unary, {binary} binary")
    depth = math.inf if max_binary_depth is None else max_binary_depth
    return _shapes(unary, binary, depth, False)


def pangaea_space_sizes(n_unary: int = len(_ops.PANGAEA_UNARY),
                        n_binary: int = len(_ops.PANGAEA_BINARY),
                        max_params: int = _mut.PANGAEA_MAX_PARAMS,
                        max_nodes: int = _mut.PANGAEA_MAX_NODES,
                        max_binary_depth: int | None = 2) -> PangaeaSpaceSize:
    """The size of the PANGAEA search space, counted as §4.9 counts it (Table 4.11).

    For every node count ``j = 1..max_nodes`` and every split into ``b`` binary and ``u``
    unary nodes, a graph shape ``g`` has ``e_g = u + 2b + 1`` edges (the edges from ``x``
    and the output edge included) and represents (eq. 4.12)

        |F_g| = U^u * B^b * sum_{i=0..E} C(e_g, i)

    functions (an operator per node, and up to ``E = max_params`` parameters on distinct
    edges); a row counts ``arrangements`` shapes (:func:`count_graph_shapes`), and the total
    is eq. 4.16.

    With the defaults this reproduces every row of Table 4.11 and its total,
    10,170,042,948,450. One row needs ``max_binary_depth=2``: for 3 binary and 4 unary nodes
    the table lists 1 arrangement, the balanced ``b1(b2(u1(x), u2(x)), b3(u3(x), u4(x)))``,
    whereas all 5 binary skeletons with 3 binary nodes (Catalan(3)) fit the section's
    definition. Allowing at most two binary nodes on any path is the rule that gives the
    table's count in every row (it bounds only that row within seven nodes).
    ``max_binary_depth=None`` counts all shapes: 10,184,901,486,849 functions with seven
    nodes and 10,339,202,744,514 in all.
    """
    for name, value in (("n_unary", n_unary), ("n_binary", n_binary),
                        ("max_params", max_params), ("max_nodes", max_nodes)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    rows = []
    by_nodes = {}
    for nodes in range(1, max_nodes + 1):
        by_nodes[nodes] = 0
        for binary in range(nodes + 1):
            unary = nodes - binary
            arrangements = count_graph_shapes(unary, binary, max_binary_depth)
            if not arrangements:
                continue
            edges = unary + 2 * binary + 1
            placements = sum(math.comb(edges, i) for i in range(max_params + 1))
            functions = arrangements * n_unary ** unary * n_binary ** binary * placements
            rows.append(GraphFamily(nodes, binary, unary, edges, arrangements, functions))
            by_nodes[nodes] += functions
    return PangaeaSpaceSize(tuple(rows), by_nodes, sum(by_nodes.values()))


class PangaeaSpace(_Configurable):
    """The PANGAEA search space (§4.1.1): Table 4.1 operators, graphs grown by mutation, up to
    ``max_params`` multiplicative parameters.

    Wraps the operators of :mod:`keras_actfn.search.mutations` with this space's operator
    sets and limits. ``max_params=0`` is the nonparametric baseline of §4.4.1.
    """

    kind = "pangaea"

    def __init__(self, unary=_ops.PANGAEA_UNARY, binary=_ops.PANGAEA_BINARY,
                 max_nodes: int = _mut.PANGAEA_MAX_NODES,
                 max_params: int = _mut.PANGAEA_MAX_PARAMS):
        self.unary = _mut._canonical(unary, 1, "unary")
        self.binary = _mut._canonical(binary, 2, "binary")
        for name, ops in (("unary", self.unary), ("binary", self.binary)):
            if len(ops) < 2:
                raise ValueError(f"change and regenerate need at least two {name} operators, "
                                 f"got {list(ops)}")
        missing = [name for name in self.binary if name not in _mut.NEUTRAL_SECOND_INPUT]
        if missing:
            raise ValueError(f"binary operators {missing} have no second input that leaves "
                             f"them the identity, so they cannot be inserted; known: "
                             f"{sorted(_mut.NEUTRAL_SECOND_INPUT)}")
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
        if not 0 <= max_params <= len(_mut.PARAM_NAMES):
            raise ValueError(f"max_params must be in 0..{len(_mut.PARAM_NAMES)}, got "
                             f"{max_params}")
        self.max_nodes = int(max_nodes)
        self.max_params = int(max_params)

    @property
    def _op_sets(self):
        return {"unary": self.unary, "binary": self.binary}

    def random_graph(self, rng=None) -> Expr:
        """An initial graph (:func:`~keras_actfn.search.mutations.random_graph`)."""
        return _mut.random_graph(rng, **self._op_sets)

    def mutate(self, expr: Expr, rng=None, mutation: str | None = None):
        """``(child, mutation name)`` (:func:`~keras_actfn.search.mutations.mutate`)."""
        return _mut.mutate(expr, rng, max_nodes=self.max_nodes, mutation=mutation,
                           **self._op_sets)

    def parameterize(self, expr: Expr, k: int | None = None, rng=None) -> Expr:
        """Parameters on ``k`` random edges; ``k`` uniform over ``0..max_params`` if None."""
        rng = _mut.as_rng(rng)
        if k is None:
            k = int(rng.integers(self.max_params + 1))
        elif k > self.max_params:
            raise ValueError(f"this space allows at most {self.max_params} parameters, "
                             f"got k={k}")
        return _mut.parameterize(expr, k, rng)

    def initial(self, rng=None) -> Expr:
        """A member of the initial population: a random graph, then parameterized."""
        rng = _mut.as_rng(rng)
        return self.parameterize(self.random_graph(rng), None, rng)

    def child(self, parent: Expr, rng=None):
        """``(child, mutation name)``: the parent's parameters are taken off, the graph is
        mutated, and the child gets ``k`` fresh parameters (§4.1.1, §4.1.2)."""
        rng = _mut.as_rng(rng)
        graph, name = self.mutate(_mut.strip_parameters(parent), rng)
        return self.parameterize(graph, None, rng), name

    def sizes(self, max_binary_depth: int | None = 2) -> PangaeaSpaceSize:
        """Table 4.11 for this space (:func:`pangaea_space_sizes`)."""
        return pangaea_space_sizes(len(self.unary), len(self.binary), self.max_params,
                                   self.max_nodes, max_binary_depth)

    def size(self) -> int:
        """The total of :meth:`sizes`: 10,170,042,948,450 for the chapter's space."""
        return self.sizes().total

    def get_config(self) -> dict:
        return {"kind": self.kind, "unary": list(self.unary), "binary": list(self.binary),
                "max_nodes": self.max_nodes, "max_params": self.max_params}

    def __eq__(self, other):
        return isinstance(other, PangaeaSpace) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((self.kind, self.unary, self.binary, self.max_nodes, self.max_params))

    def __repr__(self):
        return (f"PangaeaSpace({len(self.unary)} unary, {len(self.binary)} binary, "
                f"max_nodes={self.max_nodes}, max_params={self.max_params})")
