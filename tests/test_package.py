"""The package without the book: ``pip install .`` brings what the methods import, and the
methods run with the book's toolchain absent."""
import ast
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions

from helpers.book.build import ROOT

METHOD_LAYERS = ("core", "toy", "methods", "scan", "paper")
# what only the book extra installs: none of it may be needed by the methods (pyyaml is left
# out: transformers' own dependencies bring it)
BOOK_ONLY = ("plotly", "circuitsvis", "IPython", "myst_nb", "papermill", "nbformat", "jupytext", "jupyter_book", "ipykernel")


def base_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {req.split("==")[0].split(">")[0].split("[")[0].strip().lower().replace("_", "-") for req in project["dependencies"]}


def third_party_imports() -> set[str]:
    found = set()
    for layer in METHOD_LAYERS:
        for path in (ROOT / "helpers" / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {m for m in found if m != "helpers" and m not in sys.stdlib_module_names}


def test_every_module_the_methods_import_is_a_base_dependency():
    distributions = packages_distributions()
    needed = {dist.lower().replace("_", "-") for module in third_party_imports() for dist in distributions.get(module, [module])}
    missing = needed - base_requirements()
    assert not missing, f"the methods import {missing}, which `pip install .` does not install"
    assert not {m for m in third_party_imports() if m in BOOK_ONLY}
    assert not base_requirements() & {"plotly", "circuitsvis", "pyyaml", "jupyter-book", "papermill"}, "the book's toolchain is an extra"


BLOCKED_RUN = f"""
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BOOK_ONLY!r}:
            raise ModuleNotFoundError(f'{{name}} is not installed (book extra)')
sys.meta_path.insert(0, Absent())
import pkgutil, importlib, helpers
for layer in {METHOD_LAYERS!r}:
    package = importlib.import_module('helpers.' + layer)
    for module in pkgutil.walk_packages(package.__path__, 'helpers.' + layer + '.'):
        importlib.import_module(module.name)
from helpers.core.models import load_model
from helpers.core.prompts import make_contrast
from helpers.methods.neuron_patching import neuron_patching
model = load_model('toy', cache=None)
result = neuron_patching(model, make_contrast(model), 3)
print('top', result.top_neuron, round(result.whole_layer, 3))
"""


def test_the_methods_run_without_the_book_toolchain():
    """Every module of the method layers imports, and neuron patching runs on the bundled model,
    in a process where the book extra's packages cannot be imported."""
    result = subprocess.run([sys.executable, "-c", BLOCKED_RUN], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("top L3N")
