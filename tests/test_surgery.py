"""replace_activations on Keras 3 models: exactness, weight copying, training, saving, errors."""

import numpy as np
import pytest

from keras_actfn.backend import KERAS3, LEGACY, keras
from keras_actfn.layers import CustomActivation
from keras_actfn.surgery import (Site, SurgeryError, activation_name, find_activation_sites,
                                 replace_activations)

L = keras.layers
X = np.random.RandomState(0).randn(4, 8, 8, 3).astype("float32")


def _relu_layer(name):
    return L.ReLU(name=name)


def _silu_layer(name):
    return L.Activation("silu", name=name)


def build_functional(act="relu", relu_layer=_relu_layer):
    """Conv(act) -> [Conv -> BN -> Activation(act)] + skip -> ReLU -> GAP -> Dense(act) -> Dense."""
    inp = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(4, 3, padding="same", activation=act, name="c1")(inp)
    y = L.Conv2D(4, 3, padding="same", name="c2")(x)
    y = L.BatchNormalization(name="bn")(y)
    y = L.Activation(act, name="a1")(y)
    x = L.Add(name="add")([x, y])
    x = relu_layer("r1")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(5, activation=act, name="d1")(x)
    out = L.Dense(3, name="out")(x)
    return _randomize(keras.Model(inp, out, name="func"))


def build_sequential(act="relu", relu_layer=_relu_layer):
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        L.Conv2D(4, 3, activation=act, name="c1"),
        L.BatchNormalization(name="bn"),
        L.Activation(act, name="a1"),
        relu_layer("r1"),
        L.Flatten(name="flat"),
        L.Dense(6, activation=act, name="d1"),
        L.Dense(3, name="out"),
    ], name="seq")
    return _randomize(model)


BUILDERS = {"functional": build_functional, "sequential": build_sequential}
SITES = [("c1", "argument"), ("a1", "layer"), ("r1", "layer"), ("d1", "argument")]


def _randomize(model, seed=1):
    """Give every weight (biases and BN statistics included) a distinct random value."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            v = rng.normal(0.0, 0.5, tuple(w.shape)).astype("float32")
            if "variance" in w.name:
                v = np.abs(v) + 0.5
            values.append(v)
        if values:
            layer.set_weights(values)
    return model


def _copy_by_name(source, target):
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def _out(model, x=X):
    return np.asarray(model(x, training=False))


def _custom_layers(model):
    """Every CustomActivation in a model: standalone layers and layers' activations."""
    found = []
    for layer in model.layers:
        if isinstance(layer, CustomActivation):
            found.append(layer)
        elif isinstance(getattr(layer, "activation", None), CustomActivation):
            found.append(layer.activation)
    return found


def test_backend_is_keras3():
    assert KERAS3 and not LEGACY


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_relu_text_reproduces_the_original_exactly(kind):
    model = BUILDERS[kind]()
    new, sites = replace_activations(model, "relu(x)", return_sites=True)
    assert [(s.layer_name, s.kind) for s in sites] == SITES
    assert all(isinstance(s, Site) and s.activation == "relu" for s in sites)
    np.testing.assert_allclose(_out(new), _out(model), rtol=0, atol=1e-6)
    assert np.abs(_out(model)).max() > 0.1  # the comparison is not between zeros


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_swish_matches_an_independently_built_silu_model(kind):
    model = BUILDERS[kind]()
    reference = BUILDERS[kind](act="silu", relu_layer=_silu_layer)
    _copy_by_name(model, reference)
    new = replace_activations(model, "x*sigmoid(x)", targets=["relu"])
    expected = _out(reference)
    np.testing.assert_allclose(_out(new), expected, rtol=0, atol=1e-6)
    assert np.abs(expected - _out(model)).max() > 1e-2  # silu really differs from relu here


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_untouched_weights_are_bit_identical_and_original_is_unchanged(kind):
    model = BUILDERS[kind]()
    before_layers = [(layer.name, type(layer).__name__) for layer in model.layers]
    before_weights = [w.numpy().copy() for w in model.weights]
    before_out = _out(model)
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
    np.testing.assert_array_equal(_out(model), before_out)
    assert not _custom_layers(model)
    assert activation_name(model.get_layer("d1").activation) == "relu"
    assert not {id(layer) for layer in model.layers} & {id(layer) for layer in new.layers}


def test_one_distinct_layer_per_site_with_per_channel_parameters():
    model = build_functional()
    new, sites = replace_activations(model, "alpha*swish(beta*x)", param_shape="per-channel",
                                     return_sites=True)
    customs = _custom_layers(new)
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
    shapes = [tuple(w.shape) for c in _custom_layers(per_layer) for w in c.weights]
    assert shapes == [()] * 8


def test_replaced_model_trains_and_reloads_without_custom_objects(tmp_path):
    model = build_functional()
    new = replace_activations(model, "alpha*swish(beta*x)", clip=10.0)
    params = {id(w): w.numpy().copy() for c in _custom_layers(new) for w in c.weights}
    assert len(params) == 8
    new.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    y = np.random.RandomState(2).randn(4, 3).astype("float32")
    new.fit(X, y, batch_size=4, epochs=1, verbose=0)
    for c in _custom_layers(new):
        for w in c.weights:
            assert np.abs(w.numpy() - params[id(w)]).max() > 0, (c.name, w.name)

    path = tmp_path / "surgery.keras"
    new.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(_out(loaded), _out(new), rtol=0, atol=1e-6)
    assert len(_custom_layers(loaded)) == 4
    assert all(c.clip == 10.0 for c in _custom_layers(loaded))


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = L.Dense(3, activation="relu")

    def call(self, inputs):
        return self.dense(inputs)


def test_subclassed_model_raises_a_clear_error():
    model = _Subclassed()
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
    np.testing.assert_allclose(_out(new), _out(model), rtol=0, atol=1e-6)


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
    model = _randomize(keras.Model(inp, L.Dense(2, name="head")(x)))
    _randomize(inner, seed=3)
    x6 = np.random.RandomState(4).randn(5, 6).astype("float32")

    new, sites = replace_activations(model, "relu(x)", return_sites=True)
    assert [(s.layer_name, s.kind) for s in sites] == [("block/inner_dense", "argument"),
                                                       ("shared", "argument")]
    np.testing.assert_allclose(_out(new, x6), _out(model, x6), rtol=0, atol=1e-6)
    assert isinstance(new.get_layer("block").get_layer("inner_dense").activation,
                      CustomActivation)
    assert len(_custom_layers(new)) == 1  # the top level holds the shared layer's one copy
    assert not isinstance(inner.get_layer("inner_dense").activation, CustomActivation)


def test_factory_inserts_other_layers():
    model = build_functional()
    made = []

    def factory():
        made.append(L.PReLU(alpha_initializer="zeros"))
        return made[-1]

    new, sites = replace_activations(model, factory, return_sites=True)
    assert len(made) == len(sites) == 4 and len({id(m) for m in made}) == 4
    np.testing.assert_allclose(_out(new), _out(model), rtol=0, atol=1e-6)  # PReLU(0) == relu
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
    assert [str(c.fn) for c in _custom_layers(second)] == ["relu(x)"] * 4
    np.testing.assert_allclose(_out(second), _out(model), rtol=0, atol=1e-6)
