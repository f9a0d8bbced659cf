"""GRAFS search loop: a smoke run on the MNIST-1D CNN with a tiny subset."""

import numpy as np
import pytest

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


def test_smoke_search_on_mnist1d_cnn(task):
    lines = []
    base = mnist1d_cnn()
    result = grafs_search(base, task, epochs=3, warm_start_epochs=1, batch_size=32, seed=0,
                          respecialize=1.0, log=lines.append)
    # the warm start's end and the drops change tensors and variables, never the trace
    assert result.traces == 1
    assert result.history[0]["trace_seconds"] > 0 and result.history[1]["trace_seconds"] == 0
    assert len(lines) == 3 and "left [23, 23, 23, 23, 9, 9]" in lines[0]
    assert [h["phase"] for h in result.history] == ["warm", "search", "search"]
    # S = 2 E0 = 2: every one of the D - 6 = 104 drops happens at epoch 2 of a 3-epoch search
    assert [h["dropped"] for h in result.history] == [0, 104, 0]
    assert result.history[-1]["operators_left"] == [1] * 6
    for h in result.history:
        assert np.isfinite(h["train_loss"]) and np.isfinite(h["valid_loss"])
        for w in h["weights"]:
            assert w.sum() == pytest.approx(1.0, abs=1e-5)
    # the cell's distribution parameters were trained (moved away from their start near 0)
    assert np.max(np.abs(result.parameters.unary_logits.numpy())) > 0.01
    cells = [l for l in result.model.layers if isinstance(l, SearchCell)]
    assert len(cells) == 3 and all(c.parameters is result.parameters for c in cells)
    # the original model is untouched and the found function drops into it
    fn = parse(result.function)
    assert str(fn) == result.function
    parse(result.function_clipped)
    final = replace_activations(base, result.function, targets="relu")
    x = task.arrays("test")[0][:8].astype("float32")
    out = final(x).numpy()
    assert out.shape == (8, 10) and np.all(np.isfinite(out))
    assert sum(isinstance(l, CustomActivation) for l in final.layers) == 3


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
