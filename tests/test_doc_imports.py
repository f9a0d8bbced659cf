"""Every import path that README.md and docs/ show a reader resolves: the ``import`` and
``from ... import`` statements of their Python blocks, each dotted ``keras_actfn.x.y`` name
in the text, and each ``ka.name`` (``import keras_actfn as ka``). A module that moves or an
export that is dropped fails here, naming the page."""

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
DOTTED = re.compile(r"\bkeras_actfn(?:\.[A-Za-z_]\w*)+")
KA = re.compile(r"\bka\.([A-Za-z_]\w*)")


def _statements(page):
    """``(module, [names])`` of each keras_actfn import in the page's Python blocks."""
    found = []
    for lang, body in FENCE.findall(page.read_text()):
        if lang not in ("python", "py", "pycon", ""):
            continue
        body = "\n".join(line[4:] if line.startswith((">>> ", "... ")) else line
                         for line in body.splitlines())
        try:
            tree = ast.parse(body)
        except SyntaxError:
            continue  # a shell or output block
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_actfn"):
                found.append((node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                found += [(a.name, []) for a in node.names if a.name.startswith("keras_actfn")]
    return found


def _resolve(dotted):
    """Import the longest module prefix of ``dotted``, then get the remaining attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as error:
            if error.name and not ".".join(parts[:cut]).startswith(error.name):
                raise  # a module exists but imports something missing
            continue
        for name in parts[cut:]:
            value = getattr(value, name)
        return value
    raise ModuleNotFoundError(dotted)


def _cases():
    cases = []
    for page in PAGES:
        label = str(page.relative_to(ROOT))
        for module, names in _statements(page):
            cases += [(label, f"{module}.{name}") for name in names if name != "*"]
            cases.append((label, module))
        text = page.read_text()
        cases += [(label, name.rstrip(".")) for name in DOTTED.findall(text)]
        if "import keras_actfn as ka" in text:
            cases += [(label, f"keras_actfn.{name}") for name in KA.findall(text)]
    return sorted(set(cases))


CASES = _cases()


def test_the_pages_name_many_paths():
    # the scan itself works: it finds the statements the README's quick start is built on
    assert len(CASES) > 40
    assert ("README.md", "keras_actfn.ActivationSearch") in CASES or \
        any(page == "README.md" and path.endswith("ActivationSearch") for page, path in CASES)


@pytest.mark.parametrize("page,path", CASES, ids=[f"{p}:{d}" for p, d in CASES])
def test_path_resolves(page, path):
    try:
        _resolve(path)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{page} names {path}, which does not resolve: {error}")


@pytest.mark.parametrize("module,names", [
    ("keras_actfn", ["AutoInit", "evaluate_activation", "ActivationSearch", "CustomActivation",
                     "replace_activations", "parse"]),
    ("keras_actfn.search", ["ActivationSearch", "run_search", "Store", "Pangaea",
                            "CafeEvolution"]),
    ("keras_actfn.search.engine", ["run_search", "Store", "make_executor", "RayExecutor",
                                   "SearchAlgorithm"]),
    ("keras_actfn.search.aquasurf", ["load_benchmark", "FunctionDatabase"]),
    ("keras_actfn.search.grafs", ["grafs_search", "run_grafs", "get_preset", "PRESETS"]),
])
def test_packages_export_their_entry_points(module, names):
    package = importlib.import_module(module)
    for name in names:
        assert name in package.__all__ and getattr(package, name) is not None, (module, name)
