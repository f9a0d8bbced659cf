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
  in the order of the kernel's ``(*kernel_size, in_channels)`` axes.
* **DepthwiseConv1D/2D** (§6.2.3): ``⟦A⟧`` is an ``M|T|J × |Δ|`` matrix (every channel's patch is
  a row) and otherwise the factors are as for convolutions: ``Ω`` is ``(|Δ|+1)²`` and ``Γ`` is
  ``(J·multiplier)²`` (``depthwise="shared"``, the section's construction). With
  ``depthwise="per_channel"`` each channel gets its own Kronecker block ``Ω_c ⊗ Γ_c``
  (``Ω_c`` from that channel's patches, ``Γ_c`` of its ``multiplier`` outputs); both give
  exactly ``|θ_l|`` eigenvalues.

The loss is the negative log-likelihood of the categorical distribution the model outputs
(softmax probabilities or logits, detected), summed over examples so each example contributes
its own gradient. With ``labels="model"`` (default) the labels are sampled from the model's
predictive distribution: the true Fisher of eq. 6.3. ``labels="data"`` uses the given ``y``:
the empirical Fisher.

Eigenvalues (§6.2.4) are computed per factor with ``tf.linalg.eigvalsh`` (float64, on whatever
device TensorFlow places it -- the GPU when present), log-scaled (natural log) and combined as
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

import dataclasses
import itertools

import numpy as np
import tensorflow as tf

from ...backend import keras

__all__ = ["FisherResult", "LayerFisher", "fisher_eigenvalues", "activation_fim_features",
           "extract_patches", "histogram_bins", "LOG_FLOOR"]

#: log of the floor applied to numerically-zero eigenvalues (smallest normal float32).
LOG_FLOOR = float(np.log(np.finfo(np.float32).tiny))
HIST_RANGE = (-100.0, 100.0)


@dataclasses.dataclass
class LayerFisher:
    """K-FAC factors and eigenvalue features of one weighted layer.

    ``omega``/``gamma`` are the factor matrices (for ``depthwise="per_channel"`` a stack, one
    per channel); ``log_eigenvalues`` holds the ``num_params`` log Kronecker eigenvalues.
    """

    name: str
    kind: str                 # "dense" | "conv" | "depthwise"
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


_UNSUPPORTED = _classes("SeparableConv1D", "SeparableConv2D", "Conv1DTranspose",
                        "Conv2DTranspose", "Conv3DTranspose")
_DEPTHWISE = _classes("DepthwiseConv1D", "DepthwiseConv2D")
_CONV = _classes("Conv1D", "Conv2D", "Conv3D")
_DENSE = _classes("Dense")
# §6.2.3: normalization layers are not part of the FIM (not reported as skipped either)
_EXCLUDED = _classes("BatchNormalization", "LayerNormalization", "GroupNormalization",
                     "UnitNormalization")


def _layer_kind(layer):
    """'dense' | 'conv' | 'depthwise' | 'unsupported' | None (no trainable weights of interest).

    Order matters: in tf_keras DepthwiseConv2D, SeparableConv and ConvTranspose subclass Conv.
    """
    if isinstance(layer, _UNSUPPORTED):
        return "unsupported"
    if isinstance(layer, _DEPTHWISE):
        return "depthwise"
    if isinstance(layer, _CONV):
        if getattr(layer, "groups", 1) not in (1, None):
            return "unsupported"
        return "conv"
    if isinstance(layer, _DENSE):
        return "dense"
    if isinstance(layer, keras.Model) or isinstance(layer, _EXCLUDED):
        return None
    if layer.trainable_weights and not list(_sublayers(layer)):
        return "unsupported"
    return None


def _sublayers(layer):
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return []
    return [l for l in flatten(include_self=False, recursive=False)]


def _all_layers(model):
    """Every layer reachable from ``model`` (nested models included), each once, in order."""
    seen, order, stack = set(), [], list(reversed(_sublayers(model)))
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        order.append(layer)
        stack.extend(reversed(_sublayers(layer)))
    return order


def _kernel(layer, kind):
    return layer.depthwise_kernel if kind == "depthwise" and hasattr(layer, "depthwise_kernel") \
        else layer.kernel


def _has_bias(layer):
    return bool(getattr(layer, "use_bias", False)) and getattr(layer, "bias", None) is not None


# ----------------------------------------------------------------------------- patches

def _tuple(value, rank):
    if isinstance(value, int):
        return (value,) * rank
    value = tuple(int(v) for v in value)
    return value * rank if len(value) == 1 else value


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
    padding = padding.lower()
    spatial = [int(d) for d in x.shape[1:-1]]
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
    if any(p != (0, 0) for p in pads):
        x = tf.pad(x, [(0, 0)] + pads + [(0, 0)])
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


# ----------------------------------------------------------------------------- hooks

class _Record:
    def __init__(self, layer, kind):
        self.layer, self.kind = layer, kind
        self.inputs, self.outputs = [], []


class _Hooks:
    """Temporarily wrap ``call`` (to see inputs) and ``activation`` (to see pre-activations)."""

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


def _layer_sums(rec, grads, depthwise):
    """Sums over examples and positions of ā āᵀ and Ds Dsᵀ for one layer, this chunk."""
    layer, kind = rec.layer, rec.kind
    bias = _has_bias(layer)
    omega_sum = gamma_sum = None
    positions = 0
    examples = None
    for a, s, ds in zip(rec.inputs, rec.outputs, grads):
        a = tf.cast(tf.convert_to_tensor(a), tf.float32)
        ds = tf.zeros_like(s, tf.float32) if ds is None else tf.cast(ds, tf.float32)
        m = int(a.shape[0]) if a.shape[0] is not None else int(tf.shape(a)[0])
        examples = m
        if kind == "dense":
            rows_a = tf.reshape(a, [-1, int(a.shape[-1])])
            rows_g = tf.reshape(ds, [-1, int(ds.shape[-1])])
            t = int(rows_a.shape[0]) // m
            rows_a = _augment(rows_a, bias)
            o = tf.matmul(rows_a, rows_a, transpose_a=True)
            g = tf.matmul(rows_g, rows_g, transpose_a=True)
        else:
            a = _to_channels_last(a, layer)
            ds = _to_channels_last(ds, layer)
            patches = extract_patches(a, layer.kernel_size, layer.strides, layer.dilation_rate,
                                      layer.padding)                      # (M, T, Δ, J)
            t = int(patches.shape[1])
            if int(np.prod(ds.shape[1:-1])) != t:
                raise RuntimeError(f"{layer.name}: patch grid {t} does not match the output "
                                   f"grid {tuple(ds.shape[1:-1])}")
            if kind == "conv":
                rows_a = tf.reshape(patches, [-1, int(patches.shape[2] * patches.shape[3])])
                rows_a = _augment(rows_a, bias)
                rows_g = tf.reshape(ds, [-1, int(ds.shape[-1])])
                o = tf.matmul(rows_a, rows_a, transpose_a=True)
                g = tf.matmul(rows_g, rows_g, transpose_a=True)
            else:
                chans = int(patches.shape[3])
                mult = int(ds.shape[-1]) // chans
                per = tf.transpose(patches, [0, 1, 3, 2])                     # (M, T, J, Δ)
                per = _augment(per, bias)
                if depthwise == "shared":
                    rows_a = tf.reshape(per, [-1, int(per.shape[-1])])
                    o = tf.matmul(rows_a, rows_a, transpose_a=True)
                    rows_g = tf.reshape(ds, [-1, int(ds.shape[-1])])
                    g = tf.matmul(rows_g, rows_g, transpose_a=True)
                else:
                    o = tf.einsum("mtjd,mtje->jde", per, per)
                    dsr = tf.reshape(ds, [-1, chans, mult])
                    g = tf.einsum("njp,njq->jpq", dsr, dsr)
        omega_sum = o if omega_sum is None else omega_sum + o
        gamma_sum = g if gamma_sum is None else gamma_sum + g
        positions += t
    return omega_sum, gamma_sum, examples, positions


# ----------------------------------------------------------------------------- eigenvalues

def _log_eigs(matrix, rtol):
    """Log eigenvalues of symmetric PSD ``matrix`` (or a stack), numerically-zero floored."""
    m64 = tf.cast(matrix, tf.float64)
    m64 = 0.5 * (m64 + tf.linalg.matrix_transpose(m64))
    eig = tf.linalg.eigvalsh(m64)
    n = int(matrix.shape[-1])
    tol = rtol if rtol is not None else max(n, 100) * float(np.finfo(np.float32).eps)
    top = tf.reduce_max(eig, axis=-1, keepdims=True)
    cut = tf.maximum(top * tol, np.finfo(np.float32).tiny)
    return tf.where(eig > cut, tf.math.log(tf.maximum(eig, cut)), tf.constant(LOG_FLOOR, tf.float64))


def histogram_bins(num_params: int) -> int:
    """Bins for a layer with ``num_params`` weights (§6.5): ⌊|θ_l|/100⌋, at least 1."""
    return max(int(num_params) // 100, 1)


def _histogram(values, num_params):
    bins = histogram_bins(num_params)
    edges = np.linspace(HIST_RANGE[0], HIST_RANGE[1], bins + 1)
    v = tf.convert_to_tensor(values, tf.float64)
    inside = tf.boolean_mask(v, (v >= HIST_RANGE[0]) & (v <= HIST_RANGE[1]))
    idx = tf.searchsorted(tf.constant(edges, tf.float64), inside, side="right") - 1
    idx = tf.clip_by_value(idx, 0, bins - 1)
    counts = tf.math.bincount(tf.cast(idx, tf.int32), minlength=bins, maxlength=bins,
                              dtype=tf.int64)
    return counts.numpy(), edges


# ----------------------------------------------------------------------------- main entry

def fisher_eigenvalues(model, x, y=None, labels="model", seed=0, batch_size=None, *,
                       output="auto", depthwise="shared", rtol=None, keep_factors=True):
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

    Returns:
        :class:`FisherResult`.
    """
    if labels not in ("model", "data"):
        raise ValueError(f"labels must be 'model' or 'data', not {labels!r}")
    if labels == "data" and y is None:
        raise ValueError("labels='data' needs y")
    if depthwise not in ("shared", "per_channel"):
        raise ValueError(f"depthwise must be 'shared' or 'per_channel', not {depthwise!r}")

    records, skipped = [], []
    for layer in _all_layers(model):
        kind = _layer_kind(layer)
        if kind in ("dense", "conv", "depthwise"):
            records.append(_Record(layer, kind))
        elif kind == "unsupported":
            skipped.append((layer.name, type(layer).__name__))

    xs = x if isinstance(x, (list, tuple)) else [x]
    xs = [tf.convert_to_tensor(v) for v in xs]
    total = int(xs[0].shape[0])
    step = total if batch_size is None else max(int(batch_size), 1)
    accs = [_Accumulator() for _ in records]
    valid, reasons = True, []
    mode = output
    y_all = None if y is None else np.asarray(y)

    for chunk, start in enumerate(range(0, total, step)):
        stop = min(start + step, total)
        xb = [v[start:stop] for v in xs]
        for rec in records:
            rec.inputs, rec.outputs = [], []
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
        targets = [s for rec in records for s in rec.outputs]
        grads = tape.gradient(nll, targets) if targets else []
        k = 0
        for rec, acc in zip(records, accs):
            n = len(rec.outputs)
            if len(rec.inputs) != n:
                raise RuntimeError(f"layer {rec.layer.name}: saw {len(rec.inputs)} inputs but "
                                   f"{n} pre-activations")
            if n:
                acc.add(*_layer_sums(rec, grads[k:k + n], depthwise))
            k += n
        for rec in records:
            rec.inputs, rec.outputs = [], []

    layers = []
    for rec, acc in zip(records, accs):
        if acc.omega is None:
            continue                                   # layer not on the path of the output
        omega = acc.omega / acc.examples
        gamma = acc.gamma / (acc.examples * acc.positions)
        finite = bool(tf.reduce_all(tf.math.is_finite(omega))) and \
            bool(tf.reduce_all(tf.math.is_finite(gamma)))
        kernel = _kernel(rec.layer, rec.kind)
        bias = _has_bias(rec.layer)
        n_params = int(np.prod(kernel.shape)) + (int(np.prod(rec.layer.bias.shape)) if bias else 0)
        if finite:
            lo, lg = _log_eigs(omega, rtol), _log_eigs(gamma, rtol)
            pair = lo[..., :, None] + lg[..., None, :]
            logs = tf.reshape(pair, [-1])
            finite = bool(tf.reduce_all(tf.math.is_finite(logs)))
        else:
            lo = tf.fill(omega.shape[:-1], np.nan)
            lg = tf.fill(gamma.shape[:-1], np.nan)
            logs = tf.fill([n_params], np.nan)
        if int(logs.shape[0]) != n_params:
            raise RuntimeError(f"layer {rec.layer.name}: {int(logs.shape[0])} eigenvalues for "
                               f"{n_params} weights")
        if not finite:
            valid = False
            reasons.append(f"non-finite Fisher factors in layer {rec.layer.name}")
        logs_np = logs.numpy().astype(np.float64)
        hist, edges = _histogram(np.nan_to_num(logs_np, nan=np.inf), n_params)
        layers.append(LayerFisher(
            name=rec.layer.name, kind=rec.kind,
            omega=omega.numpy() if keep_factors else None,
            gamma=gamma.numpy() if keep_factors else None,
            log_eig_omega=lo.numpy(), log_eig_gamma=lg.numpy(), log_eigenvalues=logs_np,
            num_params=n_params, histogram=hist, bin_edges=edges, has_bias=bias,
            positions=int(acc.positions), valid=finite))
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
