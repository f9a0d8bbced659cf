"""replace_activations on Keras 3 models: exactness, weight copying, training, saving, errors.

The models and helpers are in tests/surgery_models.py, shared with tests/legacy.
"""

import numpy as np
import pytest

from keras_actfn.backend import KERAS3, LEGACY, keras
from keras_actfn.layers import CustomActivation
from keras_actfn.surgery import (Site, SurgeryError, activation_name, find_activation_sites,
                                 replace_activations)
from surgery_models import (X, Subclassed, activation_layer, build_functional, build_sequential,
                            copy_by_name, custom_layers, outputs, randomize)

L = keras.layers

BUILDERS = {"functional": build_functional, "sequential": build_sequential}
SITES = [("c1", "argument"), ("a1", "layer"), ("r1", "layer"), ("d1", "argument")]


def test_backend_is_keras3():
    assert KERAS3 and not LEGACY


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_relu_text_reproduces_the_original_exactly(kind):
    model = BUILDERS[kind]()
    new, sites = replace_activations(model, "relu(x)", return_sites=True)
    assert [(s.layer_name, s.kind) for s in sites] == SITES
    assert all(isinstance(s, Site) and s.activation == "relu" for s in sites)
    np.testing.assert_allclose(outputs(new), outputs(model), rtol=0, atol=1e-6)
    assert np.abs(outputs(model)).max() > 0.1  # the comparison is not between zeros


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_swish_matches_an_independently_built_silu_model(kind):
    model = BUILDERS[kind]()
    reference = BUILDERS[kind](act="silu", relu_layer=activation_layer("silu"))
    copy_by_name(model, reference)
    new = replace_activations(model, "x*sigmoid(x)", targets=["relu"])
    expected = outputs(reference)
    np.testing.assert_allclose(outputs(new), expected, rtol=0, atol=1e-6)
    assert np.abs(expected - outputs(model)).max() > 1e-2  # silu really differs from relu here


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_untouched_weights_are_bit_identical_and_original_is_unchanged(kind):
    model = BUILDERS[kind]()
    before_layers = [(layer.name, type(layer).__name__) for layer in model.layers]
    before_weights = [w.numpy().copy() for w in model.weights]
    before_out = outputs(model)
    new = replace_activations(model, "alpha*swish(beta*x)")

    own = {}
    for layer in new.layers:
        skip = {id(v) for v in getattr(getattr(layer, "activation", None), "weights", [])}
        own[layer.name] = [w for w in layer.weights if id(w) not in skip]
    compared = 0
    for layer in model.layers:
        if isinstance(layer, (L.Activation, L.ReLU)):
            continue
        assert len(own[layer.name]) == len(layer.weights)
        for a, b in zip(layer.weights, own[layer.name]):
            assert a is not b
            assert np.array_equal(a.numpy(), b.numpy())
            compared += 1
    assert compared == len(model.weights) == {"functional": 12, "sequential": 10}[kind]

    assert [(layer.name, type(layer).__name__) for layer in model.layers] == before_layers
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before_weights, model.weights))
    np.testing.assert_array_equal(outputs(model), before_out)
    assert not custom_layers(model)
    assert activation_name(model.get_layer("d1").activation) == "relu"
    assert not {id(layer) for layer in model.layers} & {id(layer) for layer in new.layers}


def test_one_distinct_layer_per_site_with_per_channel_parameters():
    model = build_functional()
    new, sites = replace_activations(model, "alpha*swish(beta*x)", param_shape="per-channel",
                                     return_sites=True)
    customs = custom_layers(new)
    assert len(customs) == len(sites) == 4
    assert len({id(c) for c in customs}) == 4
    channels = {"c1": 4, "a1": 4, "r1": 4, "d1": 5}
    for site in sites:
        layer = new.get_layer(site.layer_name)
        act = layer if site.kind == "layer" else layer.activation
        assert isinstance(act, CustomActivation) and str(act.fn) == "alpha * swish(beta * x)"
        assert [(w.name.split("/")[-1].split(":")[0], tuple(w.shape)) for w in act.weights] == \
            [("alpha", (channels[site.layer_name],)), ("beta", (channels[site.layer_name],))]
        assert all(np.array_equal(w.numpy(), np.ones(w.shape)) for w in act.weights)

    per_layer = replace_activations(model, "alpha*swish(beta*x)", param_shape="per-layer")
    shapes = [tuple(w.shape) for c in custom_layers(per_layer) for w in c.weights]
    assert shapes == [()] * 8


def test_replaced_model_trains_and_reloads_without_custom_objects(tmp_path):
    model = build_functional()
    new = replace_activations(model, "alpha*swish(beta*x)", clip=10.0)
    params = {id(w): w.numpy().copy() for c in custom_layers(new) for w in c.weights}
    assert len(params) == 8
    new.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    y = np.random.RandomState(2).randn(4, 3).astype("float32")
    new.fit(X, y, batch_size=4, epochs=1, verbose=0)
    for c in custom_layers(new):
        for w in c.weights:
            assert np.abs(w.numpy() - params[id(w)]).max() > 0, (c.name, w.name)

    path = tmp_path / "surgery.keras"
    new.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(outputs(loaded), outputs(new), rtol=0, atol=1e-6)
    assert len(custom_layers(loaded)) == 4
    assert all(c.clip == 10.0 for c in custom_layers(loaded))


