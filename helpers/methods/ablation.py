"""Ablation done right: what happens to the prediction when neurons are taken away.

To ablate a neuron is to replace its activation, at every position, by a value that carries
no information about the prompt, and watch the metric. Which value matters:

* ``zero``: activation 0. Simple, but 0 may be far from anything the neuron ever outputs
  (GELU neurons mostly sit slightly below zero), so the model is pushed off its
  distribution and the effect mixes "information removed" with "unusual input".
* ``mean``: the neuron's mean activation over a reference corpus. It removes what varies
  with the prompt and keeps the neuron's typical contribution: the principled default.
* ``resample``: the activation at a random other position of the reference corpus (a
  different one per position and per pair; for a set of neurons the whole vector of one
  position, so their joint distribution is kept). Its effect is an expectation over what the
  neuron normally does.
* ``negate``: the activation's negative, as the original study did. It does not remove the
  neuron's contribution, it reverses it (twice the swing of zero, in the other direction,
  for a neuron that fires strongly), so it overstates necessity.

``necessity``: the clean prompt with the neurons ablated; the share of the clean-corrupted
logit difference that is lost, ``(clean - ablated) / (clean - corrupted)``. ``sufficiency``
(for comparison, not an ablation): the corrupted prompt with the neurons' clean activations
restored, ``(restored - corrupted) / (clean - corrupted)``. Both per pair of a prompt set,
with P(target) beside the logit difference.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.hooks import final_resid, mlp_post, run_until
from helpers.core.checks import check_choice, check_layer, check_neurons, check_positive_int
from helpers.core.names import Neuron
from helpers.core.prompts import Contrast, last_logits, read_out, wide
from helpers.methods.effects import frozen_readout

LAYER_SET = "whole layer"  # the name of the set of every neuron of the layer

KINDS = ("zero", "mean", "resample", "negate")
MIN_REFERENCE_POSITIONS = 256


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """The ablation kinds as a tuple, or a one-line error naming the unknown one."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    for kind in kinds:
        check_choice(kind, KINDS, "ablation kind")
    if not kinds:
        raise ValueError(f"no ablation kind given: choose from {', '.join(KINDS)}")
    return kinds


@dataclass(frozen=True)
class Reference:
    """A layer's activations on a reference corpus: their mean and a pool to resample from.

    ``pool`` holds ``[position, d_mlp]`` activations of every non-BOS position read.
    """

    layer: int
    mean: Float[Tensor, "d_mlp"]
    pool: Float[Tensor, "position d_mlp"]


@torch.no_grad()
def reference_activations(model: TransformerBridge, windows: Int[Tensor, "window pos"], layer: int, batch_size: int = 16) -> Reference:
    """Layer ``layer``'s activations over reference token windows (each starting with BOS).

    Needs at least ``MIN_REFERENCE_POSITIONS`` positions after the BOS tokens; with fewer, a
    one-line error says how many windows to add.
    """
    check_layer(layer, model.cfg.n_layers, "MLP layers")
    check_positive_int("batch_size", batch_size)
    positions = windows.shape[0] * max(windows.shape[1] - 1, 0) if windows.ndim == 2 else 0
    if positions < MIN_REFERENCE_POSITIONS:
        raise ValueError(
            f"the reference corpus has {positions} positions; a mean and a resampling pool need at least "
            f"{MIN_REFERENCE_POSITIONS}: pass more documents (n_docs) or longer windows"
        )
    name = mlp_post(layer)
    acts = []
    for start in range(0, windows.shape[0], batch_size):
        _, cache = model.run_with_cache(windows[start : start + batch_size], names_filter=name)
        acts.append(wide(cache[name][:, 1:]).reshape(-1, model.cfg.d_mlp))
    pool = torch.cat(acts)
    return Reference(layer=layer, mean=pool.mean(0), pool=pool)


