"""Attribution patching: a first-order estimate of neuron patching for every neuron at once.

Exact neuron patching needs a forward pass (or a batched share of one) per neuron and per
layer. Attribution patching (Nanda 2023; Kramar et al. 2024) replaces each patch by the
first term of its Taylor expansion around the run that gets patched:

    metric(patched) - metric(base)  ~  sum over patched positions of
                                       (source_act - base_act) * d metric / d act  (at base)

One forward pass on each prompt and one backward pass give this for all ``n_layers * d_mlp``
neurons. It is exact when the metric is linear in the activation along the patch, and it
drifts where a nonlinearity (layer norm, attention softmax, later GELUs) bends the path
between the two activations, so the pages scatter it against the exact values before
trusting it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.hooks import final_resid
from helpers.core.runs import cached_run, clean_and_corrupted
from helpers.core.checks import check_choice, check_direction, check_positions, check_positive_int
from helpers.core.names import Neuron
from helpers.core.stats import rank_correlation
from helpers.core.prompts import Contrast, read_out, run_logit_diff, wide
from helpers.methods.neuron_patching import SuffixUnavailable, position_mask, post_hook, suffix_runner
from helpers.methods.patching import PatchResult, recovery, runs


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
    base_tokens, source_tokens = runs(contrast, direction)
    names = [post_hook(layer) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, source_cache = model.run_with_cache(source_tokens, names_filter=lambda name: name in {*names, final_resid(model)})
    source_diff = read_out(model, source_cache[final_resid(model)][:, -1], contrast.target, contrast.other).item()
    source_acts = torch.stack([wide(source_cache[name][0]) for name in names])  # [layer, pos, d_mlp]

    base_diff, base_acts, grads = activations_and_gradients(model, base_tokens, contrast, names)
    mask = position_mask(base_acts.shape[1], positions).to(base_acts)
    estimate = ((source_acts - base_acts) * grads * mask[None, :, None]).sum(1)  # [layer, d_mlp]

    clean_diff, corrupted_diff = clean_and_corrupted(base_diff, source_diff, direction)
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
    model: TransformerBridge, tokens: Tensor, contrast: Contrast, names: list[str], cuts: Sequence[tuple[str, object]] = ()
) -> tuple[float, Float[Tensor, "layer pos d_mlp"], Float[Tensor, "layer pos d_mlp"]]:
    """Logit difference of one run, the activations at ``names``, and its gradient there.

    ``cuts``: further hooks for the diagnostics (a gradient stopped somewhere); an activation
    that no longer reaches the metric then has gradient zero."""
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

    hooks = [("blocks.0.hook_resid_pre", start_graph)] + [(name, keep) for name in names] + [(final_resid(model), keep_final)]
    with torch.enable_grad():
        model.run_with_hooks(tokens, fwd_hooks=[*hooks, *cuts])
        metric = read_out(model, final["resid"], contrast.target, contrast.other).sum()
        if len(store) != len(names):
            raise RuntimeError(f"expected one activation per layer from {names[0]}..., got {len(store)}; the hooks fired unexpectedly")
        grads = torch.autograd.grad(metric, store, allow_unused=bool(cuts))
    grads = [torch.zeros_like(a) if g is None else g for a, g in zip(store, grads)]
    acts = torch.stack([wide(a[0].detach()) for a in store])
    return metric.item(), acts, torch.stack([wide(g[0]) for g in grads])


def agreement(exact: Float[Tensor, "n"], estimate: Float[Tensor, "n"], k: int = 10) -> dict[str, float]:
    """How well an estimate tracks the exact values: Pearson r, Spearman rank r (tied values
    share their average rank), and the share of the exact top-``k`` neurons (largest values)
    that are also in the estimate's top ``k``."""
    if exact.shape != estimate.shape or exact.ndim != 1:
        raise ValueError(f"exact and estimate must be 1-D of the same length, got {tuple(exact.shape)} and {tuple(estimate.shape)}")
    exact, estimate = exact.double(), estimate.double()
    k = min(k, exact.numel())

    def pearson(a: Tensor, b: Tensor) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float((a @ b) / (a.norm() * b.norm()))

    top_exact = set(exact.topk(k).indices.tolist())
    top_estimate = set(estimate.topk(k).indices.tolist())
    return {
        "pearson": pearson(exact, estimate),
        "spearman": rank_correlation(exact, estimate),
        "top_k_overlap": len(top_exact & top_estimate) / k,
        "k": k,
    }


