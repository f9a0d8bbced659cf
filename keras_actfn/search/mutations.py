"""Evolutionary operators on activation-function trees: CAFE (§3.1) and PANGAEA (§4.1.1).

Every operator takes an :class:`~keras_actfn.expr.Expr` and a random generator and returns a
new ``Expr`` (trees are immutable; the input is never changed). ``rng`` is anything
:func:`numpy.random.default_rng` accepts: a ``Generator`` (used as it is), a seed, or ``None``.

**Positions.** A tree is edited through *positions*: tuples of argument indices from the root
(``()`` is the root, ``(1, 0)`` the first input of the root's second input). Every position is
the head of exactly one edge of the computation graph: the root's edge goes to the output and
every other position's edge goes into its parent. So "a random edge" of §4.1.1 is a random
position, including those of the leaves ``x``, and a graph with ``u`` unary and ``b`` binary
nodes over ``x`` leaves has ``u + 2b + 1`` edges, the ``e_g`` of §4.9.

**Nodes.** The nodes of §3.1 and §4.1.1 are the operator positions (:class:`Apply`); leaves
(``x``, constants, parameter slots) are not nodes. A graph's size is ``Expr.node_count``, which
counts tree positions: the copy made when ``max``/``min`` is inserted counts its nodes again.

CAFE (§3.1.2, §3.1.3)
    :func:`cafe_mutate` replaces the operator at one uniformly chosen node with a different
    operator of the same arity; :func:`cafe_crossover` replaces a random subtree of one parent
    with a random subtree of the same depth from the other. Both keep a tree of ``S_d`` in
    ``S_d``.

PANGAEA (§4.1.1)
    :func:`random_graph` draws ``unary1(unary2(x))`` or ``binary(unary1(x), unary2(x))`` with
    equal probability; :func:`mutate` applies one of :func:`insert`, :func:`remove`,
    :func:`change`, :func:`regenerate` with the chapter's special rules;
    :func:`parameterize` puts multiplicative parameter slots on ``k`` random edges and
    :func:`strip_parameters` takes them off again.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..expr import ops as _ops
from ..expr.graph import MAX_DEPTH, PARAM_NAMES, X, Apply, Const, Expr, Param

#: the PANGAEA mutations, equally likely (§4.1.1)
MUTATIONS = ("insert", "remove", "change", "regenerate")

#: the graph size above which PANGAEA always removes a node ("greater than seven nodes")
PANGAEA_MAX_NODES = 7

#: the largest number of parameter slots PANGAEA adds (k is uniform over 0..3)
PANGAEA_MAX_PARAMS = 3

COPY = "copy"

#: the second input an inserted binary operator receives so that the function is unchanged:
#: 0 for addition and subtraction, 1 for multiplication, division and exponentiation, and a
#: copy of the first input for maximum and minimum (§4.1.1). ``left``/``right`` (GRAFS) are
#: listed too so that any registry space that contains them can insert them.
NEUTRAL_SECOND_INPUT = {"add": 0.0, "sub": 0.0, "mul": 1.0, "div": 1.0, "pow": 1.0,
                        "max": COPY, "min": COPY, "left": COPY, "right": COPY}

Path = tuple


def as_rng(rng) -> np.random.Generator:
    """A NumPy ``Generator`` from a ``Generator``, a seed or ``None``."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# ------------------------------------------------------------------- tree positions
def positions(expr: Expr) -> list:
    """``(path, node)`` for every position of ``expr``, in preorder (parents first)."""
    out = []
    stack = [((), expr)]
    while stack:
        path, node = stack.pop()
        out.append((path, node))
        for i in reversed(range(len(node.children))):
            stack.append((path + (i,), node.children[i]))
    return out


def node_positions(expr: Expr) -> list:
    """``(path, node)`` for every operator node, in preorder."""
    return [(p, n) for p, n in positions(expr) if isinstance(n, Apply)]


def subtree(expr: Expr, path: Path) -> Expr:
    """The subtree at ``path``."""
    node = expr
    for i in path:
        node = node.children[i]
    return node


def replace_at(expr: Expr, path: Path, new: Expr) -> Expr:
    """``expr`` with the subtree at ``path`` replaced by ``new``."""
    if not path:
        return new
    args = list(expr.children)
    args[path[0]] = replace_at(args[path[0]], path[1:], new)
    return expr.with_args(*args)


