"""The every-neuron pass against a slow obvious reference, planted data, merging, resumption,
bad input, and two processes under torchrun against one."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers.book.build import ROOT
from helpers.core.models import load_model, random_model
from helpers.scan.neuroscope import (
    BINS, RESULT, Part, _fold_shard, bucket_constants, bucket_of, check_bins, empty_state, merge_states, neuroscope, open_neuroscope,
    parse_layers, part_name, sort_state, top_per_document,
)
from helpers.scan.neuroscope_state import NO_SAMPLE, _count, key_place, sample_keys
from helpers.core.cache import load_checked
from helpers.scan.store import ScanMismatch
from support import WORDS

N_CTX = 16
K = 5
CONTEXT = (3, 2)
# coarse bins, so that a few activations land in each
FEW_BINS = (-0.1, 0.8, 9)


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=2, d_model=32, n_heads=2, n_ctx=N_CTX, seed=1)


@pytest.fixture(scope="module")
def docs():
    """Documents of varied length: empty, one token, shorter and longer than the context
    (so one document spans several prompts, some in one batch)."""
    rng = random.Random(0)
    out = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 36))) for _ in range(9)]
    out.insert(2, "")
    out.insert(5, "a")
    return out


def run(model, docs, out, **kwargs):
    options = dict(k=K, context=CONTEXT, bins=FEW_BINS, batch_size=3, shard_docs=4, progress=False, checkpoint_seconds=0)
    return neuroscope(model, docs, None, out, **{**options, **kwargs})


@pytest.fixture(scope="module")
def scanned(model, docs, tmp_path_factory):
    return run(model, docs, tmp_path_factory.mktemp("neuroscope"))


# ---------------------------------------------------------------------------------------
# The slow obvious reference: one unpadded prompt at a time, a Python loop over every token
# of every neuron


@torch.no_grad()
def naive_neuroscope(model, docs, layers, k, bins, context, max_tokens):
    bos, span = model.tokenizer.bos_token_id, max_tokens - 1
    d_mlp = model.cfg.d_mlp
    before, after = context
    best = {}  # (layer, neuron, doc) -> (value, pos, window tokens, window acts)
    scale, shift, n_bins = (np.float32(c) for c in bucket_constants(check_bins(bins)))
    hist = {(l, n): [0] * (int(n_bins) + 2) for l in layers for n in range(d_mlp)}
    fires = {key: 0 for key in hist}
    sums = {key: 0.0 for key in hist}
    samples = {}  # (layer, neuron, bucket) -> (key, activation): the token of smallest key
    lowest = {key: (math.inf, NO_SAMPLE) for key in hist}
    n_tokens = 0
    for d, text in enumerate(docs):
        ids = model.tokenizer.encode(text, add_special_tokens=False)
        for start in range(0, len(ids), span):
            piece = ids[start:start + span]
            names = [f"blocks.{l}.mlp.hook_post" for l in layers]
            _, cache = model.run_with_cache(torch.tensor([[bos] + piece]), names_filter=lambda name: name in names)
            n_tokens += len(piece)
            for l in layers:
                acts = cache[f"blocks.{l}.mlp.hook_post"][0, 1:].tolist()
                for n in range(d_mlp):
                    column = [row[n] for row in acts]
                    for p, value in enumerate(column):
                        bucket = np.float32(np.float32(value) * scale) + shift  # float32 throughout, as the pass
                        b = int(min(max(bucket, 0), n_bins + 1))
                        hist[l, n][b] += 1
                        key = int(sample_keys(torch.tensor(d), torch.tensor(start + p)))
                        if key < samples.get((l, n, b), (NO_SAMPLE,))[0]:
                            samples[l, n, b] = (key, value)
                        if (value, key) < lowest[l, n]:
                            lowest[l, n] = (value, key)
                        fires[l, n] += value > 0
                        sums[l, n] += value
                        old = best.get((l, n, d))
                        if old is None or value > old[0]:
                            lo, hi = max(0, p - before), min(len(piece), p + after + 1)
                            tokens = [-1] * (lo - (p - before)) + piece[lo:hi] + [-1] * (p + after + 1 - hi)
                            window = [math.nan] * (lo - (p - before)) + column[lo:hi] + [math.nan] * (p + after + 1 - hi)
                            best[l, n, d] = (value, start + p, tokens, window)
    ranked = {}  # every document's best, in rank order (the top k are the first k)
    for l in layers:
        for n in range(d_mlp):
            ranked[l, n] = sorted(((v, d, p, t, w) for (ll, nn, d), (v, p, t, w) in best.items() if (ll, nn) == (l, n)),
                                  key=lambda e: (-e[0], e[1], e[2]))
    return ranked, hist, fires, sums, n_tokens, samples, lowest


@pytest.mark.parametrize("batch_size", [1, 3])
def test_every_neuron_matches_the_reference(model, docs, tmp_path, batch_size):
    """One unpadded prompt per forward pass gives the reference's bits; batches of 3 padded
    prompts agree to float error (histograms may differ only by values that sit on an edge)."""
    result = run(model, docs, tmp_path, batch_size=batch_size)
    ranked, hist, fires, sums, n_tokens, samples, lowest = naive_neuroscope(model, docs, [0, 1], K, FEW_BINS, CONTEXT, N_CTX)
    assert result.n_tokens == n_tokens and result.n_docs == len(docs) and result.n_empty_docs == 1
    exact = batch_size == 1
    tolerance = dict(rtol=0, atol=0) if exact else dict(rtol=1e-5, atol=1e-6)
    near_edge = 0
    for (l, n), entries in ranked.items():
        i = result.layers.index(l)
        got = zip(*(result.tensors[name][i, n].tolist() for name in ("values", "doc", "pos", "window_tokens", "window_acts")))
        by_place = {(e[1], e[2]): e for e in entries}
        for rank, (value, doc, pos, tokens, acts) in enumerate(got):
            expected = entries[rank] if exact else by_place[doc, pos]
            # with padding, two documents whose values tie up to float error may swap places
            assert expected[0] == pytest.approx(entries[rank][0], abs=0 if exact else 1e-5), f"L{l}N{n} rank {rank}: {doc} is not the reference's"
            assert (doc, pos, tokens) == expected[1:4], f"L{l}N{n} rank {rank}"
            torch.testing.assert_close(torch.tensor([value, *acts]), torch.tensor([expected[0], *expected[4]]), equal_nan=True, **tolerance)
        assert result.tensors["fires"][i, n] == fires[l, n]
        counts = result.tensors["histogram"][i, n].tolist()
        low_value, low_doc, low_pos = result.lowest(f"L{l}N{n}")
        assert low_value == pytest.approx(lowest[l, n][0], abs=0 if exact else 1e-5)
        if exact:
            assert counts == hist[l, n], f"L{l}N{n}: histogram"
            assert (low_doc, low_pos) == tuple(int(v) for v in key_place(torch.tensor(lowest[l, n][1])))
            got_samples = {(int(b), int(key)): value for b, key, value in zip(
                range(FEW_BINS[2] + 2), result.tensors["sample_keys"][i, n].tolist(), result.tensors["sample_acts"][i, n].tolist()) if key != NO_SAMPLE}
            want = {(b, key): value for (ll, nn, b), (key, value) in samples.items() if (ll, nn) == (l, n)}
            assert got_samples.keys() == want.keys(), f"L{l}N{n}: bucket samples"
            assert all(got_samples[key] == want[key] for key in want)
        else:
            near_edge += sum(abs(a - b) for a, b in zip(counts, hist[l, n]))
        assert result.means()[i, n].item() == pytest.approx(sums[l, n] / n_tokens, abs=1e-6)
    assert near_edge <= 2, "padding moved more values across a bin edge than float error can"


def test_sample_keys_name_their_token_and_pick_any_member_of_a_set_alike():
    doc, pos = torch.arange(100_000) // 1000, torch.arange(100_000) % 1000
    keys = sample_keys(doc, pos)
    assert len(keys.unique()) == len(keys) and (keys < NO_SAMPLE).all()
    assert [torch.equal(a, b) for a, b in zip(key_place(keys), (doc, pos))] == [True, True]
    assert key_place(torch.tensor([NO_SAMPLE])) == (torch.tensor([-1]), torch.tensor([-1]))
    # the smallest key of 10 neighbouring tokens falls on each of the 10 about as often
    picked = torch.bincount(keys.view(-1, 10).argmin(1), minlength=10)
    assert (picked - 1000).abs().max() < 150, picked.tolist()


def test_one_example_per_document(scanned):
    docs = scanned.tensors["doc"]
    filled = docs >= 0
    for i in range(len(scanned.layers)):
        for n in range(scanned.d_mlp):
            column = docs[i, n][filled[i, n]].tolist()
            assert len(column) == len(set(column)), "a document appears twice in one top list"


def test_top_per_document_on_planted_values():
    """Document 7 holds the five largest values of column 0: it takes one slot, the next
    documents follow; column 1 has only two documents, so three slots stay empty."""
    values = torch.tensor([[9.0, 1.0], [8.0, 2.0], [7.0, 1.5], [6.0, -math.inf], [5.0, -math.inf], [4.0, -math.inf], [3.0, -math.inf], [4.0, -math.inf]]).T
    doc = torch.tensor([[7, 1], [7, 2], [7, 1], [7, -1], [7, -1], [2, -1], [1, -1], [0, -1]], dtype=torch.int32).T
    pos = torch.tensor([[0, 0], [1, 0], [2, 5], [3, 0], [4, 0], [0, 0], [9, 0], [3, 0]], dtype=torch.int32).T
    order, kept = top_per_document(values, doc, pos, 5)
    assert doc.gather(1, order)[0].tolist() == [7, 0, 2, 1, 7] and kept[0].tolist() == [True, True, True, True, False]
    assert values.gather(1, order)[0, :4].tolist() == [9.0, 4.0, 4.0, 3.0]  # a tie goes to the earlier document
    assert doc.gather(1, order)[1, :2].tolist() == [2, 1] and kept[1].tolist() == [True, True, False, False, False]
    assert pos.gather(1, order)[1, 1].item() == 5  # document 1's best is its value 1.5 at position 5


def test_histogram_matches_torch_histogram():
    """Away from the edges (where float32 rounding decides), the inner buckets equal
    ``torch.histogram`` on the bins' edges; the outer buckets hold everything below and
    above, NaN in the last."""
    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(4000, 3, generator=gen).abs() * 0.5 - 0.2
    low, high, n_bins = check_bins(FEW_BINS)
    edges = torch.linspace(low, high, n_bins + 1, dtype=torch.float64)
    far = ((acts.double()[..., None] - edges).abs() > 1e-5).all(-1).all(-1)
    acts = acts[far]
    acts[0, 0] = math.nan
    state = empty_state(1, 3, 2, n_bins + 2, 1)
    keys = torch.randperm(len(acts), generator=gen) * 7 + 3  # planted keys, no two alike
    order = keys.argsort()  # _count takes the rows in key order
    _count(state, 0, acts[order], keys[order], bucket_constants((low, high, n_bins)), has_nan=True)
    buckets = bucket_of(acts, *bucket_constants((low, high, n_bins)))
    for n in range(3):
        for b in range(n_bins + 2):  # each bucket's sample: its token with the smallest key
            inside = (buckets[:, n] == b).nonzero().flatten()
            if len(inside):
                chosen = inside[keys[inside].argmin()]
                assert state["sample_keys"][0, n, b] == keys[chosen]
                torch.testing.assert_close(state["sample_acts"][0, n, b], acts[chosen, n], equal_nan=True, rtol=0, atol=0)
            else:
                assert state["sample_keys"][0, n, b] == NO_SAMPLE and state["sample_acts"][0, n, b].isnan()
        column = acts[:, n][~torch.isnan(acts[:, n])]
        lowest = acts[:, n].nan_to_num(nan=math.inf)
        assert state["low_values"][0, n] == lowest.min() and state["low_keys"][0, n] == keys[lowest == lowest.min()].min()
        got = state["histogram"][0, n]
        assert got[1:-1].tolist() == torch.histogram(column.double(), bins=edges).hist.long().tolist()
        assert got[0] == (column < low).sum() and got[-1] == (column >= high).sum() + int(n == 0)
        assert state["fires"][0, n] == (column > 0).sum()
    assert state["sums"][0, 1].item() / 2**24 == pytest.approx(acts[:, 1].double().sum().item(), abs=1e-6)
    extremes = torch.tensor([-math.inf, math.inf, math.nan, low + 1e-4, high, -5.0])
    assert bucket_of(extremes, *bucket_constants((low, high, n_bins))).tolist() == [0, n_bins + 1, n_bins + 1, 1, n_bins + 1, 0]


def test_shard_states_merge_exactly(model, docs):
    """Shards folded in one state, or in two (even and odd shards, as two processes take
    them) and merged, give the same bits."""
    opts = dict(bins=bucket_constants(check_bins(FEW_BINS)), offsets=torch.arange(-CONTEXT[0], CONTEXT[1] + 1), k=K, max_tokens=N_CTX, batch_size=3,
                bos=model.tokenizer.bos_token_id)
    width = sum(CONTEXT) + 1
    shards = [(docs[s:s + 3], s) for s in range(0, len(docs), 3)]
    whole, even, odd = (empty_state(2, model.cfg.d_mlp, K, FEW_BINS[2] + 2, width) for _ in range(3))
    for index, (part, first) in enumerate(shards):
        _fold_shard(model, part, first, [0, 1], whole, opts)
        _fold_shard(model, part, first, [0, 1], odd if index % 2 else even, opts)
    run_params = {"weights": "w", "documents_sha256": "d"}
    n = len(shards)
    merged = merge_states([Part(odd, run_params, list(range(1, n, 2))), Part(even, run_params, list(range(0, n, 2)))], K)
    assert merged.shards == list(range(n))
    for name, tensor in sort_state(whole, K).items():
        assert torch.equal(merged.state[name].nan_to_num(-7.0), tensor.nan_to_num(-7.0)), name


def test_merges_refuse_states_of_other_runs_and_shards_counted_twice(model, docs, scanned, tmp_path):
    """Each of these merged silently before (a state carried no identity): another model,
    other documents, and one run with itself."""
    def part_of(result):
        state, record = load_checked(result.out_dir / part_name(0, 1))
        return Part(state, record["params"], record["shards"])

    mine = part_of(scanned)
    other_model = part_of(run(random_model(n_layers=2, d_model=32, n_heads=2, n_ctx=N_CTX, seed=2), docs, tmp_path / "model"))
    other_docs = part_of(run(model, docs[:-1] + ["an owl"], tmp_path / "docs"))
    for other, message in [(other_model, r"two runs \(model: .*; weights: '\w+' in the first, '\w+' in another\)"),
                           (other_docs, r"two runs \(documents_sha256: "),
                           (mine, r"shards \[0, 1, 2\] are in two of the states")]:
        with pytest.raises(ValueError, match=message) as error:
            merge_states([mine, other], K)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("damage", ["truncate", "zero_bytes", "missing"])
def test_a_damaged_result_is_rebuilt_from_its_parts(model, docs, scanned, tmp_path, caplog, damage):
    """The result file damaged (cut short, 256 bytes zeroed: returned as it was before, or gone)
    is named in one warning and merged again from the intact part file, with the same bits,
    without running the model."""
    shutil.copytree(scanned.out_dir, tmp_path, dirs_exist_ok=True)
    result = tmp_path / RESULT
    raw = bytearray(result.read_bytes())
    if damage == "truncate":
        result.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "zero_bytes":
        raw[len(raw) // 2: len(raw) // 2 + 256] = bytes(256)
        result.write_bytes(bytes(raw))
    else:
        result.unlink()
    with caplog.at_level(logging.WARNING, logger="helpers.scan.neuroscope"):
        same(open_neuroscope(tmp_path), scanned)
    assert "rebuilding it from the part files" in caplog.text and len(caplog.records) == 1
    load_checked(result)  # written again, whole
    (tmp_path / part_name(0, 1)).write_bytes(b"")
    result.unlink()
    with pytest.raises(ScanMismatch, match="cannot be rebuilt; run the pass again with the same parameters"):
        open_neuroscope(tmp_path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="helpers.scan.neuroscope"):
        same(run(model, docs, tmp_path), scanned)  # the pass itself computes what it cannot rebuild
    assert "computing the pass again" in caplog.text


def test_a_damaged_manifest_is_written_again(model, docs, scanned, tmp_path, caplog):
    shutil.copytree(scanned.out_dir, tmp_path, dirs_exist_ok=True)
    (tmp_path / "manifest.json").write_text('{"run_id": ')
    with caplog.at_level(logging.WARNING, logger="helpers.scan.neuroscope"):
        same(run(model, docs, tmp_path), scanned)
    assert "is not a neuroscope manifest" in caplog.text
    same(open_neuroscope(tmp_path), scanned)


def test_no_documents_is_one_line(model, tmp_path):
    with pytest.raises(ValueError, match="no documents to scan") as error:
        neuroscope(model, [], None, tmp_path, progress=False)
    assert "\n" not in str(error.value) and not any(tmp_path.iterdir())


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def same(a, b):
    assert a.params == b.params
    for name, tensor in a.tensors.items():
        assert torch.equal(tensor.nan_to_num(-7.0), b.tensors[name].nan_to_num(-7.0)), name


def test_interrupted_pass_resumes_without_counting_twice(model, docs, scanned, tmp_path):
    class Interrupt(Exception):
        pass

    seen = []

    def stop_after_two(shard):
        seen.append(shard)
        if len(seen) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(model, docs, tmp_path, on_shard=stop_after_two)
    assert not json.loads((tmp_path / "manifest.json").read_text())["complete"]
    resumed_shards = []
    resumed = run(model, docs, tmp_path, on_shard=resumed_shards.append)
    assert seen == [0, 1] and resumed_shards == [2]
    same(resumed, scanned)
    same(open_neuroscope(tmp_path), scanned)
    assert files(tmp_path)[RESULT] == files(scanned.out_dir)[RESULT]


def test_checkpoints_only_when_due(model, docs, scanned, tmp_path):
    """With a long checkpoint interval an interruption loses the shards since the last save,
    and the rerun counts them again, once."""
    def stop(shard):
        if shard == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(model, docs, tmp_path, on_shard=stop, checkpoint_seconds=3600)
    assert not (tmp_path / part_name(0, 1)).exists()
    same(run(model, docs, tmp_path, checkpoint_seconds=3600), scanned)


def test_unreadable_part_is_computed_again(model, docs, scanned, tmp_path, caplog):
    shutil.copytree(scanned.out_dir, tmp_path, dirs_exist_ok=True)
    (tmp_path / RESULT).unlink()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    part = tmp_path / part_name(0, 1)
    part.write_bytes(part.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="helpers.scan.neuroscope"):
        same(run(model, docs, tmp_path), scanned)
    assert "cannot be read" in caplog.text


def test_another_runs_files_are_refused(model, docs, scanned, tmp_path):
    other = run(model, docs, tmp_path / "other", k=K + 1)
    with pytest.raises(ScanMismatch, match=r"holds another neuroscope run \(k: 5 requested, 6 there\)") as error:
        run(model, docs, other.out_dir)
    assert "\n" not in str(error.value)
    # a part file of another run dropped into this run's folder
    mixed = tmp_path / "mixed"
    shutil.copytree(scanned.out_dir, mixed)
    shutil.copy(other.out_dir / part_name(0, 1), mixed / part_name(1, 2))
    with pytest.raises(ScanMismatch, match=r"part-001-of-002.safetensors was written by another run \(k: 5 requested, 6 there\)") as error:
        run(model, docs, mixed)
    assert "\n" not in str(error.value)
    with pytest.raises(ScanMismatch, match="documents_sha256"):
        run(model, docs[:-1] + ["something else"], scanned.out_dir)


@pytest.mark.parametrize(
    "layers, message",
    [([2], r"layer 2 is out of range: this model has layers 0-1"), ([0, 0], "repeat a layer"), ([], "no layer given"), ([-1], "out of range"), (["x"], r"layer .x. is not a layer: give a number between 0 and 1")],
)
def test_bad_layer_lists(model, docs, tmp_path, layers, message):
    with pytest.raises(ValueError, match=message) as error:
        neuroscope(model, docs, layers, tmp_path, progress=False)
    assert "\n" not in str(error.value)
    assert not any(tmp_path.iterdir()), "nothing is written for a bad argument"


def test_bad_parameters(model, docs, tmp_path):
    for kwargs, message in [
        (dict(k=0), "k must be an integer >= 1"),
        (dict(bins=(0.5, 0.1, 4)), r"bins must be \(low, high, number of bins\)"),
        (dict(bins=(0.0, 1.0, 0)), "at least 1 bin"),
        (dict(context=(3,)), "context must be"),
        (dict(max_tokens=N_CTX + 1), "exceeds the model's context"),
        (dict(checkpoint_seconds=-1), "checkpoint_seconds must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=message) as error:
            neuroscope(model, docs, None, tmp_path, progress=False, **kwargs)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="write 'all', a list such as 0,3,5"):
        parse_layers("three")
    assert parse_layers("all") is None and parse_layers("0,3-5") == [0, 3, 4, 5]


def test_result_readers(scanned):
    examples = scanned.top_examples("L1N3")
    assert len(examples) == K and examples["activation"].is_monotonic_decreasing
    for row in examples.itertuples():
        assert row.window_activations[row.focus] == pytest.approx(row.activation)
    assert scanned.histogram("L0N7").sum() == scanned.n_tokens
    assert scanned.firing_rates().shape == scanned.means().shape == (2, scanned.d_mlp)
    with pytest.raises(ValueError, match="was not recorded: this pass holds neurons 0-127 of layers"):
        scanned.where("L3N1")


def test_default_bins_cover_gelu_and_are_0_1_wide():
    low, high, n_bins = BINS
    assert low < -0.17 and (high - low) / n_bins == pytest.approx(0.1)


# ---------------------------------------------------------------------------------------
# Several processes: torchrun with gloo on this CPU


TOY = ["--model", "toy", "--documents", "toy", "--n-docs", "10", "--shard-docs", "2", "--batch-size", "4", "--k", "8",
       "--checkpoint-seconds", "0"]


def torchrun(args, processes=2):
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    model = load_model("toy")
    return neuroscope(model, "toy", None, tmp_path_factory.mktemp("one"), n_docs=10, shard_docs=2, batch_size=4, k=8, progress=False)


@pytest.mark.slow
def test_two_processes_equal_one(one_process, tmp_path):
    done = torchrun(["-m", "helpers.scan.neuroscope", *TOY, "--out", str(tmp_path)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 process(es)" in done.stdout
    two = open_neuroscope(tmp_path)
    assert two.params["world_size"] == 2 and {p.name for p in tmp_path.glob("part-*")} == {part_name(0, 2), part_name(1, 2)}
    assert two.n_neurons == 2048 and two.n_docs == 10
    for name, tensor in one_process.tensors.items():
        assert torch.equal(tensor.nan_to_num(-7.0), two.tensors[name].nan_to_num(-7.0)), f"{name} differs between 1 and 2 processes"


@pytest.mark.slow
def test_a_lost_process_resumes_from_what_was_written(one_process, tmp_path):
    """Process 1 dies after its first shard; torchrun stops the group. The same command
    resumes: process 1 keeps its written shard, and the result equals one process's."""
    crashed = torchrun([str(ROOT / "tests" / "neuroscope_worker.py"), "1", *TOY, "--out", str(tmp_path)])
    assert crashed.returncode != 0
    from helpers.core.cache import read_record

    assert read_record(tmp_path / part_name(1, 2))["shards"] == [1]
    assert not (tmp_path / RESULT).exists()
    resumed = torchrun(["-m", "helpers.scan.neuroscope", *TOY, "--out", str(tmp_path)])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    two = open_neuroscope(tmp_path)
    for name, tensor in one_process.tensors.items():
        assert torch.equal(tensor.nan_to_num(-7.0), two.tensors[name].nan_to_num(-7.0)), f"{name} differs after the resumed run"
