"""GRAFS search cell: DrNAS sampling, clipping, sharing, shrinking, export."""

import numpy as np
import pytest
import scipy.stats

from keras_actfn.backend import keras, tf
from keras_actfn.expr import evaluate, ops, parse
from keras_actfn.layers import CustomActivation
from keras_actfn.search.grafs import (CellParameters, SearchCell, discretize, export_activation)


def set_concentration(params, unary_rho=None, binary_rho=None):
    """Assign unconstrained parameters so that elu(b) + 1 (+1e-4) equals the given rho."""
    def inverse(rho):
        rho = np.asarray(rho, dtype=np.float64) - 1e-4
        return np.where(rho >= 1, rho - 1, np.log(np.maximum(rho, 1e-12))).astype("float32")

    if unary_rho is not None:
        params.unary_logits.assign(inverse(np.broadcast_to(unary_rho, params.unary_logits.shape)))
    if binary_rho is not None:
        params.binary_logits.assign(
            inverse(np.broadcast_to(binary_rho, params.binary_logits.shape)))


# ------------------------------------------------------------------ Dirichlet sampling
def test_expected_weights_are_rho_over_sum():
    p = CellParameters(unary=("identity", "square", "relu"), binary=("add", "mul"))
    rho = np.array([[0.5, 2.0, 3.5], [1, 1, 1], [2, 2, 4], [0.2, 0.3, 0.5]])
    set_concentration(p, rho, [[1.0, 3.0], [2.0, 2.0]])
    for position in range(4):
        w = p.expected_weights(position).numpy()
        np.testing.assert_allclose(w, rho[position] / rho[position].sum(), rtol=1e-4)
    np.testing.assert_allclose(p.expected_weights(4).numpy(), [0.25, 0.75], rtol=1e-4)


def test_dirichlet_sample_gradient_matches_closed_form():
    """d/d(rho) E[f(alpha)] by reparameterized samples vs finite differences of the closed form.

    f(alpha) = sum_k c_k alpha_k^2 has E f = sum_k c_k rho_k (rho_k + 1) / (r (r + 1)),
    r = sum(rho) (Dirichlet second moments).
    """
    tf.random.set_seed(1)
    p = CellParameters(unary=("identity", "square", "relu"), binary=("add", "mul"))
    rho = np.array([1.5, 2.0, 3.0])  # >= 1: elu'(b) = 1, so d/db = d/d(rho)
    set_concentration(p, rho)
    c = np.array([1.0, -2.0, 3.0])

    def expectation(r):
        r0 = r.sum()
        return float(np.sum(c * r * (r + 1)) / (r0 * (r0 + 1)))

    h = 1e-5
    fd = np.array([(expectation(rho + h * e) - expectation(rho - h * e)) / (2 * h)
                   for e in np.eye(3)])

    n = 4000

    @tf.function
    def per_sample_gradients():
        def one(_):
            with tf.GradientTape() as tape:
                alpha = p.sample_weights(0)
                f = tf.reduce_sum(tf.constant(c, tf.float32) * alpha ** 2)
            return tape.gradient(f, p.unary_logits)[0]
        return tf.map_fn(one, tf.range(n), fn_output_signature=tf.float32)

    grads = per_sample_gradients().numpy().astype(np.float64)
    mean = grads.mean(axis=0)
    stderr = grads.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(mean - fd) < 4.5 * stderr + 1e-4), (mean, fd, stderr)
    # the mean of the samples themselves is the expectation
    samples = np.stack([p.sample_weights(0).numpy() for _ in range(400)])
    np.testing.assert_allclose(samples.sum(axis=1), 1.0, rtol=1e-5)
    se = samples.std(axis=0) / np.sqrt(len(samples))
    assert np.all(np.abs(samples.mean(axis=0) - rho / rho.sum()) < 4.5 * se)


def test_gradient_of_expected_alpha_one():
    """The case of the brief: d/d(rho_j) E[alpha_1] = (delta_1j r - rho_1) / r^2."""
    tf.random.set_seed(2)
    p = CellParameters(unary=("identity", "square", "relu", "tanh"), binary=("add", "mul"))
    rho = np.array([2.0, 1.0, 1.5, 3.0])
    set_concentration(p, rho)
    r = rho.sum()
    exact = (np.eye(4)[0] * r - rho[0]) / r ** 2
    n = 4000

    @tf.function
    def batch():
        def one(_):
            with tf.GradientTape() as tape:
                a = p.sample_weights(1)[0]
            return tape.gradient(a, p.unary_logits)[1]
        return tf.map_fn(one, tf.range(n), fn_output_signature=tf.float32)

    g = batch().numpy().astype(np.float64)
    assert np.all(np.abs(g.mean(0) - exact) < 4.5 * g.std(0) / np.sqrt(n) + 1e-4)


