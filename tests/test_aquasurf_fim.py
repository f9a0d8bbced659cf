"""K-FAC Fisher eigenvalue features (keras_actfn.search.aquasurf.fim) against independent references."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from keras_actfn.backend import keras
from keras_actfn.search.aquasurf import fim as fim_mod
from keras_actfn.search.aquasurf.fim import (LOG_FLOOR, activation_fim_features, extract_patches,
                                             fisher_eigenvalues, histogram_bins)


def _dense_softmax(n_in, n_out, seed=0, use_bias=True):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((n_in,))
    out = keras.layers.Dense(n_out, activation="softmax", use_bias=use_bias,
                             bias_initializer="random_normal")(inp)
    return keras.Model(inp, out)


# ------------------------------------------------------------------ Dense: K-FAC is exact

def test_single_dense_one_input_matches_monte_carlo_fisher():
    """One input repeated, labels from the model: Ω⊗Γ is the exact Fisher block; compare its
    eigenvalues with a Monte-Carlo Fisher built from per-example gradients (own tapes)."""
    model = _dense_softmax(3, 4, seed=1)
    layer = model.layers[-1]
    x0 = np.array([[0.7, -1.2, 0.4]], np.float32)
    n = 3000
    res = fisher_eigenvalues(model, np.repeat(x0, n, 0), labels="model", seed=3)
    assert res.valid and len(res.layers) == 1
    kfac = np.sort(np.exp(res.layers[0].log_eigenvalues))[::-1]
    assert kfac.shape == (4 * 4,)                       # (3 inputs + bias) x 4 outputs

    # Monte-Carlo Fisher: E[g g^T] over y ~ model, g = grad of -log p_y w.r.t. (kernel, bias).
    rng = np.random.default_rng(7)
    p = model(x0).numpy()[0]
    fisher = np.zeros((16, 16))
    m = 1500
    xt = tf.constant(x0)
    for y in rng.choice(4, size=m, p=p / p.sum()):
        with tf.GradientTape() as tape:
            loss = -tf.math.log(model(xt)[0, int(y)])
        gk, gb = tape.gradient(loss, [layer.kernel, layer.bias])
        g = np.concatenate([gk.numpy().ravel(), gb.numpy().ravel()])
        fisher += np.outer(g, g) / m
    mc = np.sort(np.linalg.eigvalsh(fisher))[::-1]
    # the block has rank 3 (Ω rank 1, Γ = diag(p) - pp^T rank 3): compare the nonzero ones
    np.testing.assert_allclose(kfac[:3], mc[:3], rtol=0.15)
    assert np.all(mc[3:] < 1e-5 * mc[0])
    # numerically-zero eigenvalues are floored, not noise
    assert np.sum(res.layers[0].log_eigenvalues < -80) >= 12
    # and the exact analytic factor: Γ = diag(p) - p p^T (up to sampling error)
    np.testing.assert_allclose(res.layers[0].gamma, np.diag(p) - np.outer(p, p), atol=0.02)
    np.testing.assert_allclose(res.layers[0].omega, np.outer([1, *x0[0]], [1, *x0[0]]), rtol=1e-5)


def test_bias_homogeneous_coordinate_present_or_absent():
    x = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32)
    with_b = fisher_eigenvalues(_dense_softmax(5, 3, use_bias=True), x).layers[0]
    without = fisher_eigenvalues(_dense_softmax(5, 3, use_bias=False), x).layers[0]
    assert with_b.omega.shape == (6, 6) and with_b.has_bias and with_b.num_params == 18
    assert without.omega.shape == (5, 5) and not without.has_bias and without.num_params == 15
    assert with_b.omega[0, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(with_b.omega[0, 1:], x.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(without.omega, x.T @ x / 16, rtol=1e-4, atol=1e-6)
    assert len(with_b.log_eigenvalues) == 18 and len(without.log_eigenvalues) == 15


# ------------------------------------------------------------------ labels

def test_empirical_fisher_uses_given_labels_and_differs_from_true_fisher():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    h = keras.layers.Dense(5, activation="tanh")(inp)
    out = keras.layers.Dense(4, activation="softmax")(h)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 6)).astype(np.float32)
    y = rng.integers(0, 4, size=32)
    emp = fisher_eigenvalues(model, x, y, labels="data")
    true = fisher_eigenvalues(model, x, y, labels="model", seed=0)
    # direct: per-example gradients of -log p_y w.r.t. each layer's pre-activation
    d1, d2 = model.layers[1], model.layers[2]
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        s1 = tf.matmul(xt, d1.kernel) + d1.bias
        tape.watch(s1)
        a1 = tf.tanh(s1)
        s2 = tf.matmul(a1, d2.kernel) + d2.bias
        tape.watch(s2)
        nll = -tf.reduce_sum(tf.gather(tf.nn.log_softmax(s2), y, batch_dims=1))
    g1, g2 = [t.numpy() for t in tape.gradient(nll, [s1, s2])]
    np.testing.assert_allclose(emp.layers[0].gamma, g1.T @ g1 / 32, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(emp.layers[1].gamma, g2.T @ g2 / 32, rtol=1e-4, atol=1e-7)
    a1n = np.concatenate([np.ones((32, 1)), a1.numpy()], 1)
    np.testing.assert_allclose(emp.layers[1].omega, a1n.T @ a1n / 32, rtol=1e-4, atol=1e-7)
    # same inputs -> same Ω, different labels -> different Γ
    np.testing.assert_allclose(emp.layers[1].omega, true.layers[1].omega, rtol=1e-6)
    assert not np.allclose(emp.layers[1].gamma, true.layers[1].gamma, atol=1e-4)
    # one-hot labels are accepted and mean the same thing
    emp_oh = fisher_eigenvalues(model, x, np.eye(4)[y], labels="data")
    np.testing.assert_allclose(emp_oh.layers[1].gamma, emp.layers[1].gamma, rtol=1e-6)
    with pytest.raises(ValueError):
        fisher_eigenvalues(model, x, labels="data")


def test_deterministic_with_seed_and_chunking():
    model = _dense_softmax(5, 4, seed=3)
    x = np.random.default_rng(1).normal(size=(40, 5)).astype(np.float32)
    a = fisher_eigenvalues(model, x, seed=11)
    b = fisher_eigenvalues(model, x, seed=11)
    c = fisher_eigenvalues(model, x, seed=12)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.log_eigenvalues, b.log_eigenvalues)
    assert not np.array_equal(a.layers[0].gamma, c.layers[0].gamma)
    y = np.arange(40) % 4
    whole = fisher_eigenvalues(model, x, y, labels="data")
    chunked = fisher_eigenvalues(model, x, y, labels="data", batch_size=7)
    np.testing.assert_allclose(whole.layers[0].omega, chunked.layers[0].omega, rtol=1e-5)
    np.testing.assert_allclose(whole.layers[0].gamma, chunked.layers[0].gamma, rtol=1e-5)


# ------------------------------------------------------------------ convolutions

def _tf_conv(layer, x, kernel):
    """The layer's convolution written directly with tf.nn.convolution (causal = left pad)."""
    x = tf.constant(x)
    padding = layer.padding.upper()
    if padding == "CAUSAL":
        d, k = layer.dilation_rate[0], layer.kernel_size[0]
        x = tf.pad(x, [(0, 0), (d * (k - 1), 0), (0, 0)])
        padding = "VALID"
    return tf.nn.convolution(x, kernel, strides=list(layer.strides), padding=padding,
                             dilations=list(layer.dilation_rate))


