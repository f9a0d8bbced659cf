"""ActivationSearch on a user's own model and data (not the zoo's): the API, the data
sources, resume and refusal, and every bad input named before anything trains."""

import math
import re
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_actfn as ka
from keras_actfn.backend import keras, tf
from keras_actfn.data.sources import resolve_data
from keras_actfn.search.engine.store import Store, StoreConfigError
from keras_actfn.train.user_model import ORIGINAL, UserEvaluator, UserInputError, UserModel

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from user_models import (assert_reloads_with, custom_functions, make_data,  # noqa: E402
                         make_model)

FIT = {"epochs": 1, "batch_size": 64}


@pytest.fixture(scope="module")
def data():
    x, y = make_data(480)
    return x[:384], y[:384], x[384:], y[384:]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data):
    """The default test search (PANGAEA, budget 4), run once without interruption: the
    reference of the resume test and the store the mismatch test reopens."""
    x, y, xv, yv = data
    store = tmp_path_factory.mktemp("uninterrupted") / "s.db"
    search = _search(make_model(), store)
    search.search(x, y, validation_data=(xv, yv), **FIT)
    return store, [ev.text for ev in search.results()]


def _search(model, store, method="pangaea", **options):
    options.setdefault("final_seeds", 0)
    if method in ("pangaea", "pangaea-nonparametric"):
        options.setdefault("population", 2)
        options.setdefault("sample", 2)
    return ka.ActivationSearch(model, method=method, budget=4, store=store, progress=False,
                               **options)


