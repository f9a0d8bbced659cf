"""``CustomActivation``: the one Keras layer every discovered function becomes."""

from __future__ import annotations

import collections
import math

from ..backend import keras, serializable, tf
from ..expr import Apply, Const, Expr, evaluate, gaussian_moments, parse
from .sharing import checked_input_shape, normalize_param_shape, parameter_shape
from .validate import check_bool, check_number, from_config


@serializable
class CustomActivation(keras.layers.Layer):
    """An activation function given as text or as an :class:`~keras_actfn.expr.Expr`.

    Args:
        fn: the function, e.g. ``"alpha*swish(beta*x)"`` or ``"max(relu(x), cosh(elu(x)))"``.
        param_shape: ``"per-layer"`` (one scalar per slot), ``"per-channel"`` (one value per
            channel of the last axis) or ``"per-neuron"`` (one value per non-batch element)
            for the learnable slots (``alpha``, ``beta``, ...), each initialized to 1 as in
            PANGAEA. On an input with no axis but the batch axis (shape ``(batch,)``, one
            scalar per example) there are no channels or neurons to share over, so
            per-channel and per-neuron fall back to one value per layer there (the
            ``param_shape`` setting itself is kept, and saved, as given).
        clip: if given, outputs are bounded to ``[-clip, clip]`` (GRAFS's constraint on
            unbounded operations, with ``clip=10``).
        center: subtract the function's Gaussian mean ``E f(Z)``, ``Z ~ N(0, 1)``, computed
            with the parameters at their initial value 1 (AutoInit++, §5.11).
        fused: compile the function's forward pass and its backward pass each as one XLA
            cluster (``jit_compile``; the backward recomputes the forward from the input, as
            Keras's ``silu`` does, so only the input is kept for it), so that the whole
            tree costs one elementwise pass each way instead of one per node. ``True``:
            fused wherever XLA takes the function (checked once per function, dtype and
            parameter shape, by lowering it to HLO on a tiny input; the unfused path
            otherwise); ``False``: never; ``"auto"`` (default): fused when a GPU is
            visible, unfused on a CPU-only machine, where it does not pay reliably
            (measured on 2 CPU cores, forward + backward: ``x*sigmoid(x)`` and one-operator
            functions 1.3-5x faster fused, but compositions such as ``arctan(x)*erf(x)``
            up to 10x slower, as XLA's CPU code for them recomputes, unvectorized, what
            the unfused kernels share; ``benchmarks/device_check.py`` measures both).
            Values and gradients equal the unfused path's within float32 round-off.

    Under a 16-bit compute dtype (``mixed_float16``) the function is computed in float32
    from the 16-bit input (the exponentials, powers, hyperbolic functions, divisions and
    logs of a discovered function overflow or lose their precision in half floats, as in
    the GRAFS cell), and the result is cast back: finite values beyond the 16-bit range
    saturate at its largest finite value instead of becoming inf (inf and NaN stay). The
    learnable slots stay float32 and are read as float32 (not autocast).

    The layer works on its own (``x = CustomActivation("x*sigmoid(x)")(x)``) and as the
    ``activation=`` of ``Dense``/``Conv`` layers. Its config holds only the canonical text,
    so saved models reload with ``keras.models.load_model(path)`` once keras_actfn is
    imported: no ``custom_objects``, ``safe_mode`` left on. Every setting is checked, from
    code or from a file alike (``center: "false"`` is an error naming ``center``, not
    centering), and every function the layer accepts prints to text that parses back
    (the tree's and the parser's limits are derived from each other), so every model that
    saves reloads.
    """

    def __init__(self, fn, param_shape="per-channel", clip=None, center=False, fused="auto",
                 **kwargs):
        super().__init__(**kwargs)
        self.fused = _check_fused(fused, type(self).__name__)
        self.fn: Expr = _function(fn, "fn", type(self).__name__)
        self.param_shape = normalize_param_shape(param_shape)
        self.clip = check_number(clip, "clip", type(self).__name__, positive=True,
                                 allow_none=True)
        self.center = check_bool(center, "center", type(self).__name__)
        self.shift = 0.0
        if self.center:
            self.shift = gaussian_moments(self.fn)[0]
            if not math.isfinite(self.shift):
                raise ValueError(f"cannot center {self.fn}: its Gaussian mean is {self.shift}")
        self._slots = {}
        self.fused_in_use = None

    @property
    def param_names(self) -> tuple:
        return self.fn.params

    def build(self, input_shape):
        mode = self.param_shape
        rank = checked_input_shape(input_shape).rank
        if rank is not None and rank <= 1:  # (batch,): no channel or neuron axis to share
            mode = "per-layer"
        shape = parameter_shape(mode, input_shape)
        for name in self.fn.params:
            # not autocast: under mixed_float16 the function reads its slots in float32
            self._slots[name] = self.add_weight(name=name, shape=shape, initializer="ones",
                                                trainable=True, autocast=False)
        super().build(input_shape)

    def call(self, inputs):
        params = [tf.convert_to_tensor(self._slots[name]) for name in self.fn.params]
        fused = None
        if self.fused is True or self.fused == "auto" and _gpu_visible():
            fused = _fused_activation(self.fn, self.shift, self.clip, inputs, params)
        self.fused_in_use = fused is not None   # what the last call (or trace) ran
        if fused is not None:
            return fused(inputs, *params)
        return _activation_tf(self.fn, self.shift, self.clip, inputs, params)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(fn=str(self.fn), param_shape=self.param_shape, clip=self.clip,
                      center=self.center, fused=self.fused)
        return config

    @classmethod
    def from_config(cls, config):
        return from_config(super().from_config, config)

    def __repr__(self):
        return f"CustomActivation({str(self.fn)!r}, param_shape={self.param_shape!r})"


