"""Evidence (and an example to copy): ActivationSearch on a model and data of your own.

Nothing here comes from the toolkit's model zoo or task registry:

1. **arrays** -- scikit-learn's digits (8x8 grey images, 1,797 of them) split once, seeded,
   into 1,000 train / 397 validation / 400 test; a small Keras CNN defined below. PANGAEA
   and AQuaSurF each search an activation function for it, then the best ``--final-top``
   functions and the model's own activation (ReLU) train ``--final-seeds`` times each and
   are measured on the test split.
2. **stream** -- the same splits written as sharded TFRecord files and read back through a
   ``tf.data`` pipeline (parse, shuffle, batch, prefetch): a smaller PANGAEA search that
   never holds the training data in memory.

For each search, the best function (the top of the final comparison by mean validation
accuracy) is compared with the original activation by Welch's t-test on the final runs'
test accuracies (and, for completeness, their validation accuracies, which chose it).

Writes ``results.json`` (every final run, means, stds, t, p, settings, wall times) and one
``progress_<search>.png`` per search into ``--out``; the search journals (SQLite stores)
and the TFRecord files go into ``--work`` (default: ``--out``). Re-running with the same
settings resumes the journals instead of training again.

    python scripts/evidence_user_model.py                         # ~25 min on 2 CPU cores
    python scripts/evidence_user_model.py --smoke --out /tmp/ev   # well under a minute
    python scripts/evidence_user_model.py --out docs/evidence/user_model \\
        --work runs/evidence_user_model                           # how docs/ was made
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import numpy as np

SPLIT = (1000, 397, 400)  # train / validation / test examples of the 1,797 digits


# ----------------------------------------------------------------------------- the data
def load_digits_split(seed=0):
    """``{"train": (x, y), "validation": ..., "test": ...}``: images scaled to [0, 1] with
    shape (n, 8, 8, 1), labels int32, one seeded permutation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    splits, start = {}, 0
    for name, size in zip(("train", "validation", "test"), SPLIT):
        part = order[start:start + size]
        splits[name] = (x[part], y[part])
        start += size
    return splits


# ---------------------------------------------------------------------------- the model
def make_cnn():
    """The user's own model: a small CNN, ReLU everywhere but the softmax output."""
    from keras_actfn.backend import keras

    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


# ---------------------------------------------------------------------- TFRecord files
def write_tfrecords(x, y, folder, shards):
    """``x``/``y`` as ``shards`` TFRecord files of tf.train.Example (image bytes, label);
    returns the file paths."""
    import tensorflow as tf

    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"part-{i:03d}-of-{shards:03d}.tfrecord")
             for i in range(shards)]
    for i, path in enumerate(paths):
        with tf.io.TFRecordWriter(path) as writer:
            for image, label in zip(x[i::shards], y[i::shards]):
                feature = {
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[image.astype("float32").tobytes()])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(
                        value=[int(label)])),
                }
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                writer.write(example.SerializeToString())
    return paths


