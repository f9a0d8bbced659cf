"""``keras-actfn bench build|replay|plot`` on a synthetic table and a tiny real build."""

import csv
import gzip
import json
import math

import numpy as np
import pytest

from keras_actfn.cli import main
from keras_actfn.search.aquasurf.benchmark import (Benchmark, cdf_vectors, load_benchmark,
                                                   write_benchmark)

LAYERS = [[4, 10], [5, 20]]  # "Fisher Layer Sizes": [bins, weights] per layer


def _layer_cdf(center, bins):
    """A cumulative distribution over ``bins`` bins, centred near ``center`` in [0, 1]."""
    edges = np.linspace(0, 1, bins + 1)[1:]
    cdf = 1 / (1 + np.exp(-(edges - center) * 8))
    return cdf / cdf[-1]


def synthetic_table(n_side=14, invalid_best=True, invalid_every=9):
    """``a*x + b*tanh(x)`` rows (and ReLU): accuracy a smooth bump in (a, b); FIM CDFs that
    move with a and b; every ``invalid_every``-th row without a FIM; the best row without
    a FIM when ``invalid_best`` (the regression searches cannot pick it)."""
    grid = np.linspace(-1.5, 1.5, n_side)
    params = [(a, b) for a in grid for b in grid]
    texts = [f"{a:.3f} * x + {b:.3f} * tanh(x)" for a, b in params] + ["relu(x)"]
    params.append((0.5, 0.0))
    rows = {}
    for i, (text, (a, b)) in enumerate(zip(texts, params)):
        acc = 0.1 + 0.8 * math.exp(-((a - 0.6) ** 2 + (b + 0.4) ** 2))
        cdf = np.concatenate([_layer_cdf((a + 1.5) / 3, 4), _layer_cdf((b + 1.5) / 3, 5)])
        rows[text] = {"Validation Accuracy": round(acc, 6), "Status": "ok",
                      "Equivalent Activation Functions": [text],
                      "Fisher log eigenvalue CDF": [round(float(v), 8) for v in cdf],
                      "Fisher Layer Sizes": LAYERS}
        if i % invalid_every == 5:
            rows[text]["Fisher log eigenvalue CDF"] = None
    # one failed row (no accuracy): grey in the plots, never a "top" function
    rows[texts[3]].update({"Validation Accuracy": None, "Status": "failed"})
    if invalid_best:
        best = max(texts, key=lambda t: rows[t]["Validation Accuracy"] or -1)
        rows[best]["Fisher log eigenvalue CDF"] = None
    return Benchmark(texts, rows)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "table.json.gz"
    bench = synthetic_table()
    write_benchmark(bench, path)
    return path, bench


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _exact_random_reach(n, k, t):
    """P(a top row is among the first t evaluations) for the replayed random search:
    evaluation 1 is ReLU (not a top row), then t - 1 draws without replacement from the
    other n - 1 rows, k of them top rows."""
    if t < 1:
        return 0.0
    miss = math.comb(n - 1 - k, t - 1) / math.comb(n - 1, t - 1)
    return 1.0 - miss


