"""Prompt sets: one batched call over every pair against one call per pair.

A random model of GPT-2 Large's width (d_model 1280, d_mlp 5120, 20 heads, vocabulary 50,257)
with 6 layers, so that the case runs in minutes on a CPU; the neuron sits in layer 2, so its
effects go through 3 later layers (8 later components). 32 study-like pairs of 20 tokens.
Cases: the ablation page's grid (4 kinds x 7 sets of neurons, each pair) and the direct and
indirect effects (total, direct and a path through each later component), each batched over
the pairs against the same helper called once per pair. Values agree to float rounding (the
tests check it on tiny models); the ratio is the cost of calling per pair.
"""
from __future__ import annotations

import torch

from benchmarks.common import Row, best_time
from helpers.core.models import random_model
from helpers.core.names import Neuron
from helpers.methods.ablation import Reference, ablate
from helpers.methods.effects import neuron_effects
from helpers.methods.prompt_sets import study_like_pairs

N_PAIRS = 32
NEURON = Neuron(2, 892)


def run() -> list[Row]:
    model = random_model(n_layers=6, d_model=1280, n_heads=20, d_vocab=50257, n_ctx=1024, seed=0)
    pairs = study_like_pairs(model, N_PAIRS)
    generator = torch.Generator().manual_seed(0)
    pool = torch.randn(512, model.cfg.d_mlp, generator=generator)
    reference = Reference(NEURON.layer, pool.mean(0), pool)
    others = torch.randperm(model.cfg.d_mlp, generator=generator)[:5].tolist()
    sets = {str(NEURON): [NEURON.index], "whole layer": list(range(model.cfg.d_mlp)), **{str(i): [i] for i in others}}
    kinds = ("zero", "mean", "negate")  # resampling draws differ between one call and many

    batched = ablate(model, pairs, NEURON.layer, sets, reference, kinds=kinds)
    singles = [ablate(model, pairs.pair(i), NEURON.layer, sets, reference, kinds=kinds) for i in range(N_PAIRS)]
    worst = max((batched.ablated_diff[..., i] - s.ablated_diff[..., 0]).abs().max().item() for i, s in enumerate(singles))
    ablation_rows = Row(
        f"ablation, {len(kinds)} kinds x {len(sets)} sets x {N_PAIRS} pairs", "one call per pair",
        best_time(lambda: [ablate(model, pairs.pair(i), NEURON.layer, sets, reference, kinds=kinds) for i in range(N_PAIRS)], 1),
        best_time(lambda: ablate(model, pairs, NEURON.layer, sets, reference, kinds=kinds), 1),
        f"max diff {worst:.1e}",
    )
    effects = neuron_effects(model, pairs, NEURON)
    worst = max((effects.paths[:, i] - neuron_effects(model, pairs.pair(i), NEURON).paths[:, 0]).abs().max().item() for i in range(4))
    effect_rows = Row(
        f"direct/indirect effects, {N_PAIRS} pairs, {len(effects.components)} paths", "one call per pair",
        best_time(lambda: [neuron_effects(model, pairs.pair(i), NEURON) for i in range(N_PAIRS)], 1),
        best_time(lambda: neuron_effects(model, pairs, NEURON), 1),
        f"max diff {worst:.1e} (4 pairs compared)",
    )
    return [ablation_rows, effect_rows]
