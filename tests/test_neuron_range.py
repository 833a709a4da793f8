"""A neuron's whole range from a neuroscope pass: band samples, their windows, the firing
census, the top examples' tokens and output neighbours, each against a slow obvious reference
or planted values."""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.core.models import random_model
from helpers.core.names import Neuron
from helpers.scan.neuron_range import (
    BAND_QUANTILES, band_names, band_samples, pass_documents, firing_buckets, firing_census, output_neighbours, sample_windows,
    top_token_counts,
)
from helpers.scan.neuroscope import bucket_constants, check_bins, neuroscope
from helpers.scan.neuroscope_state import NO_SAMPLE
from helpers.scan.neuroscope_state import sample_keys
from support import WORDS

N_CTX = 16
CONTEXT = (3, 2)
BINS = (-0.1, 0.8, 9)


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=2, d_model=32, n_heads=2, n_ctx=N_CTX, seed=1)


@pytest.fixture(scope="module")
def docs():
    rng = random.Random(3)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40))) for _ in range(12)]


@pytest.fixture(scope="module")
def scanned(model, docs, tmp_path_factory):
    return neuroscope(model, docs, None, tmp_path_factory.mktemp("ns"), k=5, context=CONTEXT, bins=BINS, batch_size=1, shard_docs=4,
                      progress=False, checkpoint_seconds=0)


@torch.no_grad()
def every_token(model, docs):
    """Per layer, ``[tokens, neuron]`` activations with each token's document and position,
    one unpadded prompt at a time."""
    span, bos = N_CTX - 1, model.tokenizer.bos_token_id
    acts, places = {0: [], 1: []}, []
    for d, text in enumerate(docs):
        ids = model.tokenizer.encode(text, add_special_tokens=False)
        for start in range(0, len(ids), span):
            piece = ids[start:start + span]
            _, cache = model.run_with_cache(torch.tensor([[bos] + piece]))
            for layer in acts:
                acts[layer].append(cache[f"blocks.{layer}.mlp.hook_post"][0, 1:])
            places += [(d, start + p) for p in range(len(piece))]
    return {layer: torch.cat(a) for layer, a in acts.items()}, places


def test_band_samples_are_the_smallest_key_token_of_each_band(model, docs, scanned):
    acts, places = every_token(model, docs)
    keys = sample_keys(torch.tensor([d for d, _ in places]), torch.tensor([p for _, p in places]))
    samples = band_samples(scanned)
    scale, shift, n_bins = (np.float32(c) for c in bucket_constants(check_bins(BINS)))
    firing = firing_buckets(scanned).tolist()
    for i, layer in enumerate(scanned.layers):
        for n in range(model.cfg.d_mlp):
            values = acts[layer][:, n].tolist()
            buckets = [int(min(max(np.float32(np.float32(v) * scale) + shift, 0), n_bins + 1)) for v in values]
            counts = [sum(b == j for b in buckets) if firing[j] else 0 for j in range(int(n_bins) + 2)]
            total, seen, band_of = max(sum(counts), 1), 0, {}
            for j, c in enumerate(counts):  # the band where the bucket's first token's quantile falls
                band_of[j] = sum(seen / total >= q for q in BAND_QUANTILES[1:-1])
                seen += c
            for band in range(len(BAND_QUANTILES) - 1):
                members = [t for t, b in enumerate(buckets) if firing[b] and band_of[b] == band]
                assert samples["tokens"][i, n, band] == len(members)
                if not members:
                    assert samples["keys"][i, n, band] == NO_SAMPLE and samples["doc"][i, n, band] == -1
                    continue
                best = min(members, key=lambda t: int(keys[t]))
                assert (int(samples["doc"][i, n, band]), int(samples["pos"][i, n, band])) == places[best], f"L{layer}N{n} band {band}"
                assert float(samples["acts"][i, n, band]) == values[best]