# ---------------------------------------------------------------------------- clipping
def test_every_operator_output_is_clipped_at_ten():
    x = tf.constant([-5.0, 0.0, 1.0, 5.0, 100.0, 1000.0])
    p = CellParameters(unary=("exp",), binary=("add",))
    cell = SearchCell(p)
    y = cell(x, training=False).numpy().astype(np.float64)
    xs = x.numpy().astype(np.float64)
    clip = lambda v: np.clip(v, -10, 10)  # noqa: E731
    u0 = clip(np.exp(np.minimum(xs, 50)))
    expected = clip(clip(np.exp(clip(u0 + u0))) + u0)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    assert y.max() == 10.0
    p2 = CellParameters(unary=("cube",), binary=("add",))
    assert SearchCell(p2)(tf.constant([-3.0]), training=False).numpy()[0] == -10.0
    p2.clip = None
    assert SearchCell(p2)(tf.constant([-3.0]), training=False).numpy()[0] == pytest.approx(
        (-27.0 * 2) ** 3 - 27.0)
    # gradients stay finite far beyond the overflow point of exp, and are 0 where clipped
    xv = tf.Variable([200.0, -1.0])
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(cell(xv, training=True))
    g = tape.gradient(out, xv).numpy()
    assert np.all(np.isfinite(g)) and g[0] == 0.0 and g[1] > 0


def test_clipping_applies_to_each_operator_not_the_mixture():
    # f = left(u2(b0), u3) = u2(u0(x)); u = (exp(x) + x) / 2 with each term clipped first
    p = CellParameters(unary=("exp", "identity"), binary=("left",))
    set_concentration(p, [1.0, 1.0], [1.0])
    y = SearchCell(p)(tf.constant([5.0]), training=False).numpy()[0]
    u0 = 0.5 * 10 + 0.5 * 5
    assert y == pytest.approx(0.5 * 10 + 0.5 * u0)  # 8.75, not min(mix, 10) = 10


# ---------------------------------------------------------------- sampling per site
def small_model(params, sites=3):
    inputs = keras.Input((6,))
    h = inputs
    for _ in range(sites):
        h = keras.layers.Dense(6)(h)
        h = SearchCell(params, original="relu")(h)
    return keras.Model(inputs, h)


def test_independent_sample_per_site_and_per_call():
    tf.random.set_seed(3)
    p = CellParameters(seed=0)
    a, b = SearchCell(p), SearchCell(p)
    x = tf.linspace(-3.0, 3.0, 50)

    @tf.function
    def forward(v):  # one forward pass with two sites
        return a(v, training=True), b(v, training=True)

    ya, yb = forward(x)
    assert np.max(np.abs(ya.numpy() - yb.numpy())) > 1e-3
    ya2, _ = forward(x)
    assert np.max(np.abs(ya.numpy() - ya2.numpy())) > 1e-3
    # expected mode is deterministic and the same at every site
    ea, eb = a(x, training=False), b(x, training=False)
    np.testing.assert_array_equal(ea.numpy(), eb.numpy())
    p.mode = "expected"
    np.testing.assert_array_equal(a(x, training=True).numpy(), ea.numpy())


def test_expected_mode_output_by_hand():
    p = CellParameters(unary=("identity", "square"), binary=("add", "mul"))
    set_concentration(p, [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [3.0, 1.0]])
    x = np.linspace(-2, 2, 9)
    y = SearchCell(p)(tf.constant(x, tf.float32), training=False).numpy()
    mixu = lambda v, w: w * v + (1 - w) * np.clip(v * v, -10, 10)  # noqa: E731
    u0, u1, u3 = mixu(x, 0.25), mixu(x, 0.5), mixu(x, 0.5)
    b0 = 0.5 * np.clip(u0 + u1, -10, 10) + 0.5 * np.clip(u0 * u1, -10, 10)
    u2 = mixu(b0, 0.75)
    b1 = 0.75 * np.clip(u2 + u3, -10, 10) + 0.25 * np.clip(u2 * u3, -10, 10)
    np.testing.assert_allclose(y, b1, rtol=1e-5, atol=1e-6)


