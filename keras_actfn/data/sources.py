"""A user's own data for a search, in whatever form ``model.fit`` would take it.

:func:`resolve_data` turns what a user hands :meth:`ActivationSearch.search
<keras_actfn.search.user.ActivationSearch.search>` -- NumPy arrays, a ``tf.data.Dataset``,
an ``.npz`` file, a folder of images in class sub-folders, a saved ``tf.data`` folder,
``"tfds:NAME"`` or a registry task name -- into a :class:`DataSource`: up to three
:class:`Split` objects (train, validation, test) that each make a fresh batched
``tf.data.Dataset`` per training run.

What a split must guarantee:

* **streamed**: a ``tf.data`` source is iterated, never collected into memory (a dataset
  larger than RAM works); only NumPy arrays the user already holds live in memory;
* **fingerprinted**: :meth:`Split.fingerprint` identifies the content (shapes, dtypes and a
  content hash: every byte of arrays and files; the first batches of a stream), so a
  search store refuses to resume on other data;
* **portable**: :meth:`Split.portable` gives a picklable split for worker processes, written
  to disk once beside the store (arrays as ``.npy``, a stream with ``Dataset.save``) and
  referenced by path, so nothing is pickled again per candidate.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os

import numpy as np

__all__ = ["DataSource", "DataError", "Split", "ArraySplit", "StreamSplit", "SavedSplit",
           "TfdsSplit", "FolderSplit", "TaskSplit", "resolve_data", "input_moments"]

#: batches of a stream hashed into its fingerprint (a full pass would read everything)
_HASHED_BATCHES = 4


class DataError(ValueError):
    """The data cannot be used as given; the message names the thing and the fix."""


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.shape, part.dtype.str)).encode())
            h.update(np.ascontiguousarray(part).view(np.uint8).data)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _spec_text(spec) -> str:
    import tensorflow as tf

    return str(tf.nest.map_structure(lambda s: (tuple(s.shape), s.dtype.name), spec))


class Split(abc.ABC):
    """One split's source. ``dataset(batch_size, shuffle, seed)`` returns batches of
    ``(x, y)``; ``batched`` says whether the source yields batches itself (then
    ``batch_size`` does not apply, as in ``fit``)."""

    kind = "split"
    batched = False

    @abc.abstractmethod
    def dataset(self, batch_size, shuffle=False, seed=0):
        """A fresh batched ``tf.data.Dataset`` of ``(x, y)`` for one run."""

    @abc.abstractmethod
    def fingerprint(self) -> dict:
        """JSON-safe identity of the content (what a resumed search must match)."""

    def portable(self, directory: str, name: str) -> "Split":
        """A picklable split for other processes (``self`` when it already is one)."""
        return self

    def size(self):
        """Examples in the split, or ``None`` when unknown without a full pass."""
        return None

    def describe(self) -> str:
        return self.kind


class ArraySplit(Split):
    """NumPy arrays held in memory; shuffled by index each epoch (seeded)."""

    kind = "arrays"

    def __init__(self, x, y):
        self.x, self.y = np.asarray(x), np.asarray(y)
        if len(self.x) != len(self.y):
            raise DataError(f"x has {len(self.x)} examples but y has {len(self.y)}")
        if len(self.x) == 0:
            raise DataError("the data has no examples")
        self._hash = None

    def dataset(self, batch_size, shuffle=False, seed=0):
        import tensorflow as tf

        x_all, y_all = tf.convert_to_tensor(self.x), tf.convert_to_tensor(self.y)
        ds = tf.data.Dataset.range(len(self.x))
        if shuffle:
            ds = ds.shuffle(len(self.x), seed=int(seed), reshuffle_each_iteration=True)
        # batches of indices gathered at once: a per-example pipeline is several times slower
        return ds.batch(int(batch_size)).map(
            lambda i: (tf.gather(x_all, i), tf.gather(y_all, i)),
            num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def fingerprint(self):
        if self._hash is None:
            self._hash = _digest(self.x, self.y)
        return {"kind": self.kind, "x": [list(self.x.shape), self.x.dtype.str],
                "y": [list(self.y.shape), self.y.dtype.str], "sha256": self._hash}

    def portable(self, directory, name):
        os.makedirs(directory, exist_ok=True)
        digest = self.fingerprint()["sha256"]
        paths = [os.path.join(directory, f"{name}_{part}_{digest}.npy") for part in "xy"]
        for path, array in zip(paths, (self.x, self.y)):
            if not os.path.exists(path):  # content-addressed: written once
                tmp = path + ".part.npy"
                np.save(tmp, array)
                os.replace(tmp, path)
        return NpySplit(*paths, fingerprint=self.fingerprint())

    def size(self):
        return len(self.x)

    def describe(self):
        return f"arrays x{tuple(self.x.shape)} y{tuple(self.y.shape)}"


class NpySplit(ArraySplit):
    """Arrays in ``.npy`` files (what :meth:`ArraySplit.portable` writes), loaded on first
    use in the process that trains."""

    kind = "arrays"

    def __init__(self, x_path, y_path, fingerprint=None):  # noqa: D107 - no super(): lazy
        self.x_path, self.y_path = os.fspath(x_path), os.fspath(y_path)
        self._fingerprint = fingerprint
        self._arrays = None
        self._hash = None

    def __getstate__(self):
        return {**self.__dict__, "_arrays": None}

    def _load(self):
        if self._arrays is None:
            self._arrays = (np.load(self.x_path), np.load(self.y_path))
        return self._arrays

    x = property(lambda self: self._load()[0])
    y = property(lambda self: self._load()[1])

    def fingerprint(self):
        return self._fingerprint or super().fingerprint()

    def portable(self, directory, name):
        return self


class StreamSplit(Split):
    """A ``tf.data.Dataset`` the user built: iterated as it is (the user's own batching,
    shuffling and augmentation), never materialized."""

    kind = "tf.data"

    def __init__(self, dataset, batched=True):
        self.ds, self.batched = dataset, bool(batched)
        self._hash = None

    def __getstate__(self):
        raise TypeError("a live tf.data.Dataset cannot be sent to another process; "
                        "use StreamSplit.portable(directory, name) to save it once")

    def dataset(self, batch_size, shuffle=False, seed=0):
        import tensorflow as tf

        ds = self.ds if self.batched else self.ds.batch(int(batch_size))
        return ds.prefetch(tf.data.AUTOTUNE)

    def fingerprint(self):
        if self._hash is None:
            h = hashlib.sha256()
            for element in self.ds.take(_HASHED_BATCHES):
                for part in _flat(element):
                    h.update(np.asarray(part).tobytes())
            self._hash = h.hexdigest()[:16]
        return {"kind": self.kind, "spec": _spec_text(self.ds.element_spec),
                "batched": self.batched, "cardinality": int(self.ds.cardinality()),
                "head_sha256": self._hash}

    def portable(self, directory, name):
        fingerprint = self.fingerprint()
        path = os.path.join(directory, f"{name}_{_digest(fingerprint)}.tfdata")
        if not os.path.isdir(path):
            os.makedirs(directory, exist_ok=True)
            # Dataset.save streams element by element to sharded files: no copy in memory
            tmp = path + ".part"
            self.ds.save(tmp)
            os.replace(tmp, path)
        return SavedSplit(path, batched=self.batched, fingerprint=fingerprint)

    def size(self):
        n = int(self.ds.cardinality())
        return None if n < 0 or self.batched else n

    def describe(self):
        return f"tf.data {_spec_text(self.ds.element_spec)}"


def _flat(element):
    import tensorflow as tf

    return tf.nest.flatten(element)


class SavedSplit(StreamSplit):
    """A dataset written by ``tf.data.Dataset.save``, loaded lazily where it trains."""

    kind = "tf.data"

    def __init__(self, path, batched=True, fingerprint=None):  # noqa: D107 - lazy load
        self.path, self.batched = os.fspath(path), bool(batched)
        self._fingerprint = fingerprint
        self._ds = None
        self._hash = None

    def __getstate__(self):
        return {**self.__dict__, "_ds": None}

    @property
    def ds(self):
        if self._ds is None:
            import tensorflow as tf

            self._ds = tf.data.Dataset.load(self.path)
        return self._ds

    def fingerprint(self):
        return self._fingerprint or super().fingerprint()

    def portable(self, directory, name):
        return self


class TfdsSplit(Split):
    """A split of a tensorflow-datasets dataset prepared on this machine (``data_dir``);
    examples ``(image, label)`` as ``as_supervised=True`` gives them."""

    kind = "tfds"

    def __init__(self, name, split, data_dir=None):
        self.name, self.split, self.data_dir = name, split, data_dir

    def _load(self, shuffle=False, seed=0):
        import tensorflow_datasets as tfds

        from .tasks import DatasetUnavailableError

        try:
            return tfds.load(self.name, split=self.split, data_dir=self.data_dir,
                             as_supervised=True, shuffle_files=bool(shuffle),
                             read_config=tfds.ReadConfig(shuffle_seed=int(seed)),
                             download=False)
        except Exception as err:  # noqa: BLE001 - tfds raises many kinds for "not here"
            raise DatasetUnavailableError(
                f"tensorflow-datasets {self.name!r} split {self.split!r} is not prepared in "
                f"data_dir {self.data_dir or '~/tensorflow_datasets'} ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); prepare it with "
                f"`tfds build {self.name}` on a machine with internet and copy the folder"
            ) from None

    def dataset(self, batch_size, shuffle=False, seed=0):
        import tensorflow as tf

        ds = self._load(shuffle, seed)
        if shuffle:
            ds = ds.shuffle(10_000, seed=int(seed), reshuffle_each_iteration=True)
        return ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)

    def fingerprint(self):
        return {"kind": self.kind, "name": self.name, "split": self.split,
                "data_dir": self.data_dir and os.path.abspath(self.data_dir)}

    def describe(self):
        return f"tfds {self.name}[{self.split}]"


class FolderSplit(Split):
    """Images in class sub-folders (``keras.utils.image_dataset_from_directory``); a
    ``subset`` of ``"training"``/``"validation"`` with ``validation_split`` as Keras has it."""

    kind = "folder"

    def __init__(self, path, image_size, subset=None, validation_split=None, color_mode="rgb",
                 split_seed=0):
        self.path, self.image_size = os.path.abspath(os.fspath(path)), tuple(image_size)
        self.subset, self.validation_split = subset, validation_split
        self.color_mode, self.split_seed = color_mode, int(split_seed)
        self._files = None

    def dataset(self, batch_size, shuffle=False, seed=0):
        import tensorflow as tf

        from ..backend import keras

        kwargs = {}
        if self.subset is not None:
            kwargs = {"subset": self.subset, "validation_split": self.validation_split}
        # Keras lists the files in an order drawn from `seed` and splits that list: the same
        # seed for both subsets keeps them disjoint (and reshuffles batches every epoch)
        ds = keras.utils.image_dataset_from_directory(
            self.path, labels="inferred", label_mode="int", image_size=self.image_size,
            color_mode=self.color_mode, batch_size=int(batch_size), shuffle=True,
            seed=self.split_seed, verbose=False, **kwargs)
        return ds.prefetch(tf.data.AUTOTUNE)

    def files(self):
        if self._files is None:
            found = []
            for root, _, names in os.walk(self.path):
                for name in sorted(names):
                    full = os.path.join(root, name)
                    found.append((os.path.relpath(full, self.path), os.path.getsize(full)))
            self._files = sorted(found)
        return self._files

    def fingerprint(self):
        return {"kind": self.kind, "path": self.path, "files": len(self.files()),
                "listing_sha256": _digest(self.files()), "image_size": list(self.image_size),
                "subset": self.subset, "validation_split": self.validation_split,
                "color_mode": self.color_mode}

    def describe(self):
        return f"images in {self.path} ({self.subset or 'all'})"


class TaskSplit(Split):
    """A split of a registry task (:func:`keras_actfn.data.load_task`), by name."""

    kind = "task"

    def __init__(self, name, split, options=None):
        self.name, self.split, self.options = name, split, dict(options or {})
        self._task = None

    def __getstate__(self):
        return {**self.__dict__, "_task": None}

    @property
    def task(self):
        if self._task is None:
            from .tasks import load_task

            self._task = load_task(self.name, **self.options)
        return self._task

    def dataset(self, batch_size, shuffle=False, seed=0):
        return self.task.dataset(self.split, int(batch_size), shuffle=shuffle, seed=seed)

    def fingerprint(self):
        return {"kind": self.kind, "name": self.name, "split": self.split,
                "options": {k: repr(v) for k, v in sorted(self.options.items())}}

    def size(self):
        return self.task.size(self.split)

    def describe(self):
        return f"task {self.name}[{self.split}]"


class DataSource:
    """Train, validation and (optional) test splits of a user's data."""

    def __init__(self, train: Split, validation: Split | None = None,
                 test: Split | None = None, name: str = "data"):
        self.train, self.validation, self.test = train, validation, test
        self.name = name

    def splits(self):
        return {k: v for k, v in (("train", self.train), ("validation", self.validation),
                                  ("test", self.test)) if v is not None}

    def fingerprint(self) -> dict:
        return {k: v.fingerprint() for k, v in self.splits().items()}

    def portable(self, directory) -> "DataSource":
        parts = {k: v.portable(directory, k) for k, v in self.splits().items()}
        return DataSource(parts["train"], parts.get("validation"), parts.get("test"),
                          name=self.name)

    def first_batch(self, batch_size=32):
        """``(x, y)`` NumPy arrays of the first training batch (no shuffling)."""
        for x, y in self.train.dataset(batch_size).take(1):
            return x, y
        raise DataError("the training data yields no batch")

    def describe(self) -> str:
        return "; ".join(f"{k}: {v.describe()}" for k, v in self.splits().items())