def _numpy_patches_by_onehot_conv(layer, x):
    """Independent ⟦A⟧: apply the layer's own convolution to one-hot kernels (one per patch
    coordinate), in NumPy order (*kernel_size, in_channels)."""
    ks = tuple(layer.kernel_size)
    j = int(x.shape[-1])
    coords = list(itertools.product(*[range(k) for k in ks], range(j)))
    kernel = np.zeros(ks + (j, len(coords)), np.float32)
    for i, c in enumerate(coords):
        kernel[c + (i,)] = 1.0
    out = _tf_conv(layer, x, kernel).numpy()                     # (M, *out, |Δ|J)
    return out.reshape(out.shape[0], -1, len(coords))


CONV_CASES = [
    ("Conv1D", (11, 2), dict(kernel_size=3, strides=2, padding="same")),
    ("Conv1D", (11, 2), dict(kernel_size=3, strides=1, padding="valid", dilation_rate=2)),
    ("Conv1D", (10, 2), dict(kernel_size=2, padding="causal", dilation_rate=3)),
    ("Conv2D", (7, 6, 2), dict(kernel_size=3, strides=2, padding="same")),
    ("Conv2D", (7, 6, 2), dict(kernel_size=(3, 2), strides=2, padding="valid")),
    ("Conv2D", (8, 7, 2), dict(kernel_size=3, padding="same", dilation_rate=2)),
    ("Conv3D", (5, 4, 5, 2), dict(kernel_size=2, strides=2, padding="same")),
    # stride 1, no dilation: Ω from lag sums (_lag_omega_sums)
    ("Conv1D", (9, 2), dict(kernel_size=4, padding="same")),
    ("Conv1D", (9, 2), dict(kernel_size=3, padding="causal")),
    ("Conv2D", (7, 6, 2), dict(kernel_size=3, padding="same")),
    ("Conv2D", (7, 6, 2), dict(kernel_size=(3, 2), padding="valid")),
    ("Conv2D", (3, 4, 2), dict(kernel_size=5, padding="same")),
]


