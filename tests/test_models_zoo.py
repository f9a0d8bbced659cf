"""The model zoo: parameter counts against the papers, forward passes, activation sites.

Parameter counts are checked two ways: against the number the source publishes (within 5%)
and exactly against a closed-form count written here from the architecture's description
(BatchNormalization counted with its 4 variables per channel, as Keras's count_params does;
the papers count its 2 trainable ones, a difference far below the tolerance). Large models
are only constructed, never run; forward passes use tiny inputs.

The keras-cv-attention-models networks need tf_keras: tests/legacy/test_kecam_models.py.
"""

import functools
import types

import numpy as np
import pytest

from keras_actfn.backend import keras
from keras_actfn.layers import CustomActivation
from keras_actfn.models import (KECAM_MODELS, LANGUAGE_MODELS, MODELS, LocalitySelfAttention,
                                build_model, gpt, resnet_v2, vit, wide_resnet)
from keras_actfn.surgery import find_activation_sites

SWISH = "x*sigmoid(x)"
TINY_IMAGE = (16, 16, 3)
TINY_VOCAB, TINY_SEQ = 23, 7


# --------------------------------------------------------------- closed-form counts
def _bn(c):
    return 4 * c  # gamma, beta, moving mean, moving variance


def wrn_params(depth, k, classes=10):
    """Zagoruyko & Komodakis: stem 3x3x3x16, groups of 16k/32k/64k, BN-act-conv blocks,
    1x1 projections where the width or resolution changes, final BN, Dense."""
    n = (depth - 4) // 6
    total, c_in = 27 * 16, 16
    for base in (16, 32, 64):
        out = base * k
        for block in range(n):
            total += _bn(c_in) + 9 * c_in * out + _bn(out) + 9 * out * out
            if block == 0 and (c_in != out or base != 16):
                total += c_in * out
            c_in = out
    return total + _bn(c_in) + c_in * classes + classes


def resnet_v2_params(depth, bottleneck, classes=10):
    """He et al. (2016b): pre-activation units on the 16/32/64 CIFAR layout."""
    n = (depth - 2) // (9 if bottleneck else 6)
    total, c_in = 27 * 16, 16
    for f in (16, 32, 64):
        out = 4 * f if bottleneck else f
        for block in range(n):
            total += _bn(c_in)
            if bottleneck:
                total += c_in * f + _bn(f) + 9 * f * f + _bn(f) + f * out
            else:
                total += 9 * c_in * f + _bn(f) + 9 * f * f
            if block == 0 and (c_in != out or f != 16):
                total += c_in * out
            c_in = out
    return total + _bn(c_in) + c_in * classes + classes


