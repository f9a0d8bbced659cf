"""How much training speed does a ``CustomActivation`` cost against Keras's built-ins?

Two comparisons, each on the MNIST-1D CNN and on All-CNN-C (32x32x3 inputs):

(a) ``CustomActivation("x*sigmoid(x)")`` against ``Activation("silu")``: the same function,
    once built from the expression graph and once as Keras's own op. Goal: ratio <= 1.05.
(b) ``CustomActivation("alpha*swish(beta*x)", param_shape="per-channel")`` (two learnable
    weights per channel) against ``Activation("relu")``. Goal: ratio <= 1.3.

All variants of one model share the architecture, the initial weights (copied from one
reference model; the activation layers' own weights start at 1) and the batches. Each timed
block runs ``--steps`` training steps (forward, backward, SGD update) after warm-up; the
variants run round-robin, block after block, so a slow phase of a shared machine hits all of
them alike. A variant's time is the median over blocks of ms per step; its ratio is the
median over rounds of (variant block time / baseline block time in the same round).

    python benchmarks/bench_activation_speed.py            # 3-5 minutes on 2 CPU cores
    python benchmarks/bench_activation_speed.py --quick    # 0.5-1 minute
    python benchmarks/bench_activation_speed.py --models mnist1d_cnn --steps 50 --repeats 15

The exit status is 0 whatever the ratios: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from keras_actfn.backend import keras, tf  # noqa: E402

#: (label, activation spec, param_shape or None, baseline label or None, goal ratio)
VARIANTS = (
    ("silu (Keras)", "silu", None, None, None),
    ("x*sigmoid(x)", "x*sigmoid(x)", "per-layer", "silu (Keras)", 1.05),
    ("relu (Keras)", "relu", None, None, None),
    ("alpha*swish(beta*x) per-channel", "alpha*swish(beta*x)", "per-channel", "relu (Keras)",
     1.3),
)

#: per model: batch size, steps per timed block, rounds, warm-up steps (default / --quick)
SETTINGS = {
    "mnist1d_cnn": {"batch": 128, "full": (40, 60, 10), "quick": (25, 15, 5)},
    "all_cnn_c": {"batch": 32, "full": (2, 30, 2), "quick": (1, 8, 1)},
}


# ------------------------------------------------------------------------------- models
def build_model(name, spec, param_shape):
    from keras_actfn.models import all_cnn_c, mnist1d_cnn

    kwargs = {"param_shape": param_shape} if param_shape else {}
    if name == "mnist1d_cnn":
        return mnist1d_cnn(activation=spec, **kwargs)
    if name == "all_cnn_c":
        return all_cnn_c(activation=spec, input_shape=(32, 32, 3), **kwargs)
    raise ValueError(f"unknown model {name!r}")


def _weight_layers(model):
    """The convolution and dense layers: what every variant shares."""
    kinds = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Dense)
    return [layer for layer in model.layers if isinstance(layer, kinds)]


def copy_shared_weights(reference, model):
    """Give ``model`` the reference's convolution/dense weights (layer by layer, in order)."""
    src, dst = _weight_layers(reference), _weight_layers(model)
    if len(src) != len(dst):
        raise RuntimeError("variants do not share an architecture")
    for a, b in zip(src, dst):
        b.set_weights(a.get_weights())


def batches(name, batch, count=4, seed=0):
    """``count`` fixed (x, y) batches as tensors, identical for every variant."""
    rng = np.random.default_rng(seed)
    if name == "mnist1d_cnn":
        from keras_actfn.data import load_mnist1d

        data = load_mnist1d(num_samples=max(2000, batch * count * 2))
        idx = rng.permutation(len(data["x_train"]))[: batch * count]
        xs, ys = data["x_train"][idx], data["y_train"][idx]
    else:
        xs = rng.standard_normal((batch * count, 32, 32, 3)).astype("float32")
        ys = rng.integers(0, 10, size=batch * count).astype("int32")
    return [(tf.constant(xs[i * batch:(i + 1) * batch]), tf.constant(ys[i * batch:(i + 1) * batch]))
            for i in range(count)]


