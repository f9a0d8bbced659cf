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
"""

from __future__ import annotations

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


def make_augment(flip: bool = True, pad: int = 4):
    """The augmentation of a recipe: ``make_augment(flip=True, pad=5)`` for All-CNN-C,
    ``make_augment(flip=False, pad=4)`` for digits. Returns ``None`` when it would do
    nothing (``flip=False, pad=0``), which is what :class:`Task` takes for "no augmentation".
    """
    if not flip and not int(pad):
        return None
    return FlipAndCrop(flip=flip, pad=pad)


__all__ = ["random_flip_left_right", "random_pad_crop", "crop_offsets", "FlipAndCrop",
           "make_augment"]
