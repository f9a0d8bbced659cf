"""Train a model with a candidate activation function and return an honest record.

:func:`evaluate_activation` is the one place the searches train anything. It follows a
:class:`~keras_actfn.train.recipes.Recipe` and returns an
:class:`~keras_actfn.train.record.EvaluationRecord`, whatever the candidate does:

============================  ==========================================================
what happens                  record
============================  ==========================================================
text does not parse           ``failed``, ``invalid_function``
activation gives inf/NaN in   ``failed``, ``overflow`` (checked in float32 before any model
  [-5, 5], or the model's     is built, at the AQuaSurF fingerprint inputs and a grid of
  first forward pass is       [-5, 5]; then on the initialized model's output for a batch
  not finite                  of training inputs)
training loss NaN / inf       ``failed``, ``nan_loss`` / ``inf_loss`` (training stops at
                              the first non-finite batch loss Keras reports)
validation accuracy < V or    ``failed``, ``below_threshold``
  at chance
out of memory                 ``failed``, ``out_of_memory``
any other exception           ``failed``, ``error`` (message: the exception; the traceback
                              tail is in ``record.info["traceback"]``)
AutoInit raises               training goes on with the model's own initialization;
                              ``record.autoinit = "failed: ..."``
============================  ==========================================================

What *does* raise: mistakes in the arguments, found before anything trains — an unknown
recipe, task or model name, an unknown recipe field in ``**overrides``, a layer instance
where a factory is needed — and a dataset that is not on the machine
(:class:`~keras_actfn.data.DatasetUnavailableError`): those are not the candidate's fault
and every other candidate would meet them too, so a search should stop, not record them.

Reproducibility: ``seed`` seeds Python, NumPy and TensorFlow (``keras.utils.set_random_seed``)
before the model is built, AutoInit's weight draws, the shuffling of the training set and
the augmentation stream; on one machine the same call gives the same record.
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import logging
import math
import time
import traceback
import warnings

import numpy as np

from .record import EvaluationRecord
from .recipes import AugmentSpec, Recipe, augment_for_task, get_recipe, parse_augment

#: tasks loaded by name, kept for the next evaluation (loading CIFAR takes seconds)
_TASK_CACHE: "collections.OrderedDict" = collections.OrderedDict()
_TASK_CACHE_SIZE = 4
#: (mean, variance) of each task's preprocessed training inputs, for AutoInit
_MOMENT_CACHE: "collections.OrderedDict" = collections.OrderedDict()

_MESSAGE_LIMIT = 500

#: a full garbage collection after an evaluation costs ~0.2 s in a TensorFlow process (it
#: walks every live object), 5-10% of a quick evaluation; collect once the evaluations since
#: the last collection took at least this many times its duration, so collecting stays ~2%
#: of the time however short the evaluations, and long ones (big models, big memory)
#: collect after every run
_GC_SPACING = 50.0
_gc_state = {"since": 0.0, "last_cost": 0.0}


class _RetracingNoticeFilter(logging.Filter):
    """Every candidate is a new model, so TensorFlow's "N out of the last N calls triggered
    tf.function retracing" notice is expected after a few evaluations; it says nothing
    about the candidate."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def _quiet_retracing_notice():
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _RetracingNoticeFilter) for f in logger.filters):
        logger.addFilter(_RetracingNoticeFilter())


def _free_memory(elapsed, force=False):
    """Reset Keras' global state and collect garbage (amortized: see ``_GC_SPACING``);
    ``elapsed`` is the duration of the evaluation that just ended."""
    from ..backend import KERAS3, keras

    if KERAS3:
        keras.backend.clear_session(free_memory=False)
    else:
        keras.backend.clear_session()
    _gc_state["since"] += elapsed
    if force or _gc_state["since"] >= _GC_SPACING * _gc_state["last_cost"]:
        start = time.perf_counter()
        gc.collect()
        _gc_state.update(since=0.0, last_cost=time.perf_counter() - start)


