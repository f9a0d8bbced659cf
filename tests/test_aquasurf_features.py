"""AQuaSurF features: output features, eq. 6.16 / 6.17 distances, the §6.5 UMAP embedding."""

import numpy as np
import pytest
from scipy import stats

from keras_actfn.expr.numeric import fingerprint, fingerprint_inputs
from keras_actfn.search.aquasurf.features import (FIM_UMAP, OUTPUT_UMAP, embed, fim_distance,
                                                  fim_vectors, finite_outputs,
                                                  histogram_wasserstein, output_distance,
                                                  output_features, pairwise_fim_distances,
                                                  wasserstein_1d)

# ----------------------------------------------------------------------------- outputs


def test_output_features_are_fingerprints():
    out = output_features(["relu(x)", "swish(x)", "x*sigmoid(x)"])
    assert out.shape == (3, 1000)
    np.testing.assert_array_equal(out[0], np.maximum(fingerprint_inputs(), 0))
    np.testing.assert_allclose(out[1], out[2], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out[1], fingerprint("swish(x)"))


def test_output_features_non_finite_handling():
    fns = ["exp(exp(exp(x)))", "cosh(exp(exp(x))) - cosh(exp(exp(x)))", "tanh(x)"]
    raw = np.stack([fingerprint(f) for f in fns])
    assert np.isinf(raw[0]).any() and np.isnan(raw[1]).any()
    out, valid = output_features(fns, limit=1e3, return_valid=True)
    assert valid.tolist() == [False, False, True]
    assert np.isfinite(out).all() and np.abs(out).max() <= 1e3
    assert out[0].max() == 1e3  # +inf and huge finite values clip to the limit
    assert (out[1][np.isnan(raw[1])] == 0).all()  # NaN -> 0
    np.testing.assert_array_equal(out[2], raw[2])
    np.testing.assert_array_equal(finite_outputs(raw, 1e3), out)


def test_output_distance_eq_6_17():
    assert output_distance([0, 0, 0, 0], [1, -1, 1, -1]) == 1.0
    assert output_distance([0, 0], [3, 4]) == pytest.approx(np.sqrt(12.5))
    a, b = output_features(["relu(x)", "relu(x) + 0.25"])
    assert output_distance(a, b) == pytest.approx(0.25)
    x = fingerprint_inputs()
    assert output_distance(a, np.zeros(1000)) == pytest.approx(
        np.sqrt(np.mean(np.maximum(x, 0) ** 2)))
    with pytest.raises(ValueError):
        output_distance([1, 2], [1, 2, 3])


# ------------------------------------------------------------------------ Wasserstein


def test_wasserstein_closed_forms():
    assert wasserstein_1d([2.0], [5.5]) == pytest.approx(3.5)  # two point masses
    rng = np.random.default_rng(0)
    u = rng.normal(size=300)
    assert wasserstein_1d(u, u + 1.7) == pytest.approx(1.7)  # a shift moves by the shift
    assert wasserstein_1d(u, u) == 0.0
    # mass 1/2 moved by 2: W1 = 1
    assert wasserstein_1d([0.0, 0.0], [0.0, 2.0]) == pytest.approx(1.0)


def test_wasserstein_matches_scipy():
    rng = np.random.default_rng(1)
    for _ in range(10):
        u, v = rng.normal(0, 1, 40), rng.standard_t(3, 70) + rng.normal()
        uw, vw = rng.random(40), rng.random(70)
        assert wasserstein_1d(u, v) == pytest.approx(stats.wasserstein_distance(u, v))
        assert wasserstein_1d(u, v, uw, vw) == pytest.approx(
            stats.wasserstein_distance(u, v, uw, vw))


def test_histogram_wasserstein():
    edges = np.linspace(-100, 100, 41)  # width 5
    a = np.zeros(40)
    a[10] = 3
    b = np.zeros(40)
    b[13] = 7
    assert histogram_wasserstein(a, b, edges) == pytest.approx(15.0)  # 3 bins * 5
    rng = np.random.default_rng(2)
    ca, cb = rng.integers(0, 9, 40), rng.integers(0, 9, 40)
    centers = (edges[1:] + edges[:-1]) / 2
    assert histogram_wasserstein(ca, cb, edges) == pytest.approx(
        stats.wasserstein_distance(centers, centers, ca, cb))
    with pytest.raises(ValueError):
        histogram_wasserstein(ca, cb[:-1], edges)


