"""How many candidates per hour does the harness evaluate, and what does it cost over Keras?

On the MNIST-1D ``quick`` recipe (``keras_actfn.train``), one process times side by side,
for the same activation function, seed, model, data and epochs:

* ``harness``: ``evaluate_activation(fn, recipe="quick", seed=s)``: activation probe, model
  build, AutoInit, first-batch check, ``fit`` with the recipe's schedule and the NaN guard,
  validation every epoch, the record, memory clean-up;
* ``bare fit``: what a minimal script does: ``build_model`` + ``compile`` (the same
  optimizer at a constant learning rate and the same ``steps_per_execution``) +
  ``model.fit`` with the same datasets, epochs and per-epoch validation;
* ``bare fit, Keras defaults``: the same with ``steps_per_execution=1`` (what ``compile``
  does unless told otherwise), for scale.

Timing runs in rounds: each round evaluates one function (rotating through good functions
that train for the full recipe, the slowest case) with all variants, in an order that
alternates between rounds, so a slow spell of a shared machine hits all variants of the
round alike. One untimed warm-up of each variant comes first. Reported: median seconds per
candidate, candidates per hour (3600 / median), and the median over rounds of the per-round
ratio harness / bare fit, with its interquartile range, for wall time and for process CPU
time (all threads; on a shared machine other jobs stretch wall times but hardly CPU times).
Goals: >= 200 candidates per hour on 2 CPU cores, harness overhead <= 10%. The harness's
own per-phase times (``record.info["timing_s"]``) show where its time goes.

    python benchmarks/bench_evaluate.py              # ~3 minutes on 2 CPU cores
    python benchmarks/bench_evaluate.py --rounds 12  # tighter ratios
    python benchmarks/bench_evaluate.py --failing    # also time failing candidates

The exit status is 0 whatever the numbers: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, ROOT)

from keras_actfn.backend import describe, keras  # noqa: E402

GOOD = ("relu", "x*sigmoid(x)", "tanh(x)", "gelu(x)", "sin(x)", "elu(x)")
FAILING = ("x*zero(x)", "exp(exp(exp(x)))", "square(x)", "exp(x)")
GOAL_PER_HOUR = 200
GOAL_OVERHEAD = 1.10


class Clock:
    """Wall time and process CPU time (all threads) of a block. On a shared machine other
    jobs stretch the wall time of whatever runs, but not its CPU time, so the CPU ratio is
    the steadier measure of the harness's own cost."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def harness(fn, seed, recipe):
    from keras_actfn.train import evaluate_activation

    with Clock() as clock:
        record = evaluate_activation(fn, recipe=recipe, seed=seed)
    return clock, record


def bare_fit(fn, seed, recipe, steps_per_execution):
    """build + compile + fit, as a short script would do it (no AutoInit, no checks)."""
    from keras_actfn.models import build_model
    from keras_actfn.train.evaluate import prepare

    plan = prepare(recipe=recipe)  # the same (cached) task object as the harness
    task, r = plan.task, plan.recipe
    with Clock() as clock:
        keras.utils.set_random_seed(seed)
        model = build_model(r.model, fn, task=task)
        peak = max(r.learning_rate(e) for e in range(r.epochs))
        model.compile(optimizer=keras.optimizers.SGD(peak, momentum=r.momentum,
                                                     nesterov=r.nesterov),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      steps_per_execution=steps_per_execution)
        model.fit(task.dataset("train", r.batch_size, shuffle=True, seed=seed),
                  validation_data=task.dataset("validation", 2 * r.batch_size),
                  epochs=r.epochs, verbose=0, shuffle=False)
    return clock


