"""AutoInit (dissertation ch. 5): analytic mean/variance-preserving weight initialization.

Algorithm 1, iteratively: the model's functional graph is walked once in topological order
(nodes by decreasing depth), carrying the (mean, variance) of every tensor from the inputs
to the outputs. A weighted layer receives weights that map its incoming moments to mean 0
and variance ``signal_variance``; any other layer maps moments through its estimator.
Weights are assigned to the model's existing variables, so compile state, frozen or
pretrained layers (``keep=``) and custom layers survive.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import keras_graph
from . import estimators
from . import compat
from .moments import ChannelMoments, Moments, with_source
from .weights import check_distribution, sample


class AutoInitError(ValueError):
    """The model or the arguments cannot be initialized as asked."""


@dataclass
class Record:
    """What AutoInit estimated at one call of one layer."""

    layer: str
    inputs: list
    outputs: list
    initialized: bool = False
    method: str = "analytic"
    #: weighted layers: moments of the linear part (before the layer's own ``activation=``)
    pre: Any = None


@dataclass
class Context:
    """State of one AutoInit run, handed to every estimator."""

    signal_variance: float
    distribution: str
    rng: np.random.Generator
    keep: set
    center: bool = False
    match_draw: bool = True
    mc_samples: int = 100_000
    recurrent_samples: int | None = None  # sequences per recurrent Monte Carlo batch
    estimator_config: dict = field(default_factory=dict)
    custom: dict = field(default_factory=dict)
    initialized: set = field(default_factory=set)
    warned: set = field(default_factory=set)
    node: Any = None  # the graph node being estimated: .call_args, .call_kwargs, .input_shapes
    record: Any = None

    # -- weights ------------------------------------------------------------------------
    def should_initialize(self, layer) -> bool:
        """True the first time a non-kept weighted layer is met (shared layers: first call)."""
        return id(layer) not in self.initialized and layer.name not in self.keep and \
            id(layer) not in self.keep

    def draw(self, variable, variance: float, fan_in: int | None = None):
        """Assign zero-mean weights of element variance ``variance`` to ``variable``."""
        value = sample(tuple(variable.shape), variance, self.distribution, self.rng, fan_in)
        variable.assign(value.astype(variable.dtype.name if hasattr(variable.dtype, "name")
                                     else variable.dtype))

    def zero(self, variable):
        variable.assign(np.zeros(tuple(variable.shape), dtype=np.float32))

    def mark_initialized(self, layer):
        self.initialized.add(id(layer))
        if self.record is not None:
            self.record.initialized = True

    def warn_once(self, key, message):
        if key not in self.warned:
            self.warned.add(key)
            warnings.warn(message, stacklevel=3)

    # -- Monte Carlo ----------------------------------------------------------------------
    def gaussian_input(self, shape, moments: Moments, seed_offset=0):
        """A seeded Gaussian tensor with the given moments; unknown dims take small sizes."""
        shape = [d if d is not None else 1 for d in shape]
        per_item = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        shape[0] = max(1, self.mc_samples // max(per_item, 1))
        rng = np.random.default_rng(12345 + seed_offset)
        x = rng.standard_normal(shape) * math.sqrt(max(moments.var, 0.0)) + moments.mean
        return x.astype("float32")


class AutoInit:
    """Initialize a Keras model so every weighted layer outputs mean 0, variance ``signal_variance``.

    Drop-in for the published AutoInit package's API::

        model = AutoInit().initialize_model(model)

    Args:
        weight_init_config: the published package's options, every key optional:
            ``distribution`` (``"truncated_normal"``, ``"untruncated_normal"`` (=
            ``"normal"``), ``"uniform"``, ``"orthogonal"``), ``constrain_weights``
            (attach a :class:`~keras_actfn.autoinit.compat.CenteredUnitNorm` constraint
            keeping each initialized kernel's mean 0 and scale during training),
            ``monte_carlo_samples`` (elements per Monte Carlo estimate; ``mc_samples=``)
            and ``recurrent_monte_carlo_samples`` (sequences per recurrent estimate).
            Unknown keys raise, listing the known ones.
        input_data_mean, input_data_var: moments of the model's inputs; scalars, or one per
            model input (a list).
        custom_distribution_estimators: ``{LayerClass: rule}`` where a rule is our
            function ``fn(layer, inputs, ctx) -> Moments`` or the published package's
            estimator class (a subclass of
            :class:`~keras_actfn.autoinit.compat.LayerOutputDistributionEstimator`,
            ``estimate(means_in, vars_in) -> (mean, var)``). A rule also applies
            to subclasses. See :mod:`keras_actfn.autoinit.estimators`.
        signal_variance: target output variance of every weighted layer (§5.4).
        distribution: same as ``weight_init_config["distribution"]``.
        center_activations: AutoInit++ (§5.11): every ``CustomActivation`` subtracts its
            Gaussian mean (set in place: ``layer.center = True``).
        keep: names (or layer objects) of layers whose weights stay as they are (pretrained,
            frozen); AutoInit propagates through their actual weights.
        seed: seed of the weight draws (None: fresh entropy).
        match_draw: track each channel's mean and variance through Dense/Conv/Depthwise
            layers, activations, Add/Subtract/Average and global average pooling, and rescale
            each drawn kernel by one scalar so that this draw -- not only the average over
            draws -- gives output variance ``signal_variance`` (see docs/autoinit.md).
            ``False``: the published package's behaviour (variance right in expectation).
        mc_samples: element budget of every Monte Carlo estimate.
    """

    def __init__(self, weight_init_config=None, input_data_mean=0.0, input_data_var=1.0,
                 custom_distribution_estimators=None, signal_variance=1.0, *,
                 distribution=None, center_activations=False, keep=(), seed=None,
                 match_draw=True, mc_samples=100_000):
        try:
            config = compat.check_weight_init_config(weight_init_config)
            self.distribution = check_distribution(distribution or config["distribution"])
        except ValueError as err:
            raise AutoInitError(str(err)) from None
        config["distribution"] = self.distribution
        self.weight_init_config = config
        self.input_data_mean = input_data_mean
        self.input_data_var = input_data_var
        self.custom = {}
        for cls, rule in dict(custom_distribution_estimators or {}).items():
            if not isinstance(cls, type) or not callable(rule):
                raise AutoInitError("custom_distribution_estimators maps layer classes to "
                                    "rule functions or LayerOutputDistributionEstimator "
                                    f"classes; got {cls!r}: {rule!r}")
            self.custom[cls] = compat.class_rule(rule) if compat.is_estimator_class(rule) \
                else rule
        self.custom_distribution_estimators = dict(custom_distribution_estimators or {})
        signal_variance = float(signal_variance)
        if not (signal_variance > 0 and math.isfinite(signal_variance)):
            raise AutoInitError(f"signal_variance must be positive and finite, got "
                                f"{signal_variance}")
        self.signal_variance = signal_variance
        self.center_activations = bool(center_activations)
        self.keep = set(keep)
        self.seed = seed
        self.match_draw = bool(match_draw)
        self.mc_samples = int(config["monte_carlo_samples"] or mc_samples)
        self.recurrent_samples = config["recurrent_monte_carlo_samples"]
        self.constrain_weights = bool(config["constrain_weights"])
        self.records: list[Record] = []
        self.model = None
        self.mean_var_estimates: dict = {}

    # -----------------------------------------------------------------------------------
    def initialize_model(self, model, return_estimates=False, custom_objects=None):
        """Set the weights of ``model`` in place and return it.

        ``model`` is a Keras model (changed in place and returned), or, as in the published
        package, a model config dict (``model.get_config()``) or JSON string
        (``model.to_json()``), from which a new model is built with ``custom_objects``. A
        string that does not parse as a JSON object is a path: a saved model
        (``.keras``, ``.h5``, SavedModel) or a ``.json`` file.

        With ``return_estimates=True`` returns ``(model, estimates)``: ``estimates`` maps
        every layer name (input layers included) to the :class:`Moments` ``(mean, var)``
        of its output (a list of them for layers with several outputs).
        """
        model = load_model_argument(model, custom_objects, "initialize_model")
        estimators.load_all()
        ctx = Context(self.signal_variance, self.distribution, np.random.default_rng(self.seed),
                      self.keep, self.center_activations, match_draw=self.match_draw,
                      mc_samples=self.mc_samples, recurrent_samples=self.recurrent_samples,
                      estimator_config=dict(self.weight_init_config), custom=self.custom)
        self.records = []
        graph = graph_of(model)
        inputs = _input_moments(model, self.input_data_mean, self.input_data_var)
        outputs = propagate(model, inputs, ctx, self.records)
        estimates = {}
        for tensor, m in zip(graph.inputs, inputs):
            name = getattr(keras_graph.tensor_layer(tensor), "name", None)
            if name is not None:
                estimates[name] = m
        for rec in self.records:
            estimates[rec.layer] = rec.outputs[0] if len(rec.outputs) == 1 else rec.outputs
        if self.constrain_weights:
            for layer in _initialized_layers(model, ctx):
                compat.attach_constraint(layer)
        self.output_moments = outputs
        self.model, self.mean_var_estimates = model, estimates
        return (model, estimates) if return_estimates else model


def load_model_argument(model, custom_objects=None, who="initialize_model"):
    """A Keras model from a model, a config dict, a JSON string or a path (one-line errors)."""
    try:
        return compat.resolve_model(model, custom_objects, who)[0]
    except compat.ModelInputError as err:
        raise AutoInitError(str(err)) from None


def _initialized_layers(model, ctx):
    return [layer for layer in keras_graph.all_layers(model) if id(layer) in ctx.initialized]


def _input_moments(model, mean, var):
    n = len(graph_of(model).inputs)
    means = list(mean) if isinstance(mean, (list, tuple)) else [mean] * n
    varis = list(var) if isinstance(var, (list, tuple)) else [var] * n
    if len(means) != n or len(varis) != n:
        raise AutoInitError(f"the model has {n} inputs but {len(means)} input means and "
                            f"{len(varis)} input variances were given")
    result = []
    for m, v in zip(means, varis):
        m, v = float(np.mean(m)), float(np.mean(v))
        if not (math.isfinite(m) and math.isfinite(v)) or v < 0:
            raise AutoInitError(f"input moments must be finite with variance >= 0; got "
                                f"mean={m}, var={v}")
        result.append(Moments(m, v))
    return result


# --------------------------------------------------------------------- the graph
def graph_of(model) -> keras_graph.Graph:
    """The functional graph of ``model`` in topological order (both Kerases), or an
    :class:`AutoInitError` saying how to build a model AutoInit can walk."""
    graph = keras_graph.functional_graph(model)
    if graph is None:
        raise AutoInitError(
            f"{type(model).__name__} {getattr(model, 'name', '')!r} has no functional graph: "
            "AutoInit needs a Functional or Sequential model built on keras.Input (a "
            "subclassed model's call() cannot be inspected). Build it functionally, or "
            "call the Sequential model on an input first.")
    return graph


def propagate(model, input_moments, ctx: Context, records: list) -> list:
    """Walk ``model`` from ``input_moments`` (one per model input); return output moments."""
    graph = graph_of(model)
    known = {id(t): m for t, m in zip(graph.inputs, input_moments)}
    for node in graph.nodes:
        op = node.operation
        if keras_graph.is_input_layer(op):
            continue  # its output tensor is a model input, already known (5.26 / 5.27)
        try:
            ins = [known[id(t)] for t in node.inputs]
        except KeyError:
            raise AutoInitError(f"layer {op.name!r} consumes a tensor that is not computed "
                                "from the model's inputs (a constant KerasTensor?)") from None
        rec = Record(op.name, ins, [])
        ctx.node, ctx.record = node, rec
        if keras_graph.is_model(op):
            if not ctx.should_initialize(op):  # a kept nested model keeps every layer inside
                inside = [op, *keras_graph.all_layers(op, tracked=True)]
                ctx.initialized.update(id(layer) for layer in inside)
            outs = propagate(op, ins, ctx, records)
            rec.method = "nested"
        else:
            outs = estimate(op, ins, ctx)
        outs = outs if isinstance(outs, (list, tuple)) and not isinstance(outs, Moments) \
            else [outs]
        if len(outs) == 1 and len(node.outputs) > 1:
            outs = outs * len(node.outputs)
        if len(outs) != len(node.outputs):
            raise AutoInitError(f"estimator for {op.name!r} returned {len(outs)} moments for "
                                f"{len(node.outputs)} outputs")
        outs = [_settle(m, t, ins).check(f"after layer {op.name!r}")
                for m, t in zip(outs, node.outputs)]
        rec.outputs = outs
        records.append(rec)
        for t, m in zip(node.outputs, outs):
            known[id(t)] = m
    return [known[id(t)] for t in graph.outputs]


def _settle(moments, tensor, inputs) -> Moments:
    """Per-channel moments survive only when an estimator made them for this tensor's last
    axis; a rule that passes its input through unchanged (shape layers, identity ops) may
    have moved the channels, so its output keeps the aggregate only."""
    own = not any(moments is m for m in inputs)
    if isinstance(moments, ChannelMoments) and own:
        shape = tuple(tensor.shape)
        if shape and shape[-1] == moments.channels:
            return moments
    source = getattr(moments, "source", None)
    if source is not None and own:  # the law of an elementwise function (max pooling)
        return with_source(Moments(float(moments.mean), float(moments.var)), *source)
    return Moments(float(moments.mean), float(moments.var))


def estimate(op, inputs, ctx: Context):
    """Apply the registered rule for ``op``, or Monte Carlo on ``op`` alone."""
    rule = estimators.lookup(op, ctx.custom)
    if rule is not None:
        return rule(op, inputs, ctx)
    from .estimators.fallback import monte_carlo

    ctx.warn_once(type(op), f"AutoInit has no rule for {type(op).__name__}; estimating its "
                            "output moments by Monte Carlo on the layer alone (weights, if "
                            "any, are left as they are)")
    if ctx.record is not None:
        ctx.record.method = "monte_carlo"
    return monte_carlo(op, inputs, ctx)
