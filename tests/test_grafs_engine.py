"""GRAFS on the search engine: journaled seeds, exact resume, refused settings, the final
comparison as run "final", and an evaluator that pickles (MNIST-1D MLP, 320 examples,
2-epoch searches)."""

import functools
import json
import math
import os
import pickle
import shutil

import numpy as np
import pytest

import keras_actfn.search.grafs.search as grafs_module
import keras_actfn.train as train_module
from keras_actfn.search.engine.base import Candidate, equivalence_key
from keras_actfn.search.grafs import (GrafsSeedEvaluator, GrafsSeeds, run_grafs, search_history,
                                      seed_label)
from keras_actfn.search.engine.store import Store, StoreConfigError
from keras_actfn.train.record import EvaluationRecord

#: a tiny protocol: two 2-epoch searches of the MNIST-1D MLP on 320 training examples
SMALL = dict(model="mlp", epochs=2, seeds=2, search_train=320, batch_size=32)
#: the final comparison: ReLU only, one 1-epoch run each (threshold 0: only chance fails)
FINAL = dict(eval_seeds=1, baselines=("relu(x)",),
             eval_overrides={"epochs": 1, "threshold": 0.0})


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C raised from inside the second search."""


@pytest.fixture
def count_searches(monkeypatch):
    """Count (and optionally interrupt) the searches the engine runs: returns the list of
    seeds searched; ``calls.interrupt_at = n`` raises on the n-th call."""
    real = grafs_module.grafs_search

    class Calls(list):
        interrupt_at = None

    calls = Calls()

    @functools.wraps(real)  # the evaluator checks its settings against the signature
    def counting(*args, seed=0, **kwargs):
        calls.append(seed)
        if calls.interrupt_at == len(calls):
            raise Interrupted
        return real(*args, seed=seed, **kwargs)

    monkeypatch.setattr(grafs_module, "grafs_search", counting)
    return calls


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Two seeds through a store, no interruption, no final comparison."""
    path = tmp_path_factory.mktemp("grafs") / "search.db"
    lines = []
    result = run_grafs(store=path, eval_seeds=0, log=lines.append, **SMALL)
    return path, result, lines


def _journal(path, run="search"):
    with Store(path) as store:
        store.select_run(run)
        return store.evaluations(), store.counts(), store.run_status()


