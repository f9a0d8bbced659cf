"""ActivationSearch under tf_keras: a user's functional model and a kecam model (the models
keras-cv-attention-models users bring). Collected only with TF_USE_LEGACY_KERAS=1."""

import numpy as np
import pytest

import keras_actfn as ka
from keras_actfn import backend
from keras_actfn.train.user_model import ORIGINAL, UserInputError
from user_models import assert_reloads_with, make_data, make_model


def test_legacy_keras_is_active():
    assert backend.LEGACY and not backend.KERAS3


@pytest.fixture(scope="module")
def data():
    x, y = make_data(320)
    return x[:256], y[:256], x[256:], y[256:]


def test_search_best_model_and_reload(tmp_path, data):
    x, y, xv, yv = data
    search = ka.ActivationSearch(make_model(), method="pangaea", budget=3, population=2,
                                 sample=2, store=tmp_path / "s.db", progress=False,
                                 final_top=1, final_seeds=1)
    search.search(x, y, validation_data=(xv, yv), epochs=1, batch_size=64)
    results = search.results()
    assert len(results) == 3
    ok = [ev.record for ev in results if ev.record.ok]
    assert ok and all(0.0 <= r.validation_accuracy <= 1.0 for r in ok)
    assert all(r.validation_accuracy == r.history["val_accuracy"][-1] for r in ok)
    assert {ev.text for ev in search.results("final")} == {ORIGINAL, search.best_function}
    best = search.best_model()
    assert type(best.optimizer).__name__ == "Adam"
    assert_reloads_with(best, search.best_function, str(tmp_path / "best.keras"), xv[:4])


def test_bad_labels_are_named(tmp_path, data):
    x, y, xv, yv = data
    with pytest.raises(UserInputError, match=r"labels .*output of shape \(batch, 4\)"):
        ka.ActivationSearch(make_model(), store=tmp_path / "s.db", progress=False).search(
            x, y + 10, validation_data=(xv, yv), epochs=1)
    assert not (tmp_path / "s.db").exists()


def test_kecam_model_is_searched(tmp_path):
    """A keras-cv-attention-models network as the user's model: its hidden activations are
    found, the classifier's softmax is left alone, and one candidate trains."""
    from keras_cv_attention_models import mobilevit

    model = mobilevit.MobileViT_V2_050(input_shape=(32, 32, 3), num_classes=4,
                                       pretrained=None)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 4, 48).astype("int32")
    search = ka.ActivationSearch(model, method="pangaea-random", budget=1,
                                 store=tmp_path / "k.db", progress=False, final_seeds=0)
    search.search(x[:32], y[:32], validation_data=(x[32:], y[32:]), epochs=1, batch_size=16)
    (ev,) = search.results()
    net, _ = search.evaluator.build(ev.text, seed=0)
    swapped = [layer for layer in net.layers
               if isinstance(layer, ka.CustomActivation)
               or isinstance(getattr(layer, "activation", None), ka.CustomActivation)]
    assert len(swapped) > 10
    # the classifier's output keeps its softmax: the output layer is never a search site
    from keras_actfn.surgery import find_activation_sites, output_layers

    outputs = {layer.name for layer in output_layers(model)}
    kept = [s for s in find_activation_sites(net) if s.layer_name in outputs]
    assert kept and all(s.activation == "softmax" for s in kept)
    assert ev.record.ok or ev.record.reason in ("overflow", "nan_loss"), ev.record.message