def test_sample_windows_are_the_windows_the_pass_recorded(model, docs, scanned):
    """The windows read back from the documents equal the top examples' windows, which the
    pass recorded from its own prompts."""
    for neuron in ("L0N3", "L1N17", "L1N60"):
        top = scanned.top_examples(neuron)
        windows = sample_windows(scanned, docs, model.tokenizer, torch.tensor(top["doc"]), torch.tensor(top["pos"]))
        assert [w[0] for w in windows] == top["window_tokens"].tolist()
        assert [w[1] for w in windows] == top["focus"].tolist()
    assert sample_windows(scanned, docs, model.tokenizer, torch.tensor([-1]), torch.tensor([-1])) == [([], -1)]


def test_documents_must_be_the_passs_own(scanned, docs):
    assert pass_documents(scanned, docs) == docs
    with pytest.raises(ValueError, match="not the ones the pass read"):
        pass_documents(scanned, docs[::-1])
    with pytest.raises(ValueError, match="pass the same documents"):
        pass_documents(scanned, None)


def test_firing_census_counts_dead_and_rare_neurons():
    class Planted:
        layers, d_mlp, n_tokens = [2, 5], 4, 10_000
        tensors = {"fires": torch.tensor([[0, 0, 5, 900], [1, 0, 0, 0]])}

        def firing_rates(self):
            return self.tensors["fires"].double() / self.n_tokens

    table = firing_census(Planted())
    assert table["never fire"].tolist() == [2, 3]
    assert table["fire on under 0.1% of tokens"].tolist() == [1, 1]
    assert table["layer"].tolist() == [2, 5]


def test_top_token_counts_and_band_names():
    windows = torch.tensor([[5, 7, 9], [5, 7, 8], [6, 3, -1], [-1, -1, -1]])
    values = torch.tensor([3.0, 2.0, 1.0, -float("inf")])
    at, after = top_token_counts(windows, values, before=1)
    assert at == [(7, 2), (3, 1)] and after == [(8, 1), (9, 1)]
    assert band_names()[0] == "0-50%" and band_names()[-1] == "99-100%"


def test_output_neighbours_equal_the_whole_cosine_matrix():
    W = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    cos, idx = output_neighbours(W, k=4, block=7)
    unit = W / W.norm(dim=1, keepdim=True)
    full = (unit @ unit.T).fill_diagonal_(-2.0)
    want = full.topk(4, dim=1)
    assert torch.equal(idx, want.indices) and torch.allclose(cos, want.values, atol=1e-6)
    assert not (idx == torch.arange(50)[:, None]).any(), "a neuron is never its own neighbour"


