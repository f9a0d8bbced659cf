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


def _schema_text(tree) -> str:
    if tree == "x":
        return "x"
    word = {"U": "unary", "B": "binary", "N": "n-ary"}[tree[0]]
    return f"{word}({', '.join(_schema_text(c) for c in tree[1:])})"


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

    ``len(space)`` and :meth:`size` count members; :meth:`text` / :meth:`expr` give member
    ``index``; :meth:`batches` streams ``(start, outputs)`` chunks; :meth:`keys` the
    de-duplication keys; :func:`unique_functions` one representative per class.
    """

    kind = "aquasurf"

    def __init__(self, schemas=("binary_unary_unary",), unary=_ops.AQUASURF_UNARY,
                 binary=_ops.AQUASURF_BINARY, nary=_ops.AQUASURF_NARY):
        if isinstance(schemas, str):
            schemas = _ALIASES.get(schemas, (schemas,))
        schemas = tuple(schemas)
        unknown = [s for s in schemas if s not in SCHEMAS]
        if unknown or not schemas:
            raise ValueError(f"unknown schema(s) {unknown or schemas!r}; expected names from "
                             f"{sorted(SCHEMAS)} or one of {sorted(_ALIASES)}")
        for name in (*unary, *binary, *nary):
            _ops.get(name)  # raises a KeyError naming the operator if it is not registered
        self.schemas = schemas
        self.pools = {"U": tuple(unary), "B": tuple(binary), "N": tuple(nary)}
        self._radices = {s: tuple(len(self.pools[k]) for k in _slots(SCHEMAS[s]))
                         for s in schemas}
        self._sizes = {s: math.prod(r) for s, r in self._radices.items()}
        self._offsets = {}
        total = 0
        for s in schemas:
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
        kinds = _slots(SCHEMAS[schema])
        return schema, [self.pools[k][d] for k, d in zip(kinds, digits)]

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

        return build(SCHEMAS[schema])

    def expr(self, index: int) -> Expr:
        schema, names = self._names(index)
        it = iter(names)

        def build(tree):
            if tree == "x":
                return X
            name = next(it)
            return Apply(name, *(build(c) for c in tree[1:]))

        return build(SCHEMAS[schema])

    # ---------------------------------------------------------------------- outputs
    def batches(self, max_rows: int = 1024, inputs=None) -> Iterator[tuple]:
        """Yield ``(start, outputs)``: members ``start .. start + len(outputs) - 1`` and their
        float64 outputs at the fingerprint inputs, in rank order, at most ``max_rows`` (and at
        least one slot's worth) at a time."""
        x = fingerprint_inputs() if inputs is None else np.asarray(inputs, dtype=np.float64)
        for schema in self.schemas:
            yield from _SchemaEvaluator(SCHEMAS[schema], self.pools, x, max_rows).chunks(
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
        graphs = ", ".join(_schema_text(SCHEMAS[s]) for s in self.schemas)
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