def clear_caches():
    """Forget the tasks and input statistics kept between evaluations."""
    _TASK_CACHE.clear()
    _MOMENT_CACHE.clear()


# ------------------------------------------------------------------- argument resolution
@dataclasses.dataclass
class EvaluationPlan:
    """The resolved arguments of one evaluation (what :func:`prepare` checks up front)."""

    recipe: Recipe
    task: object  # keras_actfn.data.Task
    model: object  # registry name or builder callable
    model_name: str


def _load_task_cached(name, options):
    from ..data import load_task
    from ..data.tasks import TASK_LOADERS

    if name not in TASK_LOADERS:
        raise ValueError(f"unknown task {name!r}; available: {sorted(TASK_LOADERS)}")
    key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
    if key in _TASK_CACHE:
        _TASK_CACHE.move_to_end(key)
        return _TASK_CACHE[key]
    task = load_task(name, **options)
    _TASK_CACHE[key] = task
    while len(_TASK_CACHE) > _TASK_CACHE_SIZE:
        _TASK_CACHE.popitem(last=False)
    return task


def _apply_overrides(recipe: Recipe, overrides: dict) -> Recipe:
    scaling = {k: overrides.pop(k) for k in ("epochs", "width", "subset") if k in overrides}
    if overrides:
        # the label shows what changed, so a record never passes for the published recipe
        marks = dict(recipe.scaling)
        for key, value in overrides.items():
            simple = isinstance(value, (int, float, str, bool)) or value is None
            marks[key] = value if simple else "custom"
        recipe = recipe.replace(**overrides, scaling=marks)
    scaling = {k: v for k, v in scaling.items() if v is not None}
    if scaling.get("epochs") == recipe.epochs and len(scaling) == 1:
        return recipe
    return recipe.scaled(**scaling) if scaling else recipe


def prepare(task=None, model=None, recipe="quick", **overrides) -> EvaluationPlan:
    """Resolve and check the arguments of an evaluation; raise ``ValueError`` on a bad one.

    ``recipe``: a name or a :class:`Recipe`. ``task``: ``None`` (the recipe's), a name, or a
    :class:`~keras_actfn.data.Task`. ``model``: ``None`` (the recipe's), a registry name, or
    a callable ``model(activation=..., task=...) -> keras.Model``. ``overrides``: ``epochs``,
    ``width`` and ``subset`` go through :meth:`Recipe.scaled` (the schedule keeps its
    shape); any other recipe field is replaced as given (``threshold=0.5``,
    ``batch_size=32``, ``schedule=Constant(0.01)``...).
    """
    from ..data.tasks import Task
    from ..models.registry import MODELS

    recipe = _apply_overrides(get_recipe(recipe), dict(overrides))
    if task is None:
        task = recipe.task
    if isinstance(task, str):
        if task != recipe.task:
            recipe = recipe.replace(task=task)
        task = _load_task_cached(task, recipe.option("task_options"))
    elif isinstance(task, Task):
        if task.name != recipe.task:
            recipe = recipe.replace(task=task.name)
    else:
        raise TypeError(f"task must be a name or a Task, got {type(task).__name__}")
    if recipe.subset:
        task = task.subset(**recipe.option("subset"), seed=0)

    if isinstance(parse_augment(recipe.augment), AugmentSpec):
        task = dataclasses.replace(task, augment=augment_for_task(
            recipe.augment, task, what=f"recipe {recipe.label!r}"))

    if model is None:
        model = recipe.model
    if isinstance(model, str):
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; available: {sorted(MODELS)}")
        if model != recipe.model:
            recipe = recipe.replace(model=model)
        model_name = model
    elif callable(model):
        model_name = getattr(model, "__name__", type(model).__name__)
    else:
        raise TypeError(f"model must be a registry name or a builder callable, got {model!r}")
    if isinstance(model, str):
        _check_fits(model, task, recipe)
    return EvaluationPlan(recipe=recipe, task=task, model=model, model_name=model_name)


