"""The whole book: every page executes on the offline profile and renders with no network."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from browser import check_neuron_browser, check_pages, serve
from helpers.book.build import ROOT, toc_pages
from helpers.book.neuroscope import BROWSER_PAGE

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def html_root() -> Path:
    """Build the book with the default (offline) profile, as `make book` does; with
    AN_NEURON_BOOK_PREBUILT=1 check the HTML already built (``make rehearsal`` builds it first)."""
    if os.environ.get("AN_NEURON_BOOK_PREBUILT") != "1":
        result = subprocess.run([sys.executable, "-m", "helpers.book.build"], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return ROOT / "_build" / "html"


def page_paths() -> list[str]:
    return ["book/intro.html", "book/references.html", "book/api.html"] + [f"book/{page.stem}.html" for page in toc_pages(ROOT)]


SCREENSHOTS = ROOT / "_build" / "screenshots"


def test_every_page_renders_offline(html_root):
    """Every page loads with no error and no outside request, and is saved as a screenshot at
    the book's width in the light and the dark theme (``_build/screenshots/``) for reading."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serve(html_root) as url:
        reports = check_pages(url, page_paths(), screenshot_dir=SCREENSHOTS)
    problems = {r.url: r.problems for r in reports if r.problems}
    assert not problems, problems
    by_page = {Path(r.url).stem: r for r in reports}
    # the prompt page must really show its figure, its token view and its formula
    prompt = by_page["01_prompt"]
    assert prompt.figures >= 1 and prompt.token_views >= 1 and prompt.math >= 1
    assert all((SCREENSHOTS / f"{Path(p).stem}{theme}.png").stat().st_size > 10_000 for p in page_paths() for theme in ("", "-dark"))


def test_each_page_names_its_model_and_offers_the_executed_notebook(html_root):
    for page in toc_pages(ROOT):
        html = (html_root / "book" / f"{page.stem}.html").read_text()
        assert "Produced by" in html, f"{page.stem} does not say which model produced it"
        assert f"{page.stem}.ipynb" in html, f"{page.stem} offers no notebook download"
        assert (html_root / "_sources" / "book" / f"{page.stem}.ipynb").exists()


def test_the_api_page_is_generated_from_the_docstrings(html_root):
    html = (html_root / "book" / "api.html").read_text()
    for name in ("helpers.core.models.load_model", "helpers.methods.neuron_patching.neuron_patching", "helpers.scan.neuroscope.neuroscope"):
        assert f'id="{name}"' in html, f"{name} is missing from the API page"
    assert "Patch every neuron of MLP" in html, "the docstrings' text is on the page"


def test_the_references_page_lists_the_works_the_pages_cite(html_root):
    html = (html_root / "book" / "references.html").read_text()
    for author in ("Miller", "Meng", "nostalgebraist", "Kram", "Zhang", "Heimersheim", "Gurnee"):
        assert author in html, f"{author} missing from the references page"
    for page in toc_pages(ROOT):
        assert 'href="references.html#id' in (html_root / "book" / f"{page.stem}.html").read_text(), f"{page.stem} shows no citation"


def test_the_neuron_browser_shows_neurons_from_disk_and_served(html_root):
    """The browser page opens a neuron named in the address, shows its examples, histogram and
    logit table, and loads another on demand, from disk and from a server; other pages link to it."""
    index_js = (html_root / "_static" / "neuroscope" / "index.js").read_text()
    index = json.loads(index_js[len("neuroscopeIndex("):-3])
    first, other = f"L{index['layers'][-1]}N{index['d_mlp'] // 2}", f"L{index['layers'][0]}N1"
    page = html_root / "book" / f"{BROWSER_PAGE}.html"
    assert page.stat().st_size < 200_000, "the browser page must stay light: neuron data is loaded on demand"
    with serve(html_root) as url:
        reports = {"from disk": check_neuron_browser(page.as_uri(), first, other), "served": check_neuron_browser(f"{url}/book/{page.name}", first, other)}
    for how, report in reports.items():
        assert report["problems"] == [], (how, report["problems"])
        assert report["first"]["title"] == first and report["first"]["examples"] > 0 and report["first"]["bars"] > 0, (how, report["first"])
        assert report["first"]["bar_tokens"] == index["n_tokens"] and report["first"]["logit_rows"] > 0, (how, report["first"])
        assert report["typed"]["title"] == other and report["typed"]["examples"] > 0, (how, report["typed"])
    assert f'href="{BROWSER_PAGE}.html#L' in (html_root / "book" / "05_max_activating.html").read_text()


# the pages that read each cache: the processed weights and the neuron choice (every page below),
# a corpus scan (06), a congruence pass (10), the neuroscope pass (14), the sweep's rows (15)
CACHE_PAGES = ["06_correlation", "10_prediction_neurons", "14_neuroscope", "15_sweep"]


