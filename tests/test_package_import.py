"""How the package imports: the command line starts without TensorFlow (``--help`` is
instant and prints no TensorFlow start-up lines), the library import registers the Keras
layers, and every lazy export resolves."""

import os
import subprocess
import sys

import pytest

import keras_actfn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120, **kw)


def _imported_modules(importtime_stderr):
    """Module names from ``python -X importtime`` output (last column of each line)."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


@pytest.mark.parametrize("argv", [["--help"], ["search", "--help"], ["search", "pangaea", "--help"],
                                  ["--version"]])
def test_help_imports_no_tensorflow_and_prints_no_startup_lines(argv):
    done = _run(["-X", "importtime", "-m", "keras_actfn", *argv])
    assert done.returncode == 0, done.stderr[-2000:]
    modules = _imported_modules(done.stderr)
    assert "keras_actfn.cli" in modules           # the measurement sees our imports
    heavy = {m for m in modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras",
                                                       "matplotlib", "umap", "sklearn")}
    assert not heavy, sorted(heavy)[:10]
    noise = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert noise == []


def test_a_command_still_starts_tensorflow_quietly():
    done = _run(["-m", "keras_actfn", "show", "x * sigmoid(x)", "--no-plot"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x * sigmoid(x)" in done.stdout
    assert done.stderr == ""                       # no oneDNN / CUDA / absl lines


def test_library_import_registers_layers_and_lazy_exports_resolve():
    code = ("import sys; import keras_actfn as ka; "
            "assert 'keras_actfn.layers.custom' in sys.modules; "
            "assert 'keras_actfn.models' in sys.modules; "
            "print(sorted(n for n in ka.__all__ if getattr(ka, n, None) is None))")
    done = _run(["-c", code])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_command_line_mode_resolves_exports_on_first_use():
    code = ("import sys; sys.argv[0] = 'keras-actfn'; import keras_actfn as ka; "
            "assert 'tensorflow' not in sys.modules; "
            "f = ka.parse('x*sigmoid(x)'); assert 'tensorflow' not in sys.modules; "
            "layer = ka.CustomActivation(f); assert 'tensorflow' in sys.modules; "
            "print(layer.fn)")
    done = _run(["-c", code])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "x * sigmoid(x)"


def test_every_export_is_the_object_its_module_defines():
    from keras_actfn.expr import parse
    from keras_actfn.search.user import ActivationSearch

    assert keras_actfn.parse is parse
    assert keras_actfn.ActivationSearch is ActivationSearch
    assert set(keras_actfn.__all__) <= set(dir(keras_actfn))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        keras_actfn.nonexistent  # noqa: B018


@pytest.mark.parametrize("module,names", [
    ("keras_actfn", ["AutoInit", "evaluate_activation", "ActivationSearch", "CustomActivation",
                     "replace_activations", "parse", "UserInputError"]),
    ("keras_actfn.search", ["ActivationSearch", "run_search", "Store", "Pangaea",
                            "CafeEvolution"]),
    ("keras_actfn.search.engine", ["run_search", "Store", "make_executor", "RayExecutor",
                                   "SearchAlgorithm"]),
    ("keras_actfn.search.aquasurf", ["load_benchmark", "FunctionDatabase"]),
    ("keras_actfn.search.grafs", ["grafs_search", "run_grafs", "get_preset", "PRESETS"]),
])
def test_packages_export_their_entry_points(module, names):
    """The entry points the docs use come from the packages' own namespaces (the docs'
    import paths themselves are resolved by tests/test_docs.py)."""
    import importlib

    package = importlib.import_module(module)
    for name in names:
        assert name in package.__all__ and getattr(package, name) is not None, (module, name)