def _rebuild(expr: Expr, fn: Callable, path: Path = ()) -> Expr:
    """Rebuild bottom-up: ``fn(path, old_node, node_with_new_children)`` gives each node."""
    if isinstance(expr, Apply):
        new = expr.with_args(*(_rebuild(a, fn, path + (i,)) for i, a in enumerate(expr.args)))
    else:
        new = expr
    return fn(path, expr, new)


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _canonical(names: Sequence[str], arity: int, what: str) -> tuple:
    out = []
    for name in names:
        op = _ops.get(name)
        if op.arity != arity:
            raise ValueError(f"{what} operators must take {arity} input(s); {name!r} takes "
                             f"{op.arity_text}")
        if op.name not in out:
            out.append(op.name)
    if not out:
        raise ValueError(f"need at least one {what} operator, got none")
    return tuple(out)


def _other_operator(rng, current: str, pool: tuple) -> str:
    """A uniformly chosen operator of ``pool`` other than ``current``."""
    others = [name for name in pool if name != current]
    if not others:
        raise ValueError(f"cannot replace {current!r}: the search space has no other operator "
                         f"of its arity (it has {list(pool)})")
    return _pick(rng, others)


def _pool_for(op, unary: tuple, binary: tuple) -> tuple:
    if op.arity == 1:
        return unary
    if op.arity == 2:
        return binary
    raise ValueError(f"only unary and binary operators can be replaced; {op.name!r} takes "
                     f"{op.arity_text} inputs")


# --------------------------------------------------------------------------- CAFE
def cafe_mutate(tree: Expr, rng=None, *, unary=_ops.CAFE_UNARY,
                binary=_ops.CAFE_BINARY) -> Expr:
    """CAFE mutation (§3.1.2): one node, chosen uniformly, gets a different operator.

    The new operator is drawn uniformly from the operators of the same arity other than the
    current one, so the child always differs from its parent and stays in the parent's
    ``S_d``.
    """
    rng = as_rng(rng)
    unary = _canonical(unary, 1, "unary")
    binary = _canonical(binary, 2, "binary")
    nodes = node_positions(tree)
    if not nodes:
        raise ValueError(f"{tree} has no operator node to mutate")
    path, node = _pick(rng, nodes)
    new_op = _other_operator(rng, node.op.name, _pool_for(node.op, unary, binary))
    return replace_at(tree, path, Apply(new_op, *node.args))


def cafe_crossover(a: Expr, b: Expr, rng=None) -> Expr:
    """CAFE crossover (§3.1.3): a subtree of ``a`` is replaced by a subtree of ``b`` of the
    same depth, giving one child.

    The crossover point in ``a`` is a uniformly chosen operator node other than the root
    (swapping at the root would return ``b`` unchanged); the donor is a uniformly chosen
    operator node of ``b`` with the same depth, at any position. In a balanced core-unit tree
    all nodes of one depth have the same shape, so the child is in the parents' ``S_d``.
    """
    rng = as_rng(rng)
    if a.depth != b.depth:
        raise ValueError(f"crossover needs parents of one depth, got depths {a.depth} and "
                         f"{b.depth}")
    donors_by_depth = {}
    for path, node in node_positions(b):
        donors_by_depth.setdefault(node.depth, []).append(node)
    sites = [(p, n) for p, n in node_positions(a) if p and n.depth in donors_by_depth]
    if not sites:
        raise ValueError(f"{a} has no subtree below its root that {b} can replace")
    path, node = _pick(rng, sites)
    return replace_at(a, path, _pick(rng, donors_by_depth[node.depth]))


# ------------------------------------------------------------------------- PANGAEA
def random_graph(rng=None, *, unary=_ops.PANGAEA_UNARY, binary=_ops.PANGAEA_BINARY) -> Expr:
    """A PANGAEA initial graph (§4.1.1, Figure 4.1).

    ``unary1(unary2(x))`` or ``binary(unary1(x), unary2(x))``, each with probability 1/2, with
    every operator drawn uniformly from its set.
    """
    rng = as_rng(rng)
    unary = _canonical(unary, 1, "unary")
    binary = _canonical(binary, 2, "binary")
    if rng.integers(2) == 0:
        return Apply(_pick(rng, unary), Apply(_pick(rng, unary), X))
    op = _pick(rng, binary)
    return Apply(op, Apply(_pick(rng, unary), X), Apply(_pick(rng, unary), X))


