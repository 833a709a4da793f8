"""Exact patching of all 184,320 neurons of a GPT-2 Large-shaped model, against the naive loop
and against attribution patching.

Random model with GPT-2 Large's dimensions (36 layers, d_model 1280, d_mlp 5120, 20 heads,
vocabulary 50,257), CPU, the study-like 20-token pair that differs at position 16
(``bench_neuron_patching.contrast_differing_at``). Patching every neuron of every layer
exactly takes an hour or more on two cores, so it is timed on a sample and scaled:

* ``model_neuron_patching`` on ``SAMPLE_NEURONS`` neurons of each of ``SAMPLE_LAYERS`` (one
  early, one middle, one late) and of the last layer (no later block: the call's fixed cost,
  its two cached runs, which the whole-model call makes once). A layer's time above that is
  fitted as ``b * later`` by least squares through zero (``later``: the blocks after the
  layer; the engine's work per neuron, and its setup per layer, grow with it), summed over
  the 36 layers and scaled from the sample to 5,120 neurons per layer.
* The naive loop (one full hooked forward pass per neuron, as the study ran it) on
  ``NAIVE_NEURONS`` neurons of layer 31 after one warm-up pass, timed at the start and at the
  end (the faster kept: the naive loop is not handicapped by a busy moment), scaled to one
  layer (5,120) and to 184,320.
* ``attribution_patching`` (its estimate covers every neuron), best of two.
* The FLOPs the exact pass needs (``exact_patching_flops``; formula in its docstring) and
  this CPU's float32 matrix-product rate, measured in this process at the start and after
  each position mode (other processes share the cores; the highest is the reference), so the
  share of it that the exact pass reaches is printed. "cores busy" is CPU time over wall
  time of a call: below 2 means the two cores were shared.

Both position modes: ``all`` (the study's, 4 positions recomputed per patch) and ``last``.
``AN_NEURON_BENCH_THREADS`` sets torch's thread count (default: torch's own, one per core);
on cores other processes keep busy, one thread avoids the collapse of multi-threaded small
operations when a thread is descheduled, and the naive loop and the exact pass then run alike.
"""
from __future__ import annotations

import os
import time

import torch

from benchmarks.bench_neuron_patching import contrast_differing_at
from benchmarks.common import Row, best_time, release_freed_memory, rss_bytes
from helpers.core.models import GPT2_LARGE_SHAPE, random_model
from helpers.methods.attribution import attribution_patching
from helpers.methods.neuron_patching import exact_patching_flops, model_neuron_patching
from helpers.methods.reference import naive_neuron_patching

SAMPLE_LAYERS = (3, 19, 33)
SAMPLE_NEURONS = 256
NAIVE_LAYER = 31
NAIVE_NEURONS = 3
DIFFERS_AT = 16


def matmul_rate(rows: int = 4096, repeats: int = 3) -> float:
    """This CPU's float32 rate on the exact pass's own product shapes, FLOP/s (best of ``repeats``)."""
    x, w_in, w_out = torch.randn(rows, 1280), torch.randn(1280, 5120), torch.randn(5120, 1280)
    h = x @ w_in
    seconds = best_time(lambda: (x @ w_in, h @ w_out), repeats)
    return 2 * 2 * rows * 1280 * 5120 / seconds


