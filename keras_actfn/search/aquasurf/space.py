"""The AQuaSurF search spaces (dissertation A.4.3), enumerated and de-duplicated by outputs.

A *schema* is a computation graph whose nodes are operator slots: ``U`` (a unary operator of
Table A.3), ``B`` (a binary operator of Table A.3) or ``N`` (the n-ary node: sum, product,
maximum, minimum). Every assignment of operators to the slots is one member, and both
argument orders of a binary node count, as in the paper:

* ``binary_unary_unary`` — ``binary(unary(x), unary(x))``: ``7 * 27 * 27 = 5,103`` members
  (the benchmark space of §6.1; the paper reports 2,913 unique functions).
* the five four-node schemas of A.4.3: ``binary(unary(unary(x)), unary(x))``,
  ``binary(unary(x), unary(unary(x)))``, ``n-ary(unary(x), unary(x), unary(x))``,
  ``unary(binary(unary(x), unary(x)))`` and ``unary(unary(unary(unary(x))))``:
  ``3 * 7 * 27**3 + 4 * 27**3 + 27**4 = 1,023,516`` members, the paper's total. (A.4.3 prints
  the first schema as ``binary(unary(unary(x), unary(x)), unary(x))``, a unary node with two
  inputs; reading it as ``binary(unary(unary(x)), unary(x))`` is the one reading whose count
  gives the paper's 1,023,516, and the n-ary node's three inputs are ordered.)

Enumeration never builds an expression per member: each operator is applied once per
distinct sub-graph to whole arrays of outputs at the 1,000 fingerprint inputs
(:func:`keras_actfn.expr.numeric.fingerprint_inputs`), with the registry's own NumPy
implementations, so outputs are bit-for-bit those of :func:`~keras_actfn.expr.numeric.fingerprint`
and the de-duplication key of a member equals its
:func:`~keras_actfn.expr.numeric.fingerprint_key`. Outputs stream in chunks of at most
``max_rows`` members; memory stays bounded for the million-member space.

Members are ranked schema by schema (in the order given), and within a schema in mixed
radix over the slots in preorder (a node before its inputs, left before right), the first
slot most significant. The representative of an equivalence class is its first member in
that order.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ...expr import ops as _ops
from ...expr.graph import X, Apply, Expr
from ...expr.numeric import fingerprint_inputs

# schema trees: ("U", child) / ("B", left, right) / ("N", a, b, c) / "x"
SCHEMAS = {
    "binary_unary_unary": ("B", ("U", "x"), ("U", "x")),
    "binary_unary2_unary": ("B", ("U", ("U", "x")), ("U", "x")),
    "binary_unary_unary2": ("B", ("U", "x"), ("U", ("U", "x"))),
    "nary_unary_unary_unary": ("N", ("U", "x"), ("U", "x"), ("U", "x")),
    "unary_binary_unary_unary": ("U", ("B", ("U", "x"), ("U", "x"))),
    "unary4": ("U", ("U", ("U", ("U", "x")))),
}
FOUR_NODE = ("binary_unary2_unary", "binary_unary_unary2", "nary_unary_unary_unary",
             "unary_binary_unary_unary", "unary4")
_ALIASES = {"three_node": ("binary_unary_unary",), "benchmark": ("binary_unary_unary",),
            "four_node": FOUR_NODE}

KEY_DECIMALS = 5  # fingerprint_key's default rounding

#: the four unary operators the original AQuaSurF code (``aquasurf/activation.py``) has
#: beyond Table A.3's 27, by its names: ELiSH, Leaky ReLU (slope 0.01), Mish and GELU (exact,
#: erf form)
ORIGINAL_EXTRA_UNARY = ("elish", "leakyrelu", "mish", "gelu")
#: Table A.3's 27 unary operators spelled as the original code spells them (``negative`` for
#: ``neg``), so enumerated texts are its function names (the parser reads both spellings)
_A3_UNARY_SPELLED = tuple("negative" if n == "neg" else n for n in _ops.AQUASURF_UNARY)
#: the original code's 31 unary operators (Table A.3's 27, then the four above)
ORIGINAL_UNARY = _A3_UNARY_SPELLED + ORIGINAL_EXTRA_UNARY
#: operator sets by name, ``{"unary", "binary", "nary"}`` for :class:`AquasurfSpace` (as
#: keyword arguments) and :class:`~keras_actfn.search.aquasurf.database.FunctionDatabase`
OPERATOR_SETS = {
    "table_a3": {"unary": _A3_UNARY_SPELLED, "binary": tuple(_ops.AQUASURF_BINARY),
                 "nary": tuple(_ops.AQUASURF_NARY)},
    "original": {"unary": ORIGINAL_UNARY, "binary": tuple(_ops.AQUASURF_BINARY),
                 "nary": tuple(_ops.AQUASURF_NARY)},
}

_SLOT_WORDS = {"unary": "U", "binary": "B", "n-ary": "N", "nary": "N", "n_ary": "N"}


def parse_schema(text: str):
    """A schema string as the original AQuaSurF writes it -- ``'unary(unary(x))'``,
    ``'binary(unary(x),unary(x))'``, ``'n-ary(unary(x),unary(x),unary(x))'``, any depth --
    as a schema tree (``("U", child)``, ``("B", a, b)``, ``("N", a, b, ...)``, ``"x"``).

    ``unary`` takes one input, ``binary`` two, ``n-ary`` two or more (ordered, as every
    argument order counts). A registered operator name is a fixed node
    (``'add(unary(x),x)'``: a slot with that one operator). Raises ``ValueError`` naming
    the position of the first mistake.
    """
    if not isinstance(text, str):
        raise TypeError(f"a schema must be a string, got {type(text).__name__}")
    tokens = [(m.group(0), m.start()) for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_-]*|\S",
                                                            text)]
    pos = 0

    def fail(message, at=None):
        where = len(text) if at is None else at
        raise ValueError(f"schema {text!r}, position {where}: {message}")

    def peek():
        return tokens[pos] if pos < len(tokens) else (None, len(text))

    def node():
        nonlocal pos
        word, at = peek()
        if word is None:
            fail("the schema ends early")
        pos += 1
        if word == "x":
            return "x"
        if word in _SLOT_WORDS:
            kind = _SLOT_WORDS[word]
            op = None
        else:
            try:
                op = _ops.get(word)
            except KeyError:
                fail(f"{word!r} is neither unary, binary, n-ary, x nor an operator name", at)
            kind = "=" + op.name
        if peek()[0] != "(":
            fail(f"{word!r} needs its inputs in parentheses", peek()[1])
        pos += 1
        children = [node()]
        while peek()[0] == ",":
            pos += 1
            children.append(node())
        if peek()[0] != ")":
            fail("expected ',' or ')'", peek()[1])
        pos += 1
        n = len(children)
        if kind == "U" and n != 1 or kind == "B" and n != 2 or kind == "N" and n < 2:
            need = {"U": "one input", "B": "two inputs", "N": "two or more inputs"}[kind]
            fail(f"{word} takes {need}, got {n}", at)
        if op is not None and not op.accepts(n):
            fail(f"operator {op.name!r} takes {op.arity_text} input(s), got {n}", at)
        return (kind, *children)

    tree = node()
    if pos != len(tokens):
        fail(f"unexpected {tokens[pos][0]!r} after the schema", tokens[pos][1])
    return tree


def _resolve_schema(schema):
    """``(name, tree)`` of a schema name of :data:`SCHEMAS` or a schema string."""
    if schema in SCHEMAS:
        return schema, SCHEMAS[schema]
    if isinstance(schema, str) and "(" in schema:
        tree = parse_schema(schema)
        return _schema_text(tree, compact=True), tree
    return None, None


def _schema_text(tree, compact: bool = False) -> str:
    if tree == "x":
        return "x"
    kind = tree[0]
    word = kind[1:] if kind.startswith("=") else {"U": "unary", "B": "binary", "N": "n-ary"}[kind]
    sep = "," if compact else ", "
    return f"{word}({sep.join(_schema_text(c, compact) for c in tree[1:])})"


def _slots(tree, out=None) -> list:
    """Slot kinds in preorder."""
    out = [] if out is None else out
    if tree != "x":
        out.append(tree[0])
        for child in tree[1:]:
            _slots(child, out)
    return out


class AquasurfSpace:
    """A union of schemas over Table A.3's operators; see the module docstring.

    ``schemas``: names of :data:`SCHEMAS`, ``"three_node"`` / ``"four_node"``, or schema
    strings in the original AQuaSurF form (``"binary(unary(x),unary(x))"``, any depth; see
    :func:`parse_schema`), one or several.

    ``len(space)`` and :meth:`size` count members; :meth:`text` / :meth:`expr` give member
    ``index``; :meth:`batches` streams ``(start, outputs)`` chunks; :meth:`keys` the
    de-duplication keys; :func:`unique_functions` one representative per class.
    """

    kind = "aquasurf"

    def __init__(self, schemas=("binary_unary_unary",), unary=_ops.AQUASURF_UNARY,
                 binary=_ops.AQUASURF_BINARY, nary=_ops.AQUASURF_NARY):
        if isinstance(schemas, str):
            schemas = _ALIASES.get(schemas, (schemas,))
        resolved = [_resolve_schema(s) for s in schemas]
        unknown = [s for s, (name, _) in zip(schemas, resolved) if name is None]
        if unknown or not resolved:
            raise ValueError(f"unknown schema(s) {unknown or list(schemas)!r}; expected names "
                             f"from {sorted(SCHEMAS)}, one of {sorted(_ALIASES)} or schema "
                             f"strings such as 'binary(unary(x),unary(x))'")
        for name in (*unary, *binary, *nary):
            _ops.get(name)  # raises a KeyError naming the operator if it is not registered
        self.schemas = tuple(dict.fromkeys(name for name, _ in resolved))
        self._trees = dict(resolved)
        self.pools = {"U": tuple(unary), "B": tuple(binary), "N": tuple(nary)}
        self._slot_pools = dict(self.pools)
        for tree in self._trees.values():
            for kind in _slots(tree):
                if kind.startswith("="):
                    self._slot_pools[kind] = (kind[1:],)
        self._radices = {s: tuple(len(self._slot_pools[k]) for k in _slots(self._trees[s]))
                         for s in self.schemas}
        self._sizes = {s: math.prod(r) for s, r in self._radices.items()}
        self._offsets = {}
        total = 0
        for s in self.schemas:
            self._offsets[s] = total
            total += self._sizes[s]
        self._size = total

    # ---------------------------------------------------------------- counting, ranking
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return self._size

    def schema_sizes(self) -> dict:
        return dict(self._sizes)

    def _locate(self, index: int):
        if not 0 <= index < self._size:
            raise IndexError(f"member index must be in [0, {self._size}), got {index}")
        for s in self.schemas:
            if index < self._offsets[s] + self._sizes[s]:
                local = index - self._offsets[s]
                digits = []
                for r in reversed(self._radices[s]):
                    local, d = divmod(local, r)
                    digits.append(d)
                return s, digits[::-1]
        raise AssertionError("unreachable")

    def _names(self, index: int):
        schema, digits = self._locate(index)
        kinds = _slots(self._trees[schema])
        return schema, [self._slot_pools[k][d] for k, d in zip(kinds, digits)]

    def text(self, index: int, canonical: bool = True) -> str:
        """Member ``index`` as text: canonical (``str`` of the graph), or the AQuaSurF call
        form (``add(relu(x), tanh(x))``, which parses to the same graph)."""
        if canonical:
            return str(self.expr(index))
        schema, names = self._names(index)
        it = iter(names)

        def build(tree):
            if tree == "x":
                return "x"
            name = next(it)
            return f"{name}({', '.join(build(c) for c in tree[1:])})"

        return build(self._trees[schema])

    def expr(self, index: int) -> Expr:
        schema, names = self._names(index)
        it = iter(names)

        def build(tree):
            if tree == "x":
                return X
            name = next(it)
            return Apply(name, *(build(c) for c in tree[1:]))

        return build(self._trees[schema])

    # ---------------------------------------------------------------------- outputs
    def batches(self, max_rows: int = 1024, inputs=None) -> Iterator[tuple]:
        """Yield ``(start, outputs)``: members ``start .. start + len(outputs) - 1`` and their
        float64 outputs at the fingerprint inputs, in rank order, at most ``max_rows`` (and at
        least one slot's worth) at a time."""
        x = fingerprint_inputs() if inputs is None else np.asarray(inputs, dtype=np.float64)
        for schema in self.schemas:
            yield from _SchemaEvaluator(self._trees[schema], self._slot_pools, x,
                                        max_rows).chunks(
                self._offsets[schema])

    def keys(self, max_rows: int = 1024) -> Iterator[tuple]:
        """Yield ``(start, digests)``: the 20-byte SHA-1 digests whose hex form is each
        member's :func:`~keras_actfn.expr.numeric.fingerprint_key`."""
        for start, out in self.batches(max_rows):
            yield start, row_digests(out)

    def get_config(self) -> dict:
        return {"kind": self.kind, "schemas": list(self.schemas),
                "unary": list(self.pools["U"]), "binary": list(self.pools["B"]),
                "nary": list(self.pools["N"])}

    @classmethod
    def from_config(cls, config: dict) -> "AquasurfSpace":
        return cls(config["schemas"], config["unary"], config["binary"], config["nary"])

    def __eq__(self, other):
        return isinstance(other, AquasurfSpace) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((self.schemas, tuple(self.pools.items())))

    def __repr__(self):
        graphs = ", ".join(_schema_text(self._trees[s]) for s in self.schemas)
        return f"AquasurfSpace([{graphs}], size={self._size:,})"


def aquasurf_space(schema="binary_unary_unary", **operators) -> AquasurfSpace:
    """The benchmark space ``binary(unary(x), unary(x))`` (5,103 members) by default;
    ``"four_node"`` for the A.4.3 space of 1,023,516 members, or any schema name(s)."""
    return AquasurfSpace(schema, **operators)


class _SchemaEvaluator:
    """Outputs of every member of one schema, as arrays with one axis per free slot.

    A chunk fixes the first ``k`` slots (preorder) so that the free slots span at most
    ``max_rows`` members; sub-graphs whose slots are all free are computed once.
    """

    def __init__(self, tree, pools, x, max_rows):
        self.tree, self.pools, self.x = tree, pools, x
        self.kinds = _slots(tree)
        self.radices = [len(pools[k]) for k in self.kinds]
        k = len(self.kinds)
        while k > 0 and math.prod(self.radices[k - 1:]) <= max(max_rows, 1):
            k -= 1
        self.n_fixed = k
        self.cache = {}

    def chunks(self, offset):
        fixed_ranges = [range(r) for r in self.radices[:self.n_fixed]]
        rows = math.prod(self.radices[self.n_fixed:])
        for i, fixed in enumerate(np.ndindex(*[len(r) for r in fixed_ranges])
                                  if fixed_ranges else [()]):
            out, _ = self._eval(self.tree, 0, tuple(fixed))
            yield offset + i * rows, np.ascontiguousarray(out.reshape(rows, -1))

    def _eval(self, tree, slot, fixed):
        """Outputs of sub-graph ``tree`` whose first slot is number ``slot``; returns
        (array of shape (*free radices of the subtree, n), next slot number)."""
        if tree == "x":
            return self.x, slot
        # the cache key holds the fixed digits inside this subtree only
        children_start = slot + 1
        end = self._subtree_end(tree, slot)
        key = (slot, fixed[slot:min(end, len(fixed))])
        hit = self.cache.get(key)
        if hit is not None:
            return hit, end
        args = []
        s = children_start
        for child in tree[1:]:
            a, s = self._eval(child, s, fixed)
            args.append(a)
        # broadcast children: each child's free axes become separate axes, in order
        free = [a.ndim - 1 for a in args]
        total = sum(free)
        shaped, before = [], 0
        for a, f in zip(args, free):
            shape = (1,) * before + a.shape[:-1] + (1,) * (total - before - f) + a.shape[-1:]
            shaped.append(a.reshape(shape))
            before += f
        ops = [_ops.get(name).np_fn for name in self.pools[tree[0]]]
        with np.errstate(all="ignore"):
            if slot < len(fixed):
                out = _full(ops[fixed[slot]](*shaped), shaped)
            else:
                out = np.stack([_full(op(*shaped), shaped) for op in ops])
        if out.nbytes <= 256 * 2**20:
            self.cache[key] = out
        return out, end

    def _subtree_end(self, tree, slot):
        return slot + len(_slots(tree))


def _full(y, args):
    """Broadcast an operator's result to its inputs' joint shape (``zero``/``one`` keep
    the input's shape already; this covers every operator the same way)."""
    shape = np.broadcast_shapes(*(a.shape for a in args))
    y = np.asarray(y, dtype=np.float64)
    return y if y.shape == shape else np.broadcast_to(y, shape)


def round_outputs(outputs, decimals: int = KEY_DECIMALS) -> np.ndarray:
    """Rows rounded as :func:`~keras_actfn.expr.numeric.fingerprint_key` rounds them:
    ``decimals`` places, ``-0.0`` folded into ``0.0``, one NaN bit pattern; inf kept."""
    with np.errstate(all="ignore"):
        rounded = np.round(np.asarray(outputs, dtype=np.float64), decimals) + 0.0
    rounded[np.isnan(rounded)] = np.nan
    return np.ascontiguousarray(rounded, dtype="<f8")


def row_digests(outputs, decimals: int = KEY_DECIMALS) -> list:
    """SHA-1 digest of each rounded row; ``digest.hex()`` equals ``fingerprint_key``."""
    rounded = round_outputs(outputs, decimals)
    return [hashlib.sha1(row).digest() for row in rounded]


@dataclass(frozen=True, eq=False)
class UniqueFunction:
    index: int          # rank of the representative in the space
    text: str           # its canonical (or call-form) text
    outputs: np.ndarray  # its 1,000 outputs at the fingerprint inputs
    key: str            # fingerprint_key of every member of the class

    def __iter__(self):  # unpacks as (text, outputs)
        return iter((self.text, self.outputs))


def unique_functions(space: AquasurfSpace, canonical: bool = True,
                     max_rows: int = 1024) -> Iterator[UniqueFunction]:
    """One member per output-equivalence class, streaming: the first member (in rank order)
    of each class, as it is met. Items unpack as ``(text, outputs)`` and carry ``index`` and
    ``key`` too."""
    seen = set()
    for start, out in space.batches(max_rows):
        for i, digest in enumerate(row_digests(out)):
            if digest not in seen:
                seen.add(digest)
                yield UniqueFunction(start + i, space.text(start + i, canonical),
                                     out[i].copy(), digest.hex())


def equivalence_classes(space: AquasurfSpace, max_rows: int = 1024) -> np.ndarray:
    """For every member, the rank of its class's representative (first member of the
    class): an int array of ``len(space)``; ``np.unique`` of it lists the representatives."""
    first = {}
    labels = np.empty(len(space), dtype=np.int64)
    for start, digests in space.keys(max_rows):
        for i, d in enumerate(digests):
            labels[start + i] = first.setdefault(d, start + i)
    return labels


def count_unique(space: AquasurfSpace, max_rows: int = 1024) -> int:
    """Number of output-equivalence classes of ``space`` (streaming; stores only digests)."""
    seen = set()
    for _, digests in space.keys(max_rows):
        seen.update(digests)
    return len(seen)


def time_enumeration(schema="four_node", max_rows: int = 1024) -> dict:
    """Time the streaming enumeration + de-duplication of a space, schema by schema.

    Returns ``{"size", "unique", "seconds", "evaluate_s", "hash_s", "per_schema": {...}}``.
    """
    space = aquasurf_space(schema)
    seen = set()
    per_schema = {}
    evaluate_s = hash_s = 0.0
    t_all = time.perf_counter()
    for name in space.schemas:
        part = AquasurfSpace((name,), space.pools["U"], space.pools["B"], space.pools["N"])
        t0 = time.perf_counter()
        before = len(seen)
        own = set()
        it = part.batches(max_rows)
        while True:
            t1 = time.perf_counter()
            try:
                _, out = next(it)
            except StopIteration:
                break
            t2 = time.perf_counter()
            digests = row_digests(out)
            seen.update(digests)
            own.update(digests)
            t3 = time.perf_counter()
            evaluate_s += t2 - t1
            hash_s += t3 - t2
        per_schema[name] = {"size": len(part), "unique": len(own),
                            "new_unique": len(seen) - before,
                            "seconds": time.perf_counter() - t0}
    return {"size": len(space), "unique": len(seen), "seconds": time.perf_counter() - t_all,
            "evaluate_s": evaluate_s, "hash_s": hash_s, "per_schema": per_schema}


if __name__ == "__main__":  # python -m keras_actfn.search.aquasurf.space [schema]
    import json
    import sys

    print(json.dumps(time_enumeration(sys.argv[1] if len(sys.argv) > 1 else "four_node"),
                     indent=2))
