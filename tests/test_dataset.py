"""The dataset pass against a slow obvious reference, planted data, resumption and bad input."""
from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.core.models import random_model
from helpers.core.names import Neuron
from helpers.methods.reference import naive_scan
from helpers.scan.documents import DatasetUnavailable, load_documents
from helpers.scan.forward import neuron_activations, random_token_activations
from helpers.scan.statistics import always_top_above, correlation_table, prediction_counts, random_document, top_prediction_curve, wilson_interval
from helpers.scan.store import ScanMismatch, _merge_topk, _topk, open_scan, scan
from support import WORDS

N_CTX = 16
NEURONS = ["L1N3", "L0N7", "L1N40"]


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=2, d_model=32, n_heads=2, n_ctx=N_CTX, seed=1)


@pytest.fixture(scope="module")
def docs():
    """Documents of varied length: empty, one token, shorter and longer than the context."""
    rng = random.Random(0)
    out = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 36))) for _ in range(9)]
    out.insert(2, "")
    out.insert(5, "a")
    return out


@pytest.fixture(scope="module")
def scanned(model, docs, tmp_path_factory):
    out = tmp_path_factory.mktemp("scan")
    return scan(model, docs, NEURONS, out, batch_size=3, shard_docs=4, top_k=5, pseudo=True, progress=False)


def clear_argmax(logits):
    """argmax, and whether the top logit beats the runner-up by a margin float error cannot cross."""
    top2 = logits.topk(2, dim=-1).values
    return logits.argmax(-1), (top2[:, 0] - top2[:, 1]) > 1e-4


def test_scan_matches_reference(model, docs, scanned):
    """Batches of 3 prompts of different lengths against one unpadded prompt at a time:
    padding must change nothing."""
    ref = naive_scan(model, docs, NEURONS, N_CTX)
    got = scanned.load()
    for name in ("token", "next_token", "doc", "pos"):
        assert torch.equal(got[name].long(), ref[name]), name
    assert got["activations"].shape == (len(ref["token"]), len(NEURONS))
    torch.testing.assert_close(got["activations"], ref["activations"], rtol=1e-5, atol=1e-5)
    for column, logits in (("prediction", ref["logits"]), ("pseudo_prediction", ref["pseudo_logits"])):
        expected, clear = clear_argmax(logits)
        assert clear.float().mean() > 0.9
        assert torch.equal(got[column].long()[clear], expected[clear]), column
    assert scanned.n_tokens == len(ref["token"]) and scanned.n_docs == len(docs)
    assert scanned.n_empty_docs == 1


def test_long_documents_are_cut_into_prompts_with_bos(model, docs, scanned):
    got = scanned.load(["doc", "pos"])
    lengths = [len(model.tokenizer.encode(d, add_special_tokens=False)) for d in docs]
    assert max(lengths) > 2 * (N_CTX - 1), "the fixture must hold a document spanning three prompts"
    counts = torch.bincount(got["doc"].long(), minlength=len(docs))
    assert counts.tolist() == lengths


def test_neuron_activations_match_cache(model):
    tokens = torch.randint(1, 200, (2, 9))
    _, cache = model.run_with_cache(tokens)
    got = neuron_activations(model, tokens, NEURONS)
    expected = torch.stack([cache[f"blocks.{n.layer}.mlp.hook_post"][..., n.index] for n in map(Neuron.parse, NEURONS)], -1)
    assert got.shape == (2, 9, len(NEURONS))
    torch.testing.assert_close(got, expected)


def test_topk_is_the_sorted_top_of_all_rows(scanned):
    got = scanned.load(["doc", "pos", "activations"])
    for j in range(len(NEURONS)):
        rows = sorted(zip(got["activations"][:, j].tolist(), got["doc"].tolist(), got["pos"].tolist()), key=lambda r: (-r[0], r[1], r[2]))[:5]
        assert scanned.topk_values[:, j].tolist() == [r[0] for r in rows]
        assert scanned.topk_doc[:, j].tolist() == [r[1] for r in rows]
        assert scanned.topk_pos[:, j].tolist() == [r[2] for r in rows]


