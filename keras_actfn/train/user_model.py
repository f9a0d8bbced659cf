"""Train a user's own compiled Keras model with a candidate activation function.

:class:`UserModel` carries the model by value: its ``.keras`` bytes (or a file of them
written once beside a search store) and its ``compile()`` settings. :class:`UserEvaluator`
is the picklable ``evaluator(text, seed=...) -> EvaluationRecord`` of a search over that
model: for each candidate it

1. rebuilds the model with the candidate at the chosen activation sites
   (:func:`~keras_actfn.surgery.replace_activations`, fresh weights; the text
   :data:`ORIGINAL` keeps the model's own activations -- the baseline),
2. initializes it with :class:`~keras_actfn.autoinit.AutoInit` (input moments measured on
   the training data) unless ``autoinit=False``,
3. compiles it exactly as the user did (a fresh optimizer from the same config, the same
   loss and metrics), and
4. runs ``fit`` on the :class:`~keras_actfn.data.sources.DataSource` (streamed batches),

and returns an :class:`~keras_actfn.train.record.EvaluationRecord` whose ``history`` holds
everything Keras logged, so any logged metric can be the search objective. Failures follow
:func:`~keras_actfn.train.evaluate.evaluate_activation`: a function that does not parse,
overflows, or makes the loss non-finite gives a failed record, never an exception.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
import warnings

import numpy as np

from .record import EvaluationRecord, split_objective

__all__ = ["UserModel", "UserEvaluator", "ORIGINAL", "UserInputError"]

#: candidate text meaning "the model as the user built it" (the baseline of a comparison)
ORIGINAL = "original"

#: loaded models kept per process, keyed by content digest
_LOADED: dict = {}


class UserInputError(ValueError):
    """The model, data or settings a user gave cannot work; found before any training."""


def _config_digest(model) -> str:
    config = json.dumps(model.get_config(), sort_keys=True, default=str)
    return hashlib.sha256(config.encode()).hexdigest()[:16]


def _compile_config(model) -> dict:
    if not getattr(model, "optimizer", None) or getattr(model, "loss", None) is None:
        raise UserInputError(
            f"model {model.name!r} is not compiled with a loss: call model.compile("
            f"optimizer=..., loss=..., metrics=[...]) first, or pass loss= (and optimizer=, "
            f"metrics=) to ActivationSearch")
    try:
        config = model.get_compile_config()
    except Exception as err:  # noqa: BLE001 - a custom loss/metric without get_config
        raise UserInputError(f"the compile() settings of model {model.name!r} cannot be "
                             f"serialized ({type(err).__name__}: {err}); give the loss and "
                             f"metrics as names or registered Keras objects") from None
    if not config:
        raise UserInputError(f"model {model.name!r} was compiled with settings Keras cannot "
                             f"serialize; compile it with named or registered objects")
    return json.loads(json.dumps(config, default=str))


class UserModel:
    """A compiled Keras model by value: ``.keras`` bytes (in memory, or in a file once
    :meth:`portable` wrote it) plus its compile config. Picklable; loads lazily, once per
    process."""

    def __init__(self, model, name=None):
        from ..backend import keras

        if isinstance(model, UserModel):
            self.__dict__.update(model.__dict__)
            return
        if isinstance(model, (str, os.PathLike)):
            model = load_model_file(model)
        elif not isinstance(model, keras.Model) and callable(model):
            made = model()
            if not isinstance(made, keras.Model):
                raise UserInputError(f"the model builder returned {type(made).__name__}; "
                                     f"expected a compiled keras.Model")
            model = made
        if not isinstance(model, keras.Model):
            raise UserInputError(f"model must be a compiled keras.Model, a zero-argument "
                                 f"builder returning one, or a .keras file; got "
                                 f"{type(model).__name__}")
        if not model.built:
            raise UserInputError(f"model {model.name!r} is not built: give its first layer "
                                 f"an input shape (keras.Input(shape=...)) or call "
                                 f"model.build(...)")
        self.name = name or model.name
        self.compile_config = _compile_config(model)
        self.digest = _config_digest(model)
        self.input_shape = _shape(model.inputs[0].shape) if len(model.inputs) == 1 else None
        if len(model.inputs) != 1:
            raise UserInputError(f"model {model.name!r} has {len(model.inputs)} inputs; the "
                                 f"search takes single-input models")
        self.output_shape = _shape(model.outputs[0].shape)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            with open(path, "rb") as f:
                self.data = f.read()
        self.path = None
        _LOADED[self.digest] = model

    def __getstate__(self):
        return dict(self.__dict__)

    def portable(self, directory) -> "UserModel":
        """A copy that refers to ``<directory>/model_<digest>.keras`` (written once) instead
        of carrying the bytes: what worker processes receive."""
        path = os.path.join(directory, f"model_{self.digest}.keras")
        if not os.path.exists(path):
            os.makedirs(directory, exist_ok=True)
            with open(path + ".part", "wb") as f:
                f.write(self.data)
            os.replace(path + ".part", path)
        copy = object.__new__(UserModel)
        copy.__dict__.update({**self.__dict__, "data": None, "path": path})
        return copy

    def load(self):
        """The user's model as loaded in this process (cached: treat as read-only)."""
        model = _LOADED.get(self.digest)
        if model is None:
            if self.data is not None:
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, "model.keras")
                    with open(path, "wb") as f:
                        f.write(self.data)
                    model = _load(path)
            else:
                model = _load(self.path)
            _LOADED[self.digest] = model
        return model

    def fingerprint(self) -> dict:
        return {"name": self.name, "config_sha256": self.digest,
                "compile": self.compile_config}


