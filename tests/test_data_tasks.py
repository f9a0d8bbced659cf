"""Data tasks: tensorflow-datasets loaders (through the real ``tfds.load``, never the network),
balanced splits, featurewise statistics, augmentations and the text language-model task."""

import importlib
import importlib.resources
import importlib.resources.abc  # noqa: F401 - stands in for importlib_resources below
import pickle
import sys
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_actfn.data import (TASK_LOADERS, DatasetUnavailableError, FlipAndCrop,
                              Standardize, balanced_validation_split, channel_statistics,
                              decode_text, load_task, make_augment, random_flip_left_right,
                              random_pad_crop)
from keras_actfn.data.augment import crop_offsets
from keras_actfn.data.tfds_tasks import resolve_validation_size


# -- split arithmetic of the seeds -----------------------------------------------------------

@pytest.mark.parametrize("num_classes, per_class_val", [(10, 500), (100, 50)])
def test_cifar_split_is_45k_5k_with_equal_classes(num_classes, per_class_val):
    # CIFAR-10/100 train: 50,000 images, 5,000 (resp. 500) per class; dissertation A.1/A.2
    labels = np.random.default_rng(0).permutation(np.arange(50_000) % num_classes)
    train, val = balanced_validation_split(labels, 5000, seed=3, num_classes=num_classes)
    assert len(train) == 45_000 and len(val) == 5000
    assert np.all(np.bincount(labels[val], minlength=num_classes) == per_class_val)
    assert np.all(np.bincount(labels[train], minlength=num_classes)
                  == 50_000 // num_classes - per_class_val)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.union1d(train, val), np.arange(50_000))
    again = balanced_validation_split(labels, 5000, seed=3, num_classes=num_classes)[1]
    other = balanced_validation_split(labels, 5000, seed=4, num_classes=num_classes)[1]
    assert np.array_equal(val, again) and not np.array_equal(val, other)


def test_balanced_split_equal_counts_on_imbalanced_classes_and_remainder():
    # SVHN-like imbalance: equal counts per class, not proportional
    labels = np.repeat(np.arange(4), [1000, 200, 50, 400])
    _, val = balanced_validation_split(labels, 102, seed=0, num_classes=4)
    counts = np.bincount(labels[val], minlength=4)
    assert counts.sum() == 102 and sorted(counts) == [25, 25, 26, 26]
    with pytest.raises(ValueError, match="class 2 has 50 examples"):
        balanced_validation_split(labels, 400, seed=0, num_classes=4)
    assert balanced_validation_split(labels, 0, seed=0)[1].size == 0


def test_resolve_validation_size():
    assert resolve_validation_size(5000, 50_000) == 5000
    assert resolve_validation_size(0.1, 9469) == 947
    with pytest.raises(ValueError):
        resolve_validation_size(50_000, 50_000)
    with pytest.raises(ValueError):
        resolve_validation_size(1.5, 100)


def test_channel_statistics_match_numpy():
    x = np.random.default_rng(1).integers(0, 256, (300, 5, 7, 3), dtype=np.uint8)
    mean, std = channel_statistics(x, chunk=64)
    ref = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 1, 2)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 1, 2)), rtol=0, atol=1e-12)


# -- tfds loaders through tfds.testing.mock_data ------------------------------------------------

MOCK_CASES = {
    # name: (options, input shape, classes, default augment)
    "cifar10": ({"validation_size": 100}, (32, 32, 3), 10, FlipAndCrop(True, 4)),
    "cifar100": ({"validation_size": 100}, (32, 32, 3), 100, FlipAndCrop(True, 4)),
    "svhn_cropped": ({"validation_size": 100}, (32, 32, 3), 10, FlipAndCrop(False, 4)),
    "mnist": ({"validation_size": 100}, (28, 28, 1), 10, None),
    "imagenette": ({"validation_size": 0.1, "image_size": 24}, (24, 24, 3), 10,
                   FlipAndCrop(True, 3)),
}