# Plain TensorFlow ops with no control flow on tensors: nothing for AutoGraph to convert,
# and converting the tree's evaluation (tf_keras does, inside a layer's call) costs frames
# and time per node: a tree 64 deep exceeded Python's recursion limit, one with 7,000
# inputs took minutes to trace.
@tf.autograph.experimental.do_not_convert
def _evaluate_tf(fn, inputs, params):
    return evaluate(fn, inputs, params, backend="tf")


@tf.autograph.experimental.do_not_convert
def _activation_tf(fn, shift, clip, inputs, params):
    """The layer's output: ``fn`` at ``inputs`` with the slot values ``params`` (in
    ``fn.params`` order), minus ``shift``, clipped to ``[-clip, clip]``. A 16-bit input is
    computed in float32 and cast back, finite values saturating at the 16-bit range."""
    dtype = inputs.dtype
    wide = dtype if dtype.size >= 4 else tf.float32
    x = tf.cast(inputs, wide)
    values = {name: tf.cast(p, wide) for name, p in zip(fn.params, params)}
    y = _evaluate_tf(fn, x, values)
    if shift:
        y = y - tf.cast(shift, wide)
    if clip is not None:
        y = tf.clip_by_value(y, -tf.cast(clip, wide), tf.cast(clip, wide))
    return saturating_cast(y, dtype)


def saturating_cast(y, dtype):
    """``y`` cast to ``dtype``; into a narrower float, finite values beyond its range
    become its largest finite value (of their sign) instead of inf; inf and NaN stay."""
    dtype = tf.as_dtype(dtype)
    if y.dtype == dtype:
        return y
    if dtype.size < y.dtype.size:
        top = tf.cast(dtype.max, y.dtype)
        y = tf.where(tf.math.is_finite(y), tf.clip_by_value(y, -top, top), y)
    return tf.cast(y, dtype)


# ----------------------------------------------------------------------- fused (XLA) path
# One pair of compiled functions per (function, shift, clip), shared by every layer of that
# function (XLA compiles once per input shape and dtype), least recently used dropped first:
# a search builds thousands of functions.
_FUSED_CACHE_SIZE = 256
_FUSED = collections.OrderedDict()
_FUSABLE = collections.OrderedDict()   # (key, dtype, param shapes) -> bool, the lowering check


def _check_fused(value, layer):
    if value is True or value is False or value == "auto":
        return value
    raise ValueError(f"{layer}: fused must be true, false or 'auto', got {value!r}")


def _lru_get(cache, key, make):
    hit = cache.get(key)
    if hit is None:
        hit = make()
        cache[key] = hit
        if len(cache) > _FUSED_CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return hit