# ------------------------------------------------------------------ the evaluator itself
def test_original_candidate_trains_exactly_like_a_bare_fit(data):
    """The evaluator's run of the user's model (own activations, own initializers) gives
    the history of a bare clone + compile + fit with the same seed and batches."""
    x, y, xv, yv = data
    model = make_model()
    source = resolve_data(x, y, validation_data=(xv, yv), input_shape=model.inputs[0].shape)
    evaluator = UserEvaluator(UserModel(model), source, epochs=2, batch_size=64,
                              objective="val_accuracy", autoinit=False)
    record = evaluator(ORIGINAL, seed=3)
    assert record.ok, record.message

    keras.utils.set_random_seed(3)
    reference = keras.models.clone_model(model)
    reference.compile(optimizer=keras.optimizers.Adam(0.01),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = reference.fit(source.train.dataset(64, shuffle=True, seed=3),
                            validation_data=source.validation.dataset(64), epochs=2,
                            verbose=0, shuffle=False).history
    np.testing.assert_allclose(record.history["val_accuracy"], history["val_accuracy"],
                               atol=1e-6)
    np.testing.assert_allclose(record.history["loss"], history["loss"], rtol=1e-5)
    assert record.validation_accuracy == pytest.approx(history["val_accuracy"][-1])
    assert record.fitness("val_accuracy") == pytest.approx(history["val_accuracy"][-1])


def test_candidate_replaces_hidden_activations_only(data):
    x, y, xv, yv = data
    model = make_model()
    source = resolve_data(x, y, validation_data=(xv, yv), input_shape=model.inputs[0].shape)
    evaluator = UserEvaluator(UserModel(model), source, objective="val_loss")
    net, status = evaluator.build("x*sigmoid(x)", seed=0)
    assert status == "applied"
    custom = [layer.activation for layer in net.layers
              if isinstance(getattr(layer, "activation", None), ka.CustomActivation)]
    assert len(custom) == 2 and all(str(c.fn) == "x * sigmoid(x)" for c in custom)
    assert net.layers[-1].activation is keras.activations.softmax or \
        getattr(net.layers[-1].activation, "__name__", "") == "softmax"
    # compiled like the user's model: a fresh optimizer of the same config
    assert type(net.optimizer).__name__ == "Adam"
    assert float(np.asarray(net.optimizer.learning_rate)) == pytest.approx(0.01)
    # AutoInit: the first layer's pre-activations on the training data have variance ~1
    conv = net.layers[1]
    kernel, bias = conv.kernel.numpy(), conv.bias.numpy()
    windows = np.stack([x[:, k:k + 22, :] for k in range(3)], axis=2)  # (n, 22, 3, 1)
    pre = np.einsum("ntki,kic->ntc", windows, kernel) + bias
    assert np.var(pre) == pytest.approx(1.0, rel=0.2)


# ------------------------------------------------------------------ searches, every method
@pytest.mark.parametrize("method,options", [
    ("pangaea", {}),
    ("pangaea-random", {}),
    ("pangaea-nonparametric", {}),
    ("cafe", {"population": 4, "newcomers": 1, "elite": 1}),
    ("cafe-random", {}),
    ("aquasurf", {"fim_limit": 12, "fim_batch": 32}),
])
def test_every_method_searches_the_user_model(tmp_path, data, method, options):
    x, y, xv, yv = data
    store = tmp_path / "s.db"
    search = _search(make_model(), store, method, **options)
    search.search(x, y, validation_data=(xv, yv), **FIT)
    results = search.results()
    assert len(results) == 4
    ok = [ev.record for ev in results if ev.record.ok]
    assert ok, str(results)
    for record in ok:
        value = record.fitness("val_accuracy")
        assert 0.0 <= value <= 1.0 and value == record.history["val_accuracy"][-1]
        assert record.model == "user_net" and record.epochs_run == 1
    assert search.best_function == search.summary.best[0].text
    assert search.summary.best[0].record.validation_accuracy == max(
        r.validation_accuracy for r in ok)
    ka.parse(search.best_function)
    assert "| 4 " not in str(results) and "ok" in str(results)
    if method == "aquasurf":
        # FIM features of the user's own model, computed once per function, in the store
        from keras_actfn.search.aquasurf.pool import UserFimFeatures

        kind = UserFimFeatures(search.evaluator, batch=32).kind
        assert "user:" in kind
        with Store(store) as journal:
            cached = journal.features(kind)
        assert len(cached) == 12
        valid = [entry for entry in cached.values() if entry["valid"]]
        # one block per weighted layer of the user's model, its weight count as in Keras
        weighted = [layer for layer in make_model().layers if layer.weights]
        sizes = [int(layer.count_params()) for layer in weighted]
        assert valid and all([n for _, n in entry["layers"]] == sizes for entry in valid)


def test_final_comparison_best_model_and_plot(tmp_path, data):
    x, y, xv, yv = data
    search = _search(make_model(), tmp_path / "s.db", final_top=2, final_seeds=2)
    search.search(x, y, validation_data=(xv, yv), test_data=(xv, yv), **FIT)
    texts = [row[0] for row in search.comparison]
    assert ORIGINAL in texts and len(texts) == 3
    final = search.results("final")
    assert len(final) == 6 and all(ev.record.test_accuracy is not None
                                   for ev in final if ev.record.ok)
    # the table's means are the means of the journaled final runs
    for text, mean, _, n, _ in search.comparison:
        values = [ev.record.validation_accuracy for ev in final
                  if ev.text == text and ev.record.ok]
        if values:
            assert mean == pytest.approx(np.mean(values)) and n == len(values)
    assert "original activation (baseline)" in search.format_comparison()
    best = search.best_model()
    assert_reloads_with(best, search.best_function, tmp_path / "best.keras", xv[:8])
    png = search.plot(str(tmp_path / "progress.png"))
    assert os.path.getsize(png) > 1000


# ------------------------------------------------------------------ streaming data
def _counting_dataset(n, counter, batch=32):
    x, y = make_data(n, seed=1)

    def gen():
        for i in range(n):
            counter[0] += 1
            yield x[i], y[i]

    spec = (tf.TensorSpec((24, 1), tf.float32), tf.TensorSpec((), tf.int32))
    return tf.data.Dataset.from_generator(gen, output_signature=spec).batch(batch)


def test_tf_data_source_is_streamed_not_materialized(tmp_path, data):
    _, _, xv, yv = data
    counter = [0]
    ds = _counting_dataset(100_000, counter)
    assert resolve_data(ds, input_shape=(None, 24, 1)) and counter[0] == 0
    search = _search(make_model(), tmp_path / "s.db")
    search.search(ds, validation_data=(xv, yv), epochs=1, steps_per_epoch=3)
    assert len(search.results()) == 4
    # AutoInit's input moments (4,096 examples), 4 candidates x 3 steps x 32, a few batches
    # for the checks and the fingerprint, prefetching: nowhere near the 100,000 examples a
    # materialized copy would read
    assert 4096 < counter[0] < 8000, counter[0]


def test_unbatched_dataset_is_batched_with_batch_size(data):
    x, y, _, _ = data
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    source = resolve_data(ds, input_shape=(None, 24, 1))
    assert not source.train.batched
    first = next(iter(source.train.dataset(50)))
    assert tuple(first[0].shape) == (50, 24, 1)


def test_pool_workers_get_model_and_data_once_as_files(tmp_path, data):
    x, y, xv, yv = data
    store = tmp_path / "pool.db"
    search = _search(make_model(), store, executor="pool", workers=2)
    search.search(x, y, validation_data=(xv, yv), **FIT)
    results = search.results()
    assert len(results) == 4 and sum(ev.record.ok for ev in results) >= 1
    workers = {ev.worker for ev in results if ev.worker != "reused"}
    assert len(workers) >= 1 and all(str(os.getpid()) not in w for w in workers)
    files = sorted(os.listdir(tmp_path / "pool_data"))
    assert [f.split("_")[0] for f in files] == ["model", "train", "train", "validation",
                                                "validation"]
    # what a worker receives: paths, not arrays or model bytes
    evaluator = search.evaluator
    assert evaluator.model.data is None and evaluator.data.train._arrays is None
    assert len(__import__("pickle").dumps(evaluator)) < 20_000


# ------------------------------------------------------------------ resume and refusal
def test_sigkill_then_resume_repeats_nothing(tmp_path, data, uninterrupted):
    store = tmp_path / "killed.db"
    child = subprocess.Popen([sys.executable, str(HERE / "user_search_child.py"), str(store),
                              "--die-after", "2"], stdout=subprocess.PIPE, text=True,
                             cwd=HERE.parent)
    out, _ = child.communicate(timeout=600)
    assert child.returncode == -signal.SIGKILL, out
    with Store(store) as journal:
        journal.select_run("search")
        before = [(ev.id, ev.text, ev.record.to_dict()) for ev in journal.results()]
    assert len(before) == 2
    x, y, xv, yv = data
    resumed = _search(make_model(), store)
    resumed.search(x, y, validation_data=(xv, yv), **FIT)
    after = resumed.results()
    assert len(after) == 4
    assert [(ev.id, ev.text, ev.record.to_dict()) for ev in after[:2]] == before
    # the same sequence as an uninterrupted run (in-process search is deterministic)
    assert [ev.text for ev in after] == uninterrupted[1]


def test_store_refuses_another_model_or_data(data, uninterrupted):
    x, y, xv, yv = data
    store = uninterrupted[0]  # refused before anything is written to it
    with pytest.raises(StoreConfigError, match="model"):
        _search(make_model(width=12), store).search(x, y, validation_data=(xv, yv), **FIT)
    x2 = x.copy()
    x2[0, 0, 0] += 1.0
    with pytest.raises(StoreConfigError, match="data"):
        _search(make_model(), store).search(x2, y, validation_data=(xv, yv), **FIT)
    with pytest.raises(StoreConfigError, match="epochs"):
        _search(make_model(), store).search(x, y, validation_data=(xv, yv), epochs=2,
                                            batch_size=64)


# ------------------------------------------------------------------ bad input
def _bad(tmp_path, data, match, model=None, **search_args):
    x, y, xv, yv = data
    store = tmp_path / "bad.db"
    args = {"x": x, "y": y, "validation_data": (xv, yv), **FIT, **search_args}
    with pytest.raises(UserInputError, match=match):
        _search(model if model is not None else make_model(), store).search(**args)
    assert not store.exists(), "a refused search must write nothing"


def test_bad_model_file(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip file")
    with pytest.raises(UserInputError, match="cannot load model file .*broken.keras"):
        ka.ActivationSearch(str(path))
    with pytest.raises(UserInputError, match="no such model file"):
        ka.ActivationSearch(str(tmp_path / "missing.keras"))


def test_uncompiled_model_says_which_argument(tmp_path, data):
    with pytest.raises(UserInputError, match="not compiled with a loss.*loss="):
        ka.ActivationSearch(make_model(compile=False))
    search = ka.ActivationSearch(make_model(compile=False), loss="sparse_categorical_"
                                 "crossentropy", metrics=["accuracy"], budget=1,
                                 final_seeds=0, progress=False, store=tmp_path / "s.db")
    assert search.user_model.compile_config["loss"] == "sparse_categorical_crossentropy"


def test_input_shape_mismatch_names_both_shapes(tmp_path, data):
    x, y, xv, yv = data
    _bad(tmp_path, data, r"inputs have shape \(batch, 20, 1\) but the model expects "
         r"\(batch, 24, 1\)", x=x[:, :20], validation_data=(xv[:, :20], yv))


def test_labels_that_do_not_fit_the_output(tmp_path, data):
    x, y, xv, yv = data
    _bad(tmp_path, data, r"labels .*output of shape \(batch, 4\)", y=y + 10)
    # the cause as TensorFlow states it, without its op-dispatch wrapping
    with pytest.raises(UserInputError) as info:
        _search(make_model(), tmp_path / "labels.db").search(x, y + 10, validation_data=(xv, yv),
                                                             **FIT)
    assert "Received a label value of" in str(info.value)
    assert "function_node" not in str(info.value) and "[Op:" not in str(info.value)
    _bad(tmp_path, data, r"labels of shape \(batch, 3\)", y=np.zeros((len(y), 3), "int32"))


def test_model_with_no_activation_to_replace(tmp_path, data):
    _bad(tmp_path, data, "no hidden activation to replace.*dense_.*softmax",
         model=make_model(hidden=None, name="linear_net"))


def test_objective_keras_does_not_log(tmp_path, data):
    x, y, xv, yv = data
    store = tmp_path / "bad.db"
    search = ka.ActivationSearch(make_model(), objective="val_auc", store=store,
                                 progress=False)
    with pytest.raises(UserInputError, match="'val_auc' is not a metric.*val_accuracy"):
        search.search(x, y, validation_data=(xv, yv), **FIT)
    search = ka.ActivationSearch(make_model(), objective="val_accuracy", store=store,
                                 progress=False)
    with pytest.raises(UserInputError, match="no validation data"):
        search.search(x, y, **FIT)
    assert not store.exists()
    with pytest.raises(ValueError, match="minimized or maximized"):
        ka.ActivationSearch(make_model(), objective="val_speed")


def test_default_objective_follows_what_the_model_logs(tmp_path, data):
    x, y, xv, yv = data
    source = resolve_data(x, y, validation_data=(xv, yv), input_shape=(None, 24, 1))
    classifier = UserEvaluator(UserModel(make_model()), source, objective=None)
    classifier.check()
    assert classifier.objective == "val_accuracy"
    regressor = make_model(name="regressor")
    regressor.compile(optimizer="adam", loss="mse")  # logs no accuracy
    reg_data = resolve_data(x, np.eye(4, dtype="float32")[y], validation_data=(
        xv, np.eye(4, dtype="float32")[yv]), input_shape=(None, 24, 1))
    evaluator = UserEvaluator(UserModel(regressor), reg_data, objective=None)
    assert "val_loss" in evaluator.check() and evaluator.objective == "val_loss"
    record = evaluator("tanh(x)", seed=0)
    assert record.ok and record.fitness("val_loss") == -record.validation_loss < 0


def test_bad_settings(data):
    with pytest.raises(UserInputError, match="unknown method 'evolution'"):
        ka.ActivationSearch(make_model(), method="evolution")
    with pytest.raises(UserInputError, match="budget must be an integer >= 1"):
        ka.ActivationSearch(make_model(), budget=0)
    x, y, _, _ = data
    with pytest.raises(UserInputError, match="epochs must be a positive integer"):
        ka.ActivationSearch(make_model(), progress=False).search(x, y, epochs=0)
    with pytest.raises(UserInputError, match="validation_split must be in"):
        ka.ActivationSearch(make_model(), progress=False).search(x, y, validation_split=1.5)


def test_failing_candidate_is_a_record_not_a_crash(data):
    x, y, xv, yv = data
    model = make_model()
    source = resolve_data(x, y, validation_data=(xv, yv), input_shape=model.inputs[0].shape)
    evaluator = UserEvaluator(UserModel(model), source, objective="val_accuracy")
    assert evaluator("exp(exp(exp(x)))", seed=0).reason == "overflow"
    assert evaluator("x +* 2", seed=0).reason == "invalid_function"
    assert math.isinf(evaluator("x +* 2", seed=0).fitness("val_accuracy"))


# ------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def files(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("cli")
    model_path, data_path = root / "my_model.keras", root / "data.npz"
    make_model().save(model_path)
    x, y, xv, yv = data
    np.savez(data_path, x_train=x, y_train=y, x_val=xv, y_val=yv)
    return str(model_path), str(data_path)


_SLOW = pytest.mark.slow  # the API test of the same method covers the search; one CLI
# run per kind of method (evolution, surrogate, gradient) stays in the default run


@pytest.mark.parametrize("method,flags", [
    ("pangaea", ["--budget", "4", "--population", "2", "--sample", "2"]),
    pytest.param("pangaea-random", ["--budget", "4"], marks=_SLOW),
    pytest.param("pangaea-nonparametric", ["--budget", "4", "--population", "2", "--sample",
                                           "2"], marks=_SLOW),
    pytest.param("cafe", ["--budget", "4", "--population", "4", "--newcomers", "1",
                          "--elite", "1"], marks=_SLOW),
    pytest.param("cafe-random", ["--budget", "4"], marks=_SLOW),
    ("aquasurf", ["--budget", "4", "--fim-limit", "24"]),
    ("grafs", ["--seeds", "1", "--warm-start", "1"]),  # seeds: the API test below
])
def test_cli_searches_a_model_file(tmp_path, files, capsys, method, flags):
    from keras_actfn.cli import main

    model_path, data_path = files
    store, out = tmp_path / "s.db", tmp_path / "best.keras"
    epochs = "2" if method == "grafs" else "1"
    code = main(["search", method, "--model", model_path, "--data", data_path,
                 "--epochs", epochs, "--batch-size", "64", "--final-seeds", "1",
                 "--final-top", "1", "--store", str(store), "--out", str(out), "-q", *flags])
    text = capsys.readouterr()
    assert code == 0, text.err[-2000:]
    best = re.search(r"best function: (.+)", text.out).group(1)
    with Store(store) as journal:
        journal.select_run("search")
        assert len(journal.results()) == (1 if method == "grafs" else 4)
        config = journal.run_config()["evaluator"]
        assert config.get("kind") == "user_model" or "grafs" in str(config)
        journal.select_run("final")
        assert {ev.text for ev in journal.results()} == {ORIGINAL, best}
    assert custom_functions(keras.models.load_model(out)) == {best}


def test_cli_bad_user_input_is_one_line(tmp_path, files, capsys):
    from keras_actfn.cli import main

    model_path, data_path = files
    store = tmp_path / "s.db"
    base = ["search", "pangaea", "--store", str(store), "-q"]
    cases = [
        (["--model", model_path], "needs --data"),
        (["--model", model_path, "--data", data_path, "--task", "digits"], "--task apply to "
                                                                           "zoo searches"),
        (["--model", model_path, "--data", str(tmp_path / "none.npz")], "no such file"),
        (["--model", str(tmp_path / "x.keras"), "--data", data_path], "no such model file"),
        (["--model", model_path, "--data", data_path, "--objective", "val_auc"],
         "'val_auc' is not a metric Keras logs"),
        (["--out", "x.keras"], "--out apply to a search of your own model"),
        (["--seeds", "2"], r"unrecognized arguments: --seeds \(a flag of: grafs\)"),
        (["--budget", "0"], "must be a positive integer"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        # one line (argparse's own errors print the usage above it); never a traceback
        assert re.search(message, err[-1]) and not any("Traceback" in e for e in err), \
            (extra, err)
        assert len(err) == 1 or err[0].startswith("usage:"), err
    assert not store.exists()


def test_grafs_searches_the_user_model_through_the_store(tmp_path, data):
    x, y, xv, yv = data
    store = tmp_path / "grafs.db"
    search = ka.ActivationSearch(make_model(), method="grafs", budget=2, store=store,
                                 progress=False, final_top=1, final_seeds=1,
                                 warm_start_epochs=1)
    search.search(x, y, validation_data=(xv, yv), epochs=2, batch_size=64)
    rows = search.results()
    assert [ev.text for ev in rows] == ["grafs seed 0", "grafs seed 1"]
    found = [ev.record.fn for ev in rows]
    assert all(ev.record.ok for ev in rows) and search._found == list(dict.fromkeys(found))
    for text in found:
        ka.parse(text)
    final = {ev.text for ev in search.results("final")}
    assert final == {ORIGINAL, found[0]}
    assert search.best_function in found
    assert os.path.isdir(str(tmp_path / "grafs_grafs") + "/seed0")
    # a second call resumes: nothing searched or trained again
    again = ka.ActivationSearch(make_model(), method="grafs", budget=2, store=store,
                                progress=False, final_top=1, final_seeds=1,
                                warm_start_epochs=1)
    again.search(x, y, validation_data=(xv, yv), epochs=2, batch_size=64)
    assert again.summary.counts["evaluated"] == 2
    assert [ev.record.to_dict() for ev in again.results()] == \
        [ev.record.to_dict() for ev in rows]
    assert [(ev.id, ev.record.to_dict()) for ev in again.results("final")] == \
        [(ev.id, ev.record.to_dict()) for ev in search.results("final")]
    with pytest.raises(UserInputError, match="grafs does not take population"):
        ka.ActivationSearch(make_model(), method="grafs", population=3)


def test_recipe_replaces_the_optimizer_keeps_loss_and_metrics(tmp_path, data):
    from keras_actfn.train import get_recipe

    x, y, xv, yv = data
    model = make_model()
    source = resolve_data(x, y, validation_data=(xv, yv), input_shape=model.inputs[0].shape)
    evaluator = UserEvaluator(UserModel(model), source, epochs=2, batch_size=64,
                              objective="val_accuracy", recipe="quick")
    net, _ = evaluator.build("x*sigmoid(x)", seed=0)
    recipe = get_recipe("quick").scaled(epochs=2)
    assert type(net.optimizer).__name__.lower() == recipe.optimizer
    # the schedule's rate at the first step and after the first epoch, as the recipe says
    schedule = net.optimizer.learning_rate if callable(net.optimizer.learning_rate) else \
        net.optimizer._learning_rate
    assert float(schedule(0)) == pytest.approx(float(recipe.schedule(0)), rel=1e-5)
    record = evaluator("x*sigmoid(x)", seed=0)
    assert record.ok and record.recipe.startswith("quick(") and "val_accuracy" in \
        record.history
    with pytest.raises(UserInputError, match="unknown recipe"):
        ka.ActivationSearch(make_model(), recipe="nope")


def test_grafs_refuses_a_stream_before_writing(tmp_path, data):
    _, _, xv, yv = data
    x, y = make_data(64, seed=2)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    store = tmp_path / "g.db"
    search = ka.ActivationSearch(make_model(), method="grafs", budget=1, store=store,
                                 progress=False)
    with pytest.raises(UserInputError, match="GRAFS needs the training data as arrays"):
        search.search(ds, validation_data=(xv, yv), epochs=2)
    assert not store.exists()


def test_cli_store_of_another_search_is_one_line(tmp_path, files, capsys):
    from keras_actfn.cli import main

    model_path, data_path = files
    store = str(tmp_path / "s.db")
    base = ["search", "pangaea-random", "--model", model_path, "--data", data_path,
            "--budget", "1", "--final-seeds", "0", "--batch-size", "64", "--store", store,
            "-q"]
    assert main(base) in (0, 1)  # 1: its one candidate failed (a result, not an error)
    capsys.readouterr()
    assert main(base[:-1] + ["--epochs", "2", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differing: evaluator.epochs" in err[0] and "--store" in err[0]


def test_missing_ray_is_said_before_any_work(tmp_path, monkeypatch, files, capsys):
    from keras_actfn.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UserInputError, match=r"pip install 'keras_actfn\[ray\]'"):
        ka.ActivationSearch(make_model(), executor="ray")
    model_path, data_path = files
    store = tmp_path / "r.db"
    assert main(["search", "pangaea", "--model", model_path, "--data", data_path,
                 "--executor", "ray", "--store", str(store)]) == 2
    assert "needs Ray" in capsys.readouterr().err and not store.exists()
