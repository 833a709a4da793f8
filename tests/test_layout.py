"""The shape of the project: layers import downwards only, and pages stay thin.

A page is a parameters cell, one ``setup_page`` call, one helper call per analysis, figures,
glued values and prose. Computations, parsing and phrases live in ``helpers`` with tests.
"""
import ast
import re
from pathlib import Path

import jupytext
import pytest

from helpers.book.build import ROOT, declared_parameters, import_closure, page_groups, toc_pages
from helpers.book.context import GROUP_OF
from helpers.book.page import AUTO_KNOBS

LAYERS = ["core", "toy", "methods", "scan", "paper", "book"]
PAGES = toc_pages(ROOT)


def imported_modules(path: Path) -> set[str]:
    return imported_modules_from_tree(ast.parse(path.read_text()))


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "helpers" and len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_sits_in_a_layer():
    loose = [p.name for p in (ROOT / "helpers").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside the layers: {loose}"


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_downwards(layer):
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    if layer == "toy":
        allowed = {"core", "toy"}
    if layer == "paper":
        allowed = {"core", "paper"}
    for path in (ROOT / "helpers" / layer).rglob("*.py"):
        for module in imported_modules(path):
            used = layer_of(module)
            assert used is None or used in allowed, f"{path.relative_to(ROOT)} imports {module}: {layer} may use only {sorted(allowed)}"


def test_references_are_used_by_tests_only():
    for path in (ROOT / "helpers").rglob("*.py"):
        if path.name != "reference.py":
            assert "helpers.methods.reference" not in imported_modules(path), f"{path.relative_to(ROOT)} calls a slow reference"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_pages_are_thin(page):
    source = page.read_text()
    code = "\n".join(cell.source for cell in jupytext.read(page).cells if cell.cell_type == "code")
    tree = ast.parse(code)
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Lambda, ast.ClassDef))], f"{page.stem} defines a function"
    imports = {m.split(".")[0] for m in imported_modules_from_tree(tree)}
    assert imports <= {"helpers"}, f"{page.stem} imports {imports - {'helpers'}}: computations belong in helpers"
    assert code.count("setup_page(") == 1, f"{page.stem} must set itself up with one setup_page call"
    for forbidden in ("literal_eval", "re.findall", ".split(", "paper_figures", "Neuron(", "import torch"):
        assert forbidden not in code, f"{page.stem} uses {forbidden!r}: parsing and hand-built names belong in helpers"
    assert not re.search(r'f"L\{', code), f"{page.stem} builds a neuron name by hand"
    assert "{glue:text}" in source or page.stem == "01_prompt"


def imported_modules_from_tree(tree) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_page_repeats_another_pages_preamble():
    setups = {}
    for page in PAGES:
        cells = [c.source for c in jupytext.read(page).cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
        setups[page.stem] = cells[0]
    repeated = [a for a in setups for b in setups if a < b and setups[a] == setups[b]]
    assert not repeated, f"pages with the same set-up cell: {repeated}"


def test_pages_declare_only_their_own_knobs():
    """The shared parameters live in helpers.book.context alone: a page declares ``context`` and
    its own knobs, never a copy of a shared default."""
    shared = set(GROUP_OF)
    for page in PAGES:
        notebook = jupytext.read(page)
        declared = declared_parameters(notebook)
        assert "context" in declared, f"{page.stem} does not declare context"
        assert not declared & shared, f"{page.stem} declares shared parameters {sorted(declared & shared)}: they belong to helpers.book.context"
        assert not declared & {"neurons", "an_neuron"}, f"{page.stem} names its neuron another way"


def test_every_neuron_page_names_the_neuron_group():
    """One neuron everywhere: SET="neuron=L3N73" reaches every page that studies the neuron, and
    "auto" is found on the page's own prompts (every page has the prompts group)."""
    groups = {p.stem: page_groups(jupytext.read(p)) for p in PAGES}
    assert all({"model", "prompts"} <= set(g) for g in groups.values())
    takes_neuron = {stem for stem, g in groups.items() if "neuron" in g}
    assert {"04_neuron_patching", "05_max_activating", "06_correlation", "07_congruence", "10_prediction_neurons",
            "11_ablation", "12_direct_indirect", "13_inputs", "14_neuroscope"} <= takes_neuron
    for page in PAGES:
        code = "\n".join(c.source for c in jupytext.read(page).cells if c.cell_type == "code")
        if "page.neuron" in code or "page.choice" in code:
            assert page.stem in takes_neuron, f"{page.stem} uses the neuron without naming the neuron group"
        if "page.pairs" in code or "page.prompt_set(" in code:
            assert "prompt_set" in groups[page.stem] or "page.pairs" not in code, f"{page.stem} uses the prompt set without its group"
        if "page.corpus" in code or "page.dataset" in code:
            assert "corpus" in groups[page.stem], f"{page.stem} scans without naming the corpus group"


def test_auto_knob_resolvers_are_in_the_closure_of_the_pages_that_use_them():
    """A knob resolved by setup_page is resolved by a module the page imports, so the page's
    fingerprint sees a change of the resolver."""
    for page in PAGES:
        code = "\n".join(c.source for c in jupytext.read(page).cells if c.cell_type == "code")
        closure = {str(p.relative_to(ROOT)) for p in import_closure(page, ROOT)}
        for knob, target in AUTO_KNOBS.items():
            if re.search(rf"\b{knob}={knob}\b", code):
                module = target.split(":")[0].replace(".", "/") + ".py"
                assert module in closure, f"{page.stem} passes {knob} but does not import {module}"


def test_every_page_cites_what_it_uses_from_the_bibliography():
    keys = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "references.bib").read_text(), flags=re.M))
    assert {"miller2023an", "meng2022locating", "nostalgebraist2020logit", "nanda2023attribution", "kramar2024atp",
            "zhang2023best", "heimersheim2024patching", "gurnee2024universal"} <= keys
    cited = set()
    for page in PAGES:
        found = set(re.findall(r"\{cite\}`([^`]+)`", page.read_text()))
        assert found, f"{page.stem} cites nothing"
        assert found <= keys, f"{page.stem} cites {found - keys}, which references.bib lacks"
        cited |= found
    assert keys - {"nanda2022transformerlens"} <= cited, f"entries no page cites: {keys - cited}"


def test_no_private_name_crosses_a_module_line():
    for path in (ROOT / "helpers").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.relative_to(ROOT)} imports {private} from {node.module}"


def test_one_signed_colour_convention():
    """Signed values: plotly's RdBu from helpers.book.figures.common (positive blue, zero white)
    everywhere; no figure reverses it or names its own."""
    for path in (ROOT / "helpers" / "book").rglob("*.py"):
        text = path.read_text()
        assert "reversescale" not in text, f"{path.relative_to(ROOT)} reverses the signed scale"
        if path.name != "common.py":
            assert '"RdBu"' not in text, f"{path.relative_to(ROOT)} names its own signed scale; use SIGNED_SCALE"


def test_no_module_passes_500_lines():
    """A module that grows past 500 lines is doing two jobs: split it along its seam."""
    long = {str(path.relative_to(ROOT)): n for path in (ROOT / "helpers").rglob("*.py") if (n := len(path.read_text().splitlines())) > 500}
    assert not long, long
