"""GRAFS search overhead: search time divided by the time of one evaluation run.

The GRAFS paper reports this ratio (Tables 11-13: 0.25-4.85); the goal here is <= 1.0 on the
MNIST-1D CNN. One process, side by side and alternating per round: a GRAFS search
(``keras_actfn.search.grafs.grafs_search``, ``--epochs`` E epochs, one warm-start epoch,
shrinking from epoch 2, batch 64) and evaluation training runs of the same model with ReLU
under the ``quick`` recipe (``evaluate_activation``, batch 64, AutoInit):

* **paper proportion** (the goal is judged on it): the evaluation run is 10 E epochs (the
  ``quick`` recipe scaled to 10 E epochs, its schedule stretched). The paper's ratios compare
  a search with an evaluation run ten times longer: 50 search epochs against 500 evaluation
  epochs (ResNet20/32 and ViT, Tables 6-8) and 1,000 against 10,000 iterations (miniGPT,
  Tables 9-10);
* **quick recipe**: the evaluation run is the ``quick`` recipe as registered (15 epochs), the
  toolkit's CPU-sized evaluation, so the proportion is E : 15 (1:3 at E = 5).

Ratios are medians of per-round ratios of wall-clock times; the ratios of process CPU times
are printed next to them (on a shared machine they are the steadier ones). E = 5 is about the
least that exercises the method: a warm-start epoch, drops spread over three epochs, and a
last epoch with the discrete cell. Each search epoch makes a cell step and a weight step per
batch on 75% of the data.

    python benchmarks/bench_grafs.py                  # ~2.5 minutes on 2 CPU cores
    python benchmarks/bench_grafs.py --epochs 10 --rounds 3

Last measured: see benchmarks/README.md (GRAFS section).

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
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

GOAL = 1.0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5, help="GRAFS search epochs")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--respecialize", type=float, default=0.75,
                   help="grafs_search's respecialize (1.0: one trace for the whole search)")
    args = p.parse_args(argv)

    from keras_actfn.backend import describe
    from keras_actfn.data import load_task
    from keras_actfn.models import build_model
    from keras_actfn.search.grafs.search import grafs_search
    from keras_actfn.train import evaluate_activation, get_recipe

    task = load_task("mnist1d")
    paper_epochs = 10 * args.epochs
    print(f"{describe()}; GRAFS on the MNIST-1D CNN, {args.epochs} search epochs vs one "
          f"evaluation run of {paper_epochs} epochs (paper proportion) and one of the `quick` "
          f"recipe (15 epochs), {args.rounds} rounds")

    def search(seed):
        start, cpu = time.perf_counter(), time.process_time()
        result = grafs_search(lambda: build_model("mnist1d_cnn", activation="relu", task=task),
                              task, epochs=args.epochs, warm_start_epochs=1, batch_size=64,
                              seed=seed, respecialize=args.respecialize, verbose=False)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        traced = sum(h["trace_seconds"] for h in result.history)
        return wall, cpu, traced, result.traces

    recipes = {"quick": get_recipe("quick"),
               "paper": get_recipe("quick").scaled(epochs=paper_epochs)}

    def evaluation(seed, which):
        start, cpu = time.perf_counter(), time.process_time()
        evaluate_activation("relu(x)", task="mnist1d", recipe=recipes[which], seed=seed)
        return time.perf_counter() - start, time.process_time() - cpu

    search(0), evaluation(0, "quick"), evaluation(0, "paper")  # warm-up: imports, traces
    s_times, e_times, ratios, cpu_ratios = [], {}, {}, {}
    for r in range(args.rounds):
        order = ["search", "quick", "paper"] if r % 2 == 0 else ["paper", "quick", "search"]
        got = {}
        for which in order:
            got[which] = search(r + 1) if which == "search" else evaluation(r + 1, which)
        s = got["search"]
        s_times.append(s[0])
        line = [f"  round {r + 1}: search {s[0]:.1f} s ({s[2]:.1f} s tracing and setup, "
                f"{s[3]} trace(s), CPU {s[1]:.1f} s)"]
        for which in ("paper", "quick"):
            e = got[which]
            e_times.setdefault(which, []).append(e[0])
            ratios.setdefault(which, []).append(s[0] / e[0])
            cpu_ratios.setdefault(which, []).append(s[1] / e[1])
            line.append(f"{which} evaluation {e[0]:.1f} s (CPU {e[1]:.1f} s): ratio "
                        f"{s[0] / e[0]:.2f}, CPU {s[1] / e[1]:.2f}")
        print("; ".join(line))
    search_time = statistics.median(s_times)
    print()
    for which, label in (("paper", f"paper proportion, evaluation {paper_epochs} epochs"),
                         ("quick", "quick recipe, evaluation 15 epochs")):
        ratio = statistics.median(ratios[which])
        verdict = ("PASS" if ratio <= GOAL else "MISS") if which == "paper" else "(reported)"
        print(f"{label}: search {search_time:.1f} s / evaluation "
              f"{statistics.median(e_times[which]):.1f} s = {ratio:.2f} (goal <= {GOAL:g}): "
              f"{verdict}; CPU-time ratio {statistics.median(cpu_ratios[which]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
