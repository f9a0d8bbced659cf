"""GRAFS on a user's own model: what ``ActivationSearch(model, method="grafs")`` runs.

The seeds are the engine's (:class:`~.engine.GrafsSeeds` asked, :class:`~.engine.GrafsSeedEvaluator`
evaluating, one journaled record per seed, a per-seed checkpoint beside the store); the
model is the user's (rebuilt from its ``.keras`` bytes by :class:`UserModelBuilder`, its
hidden activations replaced by search cells); the final comparison is the same as every
other method's -- the found functions next to the model's own activation, trained with the
model's own ``compile()`` settings by the
:class:`~keras_actfn.train.user_model.UserEvaluator`.

GRAFS splits the training *arrays* into search-train and search-validation parts
(:func:`~.search.split_search_data`), so it needs the data as arrays (NumPy, an ``.npz``, a
registry task); a streamed ``tf.data`` source is refused with that reason.
"""

from __future__ import annotations

import inspect
import os

__all__ = ["UserModelBuilder", "run_user_grafs", "check_options", "OPTION_ALIASES"]

#: the command line's GRAFS flag names -> ``grafs_search`` arguments
OPTION_ALIASES = {"warm_start": "warm_start_epochs", "accumulation":
                  "gradient_accumulation_steps", "shrink_start": "start_shrinking_epoch",
                  "subset": "search_train"}

#: options of the GRAFS protocol itself (not ``grafs_search`` arguments)
_PROTOCOL = ("seeds", "search_train", "checkpoint")

#: set from the search call and the model, never as options
_FROM_SEARCH = ("model", "task", "seed", "log", "verbose", "epochs", "batch_size", "targets")


def _accepted():
    from .search import grafs_search

    return set(inspect.signature(grafs_search).parameters) - set(_FROM_SEARCH)


def check_options(options: dict) -> dict:
    """The options with the CLI's names resolved; an unknown one is a ``UserInputError``
    listing the known ones."""
    from ...train.user_model import UserInputError

    resolved = {OPTION_ALIASES.get(k, k): v for k, v in options.items()}
    known = _accepted() | set(_PROTOCOL)
    unknown = sorted(set(resolved) - known)
    if unknown:
        raise UserInputError(f"method grafs does not take {', '.join(unknown)}; its options: "
                             f"{', '.join(sorted(known))}")
    if "seeds" in resolved and (isinstance(resolved["seeds"], bool)
                                or int(resolved["seeds"]) < 1):
        raise UserInputError(f"seeds must be a positive integer, got {resolved['seeds']!r}")
    return resolved


class UserModelBuilder:
    """Picklable zero-argument builder of a user's model (fresh weights), for GRAFS."""

    def __init__(self, user_model):
        self.user_model = user_model
        self.name = user_model.name

    def __call__(self):
        from ...backend import keras

        return keras.models.clone_model(self.user_model.load())

    def config(self):
        return {"user_model": self.user_model.digest}


def _task_from(evaluator):
    """A :class:`~keras_actfn.data.Task` of the evaluator's data arrays."""
    from ...data import Task
    from ...data.sources import ArraySplit, TaskSplit
    from ...train.user_model import UserInputError

    data = evaluator.data
    arrays = {}
    for name, split in data.splits().items():
        if isinstance(split, ArraySplit):
            arrays[name] = (split.x, split.y)
        elif isinstance(split, TaskSplit):
            arrays[name] = split.task.arrays(split.split)
        elif name == "train":
            raise UserInputError(
                f"GRAFS needs the training data as arrays (it splits them into a search-train "
                f"and a search-validation part); got {split.describe()}: pass NumPy arrays "
                f"or an .npz")
    arrays.setdefault("validation", arrays["train"])
    arrays.setdefault("test", arrays["validation"])
    out = evaluator.model.output_shape[-1]
    return Task(name=data.name, num_classes=int(out or 1),
                input_shape=tuple(arrays["train"][0].shape[1:]), splits=arrays)


def _target_names(evaluator):
    """The activation names of the sites the search replaces (GRAFS matches by name): those
    of the hidden sites, the rule of :func:`~keras_actfn.surgery.hidden_activations`."""
    from ...surgery import find_activation_sites, output_layers

    if evaluator.targets is not None:
        return tuple(evaluator.targets)
    base = evaluator.model.load()
    outputs = {layer.name for layer in output_layers(base)}
    names = [s.activation for s in find_activation_sites(base)
             if s.layer_name.split("/")[-1] not in outputs and s.activation
             not in ("softmax", "log_softmax")]
    return tuple(sorted(set(names)))


def run_user_grafs(search, evaluator):
    """Run GRAFS for an :class:`~keras_actfn.search.user.ActivationSearch`; returns
    ``(summary, found functions, comparison rows)``."""
    from ..engine.driver import run_search
    from ..engine.store import Store
    from .engine import GrafsSeedEvaluator, GrafsSeeds
    from .search import check_checkpoint_root, check_search_settings, checkpoint_lock

    options = check_options(search.method_options)
    seeds = int(options.pop("seeds", search.budget))
    search_train = options.pop("search_train", None)
    checkpoint = options.pop("checkpoint", None) or (
        os.path.splitext(os.path.abspath(search.store))[0] + "_grafs")
    targets = _target_names(evaluator)
    settings = {"epochs": evaluator.epochs, "batch_size": evaluator.batch_size,
                "targets": targets, **options}
    seed_evaluator = GrafsSeedEvaluator(UserModelBuilder(evaluator.model), _task_from(evaluator),
                                        settings, search_train=search_train,
                                        checkpoint_root=checkpoint, verbose=search.progress)
    algorithm = GrafsSeeds(seeds=seeds, first_seed=search.seed, metric=search.objective,
                           original=",".join(targets), context=search._context())
    check_search_settings(**settings)
    check_checkpoint_root(checkpoint)
    os.makedirs(os.path.dirname(os.path.abspath(search.store)), exist_ok=True)
    with checkpoint_lock(checkpoint):  # one process at a time on the checkpoint root
        check_checkpoint_root(checkpoint)
        with Store(search.store) as journal:
            with search._executor() as pool:
                summary = run_search(algorithm, seed_evaluator, journal, executor=pool,
                                     budget=seeds, seed=search.seed, reuse=False,
                                     metric=search.objective)
            found = [f for f in dict.fromkeys(algorithm.functions()) if f]
            search._final(journal, found[:search.final_top], evaluator)
    return summary, found, search.comparison