def timed(fn) -> tuple[float, float]:
    """Wall and CPU seconds of one call (CPU / wall near 2 means both cores were ours)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run() -> list[Row]:
    rows = []
    if os.environ.get("AN_NEURON_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["AN_NEURON_BENCH_THREADS"]))
    print(f"  torch threads: {torch.get_num_threads()}", flush=True)
    rate_start = matmul_rate()
    print(f"  float32 matmul rate at the start: {rate_start / 1e9:.0f} GFLOP/s", flush=True)
    model = random_model(**GPT2_LARGE_SHAPE)
    cfg = model.cfg
    n_layers, d_mlp = cfg.n_layers, cfg.d_mlp
    release_freed_memory()
    print(f"  model built: process holds {rss_bytes() / 1e9:.2f} GB", flush=True)
    contrast = contrast_differing_at(model, DIFFERS_AT)
    n_pos = contrast.clean.shape[1]
    sample = list(range(0, d_mlp, d_mlp // SAMPLE_NEURONS))[:SAMPLE_NEURONS]
    scale = d_mlp / len(sample)

    def naive_model_call():
        return naive_neuron_patching(model, contrast, NAIVE_LAYER, list(range(NAIVE_NEURONS)), "all")

    naive_neuron_patching(model, contrast, NAIVE_LAYER, [0], "all")  # warm-up
    naive_s, naive_cpu = timed(naive_model_call)
    # one call runs the two baseline passes and one pass per neuron
    naive_pass = naive_s / (NAIVE_NEURONS + 2)
    attribution_s = best_time(lambda: attribution_patching(model, contrast, "all"), repeats=2)
    print(f"  naive loop: {naive_pass:.2f} s per pass ({naive_cpu / naive_s:.2f} cores busy); attribution patching {attribution_s:.2f} s", flush=True)

    rate, results = rate_start, {}
    for positions in ("all", "last"):
        suffix = n_pos - DIFFERS_AT if positions == "all" else 1
        per_layer = {}
        for layer in (*SAMPLE_LAYERS, n_layers - 1):
            release_freed_memory()
            wall, cpu = timed(lambda: model_neuron_patching(model, contrast, positions, layers=[layer], neurons=sample))
            per_layer[layer] = wall
            print(f"  {positions}: layer {layer} ({n_layers - 1 - layer} later blocks), {len(sample)} neurons: {wall:.1f} s wall, "
                  f"{cpu / wall:.2f} cores busy", flush=True)
        # least squares through zero: a layer's time above the fixed cost = b * later
        fixed = per_layer.pop(n_layers - 1)
        later = torch.tensor([float(n_layers - 1 - l) for l in per_layer])
        above = torch.tensor([t - fixed for t in per_layer.values()])
        b = float((later * above).sum() / (later * later).sum())
        total_later = n_layers * (n_layers - 1) / 2  # 35 + 34 + ... + 0 later blocks
        exact_s = fixed + b * total_later * scale
        layer31_s = fixed + b * (n_layers - 1 - NAIVE_LAYER) * scale
        flops = exact_patching_flops(cfg, suffix, n_pos)
        rate_now = matmul_rate()
        rate = max(rate, rate_now)
        achieved = flops / exact_s
        print(
            f"  {positions} ({suffix} position{'s' if suffix > 1 else ''} recomputed): fixed {fixed:.1f} s, b = {b:.3f} s per later block "
            f"per {len(sample)} neurons; all {n_layers * d_mlp:,} neurons {exact_s / 60:.1f} min (scaled); one layer (L{NAIVE_LAYER}) "
            f"{layer31_s:.1f} s; {flops:.2e} FLOP, {achieved / 1e9:.0f} GFLOP/s = {achieved / rate:.0%} of the matmul rate "
            f"({rate / 1e9:.0f} GFLOP/s; {rate_now / 1e9:.0f} now)",
            flush=True,
        )
        results[positions] = (exact_s, layer31_s, f"{flops:.2e} FLOP at {achieved / 1e9:.0f} GFLOP/s, {achieved / rate:.0%} of matmul")

    naive_end, naive_end_cpu = timed(naive_model_call)
    naive_pass = min(naive_pass, naive_end / (NAIVE_NEURONS + 2))
    naive_layer = naive_pass * d_mlp
    naive_model = naive_layer * n_layers
    print(f"  naive loop at the end: {naive_end / (NAIVE_NEURONS + 2):.2f} s per pass ({naive_end_cpu / naive_end:.2f} cores busy); "
          f"kept {naive_pass:.2f} s: one layer {naive_layer / 60:.0f} min, all {n_layers * d_mlp:,} {naive_model / 3600:.0f} h (scaled)", flush=True)
    for positions, (exact_s, layer31_s, note) in results.items():
        print(f"  goal ({positions}): every neuron exactly {exact_s / 60:.1f} min against the naive loop for one layer "
              f"{naive_layer / 60:.1f} min: {'met' if exact_s < naive_layer else 'not met'}", flush=True)
        rows += [
            Row(f"every neuron exactly ({positions} pos) vs naive 1 layer", f"naive loop L{NAIVE_LAYER} (scaled)", naive_layer, exact_s, note),
            Row(f"every neuron exactly ({positions} pos) vs naive all", f"naive loop, {n_layers * d_mlp:,} (scaled)", naive_model, exact_s),
            Row(f"L{NAIVE_LAYER} alone exactly ({positions} pos)", f"naive loop L{NAIVE_LAYER} (scaled)", naive_layer, layer31_s),
            Row(f"attribution vs every neuron exactly ({positions})", "exact, every neuron (scaled)", exact_s, attribution_s, "estimate only"),
        ]
    return rows
