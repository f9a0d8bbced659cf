"""GRAFS search loop (Algorithm 1): bi-level DrNAS steps, warm start, progressive shrinking.

This is the training side of GRAFS (the cell and its export are in :mod:`.cell`): it
replaces a model's activations with search cells sharing one :class:`CellParameters`,
splits the task's training data 75/25 into a search-train and a search-validation part, and
alternates first-order steps -- the cell's distribution parameters (and its ``gamma`` and
BetaMix weights) on a validation batch, then the network weights on a training batch, each
with a fresh Dirichlet sample per cell. During the first ``E0`` epochs (warm start) the
weight steps use the original activation. From epoch ``S = 2 E0`` on, operators are dropped
on the logarithmic schedule of Appendix C until each position holds one.

Speed: each epoch is one call of a traced graph loop; drops only change mask variables and
the warm start is a tensor choosing between two traced weight steps (the warm one runs the
plain network), so the loop is traced once (and again only when ``respecialize`` asks for a
smaller cell). Every cell of the network calls one traced cell function
(:meth:`CellParameters.cell_function`), so the cell is traced once per trace of the loop,
not once per site and step; its gradient is chained by hand from per-operator derivative
rules (a fraction of the graph TensorFlow would derive), which makes both the setup and
every step cheaper. Gradient accumulation is an inner graph loop over micro-batches
summing into accumulator variables, so it adds no trace either.

The paper's iteration-based language-model search (Table 9: ``max_iters``, ``eval_interval``,
``warmstart_iterations``, ``start_shrinking_iteration``) runs as epochs of
``steps_per_epoch = eval_interval`` iterations (see :mod:`.settings`): warm start, shrinking
and drops only happen at those boundaries, where the traced loop is left anyway.

Layout: :func:`grafs_search` (the entry point, its arguments checked and documented) builds
and runs a :class:`GrafsSearch`, whose parts are the data, the two optimizers, the traced
epoch and the checkpoint (:class:`_Checkpoint`, :func:`checkpoint_lock`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import inspect
import json
import os
import time
import types
from typing import Callable

import numpy as np

from ...backend import keras, tf
from ...errors import UserError
from ...expr import ops
from ...expr.simplify import simplify
from ...surgery import replace_activations
from .cell import POSITIONS, CellParameters, SearchCell, discretize
from ..engine.configs import config_differences, describe_differences
from ..engine.locking import exclusive_lock
from .schedule import drop_schedule, shrink_start, total_operations

__all__ = ["GrafsResult", "grafs_search", "GrafsSearch", "split_search_data", "CosineWarmRestarts",
           "CheckpointError", "CheckpointLockedError", "check_search_settings",
           "check_checkpoint", "check_checkpoint_root", "checkpoint_lock"]


@dataclasses.dataclass
class GrafsResult:
    """What a search found.

    Attributes:
        function: the discretized cell as canonical text (as the paper writes its functions:
            without the search-time clipping), ready for ``CustomActivation``.
        function_clipped: the same with the clipping of operator outputs written out.
        parameters: the final :class:`CellParameters`.
        model: the searched model (its activations are the search cells).
        history: one record per epoch: ``epoch``, ``phase`` (``"warm"``/``"search"``),
            ``dropped``, ``operators_left``, ``train_loss``, ``valid_loss``, ``argmax``
            (the current discretized function), ``weights`` (expected operator weights
            per position, over the full operator lists), ``seconds`` (the epoch's wall
            time), ``trace_seconds`` (the part spent tracing its loop and setting the
            graph up, 0 if none) and ``updates`` (weight updates so far).
        seconds: wall-clock time of the search.
        traces: how many times the epoch loop was traced (1, plus one per
            ``respecialize``).
    """

    function: str
    function_clipped: str
    parameters: CellParameters
    model: object
    history: list
    seconds: float
    traces: int = 0


class CosineWarmRestarts(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing with warm restarts of a fixed period (SGDR, PyTorch's
    ``CosineAnnealingWarmRestarts`` with ``T_mult=1``), per optimizer step ``t``::

        lr(t) = eta_min + (lr0 - eta_min) * (1 + cos(pi * (t mod T_0) / T_0)) / 2

    Step 0 (the first update) uses ``lr0``; every ``T_0`` steps the rate jumps back to it.
    """

    def __init__(self, initial_learning_rate, period, min_learning_rate=0.0):
        super().__init__()
        if int(period) < 1:
            raise ValueError(f"the restart period T_0 must be >= 1, got {period}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.period = int(period)
        self.min_learning_rate = float(min_learning_rate)

    def __call__(self, step):
        t = tf.math.floormod(tf.cast(step, tf.float32), float(self.period))
        cosine = 0.5 * (1.0 + tf.cos(np.pi * t / float(self.period)))
        return self.min_learning_rate + (self.initial_learning_rate
                                         - self.min_learning_rate) * cosine

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "period": self.period,
                "min_learning_rate": self.min_learning_rate}


