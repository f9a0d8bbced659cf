"""AutoInit under the legacy Keras (tf_keras; TF_USE_LEGACY_KERAS=1): modern weighted layers,
wrappers, nested/shared layers, TensorFlow-function graph nodes (TFOpLambda), and
keras-cv-attention-models networks.

The weighted-layer, attention, wrapper, recurrent, nested and shared-layer checks are those
of tests/test_autoinit_modern.py (collected here from its ``__all__`` on one grid point).
The operation checks compare each rule, dispatched on the TFOpLambda's TensorFlow function
and its real arguments, with the real operation run on a large seeded Gaussian input.
"""

import math

import numpy as np
import pytest

from keras_actfn import backend
from keras_actfn.backend import keras, tf
from test_autoinit_modern import *  # noqa: F401,F403 - the checks shared by both Kerases
from test_autoinit_modern import _op_check, assert_close, autoinit, gaussian, record

L = keras.layers


def test_backend_is_tf_keras():
    assert backend.LEGACY and not backend.KERAS3


# ------------------------------------------------------------------ TFOpLambda operations
W = (np.random.default_rng(7).normal(size=(16, 12)) * 0.3 + 0.05).astype("float32")
C16 = np.linspace(-1.0, 2.0, 16).astype("float32")
X_MOMENTS, Y_MOMENTS = (0.4, 1.3), (-0.7, 0.6)

# (id, number of inputs (x, y of shape (8, 16)), op builder, method, rel slack)
OPS = [
    ("add", 2, lambda x, y: x + y, "analytic", 0.005),
    ("math_add", 2, lambda x, y: tf.math.add(x, y), "analytic", 0.005),
    ("subtract", 2, lambda x, y: x - y, "analytic", 0.005),
    ("multiply", 2, lambda x, y: tf.multiply(x, y), "analytic", 0.005),
    ("add_n", 2, lambda x, y: tf.add_n([x, y]), "analytic", 0.005),
    ("x_times_x", 1, lambda x: x * x, "analytic", 0.005),
    ("scalar_scale", 1, lambda x: x * 2.5, "analytic", 0.005),
    ("scalar_rsub", 1, lambda x: 1.0 - x, "analytic", 0.005),
    ("scalar_divide", 1, lambda x: x / 3.0, "analytic", 0.005),
    ("array_add", 1, lambda x: x + C16, "analytic", 0.005),
    ("bias_add", 1, lambda x: tf.nn.bias_add(x, C16), "analytic", 0.005),
    ("array_multiply", 1, lambda x: x * C16, "analytic", 0.005),
    ("pow3", 1, lambda x: tf.math.pow(x, 3.0), "analytic", 0.01),
    ("maximum_const", 1, lambda x: tf.maximum(x, 0.5), "analytic", 0.005),
    ("maximum_pairs", 2, lambda x, y: tf.maximum(x, y), "monte_carlo", 0.01),
    ("divide_pairs", 2, lambda x, y: x / (y + 5.0), "monte_carlo", 0.01),
    ("matmul_transpose_b", 2, lambda x, y: tf.matmul(x, y, transpose_b=True), "analytic", 0.005),
    ("matmul_constant", 1, lambda x: tf.matmul(x, W), "analytic", 0.005),
    ("einsum", 2, lambda x, y: tf.einsum("bij,bkj->bik", x, y), "analytic", 0.005),
    ("einsum_own_sums", 2, lambda x, y: tf.einsum("bij,bkl->bik", x, y), "analytic", 0.005),
    ("reduce_mean", 1, lambda x: tf.reduce_mean(x, axis=[1, 2]), "analytic", 0.005),
    ("reduce_sum", 1, lambda x: tf.math.reduce_sum(x, -1, keepdims=True), "analytic", 0.005),
    ("reduce_max", 1, lambda x: tf.reduce_max(x, axis=1), "analytic", 0.005),
    ("reduce_min", 1, lambda x: tf.reduce_min(x, axis=-1), "analytic", 0.005),
    ("reshape", 1, lambda x: tf.reshape(x, (-1, 4, 32)), "analytic", 0.005),
    ("transpose", 1, lambda x: tf.transpose(x, [0, 2, 1]), "analytic", 0.005),
    ("expand_squeeze", 1, lambda x: tf.squeeze(tf.expand_dims(x, 1), 1), "analytic", 0.005),
    ("getitem", 1, lambda x: x[:, 2:5, ::2], "analytic", 0.005),
    ("gather", 1, lambda x: tf.gather(x, [0, 3, 5], axis=1), "analytic", 0.005),
    ("concat", 2, lambda x, y: tf.concat([x, y[:, :4]], axis=1), "analytic", 0.005),
    ("stack", 2, lambda x, y: tf.stack([x, y], axis=1), "analytic", 0.005),
    ("split", 1, lambda x: tf.split(x, 2, axis=-1)[1], "analytic", 0.005),
    ("pad_constant", 1, lambda x: tf.pad(x, [[0, 0], [1, 2], [0, 3]], constant_values=1.5),
     "analytic", 0.005),
    ("relu", 1, lambda x: tf.nn.relu(x), "analytic", 0.005),
    ("gelu", 1, lambda x: tf.nn.gelu(x), "analytic", 0.005),
    ("sigmoid", 1, lambda x: tf.sigmoid(x), "analytic", 0.005),
    ("tanh", 1, lambda x: tf.tanh(x), "analytic", 0.005),
    ("swish", 1, lambda x: tf.nn.swish(x), "analytic", 0.005),
    ("leaky_relu", 1, lambda x: tf.nn.leaky_relu(x, alpha=0.3), "analytic", 0.005),
    ("elu", 1, lambda x: tf.nn.elu(x), "analytic", 0.005),
    ("softplus", 1, lambda x: tf.nn.softplus(x), "analytic", 0.005),
    ("exp", 1, lambda x: tf.exp(x), "analytic", 0.01),
    ("abs", 1, lambda x: tf.abs(x), "analytic", 0.005),
    ("square", 1, lambda x: tf.square(x), "analytic", 0.005),
    ("negative", 1, lambda x: -x, "analytic", 0.005),
    ("clip", 1, lambda x: tf.clip_by_value(x, -0.5, 1.0), "analytic", 0.005),
    ("softmax", 1, lambda x: tf.nn.softmax(x, axis=-1), "monte_carlo", 0.03),
    ("cumsum_no_rule", 1, lambda x: tf.math.cumsum(x, axis=1), "monte_carlo", 0.03),
]


