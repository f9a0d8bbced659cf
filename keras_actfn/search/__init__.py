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

# the search engine: ask/tell contract, durable store, executors, driver
from .base import Candidate, SearchAlgorithm, equivalence_key, rng_from_state, rng_state
from .driver import SearchSummary, run_search, search_config
from .executors import InProcessExecutor, LocalPoolExecutor, RayExecutor
from .store import Evaluation, Store, StoreConfigError, StoreError, StoreLockedError

__all__ += [
    "Candidate", "SearchAlgorithm", "equivalence_key", "rng_state", "rng_from_state",
    "run_search", "search_config", "SearchSummary", "InProcessExecutor", "LocalPoolExecutor",
    "RayExecutor", "Store", "Evaluation", "StoreError", "StoreConfigError", "StoreLockedError",
]

# the algorithms of chapters 3-4 and the named-search runner
from .cafe import CafeEvolution, CafeExhaustive, CafeRandom  # noqa: E402
from .pangaea import Pangaea, Rerank  # noqa: E402
from .runner import ALGORITHMS, run_named_search  # noqa: E402

__all__ += ["CafeEvolution", "CafeExhaustive", "CafeRandom", "Pangaea", "Rerank",
            "ALGORITHMS", "run_named_search"]
