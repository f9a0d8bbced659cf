"""Training recipes: the evaluation protocols of the papers, by name.

A :class:`Recipe` says how a candidate activation function is trained and judged: model and
task, epochs, batch size, optimizer, learning-rate schedule (a pure function of the epoch,
see :mod:`keras_actfn.train.schedules`), weight decay, augmentation, dropout and the
validation-accuracy threshold ``V`` below which a candidate counts as failed. Every number
comes from the seeds and cites where (``recipe.source``); where the papers leave something
open or use a tool this package does not have, ``recipe.notes`` says what stands in.

``recipe.scaled(epochs=4, width=0.25, subset=2000)`` is the same protocol shrunk for a CPU
smoke run: the schedule is stretched to the new length (milestones and warm-ups scale with
the epochs), the model narrowed, the training set subsampled (class-balanced).

Recipes (``RECIPES``; ``get_recipe(name)``):

* ``quick`` (and ``quick_mlp``): MNIST-1D in seconds, for tests, tutorials and searches on
  a laptop; not from the papers.
* ``cafe_search`` / ``cafe_final``: WRN-28-10 on CIFAR-10, dissertation A.1 (50-epoch search,
  200-epoch final); ``cafe_wrn_40_4_search`` / ``cafe_wrn_40_4_final`` on CIFAR-100 (ch. 3).
* ``pangaea_<arch>_search`` / ``pangaea_<arch>_final`` for ``wrn_10_4``, ``resnet_v1_56``,
  ``resnet_v2_56`` and ``all_cnn_c`` on CIFAR-100, dissertation A.2.1 (and ``V = 20%``, §4.2).
* ``autoinit_all_cnn_c``, ``autoinit_resnet_v1_56``, ``autoinit_superconvergence_all_cnn_c``,
  ``autoinit_superconvergence_resnet_v1_56``, ``autoinit_coatnet``: dissertation A.3.1.
* ``aquasurf_all_cnn_c_search`` / ``_full``, ``aquasurf_resnet_56_search`` / ``_full``,
  ``aquasurf_mobilevit``: dissertation Table A.2.
* ``grafs_eval_<model>`` for ``resnet20``, ``resnet32``, ``vit_tiny``, ``vit_small``
  (GRAFS Table 8) and ``mini_gpt``, ``tiny_gpt``, ``small_gpt`` (Table 10).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Mapping, NamedTuple

from .schedules import (LinearWarmupDecay, PiecewiseConstant, Schedule, WarmupCosine,
                        schedule_from_config)

OPTIMIZERS = ("sgd", "adam", "adamw")

#: model -> (builder argument that sets its width, the value the published model uses);
#: ``Recipe.scaled(width=f)`` multiplies that value by ``f``. (The registry's WRN builders
#: fix the widening factor from the name, so WRNs cannot be narrowed this way yet.)
WIDTH_ARGUMENTS = {
    "mnist1d_mlp": ("width", 100),
    "mnist1d_cnn": ("channels", 25),
    **{f"wrn_{d}_{k}": ("width", k) for d, k in ((10, 4), (16, 8), (28, 10), (40, 4))},
}


def _pairs(value, what) -> tuple:
    """A mapping (or pairs) as a sorted tuple of pairs, so recipes stay hashable."""
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    try:
        pairs = tuple(sorted((str(k), v) for k, v in items))
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a mapping of names to values, got {value!r}") from None
    return pairs


class AugmentSpec(NamedTuple):
    """An image augmentation spec (:func:`parse_augment`): random horizontal flips, random
    crops of the image padded with ``pad`` pixels, and TrivialAugment (wide) after them."""
    flip: bool = False
    pad: int = 0
    trivialaugment: bool = False


def parse_augment(spec):
    """``None`` (no augmentation), ``"task"`` (the task's own), or an :class:`AugmentSpec`
    ``(flip, pad, trivialaugment)``.

    Accepts ``None``/``"none"``, ``"task"``, and ``"+"``-joined ``"flip"``, ``"pad<N>"`` and
    ``"trivialaugment"`` (``"flip+pad4"``: random horizontal flips and random crops of the
    image padded with 4 pixels on every side; ``"flip+pad4+trivialaugment"``: those, then
    TrivialAugment, see :class:`keras_actfn.data.augment.TrivialAugment`).
    """
    if spec is None:
        return None
    text = str(spec).strip().lower()
    if text in ("", "none"):
        return None
    if text == "task":
        return "task"
    flip, pad, trivial = False, 0, False
    for part in text.split("+"):
        part = part.strip()
        match = re.fullmatch(r"pad(\d+)", part)
        if part == "flip":
            flip = True
        elif part == "trivialaugment":
            trivial = True
        elif match:
            pad = int(match.group(1))
        else:
            raise ValueError(f"unknown augmentation {part!r} in {spec!r}; expected 'none', "
                             "'task', or '+'-joined 'flip', 'pad<N>' and 'trivialaugment' "
                             "(e.g. 'flip+pad4+trivialaugment')")
    return AugmentSpec(flip, pad, trivial)


def augment_for_task(spec, task, what=None):
    """The batch function ``fn(x, y, seed) -> (x, y)`` that augmentation ``spec`` (see
    :func:`parse_augment`) gives on ``task``: ``None`` for none, the task's own for
    ``"task"``, else :func:`keras_actfn.data.augment.make_augment` of the spec (TrivialAugment
    reads the task's normalization to work on pixels). ``what`` names the spec's owner in
    the error raised when the task has no images."""
    parsed = parse_augment(spec)
    if parsed == "task":
        return task.augment
    if parsed is None:
        return None
    if len(task.input_shape) != 3:
        raise ValueError(f"{what or 'augmentation'} augments images ({spec}) but task "
                         f"{task.name!r} has inputs of shape {task.input_shape}")
    from ..data.augment import make_augment

    return make_augment(flip=parsed.flip, pad=parsed.pad, trivialaugment=parsed.trivialaugment,
                        preprocess=task.preprocess)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to train and judge one candidate.

    Attributes:
        name: registry name (``"quick"``, ``"cafe_search"``...).
        model: model registry name (:data:`keras_actfn.models.MODELS`).
        task: task name (:func:`keras_actfn.data.load_task`).
        epochs: passes over the training set (or of ``steps_per_epoch`` steps).
        batch_size: examples per step.
        schedule: learning rate as a function of the fractional epoch.
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        momentum, nesterov: SGD's momentum.
        betas: Adam's ``(beta_1, beta_2)``.
        weight_decay: decoupled weight decay given to the optimizer (Keras multiplies it by
            the current learning rate: ``w -= lr * weight_decay * w``); vectors (biases,
            normalization scales, activation parameters) are not decayed.
        l2: L2 regularization ``l2 * sum(w**2)`` of every kernel, added to the loss (the
            papers' "L2 regularization"/"weight decay" of Keras models); ``None`` keeps the
            model's own setting.
        clipnorm: clip each gradient to this norm (``None``: no clipping).
        dropout: the model builder's ``dropout=``; ``None`` keeps the builder's default.
        augment: ``None``, ``"task"`` or ``"flip"``/``"pad4"``/``"flip+pad5"``/
            ``"trivialaugment"``/``"flip+pad4+trivialaugment"``... (see
            :func:`parse_augment`).
        threshold: ``V``: a final validation accuracy below it fails the candidate
            (``below_threshold``); ``None``: only chance-level accuracy fails.
        task_options: keyword arguments of ``load_task`` (``normalize``, ``image_size``...).
        model_kwargs: extra keyword arguments of the model builder.
        autoinit_options: keyword arguments of :class:`~keras_actfn.autoinit.AutoInit`.
        subset: ``(split, size)`` pairs: train on a class-balanced subset.
        steps_per_epoch: fixed steps per epoch (iteration-based protocols such as GRAFS's
            GPT runs, which count 10,000 iterations); ``None``: one pass over the data.
        validation_steps: batches of the validation set per evaluation (``None``: all).
        gradient_accumulation_steps: micro-batches per optimizer update (Keras 3 only).
        steps_per_execution: training steps per compiled call (speed only; no effect on the
            numbers).
        source: where the settings come from.
        notes: where this recipe departs from the source, and why.
        scaling: how :meth:`scaled` changed the published recipe (shown in :attr:`label`).
    """

    name: str
    model: str
    task: str
    epochs: int
    batch_size: int
    schedule: Schedule
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple = (0.9, 0.999)
    weight_decay: float | None = None
    l2: float | None = None
    clipnorm: float | None = None
    dropout: float | None = None
    augment: str | None = None
    threshold: float | None = None
    task_options: tuple = ()
    model_kwargs: tuple = ()
    autoinit_options: tuple = ()
    subset: tuple = ()
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    gradient_accumulation_steps: int | None = None
    steps_per_execution: int = 1
    source: str = ""
    notes: str = ""
    scaling: tuple = ()

    def __post_init__(self):
        set_ = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731
        if not isinstance(self.schedule, Schedule):
            raise TypeError(f"recipe {self.name!r}: schedule must be a Schedule, got "
                            f"{type(self.schedule).__name__}")
        for key in ("epochs", "batch_size", "steps_per_execution"):
            value = getattr(self, key)
            if int(value) != value or value < 1:
                raise ValueError(f"recipe {self.name!r}: {key} must be a positive integer, "
                                 f"got {value!r}")
            set_(key, int(value))
        for key in ("steps_per_epoch", "validation_steps"):
            value = getattr(self, key)
            if value is not None:
                if int(value) != value or value < 1:
                    raise ValueError(f"recipe {self.name!r}: {key} must be None or a "
                                     f"positive integer, got {value!r}")
                set_(key, int(value))
        if self.gradient_accumulation_steps is not None and self.gradient_accumulation_steps < 2:
            raise ValueError(f"recipe {self.name!r}: gradient_accumulation_steps must be None "
                             f"or >= 2, got {self.gradient_accumulation_steps}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"recipe {self.name!r}: optimizer must be one of {OPTIMIZERS}, "
                             f"got {self.optimizer!r}")
        for key in ("weight_decay", "l2", "clipnorm", "dropout"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"recipe {self.name!r}: {key} must be None or a finite "
                                 f"number >= 0, got {value!r}")
        if self.dropout is not None and self.dropout >= 1:
            raise ValueError(f"recipe {self.name!r}: dropout must be < 1, got {self.dropout}")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ValueError(f"recipe {self.name!r}: threshold V is a validation accuracy in "
                             f"[0, 1], got {self.threshold!r}")
        parse_augment(self.augment)  # raises on an unknown spec
        set_("betas", tuple(float(b) for b in self.betas))
        for key in ("task_options", "model_kwargs", "autoinit_options", "subset", "scaling"):
            set_(key, _pairs(getattr(self, key), key))
        for split, size in self.subset:
            if split not in ("train", "validation", "test") or int(size) < 1:
                raise ValueError(f"recipe {self.name!r}: subset takes train/validation/test "
                                 f"sizes >= 1, got {split}={size!r}")

    # ------------------------------------------------------------------ derived views
    @property
    def label(self) -> str:
        """The name, plus the scaling if any: ``"cafe_search[epochs=4,subset=train:2000]"``."""
        if not self.scaling:
            return self.name
        return f"{self.name}[{','.join(f'{k}={v}' for k, v in self.scaling)}]"

    def learning_rate(self, epoch: float) -> float:
        """The learning rate at (fractional, 0-based) ``epoch``."""
        return self.schedule(epoch)

    def option(self, field: str) -> dict:
        """One of the pair fields as a dict: ``recipe.option("task_options")``."""
        return dict(getattr(self, field))

    def model_arguments(self) -> dict:
        """Keyword arguments for ``build_model`` besides the activation and the task."""
        kwargs = dict(self.model_kwargs)
        if self.dropout is not None:
            kwargs.setdefault("dropout", self.dropout)
        return kwargs

    # --------------------------------------------------------------------- copies
    def replace(self, **changes) -> "Recipe":
        """A copy with fields changed (``ValueError`` for a field that does not exist)."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ValueError(f"unknown recipe field(s) {unknown}; fields are {sorted(fields)}")
        return dataclasses.replace(self, **changes)

    def scaled(self, epochs: int | None = None, width: float | None = None,
               subset=None) -> "Recipe":
        """A smaller copy for smoke runs.

        Args:
            epochs: new number of epochs; every time in the schedule (milestones, warm-up,
                decay) scales by ``epochs / self.epochs``, so the shape is kept.
            width: multiplier of the model's width (see :data:`WIDTH_ARGUMENTS`).
            subset: training-set size (an int), or ``{"train": n, "validation": m, ...}``.
        """
        changes, scaling = {}, dict(self.scaling)
        if epochs is not None:
            if int(epochs) != epochs or epochs < 1:
                raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
            epochs = int(epochs)
            changes["epochs"] = epochs
            changes["schedule"] = self.schedule.scaled(epochs / self.epochs)
            scaling["epochs"] = epochs
        if width is not None:
            width = float(width)
            if not (width > 0 and math.isfinite(width)):
                raise ValueError(f"width must be a positive multiplier, got {width!r}")
            if self.model not in WIDTH_ARGUMENTS:
                raise ValueError(f"model {self.model!r} has no width argument; width scaling "
                                 f"works for {sorted(WIDTH_ARGUMENTS)}")
            argument, published = WIDTH_ARGUMENTS[self.model]
            kwargs = dict(self.model_kwargs)
            current = kwargs.get(argument, published)
            kwargs[argument] = max(1, int(round(current * width)))
            changes["model_kwargs"] = kwargs
            scaling["width"] = round(scaling.get("width", 1.0) * width, 6)
        if subset is not None:
            sizes = {"train": subset} if not isinstance(subset, Mapping) else dict(subset)
            merged = {**dict(self.subset), **{k: int(v) for k, v in sizes.items()}}
            changes["subset"] = merged
            scaling["subset"] = "/".join(f"{k}:{v}" for k, v in sorted(merged.items()))
        changes["scaling"] = scaling
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------------- reporting
    def to_dict(self) -> dict:
        """JSON-safe description (the schedule as its config)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Schedule):
                value = value.to_config()
            elif field.name in ("task_options", "model_kwargs", "autoinit_options", "subset",
                                "scaling"):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        data = dict(data)
        data["schedule"] = schedule_from_config(data["schedule"])
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)

    def describe(self) -> str:
        """A few lines for humans: what the recipe does."""
        opt = self.optimizer.upper() if self.optimizer == "sgd" else self.optimizer.capitalize()
        if self.optimizer == "sgd":
            opt += f" momentum {self.momentum:g}" + (" (Nesterov)" if self.nesterov else "")
        else:
            opt += f" betas {self.betas[0]:g}/{self.betas[1]:g}"
        reg = []
        if self.l2:
            reg.append(f"L2 {self.l2:g}")
        if self.weight_decay:
            reg.append(f"decoupled weight decay {self.weight_decay:g} x lr")
        if self.dropout is not None:
            reg.append(f"dropout {self.dropout:g}")
        steps = (f", {self.steps_per_epoch} steps per epoch" if self.steps_per_epoch else "")
        lines = [f"{self.label}: {self.model} on {self.task}",
                 f"  {self.epochs} epochs{steps}, batch {self.batch_size}, {opt}",
                 f"  learning rate: {self.schedule.describe()}",
                 f"  regularization: {', '.join(reg) or 'none'}; augmentation: "
                 f"{self.augment or 'none'}",
                 f"  fails below validation accuracy "
                 f"{'chance' if self.threshold is None else format(self.threshold, 'g')}"]
        if self.source:
            lines.append(f"  source: {self.source}")
        if self.notes:
            lines.append(f"  notes: {self.notes}")
        return "\n".join(lines)


