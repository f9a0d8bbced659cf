"""GRAFS search loop on the MNIST-1D CNN with a tiny subset: a search interrupted and
resumed from its checkpoint (and what it finds), re-specialization, augmentation."""

import json

import numpy as np
import pytest

from keras_actfn.backend import keras
from keras_actfn.data import load_task
from keras_actfn.expr import parse
from keras_actfn.layers import CustomActivation
from keras_actfn.models import mnist1d_cnn
from keras_actfn.search.grafs import SearchCell
from keras_actfn.search.grafs.search import grafs_search, split_search_data
from keras_actfn.surgery import replace_activations


@pytest.fixture(scope="module")
def task():
    return load_task("mnist1d").subset(train=320)


def test_split_is_75_25_and_disjoint():
    x = np.arange(100).reshape(100, 1)
    (xt, yt), (xv, yv) = split_search_data(x, x[:, 0], 0.75, seed=0)
    assert len(xt) == 75 and len(xv) == 25
    assert set(xt[:, 0]).isdisjoint(xv[:, 0]) and set(xt[:, 0]) | set(xv[:, 0]) == set(range(100))
    np.testing.assert_array_equal(xt[:, 0], yt)


# the retrace is GrafsSearch's own tf.function logic; the search loop under tf_keras is
# traced by the checkpoint test
@pytest.mark.single_backend
def test_respecialize_retraces_with_only_the_active_operators(task):
    from keras_actfn.models import mnist1d_mlp

    result = grafs_search(mnist1d_mlp(), task, epochs=3, warm_start_epochs=1, batch_size=32,
                          seed=1, respecialize=0.0, verbose=False)
    # all 104 drops at epoch 2: the loop is traced again, computing one operator per block
    assert result.traces == 2
    assert result.history[1]["trace_seconds"] > 0 and result.history[2]["trace_seconds"] == 0
    assert [len(b) for b in result.parameters.computed][1:] == [1, 1, 1]
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["valid_loss"])
               for h in result.history)
    parse(result.function)


@pytest.mark.single_backend   # the data pipeline; the search under tf_keras: the checkpoint test
def test_augment_reaches_both_parts_of_the_split(task):
    # an "augmentation" that relabels every example as class 0: when it is applied to the
    # search batches, both losses fall far below chance (ln 10 = 2.30) within two epochs,
    # which the unaugmented, 10-class search cannot do
    import tensorflow as tf

    def to_class_zero(x, y, seed):
        return x, tf.zeros_like(y)

    # (a weight learning rate of 1e-2 lets the last layer's bias alone learn the constant)
    kwargs = dict(epochs=2, warm_start_epochs=1, batch_size=32, seed=0, verbose=False,
                  learning_rate=1e-2)
    relabelled = grafs_search(mnist1d_cnn(), task, augment=to_class_zero, **kwargs)
    plain = grafs_search(mnist1d_cnn(), task, **kwargs)
    last, base = relabelled.history[-1], plain.history[-1]
    assert last["train_loss"] < 0.3 and last["valid_loss"] < 0.3, last
    assert base["train_loss"] > 1.0 and base["valid_loss"] > 1.0, base


def test_augment_specs(task):
    from keras_actfn.data.augment import TrivialAugment
    from keras_actfn.search.grafs.search import _augmentation

    assert _augmentation(None, task) is None and _augmentation("none", task) is None
    with pytest.raises(ValueError, match="augments images"):
        _augmentation("trivialaugment", task)  # MNIST-1D is not an image task
    image = type("T", (), {"input_shape": (8, 8, 3), "name": "img", "preprocess": None,
                           "augment": None})()
    fn = _augmentation("TrivialAugment", image)
    assert isinstance(fn, TrivialAugment)
    with pytest.raises(ValueError, match="unknown augmentation"):
        _augmentation("mixup", image)


