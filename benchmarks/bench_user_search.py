"""What does searching *your* model cost over training it yourself?

One process times side by side, per candidate function, on a user-style model (a Conv2D
classifier of scikit-learn's digits, written here, compiled with Adam):

* ``search``: one candidate of ``ActivationSearch`` -- the
  :class:`~keras_actfn.train.user_model.UserEvaluator` call the engine makes (activation
  probe, surgery of the user's model, AutoInit with measured input moments, compile from
  the user's compile config, first-batch check, ``fit`` with the NaN guard and per-epoch
  validation, the record, memory clean-up) plus the store's writes for it;
* ``bare fit``: what a user's own loop does: ``replace_activations`` + ``compile`` with
  the same settings + ``model.fit`` on the same NumPy arrays, epochs and validation;
* ``bare, same batches``: the same ``fit`` fed the search's own ``tf.data`` batches (index
  gather, per-epoch shuffle): isolates the search's own overhead from the input pipeline's
  speed (Keras's NumPy adapter is slower than the gather pipeline on small models);
* ``streamed``: the ``search`` candidate fed by a ``tf.data`` pipeline read from TFRecord
  files (parse, shuffle, batch, prefetch) instead of the arrays in memory.

Rounds rotate through functions that train; the order of the variants alternates between
rounds; one untimed warm-up of each variant comes first. Reported: median seconds per
candidate and the median over rounds of the per-round ratios, wall and process CPU time.
Goals: search / bare fit <= 1.10 (also reported: search / bare fit on the same batches);
streamed / in memory <= 1.2.

    python benchmarks/bench_user_search.py              # ~3 minutes on 2 CPU cores
    python benchmarks/bench_user_search.py --rounds 10 --epochs 5

The exit status is 0 whatever the numbers: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):  # run from a checkout without installing; the sibling benchmark
    if path not in sys.path:
        sys.path.insert(0, path)

import numpy as np  # noqa: E402

from bench_evaluate import Clock  # noqa: E402 - wall + process CPU time of a block
from keras_actfn.backend import describe, keras, tf  # noqa: E402

FUNCTIONS = ("x*sigmoid(x)", "tanh(x)", "alpha*swish(beta*x)", "elu(x)", "softplus(x)")
GOAL_SEARCH, GOAL_STREAM = 1.10, 1.2


def digits_data(seed=0):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32").reshape(-1, 8, 8, 1)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order].astype("int32")
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def user_model():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def write_tfrecords(x, y, directory, shards=4):
    paths = []
    for shard in range(shards):
        path = os.path.join(directory, f"train-{shard}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for i in range(shard, len(x), shards):
                example = tf.train.Example(features=tf.train.Features(feature={
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=x[i].ravel())),
                    "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y[i])]))}))
                writer.write(example.SerializeToString())
        paths.append(path)
    return paths


def tfrecord_pipeline(paths, batch_size, seed=0):
    spec = {"x": tf.io.FixedLenFeature([64], tf.float32),
            "y": tf.io.FixedLenFeature([], tf.int64)}

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        return tf.reshape(ex["x"], (8, 8, 1)), tf.cast(ex["y"], tf.int32)

    return (tf.data.TFRecordDataset(paths).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
            .shuffle(2048, seed=seed).batch(batch_size).prefetch(tf.data.AUTOTUNE))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    from keras_actfn.data.sources import resolve_data
    from keras_actfn.expr import parse
    from keras_actfn.search.engine.store import Store
    from keras_actfn.search.engine.base import Candidate
    from keras_actfn.surgery import hidden_activations, replace_activations
    from keras_actfn.train.user_model import UserEvaluator, UserModel

    (x, y), (xv, yv) = digits_data()
    model = user_model()
    um = UserModel(model)
    fit = {"epochs": args.epochs, "batch_size": args.batch_size}
    tmp = tempfile.mkdtemp(prefix="bench_user_search_")
    paths = write_tfrecords(x, y, tmp)
    memory = UserEvaluator(um, resolve_data(x, y, validation_data=(xv, yv),
                                            input_shape=model.inputs[0].shape),
                           objective="val_accuracy", **fit)
    streamed = UserEvaluator(um, resolve_data(tfrecord_pipeline(paths, args.batch_size),
                                              validation_data=(xv, yv),
                                              input_shape=model.inputs[0].shape),
                             objective="val_accuracy", **fit)
    memory.check()
    streamed.check()
    store = Store(os.path.join(tmp, "journal.db"))
    store.open_run({"bench": "user_search"})

    def search_candidate(evaluator, text, seed):
        # what the driver does around one evaluation: pending, running, complete
        eval_id = store.add_pending(Candidate(text), None, seed=seed, state={})
        store.mark_running(eval_id, "bench")
        record = evaluator(text, seed=seed)
        store.complete(eval_id, record, {})
        return record

    def bare_fit(text, seed, same_batches=False):
        keras.utils.set_random_seed(seed)
        net = replace_activations(model, parse(text), targets=hidden_activations(model),
                                  keep_weights=False)
        net.compile(optimizer=keras.optimizers.Adam(1e-3),
                    loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        if same_batches:
            source = memory.data
            hist = net.fit(source.train.dataset(args.batch_size, shuffle=True, seed=seed),
                           validation_data=source.validation.dataset(args.batch_size),
                           epochs=args.epochs, verbose=0, shuffle=False).history
        else:
            hist = net.fit(x, y, validation_data=(xv, yv), verbose=0, **fit).history
        return hist["val_accuracy"][-1]  # Keras's clean-up runs untimed (see the loop)

    variants = {"search": lambda t, s: search_candidate(memory, t, s).validation_accuracy,
                "bare fit": bare_fit,
                "bare, same batches": lambda t, s: bare_fit(t, s, same_batches=True),
                "streamed": lambda t, s: search_candidate(streamed, t, s).validation_accuracy}
    print(f"{describe()}; digits CNN ({model.count_params():,} parameters), "
          f"{len(x)} training examples, {args.epochs} epochs, batch {args.batch_size}")
    for name, run in variants.items():  # warm-up: traces, caches, first-call costs
        run(FUNCTIONS[0], 99)
        keras.backend.clear_session()
    times = {name: [] for name in variants}
    accuracy = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        text = FUNCTIONS[r % len(FUNCTIONS)]
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            with Clock() as clock:
                acc = variants[name](text, r)
            times[name].append((clock.wall, clock.cpu))
            if name.startswith("bare"):
                # conservative: the baselines' clean-up is not timed, the search's is
                keras.backend.clear_session()
            accuracy[name].append(acc)
        print(f"round {r + 1}/{args.rounds} {text:<20} " + "  ".join(
            f"{n} {times[n][-1][0]:.2f}s" for n in names), flush=True)

    def ratio(a, b, k):
        return [ta[k] / tb[k] for ta, tb in zip(times[a], times[b])]

    def quartiles(values):
        q = np.percentile(values, [25, 50, 75])
        return f"{q[1]:.3f} [IQR {q[0]:.3f}-{q[2]:.3f}]"

    print()
    print(f"{'variant':<18} {'median s/candidate':>19} {'median val acc':>15}")
    for name in names:
        print(f"{name:<18} {statistics.median(t[0] for t in times[name]):>19.2f} "
              f"{statistics.median(a for a in accuracy[name] if a is not None):>15.4f}")
    print()
    for (a, b, goal) in (("search", "bare fit", GOAL_SEARCH),
                         ("search", "bare, same batches", GOAL_SEARCH),
                         ("streamed", "search", GOAL_STREAM)):
        wall, cpu = ratio(a, b, 0), ratio(a, b, 1)
        verdict = "PASS" if statistics.median(wall) <= goal else "MISS"
        print(f"{a} / {b}: wall {quartiles(wall)}, CPU {quartiles(cpu)}  "
              f"(goal <= {goal}: {verdict})")
    timing = memory(FUNCTIONS[0], seed=0).info["timing_s"]
    print("where one search candidate's time goes (s): " + ", ".join(
        f"{k} {v:.2f}" for k, v in timing.items()))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
