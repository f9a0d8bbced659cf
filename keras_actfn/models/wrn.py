"""Wide Residual Networks WRN-d-k (Zagoruyko & Komodakis, 2016) for 32x32 images.

Where the numbers come from: Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016),
§2 and Table 1: a 3x3 stem convolution with 16 filters, then three groups of ``n`` residual
blocks with ``16k``, ``32k`` and ``64k`` filters (the second and third groups start with
stride 2), with ``depth = 6n + 4`` (WRN-28-10: n = 4 blocks per group, 6n = 24 3x3
convolutions in the blocks). Blocks are "B(3,3)" pre-activation blocks::

    BN -> act -> conv3x3(stride) -> BN -> act -> Dropout -> conv3x3     -+-> Add
    shortcut: identity, or a 1x1 convolution (stride) of the first BN -> act output when
              the block changes the width or resolution

followed by BN -> act -> global average pooling -> Dense -> softmax. Convolutions have no
biases, He-normal initial weights and L2 weight decay 5e-4; dropout 0.3 between the two
convolutions of a block is the paper's regularized setting. The paper's parameter counts
(CIFAR-10): WRN-40-4 8.9M, WRN-16-8 11.0M, WRN-28-10 36.5M.

Activation sites: two per block plus the final one, ``depth - 3`` in all (the dissertation's
PANGAEA experiments, A.2.2, replace every ReLU of WRN-10-4 and WRN-16-8 with the searched
function).
"""

from __future__ import annotations

from ..backend import keras
from .common import bn_act_factory, conv_factory, softmax_head

BASE_WIDTHS = (16, 32, 64)


def wrn_blocks_per_group(depth: int) -> int:
    """``n`` of WRN-``depth``: ``depth = 6n + 4``."""
    depth = int(depth)
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...); "
                         f"got {depth}")
    return (depth - 4) // 6


def wide_resnet(depth, width, dropout=0.3, activation="relu", input_shape=(32, 32, 3),
                num_classes=10, weight_decay=5e-4, kernel_initializer="he_normal", name=None,
                **act_kwargs):
    """Build WRN-``depth``-``width`` as a functional Keras model.

    Args:
        depth: ``6n + 4`` (10, 16, 22, 28, 40).
        width: the widening factor ``k`` (groups have 16k, 32k, 64k filters).
        dropout: rate between the two convolutions of each block (0 for none).
        activation: text, a Keras name, an ``Expr`` or a zero-argument layer factory.
        input_shape: ``(height, width, channels)``; 16x16 makes fast tests.
        num_classes: width of the softmax read-out.
        weight_decay: L2 factor on convolution and dense kernels (None or 0: none).
        kernel_initializer: of every convolution (the paper: He-normal).
        name: model name (default ``wrn_<depth>_<width>``).
        act_kwargs: passed to ``CustomActivation`` for text activations.
    """
    blocks = wrn_blocks_per_group(depth)
    width = int(width)
    if width < 1:
        raise ValueError(f"WRN width (widening factor k) must be a positive integer; got {width}")
    conv = conv_factory(kernel_initializer, weight_decay)
    bn_act = bn_act_factory(activation, **act_kwargs)

    inputs = keras.Input(tuple(input_shape))
    x = conv(inputs, 16, 3, 1, "stem_conv")
    channels = 16
    for group, base in enumerate(BASE_WIDTHS, start=1):
        filters = base * width
        for block in range(1, blocks + 1):
            prefix = f"group{group}_block{block}"
            strides = 2 if group > 1 and block == 1 else 1
            preact = bn_act(x, f"{prefix}_pre")
            y = conv(preact, filters, 3, strides, f"{prefix}_conv1")
            y = bn_act(y, f"{prefix}_mid")
            if dropout:
                y = keras.layers.Dropout(dropout, name=f"{prefix}_dropout")(y)
            y = conv(y, filters, 3, 1, f"{prefix}_conv2")
            if strides != 1 or channels != filters:
                shortcut = conv(preact, filters, 1, strides, f"{prefix}_proj")
            else:
                shortcut = x
            x = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
            channels = filters
    x = bn_act(x, "final")
    outputs = softmax_head(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or f"wrn_{depth}_{width}")


__all__ = ["wide_resnet", "wrn_blocks_per_group"]
