"""The search engine, beside the methods (``cafe``, ``pangaea``, ``aquasurf/``, ``grafs/``)
that use it -- as keras-tuner keeps its ``engine`` apart from its tuners. A method imports
the engine; the engine imports no method.

* :mod:`.base` -- the ask/tell contract (:class:`SearchAlgorithm`, :class:`Candidate`),
  :func:`equivalence_key`, JSON normalization, failure records;
* :mod:`.store` -- the durable SQLite journal (:class:`Store`);
* :mod:`.configs` -- :func:`config_differences`, the one "refuse to resume with another
  config" comparison of stores and GRAFS checkpoints;
* :mod:`.driver` -- :func:`run_search`, the steady-state loop that resumes exactly;
* :mod:`.executors` / :mod:`.ray_executor` -- in-process, process-pool and Ray executors
  (:func:`make_executor` builds one by name);
* :mod:`.evaluator` -- :class:`RecipeEvaluator`, a model-zoo evaluator;
* :mod:`.locking` -- the one file lock of stores and GRAFS checkpoints.

The engine imports no TensorFlow of its own: the package's first import does (it registers
the Keras layers), unless the process is the command line.
"""

from .base import (Candidate, SearchAlgorithm, equivalence_key, failure_record,
                   json_normalize, rng_from_state, rng_state)
from .configs import config_differences, describe_differences
from .driver import SearchSummary, run_search, search_config
from .evaluator import RecipeEvaluator, make_evaluator
from .executors import (Executor, Finished, InProcessExecutor, LocalPoolExecutor, RayExecutor,
                        make_executor, run_evaluation)
from .store import Evaluation, Store, StoreConfigError, StoreError, StoreLockedError

__all__ = ["Candidate", "SearchAlgorithm", "equivalence_key", "failure_record",
           "json_normalize", "rng_state", "rng_from_state", "run_search", "search_config",
           "SearchSummary", "RecipeEvaluator", "make_evaluator", "Executor", "Finished",
           "InProcessExecutor", "LocalPoolExecutor", "RayExecutor", "make_executor",
           "run_evaluation", "Store", "Evaluation", "StoreError", "StoreConfigError",
           "StoreLockedError", "config_differences", "describe_differences"]