def vit_reference_params(dim, depth, heads, mlp, patch=4, image=32, channels=3, classes=10,
                         head_dim=64):
    """The PyTorch reference (ViT for small datasets, as in GRAFS's [33]) parameter by
    parameter; returns (reference count, reference minus the output-projection biases that
    Keras's bias-free MultiHeadAttention lacks)."""
    patches = (image // patch) ** 2
    patch_dim = patch * patch * 5 * channels                  # image + 4 shifted copies
    total = 2 * patch_dim + patch_dim * dim + dim             # SPT: LayerNorm, Linear
    total += (patches + 1) * dim + dim                        # position table, class token
    inner = heads * head_dim
    per_block = (2 * dim + 1 + dim * 3 * inner + inner * dim + dim   # LN, temperature, LSA
                 + 2 * dim + dim * mlp + mlp + mlp * dim + dim)      # LN, MLP
    total += depth * per_block + 2 * dim + dim * classes + classes  # head: LN, Linear
    return total, total - depth * dim


def nanogpt_params(layers, width, vocab, seq_len):
    """nanoGPT: tied token embedding, position table, blocks of 12 d^2 + 13 d, final LN.
    Returns (all parameters, nanoGPT's reported count without the position table)."""
    body = vocab * width + layers * (12 * width ** 2 + 13 * width) + 2 * width
    return body + seq_len * width, body


def _tiny_kwargs(name):
    """Small sizes for forward passes; images are CIFAR's 32x32 so that the same models
    give the papers' parameter counts (a smaller image saves little: building dominates)."""
    if name in LANGUAGE_MODELS:
        return dict(vocab_size=TINY_VOCAB, seq_len=TINY_SEQ)
    if name == "mnist1d_mlp":
        return dict(input_shape=(40,), num_classes=10)
    if name == "mnist1d_cnn":
        return dict(input_shape=(40, 1), num_classes=10)
    return dict(input_shape=(32, 32, 3), num_classes=10)


@functools.lru_cache(maxsize=None)
def _paper_model(name):
    """A registry model at the size its paper counts: CIFAR-10 (32x32, 10 classes) with
    ``x*sigmoid(x)`` at every site (no parameters, so the counts are the original
    network's; the same models serve the forward-pass tests), or a GPT with the GPT-2
    vocabulary and its default GELU (constructed only)."""
    if name in LANGUAGE_MODELS:
        return build_model(name, vocab_size=50304, seq_len=256)
    return build_model(name, SWISH, **_tiny_kwargs(name))


@pytest.fixture(scope="module", autouse=True)
def _release_models():
    yield
    _paper_model.cache_clear()  # tens of millions of weights: give the memory back


# --------------------------------------------------------------- published counts
@pytest.mark.parametrize("name, published", [
    ("wrn_28_10", 36.5e6), ("wrn_40_4", 8.9e6), ("wrn_16_8", 11.0e6)])
def test_wide_resnet_parameter_counts(name, published):
    """Zagoruyko & Komodakis (2016): WRN-28-10 36.5M, WRN-40-4 8.9M, WRN-16-8 11.0M."""
    depth, k = (int(p) for p in name.split("_")[1:])
    model = _paper_model(name)
    assert model.count_params() == wrn_params(depth, k)
    assert model.count_params() == pytest.approx(published, rel=0.05)
    assert model.output_shape == (None, 10)


def test_wrn_10_4_parameter_count():
    """WRN-10-4 (the dissertation's PANGAEA experiments, A.2.2) has no published count:
    1,200,634 (1,199,258 trainable), from the closed form."""
    model = _paper_model("wrn_10_4")
    assert model.count_params() == wrn_params(10, 4) == 1_200_634


@pytest.mark.parametrize("depth, bottleneck, published", [
    (56, False, 0.85e6), (110, False, 1.7e6), (164, True, 1.7e6)])
def test_resnet_v2_parameter_counts(depth, bottleneck, published):
    """He et al. (2016, Identity Mappings): ResNet-164 (v2) 1.7M; the basic-block depths
    have the v1 counts (0.85M, 1.7M) plus the BatchNorm of the extra pre-activations."""
    model = _paper_model(f"resnet_v2_{depth}")
    assert model.count_params() == resnet_v2_params(depth, bottleneck)
    assert model.count_params() == pytest.approx(published, rel=0.05)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    projections = [c for c in convs if c.name.endswith("_proj")]
    assert len(convs) - len(projections) + 1 == depth   # main path + read-out = depth


def test_all_cnn_c_parameter_count():
    """Dissertation A.2.2: All-CNN-C has about 1.37M weights."""
    assert _paper_model("all_cnn_c").count_params() == pytest.approx(1.37e6, rel=0.05)


@pytest.mark.parametrize("name, sizes", [
    ("vit_tiny", (512, 4, 6, 256)), ("vit_small", (512, 6, 8, 512))])
def test_vit_parameter_counts_follow_grafs_table_4(name, sizes):
    """GRAFS Table 4 sizes in the reference implementation: 4.37M and 9.62M parameters."""
    model = _paper_model(name)
    reference, without_output_bias = vit_reference_params(*sizes)
    assert model.count_params() == without_output_bias
    assert model.count_params() == pytest.approx(reference, rel=1e-3)
    attention = [layer for layer in model.layers if isinstance(layer, LocalitySelfAttention)]
    assert len(attention) == sizes[1] and attention[0].num_heads == sizes[2]


@pytest.mark.parametrize("name, layers, width, published", [
    ("mini_gpt", 3, 192, 11e6), ("tiny_gpt", 6, 384, 30e6), ("small_gpt", 9, 576, 65e6)])
def test_gpt_parameter_counts_follow_grafs_table_5(name, layers, width, published):
    """GRAFS §3: miniGPT/tinyGPT/smallGPT have 11M/30M/65M parameters, nanoGPT's count
    (position table excluded) with the GPT-2 vocabulary of 50304 and the head tied."""
    model = _paper_model(name)
    total, reported = nanogpt_params(layers, width, 50304, 256)
    assert model.count_params() == total
    assert reported == pytest.approx(published, rel=0.02)
    assert model.count_params() == pytest.approx(published, rel=0.05)
    # tied head: the only vocabulary-sized matrix is the token embedding
    assert [tuple(w.shape) for w in model.weights if 50304 in tuple(w.shape)] == [(50304, width)]


# --------------------------------------------------------------- every registry model
def _expected_sites(name):
    """Activation sites of each architecture, from its description (not from the code)."""
    fixed = {"mnist1d_mlp": 2, "mnist1d_cnn": 3, "all_cnn_c": 9, "vit_tiny": 4,
             "vit_small": 6, "mini_gpt": 3, "tiny_gpt": 6, "small_gpt": 9}
    if name in fixed:
        return fixed[name]
    family, *numbers = name.rsplit("_", 2) if name.startswith("wrn") else name.rsplit("_", 1)
    depth = int(numbers[0])
    if family == "wrn":
        return depth - 3                     # two per block (6n) plus the final one
    return depth - 1                         # ResNet v1 and v2: one per main-path conv


def _tiny_input(name, model, rng):
    if name in LANGUAGE_MODELS:
        return rng.integers(0, TINY_VOCAB, size=(2, TINY_SEQ)).astype("int32")
    return rng.standard_normal((2, *model.input_shape[1:])).astype("float32")


@pytest.mark.parametrize("name", sorted(set(MODELS) - KECAM_MODELS))
def test_every_model_runs_with_custom_activation_at_every_site(name):
    model = (build_model(name, SWISH, **_tiny_kwargs(name)) if name in LANGUAGE_MODELS
             else _paper_model(name))
    custom = [layer for layer in model.layers if isinstance(layer, CustomActivation)]
    assert len(custom) == _expected_sites(name)
    assert len({layer.name for layer in custom}) == len(custom)
    # no other activation is left but the softmax read-out
    others = {site.activation for site in find_activation_sites(model)} - {"custom_activation"}
    assert others == {"softmax"}

    y = np.asarray(model(_tiny_input(name, model, np.random.default_rng(0)), training=False))
    if name in LANGUAGE_MODELS:
        assert y.shape == (2, TINY_SEQ, TINY_VOCAB)
    else:
        assert y.shape == (2, 10)
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-5)