# ------------------------------------------------------------------------ registry
RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe, overwrite: bool = False) -> Recipe:
    """Add ``recipe`` to :data:`RECIPES` under its name."""
    if recipe.name in RECIPES and not overwrite:
        raise ValueError(f"recipe {recipe.name!r} is already registered")
    RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(recipe) -> Recipe:
    """A :class:`Recipe` by name (a Recipe passes through); ``ValueError`` if unknown."""
    if isinstance(recipe, Recipe):
        return recipe
    try:
        return RECIPES[recipe]
    except (KeyError, TypeError):
        raise ValueError(f"unknown recipe {recipe!r}; available: {sorted(RECIPES)}") from None


_DISS = "dissertation"

# --- quick: MNIST-1D in seconds ---------------------------------------------------------
# Measured on 2 CPU cores (docs/evaluation.md): the CNN spreads good and bad functions over
# a wider range than the MLP (ReLU/Swish/GELU ~0.86-0.88, tanh ~0.78, x ~0.33, constant 0.10;
# the MLP puts all good functions at 0.58-0.62), for ~3 s per candidate. Peak 0.04: at 0.05
# |x| diverged for one seed in three; at 0.03 every function lost 3-5 points.
_QUICK = dict(task="mnist1d", epochs=15, batch_size=64, optimizer="sgd", momentum=0.9,
              nesterov=True, schedule=LinearWarmupDecay(peak=0.04, warmup_epochs=2,
                                                         total_epochs=15),
              threshold=0.2, steps_per_execution=8,
              source="keras_actfn: tuned on MNIST-1D (Greydanus 2020) to separate good from "
                     "bad functions in seconds; not from the papers",
              notes="V = 0.2: twice chance, below the linear activation (~0.33)")
