"""Neuron-wise activation patching: restore one MLP neuron at a time and watch the logits.

Layer patching says *which* MLP layer carries the clean prompt's information to the last
position; neuron patching asks which of its ``d_mlp`` hidden units do. For each neuron ``i`` of
layer ``L`` we run the corrupted prompt, overwrite that neuron's activation
(``blocks.{L}.mlp.hook_post``) with its value on the clean prompt, and measure how much of the
clean logit difference ``logit(target) - logit(other)`` comes back (normalised recovery: 0 =
nothing, 1 = all of it). The study did this at every position; restoring only the last
position is the narrower question "does the neuron matter where the prediction is made?".
The reverse direction (corrupted activation into the clean run) measures necessity instead,
in the convention of :mod:`helpers.methods.patching`.

The obvious way costs one full forward pass per neuron (5,120 for a GPT-2 Large layer). Most
of that work is repeated, and all of it can be skipped *without approximation*:

* Everything before layer ``L`` is the corrupted run itself: computed once.
* A neuron's output enters the residual stream only through its row of ``W_out``, so
  restoring neuron ``i`` adds ``delta[pos, i] * W_out[L, i]`` to the corrupted residual after
  layer ``L``, where ``delta = clean_act - corrupted_act``. A chunk of neurons is one batch.
* Positions where ``delta`` is zero are untouched, and attention is causal: the residual at
  positions before the first changed one stays exactly the corrupted run's in every later
  layer, and so do its keys and values. Only the suffix from the first changed position on is
  recomputed (one position for ``"last"``; from the differing word on for ``"all"``), reading
  the cached prefix keys and values.
* Only the last position's logit difference is needed: the final layer norm of that one
  residual vector dotted with ``W_U[:, target] - W_U[:, other]``, not a full unembedding.

This "suffix" engine re-implements a GPT-2 block from the processed weights (folded layer
norm, so each norm is centring and scaling). Before trusting it on a model, it recomputes the
unpatched corrupted run and compares with the model's own forward pass; if they disagree (an
architecture it does not know) it falls back to a generic engine that runs the model's own
forward on a batch with one neuron restored per row. Every patched value is measured from
the engine's own unpatched value, so rounding differences between the two implementations
cancel instead of showing up as tiny effects of neurons that did not change.

:func:`model_neuron_patching` patches every neuron of every layer this way (the ground truth
for attribution patching), sharing the cached runs and the blocks' weights between layers;
:func:`exact_patching_flops` counts what it multiplies. The runner's switches ``frozen``
(later attention patterns held at the base run's) and ``dropping`` (no gradient through some
later layers) serve the diagnostics of :mod:`helpers.methods.attribution`.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.hooks import final_resid, mlp_post, resid_post
from helpers.core.runs import cached_run, clean_and_corrupted
from helpers.core.checks import check_choice, check_direction, check_layer, check_layers, check_neurons, check_positions
from helpers.core.prompts import Contrast
from helpers.methods.neuron_engines import FullRunner, SuffixRunner
from helpers.methods.patching import PatchResult, recovery, runs

ENGINES = ("auto", "suffix", "full")


def post_hook(layer: int) -> str:
    """Hook name of MLP ``layer``'s neuron activations ``[batch pos d_mlp]``."""
    return mlp_post(layer)


def check_mlp_layer(model: TransformerBridge, layer: int) -> int:
    """Return ``layer`` or raise a one-line error if the model has no such MLP layer."""
    return check_layer(layer, model.cfg.n_layers, "MLP layers")


def position_mask(n_pos: int, positions: str) -> Float[Tensor, "pos"]:
    """1 at the positions that get patched, 0 elsewhere."""
    mask = torch.zeros(n_pos)
    if check_positions(positions) == "last":
        mask[-1] = 1.0
    else:
        mask[:] = 1.0
    return mask


