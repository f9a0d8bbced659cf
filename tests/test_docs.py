"""Every Python block of README.md and docs/: it parses, every keras_actfn name it imports
or reads exists, and it runs as written.

Blocks that stand for the reader's own model and data run with a stand-in
(:data:`STAND_INS`): a few lines defining ``model``, ``x_train``... with a small Keras model
and synthetic data, and the sizes (budget, epochs) cut by exact text substitutions that
must each match once, so a changed block fails here instead of drifting. Only blocks that
need data a machine without internet does not have (CIFAR through tensorflow-datasets)
are not run (:data:`NOT_RUN`, with the reason); they are still checked for syntax and for
every import path and ``ka.NAME`` they use (a renamed or removed API fails here)."""

import ast
import importlib
import os
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

#: (file, phrase of the block's first code line) -> why it is checked but not run
NOT_RUN = {
    ("docs/data.md", "from keras_actfn.data import load_task"):
        "CIFAR-10 from a local tensorflow-datasets folder",
    ("docs/evaluation.md", "evaluate_activation(\"relu\", recipe=\"pangaea_resnet"):
        "CIFAR-100 and CIFAR-10 recipes (tensorflow-datasets data, minutes of training)",
}

_USER_MODEL = """
import numpy as np
import sys
sys.path.insert(0, {tests!r})
from user_models import make_data, make_model
x, y = make_data(n=192)
x_train, y_train, x_val, y_val = x[:128], y[:128], x[128:], y[128:]
build_my_model = lambda: make_model(compile=False)
model = make_model()
"""


def _npz_setup():
    return _USER_MODEL + (
        "np.savez('data.npz', x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)\n")


_TEXT_FILES = """
story = "Tom had a red ball. He gave it to Sue. They played in the sun all day.\\n"
open("corpus.txt", "w").write(story * 40)
open("TinyStoriesV2-GPT4-valid.txt", "w").write((story + "<|endoftext|>\\n") * 40)
"""


def _check_user_search(ns):
    from keras_actfn import parse

    assert len(ns["search"].results()) == 3
    parse(ns["search"].best_function)                     # a function text, not a label
    assert os.path.getsize("best.keras") > 0 and os.path.getsize("progress.png") > 0


def _check_autoinit(ns):
    import numpy as np

    # an estimate for every weighted layer (the numbers are checked in test_autoinit_*)
    estimates = ns["estimates"]
    assert {layer.name for layer in ns["model"].layers if layer.weights} <= set(estimates)
    assert all(np.isfinite(m.var) for m in estimates.values())


def _check_replace(ns):
    from keras_actfn import CustomActivation

    swapped = [layer for layer in ns["new_model"].layers
               if isinstance(getattr(layer, "activation", None), CustomActivation)]
    assert len(swapped) == 2 and str(swapped[0].activation.fn) == "max(swish(x), 0)"


def _check_text(ns):
    assert ns["x"].shape[1] == 128 and ns["x"].dtype == "int32"
    assert (ns["y"][:, :-1] == ns["x"][:, 1:]).all()      # y is x shifted by one token


def _check_aquasurf_and_grafs(ns):
    assert len(ns["search"].results()) == 2


#: (file, phrase of the first line) -> (setup code, [(text in the block, replacement)], check)
STAND_INS = {
    ("README.md", "import keras_actfn as ka\n\nmodel = build_my_model()"): (
        _USER_MODEL,
        [("budget=60,", "budget=3, final_top=1, final_seeds=1,"), ("epochs=5", "epochs=1")],
        _check_user_search),
    ("docs/autoinit.md", "from keras_actfn.autoinit import AutoInit"): (
        _USER_MODEL, [], _check_autoinit),
    ("docs/index.md", "from keras_actfn import replace_activations"): (
        _USER_MODEL, [], _check_replace),
    ("docs/data.md", "task = load_task(\"text\""): (
        "from keras_actfn.data import load_task\n" + _TEXT_FILES, [], _check_text),
    ("docs/search.md", "search = ka.ActivationSearch(model, method=\"aquasurf\""): (
        "import keras_actfn as ka\n" + _npz_setup(),
        [("budget=40, fim_limit=300,", "budget=2, fim_limit=8, fim_batch=32, final_top=1, "
          "final_seeds=0,"),
         ('executor="pool", workers=2', 'executor="inprocess"'),
         ("epochs=5", "epochs=1"),
         ("budget=3,   # 3 seeds", "budget=1, final_top=1, final_seeds=0,"),
         ("epochs=10", "epochs=2")],
        _check_aquasurf_and_grafs),
}


def _blocks():
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            line = text.count("\n", 0, match.start()) + 2
            yield path.relative_to(ROOT).as_posix(), line, match.group(1)


BLOCKS = list(_blocks())


def _entry(table, name, code):
    for (file, phrase), value in table.items():
        if file == name and code.startswith(phrase):
            return value
    return None


def _check_names(tree, where):
    """Every ``from keras_actfn... import X``, ``import keras_actfn...`` and ``ka.X`` exists."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_actfn"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}") is not None, \
                    f"{where}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_actfn"):
                    aliases[alias.asname or alias.name] = importlib.import_module(alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in aliases:
            assert hasattr(aliases[node.value.id], node.attr), \
                f"{where}: {node.value.id}.{node.attr} does not exist"


def test_the_docs_have_python_blocks():
    assert len(BLOCKS) >= 10
    named = {(name, code.split("\n")[0]) for name, _, code in BLOCKS}
    for file, phrase in [*NOT_RUN, *STAND_INS]:  # every exception still points at a block
        assert any(name == file and code.startswith(phrase) for name, _, code in BLOCKS), \
            (file, phrase, named)


@pytest.mark.parametrize("name,line,code", BLOCKS,
                         ids=[f"{n}:{ln}" for n, ln, _ in BLOCKS])
def test_block(name, line, code, tmp_path, monkeypatch):
    where = f"{name}:{line}"
    tree = ast.parse(code, filename=where)  # a syntax error fails here
    _check_names(tree, where)
    if _entry(NOT_RUN, name, code) is not None:
        return
    setup, substitutions, check = _entry(STAND_INS, name, code) or ("", [], None)
    for old, new in substitutions:
        assert code.count(old) == 1, f"{where}: the stand-in expects {old!r} once in the block"
        code = code.replace(old, new)
    # run as a script of its own (our repository's docs, like scripts/), in a scratch
    # folder: blocks that save files write them there
    script = tmp_path / f"{Path(name).stem}_{line}.py"
    script.write_text(setup.format(tests=str(ROOT / "tests")) + code, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(script), run_name="__doc_block__")
    if check is not None:
        check(namespace)


def _resolve(dotted):
    """The object a dotted ``keras_actfn...`` path names, or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return None
            obj = getattr(obj, attr)
        return obj
    return None


def test_every_dotted_keras_actfn_name_in_the_docs_resolves():
    """`keras_actfn.search.aquasurf.load_benchmark`-style names in the text (inline code,
    any block) name something that exists."""
    missing = []
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"\bkeras_actfn(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text):
            dotted = match.group(0)
            if _resolve(dotted) is None:
                line = text.count("\n", 0, match.start()) + 1
                missing.append(f"{path.relative_to(ROOT)}:{line}: {dotted}")
    assert not missing, "\n".join(missing)