def test_parameters_are_shared_by_all_cells():
    p = CellParameters(seed=0)
    model = small_model(p, sites=3)
    names = [getattr(w, "path", w.name) for w in model.weights]  # tf_keras: no .path
    paths = [n for n in names if "logits" in n]
    assert len(paths) == 2  # one unary and one binary set, however many cells
    cells = [l for l in model.layers if isinstance(l, SearchCell)]
    assert len(cells) == 3 and all(c.parameters is p for c in cells)
    x = tf.random.normal((4, 6))
    grads = []
    for cell in cells:  # every cell reaches the one set of concentrations
        with tf.GradientTape() as tape:
            out = tf.reduce_sum(cell(x, training=True) ** 2)
        grads.append(tape.gradient(out, p.unary_logits))
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_warm_start_uses_original_activation():
    p = CellParameters(seed=0)
    cell = SearchCell(p, original="relu")
    x = tf.linspace(-2.0, 2.0, 11)
    p.use_original = True
    np.testing.assert_array_equal(cell(x, training=True).numpy(), tf.nn.relu(x).numpy())
    p.use_original = False
    assert np.max(np.abs(cell(x, training=True).numpy() - tf.nn.relu(x).numpy())) > 1e-3


# ---------------------------------------------------------------------- shrinking
def test_dropped_operators_get_zero_weight():
    tf.random.set_seed(4)
    p = CellParameters(seed=1)
    before = [p.concentration(i).numpy() for i in range(6)]
    p.shrink(30)
    assert p.operators_left() == [15, 15, 16, 16, 9, 9]  # 92 - 30 = 62, earlier first
    for i in range(6):
        dropped = sorted(set(range(len(p.candidates(i)))) - set(p.active[i]))
        for w in (p.expected_weights(i).numpy(), p.sample_weights(i).numpy()):
            assert np.all(w[dropped] == 0.0)
            assert w.sum() == pytest.approx(1.0, abs=1e-5)
        if dropped:  # the dropped ones had the lowest concentrations of their position
            assert max(before[i][dropped]) <= min(before[i][p.active[i]])
    p.shrink(104 - 30)
    assert p.operators_left() == [1] * 6
    x = tf.linspace(-2.0, 2.0, 7)
    p.mode = "sample"
    np.testing.assert_allclose(SearchCell(p)(x, training=True).numpy(),
                               SearchCell(p)(x, training=False).numpy(), rtol=1e-6)


def test_anchor_penalty_kl_matches_monte_carlo():
    p = CellParameters(unary=("identity", "square", "relu", "tanh"), binary=("add", "mul"))
    assert float(p.anchor_penalty(1.0)) == pytest.approx(0.0, abs=1e-3)  # rho ~ 1 at start
    rho_u = np.array([[2.0, 0.5, 1.0, 3.0]] * 4)
    set_concentration(p, rho_u, [[1.0, 1.0], [1.0, 1.0]])
    rng = np.random.default_rng(0)
    s = rng.dirichlet(rho_u[0], 100000)
    s = np.clip(s, 1e-300, None)
    s /= s.sum(axis=1, keepdims=True)
    kl_mc = np.mean(scipy.stats.dirichlet.logpdf(s.T, rho_u[0])
                    - scipy.stats.dirichlet.logpdf(s.T, np.ones(4)))
    assert float(p.anchor_penalty(0.5)) == pytest.approx(0.5 * 4 * kl_mc, rel=0.03)
    assert float(p.anchor_penalty(1.0, "l2")) == pytest.approx(4 * (1 + 0.25 + 0 + 4), rel=1e-3)


# --------------------------------------------------------------------------- export
def configure(p, k, rng):
    """Make operator k (shifted per position) the argmax of every position; random gamma/w."""
    nu, nb = len(p.unary), len(p.binary)
    u = np.ones((4, nu))
    for i in range(4):
        u[i, (k + 7 * i) % nu] = 3.0
    b = np.ones((2, nb))
    for i in range(2):
        b[i, (k + 4 * i) % nb] = 3.0
    set_concentration(p, u, b)
    p.gamma.assign(rng.normal(0, 1.5, size=p.gamma.shape).astype("float32"))
    p.mix_weight.assign(rng.normal(0, 1.5, size=p.mix_weight.shape).astype("float32"))