def input_moments(source: DataSource, batch_size=256, limit=4096):
    """``(mean, variance)`` of the training inputs over up to ``limit`` examples (streamed),
    or ``None`` when the inputs are not numbers (tokens, strings) or not one tensor."""
    total = total_sq = 0.0
    count = seen = 0
    for xb, _ in source.train.dataset(batch_size):
        if not hasattr(xb, "dtype") or not (xb.dtype.is_floating or xb.dtype.is_integer):
            return None
        if xb.dtype.is_integer and xb.dtype.name not in ("uint8", "uint16"):
            return None  # integer ids (tokens), not intensities: no meaningful moments
        arr = np.asarray(xb, dtype=np.float64)
        total += arr.sum()
        total_sq += np.square(arr).sum()
        count += arr.size
        seen += len(arr)
        if seen >= limit:
            break
    if count == 0:
        return None
    mean = total / count
    return float(mean), float(max(total_sq / count - mean * mean, 1e-12))


# ------------------------------------------------------------------------ resolution
def _is_dataset(obj) -> bool:
    import tensorflow as tf

    return isinstance(obj, tf.data.Dataset)


def _is_saved_dataset(path) -> bool:
    return os.path.isfile(os.path.join(path, "dataset_spec.pb")) or os.path.isfile(
        os.path.join(path, "snapshot.metadata"))


