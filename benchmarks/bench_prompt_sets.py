"""Prompt sets: one batched call over every pair against one call per pair.

A random model of GPT-2 Large's width (d_model 1280, d_mlp 5120, 20 heads, vocabulary 50,257)
with 4 layers, so that the case runs in minutes on a CPU; the neuron sits in layer 1, so its
effects go through 2 later layers (4 later components). 16 study-like pairs of 20 tokens.
Cases: the ablation page's grid (3 kinds x 4 sets of neurons, each pair) and the direct and
indirect effects (total, direct and a path through each later component), each batched over
the pairs against the same helper called once per pair. Values agree to float rounding (the
tests check it on tiny models); the ratio is the cost of calling per pair.
"""
from __future__ import annotations

import time

import torch

from benchmarks.common import Row
from helpers.core.models import random_model
from helpers.core.names import Neuron
from helpers.methods.ablation import Reference, ablate
from helpers.methods.effects import neuron_effects
from helpers.methods.prompt_sets import study_like_pairs

N_PAIRS = 16
NEURON = Neuron(1, 892)


def timed(fn):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run() -> list[Row]:
    model = random_model(n_layers=4, d_model=1280, n_heads=20, d_vocab=50257, n_ctx=1024, seed=0)
    pairs = study_like_pairs(model, N_PAIRS)
    generator = torch.Generator().manual_seed(0)
    pool = torch.randn(512, model.cfg.d_mlp, generator=generator)
    reference = Reference(NEURON.layer, pool.mean(0), pool)
    others = torch.randperm(model.cfg.d_mlp, generator=generator)[:2].tolist()
    sets = {str(NEURON): [NEURON.index], "whole layer": list(range(model.cfg.d_mlp)), **{str(i): [i] for i in others}}
    kinds = ("zero", "mean", "negate")  # resampling draws differ between one call and many

    per_pair_s, singles = timed(lambda: [ablate(model, pairs.pair(i), NEURON.layer, sets, reference, kinds=kinds) for i in range(N_PAIRS)])
    batched_s, batched = timed(lambda: ablate(model, pairs, NEURON.layer, sets, reference, kinds=kinds))
    worst = max((batched.ablated_diff[..., i] - s.ablated_diff[..., 0]).abs().max().item() for i, s in enumerate(singles))
    rows = [Row(f"ablation, {len(kinds)} kinds x {len(sets)} sets x {N_PAIRS} pairs", "one call per pair", per_pair_s, batched_s, f"max diff {worst:.1e}")]

    per_pair_s, singles = timed(lambda: [neuron_effects(model, pairs.pair(i), NEURON) for i in range(N_PAIRS)])
    batched_s, effects = timed(lambda: neuron_effects(model, pairs, NEURON))
    worst = max((effects.paths[:, i] - s.paths[:, 0]).abs().max().item() for i, s in enumerate(singles))
    rows.append(Row(f"direct/indirect effects, {N_PAIRS} pairs, {len(effects.components)} paths", "one call per pair", per_pair_s, batched_s, f"max diff {worst:.1e}"))
    return rows