@pytest.mark.parametrize("cls,shape,kw", CONV_CASES)
def test_conv_factors_match_bruteforce(cls, shape, kw):
    keras.utils.set_random_seed(5)
    inp = keras.Input(shape)
    conv = getattr(keras.layers, cls)(3, activation="tanh", bias_initializer="random_normal",
                                      **kw)
    h = conv(inp)
    out = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    m = 6
    x = rng.normal(size=(m,) + shape).astype(np.float32)
    y = rng.integers(0, 4, size=m)

    # our patches reproduce the layer's convolution: patches @ kernel = pre-activation
    pat = extract_patches(tf.constant(x), conv.kernel_size, conv.strides, conv.dilation_rate,
                          conv.padding).numpy()
    pat = pat.reshape(m, pat.shape[1], -1)
    direct = _tf_conv(conv, x, conv.kernel).numpy().reshape(m, -1, 3)
    np.testing.assert_allclose(pat @ conv.kernel.numpy().reshape(-1, 3), direct,
                               rtol=1e-4, atol=1e-5)
    ref_pat = _numpy_patches_by_onehot_conv(conv, x)
    np.testing.assert_allclose(pat, ref_pat, atol=1e-6)

    res = fisher_eigenvalues(model, x, y, labels="data")
    lf = res.layers[0]
    t = ref_pat.shape[1]
    rows = np.concatenate([np.ones((m * t, 1)), ref_pat.reshape(m * t, -1)], 1)
    np.testing.assert_allclose(lf.omega, rows.T @ rows / m, rtol=1e-4, atol=1e-5)  # eq. 6.14

    # Γ (eq. 6.15): gradient w.r.t. the pre-activation, computed through a rebuilt forward
    dense = model.layers[-1]
    with tf.GradientTape() as tape:
        s = _tf_conv(conv, x, conv.kernel) + conv.bias
        tape.watch(s)
        z = tf.matmul(tf.reshape(tf.tanh(s), [m, -1]), dense.kernel) + dense.bias
        nll = -tf.reduce_sum(tf.gather(tf.nn.log_softmax(z), y, batch_dims=1))
    ds = tape.gradient(nll, s).numpy().reshape(m * t, 3)
    np.testing.assert_allclose(lf.gamma, ds.T @ ds / (m * t), rtol=1e-4, atol=1e-8)
    assert lf.positions == t and lf.num_params == conv.kernel.numpy().size + 3
    assert len(lf.log_eigenvalues) == lf.num_params


def test_dense_on_sequences_positions_are_rows():
    keras.utils.set_random_seed(0)
    inp = keras.Input((5, 3))
    h = keras.layers.Dense(4, activation="relu")(inp)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).normal(size=(8, 5, 3)).astype(np.float32)
    lf = fisher_eigenvalues(model, x).layers[0]
    rows = np.concatenate([np.ones((40, 1)), x.reshape(40, 3)], 1)
    np.testing.assert_allclose(lf.omega, rows.T @ rows / 8, rtol=1e-4, atol=1e-6)
    assert lf.positions == 5 and lf.num_params == 16 and len(lf.log_eigenvalues) == 16


def test_depthwise_block_structure():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 3))
    dw = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", strides=2,
                                      activation="tanh")
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(dw(inp)))
    model = keras.Model(inp, out)
    x = np.random.default_rng(1).normal(size=(5, 6, 6, 3)).astype(np.float32)
    y = np.arange(5) % 3
    shared = fisher_eigenvalues(model, x, y, labels="data").layers[0]
    per = fisher_eigenvalues(model, x, y, labels="data", depthwise="per_channel").layers[0]
    n_params = 3 * 3 * 3 * 2 + 6
    assert shared.kind == "depthwise" and shared.num_params == n_params
    assert shared.omega.shape == (10, 10) and shared.gamma.shape == (6, 6)
    assert per.omega.shape == (3, 10, 10) and per.gamma.shape == (3, 2, 2)
    assert len(shared.log_eigenvalues) == len(per.log_eigenvalues) == n_params
    # per-channel Ω_c from channel c's own patches (independent NumPy loop)
    pat = extract_patches(tf.constant(x), 3, 2, 1, "same").numpy()     # (M, T, 9, J)
    for c in range(3):
        rows = np.concatenate([np.ones((pat.shape[0] * pat.shape[1], 1)),
                               pat[:, :, :, c].reshape(-1, 9)], 1)
        np.testing.assert_allclose(per.omega[c], rows.T @ rows / 5, rtol=1e-4, atol=1e-6)
    # §6.2.3: the shared factor pools every channel's patch rows; Γ's diagonal blocks are Γ_c
    np.testing.assert_allclose(shared.omega, per.omega.sum(0), rtol=1e-4, atol=1e-6)
    for c in range(3):
        np.testing.assert_allclose(shared.gamma[2 * c:2 * c + 2, 2 * c:2 * c + 2], per.gamma[c],
                                   rtol=1e-4, atol=1e-9)


# ------------------------------------------------------------------ validity, histograms

def test_overflowing_activation_is_invalid():
    inp = keras.Input((4,))
    h = keras.layers.Dense(8, kernel_initializer=keras.initializers.Constant(30.0))(inp)
    h = keras.layers.Activation(lambda t: tf.exp(tf.exp(t)))(h)
    out = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model(inp, out)
    x = np.abs(np.random.default_rng(0).normal(size=(8, 4))).astype(np.float32) + 1
    res = fisher_eigenvalues(model, x)
    assert not res.valid and res.reason
    assert res.features.shape == (sum(histogram_bins(l.num_params) for l in res.layers),)


