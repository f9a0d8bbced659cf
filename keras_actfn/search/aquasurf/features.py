"""AQuaSurF features, distances and the UMAP surrogate space (dissertation §6.3-6.5).

* :func:`output_features` — each function's outputs at the 1,000 fingerprint inputs
  (N(0, 1) draws, seed 0, clipped to [-5, 5]; :mod:`keras_actfn.expr.numeric`), made finite
  for the embedding.
* :func:`output_distance` — eq. 6.17, the root-mean-square difference of two output vectors.
* :func:`fim_distance` — eq. 6.16, ``sum_l W1(mu_l, nu_l) / w_l`` over layers, ``mu_l`` and
  ``nu_l`` the two networks' (log-)eigenvalue distributions in layer ``l`` and ``w_l`` the
  layer's number of weights. A layer is given either as a 1-D array of eigenvalues (an
  empirical distribution) or as a histogram ``(counts, edges)``.
* :func:`fim_vectors` — vectors whose Manhattan distance *is* eq. 6.16 (per layer, the
  cumulative histogram scaled by bin width / ``w_l``, or the quantile function scaled by
  1 / (grid size * ``w_l``)): this is how the paper's ``UMAP(metric='manhattan')`` implements
  the Wasserstein distance.
* :func:`embed` — the §6.5 surrogate: UMAP(manhattan, n_neighbors=3, min_dist=0.1) on the
  eigenvalue vectors, UMAP(euclidean, n_neighbors=15, min_dist=0.1) on the outputs, their
  fuzzy graphs combined by union (``umap_fim + umap_outputs``), laid out in 2-D.
"""

from __future__ import annotations

import warnings

import numpy as np

from ...expr.numeric import FINGERPRINT_SIZE, fingerprint

OUTPUT_LIMIT = 1e6
HIST_WIDTH = 200.0  # the §6.5 FIM histograms span [-100, 100]


# ------------------------------------------------------------------------- outputs
def output_features(fns, limit: float = OUTPUT_LIMIT, return_valid: bool = False):
    """``(n, 1000)`` float64 outputs of ``fns`` (texts or expressions) at the fingerprint
    inputs, with parameters at their initial value 1.

    Non-finite handling: the embedding needs finite numbers, so NaN becomes 0 and +-inf
    become +-``limit``, and finite outputs are clipped to [-``limit``, ``limit``] too (a
    function reaching 1e6 at |x| <= 5 is already as far from ordinary activations as any;
    the clip keeps squared distances far inside float32, which UMAP uses). With
    ``return_valid=True`` also returns a boolean array: True where a function's raw outputs
    were all finite (nothing was replaced).
    """
    fns = list(fns)
    out = np.empty((len(fns), FINGERPRINT_SIZE))
    for i, fn in enumerate(fns):
        out[i] = fingerprint(fn)
    valid = np.isfinite(out).all(axis=1)
    out = finite_outputs(out, limit)
    return (out, valid) if return_valid else out


def finite_outputs(outputs, limit: float = OUTPUT_LIMIT) -> np.ndarray:
    """The non-finite handling of :func:`output_features`, for outputs computed elsewhere
    (e.g. by :meth:`AquasurfSpace.batches`)."""
    out = np.nan_to_num(np.asarray(outputs, dtype=np.float64), nan=0.0, posinf=limit,
                        neginf=-limit)
    return np.clip(out, -limit, limit)