def split_search_data(x, y, train_fraction=0.75, seed=0):
    """Shuffle and split ``(x, y)`` into the search's train and validation parts."""
    n = len(x)
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(train_fraction * n))
    if not 0 < cut < n:
        raise ValueError(f"train_fraction {train_fraction} leaves an empty part of {n} examples")
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def _default_loss(model, task):
    # classification and language models alike: the registry's GPTs end in a softmax layer
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    name = getattr(act, "__name__", str(act))
    softmax = "softmax" in name or type(last).__name__ == "Softmax"
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax)


def _search_config(**settings):
    """The settings a checkpoint must match, as JSON values (callables by name)."""
    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        return getattr(value, "__name__", type(value).__name__)
    return {key: plain(value) for key, value in sorted(settings.items())}


class CheckpointError(UserError, ValueError):
    """A GRAFS checkpoint folder that cannot be used: unreadable or incomplete, of a search
    with other settings, or not creatable. The message names the file and the cause."""


class CheckpointLockedError(CheckpointError):
    """Another process is searching with this checkpoint folder."""


#: the lock file inside a checkpoint folder (and inside a checkpoint root: run_grafs)
LOCK_NAME = ".lock"

_STATE_KEYS = {"epoch": int, "checkpoint": str, "traces": int, "active": list,
               "computed": list, "history": list, "config": dict}


@contextlib.contextmanager
def checkpoint_lock(directory):
    """Hold ``<directory>/.lock`` (created with the folder) for the ``with`` block, so one
    process at a time writes the folder: the store's lock
    (:func:`~keras_actfn.search.engine.locking.exclusive_lock`). Raises
    :class:`CheckpointLockedError` when another process holds it, :class:`CheckpointError`
    when the folder cannot be made."""
    directory = os.fspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"cannot create the GRAFS checkpoint folder {directory!r}: "
                              f"{err.strerror or err}") from None

    def taken(holder):
        return CheckpointLockedError(
            f"another process ({holder}) is searching with the GRAFS checkpoint folder "
            f"{directory!r}; wait for it to finish or use another --checkpoint folder")

    def unusable(err):
        return CheckpointError(f"cannot lock the GRAFS checkpoint folder {directory!r}: "
                               f"{err.strerror or err}")

    with exclusive_lock(os.path.join(directory, LOCK_NAME), taken, unusable):
        yield


def check_checkpoint(directory) -> dict | None:
    """The saved state of the checkpoint folder ``directory`` (``None`` when it has none
    yet), checked: ``state.json`` parses, has every field, and the TensorFlow checkpoint it
    names has its ``.index`` and data files. Raises :class:`CheckpointError` naming the file
    and the cause (the fix: delete the folder to start that search over)."""
    directory = os.fspath(directory)
    path = os.path.join(directory, "state.json")
    if not os.path.exists(path):
        return None
    again = f"delete the folder {directory!r} to start that search over"
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError included
        raise CheckpointError(f"cannot read the GRAFS checkpoint state {path!r}: "
                              f"{getattr(err, 'strerror', None) or err}; {again}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"the GRAFS checkpoint state {path!r} is not a JSON object; "
                              f"{again}")
    bad = [key for key, kind in _STATE_KEYS.items()
           if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool)]
    if bad:
        raise CheckpointError(f"the GRAFS checkpoint state {path!r} lacks valid "
                              f"{', '.join(bad)}; {again}")
    name = state["checkpoint"]
    prefix = os.path.join(directory, name)
    if os.path.basename(name) != name or not name:
        raise CheckpointError(f"the GRAFS checkpoint state {path!r} names {name!r}, not a "
                              f"file of its folder; {again}")
    missing = [f"{name}.index"] if not os.path.isfile(prefix + ".index") else []
    if not glob.glob(glob.escape(prefix) + ".data-*"):
        missing.append(f"{name}.data-*")
    if missing:
        raise CheckpointError(f"the GRAFS checkpoint {directory!r} is incomplete: "
                              f"{' and '.join(missing)}, named by state.json, "
                              f"{'is' if len(missing) == 1 else 'are'} missing; {again}")
    return state


def check_checkpoint_root(root) -> None:
    """:func:`check_checkpoint` for every ``seed<S>`` folder of a checkpoint root (what
    :func:`~keras_actfn.search.grafs.protocol.run_grafs` checks before it starts)."""
    root = os.fspath(root)
    if os.path.exists(root) and not os.path.isdir(root):
        raise CheckpointError(f"the GRAFS checkpoint folder {root!r} is a file")
    if not os.path.isdir(root):
        return
    for name in sorted(os.listdir(root)):
        if name.startswith("seed") and os.path.isdir(os.path.join(root, name)):
            check_checkpoint(os.path.join(root, name))


