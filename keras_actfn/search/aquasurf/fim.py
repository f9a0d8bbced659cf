"""Fisher-information eigenvalue features of a network (AQuaSurF, dissertation §6.2, §6.3.1, §6.5).

For every weighted layer ``l`` the Fisher block is approximated by K-FAC (eq. 6.10/6.11) as
``Ω_{l-1} ⊗ Γ_l``, computed from one forward and one backward pass over a batch:

* **Dense** (eq. 6.10): ``Ω = E[ā ā^T]`` with ``ā = (1, a^T)^T`` (the homogeneous coordinate
  only when the layer has a bias, eq. 6.1), ``Γ = E[Ds Ds^T]`` where ``s`` is the
  *pre-activation* output (a layer's own ``activation=`` is split off) and ``Ds`` the gradient
  of the per-example loss. A Dense applied to a sequence / feature map (inputs of rank > 2) is
  a weight-shared 1x1 convolution: its positions are the rows of the expanded matrix, exactly
  as a convolution's spatial locations, with the normalizations below.
* **Conv1D/2D/3D** (eqs. 6.12-6.15): ``Ω = E[⟦A⟧_H^T ⟦A⟧_H]`` -- the expectation is over
  examples, the patches of one example (its ``|T|`` rows) are summed -- and
  ``Γ = (1/|T|) E[DS^T DS]``. ``⟦A⟧`` extracts, for each output location, the input patch the
  layer's kernel sees (its padding ``same``/``valid``/``causal``, strides and dilation), flattened
  in the order of the kernel's ``(*kernel_size, in_channels)`` axes. For stride 1 ``⟦A⟧`` is
  never built: Ω's ``(δ, δ')`` block is a sum of ``x[u + δ - δ'] x[u]ᵀ`` over the positions
  tap ``δ'`` visits, i.e. a lag correlation of the input with itself -- for every lag at once
  one convolution-weight gradient (``Conv2DBackpropFilter``), minus the few edge rows and
  columns a tap misses (see :func:`_lag_omega_sums`; a 3x3 kernel: 13 lags instead of the 81
  blocks of the patch Gram matrix). Strided layers (a patch matrix ``|Δ|/∏s`` times the input)
  take the patch products of the kernel rows, upper blocks only (:func:`_patch_omega_sums`);
  Conv3D, dilated stride-1 and grouped layers the per-position phase/lag products of
  :func:`_phase_omega_sums`. **Grouped** convolutions (``groups = G > 1``) get one Kronecker
  block per group: ``Ω_g`` from the group's ``J/G`` input channels, ``Γ_g`` of its ``K/G``
  outputs (stacked ``(G, ·, ·)`` like ``depthwise="per_channel"``).
* **Conv1D/2D/3DTranspose**: ``y[o] = Σ_{i,δ: o = i·s + δ·d - pad} x[i] W[δ]`` is a stride-1
  correlation of the input upsampled with ``s - 1`` zeros between neighbours, padded by
  ``((k-1)d - pad, ...)``, with the spatially flipped kernel. So ``⟦A⟧``'s row for output
  location ``o`` is that input's patch at ``o``, taps in reversed order -- the gradient w.r.t.
  the kernel is the correlation of these patches with the output gradient -- and
  ``Γ = (1/|T|) E[DS^T DS]`` over the output locations, as for a convolution.
* **SeparableConv1D/2D**: two blocks, ``<name>/depthwise`` (the depthwise kernel, no bias;
  ``⟦A⟧`` and Ω as for DepthwiseConv, Γ from the gradient w.r.t. the depthwise output ``z``)
  and ``<name>/pointwise`` (a 1x1 convolution of ``z`` with the bias). The layer's forward is
  written out (``tf.nn.depthwise_conv2d`` then the pointwise product) so that ``z`` can be
  watched.
* **EinsumDense** (and so MultiHeadAttention's query/key/value/output projections): when the
  equation is Dense-like -- every kernel axis either contracted with the input (Ω's axes) or
  carried to the output (Γ's axes), every other input axis reaching the output unchanged (the
  rows: batch, positions, heads of the output projection's input), a bias over exactly the
  kernel's output axes -- it is a Dense on those rows, positions as for Dense on sequences.
* **DepthwiseConv1D/2D** (§6.2.3): ``⟦A⟧`` is an ``M|T|J × |Δ|`` matrix (every channel's patch is
  a row) and otherwise the factors are as for convolutions: ``Ω`` is ``(|Δ|+1)²`` and ``Γ`` is
  ``(J·multiplier)²`` (``depthwise="shared"``, the section's construction). With
  ``depthwise="per_channel"`` each channel gets its own Kronecker block ``Ω_c ⊗ Γ_c``
  (``Ω_c`` from that channel's patches, ``Γ_c`` of its ``multiplier`` outputs); both give
  exactly ``|θ_l|`` eigenvalues.

Layers with weights but no block here (Embedding, recurrent layers, other EinsumDense
equations, custom layers with their own weights) are listed in ``skipped``; normalization
layers are left out silently (§6.2.3).

The loss is the negative log-likelihood of the categorical distribution the model outputs
(softmax probabilities or logits, detected), summed over examples so each example contributes
its own gradient. With ``labels="model"`` (default) the labels are sampled from the model's
predictive distribution: the true Fisher of eq. 6.3. ``labels="data"`` uses the given ``y``:
the empirical Fisher.

Eigenvalues (§6.2.4) are computed per factor in float64: with ``tf.linalg.eigvalsh`` when a GPU
is visible, else with LAPACK (``numpy.linalg.eigvalsh``, one BLAS thread) in a worker thread that
overlaps the next layers' factors (layers with the costliest eigendecompositions first); they
are log-scaled (natural log) and combined as
all pairwise sums ``log λ_i(Ω) + log λ_j(Γ)`` (= the logs of the Kronecker eigenvalues).
Eigenvalues that are numerically zero (``≤ rtol · λ_max``, default
``rtol = max(dim, 100)·ε_float32``, or ``≤ 0``) are floored at the
smallest normal float32 (log ≈ -87.3) so that exactly singular factors -- the read-out of a
softmax always has one -- give finite, deterministic features.

Histograms (§6.5): a layer with ``|θ_l|`` weights gets ``⌊|θ_l|/100⌋`` (at least one) equal bins
on ``[-100, 100]``; values outside the range are not counted (NumPy's ``histogram``
convention, the right edge inclusive). The feature vector concatenates the layers'
histograms in model order. ``valid`` is False when any factor, eigenvalue, model output or
loss is non-finite -- the filter of §6.3.1.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import itertools
import time

import numpy as np
import tensorflow as tf

from ... import keras_graph
from ...backend import keras

__all__ = ["FisherResult", "LayerFisher", "fisher_eigenvalues", "activation_fim_features",
           "extract_patches", "histogram_bins", "LOG_FLOOR"]

#: log of the floor applied to numerically-zero eigenvalues (smallest normal float32).
LOG_FLOOR = float(np.log(np.finfo(np.float32).tiny))
HIST_RANGE = (-100.0, 100.0)


@dataclasses.dataclass
class LayerFisher:
    """K-FAC factors and eigenvalue features of one weighted layer.

    ``omega``/``gamma`` are the factor matrices (for ``depthwise="per_channel"`` and grouped
    convolutions a stack, one per channel / group); ``log_eigenvalues`` holds the ``num_params`` log Kronecker eigenvalues.
    """

    name: str
    kind: str                 # "dense" | "conv" | "depthwise" | "transpose" | "einsum" |
    #                           "pointwise" (a separable layer's second block)
    omega: np.ndarray
    gamma: np.ndarray
    log_eig_omega: np.ndarray
    log_eig_gamma: np.ndarray
    log_eigenvalues: np.ndarray
    num_params: int
    histogram: np.ndarray
    bin_edges: np.ndarray
    has_bias: bool
    positions: int            # |T|: rows of the expanded matrix per example (all calls)
    valid: bool


@dataclasses.dataclass
class FisherResult:
    """What :func:`fisher_eigenvalues` returns."""

    layers: list
    valid: bool
    reason: str
    labels: str
    num_examples: int
    skipped: list               # (layer name, class name) of weighted layers not covered
    #                             (normalization layers are excluded by §6.2.3, not listed)

    @property
    def features(self) -> np.ndarray:
        """The concatenated per-layer histograms (the §6.5 feature vector), float32."""
        if not self.layers:
            return np.zeros((0,), np.float32)
        return np.concatenate([l.histogram for l in self.layers]).astype(np.float32)

    @property
    def log_eigenvalues(self) -> np.ndarray:
        """All layers' log eigenvalues, concatenated."""
        if not self.layers:
            return np.zeros((0,), np.float64)
        return np.concatenate([l.log_eigenvalues for l in self.layers])

    def per_layer(self) -> dict:
        """``{layer name: log eigenvalues}``."""
        return {l.name: l.log_eigenvalues for l in self.layers}

    @property
    def num_params(self) -> int:
        return int(sum(l.num_params for l in self.layers))


# ----------------------------------------------------------------------------- layer kinds