register_recipe(Recipe(name="quick", model="mnist1d_cnn", **_QUICK))
register_recipe(Recipe(name="quick_mlp", model="mnist1d_mlp", **_QUICK))

# --- CAFE: dissertation A.1 -------------------------------------------------------------
_CAFE = dict(batch_size=128, optimizer="sgd", momentum=0.9, nesterov=True, dropout=0.3,
             l2=5e-4, augment="flip", task_options={"normalize": True},
             notes="A.1 names featurewise centering, horizontal flips and ZCA whitening; ZCA "
                   "is not implemented (normalize=True centers and scales per channel). "
                   "Batch size 128 and L2 5e-4 are Zagoruyko & Komodakis' WRN settings, "
                   "which A.1 says it mirrors; A.1 does not print them.")
register_recipe(Recipe(
    name="cafe_search", model="wrn_28_10", task="cifar10", epochs=50,
    schedule=PiecewiseConstant(0.1, (25, 40, 45), 0.2),
    source=f"{_DISS} A.1.1-A.1.2: WRN-28-10, 50 epochs, lr 0.1 x0.2 after epochs 25/40/45, "
           "SGD Nesterov 0.9, dropout 0.3", **_CAFE))
register_recipe(Recipe(
    name="cafe_final", model="wrn_28_10", task="cifar10", epochs=200,
    schedule=PiecewiseConstant(0.1, (60, 120, 160), 0.2),
    source=f"{_DISS} A.1.2: WRN-28-10 from scratch, 200 epochs, lr 0.1 x0.2 after epochs "
           "60/120/160", **_CAFE))