def check_search_settings(epochs=50, warm_start_epochs=1, gradient_accumulation_steps=1,
                          steps_per_epoch=None, start_shrinking_epoch=None, **_):
    """Raise ``ValueError`` for settings :func:`grafs_search` cannot run with, before
    anything is built or written (:func:`grafs_search` checks its own; ``run_grafs`` checks
    before it opens its store)."""
    if epochs < 1 or not 0 <= warm_start_epochs <= epochs:
        raise ValueError(f"need epochs >= 1 and 0 <= warm_start_epochs <= epochs; got "
                         f"{epochs} and {warm_start_epochs}")
    if int(gradient_accumulation_steps) < 1:
        raise ValueError(f"gradient_accumulation_steps must be >= 1, got "
                         f"{gradient_accumulation_steps}")
    if steps_per_epoch is not None and int(steps_per_epoch) < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if start_shrinking_epoch is not None and int(start_shrinking_epoch) < 1:
        raise ValueError(f"start_shrinking_epoch must be >= 1, got {start_shrinking_epoch}")


class _Checkpoint:
    """A search's state in a directory: ``state.json`` (the epoch, the active and computed
    operators, the history, the settings) pointing at a ``tf.train.Checkpoint`` of the
    variables. The checkpoint of an epoch is written before the state that names it, and
    older ones are removed after, so a crash at any point leaves a complete pair. The
    caller holds :func:`checkpoint_lock` (``grafs_search`` does)."""

    def __init__(self, directory, config):
        self.directory = os.fspath(directory)
        self.config = config
        self.path = os.path.join(self.directory, "state.json")
        self.objects = None
        self.state = check_checkpoint(self.directory)
        if self.state is not None:
            # a setting missing from an older checkpoint reads as None (its default)
            differ = config_differences(self.state["config"], config, absent=None)
            if differ:
                details = ", ".join(describe_differences(differ, "saved", "now", show=repr))
                raise CheckpointError(f"checkpoint {self.directory} is of a search with other "
                                      f"settings ({details}); use another directory")

    def track(self, **objects):
        self.objects = tf.train.Checkpoint(**objects)

    def save(self, epoch, params, traces, history):
        os.makedirs(self.directory, exist_ok=True)
        prefix = self.objects.write(os.path.join(self.directory, f"epoch-{epoch}"))
        records = [{**h, "weights": [np.asarray(w).tolist() for w in h["weights"]]}
                   for h in history]
        state = {"epoch": epoch, "checkpoint": os.path.basename(prefix), "traces": traces,
                 "active": params.active, "computed": params.computed,
                 "history": records, "config": self.config}
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self.path)
        previous = self.state and self.state.get("checkpoint")
        self.state = state
        if previous and previous != state["checkpoint"]:
            for name in os.listdir(self.directory):
                if name.startswith(previous + "."):
                    os.remove(os.path.join(self.directory, name))

    def restore(self, params):
        """Load the variables and the cell structure; return (next epoch, traces, history)."""
        state = self.state
        prefix = os.path.join(self.directory, state["checkpoint"])
        try:
            self.objects.read(prefix).expect_partial()
        except (tf.errors.OpError, ValueError, AssertionError) as err:
            cause = str(getattr(err, "message", None) or err).strip().splitlines()
            raise CheckpointError(f"cannot restore the GRAFS checkpoint {prefix!r}: "
                                  f"{cause[0] if cause else type(err).__name__}; delete the "
                                  f"folder {self.directory!r} to start that search over") \
                from None
        params.active = state["active"]
        params._computed = [list(c) for c in state["computed"]]
        history = [{**h, "weights": [np.asarray(w, dtype=np.float32) for w in h["weights"]]}
                   for h in state["history"]]
        return int(state["epoch"]) + 1, int(state["traces"]), history


def _augmentation(augment, task):
    """``grafs_search``'s ``augment`` as a batch function (or ``None``)."""
    if augment is None or callable(augment):
        return augment
    from ...train.recipes import augment_for_task

    return augment_for_task(augment, task, what="grafs_search's augment")


def _original_name(targets):
    names = [targets] if isinstance(targets, str) else list(targets) if not callable(targets) else []
    for name in names:
        try:
            return ops.get(name).name
        except KeyError:
            continue
    return None