def test_fim_distance_eq_6_16_hand_example():
    a = [np.array([0.0, 0.0]), np.array([1.0, 2.0, 3.0])]
    b = [np.array([1.0, 1.0]), np.array([4.0, 5.0, 6.0])]
    # W1 = 1 in layer 1 and 3 in layer 2, divided by each layer's weight count
    assert fim_distance(a, b, weights=[10, 100]) == pytest.approx(1 / 10 + 3 / 100)
    # default weights: the number of eigenvalues per layer
    assert fim_distance(a, b) == pytest.approx(1 / 2 + 3 / 3)
    edges = np.linspace(-100, 100, 5)  # centers -75, -25, 25, 75
    ha = [(np.array([1, 0, 0, 0]), edges), (np.array([0, 1, 1, 0]), edges)]
    hb = [(np.array([0, 0, 0, 1]), edges), (np.array([0, 1, 1, 0]), edges)]
    assert fim_distance(ha, hb, weights=[4, 8]) == pytest.approx(150 / 4 + 0)
    with pytest.raises(ValueError, match="weights"):
        fim_distance(ha, hb)
    with pytest.raises(ValueError, match="per layer"):
        fim_distance(a, b[:1])
    with pytest.raises(ValueError, match="invalid"):
        fim_distance([np.array([np.nan, 1.0])], [np.array([0.0, 1.0])])


def test_fim_vectors_manhattan_is_eq_6_16():
    rng = np.random.default_rng(3)
    feats = [[rng.normal(m, 1, 64), rng.normal(-m, 2, 32)] for m in rng.normal(size=8)]
    v = fim_vectors(feats, quantiles=64)
    manhattan = np.abs(v[:, None] - v[None]).sum(-1)
    # exact for layers of `quantiles` eigenvalues; the 32-eigenvalue layer too (64 = 2 * 32)
    np.testing.assert_allclose(manhattan, pairwise_fim_distances(feats), atol=1e-12)
    edges = np.linspace(-100, 100, 21)
    hist = [[(rng.integers(0, 5, 20), edges), (rng.integers(1, 5, 20), edges)]
            for _ in range(6)]
    v = fim_vectors(hist, weights=[300, 1200])
    manhattan = np.abs(v[:, None] - v[None]).sum(-1)
    np.testing.assert_allclose(manhattan, pairwise_fim_distances(hist, [300, 1200]),
                               atol=1e-12)


# -------------------------------------------------------------------------- embedding
BASE = ["relu(x)", "softplus(x)", "elu(x)", "selu(x)", "swish(x)", "gelu(x)", "tanh(x)",
        "sigmoid(x)", "softsign(x)", "arctan(x)", "sin(x)", "cos(x)", "exp(x)", "x^2",
        "-x", "abs(x)", "x", "erf(x)", "sinh(x)", "cosh(x)"]


def _functions():
    fns = list(BASE)
    for f in BASE[:20]:
        fns.append(f"({f}) + 3")
        fns.append(f"-2*({f})")
    fns[-1] = "x*sigmoid(x)"  # numerically identical to swish(x)
    return fns


@pytest.fixture(scope="module")
def features():
    fns = _functions()
    outputs = output_features(fns)
    # stand-in eigenvalue features that, like real ones, depend on the function only:
    # two "layers" of log-magnitudes of outputs
    layers = [[np.log1p(np.abs(o[:500])), np.log1p(o[500:] ** 2)] for o in outputs]
    return fns, outputs, fim_vectors(layers, quantiles=500), layers


def test_umap_settings_are_the_papers():
    assert FIM_UMAP == {"metric": "manhattan", "n_neighbors": 3, "min_dist": 0.1}
    assert OUTPUT_UMAP == {"metric": "euclidean", "n_neighbors": 15, "min_dist": 0.1}