def test_merged_topk_with_ties_does_not_depend_on_shards():
    gen = torch.Generator().manual_seed(0)
    values = torch.randint(0, 6, (200, 3), generator=gen).float()  # many ties
    values[17, 1] = float("nan")
    doc = torch.arange(200, dtype=torch.int32) // 10
    pos = torch.arange(200, dtype=torch.int32) % 10
    whole = _topk(values, doc, pos, 7)
    for cuts in ([0, 200], [0, 1, 50, 51, 199, 200], [0, 30, 60, 90, 120, 150, 180, 200]):
        merged = None
        for a, b in zip(cuts, cuts[1:]):
            merged = _merge_topk(merged, _topk(values[a:b], doc[a:b], pos[a:b], 7), 7)
        for key in ("values", "doc", "pos"):
            assert torch.equal(merged[key], whole[key])
    for j in range(3):
        order = sorted(range(200), key=lambda i: (-(values[i, j].item() if not math.isnan(values[i, j].item()) else -math.inf), i))[:7]
        assert whole["doc"][:, j].tolist() == [int(doc[i]) for i in order]
        assert whole["pos"][:, j].tolist() == [int(pos[i]) for i in order]


def test_top_examples_windows(scanned):
    examples = scanned.top_examples("L1N3", before=6, after=2)
    cols = scanned.load()
    assert len(examples) == 5
    for row in examples.itertuples():
        at = ((cols["doc"] == row.doc) & (cols["pos"] == row.pos)).nonzero().item()
        assert row.token == cols["token"][at].item() and row.next_token == cols["next_token"][at].item()
        assert row.window_tokens[row.focus] == row.token
        assert row.window_activations[row.focus] == pytest.approx(row.activation)
        start = at - row.focus
        assert (cols["doc"][start:start + len(row.window_tokens)] == row.doc).all()
        assert row.window_tokens == cols["token"][start:start + len(row.window_tokens)].tolist()


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def test_interrupted_scan_resumes_identically(model, docs, scanned, tmp_path):
    class Interrupt(Exception):
        pass

    written = []

    def stop_after_two(entry):
        written.append(entry["index"])
        if len(written) == 2:
            raise Interrupt

    kwargs = dict(batch_size=3, shard_docs=4, top_k=5, pseudo=True, progress=False)
    with pytest.raises(Interrupt):
        scan(model, docs, NEURONS, tmp_path, on_shard=stop_after_two, **kwargs)
    assert json.loads((tmp_path / "manifest.json").read_text())["complete"] is False
    resumed_shards = []
    resumed = scan(model, docs, NEURONS, tmp_path, on_shard=lambda e: resumed_shards.append(e["index"]), **kwargs)
    assert written == [0, 1] and resumed_shards == [2]
    assert files(tmp_path) == files(scanned.out_dir)
    for key in ("topk_values", "topk_doc", "topk_pos"):
        assert torch.equal(getattr(resumed, key), getattr(scanned, key))
    for name, column in resumed.load().items():
        assert torch.equal(column, scanned.load()[name]), name


def test_corrupt_shard_is_logged_and_recomputed(model, docs, scanned, tmp_path, caplog):
    kwargs = dict(batch_size=3, shard_docs=4, top_k=5, pseudo=True, progress=False)
    shutil.copytree(scanned.out_dir, tmp_path, dirs_exist_ok=True)
    shard = tmp_path / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="helpers.scan.store"):
        repaired = scan(model, docs, NEURONS, tmp_path, **kwargs)
    assert "shard-00001.safetensors" in caplog.text and "recomputing" in caplog.text
    assert files(tmp_path) == files(scanned.out_dir)
    assert repaired.n_tokens == scanned.n_tokens


def test_a_damaged_manifest_is_named_and_the_scan_computed_again(model, docs, scanned, tmp_path, caplog):
    """A truncated manifest stopped every later run with "delete the folder"; now opening it
    says what to run, and running the scan again repairs it to the same files."""
    kwargs = dict(batch_size=3, shard_docs=4, top_k=5, pseudo=True, progress=False)
    shutil.copytree(scanned.out_dir, tmp_path, dirs_exist_ok=True)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(ScanMismatch, match="is not a scan manifest.*run scan\\(...\\) with the same parameters") as error:
        open_scan(tmp_path)
    assert "\n" not in str(error.value)
    with caplog.at_level(logging.WARNING, logger="helpers.scan.store"):
        repaired = scan(model, docs, NEURONS, tmp_path, **kwargs)
    assert "is not a scan manifest" in caplog.text and "computing the scan again" in caplog.text
    assert files(tmp_path) == files(scanned.out_dir)
    assert torch.equal(repaired.topk_values, scanned.topk_values)