class GrafsSearch:
    """One GRAFS search: what :func:`grafs_search` builds and runs, in its parts.

    * data (:meth:`_data`, :meth:`_batches`, :meth:`_streams`): the task's training split
      shuffled and split into search-train and search-validation parts, the batch size and
      iterations per epoch, and both parts' batch streams (preprocessing, augmentation);
    * optimizers (:meth:`_optimizers`): the weights' Adam/AdamW with cosine annealing (or
      the caller's ``weight_optimizer``) and the cell's Adam, constant or with warm
      restarts;
    * the traced epoch (:meth:`_update`, :meth:`_make_epoch`, :meth:`_epoch`): a cell step on
      validation data, then a weight step on training data, each one optimizer update from
      ``gradient_accumulation_steps`` micro-batches, as one graph loop per epoch;
    * the checkpoint (:meth:`_open_checkpoint`, :meth:`_resume`, :class:`_Checkpoint`): the
      state saved after every epoch, restored on resume, refused for other settings; the
      folder is locked (:func:`checkpoint_lock`) for the whole :meth:`run`.

    Args:
        model, task: as :func:`grafs_search` takes them.
        **settings: any other argument of :func:`grafs_search`, by name (the rest take its
            defaults); checked here (:func:`check_search_settings`), before anything is
            built or written.

    :meth:`run` runs the search once and returns its :class:`GrafsResult`.
    """

    def __init__(self, model, task, **settings):
        defaults = {name: p.default for name, p in
                    inspect.signature(grafs_search).parameters.items()
                    if name not in ("model", "task")}
        unknown = sorted(set(settings) - set(defaults))
        if unknown:
            raise TypeError(f"GrafsSearch got unknown settings {', '.join(unknown)}; it takes "
                            f"the arguments of grafs_search")
        self.model, self.task = model, task
        #: every setting of :func:`grafs_search` by name
        self.settings = types.SimpleNamespace(**{**defaults, **settings})
        check_search_settings(**vars(self.settings))
        self.accumulate = int(self.settings.gradient_accumulation_steps)
        self._ran = False

    def run(self) -> GrafsResult:
        """Run the search (its checkpoint folder, if any, locked throughout)."""
        if self._ran:
            raise RuntimeError("a GrafsSearch runs once; build another to search again")
        self._ran = True
        directory = self.settings.checkpoint
        if directory is None:
            return self._run()
        with checkpoint_lock(directory):
            return self._run()

    def _run(self) -> GrafsResult:
        s = self.settings
        start_time = time.perf_counter()
        keras.utils.set_random_seed(s.seed)
        self._build_model()
        self._data()
        self.saved = self._open_checkpoint()
        self._streams()
        self._optimizers()
        self._accumulators()
        drops = self._drops()
        first = self._resume()
        for epoch in range(first, s.epochs + 1):
            self._epoch(epoch, drops.get(epoch, 0))
        run_epoch = self.run_epoch
        self.traces += run_epoch.experimental_get_tracing_count() if run_epoch else 0
        params = self.params
        # the export without what cannot change a value (left/right's other input, min(f, f),
        # x*1...): right(sinh(min(sinh(x), sinh(x))), sinh(x)) is sinh(x); no constant
        # folding, so the trained function computes exactly what the argmax cell does
        return GrafsResult(function=str(simplify(discretize(params), fold=False)),
                           function_clipped=str(simplify(discretize(params, clip=True),
                                                         fold=False)), parameters=params,
                           model=self.search_model, history=self.history,
                           seconds=time.perf_counter() - start_time, traces=self.traces)

    # -- the network ------------------------------------------------------------------------
    def _build_model(self):
        """The searched network: the model (built if a builder was given) with its target
        activations replaced by cells sharing one :class:`CellParameters`; and the loss."""
        s = self.settings
        model = self.model
        if not isinstance(model, keras.Model) and callable(model):
            model = model()
        original = self.original = s.original or _original_name(s.targets)
        params = self.params = CellParameters(unary=s.unary, binary=s.binary,
                                              positive=s.positive, clip=s.clip, seed=s.seed)
        self.search_model = replace_activations(
            model, lambda: SearchCell(params, original=original), targets=s.targets)
        self.loss_fn = s.loss or _default_loss(self.search_model, self.task)

    # -- data -------------------------------------------------------------------------------
    def _data(self):
        """Split the task's training data, and set the batch size (at most either part's
        size) and the iterations per epoch (one pass over the search-train part unless
        ``steps_per_epoch`` is set)."""
        s = self.settings
        x, y = self.task.arrays("train")
        self.train_part, self.valid_part = split_search_data(
            np.asarray(x), np.asarray(y), s.train_fraction, s.seed)
        self.preprocess = self.task.preprocess
        self.augment_fn = _augmentation(s.augment, self.task)
        xt, xv = self.train_part[0], self.valid_part[0]
        self.batch = min(s.batch_size, len(xt), len(xv))
        self.per_epoch = s.steps_per_epoch is None  # else: an endless stream, as nanoGPT samples
        steps_per_epoch = s.steps_per_epoch
        if steps_per_epoch is None:
            steps_per_epoch = len(xt) // (self.batch * self.accumulate)
            if steps_per_epoch < 1:
                raise ValueError(f"one iteration takes {self.accumulate} x {self.batch} "
                                 f"examples but the search-train part has {len(xt)}; lower "
                                 f"batch_size or gradient_accumulation_steps, or set "
                                 f"steps_per_epoch")
        self.steps_per_epoch = int(steps_per_epoch)

    def _batches(self, xs, ys, shuffle_seed, per_epoch):
        """An endless ``tf.data`` stream of batches of ``(xs, ys)``."""
        batch, steps = self.batch, self.steps_per_epoch * self.accumulate
        preprocess, augment_fn = self.preprocess, self.augment_fn
        ds = tf.data.Dataset.from_tensor_slices((xs, ys)).shuffle(len(xs), seed=shuffle_seed,
                                                                   reshuffle_each_iteration=True)
        if per_epoch:  # whole epochs of whole batches: a fresh order every epoch
            ds = ds.batch(batch, drop_remainder=True).take(steps)
            ds = ds.repeat()
        else:  # an endless stream of batches
            ds = ds.repeat().batch(batch, drop_remainder=True)
        if preprocess is not None:
            ds = ds.map(lambda a, b: (preprocess(a), b))
        if augment_fn is not None:  # a fresh seed pair per batch, as Task.dataset does
            seeds = tf.data.Dataset.random(seed=shuffle_seed).batch(2)
            ds = tf.data.Dataset.zip((ds, seeds)).map(
                lambda xy, s: augment_fn(xy[0], xy[1], s), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    def _streams(self):
        """The iterators of both parts' batches (a resumed search draws a fresh data order:
        the shuffle seeds are shifted by the epoch)."""
        seed, saved = self.settings.seed, self.saved
        shift = 0 if saved is None or saved.state is None else 1000 * int(saved.state["epoch"])
        self.train_iter = iter(self._batches(*self.train_part, seed + shift,
                                             per_epoch=self.per_epoch))
        self.valid_iter = iter(self._batches(*self.valid_part, seed + 1 + shift,
                                             per_epoch=False))

    # -- optimizers -------------------------------------------------------------------------
    def _optimizers(self):
        """The weights' optimizer (its rate annealed over all iterations) and the cell's,
        built on their variables: the cell's search variables and the network's others."""
        s = self.settings
        self.arch_vars = self.params.search_variables
        arch_ids = {id(v) for v in self.arch_vars}
        self.weight_vars = [v for v in self.search_model.trainable_variables
                            if id(v) not in arch_ids]
        total_steps = s.epochs * self.steps_per_epoch
        if s.weight_optimizer is None:
            schedule = keras.optimizers.schedules.CosineDecay(
                s.learning_rate, total_steps,
                alpha=float(s.min_learning_rate) / float(s.learning_rate))
            betas = s.betas
            if s.weight_decay:
                weight_opt = keras.optimizers.AdamW(schedule, weight_decay=s.weight_decay,
                                                    beta_1=betas[0], beta_2=betas[1])
            else:
                weight_opt = keras.optimizers.Adam(schedule, beta_1=betas[0], beta_2=betas[1])
        else:
            weight_opt = s.weight_optimizer
        arch_rate = s.arch_learning_rate if s.arch_restart_period is None else \
            CosineWarmRestarts(s.arch_learning_rate, s.arch_restart_period,
                               s.arch_min_learning_rate)
        arch_opt = keras.optimizers.Adam(arch_rate, beta_1=s.arch_betas[0],
                                         beta_2=s.arch_betas[1])
        weight_opt.build(self.weight_vars)
        arch_opt.build(self.arch_vars)
        self.weight_opt, self.arch_opt = weight_opt, arch_opt

    # -- the traced epoch -------------------------------------------------------------------
    def _accumulators(self):
        """Per optimizer, one zero variable per variable it updates, summing micro-batch
        gradients (none without gradient accumulation)."""
        self.accumulators = {}
        if self.accumulate > 1:
            for opt, variables in ((self.arch_opt, self.arch_vars),
                                   (self.weight_opt, self.weight_vars)):
                self.accumulators[id(opt)] = [tf.Variable(tf.zeros_like(v), trainable=False)
                                              for v in variables]

    def _gradients(self, xb, yb, variables, with_anchor):
        s = self.settings
        with tf.GradientTape() as tape:
            out = self.search_model(xb, training=True)
            value = self.loss_fn(yb, out)
            total = value
            if with_anchor and s.anchor_strength:
                total = total + self.params.anchor_penalty(s.anchor_strength, s.anchor_metric)
        return tape.gradient(total, variables), tf.cast(value, tf.float32)

    def _update(self, iterator, variables, optimizer, with_anchor, use_original):
        """One optimizer step; ``use_original`` is set only while the model is called."""
        params, accumulate = self.params, self.accumulate

        def step():
            xb, yb = next(iterator)
            params.use_original = use_original
            try:
                return self._gradients(xb, yb, variables, with_anchor)
            finally:
                params.use_original = False

        if accumulate == 1:
            grads, value = step()
            optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables)
                                       if g is not None])
            return value
        # k micro-batches in a graph loop, summed into accumulator variables; which
        # variables get a gradient is known once the loop body is traced
        sums = self.accumulators[id(optimizer)]
        connected = []

        def body(j, value_sum):
            grads, value = step()
            connected[:] = [i for i, g in enumerate(grads) if g is not None]
            deps = [sums[i].assign_add(tf.convert_to_tensor(grads[i])) for i in connected]
            with tf.control_dependencies(deps):
                return j + 1, value_sum + value

        _, value_sum = tf.while_loop(lambda j, _: j < accumulate, body,
                                     (tf.constant(0), tf.constant(0.0)))
        with tf.control_dependencies([value_sum]):
            mean = [(sums[i].read_value() / accumulate, variables[i]) for i in connected]
        optimizer.apply_gradients(mean)
        with tf.control_dependencies([g for g, _ in mean]):
            for i in connected:
                sums[i].assign(tf.zeros_like(sums[i]))
        return value_sum / accumulate

    def _make_epoch(self, with_warm):
        """One epoch in one call: ``steps`` x (a cell step on validation data, then a weight
        step on training data), as a graph loop. The active operators are mask variables
        and ``warm`` (the weight steps use the original activation) is a tensor choosing
        between two traced weight steps, so neither drops nor the end of the warm start
        need a new trace. A loop traced after the warm start (``with_warm`` false) has the
        search's weight step only."""
        update = self._update
        train_iter, valid_iter = self.train_iter, self.valid_iter
        arch_vars, arch_opt = self.arch_vars, self.arch_opt
        weight_vars, weight_opt = self.weight_vars, self.weight_opt

        def run(steps, warm):
            def body(i, arch_sum, weight_sum):
                arch_loss = update(valid_iter, arch_vars, arch_opt, True, False)
                search = lambda: update(train_iter, weight_vars, weight_opt, False, False)  # noqa: E731
                # two branches traced with the phase fixed, so the warm-start branch runs
                # the plain network (a select would compute, and differentiate, the cells
                # too); no gradient is taken through the cond itself
                weight_loss = tf.cond(
                    warm, lambda: update(train_iter, weight_vars, weight_opt, False, True),
                    search) if with_warm else search()
                return i + 1, arch_sum + arch_loss, weight_sum + weight_loss

            zero = tf.constant(0.0)
            _, arch_sum, weight_sum = tf.while_loop(lambda i, *_: i < steps, body,
                                                    (tf.constant(0), zero, zero))
            n = tf.cast(steps, tf.float32)
            return arch_sum / n, weight_sum / n

        return tf.function(run, autograph=False)

    def _drops(self) -> dict:
        """``{epoch: operators dropped}`` (Appendix C's schedule from epoch ``S``)."""
        s = self.settings
        start = shrink_start(s.warm_start_epochs) if s.start_shrinking_epoch is None else int(
            s.start_shrinking_epoch)
        if start < 1:
            raise ValueError(f"start_shrinking_epoch must be >= 1, got {s.start_shrinking_epoch}")
        # a search shorter than S never shrinks; its result is the argmax of the full cell
        return {} if start > s.epochs else drop_schedule(
            total_operations(self.params.position_sizes), len(POSITIONS), start, s.epochs)

    def _epoch(self, epoch, dropped):
        """Drop ``dropped`` operators, run one epoch (tracing the loop when there is none),
        record it, save the checkpoint and log the epoch's line."""
        s, params = self.settings, self.params
        warm = epoch <= s.warm_start_epochs and self.original is not None
        if dropped:
            params.shrink(dropped)  # masks: the traced epoch stays valid
            if params.waste() >= s.respecialize and params.specialize():
                # most of what the traced cells compute is dropped: trace a smaller cell
                run_epoch = self.run_epoch
                self.traces += run_epoch.experimental_get_tracing_count() if run_epoch else 0
                self.run_epoch = None
        epoch_start = time.perf_counter()
        new_trace = self.run_epoch is None
        if new_trace:  # a loop traced after the warm start has no warm branch
            self.run_epoch = self._make_epoch(with_warm=warm)
        run_epoch = self.run_epoch
        steps, warm = tf.constant(self.steps_per_epoch), tf.constant(warm)
        trace_seconds = 0.0
        if new_trace:
            # trace, and set the graph up with a call of no steps, to time both apart
            run_epoch.get_concrete_function(steps, warm)
            run_epoch(tf.constant(0), warm)
            trace_seconds = time.perf_counter() - epoch_start
        valid_loss, train_loss = run_epoch(steps, warm)
        record = {
            "epoch": epoch, "phase": "warm" if epoch <= s.warm_start_epochs else "search",
            "dropped": dropped, "operators_left": params.operators_left(),
            "train_loss": float(train_loss), "valid_loss": float(valid_loss),
            "argmax": str(discretize(params)),
            "weights": [params.expected_weights(p).numpy() for p in range(len(POSITIONS))],
            "seconds": time.perf_counter() - epoch_start, "trace_seconds": trace_seconds,
            "updates": int(self.weight_opt.iterations.numpy()),
        }
        self.history.append(record)
        if self.saved is not None:
            self.saved.save(epoch, params,
                            self.traces + run_epoch.experimental_get_tracing_count(),
                            self.history)
        if s.verbose:
            s.log(f"GRAFS epoch {epoch}/{s.epochs} [{record['phase']}] train "
                  f"{record['train_loss']:.4f} valid {record['valid_loss']:.4f} dropped "
                  f"{dropped} left {record['operators_left']} f(x) = {record['argmax']}")

    # -- the checkpoint ---------------------------------------------------------------------
    def _open_checkpoint(self):
        """The checkpoint folder's :class:`_Checkpoint` (``None`` without one), which
        refuses a saved search of other settings."""
        s = self.settings
        if not s.checkpoint:
            return None
        return _Checkpoint(s.checkpoint, _search_config(
            epochs=s.epochs, warm_start_epochs=s.warm_start_epochs, batch_size=s.batch_size,
            learning_rate=s.learning_rate, arch_learning_rate=s.arch_learning_rate,
            train_fraction=s.train_fraction, targets=s.targets, original=self.original,
            anchor_strength=s.anchor_strength, anchor_metric=s.anchor_metric,
            positive=s.positive, clip=s.clip, unary=s.unary, binary=s.binary, seed=s.seed,
            gradient_accumulation_steps=self.accumulate, steps_per_epoch=self.steps_per_epoch,
            start_shrinking_epoch=s.start_shrinking_epoch, betas=s.betas,
            weight_decay=s.weight_decay, min_learning_rate=s.min_learning_rate,
            arch_betas=s.arch_betas, arch_restart_period=s.arch_restart_period,
            arch_min_learning_rate=s.arch_min_learning_rate, augment=s.augment,
            task=self.task.name,
            # the network by its size (Keras numbers unnamed models per process)
            model_weights=int(self.search_model.count_params()),
            weight_optimizer=s.weight_optimizer))

    def _resume(self) -> int:
        """Start the history and the trace count, from the checkpoint when it holds a saved
        epoch (the variables and cell structure restored); the first epoch to run."""
        s, saved = self.settings, self.saved
        self.history, self.run_epoch, self.traces = [], None, 0
        first = 1
        if saved is not None:
            saved.track(model=self.search_model, cell=self.params,
                        weight_optimizer=self.weight_opt, arch_optimizer=self.arch_opt,
                        accumulators=[a for v in self.accumulators.values() for a in v])
            if saved.state is not None:
                first, self.traces, self.history = saved.restore(self.params)
                if s.verbose:
                    s.log(f"GRAFS: resumed from {s.checkpoint} after epoch {first - 1}/{s.epochs}")
        return first


