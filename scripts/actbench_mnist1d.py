"""Build the Act-Bench-style MNIST-1D table of docs/evidence/actbench_mnist1d (§6.6).

Every unique function of the Table A.3 space ``binary(unary(x), unary(x))`` (the 2,750
output-distinct ones of 5,103) is trained once on the embedded MNIST-1D task with the
MNIST-1D CNN and the ``quick`` recipe shortened to ``--epochs`` (default 5), test metrics
included, and its FIM features are computed at initialization (one batch of 128, AutoInit,
labels sampled from the model). Every evaluation is journaled in ``--store``: re-running
resumes where it stopped. The JSON (Act-Bench layout, gzip) goes to ``--out``. These are
the settings of the committed table; ``keras-actfn bench build`` exposes them all.

    python scripts/actbench_mnist1d.py build --workers 2       # ~1.5 h on 2 cores

Then the searches replayed on it (Figure 6.6) and its figures:

    keras-actfn bench replay docs/evidence/actbench_mnist1d/benchmark.json.gz \
        --out docs/evidence/actbench_mnist1d
    keras-actfn bench plot docs/evidence/actbench_mnist1d/benchmark.json.gz \
        --out docs/evidence/actbench_mnist1d
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_OUT = "docs/evidence/actbench_mnist1d"


def build(args):
    from keras_actfn.search.aquasurf.benchmark import FisherEvaluator, build_benchmark
    from keras_actfn.search.aquasurf.space import aquasurf_space, count_unique
    from keras_actfn.search.engine import make_evaluator, make_executor
    from keras_actfn.search.runner import ProgressLine
    from keras_actfn.train import get_recipe

    recipe = get_recipe("quick").scaled(epochs=args.epochs)
    evaluator = FisherEvaluator(make_evaluator(task="mnist1d", recipe=recipe, test=True),
                                model=recipe.model, task="mnist1d")
    space = aquasurf_space("binary_unary_unary")
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(os.path.dirname(args.store) or ".", exist_ok=True)
    executor = make_executor(workers=args.workers)
    try:
        bench = build_benchmark(
            space, evaluator, args.store, os.path.join(args.out, "benchmark.json.gz"),
            seed=args.seed, executor=executor, run_name="benchmark",
            context={"task": "mnist1d", "model": recipe.model, "recipe": "quick",
                     "epochs": args.epochs, "space": "binary_unary_unary"},
            progress=ProgressLine(budget=count_unique(space), every=30))
    finally:
        executor.close()
    print(f"wrote {len(bench)} functions to {bench.path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--epochs", type=int, default=5)
    b.add_argument("--workers", type=int, default=1)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--store", default="runs/actbench_mnist1d.db")
    b.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.command == "build":
        build(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