def test_mismatched_parameters_or_documents_raise(model, docs, scanned):
    with pytest.raises(ScanMismatch, match="batch_size: 2 requested, 3 on disk"):
        scan(model, docs, NEURONS, scanned.out_dir, batch_size=2, shard_docs=4, top_k=5, pseudo=True, progress=False)
    (scanned.out_dir / "manifest.json").write_text(
        (scanned.out_dir / "manifest.json").read_text().replace('"complete": true', '"complete": false')
    )
    changed = docs[:1] + ["something else"] + docs[2:]
    with pytest.raises(ScanMismatch, match="documents_sha256: '[0-9a-f]+' requested"):
        scan(model, changed, NEURONS, scanned.out_dir, batch_size=3, shard_docs=4, top_k=5, pseudo=True, progress=False)
    again = scan(model, docs, NEURONS, scanned.out_dir, batch_size=3, shard_docs=4, top_k=5, pseudo=True, progress=False)
    assert again.n_tokens == scanned.n_tokens


def test_open_scan_reads_a_finished_scan(scanned):
    opened = open_scan(scanned.out_dir)
    assert opened.params == scanned.params and torch.equal(opened.topk_values, scanned.topk_values)


@pytest.mark.parametrize(
    "neurons, message",
    [
        (["L1N3", "L1N3"], "repeats L1N3"),
        (["L2N0"], "out of range"),
        (["L0N9999"], "out of range"),
        (["neuron 3"], "is not a neuron name"),
        ([], "empty"),
    ],
)
def test_bad_neuron_lists(model, docs, tmp_path, neurons, message):
    with pytest.raises(ValueError, match=message) as error:
        scan(model, docs, neurons, tmp_path, progress=False)
    assert "\n" not in str(error.value)


def test_bad_parameters(model, docs, tmp_path):
    with pytest.raises(ValueError, match="exceeds the model's context"):
        scan(model, docs, NEURONS, tmp_path, max_tokens=N_CTX + 1, progress=False)
    with pytest.raises(ValueError, match="dtype must be one of"):
        scan(model, docs, NEURONS, tmp_path, dtype="int8", progress=False)
    with pytest.raises(TypeError, match="document 1 is a NoneType"):
        scan(model, ["fine", None], NEURONS, tmp_path / "x", progress=False)


def test_float16_storage(model, docs, scanned, tmp_path):
    half = scan(model, docs[:4], NEURONS, tmp_path, batch_size=3, shard_docs=4, top_k=5, dtype="float16", progress=False)
    acts = half.load(["activations"])["activations"]
    assert acts.dtype == torch.float16 and half.topk_values.dtype == torch.float32
    torch.testing.assert_close(acts.float(), scanned.load()["activations"][: len(acts)], rtol=1e-3, atol=1e-3)


def test_load_documents(monkeypatch):
    from helpers.toy.corpus import documents

    assert list(load_documents("toy", 3, seed=2)) == documents(3, seed=2)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailable, match="cannot reach; use source 'toy'") as error:
        load_documents("pile-10k", 10)
    assert time.perf_counter() - start < 5 and "\n" not in str(error.value)
    with pytest.raises(ValueError, match="unknown document source"):
        load_documents("wikipedia", 10)
    with pytest.raises(ValueError, match="n_docs must be a positive integer"):
        load_documents("toy", 0)


def curve_by_loop(activations, hits, width):
    bins = {}
    for a, h in zip(activations.tolist(), hits.tolist()):
        i = math.floor(a / width)
        count, hit = bins.get(i, (0, 0))
        bins[i] = (count + 1, hit + int(h))
    return [(i, *bins[i]) for i in sorted(bins)]


def test_top_prediction_curve_matches_a_loop():
    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(5000, generator=gen) * 3
    hits = torch.rand(5000, generator=gen) < torch.sigmoid(acts)
    curve = top_prediction_curve(acts, hits, 0.2)
    expected = curve_by_loop(acts, hits, 0.2)
    assert curve["count"].tolist() == [c for _, c, _ in expected]
    assert curve["hits"].tolist() == [h for _, _, h in expected]
    np.testing.assert_allclose(curve["bin_start"], [i * 0.2 for i, _, _ in expected], atol=1e-9)
    np.testing.assert_allclose(curve["proportion"], [h / c for _, c, h in expected])
    assert (curve["ci_low"] <= curve["proportion"]).all() and (curve["proportion"] <= curve["ci_high"]).all()


