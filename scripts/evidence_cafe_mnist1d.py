"""Evidence: does CAFE's evolution in S_2 find functions that beat ReLU on MNIST-1D
(dissertation ch. 3), and does it beat random search in S_2 on the same budget?

Two searches on the embedded MNIST-1D task with the ``quick`` recipe (the MNIST-1D CNN, 15
epochs, AutoInit for every candidate, ReLU included):

* CAFE evolution (§3.1.4) in S_2 = ``core(core(x), core(x))``: population ``--population``
  N, softmax fitness of the negative validation loss (eq. 3.2; ``--fitness accuracy`` for
  the accuracy-based variant), ``2 (N - m - e)`` parents drawn in proportion to it, crossover
  of same-depth subtrees then a mutation, ``--elite`` e survivors and ``--newcomers`` m
  random functions per generation, ``--generations`` generations;
* random search in S_2 with the same number of candidates.

The searches advance one generation at a time each, in turn, so a run stopped early has
spent the same budget on both. Then the ``--top`` functions of each search by validation
accuracy and ReLU are trained with ``--seeds`` fresh seeds (1000, 1001, ...; test accuracy
measured) and each compared with ReLU by Welch's t-test. Everything is journaled in
``--store`` (runs ``evolution``, ``random``, ``final``); the same command resumes a killed
run, and ``--report-only`` writes the results of what the store holds.

Writes under ``--out``: ``results.json``, ``final_runs.csv``, ``search.csv`` (every
candidate), ``progress.png`` (Figure 3.3's style: best validation accuracy per generation).

    python scripts/evidence_cafe_mnist1d.py       # N=40, 8 generations: 292 candidates a search
    python scripts/evidence_cafe_mnist1d.py --population 10 --newcomers 2 --elite 2 \
        --generations 4 --top 2 --store runs/cafe_small.db     # 34 candidates a search
    python scripts/evidence_cafe_mnist1d.py --tiny --out /tmp/c --store /tmp/c.db
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time

import numpy as np

RELU = "relu(x)"


def welch(a, b):
    """Welch's t-test of mean(a) vs mean(b): ``(t, p, dof)`` (two-sided; scipy)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        return math.nan, math.nan, math.nan
    res = stats.ttest_ind(a, b, equal_var=False)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    dof = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)) \
        if va + vb > 0 else math.nan
    return float(res.statistic), float(res.pvalue), float(dof)


def generation_sizes(population, elite, generations):
    """Candidates evaluated per generation: N in the first, N - e afterwards."""
    return [population] + [population - elite] * (generations - 1)


def per_generation_best(accuracies, sizes):
    """Best (max) value in each consecutive block of ``sizes``; NaN for an empty or
    all-failed block, and the blocks are cut short where the values end."""
    out, start = [], 0
    values = np.asarray(accuracies, float)
    for size in sizes:
        block = values[start:start + size]
        start += size
        if block.size == 0:
            break
        finite = block[np.isfinite(block)]
        out.append(float(finite.max()) if finite.size else math.nan)
    return out


def top_functions(evaluations, k, exclude=(RELU,)):
    """The ``k`` distinct functions with the highest validation accuracy among successful
    evaluations (ties: earlier first)."""
    ranked = sorted(((ev.record.validation_accuracy, i, ev.text)
                     for i, ev in enumerate(evaluations)
                     if ev.record is not None and ev.record.ok
                     and ev.record.validation_accuracy is not None),
                    key=lambda item: (-item[0], item[1]))
    out = []
    for _, _, text in ranked:
        if text not in out and text not in exclude:
            out.append(text)
        if len(out) == k:
            break
    return out


def settings_for(args):
    if args.tiny:
        return {"population": 3, "newcomers": 1, "elite": 1, "generations": 2, "top": 1,
                "seeds": 2, "overrides": {"epochs": 1, "subset": 256, "threshold": None}}
    return {"population": args.population, "newcomers": args.newcomers, "elite": args.elite,
            "generations": args.generations, "top": args.top, "seeds": args.seeds,
            "overrides": {}}


def _algorithms(settings, seed, metric):
    from keras_actfn.search.cafe import CafeEvolution, CafeRandom
    from keras_actfn.search.spaces import CafeSpace

    sizes = generation_sizes(settings["population"], settings["elite"],
                             settings["generations"])
    evolution = CafeEvolution(space=CafeSpace(2), population=settings["population"],
                              newcomers=settings["newcomers"], elite=settings["elite"],
                              generations=settings["generations"], seed=seed, metric=metric)
    random = CafeRandom(space=CafeSpace(2), budget=sum(sizes), seed=seed + 1, metric=metric)
    return evolution, random, sizes


