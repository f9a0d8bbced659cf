"""How long does AutoInit take on deep ResNets, against a plain Keras re-initialization?

For CIFAR ResNet-v1 of depths 56, 110, 164 and 812 (``keras_actfn.models.resnet_v1``, 32x32x3
inputs; unnormalized by default, as in the dissertation's AutoInit experiments, or with
``--batchnorm``), one process times side by side, on the same already-built model:

* ``AutoInit(seed=...).initialize_model(model)``: the whole graph walk, moment estimates and
  weight draws (Algorithm 1), with per-channel and mean-map tracking (``match_draw=True``,
  the default) and in the published scalar mode (``match_draw=False``, column "scalar s");
* the baseline: every variable re-assigned from its own layer's initializer
  (``kernel_initializer``, ``bias_initializer``, ``gamma_initializer``, ...), i.e. what
  re-creating the model's weights the Keras way costs.

Building the model is not timed. Each depth gets one untimed warm-up of each method, then
``--repeats`` rounds alternating the two (a slow spell of a shared machine hits both);
times are medians over rounds, the ratio is the median of the per-round ratios. The
AutoInit time per graph layer is printed to check linearity (the dissertation, A.3.1: the
cost is O(L)), and ResNet-164 is checked against a 1 s goal. With ``--profile`` the script
also runs AutoInit once under cProfile and prints the hotspots.

    python benchmarks/bench_autoinit.py                   # ~2 minutes on 2 CPU cores
    python benchmarks/bench_autoinit.py --depths 56 164 --repeats 5
    python benchmarks/bench_autoinit.py --batchnorm --profile

The exit status is 0 whatever the numbers: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, ROOT)

from keras_actfn import keras_graph  # noqa: E402
from keras_actfn.backend import describe, keras  # noqa: E402

GOAL_DEPTH = 164
GOAL_SECONDS = 1.0
_INITIALIZED_ATTRS = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel",
                      "bias", "gamma", "beta", "moving_mean", "moving_variance", "embeddings")


def keras_reinit(model, seed):
    """Re-assign every variable from its layer's own initializer; return how many."""
    keras.utils.set_random_seed(seed)
    count = 0
    for layer in keras_graph.all_layers(model):
        for attr in _INITIALIZED_ATTRS:
            initializer = getattr(layer, f"{attr}_initializer", None)
            variable = getattr(layer, attr, None)
            if initializer is None or variable is None or not hasattr(variable, "assign"):
                continue
            variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))
            count += 1
    return count


def autoinit(model, seed, match_draw=True):
    from keras_actfn.autoinit import AutoInit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Monte Carlo notices, once per layer type
        init = AutoInit(seed=seed, match_draw=match_draw)
        init.initialize_model(model)
    return init


def _timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def bench_depth(depth, batchnorm, repeats, input_size, log=print):
    from keras_actfn.models import resnet_v1

    start = time.perf_counter()
    model = resnet_v1(depth, batchnorm=batchnorm, input_shape=(input_size, input_size, 3))
    built = time.perf_counter() - start
    n_vars = len(model.weights)
    cold = _timed(autoinit, model, 0)                     # first call: caches, imports
    reinit_vars = keras_reinit(model, 0)                  # warm-up of the baseline
    layers = len(autoinit(model, 0).records)              # graph layers AutoInit visits
    autoinit(model, 0, False)                             # warm-up of the scalar mode
    auto_times, scalar_times, keras_times, ratios = [], [], [], []
    for r in range(repeats):
        timings = {}
        order = ("auto", "scalar", "keras") if r % 2 == 0 else ("keras", "scalar", "auto")
        for name in order:
            if name == "auto":
                timings[name] = _timed(autoinit, model, r + 1)
            elif name == "scalar":
                timings[name] = _timed(autoinit, model, r + 1, False)
            else:
                timings[name] = _timed(keras_reinit, model, r + 1)
        auto_times.append(timings["auto"])
        scalar_times.append(timings["scalar"])
        keras_times.append(timings["keras"])
        ratios.append(timings["auto"] / timings["keras"])
    row = {"depth": depth, "batchnorm": batchnorm, "layers": layers,
           "params": int(model.count_params()), "variables": n_vars,
           "reinit_variables": reinit_vars, "build_s": built, "cold_s": cold,
           "autoinit_s": statistics.median(auto_times),
           "scalar_s": statistics.median(scalar_times),
           "keras_s": statistics.median(keras_times), "ratio": statistics.median(ratios)}
    row["per_layer_ms"] = 1000.0 * row["autoinit_s"] / layers
    log(f"  ResNet-{depth}: {layers} layers, AutoInit {row['autoinit_s']:.3f} s "
        f"(match_draw=False {row['scalar_s']:.3f} s), "
        f"Keras {row['keras_s']:.3f} s (build {built:.1f} s, first AutoInit {cold:.2f} s)")
    return row, model


