"""scripts/evidence_autoinit_mnist1d.py and scripts/evidence_cafe_mnist1d.py: the statistics
and the reading of the journal, checked against independent references (exact enumeration
of the Wilcoxon and binomial distributions, pair counting for Mann-Whitney U, the EDF
definition of the KS statistic, the closed forms of Welch's t and its degrees of freedom)
on stores filled with known records -- no training, so each test takes well under a second.
The scripts' training path is evaluate_activation + run_search, tested in
test_train_evaluate.py and test_search_driver.py; ``--tiny`` runs them end to end
(test_tiny_runs_end_to_end, marked slow)."""

import csv
import itertools
import json
import math
import os
import sys

import numpy as np
import pytest
from scipy import stats

from keras_actfn.expr import parse
from keras_actfn.search.engine.base import Candidate
from keras_actfn.search.engine.store import Store
from keras_actfn.train.record import EvaluationRecord

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import evidence_autoinit_mnist1d as ai  # noqa: E402
import evidence_cafe_mnist1d as cafe  # noqa: E402


def _record(text, acc=None, reason=None, loss=None, test=None, autoinit="applied"):
    return EvaluationRecord(fn=text, task="mnist1d", model="mnist1d_cnn", recipe="quick",
                            seed=0, status="failed" if reason else "ok", reason=reason,
                            validation_accuracy=acc, validation_loss=loss,
                            test_accuracy=test, autoinit=autoinit)


def _fill(path, run, items, generation=0):
    with Store(path) as store:
        store.open_run({"test": run}, name=run)
        for text, record in items:
            eval_id = store.add_pending(Candidate(text, generation=generation), None, seed=0)
            store.complete(eval_id, record, None)


# ------------------------------------------------------------------- reference statistics
def _wilcoxon_exact(diff):
    """W+ (sum of ranks of positive differences) and the exact two-sided p by enumerating
    all 2^n sign assignments (no ties, no zeros)."""
    order = np.argsort(np.abs(diff))
    ranks = np.empty(len(diff))
    ranks[order] = np.arange(1, len(diff) + 1)
    w_plus = ranks[diff > 0].sum()
    total = ranks.sum()
    sums = [sum(r for r, s in zip(ranks, signs) if s)
            for signs in itertools.product((0, 1), repeat=len(diff))]
    low = min(w_plus, total - w_plus)
    p = min(1.0, 2 * np.mean([s <= low + 1e-9 for s in sums]))
    return w_plus, total - w_plus, p


def _binomial_two_sided(k, n):
    probs = [math.comb(n, i) / 2 ** n for i in range(n + 1)]
    return min(1.0, sum(p for p in probs if p <= probs[k] * (1 + 1e-7)))


def test_paired_statistics_match_independent_references():
    rng = np.random.default_rng(3)
    n = 14
    b = rng.uniform(0.3, 0.9, n)
    a = b + rng.normal(0.03, 0.05, n)
    ok_a = np.ones(n, bool)
    ok_b = np.ones(n, bool)
    ok_a[[0, 1]] = False        # fails under A only
    ok_b[[2, 3, 4, 5, 6]] = False  # fails under B only
    a[~ok_a], b[~ok_b] = 0.1, 0.1
    out = ai.paired_statistics(a, b, ok_a, ok_b)

    both = ok_a & ok_b
    diff = a[both] - b[both]
    w_plus, w_minus, p_exact = _wilcoxon_exact(diff)
    assert out["both_train"] == both.sum() == 7
    assert out["a_only_trains"] == 5 and out["b_only_trains"] == 2
    assert out["a_better"] == (diff > 0).sum() and out["b_better"] == (diff < 0).sum()
    assert out["wilcoxon_statistic"] == pytest.approx(min(w_plus, w_minus))
    assert out["wilcoxon_p"] == pytest.approx(p_exact, rel=1e-9)
    assert out["median_difference"] == pytest.approx(np.median(diff))
    # exact McNemar: 5 vs 2 discordant pairs under Binomial(7, 1/2)
    assert out["mcnemar_p"] == pytest.approx(_binomial_two_sided(5, 7)) == \
        pytest.approx(2 * (1 + 7 + 21) / 128)
    # Mann-Whitney U of A over B by counting pairs; one-sided p vs scipy's exact method
    u = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    assert out["mannwhitney_u"] == pytest.approx(u)
    # KS D from the empirical distribution functions
    grid = np.concatenate([a, b])
    d = max(abs((a <= g).mean() - (b <= g).mean()) for g in grid)
    assert out["ks_d"] == pytest.approx(d)


