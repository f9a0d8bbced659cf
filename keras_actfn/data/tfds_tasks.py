"""Image classification tasks from tensorflow-datasets: CIFAR-10/100, SVHN, MNIST, Imagenette.

Every task loads through the real ``tfds.load`` with the caller's ``data_dir`` and
``download=False`` by default (machines here reach no dataset hosts). Images are held as uint8
NumPy arrays (CIFAR's 60,000 32x32 images take 184 MB); the task's ``preprocess`` casts each
batch to float32 in [0, 1] and, with ``normalize=True``, subtracts the per-channel mean and
divides by the per-channel standard deviation of the *training split only* (featurewise
centering and normalization). The statistics are in ``task.info["mean"]`` and ``["std"]``.

Splits follow the seeds: tfds's ``train`` is divided into train and a class-balanced
validation set (the same number of images from every class: 500 per class for CIFAR-10 and 50
per class for CIFAR-100, i.e. 45K/5K/10K, dissertation A.1 and A.2); tfds's ``test`` is the
test set, untouched. Imagenette has no test split in tfds, so its official ``validation``
split is the test set and the validation set is carved from ``train``.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from .augment import make_augment
from .tasks import DatasetUnavailableError, Task

#: Imagenette configs of tfds by the largest image side they serve without upsampling.
_IMAGENETTE_CONFIGS = ((160, "160px-v2"), (320, "320px-v2"), (None, "full-size-v2"))


@dataclasses.dataclass(frozen=True)
class TfdsTaskSpec:
    """How one registry name maps onto tensorflow-datasets."""

    tfds_name: str
    train_split: str = "train"
    test_split: str = "test"
    validation_size: int | float = 5000
    flip: bool = True
    pad: int = 4
    note: str = ""


TFDS_TASKS = {
    "cifar10": TfdsTaskSpec("cifar10", note="45K/5K/10K, 500 validation images per class"),
    "cifar100": TfdsTaskSpec("cifar100", note="45K/5K/10K, 50 validation images per class"),
    # digits: a mirrored digit is another symbol, so no flips
    "svhn_cropped": TfdsTaskSpec("svhn_cropped", flip=False, pad=4,
                                 note="train split only (the 531K 'extra' split is not used)"),
    "mnist": TfdsTaskSpec("mnist", flip=False, pad=0,
                          note="55K/5K/10K as in dissertation A.3.2"),
    "imagenette": TfdsTaskSpec("imagenette", test_split="validation",
                               validation_size=0.1,
                               note="official validation split is the test set"),
}


# -- splits ----------------------------------------------------------------------------------

def resolve_validation_size(validation_size, num_train: int) -> int:
    """An int is a count of examples; a float in (0, 1) a fraction of the training split."""
    if isinstance(validation_size, (bool, np.bool_)):
        raise TypeError(f"validation_size must be an int or a float, got {validation_size!r}")
    if isinstance(validation_size, (float, np.floating)):
        if not 0 <= validation_size < 1:
            raise ValueError(f"a fractional validation_size must be in [0, 1), got "
                             f"{validation_size}")
        return int(round(validation_size * num_train))
    size = int(validation_size)
    if not 0 <= size < num_train:
        raise ValueError(f"validation_size must be in [0, {num_train}) for a training split "
                         f"of {num_train} examples, got {size}")
    return size


def balanced_validation_split(labels, size: int, seed: int, num_classes: int | None = None):
    """Indices ``(train, validation)``: ``validation`` holds ``size`` examples, the same
    number from every class (the remainder of ``size / classes`` goes one each to classes
    chosen at random); both index arrays are sorted.

    Unlike :func:`~keras_actfn.data.balanced_split`, which holds out a *fraction of each
    class* (proportional), this holds out *equal counts*, the "balanced validation set" of the
    dissertation, and hits ``size`` exactly; on equal-sized classes (CIFAR) both agree.

    Raises ``ValueError`` if a class has fewer examples than its share.
    """
    labels = np.asarray(labels)
    classes = np.arange(num_classes) if num_classes is not None else np.unique(labels)
    size = int(size)
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    rng = np.random.default_rng(seed)
    quota = np.full(len(classes), size // max(len(classes), 1))
    quota[rng.permutation(len(classes))[: size - quota.sum()]] += 1
    held = []
    for c, q in zip(classes, quota):
        idx = np.flatnonzero(labels == c)
        if q > len(idx):
            raise ValueError(f"class {c} has {len(idx)} examples, fewer than the {q} a "
                             f"balanced validation set of {size} needs")
        held.append(rng.choice(idx, size=int(q), replace=False))
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    keep = np.ones(len(labels), dtype=bool)
    keep[held] = False
    return np.flatnonzero(keep), held


# -- featurewise statistics and preprocessing ----------------------------------------------

def channel_statistics(images, chunk: int = 4096):
    """Per-channel mean and standard deviation of uint8 NHWC images, in the [0, 1] scale.

    Accumulated exactly in integers chunk by chunk, so 45K CIFAR images need no float copy.
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"expected a non-empty uint8 batch (n, h, w, c); received shape "
                         f"{images.shape}")
    channels = images.shape[-1]
    total = np.zeros(channels, dtype=np.uint64)
    total_sq = np.zeros(channels, dtype=np.uint64)
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].reshape(-1, channels).astype(np.uint64)
        total += part.sum(axis=0)
        total_sq += (part * part).sum(axis=0)
    count = images.size // channels
    mean = total.astype(np.float64) / count
    var = total_sq.astype(np.float64) / count - mean ** 2
    std = np.sqrt(np.maximum(var, 0.0))
    return mean / 255.0, std / 255.0