def run_all(args, settings, metric):
    from keras_actfn.search.engine.driver import run_search
    from keras_actfn.search.pangaea import Rerank
    from keras_actfn.search.engine import make_evaluator, make_executor
    from keras_actfn.search.engine.store import Store

    os.makedirs(os.path.dirname(os.path.abspath(args.store)), exist_ok=True)
    evaluator = make_evaluator(task="mnist1d", recipe="quick", **settings["overrides"])
    start = time.perf_counter()
    with Store(args.store) as store, make_executor("local", args.workers) as pool:
        sizes = generation_sizes(settings["population"], settings["elite"],
                                 settings["generations"])
        for g in range(len(sizes)):
            budget = sum(sizes[:g + 1])
            for name in ("evolution", "random"):
                evolution, random, _ = _algorithms(settings, args.seed, metric)
                algo = evolution if name == "evolution" else random
                summary = run_search(algo, evaluator, store, executor=pool, budget=budget,
                                     seed=args.seed, run_name=name)
                best = summary.best_record
                print(f"[{time.perf_counter() - start:7.0f} s] {name} generation {g + 1}/"
                      f"{len(sizes)}: {summary.counts['finished']} finished, "
                      f"{summary.counts['failed']} failed, best "
                      f"{best.validation_accuracy if best else float('nan'):.4f} "
                      f"{best.fn if best else ''}", flush=True)
        functions = [RELU]
        for name in ("evolution", "random"):
            store.select_run(name)
            functions += [t for t in top_functions(store.results(), settings["top"])
                          if t not in functions]
        final = make_evaluator(task="mnist1d", recipe="quick", test=True,
                               **settings["overrides"])
        run_search(Rerank(functions, runs=settings["seeds"], seed=1000 + args.seed), final,
                   store, executor=pool, seed=args.seed, run_name="final")
        print(f"[{time.perf_counter() - start:7.0f} s] final comparison done", flush=True)


def readable(text):
    """The function as the page prints it: simplified (``zero(...)`` terms dropped,
    ``identity`` unwrapped...), the stored text where simplification fails."""
    from keras_actfn.expr import simplified_text

    try:
        return simplified_text(text)
    except Exception:  # noqa: BLE001 - a page line must never stop the report
        return text


def analyze(store_path, settings):
    from keras_actfn.search.engine.store import Store

    sizes = generation_sizes(settings["population"], settings["elite"],
                             settings["generations"])
    searches, final = {}, {}
    with Store(store_path, readonly=True) as store:
        names = {run["name"] for run in store.runs()}
        for name in ("evolution", "random"):
            if name not in names:
                continue
            store.select_run(name)
            searches[name] = sorted(store.results(), key=lambda ev: ev.order)
        if "final" in names:
            store.select_run("final")
            for ev in store.results():
                final.setdefault(ev.text, []).append(ev.record)
    result = {"generation_sizes": sizes, "searches": {}, "final": {}}
    search_rows = []
    for name, evs in searches.items():
        acc = [ev.record.validation_accuracy if ev.record.ok and
               ev.record.validation_accuracy is not None else math.nan for ev in evs]
        finite = np.array([a for a in acc if math.isfinite(a)])
        result["searches"][name] = {
            "candidates": len(evs), "failed": sum(not ev.record.ok for ev in evs),
            "reused": sum(ev.reused_from is not None for ev in evs),
            "best_validation_accuracy": float(finite.max()) if finite.size else math.nan,
            "best_per_generation": per_generation_best(acc, sizes),
            "top": top_functions(evs, settings["top"]),
            "top_simplified": [readable(t) for t in top_functions(evs, settings["top"])],
            "relu_found": any(ev.text == RELU for ev in evs)}
        for i, ev in enumerate(evs):
            search_rows.append([name, i + 1, ev.candidate.generation, ev.text,
                                readable(ev.text), ev.record.status, ev.record.reason or "",
                                ev.record.validation_accuracy, ev.record.validation_loss])
    base = [r.test_accuracy for r in final.get(RELU, []) if r.ok and r.test_accuracy is not None]
    origin = {t: name for name in ("random", "evolution")
              for t in result["searches"].get(name, {}).get("top", [])}
    for text, records in final.items():
        values = [r.test_accuracy for r in records if r.ok and r.test_accuracy is not None]
        t, p, dof = welch(values, base) if text != RELU else (math.nan,) * 3
        result["final"][text] = {
            "from": "baseline" if text == RELU else origin.get(text, "?"),
            "simplified": readable(text),
            "runs": len(records), "trained": len(values), "test_accuracy": values,
            "mean": float(np.mean(values)) if values else math.nan,
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
            "welch_t_vs_relu": t, "p_value": p, "dof": dof}
    return result, search_rows


