"""Monte Carlo on one layer alone: the rule for layers nothing else covers (§5.3)."""

from __future__ import annotations

import numpy as np

from ...backend import tf
from ..moments import Moments


def monte_carlo(layer, inputs, ctx):
    """Run ``layer`` on seeded Gaussian inputs with the incoming moments (training mode;
    the layer's non-trainable state is restored afterwards).

    Each input gets at most ``ctx.mc_samples`` elements (a small batch), so memory stays
    small whatever the layer. Returns one Moments per output.
    """
    shapes = ctx.node.input_shapes if ctx.node is not None else [(None, 16)] * len(inputs)
    xs = [tf.constant(ctx.gaussian_input(shape, m, seed_offset=i))
          for i, (shape, m) in enumerate(zip(shapes, inputs))]
    args, kwargs = rebuild_call(ctx.node, xs)
    # training mode may update state (moving averages, counters): put it back afterwards
    state = [(v, v.numpy()) for v in getattr(layer, "non_trainable_weights", [])]
    try:
        try:
            out = layer(*args, training=True, **kwargs)
        except TypeError:  # layers whose call() takes no `training`
            out = layer(*args, **kwargs)
    finally:
        for variable, value in state:
            variable.assign(value)
    return [Moments(float(np.mean(y)), float(np.var(np.asarray(y, dtype=np.float64))))
            for y in tf.nest.flatten(out)]


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