def test_histograms_count_eigenvalues_in_range():
    keras.utils.set_random_seed(0)
    inp = keras.Input((30,))
    h = keras.layers.Dense(20, activation="relu")(inp)
    out = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).normal(size=(12, 30)).astype(np.float32)
    res = fisher_eigenvalues(model, x)
    assert res.valid
    total = 0
    for lf in res.layers:
        bins = histogram_bins(lf.num_params)
        assert bins == lf.num_params // 100 and len(lf.histogram) == bins
        v = lf.log_eigenvalues
        inside = np.sum((v >= -100) & (v <= 100))
        assert lf.histogram.sum() == inside
        ref, _ = np.histogram(v, bins=bins, range=(-100, 100))
        np.testing.assert_array_equal(lf.histogram, ref)
        total += bins
    assert res.features.shape == (total,)
    # rank-deficient factors (12 examples, 31-dim Ω) give floored eigenvalues, some out of range
    assert np.any(res.layers[0].log_eigenvalues <= LOG_FLOOR + 1e-9)
    assert histogram_bins(50) == 1


def test_activation_fim_features_on_mnist1d():
    res = activation_fim_features("x*sigmoid(x)", batch=32, seed=0)
    assert res.valid, res.reason
    assert [l.kind for l in res.layers] == ["conv", "conv", "conv", "dense"]
    assert res.num_params == sum(l.num_params for l in res.layers)
    again = activation_fim_features("x*sigmoid(x)", batch=32, seed=0)
    np.testing.assert_array_equal(res.features, again.features)
    bad = activation_fim_features("exp(exp(exp(x)))", batch=32, seed=0)
    assert not bad.valid and bad.features.shape == res.features.shape


# ------------------------------------------------------------------ more layer types

def _nll_grads(x_fn, watch, y):
    """Gradients of the summed NLL w.r.t. the tensors ``x_fn`` watches (a rebuilt forward)."""
    with tf.GradientTape() as tape:
        logits, targets = x_fn(tape)
        nll = -tf.reduce_sum(tf.gather(tf.nn.log_softmax(logits), y, batch_dims=1))
    return [g.numpy() for g in tape.gradient(nll, targets)]


def _head(h, classes=4):
    return keras.layers.Dense(classes)(keras.layers.Flatten()(h))


@pytest.mark.parametrize("cls,shape,kw", [
    ("Conv2D", (6, 5, 4), dict(kernel_size=3, padding="same", groups=2)),
    ("Conv2D", (7, 7, 6), dict(kernel_size=(2, 3), strides=2, padding="valid", groups=3)),
    ("Conv1D", (9, 4), dict(kernel_size=1, groups=2)),
])
def test_grouped_conv_per_group_blocks(cls, shape, kw):
    """groups > 1: one Kronecker block per group, Ω_g from the group's input channels and
    Γ_g from its output channels (brute force from one-hot-kernel patches)."""
    keras.utils.set_random_seed(2)
    filters = 6
    inp = keras.Input(shape)
    conv = getattr(keras.layers, cls)(filters, activation="tanh", bias_initializer="random_normal",
                                      **kw)
    model = keras.Model(inp, _head(conv(inp)))
    rng = np.random.default_rng(1)
    m = 5
    x = rng.normal(size=(m,) + shape).astype(np.float32)
    y = rng.integers(0, 4, size=m)
    res = fisher_eigenvalues(model, x, y, labels="data")
    assert res.skipped == []
    lf = res.layers[0]
    groups, j = kw["groups"], shape[-1]
    jg, kg = j // groups, filters // groups
    ref_pat = _numpy_patches_by_onehot_conv(conv, x)                   # (M, T, |Δ|·J)
    t = ref_pat.shape[1]
    delta = ref_pat.shape[2] // j
    pat = ref_pat.reshape(m * t, delta, j)
    # the layer's own output from the patches, group by group (validates the reference)
    kern = conv.kernel.numpy().reshape(delta, jg, filters)
    direct = np.concatenate([pat[:, :, g * jg:(g + 1) * jg].reshape(m * t, -1)
                             @ kern[:, :, g * kg:(g + 1) * kg].reshape(-1, kg)
                             for g in range(groups)], 1) + conv.bias.numpy()
    dense = model.layers[-1]

    def forward(tape):
        s = tf.constant(direct.astype(np.float32))
        tape.watch(s)
        h = tf.reshape(tf.tanh(s), [m, -1])
        return tf.matmul(h, dense.kernel) + dense.bias, [s]

    (ds,) = _nll_grads(forward, None, y)
    assert lf.omega.shape == (groups, delta * jg + 1, delta * jg + 1)
    assert lf.gamma.shape == (groups, kg, kg)
    for g in range(groups):
        rows = np.concatenate([np.ones((m * t, 1)), pat[:, :, g * jg:(g + 1) * jg].reshape(m * t, -1)],
                              1)
        np.testing.assert_allclose(lf.omega[g], rows.T @ rows / m, rtol=1e-4, atol=1e-5)
        dg = ds[:, g * kg:(g + 1) * kg]
        np.testing.assert_allclose(lf.gamma[g], dg.T @ dg / (m * t), rtol=1e-4, atol=1e-8)
    assert lf.num_params == conv.kernel.numpy().size + filters == len(lf.log_eigenvalues)