# --------------------------------------------------------------------------- (a) journal
def test_each_seed_is_one_journaled_evaluation(uninterrupted):
    path, result, lines = uninterrupted
    evaluations, counts, status = _journal(path)
    assert status == "done"
    assert counts["finished"] == counts["ok"] == 2 and counts["pending"] == 0
    found = [s["function"] for s in result["searches"]]
    assert [s["seed"] for s in result["searches"]] == [0, 1] and len(found) == 2
    # the journal: one row per seed, labelled, from relu(x), the found function in the record
    assert [ev.text for ev in evaluations] == ["grafs seed 0", "grafs seed 1"]
    assert [ev.candidate.meta for ev in evaluations] == [{"seed": 0}, {"seed": 1}]
    assert [ev.seed for ev in evaluations] == [0, 1]
    assert {ev.candidate.parent for ev in evaluations} == {"relu(x)"}
    assert [ev.record.fn for ev in evaluations] == found
    assert [ev.equivalence_key for ev in evaluations] == [None, None]  # never reused
    for ev, search in zip(evaluations, result["searches"]):
        record = ev.record
        assert record.ok and record.seed == ev.seed and record.recipe == "grafs_search"
        assert record.task == "mnist1d" and record.model == "mnist1d_mlp"
        assert record.runtime_s == pytest.approx(search["seconds"]) and record.runtime_s > 0
        assert record.epochs_run == 2 and record.history["epoch"] == [1, 2]
        assert record.history["dropped"] == [0, 104]  # every drop at S = 2 E0 = 2
        assert record.info["grafs_seed"] == ev.seed
        assert record.info["operators_left"] == [1] * 6
        assert record.info["valid_loss"] == record.history["valid_loss"][-1]
        assert record.info["traces"] >= 1 and record.info["function_clipped"]
        # the history comes back as the search's per-epoch records
        rows = search_history(record)
        assert [h["epoch"] for h in rows] == [1, 2]
        assert [{**h, "weights": None} for h in rows] == \
            [{**h, "weights": None} for h in search["history"]]
        for h in rows:
            assert [w.shape for w in h["weights"]] == [(23,)] * 4 + [(9,)] * 2
            assert all(w.sum() == pytest.approx(1.0, abs=1e-5) for w in h["weights"])
    # the search split: a 320-example subset of MNIST-1D's training set, 75% of it trained
    assert evaluations[0].record.history["updates"][-1] == 2 * (240 // 32)
    assert math.isnan(result["overhead"]) and result["table"] == []
    assert [line for line in lines if line.startswith("found: ")] == [
        f"found: {fn}  ({ev.record.runtime_s:.1f} s, seed {ev.seed})"
        for fn, ev in zip(found, evaluations)]


# --------------------------------------------------------------------------- (b) resume
def test_an_interrupted_run_resumes_without_repeating_a_finished_seed(
        uninterrupted, count_searches, tmp_path):
    path, expected, _ = uninterrupted
    store, checkpoints = tmp_path / "s.db", tmp_path / "ckpt"
    count_searches.interrupt_at = 2  # Ctrl-C as the second search starts
    with pytest.raises(Interrupted):
        run_grafs(store=store, eval_seeds=0, checkpoint=checkpoints, log=lambda *a: None,
                  **SMALL)
    assert list(count_searches) == [0, 1]
    evaluations, counts, status = _journal(store)
    assert counts["ok"] == 1 and counts["running"] == 1 and status == "open"
    first = evaluations[0]
    assert first.record.fn == expected["searches"][0]["function"]
    # seed 0 saved its last epoch in <checkpoint>/seed0; seed 1 never got to save one
    saved = json.loads((checkpoints / "seed0" / "state.json").read_text())
    assert saved["epoch"] == 2 and not (checkpoints / "seed1").exists()

    count_searches.interrupt_at = None
    lines = []
    resumed = run_grafs(store=store, eval_seeds=0, checkpoint=checkpoints, log=lines.append,
                        **SMALL)
    assert list(count_searches) == [0, 1, 1]  # only the unfinished seed ran again
    assert lines[0] == f"resuming: 1 of 2 GRAFS searches are already in the store {store}"
    assert [s["function"] for s in resumed["searches"]] == \
        [s["function"] for s in expected["searches"]]
    evaluations, counts, status = _journal(store)
    assert counts["finished"] == 2 and counts["asked"] == 2 and status == "done"
    assert evaluations[0].finished == first.finished  # the same row, not a second one
    assert (checkpoints / "seed1" / "state.json").exists()


# --------------------------------------------------------------------------- (c) refusal
def test_other_settings_are_refused_by_the_store(uninterrupted, count_searches):
    path, _, _ = uninterrupted
    with pytest.raises(StoreConfigError) as err:
        run_grafs(store=path, eval_seeds=0, learning_rate=0.5, log=lambda *a: None, **SMALL)
    assert err.value.differences["evaluator.settings.learning_rate"] == (0.001, 0.5)
    assert set(err.value.differences) == {"evaluator.settings.learning_rate"}
    with pytest.raises(StoreConfigError) as err:
        run_grafs(store=path, eval_seeds=0, log=lambda *a: None, **{**SMALL, "seeds": 3})
    assert err.value.differences == {"algorithm.seeds": (2, 3)}
    with pytest.raises(StoreConfigError) as err:
        run_grafs(store=path, eval_seeds=0, log=lambda *a: None,
                  **{**SMALL, "search_train": 400})
    assert err.value.differences == {"evaluator.task.search_train": (320, 400)}
    assert list(count_searches) == []  # refused before anything trained


# --------------------------------------------------------------------------- (d) final
def test_the_final_comparison_is_journaled_and_not_repeated(uninterrupted, count_searches,
                                                           monkeypatch, tmp_path):
    path, expected, _ = uninterrupted
    store = tmp_path / "s.db"
    shutil.copy(path, store)
    evaluated = []
    real = train_module.evaluate_activation

    def counting(fn, **kwargs):
        evaluated.append(fn)
        return real(fn, **kwargs)

    monkeypatch.setattr(train_module, "evaluate_activation", counting)
    result = run_grafs(store=store, log=lambda *a: None, **SMALL, **FINAL)
    found = [s["function"] for s in expected["searches"]]
    assert list(count_searches) == []  # the searches came from the store
    assert sorted(evaluated) == sorted(found + ["relu(x)"])

    evaluations, counts, status = _journal(store, "final")
    assert status == "done" and counts["finished"] == 3
    by_text = {ev.text: ev for ev in evaluations}
    assert set(by_text) == set(found) | {"relu(x)"}
    assert all(ev.seed == 0 and ev.candidate.mutation == "rerank" for ev in evaluations)
    rows = {row["function"]: row for row in result["table"]}
    assert {row["kind"] for f, row in rows.items() if f in found} == {"found"}
    assert rows["relu(x)"]["kind"] == "baseline"
    for text, ev in by_text.items():
        record = ev.record
        assert record.model == "mnist1d_mlp" and record.epochs_run == 1
        if record.ok:
            assert rows[text]["mean"] == pytest.approx(record.validation_accuracy)
            assert rows[text]["n"] == 1 and 0.1 < rows[text]["mean"] <= 1.0
        else:
            assert math.isnan(rows[text]["mean"]) and rows[text]["n"] == 0
    assert by_text["relu(x)"].record.ok
    relu_seconds = by_text["relu(x)"].record.runtime_s
    assert result["evaluation_seconds"] == pytest.approx(relu_seconds)
    search_seconds = np.mean([s["seconds"] for s in expected["searches"]])
    assert result["overhead"] == pytest.approx(search_seconds / relu_seconds)

    # again: nothing is searched or trained, the same table comes back
    again = run_grafs(store=store, log=lambda *a: None, **SMALL, **FINAL)
    assert list(count_searches) == [] and len(evaluated) == 3
    assert [(r["function"], r["n"]) for r in again["table"]] == \
        [(r["function"], r["n"]) for r in result["table"]]
    assert _journal(store, "final")[1] == counts

    # `keras-actfn report`: the search run ranks no labels; the final table lists the found
    from keras_actfn.search.report import write_report

    text, plots = write_report(str(store), out_dir=str(tmp_path / "report"))
    assert "(2 finished evaluations)" in text and "final comparison" in text
    final_part = text.split("final comparison")[1]
    assert "relu(x)" in final_part and "grafs seed" not in text
    assert all(os.path.exists(p) for p in plots.values())


# --------------------------------------------------------------------------- (e) pickling
class MlpBuilder:
    """A picklable zero-argument model builder, as the user-model front door passes."""

    name = "my_mlp"

    def __call__(self):
        from keras_actfn.models import mnist1d_mlp

        return mnist1d_mlp()

    def config(self):
        return {"builder": "MlpBuilder", "layers": 3}


def test_the_evaluator_pickles_and_runs_after_unpickling(uninterrupted, count_searches):
    _, expected, _ = uninterrupted
    settings = {"epochs": 2, "warm_start_epochs": 1, "batch_size": 32, "targets": ("relu",),
                "start_shrinking_epoch": 2}
    evaluator = GrafsSeedEvaluator(MlpBuilder(), "mnist1d", settings, search_train=320,
                                   log=lambda *a: None)
    config = evaluator.config()
    assert json.loads(json.dumps(config)) == config
    assert config["model"] == {"builder": "MlpBuilder", "layers": 3}
    assert config["task"] == {"name": "mnist1d", "search_train": 320}
    assert config["settings"]["targets"] == ["relu"]
    copy = pickle.loads(pickle.dumps(evaluator))
    assert copy.config() == config
    assert copy.log is None and copy.verbose is False  # a lambda log stays behind
    record = copy(seed_label(0), seed=0)
    assert count_searches == [0]
    assert record.ok and record.seed == 0 and record.model == "my_mlp"
    # the same search as the store's seed 0 (same network, data and seed)
    assert record.fn == expected["searches"][0]["function"]
    assert EvaluationRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_a_search_that_raises_is_a_failed_record():
    class Broken:
        def __call__(self):
            raise RuntimeError("no model here")

    evaluator = GrafsSeedEvaluator(Broken(), "mnist1d", {"epochs": 1}, search_train=64,
                                   verbose=False)
    record = evaluator("grafs seed 4", seed=4)
    assert record.failed and record.reason == "error" and record.seed == 4
    assert "RuntimeError: no model here" in record.message
    assert record.fn == "grafs seed 4" and record.info["grafs_seed"] == 4
    algorithm = GrafsSeeds(seeds=1, first_seed=4)
    algorithm.tell(algorithm.ask(), record)
    assert algorithm.done() and algorithm.functions() == [] and algorithm.found == {4: None}
    with pytest.raises(TypeError, match="set by GrafsSeedEvaluator"):
        GrafsSeedEvaluator("mnist1d_mlp", "mnist1d", {"seed": 3})
    with pytest.raises(TypeError, match="unknown grafs_search setting"):
        GrafsSeedEvaluator("mnist1d_mlp", "mnist1d", {"epoch": 3})


def test_grafs_seeds_state_round_trip():
    algorithm = GrafsSeeds(seeds=3, first_seed=10, original="relu(x)", context={"task": "t"})
    asked = [algorithm.ask(), algorithm.ask()]
    assert [c.text for c in asked] == ["grafs seed 10", "grafs seed 11"]
    assert [c.meta for c in asked] == [{"seed": 10}, {"seed": 11}]
    assert all(equivalence_key(c.text) is None for c in asked)  # labels never count as twins
    record = EvaluationRecord(fn="tanh(x)", task="t", model="m", recipe="grafs_search", seed=11)
    algorithm.tell(asked[1], record)
    state = json.loads(json.dumps(algorithm.state_dict()))
    restored = GrafsSeeds(seeds=3, first_seed=10, original="relu(x)", context={"task": "t"})
    restored.load_state_dict(state)
    assert restored.state_dict() == algorithm.state_dict() and not restored.done()
    assert restored.ask() == algorithm.ask() == Candidate(
        "grafs seed 12", parent="relu(x)", mutation="grafs", generation=2, meta={"seed": 12})
    assert restored.ask() is None and restored.functions() == ["tanh(x)"]
    assert restored.config() == {"algorithm": "grafs", "seeds": 3, "first_seed": 10,
                                 "seed": 10, "metric": "validation_accuracy",
                                 "original": "relu(x)", "context": {"task": "t"}}
    with pytest.raises(ValueError, match="did not ask"):
        restored.tell(Candidate("grafs seed 3", meta={"seed": 3}), record)


# --------------------------------------------------------------------------- process pool
@pytest.mark.slow  # 11-17 s; the pickled evaluator is tested above, the pool itself by
# tests/test_search_driver.py and tests/test_user_search.py (user-model workers)
def test_seeds_run_one_per_worker_on_a_process_pool(uninterrupted, tmp_path):
    _, expected, _ = uninterrupted
    store = tmp_path / "pool.db"
    result = run_grafs(store=store, eval_seeds=0, executor="local", workers=2,
                       log=lambda *a: None, **SMALL)
    assert [s["function"] for s in result["searches"]] == \
        [s["function"] for s in expected["searches"]]
    evaluations, counts, _ = _journal(store)
    assert counts["ok"] == 2
    pids = {ev.worker.split(":")[-1] for ev in evaluations}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # two spawned workers
