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


__all__ = ["conv_factory", "bn_act_factory"]
