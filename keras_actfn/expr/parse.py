"""Text -> expression tree. A hand-written recursive-descent parser; never ``eval``.

Grammar (whitespace ignored)::

    expr   := term (('+' | '-') term)*
    term   := factor (('*' | '/') factor)*
    factor := '-' factor | power
    power  := atom (('^' | '**') factor)?          # right-associative; -x^2 is -(x^2)
    atom   := NUMBER | 'x' | PARAM | 'pi' | NAME '(' expr (',' expr)* ')' | '(' expr ')'

Both the infix form (``x*sigmoid(x)``) and the AQuaSurF call form (``mul(x,sigmoid(x))``,
``sum_n(abs(x),swish(x),sigmoid(x))``) are accepted. Two rewrites keep published formulas
loading as they are: ``log(sigmoid(e))`` becomes the numerically stable ``log_sigmoid(e)``,
and ``max``/``min`` with three or more inputs become ``max_n``/``min_n``. A minus in front of
a number folds into the constant (``-2`` is the constant -2, ``-x`` is ``neg(x)``).
"""

from __future__ import annotations

import difflib
import math
import re

from . import ops as _ops
from .graph import MAX_DEPTH, MAX_SIZE, PARAM_NAMES, X, Apply, Const, Expr, Param

#: The parser's limits follow from the tree's (graph.MAX_DEPTH, graph.MAX_SIZE), so the
#: canonical text of every tree the constructor accepts is text the parser accepts.
#:
#: MAX_NESTING bounds parentheses and calls open at once. On any root-to-leaf path of
#: printed text each operator node opens at most one (its call, or the parentheses around
#: it when its parent needs them) and so may the leaf (``(-2)^x``): MAX_DEPTH + 1.
MAX_NESTING = MAX_DEPTH + 1
#: MAX_PREFIX bounds prefix minus signs and exponents open at once: each ``neg`` or ``pow``
#: node on a path adds at most one; a minus in front of a number folds into the constant and
#: adds none. The two bounds together cap the parser's recursion (about 600 frames).
MAX_PREFIX = MAX_DEPTH
#: the longest text: MAX_SIZE nodes, each printing at most _NODE_CHARS characters (a
#: constant of 24 characters or an operator name with its parentheses, plus the parentheses
#: around it and the separator before it: ", " or " + ").
_NODE_CHARS = max(24, 6, max(len(_ops.get(n).name) for n in _ops.ALIASES) + 2) + 2 + 3
MAX_LENGTH = MAX_SIZE * _NODE_CHARS
#: the most tokens: printed, a node brings at most five (a negative constant in
#: parentheses and the separator before it: ``, (-2)``); one more per node for slack.
MAX_TOKENS = 6 * MAX_SIZE

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/^(),]))"
)


class ParseError(ValueError):
    """Bad activation-function text. ``position`` is a 0-based character offset."""

    def __init__(self, message, text="", position=0, expected=None, suggestions=()):
        self.text = text
        self.position = position
        self.expected = expected
        self.suggestions = tuple(suggestions)
        detail = f"{message} at position {position}"
        if expected:
            detail += f"; expected {expected}"
        if suggestions:
            detail += f"; did you mean {' or '.join(repr(s) for s in suggestions)}?"
        if text:
            shown = text if len(text) <= 200 else text[:200] + "..."
            caret = " " * min(position, len(shown)) + "^"
            detail += f"\n  {shown}\n  {caret}"
        super().__init__(detail)


class UnknownNameError(ParseError):
    """A name that is neither ``x``, a parameter slot, ``pi`` nor an operator."""


class ArityError(ParseError):
    """An operator called with the wrong number of inputs."""


