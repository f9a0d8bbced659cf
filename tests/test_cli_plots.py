"""The ``keras-actfn`` command line and the activation-function plots."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import keras_actfn
from keras_actfn.cli import common, main
from keras_actfn.cli.show import default_plot_name
from keras_actfn.expr import evaluate, parse

matplotlib = pytest.importorskip("matplotlib")
from matplotlib import image as mpimg  # noqa: E402

from keras_actfn.plots import GID_INITIAL, GID_SAMPLE, GID_ZERO, plot_activation  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TAB_BLUE = np.array([31, 119, 180]) / 255.0  # colour of the bold curve


def _function_lines(fig):
    (ax,) = fig.axes
    return ([ln for ln in ax.lines if ln.get_gid() == GID_INITIAL],
            [ln for ln in ax.lines if ln.get_gid() == GID_SAMPLE])


def _field(stdout, label):
    match = re.search(rf"^{re.escape(label)}\s+(\S+)", stdout, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{stdout}"
    return match.group(1)


def _monte_carlo_swish_mean(n=2_000_000, seed=123):
    # alpha*swish(beta*x) at alpha = beta = 1 is x*sigmoid(x) = x / (1 + e^-x); written out
    # here so the check does not go through the package's evaluator or quadrature
    z = np.random.default_rng(seed).standard_normal(n)
    f = z / (1.0 + np.exp(-z))
    return f.mean(), f.std() / np.sqrt(n)


def test_show_prints_summary_and_writes_png(tmp_path, capsys):
    out = tmp_path / "swish.png"
    assert main(["show", "alpha*swish(beta*x)", "-o", str(out), "--samples", "12"]) == 0
    captured = capsys.readouterr()
    stdout = captured.out

    assert f"text:        {parse('alpha*swish(beta*x)')}" in stdout
    assert "alpha, beta" in stdout
    assert _field(stdout, "nodes:") == "3"

    mean = float(_field(stdout, "E f(Z):"))
    mc_mean, mc_se = _monte_carlo_swish_mean()
    assert abs(mean - mc_mean) < max(6 * mc_se, 1e-3)
    second = float(_field(stdout, "E f(Z)^2:"))
    assert second > mean ** 2

    assert _field(stdout, "plot:") == str(out.resolve())
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    img = mpimg.imread(str(out))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    rgb = img[..., :3]
    assert rgb.std() > 0.05  # not a blank canvas
    not_white = np.any(rgb < 0.9, axis=-1).mean()
    assert 0.01 < not_white < 0.9
    bold = np.all(np.abs(rgb - TAB_BLUE) < 0.08, axis=-1).sum()
    assert bold > 200  # the bold curve is on the picture


def test_show_default_name_in_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["show", "x*sigmoid(x)", "--samples", "0", "--range", "-3", "3"]) == 0
    stdout = capsys.readouterr().out
    path = _field(stdout, "plot:")
    assert os.path.dirname(path) == str(tmp_path.resolve())
    name = os.path.basename(path)
    assert re.fullmatch(r"activation_[A-Za-z0-9_]+_[0-9a-f]{8}\.png", name)
    assert name == default_plot_name(str(parse("x*sigmoid(x)")))
    assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE
    assert "(none)" in stdout


def test_show_bad_formula_exits_2_with_caret(tmp_path, capsys):
    text = "x*sigmoid(x"
    assert main(["show", text, "-o", str(tmp_path / "bad.png")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert "Traceback" not in captured.err
    shown = [i for i, line in enumerate(lines) if line.strip() == text]
    assert shown, captured.err
    caret_line = lines[shown[0] + 1]
    assert caret_line.strip() == "^"
    assert caret_line.index("^") - lines[shown[0]].index(text) == len(text)
    assert not (tmp_path / "bad.png").exists()

    assert main(["show", "swihs(x)", "--no-plot"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_show_bad_range_is_a_usage_error(capsys):
    assert main(["show", "x", "--range", "2", "-2", "--no-plot"]) == 2
    assert "--range" in capsys.readouterr().err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert keras_actfn.__version__ in capsys.readouterr().out


def test_python_dash_m_version():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "keras_actfn", "--version"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"keras-actfn {keras_actfn.__version__}"


def test_missing_subcommand_is_usage_error(capsys):
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_registering_a_subcommand_is_one_function(capsys):
    def arguments(parser):
        parser.add_argument("word")

    @common.command("echo-test", "repeat a word", arguments=arguments)
    def echo(args):
        print(args.word * 2)
        return 0

    try:
        assert main(["echo-test", "ab"]) == 0
        assert capsys.readouterr().out.strip() == "abab"
        with pytest.raises(ValueError):
            common.command("echo-test", "again")(echo)
    finally:
        common.COMMANDS.pop("echo-test", None)


def test_plot_parameter_free_function_draws_one_line():
    fig = plot_activation("x*sigmoid(x)", param_samples=25)
    initial, samples = _function_lines(fig)
    assert len(initial) == 1 and samples == []
    (ax,) = fig.axes
    assert len([ln for ln in ax.lines if ln.get_gid() == GID_ZERO]) == 2
    assert ax.get_xlabel() and ax.get_ylabel()
    assert ax.get_title() == parse("x*sigmoid(x)").pretty()
    assert ax.get_legend() is None


def test_plot_two_parameter_function_draws_initial_and_samples(tmp_path):
    fn = "alpha*swish(beta*x)"
    n = 9
    path = tmp_path / "family.png"
    fig = plot_activation(fn, path=str(path), param_samples=n, x_range=(-4, 3), seed=5)
    initial, samples = _function_lines(fig)
    assert len(initial) == 1 and len(samples) == n
    x = np.asarray(initial[0].get_xdata())
    assert x[0] == -4 and x[-1] == 3
    np.testing.assert_allclose(initial[0].get_ydata(), evaluate(parse(fn), x), rtol=1e-12,
                               atol=1e-12)
    assert initial[0].get_linewidth() > samples[0].get_linewidth()
    assert all(0 < s.get_alpha() < 1 for s in samples)
    ys = np.array([s.get_ydata() for s in samples])
    assert not np.allclose(ys, ys[0])  # parameters really vary between curves
    # every sampled curve is the function at parameters inside [0.5, 2]: at x = 3 that
    # bounds alpha*swish(beta*3) between 0.5*swish(1.5) and 2*swish(6)
    swish = lambda v: v / (1.0 + np.exp(-v))  # noqa: E731
    assert np.all(ys[:, -1] >= 0.5 * swish(1.5) - 1e-9)
    assert np.all(ys[:, -1] <= 2 * swish(6.0) + 1e-9)
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_plot_same_seed_same_curves_and_into_given_axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    out = plot_activation("alpha*x + beta", param_samples=4, seed=1, ax=ax)
    assert out is fig
    again = plot_activation("alpha*x + beta", param_samples=4, seed=1)
    a = [ln.get_ydata() for ln in _function_lines(out)[1]]
    b = [ln.get_ydata() for ln in _function_lines(again)[1]]
    np.testing.assert_array_equal(a, b)


def test_plot_survives_non_finite_values():
    fig = plot_activation("exp(exp(alpha*x)) + 1/x", param_samples=3, x_range=(-10, 10))
    (initial,), _ = _function_lines(fig)
    y = np.asarray(initial.get_ydata())
    assert np.isnan(y).any() and np.isfinite(y).any()
    lo, hi = fig.axes[0].get_ylim()
    assert np.isfinite(lo) and np.isfinite(hi)
