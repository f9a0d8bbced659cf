"""AutoInitVisualizer (predicted vs empirical signal propagation) and ``keras-actfn autoinit``."""

import math
import re
import warnings

import numpy as np
import pytest

from keras_actfn.autoinit import AutoInitVisualizer
from keras_actfn.autoinit.visualize import (GID_EMPIRICAL, GID_PRE_EMPIRICAL, GID_PRE_PREDICTED,
                                           GID_PREDICTED, GID_TARGET, INITS)
from keras_actfn.backend import keras
from keras_actfn.cli import main
from keras_actfn.models import resnet_v1

matplotlib = pytest.importorskip("matplotlib")
from matplotlib import image as mpimg  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEPTH = 10


def relu_mlp():
    """A deep ReLU MLP with Keras's default glorot_uniform: the signal halves every layer."""
    model = keras.Sequential([keras.Input((64,))], name="relu_mlp")
    for _ in range(DEPTH):
        model.add(keras.layers.Dense(256))
        model.add(keras.layers.ReLU())
    model.add(keras.layers.Dense(10, activation="softmax"))
    return model


@pytest.fixture(scope="module")
def visualized(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = relu_mlp()
    before = [w.copy() for w in model.get_weights()]
    path = tmp_path_factory.mktemp("viz") / "signal.png"
    viz = AutoInitVisualizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = viz.visualize(model, path=str(path), samples=256, seed=0)
    return {"model": model, "before": before, "path": path, "result": result, "viz": viz}


def test_writes_a_real_png(visualized):
    path = visualized["path"]
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = mpimg.imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert np.ptp(image[..., :3]) > 0.5  # not blank


def test_one_entry_per_layer(visualized):
    model, result = visualized["model"], visualized["result"]
    n = len(model.layers)  # a Sequential's layers exclude the input
    assert list(result["layers"]) == [layer.name for layer in model.layers]
    assert list(result["depth"]) == list(range(1, n + 1))
    for init in INITS:
        for kind in ("predicted", "empirical"):
            for stat in ("mean", "var"):
                values = result[f"{init}_{kind}_{stat}"]
                assert values.shape == (n,) and np.all(np.isfinite(values))
    dense = [isinstance(layer, keras.layers.Dense) for layer in model.layers]
    assert list(result["weighted"]) == dense
    assert result["signal_variance"] == 1.0


def test_autoinit_reaches_target_default_does_not(visualized):
    result = visualized["result"]
    w = result["weighted"].copy()
    w[-1] = False  # the softmax read-out: its output is not the pre-activation
    auto = result["autoinit_empirical_var"][w]
    default = result["default_empirical_var"][w]
    assert np.all((auto > 0.5) & (auto < 2.0)), auto
    assert np.all(np.abs(result["autoinit_predicted_var"][w] - 1.0) < 1e-9)
    assert np.all(np.abs(result["autoinit_empirical_mean"][w]) < 0.3)
    # glorot_uniform with ReLU halves the variance at every layer
    assert default[-1] < 0.05
    assert np.all(np.diff(np.log(default)) < 0)


def test_predictions_follow_the_empirical_moments(visualized):
    """For the model as given, AutoInit propagates through the actual weights: the
    predicted variance follows the measured one within a factor 2 at every layer, through a
    >100x decay. (Both predictions treat each layer's inputs as i.i.d.; the per-unit offsets
    a ReLU layer passes on make one draw random-walk around them: for AutoInit, seeds 0-19
    of this MLP end within 0.8-1.7 of the target at depth 10.)"""
    result = visualized["result"]
    assert result["default_empirical_var"][0] / result["default_empirical_var"][-2] > 100
    for init in INITS:
        pred = result[f"{init}_predicted_var"][:-1]
        emp = result[f"{init}_empirical_var"][:-1]
        ratio = emp / pred
        assert np.all((ratio > 0.5) & (ratio < 2.0)), (init, ratio)


def test_given_model_is_untouched(visualized):
    after = visualized["model"].get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(visualized["before"], after))
    clones = visualized["viz"].models
    assert set(clones) == set(INITS)
    assert all(clone is not visualized["model"] for clone in clones.values())


def test_plot_lines_and_scales(visualized):
    fig = visualized["viz"].plot(visualized["result"])
    ax_mean, ax_var = fig.axes[:2]
    assert ax_var.get_yscale() == "log"
    gids = {line.get_gid() for line in ax_var.lines}
    for init in INITS:
        assert GID_PREDICTED.format(init) in gids and GID_EMPIRICAL.format(init) in gids
    assert GID_TARGET in gids