def _split_arrays(x, y, fraction):
    """The last ``fraction`` of the arrays as validation data, as ``fit`` does."""
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation_split must be in (0, 1), got {fraction}")
    n = len(x)
    cut = int(n * (1.0 - fraction))
    if cut < 1 or cut >= n:
        raise DataError(f"validation_split={fraction} of {n} examples leaves an empty split")
    return ArraySplit(x[:cut], y[:cut]), ArraySplit(x[cut:], y[cut:])


def _pair(value, what, batched_rank):
    """A validation/test argument: ``(x, y)`` arrays or a dataset."""
    if value is None:
        return None
    if _is_dataset(value):
        return StreamSplit(value, batched=_looks_batched(value, batched_rank))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return ArraySplit(*value)
    raise DataError(f"{what} must be a tuple (x, y) of arrays or a tf.data.Dataset of "
                    f"(x, y), got {type(value).__name__}")


def _looks_batched(ds, input_rank):
    """Whether a dataset yields batches: its x has the model input's rank (batch axis
    included) rather than one less."""
    import tensorflow as tf

    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise DataError(f"a tf.data.Dataset for the search must yield (x, y) pairs; its "
                        f"elements are {spec}")
    x_spec = tf.nest.flatten(spec[0])[0]
    if input_rank is None or x_spec.shape.rank is None:
        return True
    return x_spec.shape.rank == input_rank