def grafs_search(model, task, epochs=50, warm_start_epochs=1, batch_size=32,
                 learning_rate=1e-3, arch_learning_rate=0.1, train_fraction=0.75,
                 targets=("relu",), original=None, anchor_strength=0.0, anchor_metric="kl",
                 positive="elu1", clip=10.0, unary=ops.GRAFS_UNARY, binary=ops.GRAFS_BINARY,
                 loss=None, seed=0, respecialize=0.75, verbose=True,
                 log: Callable = print, gradient_accumulation_steps=1, steps_per_epoch=None,
                 start_shrinking_epoch=None, betas=(0.9, 0.999), weight_decay=0.0,
                 min_learning_rate=0.0, arch_betas=(0.9, 0.999), arch_restart_period=None,
                 arch_min_learning_rate=0.0, weight_optimizer=None, augment=None,
                 checkpoint=None) -> GrafsResult:
    """Run GRAFS on ``model`` (or a zero-argument builder of it) and ``task``.

    Defaults follow the ResNet20 search of Table 6: Adam(1e-3) with cosine annealing to 0
    for the weights, Adam(0.1) for the cell, a 0.75 train/validation split, one warm-start
    epoch and shrinking from epoch 2 (``S = 2 E0``), except ``gradient_accumulation_steps``
    (Table 6: 16; here 1). The named settings of Tables 6, 7 and 9 are in
    :mod:`.settings` (``grafs_search(model, task, **get_preset(name).kwargs())``).
    No augmentation unless ``augment`` asks for it (the paper's image searches use
    TrivialAugment: the presets of Tables 6 and 7 pass ``augment="trivialaugment"``).

    One iteration (one "step") is a cell step on validation data, then a weight step on
    training data. With ``gradient_accumulation_steps = k`` each of the two is one optimizer
    update from the gradient averaged over ``k`` micro-batches of ``batch_size`` (a fresh
    Dirichlet draw per micro-batch): for a loss that is a mean over examples the update is
    that of one batch of ``k * batch_size``. The cell step accumulates too, because the
    tables give one ``gradient_accumulation_steps`` for the whole search, whose purpose is
    the effective batch (Table 6: 32 x 16 = 512 = Table 8's evaluation batch); accumulating
    only the weights would give the cell ``k`` noisy small-batch updates (at Adam(0.1)) per
    weight update instead of DrNAS's one-to-one alternation.

    Args:
        model: a built functional/sequential Keras model, or a callable returning one.
        task: a :class:`keras_actfn.data.Task`; its ``"train"`` split is split 75/25.
        epochs: ``E``, total epochs including the warm start.
        warm_start_epochs: ``E0``.
        targets: the activations to replace (surgery names, e.g. ``"relu"``, ``"gelu"``).
        original: the operator the cells compute during warm start (default: the first
            target that names a registry operator).
        anchor_strength, anchor_metric: DrNAS's anchor regularizer ``lambda d(rho, 1)``
            (off by default, as it is optional in GRAFS).
        positive, clip, unary, binary: passed to :class:`CellParameters`.
        loss: a Keras loss (default: sparse categorical cross-entropy, from logits unless the
            model ends in a softmax).
        respecialize: after a drop, when at least this fraction of the operators the traced
            cells compute is no longer active, trace the epoch loop again with only the
            active ones (cheaper steps for one more trace); ``1.0`` (never: one trace for
            the whole search) to ``0.0`` (after every drop). The method is the same either
            way (dropped operators have weight exactly 0); only the random streams of the
            Dirichlet draws change with a new trace.
        verbose, log: print one progress line per epoch with ``log``.
        gradient_accumulation_steps: ``k`` micro-batches per optimizer update (see above).
        steps_per_epoch: iterations per epoch; ``None``: one pass over the search-train part
            (``len // (batch_size * k)``). Set it for the iteration-based settings of
            Table 9 (an "epoch" is then ``eval_interval`` iterations drawn from an endless
            shuffled stream).
        start_shrinking_epoch: ``S``, the first epoch with drops (default ``2 E0``).
        betas, weight_decay, min_learning_rate: the weights' optimizer: Adam (AdamW when
            ``weight_decay > 0``) with cosine annealing from ``learning_rate`` to
            ``min_learning_rate`` over all iterations.
        arch_betas, arch_restart_period, arch_min_learning_rate: the cell's Adam; with a
            restart period ``T_0`` (in iterations) its rate follows
            :class:`CosineWarmRestarts` down to ``arch_min_learning_rate`` (Table 9),
            else it is constant.
        weight_optimizer: a Keras optimizer for the weights instead of the Adam above (its
            own learning rate is used).
        augment: augmentation of the search batches, train and validation parts alike
            (both come from the training set, as in the paper's split of one augmented
            dataset): ``None``, a recipe spec (``"trivialaugment"``, ``"flip+pad4"``,
            ``"task"`` for the task's own; see :func:`keras_actfn.train.parse_augment`) or a
            function ``fn(x_batch, y_batch, seed) -> (x, y)`` as :class:`~keras_actfn.data.Task`
            takes. Applied after the task's ``preprocess``.
        checkpoint: a directory for resuming. After every epoch the search state is saved
            there (the network and cell variables, both optimizers' states, the active
            operators, the history); a later call with the same directory and the same
            settings goes on after the last saved epoch (a finished search returns at once,
            with its saved result); other settings are refused, naming what differs. The
            data order and the Dirichlet draws after a resume are fresh ones (seeded by
            the epoch), not those the uninterrupted search would have drawn. The folder is
            locked (``<checkpoint>/.lock``) for the whole call: a second process using it
            gets :class:`CheckpointLockedError`; an unreadable or incomplete checkpoint is a
            :class:`CheckpointError` naming the file.
    """
    # locals(), as the first statement: exactly the arguments, by name
    return GrafsSearch(**locals()).run()