@pytest.mark.parametrize("cls,shape,kw", [
    ("SeparableConv2D", (7, 6, 3), dict(kernel_size=3, strides=2, padding="same",
                                         depth_multiplier=2)),
    ("SeparableConv1D", (9, 3), dict(kernel_size=3, padding="valid", dilation_rate=2)),
])
def test_separable_conv_two_blocks(cls, shape, kw):
    """Depthwise part (§6.2.3 shared construction, no bias) and pointwise part (a 1x1 conv on
    the depthwise output, with the bias) as two blocks; references from a forward rebuilt out
    of the patches with NumPy weights."""
    keras.utils.set_random_seed(4)
    inp = keras.Input(shape)
    sep = getattr(keras.layers, cls)(5, activation="tanh", bias_initializer="random_normal", **kw)
    model = keras.Model(inp, _head(sep(inp)))
    rng = np.random.default_rng(2)
    m = 4
    x = rng.normal(size=(m,) + shape).astype(np.float32)
    y = rng.integers(0, 4, size=m)
    res = fisher_eigenvalues(model, x, y, labels="data")
    assert res.skipped == []
    dw, pw = res.layers[0], res.layers[1]
    assert (dw.name, pw.name) == (sep.name + "/depthwise", sep.name + "/pointwise")
    assert (dw.kind, pw.kind) == ("depthwise", "pointwise")
    assert not dw.has_bias and pw.has_bias
    # our written-out forward is the layer's forward
    _, _, _, out = fim_mod._separable_forward(sep, tf.constant(x), lambda t: None)
    np.testing.assert_allclose(out.numpy(), sep(x).numpy(), rtol=1e-4, atol=1e-5)

    rank = len(shape) - 1
    pat = extract_patches(tf.constant(x), sep.kernel_size, sep.strides, sep.dilation_rate,
                          sep.padding).numpy()                            # (M, T, Δ, J)
    _, t, delta, j = pat.shape
    mult = kw["depth_multiplier"] if "depth_multiplier" in kw else 1
    dk = sep.depthwise_kernel.numpy().reshape(delta, j, mult)
    z = np.einsum("mtdj,djq->mtjq", pat, dk).reshape(m, t, j * mult)
    pk = sep.pointwise_kernel.numpy().reshape(j * mult, 5)
    dense = model.layers[-1]

    def forward(tape):
        zt = tf.constant(z.astype(np.float32))
        tape.watch(zt)
        s = tf.einsum("mtc,ck->mtk", zt, pk) + sep.bias
        tape.watch(s)
        return tf.matmul(tf.reshape(tf.tanh(s), [m, -1]), dense.kernel) + dense.bias, [zt, s]

    dz, ds = _nll_grads(forward, None, y)
    rows = pat.transpose(0, 1, 3, 2).reshape(-1, delta)                   # every channel's patch
    np.testing.assert_allclose(dw.omega, rows.T @ rows / m, rtol=1e-4, atol=1e-5)
    dzr = dz.reshape(m * t, -1)
    np.testing.assert_allclose(dw.gamma, dzr.T @ dzr / (m * t), rtol=1e-4, atol=1e-8)
    zr = np.concatenate([np.ones((m * t, 1)), z.reshape(m * t, -1)], 1)
    np.testing.assert_allclose(pw.omega, zr.T @ zr / m, rtol=1e-4, atol=1e-5)
    dsr = ds.reshape(m * t, -1)
    np.testing.assert_allclose(pw.gamma, dsr.T @ dsr / (m * t), rtol=1e-4, atol=1e-8)
    assert dw.num_params == sep.depthwise_kernel.numpy().size == len(dw.log_eigenvalues)
    assert pw.num_params == sep.pointwise_kernel.numpy().size + 5 == len(pw.log_eigenvalues)
    assert rank in (1, 2)