def _npz(path, validation_split, batched_rank):
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        if not {"x_train", "y_train"} <= keys:
            raise DataError(f"{path}: an .npz for a search needs arrays x_train and y_train "
                            f"(optionally x_val y_val, x_test y_test); it has "
                            f"{sorted(keys) or 'none'}")
        arrays = {k: data[k] for k in keys}
    train = ArraySplit(arrays["x_train"], arrays["y_train"])
    val = test = None
    for xs, ys, what in (("x_val", "y_val", "val"), ("x_test", "y_test", "test")):
        if (xs in arrays) != (ys in arrays):
            raise DataError(f"{path}: {xs} and {ys} come together; only one is there")
    if "x_val" in arrays:
        val = ArraySplit(arrays["x_val"], arrays["y_val"])
    elif validation_split:
        train, val = _split_arrays(arrays["x_train"], arrays["y_train"], validation_split)
    if "x_test" in arrays:
        test = ArraySplit(arrays["x_test"], arrays["y_test"])
    return train, val, test


def _tfds(name, validation_split, data_dir):
    import tensorflow_datasets as tfds

    from .tasks import DatasetUnavailableError

    try:
        builder = tfds.builder(name, data_dir=data_dir)
        splits = set(builder.info.splits.keys())
    except Exception as err:  # noqa: BLE001 - unknown name or not prepared
        raise DatasetUnavailableError(
            f"tensorflow-datasets {name!r} is not available here ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); prepare it with `tfds build "
            f"{name} --data_dir DIR` and pass data_dir") from None
    if not splits:
        # metadata not on disk (or tfds's mock data): assume the usual train/test splits;
        # loading says what is missing when the data is read
        splits = {"train", "test"}
    test = TfdsSplit(name, "test", data_dir) if "test" in splits else None
    if "validation" in splits and not validation_split:
        return TfdsSplit(name, "train", data_dir), TfdsSplit(name, "validation", data_dir), test
    percent = int(round(100 * float(validation_split or 0.1)))
    return (TfdsSplit(name, f"train[:{100 - percent}%]", data_dir),
            TfdsSplit(name, f"train[{100 - percent}%:]", data_dir), test)