# --- Checking the estimate against exact patching of every layer, and why it fails ---------
#
# Kramar et al. (2024) name two ways attribution patching goes wrong. *Attention saturation*:
# a patch that moves a later attention softmax far (from one key to another) has a small
# first-order effect where the softmax is saturated, so the estimate misses what the real
# patch does through the attention pattern. *Cancellation*: the estimate is the sum of the
# patch's effects along many paths (directly to the logits, and through each later layer);
# where large contributions of opposite signs cancel, the small first-order sum says little
# about the exact value. :func:`failure_modes` tests both for the neurons where the estimate
# is furthest from the exact value, with the suffix engine of
# :mod:`helpers.methods.neuron_patching` (float32, its switches ``frozen`` and ``dropping``),
# or, for a model it does not reproduce, the model's own passes with hooks that do the same:
#
# * attention: the exact patch and its estimate are recomputed with every later attention
#   pattern frozen at the base run's. The gap that remains, frozen exact minus frozen
#   estimate, is the error made by everything but the attention patterns (later MLPs and
#   layer norms); what freezing removes went through the patterns. If freezing closes at
#   least half of the gap (``CLOSED_SHARE``), the evidence points to the attention softmax.
# * cancellation: GradDrop (AtP*'s test) recomputes the estimate with no gradient through one
#   later layer at a time; the difference from the full estimate is what the paths through
#   that layer carry (paths through several layers count in each: evidence, not a sum).
#   With the direct path (no gradient through any later layer), these are the estimate's
#   parts. If the largest part of each sign is larger than the estimate itself and at least
#   half the gap, large opposite contributions cancel in the estimate: cancellation.
#
# Neither test passing points at the remaining nonlinearity: later MLPs' activation functions
# and the layer norms. A gap below ``ACCURATE_GAP`` (in normalised units) is called accurate.
# One more cause comes before the two: on a bfloat16 model the estimate's gradient is rounded;
# where the diagnostic's float32 recomputation of the estimate differs from it by at least
# half the gap, the gap is rounding, not a failure of the first-order approximation.

CLOSED_SHARE = 0.5
ACCURATE_GAP = 0.01
VERDICTS = (
    "accurate",
    "attention saturation",
    "cancellation",
    "attention saturation and cancellation",
    "neither: nonlinearity in later MLPs and layer norms",
    "precision: the estimate's rounding",
)


def check_comparable(exact: PatchResult, estimate: PatchResult) -> None:
    """A one-line error unless ``exact`` (activation patching) and ``estimate`` (attribution)
    cover every layer's neurons with the same positions and direction."""
    if exact.method != "activation" or estimate.method != "attribution":
        raise ValueError(f"compare an exact result (method 'activation') with an estimate (method 'attribution'), got {exact.method!r} and {estimate.method!r}")
    for name, result in (("exact", exact), ("estimate", estimate)):
        if result.index_axis_names != ("layer", "neuron"):
            raise ValueError(f"the {name} result is indexed by {result.index_axis_names}; pass model_neuron_patching's and attribution_patching's [layer, neuron] results")
    if exact.values.shape != estimate.values.shape:
        raise ValueError(f"the exact values are {tuple(exact.values.shape)} but the estimate is {tuple(estimate.values.shape)}: they come from different models")
    if (exact.positions, exact.direction) != (estimate.positions, estimate.direction):
        raise ValueError(
            f"the exact values restore at positions {exact.positions!r} ({exact.direction}) but the estimate at {estimate.positions!r} "
            f"({estimate.direction}); compute both with the same positions and direction"
        )


def model_agreement(exact: PatchResult, estimate: PatchResult, k: int = 10) -> dict:
    """How well the estimate tracks exact patching, over every exactly patched neuron
    (``pooled``) and layer by layer (``per_layer``, one :func:`agreement` per patched layer,
    in ``layers``), with ``n_neurons`` compared."""
    check_comparable(exact, estimate)
    patched = ~exact.values.isnan()
    layers = torch.nonzero(patched.any(1)).flatten().tolist()
    if not layers:
        raise ValueError("the exact result has no patched neuron (all NaN); patch at least one layer")
    exact_values, estimates = exact.values.float().cpu(), estimate.values.float().cpu()
    per_layer = [agreement(exact_values[l][patched[l]], estimates[l][patched[l]], k) for l in layers]
    return dict(
        layers=layers,
        per_layer=per_layer,
        pooled=agreement(exact_values[patched], estimates[patched], k),
        n_neurons=int(patched.sum()),
    )


