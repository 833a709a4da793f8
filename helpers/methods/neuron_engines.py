"""The engines behind exact neuron patching: every neuron of one layer patched in one batched
pass over the blocks after it.

:class:`SuffixRunner` recomputes a GPT-2 model's blocks after the patched layer from the base
run's cache (the attention keys and values of unchanged positions are reused), one row per
patched neuron; :class:`FullRunner` runs the model's own forward pass, one row per neuron, for
any architecture. :mod:`helpers.methods.neuron_patching` picks one, checks it against the
model's forward pass, and normalises what it returns.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.activations import ACTIVATIONS
from helpers.core.hooks import mlp_post, resid_post
from helpers.core.prompts import Contrast, run_logit_diff, wide
from helpers.methods.patching import logit_diff_direction

def layer_norm(x: Float[Tensor, "... d_model"], eps: float) -> Float[Tensor, "... d_model"]:
    """Centre and scale (the weights of every norm are folded into the next matrix): ``(x -
    mean) / sqrt(mean((x - mean)^2) + eps)``, torch's fused kernel without weight or bias."""
    return F.layer_norm(x, x.shape[-1:], eps=eps)


def affine(x: Float[Tensor, "... d_in"], weight: Float[Tensor, "d_in d_out"], bias: Float[Tensor, "d_out"]) -> Float[Tensor, "... d_out"]:
    """``x @ weight + bias`` as one matrix product over all leading axes, the bias added by it."""
    flat = torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight)
    return flat.reshape(*x.shape[:-1], weight.shape[1])


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

    def __init__(
        self, model: TransformerBridge, cache, layer: int, delta: Float[Tensor, "pos d_mlp"], contrast: Contrast,
        blocks: list[dict[str, Tensor]] | None = None,
    ):
        cfg = model.cfg
        self.model, self.layer, self.eps, self.n_heads = model, layer, cfg.eps, cfg.n_heads
        self.act = ACTIVATIONS[cfg.act_fn]
        changed = torch.nonzero(delta.abs().sum(-1)).flatten()
        self.start = int(changed[0]) if changed.numel() else delta.shape[0] - 1
        self.resid = wide(cache[resid_post(layer)][0, self.start :])  # [suffix, d_model]
        self.delta = wide(delta[self.start :])  # [suffix, d_mlp]
        self.rows_per_neuron = self.delta.shape[0]
        self.W_out = wide(model.blocks[layer].mlp.W_out)  # per block: the stacked model.W_out copies every layer
        scale = cfg.attn_scale if cfg.attn_scale > 0 else math.sqrt(cfg.d_head)
        self.attn_scale = scale if cfg.use_attn_scale else 1.0
        # ``blocks``: the weights of layers layer + 1 .. n_layers - 1, prepared once by a caller
        # that patches several layers; built here otherwise
        self.blocks = blocks if blocks is not None else [self.block_weights(model, l) for l in range(layer + 1, cfg.n_layers)]
        if len(self.blocks) != cfg.n_layers - 1 - layer:
            raise ValueError(f"the runner of layer {layer} needs the weights of the {cfg.n_layers - 1 - layer} later blocks, got {len(self.blocks)}")
        self.prefix_kv = [
            (wide(cache[f"blocks.{l}.attn.hook_k"][0, : self.start].transpose(0, 1)), wide(cache[f"blocks.{l}.attn.hook_v"][0, : self.start].transpose(0, 1)))
            for l in range(layer + 1, cfg.n_layers)
        ]  # each [head, prefix, d_head]
        direction, bias = logit_diff_direction(model, contrast.target, contrast.other)
        self.direction, self.bias = wide(direction), bias
        self.tolerance = self.TOLERANCE.get(cfg.dtype, self.HALF_TOLERANCE)
        self.offset = 0.0
        # switches for the attribution diagnostics (:meth:`frozen`, :meth:`dropping`); off here
        self.patterns: list[Tensor] | None = None  # per later block, [head, suffix, prefix + suffix]
        self.dropped: frozenset[int] = frozenset()  # later layers whose outputs pass no gradient back
        self.recorded: list[Tensor] | None = None

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
        reference = cache[resid_post(self.model.cfg.n_layers - 1)][0, self.start :]
        tolerance = self.tolerance * max(1.0, reference.abs().max().item())
        return bool((final - reference).abs().max() <= tolerance and abs(diff - base_diff) <= self.tolerance * max(1.0, abs(base_diff)))

    def patch_neurons(self, indices: Int[Tensor, "batch"]) -> Float[Tensor, "batch"]:
        """Logit difference with neuron ``indices[b]`` restored in row ``b``."""
        # each row adds one neuron's change times its output weights: [batch, suffix, d_model]
        added = self.delta[:, indices].T[:, :, None] * self.W_out[indices][:, None, :]
        # batch-major memory, so that every later ``x @ W`` folds into one matrix product (laid
        # out suffix-major, as the broadcast above leaves it, it becomes a batched product
        # against a broadcast weight, several times slower)
        return self.logit_diff((self.resid[None] + added).contiguous()) + self.offset

    def patch_layer(self) -> Float[Tensor, "1"]:
        """Logit difference with every neuron of the layer restored at once."""
        return self.logit_diff((self.resid + self.delta @ self.W_out)[None]) + self.offset

    def frozen(self) -> "SuffixRunner":
        """This runner with every later attention pattern fixed at the base run's (each row
        attends where the unpatched run attends); patches then act only through values,
        MLPs and layer norms."""
        self.recorded = []
        try:
            self.run(self.resid[None], last_only=False)
            patterns = self.recorded
        finally:
            self.recorded = None
        runner = copy.copy(self)
        runner.patterns = patterns
        return runner

    def dropping(self, layers) -> "SuffixRunner":
        """This runner with no gradient through the attention and MLP outputs of ``layers``
        (later layers; GradDrop's switch): the forward values are unchanged."""
        runner = copy.copy(self)
        runner.dropped = frozenset(int(l) for l in layers)
        return runner

    def first_order(self, indices: Int[Tensor, "batch"]) -> Float[Tensor, "batch"]:
        """Attribution estimate of the change in logit difference when neuron ``indices[b]`` is
        restored: ``sum over pos of delta[pos, i] * (W_out[i] . d metric / d resid[pos])`` at
        the base run, through this runner's switches (frozen patterns, dropped layers)."""
        resid = self.resid[None].clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.logit_diff(resid).sum(), resid)
        return ((grad[0] @ self.W_out[indices].T) * self.delta[:, indices]).sum(0)

    def logit_diff(self, resid: Float[Tensor, "batch suffix d_model"]) -> Float[Tensor, "batch"]:
        """Last-position logit difference from the residual after ``layer``."""
        final = self.run(resid, last_only=True)[:, -1]
        return layer_norm(final, self.eps) @ self.direction + self.bias

    def run(self, resid: Float[Tensor, "batch suffix d_model"], last_only: bool) -> Float[Tensor, "batch out d_model"]:
        """The residual after the last layer (at the last position only if ``last_only``)."""
        for i, (weights, (k_prefix, v_prefix)) in enumerate(zip(self.blocks, self.prefix_kv)):
            queries_from = resid.shape[1] - 1 if last_only and i == len(self.blocks) - 1 else 0
            pattern = None if self.patterns is None else self.patterns[i][:, queries_from:]
            attn_out = self.attention(layer_norm(resid, self.eps), weights, k_prefix, v_prefix, queries_from, pattern)
            dropped = self.layer + 1 + i in self.dropped
            resid = resid[:, queries_from:] + (attn_out.detach() if dropped else attn_out)
            hidden = self.act(affine(layer_norm(resid, self.eps), weights["W_in"], weights["b_in"]))
            mlp_out = affine(hidden, weights["W_out"], weights["b_out"])
            resid = resid + (mlp_out.detach() if dropped else mlp_out)
        return resid

    def attention(
        self, x: Float[Tensor, "batch suffix d_model"], w: dict, k_prefix: Tensor, v_prefix: Tensor, queries_from: int,
        frozen: Float[Tensor, "head query key"] | None = None,
    ) -> Float[Tensor, "batch query d_model"]:
        """Causal attention of suffix queries ``queries_from``.. over the cached prefix and the suffix.

        The prefix keys and values are shared by every row, so they are contracted per head
        without being copied into the batch. ``frozen``: a pattern to use instead of the
        softmax of the scores (the same for every row).
        """
        batch, suffix, _ = x.shape
        heads = lambda t: t.reshape(batch, t.shape[1], self.n_heads, -1).transpose(1, 2)  # [batch, head, pos, d_head]
        q, k, v = (heads(t) for t in affine(x, w["W_QKV"], w["b_QKV"]).chunk(3, dim=-1))
        q = q[:, :, queries_from:]
        prefix = k_prefix.shape[1]
        scores = torch.cat(
            [torch.einsum("bhqe,hpe->bhqp", q, k_prefix), q @ k.transpose(-1, -2)], dim=-1
        ) / self.attn_scale  # [batch, head, query, prefix + suffix]
        allowed = torch.ones(suffix, prefix + suffix, dtype=torch.bool, device=x.device).tril(prefix)[queries_from:]
        pattern = scores.masked_fill(~allowed, float("-inf")).softmax(-1) if frozen is None else frozen[None].to(scores)
        if self.recorded is not None:
            self.recorded.append(pattern[0].detach())
        z = torch.einsum("bhqp,hpe->bhqe", pattern[..., :prefix], v_prefix) + pattern[..., prefix:] @ v
        z = z.transpose(1, 2).reshape(batch, suffix - queries_from, -1)  # [batch, query, head * d_head]
        return affine(z, w["W_O"], w["b_O"])


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

        return run_logit_diff(self.model, self.tokens.expand(patched_act.shape[0], -1), self.target, self.other, [(mlp_post(self.layer), replace)])

    def patch_neurons(self, indices: Int[Tensor, "batch"]) -> Float[Tensor, "batch"]:
        """Logit difference with neuron ``indices[b]`` restored in row ``b``."""
        rows = torch.arange(len(indices))
        patched = self.base_act.expand(len(indices), -1, -1).clone()
        patched[rows, :, indices] += self.delta[:, indices].T
        return self.forward(patched)

    def patch_layer(self) -> Float[Tensor, "1"]:
        """Logit difference with every neuron of the layer restored at once."""
        return self.forward((self.base_act + self.delta)[None])