def keras_reason(err) -> str:
    """The line of a Keras error that says what is wrong (Keras 3 wraps it in "Exception
    encountered when calling ...", terminal colour codes and the call's arguments; an eager
    TensorFlow op error in its ``{{function_node ...}}`` prefix and ``[Op:...] name:`` tail)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    for line in text.splitlines():
        line = re.sub(r"\s*\[Op:[^\]]*\]( name:.*)?$", "", line.strip())
        if line and not line.startswith(("Exception encountered", "Arguments received")):
            return line[:300]
    return type(err).__name__


#: (model, task, input shape, model arguments) already built once without error
_FITS: set = set()


def _check_fits(model_name, task, recipe):
    """Build the registry model once for the task (cached): a model that cannot take the
    task's inputs is a mistake in the arguments, said up front with both shapes, not a
    failed record per candidate."""
    from ..backend import keras
    from ..models.registry import build_model

    arguments = recipe.model_arguments()
    key = (model_name, task.name, tuple(task.input_shape), repr(sorted(arguments.items())))
    if key in _FITS:
        return
    x = task.arrays("train")[0][:2]
    try:
        net = build_model(model_name, "relu", task=task, **arguments)
        net(task.preprocess(x) if task.preprocess is not None else x, training=False)
    except Exception as err:  # noqa: BLE001 - any failure here is a mismatch
        takes = ""
        if "net" in locals() and getattr(net, "inputs", None):
            takes = f" takes inputs of shape {tuple(net.inputs[0].shape[1:])} and"
        raise ValueError(f"model {model_name!r}{takes} cannot run on task {task.name!r} "
                         f"(inputs of shape {tuple(task.input_shape)}, {task.num_classes} "
                         f"classes): {keras_reason(err)}; choose a model made for these "
                         f"inputs (--model)") from None
    finally:
        keras.backend.clear_session()
    _FITS.add(key)


def resolve_activation(fn):
    """``(spec, text)``: what the model builders take, and the canonical text for records.

    Raises :class:`~keras_actfn.expr.ParseError` for text that is neither a Keras activation
    name nor a parsable function, ``TypeError`` for a layer instance (each activation site
    needs its own layer: pass a factory).
    """
    from ..layers.spec import resolve_spec

    spec = resolve_spec(fn, unsupported="cannot evaluate {spec!r}: expected function text, "
                                        "an Expr, a Keras activation name or a layer factory")
    return spec.value, spec.text()


# ------------------------------------------------------------------------- callbacks
def _make_guard():
    from ..backend import keras

    class NonFiniteLossGuard(keras.callbacks.Callback):
        """Stop training at the first non-finite training loss and remember where.

        Keras reports the running mean of the epoch's loss, which stays NaN (or inf) from the
        first bad batch on, so checking what it reports catches the first bad batch.
        """

        async_safe = True  # Keras 3 may run the check off the training thread

        def __init__(self):
            super().__init__()
            self.value = None
            self.epoch = 0
            self.batch = None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.value is not None or not logs:
                return
            loss = logs.get("loss")
            if loss is None:
                return
            loss = float(loss)
            if not math.isfinite(loss):
                self.value, self.batch = loss, batch
                self.model.stop_training = True

    return NonFiniteLossGuard()


# ---------------------------------------------------------------------------- helpers
def _short(err: BaseException) -> str:
    text = str(err).strip()
    first = text.splitlines()[0] if text else ""
    message = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return message[:_MESSAGE_LIMIT]


def _is_out_of_memory(err: BaseException) -> bool:
    import tensorflow as tf

    if isinstance(err, (MemoryError, tf.errors.ResourceExhaustedError)):
        return True
    text = str(err)
    return "OOM when allocating" in text or "out of memory" in text.lower()


def _probe_activation(spec):
    """None if the activation is finite on the fingerprint inputs (float32), else a message."""
    import tensorflow as tf

    from ..expr.numeric import fingerprint_inputs
    from ..layers.custom import activation_layer

    # the fingerprint's N(0, 1) draws reach only |x| ~ 3.3; the grid covers all of [-5, 5]
    points = np.concatenate([fingerprint_inputs(), np.linspace(-5.0, 5.0, 201)])
    x = tf.constant(points.reshape(-1, 1), dtype=tf.float32)
    y = np.asarray(activation_layer(spec)(x))
    bad = ~np.isfinite(y)
    if bad.any():
        where = float(points[np.argmax(bad.reshape(len(points), -1).any(axis=1))])
        return (f"the activation is not finite in float32 at {bad.sum()} of {len(points)} "
                f"probe points in [-5, 5] (e.g. x = {where:.3g})")
    return None


def _input_moments(task, batch_size=512, limit=4096):
    """(mean, variance) of the preprocessed training inputs, or None for token inputs."""
    x_train = task.splits["train"][0]
    if task.kind != "classification" or not np.issubdtype(np.asarray(x_train[:1]).dtype,
                                                          np.number):
        return None
    key = (id(x_train), id(task.preprocess))
    hit = _MOMENT_CACHE.get(key)
    if hit is not None and hit[0] is x_train:
        return hit[1]
    total, total_sq, count = 0.0, 0.0, 0
    for xb, _ in task.dataset("train", batch_size):
        xb = np.asarray(xb, dtype=np.float64)
        total += xb.sum()
        total_sq += np.square(xb).sum()
        count += xb.size
        if count >= limit * max(1, int(np.prod(task.input_shape))):
            break
    mean = total / count
    moments = (float(mean), float(max(total_sq / count - mean * mean, 1e-12)))
    _MOMENT_CACHE[key] = (x_train, moments)
    while len(_MOMENT_CACHE) > _TASK_CACHE_SIZE:
        _MOMENT_CACHE.popitem(last=False)
    return moments


def _apply_l2(model, factor):
    """Make ``factor * sum(w**2)`` over every kernel the model's only L2 term."""
    from ..backend import KERAS3, keras, tf

    kernels = ("kernel", "depthwise_kernel", "pointwise_kernel")
    if KERAS3:
        regularizer = keras.regularizers.L2(factor) if factor else None
        for variable in model.trainable_weights:
            if variable.name in kernels:
                variable.regularizer = regularizer
        return
    # tf_keras: regularizers are losses registered at build time; add the recipe's on top
    # of layers that have none
    if not factor:
        return
    for layer in model._flatten_layers(include_self=False):
        if getattr(layer, "kernel_regularizer", None) is not None:
            continue
        for attr in kernels:
            variable = getattr(layer, attr, None)
            if variable is not None and getattr(variable, "trainable", False):
                model.add_loss(lambda v=variable: factor * tf.reduce_sum(tf.square(v)))


