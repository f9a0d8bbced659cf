"""Named GRAFS search settings: the paper's Tables 6, 7 and 9 and a quick CPU default.

A :class:`GrafsSettings` names the model, the task, the evaluation recipe and every search
hyperparameter; ``settings.kwargs()`` gives the keyword arguments of
:func:`~keras_actfn.search.grafs.search.grafs_search`::

    settings = get_preset("vit_tiny_cifar10")
    grafs_search(builder, task, **settings.kwargs())
    run_grafs(preset="vit_tiny_cifar10", seeds=5)            # search + evaluation

Iteration-based settings (Table 9) are mapped onto epochs of ``eval_interval`` iterations:
``epochs = max_iters / eval_interval``, ``steps_per_epoch = eval_interval``, and the warm
start and the start of shrinking are counted in those epochs. The search loop leaves its
traced graph at epoch boundaries only (that is where the warm start ends and operators are
dropped without retracing), and every iteration count of Table 9 is a multiple of its
``eval_interval`` of 100, so the mapping is exact: warm start for iterations 1-100,
shrinking from iteration 201, a record (the paper's evaluation) every 100 iterations. The
drops are binned per 100 iterations rather than per iteration; Appendix C defines the
schedule in epochs and Table 9 does not say how it is binned in iterations. A separate
``iterations=`` mode would need drops inside the traced loop, i.e. a second mechanism.
"""

from __future__ import annotations

import dataclasses

__all__ = ["GrafsSettings", "PRESETS", "get_preset", "preset_names", "format_presets"]


