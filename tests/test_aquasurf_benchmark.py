"""Act-Bench-style tables: build (resumable), write/load, replayed searches, plots."""

import gzip
import json
import pathlib
import sys

import numpy as np
import pytest

from keras_actfn.search.aquasurf.benchmark import (Benchmark, build_benchmark, fisher_cdf,
                                                   load_benchmark, plot_replay,
                                                   replay_search, write_benchmark)
from keras_actfn.search.aquasurf.features import output_features

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from search_fakes import FakeEvaluator  # noqa: E402


@pytest.fixture(scope="module")
def synthetic():
    """A family a*x + b*tanh(x) (plus ReLU) whose accuracy is a smooth function of the
    outputs: high near one member's outputs, falling off with the RMS output distance.
    Coordinates: the first two principal components of the outputs."""
    grid = np.linspace(-1.5, 1.5, 13)
    texts = [f"{a:.2f} * x + {b:.2f} * tanh(x)" for a in grid for b in grid] + ["relu(x)"]
    outputs = output_features(texts)
    target = output_features(["0.75 * x + -0.50 * tanh(x)"])[0]
    rms = np.sqrt(((outputs - target) ** 2).mean(axis=1))
    accuracy = 0.1 + 0.8 * np.exp(-rms ** 2)
    centered = outputs - outputs.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    coords = centered @ vt[:2].T
    rows = {t: {"Validation Accuracy": float(v), "Equivalent Activation Functions": [t]}
            for t, v in zip(texts, accuracy)}
    return Benchmark(texts, rows), coords


def test_surrogate_beats_random_and_ci_shrinks(synthetic):
    bench, coords = synthetic
    knr = replay_search(bench, "knr", trials=20, budget=20, coords=coords)
    rand = replay_search(bench, "random", trials=20, budget=20)
    assert knr.mean.shape == (20,) and np.all(np.diff(knr.mean) >= -1e-12)
    assert knr.mean[-1] >= rand.mean[-1]
    best = bench.values().max()
    assert knr.mean[-1] > best - 0.01  # KNR finds (nearly) the optimum in 20 evaluations
    # evaluation 1 is ReLU in every trial: no spread
    relu = bench.rows["relu(x)"]["Validation Accuracy"]
    np.testing.assert_allclose(knr.mean[0], relu)
    few = replay_search(bench, "random", trials=8, budget=10, seed=100)
    many = replay_search(bench, "random", trials=80, budget=10, seed=100)
    assert many.ci_halfwidth[5:].mean() < few.ci_halfwidth[5:].mean()
    # the CI is the Student-t interval of the per-trial curves
    from scipy import stats
    col = many.best_so_far[:, 6]
    half = stats.t.ppf(0.975, 79) * col.std(ddof=1) / np.sqrt(80)
    np.testing.assert_allclose(many.ci_halfwidth[6], half, rtol=1e-10)
    reach = knr.evaluations_to_reach(best - 0.01)
    assert np.all(reach <= 20)
    # replay is reproducible
    again = replay_search(bench, "knr", trials=20, budget=20, coords=coords)
    np.testing.assert_array_equal(again.best_so_far, knr.best_so_far)


def test_write_load_round_trip(tmp_path, synthetic):
    bench, _ = synthetic
    for name in ("b.json", "b.json.gz"):
        write_benchmark(bench, tmp_path / name)
        back = load_benchmark(tmp_path / name)
        assert back.functions == bench.functions
        np.testing.assert_array_equal(back.values(), bench.values())
    with gzip.open(tmp_path / "b.json.gz", "rt") as handle:
        assert list(json.load(handle)) == bench.functions