@torch.no_grad()
def neuron_patching(
    model: TransformerBridge,
    contrast: Contrast,
    layer: int,
    positions: str = "last",
    direction: str = "sufficiency",
    max_rows: int = 8192,
    engine: str = "auto",
    neurons: Sequence[int] | None = None,
) -> PatchResult:
    """Patch every neuron of MLP ``layer`` one at a time, and the whole layer, exactly.

    ``positions``: ``"last"`` or ``"all"``; ``direction``: ``"sufficiency"`` (clean activation
    into the corrupted run) or ``"necessity"`` (corrupted into clean). Neurons are batched so
    that one pass holds about ``max_rows`` recomputed positions. ``engine``: ``"suffix"``
    (fast, GPT-2 blocks), ``"full"`` (the model's own forward, any architecture) or
    ``"auto"`` (suffix if it reproduces the model's forward pass, else full). ``neurons``
    restricts the work to some neuron indices (all of them by default). Returns values
    ``[neuron]``, ``indices`` naming each, and ``whole_layer``.

    A neuron is a hidden unit of the MLP, the input of ``W_out`` (``mlp.hook_post``): in a
    gated MLP (Llama, Gemma) the product ``act(gate) * up`` of that unit. GPT-NeoX, Llama and
    other non-GPT-2 blocks run on the ``"full"`` engine (``engine`` on the result says which ran).
    """
    check_mlp_layer(model, layer)
    check_positions(positions)
    check_direction(direction)
    check_choice(engine, ENGINES, "engine")
    base_tokens, source_tokens = runs(contrast, direction)
    n_layers = model.cfg.n_layers
    later = range(layer + 1, n_layers)
    final = final_resid(model)
    names = {post_hook(layer), resid_post(layer), final}
    names |= {f"blocks.{l}.attn.hook_{kv}" for l in later for kv in "kv"}
    base_cache, base_diff = cached_run(model, base_tokens, names, contrast.target, contrast.other)
    source_cache, source_diff = cached_run(model, source_tokens, {post_hook(layer), final}, contrast.target, contrast.other)
    base_diff, source_diff = base_diff.item(), source_diff.item()
    clean_diff, corrupted_diff = clean_and_corrupted(base_diff, source_diff, direction)

    base_act = base_cache[post_hook(layer)][0]
    mask = position_mask(base_act.shape[0], positions).to(base_act)
    delta = (source_cache[post_hook(layer)][0] - base_act) * mask[:, None]  # [pos, d_mlp]

    runner, engine = layer_runner(model, base_cache, base_diff, base_tokens, layer, base_act, delta, contrast, engine)

    indices = check_neurons(neurons, delta.shape[1])
    chunk = max(1, max_rows // runner.rows_per_neuron)
    patched = torch.cat([runner.patch_neurons(indices[i : i + chunk]) for i in range(0, len(indices), chunk)])
    whole = runner.patch_layer()
    return PatchResult(
        values=recovery(patched, clean_diff, corrupted_diff, direction),
        index_axis_names=("neuron",),
        activation_name="mlp_post",
        method="activation",
        direction=direction,
        positions=positions,
        layer=layer,
        indices=indices,
        whole_layer=recovery(whole, clean_diff, corrupted_diff, direction).item(),
        clean_diff=clean_diff,
        corrupted_diff=corrupted_diff,
        engine=engine,
    )


@torch.no_grad()
def model_neuron_patching(
    model: TransformerBridge,
    contrast: Contrast,
    positions: str = "last",
    direction: str = "sufficiency",
    layers: Sequence[int] | None = None,
    neurons: Sequence[int] | None = None,
    reuse: Sequence[PatchResult] = (),
    max_rows: int = 8192,
    engine: str = "auto",
    progress: bool = False,
) -> PatchResult:
    """Exact neuron patching of every neuron of every MLP layer (or of ``layers``), one at a time.

    The ground truth for :func:`helpers.methods.attribution.attribution_patching`: values
    ``[layer, d_mlp]`` on the same normalised scale, NaN for the layers (and neurons) not
    patched. ``positions``, ``direction``, ``max_rows`` and ``engine`` are
    :func:`neuron_patching`'s; ``neurons`` restricts every layer to those indices. ``reuse``:
    results of :func:`neuron_patching` on the same prompts, positions and direction whose
    layers are copied instead of patched again.

    Each layer is patched as :func:`neuron_patching` does it, with what the layers share done
    once: one cached run of each prompt for every layer's activations, residuals, keys and
    values, and one copy of each block's fused weights. The cost of a layer is about
    proportional to the number of layers after it (:func:`exact_patching_flops`).
    """
    from tqdm.auto import tqdm

    check_positions(positions)
    check_direction(direction)
    check_choice(engine, ENGINES, "engine")
    n_layers, d_mlp = model.cfg.n_layers, model.cfg.d_mlp
    chosen = check_layers(layers, n_layers)
    indices = check_neurons(neurons, d_mlp)
    base_tokens, source_tokens = runs(contrast, direction)
    final = final_resid(model)
    posts = {post_hook(l) for l in range(n_layers)}
    names = posts | {resid_post(l) for l in range(n_layers)}
    names |= {f"blocks.{l}.attn.hook_{kv}" for l in range(min(chosen) + 1, n_layers) for kv in "kv"}
    base_cache, base_diff = cached_run(model, base_tokens, names, contrast.target, contrast.other)
    source_cache, source_diff = cached_run(model, source_tokens, posts | {final}, contrast.target, contrast.other)
    base_diff, source_diff = base_diff.item(), source_diff.item()
    clean_diff, corrupted_diff = clean_and_corrupted(base_diff, source_diff, direction)

    values = torch.full((n_layers, d_mlp), float("nan"))
    reused = reused_layers(reuse, positions, direction, clean_diff, corrupted_diff, indices)
    for layer, result in reused.items():
        if layer in chosen:
            values[layer, indices] = result
    # last layer first: each layer needs one more block's weights than the one after it, and a
    # model the suffix engine does not reproduce is found out (and left to the model's own
    # forward) after one block has been prepared, not all of them
    todo = sorted((layer for layer in chosen if layer not in reused), reverse=True)
    engines = {"reused"} if reused.keys() & set(chosen) else set()
    suffix = engine != "full" and SuffixRunner.supports(model)
    blocks: dict[int, dict[str, Tensor]] = {}
    mask = position_mask(base_tokens.shape[1], positions).to(base_cache[post_hook(0)])
    with tqdm(total=sum(n_layers - layer for layer in todo), unit="block", desc="exact patching", disable=not progress) as bar:
        for layer in todo:
            base_act = base_cache[post_hook(layer)][0]
            delta = (source_cache[post_hook(layer)][0] - base_act) * mask[:, None]  # [pos, d_mlp]
            later = None
            if suffix:
                blocks.update({l: SuffixRunner.block_weights(model, l) for l in range(layer + 1, n_layers) if l not in blocks})
                later = [blocks[l] for l in range(layer + 1, n_layers)]
            runner, used = layer_runner(
                model, base_cache, base_diff, base_tokens, layer, base_act, delta, contrast, engine if suffix else "full", later
            )
            if used == "full":
                suffix, blocks = False, {}
            engines.add(used)
            chunk = max(1, max_rows // runner.rows_per_neuron)
            patched = torch.cat([runner.patch_neurons(indices[i : i + chunk]) for i in range(0, len(indices), chunk)])
            values[layer, indices] = recovery(patched, clean_diff, corrupted_diff, direction).float().cpu()
            bar.update(n_layers - layer)
    return PatchResult(
        values=values,
        index_axis_names=("layer", "neuron"),
        activation_name="mlp_post",
        method="activation",
        direction=direction,
        positions=positions,
        clean_diff=clean_diff,
        corrupted_diff=corrupted_diff,
        engine="+".join(sorted(engines)),
    )


def reused_layers(
    results: Sequence[PatchResult], positions: str, direction: str, clean_diff: float, corrupted_diff: float, indices: Int[Tensor, "n"]
) -> dict[int, Float[Tensor, "n"]]:
    """The values of ``indices`` in each one-layer result that can stand in for patching its
    layer again, by layer; a one-line error for a result that cannot."""
    found = {}
    for result in results:
        if result.index_axis_names != ("neuron",) or result.method != "activation":
            raise ValueError(f"reuse takes results of neuron_patching (one layer, exact), got a {result.method} result indexed by {result.index_axis_names}")
        if (result.positions, result.direction) != (positions, direction):
            raise ValueError(
                f"the result of layer {result.layer} was patched at positions {result.positions!r} ({result.direction}), not "
                f"{positions!r} ({direction}); reuse only results of the same positions and direction"
            )
        scale = max(1.0, abs(clean_diff), abs(corrupted_diff))
        if abs(result.clean_diff - clean_diff) > 1e-4 * scale or abs(result.corrupted_diff - corrupted_diff) > 1e-4 * scale:
            raise ValueError(f"the result of layer {result.layer} has other baselines (clean {result.clean_diff:.4f}, corrupted {result.corrupted_diff:.4f}): it was patched on other prompts; reuse only results of these prompts")
        where = {int(n): k for k, n in enumerate(result.indices.tolist())}
        missing = [int(n) for n in indices.tolist() if int(n) not in where]
        if missing:
            raise ValueError(f"the result of layer {result.layer} lacks neuron {missing[0]}; reuse only results that patched every neuron asked for")
        found[result.layer] = result.values[[where[int(n)] for n in indices.tolist()]].float().cpu()
    return found


def exact_patching_flops(cfg, suffix: int, n_pos: int, layers: Sequence[int] | None = None, neurons: int | None = None) -> float:
    """Floating-point operations of :func:`model_neuron_patching` (suffix engine) for
    ``neurons`` neurons (all ``d_mlp`` by default) of each of ``layers`` (all by default),
    each patch recomputing ``suffix`` of the ``n_pos`` positions (``"last"``: 1; ``"all"``:
    from the first position where the prompts differ on).

    Per patched neuron and per later block, with r = ``suffix`` rows, d = d_model, H =
    n_heads * d_head, m = d_mlp and P = ``n_pos`` (a multiply-add is 2 operations):
    ``2 r (3 d H + H d + 2 d m)`` for the query/key/value, output, MLP-in and MLP-out
    products, plus ``4 r P H`` for the attention scores and their mix over at most P keys.
    The last block computes queries, keys and values for r rows but everything after them for
    the last row only. Layer norms, the activation function, the softmax and the read-out are
    elementwise or per row and left out (a few per cent).
    """
    d, m = cfg.d_model, cfg.d_mlp
    heads = cfg.n_heads * cfg.d_head
    qkv, rest = 2 * 3 * d * heads, 2 * (heads * d + 2 * d * m)
    attention = 4 * n_pos * heads
    full_block = suffix * (qkv + rest + attention)
    last_block = suffix * qkv + rest + attention
    per_layer = [(cfg.n_layers - 1 - layer) for layer in check_layers(layers, cfg.n_layers)]
    later = sum(max(0, n - 1) * full_block + (last_block if n > 0 else 0) for n in per_layer)
    return float(later * (neurons if neurons is not None else m))


class SuffixUnavailable(ValueError):
    """The suffix engine cannot stand in for this model's forward pass."""


@torch.no_grad()
def suffix_runner(
    model: TransformerBridge, contrast: Contrast, layer: int, positions: str = "last", direction: str = "sufficiency"
) -> tuple["SuffixRunner", float, float]:
    """The suffix engine of MLP ``layer`` (for the diagnostics that switch its attention and
    gradients), checked against the model's forward pass, and the logit differences of the
    run that gets patched and of the run the activations come from (base, source); a one-line
    error for a model whose blocks it does not reproduce."""
    check_mlp_layer(model, layer)
    check_positions(positions)
    base_tokens, source_tokens = runs(contrast, direction)
    final = final_resid(model)
    names = {post_hook(layer), resid_post(layer), final}
    names |= {f"blocks.{l}.attn.hook_{kv}" for l in range(layer + 1, model.cfg.n_layers) for kv in "kv"}
    base_cache, base_diff = cached_run(model, base_tokens, names, contrast.target, contrast.other)
    source_cache, source_diff = cached_run(model, source_tokens, {post_hook(layer), final}, contrast.target, contrast.other)
    base_diff, source_diff = base_diff.item(), source_diff.item()
    base_act = base_cache[post_hook(layer)][0]
    delta = (source_cache[post_hook(layer)][0] - base_act) * position_mask(base_act.shape[0], positions).to(base_act)[:, None]
    faithful = False
    if SuffixRunner.supports(model):
        try:
            runner = SuffixRunner(model, base_cache, layer, delta, contrast)
            faithful = runner.reproduces(base_cache, base_diff)
        except (AttributeError, RuntimeError, KeyError, ValueError):
            faithful = False
    if not faithful:
        raise SuffixUnavailable(
            f"the suffix engine does not reproduce {model.cfg.model_name}'s forward pass; use an engine that runs the model's "
            "own forward (engine='full' for patching, engine='hooks' for the diagnostics)"
        )
    return runner, base_diff, source_diff


def layer_runner(
    model: TransformerBridge,
    base_cache,
    base_diff: float,
    base_tokens: Int[Tensor, "1 pos"],
    layer: int,
    base_act: Float[Tensor, "pos d_mlp"],
    delta: Float[Tensor, "pos d_mlp"],
    contrast: Contrast,
    engine: str,
    blocks: list[dict[str, Tensor]] | None = None,
) -> tuple["SuffixRunner | FullRunner", str]:
    """The engine that patches ``layer``'s neurons, and its name: the suffix engine when asked
    for (or for ``"auto"`` on GPT-2 blocks) and it reproduces the model's forward pass, else
    the model's own forward. ``blocks``: the later blocks' weights, when already prepared."""
    if engine == "auto":
        engine = "suffix" if SuffixRunner.supports(model) else "full"
    if engine == "suffix":
        try:
            runner = SuffixRunner(model, base_cache, layer, delta, contrast, blocks=blocks)
            faithful = runner.reproduces(base_cache, base_diff)
        except (AttributeError, RuntimeError, KeyError, ValueError):  # blocks it cannot express
            faithful = False
        if not faithful:
            warnings.warn(f"the fast neuron-patching engine does not reproduce {model.cfg.model_name}; using the model's own forward pass")
            engine = "full"
    if engine == "full":
        runner = FullRunner(model, base_tokens, layer, base_act, delta, contrast)
    return runner, engine