@dataclass(frozen=True)
class FailureModes:
    """For each of the neurons where attribution is furthest from exact patching, what the
    two failure-mode tests found (normalised units, the direction's convention).

    ``exact`` and ``estimate`` are the results compared; ``recomputed_estimate`` the estimate
    recomputed by the diagnostic's engine (equal to ``estimate`` up to rounding; the tests use
    it so every first-order term comes from one computation). ``frozen_exact`` and ``frozen_estimate``:
    the same with every later attention pattern frozen at the base run's. ``direct``: the
    estimate through no later layer; ``paths[i, l]``: what the paths through layer ``l`` carry
    in the estimate (GradDrop), NaN for layers not after the neuron's.
    """

    neurons: list[Neuron]
    exact: Float[Tensor, "k"]
    estimate: Float[Tensor, "k"]
    recomputed_estimate: Float[Tensor, "k"]
    frozen_exact: Float[Tensor, "k"]
    frozen_estimate: Float[Tensor, "k"]
    direct: Float[Tensor, "k"]
    paths: Float[Tensor, "k layer"]

    @property
    def gap(self) -> Float[Tensor, "k"]:
        """Exact minus estimate: what attribution gets wrong."""
        return self.exact - self.estimate

    @property
    def closed_by_freezing(self) -> Float[Tensor, "k"]:
        """Share of the gap that freezing the later attention patterns closes (1: all of it;
        negative: freezing widens it)."""
        total = self.exact - self.recomputed_estimate
        remaining = self.frozen_exact - self.frozen_estimate
        return 1 - remaining.abs() / total.abs().clamp_min(torch.finfo(total.dtype).tiny)

    @property
    def opposing(self) -> Float[Tensor, "k"]:
        """The smaller of the largest positive and the largest negative part of the estimate
        (the direct path and each later layer's paths): how much cancels, at least."""
        parts = torch.cat([self.direct[:, None], self.paths.nan_to_num(0.0)], dim=1)
        return torch.minimum(parts.clamp_min(0).amax(1), (-parts).clamp_min(0).amax(1))

    @property
    def verdicts(self) -> list[str]:
        """Which failure mode the evidence points to, per neuron (one of ``VERDICTS``)."""
        saturated = self.closed_by_freezing >= CLOSED_SHARE
        total = (self.exact - self.recomputed_estimate).abs()
        cancelled = (self.opposing > self.recomputed_estimate.abs()) & (self.opposing >= total / 2)
        accurate = self.gap.abs() < ACCURATE_GAP
        rounded = (self.estimate - self.recomputed_estimate).abs() >= self.gap.abs() / 2
        return [
            VERDICTS[0] if a else VERDICTS[5] if r else VERDICTS[3] if s and c else VERDICTS[1] if s else VERDICTS[2] if c else VERDICTS[4]
            for a, r, s, c in zip(accurate.tolist(), rounded.tolist(), saturated.tolist(), cancelled.tolist())
        ]


def worst_neurons(exact: PatchResult, estimate: PatchResult, k: int) -> list[Neuron]:
    """The ``k`` exactly patched neurons where the estimate is furthest from the exact value."""
    check_comparable(exact, estimate)
    gap = (exact.values.float().cpu() - estimate.values.float().cpu()).abs().flatten()
    gap = gap.nan_to_num(nan=-1.0)  # unpatched neurons last
    n_patched = int((~exact.values.isnan()).sum())
    top = gap.topk(min(k, n_patched)).indices.tolist()
    return [Neuron.from_flat(i, exact.values.shape[1]) for i in top]


DIAGNOSTIC_ENGINES = ("auto", "suffix", "hooks")