def _make_optimizer(recipe: Recipe, model, steps_per_epoch: int):
    from ..backend import KERAS3, keras
    from .schedules import keras_schedule

    lr = keras_schedule(recipe.schedule, steps_per_epoch, recipe.epochs)
    extra = {}
    if recipe.gradient_accumulation_steps:
        if not KERAS3:
            raise ValueError(f"recipe {recipe.label!r} accumulates gradients, which the "
                             "legacy Keras optimizers cannot do")
        extra["gradient_accumulation_steps"] = recipe.gradient_accumulation_steps
    if recipe.clipnorm:
        extra["clipnorm"] = recipe.clipnorm
    decay = recipe.weight_decay or None
    if recipe.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                                   weight_decay=decay, **extra)
    elif recipe.optimizer == "adam":
        opt = keras.optimizers.Adam(lr, beta_1=recipe.betas[0], beta_2=recipe.betas[1],
                                    weight_decay=decay, **extra)
    else:
        opt = keras.optimizers.AdamW(lr, weight_decay=decay or 0.0, beta_1=recipe.betas[0],
                                     beta_2=recipe.betas[1], **extra)
    if decay:
        # decay matrices and kernels only, as nanoGPT and timm do: biases, normalization
        # scales and the activations' own parameters are vectors
        vectors = [v for v in model.trainable_weights if len(v.shape) < 2]
        if vectors:
            opt.exclude_from_weight_decay(var_list=vectors)
    return opt


