"""The registry's derivative rules (``Operator.derivative``) against TensorFlow's autodiff of
the same operator's ``tf_fn``, in float64, at kinks, ties and guard boundaries included."""

import numpy as np
import pytest
import tensorflow as tf

from keras_actfn.expr import ops

WITH_RULE = sorted(name for name, op in ops.REGISTRY.items() if op.derivative is not None)

_X = np.concatenate([np.linspace(-12.0, 12.0, 481), [0.0, -0.0, 1e-6, -1e-6, 1e-300, 35.0]])
_AXIS = np.concatenate([np.linspace(-4.0, 4.0, 33), [1e-8, -1e-8]])
_A, _B = (g.ravel() for g in np.meshgrid(_AXIS, _AXIS, indexing="ij"))  # ties on the diagonal


def _autodiff_and_rule(name, inputs, seed):
    """``(TensorFlow's input gradients, the rule's)`` for one random upstream gradient."""
    op = ops.get(name)
    xs = [tf.constant(v, tf.float64) for v in inputs]
    u = tf.constant(np.random.default_rng(seed).normal(size=xs[0].shape), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(xs)
        y = op.tf_fn(*xs)
    want = tape.gradient(y, xs, output_gradients=u)
    got = op.derivative(u, *xs, y)
    got = (got,) if op.arity == 1 else got
    return want, got


def test_the_rules_are_those_of_the_grafs_space():
    """Every operator of GRAFS's space (Figure 1, BetaMix included) has a rule, and only
    those: the others are differentiated by TensorFlow wherever rules are used."""
    space = {n for n in ops.GRAFS_UNARY if n not in ops.GRAFS_TEMPLATES} | set(ops.GRAFS_BINARY)
    assert set(WITH_RULE) == space
    assert ops.get("relu").derivative is ops.get("max0").derivative  # by alias too


@pytest.mark.parametrize("name", WITH_RULE)
def test_rule_equals_autodiff_of_the_operator(name):
    arity = ops.get(name).arity
    if arity == 1:
        inputs = [_X]
    elif arity == 2:
        inputs = [_A, _B]
    else:  # mix(a, b, w): every input varies
        inputs = [_A, _B, np.resize(np.linspace(-3.0, 3.0, 13), _A.shape)]
    want, got = _autodiff_and_rule(name, inputs, seed=len(name))
    assert len(got) == arity
    for i, (w, g) in enumerate(zip(want, got)):
        if g is None:  # an input the output does not depend on
            assert w is None or np.all(w.numpy() == 0.0), (name, i)
            continue
        np.testing.assert_allclose(np.broadcast_to(g.numpy(), _A.shape if arity > 1 else
                                                   _X.shape), w.numpy(), rtol=1e-12,
                                   atol=1e-30, err_msg=f"{name}, input {i}")
