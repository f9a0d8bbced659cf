"""Image augmentations of the papers as TensorFlow batch functions.

The recipes of the seeds augment CIFAR-style images with a random horizontal flip and a random
crop of the image padded with ``p`` zero pixels on every side (``p=4`` for Wide ResNets and
ResNets, dissertation A.1/A.2; ``p=5`` for All-CNN-C, A.2.2 — Table A.2 of chapter 6 swaps
the two, which is why the pad is a parameter). Every example of a batch draws its own flip
and its own offset, and all randomness comes from ``tf.random.stateless_*`` ops driven by a
seed tensor of shape ``[2]``: the same batch and seed give the same output on any run.

Functions take and return NHWC batches of any dtype (uint8 or float); padding inserts zeros.
:class:`Task` applies ``augment`` after ``preprocess``, so with featurewise normalization the
padded border is the mean pixel of the training set, as with Keras' ``ImageDataGenerator``
followed by zero padding.

:class:`TrivialAugment` adds TrivialAugment (Müller & Hutter 2021, the "Wide" variant of
torchvision's ``TrivialAugmentWide``): every example draws one of :data:`TA_OPS` uniformly,
one of ``num_bins=31`` strengths uniformly and, for the signed operations, a sign, and gets
that one operation. The ranges are those of the wide augmentation space: shear factors in
[-0.99, 0.99] (about the top-left corner), translations of up to 32 whole pixels, rotations
of up to 135 degrees (about the centre), enhancement factors ``1 + m`` for ``m`` in
[-0.99, 0.99] (brightness, colour saturation, contrast, sharpness), posterization to
``8 - round(i / 5)`` bits (8 down to 2), solarization thresholds 255 down to 0, and the
parameter-free Identity, AutoContrast and Equalize. The operations reproduce Pillow's
definitions on uint8 images (what torchvision applies to the PIL images of a CIFAR pipeline):
the enhancements blend with a degenerate image and truncate, colour uses Pillow's integer
luma, contrast the rounded mean luma, sharpness Pillow's SMOOTH filter with the border kept,
and the geometric operations sample the nearest pixel at Pillow's pixel centres and fill
pixels that come from outside the image with 0 (black; torchvision's default ``fill``).

Pixel range of :class:`TrivialAugment`: integer inputs (uint8) are pixels in [0, 255]. Float
inputs are taken as ``(pixel * pixel_scale - mean) / std`` -- the output of
:class:`~keras_actfn.data.tfds_tasks.Standardize` -- and mapped back to pixels (rounded to
integers and clipped to [0, 255]) before the operations and forward again after them, so a
float batch is augmented exactly as its uint8 source would be and then preprocessed. The
default (``pixel_scale=1/255``, no mean or std) reads floats in [0, 1];
``make_augment(..., preprocess=task.preprocess)`` reads mean and std off a task's
``Standardize``. The pad-and-crop and flip of a :class:`TrivialAugment` (torchvision order:
crop, flip, then the operation) also run on pixels, so their fill is black as in torchvision,
not the normalized 0 of :class:`FlipAndCrop`.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def _seed_pair(seed):
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    return seed


def _check_images(images):
    images = tf.convert_to_tensor(images)
    if images.shape.rank is not None and images.shape.rank != 4:
        raise ValueError(f"expected a batch of images of shape (batch, height, width, "
                         f"channels); received shape {images.shape}")
    return images


def random_flip_left_right(images, seed):
    """Mirror each image left-right with probability 1/2, independently per example."""
    images = _check_images(images)
    n = tf.shape(images)[0]
    flip = tf.random.stateless_uniform([n], seed=_seed_pair(seed)) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


def crop_offsets(batch_size, pad: int, seed):
    """The ``(batch_size, 2)`` int32 (row, column) offsets into the padded image that
    :func:`random_pad_crop` uses: uniform on ``{0, ..., 2*pad}``; ``offset - pad`` is the
    shift of the content (positive: the image moves up/left)."""
    return tf.random.stateless_uniform([batch_size, 2], seed=_seed_pair(seed), minval=0,
                                       maxval=2 * pad + 1, dtype=tf.int32)


def random_pad_crop(images, pad: int, seed):
    """Pad every image with ``pad`` zeros on all sides and crop a random window of the
    original size from it, an independent window per example.

    The result is the image shifted by up to ``pad`` pixels in each direction, with zeros
    where the shift uncovers the border.
    """
    images = _check_images(images)
    pad = int(pad)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if pad == 0:
        return images
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = crop_offsets(n, pad, seed)
    # gather rows then columns per example: a batched crop with per-example offsets that
    # stays one vectorized op on any device
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    out = tf.gather(out, cols, axis=2, batch_dims=1)
    return tf.ensure_shape(out, images.shape)


class FlipAndCrop:
    """``augment(x, y, seed) -> (x, y)`` for :class:`~keras_actfn.data.Task`: random
    horizontal flip (if ``flip``) and pad-and-random-crop by ``pad`` pixels (if ``pad``).

    A plain picklable object (not a closure) so a task can travel to worker processes.
    """

    def __init__(self, flip: bool = True, pad: int = 4):
        pad = int(pad)
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        self.flip = bool(flip)
        self.pad = pad

    def __call__(self, x, y, seed):
        # two independent streams from one seed: flips and offsets must not be correlated
        seeds = tf.random.experimental.stateless_split(_seed_pair(seed), num=2)
        if self.pad:
            x = random_pad_crop(x, self.pad, seeds[0])
        if self.flip:
            x = random_flip_left_right(x, seeds[1])
        return x, y

    def get_config(self):
        return {"flip": self.flip, "pad": self.pad}

    def __eq__(self, other):
        return isinstance(other, FlipAndCrop) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((FlipAndCrop, self.flip, self.pad))

    def __repr__(self):
        return f"FlipAndCrop(flip={self.flip}, pad={self.pad})"


# -- TrivialAugment (wide) ------------------------------------------------------------------

#: The operations of TrivialAugment's wide augmentation space, in torchvision's order; an
#: example's draw is an index into this tuple.
TA_OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate",
          "brightness", "color", "contrast", "sharpness", "posterize", "solarize",
          "autocontrast", "equalize")
#: Operations whose strength gets a random sign.
TA_SIGNED_OPS = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness",
                 "color", "contrast", "sharpness")
#: Number of discrete strengths (``0 .. num_bins - 1``) of TrivialAugment.
TA_NUM_BINS = 31
_OP = {name: i for i, name in enumerate(TA_OPS)}
_GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
_ENHANCE = ("brightness", "color", "contrast", "sharpness")


def _is_op(ops, *names):
    return tf.reduce_any(tf.stack([tf.equal(ops, _OP[name]) for name in names]), axis=0)


def _per_example(value, n, dtype=tf.float32):
    return tf.broadcast_to(tf.cast(value, dtype), [n])


def _channels(images):
    channels = images.shape[-1]
    if channels is None:
        raise ValueError("TrivialAugment needs a static number of channels; received "
                         f"images of shape {images.shape}")
    if channels not in (1, 3):
        raise ValueError(f"the colour operations need 1 (grayscale) or 3 (RGB) channels; "
                         f"received images of shape {images.shape}")
    return channels


def _affine(pix, matrices):
    """Nearest-pixel affine warp with Pillow's ``AFFINE`` convention, zeros outside.

    ``matrices`` is ``(n, 6)``: ``(a, b, c, d, e, f)`` sends the output pixel centre ``(x +
    0.5, y + 0.5)`` to the input point ``(a X + b Y + c, d X + e Y + f)`` whose pixel
    (``floor`` of each coordinate) is read. TensorFlow's transform reads pixel ``round(M @
    (x, y, 1))``, so the offsets absorb the half-pixel shifts.
    """
    a, b, c, d, e, f = tf.unstack(tf.cast(matrices, tf.float32), num=6, axis=1)
    zeros = tf.zeros_like(a)
    transforms = tf.stack([a, b, 0.5 * (a + b) + c - 0.5, d, e, 0.5 * (d + e) + f - 0.5,
                           zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=pix, transforms=transforms, output_shape=tf.shape(pix)[1:3],
        fill_value=tf.constant(0.0, tf.float32), interpolation="NEAREST",
        fill_mode="CONSTANT")
    return tf.ensure_shape(out, pix.shape)


def _apply_lut(pix, lut):
    """``out[b, i, j, k] = lut[b, pix[b, i, j, k], k]`` for a ``(n, 256, c)`` table."""
    shape = tf.shape(pix)
    n, c = shape[0], shape[3]
    index = tf.cast(pix, tf.int32)
    flat = ((tf.range(n)[:, None, None, None] * 256 + index) * c
            + tf.range(c)[None, None, None, :])
    out = tf.gather(tf.reshape(tf.cast(lut, tf.float32), [-1]), flat)
    return tf.ensure_shape(out, pix.shape)


def _autocontrast_lut(pix):
    """Pillow's ``ImageOps.autocontrast`` (cutoff 0) per example and channel: the lowest
    value goes to 0, the highest to 255, ``int(v * scale + offset)`` in between (double
    precision, as Pillow computes it); a constant channel is left alone."""
    lo = tf.cast(tf.reduce_min(pix, axis=[1, 2]), tf.float64)[:, None, :]  # (n, 1, c)
    hi = tf.cast(tf.reduce_max(pix, axis=[1, 2]), tf.float64)[:, None, :]
    values = tf.range(256, dtype=tf.float64)[None, :, None]
    spread = hi > lo
    scale = 255.0 / tf.where(spread, hi - lo, tf.ones_like(hi))
    offset = -lo * scale
    stretched = tf.floor(tf.clip_by_value(values * scale + offset, 0.0, 255.0))
    return tf.where(spread, stretched, values + tf.zeros_like(stretched))


def _equalize_lut(pix):
    """Pillow's ``ImageOps.equalize`` per example and channel (and torchvision's tensor
    version): with ``h`` the histogram, ``step = (pixels - h[last non-empty bin]) // 255``
    and ``lut[v] = (step // 2 + sum(h[:v])) // step`` (at most 255); identity when ``step``
    is 0. (Pillow before 10 divided by 256.)"""
    index = tf.cast(pix, tf.int32)
    shape = tf.shape(index)
    n, height, width, c = shape[0], shape[1], shape[2], shape[3]
    segment = ((tf.range(n)[:, None, None, None] * c + tf.range(c)[None, None, None, :]) * 256
               + index)
    size = n * c * 256
    hist = tf.math.bincount(tf.reshape(segment, [-1]), minlength=size, maxlength=size,
                            dtype=tf.int32)
    hist = tf.reshape(hist, [n, c, 256])
    last = 255 - tf.argmax(tf.reverse(tf.cast(hist > 0, tf.int32), axis=[2]), axis=2,
                           output_type=tf.int32)
    last_count = tf.gather(hist, last[..., None], axis=2, batch_dims=2)[..., 0]  # (n, c)
    step = (height * width - last_count) // 255
    before = tf.cumsum(hist, axis=2, exclusive=True)
    lut = tf.minimum((step[..., None] // 2 + before) // tf.maximum(step, 1)[..., None], 255)
    identity = tf.broadcast_to(tf.range(256), tf.shape(lut))
    lut = tf.where(step[..., None] > 0, lut, identity)
    return tf.transpose(lut, [0, 2, 1])  # (n, 256, c)


def _luma(pix):
    """Pillow's ``convert("L")``: ``(19595 R + 38470 G + 7471 B + 2**15) >> 16``, as
    ``(n, h, w, 1)`` floats; a one-channel image is its own luma."""
    if _channels(pix) == 1:
        return pix
    r, g, b = tf.unstack(tf.cast(pix, tf.int32), num=3, axis=-1)
    luma = (19595 * r + 38470 * g + 7471 * b + 32768) // 65536
    return tf.cast(luma, tf.float32)[..., None]


def _smooth(pix):
    """Pillow's ``ImageFilter.SMOOTH`` (3x3 kernel ``[[1,1,1],[1,5,1],[1,1,1]] / 13``,
    rounded), with the one-pixel border of the image kept as it is."""
    channels = _channels(pix)
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]])
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    # integer sums below 2**24 are exact in float32, whatever the summation order
    summed = tf.nn.depthwise_conv2d(pix, kernel, strides=[1, 1, 1, 1], padding="SAME")
    smoothed = tf.round(summed / 13.0)  # never a tie: 13 is odd
    shape = tf.shape(pix)
    rows = tf.range(shape[1])
    cols = tf.range(shape[2])
    inner_rows = (rows > 0) & (rows < shape[1] - 1)
    inner_cols = (cols > 0) & (cols < shape[2] - 1)
    inner = inner_rows[None, :, None, None] & inner_cols[None, None, :, None]
    return tf.where(inner, smoothed, pix)


def apply_ta_ops(images, ops, magnitudes):
    """Apply TrivialAugment operation ``TA_OPS[ops[i]]`` with parameter ``magnitudes[i]``
    to example ``i`` of a batch of pixel images.

    ``images``: NHWC, 1 or 3 channels, integer pixel values in [0, 255] (uint8, or floats
    holding whole numbers); the result has the same dtype. ``ops``: ``(n,)`` indices into
    :data:`TA_OPS` (or one index for all). ``magnitudes``: ``(n,)`` or a scalar, the
    operation's own parameter:

    - ``shear_x``/``shear_y``: the shear factor ``m`` (input point ``x + m y`` /
      ``y + m x``, about the top-left corner, as torchvision's ``center=[0, 0]``);
    - ``translate_x``/``translate_y``: pixels (positive moves the content right/down);
    - ``rotate``: degrees counter-clockwise about the image centre;
    - ``brightness``/``color``/``contrast``/``sharpness``: the enhancement factor
      (1 leaves the image alone);
    - ``posterize``: bits kept (0..8); ``solarize``: threshold (pixels >= it are inverted);
    - ``identity``/``autocontrast``/``equalize``: ignored.

    All examples go through one vectorized pipeline (warp, then lookup table, then blend),
    each stage the identity for the examples whose operation belongs to another stage.
    """
    images = _check_images(images)
    _channels(images)
    pix = tf.cast(images, tf.float32)
    shape = tf.shape(pix)
    n = shape[0]
    ops = _per_example(ops, n, tf.int32)
    mag = _per_example(magnitudes, n)

    # 1. geometric operations: one warp, the identity for every other operation
    ones, zeros = tf.ones_like(mag), tf.zeros_like(mag)
    rot = _is_op(ops, "rotate")
    angle = -mag * (math.pi / 180.0)  # Pillow's rotate: counter-clockwise for angle > 0
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx = tf.cast(shape[2], tf.float32) / 2.0
    cy = tf.cast(shape[1], tf.float32) / 2.0
    a = tf.where(rot, cos, ones)
    b = tf.where(rot, sin, tf.where(_is_op(ops, "shear_x"), mag, zeros))
    c = tf.where(rot, cx - cos * cx - sin * cy,
                 tf.where(_is_op(ops, "translate_x"), -mag, zeros))
    d = tf.where(rot, -sin, tf.where(_is_op(ops, "shear_y"), mag, zeros))
    e = tf.where(rot, cos, ones)
    f = tf.where(rot, cy + sin * cx - cos * cy,
                 tf.where(_is_op(ops, "translate_y"), -mag, zeros))
    pix = _affine(pix, tf.stack([a, b, c, d, e, f], axis=1))

    # 2. lookup-table operations, per example (and channel)
    values = tf.range(256, dtype=tf.int32)[None, :]
    bits = tf.clip_by_value(tf.cast(tf.round(mag), tf.int32), 0, 8)
    keep = 255 - (tf.bitwise.left_shift(tf.ones_like(bits), 8 - bits) - 1)
    posterized = tf.bitwise.bitwise_and(values, keep[:, None])  # (n, 256)
    solarized = tf.where(tf.cast(values, tf.float32) >= mag[:, None], 255 - values, values)
    lut = tf.broadcast_to(values[:, :, None], [n, 256, shape[3]])
    per_op = ((_is_op(ops, "posterize"), posterized[:, :, None]),
              (_is_op(ops, "solarize"), solarized[:, :, None]),
              (_is_op(ops, "autocontrast"), tf.cast(_autocontrast_lut(pix), tf.int32)),
              (_is_op(ops, "equalize"), _equalize_lut(pix)))
    for chosen, table in per_op:
        lut = tf.where(chosen[:, None, None], table, lut)
    pix = _apply_lut(pix, lut)

    # 3. enhancements: Pillow's blend(degenerate, image, factor), truncated and clipped
    luma = _luma(pix)
    pixels = tf.cast(shape[1] * shape[2], tf.float64)
    mean_luma = tf.floor(tf.reduce_sum(tf.cast(luma, tf.float64), axis=[1, 2, 3]) / pixels
                         + 0.5)
    degenerate = pix
    per_op = ((_is_op(ops, "brightness"), tf.zeros_like(pix)),
              (_is_op(ops, "color"), luma + tf.zeros_like(pix)),
              (_is_op(ops, "contrast"),
               tf.cast(mean_luma, tf.float32)[:, None, None, None] + tf.zeros_like(pix)),
              (_is_op(ops, "sharpness"), _smooth(pix)))
    for chosen, target in per_op:
        degenerate = tf.where(chosen[:, None, None, None], target, degenerate)
    factor = tf.where(_is_op(ops, *_ENHANCE), mag, ones)[:, None, None, None]
    # with factor 1 this is exactly pix: integers survive the float32 arithmetic
    pix = tf.floor(tf.clip_by_value(degenerate + factor * (pix - degenerate), 0.0, 255.0))
    return tf.ensure_shape(tf.cast(pix, images.dtype), images.shape)


def ta_draws(batch_size, seed, num_bins: int = TA_NUM_BINS):
    """TrivialAugment's random choices for ``batch_size`` examples: ``(ops, bins, negate)``,
    int32 indices into :data:`TA_OPS`, int32 strengths in ``0 .. num_bins - 1`` and bools
    (negate the strength of a signed operation), each uniform and independent."""
    num_bins = _check_bins(num_bins)
    seeds = tf.random.experimental.stateless_split(_seed_pair(seed), num=3)
    ops = tf.random.stateless_uniform([batch_size], seed=seeds[0], minval=0,
                                      maxval=len(TA_OPS), dtype=tf.int32)
    bins = tf.random.stateless_uniform([batch_size], seed=seeds[1], minval=0,
                                       maxval=num_bins, dtype=tf.int32)
    negate = tf.random.stateless_uniform([batch_size], seed=seeds[2], minval=0, maxval=2,
                                         dtype=tf.int32) > 0
    return ops, bins, negate


def ta_magnitudes(ops, bins, negate, num_bins: int = TA_NUM_BINS):
    """The parameter (see :func:`apply_ta_ops`) of strength ``bins`` (``0 .. num_bins -
    1``; ``s = bins / (num_bins - 1)``) of each operation in TrivialAugment's wide space:

    - shear: ``0.99 s``; translate: ``int(32 s)`` pixels; rotate: ``135 s`` degrees;
    - brightness, color, contrast, sharpness: factor ``1 + 0.99 s``;
    - (all of these negated where ``negate``; the factor becomes ``1 - 0.99 s``)
    - posterize: ``8 - round(6 s)`` bits; solarize: threshold ``255 (1 - s)``;
    - identity, autocontrast, equalize: 0.
    """
    num_bins = _check_bins(num_bins)
    ops = tf.convert_to_tensor(ops, tf.int32)
    bins = tf.cast(bins, tf.float32)
    span = float(num_bins - 1)

    def scaled(top):  # top * bins / (num_bins - 1): exact where the result is representable
        return top * bins / span

    sign = tf.where(tf.convert_to_tensor(negate), -1.0, 1.0)
    zeros = tf.zeros_like(bins)
    table = {
        "shear_x": sign * scaled(0.99), "shear_y": sign * scaled(0.99),
        "translate_x": sign * tf.floor(scaled(32.0)),
        "translate_y": sign * tf.floor(scaled(32.0)),
        "rotate": sign * scaled(135.0),
        "posterize": 8.0 - tf.round(bins * 6.0 / span),
        "solarize": 255.0 - scaled(255.0),
    }
    for name in _ENHANCE:
        table[name] = 1.0 + sign * scaled(0.99)
    out = zeros
    for name, value in table.items():
        out = tf.where(tf.equal(ops, _OP[name]), value, out)
    return out


def _check_bins(num_bins):
    num_bins = int(num_bins)
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2, got {num_bins}")
    return num_bins


def trivial_augment(images, seed, num_bins: int = TA_NUM_BINS):
    """TrivialAugment (wide) on a batch of pixel images (uint8, or floats holding whole
    numbers in [0, 255]; see :func:`apply_ta_ops`): each example gets one uniformly drawn
    operation at one uniformly drawn strength (:func:`ta_draws`, :func:`ta_magnitudes`)."""
    images = _check_images(images)
    ops, bins, negate = ta_draws(tf.shape(images)[0], seed, num_bins)
    return apply_ta_ops(images, ops, ta_magnitudes(ops, bins, negate, num_bins))


def _floats(values, what):
    if values is None:
        return None
    values = tuple(float(v) for v in np.asarray(values, dtype=np.float32).reshape(-1))
    if what == "std" and any(not v > 0 for v in values):
        raise ValueError(f"std must be positive, got {values}")
    return values


class TrivialAugment:
    """``augment(x, y, seed) -> (x, y)`` for :class:`~keras_actfn.data.Task`:
    TrivialAugment (wide), after an optional pad-and-random-crop by ``pad`` pixels and an
    optional random horizontal flip (torchvision's CIFAR order: crop, flip, then TA).

    Integer batches are pixels in [0, 255]. Float batches hold ``(pixel * pixel_scale -
    mean) / std`` (per-channel ``mean``/``std``, both optional): they are turned back into
    whole pixels (rounded, clipped to [0, 255]), augmented, and mapped forward with the same
    float32 arithmetic as :class:`~keras_actfn.data.tfds_tasks.Standardize`, so the output
    equals preprocessing the augmented uint8 image. The defaults read floats in [0, 1];
    pass ``pixel_scale=1`` for floats in [0, 255]. Pixels the geometric operations and the
    padding bring in from outside the image are black (pixel 0), i.e. ``-mean / std`` after
    normalization, as with torchvision's defaults.

    A plain picklable object (not a closure) so a task can travel to worker processes.
    """

    def __init__(self, flip: bool = False, pad: int = 0, num_bins: int = TA_NUM_BINS,
                 mean=None, std=None, pixel_scale: float = 1.0 / 255.0):
        pad = int(pad)
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        pixel_scale = float(pixel_scale)
        if not pixel_scale > 0:
            raise ValueError(f"pixel_scale must be positive, got {pixel_scale}")
        self.flip = bool(flip)
        self.pad = pad
        self.num_bins = _check_bins(num_bins)
        self.mean = _floats(mean, "mean")
        self.std = _floats(std, "std")
        self.pixel_scale = pixel_scale

    def to_pixels(self, x):
        """Float32 whole pixels in [0, 255] of a batch (see the class docstring)."""
        x = tf.convert_to_tensor(x)
        if x.dtype.is_integer:
            return tf.cast(x, tf.float32)
        p = tf.cast(x, tf.float32)
        if self.std is not None:
            p = p * tf.constant(self.std, tf.float32)
        if self.mean is not None:
            p = p + tf.constant(self.mean, tf.float32)
        p = p / tf.constant(self.pixel_scale, tf.float32)
        return tf.clip_by_value(tf.round(p), 0.0, 255.0)

    def from_pixels(self, pixels, dtype):
        """The inverse of :meth:`to_pixels`, into ``dtype``."""
        dtype = tf.as_dtype(dtype)
        if dtype.is_integer:
            return tf.cast(pixels, dtype)
        x = tf.cast(pixels, tf.float32) * tf.constant(self.pixel_scale, tf.float32)
        if self.mean is not None:
            x = x - tf.constant(self.mean, tf.float32)
        if self.std is not None:
            x = x / tf.constant(self.std, tf.float32)
        return tf.cast(x, dtype)

    def __call__(self, x, y, seed):
        x = _check_images(x)
        seeds = tf.random.experimental.stateless_split(_seed_pair(seed), num=3)
        pix = self.to_pixels(x)
        if self.pad:
            pix = random_pad_crop(pix, self.pad, seeds[0])
        if self.flip:
            pix = random_flip_left_right(pix, seeds[1])
        pix = trivial_augment(pix, seeds[2], self.num_bins)
        return tf.ensure_shape(self.from_pixels(pix, x.dtype), x.shape), y

    def get_config(self):
        return {"flip": self.flip, "pad": self.pad, "num_bins": self.num_bins,
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std),
                "pixel_scale": self.pixel_scale}

    def __eq__(self, other):
        return isinstance(other, TrivialAugment) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((TrivialAugment, self.flip, self.pad, self.num_bins, self.mean, self.std,
                     self.pixel_scale))

    def __repr__(self):
        extra = "" if self.num_bins == TA_NUM_BINS else f", num_bins={self.num_bins}"
        scale = "" if self.pixel_scale == 1.0 / 255.0 else f", pixel_scale={self.pixel_scale}"
        norm = "" if self.mean is None and self.std is None else \
            f", mean={self.mean}, std={self.std}"
        return f"TrivialAugment(flip={self.flip}, pad={self.pad}{extra}{norm}{scale})"


def pixel_options(preprocess):
    """``mean``, ``std`` and ``pixel_scale`` of :class:`TrivialAugment` for a task whose
    ``preprocess`` is ``None`` (inputs already pixels, or floats in [0, 1]) or a
    :class:`~keras_actfn.data.tfds_tasks.Standardize`; raises ``TypeError`` for any other
    preprocessing, whose pixel range it cannot tell."""
    if preprocess is None:
        return {}
    from .tfds_tasks import Standardize  # lazy: tfds_tasks imports this module

    if isinstance(preprocess, Standardize):
        return {"mean": preprocess.mean, "std": preprocess.std, "pixel_scale": 1.0 / 255.0}
    raise TypeError(f"cannot tell the pixel range behind preprocess={preprocess!r}; build "
                    "TrivialAugment(mean=..., std=..., pixel_scale=...) yourself")


def make_augment(flip: bool = True, pad: int = 4, trivialaugment: bool = False,
                 preprocess=None):
    """The augmentation of a recipe: ``make_augment(flip=True, pad=5)`` for All-CNN-C,
    ``make_augment(flip=False, pad=4)`` for digits. Returns ``None`` when it would do
    nothing (``flip=False, pad=0`` and no TrivialAugment), which is what :class:`Task` takes
    for "no augmentation".

    ``trivialaugment=True`` gives a :class:`TrivialAugment` (with the flip and pad, if any)
    whose pixel range comes from the task's ``preprocess`` (:func:`pixel_options`);
    ``preprocess`` is ignored otherwise.
    """
    if trivialaugment:
        return TrivialAugment(flip=flip, pad=pad, **pixel_options(preprocess))
    if not flip and not int(pad):
        return None
    return FlipAndCrop(flip=flip, pad=pad)


__all__ = ["random_flip_left_right", "random_pad_crop", "crop_offsets", "FlipAndCrop",
           "make_augment", "TA_OPS", "TA_SIGNED_OPS", "TA_NUM_BINS", "apply_ta_ops",
           "ta_draws", "ta_magnitudes", "trivial_augment", "TrivialAugment", "pixel_options"]
