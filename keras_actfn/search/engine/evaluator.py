"""The evaluator of a search on the model zoo: a picklable ``evaluator(text, seed=0)`` that
trains a task/model/recipe with the candidate activation (the user-model counterpart is
:class:`~keras_actfn.train.user_model.UserEvaluator`). Training code is imported on the
first call, so the engine stays importable without TensorFlow."""

from __future__ import annotations

from .base import json_normalize


class RecipeEvaluator:
    """The evaluator of a zoo search: ``evaluator(text, seed=0)`` is
    :func:`~keras_actfn.train.evaluate_activation` of ``text`` with this task, model and
    recipe (``test=True``: records carry test-set metrics too). Picklable for process-pool
    and Ray workers; :meth:`config` is what a store compares on resume (the user-model
    counterpart is :class:`~keras_actfn.train.user_model.UserEvaluator`).

    The task, model and recipe are checked once here (a typo must not turn every candidate
    of a long search into a failed record)."""

    def __init__(self, task="mnist1d", model=None, recipe="quick", test=False, **overrides):
        from ...train.evaluate import prepare

        prepare(task=task, model=model, recipe=recipe, **overrides)  # raises on bad names
        self.task, self.model, self.recipe = task, model, recipe
        self.test, self.overrides = bool(test), dict(overrides)

    def __call__(self, text, seed=0):
        from ...train import evaluate_activation

        return evaluate_activation(text, task=self.task, model=self.model, recipe=self.recipe,
                                   seed=seed, test=self.test, **self.overrides)

    def config(self) -> dict:
        def named(value):
            if value is None or isinstance(value, (str, int, float, bool)):
                return value
            if isinstance(value, dict):
                return {str(k): named(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [named(v) for v in value]
            return getattr(value, "name", None) or getattr(value, "label", None) or \
                getattr(value, "__name__", None) or type(value).__name__

        return json_normalize({"kind": "recipe", "task": named(self.task),
                               "model": named(self.model), "recipe": named(self.recipe),
                               "test": self.test, "overrides": named(self.overrides)},
                              "the evaluator config")


def make_evaluator(task="mnist1d", model=None, recipe="quick", test=False, **overrides):
    """A :class:`RecipeEvaluator` (picklable ``evaluator(text, seed=...)``)."""
    return RecipeEvaluator(task=task, model=model, recipe=recipe, test=test, **overrides)


__all__ = ["RecipeEvaluator", "make_evaluator"]