def output_distance(a, b) -> float:
    """Eq. 6.17: ``sqrt(mean((phi(x_i) - psi(x_i))**2))`` for two output vectors."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two 1-D output vectors of one length, got shapes "
                         f"{a.shape} and {b.shape}")
    return float(np.sqrt(np.mean((a - b) ** 2)))


# ---------------------------------------------------------------- Wasserstein, eq. 6.16
def wasserstein_1d(u, v, u_weights=None, v_weights=None) -> float:
    """1-Wasserstein distance between two 1-D distributions given by samples (optionally
    weighted): the integral of ``|F_u - F_v|`` over the merged support."""
    u, v = np.asarray(u, dtype=np.float64).ravel(), np.asarray(v, dtype=np.float64).ravel()
    if u.size == 0 or v.size == 0:
        raise ValueError("both distributions need at least one value")
    if not (np.isfinite(u).all() and np.isfinite(v).all()):
        raise ValueError("eigenvalues must be finite (non-finite FIM eigenvalues mark an "
                         "invalid function, §6.3.1: filter it out first)")
    uw = np.ones_like(u) if u_weights is None else np.asarray(u_weights, dtype=np.float64)
    vw = np.ones_like(v) if v_weights is None else np.asarray(v_weights, dtype=np.float64)
    values = np.concatenate([u, v])
    order = np.argsort(values, kind="mergesort")
    values = values[order]
    mass_u = np.concatenate([uw / uw.sum(), np.zeros_like(v)])[order]
    mass_v = np.concatenate([np.zeros_like(u), vw / vw.sum()])[order]
    gap = np.cumsum(mass_u - mass_v)[:-1]
    return float(np.sum(np.abs(gap) * np.diff(values)))


def histogram_wasserstein(counts_a, counts_b, edges) -> float:
    """1-Wasserstein distance between two histograms on the same bins, their mass at the
    bin centres: the sum over adjacent centres of ``|CDF_a - CDF_b| * spacing``."""
    centers, ca, cb = _check_histograms(counts_a, counts_b, edges)
    return float(np.sum(np.abs(np.cumsum(ca - cb)[:-1]) * np.diff(centers)))


def _check_histograms(counts_a, counts_b, edges):
    edges = np.asarray(edges, dtype=np.float64)
    ca, cb = np.asarray(counts_a, dtype=np.float64), np.asarray(counts_b, dtype=np.float64)
    if ca.shape != cb.shape or edges.shape != (ca.size + 1,):
        raise ValueError(f"histograms need equal bin counts and len(edges) = bins + 1; got "
                         f"{ca.shape}, {cb.shape} and {edges.shape} edges")
    if ca.sum() <= 0 or cb.sum() <= 0:
        raise ValueError("a histogram with no mass has no distribution")
    return (edges[1:] + edges[:-1]) / 2, ca / ca.sum(), cb / cb.sum()


def _layer_w1(a, b) -> float:
    if isinstance(a, tuple) != isinstance(b, tuple):
        raise TypeError("both functions must give a layer in the same form: an array of "
                        "eigenvalues, or a (counts, edges) histogram")
    if isinstance(a, tuple):
        if not np.array_equal(a[1], b[1]):
            raise ValueError("histograms of one layer must share their bin edges")
        return histogram_wasserstein(a[0], b[0], a[1])
    return wasserstein_1d(a, b)


def fim_distance(a, b, weights=None) -> float:
    """Eq. 6.16: ``sum_l W1(mu_l, nu_l) / w_l``.

    ``a`` and ``b``: one entry per layer, each a 1-D array of log eigenvalues or a
    ``(counts, edges)`` histogram. ``weights``: ``w_l``, the number of weights of layer ``l``
    (the divisor; it keeps big layers from dominating). Default: the number of eigenvalues
    of ``a``'s layer (a K-FAC block of a layer with ``w_l`` weights has ``w_l`` eigenvalues);
    histograms need explicit ``weights``.
    """
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"both functions need one entry per layer; got {len(a)} and {len(b)}")
    if weights is None:
        if any(isinstance(layer, tuple) for layer in a):
            raise ValueError("histogram features need weights (the layers' weight counts)")
        weights = [np.size(layer) for layer in a]
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(a),) or not (weights > 0).all():
        raise ValueError(f"expected {len(a)} positive layer weight counts, got {weights}")
    return float(sum(_layer_w1(la, lb) / w for la, lb, w in zip(a, b, weights)))


def fim_vectors(features, weights=None, quantiles: int = 256) -> np.ndarray:
    """``(n, D)`` vectors whose Manhattan distances equal eq. 6.16.

    ``features``: for each of ``n`` functions, its per-layer entries as in
    :func:`fim_distance` (one form per layer across functions). A histogram layer becomes
    ``cumsum(p)[:-1] * spacing / w_l`` (exactly eq. 6.16's term); an eigenvalue layer becomes
    its quantile function on ``quantiles`` mid-point levels ``/ (quantiles * w_l)`` (exact
    when every function has ``quantiles`` eigenvalues in the layer, otherwise the
    quantile-grid approximation of the W1 integral).
    """
    features = [list(f) for f in features]
    if not features:
        return np.zeros((0, 0))
    n_layers = len(features[0])
    if any(len(f) != n_layers for f in features):
        raise ValueError("every function needs the same number of layers")
    if weights is None:
        if any(isinstance(layer, tuple) for layer in features[0]):
            raise ValueError("histogram features need weights (the layers' weight counts)")
        weights = [np.size(layer) for layer in features[0]]
    weights = np.asarray(weights, dtype=np.float64)
    levels = (np.arange(quantiles) + 0.5) / quantiles
    blocks = []
    for layer in range(n_layers):
        first = features[0][layer]
        if isinstance(first, tuple):
            edges = np.asarray(first[1], dtype=np.float64)
            centers = (edges[1:] + edges[:-1]) / 2
            rows = []
            for f in features:
                counts = np.asarray(f[layer][0], dtype=np.float64)
                if not np.array_equal(f[layer][1], edges):
                    raise ValueError(f"layer {layer}: histograms must share their bin edges")
                rows.append(np.cumsum(counts / counts.sum())[:-1] * np.diff(centers))
            blocks.append(np.asarray(rows) / weights[layer])
        else:
            rows = [np.quantile(np.asarray(f[layer], dtype=np.float64), levels,
                                method="inverted_cdf") for f in features]
            blocks.append(np.asarray(rows) / (quantiles * weights[layer]))
    return np.concatenate(blocks, axis=1)


def cdf_vector(cdf, layers=None) -> np.ndarray:
    """The eq. 6.16 vector of one function from its "Fisher log eigenvalue CDF" (per layer,
    the cumulative share of log eigenvalues in each §6.5 bin, layers concatenated).

    ``layers``: ``[[bins, weights], ...]`` per layer; each layer then gives
    ``cdf[:-1] * bin_width / weights`` -- the same vector :func:`fim_vectors` makes from the
    histograms, so Manhattan distance is eq. 6.16. Without ``layers`` the CDF is returned as
    it is (plain Manhattan distance, every entry weighted 1).
    """
    cdf = np.asarray(cdf, dtype=np.float64).ravel()
    if not layers:
        return cdf
    parts, start = [], 0
    for bins, weights in layers:
        bins = int(bins)
        parts.append(cdf[start:start + bins][:-1] * (HIST_WIDTH / bins) / float(weights))
        start += bins
    if start != cdf.size:
        raise ValueError(f"a CDF of {cdf.size} entries does not match the layer sizes "
                         f"{list(layers)} ({start} bins)")
    return np.concatenate(parts) if parts else cdf[:0]


def cdf_matrix(cdfs, layers=None) -> tuple:
    """``(vectors, valid)``: :func:`cdf_vector` of each CDF as the rows of one ``(n, D)``
    array (NaN rows where a CDF is missing, non-finite or of another length) and the mask of
    usable rows. ``layers``: one layout for all, or a list with one per CDF (or None)."""
    per_row = isinstance(layers, (list, tuple)) and len(layers) == len(cdfs) and \
        all(item is None or (isinstance(item, (list, tuple)) and item and
                             isinstance(item[0], (list, tuple))) for item in layers)
    rows = []
    for i, cdf in enumerate(cdfs):
        layout = layers[i] if per_row else layers
        if cdf is None:
            rows.append(None)
            continue
        vector = cdf_vector(cdf, layout)
        rows.append(vector if np.isfinite(vector).all() else None)
    width = next((r.size for r in rows if r is not None), 0)
    out = np.full((len(rows), width), np.nan)
    valid = np.zeros(len(rows), dtype=bool)
    for i, row in enumerate(rows):
        if row is not None and row.size == width:
            out[i], valid[i] = row, True
    return out, valid


def fim_feature_matrix(entries, where="") -> np.ndarray:
    """The FIM feature vectors of cached entries (dicts with ``"cdf"`` and optionally
    ``"layers"``) as the rows of one array. ValueError when they do not share one layout
    (features computed on different models); ``where`` names the collection in it."""
    vectors, valid = cdf_matrix([e["cdf"] for e in entries],
                                [e.get("layers") or None for e in entries])
    if not valid.all():
        raise ValueError(f"FIM features of different layouts{where} (computed on different "
                         f"models?)")
    return vectors


def pairwise_fim_distances(features, weights=None) -> np.ndarray:
    """``(n, n)`` matrix of :func:`fim_distance` (for ``UMAP(metric='precomputed')``)."""
    features = [list(f) for f in features]
    n = len(features)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = fim_distance(features[i], features[j], weights)
    return out


# ------------------------------------------------------------------------ embedding
FIM_UMAP = {"metric": "manhattan", "n_neighbors": 3, "min_dist": 0.1}
OUTPUT_UMAP = {"metric": "euclidean", "n_neighbors": 15, "min_dist": 0.1}


_UMAP_CACHED = False


def umap_dispatchers():
    """The numba-compiled functions of the umap-learn modules imported so far."""
    import sys

    from numba.core.dispatcher import Dispatcher

    for name, module in list(sys.modules.items()):
        if module is None or not (name == "umap" or name.startswith("umap.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and value.__module__.startswith("umap"):
                yield value


def cache_umap_compilation() -> int:
    """Let numba keep umap-learn's compiled code on disk, so it is compiled once per
    installation instead of once per process: umap-learn's own numba functions are not
    cached (pynndescent's are), and compiling them costs every new process ~13 s on a
    2-core CPU at its first fit -- each pool or Ray worker, each command, each test
    process. numba writes the cache beside umap's sources, or in the user's cache folder
    when that is read-only, and recompiles when umap-learn changes; a function it cannot
    cache is left as it is. Done once per process, before the first fit; returns how many
    functions it turned caching on for."""
    global _UMAP_CACHED
    if _UMAP_CACHED:
        return 0
    _UMAP_CACHED = True
    import umap  # noqa: F401 - imports the submodules the fit uses
    import umap.umap_  # noqa: F401

    count = 0
    for function in umap_dispatchers():
        if type(getattr(function, "_cache", None)).__name__ == "NullCache":
            try:
                function.enable_caching()
                count += 1
            except Exception:  # noqa: BLE001 - no cache location: compiled per process
                pass
    return count


def _fit_umap(data, settings, seed, n_components):
    import umap  # optional dependency: the [aquasurf] extra

    cache_umap_compilation()

    n = data.shape[0]
    settings = dict(settings)
    # UMAP needs n_neighbors < n; tiny sets keep as many neighbours as they have
    settings["n_neighbors"] = max(2, min(settings["n_neighbors"], n - 1))
    model = umap.UMAP(n_components=n_components, random_state=seed, n_jobs=1, **settings)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs.*")
        warnings.filterwarnings("ignore", message=".*Graph is not fully connected.*")
        warnings.filterwarnings("ignore", message=".*inverse_transform will be unavailable.*")
        return model.fit(data)


def embed(fim_features=None, outputs=None, seed: int = 0, n_components: int = 2,
          fim_distances=None, return_models: bool = False):
    """The §6.5 surrogate space: ``(n, n_components)`` coordinates, deterministic for a seed.

    ``fim_features``: an ``(n, D)`` array from :func:`fim_vectors` (Manhattan = eq. 6.16),
    or ``fim_distances``: an ``(n, n)`` eq. 6.16 matrix (UMAP on precomputed distances).
    ``outputs``: ``(n, 1000)`` output features (see :func:`output_features`). Given one
    kind, that UMAP's embedding is returned; given both, the union of their fuzzy graphs
    (``umap_fim + umap_outputs``, as in the paper) is laid out in ``n_components``
    dimensions, seeded with ``seed`` (umap-learn's ``+`` itself always lays out with seed 42).
    ``return_models=True`` also returns the fitted component models.
    """
    parts = []
    if fim_features is not None and fim_distances is not None:
        raise ValueError("give fim_features or fim_distances, not both")
    if fim_features is not None:
        parts.append((_finite_2d(fim_features, "fim_features"), FIM_UMAP))
    if fim_distances is not None:
        d = _finite_2d(fim_distances, "fim_distances")
        if d.shape[0] != d.shape[1]:
            raise ValueError(f"fim_distances must be square, got {d.shape}")
        parts.append((d, dict(FIM_UMAP, metric="precomputed")))
    if outputs is not None:
        parts.append((_finite_2d(outputs, "outputs"), OUTPUT_UMAP))
    if not parts:
        raise ValueError("embed needs fim_features/fim_distances, outputs, or both")
    n = {p[0].shape[0] for p in parts}
    if len(n) != 1:
        raise ValueError(f"features disagree on the number of functions: {sorted(n)}")
    if n.pop() < 4:
        raise ValueError("UMAP needs at least 4 functions to embed")
    models = [_fit_umap(data, settings, seed, n_components) for data, settings in parts]
    if len(models) == 1:
        coords = models[0].embedding_
    else:
        coords = _union_layout(models[0], models[1], seed, n_components)
    coords = np.asarray(coords, dtype=np.float64)
    return (coords, models) if return_models else coords


def _union_layout(first, second, seed, n_components):
    """What ``first + second`` does in umap-learn (fuzzy union of the two graphs, local
    connectivity reset, spectral or, for a disconnected union, random init, then the usual
    optimisation with averaged layout parameters), but seeded with ``seed`` instead of
    umap-learn's fixed 42, so the union depends on the seed like a single model does."""
    from scipy.sparse.csgraph import connected_components
    from sklearn.utils import check_random_state
    from umap.umap_ import (general_simplicial_set_union, reset_local_connectivity,
                            simplicial_set_embedding)

    graph = general_simplicial_set_union(first.graph_, second.graph_)
    graph = reset_local_connectivity(graph, True)
    init = "spectral" if connected_components(graph)[0] == 1 else "random"
    n_epochs = None if first.n_epochs is None or second.n_epochs is None else max(
        first.n_epochs, second.n_epochs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not connected.*")
        coords, _ = simplicial_set_embedding(
            None, graph, n_components, min(first.learning_rate, second.learning_rate),
            (first._a + second._a) / 2, (first._b + second._b) / 2,
            (first.repulsion_strength + second.repulsion_strength) / 2,
            (first.negative_sample_rate + second.negative_sample_rate) / 2,
            n_epochs, init, check_random_state(seed), "euclidean", {}, False, {}, False,
            parallel=False)
    return coords


def _finite_2d(a, name):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (functions x features), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite values: filter invalid functions first, "
                         f"or pass outputs through finite_outputs()")
    return a
