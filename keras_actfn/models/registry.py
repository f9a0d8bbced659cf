"""Models by name, so tasks, recipes and the command line can refer to them as text.

Every builder takes ``activation=`` plus ``input_shape=`` and ``num_classes=`` (for language
models: ``vocab_size=`` and ``seq_len=``, filled from the task) and returns a functional
Keras model whose output is a softmax over ``num_classes``.
"""

from __future__ import annotations

from typing import Callable

from .resnet import resnet_v1
from .small import all_cnn_c, mnist1d_cnn, mnist1d_mlp


def _resnet_v1(depth, batchnorm=True):
    def build(activation="relu", input_shape=(32, 32, 3), num_classes=10, **kwargs):
        return resnet_v1(depth, num_classes=num_classes, input_shape=input_shape,
                         activation=activation, batchnorm=batchnorm, **kwargs)
    return build


def _mnist1d_mlp(activation="relu", input_shape=(40,), num_classes=10, **kwargs):
    return mnist1d_mlp(activation, input_shape=input_shape, num_classes=num_classes, **kwargs)


def _mnist1d_cnn(activation="relu", input_shape=(40, 1), num_classes=10, **kwargs):
    return mnist1d_cnn(activation, input_length=int(input_shape[0]), num_classes=num_classes,
                       **kwargs)


#: name -> builder(activation=..., input_shape=..., num_classes=..., **kwargs)
MODELS: dict[str, Callable] = {
    "mnist1d_mlp": _mnist1d_mlp,
    "mnist1d_cnn": _mnist1d_cnn,
    "all_cnn_c": all_cnn_c,
    **{f"resnet_v1_{d}": _resnet_v1(d) for d in (20, 32, 44, 56, 110, 164)},
}


def build_model(name: str, activation="relu", task=None, **kwargs):
    """Build model ``name``; with ``task``, its input shape and class count are used."""
    try:
        builder = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {sorted(MODELS)}") from None
    if task is not None:
        if task.kind == "language_model":
            kwargs.setdefault("vocab_size", task.num_classes)
            kwargs.setdefault("seq_len", task.input_shape[0])
        else:
            kwargs.setdefault("input_shape", task.input_shape)
            kwargs.setdefault("num_classes", task.num_classes)
    return builder(activation=activation, **kwargs)


__all__ = ["MODELS", "build_model"]
