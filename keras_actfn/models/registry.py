"""Models by name, so tasks, recipes and the command line can refer to them as text.

Every builder takes ``activation=`` plus ``input_shape=`` and ``num_classes=`` (for language
models: ``vocab_size=`` and ``seq_len=``, filled from the task) and returns a functional
Keras model whose output is a softmax over ``num_classes`` (language models: over the
vocabulary at every position). Defaults follow the papers: ReLU for the CNNs, GELU for ViT
and GPT, GELU/Swish for the kecam models (which need ``TF_USE_LEGACY_KERAS=1``).
"""

from __future__ import annotations

from typing import Callable

from . import kecam
from .gpt import gpt
from .resnet import resnet_v1, resnet_v2
from .small import all_cnn_c, mnist1d_cnn, mnist1d_mlp
from .vit import vit_small, vit_tiny
from .wrn import wide_resnet


def _resnet_v1(depth):
    # batchnorm=False (the AutoInit experiments) passes through **kwargs
    def build(activation="relu", input_shape=(32, 32, 3), num_classes=10, **kwargs):
        return resnet_v1(depth, num_classes=num_classes, input_shape=input_shape,
                         activation=activation, **kwargs)
    return build


def _resnet_v2(depth):
    def build(activation="relu", input_shape=(32, 32, 3), num_classes=10, **kwargs):
        return resnet_v2(depth, num_classes=num_classes, input_shape=input_shape,
                         activation=activation, **kwargs)
    return build


def _wrn(depth, width):
    # width= overrides the widening factor (recipes scale it for smoke runs)
    def build(activation="relu", input_shape=(32, 32, 3), num_classes=10, **kwargs):
        return wide_resnet(depth, kwargs.pop("width", width), activation=activation,
                           input_shape=input_shape, num_classes=num_classes, **kwargs)
    return build


def _gpt(config):
    def build(activation="gelu", vocab_size=None, seq_len=None, **kwargs):
        for key in ("input_shape", "num_classes"):
            if key in kwargs:
                raise TypeError(f"{config} is a language model: give vocab_size= and seq_len=, "
                                f"not {key}=")
        sizes = {k: v for k, v in (("vocab_size", vocab_size), ("seq_len", seq_len))
                 if v is not None}
        return gpt(config, activation=activation, **sizes, **kwargs)
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
    **{f"resnet_v2_{d}": _resnet_v2(d) for d in (56, 110, 164)},
    **{f"wrn_{d}_{k}": _wrn(d, k) for d, k in ((10, 4), (16, 8), (28, 10), (40, 4))},
    "vit_tiny": vit_tiny,
    "vit_small": vit_small,
    **{name: _gpt(name) for name in ("mini_gpt", "tiny_gpt", "small_gpt")},
    # keras-cv-attention-models: tf_keras only (TF_USE_LEGACY_KERAS=1), kecam imported lazily
    "coatnet_0": kecam.coatnet0,
    "coatnet_t": kecam.coatnet_t,
    "mobilevit_v2_050": kecam.mobilevit_v2_050,
}

#: the registry's language models (they take vocab_size= and seq_len=)
LANGUAGE_MODELS = frozenset({"mini_gpt", "tiny_gpt", "small_gpt"})
#: the registry's models that need the legacy Keras and keras-cv-attention-models
KECAM_MODELS = frozenset({"coatnet_0", "coatnet_t", "mobilevit_v2_050"})


def build_model(name: str, activation=None, task=None, **kwargs):
    """Build model ``name``; with ``task``, its input shape and class count are used.

    ``activation=None`` keeps the model's own default (ReLU for the CNNs, GELU for ViT and
    GPT, GELU/Swish for the kecam models).
    """
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
    if activation is not None:
        kwargs["activation"] = activation
    return builder(**kwargs)


__all__ = ["MODELS", "LANGUAGE_MODELS", "KECAM_MODELS", "build_model"]
