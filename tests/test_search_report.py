"""PANGAEA and CAFE through the real driver and store, and the report read back from it.

The evaluator is the fake one of ``search_fakes`` (a deterministic score per text and seed,
failures for ``log(``...), so these tests check the plumbing and the numbers of the
report against the store's records, not training.
"""

import numpy as np
import pytest

from keras_actfn.search.cafe import CafeEvolution
from keras_actfn.search.engine.driver import run_search
from keras_actfn.search.pangaea import Pangaea, Rerank
from keras_actfn.search.report import (best_so_far, population_fitness, top_functions,
                                       write_report)
from keras_actfn.search.runner import (ALGORITHMS, comparison_rows, format_comparison,
                                       make_algorithm)
from keras_actfn.search.engine.store import Store, StoreConfigError
from search_fakes import FakeEvaluator

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("search") / "run.db")
    with Store(path) as store:
        algo = Pangaea(population=8, sample=3, budget=40, threshold=0.3, seed=0)
        summary = run_search(algo, FakeEvaluator(), store, budget=40)
        final = Rerank(["relu(x)"] + [e.text for e in summary.best[:2]], runs=3, seed=100)
        run_search(final, FakeEvaluator(), store, run_name="final")
        store.select_run("search")
        results = store.results()
    return path, summary, final, results


def test_pangaea_search_fills_the_budget_through_the_driver(searched):
    _, summary, _, results = searched
    assert summary.counts["finished"] == 40 and len(results) == 40
    assert summary.stop_reason in ("budget", "done")
    assert summary.best[0].record.validation_accuracy == max(
        r.record.validation_accuracy for r in results
        if r.record.ok and r.record.validation_accuracy is not None and r.reused_from is None)


def test_best_so_far_matches_the_records(searched):
    _, _, _, results = searched
    values, best, improvements = best_so_far(results)
    ok = [r.record.validation_accuracy if r.record.ok and r.record.validation_accuracy
          is not None else np.nan for r in results]
    np.testing.assert_allclose(values, ok)
    expected = np.fmax.accumulate(np.where(np.isnan(values), -np.inf, values))
    expected[np.isinf(expected)] = np.nan
    np.testing.assert_allclose(best, expected)
    assert all(b > a for (_, a, _), (_, b, _) in zip(improvements, improvements[1:]))


def test_population_window_quartiles(searched):
    _, _, _, results = searched
    q = population_fitness(results, window=8, threshold=0.3)
    valid = [r.record.validation_accuracy for r in results if r.record.ok and
             r.record.validation_accuracy is not None and r.record.validation_accuracy >= 0.3]
    last = np.percentile(valid[-8:], [25, 50, 75, 100])
    np.testing.assert_allclose(q[-1], last)


def test_top_functions_average_seeds(searched):
    path, _, final, _ = searched
    with Store(path) as store:
        store.select_run("final")
        rows = top_functions(store.results(), k=10)
    by_fn = {r["fn"]: r for r in rows}
    for text, mean, values in final.ranking():
        assert by_fn[text]["mean"] == pytest.approx(np.mean(values))
        assert by_fn[text]["runs"] == 3
    cmp_rows = comparison_rows(final, "relu(x)")
    assert sum(r[4] for r in cmp_rows) == 1  # exactly one baseline row
    table = format_comparison(cmp_rows)
    assert "(baseline)" in table and "±" in table


def test_write_report_makes_pngs_and_a_table(searched, tmp_path):
    path, summary, _, _ = searched
    text, paths = write_report(path, out_dir=str(tmp_path / "rep"), k=5)
    assert summary.best[0].text in text and "final comparison" in text
    for p in paths.values():
        with open(p, "rb") as f:
            assert f.read(8) == PNG
    with pytest.raises(FileNotFoundError):
        write_report(str(tmp_path / "missing.db"))


def test_a_different_search_on_the_same_store_is_refused(searched):
    path, _, _, _ = searched
    with Store(path) as store:
        with pytest.raises(StoreConfigError):
            run_search(Pangaea(population=9, budget=5), FakeEvaluator(), store, budget=5)


def test_cafe_evolution_through_the_driver(tmp_path):
    with Store(str(tmp_path / "cafe.db")) as store:
        algo = CafeEvolution(population=8, newcomers=2, elite=2, generations=3, seed=1)
        summary = run_search(algo, FakeEvaluator(), store)
        assert summary.stop_reason == "done"
        # 8 in the first generation, 6 new in each later one
        assert summary.counts["finished"] == 8 + 2 * 6


def test_named_algorithms():
    assert set(ALGORITHMS) >= {"pangaea", "pangaea-random", "pangaea-nonparametric", "cafe",
                               "cafe-random", "cafe-exhaustive"}
    assert make_algorithm("pangaea-random", 10).population_size == 1
    assert make_algorithm("pangaea-nonparametric", 10).parameterize is False
    cafe = make_algorithm("cafe", budget=50 + 9 * 45)
    assert cafe.generations == 10  # the chapter's 10 generations of N=50 with 5 elites
    with pytest.raises(ValueError, match="unknown search"):
        make_algorithm("nope", 10)


def test_progress_plot_layout(searched):
    """progress.png reads at a glance: a title, a legend that counts the failures, every
    new best numbered on the curve without two numbers overlapping, and the numbered list
    beside the axes (not over them)."""
    from keras_actfn.search.report import plot_progress

    _, _, _, results = searched
    failed = sum(not ev.record.ok for ev in results)
    fig = plot_progress(results, None, baseline=0.5, title="pangaea: run.db")
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    assert ax.get_title() == "pangaea: run.db"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"failed ({failed})" in labels and f"evaluations ({40 - failed})" in labels
    numbers = [a for a in ax.texts if a.get_text().isdigit()]
    _, _, improvements = best_so_far(results)
    assert [a.get_text() for a in numbers] == [str(k) for k in
                                               range(1, min(6, len(improvements)) + 1)]
    boxes = [a.get_window_extent(renderer) for a in numbers]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    (panel,) = fig.texts
    assert panel.get_text().startswith("new bests")
    assert not panel.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def test_top_shapes_plot_says_what_its_curves_and_numbers_are(searched):
    from keras_actfn.search.report import plot_top_shapes

    _, _, _, results = searched
    rows = top_functions(results, 4)
    fig = plot_top_shapes(rows, metric="validation_accuracy")
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "parameters at their initial value 1", "parameters drawn from U(0.5, 2)"]
    for k, (ax, row) in enumerate(zip(fig.axes, rows), 1):
        head, *body = ax.get_title().split("\n")
        assert head.startswith(f"#{k}  validation accuracy {row['mean']:.4f}")
        words = " ".join(body).replace(" ...", "").split()
        assert words == row["fn"].split()[:len(words)]  # wrapped between terms only


def test_population_plot_keeps_its_legend_off_the_band(searched):
    from keras_actfn.search.report import plot_population

    _, _, _, results = searched
    fig = plot_population(results, window=8, title="pangaea: the 8 most recent valid")
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "population 25-75%", "population median", "population best"]
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    assert ax.get_title() == "pangaea: the 8 most recent valid"
