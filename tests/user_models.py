"""A user's model and data that are not the zoo's: a small Conv1D + Dense classifier on a
synthetic 4-class sequence task (shared by the user-search tests, both Kerases)."""

import numpy as np

from keras_actfn.backend import keras

LENGTH, CLASSES = 24, 4


def make_data(n=480, seed=0):
    """``(x, y)``: class = which quarter of the sequence holds a bump, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n).astype("int32")
    x = rng.normal(0.0, 0.6, (n, LENGTH, 1)).astype("float32")
    quarter = LENGTH // CLASSES
    for i, c in enumerate(y):
        x[i, c * quarter:(c + 1) * quarter, 0] += 1.5
    return x, y


def make_model(width=8, name="user_net", compile=True, hidden="relu"):
    inputs = keras.Input((LENGTH, 1))
    h = keras.layers.Conv1D(width, 3, activation=hidden)(inputs)
    h = keras.layers.MaxPooling1D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(16, activation=hidden)(h)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(h)
    model = keras.Model(inputs, outputs, name=name)
    if compile:
        model.compile(optimizer=keras.optimizers.Adam(0.01),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def custom_functions(model):
    """The function texts of the model's CustomActivation ``activation=`` arguments."""
    from keras_actfn import CustomActivation

    return {str(layer.activation.fn) for layer in model.layers
            if isinstance(getattr(layer, "activation", None), CustomActivation)}


def assert_reloads_with(model, function, path, x):
    """``model`` saves to ``path`` and loads back (no custom_objects) holding ``function``
    at its swapped sites and predicting the same outputs on ``x``."""
    model.save(path)
    loaded = keras.models.load_model(path)
    assert custom_functions(loaded) == {function}
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