def test_arm_statistics_counts_and_quantiles():
    acc = np.array([0.1, 0.5, 0.9, 0.7, 0.1, 0.85])
    ok = np.array([False, True, True, True, False, True])
    s = ai.arm_statistics(acc, ok, relu_accuracy=0.8)
    assert (s["n"], s["trained"], s["failed"]) == (6, 4, 2)
    assert s["fraction_trained"] == pytest.approx(4 / 6)
    assert s["accuracy_mean_trained"] == pytest.approx((0.5 + 0.9 + 0.7 + 0.85) / 4)
    assert s["accuracy_quantiles_trained_10_25_50_75_90"][2] == pytest.approx(0.775)
    assert s["beats_relu_default"] == 2  # 0.9 and 0.85


def test_draw_functions_follows_section_5_11():
    functions = ai.draw_functions(60, seed=1)
    assert functions == ai.draw_functions(60, seed=1) and len(set(functions)) == 60
    assert functions != ai.draw_functions(60, seed=2)
    k = [len(parse(f).params) for f in functions]
    assert set(k) <= {0, 1, 2, 3} and len(set(k)) == 4  # 0-3 parameters, uniform choice
    assert all(str(parse(f)) == f for f in functions)


# ------------------------------------------------------------- the AutoInit evidence script
@pytest.fixture(scope="module")
def autoinit_store(tmp_path_factory):
    """Three functions under three arms (one missing under autoinit++), and baselines."""
    path = str(tmp_path_factory.mktemp("ai") / "ai.db")
    f = ai.draw_functions(4, seed=5)
    table = {  # function -> (default, autoinit, autoinit++) as (accuracy, reason)
        f[0]: ((0.6, None), (0.7, None), (0.8, None)),
        f[1]: ((None, "nan_loss"), (0.5, None), (0.52, None)),
        f[2]: ((0.4, None), (0.1, "below_threshold"), (0.45, None)),
        f[3]: ((0.3, None), (0.35, None), None),
    }
    for k, arm in enumerate(ai.ARMS):
        items = [(t, _record(t, *row[k])) for t, row in table.items() if row[k] is not None]
        _fill(path, f"{arm}/000", items)
    _fill(path, "relu/default", [("relu(x)", _record("relu(x)", a, autoinit="off"))
                                 for a in (0.5, 0.6)])
    _fill(path, "deep30/default", [("relu(x)", _record("relu(x)", 0.1, "below_threshold",
                                                       autoinit="off"))])
    _fill(path, "deep30/autoinit", [("relu(x)", _record("relu(x)", 0.7))])
    return path, f


def test_analyze_reads_the_journal(autoinit_store, tmp_path):
    path, functions = autoinit_store
    per_arm, extra = ai.collect(path, functions)
    result = ai.analyze(per_arm, extra, functions)
    assert result["functions_complete"] == 3 and result["functions_drawn"] == 4
    arms = result["arms"]
    assert [arms[a]["trained"] for a in ai.ARMS] == [2, 2, 3]
    assert arms["default"]["failure_reasons"] == {"nan_loss": 1}
    assert arms["autoinit"]["failure_reasons"] == {"below_threshold": 1}
    # the failure without an accuracy counts at chance in the distribution
    assert result["_per_function"]["accuracy"]["default"] == [0.6, 0.1, 0.4]
    # ReLU under default init: mean 0.55, beaten by 0.6 (default), 0.7 and 0.8
    assert arms["default"]["beats_relu_default"] == 1
    assert arms["autoinit++"]["beats_relu_default"] == 1
    pair = result["pairs"]["autoinit++ vs default"]
    assert (pair["both_train"], pair["a_only_trains"], pair["b_only_trains"]) == (2, 1, 0)
    assert pair["median_difference"] == pytest.approx((0.2 + 0.05) / 2)
    base = result["baselines"]
    assert base["relu/default"]["mean"] == pytest.approx(0.55)
    assert base["deep30/default"]["trained"] == 0 and base["deep30/autoinit"]["trained"] == 1

    ai.write_outputs(result, str(tmp_path), {"command": "test"})
    with open(tmp_path / "functions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["function"] for r in rows] == functions[:3]
    assert rows[1]["default_trains"] == "0" and rows[1]["default_reason"] == "nan_loss"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["arms"]["autoinit++"]["trained"] == 3 and saved["command"] == "test"
    assert (tmp_path / "figure_5_9.png").stat().st_size > 10_000


# ----------------------------------------------------------------- the CAFE evidence script
def test_welch_matches_closed_form():
    a = [0.91, 0.93, 0.92, 0.95, 0.90]
    b = [0.86, 0.88, 0.83, 0.87, 0.85, 0.89]
    t, p, dof = cafe.welch(a, b)
    va, vb = np.var(a, ddof=1) / 5, np.var(b, ddof=1) / 6
    t_ref = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    dof_ref = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 5)
    assert t == pytest.approx(t_ref) and dof == pytest.approx(dof_ref)
    assert p == pytest.approx(2 * stats.t.sf(abs(t_ref), dof_ref))
    assert all(math.isnan(v) for v in cafe.welch([0.9], b))


