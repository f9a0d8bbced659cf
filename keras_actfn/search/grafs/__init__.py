"""GRAFS: gradient-based activation function search (Strack, Safari & Hutter).

A DrNAS-relaxed search cell replaces a network's activations (:mod:`.cell`), the cell
shrinks progressively on a logarithmic schedule (:mod:`.schedule`), and the discretized
cell is exported as activation-function text. On the search engine (:mod:`.engine`) each
search seed is one journaled evaluation (:class:`GrafsSeeds`, :class:`GrafsSeedEvaluator`);
:func:`run_grafs` (:mod:`.protocol`) runs the searches and the final comparison with the
baselines as two runs of one store.
"""

from .cell import (BINARY_POSITIONS, POSITIONS, POSITIVE_MAPS, UNARY_POSITIONS, CellParameters,
                   SearchCell, discretize, export_activation)
from .engine import GrafsSeedEvaluator, GrafsSeeds, SurgeryModel, search_history, seed_label
from .protocol import BASELINES, run_grafs
from .schedule import drop_ops, drop_schedule, shrink_start, total_operations
from .search import GrafsResult, grafs_search
from .settings import PRESETS, get_preset

__all__ = ["CellParameters", "SearchCell", "discretize", "export_activation", "POSITIONS",
           "UNARY_POSITIONS", "BINARY_POSITIONS", "POSITIVE_MAPS", "drop_schedule", "drop_ops",
           "shrink_start", "total_operations", "GrafsSeeds", "GrafsSeedEvaluator",
           "SurgeryModel", "search_history", "seed_label", "run_grafs", "BASELINES",
           "grafs_search", "GrafsResult", "get_preset", "PRESETS"]