@pytest.mark.parametrize("name,n_inputs,fn,method,rel", OPS, ids=[o[0] for o in OPS])
def test_tf_function_matches_monte_carlo(name, n_inputs, fn, method, rel):
    warns = _op_check(n_inputs, fn, method, rel, name)
    if name == "cumsum_no_rule":  # the Monte Carlo fallback, with constant arguments
        assert len(warns) == 1 and "cumsum" in warns[0], warns
    else:
        assert not warns, warns


def test_dispatch_is_on_the_function_object_not_its_name():
    from keras_actfn.autoinit.estimators import graph_ops

    inp = keras.Input((8, 16))
    layer = keras.Model(inp, tf.math.reduce_mean(inp, axis=1)).layers[-1]
    assert type(layer).__name__ == "TFOpLambda"
    table = graph_ops._tf_table()
    assert graph_ops.innermost(layer.function) in table
    assert graph_ops.innermost(tf.add) is graph_ops.innermost(tf.math.add)
    layer._name = "tf.math.reduce_sum"  # a misleading name changes nothing
    ai, _ = autoinit(keras.Model(inp, layer.output))
    assert ai.output_moments[0].var == pytest.approx(1.0 / 8)  # still a mean over 8


# ------------------------------------------------------------------ legacy-only layers
@pytest.mark.parametrize("make,shape", [
    (lambda: L.LocallyConnected1D(32, 3, name="t"), (20, 12)),
    (lambda: L.LocallyConnected2D(16, 3, name="t"), (8, 8, 6)),
], ids=["1d", "2d"])
def test_locally_connected(make, shape):
    inp = keras.Input(shape)
    model = keras.Model(inp, make()(inp))
    values = []
    for seed in range(4):
        ai, warns = autoinit(model, 0.8, 0.5, seed=seed)
        assert not warns and record(ai, "t").initialized
        values.append(float(np.var(model(gaussian((2048,) + shape, 0.8, 0.5, seed)).numpy())))
    assert abs(np.mean(values) - 1.0) < 0.15, values


# ------------------------------------------------------------------ kecam networks
def _kecam(name):
    if name == "coatnet":
        from keras_cv_attention_models import coatnet

        return coatnet.CoAtNet0(input_shape=(64, 64, 3), num_classes=10, pretrained=None)
    from keras_cv_attention_models import mobilevit

    return mobilevit.MobileViT_V2_050(input_shape=(64, 64, 3), num_classes=10,
                                      pretrained=None)


@pytest.mark.parametrize("name,min_in_band", [("coatnet", 0.85), ("mobilevit_v2", 0.9)])
def test_kecam_network(name, min_in_band):
    model = _kecam(name)
    ai, warns = autoinit(model, seed=0)
    # the only layers without a rule: kecam's relative-position bias (Monte Carlo)
    mc_types = {type(model.get_layer(r.layer)).__name__ for r in ai.records
                if r.method == "monte_carlo"}
    assert mc_types <= {"MultiHeadRelativePositionalEmbedding", "Softmax"}, mc_types
    assert all("MultiHeadRelativePositionalEmbedding" in w for w in warns), warns
    initialized = [model.get_layer(r.layer) for r in ai.records if r.initialized]
    assert len(initialized) > 40
    for layer in initialized:
        for w in layer.weights:
            assert np.isfinite(w.numpy()).all(), layer.name
    # empirical / predicted output variance of every initialized layer on Gaussian input
    # (the softmax head's prediction is the softmax's own variance: compared too)
    probe = keras.Model(model.inputs, [layer.output for layer in initialized])
    outs = probe(gaussian((8, 64, 64, 3), 0.0, 1.0), training=True)
    ratios = np.array([float(np.var(y.numpy().astype(np.float64))) /
                       record(ai, layer.name).outputs[0].var
                       for layer, y in zip(initialized, outs)])
    in_band = float(np.mean((ratios > 0.25) & (ratios < 4.0)))
    quantiles = np.round(np.quantile(ratios, [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]), 3)
    print(f"{name}: {len(ratios)} weighted layers, {in_band:.0%} in [0.25, 4]; "
          f"quantiles {quantiles}")
    outside = {layer.name: round(float(r), 3) for layer, r in zip(initialized, ratios)
               if not 0.25 < r < 4.0}
    print(f"  outside the band: {outside}")
    assert in_band >= min_in_band, (name, in_band, quantiles)
    assert math.isfinite(ai.output_moments[0].var)
