"""Evidence: does PANGAEA find activation functions that beat ReLU on MNIST-1D?

Runs PANGAEA (P=16, S=4, V=20%) on the embedded MNIST-1D task with the ``quick`` recipe
(the MNIST-1D CNN), then trains the three best functions and ReLU with ``--seeds`` fresh
seeds each (test accuracy measured) and compares every function with ReLU by Welch's
t-test, as Table 4.2 of the dissertation does for its tasks. Writes under ``--out``:

* ``final_runs.csv``: function, seed, validation and test accuracy of every final run;
* ``summary.csv``: mean, sample std, n, Welch t and p against ReLU per function;
* ``progress.png``, ``population.png``, ``top_functions.png`` (the search), and
  ``final_accuracies.png`` (per-seed test accuracies).

    python scripts/evidence_pangaea_mnist1d.py                      # ~15 min on 2 cores
    python scripts/evidence_pangaea_mnist1d.py --budget 40 --seeds 5 --out /tmp/ev

Re-running resumes the journal (``--store``) instead of starting over.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import sys

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=120)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--store", default="runs/evidence_pangaea_mnist1d.db")
    p.add_argument("--out", default="docs/evidence/pangaea_mnist1d")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from scipy import stats

    from keras_actfn.expr import parse
    from keras_actfn.search.report import write_report
    from keras_actfn.search.runner import format_comparison, run_named_search
    from keras_actfn.search.engine.store import Store

    summary, rows = run_named_search(
        "pangaea", task="mnist1d", recipe="quick", budget=args.budget, store=args.store,
        seed=args.seed, final_seeds=args.seeds, final_top=args.top, final_test=True,
        algorithm_options={"population": 16, "sample": 4, "threshold": 0.2})
    print(summary)
    print(format_comparison(rows))

    os.makedirs(args.out, exist_ok=True)
    relu = str(parse("relu(x)"))
    runs = {}
    with Store(args.store) as store:
        store.select_run("final")
        with open(os.path.join(args.out, "final_runs.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["function", "seed", "status", "validation_accuracy",
                             "test_accuracy"])
            for ev in store.results():
                r = ev.record
                writer.writerow([ev.text, r.seed, r.status, r.validation_accuracy,
                                 r.test_accuracy])
                if r.ok and r.test_accuracy is not None:
                    runs.setdefault(ev.text, []).append(r.test_accuracy)
    base = np.array(runs.get(relu, []))
    table = []
    for text, values in sorted(runs.items(), key=lambda kv: -np.mean(kv[1])):
        values = np.array(values)
        t = pval = math.nan
        if text != relu and base.size > 1 and values.size > 1:
            t, pval = stats.ttest_ind(values, base, equal_var=False)
        table.append((text, values.mean(), values.std(ddof=1) if values.size > 1 else
                      math.nan, values.size, t, pval))
    with open(os.path.join(args.out, "summary.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["function", "test_accuracy_mean", "test_accuracy_std", "n",
                         "welch_t_vs_relu", "p_value"])
        for row in table:
            writer.writerow([row[0]] + [f"{v:.6g}" for v in row[1:]])
    print(f"\n{'function':<50} {'test acc':>16} {'n':>3} {'t':>7} {'p':>9}")
    for text, mean, std, n, t, pval in table:
        print(f"{text[:50]:<50} {mean:.4f} ± {std:.4f} {n:>3} {t:>7.2f} {pval:>9.3g}")

    _, paths = write_report(args.store, out_dir=args.out + "_tmp")
    for name, path in paths.items():
        shutil.move(path, os.path.join(args.out, os.path.basename(path)))
    shutil.rmtree(args.out + "_tmp", ignore_errors=True)
    _plot_final(runs, relu, os.path.join(args.out, "final_accuracies.png"))
    print(f"\nwritten: {args.out}")
    return 0


def _plot_final(runs, relu, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = sorted(runs, key=lambda k: -np.mean(runs[k]))
    fig = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        values = np.array(runs[name])
        color = "tab:red" if name == relu else "tab:blue"
        ax.scatter(i + rng.uniform(-0.08, 0.08, values.size), values, s=14, color=color)
        ax.hlines(values.mean(), i - 0.25, i + 0.25, color=color, linewidth=2)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n if len(n) < 28 else n[:25] + "..." for n in names], fontsize=7,
                       rotation=12)
    ax.set_ylabel("test accuracy (MNIST-1D CNN)")
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