def insert(expr: Expr, rng=None, *, unary=_ops.PANGAEA_UNARY, binary=_ops.PANGAEA_BINARY,
           op: str | None = None, edge: Path | None = None) -> Expr:
    """Insert mutation: a uniformly chosen operator goes on a uniformly chosen edge.

    The operator is uniform over the unary and binary operators together. An inserted binary
    operator takes the edge's value as its first input and, as its second, 0 (addition,
    subtraction), 1 (multiplication, division, exponentiation) or a copy of the first input
    (maximum, minimum), so the function computed is unchanged (:data:`NEUTRAL_SECOND_INPUT`;
    the one exception is ``pow``'s guard, which maps a NaN input to 0). ``op`` and ``edge``
    (a position) fix the choices.
    """
    rng = as_rng(rng)
    unary = _canonical(unary, 1, "unary")
    binary = _canonical(binary, 2, "binary")
    name = _ops.get(op).name if op is not None else _pick(rng, unary + binary)
    if edge is None:
        edge = _pick(rng, [p for p, _ in positions(expr)])
    below = subtree(expr, edge)
    operator = _ops.get(name)
    if operator.arity == 1:
        new = Apply(operator, below)
    elif operator.arity == 2:
        if name not in NEUTRAL_SECOND_INPUT:
            raise ValueError(f"no second input is known that leaves {name!r} the identity "
                             f"on its first; add one to NEUTRAL_SECOND_INPUT")
        second = NEUTRAL_SECOND_INPUT[name]
        new = Apply(operator, below, below if second == COPY else Const(second))
    else:
        raise ValueError(f"only unary and binary operators are inserted; {name!r} takes "
                         f"{operator.arity_text} inputs")
    return replace_at(expr, edge, new)


def remove(expr: Expr, rng=None, *, node: Path | None = None) -> Expr:
    """Remove mutation: a uniformly chosen node is deleted and its input rewired to its output.

    A removed binary node keeps one of its two inputs, chosen uniformly, and drops the other
    with its subtree. One case the chapter leaves open: where that choice would leave no
    operator at all (the root's input that is a bare ``x`` or constant), the other input is
    kept. A graph of one node cannot lose it (:func:`mutate` applies a change instead), and
    this function raises ``ValueError`` for it.
    """
    rng = as_rng(rng)
    nodes = node_positions(expr)
    if len(nodes) <= 1:
        raise ValueError(f"{expr} has {len(nodes)} node(s); remove needs at least two")
    if node is None:
        path, target = _pick(rng, nodes)
    else:
        path, target = node, subtree(expr, node)
        if not isinstance(target, Apply):
            raise ValueError(f"position {node} holds {target}, not an operator node")
    keep = list(target.args)
    if not path:  # keep at least one operator in the graph
        keep = [a for a in keep if isinstance(a, Apply)] or keep
    return replace_at(expr, path, _pick(rng, keep))


def change(expr: Expr, rng=None, *, unary=_ops.PANGAEA_UNARY, binary=_ops.PANGAEA_BINARY,
           node: Path | None = None) -> Expr:
    """Change mutation: one uniformly chosen node gets another operator of the same arity,
    drawn uniformly from the space's operators other than its current one."""
    rng = as_rng(rng)
    unary = _canonical(unary, 1, "unary")
    binary = _canonical(binary, 2, "binary")
    nodes = node_positions(expr)
    if not nodes:
        raise ValueError(f"{expr} has no operator node to change")
    path, target = _pick(rng, nodes) if node is None else (node, subtree(expr, node))
    if not isinstance(target, Apply):
        raise ValueError(f"position {path} holds {target}, not an operator node")
    new_op = _other_operator(rng, target.op.name, _pool_for(target.op, unary, binary))
    return replace_at(expr, path, Apply(new_op, *target.args))


