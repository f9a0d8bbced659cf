"""`keras-actfn search` and `keras-actfn report` on the real harness (MNIST-1D, one epoch)."""

import re

import pytest

from keras_actfn.cli import main
from keras_actfn.search.engine.store import Store

ARGS = ["search", "pangaea", "--budget", "3", "--population", "2", "--sample", "1",
        "--epochs", "1", "--final-seeds", "1", "--final-top", "1", "-q"]


def test_search_then_resume_then_report(tmp_path, capsys):
    store = str(tmp_path / "s.db")
    assert main(ARGS + ["--store", store]) == 0
    out = capsys.readouterr().out
    assert "search stopped" in out and "(baseline)" in out and f"report {store}" in out
    with Store(store) as journal:
        journal.select_run("search")
        first = journal.counts()
        assert first["finished"] == 3
        texts = [ev.text for ev in journal.results()]
    # the same command again resumes: nothing new is trained, the table is the same
    assert main(ARGS + ["--store", store]) == 0
    again = capsys.readouterr().out
    with Store(store) as journal:
        journal.select_run("search")
        assert journal.counts() == first
        assert [ev.text for ev in journal.results()] == texts
    table = lambda s: s[s.index("function"):]  # noqa: E731
    assert table(again) == table(out)
    assert main(["report", store, "--top", "2", "--out", str(tmp_path / "rep")]) == 0
    report = capsys.readouterr().out
    assert re.search(r"^\s+1\s+\S", report, re.MULTILINE) and "progress.png" in report


def test_search_usage_errors(tmp_path, capsys):
    assert main(["search", "nope", "--store", str(tmp_path / "x.db")]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    assert main(["search", "pangaea", "--recipe", "nope", "--store",
                 str(tmp_path / "y.db")]) == 2
    assert main(["report", str(tmp_path / "missing.db")]) == 2
    assert "no search store" in capsys.readouterr().err


@pytest.mark.parametrize("limit", [40, pytest.param(None, marks=pytest.mark.slow)])
def test_aquasurf_search_starts_from_the_eight_baselines(limit):
    """`keras-actfn search aquasurf`: the unique functions of the Table A.3 space (2,750:
    tests/test_aquasurf_space.py), embedded by outputs; new-task mode asks the eight
    baselines of ch. 6 first. The default run embeds a seeded pool of 40 of them (the
    baselines first), -m slow the whole space (a UMAP fit of 2,750 points, ~20 s). (The FIM
    half of the surrogate: tests/test_aquasurf_pool.py.)"""
    import numpy as np

    from keras_actfn.expr import evaluate, parse
    from keras_actfn.search.runner import make_algorithm

    algo = make_algorithm("aquasurf", budget=10, seed=0, features="outputs", fim_limit=limit)
    assert len(algo.functions) == (limit or 2750)
    grid = np.linspace(-3, 3, 61)
    baselines = ["elu(x)", "relu(x)", "selu(x)", "sigmoid(x)", "softplus(x)", "softsign(x)",
                 "x*sigmoid(x)", "tanh(x)"]
    asked = [algo.ask() for _ in range(8)]
    for candidate, base in zip(asked, baselines):
        np.testing.assert_allclose(evaluate(parse(candidate.text), grid),
                                   evaluate(parse(base), grid), atol=1e-9, err_msg=base)


def test_aquasurf_cli_with_fim_features_end_to_end(tmp_path, capsys):
    """`keras-actfn search aquasurf` with the paper's surrogate (FIM + outputs) on a pool of
    20 functions: FIM features cached in the store (a resume computes none), the eight
    baselines evaluated first, then a KNR pick, all journaled."""
    from keras_actfn.search.aquasurf.pool import fim_kind

    store = str(tmp_path / "a.db")
    args = ["search", "aquasurf", "--budget", "9", "--epochs", "1", "--fim-limit", "20",
            "--final-seeds", "0", "--store", store, "-q"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "FIM features 20/20" in err
    with Store(store) as journal:
        cached = journal.features(fim_kind("mnist1d_cnn", "mnist1d"))
        journal.select_run("search")
        evaluations = journal.results()
        config = journal.run_config()
    assert len(cached) == 20
    assert [ev.candidate.mutation for ev in evaluations].count("start") == 8
    assert [ev.candidate.mutation for ev in evaluations].count("knr") == 1
    assert all(cached[ev.candidate.text]["valid"] for ev in evaluations
               if ev.candidate.text in cached)
    assert config["algorithm"]["features"] == "both" and config["algorithm"]["pool_size"] == 20
    assert main(args) == 0
    assert "FIM features" not in capsys.readouterr().err


def test_grafs_protocol_from_the_command_line(tmp_path, capsys):
    """`keras-actfn search grafs`: one short search, its function and the five baselines of
    GRAFS Tables 1-3 trained through the harness, the overhead ratio and the weight plot."""
    png = tmp_path / "w.png"
    code = main(["search", "grafs", "--epochs", "2", "--seeds", "1", "--final-seeds", "1",
                 "--final-epochs", "1",
                 "--plot", str(png), "-q", "--store", str(tmp_path / "grafs.db")])
    assert code == 0
    out = capsys.readouterr().out
    for base in ("relu(x)", "x*sigmoid(x)", "gelu(x)", "elu(x)", "leaky_relu(x)"):
        assert base in out
    assert "found" in out
    ratio = re.search(r"search time / one evaluation run: .* = ([0-9.]+)", out)
    assert ratio and float(ratio.group(1)) > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_final_epochs_is_refused_where_it_would_be_ignored(tmp_path, capsys):
    """--final-epochs shortens a zoo GRAFS run's final comparison; a model-file search trains
    its comparison with --epochs, so the flag is refused there, before anything is made."""
    store = tmp_path / "s.db"
    code = main(["search", "grafs", "--model", str(tmp_path / "m.keras"), "--data",
                 str(tmp_path / "d.npz"), "--final-epochs", "1", "--store", str(store)])
    assert code == 2
    assert "--final-epochs applies to zoo GRAFS runs" in capsys.readouterr().err
    assert not store.exists()
