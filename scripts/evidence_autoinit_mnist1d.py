"""Evidence: AutoInit and AutoInit++ vs Keras's default initialization on random PANGAEA
functions (dissertation §5.11, Figure 5.9), at CPU scale on MNIST-1D.

``--n`` activation functions are drawn as §5.11 draws them: a random PANGAEA graph
(``unary(unary(x))`` or ``binary(unary(x), unary(x))``), three random mutations, then 0-3
learnable parameters. Each is trained with the ``quick`` recipe (the MNIST-1D CNN, 15
epochs; V = None, so "failed" means what §5.11 counts: overflow, NaN/inf loss, or
validation accuracy at chance) under three initializations, with the same training seed:

* ``default``: the layers' own initializers (Keras: Glorot uniform kernels, zero biases);
* ``autoinit``: :class:`~keras_actfn.autoinit.AutoInit` for the candidate;
* ``autoinit++``: AutoInit with ``center_activations=True`` (every activation made
  ``f - E f(Z)``, Z ~ N(0, 1)).

Also: ReLU under default init and AutoInit (``--baseline-seeds`` seeds: the "beats ReLU"
count of §5.11), and one deep unnormalized network -- the MNIST-1D CNN made ``--deep-depth``
(20) convolutions deep, no normalization or skips, ReLU, peak learning rate ``--deep-lr``
(0.01) -- under default init and AutoInit.

Every training is journaled in ``--store`` (one run per arm and chunk of 10 functions, so
at any moment the three arms have covered the same functions); the same command resumes a
killed run. ``--report-only`` writes the results of what the store holds without training.
Writes under ``--out``: ``results.json`` (every statistic), ``functions.csv`` (one row per
function: status, reason and validation accuracy per arm), ``figure_5_9.png``.

    python scripts/evidence_autoinit_mnist1d.py --n 200 --workers 2
    python scripts/evidence_autoinit_mnist1d.py --tiny --out /tmp/ev --store /tmp/ev.db
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import platform
import sys
import time

import numpy as np

ARMS = ("default", "autoinit", "autoinit++")
PAIRS = (("autoinit", "default"), ("autoinit++", "default"), ("autoinit++", "autoinit"))
CHUNK = 10
RELU = "relu(x)"


# ----------------------------------------------------------------------------- functions
def draw_functions(n, seed=0, mutations=3):
    """``n`` distinct random PANGAEA functions as §5.11 creates them (canonical text)."""
    from keras_actfn.search.spaces import PangaeaSpace

    space = PangaeaSpace()
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    while len(out) < n:
        graph = space.random_graph(rng)
        for _ in range(mutations):
            graph, _ = space.mutate(graph, rng)
        text = str(space.parameterize(graph, None, rng))
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def deep_cnn(activation="relu", task=None, depth=30, channels=25):
    """The MNIST-1D CNN made ``depth`` convolutions deep (kernel 5, stride 2 at three evenly
    spaced layers, stride 1 elsewhere), without normalization or skip connections."""
    from keras_actfn.backend import keras
    from keras_actfn.layers.custom import activation_layer

    length = int(task.input_shape[0]) if task is not None else 40
    strided = {0, depth // 3, (2 * depth) // 3}
    inputs = keras.Input((length, 1))
    x = inputs
    for i in range(depth):
        x = keras.layers.Conv1D(channels, 5, strides=2 if i in strided else 1,
                                padding="same")(x)
        x = activation_layer(activation)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"mnist1d_cnn_deep{depth}")


class ArmEvaluator:
    """``evaluator(text, seed=...)``: the ``quick`` recipe under one initialization arm.
    Picklable (process-pool workers); :meth:`config` is what the store checks on resume."""

    def __init__(self, arm, recipe="quick", model=None, model_label=None, **overrides):
        if arm not in ARMS:
            raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
        self.arm, self.recipe, self.model = arm, recipe, model
        self.model_label = model_label or (model if isinstance(model, str) else None)
        self.overrides = dict(overrides)

    def __call__(self, text, seed=0):
        from keras_actfn.train import evaluate_activation

        extra = {}
        if self.arm == "autoinit++":
            extra["autoinit_options"] = {"center_activations": True}
        return evaluate_activation(text, task="mnist1d", model=self.model, recipe=self.recipe,
                                   seed=seed, autoinit=self.arm != "default", **extra,
                                   **self.overrides)

    def config(self):
        simple = (type(None), bool, int, float, str)
        return {"kind": "autoinit-evidence", "arm": self.arm, "recipe": self.recipe,
                "model": self.model_label,
                "overrides": {k: v if isinstance(v, simple) else repr(v)
                              for k, v in sorted(self.overrides.items())}}


# ------------------------------------------------------------------------------ running
def _run_list(store, functions, evaluator, pool, run_name, runs=1, seed=0):
    from keras_actfn.search.engine.driver import run_search
    from keras_actfn.search.pangaea import Rerank

    return run_search(Rerank(functions, runs=runs, seed=seed), evaluator, store,
                      executor=pool, seed=seed, run_name=run_name)


def run_all(args, functions, settings):
    from keras_actfn.search.engine import make_executor
    from keras_actfn.search.engine.store import Store

    os.makedirs(os.path.dirname(os.path.abspath(args.store)), exist_ok=True)
    start = time.perf_counter()
    overrides = settings["overrides"]
    with Store(args.store) as store, make_executor("local", args.workers) as pool:
        def step(label, *a, **k):
            summary = _run_list(store, *a, pool, **k)
            c = summary.counts
            print(f"[{time.perf_counter() - start:7.0f} s] {label}: {c.get('finished', 0)} "
                  f"finished, {c.get('failed', 0)} failed", flush=True)

        for arm in ("default", "autoinit"):
            step(f"ReLU baseline, {arm}", [RELU],
                 ArmEvaluator(arm, **overrides), run_name=f"relu/{arm}",
                 runs=settings["baseline_seeds"], seed=100)
        depth, peak = settings["deep_depth"], settings["deep_lr"]
        deep = functools.partial(deep_cnn, depth=depth)
        for arm in ("default", "autoinit"):
            step(f"deep CNN ({depth} conv, peak lr {peak:g}), ReLU, {arm}", [RELU],
                 ArmEvaluator(arm, model=deep, model_label=f"mnist1d_cnn_deep{depth}",
                              **_deep_overrides(overrides, peak)),
                 run_name=f"deep{depth}-lr{peak:g}/{arm}", runs=settings["deep_seeds"],
                 seed=200)
        for c in range(0, len(functions), CHUNK):
            for arm in ARMS:
                step(f"functions {c + 1}-{min(c + CHUNK, len(functions))}, {arm}",
                     functions[c:c + CHUNK], ArmEvaluator(arm, **overrides),
                     run_name=f"{arm}/{c // CHUNK:03d}", seed=0)


def _deep_overrides(overrides, peak):
    """The quick recipe's schedule (linear warm-up over 2 of 15 epochs, linear decay) with
    peak learning rate ``peak``: at the quick recipe's 0.04 the 30-layer plain ReLU CNN
    collapses to chance under AutoInit too (SGD, Nesterov 0.9), as a deep unnormalized
    network does with too large a step; a smaller step is the usual setting for one."""
    from keras_actfn.train.recipes import get_recipe
    from keras_actfn.train.schedules import LinearWarmupDecay

    epochs = overrides.get("epochs", get_recipe("quick").epochs)
    return {**overrides, "schedule": LinearWarmupDecay(
        peak=peak, warmup_epochs=2 * epochs / 15, total_epochs=epochs)}


# ----------------------------------------------------------------------------- analysis
def _accuracy(record, chance):
    """Validation accuracy for the distribution; a failure without one counts as chance."""
    acc = record.validation_accuracy if record is not None else None
    if acc is None or not math.isfinite(acc):
        return chance
    return float(acc)


def collect(store_path, functions):
    """``{arm: {text: record}}``, ``{"relu/default": [records]...}`` from the store."""
    from keras_actfn.expr import parse
    from keras_actfn.search.engine.store import Store

    wanted = {str(parse(f)) for f in functions}
    per_arm = {arm: {} for arm in ARMS}
    extra = {}
    with Store(store_path, readonly=True) as store:
        for run in store.runs():
            name = run["name"]
            store.select_run(name)
            results = [ev for ev in store.results() if ev.record is not None]
            arm = name.split("/")[0]
            if arm in per_arm:
                for ev in results:
                    if ev.text in wanted:
                        per_arm[arm][ev.text] = ev.record
            else:
                extra[name] = [ev.record for ev in results]
    return per_arm, extra


def paired_statistics(acc_a, acc_b, ok_a, ok_b):
    """Compare arm A with arm B over the same functions (arrays aligned by function).

    Returns Wilcoxon signed-rank (two-sided) over the functions that train under both, the
    exact McNemar test (two-sided binomial on the discordant pairs) of trains/fails, and the
    one-sided Mann-Whitney U (A stochastically larger) and two-sample Kolmogorov-Smirnov D
    over all functions (failures at chance), as §5.11-5.12 use them."""
    from scipy import stats

    acc_a, acc_b = np.asarray(acc_a, float), np.asarray(acc_b, float)
    ok_a, ok_b = np.asarray(ok_a, bool), np.asarray(ok_b, bool)
    both = ok_a & ok_b
    diff = acc_a[both] - acc_b[both]
    out = {"n": int(acc_a.size), "both_train": int(both.sum()),
           "a_only_trains": int((ok_a & ~ok_b).sum()), "b_only_trains": int((~ok_a & ok_b).sum()),
           "a_better": int((diff > 0).sum()), "b_better": int((diff < 0).sum()),
           "ties": int((diff == 0).sum()),
           "median_difference": float(np.median(diff)) if diff.size else math.nan,
           "mean_difference": float(np.mean(diff)) if diff.size else math.nan}
    if np.count_nonzero(diff) >= 1:
        w = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
        out.update(wilcoxon_statistic=float(w.statistic), wilcoxon_p=float(w.pvalue))
    else:
        out.update(wilcoxon_statistic=math.nan, wilcoxon_p=math.nan)
    discordant = out["a_only_trains"] + out["b_only_trains"]
    out["mcnemar_p"] = float(stats.binomtest(out["a_only_trains"], discordant, 0.5).pvalue) \
        if discordant else 1.0
    if acc_a.size:
        mw = stats.mannwhitneyu(acc_a, acc_b, alternative="greater")
        ks = stats.ks_2samp(acc_a, acc_b)
        out.update(mannwhitney_u=float(mw.statistic), mannwhitney_p_greater=float(mw.pvalue),
                   ks_d=float(ks.statistic), ks_p=float(ks.pvalue))
    return out


def arm_statistics(acc, ok, relu_accuracy):
    acc, ok = np.asarray(acc, float), np.asarray(ok, bool)
    trained = acc[ok]
    q = np.quantile(trained, [0.1, 0.25, 0.5, 0.75, 0.9]).tolist() if trained.size else []
    return {"n": int(acc.size), "trained": int(ok.sum()), "failed": int((~ok).sum()),
            "fraction_trained": float(ok.mean()) if acc.size else math.nan,
            "accuracy_mean_trained": float(trained.mean()) if trained.size else math.nan,
            "accuracy_quantiles_trained_10_25_50_75_90": q,
            "accuracy_max": float(acc.max()) if acc.size else math.nan,
            "beats_relu_default": int(((acc > relu_accuracy) & ok).sum())
            if relu_accuracy is not None else None}


def analyze(per_arm, extra, functions, chance=0.1):
    """Every statistic of ``results.json`` from the collected records (only functions with
    a result in all three arms count)."""
    from keras_actfn.expr import parse

    texts = [t for t in (str(parse(f)) for f in functions)
             if all(t in per_arm[arm] for arm in ARMS)]
    acc = {arm: np.array([_accuracy(per_arm[arm][t], chance) for t in texts]) for arm in ARMS}
    ok = {arm: np.array([per_arm[arm][t].ok for t in texts], bool) for arm in ARMS}
    reasons = {arm: _count(per_arm[arm][t].reason for t in texts if not per_arm[arm][t].ok)
               for arm in ARMS}
    autoinit_failed = {arm: sum(1 for t in texts if str(per_arm[arm][t].autoinit)
                                .startswith("failed")) for arm in ARMS}
    relu = {}
    for key, records in sorted(extra.items()):
        values = [_accuracy(r, chance) for r in records]
        relu[key] = {"runs": len(records), "trained": sum(r.ok for r in records),
                     "validation_accuracy": values,
                     "mean": float(np.mean(values)) if values else math.nan,
                     "reasons": _count(r.reason for r in records if not r.ok),
                     "autoinit": sorted({str(r.autoinit) for r in records})}
    relu_default = relu.get("relu/default", {}).get("mean")
    return {
        "functions_complete": len(texts), "functions_drawn": len(functions),
        "chance": chance,
        "arms": {arm: {**arm_statistics(acc[arm], ok[arm], relu_default),
                       "failure_reasons": reasons[arm],
                       "autoinit_failed_fell_back_to_default": autoinit_failed[arm]}
                 for arm in ARMS},
        "pairs": {f"{a} vs {b}": paired_statistics(acc[a], acc[b], ok[a], ok[b])
                  for a, b in PAIRS},
        "baselines": relu,
        "_per_function": {"texts": texts, "accuracy": {a: acc[a].tolist() for a in ARMS},
                          "ok": {a: ok[a].tolist() for a in ARMS},
                          "reason": {a: [per_arm[a][t].reason for t in texts] for a in ARMS}},
    }


def _count(items):
    out = {}
    for item in items:
        out[str(item)] = out.get(str(item), 0) + 1
    return dict(sorted(out.items()))


def write_outputs(result, out, meta):
    os.makedirs(out, exist_ok=True)
    per = result.pop("_per_function")
    with open(os.path.join(out, "functions.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["function"] + [f"{a}_{k}" for a in ARMS
                                        for k in ("trains", "reason", "validation_accuracy")])
        for i, text in enumerate(per["texts"]):
            row = [text]
            for a in ARMS:
                row += [int(per["ok"][a][i]), per["reason"][a][i] or "",
                        f"{per['accuracy'][a][i]:.6f}"]
            writer.writerow(row)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({**meta, **result}, f, indent=1, default=_json_default)
    plot_figure(per, result, os.path.join(out, "figure_5_9.png"))
    result["_per_function"] = per


def _git_commit():
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, cwd=os.path.dirname(__file__)
                              ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value).__name__)


def plot_figure(per, result, path):
    """Figure 5.9 at this scale: (left, middle) accuracy under AutoInit / AutoInit++ vs the
    default init, one point per function; (right) the three accuracy distributions."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    base = np.array(per["accuracy"]["default"])
    relu = result["baselines"].get("relu/default", {}).get("mean")
    for k, arm in enumerate(("autoinit", "autoinit++")):
        ax = fig.add_subplot(1, 3, k + 1)
        other = np.array(per["accuracy"][arm])
        both = np.array(per["ok"]["default"], bool) & np.array(per["ok"][arm], bool)
        color = "tab:blue" if k == 0 else "tab:green"
        ax.scatter(base[both], other[both], s=10, alpha=0.6, color=color,
                   label="trains under both")
        ax.scatter(base[~both], other[~both], s=14, alpha=0.6, color=color, marker="x",
                   label="fails under one or both (at its accuracy, or chance)")
        ax.plot([0, 1], [0, 1], color="gray", linewidth=0.8)
        if relu is not None and math.isfinite(relu):
            ax.axvline(relu, color="tab:red", linewidth=0.7, linestyle=":")
            ax.axhline(relu, color="tab:red", linewidth=0.7, linestyle=":",
                       label="ReLU, default init")
        ax.legend(loc="lower right", fontsize="x-small")
        pair = result["pairs"][f"{arm} vs default"]
        ax.set_title(f"{arm} vs default (n={len(base)}; both train {pair['both_train']},\n"
                     f"Wilcoxon p={pair['wilcoxon_p']:.2g})", fontsize=9)
        ax.set_xlabel("validation accuracy, default init")
        ax.set_ylabel(f"validation accuracy, {arm}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    ax = fig.add_subplot(1, 3, 3)
    bins = np.linspace(0, 1, 21)
    for arm, color in zip(ARMS, ("tab:gray", "tab:blue", "tab:green")):
        stats_ = result["arms"][arm]
        ax.hist(per["accuracy"][arm], bins=bins, histtype="step", linewidth=1.5, color=color,
                label=f"{arm}: {stats_['trained']}/{stats_['n']} train")
    ax.set_xlabel("validation accuracy (failures at chance)")
    ax.set_ylabel("functions")
    ax.legend(fontsize="small")
    ax.set_title("distribution (Fig. 5.9a)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def print_summary(result):
    print(f"\nfunctions with all three arms: {result['functions_complete']} of "
          f"{result['functions_drawn']}")
    for arm, s in result["arms"].items():
        q = s["accuracy_quantiles_trained_10_25_50_75_90"]
        med = f"{q[2]:.4f}" if q else "-"
        print(f"  {arm:<11} trained {s['trained']:>4}/{s['n']:<4} "
              f"({s['fraction_trained']:.3f})  median acc (trained) {med}  "
              f"beats ReLU {s['beats_relu_default']}")
    for name, p in result["pairs"].items():
        print(f"  {name:<24} both train {p['both_train']:>4}, better {p['a_better']}/"
              f"worse {p['b_better']}, median diff {p['median_difference']:+.4f}, "
              f"Wilcoxon p {p['wilcoxon_p']:.3g}, McNemar p {p['mcnemar_p']:.3g}, "
              f"MWU p {p.get('mannwhitney_p_greater', math.nan):.3g}")
    for name, b in result["baselines"].items():
        print(f"  {name:<16} trained {b['trained']}/{b['runs']}, mean acc {b['mean']:.4f}")


# --------------------------------------------------------------------------------- main
def settings_for(args):
    if args.tiny:
        return {"baseline_seeds": 1, "deep_seeds": 1, "deep_depth": 4, "deep_lr": 0.01,
                "overrides": {"threshold": None, "epochs": 1, "subset": 256}}
    return {"baseline_seeds": args.baseline_seeds, "deep_seeds": args.deep_seeds,
            "deep_depth": args.deep_depth, "deep_lr": args.deep_lr,
            "overrides": {"threshold": None}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="random functions (default 200)")
    p.add_argument("--workers", type=int, default=1, help="training processes")
    p.add_argument("--out", default="docs/evidence/autoinit_mnist1d")
    p.add_argument("--store", default="runs/evidence_autoinit_mnist1d.db")
    p.add_argument("--seed", type=int, default=0, help="seed of the function draw")
    p.add_argument("--baseline-seeds", type=int, default=3)
    p.add_argument("--deep-depth", type=int, default=20)
    p.add_argument("--deep-lr", type=float, default=0.01,
                   help="peak learning rate of the deep network (default 0.01)")
    p.add_argument("--deep-seeds", type=int, default=3)
    p.add_argument("--tiny", action="store_true",
                   help="smoke test: 2 functions, 1 epoch on 256 examples, a 4-layer 'deep' net")
    p.add_argument("--report-only", action="store_true",
                   help="write the results of what the store holds; train nothing")
    args = p.parse_args(argv)
    n = 2 if args.tiny else args.n
    if n < 1:
        p.error("--n must be at least 1")
    functions = draw_functions(n, args.seed)
    settings = settings_for(args)
    started = time.time()
    if not args.report_only:
        run_all(args, functions, settings)
    per_arm, extra = collect(args.store, functions)
    result = analyze(per_arm, extra, functions)
    meta = {"command": "python scripts/evidence_autoinit_mnist1d.py " + " ".join(
                argv if argv is not None else sys.argv[1:]),
            "settings": settings, "draw_seed": args.seed,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                       f"{platform.system()}",
            "git_commit": _git_commit(),
            "wall_s_this_invocation": round(time.time() - started, 1),
            "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    write_outputs(result, args.out, meta)
    print_summary(result)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