def _classes(*names):
    found = []
    for name in names:
        cls = getattr(keras.layers, name, None)
        if cls is not None:
            found.append(cls)
    return tuple(found)


_TRANSPOSE = _classes("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
_SEPARABLE = _classes("SeparableConv1D", "SeparableConv2D")
_DEPTHWISE = _classes("DepthwiseConv1D", "DepthwiseConv2D")
_CONV = _classes("Conv1D", "Conv2D", "Conv3D")
_DENSE = _classes("Dense")
_EINSUM = _classes("EinsumDense")
# §6.2.3: normalization layers are not part of the FIM (not reported as skipped either)
_EXCLUDED = _classes("BatchNormalization", "LayerNormalization", "GroupNormalization",
                     "UnitNormalization")
_COVERED = ("dense", "conv", "depthwise", "separable", "transpose", "einsum")


def _layer_kind(layer):
    """'dense' | 'conv' | 'depthwise' | 'separable' | 'transpose' | 'einsum' | 'unsupported' |
    None (no trainable weights of interest).

    Order matters: in tf_keras DepthwiseConv2D, SeparableConv and ConvTranspose subclass Conv.
    """
    if isinstance(layer, _TRANSPOSE):
        if getattr(layer, "groups", 1) not in (1, None):
            return "unsupported"
        return "transpose"
    if isinstance(layer, _SEPARABLE):
        return "separable"
    if isinstance(layer, _DEPTHWISE):
        return "depthwise"
    if isinstance(layer, _CONV):
        return "conv"
    if isinstance(layer, _DENSE):
        return "dense"
    if isinstance(layer, _EINSUM):
        return "einsum" if _einsum_plan(layer) is not None else "unsupported"
    if keras_graph.is_model(layer) or isinstance(layer, _EXCLUDED):
        return None
    if layer.trainable_weights and not keras_graph.sublayers(layer):
        return "unsupported"
    return None


def _has_bias(layer):
    return bool(getattr(layer, "use_bias", True)) and getattr(layer, "bias", None) is not None


# ----------------------------------------------------------------------------- patches

def _tuple(value, rank):
    if isinstance(value, int):
        return (value,) * rank
    value = tuple(int(v) for v in value)
    return value * rank if len(value) == 1 else value


def _geometry(spatial, ks, st, dl, padding):
    """``(pads, outs)``: per spatial axis, the (before, after) zero padding and the number of
    output locations of a convolution with TF's ``same``/``valid`` or Keras' ``causal``."""
    pads, outs = [], []
    for n, k, s, d in zip(spatial, ks, st, dl):
        span = (k - 1) * d + 1
        if padding == "same":
            out = -(-n // s)
            total = max((out - 1) * s + span - n, 0)
            pads.append((total // 2, total - total // 2))
        elif padding == "causal":
            out = -(-n // s)
            pads.append((span - 1, 0))
        elif padding == "valid":
            out = max(-(-(n - span + 1) // s), 0)
            pads.append((0, 0))
        else:
            raise ValueError(f"unknown padding {padding!r}")
        outs.append(out)
    return pads, outs


def _pad(x, pads):
    """Zero-pad (or, for negative amounts, crop) the spatial axes of channels-last ``x``."""
    if all(p == (0, 0) for p in pads):
        return x
    if any(b < 0 or a < 0 for b, a in pads):
        sizes = [int(v) for v in x.shape[1:-1]]
        x = x[(slice(None),) + tuple(slice(max(-b, 0), n - max(-a, 0))
                                     for (b, a), n in zip(pads, sizes)) + (slice(None),)]
        pads = [(max(b, 0), max(a, 0)) for b, a in pads]
    return tf.pad(x, [(0, 0)] + list(pads) + [(0, 0)])


def extract_patches(x, kernel_size, strides=1, dilation_rate=1, padding="valid"):
    """The expansion ``⟦A⟧`` of §6.2.3 for channels-last ``x`` of shape ``(M, *spatial, J)``.

    Returns ``(M, T, |Δ|, J)``: for each of the ``T`` output locations (row-major), the input
    values the kernel multiplies, offset ``δ`` in row-major kernel order. Works for any spatial
    rank, TF's ``same``/``valid`` padding, Keras' ``causal`` (1-D) padding, any stride and
    dilation: one strided slice per kernel offset (no im2col matmul).
    """
    x = tf.convert_to_tensor(x)
    rank = len(x.shape) - 2
    ks, st, dl = _tuple(kernel_size, rank), _tuple(strides, rank), _tuple(dilation_rate, rank)
    pads, outs = _geometry([int(d) for d in x.shape[1:-1]], ks, st, dl, padding.lower())
    x = _pad(x, pads)
    slices = []
    for offset in itertools.product(*[range(k) for k in ks]):
        begin = [0] + [o * d for o, d in zip(offset, dl)] + [0]
        end = [0] + [o * d + (out - 1) * s + 1 for o, d, out, s in zip(offset, dl, outs, st)] + [0]
        slices.append(tf.strided_slice(x, begin, end, [1] + list(st) + [1],
                                       begin_mask=1 | (1 << (rank + 1)),
                                       end_mask=1 | (1 << (rank + 1))))
    stacked = tf.stack(slices, axis=-2)                    # (M, *outs, |Δ|, J)
    m = tf.shape(x)[0]
    return tf.reshape(stacked, [m, int(np.prod(outs)), len(slices), int(x.shape[-1])])


#: finish layers (eigenvalues, histograms) in a worker thread when NumPy computes them
_OVERLAP = True


def _conv_omega_sums(xp, ks, st, dl, outs, bias, groups=1, flip=False, pads=None):
    """``Σ_examples Σ_locations ā āᵀ`` of a convolution without materializing ``⟦A⟧``.

    ``xp`` is the channels-last input ``(M, *P, J)``, already padded unless ``pads`` (per
    axis (before, after)) says what to pad it by; the result is
    ``(groups, D, D)`` with ``D = (1 +) |Δ|·J/groups``, rows in the kernel's
    ``(*kernel_size, in_channels)`` order (the homogeneous coordinate first). ``flip`` reverses
    the tap order (a transposed convolution's kernel is the flipped correlation kernel).

    Ω's ``(δ, δ')`` block is ``Σ_m Σ_p x[m, p·s + δ·d] x[m, p·s + δ'·d]ᵀ``. Write each tap's
    offset ``δ·d = s·c + r`` (phase ``r``, shift ``c``); on the phase grid ``x_r = x[r::s]`` the
    block is ``Σ_{q ∈ c + [0, n)} F[q]`` with ``F[q] = Σ_m x_r[m, q] x_{r'}[m, q + c' - c]ᵀ``.
    Every pair of taps with the same ``(r, r', c' - c)`` shares ``F`` (for stride 1, the 9x9
    tap pairs of a 3x3 kernel need 13 such products, not 81 blocks of the patch Gram matrix);
    ``F`` is one batched matmul over positions contracting the examples, and each block is a
    window sum of it. Only blocks with ``δ ≤ δ'`` are formed (Ω is symmetric).

    Stride-1, undilated, ungrouped convolutions of rank 1 or 2 -- most layers of common
    CNNs -- go to :func:`_lag_omega_sums` instead, strided ungrouped ones of rank 1 or 2 to
    :func:`_patch_omega_sums`; the phase products below serve the rest (Conv3D, dilation
    without stride, groups).
    """
    if groups == 1 and len(ks) in (1, 2) and all(s == 1 for s in st) and \
            all(d == 1 for d in dl):
        if pads is not None and all(b >= 0 and a >= 0 for b, a in pads):
            shape = [int(v) for v in xp.shape[1:-1]]
            return _lag_omega_sums(xp, ks, outs, bias, flip,
                                   [(b, b + n) for (b, _), n in zip(pads, shape)],
                                   [b + n + a for (b, a), n in zip(pads, shape)])
        return _lag_omega_sums(_pad(xp, pads) if pads is not None else xp, ks, outs, bias, flip)
    if pads is not None:
        xp = _pad(xp, pads)
    if groups == 1 and len(ks) in (1, 2) and any(s > 1 for s in st):
        return _patch_omega_sums(xp, ks, st, dl, outs, bias, flip)
    return _phase_omega_sums(xp, ks, st, dl, outs, bias, groups, flip)


def _phase_omega_sums(xp, ks, st, dl, outs, bias, groups=1, flip=False):
    """:func:`_conv_omega_sums` by phase/lag products per position (any stride, dilation,
    groups and rank)."""
    rank = len(ks)
    m, chans = int(xp.shape[0]), int(xp.shape[-1])
    jg = chans // groups
    taps = list(itertools.product(*[range(k) for k in ks]))
    phase = [tuple((t * d) % s for t, d, s in zip(tap, dl, st)) for tap in taps]
    shift = [tuple((t * d) // s for t, d, s in zip(tap, dl, st)) for tap in taps]
    grids = {}

    def grid(r):                                   # (*L_r, G, J/G, M): positions first
        if r not in grids:
            sl = xp[(slice(None),) + tuple(slice(ri, None, si) for ri, si in zip(r, st))
                    + (slice(None),)]
            lens = [int(v) for v in sl.shape[1:-1]]
            t = tf.transpose(sl, list(range(1, rank + 1)) + [rank + 1, 0])
            grids[r] = tf.reshape(t, lens + [groups, jg, m])
        return grids[r]

    def window_sum(field, starts):
        """Sum of ``field`` over the box ``starts + [0, outs)`` of its leading axes."""
        for st0, n in zip(starts, outs):
            field = tf.reduce_sum(field[st0:st0 + n], axis=0)
        return field

    pairs = {}
    for i in range(len(taps)):
        for j in range(i, len(taps)):
            lag = tuple(b - a for a, b in zip(shift[i], shift[j]))
            pairs.setdefault((phase[i], phase[j], lag), []).append((i, j))
    blocks = {}
    for (ri, rj, lag), members in pairs.items():
        gi, gj = grid(ri), grid(rj)
        li, lj = gi.shape[:rank], gj.shape[:rank]
        lo = [max(0, -g) for g in lag]
        hi = [min(int(a), int(b) - g) for a, b, g in zip(li, lj, lag)]
        field = tf.matmul(gi[tuple(slice(l, h) for l, h in zip(lo, hi))],
                          gj[tuple(slice(l + g, h + g) for l, h, g in zip(lo, hi, lag))],
                          transpose_b=True)                      # (*V, G, J/G, J/G)
        cache = {}
        for i, j in members:
            starts = tuple(c - l for c, l in zip(shift[i], lo))
            # shared prefixes of the box sums are summed once
            for depth in range(1, rank + 1):
                key = starts[:depth]
                if key not in cache:
                    prev = field if depth == 1 else cache[starts[:depth - 1]]
                    st0, n = starts[depth - 1], outs[depth - 1]
                    if st0 < 0 or st0 + n > int(prev.shape[0]):
                        raise RuntimeError("convolution window outside the input grid")
                    cache[key] = tf.reduce_sum(prev[st0:st0 + n], axis=0)
            blocks[(i, j)] = cache[starts]
        del field, cache
    order = list(range(len(taps)))
    if flip:
        order.reverse()

    def block(a, b):
        return blocks[(a, b)] if a <= b else tf.linalg.matrix_transpose(blocks[(b, a)])

    omega = tf.concat([tf.concat([block(a, b) for b in order], -1) for a in order], -2)
    if bias:
        # batch sums by a 2-D matmul (more accurate than reduce_sum; TF's matmul that
        # broadcasts a rank-2 operand against a batch gave wrong sums on oneDNN CPUs)
        ones = tf.ones([m, 1], xp.dtype)
        sums = {}
        for r in set(phase):
            g = grid(r)
            sums[r] = tf.reshape(tf.matmul(tf.reshape(g, [-1, m]), ones), g.shape[:-1])
        vec = tf.concat([window_sum(sums[phase[a]], shift[a]) for a in order], -1)  # (G, D)
        count = tf.fill([groups, 1, 1], tf.cast(m * int(np.prod(outs)), omega.dtype))
        top = tf.concat([count, vec[:, None, :]], -1)
        omega = tf.concat([top, tf.concat([vec[:, :, None], omega], -1)], -2)
    return omega


@functools.lru_cache(maxsize=256)
def _lag_plan(ks, outs, sizes, data, flip):
    """Static part of :func:`_lag_omega_sums` (NumPy), for 2-D ``ks``, ``outs``, ``sizes``
    (the padded grid) and ``data``: the regions whose lag sums are needed and, for each, the
    lags (``(L_y, L_x)``, ``L_y ≥ 0``); the ``±1`` matrix combining the region lag sums into
    the Ω blocks of the tap pairs; the gather order of blocks (and their transposes) into Ω;
    and the taps' windows (for the bias column)."""
    (ky, kx), (ny, nx), (py, px) = ks, outs, sizes
    taps = [(a, b) for a in range(ky) for b in range(kx)]
    # the lags of the stored blocks: L_y = 0 and L_x >= 0, then L_y > 0 (every L_x)
    all_lags = [(0, b) for b in range(kx)] + \
        [(a, b) for a in range(1, ky) for b in range(-(kx - 1), kx)]

    def edges(k, n, p, box):
        # positions outside some tap's window [t, t + n) that hold data
        lo, hi = box
        return [u for u in sorted(set(range(0, k - 1)) | set(range(n, p))) if lo <= u < hi]

    def holds_data(box_y, box_x, lag):
        # does the region shifted by the lag overlap the data?
        return all(max(lo + g, d0) < min(hi + g, d1)
                   for (lo, hi), g, (d0, d1) in zip((box_y, box_x), lag, data))

    rows, cols = edges(ky, ny, py, data[0]), edges(kx, nx, px, data[1])
    # pairs (δ, δ') stored with L = δ - δ' in the half L_y > 0 or (L_y = 0, L_x ≥ 0)
    pairs, where = [], {}
    for i, ti in enumerate(taps):
        for j, tj in enumerate(taps):
            lag = (ti[0] - tj[0], ti[1] - tj[1])
            if lag[0] > 0 or lag[0] == 0 and lag[1] >= 0:
                where[(i, j)] = (len(pairs), False)
                pairs.append((lag, tj))
    for i in range(len(taps)):
        for j in range(len(taps)):
            if (i, j) not in where:
                where[(i, j)] = (where[(j, i)][0], True)

    def missing(t, n, u):
        return not t <= u < t + n

    # regions: (kind, position, box_y, box_x) and the pairs each one is subtracted from
    regions = [("all", None, (0, py), (0, px))]
    regions += [("row", r, (r, r + 1), (0, px)) for r in rows]
    regions += [("col", c, (0, py), (c, c + 1)) for c in cols]
    regions += [("corner", (r, c), (r, r + 1), (c, c + 1)) for r in rows for c in cols]

    def sign(region, lag, tap):
        kind, pos = region[0], region[1]
        if kind == "all":
            return 1.0
        if kind == "row":
            return -1.0 if missing(tap[0], ny, pos) else 0.0
        if kind == "col":
            return -1.0 if missing(tap[1], nx, pos) else 0.0
        return 1.0 if missing(tap[0], ny, pos[0]) and missing(tap[1], nx, pos[1]) else 0.0

    plan, columns = [], []
    for region in regions:
        lags = all_lags if region[0] == "all" else sorted(
            {lag for lag, tap in pairs if sign(region, lag, tap)
             and holds_data(region[2], region[3], lag)})
        if lags:
            plan.append((region[0], region[1], tuple(lags)))
            columns += [(len(plan) - 1, lag) for lag in lags]
    column = {key: i for i, key in enumerate(columns)}
    coef = np.zeros((len(pairs), len(columns)), np.float32)
    for q, (lag, tap) in enumerate(pairs):
        for k, (kind, pos, lags) in enumerate(plan):
            region = next(r for r in regions if r[0] == kind and r[1] == pos)
            value = sign(region, lag, tap)
            if value and (k, lag) in column:
                coef[q, column[(k, lag)]] += value
    order = list(range(len(taps)))
    if flip:
        order.reverse()
    npairs = len(pairs)
    gather = np.array([where[(a, b)][0] + (npairs if where[(a, b)][1] else 0)
                       for a in order for b in order], np.int32)
    window = np.zeros((len(taps), py, px), np.float32)
    for t, (ty, tx) in enumerate(taps):
        window[t, ty:ty + ny, tx:tx + nx] = 1.0
    (y0, y1), (x0, x1) = data
    window = window[order][:, y0:y1, x0:x1].reshape(len(taps), (y1 - y0) * (x1 - x0))
    return tuple(plan), coef, gather, window


def _lag_omega_sums(x, ks, outs, bias, flip=False, data=None, sizes=None):
    """Stride-1, undilated, ungrouped Ω sums (rank 1 or 2) from lag correlations.

    ``x`` holds the input's values, which sit at ``data`` (per axis ``[lo, hi)``) of the
    zero-padded grid of ``sizes`` that the kernel slides over (``None``: ``x`` is that grid).
    Ω's ``(δ, δ')`` block is ``Σ_{u ∈ W(δ')} x[u + L] x[u]ᵀ`` with ``L = δ - δ'`` and
    ``W(δ') = δ' + [0, n)`` the positions tap ``δ'`` visits (summed over the examples too).
    Summed over *all* positions ``u`` -- only those holding data contribute -- these lag sums
    ``C_L`` for the lags with ``L_y > 0`` or ``L_y = 0 ≤ L_x`` (the others give the
    transposed blocks) are weight gradients of a convolution of ``x`` with itself: two
    ``Conv2DBackpropFilter``, well-blocked kernels instead of a product per position (for a
    3x3 kernel 13 lags against the 81 blocks of a patch Gram matrix; no padded grid).
    ``W(δ')`` misses only edge rows/columns of the grid, so a block is ``C_L`` minus the lag
    sums over each missing row and column plus the missing corners (inclusion-exclusion):
    only the lags that some block needs and that reach data, as 2-D products, combined with
    ``C_L`` by one product with a static ``±1`` matrix. Edge rows/columns of zero padding
    need no correction.
    """
    rank = len(ks)
    m, chans = int(x.shape[0]), int(x.shape[-1])
    if sizes is None:
        sizes = [int(v) for v in x.shape[1:-1]]
    if data is None:
        data = [(0, p) for p in sizes]
    if rank == 1:
        x = x[:, None]
        ks, outs, sizes, data = (1,) + tuple(ks), (1,) + tuple(outs), [1] + list(sizes), \
            [(0, 1)] + list(data)
    (ky, kx), (ny, nx) = ks, outs
    (y0, y1), (x0, x1) = data
    if [int(v) for v in x.shape[1:-1]] != [y1 - y0, x1 - x0]:
        raise ValueError(f"input of shape {tuple(x.shape)} does not fill {data}")
    plan, coef, gather, window = _lag_plan(tuple(ks), tuple(outs), tuple(sizes),
                                           tuple(tuple(b) for b in data), flip)
    # grid value at u + L (L_y in [0, ky), L_x in (-kx, kx)), u = (y0 + i, x0 + j):
    # xq[i + L_y, j + L_x + kx - 1]
    xq = tf.pad(x, [(0, 0), (0, ky - 1), (kx - 1, kx - 1), (0, 0)])
    width = x1 - x0
    terms = []
    for kind, pos, lags in plan:
        if kind == "all":                      # (L_y, L_x, J, J') -> (J', lags·J)
            # L_y = 0, L_x >= 0; then L_y > 0 (the plan's order): 13 lags of a 3x3 kernel,
            # not the 15 of one rectangle of them (on 192 channels ~14% faster)
            parts = [(xq[:, :y1 - y0, kx - 1:], [1, kx])]
            if ky > 1:
                parts.append((xq[:, 1:], [ky - 1, 2 * kx - 1]))
            for inp, size in parts:
                sums = tf.raw_ops.Conv2DBackpropFilter(
                    input=inp, filter_sizes=size + [chans, chans], out_backprop=x,
                    strides=[1, 1, 1, 1], padding="VALID")
                terms.append(tf.reshape(tf.transpose(sums, [3, 0, 1, 2]), [chans, -1]))
            continue
        # a few positions: one 2-D product of their values with the lagged values
        # (narrow convolution-gradient kernels are slow; also see _gram)
        if kind == "row":
            i = pos - y0
            values = x[:, i]
            lagged = [xq[:, i + a, kx - 1 + b:kx - 1 + b + width] for a, b in lags]
        elif kind == "col":
            j = pos - x0
            values = x[:, :, j]
            lagged = [xq[:, a:a + y1 - y0, j + kx - 1 + b] for a, b in lags]
        else:
            i, j = pos[0] - y0, pos[1] - x0
            values = x[:, i, j]
            lagged = [xq[:, i + a, j + kx - 1 + b] for a, b in lags]
        lagged = tf.reshape(tf.concat(lagged, -1), [-1, len(lags) * chans])
        terms.append(tf.matmul(tf.reshape(values, [-1, chans]), lagged, transpose_a=True))
    stacked = tf.reshape(tf.transpose(tf.reshape(tf.concat(terms, 1), [chans, -1, chans]),
                                      [1, 2, 0]), [-1, chans * chans])
    blocks = tf.reshape(tf.matmul(tf.constant(coef), stacked), [-1, chans, chans])
    both = tf.concat([blocks, tf.transpose(blocks, [0, 2, 1])], 0)
    taps = ky * kx
    omega = tf.reshape(tf.transpose(tf.reshape(tf.gather(both, gather),
                                               [taps, taps, chans, chans]), [0, 2, 1, 3]),
                       [taps * chans, taps * chans])
    if bias:
        colsum = tf.matmul(tf.ones([1, m], x.dtype), tf.reshape(x, [m, -1]))   # (1, N·J)
        vec = tf.reshape(tf.matmul(tf.constant(window), tf.reshape(colsum, [-1, chans])),
                         [1, -1])
        count = tf.fill([1, 1], tf.cast(m * ny * nx, omega.dtype))
        omega = tf.concat([tf.concat([count, vec], -1),
                           tf.concat([tf.transpose(vec), omega], -1)], 0)
    return omega[None]


def _patch_omega_sums(xp, ks, st, dl, outs, bias, flip=False):
    """Ω sums of an ungrouped convolution of rank 1 or 2 from its patches, for strided
    layers (whose patch matrix is ``|Δ|/∏s`` times the input). The patches of each kernel
    row ``a`` (``tf.image.extract_patches``: ``(M·T, k_x·J)``, float32) are one column group
    ``G_a`` of the patch matrix; Ω's block row ``a`` is ``G_aᵀ G_b`` for ``b ≥ a`` and the
    transposes above the diagonal -- ``k_y(k_y+1)/2`` large products instead of the whole
    Gram matrix's ``k_y²`` (a 3x3 kernel: 6 of 9)."""
    if len(ks) == 1:
        xp = xp[:, None]
        ks, st, dl, outs = (1,) + tuple(ks), (1,) + tuple(st), (1,) + tuple(dl), \
            (1,) + tuple(outs)
    (ky, kx), (sy, sx), (dy, dx), (ny, nx) = ks, st, dl, outs
    chans = int(xp.shape[-1])
    width = kx * chans
    span_x = (nx - 1) * sx + (kx - 1) * dx + 1
    groups = []
    for a in range(ky):
        rows = xp[:, a * dy:a * dy + (ny - 1) * sy + 1, :span_x]
        g = tf.image.extract_patches(rows, [1, 1, kx, 1], [1, sy, sx, 1], [1, 1, dx, 1],
                                     "VALID")                    # taps of row a, channels last
        if flip:
            g = tf.reverse(tf.reshape(g, [-1, kx, chans]), [1])
        groups.append(tf.reshape(g, [-1, width]))
    if flip:
        groups.reverse()
    prods = {(a, b): tf.matmul(groups[a], groups[b], transpose_a=True)
             for a in range(ky) for b in range(a, ky)}
    omega = tf.concat([tf.concat([prods[(a, b)] if a <= b else tf.transpose(prods[(b, a)])
                                  for b in range(ky)], 1) for a in range(ky)], 0)
    if bias:
        n = int(groups[0].shape[0])
        ones = tf.ones([1, n], xp.dtype)
        vec = tf.concat([tf.matmul(ones, g) for g in groups], 1)           # (1, D)
        count = tf.fill([1, 1], tf.cast(n, omega.dtype))
        omega = tf.concat([tf.concat([count, vec], -1),
                           tf.concat([tf.transpose(vec), omega], -1)], 0)
    return omega[None]


#: traced :func:`_conv_omega_sums` per (input shape, geometry), and how often each was seen
_GRAPHS: dict = {}
_SEEN: dict = {}
_GRAPH_CACHE_SIZE = 64


def _omega_sums(xp, ks, st, dl, outs, bias, groups=1, flip=False, graph="auto", pads=None):
    """:func:`_conv_omega_sums`, run eagerly or as a traced ``tf.function``.

    A layer's Ω is some 20-150 small ops; eagerly, their dispatch matters for narrow layers
    (ResNet's 16-channel stage: ~1.5x the traced time on a CPU). A trace costs 0.1-5 s, so with
    ``graph="auto"`` a geometry (input shape, kernel, strides, dilation, padding, bias,
    groups) is traced only once it comes up for the third time -- in a deep network's repeated
    blocks, or over the many candidates of a search, which all build the same network -- and
    one-off shapes stay eager. The traced function runs the same ops: results are identical
    up to floating-point summation order.
    """
    if graph is False or graph is None:
        return _conv_omega_sums(xp, ks, st, dl, outs, bias, groups, flip, pads)
    pads = None if pads is None else tuple(tuple(int(v) for v in p) for p in pads)
    key = (tuple(int(v) for v in xp.shape), xp.dtype.name, tuple(ks), tuple(st), tuple(dl),
           tuple(outs), bool(bias), int(groups), bool(flip), pads)
    fn = _GRAPHS.get(key)
    if fn is None:
        _SEEN[key] = _SEEN.get(key, 0) + 1
        if graph == "auto" and _SEEN[key] < 3:
            return _conv_omega_sums(xp, ks, st, dl, outs, bias, groups, flip, pads)
        if len(_GRAPHS) >= _GRAPH_CACHE_SIZE:
            _GRAPHS.pop(next(iter(_GRAPHS)))
        fn = tf.function(functools.partial(_conv_omega_sums, ks=tuple(ks), st=tuple(st),
                                           dl=tuple(dl), outs=tuple(outs), bias=bool(bias),
                                           groups=int(groups), flip=bool(flip), pads=pads),
                         autograph=False)
        _GRAPHS[key] = fn
    return fn(xp)


def _zero_upsample(x, strides):
    """Insert ``s - 1`` zeros between neighbours along each spatial axis of channels-last ``x``."""
    for axis, s in enumerate(strides, start=1):
        if s == 1:
            continue
        n = int(x.shape[axis])
        zeros = tf.zeros_like(x)
        inter = tf.stack([x] + [zeros] * (s - 1), axis=axis + 1)
        shape = [int(v) if v is not None else -1 for v in x.shape]
        shape[0] = -1
        shape[axis] = n * s
        x = tf.reshape(inter, shape)
        x = x[(slice(None),) * axis + (slice(0, (n - 1) * s + 1),)]
    return x


def _transpose_geometry(n_in, n_out, ks, st, dl, padding):
    """Padding of the zero-upsampled input that turns a transposed convolution into a
    stride-1 correlation with the flipped kernel (see :func:`_layer_sums`)."""
    pads = []
    for n, o, k, s, d in zip(n_in, n_out, ks, st, dl):
        span = (k - 1) * d + 1
        if padding == "same":
            before = max((n - 1) * s + span - o, 0) // 2
        elif padding == "valid":
            before = 0
        else:
            raise ValueError(f"unknown padding {padding!r} for a transposed convolution")
        left = span - 1 - before
        right = o + span - 1 - left - ((n - 1) * s + 1)
        pads.append((left, right))
    return pads


# ----------------------------------------------------------------------------- EinsumDense

def _einsum_plan(layer, in_rank=None):
    """How an ``EinsumDense`` is a Dense on rows, or None when it is not one.

    Dense-like: every kernel axis is either contracted with the input (an Ω axis) or carried
    to the output (a Γ axis); the input's other axes (batch, positions, heads of an input...)
    all reach the output unchanged: they index the rows. A bias must span exactly the kernel's
    output axes (then ``ā = (1, a)`` as for Dense).
    """
    eq = layer.equation.replace(" ", "")
    if "->" not in eq or eq.count(",") != 1:
        return None
    lhs, out = eq.split("->")
    inp, ker = lhs.split(",")
    if "..." in ker:
        return None
    spare = [c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBA" if c not in eq]
    if "..." in inp or "..." in out:
        if "..." not in inp or "..." not in out:
            return None
        count = 1 if in_rank is None else in_rank - (len(inp) - 3)
        if count < 0 or count > len(spare):
            return None
        fill = "".join(spare[:count])
        inp, out = inp.replace("...", fill), out.replace("...", fill)
    for spec in (inp, ker, out):
        if len(set(spec)) != len(spec):
            return None
    contracted = [c for c in ker if c in inp and c not in out]
    produced = [c for c in ker if c in out and c not in inp]
    if len(contracted) + len(produced) != len(ker):
        return None
    rows = [c for c in out if c not in ker]
    if sorted(rows) != sorted(c for c in inp if c not in ker) or not rows or inp[0] not in rows:
        return None
    if getattr(layer, "bias", None) is not None:
        axes = getattr(layer, "bias_axes", None) or ""
        if sorted(axes) != sorted(produced):
            return None
    return dict(inp=inp, out=out, rows=rows, contracted=contracted, produced=produced)


def _einsum_rows(layer, a, ds):
    plan = _einsum_plan(layer, len(a.shape))
    if plan is None:
        raise RuntimeError(f"{layer.name}: equation {layer.equation!r} is not Dense-like")
    inp, out = plan["inp"], plan["out"]
    a = tf.transpose(a, [inp.index(c) for c in plan["rows"] + plan["contracted"]])
    ds = tf.transpose(ds, [out.index(c) for c in plan["rows"] + plan["produced"]])
    c = int(np.prod([int(a.shape[-1 - i]) for i in range(len(plan["contracted"]))]))
    o = int(np.prod([int(ds.shape[-1 - i]) for i in range(len(plan["produced"]))]))
    return tf.reshape(a, [-1, c]), tf.reshape(ds, [-1, o])


# ----------------------------------------------------------------------------- loss

def _log_probs(out, mode):
    out = tf.cast(out, tf.float32)
    classes = int(out.shape[-1])
    flat = tf.reshape(out, [-1, classes])
    if mode == "auto":
        finite = bool(tf.reduce_all(tf.math.is_finite(flat)))
        probs_like = finite and bool(tf.reduce_min(flat) >= 0.0) and bool(
            tf.reduce_max(tf.abs(tf.reduce_sum(flat, -1) - 1.0)) < 1e-3)
        mode = "probs" if probs_like else "logits"
    if mode == "probs":
        return tf.math.log(tf.clip_by_value(flat, np.finfo(np.float32).tiny, 1.0)), mode
    if mode == "logits":
        return tf.nn.log_softmax(flat), mode
    raise ValueError(f"output must be 'auto', 'probs' or 'logits', not {mode!r}")


def _data_labels(y, out_shape):
    y = np.asarray(y)
    classes = int(out_shape[-1])
    positions = int(np.prod(out_shape[1:-1])) if len(out_shape) > 2 else 1
    if y.ndim >= 1 and y.shape[-1] == classes and y.size == int(out_shape[0]) * positions * classes \
            and classes > 1 and y.ndim == len(out_shape):
        y = np.argmax(y, axis=-1)                       # one-hot
    return tf.reshape(tf.convert_to_tensor(y.astype(np.int64)), [-1])


# ----------------------------------------------------------------------------- factors

def _to_channels_last(t, layer):
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        rank = len(t.shape)
        return tf.transpose(t, [0] + list(range(2, rank)) + [1])
    return t


def _augment(rows, bias):
    if not bias:
        return rows
    ones = tf.ones(tf.concat([tf.shape(rows)[:-1], [1]], 0), rows.dtype)
    return tf.concat([ones, rows], axis=-1)


def _gram(rows, bias):
    """``Σ_rows ā āᵀ`` (``ā = (1, a)`` with a bias): one matmul of the augmented rows, so the
    homogeneous row/column are accumulated exactly as the rest (TF's ``reduce_sum`` of
    thousands of float32 rows is less accurate than its matmul, which makes a rank-deficient
    Ω look full-rank)."""
    rows = _augment(rows, bias)
    return tf.matmul(rows, rows, transpose_a=True)


def _grouped_gram(rows, groups):
    """``(G, K/G, K/G)``: the Gram matrix of each contiguous group of columns."""
    if groups == 1:
        return tf.matmul(rows, rows, transpose_a=True)[None]
    k = int(rows.shape[-1])
    r = tf.transpose(tf.reshape(rows, [-1, groups, k // groups]), [1, 0, 2])
    return tf.matmul(r, r, transpose_a=True)


class _Accumulator:
    def __init__(self):
        self.omega = None
        self.gamma = None
        self.examples = 0
        self.positions = None

    def add(self, omega_sum, gamma_sum, examples, positions):
        self.omega = omega_sum if self.omega is None else self.omega + omega_sum
        self.gamma = gamma_sum if self.gamma is None else self.gamma + gamma_sum
        self.examples += examples
        self.positions = positions


def _blocks(layer, kind):
    """``[(suffix, block kind, number of weights)]``: the Kronecker blocks of one layer."""
    bias = _has_bias(layer)
    n_bias = int(np.prod(layer.bias.shape)) if bias else 0
    if kind == "separable":
        return [("/depthwise", "depthwise", int(np.prod(layer.depthwise_kernel.shape))),
                ("/pointwise", "pointwise", int(np.prod(layer.pointwise_kernel.shape)) + n_bias)]
    kernel = layer.depthwise_kernel if kind == "depthwise" and hasattr(layer, "depthwise_kernel") \
        else layer.kernel
    return [("", kind, int(np.prod(kernel.shape)) + n_bias)]


def _conv_sums(layer, a, ds, bias, timer, graph):
    """Ω and Γ sums of a (possibly grouped) convolution; channels-last ``a``, ``ds``."""
    rank = len(a.shape) - 2
    ks = _tuple(layer.kernel_size, rank)
    st, dl = _tuple(layer.strides, rank), _tuple(layer.dilation_rate, rank)
    groups = int(getattr(layer, "groups", 1) or 1)
    pads, outs = _geometry([int(v) for v in a.shape[1:-1]], ks, st, dl, layer.padding.lower())
    if list(outs) != [int(v) for v in ds.shape[1:-1]]:
        raise RuntimeError(f"{layer.name}: output grid {tuple(outs)} does not match "
                           f"{tuple(ds.shape[1:-1])}")
    if int(np.prod(ks)) == 1:
        with timer("patches"):                          # 1x1: the (strided) input is ⟦A⟧
            xp = _pad(a, pads)
            xp = xp[(slice(None),) + tuple(slice(0, (n - 1) * s + 1, s)
                                           for n, s in zip(outs, st)) + (slice(None),)]
    with timer("factors"):
        if int(np.prod(ks)) == 1:
            rows = tf.reshape(xp, [-1, int(xp.shape[-1])])
            if groups == 1:
                o = _gram(rows, bias)[None]
            else:
                o = tf.stack([_gram(r, bias) for r in tf.split(rows, groups, axis=-1)])
        else:                                           # (padded there, where needed)
            o = _omega_sums(a, ks, st, dl, outs, bias, groups, graph=graph, pads=pads)
        g = _grouped_gram(tf.reshape(ds, [-1, int(ds.shape[-1])]), groups)
    if groups == 1:
        o, g = o[0], g[0]
    return o, g, int(np.prod(outs))


def _transpose_sums(layer, a, ds, bias, timer, graph):
    """A transposed convolution ``y[o] = Σ_{i,δ: o = i·s + δ·d - pad} x[i] W[δ]`` is, on the
    input upsampled with ``s - 1`` zeros between neighbours and padded by
    ``(span - 1 - pad, ...)``, a stride-1 correlation with the spatially flipped kernel: its
    ⟦A⟧ rows are that input's patches, taps in reversed order (the gradient w.r.t. the kernel
    correlates these patches with the output gradient)."""
    rank = len(a.shape) - 2
    ks = _tuple(layer.kernel_size, rank)
    st, dl = _tuple(layer.strides, rank), _tuple(layer.dilation_rate, rank)
    n_in = [int(v) for v in a.shape[1:-1]]
    outs = [int(v) for v in ds.shape[1:-1]]
    with timer("patches"):
        pads = _transpose_geometry(n_in, outs, ks, st, dl, layer.padding.lower())
        xp = _pad(_zero_upsample(a, st), pads)
    with timer("factors"):
        ones = (1,) * rank
        o = _omega_sums(xp, ks, ones, dl, outs, bias, 1, flip=True, graph=graph)[0]
        g = tf.matmul(tf.reshape(ds, [-1, int(ds.shape[-1])]),
                      tf.reshape(ds, [-1, int(ds.shape[-1])]), transpose_a=True)
    return o, g, int(np.prod(outs))


def _depthwise_sums(layer, a, ds, bias, depthwise, timer):
    rank = len(a.shape) - 2
    with timer("patches"):
        patches = extract_patches(a, _tuple(layer.kernel_size, rank),
                                  _tuple(layer.strides, rank),
                                  _tuple(layer.dilation_rate, rank), layer.padding)
    t = int(patches.shape[1])
    if int(np.prod(ds.shape[1:-1])) != t:
        raise RuntimeError(f"{layer.name}: patch grid {t} does not match the output "
                           f"grid {tuple(ds.shape[1:-1])}")
    with timer("factors"):
        chans = int(patches.shape[3])
        mult = int(ds.shape[-1]) // chans
        per = tf.transpose(patches, [0, 1, 3, 2])                     # (M, T, J, Δ)
        if depthwise == "shared":
            o = _gram(tf.reshape(per, [-1, int(per.shape[-1])]), bias)
            rows_g = tf.reshape(ds, [-1, int(ds.shape[-1])])
            g = tf.matmul(rows_g, rows_g, transpose_a=True)
        else:
            per = _augment(per, bias)
            o = tf.einsum("mtjd,mtje->jde", per, per)
            dsr = tf.reshape(ds, [-1, chans, mult])
            g = tf.einsum("njp,njq->jpq", dsr, dsr)
    return o, g, t


def _dense_sums(rows_a, rows_g, m, bias, timer):
    with timer("factors"):
        o = _gram(rows_a, bias)
        g = tf.matmul(rows_g, rows_g, transpose_a=True)
    return o, g, int(rows_a.shape[0]) // m


def _layer_sums(rec, grads, mids, depthwise, timer, graph="auto"):
    """Per block: sums over examples and positions of ā āᵀ and Ds Dsᵀ, this chunk."""
    layer, kind = rec.layer, rec.kind
    bias = _has_bias(layer)
    totals = None
    examples = None
    for n, (a, ds) in enumerate(zip(rec.inputs, grads)):
        s = rec.outputs[n]
        a = tf.cast(tf.convert_to_tensor(a), tf.float32)
        ds = tf.zeros_like(s, tf.float32) if ds is None else tf.cast(ds, tf.float32)
        m = int(a.shape[0]) if a.shape[0] is not None else int(tf.shape(a)[0])
        examples = m
        if kind == "dense":
            parts = [_dense_sums(tf.reshape(a, [-1, int(a.shape[-1])]),
                                 tf.reshape(ds, [-1, int(ds.shape[-1])]), m, bias, timer)]
        elif kind == "einsum":
            parts = [_dense_sums(*_einsum_rows(layer, a, ds), m, bias, timer)]
        elif kind == "separable":
            # a, ds channels-last already (see _separable_forward); mids: the depthwise output
            z, dz = rec.mids[n], mids[n]
            z = tf.cast(z, tf.float32)
            dz = tf.zeros_like(z) if dz is None else tf.cast(dz, tf.float32)
            first = _depthwise_sums(layer, a, dz, False, depthwise, timer)
            second = _dense_sums(tf.reshape(z, [-1, int(z.shape[-1])]),
                                 tf.reshape(ds, [-1, int(ds.shape[-1])]), m, bias, timer)
            parts = [first, second]
        else:
            a = _to_channels_last(a, layer)
            ds = _to_channels_last(ds, layer)
            if kind == "conv":
                parts = [_conv_sums(layer, a, ds, bias, timer, graph)]
            elif kind == "transpose":
                parts = [_transpose_sums(layer, a, ds, bias, timer, graph)]
            else:
                parts = [_depthwise_sums(layer, a, ds, bias, depthwise, timer)]
        if totals is None:
            totals = [list(p) for p in parts]
        else:
            for tot, p in zip(totals, parts):
                tot[0] = tot[0] + p[0]
                tot[1] = tot[1] + p[1]
                tot[2] = tot[2] + p[2]
    return [(o, g, examples, t) for o, g, t in totals]


# ----------------------------------------------------------------------------- separable

def _separable_forward(layer, x, watch):
    """``SeparableConv1D/2D`` written out: returns ``(a, z, s, y)`` -- the channels-last input,
    depthwise output ``z`` and pre-activation ``s`` (both watched), and the layer's output."""
    rank = len(x.shape) - 2
    a = _to_channels_last(tf.convert_to_tensor(x), layer)
    ks = _tuple(layer.kernel_size, rank)
    st, dl = _tuple(layer.strides, rank), _tuple(layer.dilation_rate, rank)
    dk, pk = layer.depthwise_kernel, layer.pointwise_kernel
    padding = layer.padding.lower()
    inp = a
    if padding == "causal":
        inp = tf.pad(inp, [(0, 0), ((ks[0] - 1) * dl[0], 0), (0, 0)])
        padding = "valid"
    if rank == 1:
        inp, dk = inp[:, None], dk[None]
        st, dl = (1,) + st, (1,) + dl
    z = tf.nn.depthwise_conv2d(inp, tf.cast(dk, inp.dtype), strides=[1, *st, 1],
                               padding=padding.upper(), dilations=list(dl))
    if rank == 1:
        z = z[:, 0]
    watch(z)
    pk2 = tf.reshape(tf.cast(pk, z.dtype), [-1, int(pk.shape[-1])])
    s = tf.tensordot(z, pk2, axes=1)
    if _has_bias(layer):
        s = s + tf.cast(layer.bias, s.dtype)
    watch(s)
    y = s if layer.activation is None else layer.activation(s)
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        y = tf.transpose(y, [0, rank + 1] + list(range(1, rank + 1)))
    return a, z, s, y


# ----------------------------------------------------------------------------- hooks

class _Record:
    def __init__(self, layer, kind):
        self.layer, self.kind = layer, kind
        self.inputs, self.outputs, self.mids = [], [], []


class _Hooks:
    """Temporarily wrap ``call`` (to see inputs) and ``activation`` (to see pre-activations).

    A separable convolution's ``call`` is replaced by :func:`_separable_forward`, which also
    exposes the depthwise output between its two blocks."""

    def __init__(self, records):
        self.records = records
        self.tape = None

    def __enter__(self):
        for rec in self.records:
            layer = rec.layer
            orig_call = layer.call
            orig_act = layer.__dict__.get("activation", None)
            rec.saved = ("call" in layer.__dict__, layer.__dict__.get("call"), orig_act,
                         "activation" in layer.__dict__)

            if rec.kind == "separable":
                def call(inputs, *args, _rec=rec, **kwargs):
                    a, z, s, y = _separable_forward(_rec.layer, inputs, self.tape.watch)
                    _rec.inputs.append(a)
                    _rec.mids.append(z)
                    _rec.outputs.append(s)
                    return y

                layer.__dict__["call"] = call
                continue

            def call(inputs, *args, _rec=rec, _orig=orig_call, **kwargs):
                _rec.inputs.append(inputs)
                _rec.pending = True
                out = _orig(inputs, *args, **kwargs)
                if _rec.pending:                    # activation None: output is pre-activation
                    _rec.pending = False
                    self.tape.watch(out)
                    _rec.outputs.append(out)
                return out

            def act(s, _rec=rec, _orig=orig_act):
                self.tape.watch(s)
                _rec.outputs.append(s)
                _rec.pending = False
                return _orig(s) if _orig is not None else s

            layer.__dict__["call"] = call
            if orig_act is not None:
                layer.__dict__["activation"] = act
        return self

    def __exit__(self, *exc):
        for rec in self.records:
            had_call, old_call, old_act, had_act = rec.saved
            if had_call:
                rec.layer.__dict__["call"] = old_call
            else:
                rec.layer.__dict__.pop("call", None)
            if had_act:
                rec.layer.__dict__["activation"] = old_act
        return False


# ----------------------------------------------------------------------------- eigenvalues

def _eigvalsh(m64):
    """Eigenvalues of symmetric float64 matrices: TensorFlow on a GPU; on a CPU-only
    machine LAPACK through NumPy, ~2x faster than TensorFlow's CPU kernel here (the same
    symmetric solver family; results agree to float64 round-off)."""
    if tf.config.list_logical_devices("GPU") or not tf.executing_eagerly():
        return tf.linalg.eigvalsh(m64)
    return tf.constant(np.linalg.eigvalsh(m64.numpy()))


def _log_eigs(matrix, rtol):
    """Log eigenvalues of symmetric PSD ``matrix`` (or a stack), numerically-zero floored."""
    m64 = tf.cast(matrix, tf.float64)
    m64 = 0.5 * (m64 + tf.linalg.matrix_transpose(m64))
    eig = _eigvalsh(m64)
    n = int(matrix.shape[-1])
    tol = rtol if rtol is not None else max(n, 100) * float(np.finfo(np.float32).eps)
    top = tf.reduce_max(eig, axis=-1, keepdims=True)
    cut = tf.maximum(top * tol, np.finfo(np.float32).tiny)
    return tf.where(eig > cut, tf.math.log(tf.maximum(eig, cut)), tf.constant(LOG_FLOOR, tf.float64))


def histogram_bins(num_params: int) -> int:
    """Bins for a layer with ``num_params`` weights (§6.5): ⌊|θ_l|/100⌋, at least 1."""
    return max(int(num_params) // 100, 1)


def _numpy_eigenvalues():
    """Eigenvalues by NumPy/LAPACK (True) or TensorFlow (False, when a GPU is visible)."""
    return tf.executing_eagerly() and not tf.config.list_logical_devices("GPU")


def _blas_one_thread():
    """One BLAS/LAPACK thread for NumPy (threadpoolctl, when installed; else a no-op).

    The eigendecompositions run in a worker thread next to TensorFlow's own thread pool;
    OpenBLAS' spinning threads on top of both made ``eigvalsh`` 5-50x slower on a busy 2-core
    machine, and LAPACK's symmetric tridiagonal reduction gains little from a second thread."""
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS_CONTROLLER = ThreadpoolController()   # finds the libraries once (~2 ms)
        except ImportError:                             # optional; older versions lack it
            _BLAS_CONTROLLER = False
    if _BLAS_CONTROLLER is False:
        return contextlib.nullcontext()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


_BLAS_CONTROLLER = None


def _log_eigs_np(matrix, rtol):
    """:func:`_log_eigs` in NumPy (LAPACK ``syevd``, eigenvalues only)."""
    m64 = np.asarray(matrix, np.float64)
    m64 = 0.5 * (m64 + np.swapaxes(m64, -1, -2))
    eig = np.linalg.eigvalsh(m64)
    n = int(m64.shape[-1])
    tol = rtol if rtol is not None else max(n, 100) * float(np.finfo(np.float32).eps)
    top = eig.max(axis=-1, keepdims=True)
    cut = np.maximum(top * tol, np.finfo(np.float32).tiny)
    return np.where(eig > cut, np.log(np.maximum(eig, cut)), LOG_FLOOR)


def _histogram(values, num_params):
    """Counts of ``values`` in the layer's bins and the bin edges (right edge of the last bin
    inclusive, values outside ``HIST_RANGE`` not counted)."""
    bins = histogram_bins(num_params)
    edges = np.linspace(HIST_RANGE[0], HIST_RANGE[1], bins + 1)
    v = np.asarray(values, np.float64)
    inside = v[(v >= HIST_RANGE[0]) & (v <= HIST_RANGE[1])]
    idx = np.clip(np.searchsorted(edges, inside, side="right") - 1, 0, bins - 1)
    return np.bincount(idx, minlength=bins).astype(np.int64), edges


def _finish_block(name, kind, n_params, acc, bias, rtol, keep_factors, use_numpy):
    """Factors, log eigenvalues and histogram of one block: ``(LayerFisher, stage times)``."""
    t0 = time.perf_counter()
    if use_numpy:
        omega = acc.omega.numpy() / np.float32(acc.examples)
        gamma = acc.gamma.numpy() / np.float32(acc.examples * acc.positions)
        finite = bool(np.isfinite(omega).all()) and bool(np.isfinite(gamma).all())
    else:
        omega = acc.omega / acc.examples
        gamma = acc.gamma / (acc.examples * acc.positions)
        finite = bool(tf.reduce_all(tf.math.is_finite(omega))) and \
            bool(tf.reduce_all(tf.math.is_finite(gamma)))
    t1 = time.perf_counter()
    if finite:
        if use_numpy:
            lo, lg = _log_eigs_np(omega, rtol), _log_eigs_np(gamma, rtol)
        else:
            lo, lg = _log_eigs(omega, rtol).numpy(), _log_eigs(gamma, rtol).numpy()
        logs = (lo[..., :, None] + lg[..., None, :]).reshape(-1)
        finite = bool(np.isfinite(logs).all())
    else:
        lo = np.full(tuple(omega.shape[:-1]), np.nan)
        lg = np.full(tuple(gamma.shape[:-1]), np.nan)
        logs = np.full([n_params], np.nan)
    t2 = time.perf_counter()
    if int(logs.shape[0]) != n_params:
        raise RuntimeError(f"layer {name}: {int(logs.shape[0])} eigenvalues for "
                           f"{n_params} weights")
    logs_np = logs.astype(np.float64)
    hist, edges = _histogram(np.nan_to_num(logs_np, nan=np.inf), n_params)
    result = LayerFisher(
        name=name, kind=kind,
        omega=np.asarray(omega) if keep_factors else None,
        gamma=np.asarray(gamma) if keep_factors else None,
        log_eig_omega=lo, log_eig_gamma=lg, log_eigenvalues=logs_np,
        num_params=n_params, histogram=hist, bin_edges=edges, has_bias=bool(bias),
        positions=int(acc.positions), valid=finite)
    return result, {"factors": t1 - t0, "eig": t2 - t1}


def _eig_cost(rec):
    """Rough flops of a layer's eigendecompositions (``D³ + K³`` of its kernel's input and
    output sizes), to schedule the costly ones first."""
    layer = rec.layer
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        kernel = getattr(layer, "depthwise_kernel", None)
    if kernel is None or len(kernel.shape) < 2:
        return 0
    shape = [int(v) for v in kernel.shape]
    return int(np.prod(shape[:-1])) ** 3 + shape[-1] ** 3


def _finish_layer(rec, acc_list, rtol, keep_factors, pool, use_numpy):
    """``[(block name, future of _finish_block)]`` for the blocks of a layer whose factor sums
    are complete: run by ``pool`` (NumPy eigenvalues, overlapping the caller's next layers)
    or, without one, right away."""
    out = []
    for (suffix, kind, n_params), acc in zip(_blocks(rec.layer, rec.kind), acc_list):
        if acc.omega is None:
            continue                               # layer not on the path of the output
        bias = _has_bias(rec.layer) and not (rec.kind == "separable" and kind == "depthwise")
        args = (rec.layer.name + suffix, kind, n_params, acc, bias, rtol, keep_factors,
                use_numpy)
        if pool is not None:
            future = pool.submit(_finish_block, *args)
        else:
            future = concurrent.futures.Future()
            future.set_result(_finish_block(*args))
        out.append((args[0], future))
    return out


# ----------------------------------------------------------------------------- timing

class _Timer:
    """Adds wall-clock seconds per stage to ``self.current`` (a dict) when enabled."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.current = None

    @contextlib.contextmanager
    def __call__(self, stage):
        if not self.enabled or self.current is None:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self.current[stage] = self.current.get(stage, 0.0) + time.perf_counter() - start


# ----------------------------------------------------------------------------- main entry

def fisher_eigenvalues(model, x, y=None, labels="model", seed=0, batch_size=None, *,
                       output="auto", depthwise="shared", rtol=None, keep_factors=True,
                       timings=None, graph="auto"):
    """K-FAC Fisher eigenvalue features of ``model`` on the batch ``x`` (see module docs).

    Args:
        model: a built Keras model whose output is a categorical distribution over the last
            axis (softmax probabilities or logits; ``output`` forces one).
        x: the batch (array or tensor; a list for multi-input models).
        y: data labels (integer classes or one-hot); required for ``labels="data"``.
        labels: ``"model"`` -- sampled from the model's predictive distribution (the true
            Fisher, eq. 6.3) -- or ``"data"`` -- the given ``y`` (empirical Fisher).
        seed: seed of the label sampling (stateless: same seed, same features).
        batch_size: examples per forward/backward pass; the factor sums are accumulated
            across passes (memory bound for big models). ``None``: the whole batch at once.
        depthwise: ``"shared"`` (§6.2.3) or ``"per_channel"`` Kronecker blocks.
        rtol: eigenvalues ``≤ rtol·λ_max`` count as zero (default ``max(dim, 100)·ε_float32``:
            below the resolution of factors accumulated in float32).
        keep_factors: keep Ω and Γ (as NumPy) in the result.
        timings: a dict to fill with wall-clock seconds: ``"pass"`` (forward and backward
            passes), ``"other"`` (what the blocks' times leave of the total) and ``"blocks"``:
            ``{block name: {"patches", "factors", "eig"}}`` (a profiling aid; eager ops on a
            CPU run synchronously, on a GPU the times are those of dispatch plus any waits; on
            a CPU the eigenvalues and the normalization of the factors are timed in the worker
            thread, overlapping the other stages).
        graph: run each convolution's Ω as a traced ``tf.function`` -- ``"auto"`` (a geometry
            seen for the third time in this process), ``True`` (always) or ``False`` (eager).

    Returns:
        :class:`FisherResult`.
    """
    if labels not in ("model", "data"):
        raise ValueError(f"labels must be 'model' or 'data', not {labels!r}")
    if labels == "data" and y is None:
        raise ValueError("labels='data' needs y")
    if depthwise not in ("shared", "per_channel"):
        raise ValueError(f"depthwise must be 'shared' or 'per_channel', not {depthwise!r}")
    if graph not in ("auto", True, False):
        raise ValueError(f"graph must be 'auto', True or False, not {graph!r}")
    t_start = time.perf_counter()
    timer = _Timer(timings is not None)
    block_times = {}

    records, skipped = [], []
    for layer in keras_graph.all_layers(model, tracked=True):
        kind = _layer_kind(layer)
        if kind in _COVERED:
            records.append(_Record(layer, kind))
        elif kind == "unsupported":
            skipped.append((layer.name, type(layer).__name__))

    xs = x if isinstance(x, (list, tuple)) else [x]
    xs = [tf.convert_to_tensor(v) for v in xs]
    total = int(xs[0].shape[0])
    step = total if batch_size is None else max(int(batch_size), 1)
    accs = [[_Accumulator() for _ in _blocks(rec.layer, rec.kind)] for rec in records]
    valid, reasons = True, []
    mode = output
    y_all = None if y is None else np.asarray(y)
    pass_time = 0.0
    # Eigenvalues by LAPACK (NumPy) on a CPU-only machine, in one worker thread while the
    # next layers' factors are computed (both release the GIL), with one BLAS thread;
    # on a GPU by TensorFlow, in order.
    use_numpy = _numpy_eigenvalues()
    finishing = {}
    # layers with the costliest eigendecompositions first, so that the worker's last jobs,
    # the ones nothing overlaps, are small (results keep the model's order)
    order = sorted(range(len(records)), key=lambda i: -_eig_cost(records[i])) if use_numpy \
        else list(range(len(records)))
    with contextlib.ExitStack() as cleanup:
        pool = None
        if use_numpy:
            cleanup.enter_context(_blas_one_thread())      # restored after the pool's jobs
            if _OVERLAP:
                pool = cleanup.enter_context(concurrent.futures.ThreadPoolExecutor(1))

        for chunk, start in enumerate(range(0, total, step)):
            stop = min(start + step, total)
            xb = [v[start:stop] for v in xs]
            for rec in records:
                rec.inputs, rec.outputs, rec.mids = [], [], []
            t_pass = time.perf_counter()
            hooks = _Hooks(records)
            with hooks, tf.GradientTape(watch_accessed_variables=False) as tape:
                hooks.tape = tape
                out = model(xb if len(xb) > 1 else xb[0], training=False)
                if isinstance(out, (list, tuple)):
                    out = out[0]
                logp, mode = _log_probs(out, mode)
                if not bool(tf.reduce_all(tf.math.is_finite(logp))):
                    valid = False
                    reasons.append("non-finite model output")
                if labels == "model":
                    safe = tf.where(tf.math.is_finite(logp), logp, tf.zeros_like(logp))
                    draw = tf.random.stateless_categorical(
                        tf.stop_gradient(safe), 1, seed=tf.constant([int(seed), chunk], tf.int64))
                    lab = tf.reshape(draw, [-1])
                else:
                    lab = _data_labels(y_all[start:stop], out.shape)
                    if int(lab.shape[0]) != int(logp.shape[0]):
                        raise ValueError(f"y gives {int(lab.shape[0])} labels for "
                                         f"{int(logp.shape[0])} predictions")
                nll = -tf.reduce_sum(tf.gather(logp, lab, batch_dims=1))
            if not bool(tf.math.is_finite(nll)):
                valid = False
                reasons.append("non-finite loss")
            targets = [s for rec in records for s in rec.outputs + rec.mids]
            grads = tape.gradient(nll, targets) if targets else []
            pass_time += time.perf_counter() - t_pass
            offsets = np.cumsum([0] + [len(rec.outputs) + len(rec.mids) for rec in records])
            for rec_index in order:
                rec, acc, k = records[rec_index], accs[rec_index], int(offsets[rec_index])
                n = len(rec.outputs)
                if len(rec.inputs) != n:
                    raise RuntimeError(f"layer {rec.layer.name}: saw {len(rec.inputs)} inputs "
                                       f"but {n} pre-activations")
                g_out = grads[k:k + n]
                g_mid = grads[k + n:k + n + len(rec.mids)]
                if n:
                    timer.current = block_times.setdefault(rec.layer.name, {})
                    for a, sums in zip(acc, _layer_sums(rec, g_out, g_mid, depthwise, timer,
                                                        graph)):
                        a.add(*sums)
                    timer.current = None
                if stop == total:                   # the factors are complete: finish them
                    finishing[rec_index] = _finish_layer(rec, acc, rtol, keep_factors, pool,
                                                           use_numpy)
            for rec in records:
                rec.inputs, rec.outputs, rec.mids = [], [], []

        layers = []
        stage_times = {}
        for rec_index in range(len(records)):
            for name, future in finishing.pop(rec_index, []):
                layer_fisher, times = future.result()
                stage_times[name] = times
                if not layer_fisher.valid:
                    valid = False
                    reasons.append(f"non-finite Fisher factors in layer {name}")
                layers.append(layer_fisher)
    if timings is not None:
        blocks = {}
        for rec in records:
            base = block_times.get(rec.layer.name, {})
            names = [rec.layer.name + suffix for suffix, _, _ in _blocks(rec.layer, rec.kind)]
            for i, name in enumerate(names):
                entry = {"patches": 0.0, "factors": 0.0, "eig": 0.0}
                if i == 0:          # the sums of all blocks of a layer are timed together
                    for key, value in base.items():
                        entry[key] += value
                for key, value in stage_times.get(name, {}).items():
                    entry[key] += value
                if name in stage_times or i == 0 and base:
                    blocks[name] = entry
        timings.clear()
        timings["pass"] = pass_time
        timings["blocks"] = blocks
        spent = sum(sum(v.values()) for v in blocks.values())
        timings["other"] = max(time.perf_counter() - t_start - pass_time - spent, 0.0)
    return FisherResult(layers=layers, valid=valid, reason="; ".join(dict.fromkeys(reasons)),
                        labels=labels, num_examples=total, skipped=skipped)


def activation_fim_features(fn, model_name="mnist1d_cnn", task="mnist1d", batch=128, seed=0,
                            labels="model", autoinit=True, model_kwargs=None, **fisher_kwargs):
    """FIM features of activation ``fn`` as AQuaSurF computes them for one candidate (§6.5).

    Builds ``model_name`` with ``activation=fn`` for ``task`` (a name or a loaded Task),
    initializes it with AutoInit (seeded), draws ``batch`` training examples (seeded) and
    returns :func:`fisher_eigenvalues` of that batch.
    """
    from ...autoinit import AutoInit
    from ...data import load_task
    from ...models import build_model

    task_obj = load_task(task) if isinstance(task, str) else task
    keras.utils.set_random_seed(int(seed))
    model = build_model(model_name, activation=fn, task=task_obj, **(model_kwargs or {}))
    init_error = None
    if autoinit:
        try:
            with np.errstate(all="ignore"):
                AutoInit(seed=int(seed)).initialize_model(model)
        except FloatingPointError as err:
            # AutoInit cannot propagate finite moments through fn: an unstable function
            # (§6.3.1). Features are still computed (same length) but flagged invalid.
            init_error = f"AutoInit failed: {err}"
    x_all, y_all = task_obj.arrays("train")
    rng = np.random.default_rng(int(seed))
    idx = np.sort(rng.choice(len(x_all), size=min(int(batch), len(x_all)), replace=False))
    xb, yb = x_all[idx], y_all[idx]
    if task_obj.preprocess is not None:
        xb = task_obj.preprocess(tf.convert_to_tensor(xb))
    xb = tf.convert_to_tensor(xb)
    if xb.dtype.is_floating:
        xb = tf.cast(xb, tf.float32)
    result = fisher_eigenvalues(model, xb, yb, labels=labels, seed=seed, **fisher_kwargs)
    if init_error is not None:
        result.valid = False
        result.reason = "; ".join(r for r in (init_error, result.reason) if r)
    return result
