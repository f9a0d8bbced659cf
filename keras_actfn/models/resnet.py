"""CIFAR ResNet-v1 (He et al., 2016) with and without batch normalization, and the
pre-activation ResNet-v2 (He et al., 2016, "Identity Mappings"; see :func:`resnet_v2`).

The dissertation's AutoInit experiments (§5.6) use ResNet-v1-56/-110 (basic blocks) and the
deeper ResNet-164/-812 (bottleneck blocks), with and without BatchNormalization. The names
count the weighted layers on the main path: ``6n + 2`` for basic blocks (two 3x3
convolutions per block) and ``9n + 2`` for bottleneck blocks (1x1, 3x3, 1x1), plus the stem
convolution and the classifier; ``n`` blocks per stage, three stages.

Layout of one block (post-activation, "v1")::

    basic:       conv3x3(stride) -> [BN] -> act -> conv3x3 -> [BN]            -+-> Add -> act
    bottleneck:  conv1x1(stride) -> [BN] -> act -> conv3x3 -> [BN] -> act      |
                 -> conv1x1(4x filters) -> [BN]                               -+
    shortcut:    identity, or conv1x1(stride) -> [BN] when the shape changes (projection)

Stages have 16, 32 and 64 filters (bottleneck blocks expand them 4x, to 64/128/256) and the
second and third stages start with stride 2. The head is GlobalAveragePooling2D, a Dense
read-out and a separate softmax ``Activation`` (so the Dense output is the logits, i.e. the
pre-activation every weighted layer has here: no Conv/Dense layer carries an
``activation=``).
"""

from __future__ import annotations

from ..backend import keras
from ..layers.custom import activation_layer
from .common import bn_act_factory, conv_factory, softmax_head

STAGE_FILTERS = (16, 32, 64)
BOTTLENECK_EXPANSION = 4


def resnet_depth_config(depth: int, bottleneck=None) -> tuple:
    """``(blocks_per_stage, bottleneck)`` for a ResNet-v1 of ``depth``.

    ``bottleneck=None`` picks the convention of He et al.: bottleneck blocks for the deep
    networks (depth >= 164 with ``depth = 9n + 2``: 164, 812, 1001), basic blocks otherwise
    (``depth = 6n + 2``: 20, 32, 44, 56, 110). 164 and 812 are also of the form 6n + 2; pass
    ``bottleneck=False`` for the basic-block variants.
    """
    return _depth_config(depth, bottleneck, "ResNet-v1")


def _depth_config(depth, bottleneck, family):
    depth = int(depth)
    if depth < 8:
        raise ValueError(f"{family} depth must be at least 8, got {depth}")
    if bottleneck is None:
        bottleneck = depth >= 164 and (depth - 2) % 9 == 0
    per_block = 3 if bottleneck else 2
    if (depth - 2) % (3 * per_block):
        form = "9n + 2 (bottleneck blocks)" if bottleneck else "6n + 2 (basic blocks)"
        raise ValueError(f"{family} depth must be {form}, e.g. "
                         f"{'164, 812' if bottleneck else '20, 32, 44, 56, 110'}; got {depth}")
    return (depth - 2) // (3 * per_block), bool(bottleneck)


def resnet_v1(depth, num_classes=10, input_shape=(32, 32, 3), activation="relu",
              batchnorm=True, bottleneck=None, kernel_initializer="he_normal",
              weight_decay=1e-4, name=None, **act_kwargs):
    """Build a CIFAR ResNet-v1 of ``depth`` as a functional Keras model.

    Args:
        depth: 6n + 2 for basic blocks (20, 32, 44, 56, 110), 9n + 2 for bottleneck blocks
            (164, 812); see :func:`resnet_depth_config` for how ``bottleneck=None`` decides.
        num_classes: width of the softmax read-out.
        input_shape: ``(height, width, channels)``; smaller images (16x16) make fast tests.
        activation: activation-function text, a Keras activation name, or a zero-argument
            layer factory (one fresh layer per site; see ``activation_layer``).
        batchnorm: ``False`` gives the unnormalized network of the AutoInit experiments.
        bottleneck: force bottleneck (True) or basic (False) blocks.
        kernel_initializer: initializer of every convolution (He et al.: ``he_normal``).
        weight_decay: L2 factor on convolution and dense kernels (None or 0: none).
        name: model name (default ``resnet_v1_<depth>`` plus ``_nobn`` when unnormalized).
        act_kwargs: passed to ``CustomActivation`` for text activations (``param_shape``...).

    Convolutions have biases only when there is no BatchNormalization to make them redundant.
    """
    blocks, bottleneck = resnet_depth_config(depth, bottleneck)
    conv = conv_factory(kernel_initializer, weight_decay, use_bias=not batchnorm)

    def norm(x, name):
        return keras.layers.BatchNormalization(name=name)(x) if batchnorm else x

    def act(x, name):
        # readable, unique names help per-layer tables and plots (factories name their own)
        layer = activation_layer(activation, name=name, **act_kwargs)
        return layer(x)

    inputs = keras.Input(tuple(input_shape))
    x = conv(inputs, STAGE_FILTERS[0], 3, 1, "stem_conv")
    x = norm(x, "stem_bn")
    x = act(x, "stem_act")
    channels = STAGE_FILTERS[0]
    for stage, filters in enumerate(STAGE_FILTERS, start=1):
        out_channels = filters * BOTTLENECK_EXPANSION if bottleneck else filters
        for block in range(1, blocks + 1):
            prefix = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 else 1
            if bottleneck:
                y = conv(x, filters, 1, strides, f"{prefix}_conv1")
                y = act(norm(y, f"{prefix}_bn1"), f"{prefix}_act1")
                y = conv(y, filters, 3, 1, f"{prefix}_conv2")
                y = act(norm(y, f"{prefix}_bn2"), f"{prefix}_act2")
                y = conv(y, out_channels, 1, 1, f"{prefix}_conv3")
                y = norm(y, f"{prefix}_bn3")
            else:
                y = conv(x, filters, 3, strides, f"{prefix}_conv1")
                y = act(norm(y, f"{prefix}_bn1"), f"{prefix}_act1")
                y = conv(y, filters, 3, 1, f"{prefix}_conv2")
                y = norm(y, f"{prefix}_bn2")
            shortcut = x
            if strides != 1 or channels != out_channels:
                shortcut = conv(x, out_channels, 1, strides, f"{prefix}_proj")
                shortcut = norm(shortcut, f"{prefix}_proj_bn")
            x = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
            x = act(x, f"{prefix}_out")
            channels = out_channels
    outputs = softmax_head(x, num_classes, weight_decay)
    default_name = f"resnet_v1_{depth}" + ("" if batchnorm else "_nobn")
    return keras.Model(inputs, outputs, name=name or default_name)


