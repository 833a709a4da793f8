"""The neuron browser: its data files against the pass they come from, and the browser itself in
headless Chromium, opened from disk and from a local server (a neuron's examples, histogram
and logit table render, another neuron loads on demand, nothing leaves the machine)."""
from __future__ import annotations

import json
import re

import pytest
import torch
import yaml

from browser import check_neuron_browser, serve
from helpers.book.build import ROOT
from helpers.book.neuroscope import (
    BROWSER_PAGE, N_LOGIT, browser_html, browser_layers, logit_effects, neuron_link, neuroscope_summary, publish_neuroscope,
)
from helpers.core.models import random_model, single_token
from helpers.core.names import Neuron
from helpers.scan.neuroscope import neuroscope
from helpers.toy.corpus import documents

K = 6


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=2, d_model=32, n_heads=2, n_ctx=32, seed=3)


@pytest.fixture(scope="module")
def site(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    result = neuroscope(model, documents(24, seed=2), None, root / "run", k=K, progress=False)
    published = publish_neuroscope(result, model, " an", own=Neuron(1, 5), folder=root / "_static" / "neuroscope", chunk=16)
    (root / "book").mkdir()
    (root / "book" / "browser.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>neurons</title></head><body>{browser_html(published, 'L1N5')}</body></html>"
    )
    return root, result, published


def registered(path, function):
    """The data a file hands to ``function(...)``."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"{function}(") and text.endswith(");\n")
    return json.loads(text[len(function) + 1:-3])


def test_data_files_hold_the_pass(model, site):
    root, result, published = site
    folder = root / "_static" / "neuroscope"
    index = registered(folder / "index.js", "neuroscopeIndex")
    assert index["run"] == result.run_id == published.run_id and index["layers"] == [0, 1] and index["chunk"] == 16
    assert published.n_files == 2 + 2 * 128 // 16 and (folder / "neuroscope.js").exists()
    assert index["featured"][0] == {"name": "L1N5", "why": "the book's neuron"}
    chunk = registered(folder / "L1" / "00032.js", "neuroscopeChunk")
    entry = chunk["neurons"][40 - 32]
    assert entry["n"] == 40
    examples = result.top_examples("L1N40")
    assert [e[0] for e in entry["ex"]] == pytest.approx(examples["activation"].tolist(), abs=1e-4)
    assert [e[1] for e in entry["ex"]] == examples["doc"].tolist() and [e[4] for e in entry["ex"]] == examples["window_tokens"].tolist()
    assert [e[3] for e in entry["ex"]] == examples["focus"].tolist()
    low, counts = entry["hist"]
    histogram = result.histogram("L1N40").tolist()
    assert histogram[low:low + len(counts)] == counts and sum(counts) == result.n_tokens
    assert all(str(i) in chunk["tokens"] for e in entry["ex"] for i in e[4])
    effect = model.W_out[1, 40].float() @ model.W_U.float()
    assert [u[0] for u in entry["up"]] == effect.topk(N_LOGIT).indices.tolist()
    assert [d[0] for d in entry["down"]] == effect.topk(N_LOGIT, largest=False).indices.tolist()
    target = effect[single_token(model, " an")].item()
    assert entry["target"] == pytest.approx(target, abs=1e-4)
    every = (model.W_out.float() @ model.W_U.float()[:, single_token(model, " an")]).flatten()
    assert entry["target_rank"] == 1 + int((every > every[128 + 40]).sum())


def test_logit_effects_in_blocks_equal_the_whole_product(model, monkeypatch):
    import helpers.book.neuroscope as browser

    monkeypatch.setattr(browser, "NEURON_BLOCK", 48)
    up, up_ids, down, down_ids = logit_effects(model, 0, k=4)
    whole = model.W_out[0].float() @ model.W_U.float()
    torch.testing.assert_close(up, whole.topk(4, dim=1).values)
    assert torch.equal(down_ids, whole.topk(4, dim=1, largest=False).indices)


def test_the_page_carries_only_the_mount_point(site):
    root, _, published = site
    snippet = browser_html(published, "L1N5")
    assert len(snippet) < 1000 and 'data-start="L1N5"' in snippet and "../_static/neuroscope/neuroscope.js" in snippet


@pytest.mark.slow  # a browser (Chromium)
@pytest.mark.parametrize("opened", ["from disk", "served"])
def test_browser_shows_a_neuron_and_loads_another(site, opened, tmp_path):
    root, result, _ = site
    if opened == "from disk":
        report = check_neuron_browser((root / "book" / "browser.html").as_uri(), "L1N7", "L0N100", screenshot=tmp_path / "browser.png")
    else:
        with serve(root) as url:
            report = check_neuron_browser(f"{url}/book/browser.html", "L1N7", "L0N100", screenshot=tmp_path / "browser.png")
    assert report["problems"] == []
    first, typed = report["first"], report["typed"]
    assert first["title"] == "L1N7", "the neuron in the address must open, not the page's default"
    assert first["examples"] == len(result.top_examples("L1N7")) == K
    assert first["tokens"] > first["coloured"] > 0 and max(first["focus_alpha"]) == 1.0
    histogram = result.histogram("L1N7")
    assert first["bars"] == int((histogram > 0).sum()) and first["bar_tokens"] == result.n_tokens
    assert first["logit_rows"] == N_LOGIT
    assert typed["title"] == "L0N100" and typed["hash"] == "#L0N100" and typed["examples"] == K and typed["bars"] > 0
    assert (tmp_path / "browser.png").stat().st_size > 10_000


def test_browser_layers_and_links(model):
    assert browser_layers(model, "all", Neuron(1, 3)) is None and browser_layers(model, "auto", Neuron(1, 3)) is None
    big = type("Big", (), {"cfg": type("Cfg", (), {"n_layers": 36, "d_mlp": 5120})()})()
    assert browser_layers(big, "auto", Neuron(31, 892)) == [31] and browser_layers(big, [30, 31], Neuron(31, 892)) == [30, 31]
    with pytest.raises(ValueError, match="use 'auto', 'all', or a list"):
        browser_layers(model, "some", Neuron(1, 3))
    assert neuron_link("L31N892") == f'<a class="neuron-link" href="{BROWSER_PAGE}.html#L31N892"><code>L31N892</code></a>'
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert any(c["file"] == f"book/{BROWSER_PAGE}" for part in toc["parts"] for c in part.get("chapters", []))


def test_summary_numbers(site):
    _, result, published = site
    summary = neuroscope_summary(result, published, Neuron(1, 5))
    assert summary["ns_neurons"] == "256" and summary["ns_layers"] == "every layer (0-1)" and summary["ns_k"] == K
    assert summary["ns_low"] == -0.2 and summary["ns_high"] == 10.0 and summary["ns_width"] == 0.1 and summary["ns_buckets"] == 104
    assert re.fullmatch(r"[\d,]+", summary["ns_tokens"]) and 0 < summary["ns_rate"] < 1
