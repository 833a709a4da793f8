"""The neuron browser: every recorded neuron of a neuroscope pass as static files of the book.

:func:`publish_neuroscope` writes, into the book's static folder (``_vendor/neuroscope``,
served as ``_static/neuroscope``, beside plotly and MathJax):

- ``neuroscope.js``: the browser, plain JavaScript. It draws each example as tokens on a
  single-hue scale from 0 (activation 0 and below: no colour, the neuron's largest
  activation: full colour), the histogram as an SVG, and the logit tables;
- ``index.js``: the run, the layers, and a few neurons worth starting from;
- ``L<layer>/<first neuron>.js``: ``chunk`` neurons each: their examples (token ids and
  activations of the window, the tokens' strings), histogram, firing count, rate and mean,
  a sampled example from each band of the firing range and the lowest activation's example
  (their windows read back from the documents, :mod:`helpers.scan.neuron_range`), the tokens
  the top examples sit on and the tokens after them, the neurons of the layer with the most
  similar output row (cosine of ``W_out`` rows), the direct logit effect (the most positive
  and most negative entries of ``W_out[n] @ W_U``) and congruence with the target token
  (the entry of that product at the target, and its rank among every neuron of the model).

Each data file calls a registering function (``neuroscopeIndex(...)``,
``neuroscopeChunk(...)``) and is loaded on demand by inserting a ``<script>`` tag: that works
when the book is opened from disk (where browsers refuse ``fetch`` of local files) and when it
is served, and nothing is requested from outside the book. The page itself carries only the
browser's mount point; a neuron's data arrives when a reader asks for it.

The folder is replaced as a whole (written beside it, then renamed), and its index names the
run it holds; a page whose run differs says so instead of showing another run's neurons.
"""
from __future__ import annotations

import html
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from IPython.display import HTML, Markdown, display
from jaxtyping import Float, Int
from torch import Tensor

from helpers.book.display import in_book
from helpers.core.files import staged_folder
from helpers.core.models import GPT2_LARGE_SHAPE, single_token, vocabulary
from helpers.core.names import Neuron
from helpers.methods.congruence import output_weights, readout, token_congruence
from helpers.scan.neuron_range import (
    RARE, band_names, rare_column, band_samples, firing_census, neurons_on_tokens, output_neighbours, pass_documents, sample_windows, top_token_counts,
    writers_of_tokens,
)
from helpers.scan.correlation import Correlations
from helpers.scan.neuroscope import Neuroscope, key_place

# the page that holds the browser, and where its data is served from, relative to a page
BROWSER_PAGE = "14_neuroscope"
STATIC = "neuroscope"
APP = Path(__file__).resolve().parent / "assets" / "neuroscope.js"
CHUNK = 32
N_LOGIT = 10
N_NEIGHBOURS = 5
N_TOP_TOKENS = 5
# neurons in a model whose every layer the browser covers when ``layers="auto"``
AUTO_ALL_UP_TO = 20_000
NEURON_BLOCK = 1024  # neurons per block of the [neurons, vocab] logit-effect product


def browser_layers(model, layers: str | Sequence[int] | int, neuron: Neuron) -> list[int] | None:
    """The page's ``layers`` parameter as layers for the pass: ``"all"`` -> None (every
    layer); ``"auto"`` -> every layer of a model of at most 20,000 neurons, else the layer of
    the book's neuron; a list (or one layer) as given."""
    cfg = model.cfg
    if layers == "all":
        return None
    if layers == "auto":
        return None if cfg.n_layers * cfg.d_mlp <= AUTO_ALL_UP_TO else [neuron.layer]
    if isinstance(layers, str):
        raise ValueError(f"layers={layers!r}: use 'auto', 'all', or a list of layer numbers such as [30, 31]")
    return layers


def book_static_folder() -> Path:
    """``<book>/_vendor/neuroscope``: a page runs in ``<book>/book``, the build serves
    ``<book>/_vendor`` as ``_static``."""
    return Path.cwd().parent / "_vendor" / STATIC


