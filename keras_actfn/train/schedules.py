"""Learning-rate schedules as pure functions of the (fractional) epoch.

A schedule is a frozen dataclass: ``schedule(t)`` is the learning rate at epoch ``t``
(``t = 0`` is the start of training, ``t = 2.5`` half-way through the third epoch), the
same number every time. Epoch indices are 0-based, and "decreased after epoch 25" in the
papers means the 26th epoch (index 25) is the first at the new rate, so
``PiecewiseConstant(0.1, (25, 40, 45), 0.2)(24) == 0.1`` and ``(25) == 0.02``.

``schedule.scaled(f)`` stretches every time in the schedule by ``f`` (milestones,
warm-up and decay lengths), which is how a 200-epoch recipe becomes a 4-epoch smoke run
with the same shape.

The training harness samples the function once per optimizer step into a table
(:func:`step_table`) and hands that to Keras as a ``LearningRateSchedule``
(:func:`keras_schedule`): every step gets ``schedule(step / steps_per_epoch)`` with no Python
call per step, piecewise-constant schedules are exact, and warm-ups and decays are smooth
within an epoch rather than stepping once per epoch.
"""

from __future__ import annotations

import abc
import dataclasses
import math

import numpy as np


def _check_rate(name, value, allow_zero=True):
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite learning rate "
                         f"{'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def _check_epochs(name, value, allow_zero=True):
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number of epochs "
                         f"{'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


class Schedule(abc.ABC):
    """Base of the schedules: ``__call__(epoch) -> lr``, ``scaled(factor)``, ``describe()``."""

    @abc.abstractmethod
    def __call__(self, epoch: float) -> float:
        """The learning rate at (fractional) ``epoch``."""

    @abc.abstractmethod
    def scaled(self, factor: float) -> "Schedule":
        """The same shape with every time multiplied by ``factor``."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for recipe listings."""

    def to_config(self) -> dict:
        config = {"class": type(self).__name__}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            config[field.name] = list(value) if isinstance(value, tuple) else value
        return config


@dataclasses.dataclass(frozen=True)
class Constant(Schedule):
    """The same rate throughout."""

    lr: float

    def __post_init__(self):
        object.__setattr__(self, "lr", _check_rate("lr", self.lr))

    def __call__(self, epoch):
        return self.lr

    def scaled(self, factor):
        return self

    def describe(self):
        return f"constant {self.lr:g}"


@dataclasses.dataclass(frozen=True)
class PiecewiseConstant(Schedule):
    """``initial``, multiplied by ``factor`` at each milestone; optionally ``warmup_lr``
    before ``warmup_epochs`` (ResNet-v1's one epoch at 0.01, He et al. 2016).

    ``lr(t) = warmup_lr`` for ``t < warmup_epochs``, else
    ``initial * factor ** (number of milestones <= t)``.
    """

    initial: float
    milestones: tuple = ()
    factor: float = 0.1
    warmup_epochs: float = 0.0
    warmup_lr: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "initial", _check_rate("initial", self.initial, False))
        milestones = tuple(_check_epochs("milestone", m) for m in self.milestones)
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {list(milestones)}")
        object.__setattr__(self, "milestones", milestones)
        factor = float(self.factor)
        if not (0 < factor and math.isfinite(factor)):
            raise ValueError(f"factor must be positive and finite, got {factor}")
        object.__setattr__(self, "factor", factor)
        object.__setattr__(self, "warmup_epochs",
                           _check_epochs("warmup_epochs", self.warmup_epochs))
        if self.warmup_epochs and self.warmup_lr is None:
            raise ValueError("warmup_epochs > 0 needs warmup_lr")
        if self.warmup_lr is not None:
            object.__setattr__(self, "warmup_lr", _check_rate("warmup_lr", self.warmup_lr))

    def __call__(self, epoch):
        epoch = float(epoch)
        if epoch < self.warmup_epochs:
            return self.warmup_lr
        drops = sum(1 for m in self.milestones if epoch >= m)
        return self.initial * self.factor ** drops

    def scaled(self, factor):
        return dataclasses.replace(self, milestones=tuple(m * factor for m in self.milestones),
                                   warmup_epochs=self.warmup_epochs * factor)

    def describe(self):
        text = f"{self.initial:g}"
        if self.milestones:
            text += (f", x{self.factor:g} at epochs "
                     + "/".join(f"{m:g}" for m in self.milestones))
        if self.warmup_epochs:
            text = f"{self.warmup_lr:g} for {self.warmup_epochs:g} epoch(s), then " + text
        return text