# the export's arithmetic against the cell's forward: TensorFlow code, the same under either
# Keras (the cell's forward under tf_keras: the masked-cell and gradient tests)
@pytest.mark.single_backend
def test_export_reproduces_discretized_cell():
    rng = np.random.default_rng(5)
    p = CellParameters(seed=0)
    cell = SearchCell(p)
    forward = tf.function(lambda v: cell(v, training=True))
    wide = np.linspace(-15, 15, 601)
    narrow = np.linspace(-2.5, 2.5, 201)
    seen_u, seen_b = set(), set()
    for k in range(23):
        configure(p, k, rng)
        names = p.argmax_names()
        seen_u.update(names[:4])
        seen_b.update(names[4:])
        p.mode = "argmax"
        for clip, grid in ((True, wide), (False, narrow)):
            p.clip = 10.0 if clip else None
            fn = discretize(cell, clip=clip)
            text = str(fn)
            assert parse(text) == fn
            ref = evaluate(parse(text), grid)
            got = cell(tf.constant(grid, tf.float32), training=True).numpy()
            ok = np.isfinite(ref) & (np.abs(ref) < 1e4)
            assert ok.mean() > 0.5, text
            np.testing.assert_allclose(got[ok], ref[ok], rtol=2e-5, atol=2e-5, err_msg=text)
            # the traced cell agrees too (argmax selection inside tf.function)
            np.testing.assert_allclose(forward(tf.constant(grid, tf.float32)).numpy()[ok],
                                       got[ok], rtol=1e-6, atol=1e-6)
            if clip:
                assert np.all(np.abs(ref) <= 10.0)
        p.clip = 10.0
    assert seen_u == set(ops.GRAFS_UNARY) and seen_b == set(ops.GRAFS_BINARY)


def test_export_layer_and_constants():
    p = CellParameters(seed=0)
    names = list(p.unary)
    u = np.ones((4, 23))
    u[0, names.index("gamma_add")] = 5
    u[1, names.index("gamma_mul")] = 5
    u[2, names.index("swish")] = 5
    u[3, names.index("gamma")] = 5
    b = np.ones((2, 9))
    b[0, list(p.binary).index("mix")] = 5
    b[1, list(p.binary).index("add")] = 5
    set_concentration(p, u, b)
    p.gamma.assign([[0.0, 0.0, 0.25], [0.0, 2.0, 0.0], [0, 0, 0], [-1.5, 0, 0]])
    p.mix_weight.assign([0.5, 0.0])
    fn = discretize(p)
    g = lambda v: float(np.float32(v))  # noqa: E731
    expected = parse(f"swish(mix(x + {g(0.25)}, {g(2.0)} * x, {g(0.5)})) + {g(-1.5)}")
    assert fn == expected
    layer = export_activation(p)
    assert isinstance(layer, CustomActivation) and layer.fn == fn
    x = tf.constant(np.linspace(-3, 3, 26).reshape(2, 13), tf.float32)
    p.mode = "argmax"
    p.clip = None
    np.testing.assert_allclose(layer(x).numpy(), SearchCell(p)(x).numpy(), rtol=1e-5)