@pytest.mark.parametrize("name", sorted(MOCK_CASES))
def test_tfds_task_through_mock_data(name):
    options, shape, classes, augment = MOCK_CASES[name]
    n = 1000 if name != "imagenette" else 200
    with tfds.testing.mock_data(num_examples=n):
        task = load_task(name, seed=5, cache=False, **options)
    val_size = 100 if name != "imagenette" else 20
    assert (task.name, task.kind, task.num_classes, task.input_shape) == (
        name, "classification", classes, shape)
    assert task.size("train") == n - val_size
    assert task.size("validation") == val_size and task.size("test") == n
    for split in ("train", "validation", "test"):
        x, y = task.arrays(split)
        assert x.dtype == np.uint8 and y.dtype == np.int32 and x.shape[1:] == shape
    # equal per-class counts although mock labels are random (unequal classes)
    counts = np.bincount(task.arrays("validation")[1], minlength=classes)
    assert counts.max() - counts.min() <= 1 and counts.sum() == val_size
    assert task.info["validation_per_class"] == counts.tolist()
    assert task.augment == augment
    expected_tfds = "imagenette/160px-v2" if name == "imagenette" else name
    assert task.info["tfds_name"] == expected_tfds


def test_featurewise_statistics_come_from_train_only():
    with tfds.testing.mock_data(num_examples=1000):
        task = load_task("cifar10", validation_size=200, cache=False)
    x_train = task.arrays("train")[0].astype(np.float64) / 255
    np.testing.assert_allclose(task.info["mean"], x_train.mean(axis=(0, 1, 2)), atol=1e-12)
    np.testing.assert_allclose(task.info["std"], x_train.std(axis=(0, 1, 2)), atol=1e-12)
    x_all = np.concatenate([task.arrays("train")[0], task.arrays("validation")[0]])
    assert not np.allclose(task.info["mean"], x_all.mean(axis=(0, 1, 2)) / 255, atol=1e-9)
    z = np.concatenate([x for x, _ in task.dataset("train", 300).as_numpy_iterator()])
    assert z.dtype == np.float32
    z = z.astype(np.float64)
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1, atol=1e-5)
    # normalize=False only scales to [0, 1]
    with tfds.testing.mock_data(num_examples=50):
        raw = load_task("cifar10", validation_size=10, normalize=False, cache=False)
    x, _ = next(raw.dataset("test", 50).as_numpy_iterator())
    np.testing.assert_allclose(x, raw.arrays("test")[0] / 255, atol=1e-7)


def test_mocked_data_is_never_cached():
    for n in (30, 40):
        with tfds.testing.mock_data(num_examples=n):
            assert load_task("mnist", validation_size=10).size("test") == n


# -- tfds loaders from a dataset prepared locally under a tmp data_dir -----------------------

def _prepare_locally(tfds_name, data_dir, splits, monkeypatch):
    """Write ``splits = {split: (images, labels)}`` as a real tfds dataset under ``data_dir``
    with the registered builder (its record format, folder layout and metadata), replacing
    only the download step: no network."""
    try:
        importlib.import_module("importlib_resources")
    except ImportError:  # tfds's code_path needs it; the stdlib module has the same API
        monkeypatch.setitem(sys.modules, "importlib_resources", importlib.resources)
    builder = tfds.builder(tfds_name, data_dir=str(data_dir))
    features = builder.info.features

    def split_generators(self, dl_manager):
        def examples(split):
            images, labels = splits[split]
            for i, (image, label) in enumerate(zip(images, labels)):
                example = {}
                for key, feature in features.items():
                    if isinstance(feature, tfds.features.Image):
                        example[key] = image
                    elif key == "label":
                        example[key] = int(label)
                    elif isinstance(feature, tfds.features.ClassLabel):
                        example[key] = 0
                    else:
                        example[key] = f"{split}_{i}"
                yield i, example
        return {split: examples(split) for split in splits}

    with mock.patch.object(type(builder), "_split_generators", split_generators):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def _indexed_images(n, shape, seed):
    images = np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n)  # identifies the example after tfds's shuffling
    return images