register_recipe(Recipe(
    name="cafe_wrn_40_4_search", model="wrn_40_4", task="cifar100", epochs=50,
    schedule=PiecewiseConstant(0.1, (25, 40, 45), 0.2),
    source=f"{_DISS} §3 (Figure 3.5: WRN-40-4 on CIFAR-100 for 50 epochs) with the A.1 "
           "search schedule", **_CAFE))
register_recipe(Recipe(
    name="cafe_wrn_40_4_final", model="wrn_40_4", task="cifar100", epochs=200,
    schedule=PiecewiseConstant(0.1, (60, 120, 160), 0.2),
    source=f"{_DISS} §3 (Table 3.3: WRN-40-4 on CIFAR-100, 200 epochs) with the A.1 final "
           "schedule", **_CAFE))

# --- PANGAEA: dissertation A.2.1 (CIFAR-100, V = 20% from §4.2) ----------------------------
_PANGAEA_V = 0.2
_WRN_PANGAEA = dict(model="wrn_10_4", task="cifar100", batch_size=128, optimizer="sgd",
                    momentum=0.9, nesterov=True, dropout=0.3, l2=5e-4, augment="flip+pad4",
                    task_options={"normalize": True},
                    notes="Batch size 128 is the WRN setup A.2.1 mirrors; A.2.1 does not "
                          "print it.")
