"""evaluate_activation: good functions train, bad ones fail with the right reason, nothing a
candidate does raises, and a seed makes a record reproducible.

Runs on the embedded MNIST-1D task with the ``quick`` recipe (full length for the good
functions, shortened elsewhere), a few seconds per evaluation on 2 CPU cores.
"""

import json
import math

import numpy as np
import pytest

from keras_actfn.backend import keras, tf
from keras_actfn.layers.custom import CustomActivation
from keras_actfn.train import Constant, EvaluationRecord, evaluate_activation, get_recipe


@pytest.fixture(scope="module")
def good():
    """The full quick recipe for two functions that should train well."""
    return {fn: evaluate_activation(fn, seed=0) for fn in ("relu", "x*sigmoid(x)")}


def test_good_functions_train(good):
    for fn, record in good.items():
        assert record.ok, record.summary()
        assert record.reason is None and record.message is None
        assert record.validation_accuracy > 0.75, (fn, record.validation_accuracy)
        assert record.train_accuracy > 0.75
        assert record.epochs_run == get_recipe("quick").epochs
        assert record.autoinit == "applied"
        assert (record.task, record.model, record.recipe) == ("mnist1d", "mnist1d_cnn", "quick")
        assert record.runtime_s > 0 and record.param_count > 0
        assert record.test_accuracy is None and record.test_loss is None
    assert good["x*sigmoid(x)"].fn == "x * sigmoid(x)"  # canonical text
    assert good["relu"].fn == "relu"


def test_record_history_and_counts(good):
    from keras_actfn.data import load_task
    from keras_actfn.models import build_model

    record = good["relu"]
    quick = get_recipe("quick")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert len(record.history[key]) == quick.epochs
    assert record.history["val_accuracy"][-1] == record.validation_accuracy
    assert record.history["lr"] == pytest.approx([quick.learning_rate(e)
                                                 for e in range(quick.epochs)])
    expected = build_model("mnist1d_cnn", "relu", task=load_task("mnist1d")).count_params()
    assert record.param_count == expected


def test_constant_function_fails_at_chance():
    # x/0 is 0 under the undefined -> 0 rule: a constant activation, nothing can learn
    record = evaluate_activation("div(x, zero(x))", epochs=3)
    assert record.failed and record.reason == "below_threshold"
    assert "chance" in record.message
    assert record.validation_accuracy == pytest.approx(0.1, abs=0.03)
    # AutoInit cannot scale a zero signal; training went on with the default initialization
    assert record.autoinit.startswith("failed: ")
    assert record.fitness() == -math.inf


def test_overflowing_function_fails_before_training():
    record = evaluate_activation("exp(exp(exp(x)))")
    assert record.failed and record.reason == "overflow"
    assert record.epochs_run == 0 and record.param_count is None
    assert "not finite" in record.message
    assert record.runtime_s < 5


def test_overflow_at_the_first_forward_pass():
    # finite on [-5, 5], but MNIST-1D's heavy-tailed pre-activations reach exp's overflow
    record = evaluate_activation("exp(cosh(x))", epochs=2)
    assert record.failed and record.reason == "overflow"
    assert "first training batch" in record.message


def test_diverging_training_stops_with_nan_loss():
    record = evaluate_activation("square(x)", epochs=3)
    assert record.failed and record.reason in ("nan_loss", "inf_loss")
    assert record.epochs_run == 1  # stopped at the first non-finite batch, not after 3 epochs
    assert "in epoch 1, by batch" in record.message
    data = json.loads(json.dumps(record.to_dict(), allow_nan=False))  # NaN -> null
    assert data["train_loss"] is None


def test_below_threshold_v():
    record = evaluate_activation("relu", epochs=1, threshold=0.99)
    assert record.failed and record.reason == "below_threshold"
    assert "threshold V = 0.99" in record.message
    assert record.recipe == "quick[epochs=1,threshold=0.99]"
    assert record.validation_accuracy is not None  # the metrics stay in the record


@pytest.mark.parametrize("text", ["foo(x)", "x +", "sigmoid(x", ""])
def test_invalid_function_text(text):
    record = evaluate_activation(text)
    assert record.failed and record.reason == "invalid_function"
    assert record.fn == text and record.epochs_run == 0


def test_exceptions_become_error_records():
    def broken_builder(activation, task):
        raise RuntimeError("boom")

    record = evaluate_activation("relu", model=broken_builder, epochs=1)
    assert record.failed and record.reason == "error"
    assert record.message == "RuntimeError: boom"
    assert "RuntimeError" in record.info["traceback"]
    assert record.model == "broken_builder"


def test_exception_inside_fit_becomes_an_error_record():
    def too_few_classes(activation, task):
        inputs = keras.Input(task.input_shape)
        x = keras.layers.Flatten()(inputs)
        x = keras.layers.Dense(8, activation=activation)(x)
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))

    record = evaluate_activation("relu", model=too_few_classes, epochs=1, autoinit=False)
    assert record.failed and record.reason == "error", record.summary()
    assert record.param_count is not None


def test_out_of_memory_is_recognized():
    def hungry(activation, task):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    record = evaluate_activation("relu", model=hungry, epochs=1)
    assert record.failed and record.reason == "out_of_memory"


