"""keras_actfn.keras_graph: reading a Keras layer graph, the same for Keras 3 and tf_keras.

Collected again under tf_keras by tests/legacy/test_keras_graph_legacy.py. Each check is
against the model as built here: the layers it has, the order they were called in, the
shapes their arguments give, the values of its weights.
"""

import numpy as np
import pytest

from keras_actfn import keras_graph
from keras_actfn.backend import keras

L = keras.layers


class Scale(L.Layer):
    """``x * scale``; ``scale`` is a call argument, recorded in the graph's node."""

    def call(self, inputs, scale=1.0):
        return inputs * scale


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = L.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


@pytest.fixture(scope="module")
def nested():
    """x(3) -> d1(4) -> shared(4) -> shared(4) -> add(d1, .) -> scale(x2) ->
    inner (a Sequential: i1(5) -> i2(2))."""
    inner = keras.Sequential([L.Dense(5, name="i1"), L.Dense(2, name="i2")], name="inner")
    inner.build((None, 4))
    shared = L.Dense(4, name="shared")
    x = keras.Input((3,), name="x")
    h1 = L.Dense(4, name="d1")(x)
    h = shared(shared(h1))
    h = L.Add(name="add")([h1, h])
    h = Scale(name="scale")(h, scale=2.0)
    out = inner(h)
    return keras.Model(x, out, name="outer")


def test_functional_graph_is_topological_with_each_call_once(nested):
    graph = keras_graph.functional_graph(nested)
    names = [node.operation.name for node in graph.nodes]
    # one node per call: the input, d1, shared twice, add, scale, the nested model
    assert sorted(names) == sorted(["x", "d1", "shared", "shared", "add", "scale", "inner"])
    known = {id(t) for t in graph.inputs}
    for node in graph.nodes:
        if not keras_graph.is_input_layer(node.operation):
            assert all(id(t) in known for t in node.inputs), node.operation.name
        known.update(id(t) for t in node.outputs)
    assert all(id(t) in known for t in graph.outputs)
    by_name = {node.operation.name: node for node in graph.nodes}
    assert by_name["add"].input_shapes == [(None, 4), (None, 4)]
    assert by_name["inner"].output_shapes == [(None, 2)]
    assert by_name["scale"].call_kwargs == {"scale": 2.0}
    assert keras_graph.tensor_layer(graph.outputs[0]) is nested.get_layer("inner")
    assert keras_graph.is_input_layer(keras_graph.tensor_layer(graph.inputs[0]))


def test_models_without_a_graph():
    assert keras_graph.functional_graph(Subclassed()) is None
    assert keras_graph.functional_graph(keras.Sequential([L.Dense(2)])) is None  # never called
    assert not keras_graph.is_graph_model(Subclassed())
    assert keras_graph.is_graph_model(keras.Sequential([L.Dense(2)]))
    assert keras_graph.is_model(Subclassed()) and not keras_graph.is_model(L.Dense(2))


def test_layer_nodes_and_first_output_shape(nested):
    shared = nested.get_layer("shared")
    assert len(keras_graph.layer_nodes(shared)) == 2
    assert keras_graph.first_output_shape(shared) == (None, 4)
    assert keras_graph.first_output_shape(nested.get_layer("inner").get_layer("i1")) == (None, 5)
    assert keras_graph.layer_nodes(L.Dense(2)) == []
    assert keras_graph.first_output_shape(L.Dense(2)) is None


def test_walk_layers_paths_and_enter(nested):
    walked = [(path + layer.name) for path, layer in keras_graph.walk_layers(nested)]
    assert walked[-3:] == ["inner", "inner/i1", "inner/i2"]
    assert walked.count("shared") == 1
    assert set(walked) >= {"d1", "shared", "add", "scale"}
    flat = [layer.name for _, layer in keras_graph.walk_layers(nested, enter=lambda l: False)]
    assert "i1" not in flat and "inner" in flat
    assert [layer.name for layer in keras_graph.all_layers(nested)] == \
        [w.split("/")[-1] for w in walked]


def test_all_layers_tracked_enters_wrappers():
    x = keras.Input((4, 3))
    model = keras.Model(x, L.TimeDistributed(L.Dense(2, name="inside"), name="td")(x))
    assert "inside" not in {layer.name for layer in keras_graph.all_layers(model)}
    tracked = [layer.name for layer in keras_graph.all_layers(model, tracked=True)]
    assert tracked.index("td") < tracked.index("inside")
    assert [l.name for l in keras_graph.sublayers(model.get_layer("td"))] == ["inside"]
    assert keras_graph.sublayers(object()) == []


def test_copy_model_keeps_weights_and_clone_shares_shared_layers(nested):
    x = np.random.default_rng(0).standard_normal((5, 3)).astype("float32")
    copy = keras_graph.copy_model(nested)
    assert copy is not nested
    np.testing.assert_array_equal(np.asarray(copy(x)), np.asarray(nested(x)))
    calls = []

    def clone_function(layer):
        calls.append(layer.name)
        return layer.__class__.from_config(layer.get_config())

    clone = keras_graph.clone(nested.get_layer("inner"), clone_function)
    assert sorted(calls) == ["i1", "i2"]
    assert [layer.name for layer in clone.layers] == ["i1", "i2"]
    calls.clear()
    clone = keras_graph.clone(nested, clone_function)
    assert calls.count("shared") == 1  # a shared layer is cloned once and stays shared
    assert clone.get_layer("shared") is not nested.get_layer("shared")
    assert len(keras_graph.layer_nodes(clone.get_layer("shared"))) == 2