@dataclasses.dataclass(frozen=True)
class _WarmupThenDecay(Schedule):
    """Linear from ``start`` to ``peak`` over ``warmup_epochs``, then :meth:`_decay` from
    ``peak`` to ``end`` at ``total_epochs`` (and ``end`` after it)."""

    peak: float
    warmup_epochs: float
    total_epochs: float
    start: float = 0.0
    end: float = 0.0

    def __post_init__(self):
        _check_warmup_fields(self)

    @abc.abstractmethod
    def _decay(self, progress: float) -> float:
        """The rate at ``progress`` in [0, 1) of the decay phase."""

    def __call__(self, epoch):
        t = float(epoch)
        if t < self.warmup_epochs:
            return self.start + (self.peak - self.start) * t / self.warmup_epochs
        span = self.total_epochs - self.warmup_epochs
        if span <= 0 or t >= self.total_epochs:
            return self.end if t >= self.total_epochs else self.peak
        return self._decay((t - self.warmup_epochs) / span)

    def scaled(self, factor):
        return dataclasses.replace(self, warmup_epochs=self.warmup_epochs * factor,
                                   total_epochs=self.total_epochs * factor)


@dataclasses.dataclass(frozen=True)
class LinearWarmupDecay(_WarmupThenDecay):
    """Linear from ``start`` to ``peak`` over ``warmup_epochs``, then linear to ``end`` at
    ``total_epochs`` (and ``end`` after it): AQuaSurF's Table A.2 schedule and the
    "superconvergence" schedule of AutoInit §5.9."""

    def _decay(self, progress):
        return self.peak + (self.end - self.peak) * progress

    def describe(self):
        return (f"linear warm-up {self.start:g} -> {self.peak:g} over "
                f"{self.warmup_epochs:g} epochs, linear decay to {self.end:g} at epoch "
                f"{self.total_epochs:g}")


@dataclasses.dataclass(frozen=True)
class WarmupCosine(_WarmupThenDecay):
    """Linear from ``start`` to ``peak`` over ``warmup_epochs``, then a half cosine from
    ``peak`` down to ``end`` at ``total_epochs``; ``warmup_epochs=0`` is plain cosine
    annealing (PyTorch's ``CosineAnnealingLR``, as in the GRAFS tables)."""

    def _decay(self, progress):
        return self.end + 0.5 * (self.peak - self.end) * (1.0 + math.cos(math.pi * progress))

    def describe(self):
        head = (f"linear warm-up {self.start:g} -> {self.peak:g} over {self.warmup_epochs:g} "
                f"epochs, then " if self.warmup_epochs else "")
        return f"{head}cosine {self.peak:g} -> {self.end:g} at epoch {self.total_epochs:g}"


def _check_warmup_fields(schedule):
    for name in ("peak", "start", "end"):
        object.__setattr__(schedule, name, _check_rate(name, getattr(schedule, name),
                                                       name != "peak"))
    object.__setattr__(schedule, "warmup_epochs",
                       _check_epochs("warmup_epochs", schedule.warmup_epochs))
    object.__setattr__(schedule, "total_epochs",
                       _check_epochs("total_epochs", schedule.total_epochs, False))
    if schedule.warmup_epochs > schedule.total_epochs:
        raise ValueError(f"warmup_epochs ({schedule.warmup_epochs:g}) exceeds total_epochs "
                         f"({schedule.total_epochs:g})")


SCHEDULES = {cls.__name__: cls for cls in (Constant, PiecewiseConstant, LinearWarmupDecay,
                                           WarmupCosine)}


def schedule_from_config(config: dict) -> Schedule:
    """Inverse of ``Schedule.to_config``."""
    config = dict(config)
    name = config.pop("class", None)
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule class {name!r}; expected one of {sorted(SCHEDULES)}")
    for key, value in config.items():
        if isinstance(value, list):
            config[key] = tuple(value)
    return SCHEDULES[name](**config)


def step_table(schedule, steps_per_epoch: int, epochs: int) -> np.ndarray:
    """``schedule(step / steps_per_epoch)`` for every optimizer step of a run, float32."""
    steps_per_epoch, epochs = int(steps_per_epoch), int(epochs)
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(f"need steps_per_epoch >= 1 and epochs >= 1, got {steps_per_epoch}, "
                         f"{epochs}")
    steps = np.arange(steps_per_epoch * epochs, dtype=np.float64) / steps_per_epoch
    return np.array([schedule(t) for t in steps], dtype=np.float32)


def keras_schedule(schedule, steps_per_epoch: int, epochs: int):
    """A Keras ``LearningRateSchedule`` that looks the rate of each step up in
    :func:`step_table` (the last rate holds after the table ends)."""
    from ..backend import keras, tf

    table = step_table(schedule, steps_per_epoch, epochs)

    class _TableSchedule(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self):
            self.table = tf.constant(table)
            self.size = int(table.shape[0])

        def __call__(self, step):
            index = tf.minimum(tf.cast(step, tf.int64), self.size - 1)
            return tf.gather(self.table, index)

        def get_config(self):
            return {"schedule": schedule.to_config(), "steps_per_epoch": int(steps_per_epoch),
                    "epochs": int(epochs)}

    return _TableSchedule()


__all__ = ["Schedule", "Constant", "PiecewiseConstant", "LinearWarmupDecay", "WarmupCosine",
           "SCHEDULES", "schedule_from_config", "step_table", "keras_schedule"]