def write_outputs(result, search_rows, out, meta):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({**meta, **result}, f, indent=1)
    with open(os.path.join(out, "search.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["search", "order", "generation", "function", "simplified", "status",
                         "reason", "validation_accuracy", "validation_loss"])
        writer.writerows(search_rows)
    with open(os.path.join(out, "final_runs.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["function", "from", "run", "test_accuracy"])
        for text, row in result["final"].items():
            for i, v in enumerate(row["test_accuracy"]):
                writer.writerow([text, row["from"], i, f"{v:.6f}"])
    plot_progress(result, os.path.join(out, "progress.png"))


def plot_progress(result, path):
    """Figure 3.3's style: top validation accuracy per generation, evolution vs random
    (random search's candidates grouped in completion order into blocks of the same sizes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, color in (("evolution", "tab:blue"), ("random", "tab:orange")):
        s = result["searches"].get(name)
        if not s:
            continue
        best = s["best_per_generation"]
        gens = np.arange(1, len(best) + 1)
        ax.plot(gens, best, marker="o", color=color, label=f"{name}: best per generation")
        ax.plot(gens, np.fmax.accumulate(np.array(best, float)), linestyle=":", color=color,
                label=f"{name}: best so far")
    relu = result["final"].get(RELU)
    ax.set_xlabel("generation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # generations are whole numbers
    ax.set_ylabel("validation accuracy (MNIST-1D CNN)")
    ax.legend(fontsize="small")
    if relu is not None and math.isfinite(relu["mean"]):
        ax.set_title(f"CAFE in S_2 (ReLU test accuracy {relu['mean']:.3f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def print_summary(result):
    for name, s in result["searches"].items():
        print(f"{name}: {s['candidates']} candidates, {s['failed']} failed, best val acc "
              f"{s['best_validation_accuracy']:.4f}; per generation "
              + " ".join(f"{v:.3f}" for v in s["best_per_generation"]))
    print(f"\n{'function':<56} {'from':<9} {'test acc':>17} {'n':>2} {'t':>6} {'p':>8}")
    for text, row in sorted(result["final"].items(), key=lambda kv: -kv[1]["mean"]):
        print(f"{row['simplified'][:56]:<56} {row['from']:<9} {row['mean']:.4f} ± {row['std']:.4f} "
              f"{row['trained']:>2} {row['welch_t_vs_relu']:>6.2f} {row['p_value']:>8.2g}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--population", type=int, default=40, help="N (default 40)")
    p.add_argument("--newcomers", type=int, default=8, help="m (default 8)")
    p.add_argument("--elite", type=int, default=4, help="e (default 4)")
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--fitness", choices=("loss", "accuracy"), default="loss")
    p.add_argument("--top", type=int, default=3, help="functions of each search compared")
    p.add_argument("--seeds", type=int, default=5, help="final runs per function")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", default="runs/evidence_cafe_mnist1d.db")
    p.add_argument("--out", default="docs/evidence/cafe_mnist1d")
    p.add_argument("--tiny", action="store_true",
                   help="smoke test: N=3, 2 generations, 1 epoch on 256 examples")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    settings = settings_for(args)
    if not 0 <= settings["newcomers"] + settings["elite"] < settings["population"]:
        p.error("need newcomers + elite < population")
    metric = "validation_loss" if args.fitness == "loss" else "validation_accuracy"
    started = time.time()
    if not args.report_only:
        run_all(args, settings, metric)
    result, rows = analyze(args.store, settings)
    meta = {"command": "python scripts/evidence_cafe_mnist1d.py " + " ".join(
                argv if argv is not None else sys.argv[1:]),
            "settings": settings, "fitness_metric": metric, "seed": args.seed,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                       f"{platform.system()}",
            "wall_s_this_invocation": round(time.time() - started, 1),
            "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    write_outputs(result, rows, args.out, meta)
    print_summary(result)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