@dataclass(frozen=True)
class Ablation:
    """Ablations of sets of neurons of one layer over a prompt set.

    ``ablated_diff[kind, set, pair]`` and ``ablated_prob`` (P(target)) in the clean run with
    the set ablated; ``restored_diff[set, pair]`` and ``restored_prob`` in the corrupted run
    with the set's clean activations put back; baselines ``clean_diff``, ``corrupted_diff``,
    ``clean_prob``, ``corrupted_prob`` per pair.
    """

    layer: int
    kinds: tuple[str, ...]
    set_names: tuple[str, ...]
    ablated_diff: Float[Tensor, "kind set pair"]
    ablated_prob: Float[Tensor, "kind set pair"]
    restored_diff: Float[Tensor, "set pair"]
    restored_prob: Float[Tensor, "set pair"]
    clean_diff: Float[Tensor, "pair"]
    corrupted_diff: Float[Tensor, "pair"]
    clean_prob: Float[Tensor, "pair"]
    corrupted_prob: Float[Tensor, "pair"]

    @property
    def gap(self) -> Float[Tensor, "pair"]:
        return self.clean_diff - self.corrupted_diff

    @property
    def necessity(self) -> Float[Tensor, "kind set pair"]:
        """Share of the clean-corrupted difference lost by ablating: ``(clean - ablated) / gap``."""
        return (self.clean_diff - self.ablated_diff) / self.gap

    @property
    def sufficiency(self) -> Float[Tensor, "set pair"]:
        """Share recovered by restoring the clean activations: ``(restored - corrupted) / gap``."""
        return (self.restored_diff - self.corrupted_diff) / self.gap


@torch.no_grad()
def ablate(
    model: TransformerBridge,
    pairs: Contrast,
    layer: int,
    neuron_sets: dict[str, Sequence[int]],
    reference: Reference,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    max_rows: int = 256,
) -> Ablation:
    """Ablate each named set of neurons of ``layer`` by each kind, on every pair; restore each set.

    ``neuron_sets`` maps a label to neuron indices (one neuron, the whole layer, a random
    neuron...). Runs are batched: one row per (kind, set, pair), ``max_rows`` rows a pass.
    """
    check_layer(layer, model.cfg.n_layers, "MLP layers")
    kinds = check_kinds(kinds)
    if reference.layer != layer:
        raise ValueError(f"the reference activations are of layer {reference.layer}, not {layer}; compute them for layer {layer}")
    if not neuron_sets:
        raise ValueError("no neurons to ablate: pass neuron_sets={'label': [indices], ...}")
    clean_diff, clean_prob = _diff_and_prob(model, pairs.clean, pairs, [])
    corrupted_diff, corrupted_prob = _diff_and_prob(model, pairs.corrupted, pairs, [])
    level = (clean_diff == corrupted_diff).nonzero().flatten().tolist()
    if level:
        raise ValueError(f"pair(s) {level[:5]} have the same logit difference clean and corrupted: necessity and sufficiency "
                         "are shares of that gap, so they are undefined; use pairs whose prompts differ")
    d_mlp = model.cfg.d_mlp
    masks = torch.stack([torch.zeros(d_mlp, dtype=torch.bool).index_fill_(0, check_neurons(s, d_mlp), True) for s in neuron_sets.values()])
    n_pairs, n_pos = pairs.clean.shape
    post = mlp_post(layer)
    _, clean_cache = model.run_with_cache(pairs.clean, names_filter=post)
    clean_act = clean_cache[post]  # [pair, pos, d_mlp]
    generator = torch.Generator().manual_seed(seed)

    # one row per (kind, set, pair): a mask of neurons to replace, a factor on the run's own
    # activation (-1 for negate, else 0) and an offset (0, the mean, or a resampled vector)
    grid = [(k, s, p) for k in range(len(kinds)) for s in range(len(masks)) for p in range(n_pairs)]
    kind_of = torch.tensor([k for k, _, _ in grid])
    row_masks = masks[torch.tensor([s for _, s, _ in grid])]  # [row, d_mlp]
    factor = torch.tensor([-1.0 if kinds[k] == "negate" else 0.0 for k in kind_of.tolist()])
    offsets = torch.zeros(len(grid), n_pos, d_mlp)
    is_mean = torch.tensor([kinds[k] == "mean" for k in kind_of.tolist()])
    offsets[is_mean] = reference.mean.to(offsets)
    is_resample = torch.tensor([kinds[k] == "resample" for k in kind_of.tolist()])
    draws = torch.randint(0, reference.pool.shape[0], (int(is_resample.sum()), n_pos), generator=generator)
    offsets[is_resample] = reference.pool[draws].to(offsets)
    tokens = pairs.clean[torch.tensor([p for _, _, p in grid])]

    diffs, probs = [], []
    for start in range(0, len(grid), max_rows):
        rows = slice(start, start + max_rows)

        def replace(act, hook, rows=rows):
            mask = row_masks[rows][:, None, :].to(act.device)
            new = factor[rows].to(act)[:, None, None] * act + offsets[rows].to(act)
            return torch.where(mask, new, act)

        diff, prob = _diff_and_prob(model, tokens[rows], pairs, [(post, replace)])
        diffs.append(diff)
        probs.append(prob)
    shape = (len(kinds), len(masks), n_pairs)

    restore = restore_hook(masks, clean_act)
    restored_diff, restored_prob = _diff_and_prob(model, pairs.corrupted.repeat(len(masks), 1), pairs, [(post, restore)])
    return Ablation(
        layer=layer, kinds=kinds, set_names=tuple(neuron_sets),
        ablated_diff=torch.cat(diffs).reshape(shape), ablated_prob=torch.cat(probs).reshape(shape),
        restored_diff=restored_diff.reshape(len(masks), n_pairs), restored_prob=restored_prob.reshape(len(masks), n_pairs),
        clean_diff=clean_diff, corrupted_diff=corrupted_diff, clean_prob=clean_prob, corrupted_prob=corrupted_prob,
    )