def test_search_checkpoints_resumes_and_exports(task, tmp_path):
    """A 3-epoch search on the MNIST-1D CNN interrupted after epoch 2 and resumed from its
    checkpoint: the schedule, the traces, the saved state and the optimizer's state, and
    the result of the whole run (what every search gives: :func:`_check_result`)."""
    class Interrupt(Exception):
        pass

    first_lines = []

    def stop_after_epoch_2(line):
        first_lines.append(line)
        if line.startswith("GRAFS epoch 2/"):
            raise Interrupt

    kwargs = dict(epochs=3, warm_start_epochs=1, batch_size=32, seed=0, respecialize=1.0,
                  checkpoint=tmp_path / "run")
    # the base model's weights come from Keras's global generator: seeded, so the function
    # found (and whether it stays finite in the untrained base below) does not depend on
    # which tests ran before in this process
    keras.utils.set_random_seed(0)
    base = mnist1d_cnn()
    with pytest.raises(Interrupt):
        grafs_search(base, task, log=stop_after_epoch_2, **kwargs)
    assert len(first_lines) == 2 and "left [23, 23, 23, 23, 9, 9]" in first_lines[0]
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["epoch"] == 2 and [len(a) for a in state["active"]] == [1] * 6
    steps = int(len(task.arrays("train")[0]) * 0.75) // 32
    assert state["history"][-1]["updates"] == 2 * steps
    # the warm start's end and the drops change tensors and variables, never the trace
    assert state["history"][0]["trace_seconds"] > 0
    assert state["history"][1]["trace_seconds"] == 0

    lines = []
    resumed = grafs_search(mnist1d_cnn(), task, log=lines.append, **kwargs)
    assert lines[0].startswith("GRAFS: resumed") and len(lines) == 2  # the note + epoch 3
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert [h["dropped"] for h in resumed.history] == [0, 104, 0]
    assert resumed.history[:2] == [{**h, "weights": resumed.history[i]["weights"]}
                                   for i, h in enumerate(state["history"])]
    # the optimizer's state came back: this call made one epoch of updates, the count is 3
    assert resumed.history[-1]["updates"] == 3 * steps
    assert resumed.parameters.operators_left() == [1] * 6
    assert [h["phase"] for h in resumed.history] == ["warm", "search", "search"]
    # one trace per run (the interrupted one's and this one's), none at the drops
    assert resumed.traces == 2 and resumed.history[2]["trace_seconds"] > 0
    _check_result(resumed, base, task)
    # a finished search returns its saved result without training
    again = grafs_search(mnist1d_cnn(), task, log=lines.append, **kwargs)
    assert again.function == resumed.function and again.history[-1]["epoch"] == 3
    np.testing.assert_array_equal(again.parameters.unary_logits.numpy(),
                                  resumed.parameters.unary_logits.numpy())
    # other settings are refused, naming what differs
    with pytest.raises(ValueError, match="learning_rate: saved 0.001, now 0.5"):
        grafs_search(mnist1d_cnn(), task, learning_rate=0.5, **kwargs)
    # a damaged TensorFlow checkpoint is one CheckpointError naming it (issue 17, item 7)
    from keras_actfn.search.grafs.search import CheckpointError

    index = tmp_path / "run" / f"{state_now(tmp_path)['checkpoint']}.index"
    index.write_bytes(b"not a checkpoint index")
    with pytest.raises(CheckpointError, match=r"cannot restore the GRAFS checkpoint .*"
                                              r"epoch-3'.*delete the folder"):
        grafs_search(mnist1d_cnn(), task, **kwargs)


def state_now(tmp_path):
    return json.loads((tmp_path / "run" / "state.json").read_text())


def _check_result(result, base, task):
    """What every finished search gives: finite losses, operator weights on the simplex,
    trained distribution parameters shared by all cells, and an exported function that is
    the argmax cell simplified and drops into the original model ``base``."""
    for h in result.history:
        assert np.isfinite(h["train_loss"]) and np.isfinite(h["valid_loss"])
        for w in h["weights"]:
            assert np.sum(w) == pytest.approx(1.0, abs=1e-5)
    # the cell's distribution parameters were trained (moved away from their start near 0)
    assert np.max(np.abs(result.parameters.unary_logits.numpy())) > 0.01
    cells = [l for l in result.model.layers if isinstance(l, SearchCell)]
    assert len(cells) == 3 and all(c.parameters is result.parameters for c in cells)
    fn = parse(result.function)
    assert str(fn) == result.function
    # the export is the argmax cell simplified without folding: the same values everywhere
    from keras_actfn.expr import evaluate
    from keras_actfn.expr.simplify import simplify
    from keras_actfn.search.grafs import discretize

    cell = discretize(result.parameters)
    assert fn == simplify(cell, fold=False) and fn.node_count <= cell.node_count
    grid = np.linspace(-6, 6, 1201)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(evaluate(fn, grid), evaluate(cell, grid))
    parse(result.function_clipped)
    # the original model is untouched and the found function drops into it
    final = replace_activations(base, result.function, targets="relu")
    x = task.arrays("test")[0][:8].astype("float32")
    out = final(x).numpy()
    assert out.shape == (8, 10) and np.all(np.isfinite(out))
    assert sum(isinstance(l, CustomActivation) for l in final.layers) == 3
