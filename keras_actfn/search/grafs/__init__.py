"""GRAFS: gradient-based activation function search (Strack, Safari & Hutter).

A DrNAS-relaxed search cell replaces a network's activations (:mod:`.cell`), the cell
shrinks progressively on a logarithmic schedule (:mod:`.schedule`), and the discretized
cell is exported as activation-function text.
"""

from .cell import (BINARY_POSITIONS, POSITIONS, POSITIVE_MAPS, UNARY_POSITIONS, CellParameters,
                   SearchCell, discretize, export_activation)
from .schedule import drop_ops, drop_schedule, shrink_start, total_operations

__all__ = ["CellParameters", "SearchCell", "discretize", "export_activation", "POSITIONS",
           "UNARY_POSITIONS", "BINARY_POSITIONS", "POSITIVE_MAPS", "drop_schedule", "drop_ops",
           "shrink_start", "total_operations"]
