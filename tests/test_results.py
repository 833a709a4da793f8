"""Results kept as data: the results file round-trips, bad files are refused in one line, a
stored GPT-2 Large run becomes a third column on the scorecard and beside the study, and the
HTML-only build refuses stale pages by name."""
import json
import logging

import nbformat
import pytest

from helpers.book.build import execute_pages, load_profile, main, stale_pages
from helpers.book.claims import CLAIMS, scorecard, scorecard_view
from helpers.book.display import beside_table
from helpers.book.findings import FINDINGS_MIME
from helpers.book.results import (
    BESIDE_MIME, RESULTS_FORMAT, ResultsError, collect_results, read_results, stored_label, stored_study_results, write_results,
)
from helpers.paper import study

from support import make_book


def executed_page(path, model, glued, findings, beside):
    """An executed notebook as the build leaves it: glued values, a findings record, the rows
    shown beside the study, the parameters and fingerprint in its metadata."""
    outputs = [nbformat.v4.new_output("display_data", data={f"application/papermill.record/text/plain": repr(value)},
                                      metadata={"scrapbook": {"name": name, "mime_prefix": "application/papermill.record/"}})
               for name, value in glued.items()]
    outputs.append(nbformat.v4.new_output("display_data", data={FINDINGS_MIME: {"model": model, "on_paper_model": model == "gpt2-large",
                                                                                "findings": findings}}))
    outputs.append(nbformat.v4.new_output("display_data", data={"text/html": "<table></table>", BESIDE_MIME: {"page": path.stem, "rows": beside}}))
    cell = nbformat.v4.new_code_cell("", outputs=outputs)
    notebook = nbformat.v4.new_notebook(cells=[cell])
    notebook.metadata["an_neuron"] = {"fingerprint": "f-" + path.stem, "parameters": {"context": {"model_name": model}}}
    nbformat.write(notebook, path)


# the lens claim's numbers: the largest step follows the neuron's MLP layer
LENS = {"step_before": -0.46, "step_after": 1.09, "step_sublayer": "MLP 31", "neuron_layer": 31}


@pytest.fixture
def book(tmp_path):
    (tmp_path / "book").mkdir()
    executed_page(tmp_path / "book" / "02_logit_lens.ipynb", "toy", {"model_fingerprint": "abc", "lens_jump": 1.5},
                  {"lens": LENS}, [["jump", "1.5"]])
    executed_page(tmp_path / "book" / "04_neuron_patching.ipynb", "toy",
                  {"chosen_neuron": "L3N50", "chosen_how": "ranked first", "chosen_stability": "0.970"}, {}, [])
    executed_page(tmp_path / "book" / "05_max_activating.ipynb", "other", {"x": 1}, {}, [])
    return tmp_path


def test_the_results_file_round_trips_and_holds_one_model(book):
    path = write_results(book, "toy", "toy")
    assert path == book / "_build" / "results" / "toy-toy.json"
    results = read_results(path)
    assert results == json.loads(json.dumps(collect_results(book, "toy", "toy")))
    assert results["format"] == RESULTS_FORMAT and results["model"] == "toy" and not results["on_paper_model"]
    assert set(results["pages"]) == {"02_logit_lens", "04_neuron_patching"}, "another model's page is left out"
    assert results["pages"]["02_logit_lens"]["glued"]["lens_jump"] == "1.5"
    assert results["pages"]["02_logit_lens"]["beside"] == [["jump", "1.5"]]
    assert results["neuron"] == {"name": "L3N50", "how": "ranked first", "stability": "0.970"}
    assert results["model_fingerprint"] == "abc" and results["commit"] == "unknown"
    assert results["findings"]["lens"]["findings"]["lens"] == LENS


