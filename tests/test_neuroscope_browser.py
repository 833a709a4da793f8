"""The neuron browser: its data files against the pass they come from, and the browser itself in
headless Chromium, opened from disk and from a local server (a neuron's examples, histogram
and logit table render, another neuron loads on demand, nothing leaves the machine)."""
from __future__ import annotations

import json
import re

import pytest
import torch
import yaml

from browser import browse_neurons, check_neuron_browser, serve
from helpers.book.build import ROOT
from helpers.book.neuroscope import (
    BROWSER_PAGE, N_LOGIT, browser_html, browser_layers, logit_effects, neuron_link, neuroscope_summary, publish_neuroscope,
)
from helpers.core.models import random_model, single_token
from helpers.core.names import Neuron
from helpers.scan.correlation import activation_correlations
from helpers.scan.neuron_range import band_samples, neurons_on_tokens, output_neighbours, sample_windows, top_token_counts
from helpers.scan.neuroscope import neuroscope
from support import mlp_parameters
from helpers.toy.corpus import documents

K = 6
DEAD = Neuron(1, 9)  # planted: its pre-activation is -10,000 on every token, so it never fires


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=2, d_model=32, n_heads=2, n_ctx=32, seed=3)


@pytest.fixture(scope="module")
def site(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    with torch.no_grad():
        W_in, b_in, _ = mlp_parameters(model, DEAD.layer)
        W_in[:, DEAD.index], b_in[DEAD.index] = 0.0, -1e4
    docs = documents(24, seed=2)
    result = neuroscope(model, docs, None, root / "run", k=K, progress=False)
    correlations = activation_correlations(model, docs, result.layers, k=4, cache=None)
    published = publish_neuroscope(result, model, " an", own=Neuron(1, 5), folder=root / "_static" / "neuroscope", chunk=16, documents=docs,
                                   correlations=correlations)
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
    n_vocab = model.cfg.d_vocab
    assert published.n_files == 3 + 2 * 128 // 16 + -(-n_vocab // 1024) and (folder / "neuroscope.js").exists()
    # the search by token: the neurons whose top examples sit on it, and those that write it most
    an = single_token(model, " an")
    entry = registered(folder / "tokens" / f"{an // 1024 * 1024:06d}.js", "neuroscopeTokens")["entries"][str(an)]
    token, neuron, count = neurons_on_tokens(result, 5)
    names = lambda flat: f"L{flat // 128}N{flat % 128}"  # noqa: E731
    assert entry["at"] == [[names(n), c] for t, n, c in zip(token.tolist(), neuron.tolist(), count.tolist()) if t == an]
    effect = (model.W_out.reshape(-1, model.cfg.d_model).float() @ model.W_U.float()[:, an]).topk(5)
    assert [w[0] for w in entry["w"]] == [names(n) for n in effect.indices.tolist()]
    assert registered(folder / "vocab.js", "neuroscopeVocab")["tokens"][an] == " an"
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
    # the whole range: band samples, the lowest activation, the top examples' tokens, neighbours
    bands = band_samples(result)
    filled = [b for b in range(len(index["bands"])) if bands["doc"][1, 40, b] >= 0]
    assert [s[0] for s in entry["bands"]] == filled and len(filled) >= 2
    assert [s[3] for s in entry["bands"]] == bands["doc"][1, 40, filled].tolist()
    assert [s[2] for s in entry["bands"]] == pytest.approx(bands["acts"][1, 40, filled].tolist(), abs=1e-4)
    windows = sample_windows(result, documents(24, seed=2), model.tokenizer, bands["doc"][1, 40, filled], bands["pos"][1, 40, filled])
    assert [s[5:7] for s in entry["bands"]] == [[focus, ids] for ids, focus in windows]
    low = result.lowest("L1N40")
    assert entry["low"][:3] == [pytest.approx(low[0], abs=1e-4), low[1], low[2]]
    at, after = top_token_counts(result.tensors["window_tokens"][1, 40], result.tensors["values"][1, 40], result.params["context"][0])
    assert entry["at"] == [list(a) for a in at[:5]] and entry["next"] == [list(a) for a in after[:5]]
    cosines, neighbours = output_neighbours(model.W_out[1], 5)
    assert [nb[0] for nb in entry["nb"]] == neighbours[40].tolist()
    assert entry["fires"] == int(result.tensors["fires"][1, 40]) > 0
    together = activation_correlations(model, documents(24, seed=2), result.layers, k=4, cache=None).neighbours("L1N40")
    assert entry["corr"] == [[str(n), pytest.approx(r, abs=1e-3)] for n, r in together] and len(together) == 4
    assert index["corr"] == {"scope": "across layers", "n_tokens": result.n_tokens}
    dead = chunk_of(folder, DEAD)
    assert dead["fires"] == 0 and dead["bands"] == [] and dead["low"][0] <= 0
    assert index["census"] == [[0, int((result.tensors["fires"][0] == 0).sum()), int(((result.tensors["fires"][0] > 0) & (result.firing_rates()[0] < 1e-3)).sum())],
                               [1, int((result.tensors["fires"][1] == 0).sum()), int(((result.tensors["fires"][1] > 0) & (result.firing_rates()[1] < 1e-3)).sum())]]
    assert index["census"][1][1] >= 1, "the planted dead neuron is counted"


def chunk_of(folder, neuron: Neuron) -> dict:
    start = neuron.index // 16 * 16
    return registered(folder / f"L{neuron.layer}" / f"{start:05d}.js", "neuroscopeChunk")["neurons"][neuron.index - start]


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


@pytest.mark.slow  # a browser (Chromium)
def test_browser_whole_range_dead_neuron_and_malformed_names(site):
    """A live neuron shows band samples, its lowest activation, its top tokens and neighbour
    links; the planted dead neuron says it never fires and shows no examples; a malformed name
    clears the view and says what is accepted; a name written another way is canonicalised."""
    root, result, _ = site
    bands = band_samples(result)
    filled = (bands["doc"][1] >= 0).sum(1)  # [neuron]: bands with a sample
    busiest = int(filled.argmax())  # the neuron of layer 1 whose firing range spans most bands
    with serve(root) as url:
        report = browse_neurons(f"{url}/book/browser.html#L1N7", [
            ("address", f"L1N{busiest}"), ("address", str(DEAD)), ("type", "foo"), ("address", "#foo"), ("address", "l01n007"), ("type", "L9N1"),
            ("type", "' an'"),
        ])
    assert report["problems"] == []
    live, dead, typed_bad, address_bad, lowercase, outside, token = report["states"]
    assert live["title"] == f"L1N{busiest}" and live["bands"] == int(filled[busiest]) >= 2 and live["lowest"] == 1
    assert live["examples"] == K and live["notice"] == "" and "They sit on" in live["summary"]
    assert len(live["neighbours"]) == 5 and all(h.startswith("#L1N") for h in live["neighbours"]) and len(live["together"]) == 4
    assert dead["title"] == str(DEAD) and dead["notice"].startswith("Never fires on this corpus")
    assert dead["examples"] == 0 and dead["bands"] == 0 and dead["bars"] >= 1
    for state in (typed_bad, address_bad):
        assert state["title"] == "" and state["examples"] == 0, "nothing of the previous neuron stays on screen"
        assert "is not a neuron name" in state["message"] and "L<layer>N<index>" in state["message"]
    assert lowercase["title"] == "L1N7" and lowercase["hash"] == "#L1N7", "the address is canonicalised"
    assert outside["title"] == "" and "not in this book's data" in outside["message"]
    token_data = registered(root / "_static" / "neuroscope" / "tokens" / "000000.js", "neuroscopeTokens")["entries"]
    an = next(t for t, tokens in enumerate(registered(root / "_static" / "neuroscope" / "vocab.js", "neuroscopeVocab")["tokens"]) if tokens == " an")
    assert token["hash"] == f"#token={an}" and token["title"] == f"token ' an' (id {an})" and token["message"] == ""
    assert token["sits"] == [f"{n} \u00d7{c}" for n, c in token_data[str(an)]["at"]] and len(token["writes"]) == 5


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


def test_census_summary_says_where_the_dead_neurons_are():
    import pandas as pd
    from helpers.book.neuroscope import census_summary

    table = pd.DataFrame({"layer": [0, 1], "neurons": [10, 10], "never fire": [1, 4], "fire on under 0.1% of tokens": [2, 0]})
    values = census_summary(table)
    assert values["ns_dead"] == "5" and values["ns_dead_share"] == 0.25 and values["ns_rare"] == "2"
    assert "5 of the 20 recorded neurons (25.0%) never fire" in values["ns_census_phrase"] and "most in layer 1 (4 of 10)" in values["ns_census_phrase"]
    alive = census_summary(table.assign(**{"never fire": [0, 0]}))
    assert alive["ns_census_phrase"].startswith("Every recorded neuron fires")

