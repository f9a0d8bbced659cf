"""Embedded datasets that need no download."""

from __future__ import annotations

import contextlib
import functools

import numpy as np


@contextlib.contextmanager
def _numpy_seed(seed):
    # mnist1d draws from NumPy's global generator; keep the caller's stream untouched
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@functools.lru_cache(maxsize=4)
def _mnist1d(num_samples: int, seed: int):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    with _numpy_seed(seed):
        data = make_dataset(args)
    return (data["x"].astype("float32"), data["y"].astype("int32"),
            data["x_test"].astype("float32"), data["y_test"].astype("int32"))


def load_mnist1d(num_samples: int = 5000, seed: int = 42, validation_fraction: float = 0.1,
                 channel_axis: bool = True):
    """MNIST-1D (Greydanus 2020): 40-sample 1-D signals of the digits 0-9, generated locally.

    Returns a dict with ``x_train, y_train, x_val, y_val, x_test, y_test`` (float32 inputs of
    shape (n, 40, 1) — or (n, 40) with ``channel_axis=False`` — and int32 labels). The
    package's own 80/20 split gives train+val and test; validation is a class-balanced
    ``validation_fraction`` of the training part, drawn with ``seed``.
    """
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    x, y, x_test, y_test = _mnist1d(int(num_samples), int(seed))
    train_idx, val_idx = balanced_split(y, validation_fraction, seed)
    if channel_axis:
        x, x_test = x[..., None], x_test[..., None]
    return {"x_train": x[train_idx], "y_train": y[train_idx], "x_val": x[val_idx],
            "y_val": y[val_idx], "x_test": x_test, "y_test": y_test, "num_classes": 10}


def load_digits(validation_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0,
                image_axes: bool = False):
    """scikit-learn's 8x8 digits (1,797 images), scaled to [0, 1], class-balanced splits."""
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    x = (bunch.data / 16.0).astype("float32")
    y = bunch.target.astype("int32")
    rest, test = balanced_split(y, test_fraction, seed)
    train, val = balanced_split(y[rest], validation_fraction / (1 - test_fraction), seed + 1)
    train, val = rest[train], rest[val]
    if image_axes:
        x = x.reshape(-1, 8, 8, 1)
    return {"x_train": x[train], "y_train": y[train], "x_val": x[val], "y_val": y[val],
            "x_test": x[test], "y_test": y[test], "num_classes": 10}


def balanced_split(labels, fraction: float, seed: int):
    """Indices (kept, held_out): ``held_out`` takes ``fraction`` of every class."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        held.append(idx[: int(round(fraction * len(idx)))])
    held = np.sort(np.concatenate(held)) if held else np.array([], dtype=int)
    mask = np.ones(len(labels), dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask), held