def test_cifar10_from_a_prepared_data_dir(tmp_path, monkeypatch):
    y_train = np.arange(200) % 10
    x_train = _indexed_images(200, (32, 32, 3), 0)
    y_test = np.arange(30) % 10
    x_test = _indexed_images(30, (32, 32, 3), 1)
    _prepare_locally("cifar10", tmp_path, {"train": (x_train, y_train),
                                           "test": (x_test, y_test)}, monkeypatch)
    task = load_task("cifar10", data_dir=tmp_path, validation_size=50, seed=1, cache=False)
    assert (task.size("train"), task.size("validation"), task.size("test")) == (150, 50, 30)
    assert task.info["validation_per_class"] == [5] * 10
    assert task.info["data_dir"] == str(tmp_path)
    for split, (xs, ys) in {"train": (x_train, y_train), "test": (x_test, y_test)}.items():
        x, y = task.arrays(split)
        index = x[:, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(x, xs[index])
        np.testing.assert_array_equal(y, ys[index])
    seen = np.concatenate([task.arrays(s)[0][:, 0, 0, 0] for s in ("train", "validation")])
    assert sorted(seen.tolist()) == list(range(200))
    # the same call with the cache decodes once and hands out read-only arrays
    first = load_task("cifar10", data_dir=tmp_path, validation_size=50, seed=1)
    second = load_task("cifar10", data_dir=tmp_path, validation_size=50, seed=1)
    assert first.arrays("test")[0] is second.arrays("test")[0]
    assert not first.arrays("test")[0].flags.writeable
    # data_dir is respected: another folder does not have it
    with pytest.raises(DatasetUnavailableError):
        load_task("cifar10", data_dir=tmp_path / "elsewhere", cache=False)


def test_imagenette_from_a_prepared_data_dir_is_resized_and_cropped(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    sizes = [(40, 60), (60, 40), (30, 30)]

    def images(n):
        return [rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8) for i in range(n)]

    _prepare_locally("imagenette/160px-v2", tmp_path,
                     {"train": (images(40), np.arange(40) % 10),
                      "validation": (images(20), np.arange(20) % 10)}, monkeypatch)
    task = load_task("imagenette", data_dir=tmp_path, image_size=20, validation_size=10,
                     cache=False)
    assert task.input_shape == (20, 20, 3)
    assert (task.size("train"), task.size("validation"), task.size("test")) == (30, 10, 20)
    assert task.info["tfds_splits"]["test"] == "validation"
    # a different config lives in a different folder
    with pytest.raises(DatasetUnavailableError, match="imagenette/320px-v2"):
        load_task("imagenette", data_dir=tmp_path, image_size=300, cache=False)


# -- missing data ---------------------------------------------------------------------------

def test_missing_dataset_says_how_to_provide_it(tmp_path):
    empty = tmp_path / "tfds"
    with pytest.raises(DatasetUnavailableError) as info:
        load_task("cifar10", data_dir=empty, cache=False)
    assert isinstance(info.value, RuntimeError)
    message = str(info.value)
    for needle in ["'cifar10'", str(empty), "cifar10/3.0.2", "tfds build cifar10 --data_dir",
                   "download_and_prepare()", "copy the folder", "download=True", "mnist1d",
                   "digits"]:
        assert needle in message, needle
    with pytest.raises(DatasetUnavailableError, match="tfds build imagenette/160px-v2"):
        load_task("imagenette", data_dir=empty, cache=False)


def test_loader_options_are_checked():
    with pytest.raises(ValueError, match="imagenette"):
        load_task("cifar10", image_size=64)
    with pytest.raises(TypeError):
        load_task("cifar10", validaton_size=10)


def test_all_loaders_registered():
    assert {"mnist1d", "digits", "cifar10", "cifar100", "svhn_cropped", "mnist", "imagenette",
            "text", "tinystories"} <= set(TASK_LOADERS)


# -- augmentation ---------------------------------------------------------------------------

def _shifted(image, dy, dx):
    """NumPy reference: content moved by (-dy, -dx), zeros where nothing moved in."""
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    for r in range(h):
        for c in range(w):
            if 0 <= r + dy < h and 0 <= c + dx < w:
                out[r, c] = image[r + dy, c + dx]
    return out


def test_pad_crop_is_a_shifted_copy_with_zero_border():
    pad = 2
    x = (np.arange(16 * 6 * 5 * 2).reshape(16, 6, 5, 2) % 250 + 1).astype(np.uint8)
    seed = tf.constant([7, 11], tf.int64)
    out = random_pad_crop(x, pad, seed).numpy()
    assert out.shape == x.shape and out.dtype == np.uint8
    offsets = crop_offsets(16, pad, seed).numpy()
    assert offsets.min() >= 0 and offsets.max() <= 2 * pad
    assert len({tuple(o) for o in offsets}) > 1  # each example its own offset
    for i, (oy, ox) in enumerate(offsets):
        np.testing.assert_array_equal(out[i], _shifted(x[i], oy - pad, ox - pad))
    np.testing.assert_array_equal(out, random_pad_crop(x, pad, seed).numpy())
    assert not np.array_equal(out, random_pad_crop(x, pad, [7, 12]).numpy())
    np.testing.assert_array_equal(random_pad_crop(x, 0, seed), x)


def test_pad_crop_covers_every_shift():
    offsets = crop_offsets(2000, 5, [1, 2]).numpy()
    assert set(offsets[:, 0]) == set(range(11)) and set(offsets[:, 1]) == set(range(11))


def test_flip_mirrors_some_examples():
    x = np.random.default_rng(0).normal(size=(64, 4, 6, 3)).astype(np.float32)
    out = random_flip_left_right(x, [3, 4]).numpy()
    flipped = np.array([np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, x)])
    kept = np.array([np.array_equal(o, xi) for o, xi in zip(out, x)])
    assert np.all(flipped ^ kept) and 10 < flipped.sum() < 54
    np.testing.assert_array_equal(out, random_flip_left_right(x, [3, 4]).numpy())
    assert not np.array_equal(out, random_flip_left_right(x, [3, 5]).numpy())