def _steps_per_epoch(recipe: Recipe, task) -> int:
    if recipe.steps_per_epoch:
        return recipe.steps_per_epoch
    return max(1, math.ceil(task.size("train") / recipe.batch_size))


def _chance(task, record_val_size):
    """(chance accuracy, the accuracy at or below which a run counts as "at chance")."""
    p = 1.0 / max(1, task.num_classes)
    band = 2.0 * math.sqrt(p * (1 - p) / max(1, record_val_size))
    return p, p + max(0.01, band)


class _Laps:
    """Wall time per phase of an evaluation, into ``record.info["timing_s"]``."""

    def __init__(self, record):
        self.times = record.info.setdefault("timing_s", {})
        self.last = time.perf_counter()

    def __call__(self, phase):
        now = time.perf_counter()
        self.times[phase] = round(self.times.get(phase, 0.0) + now - self.last, 6)
        self.last = now


def _last(history, key):
    values = history.get(key) or []
    return float(values[-1]) if values else None


def guarded_training(record, start, train):
    """Run ``train(lap)``, which fills ``record``; whatever it raises becomes a failed
    record (``out_of_memory`` or ``error``, the traceback's tail in ``info``): failure is
    data. Frees Keras's memory afterwards and sets ``record.runtime_s`` (from ``start``).
    The one place both evaluators (:func:`evaluate_activation`, the user-model
    :class:`~keras_actfn.train.user_model.UserEvaluator`) turn a candidate into a record."""
    _quiet_retracing_notice()
    lap = _Laps(record)
    try:
        train(lap)
    except Exception as err:  # noqa: BLE001 - failure is data
        record.fail("out_of_memory" if _is_out_of_memory(err) else "error", _short(err))
        record.info["traceback"] = "".join(traceback.format_exception(err)[-6:])[-4000:]
    finally:
        lap("other")
        _free_memory(time.perf_counter() - start, force=record.reason == "out_of_memory")
        lap("clear_session")
        record.runtime_s = time.perf_counter() - start
    return record


