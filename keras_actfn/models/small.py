"""Small models: the MNIST-1D MLP and CNN (the embedded default task) and All-CNN-C (A.2.2)."""

from __future__ import annotations

from ..backend import keras
from ..layers.custom import activation_layer


def mnist1d_mlp(activation="relu", input_length=40, num_classes=10, width=100,
                input_shape=None, **act_kwargs):
    """Two hidden layers of ``width`` units, as in the MNIST-1D benchmark's MLP.

    ``input_shape`` overrides ``(input_length,)``; inputs of rank > 1 (e.g. ``(40, 1)``)
    are flattened first.
    """
    inputs = keras.Input(tuple(input_shape) if input_shape else (input_length,))
    x = keras.layers.Flatten()(inputs) if len(inputs.shape) > 2 else inputs
    for _ in range(2):
        x = keras.layers.Dense(width)(x)
        x = activation_layer(activation, **act_kwargs)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mnist1d_mlp")


def mnist1d_cnn(activation="relu", input_length=40, num_classes=10, channels=25, **act_kwargs):
    """Three stride-2 Conv1D layers (kernel 5) and a linear read-out, as in MNIST-1D's CNN."""
    inputs = keras.Input((input_length, 1))
    x = inputs
    for _ in range(3):
        x = keras.layers.Conv1D(channels, 5, strides=2, padding="same")(x)
        x = activation_layer(activation, **act_kwargs)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mnist1d_cnn")


def all_cnn_c(activation="relu", input_shape=(32, 32, 3), num_classes=10, weight_decay=1e-3,
              dropout=0.5, **act_kwargs):
    """All-CNN-C (Springenberg et al.) as listed in dissertation A.2.2: about 1.37 M weights."""
    reg = keras.regularizers.l2(weight_decay) if weight_decay else None

    def conv(x, filters, kernel, strides=1, padding="same"):
        x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                                kernel_regularizer=reg)(x)
        return activation_layer(activation, **act_kwargs)(x)

    inputs = keras.Input(input_shape)
    x = conv(inputs, 96, 3)
    x = conv(x, 96, 3)
    x = conv(x, 96, 3, strides=2)
    x = keras.layers.Dropout(dropout)(x)
    x = conv(x, 192, 3)
    x = conv(x, 192, 3)
    x = conv(x, 192, 3, strides=2)
    x = keras.layers.Dropout(dropout)(x)
    x = conv(x, 192, 3)
    x = conv(x, 192, 1, padding="valid")
    x = conv(x, num_classes, 1, padding="valid")
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Activation("softmax")(x)
    return keras.Model(inputs, outputs, name="all_cnn_c")
