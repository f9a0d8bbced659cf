"""Activation functions as values: operators, expression trees, parser, numerics."""

from . import ops
from .graph import PARAM_NAMES, X, Apply, Const, Expr, Param, Var, evaluate, to_pretty, to_text
from .parse import ArityError, ParseError, UnknownNameError, parse
from .numeric import MomentsBudgetError, fingerprint, fingerprint_key, gaussian_moments
from .simplify import simplified_text, simplify

__all__ = ["ops", "X", "Apply", "Const", "Expr", "Param", "Var", "PARAM_NAMES", "evaluate",
           "to_pretty", "to_text", "parse", "ParseError", "UnknownNameError", "ArityError",
           "fingerprint", "fingerprint_key", "gaussian_moments", "MomentsBudgetError", "simplify",
           "simplified_text"]