# --------------------------------------------------------------------------- train steps
def make_step(model, mode):
    """A callable ``step(x, y) -> loss`` doing one SGD training step."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    if mode == "keras":
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss_fn, jit_compile=False)

        def keras_step(x, y):
            return model.train_on_batch(x, y)

        return keras_step

    optimizer = keras.optimizers.SGD(0.01)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=False)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
            if model.losses:
                loss = loss + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def _timed_block(step, data, steps, offset):
    start = time.perf_counter()
    loss = None
    for i in range(steps):
        x, y = data[(offset + i) % len(data)]
        loss = step(x, y)
    if hasattr(loss, "numpy"):
        loss.numpy()  # make sure the work is done before stopping the clock
    return (time.perf_counter() - start) / steps


def bench_model(name, steps, rounds, warmup, mode="function", batch=None, log=print):
    batch = batch or SETTINGS[name]["batch"]
    data = batches(name, batch)
    keras.utils.set_random_seed(0)
    models = {label: build_model(name, spec, shape) for label, spec, shape, _, _ in VARIANTS}
    reference = models[VARIANTS[0][0]]
    for model in models.values():
        if model is not reference:
            copy_shared_weights(reference, model)
    step_fns = {label: make_step(model, mode) for label, model in models.items()}

    for label, step in step_fns.items():
        t0 = time.perf_counter()
        _timed_block(step, data, max(1, warmup), 0)
        log(f"  {name}: warmed up {label} ({time.perf_counter() - t0:.1f} s)")

    times = {label: [] for label in step_fns}
    labels = list(step_fns)
    for r in range(rounds):
        order = labels if r % 2 == 0 else labels[::-1]  # cancel any first-in-round effect
        for label in order:
            times[label].append(_timed_block(step_fns[label], data, steps, r * steps))

    rows = []
    for label, _, _, base, goal in VARIANTS:
        ms = 1000 * statistics.median(times[label])
        row = {"model": name, "variant": label, "batch": batch, "steps": steps,
               "rounds": rounds, "ms_per_step": ms, "ratio": None, "ratio_p25": None,
               "ratio_p75": None, "goal": goal, "result": "baseline"}
        if base:
            per_round = sorted(a / b for a, b in zip(times[label], times[base]))
            row["ratio"] = statistics.median(per_round)
            row["ratio_p25"], row["ratio_p75"] = _quartiles(per_round)
            row["result"] = "PASS" if row["ratio"] <= goal else "MISS"
        rows.append(row)
    return rows


def _quartiles(values):
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


# ------------------------------------------------------------------------------- report
def format_table(rows):
    header = ("model", "variant", "ms/step", "ratio", "ratio IQR", "goal", "result")
    lines = [header]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        iqr = "-" if r["ratio"] is None else f"{r['ratio_p25']:.2f}-{r['ratio_p75']:.2f}"
        goal = "-" if r["goal"] is None else f"<= {r['goal']:.2f}"
        lines.append((r["model"], r["variant"], f"{r['ms_per_step']:.2f}", ratio, iqr, goal,
                      r["result"]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths))).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps and rounds (~1 minute)")
    p.add_argument("--models", nargs="+", choices=sorted(SETTINGS),
                   default=["mnist1d_cnn", "all_cnn_c"])
    p.add_argument("--steps", type=int, help="training steps per timed block (all models)")
    p.add_argument("--repeats", type=int, help="round-robin rounds (all models)")
    p.add_argument("--warmup", type=int, help="untimed steps per variant before timing")
    p.add_argument("--batch", type=int, help="batch size (default 128 MNIST-1D, 32 All-CNN-C)")
    p.add_argument("--step", choices=("function", "keras"), default="function",
                   help="'function': a tf.function GradientTape step (default); "
                        "'keras': model.compile + model.train_on_batch")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = p.parse_args(argv)
    for name in ("steps", "repeats", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    # one tf.function per variant and model is intended; TF's retracing warning counts
    # traces of the same Python step function across all of them
    tf.get_logger().setLevel("ERROR")
    import keras_actfn

    print(f"keras_actfn {keras_actfn.__version__}; {keras_actfn.keras_description()}; "
          f"{os.cpu_count()} CPUs; step={args.step}")
    started = time.perf_counter()
    rows = []
    for name in args.models:
        steps, rounds, warmup = SETTINGS[name]["quick" if args.quick else "full"]
        steps = args.steps or steps
        rounds = args.repeats or rounds
        warmup = warmup if args.warmup is None else args.warmup
        t0 = time.perf_counter()
        rows += bench_model(name, steps, rounds, warmup, mode=args.step, batch=args.batch)
        print(f"  {name}: {rounds} rounds x {steps} steps x {len(VARIANTS)} variants "
              f"in {time.perf_counter() - t0:.0f} s")
    print()
    print(format_table(rows))
    print(f"\nratio = median over rounds of (variant time / baseline time, same round); "
          f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