def resolve_data(x=None, y=None, *, validation_data=None, validation_split=None,
                 test_data=None, input_shape=None, data_dir=None) -> DataSource:
    """A :class:`DataSource` from ``fit``-style arguments.

    ``x``: NumPy inputs (with ``y``); a ``tf.data.Dataset`` of ``(x, y)`` (batched or not:
    told apart by the rank of ``x`` against ``input_shape``, the model's input shape with
    its batch axis); or a string: ``"tfds:NAME"``, a path to an ``.npz`` (``x_train
    y_train``, optionally ``x_val y_val x_test y_test``), a folder written by
    ``Dataset.save``, a folder of images in class sub-folders, or a registry task name.
    ``validation_data`` / ``test_data``: ``(x, y)`` or a dataset. ``validation_split``:
    the last fraction of the training arrays (as ``fit``), of a tfds ``train`` split, or of
    an image folder (as ``image_dataset_from_directory``; default 0.2 there).
    """
    rank = None if input_shape is None else len(input_shape)
    if x is None:
        raise DataError("no training data: pass x (and y), a tf.data.Dataset, or a data "
                        "path")
    val = _pair(validation_data, "validation_data", rank)
    test = _pair(test_data, "test_data", rank)
    name = "data"
    if isinstance(x, (str, os.PathLike)):
        if y is not None:
            raise DataError("y is given with a data path; a path holds the labels itself")
        text = os.fspath(x)
        if text.startswith("tfds:"):
            name = text[5:]
            if val is not None and validation_split:
                raise DataError("give validation_data or validation_split, not both")
            train, tf_val, tf_test = _tfds(name, validation_split if val is None else None,
                                           data_dir)
            return DataSource(train, val or tf_val, test or tf_test, name=f"tfds:{name}")
        if text.endswith(".npz"):
            if not os.path.isfile(text):
                raise DataError(f"no such file: {text}")
            train, file_val, file_test = _npz(text, None if val else validation_split, rank)
            return DataSource(train, val or file_val, test or file_test,
                              name=os.path.basename(text))
        if os.path.isdir(text):
            if _is_saved_dataset(text):
                saved = SavedSplit(text)
                saved.batched = _looks_batched(saved.ds, rank)
                return DataSource(saved, val, test, name=os.path.basename(text.rstrip("/")))
            return _folder(text, val, test, validation_split, input_shape)
        from .tasks import TASK_LOADERS

        if text in TASK_LOADERS:
            return DataSource(TaskSplit(text, "train"), val or TaskSplit(text, "validation"),
                              test or TaskSplit(text, "test"), name=text)
        raise DataError(f"cannot read data {text!r}: expected 'tfds:NAME', an .npz file, a "
                        f"folder (images in class sub-folders, or a saved tf.data dataset) "
                        f"or a task name ({', '.join(sorted(TASK_LOADERS))})")
    if _is_dataset(x):
        if y is not None:
            raise DataError("y must be None when x is a tf.data.Dataset: the dataset yields "
                            "(x, y) pairs, as in model.fit")
        if validation_split:
            raise DataError("validation_split needs arrays (as in model.fit); pass "
                            "validation_data=<a dataset> with a tf.data source")
        return DataSource(StreamSplit(x, batched=_looks_batched(x, rank)), val, test)
    if y is None:
        raise DataError(f"y is missing: with x as {type(x).__name__}, pass the labels as y")
    x_arr, y_arr = np.asarray(x), np.asarray(y)
    if x_arr.dtype == object:
        raise DataError("x must be a numeric array (it converted to dtype object: ragged "
                        "or mixed data)")
    if val is None and validation_split:
        train, val = _split_arrays(x_arr, y_arr, validation_split)
    else:
        if validation_split:
            raise DataError("give validation_data or validation_split, not both")
        train = ArraySplit(x_arr, y_arr)
    return DataSource(train, val, test, name=name)


