"""Data sources of a user-model search: every form resolves to batches of the right
content, fingerprints follow the content, portable copies are written once and read back
equal."""

import os
import pickle

import numpy as np
import pytest

from keras_actfn.backend import tf
from keras_actfn.data.sources import (ArraySplit, DataError, FolderSplit, SavedSplit,
                                      StreamSplit, TaskSplit, TfdsSplit, input_moments,
                                      resolve_data)


def _arrays(n=100, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 1)).astype("float32"), rng.integers(0, 3, n).astype("int32")


def _collect(ds):
    xs, ys = zip(*[(np.asarray(a), np.asarray(b)) for a, b in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_arrays_with_validation_split_as_fit_does():
    x, y = _arrays(100)
    source = resolve_data(x, y, validation_split=0.2)
    xt, yt = _collect(source.train.dataset(16))
    xv, yv = _collect(source.validation.dataset(16))
    np.testing.assert_array_equal(xt, x[:80])  # fit holds out the *last* 20%
    np.testing.assert_array_equal(xv, x[80:])
    # shuffled epochs: the same examples in another order, reproducible from the seed
    a, _ = _collect(source.train.dataset(16, shuffle=True, seed=1))
    b, _ = _collect(source.train.dataset(16, shuffle=True, seed=1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, xt)
    np.testing.assert_allclose(np.sort(a.ravel()), np.sort(xt.ravel()))


def test_fingerprint_follows_content():
    x, y = _arrays(50)
    base = ArraySplit(x, y).fingerprint()
    assert ArraySplit(x.copy(), y.copy()).fingerprint() == base
    x2 = x.copy()
    x2[3, 2, 0] += 1e-3
    assert ArraySplit(x2, y).fingerprint() != base
    assert ArraySplit(x, (y + 1) % 3).fingerprint() != base


def test_portable_arrays_written_once_and_equal(tmp_path):
    x, y = _arrays(40)
    source = resolve_data(x, y, validation_data=_arrays(10, 1))
    portable = source.portable(str(tmp_path))
    assert portable.fingerprint() == source.fingerprint()
    files = sorted(os.listdir(tmp_path))
    stamps = [os.stat(tmp_path / f).st_mtime_ns for f in files]
    again = source.portable(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == files
    assert [os.stat(tmp_path / f).st_mtime_ns for f in files] == stamps
    copy = pickle.loads(pickle.dumps(again))
    xt, yt = _collect(copy.train.dataset(8))
    np.testing.assert_array_equal(xt, x)
    np.testing.assert_array_equal(yt, y)
    assert len(pickle.dumps(again)) < 5000  # paths, not arrays


def test_stream_saved_once_and_streamed_back(tmp_path):
    x, y = _arrays(64)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    source = resolve_data(ds, input_shape=(None, 6, 1))
    assert isinstance(source.train, StreamSplit) and source.train.batched
    with pytest.raises(TypeError, match="cannot be sent to another process"):
        pickle.dumps(source.train)
    portable = source.portable(str(tmp_path))
    assert isinstance(portable.train, SavedSplit)
    loaded = pickle.loads(pickle.dumps(portable.train))
    xt, yt = _collect(loaded.dataset(16))
    np.testing.assert_array_equal(xt, x)
    np.testing.assert_array_equal(yt, y)
    assert loaded.fingerprint() == source.train.fingerprint()
    # a folder written by Dataset.save is itself a data path
    saved = [d for d in os.listdir(tmp_path) if d.endswith(".tfdata")][0]
    again = resolve_data(str(tmp_path / saved), input_shape=(None, 6, 1))
    assert isinstance(again.train, SavedSplit) and again.train.batched


def test_npz_layouts(tmp_path):
    x, y = _arrays(30)
    full = tmp_path / "full.npz"
    np.savez(full, x_train=x, y_train=y, x_val=x[:5], y_val=y[:5], x_test=x[:7], y_test=y[:7])
    source = resolve_data(str(full))
    assert source.train.size() == 30 and source.validation.size() == 5
    assert source.test.size() == 7
    bare = tmp_path / "bare.npz"
    np.savez(bare, x_train=x, y_train=y)
    split = resolve_data(str(bare), validation_split=0.1)
    assert split.train.size() == 27 and split.validation.size() == 3
    bad = tmp_path / "bad.npz"
    np.savez(bad, inputs=x)
    with pytest.raises(DataError, match="needs arrays x_train and y_train.*inputs"):
        resolve_data(str(bad))
    half = tmp_path / "half.npz"
    np.savez(half, x_train=x, y_train=y, x_val=x)
    with pytest.raises(DataError, match="x_val and y_val come together"):
        resolve_data(str(half))


def test_image_folder_subsets_are_disjoint_and_complete(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(10):
            # each image carries its own id in its first pixel
            pixels = np.full((8, 8, 3), 0, np.uint8)
            pixels[0, 0] = (i + (10 if label == "dog" else 0), 0, 0)
            pixels[1:] = rng.integers(0, 255, (7, 8, 3))
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    source = resolve_data(str(tmp_path), validation_split=0.3, input_shape=(None, 8, 8, 3))
    assert isinstance(source.train, FolderSplit)
    xt, yt = _collect(source.train.dataset(4))
    xv, yv = _collect(source.validation.dataset(4))
    ids_t, ids_v = set(xt[:, 0, 0, 0].astype(int)), set(xv[:, 0, 0, 0].astype(int))
    assert len(xt) == 14 and len(xv) == 6
    assert not ids_t & ids_v and ids_t | ids_v == set(range(20))
    for ids, labels in ((xt[:, 0, 0, 0], yt), (xv[:, 0, 0, 0], yv)):
        np.testing.assert_array_equal(labels, (ids >= 10).astype(int))  # dog = class 1
    fingerprint = source.train.fingerprint()
    (tmp_path / "dog" / "0.png").unlink()
    assert FolderSplit(str(tmp_path), (8, 8), "training", 0.3).fingerprint() != fingerprint
    with pytest.raises(DataError, match="input shape"):
        resolve_data(str(tmp_path), input_shape=(None, 64))


def test_tfds_dataset_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        source = resolve_data("tfds:mnist", validation_split=0.25)
        assert isinstance(source.train, TfdsSplit) and source.train.split == "train[:75%]"
        assert source.validation.split == "train[75%:]" and source.test.split == "test"
        xt, yt = _collect(source.train.dataset(8))
        xv, _ = _collect(source.validation.dataset(8))
        # tfds's mock data gives num_examples for any split string (slices are tfds's job)
        assert xt.shape[1:] == (28, 28, 1) and len(xt) == len(xv) == 40
        assert yt.dtype == np.int64 and yt.max() < 10


def test_task_name_and_input_moments():
    source = resolve_data("digits")
    assert isinstance(source.train, TaskSplit)
    x_train = source.train.task.arrays("train")[0]
    mean, var = input_moments(source, limit=10_000)
    assert mean == pytest.approx(float(x_train.mean()), rel=1e-5)
    assert var == pytest.approx(float(x_train.var()), rel=1e-4)


def test_bad_data_arguments():
    x, y = _arrays(10)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    cases = [
        (dict(x=None), "no training data"),
        (dict(x=x), "y is missing"),
        (dict(x=ds, y=y), "y must be None when x is a tf.data.Dataset"),
        (dict(x=ds, validation_split=0.2), "validation_split needs arrays"),
        (dict(x=x, y=y[:5]), "x has 10 examples but y has 5"),
        (dict(x=x, y=y, validation_split=0.2, validation_data=(x, y)), "not both"),
        (dict(x=x, y=y, validation_data=[1, 2, 3]), "validation_data must be a tuple"),
        (dict(x="no_such_thing"), "cannot read data 'no_such_thing'"),
        (dict(x=tf.data.Dataset.range(3)), "must yield \\(x, y\\) pairs"),
    ]
    for kwargs, message in cases:
        with pytest.raises(DataError, match=message):
            resolve_data(input_shape=(None, 6, 1), **{"x": None, **kwargs})
