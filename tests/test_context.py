"""The page context: shared parameters defined once, injected by group, seeds per purpose, and
per-page fingerprints over the code a page imports."""
import textwrap

import jupytext
import nbformat
import pytest

from helpers.book.build import BuildError, execute_pages, fingerprint, import_closure, page_groups
from helpers.book.context import GROUPS, ContextError, Seeds, resolve_context
from support import PAGE_HEADER, make_book

CONTEXT_PAGE = """\
# %% tags=["parameters"]
context = {}
top_k = 3

# %%
def setup_page(context, *groups, **knobs):
    print(sorted(context.items()), knobs)

setup_page(context, "corpus", top_k=top_k)
"""


def notebook_of(code: str):
    return jupytext.reads(PAGE_HEADER + textwrap.dedent(code), fmt="py:percent")


def test_groups_are_read_from_the_setup_call():
    assert page_groups(notebook_of('# %%\npage = setup_page(context, "neuron", "corpus", top_k=1)\n')) == ("model", "prompts", "neuron", "corpus")
    assert page_groups(notebook_of("# %%\npage = setup_page(context)\n")) == ("model", "prompts")
    assert page_groups(notebook_of("# %%\nx = 1\n")) == ()
    with pytest.raises(BuildError, match="string literals"):
        page_groups(notebook_of("# %%\ng = 'neuron'\npage = setup_page(context, g)\n"))
    with pytest.raises(ContextError, match="unknown parameter group.*'neurons'.*the groups are model, prompts, neuron"):
        page_groups(notebook_of('# %%\npage = setup_page(context, "neurons")\n'))


def test_context_fills_defaults_and_refuses_what_the_page_would_ignore():
    values = resolve_context({"n_docs": 7}, ("corpus",))
    assert values["n_docs"] == 7 and values["dataset"] == GROUPS["corpus"]["dataset"]
    assert values["clean_prompt"] == GROUPS["prompts"]["clean_prompt"] and "layer" not in values
    with pytest.raises(ContextError, match="'layer' is not used here: it belongs to the group 'neuron'"):
        resolve_context({"layer": 3}, ())
    with pytest.raises(ContextError, match="'colour' is not used here: no group has it"):
        resolve_context({"colour": "red"}, ("neuron",))


def test_seeds_are_one_per_purpose():
    seeds = Seeds.of(5)
    assert (seeds.torch, seeds.pairs, seeds.corpus, seeds.draws, seeds.folds) == (5, 5, 5, 5, 5)
    assert seeds.reference != seeds.corpus, "the reference corpus must be another draw than the scan's"
    with pytest.raises(ContextError, match="seed must be an integer"):
        Seeds.of("1")


def test_the_build_injects_only_the_groups_a_page_names(tmp_path):
    root = make_book(tmp_path, {"scan": CONTEXT_PAGE})
    execute_pages(root, {"n_docs": 9, "model_name": "toy"}, {}, [], force=False)
    meta = nbformat.read(root / "book" / "scan.ipynb", as_version=4).metadata["an_neuron"]
    assert meta["parameters"] == {"context": {"model_name": "toy", "n_docs": 9}}


def test_a_shared_parameter_of_an_unselected_page_is_accepted(tmp_path):
    other = CONTEXT_PAGE.replace('"corpus"', '"neuron"')
    root = make_book(tmp_path, {"scan": CONTEXT_PAGE, "neuron": other})
    execute_pages(root, {}, {"layer": 1}, ["scan"], force=False)
    assert "layer" not in nbformat.read(root / "book" / "scan.ipynb", as_version=4).metadata["an_neuron"]["parameters"]["context"]
    with pytest.raises(BuildError, match="no page takes the parameter.*colour"):
        execute_pages(root, {}, {"colour": "red"}, ["scan"], force=False)
    with pytest.raises(BuildError, match="the profile sets colour, which no page takes"):
        execute_pages(root, {"colour": "red"}, {}, ["scan"], force=False)


def test_a_page_is_fingerprinted_over_the_modules_it_imports(tmp_path):
    root = make_book(tmp_path, {"uses_a": '# %%\nfrom helpers.pkg.a import f\n', "uses_c": "# %%\nimport helpers.c\n"})
    package = root / "helpers" / "pkg"
    package.mkdir(parents=True)
    (root / "helpers" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from helpers.b import g\n    return g()\n")
    (root / "helpers" / "b.py").write_text("def g():\n    return 1\n")
    (root / "helpers" / "c.py").write_text("x = 1\n")
    uses_a, uses_c = root / "book" / "uses_a.py", root / "book" / "uses_c.py"
    assert [p.relative_to(root).as_posix() for p in import_closure(uses_a, root)] == [
        "helpers/__init__.py", "helpers/b.py", "helpers/pkg/__init__.py", "helpers/pkg/a.py"]
    before = {page: fingerprint(page, {}, root) for page in (uses_a, uses_c)}
    (root / "helpers" / "c.py").write_text("x = 2\n")
    assert fingerprint(uses_a, {}, root) == before[uses_a], "a module the page does not import changed its fingerprint"
    assert fingerprint(uses_c, {}, root) != before[uses_c]
    (root / "helpers" / "b.py").write_text("def g():\n    return 2\n")  # imported inside a function of a.py
    assert fingerprint(uses_a, {}, root) != before[uses_a]
    (root / "helpers" / "model.json").write_text("{}")  # a data file (a bundled model) counts for every page
    after_c = fingerprint(uses_c, {}, root)
    (root / "helpers" / "model.json").write_text('{"retrained": 1}')
    assert fingerprint(uses_c, {}, root) != after_c, "a data file under helpers/ (a bundled model) counts for every page"