def damage_caches(cache: Path) -> dict[str, int]:
    """Damage every entry of every cache of the build, each kind its own way; how many files
    of each kind were damaged."""
    damaged = {}

    def hit(kind: str, path: Path, how: str) -> None:
        raw = bytearray(path.read_bytes())
        if how == "zero":  # same size, 256 bytes zeroed in the middle
            middle = len(raw) // 2
            raw[middle:middle + 256] = bytes(min(256, len(raw) - middle))
        else:
            raw = raw[: len(raw) // 2]
        path.write_bytes(bytes(raw))
        damaged[kind] = damaged.get(kind, 0) + 1

    for kind, how in (("processed", "truncate"), ("choices", "zero"), ("congruence", "truncate"), ("sweep", "zero")):
        for path in sorted((cache / kind).glob("*.safetensors")):
            hit(kind, path, how)
    for path in sorted((cache / "neuroscope").glob("*/neuroscope.safetensors")):
        hit("neuroscope", path, "zero")
    for path in sorted((cache / "scans").glob("*/manifest.json")):
        hit("scans", path, "truncate")
    return damaged


def stderr_of(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []) if o.get("name") == "stderr")


@pytest.mark.skipif(os.environ.get("AN_NEURON_BOOK_PREBUILT") == "1", reason="re-executes pages with the default profile")
def test_damaged_caches_are_named_recomputed_and_give_the_same_numbers(html_root):
    """Every cache entry of the built book damaged (cut short, or zeroed in place at the same
    size); the pages that read them executed again: each damaged kind is named in a warning on
    a page, and every glued value is what the first build glued."""
    from helpers.book.findings import glued_values

    before = {page: glued_values(json.loads((ROOT / "book" / f"{page}.ipynb").read_text())) for page in CACHE_PAGES}
    damaged = damage_caches(ROOT / ".cache")
    assert set(damaged) == {"processed", "choices", "congruence", "sweep", "neuroscope", "scans"}, damaged
    result = subprocess.run([sys.executable, "-m", "helpers.book.build", "--no-html", "--force", "--pages", *CACHE_PAGES],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    warnings = "".join(stderr_of(ROOT / "book" / f"{page}.ipynb") for page in CACHE_PAGES)
    for kind, phrase in (("processed", "processed-"), ("choices", "choice-"), ("congruence", "congruence-"), ("sweep", "sweep-"),
                         ("neuroscope", "rebuilding it from the part files"), ("scans", "computing the scan again")):
        assert phrase in warnings, f"no page named the damaged {kind} entry"
    for page in CACHE_PAGES:
        after = glued_values(json.loads((ROOT / "book" / f"{page}.ipynb").read_text()))
        changed = {name: (before[page].get(name), value) for name, value in after.items() if before[page].get(name) != value}
        assert after.keys() == before[page].keys() and not changed, (page, changed)


PLANTED_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<script src="../_static/plotly.min.js"></script>
<script>window.MathJax = {tex: {displayMath: [['$$', '$$']]}};</script>
<script src="../_static/mathjax/tex-chtml.js"></script></head>
<body><main><article class="bd-article" style="width: 600px">
<div id="figure" class="plotly-graph-div" style="width: 600px; height: 300px"></div>
<script>Plotly.newPlot('figure', [{x: [1, 2], y: [1, 2], type: 'scatter'}], {width: 600, height: 300, annotations: [
  {x: 1.5, y: 1.5, text: 'an annotation placed', showarrow: false}, {x: 1.5, y: 1.5, text: 'on top of another', showarrow: false}]});</script>
<div class="math">$$PLANTED$$</div>
<svg class="ns-hist" width="200" height="40"><text x="10" y="20">-0.2</text><text x="OTHER_X" y="20">0</text></svg>
<table><tr><th>a table far wider than the column</th><td style="min-width: 900px">wide</td></tr></table>
</article></main></body></html>"""


def test_the_layout_checks_fail_on_planted_defects(html_root, tmp_path):
    """Two annotations on one spot, two labels of the neuron browser's histogram on one spot, a
    display formula longer than the column and a table wider than it: each is reported; the same page without them reports nothing."""
    formula = r"\text{" + "a formula far too long to fit in the column of the page " * 3 + "}"
    planted = html_root / "_planted"
    planted.mkdir(exist_ok=True)
    (planted / "bad.html").write_text(PLANTED_PAGE.replace("PLANTED", formula).replace("OTHER_X", "14"))
    clean = PLANTED_PAGE.replace("PLANTED", "x = 1").replace("OTHER_X", "150").replace("'on top of another'", "''").replace(' style="min-width: 900px"', "")
    (planted / "good.html").write_text(clean)
    with serve(html_root) as url:
        bad, good = check_pages(url, ["_planted/bad.html", "_planted/good.html"])
    problems = " | ".join(bad.problems)
    assert "overlapping text: figure 1: 'an annotation placed' and 'on top of another'" in problems, problems
    assert "overlapping text: figure 2: '-0.2' and '0'" in problems, problems
    assert "formula clipped or scrolled" in problems and "table wider than the content column" in problems, problems
    assert good.problems == [], good.problems