def _folder(path, val, test, validation_split, input_shape):
    classes = [d for d in sorted(os.listdir(path)) if os.path.isdir(os.path.join(path, d))]
    if not classes:
        raise DataError(f"{path}: an image folder needs one sub-folder per class; it has "
                        f"none (a folder written by Dataset.save has dataset_spec.pb)")
    if input_shape is None or len(input_shape) != 4:
        raise DataError(f"{path} holds images, but the model's input shape is "
                        f"{input_shape}: expected (batch, height, width, channels)")
    height, width, channels = input_shape[1:]
    if height is None or width is None:
        raise DataError("the model's input has no fixed height/width: resize images in a "
                        "tf.data pipeline of your own and pass that")
    color = {1: "grayscale", 3: "rgb", 4: "rgba"}.get(channels)
    if color is None:
        raise DataError(f"the model's input has {channels} channels; images load with 1, 3 "
                        f"or 4")
    size = (int(height), int(width))
    if val is not None:
        if validation_split:
            raise DataError("give validation_data or validation_split, not both")
        train = FolderSplit(path, size, color_mode=color)
    else:
        fraction = float(validation_split or 0.2)
        train = FolderSplit(path, size, "training", fraction, color)
        val = FolderSplit(path, size, "validation", fraction, color)
    return DataSource(train, val, test, name=os.path.basename(path.rstrip("/")))