register_recipe(Recipe(
    name="pangaea_wrn_10_4_search", epochs=100,
    schedule=PiecewiseConstant(0.1, (30, 60, 80), 0.2), threshold=_PANGAEA_V,
    source=f"{_DISS} A.2.1 (WRN-10-4, evolution: 100 epochs, lr 0.1 x0.2 after 30/60/80) and "
           "§4.2 (V = 20%)", **_WRN_PANGAEA))
register_recipe(Recipe(
    name="pangaea_wrn_10_4_final", epochs=200,
    schedule=PiecewiseConstant(0.1, (60, 120, 160), 0.2),
    source=f"{_DISS} A.2.1 (WRN-10-4, final: 200 epochs, lr 0.1 x0.2 after 60/120/160, "
           "Nesterov 0.9, dropout 0.3, L2 5e-4, featurewise center/std, flip, pad-4 crops)",
    **_WRN_PANGAEA))

_RESNET_PANGAEA = dict(task="cifar100", batch_size=128, optimizer="sgd", momentum=0.9,
                       l2=1e-4, augment="flip+pad4", task_options={"normalize": False},
                       notes="A.2.1 lists only flips and pad-4 crops for the ResNets, so no "
                             "featurewise normalization; batch 128 is from A.2.1's "
                             "iterations-to-epochs example.")