def test_same_seed_same_record_other_seed_differs():
    a = evaluate_activation("x*sigmoid(x)", seed=3, epochs=3)
    b = evaluate_activation("x*sigmoid(x)", seed=3, epochs=3)
    c = evaluate_activation("x*sigmoid(x)", seed=4, epochs=3)
    for key in ("train_accuracy", "train_loss", "validation_accuracy", "validation_loss"):
        assert getattr(a, key) == pytest.approx(getattr(b, key), abs=1e-6), key
    assert a.history["loss"] == pytest.approx(b.history["loss"], abs=1e-6)
    assert a.train_loss != pytest.approx(c.train_loss, abs=1e-6)


def test_activation_kinds_and_test_split():
    factory = evaluate_activation(lambda: CustomActivation("x*sigmoid(x)"), epochs=2, test=True)
    assert factory.ok and factory.fn == "x * sigmoid(x)"
    assert 0 <= factory.test_accuracy <= 1 and factory.test_loss > 0
    from keras_actfn.expr import parse

    expr = evaluate_activation(parse("tanh(x)"), epochs=1)
    assert expr.ok and expr.fn == "tanh(x)"


def test_other_task_and_model():
    record = evaluate_activation("relu", task="digits", recipe="quick_mlp", epochs=3)
    assert record.ok, record.summary()
    assert (record.task, record.model) == ("digits", "mnist1d_mlp")
    assert record.validation_accuracy > 0.5


def test_subset_and_width_overrides():
    record = evaluate_activation("relu", epochs=1, subset=500, width=0.4)
    assert record.recipe == "quick[epochs=1,subset=train:500,width=0.4]"
    assert record.param_count < evaluate_activation("relu", epochs=1, subset=500).param_count


def test_argument_errors_raise_before_training():
    with pytest.raises(ValueError, match="unknown recipe"):
        evaluate_activation("relu", recipe="nope")
    with pytest.raises(ValueError, match="unknown task"):
        evaluate_activation("relu", task="nope")
    with pytest.raises(ValueError, match="unknown model"):
        evaluate_activation("relu", model="nope")
    with pytest.raises(ValueError, match="unknown recipe field"):
        evaluate_activation("relu", learning_rat=0.1)
    with pytest.raises(ValueError, match="augments images"):
        evaluate_activation("relu", augment="flip+pad4")
    with pytest.raises(TypeError, match="factory"):
        evaluate_activation(CustomActivation("x"))


def test_l2_and_decoupled_weight_decay():
    from keras_actfn.train.evaluate import _apply_l2, _make_optimizer

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, kernel_regularizer="l2")(
        keras.layers.Dense(5)(inputs)))
    _apply_l2(model, 0.5)
    kernels = [v for v in model.trainable_weights if v.name == "kernel"]
    expected = sum(0.5 * float(np.sum(np.square(v.numpy()))) for v in kernels)
    assert len(model.losses) == 2
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    _apply_l2(model, 0.0)
    assert len(model.losses) == 0

    recipe = get_recipe("quick").replace(optimizer="adamw", weight_decay=0.1,
                                         schedule=Constant(1e-3))
    opt = _make_optimizer(recipe, model, steps_per_epoch=3)
    assert isinstance(opt, keras.optimizers.AdamW)
    opt.build(model.trainable_weights)
    biases = [v for v in model.trainable_weights if v.name == "bias"]
    assert all(not opt._use_weight_decay(v) for v in biases)
    assert all(opt._use_weight_decay(v) for v in kernels)


def test_record_json_round_trip(good):
    for record in good.values():
        data = json.loads(json.dumps(record.to_dict(), allow_nan=False))
        again = EvaluationRecord.from_dict(data)
        assert again == record
    failed = EvaluationRecord(fn="x", task="t", model="m", recipe="r", seed=0,
                              train_loss=float("nan"), validation_loss=float("inf"),
                              history={"loss": [1.0, float("nan")]})
    failed.fail("nan_loss", "training loss became nan")
    data = json.loads(json.dumps(failed.to_dict(), allow_nan=False))
    assert data["train_loss"] is None and data["validation_loss"] is None
    assert data["history"]["loss"] == [1.0, None]
    assert EvaluationRecord.from_dict(data).reason == "nan_loss"
    with pytest.raises(ValueError, match="unknown EvaluationRecord field"):
        EvaluationRecord.from_dict({**data, "colour": "blue"})


def test_fitness_and_record_checks():
    r = EvaluationRecord(fn="x", task="t", model="m", recipe="r", seed=0,
                         validation_accuracy=0.8, validation_loss=0.5)
    assert r.fitness() == 0.8
    assert r.fitness("validation_loss") == -0.5
    assert r.fitness("test_accuracy") == -math.inf
    with pytest.raises(ValueError, match="minimized or maximized"):
        r.fitness("speed")
    # any name Keras logs: history's last value, direction inferred or prefixed
    r.history = {"val_auc": [0.6, 0.7], "val_mae": [0.4, 0.3]}
    assert r.fitness("val_auc") == 0.7 and r.fitness("val_mae") == -0.3
    assert r.fitness("max:val_mae") == 0.3 and r.fitness("val_accuracy") == 0.8
    assert r.fitness("val_precision") == -math.inf  # not logged
    with pytest.raises(ValueError, match="reason"):
        EvaluationRecord(fn="x", task="t", model="m", recipe="r", seed=0, status="failed")
    with pytest.raises(ValueError, match="unknown failure reason"):
        r.fail("bad_luck")
    assert "val_acc 0.8000" in r.summary()
