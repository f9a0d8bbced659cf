"""GRAFS search overhead: search time divided by the time of one evaluation run.

The GRAFS paper reports this ratio (Tables 11-13: 0.25-4.85) for its searches; the goal here
is <= 1.0 on the MNIST-1D CNN. One process, side by side and alternating per round: a GRAFS
search (``keras_actfn.search.grafs.grafs_search``, ``--epochs`` epochs, one warm-start
epoch, shrinking from epoch 2) and one evaluation training run of the same model with ReLU
under the ``quick`` recipe (``evaluate_activation``). Ratio = median of per-round ratios.

    python benchmarks/bench_grafs.py                  # ~2 minutes on 2 CPU cores
    python benchmarks/bench_grafs.py --epochs 10 --rounds 3

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
    args = p.parse_args(argv)

    from keras_actfn.backend import describe
    from keras_actfn.data import load_task
    from keras_actfn.models import build_model
    from keras_actfn.search.grafs.search import grafs_search
    from keras_actfn.train import evaluate_activation

    task = load_task("mnist1d")
    print(f"{describe()}; GRAFS on the MNIST-1D CNN, {args.epochs} search epochs vs one "
          f"`quick` evaluation run (15 epochs), {args.rounds} rounds")

    def search(seed):
        start = time.perf_counter()
        grafs_search(lambda: build_model("mnist1d_cnn", activation="relu", task=task), task,
                     epochs=args.epochs, warm_start_epochs=1, batch_size=64, seed=seed,
                     verbose=False)
        return time.perf_counter() - start

    def evaluation(seed):
        start = time.perf_counter()
        evaluate_activation("relu(x)", task="mnist1d", recipe="quick", seed=seed)
        return time.perf_counter() - start

    search(0), evaluation(0)  # warm-up: imports, first traces
    s_times, e_times, ratios = [], [], []
    for r in range(args.rounds):
        if r % 2 == 0:
            s, e = search(r + 1), evaluation(r + 1)
        else:
            e, s = evaluation(r + 1), search(r + 1)
        s_times.append(s)
        e_times.append(e)
        ratios.append(s / e)
        print(f"  round {r + 1}: search {s:.1f} s, evaluation {e:.1f} s, ratio {s / e:.2f}")
    ratio = statistics.median(ratios)
    verdict = "PASS" if ratio <= GOAL else "MISS"
    print(f"\nsearch {statistics.median(s_times):.1f} s / evaluation "
          f"{statistics.median(e_times):.1f} s = {ratio:.2f} (goal <= {GOAL:g}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
