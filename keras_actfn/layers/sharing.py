"""Parameter sharing for learnable activation layers: per-layer, per-channel, per-neuron.

* ``"per-layer"``: one value for the whole layer, a weight of shape ``()`` (``(k,)`` for a
  parameter with ``k`` coefficients).
* ``"per-channel"``: one value per entry of the last (channel) axis, ``(C,)`` or ``(C, k)``.
* ``"per-neuron"``: one value per non-batch element, ``input_shape[1:]`` (+ ``(k,)``).
"""

from __future__ import annotations

from ..backend import tf

PARAM_SHAPES = ("per-layer", "per-channel", "per-neuron")

#: the most values one learnable parameter may hold (2**27: 512 MiB of float32). A
#: per-neuron parameter holds one value per input element of an example, so only a
#: ``.keras`` file's made-up input shape gets near it; past it building is refused instead
#: of trying to allocate the memory.
MAX_PARAMETER_VALUES = 2 ** 27


def normalize_param_shape(param_shape) -> str:
    """The canonical spelling of ``param_shape``; both ``per-layer`` and ``per_layer`` work.

    Matching is case-insensitive; anything other than the three sharing modes raises
    ``ValueError`` naming the accepted values.
    """
    if isinstance(param_shape, str):
        canonical = param_shape.strip().lower().replace("_", "-")
        if canonical in PARAM_SHAPES:
            return canonical
    raise ValueError(
        f"param_shape must be one of {', '.join(repr(p) for p in PARAM_SHAPES)} "
        f"(underscores may replace the hyphens), got {param_shape!r}"
    )


def parameter_shape(param_shape, input_shape, coefficients=None) -> tuple:
    """Shape of a learnable parameter shared according to ``param_shape``.

    Args:
      param_shape: ``"per-layer"``, ``"per-channel"`` or ``"per-neuron"`` (``_`` may replace
        ``-``).
      input_shape: the layer's input shape including the batch axis (tuple, list or
        ``tf.TensorShape``; the batch size may be unknown).
      coefficients: if given, the number ``k`` of coefficients the parameter holds; it is
        appended as the last axis, so per-layer gives ``(k,)``.

    Returns:
      A tuple of ints: ``()`` per layer, ``(C,)`` per channel (``C`` = last axis),
      ``input_shape[1:]`` per neuron, each followed by ``(k,)`` when ``coefficients`` is set.

    Raises:
      ValueError: for an unknown ``param_shape``; for per-channel when the input has no
        non-batch axis or its last axis is unknown; for per-neuron when the input has no
        non-batch axis or any non-batch axis is unknown (``None``).
    """
    mode = normalize_param_shape(param_shape)
    if coefficients is None:
        tail = ()
    else:
        if isinstance(coefficients, bool) or int(coefficients) != coefficients \
                or int(coefficients) < 1:
            raise ValueError(f"coefficients must be a positive integer, got {coefficients!r}")
        tail = (int(coefficients),)
    if mode == "per-layer":
        return tail

    shape = checked_input_shape(input_shape)
    if shape.rank is None:
        raise ValueError(f"{mode} parameters need an input of known rank, got {input_shape}")
    dims = shape.as_list()
    if len(dims) < 2:
        raise ValueError(
            f"{mode} parameters need an input with a batch axis and at least one more axis, "
            f"got input shape {tuple(dims)}"
        )
    if mode == "per-channel":
        if dims[-1] is None:
            raise ValueError(
                f"per-channel parameters need a known last (channel) axis, got input shape "
                f"{tuple(dims)}"
            )
        return _bounded((int(dims[-1]),) + tail, input_shape)
    unknown = [i for i, d in enumerate(dims) if i > 0 and d is None]
    if unknown:
        raise ValueError(
            f"per-neuron parameters need every non-batch axis known, but axis "
            f"{', '.join(map(str, unknown))} of input shape {tuple(dims)} is None; use "
            f"'per-channel' or 'per-layer', or give the model a fixed input size"
        )
    return _bounded(tuple(int(d) for d in dims[1:]) + tail, input_shape)


def checked_input_shape(input_shape):
    """``input_shape`` as a ``tf.TensorShape``; every known axis a whole number >= 0."""
    try:
        dims = None if input_shape is None else list(tf.TensorShape(input_shape))
    except (TypeError, ValueError) as err:
        raise ValueError(f"input shape must be a list of whole numbers or None, got "
                         f"{input_shape!r}") from err
    if dims is not None:
        for d in dims:
            d = getattr(d, "value", d)  # TF1-style Dimension
            if d is not None and (isinstance(d, bool) or int(d) != d or d < 0):
                raise ValueError(f"input shape must be a list of whole numbers >= 0 or None, "
                                 f"got {input_shape!r}")
    return tf.TensorShape(input_shape)


def _bounded(shape: tuple, input_shape) -> tuple:
    values = 1
    for d in shape:
        values *= d
    if values > MAX_PARAMETER_VALUES:
        raise ValueError(f"a parameter for input shape {tuple(input_shape)} would hold "
                         f"{values:,} values, more than {MAX_PARAMETER_VALUES:,}; use "
                         f"param_shape='per-channel' or 'per-layer'")
    return shape