def failure_modes(
    model: TransformerBridge, contrast: Contrast, exact: PatchResult, estimate: PatchResult, k: int = 10, engine: str = "auto"
) -> FailureModes:
    """The two failure-mode tests (see above) on the ``k`` neurons where ``estimate``
    (attribution patching) is furthest from ``exact`` (:func:`model_neuron_patching`, on every
    layer or some).

    ``engine``: ``"suffix"`` (the suffix engine, float32, only the layers after each neuron's
    and only the changed positions: per layer with such neurons one batch of frozen patches
    and one backward pass per later layer), ``"hooks"`` (the model's own forward and backward
    passes with hooks that freeze the patterns or stop the gradient: any architecture, one
    full backward pass per layer) or ``"auto"`` (suffix where it reproduces the model)."""
    check_positive_int("k", k)
    check_choice(engine, DIAGNOSTIC_ENGINES, "engine")
    neurons = worst_neurons(exact, estimate, k)
    parts = None
    if engine != "hooks":
        try:
            parts = runner_diagnostics(model, contrast, neurons, exact.positions, exact.direction)
        except SuffixUnavailable:
            if engine == "suffix":
                raise
    if parts is None:
        parts = hooked_diagnostics(model, contrast, neurons, exact.positions, exact.direction)
    where = [(n.layer, n.index) for n in neurons]
    return FailureModes(
        neurons=neurons,
        exact=torch.tensor([float(exact.values[l, i]) for l, i in where]),
        estimate=torch.tensor([float(estimate.values[l, i]) for l, i in where]),
        **parts,
    )


@torch.no_grad()
def runner_diagnostics(model: TransformerBridge, contrast: Contrast, neurons: list[Neuron], positions: str, direction: str) -> dict[str, Tensor]:
    """:class:`FailureModes`' computed fields from the suffix engine of each neuron's layer."""
    n_layers = model.cfg.n_layers
    parts = {name: torch.zeros(len(neurons)) for name in ("recomputed_estimate", "frozen_exact", "frozen_estimate", "direct")}
    paths = torch.full((len(neurons), n_layers), float("nan"))
    for layer in sorted({n.layer for n in neurons}):
        picked = [i for i, n in enumerate(neurons) if n.layer == layer]
        indices = torch.tensor([neurons[i].index for i in picked])
        runner, base_diff, source_diff = suffix_runner(model, contrast, layer, positions, direction)
        clean_diff, corrupted_diff = clean_and_corrupted(base_diff, source_diff, direction)

        def normalised(change: Tensor) -> Tensor:
            return recovery(base_diff + change.float().cpu(), clean_diff, corrupted_diff, direction)

        frozen = runner.frozen()
        later = range(layer + 1, n_layers)
        parts["recomputed_estimate"][picked] = normalised(runner.first_order(indices))
        parts["frozen_exact"][picked] = normalised(frozen.patch_neurons(indices) - base_diff)
        parts["frozen_estimate"][picked] = normalised(frozen.first_order(indices))
        parts["direct"][picked] = normalised(runner.dropping(later).first_order(indices))
        full = parts["recomputed_estimate"][picked]
        for l in later:
            paths[picked, l] = full - normalised(runner.dropping([l]).first_order(indices))
    return dict(parts, paths=paths)


def hooked_diagnostics(model: TransformerBridge, contrast: Contrast, neurons: list[Neuron], positions: str, direction: str) -> dict[str, Tensor]:
    """:class:`FailureModes`' computed fields from the model's own passes with hooks."""
    n_layers = model.cfg.n_layers
    layer_of = torch.tensor([n.layer for n in neurons])
    index_of = torch.tensor([n.index for n in neurons])

    def pick(values: Float[Tensor, "layer d_mlp"]) -> Float[Tensor, "k"]:
        return values[layer_of, index_of].float()

    full = pick(hooked_estimates(model, contrast, positions, direction))
    parts = dict(
        recomputed_estimate=full,
        frozen_estimate=pick(hooked_estimates(model, contrast, positions, direction, frozen_attention=True)),
        frozen_exact=torch.zeros(len(neurons)),
        direct=torch.zeros(len(neurons)),
    )
    paths = torch.full((len(neurons), n_layers), float("nan"))
    for l in range(int(layer_of.min()) + 1, n_layers):
        after = layer_of < l
        paths[after, l] = (full - pick(hooked_estimates(model, contrast, positions, direction, dropped=[l])))[after]
    for layer in layer_of.unique().tolist():
        mine = layer_of == layer
        direct = hooked_estimates(model, contrast, positions, direction, dropped=range(layer + 1, n_layers))
        parts["direct"][mine] = pick(direct)[mine]
        parts["frozen_exact"][mine] = hooked_frozen_patching(model, contrast, layer, index_of[mine], positions, direction)
    return dict(parts, paths=paths)


