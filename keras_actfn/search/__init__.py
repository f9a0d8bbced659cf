"""Activation-function search: spaces, evolutionary operators and the algorithms that use them.

Search algorithms are ask/tell objects that never train (DESIGN.md, decision 4).
"""

from .mutations import (MUTATIONS, change, cafe_crossover, cafe_mutate, insert, mutate,
                        parameterize, random_graph, regenerate, remove, strip_parameters)
from .spaces import (CafeSpace, GraphFamily, PangaeaSpace, PangaeaSpaceSize, count_graph_shapes,
                     pangaea_space_sizes)

__all__ = [
    "CafeSpace", "PangaeaSpace", "GraphFamily", "PangaeaSpaceSize", "count_graph_shapes",
    "pangaea_space_sizes",
    "MUTATIONS", "mutate", "insert", "remove", "change", "regenerate", "random_graph",
    "parameterize", "strip_parameters", "cafe_mutate", "cafe_crossover",
]