def restore_hook(masks: Bool[Tensor, "set d_mlp"], clean_act: Float[Tensor, "pair pos d_mlp"]):
    """A hook on ``mlp.hook_post`` for rows laid out set by set (``[set * pair, pos]``): in the
    rows of set ``s`` the neurons of ``masks[s]`` take their clean activation at every position."""
    n_pairs = clean_act.shape[0]

    def restore(act, hook):
        mask = masks.repeat_interleave(n_pairs, 0)[:, None, :].to(act.device)
        return torch.where(mask, clean_act.repeat(len(masks), 1, 1), act)

    return restore


def _diff_and_prob(model: TransformerBridge, tokens, pairs: Contrast, hooks) -> tuple[Float[Tensor, "row"], Float[Tensor, "row"]]:
    """Last-position logit difference and P(target) of each row, in float32."""
    logits = last_logits(model, tokens, hooks)
    return logits[:, pairs.target] - logits[:, pairs.other], logits.softmax(-1)[:, pairs.target]


@dataclass(frozen=True)
class CorpusLoss:
    """Per-token loss change when a neuron is mean-ablated everywhere, grouped by the next token.

    ``change[group]`` holds the per-token changes (ablated - normal, in nats) of the tokens whose
    next token is the target (``"target"``), the other token (``"other"``), or any (``"all"``).
    """

    change: dict[str, Float[Tensor, "token"]]
    loss: dict[str, float]


@torch.no_grad()
def ablated_loss(
    model: TransformerBridge,
    windows: Int[Tensor, "window pos"],
    layer: int,
    neurons: Sequence[int],
    value: Float[Tensor, "d_mlp"],
    target: int,
    other: int,
    batch_size: int = 16,
) -> CorpusLoss:
    """Next-token loss over ``windows`` with ``neurons`` of ``layer`` set to ``value`` everywhere,
    against the unablated loss, per token."""
    check_layer(layer, model.cfg.n_layers, "MLP layers")
    check_positive_int("batch_size", batch_size)
    index = check_neurons(neurons, model.cfg.d_mlp)
    post = mlp_post(layer)
    mean_ablate = set_neurons_hook(index, value)
    normal, ablated = [], []
    for start in range(0, windows.shape[0], batch_size):
        batch = windows[start : start + batch_size]
        normal.append(_token_losses(model(batch), batch))
        ablated.append(_token_losses(model.run_with_hooks(batch, fwd_hooks=[(post, mean_ablate)]), batch))
    normal, ablated = torch.cat(normal), torch.cat(ablated)
    next_tokens = windows[:, 1:].reshape(-1)
    groups = {"target": next_tokens == target, "other": next_tokens == other, "all": torch.ones_like(next_tokens, dtype=torch.bool)}
    return CorpusLoss(
        change={g: (ablated - normal)[m] for g, m in groups.items()},
        loss={g: float(normal[m].mean()) if m.any() else float("nan") for g, m in groups.items()},
    )


@dataclass(frozen=True)
class NaturalEffects:
    """At the positions of a corpus whose next token is the target or its rival: the change of
    the logit difference (target minus rival) when the neuron is mean-ablated at every position
    (``total``), its direct part (the neuron's write minus the mean's, read through the final
    norm frozen at the position's own scale), per position, and whether the next token is the
    target (``before_target``)."""

    total: Float[Tensor, "position"]
    direct: Float[Tensor, "position"]
    before_target: Bool[Tensor, "position"]