def hooked_estimates(
    model: TransformerBridge,
    contrast: Contrast,
    positions: str = "last",
    direction: str = "sufficiency",
    frozen_attention: bool = False,
    dropped: Sequence[int] = (),
) -> Float[Tensor, "layer d_mlp"]:
    """:func:`attribution_patching`'s normalised estimates through the model's own backward
    pass, with no gradient through any attention pattern (``frozen_attention``) or through
    the attention and MLP outputs of the ``dropped`` layers (GradDrop). The neurons of a
    dropped layer and of the layers after it get what the cuts leave them (zero or less)."""
    check_positions(positions)
    check_direction(direction)
    base_tokens, source_tokens = runs(contrast, direction)
    n_layers = model.cfg.n_layers
    names = [post_hook(l) for l in range(n_layers)]

    def cut(value, hook):
        return value.detach()

    cuts = [(f"blocks.{l}.attn.hook_pattern", cut) for l in range(n_layers)] if frozen_attention else []
    cuts += [(f"blocks.{l}.hook_{part}_out", cut) for l in dropped for part in ("attn", "mlp")]
    with torch.no_grad():
        _, source_cache = model.run_with_cache(source_tokens, names_filter=lambda name: name in {*names, final_resid(model)})
    source_diff = read_out(model, source_cache[final_resid(model)][:, -1], contrast.target, contrast.other).item()
    source_acts = torch.stack([wide(source_cache[name][0]) for name in names])
    base_diff, base_acts, grads = activations_and_gradients(model, base_tokens, contrast, names, cuts)
    mask = position_mask(base_acts.shape[1], positions).to(base_acts)
    estimate = ((source_acts - base_acts) * grads * mask[None, :, None]).sum(1)
    clean_diff, corrupted_diff = clean_and_corrupted(base_diff, source_diff, direction)
    return recovery(base_diff + estimate, clean_diff, corrupted_diff, direction).cpu()


@torch.no_grad()
def hooked_frozen_patching(
    model: TransformerBridge, contrast: Contrast, layer: int, indices: Tensor, positions: str = "last", direction: str = "sufficiency"
) -> Float[Tensor, "n"]:
    """Exact patching of neurons ``indices`` of ``layer`` (one per row of a batch) with every
    later attention pattern overwritten by the base run's, through the model's own forward
    pass; normalised."""
    base_tokens, source_tokens = runs(contrast, direction)
    patterns = {f"blocks.{l}.attn.hook_pattern" for l in range(layer + 1, model.cfg.n_layers)}
    final = final_resid(model)
    base_cache, base_diff = cached_run(model, base_tokens, patterns | {post_hook(layer), final}, contrast.target, contrast.other)
    source_cache, source_diff = cached_run(model, source_tokens, {post_hook(layer), final}, contrast.target, contrast.other)
    base_diff, source_diff = base_diff.item(), source_diff.item()
    base_act = base_cache[post_hook(layer)][0]
    delta = (source_cache[post_hook(layer)][0] - base_act) * position_mask(base_act.shape[0], positions).to(base_act)[:, None]
    rows, indices = torch.arange(len(indices)), torch.as_tensor(indices)

    def restore(act, hook):
        patched = act.clone()
        patched[rows, :, indices] += delta[:, indices].T.to(patched.dtype)
        return patched

    def freeze(pattern, hook):
        return base_cache[hook.name].expand(len(indices), *pattern.shape[1:])

    hooks = [(post_hook(layer), restore)] + [(name, freeze) for name in sorted(patterns)]
    patched = run_logit_diff(model, base_tokens.expand(len(indices), -1), contrast.target, contrast.other, hooks)
    clean_diff, corrupted_diff = clean_and_corrupted(base_diff, source_diff, direction)
    return recovery(patched.float().cpu(), clean_diff, corrupted_diff, direction)
