"""Activation-function search: the engine and one module or folder per method.

* :mod:`.engine` -- ask/tell contract, durable store, driver, executors (no method inside);
* :mod:`.spaces`, :mod:`.mutations` -- the CAFE and PANGAEA search spaces and operators;
* :mod:`.cafe` (ch. 3), :mod:`.pangaea` (ch. 4), :mod:`.aquasurf` (ch. 6), :mod:`.grafs`
  (the GRAFS paper) -- the methods, ask/tell objects that never train (DESIGN.md, decision 4);
* :mod:`.runner` -- named searches on the model zoo (``keras-actfn search``);
* :mod:`.user` -- :class:`ActivationSearch`, a search of the user's own model;
* :mod:`.report` -- tables and plots of a store.

Names resolve on first use (PEP 562), so importing the engine alone loads no method.
"""

from .._lazy import lazy_exports

#: public name -> the module (relative to this package) that defines it
_EXPORTS = {
    **dict.fromkeys(["CafeSpace", "PangaeaSpace", "GraphFamily", "PangaeaSpaceSize",
                     "count_graph_shapes", "pangaea_space_sizes"], ".spaces"),
    **dict.fromkeys(["MUTATIONS", "mutate", "insert", "remove", "change", "regenerate",
                     "random_graph", "parameterize", "strip_parameters", "cafe_mutate",
                     "cafe_crossover"], ".mutations"),
    **dict.fromkeys(["Candidate", "SearchAlgorithm", "equivalence_key", "rng_state",
                     "rng_from_state", "run_search", "search_config", "SearchSummary",
                     "InProcessExecutor", "LocalPoolExecutor", "RayExecutor", "make_executor",
                     "RecipeEvaluator", "make_evaluator", "Store", "Evaluation", "StoreError",
                     "StoreConfigError", "StoreLockedError"], ".engine"),
    **dict.fromkeys(["CafeEvolution", "CafeExhaustive", "CafeRandom"], ".cafe"),
    **dict.fromkeys(["Pangaea", "Rerank"], ".pangaea"),
    **dict.fromkeys(["ALGORITHMS", "run_named_search"], ".runner"),
    "ActivationSearch": ".user",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