@torch.no_grad()
def logit_effects(model, layer: int, k: int = N_LOGIT) -> tuple[Float[Tensor, "neuron k"], Int[Tensor, "neuron k"], Float[Tensor, "neuron k"], Int[Tensor, "neuron k"]]:
    """Per neuron of ``layer``, the ``k`` largest and ``k`` smallest entries of
    ``W_out[n] @ W_U`` (values and token ids), a block of neurons at a time."""
    W_out, W_U = output_weights(model)[layer].float(), readout(model, "W_U").float()
    parts = []
    for start in range(0, len(W_out), NEURON_BLOCK):
        effect = W_out[start:start + NEURON_BLOCK] @ W_U
        up, down = effect.topk(k, dim=1), effect.topk(k, dim=1, largest=False)
        parts.append((up.values, up.indices, down.values, down.indices))
    return tuple(torch.cat(p).cpu() for p in zip(*parts))


@dataclass(frozen=True)
class Published:
    """Where the browser's files went and what they hold."""

    folder: Path
    run_id: str
    model: str
    layers: list[int]
    d_mlp: int
    n_files: int
    n_bytes: int
    featured: list[tuple[str, str]]  # (neuron, why)

    @property
    def n_neurons(self) -> int:
        return len(self.layers) * self.d_mlp


def _rounded(values: Tensor, digits: int = 3) -> list:
    """Numbers for JSON: rounded, NaN as null."""
    return [None if v != v else round(v, digits) for v in values.tolist()]


def _script(function: str, data: dict) -> str:
    return f"{function}({json.dumps(data, separators=(',', ':'), ensure_ascii=False)});\n"