register_recipe(Recipe(
    name="pangaea_resnet_v1_56_search", model="resnet_v1_56", epochs=100,
    schedule=PiecewiseConstant(0.1, (46, 68), 0.1, warmup_epochs=1, warmup_lr=0.01),
    threshold=_PANGAEA_V,
    source=f"{_DISS} A.2.1 (ResNet-v1-56, evolution: 100 epochs, 0.01 for one epoch, then "
           "0.1, x0.1 after 46/68) and §4.2 (V = 20%)", **_RESNET_PANGAEA))
register_recipe(Recipe(
    name="pangaea_resnet_v1_56_final", model="resnet_v1_56", epochs=200,
    schedule=PiecewiseConstant(0.1, (91, 137), 0.1, warmup_epochs=1, warmup_lr=0.01),
    source=f"{_DISS} A.2.1 (ResNet-v1-56, final: 200 epochs, 0.01 for one epoch, then 0.1, "
           "x0.1 after 91/137, momentum 0.9, L2 1e-4, no dropout)", **_RESNET_PANGAEA))
register_recipe(Recipe(
    name="pangaea_resnet_v2_56_search", model="resnet_v2_56", epochs=100,
    schedule=PiecewiseConstant(0.1, (46, 68), 0.1), threshold=_PANGAEA_V,
    source=f"{_DISS} A.2.1 (ResNet-v2-56: as ResNet-v1-56 without the warm-up) and §4.2",
    **_RESNET_PANGAEA))
register_recipe(Recipe(
    name="pangaea_resnet_v2_56_final", model="resnet_v2_56", epochs=200,
    schedule=PiecewiseConstant(0.1, (91, 137), 0.1),
    source=f"{_DISS} A.2.1 (ResNet-v2-56: as ResNet-v1-56 without the warm-up)",
    **_RESNET_PANGAEA))

_ALL_CNN = dict(model="all_cnn_c", epochs=350, batch_size=128, optimizer="sgd", momentum=0.9,
                schedule=PiecewiseConstant(0.01, (200, 250, 300), 0.1), dropout=0.5,
                l2=1e-3, augment="flip+pad5", task_options={"normalize": True},
                notes="Batch size 128 is Table A.2's for All-CNN-C; A.2.1 and A.3.1 do not "
                      "print one.")
register_recipe(Recipe(
    name="pangaea_all_cnn_c_search", task="cifar10", threshold=_PANGAEA_V,
    source=f"{_DISS} A.2.1 (All-CNN-C: the same setup during evolution and for final "
           "training), §4.2 (V = 20%) and §4.4.5 (All-CNN-C is searched on CIFAR-10)",
    **_ALL_CNN))
register_recipe(Recipe(
    name="pangaea_all_cnn_c_final", task="cifar10",
    source=f"{_DISS} A.2.1 (All-CNN-C: 350 epochs, lr 0.01 x0.1 after 200/250/300, momentum "
           "0.9, dropout 0.5, L2 1e-3, featurewise center/std, flip, pad-5 crops)",
    **_ALL_CNN))

# --- AutoInit: dissertation A.3.1 ---------------------------------------------------------
register_recipe(Recipe(
    name="autoinit_all_cnn_c", task="cifar10",
    source=f"{_DISS} A.3.1 (All-CNN-C: as Springenberg et al.; the same numbers as A.2.1)",
    **_ALL_CNN))
_RESNET_AUTOINIT = dict(task="cifar10", epochs=200, batch_size=128, optimizer="sgd",
                        momentum=0.9, l2=1e-4, augment="flip+pad4",
                        schedule=PiecewiseConstant(0.1, (91, 137), 0.1, warmup_epochs=1,
                                                   warmup_lr=0.01),
                        task_options={"normalize": False},
                        notes="A.3.1 gives the optimizer, weight decay and augmentation but "
                              "not the schedule; the ResNet-v1 schedule of A.2.1 stands in.")
register_recipe(Recipe(
    name="autoinit_resnet_v1_56", model="resnet_v1_56",
    source=f"{_DISS} A.3.1 (residual networks: SGD momentum 0.9, no dropout, weight decay "
           "1e-4, flips and pad-4 crops)", **_RESNET_AUTOINIT))