def test_embed_union_deterministic_and_local(features):
    fns, outputs, fim, _ = features
    coords = embed(fim_features=fim, outputs=outputs, seed=0)
    assert coords.shape == (len(fns), 2) and np.isfinite(coords).all()
    np.testing.assert_array_equal(coords, embed(fim_features=fim, outputs=outputs, seed=0))
    assert not np.allclose(coords, embed(fim_features=fim, outputs=outputs, seed=1))
    _check_local(fns, coords)


_CHILD = """
import sys
sys.modules["tensorflow"] = None  # not needed here: umap-learn's optional ParametricUMAP
import numpy as np
import umap, umap.umap_
from keras_actfn.search.aquasurf.features import embed, umap_dispatchers

# functions given explicit signatures are compiled when umap is imported, before caching
# can be turned on: only the ones the fit compiles count
eager = {id(d) for d in umap_dispatchers() if d.overloads}
data = np.load(sys.argv[1])
coords = embed(fim_features=data["fim"], outputs=data["outputs"], seed=0)
np.save(sys.argv[2], coords)
lazy = [d for d in umap_dispatchers() if id(d) not in eager]
print(sum(sum(d.stats.cache_hits.values()) for d in lazy),
      sum(sum(d.stats.cache_misses.values()) for d in lazy))
"""


def test_umap_compilation_is_cached_across_processes(features, tmp_path):
    """umap-learn's numba code is compiled once and kept on disk (cache_umap_compilation):
    after this process has embedded, a new process embedding the same features loads every
    function the fit compiles from the cache (no miss: nothing compiled) and gets the same
    coordinates."""
    import os
    import subprocess
    import sys

    _, outputs, fim, _ = features
    coords = embed(fim_features=fim, outputs=outputs, seed=0)
    np.savez(tmp_path / "features.npz", fim=fim, outputs=outputs)
    env = dict(os.environ, KERAS_ACTFN_LAZY_IMPORT="1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "features.npz"),
                           str(tmp_path / "coords.npy")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    hits, misses = map(int, done.stdout.split()[-2:])
    assert misses == 0 and hits >= 5, (hits, misses)  # uncached: 0 hits, 0 misses
    np.testing.assert_array_equal(np.load(tmp_path / "coords.npy"), coords)


def test_embed_outputs_only(features):
    fns, outputs, _, _ = features
    coords, models = embed(outputs=outputs, seed=1, return_models=True)
    assert coords.shape == (len(fns), 2) and np.isfinite(coords).all()
    assert models[0].n_neighbors == 15 and models[0].metric == "euclidean"
    np.testing.assert_array_equal(coords, embed(outputs=outputs, seed=1))
    _check_local(fns, coords)


def test_embed_precomputed_fim_distances(features):
    fns, _, _, layers = features
    coords = embed(fim_distances=pairwise_fim_distances(layers), seed=0)
    assert coords.shape == (len(fns), 2) and np.isfinite(coords).all()


def _check_local(fns, coords):
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    median = np.median(d[np.triu_indices(len(fns), 1)])
    same = d[fns.index("swish(x)"), fns.index("x*sigmoid(x)")]
    assert same < 0.25 * median
    # relu sits near softplus and far from the shifted exponential
    relu = fns.index("relu(x)")
    assert d[relu, fns.index("softplus(x)")] < 0.5 * median
    assert d[relu, fns.index("(exp(x)) + 3")] > median


def test_embed_errors(features):
    _, outputs, fim, _ = features
    with pytest.raises(ValueError, match="needs"):
        embed()
    with pytest.raises(ValueError, match="disagree"):
        embed(fim_features=fim[:10], outputs=outputs)
    bad = outputs.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        embed(outputs=bad)


def test_union_matches_umap_learn_add(features):
    # with umap-learn's own layout seed (42) the union is exactly ``umap_fim + umap_outputs``
    _, outputs, fim, _ = features
    coords, models = embed(fim_features=fim, outputs=outputs, seed=42, return_models=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = (models[0] + models[1]).embedding_
    np.testing.assert_allclose(coords, reference, rtol=0, atol=1e-6)