def _onehot_transpose_rows(layer, x, out_spatial):
    """Independent ⟦A⟧ of a transposed convolution, in NumPy from the definition: input
    position p with tap t lands on output position p·stride + t·dilation − pad, where pad is
    the leading padding of the forward convolution whose gradient the layer computes (0 for
    "valid"; for "same" half of the total, rounded down). Row (output position) holds the
    input vector under column block (tap, input channel). NumPy, not TensorFlow's op: some
    CPU builds of TensorFlow (oneDNN off) have no dilated transposed convolution."""
    ks = tuple(int(k) for k in layer.kernel_size)
    strides = tuple(int(s) for s in layer.strides)
    dil = tuple(int(d) for d in layer.dilation_rate)
    m, *in_spatial, j = x.shape
    pads = []
    for n, o, k, s, d in zip(in_spatial, out_spatial, ks, strides, dil):
        total = max((n - 1) * s + (k - 1) * d + 1 - o, 0) if layer.padding == "same" else 0
        pads.append(total // 2)
    taps = list(itertools.product(*[range(k) for k in ks]))
    rows = np.zeros((m, *out_spatial, len(taps), j), np.float32)
    for p in itertools.product(*[range(n) for n in in_spatial]):
        for ti, t in enumerate(taps):
            o = tuple(pi * s + tj * d - pad
                      for pi, tj, s, d, pad in zip(p, t, strides, dil, pads))
            if all(0 <= oi < size for oi, size in zip(o, out_spatial)):
                rows[(slice(None), *o, ti)] += x[(slice(None), *p)]
    return rows.reshape(m, -1, len(taps) * j)


def _platform_lacks_dilated_transpose(layer, x):
    """True when this TensorFlow build cannot run the layer at all (CPU kernels without
    oneDNN refuse dilated transposed convolutions)."""
    if max(int(d) for d in layer.dilation_rate) == 1:
        return False
    try:
        layer(x)
    except tf.errors.InvalidArgumentError as err:
        if "dilation rates larger than 1" in str(err):
            return True
        raise
    return False


@pytest.mark.parametrize("cls,shape,kw", [
    ("Conv2DTranspose", (4, 3, 2), dict(kernel_size=3, strides=2, padding="same")),
    ("Conv2DTranspose", (3, 4, 2), dict(kernel_size=(3, 2), strides=(2, 1), padding="valid")),
    ("Conv2DTranspose", (3, 3, 2), dict(kernel_size=4, strides=2, padding="valid",
                                         output_padding=1)),
    ("Conv2DTranspose", (3, 4, 1), dict(kernel_size=3, strides=(3, 2), padding="same",
                                         output_padding=(1, 0))),
    ("Conv1DTranspose", (5, 2), dict(kernel_size=3, padding="valid", dilation_rate=2)),
    ("Conv1DTranspose", (4, 3), dict(kernel_size=4, strides=3, padding="same")),
])
def test_conv_transpose_factors_match_onehot_reference(cls, shape, kw):
    keras.utils.set_random_seed(6)
    inp = keras.Input(shape)
    layer = getattr(keras.layers, cls)(3, activation="tanh", bias_initializer="random_normal",
                                       **kw)
    h = layer(inp)
    model = keras.Model(inp, _head(h))
    rng = np.random.default_rng(3)
    m = 5
    x = rng.normal(size=(m,) + shape).astype(np.float32)
    y = rng.integers(0, 4, size=m)
    out_spatial = tuple(int(v) for v in h.shape[1:-1])
    rows = _onehot_transpose_rows(layer, x, out_spatial)               # (M, T, |Δ|·J)
    if _platform_lacks_dilated_transpose(layer, x):
        # nothing can run this layer here; the FIM says so instead of returning numbers
        with pytest.raises(tf.errors.InvalidArgumentError, match="dilation rates"):
            fisher_eigenvalues(model, x, np.zeros(m, int), labels="data")
        return
    t = rows.shape[1]
    # the expansion reproduces the layer: ⟦A⟧ · W = its pre-activation output
    j = shape[-1]
    w = np.moveaxis(layer.kernel.numpy(), -1, -2).reshape(-1, 3)       # (*k, in, out) rows
    pre = rows.reshape(m * t, -1) @ w + layer.bias.numpy()
    np.testing.assert_allclose(np.tanh(pre).reshape(m, *out_spatial, 3), layer(x).numpy(),
                               rtol=1e-4, atol=1e-5)
    res = fisher_eigenvalues(model, x, y, labels="data")
    assert res.skipped == [] and res.layers[0].kind == "transpose"
    lf = res.layers[0]
    aug = np.concatenate([np.ones((m * t, 1)), rows.reshape(m * t, -1)], 1)
    np.testing.assert_allclose(lf.omega, aug.T @ aug / m, rtol=1e-4, atol=1e-5)
    dense = model.layers[-1]

    def forward(tape):
        s = tf.constant(pre.astype(np.float32))
        tape.watch(s)
        return tf.matmul(tf.reshape(tf.tanh(s), [m, -1]), dense.kernel) + dense.bias, [s]

    (ds,) = _nll_grads(forward, None, y)
    np.testing.assert_allclose(lf.gamma, ds.T @ ds / (m * t), rtol=1e-3, atol=1e-7)
    assert lf.positions == t
    assert lf.num_params == layer.kernel.numpy().size + 3 == len(lf.log_eigenvalues)
    assert lf.omega.shape[0] == 1 + int(np.prod(layer.kernel_size)) * j


def test_einsum_dense_one_position_is_exact_fisher():
    """One input, one position, labels given: K-FAC is exact, so the Kronecker eigenvalues
    are the eigenvalues of the empirical Fisher built from per-example gradients."""
    keras.utils.set_random_seed(7)
    inp = keras.Input((3,))
    layer = keras.layers.EinsumDense("ab,bcd->acd", output_shape=(2, 2), bias_axes="cd",
                                     bias_initializer="random_normal")
    out = keras.layers.Reshape((4,))(layer(inp))
    model = keras.Model(inp, out)                                   # logits over 4 classes
    x0 = np.array([[0.3, -0.8, 1.1]], np.float32)
    y = np.arange(8) % 4
    x = np.repeat(x0, len(y), 0)
    res = fisher_eigenvalues(model, x, y, labels="data", output="logits")
    lf = res.layers[0]
    assert res.skipped == [] and lf.kind == "einsum" and lf.num_params == 3 * 4 + 4
    fisher = np.zeros((16, 16))
    for label in y:
        with tf.GradientTape() as tape:
            loss = -tf.nn.log_softmax(model(x0))[0, int(label)]
        gk, gb = tape.gradient(loss, [layer.kernel, layer.bias])
        g = np.concatenate([gk.numpy().ravel(), gb.numpy().ravel()])
        fisher += np.outer(g, g) / len(y)
    exact = np.sort(np.linalg.eigvalsh(fisher))[::-1]
    kfac = np.sort(np.exp(lf.log_eigenvalues))[::-1]
    keep = exact > 1e-6 * exact[0]
    np.testing.assert_allclose(kfac[keep], exact[keep], rtol=1e-4)
    assert np.all(kfac[~keep] < 1e-5 * exact[0])


def test_multi_head_attention_projections_are_dense_on_positions():
    """MHA's four EinsumDense projections: rows are (example, position[, head]); references
    from the attention written out with the layer's weights."""
    keras.utils.set_random_seed(8)
    seq, dim, heads, kd = 4, 6, 2, 3
    inp = keras.Input((seq, dim))
    mha = keras.layers.MultiHeadAttention(heads, kd, bias_initializer="random_normal")
    model = keras.Model(inp, _head(mha(inp, inp), 3))
    rng = np.random.default_rng(5)
    m = 5
    x = rng.normal(size=(m, seq, dim)).astype(np.float32)
    y = rng.integers(0, 3, size=m)
    res = fisher_eigenvalues(model, x, y, labels="data")
    assert res.skipped == []
    proj = [l for l in res.layers if l.kind == "einsum"]
    assert len(proj) == 4
    q_l, k_l, v_l, o_l = (mha._query_dense, mha._key_dense, mha._value_dense,
                          mha._output_dense)
    by = {l.name: l for l in res.layers}
    dense = model.layers[-1]
    xt = tf.constant(x)

    def forward(tape):
        q = tf.einsum("abc,cde->abde", xt, q_l.kernel) + q_l.bias
        k = tf.einsum("abc,cde->abde", xt, k_l.kernel) + k_l.bias
        v = tf.einsum("abc,cde->abde", xt, v_l.kernel) + v_l.bias
        for t in (q, k, v):
            tape.watch(t)
        w = tf.nn.softmax(tf.einsum("aecd,abcd->acbe", k, q) / np.sqrt(kd), axis=-1)
        att = tf.einsum("acbe,aecd->abcd", w, v)
        o = tf.einsum("abcd,cde->abe", att, o_l.kernel) + o_l.bias
        tape.watch(o)
        forward.att = att.numpy()
        forward.out = o.numpy()
        return tf.matmul(tf.reshape(o, [m, -1]), dense.kernel) + dense.bias, [q, k, v, o]

    grads = _nll_grads(forward, None, y)
    np.testing.assert_allclose(forward.out, mha(x, x).numpy(), rtol=1e-4, atol=1e-5)
    rows_x = np.concatenate([np.ones((m * seq, 1)), x.reshape(m * seq, dim)], 1)
    rows_att = np.concatenate([np.ones((m * seq, 1)), forward.att.reshape(m * seq, -1)], 1)
    for layer, rows, g in zip((q_l, k_l, v_l, o_l), (rows_x, rows_x, rows_x, rows_att), grads):
        lf = by[layer.name]
        np.testing.assert_allclose(lf.omega, rows.T @ rows / m, rtol=1e-4, atol=1e-5)
        gr = g.reshape(m * seq, -1)
        np.testing.assert_allclose(lf.gamma, gr.T @ gr / (m * seq), rtol=1e-3, atol=1e-8)
        assert lf.positions == seq
        n = layer.kernel.numpy().size + layer.bias.numpy().size
        assert lf.num_params == n == len(lf.log_eigenvalues)


def test_layers_without_a_kfac_block_are_reported_skipped():
    inp = keras.Input((5,), dtype="int32")
    h = keras.layers.Embedding(7, 3)(inp)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(
        keras.layers.Flatten()(h)))
    res = fisher_eigenvalues(model, np.arange(10).reshape(2, 5) % 7)
    assert [cls for _, cls in res.skipped] == ["Embedding"]
    assert [l.kind for l in res.layers] == ["dense"]