register_recipe(Recipe(
    name="autoinit_resnet_v1_56_no_bn", model="resnet_v1_56",
    model_kwargs={"batchnorm": False},
    source=f"{_DISS} A.3.1 and §5.6 (ResNet-v1-56 without BatchNormalization: AutoInit "
           "keeps the unnormalized network trainable)", **_RESNET_AUTOINIT))
register_recipe(Recipe(
    name="autoinit_superconvergence_all_cnn_c", task="cifar10",
    **{**_ALL_CNN, "epochs": 25, "l2": 1e-4,
       "schedule": LinearWarmupDecay(peak=0.1, warmup_epochs=5, total_epochs=25)},
    source=f"{_DISS} A.3.1, data-dependent initialization comparison (§5.9): lr linear to "
           "0.1 over five epochs, linear decrease for 20, weight decay of All-CNN-C / 10"))
register_recipe(Recipe(
    name="autoinit_superconvergence_resnet_v1_56", model="resnet_v1_56",
    **{**_RESNET_AUTOINIT, "epochs": 25,
       "schedule": LinearWarmupDecay(peak=0.1, warmup_epochs=5, total_epochs=25),
       "notes": ""},
    source=f"{_DISS} A.3.1, data-dependent initialization comparison (§5.9): lr linear to "
           "0.1 over five epochs, then linear decrease for 20 epochs"))
register_recipe(Recipe(
    name="autoinit_coatnet", model="coatnet_t", task="imagenette", epochs=105, batch_size=256,
    optimizer="adamw", weight_decay=0.02,
    schedule=WarmupCosine(peak=4e-4, warmup_epochs=6, total_epochs=105, start=1e-4),
    augment="task", task_options={"image_size": 160},
    autoinit_options={"signal_variance": 0.01},
    source=f"{_DISS} A.3.1 (CoAtNet on Imagenette: 160x160, lr linear 1e-4 -> 4e-4 over six "
           "epochs then cosine until epoch 105, weight decay 0.02 x lr, batch 256, AdamW, "
           "AutoInit signal variance 0.01)",
    notes="RandAugment, Mixup/CutMix, random resized crops and the 95% center crop are not "
          "implemented; the task's own flips and crops stand in. The text prints the peak "
          "as 4e-4 (Table A.2 gives 4e-3 for MobileViTv2 and 2e-3 for ResNet-50); 4e-4 is "
          "kept as printed. Needs TF_USE_LEGACY_KERAS=1 (kecam)."))

# --- AQuaSurF: dissertation Table A.2 ------------------------------------------------------
# the warm-up is five epochs in both the 25-epoch search and the 50-epoch full evaluation
_AQ_SCHEDULE = LinearWarmupDecay(peak=0.1, warmup_epochs=5, total_epochs=25)
_AQ_CNN = dict(model="all_cnn_c", task="cifar10", batch_size=128, dropout=0.5, optimizer="sgd",
               momentum=0.9, l2=1e-4, augment="flip+pad4", task_options={"normalize": True},
               source=f"{_DISS} Table A.2 (All-CNN-C: batch 128, dropout 0.5, linear warm-up "
                      "to 0.1 for five epochs then linear decay, mean/std normalization, "
                      "momentum 0.9, pad-4 crops, flips, weight decay 1e-4, AutoInit)",
               notes="Table A.2's 'weight decay' is taken as Keras L2 on the kernels.")
register_recipe(Recipe(name="aquasurf_all_cnn_c_search", epochs=25, schedule=_AQ_SCHEDULE,
                       **_AQ_CNN))
register_recipe(Recipe(name="aquasurf_all_cnn_c_full", epochs=50,
                       schedule=dataclasses.replace(_AQ_SCHEDULE, total_epochs=50), **_AQ_CNN))
_AQ_RESNET = dict(model="resnet_v1_56", task="cifar10", batch_size=128, dropout=None,
                  optimizer="sgd", momentum=0.9, l2=1e-4, augment="flip+pad5",
                  task_options={"normalize": False},
                  source=f"{_DISS} Table A.2 (ResNet-56: batch 128, no dropout, linear warm-up "
                         "to 0.1 for five epochs then linear decay, no mean/std "
                         "normalization, momentum 0.9, pad-5 crops, flips, weight decay 1e-4, "
                         "AutoInit)",
                  notes="Table A.2 gives ResNet-56 pad-5 crops and All-CNN-C pad-4 (the "
                        "reverse of A.2.1); kept as printed. 'Weight decay' is taken as "
                        "Keras L2 on the kernels.")
