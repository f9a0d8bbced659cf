"""Model zoo under tf_keras: the keras-cv-attention-models networks with their activations
swapped, and the ViT/GPT builders (which must work in both Kerases).

Collected only in a process started with TF_USE_LEGACY_KERAS=1 (see tests/conftest.py).
Expected activation sites are counted from each architecture's description in kecam 1.4:

* CoAtNet-0 (2/3/5/2 blocks): a GELU after the stem, three in each of the 5 MBConv blocks
  (expansion, depthwise, squeeze-and-excitation reduction) and one in the MLP of each of the
  7 transformer blocks: 1 + 15 + 7 = 23; the 5 SE gates are sigmoids and stay. CoAtNet-T
  (3/4/6/3 blocks): 1 + 3 * 7 + 9 = 31 GELUs and 7 SE gates.
* MobileViTv2-0.5 (1/2/3/5/4 blocks, stages 3-5 transformer stages whose first block is an
  inverted residual): a Swish after the stem, two in each of the 6 inverted residual blocks,
  one in the pre-processing of each of the 3 transformer stages and one in the MLP of each of
  the 2 + 4 + 3 = 9 attention blocks: 1 + 12 + 3 + 9 = 25.
"""

from collections import Counter

import numpy as np
import pytest

from keras_actfn import backend
from keras_actfn.layers import CustomActivation
from keras_actfn.models import build_model, coatnet0, mobilevit_v2_050
from keras_actfn.surgery import find_activation_sites

SWISH = "x*sigmoid(x)"
SMALL = dict(input_shape=(64, 64, 3), num_classes=10)


def _sites(model):
    return Counter(site.activation for site in find_activation_sites(model))


def _forward(model, shape):
    x = np.random.default_rng(0).uniform(size=(2, *shape)).astype("float32")
    return np.asarray(model(x, training=False))


def test_backend_is_legacy():
    assert backend.LEGACY and not backend.KERAS3


@pytest.mark.parametrize("name, sites, kept", [
    ("coatnet_0", 23, {"sigmoid": 5, "softmax": 1}),
    ("coatnet_t", 31, {"sigmoid": 7, "softmax": 1}),
    ("mobilevit_v2_050", 25, {"softmax": 1}),
])
def test_kecam_activation_is_replaced_at_every_site(name, sites, kept):
    model = build_model(name, SWISH, **SMALL)
    custom = [layer for layer in model.layers if isinstance(layer, CustomActivation)]
    assert len(custom) == sites
    assert _sites(model) == {"custom_activation": sites, **kept}
    y = _forward(model, SMALL["input_shape"])
    assert y.shape == (2, 10) and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-5)


def test_keras_activation_names_go_to_kecam_directly():
    model = coatnet0("relu", **SMALL)
    assert _sites(model) == {"relu": 23, "sigmoid": 5, "softmax": 1}
    with pytest.raises(TypeError, match="Keras activation name"):
        coatnet0("relu", param_shape="per-layer", **SMALL)


@pytest.mark.parametrize("builder, input_shape, published, source", [
    (coatnet0, (224, 224, 3), 23.8e6, "kecam's table for its CoAtNet0 at 224"),
    (mobilevit_v2_050, (256, 256, 3), 1.37e6, "kecam / Mehta & Rastegari"),
])
def test_kecam_parameter_counts(builder, input_shape, published, source):
    """1000 ImageNet classes at the resolution the count is given for. (Dai et al. give
    CoAtNet-0 25M; kecam's guessed architecture has 23.29M, within 5% of its own 23.8M.)"""
    model = builder(input_shape=input_shape, num_classes=1000)
    assert model.count_params() == pytest.approx(published, rel=0.05), source


@pytest.mark.parametrize("name, kwargs, sites, shape", [
    ("vit_tiny", dict(input_shape=(16, 16, 3), num_classes=4), 4, (2, 4)),
    ("mini_gpt", dict(vocab_size=11, seq_len=5), 3, (2, 5, 11)),
])
def test_transformers_build_and_run_under_tf_keras(name, kwargs, sites, shape):
    model = build_model(name, SWISH, **kwargs)
    assert sum(isinstance(layer, CustomActivation) for layer in model.layers) == sites
    if name == "mini_gpt":
        x = np.random.default_rng(0).integers(0, 11, size=(2, 5)).astype("int32")
        y = np.asarray(model(x))
    else:
        y = _forward(model, kwargs["input_shape"])
    assert y.shape == shape
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-5)