def test_load_official_style_samples(tmp_path):
    named = {
        "min(square(x),selu(x))": {
            "Train Accuracy": 0.91, "Validation Accuracy": 0.85, "Train Loss": 0.3,
            "Validation Loss": 0.45, "Test Accuracy": 0.84, "Test Loss": 0.47,
            "Equivalent Activation Functions": ["min(selu(x),square(x))"],
            "Fisher log eigenvalue CDF": [0.0, 0.5, 1.0], "Runtime (s)": 812.5},
        "add(relu(x),zero(x))": {"val_acc": 0.8, "train_acc": 0.82, "runtime": 700,
                                 "equivalent_functions": ["relu(x)"]},
    }
    (tmp_path / "named.json").write_text(json.dumps(named))
    bench = load_benchmark(tmp_path / "named.json")
    assert bench.functions == list(named)
    np.testing.assert_array_equal(bench.values("validation_accuracy"), [0.85, 0.8])
    np.testing.assert_array_equal(bench.values("Runtime (s)"), [812.5, 700])
    assert np.isnan(bench.values("Test Loss")[1])
    assert bench.equivalents("min(square(x),selu(x))") == ["min(square(x),selu(x))",
                                                         "min(selu(x),square(x))"]
    assert bench.rows["min(square(x),selu(x))"]["Fisher log eigenvalue CDF"] == [0, 0.5, 1]
    assert bench.best() == ("min(square(x),selu(x))", 0.85)
    tupled = {"('min(selu(x),square(x))', 'min(square(x),selu(x))')": {
        "Activation Function": "min(square(x),selu(x))", "Validation Accuracy": 0.85,
        "W&B Run Configs": [{}]}}
    (tmp_path / "tupled.json").write_text(json.dumps(tupled))
    bench = load_benchmark(tmp_path / "tupled.json")
    assert bench.functions == ["min(square(x),selu(x))"]
    assert sorted(bench.equivalents("min(square(x),selu(x))")) == [
        "min(selu(x),square(x))", "min(square(x),selu(x))"]
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_benchmark(tmp_path / "bad.json")


class _Layer:
    def __init__(self, counts, num_params=100):
        self.histogram = np.asarray(counts)
        self.num_params = num_params


class _Fisher:
    def __init__(self, layers, valid=True):
        self.layers, self.valid = layers, valid


def test_build_benchmark_merges_equivalents_and_resumes(tmp_path):
    fns = ["relu(x)", "max(x, 0)", "x * sigmoid(x)", "swish(x)", "tanh(x)", "log(x)",
           "cosh(x)"]
    log = tmp_path / "calls.txt"
    evaluator = FakeEvaluator(log_path=str(log))
    fim = {"relu(x)": _Fisher([_Layer([1, 3]), _Layer([2, 0, 2])]),
           "tanh(x)": _Fisher([], valid=False)}
    bench = build_benchmark(fns, evaluator, tmp_path / "s.db", tmp_path / "b.json", fim=fim)
    assert bench.functions == ["relu(x)", "x * sigmoid(x)", "tanh(x)", "log(x)", "cosh(x)"]
    calls = log.read_text().splitlines()
    assert len(calls) == 5
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["relu(x)"]["Fisher Layer Sizes"] == [[2, 100], [3, 100]]
    assert data["relu(x)"]["Equivalent Activation Functions"] == ["relu(x)", "max(x, 0)"]
    assert data["x * sigmoid(x)"]["Equivalent Activation Functions"] == [
        "x * sigmoid(x)", "swish(x)"]
    assert data["relu(x)"]["Fisher log eigenvalue CDF"] == [0.25, 1.0, 0.5, 0.5, 1.0]
    assert data["tanh(x)"]["Fisher log eigenvalue CDF"] is None
    assert data["log(x)"]["Status"] == "failed"
    assert data["log(x)"]["Validation Accuracy"] is None
    assert data["cosh(x)"]["Status"] == "failed"  # the evaluator raised: failure is data
    from search_fakes import fake_score
    assert data["tanh(x)"]["Validation Accuracy"] == pytest.approx(fake_score("tanh(x)", 0))
    for key in ("Train Accuracy", "Validation Accuracy", "Test Accuracy", "Train Loss",
                "Validation Loss", "Test Loss", "Runtime (s)"):
        assert key in data["tanh(x)"]
    again = build_benchmark(fns, evaluator, tmp_path / "s.db", tmp_path / "b2.json", fim=fim)
    assert len(log.read_text().splitlines()) == 5  # nothing evaluated the second time
    assert json.loads((tmp_path / "b2.json").read_text()) == data
    assert load_benchmark(tmp_path / "b2.json").functions == again.functions
    assert fisher_cdf([0.1, 0.2]) == [0.1, 0.2]


def test_plot_replay_draws_curves(tmp_path, synthetic):
    bench, coords = synthetic
    results = [replay_search(bench, "knr", trials=5, budget=12, coords=coords),
               replay_search(bench, "random", trials=5, budget=12)]
    fig = plot_replay(results, tmp_path / "fig.png", title="synthetic",
                      reference={"ReLU": float(bench.rows["relu(x)"]["Validation Accuracy"])})
    assert (tmp_path / "fig.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["KNR", "RANDOM", "ReLU"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), results[0].mean)
