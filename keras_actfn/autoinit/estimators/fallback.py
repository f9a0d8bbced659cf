"""Monte Carlo on one layer alone (§5.3): the rule for layers nothing else covers, and the
one sampler behind every single-layer Monte Carlo estimate (layers and operations without a
rule, Softmax, ``Dot(normalize=True)``, recurrent layers, PReLU-like parametric activations).

:func:`run_on_sample` draws a seeded sample of the incoming law for each input tensor
(:func:`draw_sample`: Gaussian with the incoming moments, or for recurrent layers the
incoming law: per channel when the moments know their channels, an elementwise activation
of a Gaussian when they remember one), substitutes it for the node's
symbolic inputs in its call arguments (:func:`rebuild_call`), runs the layer in training
mode and puts its non-trainable state back. :func:`monte_carlo` reduces each output to its
aggregate moments; recurrent layers (``modern``) keep per-unit moments and covariances.
"""

from __future__ import annotations

import math

import numpy as np

from ...backend import tf
from ..moments import ChannelMoments, Moments

#: seed of every single-layer Monte Carlo sample (input ``i`` of a node uses SEED + i)
SEED = 12345
#: input shape assumed when an estimate runs without a graph node
DEFAULT_SHAPE = (None, 16)


def draw_sample(shape, moments, ctx, seed_offset=0, batch=None, law=True):
    """A seeded float32 sample of ``shape`` (batch axis first, unknown axes of length 1) with
    the incoming law: ``fn(Gaussian)`` when ``moments`` remember an elementwise ``source``,
    Gaussian with each channel's moments when they are per channel along the last axis, else
    (and always with ``law=False``) Gaussian with the aggregate moments.

    ``batch`` fixes the number of items; by default as many as ``ctx.mc_samples`` elements
    allow (at least one), so memory stays small whatever the layer.
    """
    shape = [1 if d is None else int(d) for d in shape]
    per_item = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if batch:
        shape[0] = int(batch)
    else:
        shape[0] = max(1, int(getattr(ctx, "mc_samples", 100_000)) // max(per_item, 1))
    rng = np.random.default_rng(SEED + seed_offset)
    source = getattr(moments, "source", None) if law else None
    pre = source[1] if source is not None else moments
    z = rng.standard_normal(shape)
    if law and isinstance(pre, ChannelMoments) and pre.channels == shape[-1]:
        x = z * np.sqrt(pre.variances) + pre.means
    else:
        x = z * math.sqrt(max(float(pre.var), 0.0)) + float(pre.mean)
    if source is not None:
        x = np.asarray(source[0](x.astype(np.float32)), dtype=np.float64).reshape(shape)
    return x.astype("float32")


def run_on_sample(layer, inputs, ctx, shapes=None, batch=None, law=True):
    """The outputs (float64 arrays, flattened) of ``layer`` run on seeded samples of its
    inputs' laws (:func:`draw_sample`; ``law=False``: Gaussian with the incoming moments),
    in the call of ``ctx.node``.

    ``shapes``: one input shape per input (default: the node's, else ``DEFAULT_SHAPE``); the
    same tensor fed twice gets one sample. The layer runs with ``training=True`` (when its
    ``call`` takes it); training mode may update state (moving averages, counters, RNN
    states), so every non-trainable weight is put back afterwards.
    """
    node = getattr(ctx, "node", None)
    if shapes is None:
        shapes = node.input_shapes if node is not None else [DEFAULT_SHAPE] * len(inputs)
    keys = [id(t) for t in node.inputs] if node is not None else list(range(len(inputs)))
    samples, xs = {}, []
    for i, (key, shape, m) in enumerate(zip(keys, shapes, inputs)):
        if key not in samples:
            samples[key] = tf.constant(draw_sample(shape, m, ctx, seed_offset=i, batch=batch,
                                                         law=law))
        xs.append(samples[key])
    args, kwargs = rebuild_call(node, xs)
    state = [(v, v.numpy()) for v in getattr(layer, "non_trainable_weights", [])]
    try:
        try:
            out = layer(*args, training=True, **kwargs)
        except TypeError:  # layers whose call() takes no `training`
            out = layer(*args, **kwargs)
    finally:
        for variable, value in state:
            variable.assign(value)
    return [np.asarray(y, dtype=np.float64) for y in tf.nest.flatten(out)]


def monte_carlo(layer, inputs, ctx, shapes=None):
    """Aggregate moments of each output of ``layer`` on seeded Gaussian samples with its
    inputs' moments (:func:`run_on_sample`). Returns one Moments per output."""
    return [Moments(float(y.mean()), float(y.var()))
            for y in run_on_sample(layer, inputs, ctx, shapes, law=False)]


def rebuild_call(node, xs):
    """The node's call arguments with its symbolic input tensors replaced by ``xs``."""
    if node is None:
        return (xs[0] if len(xs) == 1 else xs,), {}
    ids = {id(t): x for t, x in zip(node.inputs, xs)}

    def swap(v):
        return ids.get(id(v), v)

    args = tf.nest.map_structure(swap, list(node.call_args))
    kwargs = tf.nest.map_structure(swap, dict(node.call_kwargs))
    kwargs.pop("training", None)
    kwargs.pop("mask", None)
    return tuple(args), kwargs
