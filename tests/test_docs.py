"""Every Python block of README.md and docs/: it parses, every keras_actfn name it imports
or reads exists, and the blocks that run in seconds on this machine run as written.

A block is run unless :data:`NOT_RUN` names it (by file and a phrase of its first line)
with the reason: data that is not on a machine without internet (CIFAR), a user's own
model and data the block stands for, or minutes of training. Those are still checked for
syntax and for every import path and ``ka.NAME`` they use (a renamed or removed API fails
here)."""

import ast
import importlib
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

#: (file, phrase of the block's first code line) -> why it is checked but not run
NOT_RUN = {
    ("README.md", "import keras_actfn as ka\n\nmodel = build_my_model()"):
        "stands for the user's own model and data; tests/test_user_search.py runs it",
    ("docs/autoinit.md", "from keras_actfn.autoinit import AutoInit"):
        "initializes the reader's `model`; the README tour runs AutoInit",
    ("docs/data.md", "from keras_actfn.data import load_task"):
        "CIFAR-10 from a local tensorflow-datasets folder",
    ("docs/data.md", "task = load_task(\"text\""):
        "a text corpus file of the reader's",
    ("docs/evaluation.md", "from keras_actfn.train import evaluate_activation"):
        "trains for minutes and on CIFAR-100 (GPU)",
    ("docs/index.md", "from keras_actfn import replace_activations"):
        "operates on the reader's `model`; the README tour runs replace_activations",
    ("docs/search.md", "search = ka.ActivationSearch(model, method=\"aquasurf\""):
        "searches the reader's model and data for minutes",
}


def _blocks():
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            line = text.count("\n", 0, match.start()) + 2
            yield path.relative_to(ROOT).as_posix(), line, match.group(1)


BLOCKS = list(_blocks())


def _reason(name, code):
    for (file, phrase), why in NOT_RUN.items():
        if file == name and code.startswith(phrase):
            return why
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
    for file, phrase in NOT_RUN:  # every exception still points at a block
        assert any(name == file and code.startswith(phrase) for name, _, code in BLOCKS), \
            (file, phrase, named)


@pytest.mark.parametrize("name,line,code", BLOCKS,
                         ids=[f"{n}:{ln}" for n, ln, _ in BLOCKS])
def test_block(name, line, code, tmp_path, monkeypatch):
    where = f"{name}:{line}"
    tree = ast.parse(code, filename=where)  # a syntax error fails here
    _check_names(tree, where)
    if _reason(name, code) is not None:
        return
    # run as a script of its own (our repository's docs, like scripts/), in a scratch
    # folder: blocks that save files write them there
    script = tmp_path / f"{Path(name).stem}_{line}.py"
    script.write_text(code, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__doc_block__")


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
