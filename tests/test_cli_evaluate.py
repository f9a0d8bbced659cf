"""``keras-actfn evaluate``: summary lines, JSON output and exit statuses."""

import json

import pytest

from keras_actfn.cli import main
from keras_actfn.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

SHORT = ["--epochs", "2", "--subset", "600", "-q"]


def test_good_function_two_seeds_and_json(tmp_path, capsys):
    path = tmp_path / "out.json"
    code = main(["evaluate", "x*sigmoid(x)", *SHORT, "--seeds", "2", "--json", str(path)])
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert "function:    x * sigmoid(x)" in out
    assert "recipe:      quick[epochs=2,subset=train:600] (mnist1d_cnn on mnist1d" in out
    assert "seed 0: ok" in out and "seed 1: ok" in out
    summary = [line for line in out.splitlines() if line.startswith("mean +- std")]
    assert len(summary) == 1
    assert summary[0].startswith("mean +- std over 2 ok of 2 seeds: val_acc ")
    data = json.loads(path.read_text())
    assert [r["seed"] for r in data["records"]] == [0, 1]
    assert data["summary"]["ok"] == 2 and data["fn"] == "x * sigmoid(x)"
    mean = data["summary"]["validation_accuracy"]["mean"]
    accuracies = [r["validation_accuracy"] for r in data["records"]]
    assert mean == pytest.approx(sum(accuracies) / 2)
    assert data["recipe"]["epochs"] == 2


def test_failed_candidate_exits_1(capsys):
    code = main(["evaluate", "x*zero(x)", "--epochs", "1", "--subset", "600", "-q"])
    out = capsys.readouterr().out
    assert code == EXIT_FAILURE
    assert "seed 0: FAILED below_threshold" in out
    assert "all 1 seeds failed; failed: below_threshold" in out


def test_overflow_exits_1_without_training(capsys):
    assert main(["evaluate", "exp(exp(exp(x)))", "-q"]) == EXIT_FAILURE
    assert "FAILED overflow" in capsys.readouterr().out


def test_progress_output_when_not_quiet(capsys):
    assert main(["evaluate", "relu", "--epochs", "2", "--subset", "600"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "val_accuracy" in out


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "x +"], "bad activation function"),
    (["evaluate", "foo(x)"], "bad activation function"),
    (["evaluate", "relu", "--recipe", "nope"], "unknown recipe"),
    (["evaluate", "relu", "--task", "nope"], "unknown task"),
    (["evaluate", "relu", "--model", "nope"], "unknown model"),
    (["evaluate", "relu", "--seeds", "0"], "--seeds"),
    (["evaluate", "relu", "--epochs", "0"], "--epochs"),
    (["evaluate", "relu", "--seeds", "two"], "--seeds: must be a positive integer, got 'two'"),
])
def test_bad_usage_exits_2(argv, message, capsys):
    assert main(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_help_lists_evaluate(capsys):
    assert main(["--help"]) == EXIT_OK
    assert "evaluate" in capsys.readouterr().out
    assert main(["evaluate", "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    for option in ("--recipe", "--seeds", "--epochs", "--test", "--json"):
        assert option in out