class Standardize:
    """``preprocess`` of image tasks: uint8 -> float32 in [0, 1], then, when ``mean`` and
    ``std`` are given, ``(x - mean) / std`` per channel. Picklable (no closure)."""

    def __init__(self, mean=None, std=None, epsilon: float = 1e-7):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.maximum(np.asarray(std, dtype=np.float32),
                                                       epsilon)

    def __call__(self, x):
        import tensorflow as tf

        x = tf.cast(x, tf.float32) * (1.0 / 255.0)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x

    def __repr__(self):
        if self.mean is None:
            return "Standardize(scale=1/255)"
        return f"Standardize(mean={self.mean.tolist()}, std={self.std.tolist()})"


# -- reading tfds --------------------------------------------------------------------------

def _resize_and_center_crop(size: int):
    """Resize the shorter side to ``size`` (antialiased), then take the central square."""
    import tensorflow as tf

    def fn(image, label):
        shape = tf.shape(image)
        h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
        scale = size / tf.minimum(h, w)
        new = tf.stack([tf.maximum(size, tf.cast(tf.round(h * scale), tf.int32)),
                        tf.maximum(size, tf.cast(tf.round(w * scale), tf.int32))])
        image = tf.image.resize(image, new, method="bilinear", antialias=True)
        image = tf.image.resize_with_crop_or_pad(image, size, size)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return image, label

    return fn


def _to_numpy(ds, image_size):
    import tensorflow as tf

    if image_size is not None:
        ds = ds.map(_resize_and_center_crop(image_size), num_parallel_calls=tf.data.AUTOTUNE)
    xs, ys = [], []
    for x, y in ds.batch(2048).prefetch(2).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        return None
    return np.concatenate(xs).astype(np.uint8, copy=False), \
        np.concatenate(ys).astype(np.int32, copy=False)


def _default_data_dir(data_dir):
    if data_dir is not None:
        return os.path.expanduser(str(data_dir))
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def _unavailable_message(task_name, tfds_name, data_dir, error, download):
    root = _default_data_dir(data_dir)
    where = os.path.join(root, *tfds_name.split("/"))
    try:  # the exact versioned folder tfds looked in
        import tensorflow_datasets as tfds

        where = str(tfds.builder(tfds_name, data_dir=root).data_dir)
    except Exception:  # noqa: BLE001 - the message is still useful without it
        pass
    reason = (f"could not be downloaded ({type(error).__name__}: {error})" if download else
              "is not prepared there and download=False (this machine has no internet)")
    if not download and not isinstance(error, (AssertionError, FileNotFoundError)):
        reason = f"could not be read ({type(error).__name__}: {error})"
    data_dir_arg = "" if data_dir is None else f", data_dir={str(data_dir)!r}"
    return (
        f"dataset {task_name!r} (tensorflow-datasets name {tfds_name!r}) was looked for in "
        f"data_dir {root!r} (folder {where}) and {reason}.\n"
        f"To provide it:\n"
        f"  1. on a machine with internet access and tensorflow-datasets installed, run\n"
        f"       tfds build {tfds_name} --data_dir /some/dir\n"
        f"     or in Python\n"
        f"       import tensorflow_datasets as tfds\n"
        f"       tfds.builder({tfds_name!r}, data_dir='/some/dir').download_and_prepare()\n"
        f"  2. copy the folder /some/dir/{tfds_name.split('/')[0]} into {root!r} on this "
        f"machine, so that {where}/dataset_info.json exists;\n"
        f"  3. call load_task({task_name!r}{data_dir_arg}) again (without data_dir, tfds "
        f"reads $TFDS_DATA_DIR or ~/tensorflow_datasets).\n"
        f"With internet on this machine, load_task({task_name!r}, download=True) does 1-2 in "
        f"place. The embedded tasks 'mnist1d' and 'digits' need no download: "
        f"load_task('mnist1d')."
    )


