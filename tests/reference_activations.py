"""Shared helpers for the baseline-layer tests, Keras 3 and legacy (tests/legacy) alike.

The NumPy references are the section 4.7 formulas written out here, independent of the layers'
TensorFlow code (which uses loops / Horner's scheme; these use broadcasting / power sums).

Not a test module (no ``test_`` prefix): ``tests/test_baselines.py`` and
``tests/legacy/test_baselines_legacy.py`` import it; ``tests/`` is on ``sys.path`` because
``tests/conftest.py`` lives there. Keras is only reached through ``keras_actfn`` (which picks
Keras 3 or tf_keras per process), and only when a function below is called.
"""

import numpy as np

INPUT_SHAPE = (2, 5, 7, 3)
PARAM_SHAPES = ("per-layer", "per-channel", "per-neuron")
SPLASH_HINGES = np.array([0.0, 1.0, 2.0, 2.5])


# ---------------------------------------------------------------- independent references

def ref_prelu(x, alpha):
    return np.where(x >= 0, x, alpha * x)


def ref_pswish(x, beta):
    return x / (1.0 + np.exp(-beta * x))


def ref_apl(x, a, b):
    xs = x[..., None]
    return np.maximum(x, 0.0) + np.sum(a * np.maximum(b - xs, 0.0), axis=-1)


def ref_pau(x, num, den):
    xs = x[..., None]
    p = np.sum(num * xs ** np.arange(num.shape[-1]), axis=-1)
    q = np.sum(den * xs ** np.arange(1, den.shape[-1] + 1), axis=-1)
    return p / (1.0 + np.abs(q))


def ref_splash(x, a_plus, a_minus, hinges=SPLASH_HINGES):
    xs = x[..., None]
    return np.sum(a_plus * np.maximum(xs - hinges, 0.0) + a_minus * np.maximum(-xs - hinges, 0.0),
                  axis=-1)


REFERENCES = {"prelu": ref_prelu, "pswish": ref_pswish, "apl": ref_apl, "pau": ref_pau,
              "splash": ref_splash}


def reference(name, x, weights):
    """The reference of layer ``name`` with the given weights, in float64."""
    weights = [np.asarray(w, dtype=np.float64) for w in weights]
    return REFERENCES[name](x, *weights)


def initial_reference(name, x):
    """The section 4.7 initial functions, with the initial values spelled out here."""
    if name == "prelu":
        return ref_prelu(x, 0.25)
    if name == "pswish":
        return ref_pswish(x, 1.0)
    if name == "apl":
        return np.maximum(x, 0.0)  # a_s = 0
    if name == "splash":
        return np.maximum(x, 0.0)  # a+_1 = 1 on hinge 0, all other slopes 0
    from keras_actfn.layers import baselines

    num = np.array(baselines.PAU_INIT_NUMERATOR)
    den = np.array(baselines.PAU_INIT_DENOMINATOR)
    return ref_pau(x, num, den)


def leaky_relu(x):
    return np.where(x >= 0, x, 0.01 * x)


def sample(shape=INPUT_SHAPE, seed=0, scale=1.5):
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


# ---------------------------------------------------------------- the model the save tests use

def build_baseline_model():
    """Every baseline layer in a row (SPLASH twice, with default and custom hinges)."""
    from keras_actfn.backend import keras
    from keras_actfn.layers.baselines import APL, PAU, SPLASH, PReLU, PSwish

    inputs = keras.Input(shape=(5, 7, 3))
    h = PReLU()(inputs)
    h = PSwish()(h)
    h = APL(hinges=3, param_shape="per-channel")(h)
    h = PAU(param_shape="per-layer")(h)
    h = SPLASH(param_shape="per-neuron")(h)
    h = SPLASH(hinges=(0.0, 1.5), param_shape="per-channel")(h)
    return keras.Model(inputs, h)