def resnet_v2(depth, num_classes=10, input_shape=(32, 32, 3), activation="relu",
              bottleneck=None, kernel_initializer="he_normal", weight_decay=1e-4, name=None,
              **act_kwargs):
    """Build a CIFAR pre-activation ResNet ("ResNet-v2") of ``depth``.

    Where it comes from: He, Zhang, Ren & Sun, "Identity Mappings in Deep Residual
    Networks" (ECCV 2016), the full pre-activation unit of their Fig. 4(e) on the CIFAR
    layout of the original ResNet paper: a 3x3 stem convolution with 16 filters, three
    stages of 16/32/64 filters (x4 at the output of bottleneck blocks), stride 2 at the
    start of the second and third stages. Each unit is::

        basic:       BN -> act -> conv3x3(stride) -> BN -> act -> conv3x3            -+-> Add
        bottleneck:  BN -> act -> conv1x1(stride) -> BN -> act -> conv3x3             |
                     -> BN -> act -> conv1x1(4x filters)                             -+
        shortcut:    identity, or a 1x1 convolution (stride) of the unit's first
                     BN -> act output when the shape changes

    Following the paper, the very first unit (right after the stem) also takes its first
    BN -> act before the split, so both paths see the activated stem. After the last unit:
    BN -> act -> global average pooling -> Dense -> softmax. Depths: ``6n + 2`` with basic
    blocks (56, 110), ``9n + 2`` with bottleneck blocks (164, 1001); He et al. report 0.85M
    (ResNet-56), 1.7M (ResNet-110) and 1.7M (ResNet-164) parameters.

    Activation sites: one before every convolution of the main path plus the final one,
    ``depth - 1`` in all. Arguments are those of :func:`resnet_v1` (always with
    BatchNormalization; convolutions have no biases).
    """
    blocks, bottleneck = _depth_config(depth, bottleneck, "ResNet-v2")
    conv = conv_factory(kernel_initializer, weight_decay)
    bn_act = bn_act_factory(activation, **act_kwargs)

    inputs = keras.Input(tuple(input_shape))
    x = conv(inputs, STAGE_FILTERS[0], 3, 1, "stem_conv")
    channels = STAGE_FILTERS[0]
    for stage, filters in enumerate(STAGE_FILTERS, start=1):
        out_channels = filters * BOTTLENECK_EXPANSION if bottleneck else filters
        for block in range(1, blocks + 1):
            prefix = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 else 1
            project = strides != 1 or channels != out_channels
            preact = bn_act(x, f"{prefix}_pre")
            if bottleneck:
                y = conv(preact, filters, 1, strides, f"{prefix}_conv1")
                y = conv(bn_act(y, f"{prefix}_mid1"), filters, 3, 1, f"{prefix}_conv2")
                y = conv(bn_act(y, f"{prefix}_mid2"), out_channels, 1, 1, f"{prefix}_conv3")
            else:
                y = conv(preact, filters, 3, strides, f"{prefix}_conv1")
                y = conv(bn_act(y, f"{prefix}_mid1"), filters, 3, 1, f"{prefix}_conv2")
            if project:
                shortcut = conv(preact, out_channels, 1, strides, f"{prefix}_proj")
            elif stage == 1 and block == 1:
                shortcut = preact  # the first unit splits after the stem's activation
            else:
                shortcut = x
            x = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
            channels = out_channels
    x = bn_act(x, "final")
    outputs = softmax_head(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name or f"resnet_v2_{depth}")


__all__ = ["resnet_v1", "resnet_v2", "resnet_depth_config"]