def _read_tfds(task_name, tfds_name, splits, data_dir, download, image_size):
    """``{split: (uint8 images, int32 labels)}`` and the tfds info, via ``tfds.load``."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:  # pragma: no cover - a dependency of the package
        raise DatasetUnavailableError(
            f"dataset {task_name!r} needs tensorflow-datasets: pip install "
            f"tensorflow-datasets") from error
    try:
        datasets, info = tfds.load(tfds_name, split=list(splits), data_dir=data_dir,
                                   download=download, as_supervised=True, with_info=True,
                                   shuffle_files=False)
        arrays = {split: _to_numpy(ds, image_size) for split, ds in zip(splits, datasets)}
    except Exception as error:  # noqa: BLE001 - every tfds failure means "not available"
        raise DatasetUnavailableError(
            _unavailable_message(task_name, tfds_name, data_dir, error, download)) from error
    empty = [split for split, value in arrays.items() if value is None]
    if empty:
        raise DatasetUnavailableError(
            f"dataset {task_name!r}: tensorflow-datasets {tfds_name!r} in data_dir "
            f"{_default_data_dir(data_dir)!r} has no examples in split(s) {empty}; prepare it "
            f"again (tfds build {tfds_name} --data_dir ... --overwrite)")
    return arrays, info


def _prepared_stamp(tfds_name, data_dir):
    """Modification time of the prepared dataset's ``dataset_info.json``, or ``None`` when
    tfds has no files for it (not prepared yet, or tfds is mocked in a test)."""
    try:
        import tensorflow_datasets as tfds

        folder = tfds.builder(tfds_name, data_dir=data_dir).data_dir
        return os.stat(os.path.join(str(folder), "dataset_info.json")).st_mtime_ns
    except Exception:  # noqa: BLE001 - no stamp only means "do not cache"
        return None


@functools.lru_cache(maxsize=2)
def _read_tfds_cached(task_name, tfds_name, splits, data_dir, download, image_size, stamp):
    # ``stamp`` is part of the key: a dataset prepared again is read again
    arrays, info = _read_tfds(task_name, tfds_name, splits, data_dir, download, image_size)
    for x, y in arrays.values():  # shared between tasks: nobody may write into them
        x.flags.writeable = False
        y.flags.writeable = False
    return arrays, info


def clear_cache():
    """Forget the arrays kept by ``load_tfds_task(..., cache=True)``."""
    _read_tfds_cached.cache_clear()


def _imagenette_config(image_size):
    for limit, config in _IMAGENETTE_CONFIGS:
        if limit is None or image_size <= limit:
            return config
    raise AssertionError("unreachable")


_DEFAULT = object()


def load_tfds_task(name: str, data_dir=None, validation_size=None, seed: int = 0,
                   normalize: bool = True, augment=_DEFAULT, download: bool = False,
                   image_size: int | None = None, config: str | None = None,
                   cache: bool = True) -> Task:
    """Load ``cifar10``, ``cifar100``, ``svhn_cropped``, ``mnist`` or ``imagenette``.

    Args:
        name: a key of :data:`TFDS_TASKS`.
        data_dir: tensorflow-datasets data folder (default: ``$TFDS_DATA_DIR`` or
            ``~/tensorflow_datasets``).
        validation_size: examples carved from tfds's train split into a class-balanced
            validation set (int: count; float in (0, 1): fraction). Defaults: 5,000 for
            CIFAR-10/100, SVHN and MNIST; 10% of train for Imagenette. ``0`` gives an empty
            validation split (train on all of tfds's train).
        seed: seed of the validation split.
        normalize: featurewise centering and normalization with training-split statistics;
            ``False`` only scales to [0, 1] (the AQuaSurF ResNet-56 recipe).
        augment: ``augment`` of the task; by default flip + pad-4 crop for CIFAR, pad-4 crop
            for SVHN, none for MNIST, flip + pad ``image_size // 8`` crop for Imagenette.
            Pass ``make_augment(flip=True, pad=5)`` for All-CNN-C or ``None`` for none.
        download: let tfds download and prepare the dataset (needs internet).
        image_size: Imagenette only: images are resized (shorter side) and center-cropped to
            ``image_size`` x ``image_size``; default 160, the size of the papers.
        config: Imagenette only: the tfds config; by default the smallest that holds
            ``image_size`` (``160px-v2``, ``320px-v2`` or ``full-size-v2``).
        cache: keep the decoded arrays of the last two loads in memory (read-only), so
            repeated ``load_task`` calls in one process (a search) decode the dataset once.
            Only data read from prepared files is cached (keyed by their modification
            time), never mocked tfds data.
    """
    try:
        spec = TFDS_TASKS[name]
    except KeyError:
        raise ValueError(f"unknown tensorflow-datasets task {name!r}; available: "
                         f"{sorted(TFDS_TASKS)}") from None
    tfds_name = spec.tfds_name
    if name == "imagenette":
        image_size = 160 if image_size is None else int(image_size)
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        tfds_name = f"{tfds_name}/{config or _imagenette_config(image_size)}"
    elif image_size is not None or config is not None:
        raise ValueError(f"image_size and config apply to 'imagenette' only; {name!r} images "
                         f"are loaded at their native size")

    splits = (spec.train_split, spec.test_split)
    data_dir = None if data_dir is None else os.fspath(data_dir)
    stamp = _prepared_stamp(tfds_name, data_dir) if cache else None
    if stamp is None:
        arrays, info = _read_tfds(name, tfds_name, splits, data_dir, bool(download), image_size)
    else:
        arrays, info = _read_tfds_cached(name, tfds_name, splits, data_dir, bool(download),
                                         image_size, stamp)
    x_all, y_all = arrays[spec.train_split]
    x_test, y_test = arrays[spec.test_split]

    num_classes = int(info.features["label"].num_classes)
    size = resolve_validation_size(
        spec.validation_size if validation_size is None else validation_size, len(y_all))
    train_idx, val_idx = balanced_validation_split(y_all, size, seed, num_classes)
    x_train, y_train = x_all[train_idx], y_all[train_idx]
    mean, std = channel_statistics(x_train)
    preprocess = Standardize(mean, std) if normalize else Standardize()

    if augment is _DEFAULT:
        pad = max(1, image_size // 8) if name == "imagenette" else spec.pad
        augment = make_augment(flip=spec.flip, pad=pad)

    task_info = {
        "source": f"tensorflow-datasets:{tfds_name}",
        "tfds_name": tfds_name,
        "data_dir": _default_data_dir(data_dir),
        "tfds_splits": {"train": f"{spec.train_split} minus validation",
                        "validation": f"{spec.train_split} (balanced, {size})",
                        "test": spec.test_split},
        "validation_size": size,
        "validation_per_class": np.bincount(y_all[val_idx], minlength=num_classes).tolist(),
        "seed": int(seed),
        "normalize": bool(normalize),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "augment": repr(augment),
        "class_names": list(info.features["label"].names),
        "note": spec.note,
    }
    if image_size is not None:
        task_info["image_size"] = image_size
    return Task(name=name, num_classes=num_classes, input_shape=x_all.shape[1:],
                splits={"train": (x_train, y_train),
                        "validation": (x_all[val_idx], y_all[val_idx]),
                        "test": (x_test, y_test)},
                kind="classification", augment=augment, preprocess=preprocess,
                info=task_info)


__all__ = ["load_tfds_task", "TFDS_TASKS", "TfdsTaskSpec", "balanced_validation_split",
           "resolve_validation_size", "channel_statistics", "Standardize", "clear_cache"]