def format_table(rows):
    head = ("depth", "layers", "params", "AutoInit s", "scalar s", "first s", "Keras reinit s",
            "ratio", "ms/layer")
    lines = [f"{head[0]:>5}  {head[1]:>6}  {head[2]:>9}  {head[3]:>10}  {head[4]:>8}  "
             f"{head[5]:>7}  {head[6]:>14}  {head[7]:>6}  {head[8]:>8}"]
    lines.append("  ".join("-" * w for w in (5, 6, 9, 10, 8, 7, 14, 6, 8)))
    for r in rows:
        lines.append(f"{r['depth']:>5}  {r['layers']:>6}  {r['params']:>9,}  "
                     f"{r['autoinit_s']:>10.3f}  {r['scalar_s']:>8.3f}  {r['cold_s']:>7.2f}  "
                     f"{r['keras_s']:>14.3f}  {r['ratio']:>6.1f}  {r['per_layer_ms']:>8.2f}")
    return "\n".join(lines)


def profile(model, top=15):
    """Run AutoInit once under cProfile; return the hotspot report."""
    prof = cProfile.Profile()
    prof.enable()
    autoinit(model, 123)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.strip_dirs()
    out.write("-- by own time (tottime) --\n")
    stats.sort_stats("tottime").print_stats(top)
    out.write("-- by cumulative time --\n")
    stats.sort_stats("cumulative").print_stats(top)
    return "\n".join(line for line in out.getvalue().splitlines()
                     if line.strip() and not line.startswith(("   Ordered", "   List red")))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", type=int, nargs="+", default=[56, 110, 164, 812])
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per depth")
    p.add_argument("--batchnorm", action="store_true",
                   help="time the normalized ResNets (default: unnormalized)")
    p.add_argument("--input-size", type=int, default=32, help="image height and width")
    p.add_argument("--profile", action="store_true",
                   help="also profile one AutoInit run (ResNet-164, or the deepest asked)")
    p.add_argument("--top", type=int, default=15, help="rows of the profile report")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    flavour = "with BatchNormalization" if args.batchnorm else "unnormalized (batchnorm=False)"
    print(f"AutoInit vs Keras re-initialization: ResNet-v1 {flavour}, "
          f"{args.input_size}x{args.input_size}x3 inputs, {args.repeats} rounds")
    print(f"{describe()}; {os.cpu_count()} CPUs visible")
    rows, models = [], {}
    for depth in args.depths:
        row, model = bench_depth(depth, args.batchnorm, args.repeats, args.input_size)
        rows.append(row)
        models[depth] = model
    print()
    print(format_table(rows))
    per_layer = [r["per_layer_ms"] for r in rows]
    if len(rows) > 1:
        print(f"\nms per layer: {min(per_layer):.2f} - {max(per_layer):.2f} "
              f"(max/min {max(per_layer) / min(per_layer):.2f}; 1.0 = perfectly linear in L)")
    goal = [r for r in rows if r["depth"] == GOAL_DEPTH]
    if goal:
        for key, label in (("autoinit_s", "default (match_draw=True)"),
                           ("scalar_s", "match_draw=False")):
            verdict = "PASS" if goal[0][key] <= GOAL_SECONDS else "MISS"
            print(f"goal: ResNet-{GOAL_DEPTH} AutoInit {label} <= {GOAL_SECONDS:g} s: "
                  f"{goal[0][key]:.3f} s -> {verdict}")
    uncovered = [r for r in rows if r["reinit_variables"] < r["variables"]]
    for r in uncovered:
        print(f"note: Keras re-init reached {r['reinit_variables']} of {r['variables']} "
              f"variables at depth {r['depth']}")
    if args.profile:
        depth = GOAL_DEPTH if GOAL_DEPTH in models else args.depths[-1]
        print(f"\nprofile of one AutoInit run, ResNet-{depth}:")
        print(profile(models[depth], args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
