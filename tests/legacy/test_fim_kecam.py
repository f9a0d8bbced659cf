"""AQuaSurF's K-FAC Fisher features on kecam's MobileViTv2-0.5 under tf_keras.

Collected only in a process started with TF_USE_LEGACY_KERAS=1 (see tests/conftest.py and
tests/test_legacy_suite.py). The network is built at 32x32 (the smallest input its five
stride-2 stages reduce to 1x1) and the features are computed for 4 images.

MobileViTv2-0.5 under kecam 1.4 has 55 Conv2D (the stem, the 1x1 expansions/projections of
the inverted residual blocks, the linear self-attention's qkv and output projections and the
MLPs, all as 1x1 convolutions), 9 DepthwiseConv2D and the Dense classifier. Its other
weighted layers are BatchNormalization and GroupNormalization (kecam's layer norm): §6.2.3
leaves normalization out of the Fisher, so nothing is expected in ``skipped``.
"""

import numpy as np
import pytest

from keras_actfn import backend
from keras_actfn.backend import keras, tf
from keras_actfn.models import build_model
from keras_actfn.search.aquasurf.fim import fisher_eigenvalues

SHAPE = (32, 32, 3)
WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")
NORMALIZATION = ("BatchNormalization", "GroupNormalization", "LayerNormalization")


@pytest.fixture(scope="module")
def setup():
    keras.utils.set_random_seed(0)
    model = build_model("mobilevit_v2_050", "x*sigmoid(x)", input_shape=SHAPE, num_classes=10)
    x = np.random.default_rng(0).uniform(size=(4, *SHAPE)).astype("float32")
    return model, x, fisher_eigenvalues(model, x, seed=1)


def _layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def test_backend_is_legacy():
    assert backend.LEGACY and not backend.KERAS3


def test_every_conv_dense_depthwise_layer_is_covered(setup):
    model, _, res = setup
    assert res.valid, res.reason
    assert res.skipped == []
    weighted = [l for l in _layers(model) if type(l).__name__ in WEIGHTED]
    counts = {name: sum(type(l).__name__ == name for l in weighted) for name in WEIGHTED}
    assert counts == {"Conv2D": 55, "DepthwiseConv2D": 9, "Dense": 1}
    by_name = {lf.name: lf for lf in res.layers}
    assert sorted(by_name) == sorted(l.name for l in weighted)
    for layer in weighted:
        lf = by_name[layer.name]
        n_weights = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        # one eigenvalue per weight (kernel and bias), a histogram of ⌊n/100⌋ bins
        assert lf.num_params == n_weights == len(lf.log_eigenvalues), layer.name
        assert np.all(np.isfinite(lf.log_eigenvalues)), layer.name
        assert len(lf.histogram) == max(n_weights // 100, 1)
        assert lf.kind == {"Conv2D": "conv", "DepthwiseConv2D": "depthwise",
                           "Dense": "dense"}[type(layer).__name__]
    # every other layer with weights is a normalization layer (excluded by §6.2.3)
    others = {type(l).__name__ for l in _layers(model)
              if l.trainable_weights and type(l).__name__ not in WEIGHTED
              and not isinstance(l, keras.Model)}
    assert others <= set(NORMALIZATION), others
    assert res.features.shape == (sum(len(lf.histogram) for lf in res.layers),)


def test_stem_and_a_depthwise_factor_match_bruteforce(setup):
    """Ω of the stride-2 3x3 stem (the phase/lag path) and of a depthwise convolution from
    the layers' actual inputs, expanded by one-hot kernels run through TF's own conv ops."""
    model, x, res = setup
    by_name = {lf.name: lf for lf in res.layers}
    convs = [l for l in _layers(model) if type(l).__name__ == "Conv2D"
             and tuple(l.kernel_size) == (3, 3)]
    depthwise = [l for l in _layers(model) if type(l).__name__ == "DepthwiseConv2D"]
    for layer in (convs[0], depthwise[0]):
        a = keras.Model(model.inputs, layer.input)(x).numpy()
        m, j = a.shape[0], a.shape[-1]
        if type(layer).__name__ == "Conv2D":
            coords = [(r, c, ch) for r in range(3) for c in range(3) for ch in range(j)]
            kernel = np.zeros((3, 3, j, len(coords)), np.float32)
            for i, (r, c, ch) in enumerate(coords):
                kernel[r, c, ch, i] = 1.0
            rows = tf.nn.conv2d(a, kernel, strides=list(layer.strides),
                                padding=layer.padding.upper(),
                                dilations=list(layer.dilation_rate)).numpy()
            rows = rows.reshape(-1, len(coords))
        else:
            kh, kw = layer.kernel_size
            kernel = np.zeros((kh, kw, j, kh * kw), np.float32)      # one output per tap
            for r in range(kh):
                for c in range(kw):
                    kernel[r, c, :, r * kw + c] = 1.0
            rows = tf.nn.depthwise_conv2d(a, kernel, strides=[1, *layer.strides, 1],
                                          padding=layer.padding.upper(),
                                          dilations=list(layer.dilation_rate)).numpy()
            rows = rows.reshape(-1, kh * kw)                # (M·T·J, |Δ|): every channel's patch
        if layer.use_bias:
            rows = np.concatenate([np.ones((rows.shape[0], 1), np.float32), rows], 1)
        np.testing.assert_allclose(by_name[layer.name].omega, rows.T @ rows / m,
                                   rtol=1e-4, atol=1e-5)