def test_default_activations_follow_the_papers():
    def names(model):
        return {site.activation for site in find_activation_sites(model)} - {"softmax"}

    assert names(build_model("wrn_10_4", input_shape=TINY_IMAGE)) == {"relu"}
    assert names(build_model("resnet_v2_56", input_shape=TINY_IMAGE)) == {"relu"}
    assert names(build_model("vit_tiny", input_shape=TINY_IMAGE)) == {"gelu"}
    assert names(_paper_model("mini_gpt")) == {"gelu"}


def test_language_models_take_their_sizes_from_a_task():
    task = types.SimpleNamespace(kind="language_model", num_classes=31, input_shape=(5,))
    model = build_model("mini_gpt", task=task)
    assert model.input_shape == (None, 5) and model.output_shape == (None, 5, 31)
    with pytest.raises(TypeError, match="vocab_size"):
        build_model("mini_gpt", num_classes=10)


def test_kecam_models_explain_what_they_need_under_keras3():
    for name in sorted(KECAM_MODELS):
        with pytest.raises(RuntimeError, match="TF_USE_LEGACY_KERAS=1.*kecam"):
            build_model(name)


# --------------------------------------------------------------- behaviour
def test_gpt_is_causal():
    model = gpt({"n_layers": 2, "n_heads": 2, "n_embd": 16}, vocab_size=TINY_VOCAB,
                seq_len=TINY_SEQ, activation=SWISH)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, TINY_VOCAB, size=(1, TINY_SEQ)).astype("int32")
    changed = tokens.copy()
    changed[0, 4:] = (changed[0, 4:] + 1) % TINY_VOCAB
    a, b = np.asarray(model(tokens)), np.asarray(model(changed))
    np.testing.assert_allclose(a[:, :4], b[:, :4], rtol=0, atol=1e-6)  # past unaffected
    assert np.abs(a[:, 4:] - b[:, 4:]).max() > 1e-4