@torch.no_grad()
def natural_effects(
    model: TransformerBridge, windows: Int[Tensor, "window pos"], neuron: Neuron, value: Float[Tensor, "d_mlp"], target: int, other: int,
    batch_size: int = 16,
) -> NaturalEffects:
    """:class:`NaturalEffects` of ``neuron`` mean-ablated (to ``value[neuron.index]``) over
    ``windows``: one clean and one ablated pass per batch, each stopped at the final norm (no
    logits are made), read only where the next token is ``target`` or ``other``."""
    check_positive_int("batch_size", batch_size)
    post, final, scale, index = mlp_post(neuron.layer), final_resid(model), "ln_final.hook_scale", neuron.index
    w_out = wide(model.blocks[neuron.layer].mlp.W_out[index].detach())
    totals, directs, before = [], [], []
    for start in range(0, windows.shape[0], batch_size):
        batch = windows[start : start + batch_size]
        where = torch.zeros_like(batch, dtype=torch.bool)
        where[:, :-1] = (batch[:, 1:] == target) | (batch[:, 1:] == other)  # [window, pos]: positions read
        if not where.any():
            continue
        kept = {}

        def keep(name: str):
            def hook(x, hook):
                kept[name] = x[where]  # [position, ...]
                return x
            return hook

        run_until(model, batch, scale, [(post, keep("act")), (final, keep("clean")), (scale, keep("scale"))])
        run_until(model, batch, final, [(post, set_neurons_hook([index], value)), (final, keep("ablated"))])
        totals.append(read_out(model, kept["ablated"], target, other) - read_out(model, kept["clean"], target, other))
        write = (value[index] - kept["act"][:, index]).float()[:, None] * w_out  # [position, d_model]
        directs.append(frozen_readout(model, write, kept["scale"][:, 0], target, other))
        before.append(batch[:, 1:][where[:, :-1]] == target)
    if not totals:
        raise ValueError("no position of these windows is followed by the target or its rival; give more documents")
    return NaturalEffects(torch.cat(totals).float(), torch.cat(directs).float(), torch.cat(before))


def set_neurons_hook(index, value: Float[Tensor, "d_mlp"]):
    """A hook on ``mlp.hook_post`` that sets neurons ``index`` to ``value[index]`` at every
    position (mean ablation when ``value`` is the reference mean)."""
    def set_neurons(act, hook):
        act = act.clone()
        act[..., index] = value[index].to(act)
        return act
    return set_neurons


def _token_losses(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "token"]:
    """Cross-entropy of each next token, flattened over the batch."""
    logprobs = wide(logits[:, :-1]).log_softmax(-1)
    return -logprobs.gather(-1, tokens[:, 1:, None])[..., 0].reshape(-1)


def corpus_windows(model: TransformerBridge, texts: Sequence[str], length: int = 64) -> Int[Tensor, "window pos"]:
    """The texts' tokens cut into windows of ``length`` tokens, each led by BOS (tails dropped)."""
    check_positive_int("length", length, low=2)
    bos = model.tokenizer.bos_token_id
    windows = []
    for text in texts:
        ids = model.tokenizer.encode(text, add_special_tokens=False)
        windows += [[bos] + ids[i : i + length - 1] for i in range(0, len(ids) - length + 2, length - 1)]
    if not windows:
        raise ValueError(f"no window of {length} tokens in the given texts; pass longer or more documents, or a shorter length")
    return torch.tensor(windows, dtype=torch.long)


def ablation_sets(model: TransformerBridge, neuron: Neuron, n_random: int, seed: int = 0) -> dict[str, list[int]]:
    """The sets the ablation page compares: the neuron, its whole layer, and ``n_random`` other
    neurons of the layer drawn with ``seed``, each alone."""
    d_mlp = model.cfg.d_mlp
    others = [i for i in range(d_mlp) if i != neuron.index]
    drawn = sorted(random.Random(f"ablation:{seed}").sample(others, min(n_random, len(others))))
    return {str(neuron): [neuron.index], LAYER_SET: list(range(d_mlp)), **{str(Neuron(neuron.layer, i)): [i] for i in drawn}}