def test_resnet_with_batchnorm():
    """Functional ResNet: BatchNormalization, Add, pooling; default predictions agree."""
    model = resnet_v1(20, batchnorm=True, input_shape=(8, 8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = AutoInitVisualizer().visualize(model, samples=16, seed=1)
    assert len(result["layers"]) == len(model.layers) - 1  # the InputLayer is left out
    assert result["weighted"].sum() == 22  # 19 convolutions, 2 projections, the logits
    bn = result["classes"] == "BatchNormalization"
    for init in INITS:  # batch statistics in training mode: (0, 1) after every BN
        assert np.allclose(result[f"{init}_empirical_var"][bn], 1.0, atol=0.02)
        assert np.allclose(result[f"{init}_predicted_var"][bn], 1.0, atol=0.02)


def test_overflowing_default_init_is_reported_not_raised(tmp_path):
    """Default weights far too large: the signal leaves float32 and then float64 range."""
    model = keras.Sequential([keras.Input((32,))])
    for _ in range(70):  # each layer multiplies the variance by 32 * 30^2 ~ 10^4.5
        model.add(keras.layers.Dense(32, kernel_initializer=keras.initializers.RandomNormal(
            stddev=30.0, seed=0)))
    viz = AutoInitVisualizer()
    result = viz.visualize(model, path=str(tmp_path / "overflow.png"), samples=8)
    assert not np.all(np.isfinite(result["default_empirical_var"]))
    assert not np.all(np.isfinite(result["default_predicted_var"]))
    assert viz.notes and "default-init prediction stops" in viz.notes[0]
    assert np.all(np.isfinite(result["autoinit_empirical_var"]))
    assert np.allclose(result["autoinit_predicted_var"], 1.0)
    assert np.all(np.abs(np.log10(result["autoinit_empirical_var"])) < 2)
    assert (tmp_path / "overflow.png").read_bytes()[:8] == PNG_SIGNATURE


def test_unknown_input_dimensions_need_input_shape():
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, keras.layers.Conv1D(4, 3)(inputs))
    with pytest.raises(ValueError, match="input_shape"):
        AutoInitVisualizer().visualize(model, samples=4)
    result = AutoInitVisualizer().visualize(model, samples=4, input_shape=(16, 3))
    assert result["weighted"].tolist() == [True]


# ---------------------------------------------------------------------------- the CLI
def _small_model():
    inputs = keras.Input((20,))
    x = keras.layers.Dense(64)(inputs)
    x = keras.layers.Activation("tanh")(x)
    from keras_actfn import CustomActivation

    x = keras.layers.Dense(32, activation=CustomActivation("x*sigmoid(x)"))(x)
    outputs = keras.layers.Dense(5)(x)
    return keras.Model(inputs, outputs, name="small")


def test_cli_round_trip(tmp_path, capsys):
    src, out, png = tmp_path / "in.keras", tmp_path / "out.keras", tmp_path / "sig.png"
    model = _small_model()
    model.save(src)
    before = model.get_weights()
    code = main(["autoinit", str(src), "-o", str(out), "--plot", str(png), "--seed", "7",
                 "--signal-variance", "2"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^initialized: 3 of 4 layers", stdout, re.MULTILINE), stdout
    # the output mean is this draw's per-unit offsets averaged (near 0), variance as asked
    found = re.search(r"^output:\s+mean (\S+), variance 2\b", stdout, re.MULTILINE)
    assert found and abs(float(found.group(1))) < 1.0, stdout
    assert str(png) in stdout and png.read_bytes()[:8] == PNG_SIGNATURE
    assert str(out) in stdout

    reloaded = keras.models.load_model(out)  # no custom_objects
    after = reloaded.get_weights()
    assert len(after) == len(before)
    assert all(not np.array_equal(a, b) for a, b in zip(before, after) if a.ndim == 2)
    kernel = reloaded.layers[1].kernel.numpy()
    assert kernel.var() == pytest.approx(2.0 / 20, rel=0.15)  # s / fan_in, E x^2 = 1
    assert np.all(reloaded.layers[1].bias.numpy() == 0)


def test_cli_keep_leaves_a_layer_alone(tmp_path, capsys):
    src, out = tmp_path / "in.keras", tmp_path / "out.keras"
    model = _small_model()
    model.save(src)
    name = model.layers[1].name
    assert main(["autoinit", str(src), "-o", str(out), "--keep", name, "--no-table"]) == 0
    stdout = capsys.readouterr().out
    assert "initialized: 2 of 4 layers" in stdout
    reloaded = keras.models.load_model(out)
    assert np.array_equal(reloaded.get_layer(name).kernel.numpy(),
                          model.layers[1].kernel.numpy())


@pytest.mark.parametrize("case", ["missing", "not_keras", "directory", "bad_keep",
                                  "bad_output", "bad_variance"])
def test_cli_errors_exit_2(tmp_path, capsys, case):
    src = tmp_path / "in.keras"
    _small_model().save(src)
    junk = tmp_path / "junk.keras"
    junk.write_text("not a model")
    out = str(tmp_path / "out.keras")
    argv = {"missing": [str(tmp_path / "nope.keras"), "-o", out],
            "not_keras": [str(junk), "-o", out],
            "directory": [str(tmp_path), "-o", out],
            "bad_keep": [str(src), "-o", out, "--keep", "no_such_layer"],
            "bad_output": [str(src), "-o", str(tmp_path / "out.txt")],
            "bad_variance": [str(src), "-o", out, "--signal-variance", "0"]}[case]
    assert main(["autoinit"] + argv) == 2
    err = capsys.readouterr().err
    # the last line is the error (argparse's range errors print the usage above it)
    last = err.strip().splitlines()[-1]
    assert last.startswith("keras-actfn autoinit: error:") and "Traceback" not in err
    assert not (tmp_path / "out.keras").exists()


# ------------------------------------------- pre-activation of weighted layers (issue 15)
def fused_mlp():
    """Weighted layers with their own activation=: their output is not what AutoInit sets."""
    inputs = keras.Input((32,), name="x")
    h = inputs
    for i in range(3):
        h = keras.layers.Dense(64, activation="relu", name=f"relu_dense_{i}")(h)
    h = keras.layers.Dropout(0.2, name="dropout")(h)
    h = keras.layers.Dense(48, activation="tanh", name="tanh_dense")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="softmax_logits")(h)
    return keras.Model(inputs, outputs, name="fused")


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    keras.utils.set_random_seed(1)
    path = tmp_path_factory.mktemp("viz") / "fused.png"
    viz = AutoInitVisualizer()
    result = viz.visualize(fused_mlp(), path=str(path), samples=256, seed=3)
    return {"viz": viz, "result": result, "path": path}


def numpy_pre_activation(model, name, x):
    layer = model.get_layer(name)
    h = np.asarray(keras.Model(model.inputs, layer.input)(x, training=True), dtype=np.float64)
    w, b = (np.asarray(v, dtype=np.float64) for v in layer.get_weights())
    return h @ w + b


def test_pre_activation_prediction_matches_monte_carlo(fused):
    """At every weighted layer the plotted prediction of the linear part (before the
    layer's own activation) agrees with ``x @ W + b`` measured by NumPy on 4,000 fresh
    Gaussian inputs -- for AutoInit (variance 1 = the target) and for the model as given."""
    result, viz = fused["result"], fused["viz"]
    weighted = result["weighted"]
    assert weighted.tolist() == [True, True, True, False, True, True]
    np.testing.assert_allclose(result["autoinit_predicted_pre_var"][weighted], 1.0, rtol=1e-9)
    assert np.all(np.isnan(result["autoinit_empirical_pre_var"][~weighted]))
    x = np.random.default_rng(11).standard_normal((4000, 32)).astype("float32")
    names = list(result["layers"])
    for init in INITS:
        model = viz.models[init]
        for i in np.flatnonzero(weighted):
            z = numpy_pre_activation(model, names[i], x)
            sd = math.sqrt(z.var())
            assert result[f"{init}_predicted_pre_var"][i] == pytest.approx(z.var(), rel=0.2), \
                (init, names[i])
            assert abs(result[f"{init}_predicted_pre_mean"][i] - z.mean()) < 0.25 * sd
            # the plot's own measurement (256 samples, through the layer's linear twin)
            assert result[f"{init}_empirical_pre_var"][i] == pytest.approx(z.var(), rel=0.2)
    # the output after relu is what the filled markers used to show: well below target
    relu = [i for i, n in enumerate(names) if n.startswith("relu_dense")]
    assert np.all(result["autoinit_empirical_var"][relu] < 0.6)


def _drawn_y_labels(ax, renderer):
    """y tick labels of ticks inside the view (matplotlib keeps, but does not draw, others)."""
    frame = ax.get_window_extent(renderer)
    for label in ax.get_yticklabels():
        box = label.get_window_extent(renderer)
        if frame.y0 - 1 <= (box.y0 + box.y1) / 2 <= frame.y1 + 1:
            yield label


def _boxes_overlap(a, b):
    return a.x0 < b.x1 - 1 and b.x0 < a.x1 - 1 and a.y0 < b.y1 - 1 and b.y0 < a.y1 - 1


def test_signal_plot_legend_names_and_no_overlapping_text(fused):
    fig = fused["viz"].plot(fused["result"], title="fused")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax_mean, ax_var = fig.axes[:2]
    names = list(fused["result"]["layers"])
    for ax in (ax_mean, ax_var):
        assert [t.get_text() for t in ax.get_xticklabels()] == names
        gids = {line.get_gid() for line in ax.lines}
        for init in INITS:
            assert {GID_PRE_PREDICTED.format(init), GID_PRE_EMPIRICAL.format(init),
                    GID_PREDICTED.format(init), GID_EMPIRICAL.format(init)} <= gids
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert any("pre-activation" in t and "filled" in t for t in labels)
    assert any("target" in t and "pre-activation" in t for t in labels)
    assert any(t.startswith("hollow") for t in labels) and "AutoInit" in labels
    texts = [fig._suptitle] + [t for ax in (ax_mean, ax_var) for t in
                               [ax.title, ax.xaxis.label, ax.yaxis.label,
                                *ax.get_xticklabels(), *_drawn_y_labels(ax, renderer)]]
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]
    boxes.append(legend.get_window_extent(renderer))
    width, height = fig.canvas.get_width_height()
    for i, a in enumerate(boxes):
        assert a.x0 >= -1 and a.y0 >= -1 and a.x1 <= width + 1 and a.y1 <= height + 1
        for b in boxes[i + 1:]:
            assert not _boxes_overlap(a, b), (a, b)
    assert fused["path"].read_bytes()[:8] == PNG_SIGNATURE