def test_random_replay_matches_sampling_without_replacement(table, tmp_path, capsys):
    path, bench = table
    n = len(bench)
    values = bench.values()
    finite = np.sort(values[np.isfinite(values)])[::-1]
    k = math.ceil(0.01 * finite.size)
    assert k == 2 and finite[k - 1] > finite[k]  # two distinct top rows, no tie
    out = tmp_path / "random"
    trials, budget = 400, 100
    assert main(["bench", "replay", str(path), "--methods", "random", "--trials", str(trials),
                 "--budget", str(budget), "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["top_count"] == k
    assert summary["top_threshold"] == pytest.approx(finite[k - 1])
    got = summary["methods"]["random"]
    # failed rows (no accuracy) are still rows the random search can draw
    p_reach = _exact_random_reach(n, k, budget)
    assert abs(got["fraction_reached"] - p_reach) < 4 * math.sqrt(p_reach * (1 - p_reach)
                                                                  / trials)
    # conditional mean of the evaluations to a top row, given it is reached within budget
    pmf = [_exact_random_reach(n, k, t) - _exact_random_reach(n, k, t - 1)
           for t in range(1, budget + 1)]
    cond_mean = sum(t * p for t, p in zip(range(1, budget + 1), pmf)) / p_reach
    cond_sd = math.sqrt(sum((t - cond_mean) ** 2 * p for t, p in
                            zip(range(1, budget + 1), pmf)) / p_reach)
    hits = got["fraction_reached"] * trials
    assert abs(got["mean_to_top_reached"] - cond_mean) < 4 * cond_sd / math.sqrt(hits)
    # median: the first t where the exact CDF passes 1/2 (if within budget)
    exact_median = next((t for t in range(1, budget + 1)
                         if _exact_random_reach(n, k, t) >= 0.5), None)
    if exact_median is None:
        assert got["median_to_top"] is None
    else:
        assert abs(got["median_to_top"] - exact_median) <= 6
    # the CSV: one row per evaluation count, best-so-far mean nondecreasing, CI around it
    rows = _read_csv(out / "replay.csv")
    assert [int(r["evaluations"]) for r in rows] == list(range(1, budget + 1))
    mean = np.array([float(r["mean"]) for r in rows])
    assert np.all(np.diff(mean) >= -1e-12)
    assert all(float(r["lower"]) <= float(r["mean"]) <= float(r["upper"]) for r in rows)
    relu = bench.rows["relu(x)"]["Validation Accuracy"]
    assert mean[0] == pytest.approx(relu)  # every trial starts with ReLU
    assert summary["relu"] == pytest.approx(relu)
    # printed table: the checkpoints within the budget
    line = next(l for l in printed.splitlines() if l.startswith("random"))
    cells = line.split()
    assert float(cells[1]) == pytest.approx(mean[9], abs=1e-4)
    assert float(cells[2]) == pytest.approx(mean[24], abs=1e-4)
    assert float(cells[3]) == pytest.approx(mean[49], abs=1e-4)
    assert float(cells[4]) == pytest.approx(mean[99], abs=1e-4)
    assert cells[5] == f"{got['median_to_top']:g}"
    assert (out / "replay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_regression_replay_uses_valid_fim_rows_only(table, tmp_path, capsys):
    path, bench = table
    out = tmp_path / "knr"
    assert main(["bench", "replay", str(path), "--methods",
                 "knr-both,knr-fim,knr-outputs,svr-both,random", "--trials", "6",
                 "--budget", "30", "--out", str(out), "-q"]) == 0
    rows = _read_csv(out / "replay.csv")
    methods = ["knr-both", "knr-fim", "knr-outputs", "svr-both", "random"]
    assert [r["method"] for r in rows] == [m for m in methods for _ in range(30)]
    _, valid = cdf_vectors(bench)
    values = bench.values()
    best_valid = np.nanmax(values[valid])
    assert np.nanmax(values) > best_valid  # the table's best has no FIM
    summary = json.loads((out / "summary.json").read_text())["methods"]
    for method in methods[:-1]:
        curve = np.array([float(r["mean"]) for r in rows if r["method"] == method])
        assert curve.max() <= best_valid + 1e-12, method
        assert np.all(np.diff(curve) >= -1e-12)
        # the guided searches find better functions than ReLU on this smooth table
        assert curve[-1] > bench.rows["relu(x)"]["Validation Accuracy"]
        assert summary[method]["trials"] == 6 and summary[method]["budget"] == 30
    printed = capsys.readouterr().out
    line = next(l for l in printed.splitlines() if l.startswith("knr-both"))
    cells = line.split()
    assert float(cells[1]) == pytest.approx(
        float(rows[9]["mean"]), abs=1e-4)  # best@10 of knr-both (its CSV rows come first)
    assert float(cells[2]) == pytest.approx(float(rows[24]["mean"]), abs=1e-4)
    assert cells[3] == cells[4] == "-"  # no 50th or 100th evaluation in a budget of 30


def test_plot_writes_embedding_and_trace(table, tmp_path, capsys):
    path, bench = table
    out = tmp_path / "plots"
    assert main(["bench", "plot", str(path), "--out", str(out), "--features", "fim,outputs",
                 "--budget", "20"]) == 0
    printed = capsys.readouterr().out
    for name in ("embedding_fim.png", "embedding_outputs.png", "progress_knr-both.png",
                 "space_map_knr-both.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    best_line = next(l for l in printed.splitlines() if l.startswith("best found:"))
    value = float(best_line.split()[2])
    _, valid = cdf_vectors(bench)
    assert value <= np.nanmax(bench.values()[valid]) + 1e-9


def test_bad_input_exits_2(table, tmp_path, capsys):
    path, _ = table
    cases = [["bench", "replay", str(path), "--methods", "knn-both", "--out", str(tmp_path)],
             ["bench", "replay", str(path), "--methods", "knr-shape", "--out", str(tmp_path)],
             ["bench", "replay", str(tmp_path / "missing.json"), "--out", str(tmp_path)],
             ["bench", "replay", str(path), "--trials", "0", "--out", str(tmp_path)],
             ["bench", "replay", str(path), "--top", "1.5", "--out", str(tmp_path)],
             ["bench", "plot", str(path), "--features", "shape", "--out", str(tmp_path)],
             ["bench", "build", "--limit", "0", "--out", str(tmp_path / "b.json")],
             ["bench", "build", "--space", "no_such_space", "--out", str(tmp_path / "b.json")]]
    for argv in cases:
        assert main(argv) == 2, argv
        assert "error" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    assert main(["bench", "replay", str(broken), "--out", str(tmp_path)]) == 2
    assert "expected a JSON object" in capsys.readouterr().err


def test_replay_without_fim_needs_outputs_or_random(tmp_path, capsys):
    bench = synthetic_table(n_side=6, invalid_best=False)
    for name in bench.functions:
        bench.rows[name]["Fisher log eigenvalue CDF"] = None
    path = tmp_path / "nofim.json"
    write_benchmark(bench, path)
    assert main(["bench", "replay", str(path), "--methods", "knr-fim", "--trials", "2",
                 "--budget", "5", "--out", str(tmp_path / "o"), "-q"]) == 2
    assert "needs FIM data" in capsys.readouterr().err
    # outputs only: every row is a candidate (there is no FIM filter to apply)
    n = len(bench)
    assert main(["bench", "replay", str(path), "--methods", "knr-outputs,random", "--trials",
                 "3", "--budget", str(n + 10), "--out", str(tmp_path / "o"), "-q"]) == 0
    rows = _read_csv(tmp_path / "o" / "replay.csv")
    knr = [float(r["mean"]) for r in rows if r["method"] == "knr-outputs"]
    # the budget is cut to the candidates: all n rows, so every trial ends at the table's best
    assert len(knr) == n
    assert knr[-1] == pytest.approx(np.nanmax(bench.values()))


def test_build_limit_3_on_mnist1d(tmp_path, capsys):
    from keras_actfn.search.aquasurf.space import aquasurf_space, equivalence_classes
    from keras_actfn.search.engine.store import Store

    out = tmp_path / "bench.json.gz"
    store = tmp_path / "bench.db"
    assert main(["bench", "build", "--limit", "3", "--epochs", "1", "--store", str(store),
                 "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    with gzip.open(out, "rt") as handle:
        raw = json.load(handle)
    bench = load_benchmark(out)
    space = aquasurf_space("binary_unary_unary")
    labels = equivalence_classes(space)
    from keras_actfn.search.aquasurf.bench import relu_class

    reps = list(dict.fromkeys(int(v) for v in labels))[:3]
    relu = relu_class(space, labels)  # always kept: the replays start from ReLU
    if relu not in reps:
        reps = sorted(reps[:2] + [relu], key=lambda r: int(np.flatnonzero(labels == r)[0]))
    assert bench.functions == [space.text(r) for r in reps] == list(raw)
    for rep, name in zip(reps, bench.functions):
        row = bench.rows[name]
        members = sorted(space.text(i) for i in np.flatnonzero(labels == rep))
        assert sorted(row["Equivalent Activation Functions"]) == members
        assert row["Status"] in ("ok", "failed")
        acc = row["Validation Accuracy"]
        assert acc is None or 0.0 <= acc <= 1.0
        if row["Status"] == "ok":
            assert 0.0 <= row["Test Accuracy"] <= 1.0
        cdf = row["Fisher log eigenvalue CDF"]
        if cdf is not None:
            sizes = row["Fisher Layer Sizes"]
            assert sum(bins for bins, _ in sizes) == len(cdf)
            start = 0
            for bins, _ in sizes:  # each layer's CDF is nondecreasing and ends at 1
                block = np.array(cdf[start:start + bins])
                assert np.all(np.diff(block) >= -1e-9) and block[-1] == pytest.approx(1.0)
                start += bins
    with Store(str(store)) as journal:
        journal.select_run("benchmark")
        assert sum(1 for e in journal.evaluations() if e.is_finished) == 3
    assert "functions:   3" in printed
    # the documented chain: the smoke table feeds a replay (which starts from ReLU)
    assert main(["bench", "replay", str(out), "--methods", "random", "--trials", "2",
                 "--budget", "3", "--out", str(tmp_path / "replay"), "-q"]) == 0
    capsys.readouterr()
    # the same store with other settings: refused before anything is trained
    assert main(["bench", "build", "--limit", "2", "--epochs", "1", "--store", str(store),
                 "--out", str(tmp_path / "other.json"), "-q"]) == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "other.json").exists()


def test_coordinates_embed_only_valid_fim_rows(table):
    from keras_actfn.search.aquasurf.replay import benchmark_coordinates

    _, bench = table
    _, valid = cdf_vectors(bench)
    assert 0 < valid.sum() < len(bench)
    for feature in ("fim", "outputs"):
        coords, mask = benchmark_coordinates(bench, feature, seed=0)
        assert np.array_equal(mask, valid)
        assert np.isfinite(coords[valid]).all() and np.isnan(coords[~valid]).all()
    with pytest.raises(ValueError, match="no valid FIM"):
        benchmark_coordinates(bench, "fim", rows=np.ones(len(bench), dtype=bool))
    with pytest.raises(ValueError, match="unknown feature"):
        benchmark_coordinates(bench, "shape")


def test_threshold_and_summary_by_hand():
    from keras_actfn.search.aquasurf.benchmark import ReplayResult
    from keras_actfn.search.aquasurf.replay import evaluations_summary, top_fraction_threshold

    values = np.r_[np.arange(250) / 1000.0, np.nan, np.nan]  # 250 finite rows
    assert top_fraction_threshold(values) == (0.247, 3)       # ceil(2.5) = 3 best rows
    assert top_fraction_threshold(values, 0.004) == (0.249, 1)
    assert top_fraction_threshold([0.5, 0.9, 0.9, 0.1], 0.25) == (0.9, 1)
    with pytest.raises(ValueError, match="no finite"):
        top_fraction_threshold([np.nan])
    # four trials of five evaluations: reach 0.8 at 2, 4, never, 5
    best = np.array([[0.1, 0.8, 0.8, 0.9, 0.9],
                     [0.1, 0.2, 0.3, 0.85, 0.85],
                     [0.1, 0.1, 0.2, 0.2, 0.3],
                     [0.5, 0.5, 0.5, 0.5, 0.8]])
    mean = best.mean(axis=0)
    result = ReplayResult("knr", "KNR", np.arange(1, 6), mean, mean, mean, best, "acc")
    s = evaluations_summary(result, 0.8, checkpoints=(2, 5, 10))
    assert s["median_to_top"] == 4.5          # sorted 2, 4, 5, inf: (4 + 5) / 2
    assert s["fraction_reached"] == 0.75
    assert s["mean_to_top_reached"] == pytest.approx(11 / 3)
    assert s["mean_best"] == {2: pytest.approx(0.4), 5: pytest.approx(0.7125)}
    s = evaluations_summary(result, 0.86)     # only trial 1 reaches it: median undefined
    assert math.isnan(s["median_to_top"]) and s["fraction_reached"] == 0.25


def test_regression_replay_needs_relu_with_a_valid_fim(tmp_path, capsys):
    bench = synthetic_table(n_side=6, invalid_best=False)
    bench.rows["relu(x)"]["Fisher log eigenvalue CDF"] = None
    path = tmp_path / "t.json"
    write_benchmark(bench, path)
    assert main(["bench", "replay", str(path), "--methods", "knr-outputs", "--trials", "2",
                 "--budget", "5", "--out", str(tmp_path / "o"), "-q"]) == 2
    assert "ReLU's row 'relu(x)' has no valid FIM" in capsys.readouterr().err
    # random search does not use the filter: it still runs
    assert main(["bench", "replay", str(path), "--methods", "random", "--trials", "2",
                 "--budget", "5", "--out", str(tmp_path / "o"), "-q"]) == 0