def test_flip_and_crop_in_a_graph_with_unknown_batch():
    augment = make_augment(flip=True, pad=4)
    fn = tf.function(augment, input_signature=[
        tf.TensorSpec([None, 8, 8, 3], tf.float32), tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([2], tf.int64)])
    x = tf.random.stateless_normal([5, 8, 8, 3], [0, 1])
    y = tf.range(5)
    out, labels = fn(x, y, tf.constant([1, 2], tf.int64))
    assert out.shape == (5, 8, 8, 3)
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_array_equal(out, fn(x, y, tf.constant([1, 2], tf.int64))[0])
    assert make_augment(flip=False, pad=0) is None
    assert make_augment(flip=False, pad=5) == FlipAndCrop(flip=False, pad=5)
    clone = pickle.loads(pickle.dumps(augment))
    np.testing.assert_array_equal(clone(x, y, [1, 2])[0], augment(x, y, [1, 2])[0])
    std = pickle.loads(pickle.dumps(Standardize([0.5], [0.25])))
    np.testing.assert_allclose(std(np.full((1, 1, 1, 1), 255, np.uint8)), [[[[2.0]]]])


def test_task_augmentation_is_reproducible_and_fresh_each_epoch():
    with tfds.testing.mock_data(num_examples=64):
        task = load_task("cifar10", validation_size=10, cache=False)

    def epoch(ds):
        return np.concatenate([x for x, _ in ds.as_numpy_iterator()])

    ds = task.dataset("train", 16, shuffle=False, augment=True, seed=3)
    first, second = epoch(ds), epoch(ds)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(
        first, epoch(task.dataset("train", 16, shuffle=False, augment=True, seed=3)))
    assert not np.array_equal(
        first, epoch(task.dataset("train", 16, shuffle=False, augment=True, seed=4)))