def _quartiles(values):
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def run(rounds, recipe, log=print):
    from keras_actfn.train import get_recipe

    spe = get_recipe(recipe).steps_per_execution
    variants = {
        "harness": lambda fn, s: harness(fn, s, recipe)[0],
        "bare fit": lambda fn, s: bare_fit(fn, s, recipe, spe),
        "bare fit, Keras defaults": lambda fn, s: bare_fit(fn, s, recipe, 1),
    }
    log("warm-up (untimed) ...")
    for name, fn in variants.items():
        fn("relu", 0)
    times = {name: [] for name in variants}  # (wall, cpu) per round
    phases = []
    names = list(variants)
    for r in range(rounds):
        fn = GOOD[r % len(GOOD)]
        order = names if r % 2 == 0 else names[::-1]
        row = {}
        for name in order:
            if name == "harness":
                clock, record = harness(fn, r + 1, recipe)
                phases.append(record.info.get("timing_s", {}))
                if not record.ok:
                    log(f"  note: {fn} failed in the harness: {record.summary()}")
            else:
                clock = variants[name](fn, r + 1)
            row[name] = clock
            times[name].append((clock.wall, clock.cpu))
        log(f"  round {r + 1}/{rounds} ({fn}): " + ", ".join(
            f"{n} {row[n].wall:.2f} s ({row[n].cpu:.2f} cpu)" for n in names))
    return times, phases


def report(times, phases, rounds):
    lines = []
    base = times["bare fit"]
    head = (f"{'variant':<26}  {'s/candidate':>11}  {'candidates/h':>12}  {'ratio':>6}  "
            f"{'ratio IQR':>11}  {'cpu ratio':>9}  {'cpu IQR':>11}  {'goal':>7}  result")
    lines += [head, "-" * len(head)]
    for name, values in times.items():
        median = statistics.median(w for w, _ in values)
        per_hour = 3600.0 / median
        if name == "bare fit":
            cells, goal, result = ["-", "-", "-", "-"], "-", "baseline"
        else:
            cells = []
            for i in (0, 1):
                ratios = [v[i] / b[i] for v, b in zip(values, base)]
                low, high = _quartiles(ratios)
                cells += [f"{statistics.median(ratios):.3f}", f"{low:.2f}-{high:.2f}"]
            if name == "harness":
                goal = f"<= {GOAL_OVERHEAD:.2f}"
                result = "PASS" if float(cells[0]) <= GOAL_OVERHEAD else "MISS"
                result += " (cpu " + ("PASS" if float(cells[2]) <= GOAL_OVERHEAD else
                                      "MISS") + ")"
            else:
                goal, result = "-", "reference"
        lines.append(f"{name:<26}  {median:>11.2f}  {per_hour:>12.0f}  {cells[0]:>6}  "
                     f"{cells[1]:>11}  {cells[2]:>9}  {cells[3]:>11}  {goal:>7}  {result}")
    per_hour = 3600.0 / statistics.median(w for w, _ in times["harness"])
    verdict = "PASS" if per_hour >= GOAL_PER_HOUR else "MISS"
    lines.append(f"\ngoal: >= {GOAL_PER_HOUR} candidates/h with the harness: {per_hour:.0f} "
                 f"-> {verdict}   ({rounds} rounds, full-length candidates)")
    keys = []
    for p in phases:
        keys += [k for k in p if k not in keys]
    if phases:
        parts = [f"{k} {statistics.median([p.get(k, 0.0) for p in phases]):.3f}" for k in keys]
        lines.append("harness phases, median s: " + ", ".join(parts))
    return "\n".join(lines)


def time_failing(recipe, log=print):
    log("\nfailing candidates (they stop early):")
    for fn in FAILING:
        clock, record = harness(fn, 0, recipe)
        log(f"  {fn:<18} {clock.wall:6.2f} s  {record.status} {record.reason or ''}  "
            f"({record.epochs_run} epochs)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6, help="timed rounds (default: 6)")
    p.add_argument("--recipe", default="quick", help="recipe to time (default: quick)")
    p.add_argument("--failing", action="store_true",
                   help="also time a few failing candidates once each")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from keras_actfn.train import get_recipe

    print(f"evaluate_activation vs bare model.fit, recipe {get_recipe(args.recipe).label}, "
          f"{args.rounds} rounds")
    print(f"{describe()}; {os.cpu_count()} CPUs visible")
    times, phases = run(args.rounds, args.recipe)
    print()
    print(report(times, phases, args.rounds))
    if args.failing:
        time_failing(args.recipe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
