"""Speed and memory of the every-neuron pass (Neuroscope for every neuron) at GPT-2 Large's width.

A random model with GPT-2 Large's width (d_model 1280, d_mlp 5120, vocabulary 50,257,
context 1,024) and 4 of its 36 layers (20,480 neurons; the pass's cost per layer is the
same at any depth) reads 16 documents cut into prompts of 256 tokens (8 batches of 2). Two
baselines over exactly those batches, timed in the same process:

- ``model(tokens)``, the bare forward pass (what the issue's 1.5x target is measured against);
- the forward pass stopped after the last MLP, as the every-neuron pass stops (no final
  layer norm, no unembedding): what is left of the ratio is the cost of the statistics.

The pass itself is the whole ``neuroscope(...)`` call: tokenising, the forward passes with
every neuron folded into top lists, histograms and counts, and writing its part file and its
result (its fixed costs, writing and ranking the state, are shared by these 4,096 tokens; a
real corpus shares them by millions). With 16 documents and ``k = 20`` every neuron's list is
still filling, so every candidate enters it: the costliest regime. On a corpus of thousands
of documents most candidates fall below the neuron's weakest listed example and are turned
away by one comparison. Its extra memory is printed twice: the state it keeps (bytes of every tensor, exact),
scaled from 20,480 neurons to GPT-2 Large's 184,320, and the measured growth of resident
memory during the call. Wall time on a shared machine is noisy, so each note also gives the
ratio of process CPU time.

With 4 layers the unembedding (50,257 x 1,280 per token, which the pass skips) is a large
part of the bare forward pass; with GPT-2 Large's 36 it is small. The last note therefore
also gives the ratio for 36 layers estimated from this run's parts: per layer, the forward
pass and the statistics (each a quarter of the stopped forward and of the difference
between the pass and it), and the unembedding once (the bare forward minus the stopped one).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

import time

from benchmarks.bench_dataset_pass import bare_forward, documents_of_length
from benchmarks.common import PeakMemory, Row, release_freed_memory
from helpers.core.models import GPT2_LARGE_SHAPE, random_model
from helpers.core.hooks import mlp_post, run_until
from helpers.scan.batching import padded_batches, plan_prompts
from helpers.scan.correlation import activation_correlations
from helpers.scan.neuroscope import neuroscope

N_LAYERS = 4
N_DOCS = 16
GPT2_LARGE_NEURONS = 36 * 5120


def stopped_forward(model, batches_of, layer: int):
    """``model(tokens)`` over the same batches, stopped at ``blocks.{layer}.mlp.hook_post``."""

    def forward():
        with torch.no_grad():
            for tokens in batches_of:
                run_until(model, tokens, mlp_post(layer))

    return forward


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run() -> list[Row]:
    model = random_model(**{**GPT2_LARGE_SHAPE, "n_layers": N_LAYERS})
    docs = documents_of_length(model.tokenizer, N_DOCS, 255)  # + BOS = 256 tokens per prompt
    forward, n_tokens = bare_forward(model, docs, 2, 256)
    plan = plan_prompts(model.tokenizer, docs, 0, 255)
    stopped = stopped_forward(model, [t for t, _, _ in padded_batches(plan, 2, model.tokenizer.bos_token_id)], N_LAYERS - 1)
    kept = {}

    def every_neuron():
        with tempfile.TemporaryDirectory() as out:
            result = neuroscope(model, docs, None, Path(out), batch_size=2, max_tokens=256, progress=False)
            kept["state"] = sum(t.numel() * t.element_size() for t in result.tensors.values())
            kept["neurons"] = result.n_neurons

    every_neuron()  # warm-up (and the weight hash, remembered on the model)
    release_freed_memory()
    with PeakMemory() as base_memory:
        forward()
    release_freed_memory()
    with PeakMemory() as pass_memory:
        every_neuron()
    # one timed run each: a forward pass of this width takes seconds on a shared 2-core machine
    (base, base_cpu), (stop, stop_cpu), (scope, scope_cpu) = timed(forward), timed(stopped), timed(every_neuron)
    per_neuron = kept["state"] / kept["neurons"]
    layer_forward, layer_statistics, unembedding = stop / N_LAYERS, (scope - stop) / N_LAYERS, base - stop
    estimate = 36 * (layer_forward + layer_statistics) / (36 * layer_forward + unembedding)
    # the fire-together neighbours: a separate streaming pass, one layer (GPT-2 Large's browser scope)
    release_freed_memory()
    with PeakMemory() as correlation_memory:
        (together, together_cpu) = timed(lambda: activation_correlations(model, docs, [N_LAYERS - 1], batch_size=2, max_tokens=256, cache=None))
    products = model.cfg.d_mlp**2 * 8
    rows = [
        Row(
            f"every neuron ({kept['neurons']:,}), {N_LAYERS} layers, {N_DOCS // 2}x(2x256)", "bare forward, same batches", base, scope,
            f"pass/forward wall {scope / base:.2f}x, CPU {scope_cpu / base_cpu:.2f}x (target <= 1.5x); {n_tokens / scope:,.0f} tok/s; "
            f"estimated for 36 layers {estimate:.2f}x",
        ),
        Row(
            "every neuron, same pass", "forward stopped after the last MLP", stop, scope,
            f"pass/stopped forward wall {scope / stop:.2f}x, CPU {scope_cpu / stop_cpu:.2f}x (the statistics' own cost)",
        ),
        Row(
            "every neuron: extra memory", "bare forward", base, scope,
            f"state {kept['state'] / 1e6:,.0f} MB for {kept['neurons']:,} neurons ({per_neuron:,.0f} B each) -> "
            f"{per_neuron * GPT2_LARGE_NEURONS / 1e9:.2f} GB for GPT-2 Large's {GPT2_LARGE_NEURONS:,}; "
            f"resident growth {pass_memory.peak_gb:+.2f} GB (bare forward {base_memory.peak_gb:+.2f} GB)",
        ),
        Row(
            f"activation correlations, 1 layer ({model.cfg.d_mlp:,} neurons), same documents", "bare forward, same batches", base, together,
            f"correlations/forward wall {together / base:.2f}x, CPU {together_cpu / base_cpu:.2f}x; products {products / 1e9:.2f} GB per layer "
            f"({36 * products / 1e9:.1f} GB for 36 layers); resident growth {correlation_memory.peak_gb:+.2f} GB",
        ),
    ]
    return rows