def regenerate(expr: Expr, rng=None, *, unary=_ops.PANGAEA_UNARY,
               binary=_ops.PANGAEA_BINARY) -> Expr:
    """Regenerate mutation: every node gets another operator of the same arity (drawn as in
    :func:`change`); the shape of the graph and its leaves stay as they are."""
    rng = as_rng(rng)
    unary = _canonical(unary, 1, "unary")
    binary = _canonical(binary, 2, "binary")

    def renew(path, old, new):
        if not isinstance(old, Apply):
            return new
        return Apply(_other_operator(rng, old.op.name, _pool_for(old.op, unary, binary)),
                     *new.args)

    return _rebuild(expr, renew)


def mutate(expr: Expr, rng=None, *, unary=_ops.PANGAEA_UNARY, binary=_ops.PANGAEA_BINARY,
           max_nodes: int = PANGAEA_MAX_NODES, mutation: str | None = None):
    """One PANGAEA mutation: returns ``(child, name of the mutation applied)``.

    The four mutations are equally likely (``mutation`` asks for one instead), with the two
    special rules of §4.1.1 applied afterwards:

    * a graph with more than ``max_nodes`` nodes (seven) is always given a remove;
    * a remove on a graph of one node becomes a change.

    Two cases the chapter does not meet: a graph with no node at all (``x`` or a constant)
    is given an insert, and a graph already ``MAX_DEPTH`` deep is given a remove (or, with
    one node, a change) instead of an insert.
    """
    rng = as_rng(rng)
    if mutation is not None and mutation not in MUTATIONS:
        raise ValueError(f"mutation must be one of {MUTATIONS}, got {mutation!r}")
    name = mutation if mutation is not None else MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    n = expr.node_count
    if n > max_nodes:
        name = "remove"
    if n == 0:
        name = "insert"
    elif name == "insert" and expr.depth >= MAX_DEPTH:
        name = "remove"
    if name == "remove" and n == 1:
        name = "change"
    if name == "insert":
        return insert(expr, rng, unary=unary, binary=binary), name
    if name == "remove":
        return remove(expr, rng), name
    if name == "change":
        return change(expr, rng, unary=unary, binary=binary), name
    return regenerate(expr, rng, unary=unary, binary=binary), name


def parameterize(expr: Expr, k: int, rng=None) -> Expr:
    """Multiplicative parameter slots on ``k`` distinct random edges (§4.1.1, Figure 4.3).

    The edges are a uniform ``k``-subset of all edges (the output edge and the edges from
    ``x`` included). The value ``v`` on a chosen edge becomes ``p*v`` for a new slot ``p``;
    slots initialize to 1, so the function is unchanged at initialization. New slots take the
    first names of ``alpha, beta, gamma, ...`` that ``expr`` does not use yet, in reading
    order (Figure 4.3 reads ``alpha*sigmoid(beta*abs(x) - arctan(gamma*x))``). A graph with
    fewer than ``k`` edges gets one slot on every edge.
    """
    rng = as_rng(rng)
    k = int(k)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    paths = [p for p, _ in positions(expr)]
    k = min(k, len(paths))
    if k == 0:
        return expr
    if expr.depth + k > MAX_DEPTH:
        raise ValueError(f"{k} parameters could make {expr} deeper than {MAX_DEPTH}")
    used = set(expr.params)
    free = [name for name in PARAM_NAMES if name not in used]
    if len(free) < k:
        raise ValueError(f"{expr} already uses {len(used)} parameter names; {k} more do not fit")
    chosen = sorted(paths[i] for i in rng.choice(len(paths), size=k, replace=False))
    # tuple order is preorder (a path sorts before its extensions), i.e. reading order
    names = dict(zip(chosen, free))
    return _rebuild(expr, lambda path, old, new: Apply("mul", Param(names[path]), new)
                    if path in names else new)


def strip_parameters(expr: Expr) -> Expr:
    """Undo :func:`parameterize`: ``p*v`` and ``v*p`` become ``v``, and any other parameter
    slot becomes the constant 1 (its initial value)."""
    def strip(path, old, new):
        if isinstance(new, Param):
            return Const(1.0)
        if isinstance(new, Apply) and new.op.name == "mul" and isinstance(old, Apply):
            left, right = old.args
            if isinstance(left, Param):
                return new.args[1]
            if isinstance(right, Param):
                return new.args[0]
        return new

    return _rebuild(expr, strip)