def test_gpt_head_is_the_transposed_token_embedding():
    model = gpt("mini_gpt", vocab_size=TINY_VOCAB, seq_len=TINY_SEQ)
    tokens = np.arange(TINY_SEQ, dtype="int32")[None]
    hidden = keras.Model(model.input, model.get_layer("final_ln").output)(tokens)
    matrix = model.get_layer("token_embedding").embeddings.numpy()
    logits = np.asarray(hidden) @ matrix.T
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(model(tokens)), expected, rtol=1e-4, atol=1e-6)


def test_gpt_layers_draw_their_own_initial_weights():
    """One unseeded initializer shared by several layers would give them all one draw."""
    model = gpt("mini_gpt", vocab_size=TINY_VOCAB, seq_len=TINY_SEQ)
    drawn = [w.numpy() for w in model.weights if np.std(w.numpy()) > 0]
    # the token and position tables, and per block 4 attention and 2 MLP kernels
    assert len(drawn) == 2 + 3 * 6
    assert len({w.tobytes() for w in drawn}) == len(drawn)
    kernel = model.get_layer("block1_mlp_dense1").kernel.numpy()
    assert np.std(kernel) == pytest.approx(0.02, rel=0.05)   # nanoGPT's N(0, 0.02)


def test_locality_self_attention_matches_a_direct_computation():
    """Lee et al. (2021): logits q.k * exp(t) / sqrt(d), diagonal masked out."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    layer = LocalitySelfAttention(num_heads=2, key_dim=3)
    layer(x, x)
    layer.log_temperature.assign(0.7)
    _, scores = layer(x, x, return_attention_scores=True)
    wq = layer._query_dense.kernel.numpy()          # (features, heads, key_dim)
    wk = layer._key_dense.kernel.numpy()
    q, k = np.einsum("btf,fhd->bhtd", x, wq), np.einsum("btf,fhd->bhtd", x, wk)
    logits = np.einsum("bhtd,bhsd->bhts", q, k) * np.exp(0.7) / np.sqrt(3)
    logits[..., np.arange(5), np.arange(5)] = -np.inf
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(scores), expected, rtol=1e-4, atol=1e-6)


def test_shifted_patch_tokens_hold_the_image_and_its_four_shifts():
    model = vit(64, 1, 1, 32, patch_size=4, input_shape=(8, 8, 1), num_classes=2)
    image = np.arange(64, dtype="float32").reshape(1, 8, 8, 1) + 1
    stack = np.asarray(keras.Model(model.input, model.get_layer("shifted_stack").output)(image))
    img = image[0, :, :, 0]

    def shifted(rows, cols):
        out = np.zeros_like(img)
        out[max(rows, 0):8 + min(rows, 0), max(cols, 0):8 + min(cols, 0)] = \
            img[max(-rows, 0):8 + min(-rows, 0), max(-cols, 0):8 + min(-cols, 0)]
        return out

    expected = [img, shifted(0, 1), shifted(0, -1), shifted(1, 0), shifted(-1, 0)]
    np.testing.assert_array_equal(stack[0], np.stack(expected, axis=-1))


def test_wide_resnet_blocks_and_dropout():
    model = wide_resnet(16, 8, input_shape=TINY_IMAGE, dropout=0.3)
    projections = [layer for layer in model.layers if layer.name.endswith("_proj")]
    assert len(projections) == 3           # every group changes width (k > 1)
    assert len([layer for layer in model.layers
                if isinstance(layer, keras.layers.Dropout)]) == 6
    assert all(layer.rate == 0.3 for layer in model.layers
               if isinstance(layer, keras.layers.Dropout))
    no_dropout = wide_resnet(10, 1, input_shape=TINY_IMAGE, dropout=0)
    assert not [layer for layer in no_dropout.layers if isinstance(layer, keras.layers.Dropout)]
    assert len([layer for layer in no_dropout.layers if layer.name.endswith("_proj")]) == 2


@pytest.mark.parametrize("call, match", [
    (lambda: wide_resnet(12, 4), "6n \\+ 4"),
    (lambda: resnet_v2(57), "ResNet-v2 depth"),
    (lambda: vit(64, 1, 1, 32, input_shape=(30, 30, 3)), "multiples of patch_size"),
    (lambda: gpt("huge_gpt"), "unknown GPT config"),
    (lambda: gpt({"n_layers": 1, "n_heads": 3, "n_embd": 16}), "multiple of n_heads"),
])
def test_bad_architectures_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