def quiet_fit(net, data, unknown_length=False, **fit_arguments):
    """``net.fit(data, ...)`` without the notices a search provokes by design: a candidate
    flat somewhere (``zero(x)``, relu of a negative input) leaves some variables without
    gradient; with ``unknown_length`` (a stream Keras cannot count, no
    ``steps_per_epoch``), Keras 3's end-of-epoch "input ran out of data" (each epoch is one
    full pass)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Gradients do not exist")
        if unknown_length:
            warnings.filterwarnings("ignore", message="Your input ran out of data")
        return net.fit(data, shuffle=False, **fit_arguments)


# --------------------------------------------------------------------------- the harness
def evaluate_activation(fn, task=None, model=None, recipe="quick", seed: int = 0,
                        autoinit: bool = True, test: bool = False, verbose=0,
                        callbacks=None, **overrides) -> EvaluationRecord:
    """Train ``model`` on ``task`` with activation ``fn`` under ``recipe``; return the record.

    Args:
        fn: function text (``"x*sigmoid(x)"``), an :class:`~keras_actfn.expr.Expr`, a Keras
            activation name (``"relu"``) or a zero-argument layer factory
            (``lambda: CustomActivation("alpha*swish(x)", param_shape="per-neuron")``).
        task: ``None`` for the recipe's task, a task name, or a
            :class:`~keras_actfn.data.Task`.
        model: ``None`` for the recipe's model, a registry name, or a callable
            ``model(activation=spec, task=task) -> keras.Model``.
        recipe: a recipe name (:data:`~keras_actfn.train.RECIPES`) or a :class:`Recipe`.
        seed: seeds model initialization, AutoInit, shuffling, augmentation and dropout.
        autoinit: initialize the weights with :class:`~keras_actfn.autoinit.AutoInit` for the
            candidate (input moments measured on the training data).
        test: also evaluate on the test split (``test_accuracy``/``test_loss``).
        verbose: Keras' ``fit`` verbosity (0 silent, 1 progress bar, 2 one line per epoch).
        callbacks: extra Keras callbacks for ``fit``.
        overrides: recipe changes; ``epochs=``, ``width=`` and ``subset=`` scale the recipe
            (:meth:`Recipe.scaled`), other names replace recipe fields.

    Returns:
        An :class:`EvaluationRecord`; see the module docstring for the failure reasons.

    Raises:
        ValueError / TypeError: bad arguments (unknown recipe, task or model, unknown
            override), before anything trains. DatasetUnavailableError: the task's data is
            not on this machine.
    """
    start = time.perf_counter()
    plan = prepare(task=task, model=model, recipe=recipe, **overrides)
    recipe_, task_ = plan.recipe, plan.task
    seed = int(seed)
    try:
        spec, text = resolve_activation(fn)
        parse_error = None
    except TypeError:
        raise
    except Exception as err:  # noqa: BLE001 - ParseError and anything the text provokes
        spec, text, parse_error = None, str(fn), err
    record = EvaluationRecord(fn=text, task=task_.name, model=plan.model_name,
                              recipe=recipe_.label, seed=seed,
                              autoinit="skipped" if autoinit else "off")
    record.info.update(threshold=recipe_.threshold)
    if parse_error is not None:
        record.fail("invalid_function", _short(parse_error))
        record.runtime_s = time.perf_counter() - start
        return record

    return guarded_training(record, start, lambda lap: _train(
        spec, plan, record, seed, autoinit, test, verbose, callbacks or [], lap))


def _train(spec, plan, record, seed, autoinit, test, verbose, callbacks, lap):
    from ..backend import keras, tf

    recipe, task = plan.recipe, plan.task

    # 1. the activation itself must be finite where pre-activations live
    keras.utils.set_random_seed(seed)
    overflow = _probe_activation(spec)
    lap("probe")
    if overflow:
        record.fail("overflow", overflow)
        return

    # 2. the model, with the recipe's regularization and (optionally) AutoInit
    def build():
        keras.utils.set_random_seed(seed)
        if isinstance(plan.model, str):
            from ..models.registry import build_model

            net = build_model(plan.model, spec, task=task, **recipe.model_arguments())
        else:
            net = plan.model(activation=spec, task=task)
        if recipe.l2 is not None:
            _apply_l2(net, recipe.l2)
        return net

    net = build()
    record.param_count = int(net.count_params())
    lap("build")
    if autoinit:
        from ..autoinit import AutoInit

        moments = _input_moments(task)
        options = dict(recipe.autoinit_options)
        if moments is not None:
            options.setdefault("input_data_mean", moments[0])
            options.setdefault("input_data_var", moments[1])
        try:
            with np.errstate(all="ignore"):  # a failing candidate's moments overflow
                AutoInit(seed=seed, **options).initialize_model(net)
            record.autoinit = "applied"
        except Exception as err:  # noqa: BLE001 - train with the default initialization
            record.autoinit = f"failed: {_short(err)}"
            net = build()  # the same seed: the weights the model had before AutoInit
        lap("autoinit")

    # 3. data; a batch of training inputs must pass forward finitely
    augment = parse_augment(recipe.augment) is not None
    train = task.dataset("train", recipe.batch_size, shuffle=True, augment=augment, seed=seed)
    val = task.dataset("validation", 2 * recipe.batch_size)
    if recipe.validation_steps:
        val = val.repeat()  # a fixed number of batches even from a small validation split
    first_x = task.arrays("train")[0][:recipe.batch_size]
    if task.preprocess is not None:
        first_x = task.preprocess(tf.convert_to_tensor(first_x))
    out = np.asarray(net(first_x, training=False))
    lap("first_batch")
    if not np.all(np.isfinite(out)):
        record.fail("overflow", "the model's output on the first training batch is not "
                                "finite at initialization")
        return
    steps = _steps_per_epoch(recipe, task)
    if recipe.steps_per_epoch:
        train = train.repeat()

    # 4. train
    net.compile(optimizer=_make_optimizer(recipe, net, steps),
                loss=keras.losses.SparseCategoricalCrossentropy(),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                steps_per_execution=recipe.steps_per_execution)
    guard = _make_guard()
    fit = quiet_fit(net, train, validation_data=val, epochs=recipe.epochs,
                    steps_per_epoch=steps if recipe.steps_per_epoch else None,
                    validation_steps=recipe.validation_steps, verbose=verbose,
                    callbacks=[guard, *callbacks])
    lap("fit")
    history = {k: [float(v) for v in values] for k, values in fit.history.items()}
    record.epochs_run = len(history.get("loss", [])) or guard.epoch + 1
    history["lr"] = [float(recipe.schedule(e)) for e in range(record.epochs_run)]
    record.history = history
    record.train_loss = _last(history, "loss")
    record.train_accuracy = _last(history, "accuracy")
    record.validation_loss = _last(history, "val_loss")
    record.validation_accuracy = _last(history, "val_accuracy")

    # 5. judge
    if guard.value is not None:
        kind = "nan_loss" if math.isnan(guard.value) else "inf_loss"
        # Keras reports every steps_per_execution-th batch: the loss went bad by this one
        record.fail(kind, f"training loss became {guard.value} in epoch {guard.epoch + 1}, "
                          f"by batch {guard.batch + 1}")
        return
    val_loss = record.validation_loss
    if val_loss is None or not math.isfinite(val_loss):
        kind = "inf_loss" if val_loss is not None and math.isinf(val_loss) else "nan_loss"
        record.fail(kind, f"validation loss is {val_loss} after epoch {record.epochs_run}")
        return
    if test:
        result = net.evaluate(task.dataset("test", 2 * recipe.batch_size), verbose=0,
                              return_dict=True)
        record.test_loss = float(result["loss"])
        record.test_accuracy = float(result["accuracy"])
        lap("test")
    val_size = task.size("validation")
    if recipe.validation_steps:
        val_size = min(val_size, recipe.validation_steps * 2 * recipe.batch_size)
    chance, band = _chance(task, val_size)
    record.info.update(chance=chance, chance_band=band)
    accuracy = record.validation_accuracy
    if task.kind == "language_model":
        at_chance = val_loss >= math.log(task.num_classes) - 1e-3
        why = (f"validation loss {val_loss:.4g} is no better than uniform guessing "
               f"(log {task.num_classes} = {math.log(task.num_classes):.4g})")
    elif accuracy is None:
        at_chance, why = True, "no validation accuracy was measured"
    else:
        at_chance = accuracy <= band
        why = (f"validation accuracy {accuracy:.4f} is at chance (1/{task.num_classes}, "
               f"upper band {band:.4f})")
    if at_chance:
        record.fail("below_threshold", why)
    elif recipe.threshold is not None and (accuracy is None or accuracy < recipe.threshold):
        record.fail("below_threshold", f"validation accuracy {accuracy:.4f} < threshold V = "
                                       f"{recipe.threshold:g}")


__all__ = ["evaluate_activation", "prepare", "resolve_activation", "EvaluationPlan",
           "clear_caches", "guarded_training", "quiet_fit"]
