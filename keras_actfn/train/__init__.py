"""Evaluation protocols: train a model with a candidate activation, get a fitness record.

* :mod:`~keras_actfn.train.recipes` — the papers' training recipes by name (``RECIPES``,
  ``get_recipe``), each scalable for smoke runs (``recipe.scaled(epochs=4)``).
* :mod:`~keras_actfn.train.schedules` — learning-rate schedules as pure functions of the
  epoch.
* :mod:`~keras_actfn.train.record` — ``EvaluationRecord``: metrics, runtime, failure reason.
* :mod:`~keras_actfn.train.evaluate` — ``evaluate_activation(fn, task, model, recipe, seed)``.

See docs/evaluation.md.
"""

from .evaluate import clear_caches, evaluate_activation, prepare, resolve_activation
from .record import METRICS, REASONS, EvaluationRecord
from .recipes import RECIPES, WIDTH_ARGUMENTS, Recipe, get_recipe, parse_augment, register_recipe
from .schedules import (Constant, LinearWarmupDecay, PiecewiseConstant, Schedule, WarmupCosine,
                        schedule_from_config, step_table)

__all__ = ["evaluate_activation", "prepare", "resolve_activation", "clear_caches",
           "EvaluationRecord", "REASONS", "METRICS", "Recipe", "RECIPES", "get_recipe",
           "register_recipe", "parse_augment", "WIDTH_ARGUMENTS", "Schedule", "Constant",
           "PiecewiseConstant", "LinearWarmupDecay", "WarmupCosine", "schedule_from_config",
           "step_table"]