def test_subclassed_model_raises_a_clear_error():
    model = Subclassed(units=3)
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(SurgeryError, match="subclassed") as info:
        replace_activations(model, "x*sigmoid(x)")
    assert isinstance(info.value, ValueError)
    assert "Functional" in str(info.value) and "CustomActivation" in str(info.value)


def test_no_match_raises_and_lists_what_the_model_has():
    model = build_functional()
    with pytest.raises(SurgeryError, match=r"no activation site") as info:
        replace_activations(model, "x*sigmoid(x)", targets=("gelu",))
    assert "relu (4)" in str(info.value)


def test_predicate_targets_select_sites():
    model = build_functional()
    seen = []

    def only_dense_and_conv(layer, name):
        seen.append((layer.name, name))
        return isinstance(layer, (L.Dense, L.Conv2D)) and name == "relu"

    new, sites = replace_activations(model, "relu(x)", targets=only_dense_and_conv,
                                     return_sites=True)
    assert sorted(seen) == sorted((n, "relu") for n, _ in SITES)
    assert [(s.layer_name, s.kind) for s in sites] == [("c1", "argument"), ("d1", "argument")]
    assert isinstance(new.get_layer("a1"), L.Activation)
    assert isinstance(new.get_layer("r1"), L.ReLU)
    np.testing.assert_allclose(outputs(new), outputs(model), rtol=0, atol=1e-6)


def test_site_names_come_from_activations_not_layer_names():
    inp = keras.Input((6,))
    x = L.Dense(6, activation="swish", name="relu_dense")(inp)
    x = L.ReLU(max_value=6.0, name="r6")(x)
    x = L.ReLU(negative_slope=0.1, name="leaky")(x)
    x = L.Activation("gelu", name="relu_named_gelu")(x)
    x = L.Activation("linear", name="identity")(x)
    x = L.LeakyReLU(name="lrelu")(x)
    model = keras.Model(inp, L.Dense(2, activation="tanh", name="head")(x))
    assert [(s.layer_name, s.activation) for s in find_activation_sites(model)] == [
        ("relu_dense", "swish"), ("r6", "relu6"), ("leaky", "leaky_relu"),
        ("relu_named_gelu", "gelu"), ("lrelu", "leaky_relu"), ("head", "tanh")]
    with pytest.raises(SurgeryError):
        replace_activations(model, "x", targets="relu")
    _, sites = replace_activations(model, "x*sigmoid(x)", targets="silu", return_sites=True)
    assert [s.layer_name for s in sites] == ["relu_dense"]


def test_nested_and_shared_layers():
    inner_in = keras.Input((6,))
    inner_out = L.Dense(6, activation="relu", name="inner_dense")(inner_in)
    inner = keras.Model(inner_in, inner_out, name="block")
    shared = L.Dense(6, activation="relu", name="shared")
    inp = keras.Input((6,))
    x = shared(inner(inp))
    x = shared(x)
    model = randomize(keras.Model(inp, L.Dense(2, name="head")(x)))
    randomize(inner, seed=3)
    x6 = np.random.RandomState(4).randn(5, 6).astype("float32")

    new, sites = replace_activations(model, "relu(x)", return_sites=True)
    assert [(s.layer_name, s.kind) for s in sites] == [("block/inner_dense", "argument"),
                                                       ("shared", "argument")]
    np.testing.assert_allclose(outputs(new, x6), outputs(model, x6), rtol=0, atol=1e-6)
    assert isinstance(new.get_layer("block").get_layer("inner_dense").activation,
                      CustomActivation)
    assert len(custom_layers(new)) == 1  # the top level holds the shared layer's one copy
    assert not isinstance(inner.get_layer("inner_dense").activation, CustomActivation)


def test_factory_inserts_other_layers():
    model = build_functional()
    made = []

    def factory():
        made.append(L.PReLU(alpha_initializer="zeros"))
        return made[-1]

    new, sites = replace_activations(model, factory, return_sites=True)
    assert len(made) == len(sites) == 4 and len({id(m) for m in made}) == 4
    # PReLU(0) == relu
    np.testing.assert_allclose(outputs(new), outputs(model), rtol=0, atol=1e-6)
    with pytest.raises(TypeError):
        replace_activations(model, factory, param_shape="per-layer")
    with pytest.raises(SurgeryError, match="same layer"):
        one = L.PReLU()
        replace_activations(model, lambda: one)


def test_a_replaced_model_can_be_operated_on_again():
    model = build_functional()
    first = replace_activations(model, "alpha*relu(x)")
    assert {s.activation for s in find_activation_sites(first)} == {"custom_activation"}
    second, sites = replace_activations(first, "relu(x)", targets="custom_activation",
                                        return_sites=True)
    assert len(sites) == 4
    assert len(second.weights) == len(model.weights)  # the alpha slots went with the old layers
    assert [str(c.fn) for c in custom_layers(second)] == ["relu(x)"] * 4
    np.testing.assert_allclose(outputs(second), outputs(model), rtol=0, atol=1e-6)
