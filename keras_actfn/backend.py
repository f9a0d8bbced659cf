"""Resolve the active Keras once, the way ``tf.keras`` does.

TensorFlow 2.16+ ships Keras 3 as ``tf.keras``; with ``TF_USE_LEGACY_KERAS=1`` in the
environment (keras-cv-attention-models sets it on import) ``tf.keras`` is the legacy
``tf_keras`` package instead. Every other module of keras_actfn imports Keras from here,
so a whole process agrees on one Keras and layers never mix the two.
"""

import os

import tensorflow as tf

LEGACY = os.environ.get("TF_USE_LEGACY_KERAS", "0").strip().lower() in ("1", "true", "yes")

if LEGACY:
    try:
        import tf_keras as keras
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "TF_USE_LEGACY_KERAS=1 asks for the legacy Keras, but the 'tf_keras' package is "
            "not installed. Install it with: pip install 'keras_actfn[legacy]'"
        ) from err
else:
    import keras

KERAS_VERSION = tuple(int(p) for p in keras.__version__.split(".")[:2] if p.isdigit())
KERAS3 = KERAS_VERSION >= (3, 0)

if KERAS3:
    register_serializable = keras.saving.register_keras_serializable
else:
    register_serializable = keras.utils.register_keras_serializable

PACKAGE = "keras_actfn"


def serializable(cls):
    """Register ``cls`` under the ``keras_actfn`` package for both Kerases.

    Registration is what lets a saved model reload without ``custom_objects``:
    importing keras_actfn makes every class of ours known to the loader.
    """
    return register_serializable(package=PACKAGE)(cls)


def describe():
    """One line saying which Keras is active, for logs and bug reports."""
    flavour = "tf_keras (legacy)" if LEGACY else "Keras 3"
    return f"{flavour} {keras.__version__} on TensorFlow {tf.__version__}"


__all__ = ["tf", "keras", "LEGACY", "KERAS3", "KERAS_VERSION", "serializable", "describe"]