def test_masked_cell_equals_cell_of_active_operators():
    """Drops only change mask variables: a cell traced before a drop (computing every
    operator) gives what a cell computing only the active operators gives, and what the
    per-position evaluation of the active operators gives."""
    rng = np.random.default_rng(7)
    p = CellParameters(seed=3)
    p.unary_logits.assign(rng.normal(0, 1, p.unary_logits.shape).astype("float32"))
    p.binary_logits.assign(rng.normal(0, 1, p.binary_logits.shape).astype("float32"))
    p.gamma.assign(rng.normal(0, 1, p.gamma.shape).astype("float32"))
    p.mix_weight.assign(rng.normal(0, 1, p.mix_weight.shape).astype("float32"))
    cell = SearchCell(p)
    forward = tf.function(lambda v: cell(v, training=False))
    x = tf.constant(rng.normal(0, 2, (5, 7)).astype("float32"))
    before_drop = forward(x).numpy()
    for count in (40, 40, 24):
        p.shrink(count)
        masked = forward(x).numpy()  # the trace of the full cell, new masks
        assert forward.experimental_get_tracing_count() == 1
        by_position = cell._cell_by_position(x, False).numpy()
        p.specialize()
        assert sum(len(b) for b in p.computed) <= 110 - count
        specialized = cell(x, training=False).numpy()
        np.testing.assert_allclose(masked, by_position, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(specialized, by_position, rtol=1e-5, atol=1e-5)
        assert np.max(np.abs(masked - before_drop)) > 1e-4  # the drops did change the cell
    assert p.operators_left() == [1] * 6
    assert [len(b) for b in p.computed] == [len(set(p.active[0] + p.active[1] + p.active[3])),
                                            1, 1, 1]


def test_warm_switch_as_tensor_selects_exactly():
    p = CellParameters(seed=0)
    cell = SearchCell(p, original="relu")
    x = tf.linspace(-2.0, 2.0, 11)
    p.mode = "expected"
    cell_out = cell(x, training=True).numpy()
    for flag, expected in ((True, tf.nn.relu(x).numpy()), (False, cell_out)):
        p.use_original = tf.constant(flag)
        np.testing.assert_array_equal(cell(x, training=True).numpy(), expected)
    p.use_original = False


def test_anchor_penalty_after_drops_covers_active_operators_only():
    """KL(Dir(rho_S) || Dir(1_S)) over each position's active set S, by scipy's closed form."""
    from scipy.special import digamma, gammaln

    rng = np.random.default_rng(11)
    p = CellParameters(seed=2)
    p.unary_logits.assign(rng.normal(0, 0.7, p.unary_logits.shape).astype("float32"))
    p.binary_logits.assign(rng.normal(0, 0.7, p.binary_logits.shape).astype("float32"))
    p.shrink(57)
    expected_kl, expected_l2 = 0.0, 0.0
    for position in range(6):
        rho = p.concentration(position).numpy().astype(np.float64)[p.active[position]]
        r0, n = rho.sum(), len(rho)
        expected_kl += (gammaln(r0) - gammaln(rho).sum() - gammaln(n)
                        + np.sum((rho - 1) * (digamma(rho) - digamma(r0))))
        expected_l2 += np.sum((rho - 1) ** 2)
    assert float(p.anchor_penalty(0.3)) == pytest.approx(0.3 * expected_kl, rel=1e-4)
    assert float(p.anchor_penalty(2.0, "l2")) == pytest.approx(2.0 * expected_l2, rel=1e-4)


# ------------------------------------------------------------- the cell's own gradient
def _random_parameters(seed, **kwargs):
    rng = np.random.default_rng(seed)
    p = CellParameters(seed=seed, **kwargs)
    for v, scale in ((p.unary_logits, 1.0), (p.binary_logits, 1.0), (p.gamma, 1.5),
                     (p.mix_weight, 1.0)):
        v.assign(rng.normal(0, scale, v.shape).astype("float32"))
    return p


def _value_and_gradients(p, fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(y * tf.cos(3.0 * x))  # an upstream gradient that varies
    variables = [x] + p.search_variables
    grads = tape.gradient(loss, variables)
    return y, [np.zeros(v.shape, "float32") if g is None else g.numpy()
               for g, v in zip(grads, variables)]


def _check_against_autodiff(p, x, tol, grad_rtol, grad_atol):
    """The traced cell (hand-chained gradient) vs TensorFlow's autodiff of the
    per-position cell of registry operators: values within ``tol``, gradients for the
    input and every search variable within ``grad_rtol`` / ``grad_atol`` (a number, or a
    function of the reference gradient). Returns the traced cell's value and gradients."""
    cell = SearchCell(p)
    x = tf.constant(np.asarray(x, "float32"))
    fused, g_fused = _value_and_gradients(p, lambda v: cell(v, training=False), x)
    ref, g_ref = _value_and_gradients(p, lambda v: cell._cell_by_position(v, False), x)
    assert fused.shape == x.shape
    np.testing.assert_allclose(fused.numpy(), ref.numpy(), rtol=tol, atol=tol)
    for got, want in zip(g_fused, g_ref):
        atol = grad_atol(want) if callable(grad_atol) else grad_atol
        np.testing.assert_allclose(got, want, rtol=grad_rtol, atol=atol)
    return fused, g_fused


@pytest.mark.parametrize("seed", [0, 1])
def test_cell_gradient_matches_autodiff_of_registry_operators(seed):
    """The traced cell's hand-chained gradient (operator derivative rules, clip masks,
    parametric gamma/BetaMix terms) against TensorFlow's autodiff of the per-position cell
    built from the registry's operators, for the input and every search variable."""
    rng = np.random.default_rng(10 + seed)
    x = np.concatenate([rng.normal(0, 2, 300), rng.uniform(-40, 40, 60),
                        [0.0, -0.0, 1e-3, -1e-3, 10.0, -10.0, 29.0, 31.0, 3.2, -2.2]])
    _check_against_autodiff(_random_parameters(seed), x, 2e-5, 1e-4,
                            lambda want: 1e-4 * (np.max(np.abs(want)) + 1e-6))


@pytest.mark.single_backend   # TensorFlow code, the same under either Keras
@pytest.mark.parametrize("name", [n for n in ops.GRAFS_UNARY if n not in ops.GRAFS_TEMPLATES])
def test_unary_rule_is_the_operators_derivative(name):
    """Each unary operator alone in the traced cell (u0 = u1 = u3 = op, b = add/left): the
    gradient equals autodiff of the registry's operator, at ties (0) and past the clip."""
    x = np.concatenate([np.linspace(-12, 12, 481), [0.0, 1e-6, -1e-6, 35.0]])
    _check_against_autodiff(CellParameters(unary=(name,), binary=("left",)), x, 1e-6, 1e-5, 1e-5)


@pytest.mark.single_backend
@pytest.mark.parametrize("name", ops.GRAFS_BINARY)
def test_binary_rule_is_the_operators_derivative(name):
    """Each binary operator alone at both vertices (unary: identity and square, so the
    two inputs differ and tie at 0 and 1): gradient vs autodiff of the registry's operator."""
    x = np.concatenate([np.linspace(-4, 4, 161), [0.0, 1.0, 20.0]])
    _check_against_autodiff(_random_parameters(5, unary=("identity", "square"), binary=(name,)),
                            x, 1e-6, 2e-5, 2e-5)


def test_fast_sinh_and_arcsinh_values():
    """The cell's sinh/arcsinh formulations against double precision, small to large |x|."""
    from keras_actfn.search.grafs.cell import _asinh, _sinh

    x = np.concatenate([np.geomspace(1e-30, 30, 2000), -np.geomspace(1e-30, 30, 2000), [0.0]])
    got = _sinh(tf.constant(x.astype("float32"))).numpy()
    xf = x.astype("float32").astype(np.float64)
    np.testing.assert_allclose(got, np.sinh(xf), rtol=5e-7)
    big = np.concatenate([x, np.geomspace(30, 1e17, 200)])
    bf = big.astype("float32").astype(np.float64)
    np.testing.assert_allclose(_asinh(tf.constant(big.astype("float32"))).numpy(),
                               np.arcsinh(bf), rtol=5e-7)


def test_cell_of_constant_operators_keeps_the_input_shape():
    """The constant operator gamma alone at every unary position: the traced cell is
    gamma-valued with the input's shape, and its gradient reaches gamma."""
    p = _random_parameters(2, unary=("gamma",), binary=("add", "left"))
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    _, grads = _check_against_autodiff(p, x, 1e-6, 1e-5, 1e-5)
    assert np.abs(grads[3]).sum() > 0  # gamma's gradient


def test_operators_without_a_rule_use_tensorflow_gradients():
    """Registry operators outside the GRAFS space (no derivative rule in the cell) are
    differentiated by TensorFlow inside the same compact gradient."""
    p = _random_parameters(4, unary=("sin", "selu", "tanh"), binary=("add", "mul", "div"))
    _check_against_autodiff(p, np.linspace(-3, 3, 61), 1e-5, 1e-4, 1e-5)


def test_half_precision_cell_is_finite_past_the_clamps():
    """float16 inputs: exp and sinh at their clamps (e^30) overflow a half float; the cell
    computes in float32, so outputs and gradients stay finite and match float32's."""
    p = _random_parameters(6, unary=("exp", "sinh", "identity"), binary=("add", "max"))
    x32 = np.concatenate([np.linspace(-5, 5, 41), [40.0, -40.0, 1000.0]]).astype("float32")
    uw, bw = p.block_weights(True, False), p.block_weights(False, False)
    outs = {}
    for dtype in ("float16", "float32"):
        x = tf.constant(x32.astype(dtype))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = p.cell_function(dtype)(x, tf.cast(uw, dtype), tf.cast(bw, dtype))
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        g = tape.gradient(loss, x)
        assert y.dtype == tf.as_dtype(dtype)
        assert np.all(np.isfinite(y.numpy())) and np.all(np.isfinite(g.numpy()))
        outs[dtype] = (y.numpy().astype("float32"), g.numpy().astype("float32"))
    for half, full in zip(outs["float16"], outs["float32"]):
        np.testing.assert_allclose(half, full, rtol=1e-2, atol=2e-2)