def test_activation_correlations_equal_numpy_corrcoef(model, docs, tmp_path):
    """Streamed sums over padded batches give the correlations of every pair of neurons over
    every real token, within each layer and across layers."""
    from helpers.scan.correlation import activation_correlations, correlation_scope

    acts, _ = every_token(model, docs)
    whole = np.corrcoef(torch.cat([acts[0], acts[1]], dim=1).double().numpy().T)
    np.fill_diagonal(whole, -np.inf)
    for budget, scope in ((2**30, "across layers"), (2 * 128**2 * 8, "within each layer")):
        result = activation_correlations(model, docs, k=3, batch_size=3, max_tokens=N_CTX, budget=budget, cache=tmp_path)
        assert result.scope == scope == correlation_scope(2, 128, budget) and result.n_tokens == len(acts[0])
        for row in (0, 5, 130, 255):
            block = slice(0, 256) if scope == "across layers" else slice(row // 128 * 128, row // 128 * 128 + 128)
            want = np.argsort(-whole[row, block], kind="stable")[:3] + block.start
            assert result.neurons[row].tolist() == want.tolist(), (scope, row)
            assert result.values[row].tolist() == pytest.approx(whole[row, want].tolist(), abs=1e-5)
    assert result.neighbours("L1N2")[0][0].layer == 1
    assert correlation_scope(1, 5120) == "within each layer", "one recorded layer is compared within itself"
    with pytest.raises(ValueError, match="record fewer layers"):
        correlation_scope(36, 5120, 2**30)
    again = activation_correlations(model, docs, k=3, batch_size=3, max_tokens=N_CTX, budget=2 * 128**2 * 8, cache=tmp_path)
    assert torch.equal(again.neurons, result.neurons) and again.scope == result.scope, "read back from the cache"
    assert len(list(tmp_path.glob("correlations-*.safetensors"))) == 2


def test_matched_neurons_equal_numpy_and_a_model_matches_itself(model, docs):
    from helpers.scan.matching import match_neurons, random_rotations

    other = random_model(n_layers=2, d_model=32, n_heads=2, n_ctx=N_CTX, seed=7)
    matches = match_neurons(model, other, docs, rotations=2, seed=5, batch_size=3, max_tokens=N_CTX)
    a, _ = every_token(model, docs)
    b, _ = every_token(other, docs)
    a, b = torch.cat([a[0], a[1]], 1).double(), torch.cat([b[0], b[1]], 1).double()
    cross = np.corrcoef(a.numpy().T, b.numpy().T)[:256, 256:]
    assert matches.n_tokens == len(a)
    assert matches.best.tolist() == np.argmax(cross, axis=1).tolist()
    assert matches.r.tolist() == pytest.approx(cross.max(1).tolist(), abs=1e-5)
    turns = random_rotations(2, 128, 2, 5)
    rotated = [np.corrcoef(a.numpy().T, torch.einsum("tld,lde->tle", b.view(-1, 2, 128), t).reshape(len(b), -1).numpy().T)[:256, 256:].max(1) for t in turns]
    assert matches.null.tolist() == pytest.approx(np.maximum(*rotated).tolist(), abs=1e-5)
    assert torch.allclose(turns[0][1] @ turns[0][1].T, torch.eye(128, dtype=torch.float64), atol=1e-10), "rotations are orthogonal"
    itself = match_neurons(model, model, docs, rotations=1, batch_size=3, max_tokens=N_CTX)
    alive = ~itself.r.isnan()
    assert torch.equal(itself.best[alive], torch.arange(256)[alive]) and (itself.r[alive] > 0.9999).all()
    assert (itself.null[alive] < itself.r[alive]).all(), "a neuron beats every rotated direction at matching itself"
    assert itself.of("L1N3")[0] == Neuron(1, 3)
    one = match_neurons(model, other, docs, [Neuron(1, 3)], rotations=2, seed=5, batch_size=3, max_tokens=N_CTX)
    assert one.of("L1N3") == matches.of("L1N3") and len(one.r) == 1


def test_neurons_on_tokens_counts_the_top_examples_tokens(scanned):
    from helpers.scan.neuron_range import neurons_on_tokens

    token, neuron, count = neurons_on_tokens(scanned, k=3)
    before = scanned.params["context"][0]
    expected = {}
    for flat in range(len(scanned.layers) * scanned.d_mlp):
        i, n = divmod(flat, scanned.d_mlp)
        for value, window in zip(scanned.tensors["values"][i, n].tolist(), scanned.tensors["window_tokens"][i, n].tolist()):
            if value != -float("inf") and window[before] >= 0:
                expected.setdefault(window[before], {}).setdefault(flat, 0)
                expected[window[before]][flat] += 1
    want = [(t, f, c) for t in sorted(expected) for f, c in sorted(expected[t].items(), key=lambda fc: (-fc[1], fc[0]))[:3]]
    assert list(zip(token.tolist(), neuron.tolist(), count.tolist())) == want


def test_writers_of_tokens_equal_the_whole_product():
    from helpers.scan.neuron_range import writers_of_tokens

    gen = torch.Generator().manual_seed(1)
    W_out, W_U = torch.randn(50, 8, generator=gen), torch.randn(8, 30, generator=gen)
    values, neurons = writers_of_tokens(W_out, W_U, k=4, block=7)
    want = (W_out @ W_U).topk(4, dim=0)
    assert torch.equal(neurons, want.indices) and torch.allclose(values, want.values)
