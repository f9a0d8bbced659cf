"""keras-cv-attention-models ("kecam") networks with their activation functions swapped.

The dissertation uses two kecam models: CoAtNet (Dai et al., 2021) for AutoInit on
Imagenette (§5.7, A.3) and MobileViTv2-0.5 (Mehta & Rastegari, 2022) for AQuaSurF's
Act-Bench-ViT and the ImageNet search (ch. 6, A.4). kecam builds them for the legacy Keras
only, so these builders need ``TF_USE_LEGACY_KERAS=1`` set before TensorFlow is imported and
the ``[kecam]`` extra installed (``pip install 'keras_actfn[kecam]'``).

How the activation is swapped: a Keras activation name (``"relu"``, ``"swish"``...) goes to
kecam's own ``activation=`` argument; anything else (function text, an ``Expr``, a layer
factory) replaces every site of the model's default activation through
:func:`keras_actfn.surgery.replace_activations` (GELU for CoAtNet, Swish for MobileViTv2),
leaving the softmax read-out, the sigmoid gates of squeeze-and-excitation modules and the
attention softmaxes as they are. Weights are never downloaded (``pretrained=None``).

Parameter counts with 1000 classes, built with kecam 1.4 (the relative-position tables of
CoAtNet grow with the input resolution): CoAtNet-0 23.29M at 224x224 (kecam's table lists
23.8M for its own trained CoAtNet0; Dai et al. give 25M for theirs, whose details kecam had
to guess), CoAtNet-T 14.75M at 224x224, MobileViTv2-0.5 1.38M at 256x256 (kecam and Mehta
& Rastegari: 1.37M).
"""

from __future__ import annotations

import importlib.util

from ..backend import LEGACY
from ..expr import Expr

#: the activation each kecam model uses where none is given
DEFAULT_ACTIVATIONS = {"coatnet": "gelu", "mobilevit_v2": "swish"}


def _require_kecam():
    if not LEGACY:
        raise RuntimeError(
            "keras-cv-attention-models builds its models with the legacy Keras (tf_keras), "
            "but this process runs Keras 3. Set TF_USE_LEGACY_KERAS=1 in the environment "
            "before TensorFlow is imported, and install the extra: "
            "pip install 'keras_actfn[kecam]'")
    if importlib.util.find_spec("keras_cv_attention_models") is None:
        raise RuntimeError("keras-cv-attention-models is not installed; install the extra: "
                           "pip install 'keras_actfn[kecam]'")


def _is_keras_name(activation) -> bool:
    return isinstance(activation, str) and "(" not in activation and activation.strip() != "x"


def _with_activation(build, default, activation, act_kwargs):
    """``build(activation_name)`` with ``activation`` in place of ``default``."""
    if activation is None or (_is_keras_name(activation) and not act_kwargs):
        return build(activation or default)
    if not (isinstance(activation, (str, Expr)) or callable(activation)):
        raise TypeError(f"activation must be a Keras activation name, function text, an Expr "
                        f"or a zero-argument layer factory; got {activation!r}")
    if _is_keras_name(activation):
        raise TypeError(f"{activation!r} is a Keras activation name; keyword arguments "
                        f"{sorted(act_kwargs)} apply to function text (e.g. 'relu(x)')")
    from ..surgery import replace_activations

    return replace_activations(build(default), activation, targets=default, **act_kwargs)


def coatnet0(activation="gelu", input_shape=(224, 224, 3), num_classes=1000,
             drop_connect_rate=0.0, **act_kwargs):
    """kecam's ``CoAtNet0`` (stages of 2/3/5/2 blocks, 96/192/384/768 channels; Dai et al.).

    Args:
        activation: a Keras name passed to kecam, or text / ``Expr`` / layer factory put at
            every GELU site by surgery.
        input_shape: ``(height, width, 3)``, sides multiples of 32 (64x64 makes fast tests).
        num_classes: width of kecam's softmax read-out.
        drop_connect_rate: stochastic depth, as kecam's argument.
        act_kwargs: ``CustomActivation`` arguments (``param_shape``, ``clip``...).
    """
    return _coatnet("CoAtNet0", activation, input_shape, num_classes, drop_connect_rate,
                    act_kwargs)


def coatnet_t(activation="gelu", input_shape=(224, 224, 3), num_classes=1000,
              drop_connect_rate=0.0, **act_kwargs):
    """kecam's ``CoAtNetT``: 3/4/6/3 blocks of 64/128/256/512 channels, the "smaller
    variant" trained on Imagenette in the dissertation's AutoInit experiments (A.3).
    Arguments as :func:`coatnet0`."""
    return _coatnet("CoAtNetT", activation, input_shape, num_classes, drop_connect_rate,
                    act_kwargs)


def _coatnet(variant, activation, input_shape, num_classes, drop_connect_rate, act_kwargs):
    _require_kecam()
    from keras_cv_attention_models import coatnet

    def build(name):
        return getattr(coatnet, variant)(input_shape=tuple(input_shape),
                                         num_classes=num_classes,
                                         drop_connect_rate=drop_connect_rate, activation=name,
                                         pretrained=None)

    return _with_activation(build, DEFAULT_ACTIVATIONS["coatnet"], activation, act_kwargs)


def mobilevit_v2_050(activation="swish", input_shape=(256, 256, 3), num_classes=1000,
                     **act_kwargs):
    """kecam's ``MobileViT_V2_050`` (width multiplier 0.5; Mehta & Rastegari, 2022), the
    network of AQuaSurF's Act-Bench-ViT (dissertation ch. 6, A.4).

    Args:
        activation: a Keras name passed to kecam, or text / ``Expr`` / layer factory put at
            every Swish site by surgery.
        input_shape: ``(height, width, 3)``, sides multiples of 32 (64x64 makes fast tests).
        num_classes: width of kecam's softmax read-out.
        act_kwargs: ``CustomActivation`` arguments (``param_shape``, ``clip``...).
    """
    _require_kecam()
    from keras_cv_attention_models import mobilevit

    def build(name):
        return mobilevit.MobileViT_V2_050(input_shape=tuple(input_shape),
                                          num_classes=num_classes, activation=name,
                                          pretrained=None)

    return _with_activation(build, DEFAULT_ACTIVATIONS["mobilevit_v2"], activation, act_kwargs)


__all__ = ["coatnet0", "coatnet_t", "mobilevit_v2_050", "DEFAULT_ACTIVATIONS"]