register_recipe(Recipe(name="aquasurf_resnet_56_search", epochs=25, schedule=_AQ_SCHEDULE,
                       **_AQ_RESNET))
register_recipe(Recipe(name="aquasurf_resnet_56_full", epochs=50,
                       schedule=dataclasses.replace(_AQ_SCHEDULE, total_epochs=50),
                       **_AQ_RESNET))
register_recipe(Recipe(
    name="aquasurf_mobilevit", model="mobilevit_v2_050", task="imagenette", epochs=105,
    batch_size=256, optimizer="adamw", weight_decay=0.02,
    schedule=WarmupCosine(peak=4e-3, warmup_epochs=5, total_epochs=105, start=1e-4, end=1e-6),
    augment="task", task_options={"image_size": 160},
    source=f"{_DISS} Table A.2 (MobileViTv2-0.5: batch 256, 105 epochs, 160x160, linear "
           "warm-up 1e-4 -> 4e-3 for five epochs then cosine decay to 1e-6, AdamW, weight "
           "decay 0.02 x lr)",
    notes="RandAugment, Mixup/CutMix, random resized crops and the 95% center crop are not "
          "implemented; the task's own flips and crops stand in. Needs "
          "TF_USE_LEGACY_KERAS=1 (kecam)."))

# --- GRAFS: Appendix D.3 (Table 8) and D.5 (Table 10) ------------------------------------
_GRAFS_IMAGE = dict(task="cifar10", epochs=500, batch_size=512, optimizer="adam",
                    betas=(0.9, 0.999), schedule=WarmupCosine(peak=1e-3, warmup_epochs=0,
                                                              total_epochs=500),
                    augment="trivialaugment", task_options={"normalize": True}, l2=0.0,
                    source="GRAFS Appendix D.3, Table 8 (CIFAR-10/100, SVHN: 500 epochs, "
                           "batch 512, Adam lr 1e-3 betas 0.9/0.999, cosine annealing to 0, "
                           "TrivialAugment)",
                    notes="TrivialAugment (wide, 31 strengths) alone: the paper names only "
                          "TA, though the code base it cites (vision-transformers-cifar10) "
                          "also crops with padding 4 and flips; augment="
                          "'flip+pad4+trivialaugment' adds those. Adam without weight decay, "
                          "so l2=0 switches off the L2 the ResNet builders add by default. "
                          "Replace task= for CIFAR-100 or SVHN.")
for _name, _model in (("resnet20", "resnet_v1_20"), ("resnet32", "resnet_v1_32"),
                      ("vit_tiny", "vit_tiny"), ("vit_small", "vit_small")):
    register_recipe(Recipe(name=f"grafs_eval_{_name}", model=_model, **_GRAFS_IMAGE))

# 10,000 iterations = 20 "epochs" of 500 optimizer steps; Keras counts the 40 accumulated
# micro-batches of each step as training steps, so an epoch is 500 * 40 of them
_GRAFS_GPT = dict(task="tinystories", epochs=20, steps_per_epoch=500 * 40, batch_size=16,
                  gradient_accumulation_steps=40, optimizer="adamw", betas=(0.9, 0.99),
                  weight_decay=0.1,
                  schedule=WarmupCosine(peak=6e-4, warmup_epochs=0, total_epochs=20, end=1e-4),
                  validation_steps=200,
                  source="GRAFS Appendix D.5, Table 10 (TinyStories: 10,000 iterations, batch "
                         "16, 40 gradient accumulation steps, AdamW lr 6e-4 weight decay 0.1 "
                         "betas 0.9/0.99, cosine annealing 6e-4 -> 1e-4)",
                  notes="Validation every 500 iterations on 200 batches (nanoGPT's eval_iters; "
                        "Table 10 gives no evaluation interval). Keras' AdamW multiplies the "
                        "decay by the learning rate, as PyTorch's does.")
for _name in ("mini_gpt", "tiny_gpt", "small_gpt"):
    register_recipe(Recipe(name=f"grafs_eval_{_name}", model=_name, **_GRAFS_GPT))

__all__ = ["Recipe", "RECIPES", "get_recipe", "register_recipe", "parse_augment", "AugmentSpec",
           "augment_for_task",
           "WIDTH_ARGUMENTS", "OPTIMIZERS"]
