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
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.checks import check_choice, check_direction, check_layer, check_neurons, check_positions
from helpers.core.prompts import Contrast, final_resid_name, read_out, run_logit_diff, wide
from helpers.methods.patching import PatchResult, baselines, logit_diff_direction, recovery, runs

ENGINES = ("auto", "suffix", "full")
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


def post_hook(layer: int) -> str:
    """Hook name of MLP ``layer``'s neuron activations ``[batch pos d_mlp]``."""
    return f"blocks.{layer}.mlp.hook_post"


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
    """
    check_mlp_layer(model, layer)
    check_positions(positions)
    check_direction(direction)
    check_choice(engine, ENGINES, "engine")
    base_tokens, donor_tokens = runs(contrast, direction)
    n_layers = model.cfg.n_layers
    later = range(layer + 1, n_layers)
    final = final_resid_name(model)
    names = {post_hook(layer), f"blocks.{layer}.hook_resid_post", final}
    names |= {f"blocks.{l}.attn.hook_{kv}" for l in later for kv in "kv"}
    _, base_cache = model.run_with_cache(base_tokens, names_filter=lambda n: n in names)
    _, donor_cache = model.run_with_cache(donor_tokens, names_filter=lambda n: n in {post_hook(layer), final})
    base_diff = read_out(model, base_cache[final][:, -1], contrast.target, contrast.other).item()
    donor_diff = read_out(model, donor_cache[final][:, -1], contrast.target, contrast.other).item()
    clean_diff, corrupted_diff = baselines(base_diff, donor_diff, direction)

    base_act = base_cache[post_hook(layer)][0]
    mask = position_mask(base_act.shape[0], positions).to(base_act)
    delta = (donor_cache[post_hook(layer)][0] - base_act) * mask[:, None]  # [pos, d_mlp]

    if engine == "auto":
        engine = "suffix" if SuffixRunner.supports(model) else "full"
    if engine == "suffix":
        try:
            runner = SuffixRunner(model, base_cache, layer, delta, contrast)
            faithful = runner.reproduces(base_cache, base_diff)
        except (AttributeError, RuntimeError, KeyError, ValueError):  # blocks it cannot express
            faithful = False
        if not faithful:
            warnings.warn(f"the fast neuron-patching engine does not reproduce {model.cfg.model_name}; using the model's own forward pass")
            engine = "full"
    if engine == "full":
        runner = FullRunner(model, base_tokens, layer, base_act, delta, contrast)

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


def layer_norm(x: Float[Tensor, "... d_model"], eps: float) -> Float[Tensor, "... d_model"]:
    """Centre and scale (the weights of every norm are folded into the next matrix)."""
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()


class SuffixRunner:
    """Runs the layers after ``layer`` on only the changed suffix of positions, batched.

    Built from the base run's cache: its residual after ``layer`` and the keys and values of
    every later layer, which the unchanged prefix positions keep. In the last layer only the
    last position's output is computed (the other suffix positions still give their keys and
    values), since only its logits are read. It computes in float32 whatever the model's
    dtype (the later blocks' weights are upcast), so a bfloat16 model's patches are measured
    without bfloat16 rounding; its self-check then allows bfloat16's rounding of the model's
    own forward pass (``TOLERANCE``).
    """

    TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-6}
    HALF_TOLERANCE = 3e-2

    def __init__(self, model: TransformerBridge, cache, layer: int, delta: Float[Tensor, "pos d_mlp"], contrast: Contrast):
        cfg = model.cfg
        self.model, self.layer, self.eps, self.n_heads = model, layer, cfg.eps, cfg.n_heads
        self.act = ACTIVATIONS[cfg.act_fn]
        changed = torch.nonzero(delta.abs().sum(-1)).flatten()
        self.start = int(changed[0]) if changed.numel() else delta.shape[0] - 1
        self.resid = wide(cache[f"blocks.{layer}.hook_resid_post"][0, self.start :])  # [suffix, d_model]
        self.delta = wide(delta[self.start :])  # [suffix, d_mlp]
        self.rows_per_neuron = self.delta.shape[0]
        self.W_out = wide(model.blocks[layer].mlp.W_out)  # per block: the stacked model.W_out copies every layer
        scale = cfg.attn_scale if cfg.attn_scale > 0 else math.sqrt(cfg.d_head)
        self.attn_scale = scale if cfg.use_attn_scale else 1.0
        self.blocks = [self.block_weights(model, l) for l in range(layer + 1, cfg.n_layers)]
        self.prefix_kv = [
            (wide(cache[f"blocks.{l}.attn.hook_k"][0, : self.start].transpose(0, 1)), wide(cache[f"blocks.{l}.attn.hook_v"][0, : self.start].transpose(0, 1)))
            for l in range(layer + 1, cfg.n_layers)
        ]  # each [head, prefix, d_head]
        direction, bias = logit_diff_direction(model, contrast.target, contrast.other)
        self.direction, self.bias = wide(direction), bias
        self.tolerance = self.TOLERANCE.get(cfg.dtype, self.HALF_TOLERANCE)
        self.offset = 0.0

    @staticmethod
    def block_weights(model: TransformerBridge, layer: int) -> dict[str, Tensor]:
        """One block's processed weights, the three attention inputs fused into one matrix."""
        attn, mlp = model.blocks[layer].attn, model.blocks[layer].mlp
        n_heads, d_model, d_head = attn.W_Q.shape
        fuse = lambda *ws: torch.cat([w.transpose(0, 1).reshape(d_model, n_heads * d_head) for w in ws], dim=1)
        weights = {
            "W_QKV": fuse(attn.W_Q, attn.W_K, attn.W_V),  # [d_model, 3 * head * d_head]
            "b_QKV": torch.cat([attn.b_Q.reshape(-1), attn.b_K.reshape(-1), attn.b_V.reshape(-1)]),
            "W_O": attn.W_O.reshape(n_heads * d_head, d_model),
            "b_O": attn.b_O,
            "W_in": mlp.W_in,
            "b_in": mlp.b_in,
            "W_out": mlp.W_out,
            "b_out": mlp.b_out,
        }
        return {name: wide(w) for name, w in weights.items()}

    @staticmethod
    def supports(model: TransformerBridge) -> bool:
        """Whether the model's blocks are GPT-2 blocks this runner can recompute."""
        cfg = model.cfg
        return (
            cfg.act_fn in ACTIVATIONS
            and cfg.positional_embedding_type == "standard"
            and not cfg.parallel_attn_mlp
            and not cfg.gated_mlp
            and not cfg.attn_only
            and cfg.normalization_type in ("LN", "LNPre")
            and getattr(cfg, "n_key_value_heads", None) in (None, cfg.n_heads)
        )

    def reproduces(self, cache, base_diff: float) -> bool:
        """Recompute the unpatched base run from ``layer`` on and compare with the model's."""
        final = self.run(self.resid[None], last_only=False)[0]
        diff = self.logit_diff(self.resid[None]).item()
        # measure every patch from this runner's own unpatched value, so that rounding
        # differences from the model's forward pass cancel (an unchanged neuron gives 0)
        self.offset = base_diff - diff
        reference = cache[f"blocks.{self.model.cfg.n_layers - 1}.hook_resid_post"][0, self.start :]
        tolerance = self.tolerance * max(1.0, reference.abs().max().item())
        return bool((final - reference).abs().max() <= tolerance and abs(diff - base_diff) <= self.tolerance * max(1.0, abs(base_diff)))

    def patch_neurons(self, indices: Int[Tensor, "batch"]) -> Float[Tensor, "batch"]:
        """Logit difference with neuron ``indices[b]`` restored in row ``b``."""
        # each row adds one neuron's change times its output weights: [batch, suffix, d_model]
        added = self.delta[:, indices].T[:, :, None] * self.W_out[indices][:, None, :]
        return self.logit_diff(self.resid[None] + added) + self.offset

    def patch_layer(self) -> Float[Tensor, "1"]:
        """Logit difference with every neuron of the layer restored at once."""
        return self.logit_diff((self.resid + self.delta @ self.W_out)[None]) + self.offset

    def logit_diff(self, resid: Float[Tensor, "batch suffix d_model"]) -> Float[Tensor, "batch"]:
        """Last-position logit difference from the residual after ``layer``."""
        final = self.run(resid, last_only=True)[:, -1]
        return layer_norm(final, self.eps) @ self.direction + self.bias

    def run(self, resid: Float[Tensor, "batch suffix d_model"], last_only: bool) -> Float[Tensor, "batch out d_model"]:
        """The residual after the last layer (at the last position only if ``last_only``)."""
        for i, (weights, (k_prefix, v_prefix)) in enumerate(zip(self.blocks, self.prefix_kv)):
            queries_from = resid.shape[1] - 1 if last_only and i == len(self.blocks) - 1 else 0
            attn_out = self.attention(layer_norm(resid, self.eps), weights, k_prefix, v_prefix, queries_from)
            resid = resid[:, queries_from:] + attn_out
            hidden = self.act(layer_norm(resid, self.eps) @ weights["W_in"] + weights["b_in"])
            resid = resid + hidden @ weights["W_out"] + weights["b_out"]
        return resid

    def attention(
        self, x: Float[Tensor, "batch suffix d_model"], w: dict, k_prefix: Tensor, v_prefix: Tensor, queries_from: int
    ) -> Float[Tensor, "batch query d_model"]:
        """Causal attention of suffix queries ``queries_from``.. over the cached prefix and the suffix.

        The prefix keys and values are shared by every row, so they are contracted per head
        without being copied into the batch.
        """
        batch, suffix, _ = x.shape
        heads = lambda t: t.reshape(batch, t.shape[1], self.n_heads, -1).transpose(1, 2)  # [batch, head, pos, d_head]
        q, k, v = (heads(t) for t in (x @ w["W_QKV"] + w["b_QKV"]).chunk(3, dim=-1))
        q = q[:, :, queries_from:]
        prefix = k_prefix.shape[1]
        scores = torch.cat(
            [torch.einsum("bhqe,hpe->bhqp", q, k_prefix), q @ k.transpose(-1, -2)], dim=-1
        ) / self.attn_scale  # [batch, head, query, prefix + suffix]
        allowed = torch.ones(suffix, prefix + suffix, dtype=torch.bool, device=x.device).tril(prefix)[queries_from:]
        pattern = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        z = torch.einsum("bhqp,hpe->bhqe", pattern[..., :prefix], v_prefix) + pattern[..., prefix:] @ v
        z = z.transpose(1, 2).reshape(batch, suffix - queries_from, -1)  # [batch, query, head * d_head]
        return z @ w["W_O"] + w["b_O"]


class FullRunner:
    """The model's own forward on a batch of copies of the base prompt, one patch per row."""

    def __init__(self, model: TransformerBridge, tokens: Int[Tensor, "1 pos"], layer: int, base_act: Tensor, delta: Float[Tensor, "pos d_mlp"], contrast: Contrast):
        self.model, self.tokens, self.layer, self.base_act, self.delta = model, tokens, layer, base_act, delta
        self.target, self.other = contrast.target, contrast.other
        self.rows_per_neuron = 8 * tokens.shape[1]  # every position, and its logits over the whole vocabulary

    def forward(self, patched_act: Float[Tensor, "batch pos d_mlp"]) -> Float[Tensor, "batch"]:
        """Last-position logit difference of each row with its layer activations replaced."""

        def replace(act, hook):
            return patched_act

        return run_logit_diff(self.model, self.tokens.expand(patched_act.shape[0], -1), self.target, self.other, [(post_hook(self.layer), replace)])

    def patch_neurons(self, indices: Int[Tensor, "batch"]) -> Float[Tensor, "batch"]:
        """Logit difference with neuron ``indices[b]`` restored in row ``b``."""
        rows = torch.arange(len(indices))
        patched = self.base_act.expand(len(indices), -1, -1).clone()
        patched[rows, :, indices] += self.delta[:, indices].T
        return self.forward(patched)

    def patch_layer(self) -> Float[Tensor, "1"]:
        """Logit difference with every neuron of the layer restored at once."""
        return self.forward((self.base_act + self.delta)[None])
