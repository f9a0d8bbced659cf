"""Building blocks the CIFAR residual networks share (ResNet-v1/v2, WRN)."""

from __future__ import annotations

from ..backend import keras
from ..layers.custom import activation_layer


def conv_factory(kernel_initializer="he_normal", weight_decay=None, use_bias=False):
    """``conv(x, filters, kernel, strides, name)``: a 'same'-padded Conv2D with L2 decay."""
    reg = keras.regularizers.l2(weight_decay) if weight_decay else None

    def conv(x, filters, kernel, strides, name):
        return keras.layers.Conv2D(filters, kernel, strides=strides, padding="same",
                                   use_bias=use_bias, kernel_initializer=kernel_initializer,
                                   kernel_regularizer=reg, name=name)(x)

    return conv


def bn_act_factory(activation, **act_kwargs):
    """``bn_act(x, name)``: BatchNormalization (``name_bn``) then the activation
    (``name_act``; readable, unique names help per-layer tables and plots)."""

    def bn_act(x, name):
        x = keras.layers.BatchNormalization(name=name + "_bn")(x)
        return activation_layer(activation, name=name + "_act", **act_kwargs)(x)

    return bn_act


def softmax_head(x, num_classes, weight_decay=None):
    """Global average pooling, a Dense read-out (the logits, ``"logits"``) and a separate
    softmax ``Activation``, so the Dense output is a pre-activation like every other."""
    reg = keras.regularizers.l2(weight_decay) if weight_decay else None
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(x)
    return keras.layers.Activation("softmax", name="softmax")(x)


__all__ = ["conv_factory", "bn_act_factory", "softmax_head"]
