"""Attribution patching: a first-order estimate of neuron patching for every neuron at once.

Exact neuron patching needs a forward pass (or a batched share of one) per neuron and per
layer. Attribution patching (Nanda 2023; Kramar et al. 2024) replaces each patch by the
first term of its Taylor expansion around the run that gets patched:

    metric(patched) - metric(base)  ~  sum over patched positions of
                                       (donor_act - base_act) * d metric / d act  (at base)

One forward pass on each prompt and one backward pass give this for all ``n_layers * d_mlp``
neurons. It is exact when the metric is linear in the activation along the patch, and it
drifts where a nonlinearity (layer norm, attention softmax, later GELUs) bends the path
between the two activations, so the pages scatter it against the exact values before
trusting it.
"""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.checks import check_direction, check_positions
from helpers.core.prompts import Contrast, final_resid_name, read_out, wide
from helpers.methods.neuron_patching import position_mask, post_hook
from helpers.methods.patching import PatchResult, baselines, recovery, runs


def attribution_patching(
    model: TransformerBridge,
    contrast: Contrast,
    positions: str = "last",
    direction: str = "sufficiency",
) -> PatchResult:
    """Gradient estimate of every neuron's normalised recovery, on the same scale as the exact one.

    ``positions``: ``"last"`` or ``"all"`` (the estimate sums over the patched positions);
    ``direction``: ``"sufficiency"`` (gradient at the corrupted run) or ``"necessity"``
    (gradient at the clean run). Values ``[layer, d_mlp]``.
    """
    check_positions(positions)
    check_direction(direction)
    base_tokens, donor_tokens = runs(contrast, direction)
    names = [post_hook(layer) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, donor_cache = model.run_with_cache(donor_tokens, names_filter=lambda name: name in {*names, final_resid_name(model)})
    donor_diff = read_out(model, donor_cache[final_resid_name(model)][:, -1], contrast.target, contrast.other).item()
    donor_acts = torch.stack([wide(donor_cache[name][0]) for name in names])  # [layer, pos, d_mlp]

    base_diff, base_acts, grads = activations_and_gradients(model, base_tokens, contrast, names)
    mask = position_mask(base_acts.shape[1], positions).to(base_acts)
    estimate = ((donor_acts - base_acts) * grads * mask[None, :, None]).sum(1)  # [layer, d_mlp]

    clean_diff, corrupted_diff = baselines(base_diff, donor_diff, direction)
    return PatchResult(
        values=recovery(base_diff + estimate, clean_diff, corrupted_diff, direction),
        index_axis_names=("layer", "neuron"),
        activation_name="mlp_post",
        method="attribution",
        direction=direction,
        positions=positions,
        clean_diff=clean_diff,
        corrupted_diff=corrupted_diff,
        engine="gradient",
    )


def activations_and_gradients(
    model: TransformerBridge, tokens: Tensor, contrast: Contrast, names: list[str]
) -> tuple[float, Float[Tensor, "layer pos d_mlp"], Float[Tensor, "layer pos d_mlp"]]:
    """Logit difference of one run, the activations at ``names``, and its gradient there."""
    store: list[Tensor] = []

    def start_graph(resid, hook):
        # a leaf at the bottom of the model, so gradients flow whether or not weights require them
        return resid.detach().requires_grad_(True)

    def keep(act, hook):
        store.append(act)
        return act

    final = {}

    def keep_final(resid, hook):
        final["resid"] = resid[:, -1]
        return resid

    hooks = [("blocks.0.hook_resid_pre", start_graph)] + [(name, keep) for name in names] + [(final_resid_name(model), keep_final)]
    with torch.enable_grad():
        model.run_with_hooks(tokens, fwd_hooks=hooks)
        metric = read_out(model, final["resid"], contrast.target, contrast.other).sum()
        if len(store) != len(names):
            raise RuntimeError(f"expected one activation per layer from {names[0]}..., got {len(store)}; the hooks fired unexpectedly")
        grads = torch.autograd.grad(metric, store)
    acts = torch.stack([wide(a[0].detach()) for a in store])
    return metric.item(), acts, torch.stack([wide(g[0]) for g in grads])


def agreement(exact: Float[Tensor, "n"], estimate: Float[Tensor, "n"], k: int = 10) -> dict[str, float]:
    """How well an estimate tracks the exact values: Pearson r, Spearman rank r, and the share
    of the exact top-``k`` neurons (largest values) that are also in the estimate's top ``k``."""
    if exact.shape != estimate.shape or exact.ndim != 1:
        raise ValueError(f"exact and estimate must be 1-D of the same length, got {tuple(exact.shape)} and {tuple(estimate.shape)}")
    exact, estimate = exact.double(), estimate.double()
    k = min(k, exact.numel())

    def pearson(a: Tensor, b: Tensor) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float((a @ b) / (a.norm() * b.norm()))

    def ranks(a: Tensor) -> Tensor:
        return a.argsort().argsort().double()

    top_exact = set(exact.topk(k).indices.tolist())
    top_estimate = set(estimate.topk(k).indices.tolist())
    return {
        "pearson": pearson(exact, estimate),
        "spearman": pearson(ranks(exact), ranks(estimate)),
        "top_k_overlap": len(top_exact & top_estimate) / k,
        "k": k,
    }
