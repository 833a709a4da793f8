"""The full congruence search at GPT-2 Large size against the bare matrix products it needs.

Both sides walk the same blocks (``NEURON_CHUNK`` neurons of one layer x ``TOKEN_CHUNK``
tokens) of random matrices with GPT-2 Large's shapes: W_out [36, 5120, 1280] and a
vocabulary matrix [1280, 50257], built directly (about 1.2 GB) rather than through a whole
model. The baseline only multiplies each block into a reused buffer; the candidate is
:func:`helpers.methods.congruence.scan`, which also keeps every token's and every neuron's top two,
and for the cosine (the census pass) the per-neuron power sums as well; a third case keeps
the power sums on the dot product too. The full search is about 12 TFLOP, minutes on two shared
cores, so both run on ``LAYERS`` of the 36 layers (alternating, best of ``REPEATS``) and the
seconds are also scaled to 36 layers; the ratio does not depend on the scaling. Memory is
the peak resident growth during the candidate run, on top of the inputs (the study built
the whole 37 GB matrix).
"""
from __future__ import annotations

import os
import time

import torch

from benchmarks.common import PeakMemory, Row
from helpers.methods.congruence import NEURON_CHUNK, TOKEN_CHUNK, scan

N_LAYERS, D_MLP, D_MODEL, D_VOCAB = 36, 5120, 1280, 50257
LAYERS = [int(x) for x in os.environ.get("BENCH_CONGRUENCE_LAYERS", "30,31").split(",")]
REPEATS = int(os.environ.get("BENCH_CONGRUENCE_REPEATS", "2"))
TARGET_RATIO = 1.3
MEMORY_LIMIT_GB = 2.0


def bare_products(W_out: torch.Tensor, U: torch.Tensor, layers: list[int]) -> None:
    """Only the block products of the search, each into a reused buffer."""
    buffers: dict[tuple[int, int], torch.Tensor] = {}
    for layer in layers:
        for n0 in range(0, D_MLP, NEURON_CHUNK):
            W = W_out[layer, n0 : n0 + NEURON_CHUNK]
            for t0 in range(0, D_VOCAB, TOKEN_CHUNK):
                block = U[:, t0 : t0 + TOKEN_CHUNK]
                shape = (W.shape[0], block.shape[1])
                if shape not in buffers:
                    buffers[shape] = torch.empty(shape)
                torch.mm(W, block, out=buffers[shape])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run() -> list[Row]:
    torch.set_grad_enabled(False)
    generator = torch.Generator().manual_seed(0)
    W_out = torch.randn(N_LAYERS, D_MLP, D_MODEL, generator=generator) * 0.02
    # stored token by token, as the models' W_E and processed W_U are
    U = (torch.randn(D_VOCAB, D_MODEL, generator=generator) * 0.02).T
    rows = []
    for measure, moments in (("dot", False), ("cosine", True), ("dot", True)):
        label = f"{measure}, {'top-2 lists + power sums' if moments else 'top-2 lists'}"
        bare_s, scan_s, peak_gb = [], [], 0.0
        for _ in range(REPEATS):
            bare_s.append(timed(lambda: bare_products(W_out, U, LAYERS)))
            with PeakMemory() as memory:
                scan_s.append(timed(lambda: scan(W_out, U, measure, layers=LAYERS, moments=moments)))
            peak_gb = max(peak_gb, memory.peak_gb)
        base, cand = min(bare_s), min(scan_s)
        scale = N_LAYERS / len(LAYERS)
        ratio = cand / base
        verdict = "within" if ratio <= TARGET_RATIO and peak_gb <= MEMORY_LIMIT_GB else "OUTSIDE"
        note = (
            f"{label}: {len(LAYERS)}/36 layers {LAYERS}, x{scale:g} -> full search {cand * scale:.0f} s vs products "
            f"{base * scale:.0f} s; ratio {ratio:.2f} (target <= {TARGET_RATIO}); peak +{peak_gb:.2f} GB "
            f"(limit {MEMORY_LIMIT_GB}); {verdict} target"
        )
        print(note, flush=True)
        rows.append(Row(f"congruence search ({label})", "bare chunked products", base, cand, note))
    return rows