@pytest.mark.parametrize("content, message", [
    ('{"format": 1, "model": ', "is not a results file"),
    ('{"format": 99}', "has results format 99, this book reads format 1"),
    ('{"format": 1, "model": "gpt2-large"}', "lacks on_paper_model, profile"),
    ('[1, 2]', "has results format 'list'"),
])
def test_a_bad_results_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ResultsError, match=message) as error:
        read_results(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def planted_gpt2_large(folder, book, date):
    """A GPT-2 Large results file planted from the toy book's, relabelled."""
    results = collect_results(book, "gpt2-large-gpu", "toy")
    results.update(model="gpt2-large", on_paper_model=True, date=date)
    for record in results["findings"].values():
        record["model"] = "gpt2-large"
    results["pages"]["02_logit_lens"]["beside"] = [["jump", "9.25"]]
    folder.mkdir(exist_ok=True)
    (folder / f"gpt2-large-{date}.json").write_text(json.dumps(results))
    return results


def test_a_stored_gpt2_large_run_is_a_third_column(book, tmp_path, caplog):
    stored_dir = tmp_path / "results"
    planted_gpt2_large(stored_dir, book, "2026-01-02")
    planted_gpt2_large(stored_dir, book, "2026-03-04")
    (stored_dir / "toy.json").write_text(json.dumps({**read_results(write_results(book, "toy", "toy"))}))
    (stored_dir / "broken.json").write_text("{")
    stored_study_results.cache_clear()
    with caplog.at_level(logging.WARNING, logger="helpers.book.results"):
        stored = stored_study_results(stored_dir)
    assert stored["date"] == "2026-03-04", "the newest GPT-2 Large file, not the toy's"
    assert "broken.json is not a results file" in caplog.text
    # the scorecard judges the stored findings by the same rules
    table = scorecard({}, study(), "toy", stored)
    lens = table[[c.finding == "lens" for c in CLAIMS]].iloc[0]
    assert lens["stored verdict"] == "holds" and lens.stored == "-0.46 -> 1.09 after MLP 31" and lens.verdict == "not measured"
    view = scorecard_view(table, "toy", stored_label(stored))
    assert list(view.columns)[:3] == ["claim", "the study, GPT-2 Large", "GPT-2 Large, this book, 2026-03-04"]
    # beside the study: the stored run's cell by page and quantity
    beside = beside_table("toy", [("jump", 10.0, 1.5), ("layer", 31, 3)], stored=stored, page_name="02_logit_lens")
    assert list(beside.columns) == ["quantity", "the study, GPT-2 Large", "GPT-2 Large, this book, 2026-03-04", "this run, toy"]
    assert list(beside.iloc[:, 2]) == ["9.25", "not recorded"]
    assert list(beside_table("toy", [("jump", 10.0, 1.5)]).columns) == ["quantity", "the study, GPT-2 Large", "this run, toy"]


PAGE = """\
# %% tags=["parameters"]
greeting = "default"
seed = 1

# %%
print(greeting)
"""


def test_html_only_refuses_stale_pages_by_name(tmp_path):
    root = make_book(tmp_path, {"01_a": PAGE, "02_b": PAGE})
    profile = load_profile(root, "toy")
    assert stale_pages(root, profile, {}) == ["01_a", "02_b"], "pages never executed are stale"
    execute_pages(root, profile, {}, [], False)
    assert stale_pages(root, profile, {}) == []
    (root / "book" / "02_b.py").write_text((root / "book" / "02_b.py").read_text() + "\nprint('changed')\n")
    assert stale_pages(root, profile, {}) == ["02_b"]
    assert stale_pages(root, {**profile, "greeting": "other"}, {}) == ["01_a", "02_b"], "other parameters make every page stale"
    with pytest.raises(SystemExit, match=r"stale for the current code or parameters \(profile toy\): 02_b; execute them first") as error:
        main(["--root", str(root), "--html-only"])
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_html_only_renders_fresh_pages_without_executing_them(tmp_path):
    root = make_book(tmp_path, {"01_a": "# %% [markdown]\n# # A page\n\n" + PAGE})
    (root / "_config.yml").write_text('title: t\nexecute:\n  execute_notebooks: "off"\nonly_build_toc_files: true\n'
                                      'exclude_patterns: ["_build/**", "_vendor/**"]\nsphinx:\n  config:\n    html_static_path: ["_vendor"]\n')
    execute_pages(root, load_profile(root, "toy"), {}, [], False)
    executed = (root / "book" / "01_a.ipynb").read_bytes()
    main(["--root", str(root), "--html-only"])
    assert (root / "book" / "01_a.ipynb").read_bytes() == executed, "nothing was executed again"
    assert "hello" in (root / "_build" / "html" / "book" / "01_a.html").read_text()
    assert read_results(root / "_build" / "results" / "toy-toy.json")["pages"]["01_a"]["fingerprint"]


def test_a_stored_results_file_makes_every_page_stale(tmp_path):
    """The third column comes from results/: adding or changing a file there re-executes pages."""
    from helpers.book.build import fingerprint

    root = make_book(tmp_path, {"01_a": PAGE})
    page = root / "book" / "01_a.py"
    before = fingerprint(page, {}, root)
    (root / "results").mkdir()
    (root / "results" / "gpt2-large.json").write_text("{}")
    after = fingerprint(page, {}, root)
    assert after != before
    (root / "results" / "gpt2-large.json").write_text('{"format": 1}')
    assert fingerprint(page, {}, root) != after
