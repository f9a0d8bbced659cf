"""Evaluation protocols: train a model with a candidate activation, get a fitness record.

* :mod:`~keras_actfn.train.recipes` — the papers' training recipes by name (``RECIPES``,
  ``get_recipe``), each scalable for smoke runs (``recipe.scaled(epochs=4)``).
* :mod:`~keras_actfn.train.schedules` — learning-rate schedules as pure functions of the
  epoch.
* :mod:`~keras_actfn.train.record` — ``EvaluationRecord``: metrics, runtime, failure reason.
* :mod:`~keras_actfn.train.evaluate` — ``evaluate_activation(fn, task, model, recipe, seed)``.

See docs/evaluation.md.
"""

from .._lazy import lazy_exports

#: public name -> the module (relative to this package) that defines it; resolved on first
#: use (PEP 562), so the record type is importable without TensorFlow (the search engine
#: journals records and needs no training code)
_EXPORTS = {
    **dict.fromkeys(["evaluate_activation", "prepare", "resolve_activation", "clear_caches"],
                    ".evaluate"),
    **dict.fromkeys(["EvaluationRecord", "REASONS", "METRICS"], ".record"),
    **dict.fromkeys(["Recipe", "RECIPES", "get_recipe", "register_recipe", "parse_augment",
                     "WIDTH_ARGUMENTS"], ".recipes"),
    **dict.fromkeys(["Schedule", "Constant", "PiecewiseConstant", "LinearWarmupDecay",
                     "WarmupCosine", "schedule_from_config", "step_table"], ".schedules"),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
