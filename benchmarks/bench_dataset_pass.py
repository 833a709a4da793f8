"""Speed of the dataset pass: against a bare forward pass, 20 neurons against 1, and binning.

(a) A random model with GPT-2 Large's width (d_model 1280, d_mlp 5120, vocabulary 50,257,
    context 1,024) and 24 of its 36 layers (36 layers hold about 8 GB here, over this shared
    machine's budget; depth scales the forward pass and the scan alike) scans 4 documents
    cut into prompts of 256 tokens (2 batches of 2). The baseline is ``model(tokens)`` on
    exactly those batches. The scan also tokenises, takes the float32 argmax over the
    vocabulary, and writes its shards.
(b) The same scan recording 20 neurons spread over 20 layers against 1 neuron.
(c) The top-prediction curve (vectorised binning) against a per-token Python loop.
(d) The toy model on its own corpus, when the bundled model is present.

Wall time on a shared machine is noisy, so each note also gives the ratio of process CPU
time (all threads), which other processes disturb less.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import PeakMemory, Row, best_time
from helpers.toy.corpus import documents
from helpers.scan.statistics import top_prediction_curve
from helpers.scan.batching import padded_batches, plan_prompts
from helpers.scan.store import scan
from helpers.core.models import ASSETS, GPT2_LARGE_SHAPE, load_model, random_model
from helpers.core.names import Neuron


def documents_of_length(tokenizer, n_docs: int, n_tokens: int) -> list[str]:
    """Corpus documents trimmed to exactly ``n_tokens`` tokens each."""
    docs = []
    for text in documents(4 * n_docs, seed=7):
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) >= n_tokens:
            trimmed = tokenizer.decode(ids[:n_tokens])
            if len(tokenizer.encode(trimmed, add_special_tokens=False)) == n_tokens:
                docs.append(trimmed)
        if len(docs) == n_docs:
            return docs
    raise RuntimeError(f"the corpus has too few documents of {n_tokens} tokens")


def bare_forward(model, docs: list[str], batch_size: int, max_tokens: int):
    """``model(tokens)`` over the very batches the scan makes of ``docs``, and their size."""
    plan = plan_prompts(model.tokenizer, docs, 0, max_tokens - 1)
    batches = [tokens for tokens, _, _ in padded_batches(plan, batch_size, model.tokenizer.bos_token_id)]
    n_tokens = sum(t.numel() for t in batches)

    def forward():
        with torch.no_grad():
            for tokens in batches:
                model(tokens)

    return forward, n_tokens


def scan_runner(model, docs, neurons, batch_size, max_tokens):
    """A fresh scan into a new temporary folder per call."""

    def one_scan():
        with tempfile.TemporaryDirectory() as out:
            scan(model, docs, neurons, Path(out), batch_size=batch_size, max_tokens=max_tokens, progress=False)

    return one_scan


def cpu_time(fn, repeats: int) -> float:
    """Least process CPU time (all threads) of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def timed(fn, repeats: int) -> tuple[float, float]:
    """(best wall time, best CPU time) over ``repeats`` calls each."""
    return best_time(fn, repeats), cpu_time(fn, repeats)


def peak_gb(fn) -> float:
    with PeakMemory() as mem:
        fn()
    return mem.peak_gb


def case_gpt2_large_width(rows: list[Row]) -> None:
    model = random_model(**{**GPT2_LARGE_SHAPE, "n_layers": 24})
    docs = documents_of_length(model.tokenizer, 4, 255)  # + BOS = 256 tokens per prompt
    forward, n_tokens = bare_forward(model, docs, 2, 256)
    one = scan_runner(model, docs, [Neuron(23, 892)], 2, 256)
    twenty = scan_runner(model, docs, [Neuron(layer, (97 * layer) % model.cfg.d_mlp) for layer in range(4, 24)], 2, 256)
    peak = peak_gb(one)  # also the warm-up
    # one timed run each: a forward pass of this size takes many seconds on a shared 2-core machine
    base, base_cpu = timed(forward, 1)
    one_s, one_cpu = timed(one, 1)
    twenty_s, twenty_cpu = timed(twenty, 1)
    rows.append(Row(
        "scan, GPT-2 Large width, 24 layers, 2x(2x256)", "bare forward, same batches", base, one_s,
        f"scan/forward wall {one_s / base:.2f}x, CPU {one_cpu / base_cpu:.2f}x (target <= 1.5x); "
        f"{n_tokens / one_s:,.0f} tok/s; peak +{peak:.2f} GB over the loaded model",
    ))
    rows.append(Row(
        "scan, 20 neurons in 20 layers", "scan, 1 neuron", one_s, twenty_s,
        f"20 neurons / 1: wall {twenty_s / one_s:.2f}x, CPU {twenty_cpu / one_cpu:.2f}x (target about 1x)",
    ))


def case_binning(rows: list[Row]) -> None:
    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(200_000, generator=gen) * 2
    hits = torch.rand(200_000, generator=gen) < torch.sigmoid(acts - 3)

    def loop():
        bins: dict[int, list[int]] = {}
        for a, h in zip(acts.tolist(), hits.tolist()):
            entry = bins.setdefault(math.floor(a / 0.2), [0, 0])
            entry[0] += 1
            entry[1] += int(h)
        return bins

    slow = best_time(loop, 2)
    fast = best_time(lambda: top_prediction_curve(acts, hits, 0.2), 5)
    expected = loop()
    curve = top_prediction_curve(acts, hits, 0.2)
    keys = sorted(expected)
    same = curve["count"].tolist() == [expected[k][0] for k in keys] and curve["hits"].tolist() == [expected[k][1] for k in keys]
    rows.append(Row("top-prediction curve, 200k tokens", "per-token Python loop", slow, fast, f"same counts: {same}"))


def case_toy(rows: list[Row]) -> None:
    if not (ASSETS / "toy-an" / "model.safetensors").exists():
        print("toy model not bundled yet: case (d) skipped")
        return
    model = load_model("toy")
    docs = documents(64, seed=1)
    forward, n_tokens = bare_forward(model, docs, 8, model.cfg.n_ctx)
    one = scan_runner(model, docs, [Neuron(model.cfg.n_layers - 1, 0)], 8, model.cfg.n_ctx)
    peak = peak_gb(one)
    base, base_cpu = timed(forward, 2)
    one_s, one_cpu = timed(one, 2)
    rows.append(Row(
        f"scan, toy model, 64 corpus docs ({n_tokens:,} tokens)", "bare forward, same batches", base, one_s,
        f"scan/forward wall {one_s / base:.2f}x, CPU {one_cpu / base_cpu:.2f}x; {n_tokens / one_s:,.0f} tok/s; peak +{peak:.2f} GB",
    ))


def run() -> list[Row]:
    rows: list[Row] = []
    case_binning(rows)
    case_toy(rows)
    case_gpt2_large_width(rows)
    return rows