def known_names() -> list[str]:
    return sorted(set(_ops.ALIASES) | set(PARAM_NAMES) | {"x", "pi"})


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = []  # (kind, value, position)
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                bad = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
                raise ParseError(f"unexpected character {text[bad]!r}", text, bad,
                                 "a number, a name, an operator or a parenthesis")
            kind = m.lastgroup
            if len(self.tokens) >= MAX_TOKENS:
                raise ParseError(f"expression of more than {MAX_TOKENS} tokens", text,
                                 m.start(kind), "a smaller expression")
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.tokens.append(("end", "", len(text)))
        self.i = 0
        self.nesting = 0  # parentheses and calls open
        self.prefix = 0   # minus signs and exponents open

    # -- token helpers ---------------------------------------------------------------
    def peek(self):
        return self.tokens[self.i]

    def take(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, value, what):
        kind, val, pos = self.take()
        if val != value or kind == "end":
            found = "the end of the text" if kind == "end" else repr(val)
            raise ParseError(f"found {found}", self.text, pos, what)

    def enter(self, pos):  # bounds the recursion of the descent itself
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise ParseError(f"expression nested more than {MAX_NESTING} levels deep",
                             self.text, pos)

    def enter_prefix(self, pos):
        self.prefix += 1
        if self.prefix > MAX_PREFIX:
            raise ParseError(f"expression nests more than {MAX_PREFIX} minus signs and "
                             f"exponents", self.text, pos, "a shallower expression")

    # -- grammar -----------------------------------------------------------------------
    def parse(self) -> Expr:
        if not self.text.strip():
            raise ParseError("empty text", self.text, 0, "an expression such as 'x*sigmoid(x)'")
        node = self.expr()
        kind, val, pos = self.peek()
        if kind != "end":
            raise ParseError(f"unexpected {val!r} after a complete expression", self.text, pos,
                             "an operator (+ - * / ^) or the end")
        return node

    def expr(self):
        node = self.term()
        while self.peek()[1] in ("+", "-") and self.peek()[0] == "op":
            _, op, pos = self.take()
            node = self.apply(pos, "add" if op == "+" else "sub", node, self.term())
        return node

    def term(self):
        node = self.factor()
        while self.peek()[1] in ("*", "/") and self.peek()[0] == "op":
            _, op, pos = self.take()
            node = self.apply(pos, "mul" if op == "*" else "div", node, self.factor())
        return node

    def factor(self):
        kind, val, pos = self.peek()
        if kind == "op" and val == "-":
            self.take()
            following = self.tokens[self.i + 1] if self.peek()[0] == "num" else None
            if following is not None and following[1] not in ("^", "**"):
                return Const(-self.atom().value)  # a negative constant: no recursion
            self.enter_prefix(pos)
            inner = self.factor()
            self.prefix -= 1
            if isinstance(inner, Const):
                return Const(-inner.value)
            return self.apply(pos, "neg", inner)
        if kind == "op" and val == "+":
            raise ParseError("unary '+' is not supported", self.text, pos, "an operand")
        return self.power()

    def power(self):
        base = self.atom()
        kind, val, pos = self.peek()
        if kind == "op" and val in ("^", "**"):
            self.take()
            self.enter_prefix(pos)
            exponent = self.factor()
            self.prefix -= 1
            return self.apply(pos, "pow", base, exponent)
        return base

    def atom(self):
        kind, val, pos = self.take()
        if kind == "num":
            value = float(val)
            if not math.isfinite(value):
                raise ParseError(f"number {val} is out of range", self.text, pos,
                                 "a finite constant")
            return Const(value)
        if kind == "op" and val == "(":
            self.enter(pos)
            node = self.expr()
            self.expect(")", "')' to close the '(' at position %d" % pos)
            self.nesting -= 1
            return node
        if kind == "name":
            return self.named(val, pos)
        found = "the end of the text" if kind == "end" else repr(val)
        raise ParseError(f"found {found}", self.text, pos,
                         "an operand: a number, x, a parameter, a function call or '('")

    def named(self, name, pos):
        is_call = self.peek()[1] == "(" and self.peek()[0] == "op"
        if name in _ops.ALIASES:
            if not is_call:
                raise ParseError(f"operator {name!r} needs its inputs in parentheses",
                                 self.text, pos + len(name), f"'{name}(...)'")
            return self.call(name, pos)
        if name == "x" or name in PARAM_NAMES or name == "pi":
            if is_call:
                raise ParseError(f"{name!r} is not a function", self.text, pos,
                                 "an operator name before '('")
            if name == "x":
                return X
            if name == "pi":
                return Const(math.pi)
            return Param(name)
        pool = known_names() if not is_call else sorted(_ops.ALIASES)
        close = difflib.get_close_matches(name, pool, n=3, cutoff=0.6)
        what = "operator" if is_call else "name"
        raise UnknownNameError(f"unknown {what} {name!r}", self.text, pos,
                               "an operator from the registry" if is_call else
                               "x, a parameter (alpha, beta, ...), pi or a number", close)

    def call(self, name, pos):
        self.take()  # '('
        self.enter(pos)
        args = [self.expr()]
        size = 1 + args[0].size
        while self.peek()[1] == "," and self.peek()[0] == "op":
            self.take()
            args.append(self.expr())
            size += args[-1].size
            if size > MAX_SIZE:  # say so now, not after reading every input
                raise ParseError(f"expression larger than {MAX_SIZE} nodes", self.text, pos,
                                 "a smaller expression")
        self.expect(")", f"',' or ')' to close the call of {name!r}")
        self.nesting -= 1
        op = _ops.get(name)
        if op.name in ("max", "min") and len(args) > 2:
            op = _ops.get(op.name + "_n")
        if not op.accepts(len(args)):
            raise ArityError(f"{name!r} takes {op.arity_text} input(s), got {len(args)}",
                             self.text, pos, f"{op.arity_text} comma-separated input(s)")
        return self.apply(pos, op, *args)

    def apply(self, pos, op, *args):
        if 1 + max(a.depth for a in args) > MAX_DEPTH:
            raise ParseError(f"expression more than {MAX_DEPTH} operators deep", self.text, pos,
                             "a shallower expression")
        if 1 + sum(a.size for a in args) > MAX_SIZE:
            raise ParseError(f"expression larger than {MAX_SIZE} nodes", self.text, pos,
                             "a smaller expression")
        return Apply(op, *args)


def parse(text) -> Expr:
    """Parse activation-function text into an :class:`Expr`. An ``Expr`` passes through."""
    if isinstance(text, Expr):
        return text
    if not isinstance(text, str):
        raise TypeError(f"expected activation-function text or an Expr, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(f"text longer than {MAX_LENGTH} characters", text[:200], MAX_LENGTH)
    return _Parser(text).parse()