def test_generations_and_top_functions():
    assert cafe.generation_sizes(10, 2, 4) == [10, 8, 8, 8]
    values = [0.2, np.nan, 0.5, 0.4, np.nan, np.nan, 0.9]
    assert cafe.per_generation_best(values, [3, 3, 3]) == [0.5, 0.4, 0.9]
    best = cafe.per_generation_best([np.nan, np.nan], [2, 2])
    assert len(best) == 1 and math.isnan(best[0])


@pytest.fixture(scope="module")
def cafe_store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cafe") / "cafe.db")
    evo = [("x * sigmoid(x)", _record("x * sigmoid(x)", 0.85)),
           ("tanh(x)", _record("tanh(x)", 0.80)),
           ("exp(x)", _record("exp(x)", None, "overflow")),
           ("relu(x)", _record("relu(x)", 0.90)),
           ("x * tanh(x)", _record("x * tanh(x)", 0.88))]
    rnd = [("sin(x)", _record("sin(x)", 0.70)), ("cos(x)", _record("cos(x)", 0.30)),
           ("abs(x)", _record("abs(x)", 0.75)), ("x", _record("x", 0.33)),
           ("erf(x)", _record("erf(x)", 0.72))]
    _fill(path, "evolution", evo)
    _fill(path, "random", rnd)
    final = {"relu(x)": [0.86, 0.88, 0.87], "x * tanh(x)": [0.90, 0.92, 0.91],
             "abs(x)": [0.80, 0.84, 0.82]}
    _fill(path, "final", [(t, _record(t, 0.5, test=v)) for t, vs in final.items() for v in vs])
    return path, final


def test_cafe_analyze(cafe_store):
    path, final = cafe_store
    settings = {"population": 3, "elite": 1, "generations": 3, "top": 2}
    result, rows = cafe.analyze(path, settings)
    evo, rnd = result["searches"]["evolution"], result["searches"]["random"]
    assert evo["candidates"] == 5 and evo["failed"] == 1 and evo["relu_found"]
    assert evo["best_per_generation"] == [0.85, 0.90]  # blocks of 3, then 2 (sizes 3, 2, 2)
    assert evo["top"] == ["x * tanh(x)", "x * sigmoid(x)"]  # ReLU is the baseline, not a find
    assert rnd["top"] == ["abs(x)", "erf(x)"] and rnd["best_validation_accuracy"] == 0.75
    row = result["final"]["x * tanh(x)"]
    assert row["from"] == "evolution" and row["trained"] == 3
    t, p, _ = cafe.welch(final["x * tanh(x)"], final["relu(x)"])
    assert (row["welch_t_vs_relu"], row["p_value"]) == (pytest.approx(t), pytest.approx(p))
    assert result["final"]["abs(x)"]["from"] == "random"
    assert result["final"]["abs(x)"]["mean"] == pytest.approx(0.82)
    assert len(rows) == 10


def test_cafe_page_prints_simplified_functions_and_whole_generations(tmp_path, monkeypatch):
    assert cafe.readable("zero(identity(x) + sqrt(x)) + identity(tanh(x))") == "tanh(x)"
    assert cafe.readable("not a function (") == "not a function ("  # kept as stored
    result = {"searches": {"evolution": {"best_per_generation": [0.5, 0.6, 0.7]}},
              "final": {}}
    path = str(tmp_path / "p.png")
    cafe.plot_progress(result, path)
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # the x ticks are whole generations
    from matplotlib.ticker import MaxNLocator

    import matplotlib.figure
    seen = {}
    original = matplotlib.figure.Figure.savefig

    def capture(fig, *args, **kwargs):
        ticks = fig.axes[0].get_xticks()
        seen["ticks"] = [t for t in ticks if 1 <= t <= 3]
        seen["locator"] = fig.axes[0].xaxis.get_major_locator()
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    cafe.plot_progress(result, path)
    assert isinstance(seen["locator"], MaxNLocator)
    assert seen["ticks"] and all(float(t).is_integer() for t in seen["ticks"])


@pytest.mark.slow
@pytest.mark.parametrize("script", ["autoinit", "cafe"])
def test_tiny_runs_end_to_end(script, tmp_path):
    module = ai if script == "autoinit" else cafe
    store, out = str(tmp_path / "s.db"), str(tmp_path / "out")
    assert module.main(["--tiny", "--store", store, "--out", out]) == 0
    saved = json.loads(open(os.path.join(out, "results.json")).read())
    if script == "autoinit":
        assert saved["functions_complete"] == 2
        assert sum(saved["arms"][a]["n"] for a in ai.ARMS) == 6
    else:
        assert saved["searches"]["evolution"]["candidates"] == 5
        assert saved["searches"]["random"]["candidates"] == 5