@dataclasses.dataclass(frozen=True)
class GrafsSettings:
    """One GRAFS search configuration.

    Epoch-based settings set ``epochs``/``warm_start_epochs``/``start_shrinking_epoch``;
    iteration-based ones set ``max_iters``/``eval_interval``/``warm_start_iterations``/
    ``start_shrinking_iteration`` instead. ``learning_rate``/``betas``/``weight_decay``/
    ``min_learning_rate`` are the weights' Adam (AdamW when ``weight_decay > 0``) with
    cosine annealing; ``arch_*`` the cell's Adam, with warm restarts every
    ``arch_restart_period`` iterations when set. ``recipe`` is the evaluation recipe of the
    found functions; ``augmentation`` the search data's augmentation (a recipe spec such as
    ``"TrivialAugment"``, passed to ``grafs_search(augment=...)`` lower-cased).
    """

    name: str
    model: str
    task: str
    batch_size: int
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    betas: tuple = (0.9, 0.999)
    weight_decay: float = 0.0
    min_learning_rate: float = 0.0
    arch_learning_rate: float = 0.1
    arch_betas: tuple = (0.9, 0.999)
    arch_restart_period: int | None = None
    arch_min_learning_rate: float = 0.0
    train_fraction: float = 0.75
    epochs: int | None = None
    warm_start_epochs: int | None = None
    start_shrinking_epoch: int | None = None
    max_iters: int | None = None
    eval_interval: int | None = None
    warm_start_iterations: int | None = None
    start_shrinking_iteration: int | None = None
    targets: tuple = ("relu",)
    recipe: str = "quick"
    augmentation: str | None = None
    source: str = ""
    notes: str = ""

    @property
    def iteration_based(self) -> bool:
        return self.max_iters is not None

    def replace(self, **changes) -> "GrafsSettings":
        """A copy with ``changes`` (``None`` values are ignored: "not overridden"). A new
        warm start moves a shrinking start that was ``2 x`` the old one along (``S = 2 E0``)
        unless the shrinking start is given too."""
        changes = {k: v for k, v in changes.items() if v is not None}
        for warm, shrink in (("warm_start_epochs", "start_shrinking_epoch"),
                             ("warm_start_iterations", "start_shrinking_iteration")):
            old_warm, old_shrink = getattr(self, warm), getattr(self, shrink)
            if (warm in changes and shrink not in changes and old_warm is not None
                    and old_shrink == 2 * old_warm):
                interval = changes.get("eval_interval", self.eval_interval) or 1
                changes[shrink] = max(2 * int(changes[warm]), 1 if shrink.endswith("epoch")
                                      else int(interval))
        return dataclasses.replace(self, **changes)

    def _epochs(self):
        if not self.iteration_based:
            if self.epochs is None:
                raise ValueError(f"preset {self.name!r} sets neither epochs nor max_iters")
            warm = 1 if self.warm_start_epochs is None else self.warm_start_epochs
            return self.epochs, warm, self.start_shrinking_epoch, None
        interval = self.eval_interval or self.max_iters
        counts = {"max_iters": self.max_iters,
                  "warm_start_iterations": self.warm_start_iterations or 0,
                  "start_shrinking_iteration": self.start_shrinking_iteration}
        for key, value in counts.items():
            if value is not None and value % interval:
                raise ValueError(f"{key}={value} is not a multiple of eval_interval={interval}"
                                 f" (warm start and drops happen every eval_interval "
                                 f"iterations)")
        shrink = counts["start_shrinking_iteration"]
        return (self.max_iters // interval, counts["warm_start_iterations"] // interval,
                None if shrink is None else shrink // interval, interval)

    def kwargs(self) -> dict:
        """Keyword arguments of ``grafs_search`` (everything but the model and the task)."""
        epochs, warm, shrink, steps = self._epochs()
        out = {
            "epochs": int(epochs), "warm_start_epochs": int(warm),
            "batch_size": int(self.batch_size),
            "gradient_accumulation_steps": int(self.gradient_accumulation_steps),
            "learning_rate": self.learning_rate, "betas": tuple(self.betas),
            "weight_decay": self.weight_decay, "min_learning_rate": self.min_learning_rate,
            "arch_learning_rate": self.arch_learning_rate, "arch_betas": tuple(self.arch_betas),
            "arch_restart_period": self.arch_restart_period,
            "arch_min_learning_rate": self.arch_min_learning_rate,
            "train_fraction": self.train_fraction, "targets": tuple(self.targets),
        }
        if self.augmentation:
            out["augment"] = self.augmentation.lower()
        if shrink is not None:
            out["start_shrinking_epoch"] = int(shrink)
        if steps is not None:
            out["steps_per_epoch"] = int(steps)
        return out

    def describe(self) -> str:
        if self.iteration_based:
            length = (f"{self.max_iters} iterations (record every {self.eval_interval}), warm "
                      f"start {self.warm_start_iterations}, shrinking from "
                      f"{self.start_shrinking_iteration}")
        else:
            length = (f"{self.epochs} epochs, warm start {self.warm_start_epochs}, shrinking "
                      f"from {self.start_shrinking_epoch or 2 * (self.warm_start_epochs or 1)}")
        return (f"{self.name}: {self.model} on {self.task}, batch {self.batch_size} x "
                f"{self.gradient_accumulation_steps}, {length}; weights lr "
                f"{self.learning_rate:g}, cell lr {self.arch_learning_rate:g}\n"
                f"    source: {self.source}" + (f"\n    notes: {self.notes}" if self.notes
                                                 else ""))


_AUGMENT = ("TrivialAugment (wide) on both parts of the split; the paper names only TA, no "
            "crops or flips.")

PRESETS: dict[str, GrafsSettings] = {s.name: s for s in (
    GrafsSettings(
        name="resnet20_cifar10", model="resnet_v1_20", task="cifar10", batch_size=32,
        gradient_accumulation_steps=16, learning_rate=1e-3, min_learning_rate=0.0,
        arch_learning_rate=0.1, epochs=50, warm_start_epochs=1, start_shrinking_epoch=2,
        targets=("relu",), recipe="grafs_eval_resnet20", augmentation="TrivialAugment",
        source="GRAFS Appendix D.2, Table 6 (ResNet20 search: CIFAR10, 50 epochs, batch 32, "
               "16 gradient accumulation steps, Adam lr 1e-3 betas 0.9/0.999 cosine to 0, "
               "split 0.75, cell Adam lr 0.1, warm start 1 epoch, shrinking from epoch 2)",
        notes=_AUGMENT),
    GrafsSettings(
        name="vit_tiny_cifar10", model="vit_tiny", task="cifar10", batch_size=128,
        gradient_accumulation_steps=4, learning_rate=1e-3, min_learning_rate=0.0,
        arch_learning_rate=1e-3, epochs=50, warm_start_epochs=1, start_shrinking_epoch=2,
        targets=("gelu",), recipe="grafs_eval_vit_tiny", augmentation="TrivialAugment",
        source="GRAFS Appendix D.2, Table 7 (ViT-tiny search: CIFAR10, 50 epochs, batch 128, "
               "4 gradient accumulation steps, Adam lr 1e-3 betas 0.9/0.999 cosine to 0, "
               "split 0.75, cell Adam lr 1e-3, warm start 1 epoch, shrinking from epoch 2)",
        notes=_AUGMENT + " The searched activation is the ViT's GELU."),
    GrafsSettings(
        name="minigpt_tinystories", model="mini_gpt", task="tinystories", batch_size=4,
        gradient_accumulation_steps=40, learning_rate=6e-4, betas=(0.9, 0.99),
        weight_decay=0.1, min_learning_rate=1e-4, arch_learning_rate=1e-3,
        arch_restart_period=125, arch_min_learning_rate=1e-4, max_iters=1000,
        eval_interval=100, warm_start_iterations=100, start_shrinking_iteration=200,
        targets=("gelu",), recipe="grafs_eval_mini_gpt",
        source="GRAFS Appendix D.4, Table 9 (miniGPT search: TinyStories, max_iters 1000, "
               "eval_interval 100, batch 4, 40 gradient accumulation steps, split 0.75, cell "
               "Adam lr 1e-3 betas 0.9/0.999 with CosineAnnealingWarmRestarts(T_0=125, "
               "T_mult=1, eta_min=1e-4), warm start 100 iterations, shrinking from "
               "iteration 200)",
        notes="Table 9 gives no optimizer for the weights; this preset assumes the evaluation "
              "optimizer of Table 10 (AdamW lr 6e-4, weight decay 0.1, betas 0.9/0.99, "
              "cosine to 1e-4), annealed over the 1000 search iterations. The searched "
              "activation is the GPT MLP's GELU. An 'epoch' is eval_interval=100 "
              "iterations; drops are binned per 100 iterations."),
    GrafsSettings(
        name="mnist1d_cnn", model="mnist1d_cnn", task="mnist1d", batch_size=64,
        gradient_accumulation_steps=1, learning_rate=1e-3, arch_learning_rate=0.1, epochs=10,
        warm_start_epochs=1, start_shrinking_epoch=2, targets=("relu",), recipe="quick",
        source="keras_actfn's quick CPU default (not in the paper): Table 6's optimizers, "
               "split, warm start and shrinking start on the MNIST-1D CNN, 10 epochs of "
               "batch 64 without accumulation",
        notes="A few minutes on 2 CPU cores for 5 searches; no augmentation."),
)}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> GrafsSettings:
    """The preset ``name``; an unknown name is a ``ValueError`` that lists the presets."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown GRAFS preset {name!r}; choose from "
                         f"{', '.join(preset_names())}") from None


def format_presets() -> str:
    return "\n".join(PRESETS[n].describe() for n in preset_names())
