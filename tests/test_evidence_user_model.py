"""scripts/evidence_user_model.py --smoke: the example runs end to end (PANGAEA on a CNN of
its own over sklearn digits arrays, PANGAEA on a TFRecord stream) and its results.json says
what the search stores hold, with statistics that add up. The AQuaSurF part is the same
code with another method (tests/test_user_search.py searches a user model with AQuaSurF);
it is left out here because UMAP's first compile would double this test's time."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import keras_actfn as ka
from keras_actfn.search.engine.store import Store
from keras_actfn.train.user_model import ORIGINAL
from shared_results import run_once

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    def run(out):
        sys.path.insert(0, str(SCRIPTS))
        try:
            import evidence_user_model
        finally:
            sys.path.remove(str(SCRIPTS))
        returned = evidence_user_model.main(["--smoke", "--quiet", "--out", str(out),
                                             "--only", "pangaea", "stream"])
        with open(out / "results.json") as f:
            results = json.load(f)
        assert results == json.loads(json.dumps(returned))  # what it wrote is what it found
        return results

    # one run for both xdist workers (the module's tests may be split between them)
    return run_once(tmp_path_factory, "evidence-smoke", run)


def _close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_smoke_writes_every_search_and_its_plot(smoke):
    out, results = smoke
    assert results["smoke"] is True
    assert set(results["searches"]) == {"pangaea", "stream"}
    assert results["data"]["train"] == 1000 and results["data"]["test"] == 400
    for name, entry in results["searches"].items():
        assert (out / entry["plot"]).stat().st_size > 1000
        assert entry["epochs"] == 1 and entry["final_seeds"] == 2
        assert entry["search"]["evaluated"] == entry["budget"]
        assert entry["wall_s"] > 0
    assert (out / "tfrecords" / "train").is_dir()
    assert results["searches"]["stream"]["data"].startswith("tf.data")


def test_smoke_numbers_are_consistent(smoke):
    _, results = smoke
    for name, entry in results["searches"].items():
        rows = entry["functions"]
        assert sum(r["is_original"] for r in rows) == 1 and rows[-1]["is_original"]
        assert [r["function"] for r in rows if r["is_best"]] == [entry["best_function"]]
        assert entry["best_vs_original"]["best"] == entry["best_function"]
        assert len(rows) == entry["final_top"] + 1
        original = rows[-1]
        for row in rows:
            if row["function"] != ORIGINAL:
                ka.parse(row["function"])  # every function in the table is a real one
            assert len(row["runs"]) == entry["final_seeds"]
            for split in ("validation", "test"):
                values = row[split]
                assert values == [run[f"{split}_accuracy"] for run in row["runs"]
                                  if run[f"{split}_accuracy"] is not None]
                assert all(0.0 <= v <= 1.0 for v in values)
                assert _close(row[f"{split}_mean"], float(np.mean(values)))
                assert _close(row[f"{split}_std"], float(np.std(values, ddof=1)))
                if row["is_original"]:
                    continue
                t, p = stats.ttest_ind(values, original[split], equal_var=False)
                welch = row["welch_vs_original"][split]
                assert _close(welch["t"], None if math.isnan(t) else float(t))
                assert _close(welch["p"], None if math.isnan(p) else float(p))
            assert row["n"] == len(row["test"])
        best = next(r for r in rows if r["is_best"])
        for split in ("validation", "test"):
            summary = entry["best_vs_original"][split]
            assert summary["best_mean"] == best[f"{split}_mean"]
            assert summary["original_mean"] == original[f"{split}_mean"]
            assert summary["t"] == best["welch_vs_original"][split]["t"]


def test_smoke_results_are_the_stores_final_runs(smoke):
    _, results = smoke
    for entry in results["searches"].values():
        with Store(entry["store"]) as journal:
            journal.select_run("final")
            stored = sorted((ev.text, ev.record.seed, ev.record.test_accuracy)
                            for ev in journal.results() if ev.record.ok)
            journal.select_run("search")
            assert len(journal.results()) == entry["budget"]
        reported = sorted((row["function"], run["seed"], run["test_accuracy"])
                          for row in entry["functions"] for run in row["runs"]
                          if run["status"] == "ok")
        assert reported == stored