def test_traced_and_eager_factors_agree():
    """graph=True runs each convolution's Ω as a tf.function: same numbers as eager."""
    keras.utils.set_random_seed(9)
    inp = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inp)
    h = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Conv2D(4, 3, padding="same", groups=2, activation="relu")(h)
    model = keras.Model(inp, _head(h))
    x = np.random.default_rng(4).normal(size=(5, 6, 6, 3)).astype(np.float32)
    eager = fisher_eigenvalues(model, x, seed=2, graph=False)
    traced = fisher_eigenvalues(model, x, seed=2, graph=True)
    auto = [fisher_eigenvalues(model, x, seed=2).layers for _ in range(3)][-1]  # traced by now
    for a, b, c in zip(eager.layers, traced.layers, auto):
        np.testing.assert_allclose(a.omega, b.omega, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.omega, c.omega, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.gamma, b.gamma, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError):
        fisher_eigenvalues(model, x, graph="yes")


LAG_CASES = [  # rank, spatial, kernel, padding, bias, flip
    (2, (9, 7), (3, 3), "same", True, False), (2, (9, 7), (3, 3), "valid", True, False),
    (2, (8, 8), (5, 5), "same", False, False), (2, (6, 10), (2, 3), "same", True, True),
    (2, (5, 6), (1, 3), "valid", True, False), (2, (3, 3), (3, 3), "valid", True, False),
    (2, (4, 4), (4, 4), "same", True, False), (2, (2, 2), (3, 3), "same", True, False),
    (2, (1, 5), (3, 3), "same", True, False), (1, (11,), (3,), "causal", True, False),
    (1, (11,), (4,), "same", False, True),
]


