"""Tasks: a dataset with its splits, shapes and input pipeline, loaded by name.

A :class:`Task` is what the training harness consumes: ``task.dataset("train", batch_size,
shuffle=True, augment=True, seed=s)`` gives a batched ``tf.data.Dataset`` of ``(x, y)``,
``task.size("validation")`` the number of examples. Splits are named ``train``,
``validation`` and ``test``. Classification tasks hold integer labels; language-model tasks
(``kind="language_model"``) hold token windows ``x`` and next-token targets ``y`` of the
same shape, and ``num_classes`` is the vocabulary size.

``load_task(name, **options)`` dispatches through :data:`TASK_LOADERS`; every loader returns
a :class:`Task`. A dataset that is not on this machine (tensorflow-datasets not prepared, a
text corpus not copied) raises :class:`DatasetUnavailableError` saying how to provide it; the
embedded ``mnist1d`` and ``digits`` always load.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import numpy as np

SPLITS = ("train", "validation", "test")


class DatasetUnavailableError(RuntimeError):
    """A dataset is not present locally and cannot be fetched; the message says how to
    provide it."""


@dataclasses.dataclass
class Task:
    """A dataset ready for training.

    Attributes:
        name: registry name (``"mnist1d"``, ``"cifar10"``...).
        num_classes: classes (classification) or vocabulary size (language models).
        input_shape: shape of one example, without the batch axis.
        splits: ``{"train": (x, y), "validation": (x, y), "test": (x, y)}`` as NumPy arrays.
        kind: ``"classification"`` or ``"language_model"``.
        augment: optional ``fn(x_batch, y_batch, seed_tensor) -> (x, y)`` in TensorFlow,
            applied to shuffled training batches when ``dataset(..., augment=True)``.
        preprocess: optional ``fn(x_batch) -> x`` in TensorFlow applied to every batch of
            every split (e.g. uint8 -> float and featurewise normalization).
        info: free-form facts (source, statistics) for records and reports.
    """

    name: str
    num_classes: int
    input_shape: tuple
    splits: dict
    kind: str = "classification"
    augment: Callable | None = None
    preprocess: Callable | None = None
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ValueError(f"task {self.name!r} lacks splits {missing}; "
                             f"expected all of {list(SPLITS)}")
        for split, (x, y) in self.splits.items():
            if len(x) != len(y):
                raise ValueError(f"task {self.name!r} split {split!r}: {len(x)} inputs but "
                                 f"{len(y)} targets")
        self.input_shape = tuple(self.input_shape)

    def _check_split(self, split):
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")

    def size(self, split: str) -> int:
        self._check_split(split)
        return int(len(self.splits[split][0]))

    def arrays(self, split: str):
        """``(x, y)`` NumPy arrays of a split, before ``preprocess``."""
        self._check_split(split)
        return self.splits[split]

    def dataset(self, split: str, batch_size: int, shuffle: bool = False,
                augment: bool = False, seed: int = 0, drop_remainder: bool = False):
        """Batched ``tf.data.Dataset`` of ``(x, y)`` for one pass over ``split``.

        Shuffling reshuffles every epoch (deterministically from ``seed``); augmentation
        draws its randomness from ``seed`` too, so a fixed seed gives a reproducible stream.
        Each batch gets its own augmentation seed ``[2]``, and a new one every epoch, so
        repeated passes see fresh augmentations (still reproducible from ``seed``).
        """
        import tensorflow as tf

        self._check_split(split)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        x, y = self.splits[split]
        # shuffle and batch indices, then gather whole batches: a shuffle buffer of examples
        # copies every image through its buffer each epoch (3x slower on 45K CIFAR images)
        x_all, y_all = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        ds = tf.data.Dataset.range(len(x))
        if shuffle:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder).map(
            lambda i: (tf.gather(x_all, i), tf.gather(y_all, i)),
            num_parallel_calls=tf.data.AUTOTUNE)
        if self.preprocess is not None:
            fn = self.preprocess
            ds = ds.map(lambda a, b: (fn(a), b), num_parallel_calls=tf.data.AUTOTUNE)
        if augment and self.augment is not None:
            fn = self.augment
            # one seed pair per batch from a seeded stream that rerandomizes every epoch: a
            # (seed, batch index) counter would replay the same augmentations each epoch
            seeds = tf.data.Dataset.random(seed=int(seed), rerandomize_each_iteration=True)
            ds = tf.data.Dataset.zip((ds, seeds.batch(2))).map(
                lambda xy, s: fn(xy[0], xy[1], s), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    def subset(self, train: int | None = None, validation: int | None = None,
               test: int | None = None, seed: int = 0) -> "Task":
        """A smaller copy (class-balanced for classification) for smoke runs."""
        from .embedded import balanced_split

        sizes = {"train": train, "validation": validation, "test": test}
        splits = {}
        for split, (x, y) in self.splits.items():
            n = sizes.get(split)
            if n is None or n >= len(x):
                splits[split] = (x, y)
                continue
            if self.kind == "classification":
                _, keep = balanced_split(y, n / len(x), seed)
            else:
                keep = np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))
            splits[split] = (x[keep], y[keep])
        return dataclasses.replace(self, splits=splits, info={**self.info, "subset": sizes})


def _from_dict(name, data, **kwargs) -> Task:
    return Task(name=name, num_classes=int(data["num_classes"]),
                input_shape=data["x_train"].shape[1:],
                splits={"train": (data["x_train"], data["y_train"]),
                        "validation": (data["x_val"], data["y_val"]),
                        "test": (data["x_test"], data["y_test"])}, **kwargs)


def load_mnist1d_task(num_samples: int = 5000, seed: int = 42, channel_axis: bool = True,
                      **_ignored) -> Task:
    from .embedded import load_mnist1d

    data = load_mnist1d(num_samples=num_samples, seed=seed, channel_axis=channel_axis)
    return _from_dict("mnist1d", data, info={"source": "mnist1d package (generated)",
                                             "num_samples": num_samples, "seed": seed})


def load_digits_task(seed: int = 0, image_axes: bool = True, **_ignored) -> Task:
    from .embedded import load_digits

    data = load_digits(seed=seed, image_axes=image_axes)
    return _from_dict("digits", data, info={"source": "scikit-learn digits"})


def _load_tfds(name, **options) -> Task:
    # tensorflow-datasets is imported only when a tfds task is asked for
    from .tfds_tasks import load_tfds_task

    return load_tfds_task(name, **options)


def _load_text(**options) -> Task:
    from .text import load_text_task

    return load_text_task(**options)


def _load_tinystories(**options) -> Task:
    from .text import load_tinystories_task

    return load_tinystories_task(**options)


#: name -> loader(**options) -> Task
TASK_LOADERS: dict[str, Callable[..., Task]] = {
    "mnist1d": load_mnist1d_task,
    "digits": load_digits_task,
    "cifar10": functools.partial(_load_tfds, "cifar10"),
    "cifar100": functools.partial(_load_tfds, "cifar100"),
    "svhn_cropped": functools.partial(_load_tfds, "svhn_cropped"),
    "mnist": functools.partial(_load_tfds, "mnist"),
    "imagenette": functools.partial(_load_tfds, "imagenette"),
    "text": _load_text,
    "tinystories": _load_tinystories,
}


def _option_names() -> set:
    """Every option name some loader takes. The embedded tasks ignore the options of the
    others (a recipe's ``data_dir`` or ``normalize`` stays valid when ``--task mnist1d``
    replaces its CIFAR task), but a name no loader takes is a typo."""
    import inspect

    from .tfds_tasks import load_tfds_task
    from .text import load_text_task, load_tinystories_task

    names = set()
    for loader in (load_mnist1d_task, load_digits_task, load_tfds_task, load_text_task,
                   load_tinystories_task):
        names |= {p.name for p in inspect.signature(loader).parameters.values()
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return names - {"name"}


def load_task(name: str, **options) -> Task:
    """Load a task by name (see :data:`TASK_LOADERS`); options go to its loader. An option
    no loader knows (a misspelling) is a ``TypeError`` (as for any unexpected keyword)
    listing the known ones."""
    try:
        loader = TASK_LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; available: {sorted(TASK_LOADERS)}") from None
    unknown = sorted(set(options) - _option_names())
    if unknown:
        raise TypeError(f"unknown task option(s) {unknown} for task {name!r}; known "
                         f"options: {', '.join(sorted(_option_names()))}")
    return loader(**options)


__all__ = ["Task", "load_task", "TASK_LOADERS", "SPLITS", "DatasetUnavailableError"]