def test_top_prediction_curve_planted_bins():
    # 10 tokens in [0.5, 1.0) of which 8 hits, 4 in [-1.0, -0.5) with none, nothing between
    acts = np.array([0.55, 0.6, 0.7, 0.71, 0.8, 0.85, 0.9, 0.95, 0.99, 0.51, -0.9, -0.8, -0.7, -0.6])
    hits = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    curve = top_prediction_curve(acts, hits, 0.5)
    assert curve["bin_start"].tolist() == [-1.0, 0.5]
    assert curve["count"].tolist() == [4, 10] and curve["hits"].tolist() == [0, 8]
    # Wilson 95% interval for 8/10, worked by hand: centre 0.7167, half-width 0.2266
    assert curve["ci_low"].iloc[1] == pytest.approx(0.490, abs=1e-3)
    assert curve["ci_high"].iloc[1] == pytest.approx(0.943, abs=1e-3)
    low, high = wilson_interval(np.array([0]), np.array([4]))
    assert low[0] == 0 and high[0] == pytest.approx(0.490, abs=1e-3)  # 0/4: (0, 0.490)
    with pytest.raises(ValueError, match="bin_width must be positive"):
        top_prediction_curve(acts, hits, 0)


def test_prediction_counts_and_correlation_table(scanned):
    predictions = torch.tensor([5, 5, 1, 5, 2])
    following = torch.tensor([5, 1, 5, 5, -1])
    assert prediction_counts(predictions, following, 5) == {"predicted": 3, "actual": 3, "both": 2}
    got = scanned.load()
    token = int(torch.mode(got["prediction"]).values)
    curve, counts = correlation_table(scanned, "L0N7", token, bin_width=0.1)
    assert curve["count"].sum() == scanned.n_tokens
    assert curve["hits"].sum() == counts["predicted"] == int((got["prediction"] == token).sum())
    _, pseudo_counts = correlation_table(scanned, "L0N7", token, pseudo=True)
    assert pseudo_counts["predicted"] == int((got["pseudo_prediction"] == token).sum())


def test_always_top_above():
    curve = pd.DataFrame({"bin_start": [0.0, 1.0, 2.0, 3.0, 4.0], "proportion": [0.1, 0.95, 0.5, 0.92, 1.0]})
    assert always_top_above(curve, 0.9) == 3.0
    assert always_top_above(curve, 0.05) == 0.0
    assert always_top_above(curve.iloc[:3], 0.9) is None


def test_always_top_above_ignores_bins_of_a_few_tokens():
    """Page 06 once said no range reaches 0.9 while its last bins, of one or two tokens, did:
    such bins now decide nothing, either way."""
    curve = pd.DataFrame({"bin_start": [0.0, 1.0, 2.0, 3.0], "proportion": [0.1, 0.95, 0.0, 1.0], "count": [900, 40, 2, 1]})
    assert always_top_above(curve, 0.9) == 1.0
    curve["proportion"] = [0.1, 0.5, 1.0, 1.0]
    assert always_top_above(curve, 0.9) is None
    assert always_top_above(curve, 0.9, min_count=1) == 2.0


def test_unselected_text_helpers(model, scanned):
    doc, tokens, acts = random_document(scanned, "L0N7", seed=3, max_tokens=5)
    cols = scanned.load()
    rows = (cols["doc"] == doc).nonzero().flatten()[:5]
    assert tokens.tolist() == cols["token"][rows].tolist()
    assert torch.equal(acts, cols["activations"][rows, 1])
    noise, noise_acts = random_token_activations(model, "L1N3", 12, seed=0)
    assert noise.shape == noise_acts.shape == (12,)
    assert not set(noise.tolist()) & set(model.tokenizer.all_special_ids)
    bos = torch.tensor([[model.tokenizer.bos_token_id]])
    expected = neuron_activations(model, torch.cat([bos, noise[None]], 1), ["L1N3"])[0, 1:, 0]
    torch.testing.assert_close(noise_acts, expected)


def test_figures_carry_binned_numbers(scanned, model):
    from helpers.book.figures.scan import activation_distribution, examples_table, prediction_counts_figure, top_prediction_curve_figure

    curve, counts = correlation_table(scanned, "L1N3", int(torch.mode(scanned.load(["prediction"])["prediction"]).values))
    fig = top_prediction_curve_figure({"real": curve}, "L1N3", " an", paper=[[0.0, 0.1], [0.2, 0.5]])
    assert [t.name for t in fig.data] == ["real", "paper (GPT-2 Large, pile-10k)", "tokens in bin"]
    assert list(fig.data[0].y) == curve["proportion"].tolist() and list(fig.data[2].y) == curve["count"].tolist()
    assert len(prediction_counts_figure(counts, " an").data) == 1
    dist = activation_distribution({"all": scanned.activations("L1N3").numpy()}, "L1N3", bins=10)
    assert np.nansum(dist.data[0].y) == pytest.approx(1.0)
    table = examples_table(scanned.top_examples("L1N3"), model.tokenizer)
    assert table["rank"].tolist() == list(range(1, 6)) and table["token"].str.startswith("'").all()