def _shape(shape):
    return tuple(None if d is None else int(d) for d in shape)


def _load(path):
    from ..backend import keras

    return keras.models.load_model(path, compile=False)


def load_model_file(path):
    """Load a user's model file with a one-line reason when it cannot be loaded."""
    from .. import models  # noqa: F401 - registers the zoo's layers
    from ..backend import LEGACY, keras

    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserInputError(f"no such model file: {path}")
    try:
        with warnings.catch_warnings():
            # the optimizer's saved slots are never used: each candidate gets a fresh one
            warnings.filterwarnings("ignore", message="Skipping variable loading for optim")
            return keras.models.load_model(path)
    except Exception as err:  # noqa: BLE001 - say why, in one line
        first = (str(err).strip().splitlines() or [""])[0][:300]
        hint = "" if LEGACY else (" (a model saved by the legacy Keras 2 may need "
                                  "TF_USE_LEGACY_KERAS=1)")
        raise UserInputError(f"cannot load model file {path}: {type(err).__name__}: "
                             f"{first}{hint}") from None


class UserEvaluator:
    """Picklable ``evaluator(text, seed=0) -> EvaluationRecord`` for a user's model.

    Args:
        model: a :class:`UserModel`.
        data: a :class:`~keras_actfn.data.sources.DataSource` (portable for other
            processes: see :meth:`DataSource.portable`).
        epochs, batch_size, steps_per_epoch, validation_steps: as in ``fit``.
        objective: the metric ranked by (see :func:`~keras_actfn.train.record.split_objective`);
            ``None``: chosen by :meth:`check` (``val_accuracy`` when logged, else
            ``val_loss``; without validation data ``accuracy``/``loss``).
        targets: ``None`` (every hidden activation: all sites except the output layers'),
            or activation names (``("relu",)``).
        autoinit: initialize each candidate with AutoInit (else the model's initializers).
        param_shape: how a candidate's learnable parameters are shared.
        test: also evaluate the test split (records get ``test_*`` history entries).
        recipe: a recipe name of :data:`~keras_actfn.train.RECIPES` whose optimizer and
            learning-rate schedule (and L2) replace the model's optimizer; the model's loss
            and metrics stay. ``None``: the model's own ``compile()`` settings.
    """

    def __init__(self, model: UserModel, data, epochs=1, batch_size=32, objective="val_loss",
                 targets=None, autoinit=True, param_shape="per-channel", steps_per_epoch=None,
                 validation_steps=None, test=False, verbose=0, recipe=None):
        self.model, self.data = model, data
        self.recipe_name = recipe
        if recipe is not None:
            from .recipes import get_recipe

            get_recipe(recipe)  # an unknown name fails here, listing the known ones
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.objective = objective
        self.targets = None if targets is None else tuple(
            (targets,) if isinstance(targets, str) else targets)
        self.autoinit, self.param_shape = bool(autoinit), param_shape
        self.steps_per_epoch, self.validation_steps = steps_per_epoch, validation_steps
        self.test, self.verbose = bool(test), verbose
        self._moments = None

    def __getstate__(self):
        return {**self.__dict__, "_moments": None}

    # names the executors read for failure records
    @property
    def task(self):
        return self.data.name

    @property
    def recipe(self):
        return self.label

    @property
    def label(self) -> str:
        if self.recipe_name is not None:
            return f"{self.recipe_name}(epochs={self.epochs}, batch_size={self.batch_size})"
        return f"fit(epochs={self.epochs}, batch_size={self.batch_size})"

    def with_test(self, test=True) -> "UserEvaluator":
        copy = object.__new__(UserEvaluator)
        copy.__dict__.update({**self.__dict__, "test": bool(test), "_moments": None})
        return copy

    def config(self) -> dict:
        """What a store compares on resume: model, data, training settings."""
        return {"kind": "user_model", "model": self.model.fingerprint(),
                "data": self.data.fingerprint(), "epochs": self.epochs,
                "batch_size": self.batch_size, "objective": self.objective,
                "targets": list(self.targets) if self.targets else "hidden",
                "autoinit": self.autoinit, "param_shape": self.param_shape,
                "steps_per_epoch": self.steps_per_epoch,
                "validation_steps": self.validation_steps, "test": self.test,
                **({"recipe": self.recipe_name} if self.recipe_name is not None else {})}

    # ------------------------------------------------------------------ building
    def _matcher(self, base):
        from ..surgery import hidden_activations

        return hidden_activations(base) if self.targets is None else self.targets

    def input_moments(self):
        if self._moments is None:
            from ..data.sources import input_moments

            self._moments = input_moments(self.data) or False
        return self._moments or None

    def build(self, text=ORIGINAL, seed=0, autoinit=None):
        """The user's model with ``text`` at the activation sites, freshly initialized
        (AutoInit unless turned off), compiled like the original.

        Returns ``(model, autoinit_status)``."""
        from .. import keras_graph
        from ..backend import keras
        from ..expr import parse
        from ..surgery import replace_activations

        autoinit = self.autoinit if autoinit is None else autoinit
        base = self.model.load()
        keras.utils.set_random_seed(int(seed))
        if text == ORIGINAL:
            net = keras_graph.clone(base)
        else:
            net = replace_activations(base, parse(text), targets=self._matcher(base),
                                      param_shape=self.param_shape, keep_weights=False)
        status = "off"
        if autoinit:
            from ..autoinit import AutoInit

            options = {}
            moments = self.input_moments()
            if moments is not None:
                options = {"input_data_mean": moments[0], "input_data_var": moments[1]}
            try:
                with np.errstate(all="ignore"):
                    AutoInit(seed=int(seed), **options).initialize_model(net)
                status = "applied"
            except Exception as err:  # noqa: BLE001 - train with the model's initializers
                from .evaluate import _short

                status = f"failed: {_short(err)}"
                keras.utils.set_random_seed(int(seed))
                net = keras_graph.clone(net)
        self._compile(net)
        return net, status

    def _compile(self, net):
        if self.recipe_name is None:
            net.compile_from_config(self.model.compile_config)
            return
        # the recipe's optimizer and schedule; the user's loss, metrics and other settings
        from ..backend import keras
        from .evaluate import _apply_l2, _make_optimizer
        from .recipes import get_recipe

        recipe = get_recipe(self.recipe_name).scaled(epochs=self.epochs)
        size = self.data.train.size()
        if self.steps_per_epoch:
            steps = self.steps_per_epoch
        elif size is None:
            raise UserInputError(f"recipe {self.recipe_name!r} schedules the learning rate per "
                                 f"step, and the length of this data stream is unknown: "
                                 f"pass steps_per_epoch")
        else:
            steps = max(1, math.ceil(size / self.batch_size))
        if recipe.l2 is not None:
            _apply_l2(net, recipe.l2)
        kwargs = keras.saving.deserialize_keras_object(self.model.compile_config)
        kwargs["optimizer"] = _make_optimizer(recipe, net, steps)
        net.compile(**kwargs)

    # ------------------------------------------------------------------ checking
    def check(self) -> list:
        """Check model, data and objective together before anything trains; raise
        :class:`UserInputError` naming what does not fit. Returns the names Keras logs."""
        from ..backend import tf
        from ..surgery import SurgeryError, find_activation_sites, replace_activations

        base = self.model.load()
        try:
            replace_activations(base, "x", targets=self._matcher(base), keep_weights=False)
        except SurgeryError as err:
            if self.targets is None:
                sites = find_activation_sites(base)
                listed = ", ".join(f"{s.layer_name} ({s.activation})" for s in sites) or "none"
                raise UserInputError(
                    f"model {base.name!r} has no hidden activation to replace (its activation "
                    f"sites: {listed}; the output layer's activation is never replaced)"
                ) from None
            raise UserInputError(str(err)) from None
        try:
            xb, yb = self.data.first_batch(min(self.batch_size, 64))
        except UserInputError:
            raise
        except Exception as err:  # noqa: BLE001 - the data cannot even be read
            raise UserInputError(f"cannot read a batch of the training data "
                                 f"({type(err).__name__}: {str(err).splitlines()[0]})"
                                 ) from None
        want = self.model.input_shape
        got = tuple(xb.shape)
        if len(got) != len(want) or any(w is not None and w != g
                                        for w, g in zip(want[1:], got[1:])):
            raise UserInputError(f"the data's inputs have shape {_batch_text(got)} but the "
                                 f"model expects {_batch_text(want)}")
        from .evaluate import keras_reason

        net, _ = self.build(ORIGINAL, seed=0, autoinit=False)
        try:
            pred = net(xb, training=False)
        except Exception as err:  # noqa: BLE001
            raise UserInputError(f"the model cannot run on the data's inputs of shape "
                                 f"{_batch_text(got)} ({type(err).__name__}: "
                                 f"{keras_reason(err)})") from None
        # one batch, eagerly: tracing Keras's test function for it would cost more than
        # the batch itself (seconds for a large network; the candidates trace their own)
        net.run_eagerly = True
        try:
            logs = net.evaluate(tf.data.Dataset.from_tensors((xb, yb)), verbose=0,
                                return_dict=True)
        except Exception as err:  # noqa: BLE001
            raise UserInputError(f"the labels do not fit the model's output: labels of "
                                 f"shape {_batch_text(tuple(yb.shape))} ({yb.dtype.name}), "
                                 f"output of shape {_batch_text(tuple(pred.shape))} "
                                 f"({type(err).__name__}: "
                                 f"{keras_reason(err)})") from None
        if not all(np.isfinite(float(v)) for v in logs.values()):
            yv = np.asarray(yb)
            raise UserInputError(f"the loss on the first batch is not finite: labels of "
                                 f"shape {_batch_text(yv.shape)} in [{yv.min()}, {yv.max()}] "
                                 f"vs output of shape {_batch_text(tuple(pred.shape))}")
        names = sorted(logs)
        logged = names + ([f"val_{n}" for n in names] if self.data.validation is not None
                          else [])
        if self.objective is None:
            prefix = "val_" if self.data.validation is not None else ""
            self.objective = (f"{prefix}accuracy" if f"{prefix}accuracy" in logged
                              else f"{prefix}loss")
        name, _ = split_objective(self.objective)
        if name not in logged:
            why = (" (there is no validation data: pass validation_data= or "
                   "validation_split=)" if name.startswith("val_")
                   and self.data.validation is None else "")
            raise UserInputError(f"objective {name!r} is not a metric Keras logs for this "
                                 f"model{why}; it logs: {', '.join(logged)}")
        from .evaluate import _free_memory

        _free_memory(0.0)
        return logged

    # ------------------------------------------------------------------ evaluating
    def __call__(self, text, seed=0) -> EvaluationRecord:
        from ..expr import parse
        from .evaluate import _short, guarded_training

        start = time.perf_counter()
        seed = int(seed)
        canonical, spec, problem = text, None, None
        if text != ORIGINAL:
            try:
                spec = parse(text)
                canonical = str(spec)
            except Exception as err:  # noqa: BLE001 - failure is data
                problem = err
        record = EvaluationRecord(fn=canonical, task=self.data.name, model=self.model.name,
                                  recipe=self.label, seed=seed,
                                  autoinit="skipped" if self.autoinit else "off")
        record.info["objective"] = self.objective
        if problem is not None:
            record.fail("invalid_function", _short(problem))
            record.runtime_s = time.perf_counter() - start
            return record
        return guarded_training(record, start,
                                lambda lap: self._train(canonical, spec, record, seed, lap))

    def _train(self, text, spec, record, seed, lap):
        from .evaluate import _last, _make_guard, _probe_activation, quiet_fit

        if spec is not None:
            overflow = _probe_activation(spec)
            lap("probe")
            if overflow:
                record.fail("overflow", overflow)
                return
        net, record.autoinit = self.build(text, seed)
        record.param_count = int(net.count_params())
        lap("build")
        train = self.data.train.dataset(self.batch_size, shuffle=True, seed=seed)
        val = None if self.data.validation is None else self.data.validation.dataset(
            self.batch_size)
        # the first batch of an unshuffled pass: taking it from `train` would advance the
        # shuffle's per-iteration seed and change the epochs' order
        first_x = next(iter(self.data.train.dataset(self.batch_size).take(1)))[0]
        if not np.all(np.isfinite(np.asarray(net(first_x, training=False)))):
            record.fail("overflow", "the model's output on the first training batch is not "
                                    "finite at initialization")
            return
        lap("first_batch")
        guard = _make_guard()
        # the split shuffles (seeded); a stream Keras cannot count is one pass per epoch
        fit = quiet_fit(net, train, unknown_length=self.steps_per_epoch is None,
                        validation_data=val, epochs=self.epochs,
                        steps_per_epoch=self.steps_per_epoch,
                        validation_steps=self.validation_steps, verbose=self.verbose,
                        callbacks=[guard])
        lap("fit")
        history = {k: [float(v) for v in values] for k, values in fit.history.items()}
        record.epochs_run = len(history.get("loss", [])) or guard.epoch + 1
        if self.test and self.data.test is not None:
            result = net.evaluate(self.data.test.dataset(self.batch_size), verbose=0,
                                  return_dict=True)
            for key, value in result.items():
                history[f"test_{key}"] = [float(value)]
            lap("test")
        record.history = history
        record.train_loss = _last(history, "loss")
        record.validation_loss = _last(history, "val_loss")
        record.test_loss = _last(history, "test_loss")
        for field, prefix in (("train_accuracy", ""), ("validation_accuracy", "val_"),
                              ("test_accuracy", "test_")):
            key = _accuracy_key(history, prefix)
            if key is not None:
                setattr(record, field, _last(history, key))
        if guard.value is not None:
            kind = "nan_loss" if math.isnan(guard.value) else "inf_loss"
            record.fail(kind, f"training loss became {guard.value} in epoch "
                              f"{guard.epoch + 1}, by batch {guard.batch + 1}")
            return
        if record.validation_loss is None and val is not None:
            record.fail("nan_loss", f"validation loss is not finite after epoch "
                                    f"{record.epochs_run}")
            return
        name, _ = split_objective(self.objective)
        if record.metric_value(name) is None:
            record.fail("nan_loss" if "loss" in name else "error",
                        f"the objective {name} is missing or not finite after training")


def _batch_text(shape):
    return "(" + ", ".join("batch" if i == 0 else str(d) for i, d in
                           enumerate(shape)) + ")"


def _accuracy_key(history, prefix):
    """The history key of an accuracy metric for a split (``val_accuracy``,
    ``val_sparse_categorical_accuracy``...)."""
    candidates = [k for k in history if k.startswith(prefix) and k.endswith("accuracy")
                  and (prefix or not k.startswith(("val_", "test_")))]
    return sorted(candidates, key=len)[0] if candidates else None