def _parameter_gradient(g, p):
    """Sum the per-element gradient ``g`` (the input's shape) down to the slot's shape
    ``p.shape`` (``()``, ``(C,)`` or the input's non-batch shape: always trailing axes).

    A product with a row of ones rather than ``reduce_sum``: XLA on a CPU reduces over the
    leading axes of a (batch, ..., channels) tensor element by element, 10x slower than
    the dot, which it hands to its matrix-multiply kernel; the sum is taken in float32."""
    size = max(p.shape.num_elements(), 1)
    rows = tf.reshape(tf.cast(g, tf.float32), [-1, size])
    ones = tf.ones(tf.stack([1, tf.shape(rows)[0]]), tf.float32)
    return tf.cast(tf.reshape(tf.matmul(ones, rows), tf.shape(p)), p.dtype)


class _FusedActivation:
    """Forward and backward of one activation, each compiled as one XLA cluster, joined
    by ``tf.custom_gradient`` (the backward recomputes the forward from the input)."""

    def __init__(self, fn, shift, clip):
        def forward(x, *params):
            return _activation_tf(fn, shift, clip, x, params)

        def backward(x, dy, *params):
            full = [tf.broadcast_to(p, tf.shape(x)) for p in params]
            with tf.GradientTape() as tape:
                tape.watch([x, *full])
                y = _activation_tf(fn, shift, clip, x, full)
            grads = tape.gradient(y, [x, *full], output_gradients=dy)
            grads = [tf.zeros_like(v) if g is None else g for v, g in zip([x, *full], grads)]
            return [grads[0]] + [_parameter_gradient(g, p) for g, p in zip(grads[1:], params)]

        self._python = (forward, backward)
        self.forward = tf.function(forward, jit_compile=True, autograph=False)
        self.backward = tf.function(backward, jit_compile=True, autograph=False)

        @tf.custom_gradient
        def run(x, *params):
            y = self.forward(x, *params)

            def grad(dy):
                return self.backward(x, dy, *params)

            return y, grad

        self.run = run

    def __call__(self, x, *params):
        return self.run(x, *params)

    def lowers(self, x, params) -> bool:
        """Whether XLA takes both functions at ``x``'s dtype and the slots' shapes (lowered
        to HLO on a tiny input, eagerly; no machine code is built)."""
        try:
            with tf.init_scope():
                tail = [d or 1 for d in x.shape.as_list()[1:]] if x.shape.rank else []
                xs = tf.zeros([2] + tail, x.dtype)
                ps = [tf.ones(p.shape, p.dtype) for p in params]
                # throwaway copies: a trace made here, inside a caller's GradientTape,
                # would be reused by the real call and record no gradient
                forward, backward = (tf.function(f, jit_compile=True, autograph=False)
                                     for f in self._python)
                forward.experimental_get_compiler_ir(xs, *ps)(stage="hlo")
                backward.experimental_get_compiler_ir(xs, xs, *ps)(stage="hlo")
            return True
        except Exception:  # noqa: BLE001 - any failure to lower means: not fusable
            return False


def _fused_activation(fn, shift, clip, inputs, params):
    """The fused callable for this function, or None where XLA cannot take it."""
    if not _xla_available():
        return None
    key = (str(fn), float(shift), clip)
    fused = _lru_get(_FUSED, key, lambda: _FusedActivation(fn, shift, clip))
    check = (key, inputs.dtype.name, inputs.shape.rank,
             tuple(tuple(p.shape.as_list()) + (p.dtype.name,) for p in params))
    if not _lru_get(_FUSABLE, check, lambda: fused.lowers(inputs, params)):
        return None
    return fused


_GPU = None