@pytest.mark.parametrize("rank,spatial,ks,padding,bias,flip", LAG_CASES)
def test_lag_omega_sums_match_phase_products(rank, spatial, ks, padding, bias, flip):
    """Stride-1 Ω from lag sums with edge corrections = the per-position phase products, with
    the padding applied before (a grid that may hold data anywhere) or described by pads."""
    x = tf.constant(np.random.default_rng(1).normal(size=(5,) + spatial + (3,)), tf.float32)
    ones = (1,) * rank
    pads, outs = fim_mod._geometry(list(spatial), ks, ones, ones, padding)
    xp = fim_mod._pad(x, pads)
    ref = fim_mod._phase_omega_sums(xp, ks, ones, ones, outs, bias, 1, flip).numpy()
    scale = np.abs(ref).max()
    for got in (fim_mod._conv_omega_sums(x, ks, ones, ones, outs, bias, 1, flip, pads),
                fim_mod._conv_omega_sums(xp, ks, ones, ones, outs, bias, 1, flip)):
        np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=2e-6 * scale)


@pytest.mark.parametrize("rank,spatial,ks,st,dl,padding,bias,flip", [
    (2, (9, 7), (3, 3), (2, 2), (1, 1), "same", True, False),
    (2, (9, 8), (3, 3), (2, 3), (1, 1), "valid", True, False),
    (2, (10, 10), (2, 3), (2, 1), (1, 2), "same", True, True),
    (2, (8, 8), (3, 3), (2, 2), (2, 2), "valid", False, False),
    (1, (11,), (3,), (2,), (1,), "causal", True, False),
    (1, (13,), (4,), (3,), (2,), "same", False, True),
])
def test_patch_omega_sums_match_phase_products(rank, spatial, ks, st, dl, padding, bias, flip):
    """Strided Ω from the kernel rows' patch products = the per-position phase products."""
    x = tf.constant(np.random.default_rng(2).normal(size=(5,) + spatial + (3,)), tf.float32)
    pads, outs = fim_mod._geometry(list(spatial), ks, st, dl, padding)
    xp = fim_mod._pad(x, pads)
    ref = fim_mod._phase_omega_sums(xp, ks, st, dl, outs, bias, 1, flip).numpy()
    got = fim_mod._patch_omega_sums(xp, ks, st, dl, outs, bias, flip).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * np.abs(ref).max())


def test_worker_thread_and_inline_finishing_agree(monkeypatch):
    """Eigenvalues in the worker thread (costliest layers first) or inline, in model order:
    the same results."""
    keras.utils.set_random_seed(11)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inp)
    h = keras.layers.Conv2D(12, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Conv2D(4, 1, activation="relu")(h)
    model = keras.Model(inp, _head(h))
    x = np.random.default_rng(5).normal(size=(6, 8, 8, 3)).astype(np.float32)
    worker = fisher_eigenvalues(model, x, seed=3)
    monkeypatch.setattr(fim_mod, "_OVERLAP", False)
    inline = fisher_eigenvalues(model, x, seed=3)
    assert [l.name for l in worker.layers] == [l.name for l in inline.layers] == \
        [l.name for l in model.layers if isinstance(l, (keras.layers.Conv2D,
                                                        keras.layers.Dense))]
    for a, b in zip(worker.layers, inline.layers):
        np.testing.assert_array_equal(a.omega, b.omega)
        np.testing.assert_array_equal(a.log_eigenvalues, b.log_eigenvalues)
        np.testing.assert_array_equal(a.histogram, b.histogram)
    assert worker.valid and inline.valid


def test_einsum_dense_ellipsis_rows_and_non_dense_equation_skipped():
    keras.utils.set_random_seed(10)
    inp = keras.Input((5, 3))
    ein = keras.layers.EinsumDense("...b,bc->...c", output_shape=4, bias_axes="c",
                                   activation="tanh")
    h = ein(inp)
    # "ab,bc->abc": the kernel's b is both contracted and kept -- no Kronecker block
    odd = keras.layers.EinsumDense("ab,bc->abc", output_shape=(20, 2))
    h2 = keras.layers.Flatten()(odd(keras.layers.Flatten()(h)))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h2))
    x = np.random.default_rng(6).normal(size=(6, 5, 3)).astype(np.float32)
    res = fisher_eigenvalues(model, x)
    assert res.skipped == [(odd.name, "EinsumDense")]
    lf = res.layers[0]
    assert lf.name == ein.name and lf.kind == "einsum" and lf.positions == 5
    rows = np.concatenate([np.ones((30, 1)), x.reshape(30, 3)], 1)
    np.testing.assert_allclose(lf.omega, rows.T @ rows / 6, rtol=1e-4, atol=1e-6)
    assert lf.num_params == 3 * 4 + 4 == len(lf.log_eigenvalues)
