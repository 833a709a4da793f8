"""Every page on the study's model path, fast: a GPT-2 Large-width model (2 layers, GPT-2's
tokenizer, random weights) in a folder named gpt2-large, with the gpt2-large-cpu profile and
a few toy documents. Each page must execute and show its table beside the study; the full
36-layer rehearsal is `make rehearsal`."""
import shutil
import subprocess
import sys

import nbformat
import pytest

from helpers.book.build import ROOT, toc_pages
from helpers.core.rehearsal import write_rehearsal_model

pytestmark = pytest.mark.book
PAGES_WITH_A_STUDY_TABLE = {"01_prompt", "02_logit_lens", "03_layer_patching", "04_neuron_patching", "06_correlation", "07_congruence",
                            "08_top_neuron_per_token", "09_mutual_exclusive", "11_ablation", "12_direct_indirect", "13_inputs", "15_sweep"}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("*.ipynb"))
    for name in ("_toc.yml", "profiles.yaml"):
        shutil.copy(ROOT / name, root / name)
    folder = write_rehearsal_model(tmp_path_factory.mktemp("model") / "gpt2-large", seed=0, n_layers=2)
    command = [sys.executable, "-m", "helpers.book.build", "--root", str(root), "--no-html", "--profile", "gpt2-large-cpu",
               "--set", f"model_name={folder}", "--set", "dataset=toy", "--set", "n_docs=4"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, result.stdout


def html_of(notebook_path) -> str:
    notebook = nbformat.read(notebook_path, as_version=4)
    return "".join(str(o.get("data", {}).get("text/html", "")) + str(o.get("data", {}).get("text/markdown", "")) for c in notebook.cells for o in c.get("outputs", []))


def test_every_page_executes_on_the_paper_path(executed):
    root, log = executed
    for page in toc_pages(ROOT):
        assert f"executed    book/{page.stem}.py" in log, f"{page.stem} did not run"
        text = html_of(root / "book" / f"{page.stem}.ipynb")
        assert "the model of the original study" in text, f"{page.stem} does not take the GPT-2 Large branch"
        if page.stem in PAGES_WITH_A_STUDY_TABLE:
            assert "the study, GPT-2 Large" in text, f"{page.stem} shows no table beside the study"


def test_the_scorecard_renders_and_says_the_weights_are_random(executed):
    """The scorecard runs last and reads every page's findings; on random weights it says the
    verdicts are an untrained network's, and no claim is left 'not measured'."""
    root, log = executed
    assert log.index("executed    book/00_scorecard.py") > max(log.index(f"executed    book/{p.stem}.py") for p in toc_pages(ROOT) if p.stem != "00_scorecard")
    text = html_of(root / "book" / "00_scorecard.ipynb")
    assert "These weights are random" in text
    assert "<b>not measured</b>" not in text, "every claim's page ran and recorded its finding"


def test_counts_of_a_few_documents_are_not_put_beside_the_studys(executed):
    root, _ = executed
    text = html_of(root / "book" / "06_correlation.ipynb")
    assert "counts are not comparable" in text and "1471.000000" not in text
