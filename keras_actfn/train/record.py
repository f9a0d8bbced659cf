"""``EvaluationRecord``: what training one candidate produced, success or failure.

A record is plain data: it serializes to JSON (``to_dict``/``from_dict``, NaN and infinities
written as ``null``), so the search store can keep it and a search can resume from it. A
failed candidate is a record too (DESIGN decision 5, "failure is data"), with ``status
"failed"``, a short machine-readable ``reason`` and a human-readable ``message``.
"""

from __future__ import annotations

import dataclasses
import datetime
import math

STATUS_OK = "ok"
STATUS_FAILED = "failed"

#: failure reasons, in the order the harness can meet them
REASONS = {
    "invalid_function": "the function text does not parse, or names no activation",
    "overflow": "the activation (or the model's first forward pass) gives non-finite values",
    "nan_loss": "the training or validation loss became NaN",
    "inf_loss": "the training or validation loss became infinite",
    "below_threshold": "the final validation accuracy is below the recipe's threshold V or "
                       "at chance",
    "out_of_memory": "the device or host ran out of memory",
    "worker_crashed": "the worker process died while evaluating (segfault, killed, node "
                      "lost), also on its retry",
    "error": "anything else went wrong (the message holds the exception)",
}

#: the numeric fields that ``fitness`` can rank by; losses are minimized
METRICS = ("validation_accuracy", "validation_loss", "train_accuracy", "train_loss",
           "test_accuracy", "test_loss")


#: Keras log names of the record's own fields (what ``fit`` reports as ``history`` keys)
LOG_FIELDS = {"val_accuracy": "validation_accuracy", "val_loss": "validation_loss",
              "accuracy": "train_accuracy", "loss": "train_loss"}

# words that tell the direction of a metric Keras logs, as keras-tuner infers it
_MINIMIZED = ("loss", "error", "mae", "mse", "mape", "msle", "crossentropy", "hinge",
              "poisson", "divergence", "perplexity", "logcosh")
_MAXIMIZED = ("accuracy", "acc", "auc", "precision", "recall", "f1", "iou", "top_k", "r2",
              "score", "fbeta")


def split_objective(metric: str) -> tuple:
    """``(name, direction)`` of an objective: ``"val_auc"`` -> ``("val_auc", "max")``,
    ``"min:val_mae"`` -> ``("val_mae", "min")``.

    A bare name's direction is inferred from its words (``loss``, ``mae``... are minimized;
    ``accuracy``, ``auc``... maximized); a name that says neither needs the ``"min:"`` or
    ``"max:"`` prefix (``ValueError`` otherwise)."""
    if not isinstance(metric, str) or not metric.strip():
        raise ValueError(f"an objective is a metric name such as 'val_accuracy', got "
                         f"{metric!r}")
    text = metric.strip()
    head, sep, rest = text.partition(":")
    if sep:
        if head not in ("min", "max") or not rest:
            raise ValueError(f"objective {metric!r}: the prefix must be 'min:' or 'max:'")
        return rest, head
    if text in METRICS:
        return text, "min" if text.endswith("_loss") else "max"
    words = text.lower().replace("-", "_").split("_")
    if any(w in _MINIMIZED for w in words) or text.endswith("loss"):
        return text, "min"
    if any(w in _MAXIMIZED for w in words) or text.endswith("accuracy"):
        return text, "max"
    raise ValueError(f"cannot tell whether objective {metric!r} is minimized or maximized; "
                     f"write 'min:{text}' or 'max:{text}'")


