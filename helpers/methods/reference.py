"""Slow, obvious references for the fast methods: one full hooked forward pass per patch.

Tests compare each fast engine with these on tiny models, and the benchmarks time the fast
engines against them. Nothing in the book calls them.
"""
from __future__ import annotations

from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.hooks import mlp_post
from helpers.core.checks import check_layer, check_positions
from helpers.core.names import Neuron
from helpers.core.prompts import Contrast, logit_diff, normalized_recovery
from helpers.methods.neuron_patching import post_hook
from helpers.core.runs import clean_and_corrupted
from helpers.methods.patching import recovery, runs


@torch.no_grad()
def naive_neuron_patching(
    model: TransformerBridge, contrast: Contrast, layer: int, neurons: Sequence[int], positions: str = "last", direction: str = "sufficiency",
) -> Float[Tensor, "n"]:
    """Reference: one full hooked forward pass per neuron, the way the study did it."""
    check_layer(layer, model.cfg.n_layers, "MLP layers")
    base_tokens, donor_tokens = runs(contrast, direction)
    base_diff = logit_diff(model(base_tokens), contrast.target, contrast.other).item()
    donor_logits, donor_cache = model.run_with_cache(donor_tokens, names_filter=post_hook(layer))
    donor_diff = logit_diff(donor_logits, contrast.target, contrast.other).item()
    donor_act = donor_cache[post_hook(layer)]
    where = slice(-1, None) if check_positions(positions) == "last" else slice(None)
    results = []
    for neuron in neurons:
        def restore(act, hook, neuron=neuron):
            act[:, where, neuron] = donor_act[:, where, neuron]
            return act

        logits = model.run_with_hooks(base_tokens, fwd_hooks=[(post_hook(layer), restore)])
        results.append(logit_diff(logits, contrast.target, contrast.other).item())
    clean_diff, corrupted_diff = clean_and_corrupted(base_diff, donor_diff, direction)
    return recovery(torch.tensor(results), clean_diff, corrupted_diff, direction)


@torch.no_grad()
def naive_scan(model: TransformerBridge, docs: Sequence[str], neurons: Sequence[str], max_tokens: int) -> dict[str, Tensor]:
    """Reference for the scan: one document, one prompt at a time, unpadded, full cache, a
    Python loop over tokens (the obvious way). Logits are kept so tests can take their argmax."""
    parsed = [Neuron.parse(n) for n in neurons]
    bos = model.tokenizer.bos_token_id
    rows = {k: [] for k in ("token", "next_token", "doc", "pos", "activations", "logits", "pseudo_logits")}
    for d, text in enumerate(docs):
        ids = model.tokenizer.encode(text, add_special_tokens=False)
        span = max_tokens - 1
        for start in range(0, len(ids), span):
            piece = ids[start:start + span]
            tokens = torch.tensor([[bos] + piece])
            names = {mlp_post(n.layer) for n in parsed} | {"ln_final.hook_normalized"}
            logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
            for p in range(len(piece)):
                rows["token"].append(piece[p])
                rows["next_token"].append(ids[start + p + 1] if start + p + 1 < len(ids) else -1)
                rows["doc"].append(d)
                rows["pos"].append(start + p)
                rows["activations"].append([cache[mlp_post(n.layer)][0, p + 1, n.index].item() for n in parsed])
                rows["logits"].append(logits[0, p + 1])
                rows["pseudo_logits"].append(cache["ln_final.hook_normalized"][0, p + 1] @ model.W_E.T)
    return {
        "token": torch.tensor(rows["token"]),
        "next_token": torch.tensor(rows["next_token"]),
        "doc": torch.tensor(rows["doc"]),
        "pos": torch.tensor(rows["pos"]),
        "activations": torch.tensor(rows["activations"]),
        "logits": torch.stack(rows["logits"]),
        "pseudo_logits": torch.stack(rows["pseudo_logits"]),
    }


@torch.no_grad()
def naive_whole_layer(model: TransformerBridge, contrast: Contrast, layer: int, positions: str) -> float:
    """Reference for the whole-layer value: the layer's MLP output restored by a hook (no
    neuron arithmetic), clean into corrupted."""

    name = f"blocks.{layer}.hook_mlp_out"
    where = slice(-1, None) if positions == "last" else slice(None)
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(contrast.clean, names_filter=name)

        def restore(out, hook):
            out[:, where] = clean_cache[name][:, where]
            return out

        patched = model.run_with_hooks(contrast.corrupted, fwd_hooks=[(name, restore)])
        corrupted = logit_diff(model(contrast.corrupted), contrast.target, contrast.other).item()
    clean = logit_diff(clean_logits, contrast.target, contrast.other).item()
    return normalized_recovery(logit_diff(patched, contrast.target, contrast.other), clean, corrupted).item()


@torch.no_grad()
def naive_frozen_attention_patching(
    model: TransformerBridge,
    contrast: Contrast,
    layer: int,
    neurons: Sequence[int],
    positions: str = "last",
    direction: str = "sufficiency",
    fraction: float = 1.0,
) -> Float[Tensor, "n"]:
    """Reference for frozen-attention patching: one hooked forward pass per neuron, the neuron
    moved ``fraction`` of the way to its source-run value and every attention pattern after
    ``layer`` overwritten with the base run's (normalised as neuron patching)."""
    check_layer(layer, model.cfg.n_layers, "MLP layers")
    base_tokens, donor_tokens = runs(contrast, direction)
    patterns = [f"blocks.{l}.attn.hook_pattern" for l in range(layer + 1, model.cfg.n_layers)]
    base_logits, base_cache = model.run_with_cache(base_tokens, names_filter=lambda name: name in patterns)
    base_diff = logit_diff(base_logits, contrast.target, contrast.other).item()
    donor_logits, donor_cache = model.run_with_cache(donor_tokens, names_filter=post_hook(layer))
    donor_diff = logit_diff(donor_logits, contrast.target, contrast.other).item()
    donor_act = donor_cache[post_hook(layer)]
    where = slice(-1, None) if check_positions(positions) == "last" else slice(None)

    def freeze(pattern, hook):
        return base_cache[hook.name]

    results = []
    for neuron in neurons:
        def restore(act, hook, neuron=neuron):
            act[:, where, neuron] += fraction * (donor_act[:, where, neuron] - act[:, where, neuron])
            return act

        logits = model.run_with_hooks(base_tokens, fwd_hooks=[(post_hook(layer), restore)] + [(name, freeze) for name in patterns])
        results.append(logit_diff(logits, contrast.target, contrast.other).item())
    clean_diff, corrupted_diff = clean_and_corrupted(base_diff, donor_diff, direction)
    # in the model's precision (float64 stays float64, so finite differences of it stay tight)
    values = torch.tensor(results, dtype=torch.float64).to(torch.float64 if model.cfg.dtype == torch.float64 else torch.float32)
    return recovery(values, clean_diff, corrupted_diff, direction)