def test_other_weights_or_other_documents_never_read_a_cached_scan(tmp_path, monkeypatch):
    """A model trained a few more steps, or as many other documents, must get a new scan."""
    import helpers.scan.store as store
    from helpers.toy.corpus import documents

    monkeypatch.setattr(store, "SCAN_CACHE", tmp_path)
    model = random_model(n_layers=2, d_model=32, n_heads=2, n_ctx=N_CTX, seed=7)
    docs = documents(6, seed=0)
    kwargs = dict(batch_size=3, top_k=3, progress=False)
    first = scan(model, docs, ["L1N3"], **kwargs)
    assert scan(model, docs, ["L1N3"], **kwargs).out_dir == first.out_dir  # same request, same scan
    # three steps of training: same name, same shape, other weights
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    tokens = model.to_tokens(docs[0])[:, :N_CTX]
    for _ in range(3):
        with torch.enable_grad():
            logits = model(tokens)
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], tokens[0, 1:])
            loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.eval()
    retrained = scan(model, docs, ["L1N3"], **kwargs)
    assert retrained.out_dir != first.out_dir
    fresh = naive_scan(model, docs, ["L1N3"], N_CTX)["activations"]
    torch.testing.assert_close(retrained.load()["activations"], fresh, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(first.load()["activations"], fresh, atol=1e-3), "training should have moved the activations"
    other_docs = documents(6, seed=1)
    assert scan(model, other_docs, ["L1N3"], **kwargs).out_dir != retrained.out_dir


def test_following_classes_and_activation_by_class_against_a_loop():
    from helpers.scan.statistics import activation_by_class, following_classes

    words = [" an", " a", " apple", " hour", " unicorn", " pear", ".", "ing", " 42"]
    classes = following_classes(words, target=0, other=1)
    assert classes.tolist() == [0, 1, 2, 2, 3, 3, 4, 4, 4]
    generator = torch.Generator().manual_seed(0)
    acts, cls = torch.randn(500, generator=generator), torch.randint(0, 5, (500,), generator=generator)
    cls[cls == 4] = 3  # class 4 left empty
    table = activation_by_class(acts, cls)
    for c in range(4):
        chosen = acts[cls == c].double()
        assert table["count"][c] == chosen.numel() and table["mean"][c] == pytest.approx(float(chosen.mean()))
        half = 1.959963984540054 * float(chosen.std()) / chosen.numel() ** 0.5
        assert table["low"][c] == pytest.approx(float(chosen.mean()) - half) and table["high"][c] == pytest.approx(float(chosen.mean()) + half)
    assert table["count"][4] == 0 and np.isnan(table["mean"][4])
    few = activation_by_class(torch.ones(3), torch.zeros(3, dtype=torch.long))
    assert np.isnan(few["low"][0]) and few["mean"][0] == 1.0


def test_the_reading_follows_the_planted_activations():
    """Four planted worlds: the neuron fires before ' an' only (article), before every
    vowel-sound word as much (vowel), before both with ' an' highest (both), or too few tokens."""
    from helpers.book.summaries.scan import reading_phrase
    from helpers.scan.statistics import activation_by_class

    def world(an, vowel, consonant, n=200):
        generator = torch.Generator().manual_seed(1)
        means = torch.tensor([an, 0.0, vowel, consonant, 0.0])
        cls = torch.arange(5).repeat_interleave(n)
        return activation_by_class(means[cls] + 0.1 * torch.randn(5 * n, generator=generator), cls)

    assert reading_phrase(world(3.0, 0.0, 0.0), " an").startswith("The data support the article reading")
    assert reading_phrase(world(3.0, 3.0, 0.0), " an").startswith("The data support the vowel reading")
    assert reading_phrase(world(3.0, 1.0, 0.0), " an").startswith("Both readings hold in part")
    assert reading_phrase(world(3.0, 1.0, 0.0, n=5), " an").startswith("Too few tokens")