def featured_neurons(result: Neuroscope, congruence: Float[Tensor, "layer neuron"], own: Neuron | None, n: int = 5) -> list[tuple[str, str]]:
    """Neurons to start from: the book's neuron, the most congruent with the target, the
    ones with the largest activations, and the ones that fire most often."""
    d_mlp = result.d_mlp
    recorded = congruence[result.layers]

    def named(flat: Tensor) -> list[str]:
        return [str(Neuron(result.layers[int(i) // d_mlp], int(i) % d_mlp)) for i in flat]

    picks = [(str(own), "the book's neuron")] if own is not None and own.layer in result.layers else []
    picks += [(name, "most congruent with the target") for name in named(recorded.flatten().topk(n).indices)]
    picks += [(name, "largest activation") for name in named(result.tensors["values"][:, :, 0].flatten().topk(n).indices)]
    picks += [(name, "fires most often") for name in named(result.firing_rates().flatten().topk(n).indices)]
    seen, unique = set(), []
    for name, why in picks:
        if name not in seen:
            seen.add(name)
            unique.append((name, why))
    return unique


def _example(value: float, doc: int, pos: int, window: tuple[list[int], int], used: set) -> list:
    """``[activation, document, position, index of the token in the window, window ids]``."""
    used.update(window[0])
    return [round(value, 4), doc, pos, window[1], window[0]]


def range_examples(result: Neuroscope, model, documents: Sequence[str] | None) -> dict[str, Tensor | list]:
    """Every neuron's band samples and lowest example with their windows (``[layer, neuron,
    band]`` and ``[layer, neuron]`` tensors, windows as lists in the same order)."""
    documents = pass_documents(result, documents)
    bands = band_samples(result)
    low_doc, low_pos = key_place(result.tensors["low_keys"])  # [layer, neuron]
    doc = torch.cat([bands["doc"].flatten(), low_doc.flatten()])
    pos = torch.cat([bands["pos"].flatten(), low_pos.flatten()])
    windows = sample_windows(result, documents, model.tokenizer, doc, pos)
    n_band = bands["doc"].numel()
    return dict(bands=bands, band_windows=windows[:n_band], low_doc=low_doc, low_pos=low_pos, low_windows=windows[n_band:])


def _neuron_record(result: Neuroscope, ranges: dict, shared: dict, layer_data: dict, i: int, layer: int, n: int, used: set) -> dict:
    """One neuron's entry of a data file; the token ids it names are added to ``used``."""
    t, before = result.tensors, result.params["context"][0]
    kept = torch.isfinite(t["values"][i, n])
    examples = []
    for value, doc, pos, tokens, acts in zip(t["values"][i, n, kept].tolist(), t["doc"][i, n, kept].tolist(), t["pos"][i, n, kept].tolist(),
                                             t["window_tokens"][i, n, kept], t["window_acts"][i, n, kept]):
        inside = tokens >= 0
        ids = tokens[inside].tolist()
        used.update(ids)
        examples.append([round(value, 4), doc, pos, int(inside[:before].sum()), ids, _rounded(acts[inside])])
    counts = t["histogram"][i, n]
    nonzero = torch.nonzero(counts).flatten()
    low, high = (int(nonzero[0]), int(nonzero[-1]) + 1) if len(nonzero) else (0, 0)
    up, up_ids, down, down_ids = layer_data["logits"]
    used.update(up_ids[n].tolist() + down_ids[n].tolist())
    bands, n_bands = ranges["bands"], ranges["bands"]["doc"].shape[2]
    flat = (i * result.d_mlp + n) * n_bands
    samples = [[b, int(bands["tokens"][i, n, b]), *_example(float(bands["acts"][i, n, b]), int(bands["doc"][i, n, b]), int(bands["pos"][i, n, b]),
                                                         ranges["band_windows"][flat + b], used)]
               for b in range(n_bands) if bands["doc"][i, n, b] >= 0]
    lowest = _example(float(t["low_values"][i, n]), int(ranges["low_doc"][i, n]), int(ranges["low_pos"][i, n]),
                      ranges["low_windows"][i * result.d_mlp + n], used)
    at, after = top_token_counts(t["window_tokens"][i, n], t["values"][i, n], before)
    at, after = at[:N_TOP_TOKENS], after[:N_TOP_TOKENS]
    used.update(token for token, _ in at + after)
    cosines, neighbours = layer_data["neighbours"]
    together = shared["correlations"].neighbours(Neuron(layer, n)) if shared["correlations"] is not None else []
    return {
        "n": n, "fires": int(t["fires"][i, n]), "rate": round(float(shared["rates"][i, n]), 6), "mean": round(float(shared["means"][i, n]), 5),
        "hist": [low, counts[low:high].tolist()], "ex": examples, "bands": samples, "low": lowest, "at": at, "next": after,
        "nb": list(zip(neighbours[n].tolist(), _rounded(cosines[n]))), "corr": [[str(other), round(r, 3)] for other, r in together],
        "up": list(zip(up_ids[n].tolist(), _rounded(up[n]))), "down": list(zip(down_ids[n].tolist(), _rounded(down[n]))),
        "target": round(float(shared["congruence"][layer, n]), 4), "target_rank": int(shared["target_rank"][layer, n]),
    }


TOKEN_CHUNK = 1024  # tokens per file of the search by token


def _write_token_index(folder: Path, result: Neuroscope, model, vocab: list[str], run: str) -> None:
    """``vocab.js`` (every token's string, for looking a token up) and ``tokens/<first id>.js``:
    per token, the recorded neurons whose top examples sit on it most and the ones that write
    it most directly (``W_out[n] @ W_U[:, t]`` over the recorded layers)."""
    (folder / "vocab.js").write_text(_script("neuroscopeVocab", {"run": run, "tokens": vocab}), encoding="utf-8")
    name = lambda flat: str(Neuron(result.layers[flat // result.d_mlp], flat % result.d_mlp))  # noqa: E731
    token, neuron, count = neurons_on_tokens(result, N_TOP_TOKENS)
    sits: dict[int, list] = {}
    for t, n, c in zip(token.tolist(), neuron.tolist(), count.tolist()):
        sits.setdefault(t, []).append([name(n), c])
    W_out = output_weights(model)[result.layers].reshape(-1, model.cfg.d_model)
    values, writers = writers_of_tokens(W_out, readout(model, "W_U"), N_TOP_TOKENS, NEURON_BLOCK)
    (folder / "tokens").mkdir()
    for start in range(0, len(vocab), TOKEN_CHUNK):
        ids = range(start, min(start + TOKEN_CHUNK, len(vocab)))
        entries = {t: {"at": sits.get(t, []), "w": [[name(int(n)), round(float(v), 3)] for n, v in zip(writers[:, t], values[:, t])]} for t in ids}
        (folder / "tokens" / f"{start:06d}.js").write_text(_script("neuroscopeTokens", {"run": run, "start": start, "entries": entries}), encoding="utf-8")


def publish_neuroscope(result: Neuroscope, model, target: str, own: Neuron | None = None, folder: Path | None = None, chunk: int = CHUNK,
                       documents: Sequence[str] | None = None, correlations: Correlations | None = None) -> Published:
    """Write the browser and every recorded neuron's data into ``folder`` (default: the
    book's static folder), replacing what was there. ``documents``: the pass's documents
    (read again from its source when None), for the windows of sampled examples;
    ``correlations``: the neurons that fire together (:mod:`helpers.scan.correlation`), if any."""
    if correlations is not None and (correlations.layers != result.layers or correlations.d_mlp != result.d_mlp):
        raise ValueError(f"the correlations cover layers {correlations.layers}, the pass {result.layers}: compute them on the pass's layers")
    folder = Path(folder) if folder is not None else book_static_folder()
    ranges = range_examples(result, model, documents)
    census = firing_census(result)
    target_id = single_token(model, target)
    congruence = token_congruence(model, target_id)  # [layers, d_mlp], dot with W_U[:, target]
    order = congruence.flatten().argsort(descending=True, stable=True)
    target_rank = torch.empty_like(order)
    target_rank[order] = torch.arange(1, len(order) + 1)
    target_rank = target_rank.view_as(congruence)
    vocab = vocabulary(model)
    featured = featured_neurons(result, congruence, own)
    index = {
        "run": result.run_id, "model": result.params["model"], "layers": result.layers,
        "d_mlp": result.d_mlp, "n_neurons_model": congruence.numel(), "chunk": chunk, "k": result.k, "edges": [round(e, 6) for e in result.edges],
        "n_tokens": result.n_tokens, "n_docs": result.n_docs, "context": result.params["context"], "target": target,
        "featured": [{"name": name, "why": why} for name, why in featured],
    }
    index["corr"] = None if correlations is None else {"scope": correlations.scope, "n_tokens": correlations.n_tokens}
    index["bands"] = band_names()
    index["rare"] = RARE
    index["census"] = census[["layer", "never fire", rare_column()]].values.tolist()
    with staged_folder(folder) as tmp:
        shutil.copy(APP, tmp / "neuroscope.js")
        (tmp / "index.js").write_text(_script("neuroscopeIndex", index), encoding="utf-8")
        shared = dict(rates=result.firing_rates(), means=result.means(), congruence=congruence, target_rank=target_rank, correlations=correlations)
        for i, layer in enumerate(result.layers):
            layer_data = dict(logits=logit_effects(model, layer), neighbours=output_neighbours(output_weights(model)[layer], N_NEIGHBOURS))
            (tmp / f"L{layer}").mkdir()
            for start in range(0, result.d_mlp, chunk):
                used: set[int] = set()
                neurons = [_neuron_record(result, ranges, shared, layer_data, i, layer, n, used) for n in range(start, min(start + chunk, result.d_mlp))]
                data = {"run": index["run"], "layer": layer, "start": start, "tokens": {token: vocab[token] for token in sorted(used)}, "neurons": neurons}
                (tmp / f"L{layer}" / f"{start:05d}.js").write_text(_script("neuroscopeChunk", data), encoding="utf-8")
        _write_token_index(tmp, result, model, vocab, index["run"])
        sizes = [p.stat().st_size for p in tmp.rglob("*") if p.is_file()]
    return Published(folder, index["run"], result.params["model"], result.layers, result.d_mlp, len(sizes), sum(sizes), featured)


def neuron_link(neuron: Neuron | str, text: str | None = None) -> str:
    """An HTML link that opens ``neuron`` in the book's neuron browser (pages sit side by side)."""
    name = str(Neuron.of(neuron))
    return f'<a class="neuron-link" href="{BROWSER_PAGE}.html#{name}"><code>{html.escape(text or name)}</code></a>'


def show_neuron_link(neuron: Neuron | str) -> None:
    """A line on a page: the neuron, linked to its entry in the neuron browser."""
    display(HTML(f"<p>Every neuron's top examples, histogram and logit effect: {neuron_link(neuron)} in the neuron browser.</p>"))


def browser_html(published: Published, neuron: Neuron | str | None = None, base: str = f"../_static/{STATIC}/") -> str:
    """The browser's mount point and the script tag that starts it: all a page carries.
    ``base`` is where the data files are, relative to the page."""
    element = f"neuroscope-{uuid.uuid4().hex[:12]}"
    start = str(Neuron.of(neuron)) if neuron is not None else ""
    return (
        f'<div id="{element}" class="neuroscope" data-base="{html.escape(base)}" data-run="{html.escape(published.run_id)}" data-start="{start}">'
        f'<p class="ns-message">Loading the neuron browser...</p></div>'
        f"<script src=\"{html.escape(base)}neuroscope.js\" onload=\"Neuroscope.mount('{element}')\" "
        f"onerror=\"document.getElementById('{element}').textContent = 'The neuron browser script ({html.escape(base)}neuroscope.js) is missing: execute this page again.'\"></script>"
    )


def show_neuron_browser(published: Published, neuron: Neuron | str | None = None) -> None:
    """The browser on a page, opened at ``neuron`` (or the one named after ``#`` in the
    address). Outside the book (a notebook) it says where the browser is."""
    if not in_book():
        display(Markdown(
            f"*The neuron browser runs in the built book (`make book`, then open `_build/html/book/{BROWSER_PAGE}.html`); "
            f"its {published.n_files:,} data files are in `{published.folder}`.*"
        ))
        return
    display(HTML(browser_html(published, neuron)))


def neuroscope_summary(result: Neuroscope, published: Published, neuron: Neuron) -> dict:
    """Numbers and phrases for the browser page's prose."""
    layers, (low, high, n_bins) = result.layers, result.params["bins"]
    covered = f"every layer ({layers[0]}-{layers[-1]})" if len(layers) == result.params["model_shape"][0] else (
        f"layer {layers[0]}" if len(layers) == 1 else "layers " + ", ".join(map(str, layers)))
    return dict(
        ns_neurons=f"{result.n_neurons:,}",
        ns_layers=covered,
        ns_tokens=f"{result.n_tokens:,}",
        ns_docs=f"{result.n_docs:,}",
        ns_k=result.k,
        ns_before=result.params["context"][0],
        ns_after=result.params["context"][1],
        ns_files=f"{published.n_files:,}",
        ns_megabytes=published.n_bytes / 1e6,
        ns_neuron=str(neuron),
        ns_rate=float(result.firing_rates().mean()),
        ns_buckets=n_bins + 2,
        ns_low=round(low, 6),
        ns_high=round(high, 6),
        ns_width=round((high - low) / n_bins, 6),
    )


def census_summary(census: pd.DataFrame) -> dict:
    """How many recorded neurons never fire or fire rarely, and a sentence on where they sit."""
    rarely = rare_column()
    dead, rare, total = int(census["never fire"].sum()), int(census[rarely].sum()), int(census["neurons"].sum())
    worst = census.loc[(census["never fire"] / census["neurons"]).idxmax()]
    if dead == 0:
        phrase = f"Every recorded neuron fires on at least one token of this corpus; {rare:,} fire on {rarely.removeprefix('fire on ')}."
    else:
        phrase = (f"{dead:,} of the {total:,} recorded neurons ({dead / total:.1%}) never fire on this corpus, most in layer "
                  f"{int(worst['layer'])} ({int(worst['never fire']):,} of {int(worst['neurons']):,}); {rare:,} more fire on "
                  f"{rarely.removeprefix('fire on ')}. The browser marks both.")
    return dict(ns_dead=f"{dead:,}", ns_dead_share=dead / total, ns_rare=f"{rare:,}", ns_census_phrase=phrase)


def correlation_summary(correlations: Correlations) -> dict:
    """The scope of the fire-together neighbours and the memory their products took."""
    n = len(correlations.layers) * correlations.d_mlp
    block = n if correlations.scope == "across layers" else correlations.d_mlp
    blocks = 1 if correlations.scope == "across layers" else len(correlations.layers)
    d_mlp, n_layers = 4 * GPT2_LARGE_SHAPE["d_model"], GPT2_LARGE_SHAPE["n_layers"]
    return dict(ns_corr_scope=correlations.scope, ns_corr_tokens=f"{correlations.n_tokens:,}", ns_corr_gb=blocks * block**2 * 8 / 1e9,
                ns_corr_large_layer_gb=d_mlp**2 * 8 / 1e9, ns_corr_large_all_gb=n_layers * d_mlp**2 * 8 / 1e9)


def featured_table(published: Published) -> str:
    """The featured neurons as one line of links, grouped by why they are featured."""
    groups: dict[str, list[str]] = {}
    for name, why in published.featured:
        groups.setdefault(why, []).append(neuron_link(name))
    return "; ".join(f"{why}: {', '.join(links)}" for why, links in groups.items())


def show_featured(published: Published) -> None:
    """A line of links to the neurons worth starting from."""
    display(HTML(f"<p>Neurons to start from (each link opens it in the browser above): {featured_table(published)}.</p>"))


def resolve_layers(page, layers) -> tuple[list[int] | None, str]:
    """The page's ``layers`` knob for :data:`helpers.book.page.AUTO_KNOBS`: the layers and how
    ``"auto"`` chose them."""
    resolved = browser_layers(page.model, layers, page.neuron)
    return resolved, "every layer" if resolved is None else f"layer {', '.join(map(str, resolved))}"