def _finite_or_none(value):
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def json_safe(value):
    """``value`` made JSON-safe, whatever it holds: floats that are NaN/inf become None (JSON
    has no such numbers), NumPy scalars Python numbers, keys strings, tuples lists, anything
    else its text; containers recurse. For what must be written whatever it holds (a
    record's ``info``, a summary file). Where a silent change would be a bug (a search
    config compared on resume, an algorithm state) the engine checks instead:
    :func:`keras_actfn.search.engine.base.json_normalize` refuses what does not round-trip.
    """
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):  # NumPy scalars
        return json_safe(value.item())
    return str(value)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class EvaluationRecord:
    """The result of training one activation function under one recipe and seed.

    Attributes:
        fn: canonical text of the function (``str(parse(text))``), or a Keras activation
            name, or the class name of a layer factory's layer.
        task, model, recipe: names (``recipe`` is :attr:`Recipe.label`, which shows any
            scaling).
        seed: the seed of this run.
        status: ``"ok"`` or ``"failed"``.
        reason: ``None`` when ok, else a key of :data:`REASONS`.
        message: what happened, for humans (``None`` when ok and nothing to say).
        train_accuracy, train_loss: Keras' running means over the last training epoch.
        validation_accuracy, validation_loss: on the validation split after the last epoch.
        test_accuracy, test_loss: only when the evaluation asked for the test split.
        runtime_s: wall time of the whole evaluation (build, AutoInit, training, checks).
        epochs_run: epochs started (fewer than the recipe's when training stopped early).
        param_count: the model's parameters (``None`` if it was never built).
        history: per-epoch lists (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
            ``lr`` ...).
        autoinit: ``"applied"``, ``"off"``, ``"failed: <why>"`` (training then went on
            with the model's own initialization) or ``"skipped"`` (the candidate failed
            before AutoInit ran).
        created: UTC timestamp (ISO 8601).
        info: free-form extras (threshold used, chance level, device...).
    """

    fn: str
    task: str
    model: str
    recipe: str
    seed: int
    status: str = STATUS_OK
    reason: str | None = None
    message: str | None = None
    train_accuracy: float | None = None
    train_loss: float | None = None
    validation_accuracy: float | None = None
    validation_loss: float | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    runtime_s: float = 0.0
    epochs_run: int = 0
    param_count: int | None = None
    history: dict = dataclasses.field(default_factory=dict)
    autoinit: str = "off"
    created: str = dataclasses.field(default_factory=_now)
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.status not in (STATUS_OK, STATUS_FAILED):
            raise ValueError(f"status must be 'ok' or 'failed', got {self.status!r}")
        if self.status == STATUS_FAILED and self.reason not in REASONS:
            raise ValueError(f"a failed record needs a reason among {sorted(REASONS)}, got "
                             f"{self.reason!r}")
        if self.status == STATUS_OK and self.reason is not None:
            raise ValueError(f"an ok record has no failure reason, got {self.reason!r}")

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def failed(self) -> bool:
        return self.status == STATUS_FAILED

    def fail(self, reason: str, message: str | None = None) -> "EvaluationRecord":
        """Mark the record failed (in place) and return it."""
        if reason not in REASONS:
            raise ValueError(f"unknown failure reason {reason!r}; expected one of "
                             f"{sorted(REASONS)}")
        self.status, self.reason, self.message = STATUS_FAILED, reason, message
        return self

    def fitness(self, metric: str = "validation_accuracy") -> float:
        """A number to maximize: the metric (minimized ones negated); ``-inf`` for a failed
        record or a missing/non-finite value, so failures rank last in any search.

        ``metric``: a record field (:data:`METRICS`) or any name Keras logs in ``history``
        (``"val_auc"``, ``"val_loss"``; the last epoch's value), optionally prefixed
        ``"min:"``/``"max:"`` (see :func:`split_objective`)."""
        name, direction = split_objective(metric)
        value = self.metric_value(name)
        if self.failed or value is None:
            return -math.inf
        return -value if direction == "min" else value

    def metric_value(self, name: str):
        """The last value of a record field or a ``history`` entry, ``None`` if missing."""
        if name in METRICS:
            return _finite_or_none(getattr(self, name))
        values = (self.history or {}).get(name)
        if values:
            return _finite_or_none(values[-1])
        if name in LOG_FIELDS:
            return _finite_or_none(getattr(self, LOG_FIELDS[name]))
        return None

    def summary(self) -> str:
        """One line: status, validation/train/test metrics, epochs, time."""
        def fmt(value, digits=4):
            value = _finite_or_none(value)
            return "-" if value is None else f"{value:.{digits}f}"

        head = "ok" if self.ok else f"FAILED {self.reason}"
        parts = [f"val_acc {fmt(self.validation_accuracy)}",
                 f"val_loss {fmt(self.validation_loss)}",
                 f"train_acc {fmt(self.train_accuracy)}"]
        if self.test_accuracy is not None or self.test_loss is not None:
            parts.append(f"test_acc {fmt(self.test_accuracy)}")
        parts += [f"{self.epochs_run} epochs", f"{self.runtime_s:.1f} s"]
        line = f"{head:<8}  " + "  ".join(parts)
        if self.message and self.failed:
            line += f"  ({self.message})"
        return line

    # -------------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        """JSON-safe dict: non-finite numbers become ``None``."""
        return {field.name: json_safe(getattr(self, field.name))
                for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "EvaluationRecord":
        """Inverse of :meth:`to_dict` (unknown keys are an error: they mean a newer format
        or a typo)."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown EvaluationRecord field(s) {unknown}")
        return cls(**data)


__all__ = ["EvaluationRecord", "REASONS", "METRICS", "LOG_FIELDS", "split_objective", "STATUS_OK",
           "STATUS_FAILED", "json_safe"]