# -- text language-model task ---------------------------------------------------------------

TEXT = "".join(f"Once upon a time, story {i} had a cat named Ünal and a dog. "
               for i in range(300))


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_byte_text_task_windows_and_splits(text_file):
    task = load_task("text", path=text_file, seq_len=32)
    raw = TEXT.encode("utf-8")
    assert task.kind == "language_model" and task.num_classes == 256
    assert task.input_shape == (32,)
    bounds = task.info["split_tokens"]
    assert bounds["train"][0] == 0 and bounds["test"][1] == len(raw)
    assert bounds["train"][1] == bounds["validation"][0] == int(0.9 * len(raw))
    assert bounds["validation"][1] == bounds["test"][0] == int(0.95 * len(raw))
    for split, (start, stop) in bounds.items():
        x, y = task.arrays(split)
        assert x.dtype == np.int32 and x.shape == y.shape and x.shape[1] == 32
        assert len(x) == (stop - start - 1) // 32
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
        np.testing.assert_array_equal(y[:-1, -1], x[1:, 0])
        # the windows tile the split's own bytes from its start: no leakage across splits
        stream = np.concatenate([x.reshape(-1), y[-1, -1:]])
        assert decode_text(stream, task) == raw[start:start + len(stream)].decode()
        assert stop - start - len(stream) < 32
    xb, yb = next(task.dataset("train", 4).as_numpy_iterator())
    assert xb.shape == (4, 32) and yb.dtype == np.int32


def test_char_text_task_and_strided_windows(text_file):
    task = load_task("text", path=text_file, seq_len=16, stride=4, tokenizer="char")
    assert task.num_classes == len(set(TEXT)) == len(task.info["vocab"])
    x, y = task.arrays("train")
    start, stop = task.info["split_tokens"]["train"]
    assert len(x) == (stop - start - 17) // 4 + 1
    np.testing.assert_array_equal(x[1, :12], x[0, 4:])
    assert decode_text(np.concatenate([x[0], y[0, -1:]]), task) == TEXT[:17]
    assert "Ü" in task.info["vocab"]
    # a multi-byte character cut by max_bytes is dropped, not garbled
    cut = TEXT.encode().index("Ü".encode()) + 1
    short = load_task("text", path=text_file, seq_len=4, tokenizer="char", max_bytes=cut + 200)
    assert "\ufffd" not in short.info["vocab"]


def test_text_errors_and_tinystories(text_file, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="fewer than one window"):
        load_task("text", path=text_file, seq_len=5000)
    with pytest.raises(DatasetUnavailableError, match="not a file"):
        load_task("text", path=tmp_path / "missing.txt")
    monkeypatch.delenv("KERAS_ACTFN_TINYSTORIES", raising=False)
    with pytest.raises(DatasetUnavailableError) as info:
        load_task("tinystories")
    assert "roneneldan/TinyStories" in str(info.value)
    assert "KERAS_ACTFN_TINYSTORIES" in str(info.value) and "mnist1d" in str(info.value)
    monkeypatch.setenv("KERAS_ACTFN_TINYSTORIES", str(text_file))
    task = load_task("tinystories", seq_len=64)
    assert task.name == "tinystories" and task.size("test") > 0


def test_misspelled_task_option_is_an_error_portable_ones_are_not():
    from keras_actfn.data import load_task

    with pytest.raises(TypeError, match=r"unknown task option\(s\) \['validaton_size'\].*"
                                         r"validation_size"):
        load_task("digits", validaton_size=0.1)
    # a recipe's CIFAR options stay valid when an embedded task replaces its dataset
    assert load_task("digits", data_dir="/nowhere", normalize=True).name == "digits"