def _gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU (checked once: the devices are fixed at start-up)."""
    global _GPU
    if _GPU is None:
        _GPU = bool(tf.config.list_logical_devices("GPU"))
    return _GPU


_XLA = None


def _xla_available() -> bool:
    """Whether this TensorFlow lowers a jit-compiled function at all (checked once)."""
    global _XLA
    if _XLA is None:
        try:
            with tf.init_scope():
                probe = tf.function(lambda v: v * 2.0, jit_compile=True, autograph=False)
                probe.experimental_get_compiler_ir(tf.ones([2]))(stage="hlo")
            _XLA = True
        except Exception:  # noqa: BLE001
            _XLA = False
    return _XLA


def _function(fn, field, layer) -> Expr:
    if not isinstance(fn, (str, Expr)):
        raise ValueError(f"{layer}: {field} must be activation-function text such as "
                         f"'x*sigmoid(x)', got {type(fn).__name__}")
    return parse(fn)


@serializable
class ActivationFunction(CustomActivation):
    """The original AQuaSurF layer's interface: ``ActivationFunction(fn_name=...)``.

    Published names load as they are, in AQuaSurF's call form
    (``ActivationFunction(fn_name='max(relu(x),cosh(elu(x)))')``,
    ``'sum_n(abs(x),swish(x),sigmoid(x))'``, ``'prod_n(sigmoid(x),negative(x),hard_sigmoid(x))'``)
    or in infix form. It is a :class:`CustomActivation`: AutoInit, surgery and the
    searches treat it as one.

    Args:
        fn_name: the function's text.
        normalize: as in the original, shift and scale the function so that its output has
            mean 0 and variance 1 for a standard normal input: ``(f(x) - m) / s`` with
            ``m = E f(Z)`` and ``s^2 = Var f(Z)``, ``Z ~ N(0, 1)`` (learnable slots at 1).
            The layer's ``fn`` is that normalized function; the config keeps ``fn_name``
            and ``normalize`` as given.
        param_shape, clip, center, fused, and the Keras layer keywords: as for
            ``CustomActivation`` (AutoInit++ sets ``center`` on the layers it centers).

    Its config holds ``fn_name`` and ``normalize`` (the original's keys) besides
    ``param_shape``, ``clip`` and ``center``; saved models reload with
    ``keras.models.load_model``.
    """

    def __init__(self, fn_name, normalize=False, param_shape="per-channel", clip=None,
                 center=False, fused="auto", **kwargs):
        layer = type(self).__name__
        fn = _function(fn_name, "fn_name", layer)
        normalize = check_bool(normalize, "normalize", layer)
        if normalize:
            fn = _normalized(fn)
        super().__init__(fn, param_shape=param_shape, clip=clip, center=center, fused=fused,
                         **kwargs)
        self.fn_name = fn_name if isinstance(fn_name, str) else str(fn_name)
        self.normalize = normalize

    def get_config(self):
        config = super().get_config()
        del config["fn"]
        config.update(fn_name=self.fn_name, normalize=self.normalize)
        return config

    def __repr__(self):
        return f"ActivationFunction(fn_name={self.fn_name!r}, normalize={self.normalize!r})"


def _normalized(fn: Expr) -> Expr:
    mean, second = gaussian_moments(fn)
    variance = second - mean * mean
    if not (math.isfinite(mean) and math.isfinite(variance) and variance > 0):
        raise ValueError(f"cannot normalize {fn}: its Gaussian mean and variance are "
                         f"{mean} and {max(variance, 0.0) if math.isfinite(variance) else variance}")
    try:
        return Apply("div", Apply("sub", fn, Const(mean)), Const(math.sqrt(variance)))
    except ValueError as err:  # already at the depth or size limit
        raise ValueError(f"cannot normalize {fn}: {err}") from err


def activation_layer(spec, **kwargs):
    """A fresh activation layer from a flexible spec (one new layer per call).

    ``spec`` may be activation-function text (``"x*sigmoid(x)"``) or an ``Expr`` ->
    ``CustomActivation``; a Keras activation name (``"relu"``) -> ``keras.layers.Activation``;
    a zero-argument factory returning a layer (``lambda: PReLU()``) -> its result; a Keras
    activation callable (``keras.activations.relu``) -> ``Activation`` wrapping it.
    ``kwargs`` go to ``CustomActivation`` (``param_shape``, ``clip``, ``center``, ``name``).
    A ``name`` names the layer made from text, an ``Expr``, a Keras name or an activation
    callable; a factory's layer keeps the name the factory gave it (sites of one model
    built from one factory would otherwise need unique names from the caller).
    Text is sorted as by :func:`~keras_actfn.layers.spec.resolve_spec`: a bare name Keras
    knows is Keras's activation, anything else is parsed.
    """
    from .spec import resolve_spec

    return resolve_spec(spec).layer(**kwargs)
