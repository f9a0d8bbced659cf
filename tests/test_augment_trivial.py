"""TrivialAugment (wide): every operation against Pillow / NumPy on small uint8 images, the
draws uniform over operations and strengths, the strength tables of the wide space,
determinism, the float (normalized) path, the ``trivialaugment`` recipe token, and a short
evaluation with it on a fake image task."""

import pickle

import numpy as np
import pytest
from scipy import stats

from keras_actfn.backend import tf
from keras_actfn.data.augment import (TA_NUM_BINS, TA_OPS, TA_SIGNED_OPS, TrivialAugment,
                                      apply_ta_ops, make_augment, pixel_options, ta_draws,
                                      ta_magnitudes, trivial_augment)
from keras_actfn.data.tasks import Task
from keras_actfn.data.tfds_tasks import Standardize, channel_statistics
from keras_actfn.train import Constant, evaluate_activation, get_recipe, parse_augment
from keras_actfn.train.evaluate import prepare
from keras_actfn.train.recipes import AugmentSpec, Recipe

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageEnhance, ImageOps  # noqa: E402


def _images(n=6, h=13, w=11, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    # half of them with a narrow range and few values: autocontrast and equalize do work
    x[n // 2:] = (x[n // 2:] // 37 * 9 + 60).astype(np.uint8)
    return x


def _apply(images, op, magnitudes):
    ops = np.full(len(images), TA_OPS.index(op), np.int32)
    return np.asarray(apply_ta_ops(images, ops, np.asarray(magnitudes, np.float32)))


def _pil(image):
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _np(pil_image, channels):
    out = np.asarray(pil_image)
    return out[..., None] if channels == 1 else out


def _pil_op(image, op, magnitude):
    """The operation as torchvision's TrivialAugmentWide applies it to a PIL image."""
    im, m = _pil(image), float(magnitude)
    size = im.size
    affine = {"shear_x": (1, m, 0, 0, 1, 0), "shear_y": (1, 0, 0, m, 1, 0),
              "translate_x": (1, 0, -m, 0, 1, 0), "translate_y": (1, 0, 0, 0, 1, -m)}
    if op == "identity":
        out = im
    elif op in affine:
        out = im.transform(size, Image.AFFINE, affine[op], Image.NEAREST, fillcolor=0)
    elif op == "rotate":
        out = im.rotate(m, Image.NEAREST, fillcolor=0)
    elif op in ("brightness", "color", "contrast", "sharpness"):
        enhancer = {"brightness": ImageEnhance.Brightness, "color": ImageEnhance.Color,
                    "contrast": ImageEnhance.Contrast, "sharpness": ImageEnhance.Sharpness}[op]
        out = enhancer(im).enhance(m)
    elif op == "posterize":
        out = ImageOps.posterize(im, int(m))
    elif op == "solarize":
        out = ImageOps.solarize(im, m)
    elif op == "autocontrast":
        out = ImageOps.autocontrast(im)
    else:
        out = ImageOps.equalize(im)
    return _np(out, image.shape[-1])


# -- every operation against an independent reference ---------------------------------------

def test_identity_is_exact_for_uint8_and_floats():
    x = _images()
    np.testing.assert_array_equal(_apply(x, "identity", np.zeros(len(x))), x)
    xf = x.astype(np.float32)
    out = _apply(xf, "identity", 0.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, xf)


@pytest.mark.parametrize("op", ["translate_x", "translate_y"])
def test_integer_translation_is_a_shift_with_zero_fill(op):
    x = _images()
    shifts = np.array([-32, -5, 0, 3, 10, 32])
    out = _apply(x, op, shifts)
    axis = 2 if op == "translate_x" else 1
    for image, got, s in zip(x, out, shifts):
        want = np.zeros_like(image)
        src = [slice(None)] * 3
        dst = [slice(None)] * 3
        size = image.shape[axis - 1]
        if abs(s) < size:
            src[axis - 1] = slice(max(0, -s), size - max(0, s))
            dst[axis - 1] = slice(max(0, s), size - max(0, -s))
            want[tuple(dst)] = image[tuple(src)]
        np.testing.assert_array_equal(got, want)


def test_rotations_by_right_angles_match_rot90():
    x = _images(n=4, h=12, w=12)
    out = _apply(x, "rotate", [90.0, -90.0, 180.0, 0.0])
    # positive angles turn counter-clockwise, as np.rot90 (and Pillow)
    for got, want in zip(out, [np.rot90(x[0], 1), np.rot90(x[1], -1), np.rot90(x[2], 2), x[3]]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bits", [0, 1, 2, 4, 7, 8])
def test_posterize_masks_low_bits(bits):
    x = _images()
    want = x & np.uint8((0xFF << (8 - bits)) & 0xFF)
    np.testing.assert_array_equal(_apply(x, "posterize", bits), want)


@pytest.mark.parametrize("threshold", [0.0, 8.5, 127.5, 128.0, 246.5, 255.0])
def test_solarize_inverts_from_threshold(threshold):
    x = _images()
    want = np.where(x >= threshold, 255 - x, x).astype(np.uint8)
    np.testing.assert_array_equal(_apply(x, "solarize", threshold), want)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("op", ["brightness", "color", "contrast", "sharpness"])
def test_enhancements_match_pillow(op, channels):
    x = _images(c=channels)
    # the ends of TA's range (1 -/+ 0.99), the identity, and values in between
    factors = np.float32([0.01, 0.34, 1.0, 1.363, 1.99, 0.67])
    out = _apply(x, op, factors)
    for image, got, f in zip(x, out, factors):
        np.testing.assert_array_equal(got, _pil_op(image, op, f), err_msg=f"{op} {f}")


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("op", ["autocontrast", "equalize"])
def test_histogram_operations_match_pillow(op, channels):
    # equalize needs over 255 pixels to do anything (Pillow's step is pixels // 255)
    x = _images(h=32, w=24, c=channels)
    x[0, ..., 0] = 77  # a constant channel: left alone by both
    out = _apply(x, op, 0.0)
    for image, got in zip(x, out):
        np.testing.assert_array_equal(got, _pil_op(image, op, 0.0))
    changed = [not np.array_equal(a, b) for a, b in zip(out, x)]
    assert changed[-1] and not changed[0] if channels == 1 else sum(changed) >= 3


@pytest.mark.parametrize("op", ["shear_x", "shear_y", "rotate"])
def test_geometric_operations_match_pillow(op):
    x = _images()
    scale = 135.0 if op == "rotate" else 0.99
    magnitudes = np.float32([-1.0, -0.3, 0.1, 0.46, 0.9, 1.0]) * scale
    out = _apply(x, op, magnitudes)
    for image, got, m in zip(x, out, magnitudes):
        np.testing.assert_array_equal(got, _pil_op(image, op, m), err_msg=f"{op} {m}")


def test_one_batch_of_mixed_operations_matches_pillow_example_by_example():
    x = _images(n=64, h=16, w=16, seed=1)
    ops, bins, negate = ta_draws(len(x), seed=[3, 4])
    magnitudes = ta_magnitudes(ops, bins, negate)
    out = np.asarray(trivial_augment(x, seed=[3, 4]))
    assert set(ops.numpy().tolist()) == set(range(len(TA_OPS)))  # every operation once at least
    for image, got, op, m in zip(x, out, ops.numpy(), magnitudes.numpy()):
        np.testing.assert_array_equal(got, _pil_op(image, TA_OPS[op], m),
                                      err_msg=f"{TA_OPS[op]} {m}")


# -- the draws and the strengths -----------------------------------------------------------

def test_operations_strengths_and_signs_are_uniform():
    n = 28_000
    ops, bins, negate = (t.numpy() for t in ta_draws(n, seed=[7, 11]))
    op_counts = np.bincount(ops, minlength=len(TA_OPS))
    bin_counts = np.bincount(bins, minlength=TA_NUM_BINS)
    assert len(op_counts) == 14 and len(bin_counts) == 31
    assert stats.chisquare(op_counts).pvalue > 1e-3, op_counts
    assert stats.chisquare(bin_counts).pvalue > 1e-3, bin_counts
    assert abs(negate.mean() - 0.5) < 0.02
    # independent: the strengths of one operation are uniform too, the sign unbiased
    rotate = ops == TA_OPS.index("rotate")
    assert stats.chisquare(np.bincount(bins[rotate], minlength=31)).pvalue > 1e-4
    mags = ta_magnitudes(ops, bins, negate).numpy()[rotate]
    assert mags.min() == -135.0 and mags.max() == 135.0
    assert abs(mags.mean()) < 3.0  # uniform on [-135, 135]: mean 0, sd 78/sqrt(2000)
    assert stats.kstest(mags / 135.0, "uniform", args=(-1, 2)).statistic < 0.05


def _table(op, negate=False):
    bins = np.arange(TA_NUM_BINS)
    ops = np.full(TA_NUM_BINS, TA_OPS.index(op))
    return ta_magnitudes(ops, bins, np.full(TA_NUM_BINS, negate)).numpy().astype(np.float64)


def test_strength_tables_of_the_wide_space():
    s = np.arange(31) / 30
    np.testing.assert_allclose(_table("shear_x"), 0.99 * s, rtol=1e-6)
    np.testing.assert_allclose(_table("shear_y", True), -0.99 * s, rtol=1e-6)
    np.testing.assert_array_equal(_table("translate_x"), np.floor(32 * s + 1e-9))
    np.testing.assert_array_equal(_table("translate_y", True), -np.floor(32 * s + 1e-9))
    assert _table("translate_x")[-1] == 32
    np.testing.assert_array_equal(_table("rotate"), 4.5 * np.arange(31))
    for op in ("brightness", "color", "contrast", "sharpness"):
        np.testing.assert_allclose(_table(op), 1 + 0.99 * s, rtol=1e-6)
        np.testing.assert_allclose(_table(op, True), 1 - 0.99 * s, rtol=1e-5)
    bits = _table("posterize")
    assert bits[0] == 8 and bits[-1] == 2
    assert {b: int((bits == b).sum()) for b in range(2, 9)} == \
        {8: 3, 7: 5, 6: 5, 5: 5, 4: 5, 3: 5, 2: 3}  # 8 - round(i / 5)
    np.testing.assert_array_equal(_table("solarize"), 255 - 8.5 * np.arange(31))
    np.testing.assert_array_equal(_table("solarize", True), _table("solarize"))  # unsigned
    for op in ("identity", "autocontrast", "equalize"):
        assert not _table(op).any()
    assert set(TA_SIGNED_OPS) == {"shear_x", "shear_y", "translate_x", "translate_y",
                                  "rotate", "brightness", "color", "contrast", "sharpness"}


def test_same_seed_same_result_and_examples_draw_independently():
    x = np.repeat(_images(n=1, h=16, w=16), 32, axis=0)
    a = np.asarray(trivial_augment(x, seed=[1, 2]))
    np.testing.assert_array_equal(a, np.asarray(trivial_augment(x, seed=[1, 2])))
    assert not np.array_equal(a, np.asarray(trivial_augment(x, seed=[1, 3])))
    ops, bins, _ = ta_draws(32, seed=[1, 2])
    assert len(set(ops.numpy().tolist())) > 5 and len(set(bins.numpy().tolist())) > 10
    # 32 copies of one image come out as many different images
    assert len({example.tobytes() for example in a}) > 10


# -- the augment object and the float path -------------------------------------------------

def _normalized(x):
    mean, std = channel_statistics(x)
    return Standardize(mean, std)


def test_normalized_floats_are_augmented_like_their_uint8_source():
    x = _images(n=16, h=12, w=12, seed=2)
    y = np.arange(16)
    pre = _normalized(x)
    for flip, pad in ((False, 0), (True, 4)):
        on_pixels = TrivialAugment(flip=flip, pad=pad)
        on_floats = make_augment(flip=flip, pad=pad, trivialaugment=True, preprocess=pre)
        assert on_floats == TrivialAugment(flip=flip, pad=pad, mean=pre.mean, std=pre.std)
        want = pre(on_pixels(x, y, [5, 6])[0]).numpy()
        got, labels = on_floats(pre(x), y, [5, 6])
        np.testing.assert_array_equal(got.numpy(), want)  # bit for bit
        np.testing.assert_array_equal(labels, y)
    # floats in [0, 1] (no normalization) and in [0, 255]
    unit = TrivialAugment()(x.astype(np.float32) / 255.0, y, [5, 6])[0].numpy()
    np.testing.assert_allclose(unit * 255.0, TrivialAugment()(x, y, [5, 6])[0].numpy(),
                               atol=1e-4)
    full = TrivialAugment(pixel_scale=1.0)(x.astype(np.float32), y, [5, 6])[0].numpy()
    np.testing.assert_array_equal(full, TrivialAugment()(x, y, [5, 6])[0].numpy())


def test_augment_object_config_pickle_and_graph_mode():
    aug = TrivialAugment(flip=True, pad=4, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])
    assert aug.get_config() == {"flip": True, "pad": 4, "num_bins": 31,
                                "mean": list(np.float32([0.5, 0.4, 0.3]).astype(float)),
                                "std": list(np.float32([0.2] * 3).astype(float)),
                                "pixel_scale": 1 / 255}
    assert aug == TrivialAugment(**aug.get_config()) and hash(aug) == hash(
        TrivialAugment(**aug.get_config()))
    assert aug != TrivialAugment(flip=True, pad=4) and aug != make_augment(flip=True, pad=4)
    assert "TrivialAugment(flip=True, pad=4" in repr(aug)
    clone = pickle.loads(pickle.dumps(aug))
    # normalized whole pixels (the float path rounds to pixels: other floats may round
    # differently after the graph optimizer reorders the float arithmetic)
    x = Standardize(aug.mean, aug.std)(_images(n=5, h=10, w=10)).numpy()
    y = np.zeros(5, np.int32)
    np.testing.assert_array_equal(clone(x, y, [1, 2])[0], aug(x, y, [1, 2])[0])
    fn = tf.function(aug, input_signature=[tf.TensorSpec([None, 10, 10, 3], tf.float32),
                                           tf.TensorSpec([None], tf.int32),
                                           tf.TensorSpec([2], tf.int64)])
    seed = tf.constant([1, 2], tf.int64)  # the dtype of the seeds Task.dataset passes
    np.testing.assert_allclose(fn(x, y, seed)[0], aug(x, y, seed)[0], atol=1e-5)
    with pytest.raises(ValueError, match="pad"):
        TrivialAugment(pad=-1)
    with pytest.raises(ValueError, match="num_bins"):
        TrivialAugment(num_bins=1)
    with pytest.raises(ValueError, match="channels"):
        apply_ta_ops(np.zeros((2, 4, 4, 2), np.uint8), 0, 0.0)
    assert pixel_options(None) == {}
    with pytest.raises(TypeError, match="pixel range"):
        pixel_options(lambda v: v)
    assert make_augment(flip=False, pad=0, trivialaugment=True) == TrivialAugment()
    assert make_augment(flip=False, pad=0) is None


# -- recipes and evaluation ---------------------------------------------------------------

def test_parse_augment_trivialaugment_token():
    assert parse_augment("trivialaugment") == AugmentSpec(False, 0, True)
    spec = parse_augment(" Flip + pad4 + TrivialAugment ")
    assert spec == AugmentSpec(flip=True, pad=4, trivialaugment=True)
    assert (spec.flip, spec.pad, spec.trivialaugment) == (True, 4, True)
    assert parse_augment("pad5+trivialaugment+flip") == spec._replace(pad=5)
    assert parse_augment("flip+pad4") == AugmentSpec(True, 4, False)
    with pytest.raises(ValueError, match=r"unknown augmentation 'trivial' .*'trivialaugment'"):
        parse_augment("flip+trivial")
    with pytest.raises(ValueError, match="unknown augmentation"):
        Recipe(name="bad", model="mnist1d_mlp", task="digits", epochs=1, batch_size=8,
               schedule=Constant(0.01), augment="randaugment")
    for name in ("grafs_eval_resnet20", "grafs_eval_resnet32", "grafs_eval_vit_tiny",
                 "grafs_eval_vit_small"):
        assert parse_augment(get_recipe(name).augment) == AugmentSpec(False, 0, True), name


def _fake_image_task():
    rng = np.random.default_rng(0)

    def split(n):
        y = np.arange(n) % 3
        x = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        x[..., 0] = np.where(y[:, None, None] == 0, 200, x[..., 0])  # learnable
        return x, y.astype(np.int32)

    train = split(96)
    return Task(name="fake_images", num_classes=3, input_shape=(8, 8, 3),
                splits={"train": train, "validation": split(30), "test": split(30)},
                preprocess=_normalized(train[0]))


def test_recipe_builds_and_trains_with_trivialaugment():
    task = _fake_image_task()
    plan = prepare(task=task, recipe="quick_mlp", augment="flip+pad4+trivialaugment")
    pre = task.preprocess
    assert plan.task.augment == TrivialAugment(flip=True, pad=4, mean=pre.mean, std=pre.std)
    assert task.augment is None  # the caller's task is left alone
    plain = next(iter(plan.task.dataset("train", 96)))[0].numpy()
    augmented = next(iter(plan.task.dataset("train", 96, augment=True, seed=1)))[0].numpy()
    assert augmented.shape == plain.shape and not np.allclose(augmented, plain)
    # still normalized whole pixels: mapping back lands on integers in [0, 255]
    pixels = plan.task.augment.to_pixels(augmented).numpy()
    np.testing.assert_allclose((augmented * pre.std + pre.mean) * 255.0, pixels, atol=1e-3)
    record = evaluate_activation("relu", task=task, recipe="quick_mlp", epochs=1,
                                 augment="trivialaugment", seed=0)
    assert record.ok, record.summary()
    assert "augment=trivialaugment" in record.recipe