def tfrecord_dataset(paths, batch_size, examples, shuffle=False, seed=0):
    """A streaming pipeline over TFRecord shards: interleaved reads, parse, (shuffle),
    batch, prefetch -- what a user would hand ``model.fit``. ``examples``: how many the
    files hold (known when they were written), so that the dataset has a known length
    (a TFRecord stream's length is otherwise unknown until a full pass)."""
    import tensorflow as tf

    spec = {"image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(serialized):
        example = tf.io.parse_single_example(serialized, spec)
        image = tf.reshape(tf.io.decode_raw(example["image"], tf.float32), (8, 8, 1))
        return image, tf.cast(example["label"], tf.int32)

    files = tf.data.Dataset.from_tensor_slices(list(paths))
    ds = files.interleave(tf.data.TFRecordDataset, cycle_length=len(paths))
    ds = ds.apply(tf.data.experimental.assert_cardinality(examples))
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(512, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------- statistics
def _number(value):
    """A JSON number, or None for NaN/inf (strict JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _mean_std(values):
    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if values.size else math.nan
    std = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return _number(mean), _number(std)


def welch(a, b):
    """Welch's t-test of ``a`` against ``b``: ``{"t", "p"}`` (None when undefined)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return {"t": None, "p": None}
    result = stats.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=False)
    return {"t": _number(result.statistic), "p": _number(result.pvalue)}


def final_table(store_path, best):
    """Every final run of a store, grouped by function, with means, stds and Welch's
    t-test against the original activation (best function first, original last)."""
    from keras_actfn.search.engine.store import Store
    from keras_actfn.train.user_model import ORIGINAL

    grouped = {}
    with Store(store_path) as journal:
        journal.select_run("final")
        for ev in journal.results():
            r = ev.record
            grouped.setdefault(ev.text, []).append({
                "seed": r.seed, "status": r.status,
                "validation_accuracy": _number(r.validation_accuracy) if r.ok else None,
                "test_accuracy": _number(r.test_accuracy)
                if r.ok and r.test_accuracy is not None else None,
                "runtime_s": round(float(r.runtime_s), 2)})
    rows = []
    for text, runs in grouped.items():
        row = {"function": text, "is_original": text == ORIGINAL, "is_best": text == best,
               "runs": runs}
        for split in ("validation", "test"):
            values = [run[f"{split}_accuracy"] for run in runs
                      if run[f"{split}_accuracy"] is not None]
            row[split] = values
            row[f"{split}_mean"], row[f"{split}_std"] = _mean_std(values)
        row["n"] = len(row["test"])
        rows.append(row)
    original = next(row for row in rows if row["is_original"])
    for row in rows:
        row["welch_vs_original"] = None if row["is_original"] else {
            split: welch(row[split], original[split]) for split in ("validation", "test")}
    rows.sort(key=lambda row: (row["is_original"], not row["is_best"],
                               -(row["validation_mean"] or -1.0)))
    return rows


# ---------------------------------------------------------------------------- a search
def run_search(name, method, train, validation, test, args, work, out, budget, **options):
    """One ActivationSearch with its final comparison; returns its results.json entry."""
    import keras_actfn as ka

    store = os.path.join(work, f"{name}_b{budget}_e{args.epochs}_s{args.final_seeds}.db")
    start = time.perf_counter()
    search = ka.ActivationSearch(make_cnn(), method=method, objective="val_accuracy",
                                 budget=budget, store=store, seed=args.seed,
                                 final_top=args.final_top, final_seeds=args.final_seeds,
                                 progress=not args.quiet, **options)
    fit = {"validation_data": validation, "test_data": test, "epochs": args.epochs,
           "batch_size": args.batch_size}
    if isinstance(train, tuple):
        search.search(*train, **fit)
    else:
        search.search(train, **fit)
    wall = time.perf_counter() - start
    plot = search.plot(os.path.join(out, f"progress_{name}.png"))
    counts = search.summary.counts
    rows = final_table(store, search.best_function)
    original = next(row for row in rows if row["is_original"])
    best = next((row for row in rows if row["is_best"]), None)  # None: every run failed
    print(f"\n== {name}: {method}, budget {budget}, {args.epochs} epochs, "
          f"{wall / 60:.1f} min ==")
    print(search.format_comparison())
    return {
        "method": method, "data": "tf.data from TFRecord shards" if name == "stream"
        else "NumPy arrays", "budget": budget, "epochs": args.epochs,
        "batch_size": args.batch_size, "final_top": args.final_top,
        "final_seeds": args.final_seeds, "options": options,
        "search": {"evaluated": counts.get("evaluated"), "failed": counts.get("failed"),
                   "reused": counts.get("reused"),
                   "wall_s": round(float(search.summary.elapsed_s), 1)},
        "wall_s": round(wall, 1), "store": store, "plot": os.path.basename(plot),
        "search_top": [{"function": ev.text,
                        "validation_accuracy": _number(ev.record.validation_accuracy)}
                       for ev in search.summary.best[:10]],
        "best_function": search.best_function,
        "best_vs_original": None if best is None else {
            "best": best["function"],
            "test": {"best_mean": best["test_mean"], "original_mean": original["test_mean"],
                     **best["welch_vs_original"]["test"]},
            "validation": {"best_mean": best["validation_mean"],
                           "original_mean": original["validation_mean"],
                           **best["welch_vs_original"]["validation"]}},
        "functions": rows,
    }


def print_table(results):
    print(f"\n{'search':<10} {'function':<46} {'val acc':>15} {'test acc':>15} "
          f"{'n':>2} {'t (test)':>8} {'p (test)':>9}")
    for name, entry in results["searches"].items():
        for row in entry["functions"]:
            text = row["function"] if len(row["function"]) <= 46 else \
                row["function"][:43] + "..."
            cells = []
            for split in ("validation", "test"):
                mean, std = row[f"{split}_mean"], row[f"{split}_std"]
                cells.append("failed" if mean is None else
                             f"{mean:.4f}±{std:.4f}" if std is not None else f"{mean:.4f}")
            t = p = ""
            if row["welch_vs_original"]:
                test = row["welch_vs_original"]["test"]
                t = "" if test["t"] is None else f"{test['t']:.2f}"
                p = "" if test["p"] is None else f"{test['p']:.3g}"
            mark = "*" if row["is_best"] else " "
            print(f"{name:<10} {mark}{text:<45} {cells[0]:>15} {cells[1]:>15} "
                  f"{row['n']:>2} {t:>8} {p:>9}")
    print("(* the best function: top of the final comparison by mean validation accuracy; "
          "t, p: Welch's t-test of test accuracy vs the original activation)")


# -------------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/evidence_user_model",
                   help="results.json and the plots")
    p.add_argument("--work", default=None,
                   help="search stores and TFRecord files (default: --out)")
    p.add_argument("--pangaea-budget", type=int, default=60)
    p.add_argument("--aquasurf-budget", type=int, default=40)
    p.add_argument("--stream-budget", type=int, default=30)
    p.add_argument("--population", type=int, default=12, help="PANGAEA's P")
    p.add_argument("--sample", type=int, default=4, help="PANGAEA's S")
    p.add_argument("--fim-limit", type=int, default=300,
                   help="AQuaSurF: functions whose FIM features are computed up front")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--final-top", type=int, default=3)
    p.add_argument("--final-seeds", type=int, default=8)
    p.add_argument("--shards", type=int, default=4, help="TFRecord files per split")
    p.add_argument("--seed", type=int, default=0, help="search seed and data split seed")
    p.add_argument("--only", nargs="+", choices=("pangaea", "aquasurf", "stream"),
                   default=("pangaea", "aquasurf", "stream"))
    p.add_argument("--smoke", action="store_true",
                   help="a tiny run: budget 4 (stream 2), 1 epoch, 2 seeds, top 1")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    if args.smoke:
        args.pangaea_budget = args.aquasurf_budget = 4
        args.stream_budget, args.population, args.sample = 2, 2, 2
        args.fim_limit, args.epochs, args.final_seeds, args.final_top = 10, 1, 2, 1
    work = args.work or args.out
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(work, exist_ok=True)

    import keras_actfn as ka
    from keras_actfn.backend import tf

    tf.get_logger().setLevel("ERROR")
    started = time.perf_counter()
    data = load_digits_split(args.seed)
    results = {
        "description": "ActivationSearch on a user's own CNN and data (sklearn digits): "
                       "best function vs the model's own activation (ReLU)",
        "environment": {"keras": ka.keras_description(), "python": platform.python_version(),
                        "cpus": os.cpu_count()},
        "smoke": args.smoke,
        "settings": {key: list(value) if isinstance(value, tuple) else value
                     for key, value in vars(args).items()},
        "data": {"source": "sklearn.datasets.load_digits, scaled to [0, 1], (n, 8, 8, 1)",
                 "split_seed": args.seed,
                 **{name: len(data[name][1]) for name in ("train", "validation", "test")}},
        "model": "Conv2D(16, 3, relu) > Conv2D(32, 3, relu) > MaxPool(2) > Dense(64, relu) "
                 "> Dense(10, softmax); Adam(1e-3), sparse categorical crossentropy",
        "searches": {},
    }
    pangaea = {"population": args.population, "sample": args.sample}
    if "pangaea" in args.only:
        results["searches"]["pangaea"] = run_search(
            "pangaea", "pangaea", data["train"], data["validation"], data["test"], args, work,
            args.out, args.pangaea_budget, **pangaea)
    if "aquasurf" in args.only:
        results["searches"]["aquasurf"] = run_search(
            "aquasurf", "aquasurf", data["train"], data["validation"], data["test"], args,
            work, args.out, args.aquasurf_budget, fim_limit=args.fim_limit)
    if "stream" in args.only:
        # every split goes to disk as TFRecord shards and streams back through tf.data
        start = time.perf_counter()
        shards = {name: write_tfrecords(*data[name], os.path.join(work, "tfrecords", name),
                                        args.shards) for name in data}
        n = {name: len(data[name][1]) for name in data}
        train = tfrecord_dataset(shards["train"], args.batch_size, n["train"], shuffle=True,
                                 seed=args.seed)
        validation = tfrecord_dataset(shards["validation"], args.batch_size, n["validation"])
        test = tfrecord_dataset(shards["test"], args.batch_size, n["test"])
        entry = run_search("stream", "pangaea", train, validation, test, args, work,
                           args.out, args.stream_budget, **pangaea)
        entry["tfrecord_shards"] = args.shards
        entry["wall_s"] = round(time.perf_counter() - start, 1)  # writing the files too
        results["searches"]["stream"] = entry
    results["wall_s"] = round(time.perf_counter() - started, 1)

    path = os.path.join(args.out, "results.json")
    with open(path + ".part", "w") as f:
        json.dump(results, f, indent=1, allow_nan=False)
    os.replace(path + ".part", path)
    print_table(results)
    print(f"\nwall time {results['wall_s'] / 60:.1f} min; wrote {path}")
    return results


if __name__ == "__main__":
    main()
