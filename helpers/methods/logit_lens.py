"""Logit lens and direct logit attribution for the logit difference ``logit(target) - logit(other)``.

The residual stream at the last position is a running sum: embeddings, then each attention
and MLP sublayer adds its output. The model reads its prediction off the final sum through
the final layer norm and the unembedding. The *logit lens* applies that same read-out to every
partial sum, before and after each sublayer (``0_pre``, ``0_mid``, ``1_pre``, ...,
``final_post``), and asks how strongly the model would prefer ``' an'`` over ``' a'`` if it
had to answer there. Where the curve jumps is where a sublayer wrote the answer in.

Two choices follow the original study and are stated rather than hidden:

* The layer norm of every partial sum divides by the scale of the *final* residual stream
  (the cached ``ln_final.hook_scale``), as TransformerLens's ``apply_ln_to_stack`` does. The
  read-out is then linear, so the curve's steps are exactly each sublayer's direct
  contribution. ``ln_scale="own"`` instead normalises each partial sum by its own scale (the
  default of today's ``accumulated_resid(apply_ln=True)``), which is not linear.
* The read-out leaves out the unembedding bias ``b_U[target] - b_U[other]``, so the last
  point differs from the true logit difference by exactly that constant. ``LogitLens`` keeps
  the bias and shows the gap instead of hiding it.

*Direct logit attribution* splits the final point into the contribution of each component
(token and position embeddings, each attention layer, each MLP layer, each with its output
bias) and adds the unembedding bias as its own term, so the attributions sum to the model's
logit difference.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.hooks import final_resid, resid_pre
from helpers.core.prompts import Contrast, check_single_pair, frozen_norm, read_out, wide

LN_SCALES = ("final", "own")
UNEMBED_BIAS = "unembed_bias"


@dataclass(frozen=True)
class LogitLens:
    """Logit lens and direct attribution of ``logit(target) - logit(other)`` at the last position.

    ``lens[i]`` is read from the accumulated residual stream labelled ``labels[i]`` without the
    unembedding bias; ``attribution[j]`` is the direct contribution of ``components[j]``
    (the last one is the unembedding bias). ``logit_diff`` is the model's own value.
    """

    labels: list[str]
    lens: Float[Tensor, "point"]
    components: list[str]
    attribution: Float[Tensor, "component"]
    unembed_bias: float
    logit_diff: float
    ln_scale: str

    @property
    def final_point(self) -> float:
        """The lens read from the final residual stream (no unembedding bias)."""
        return float(self.lens[-1])

    def biggest_step(self) -> tuple[str, str, float, float]:
        """The consecutive pair of points with the largest increase: (from, to, before, after)."""
        return biggest_step(dict(zip(self.labels, self.lens.tolist())))

    def lens_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"label": self.labels, "logit_diff": self.lens.tolist()})

    def attribution_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"component": self.components, "attribution": self.attribution.tolist()})


def _lens_hooks(model: TransformerBridge) -> set[str]:
    names = {"hook_embed", "hook_pos_embed", "ln_final.hook_scale", final_resid(model)}
    for layer in range(model.cfg.n_layers):
        names |= {f"blocks.{layer}.{h}" for h in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out")}
    return names


@torch.no_grad()
def logit_lens_of_tokens(
    model: TransformerBridge, tokens: Int[Tensor, "1 pos"], target: int, other: int, ln_scale: str = "final"
) -> LogitLens:
    """Logit lens and direct attribution of ``logit(target) - logit(other)`` after ``tokens``.

    The points and parts are read from each block's input and each sublayer's output, so
    blocks whose attention and MLP both read the block's input (GPT-NeoX, GPT-J) work too: there
    ``L_mid`` is the block's input plus its attention output, a partial sum no sublayer reads.
    A model without position embeddings (rotary) has no ``pos_embed`` part.
    """
    if ln_scale not in LN_SCALES:
        raise ValueError(f"unknown ln_scale {ln_scale!r}: use 'final' (the study's cached final scale) or 'own' (each point's own scale)")
    if tokens.ndim != 2 or tokens.shape[0] != 1:
        raise ValueError(f"expected one prompt of token ids shaped [1, pos], got shape {tuple(tokens.shape)}")
    names = _lens_hooks(model)
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    last = lambda name: wide(cache[name][0, -1])  # noqa: E731
    direction = wide(model.W_U[:, target]) - wide(model.W_U[:, other])
    bias = float(model.b_U[target] - model.b_U[other])
    final_scale = cache["ln_final.hook_scale"][0, -1]

    components = ["embed"] + (["pos_embed"] if "hook_pos_embed" in cache else [])
    parts = [last(f"hook_{name}") for name in components]
    points, labels = [], []
    for layer in range(model.cfg.n_layers):
        pre = last(resid_pre(layer))
        attn, mlp = last(f"blocks.{layer}.hook_attn_out"), last(f"blocks.{layer}.hook_mlp_out")
        points += [pre, pre + attn]
        labels += [f"{layer}_pre", f"{layer}_mid"]
        parts += [attn, mlp]
        components += [f"{layer}_attn_out", f"{layer}_mlp_out"]
    points.append(last(final_resid(model)))
    labels.append("final_post")
    stack, parts = torch.stack(points), torch.stack(parts)
    if ln_scale == "final":
        read = frozen_norm(model, stack, final_scale)
    else:
        read = wide(model.ln_final(stack[:, None, :].to(model.cfg.dtype))[:, 0])
    attribution = frozen_norm(model, parts, final_scale) @ direction
    return LogitLens(
        labels=labels,
        lens=(read @ direction).float().cpu(),
        components=[*components, UNEMBED_BIAS],
        attribution=torch.cat([attribution.float().cpu(), torch.tensor([bias])]),
        unembed_bias=bias,
        logit_diff=read_out(model, cache[final_resid(model)][:, -1], target, other).item(),
        ln_scale=ln_scale,
    )


def logit_lens(model: TransformerBridge, contrast: Contrast, prompt: str = "clean", ln_scale: str = "final") -> LogitLens:
    """Logit lens of the contrast's clean (or corrupted) prompt for its target and other token."""
    check_single_pair(contrast)
    if prompt not in ("clean", "corrupted"):
        raise ValueError(f"unknown prompt {prompt!r}: use 'clean' or 'corrupted'")
    tokens = contrast.clean if prompt == "clean" else contrast.corrupted
    return logit_lens_of_tokens(model, tokens, contrast.target, contrast.other, ln_scale)


def biggest_step(points: dict[str, float]) -> tuple[str, str, float, float]:
    """Of consecutive points (label -> value, in order), the pair with the largest increase:
    (from, to, before, after); the first such pair on a tie."""
    labels, values = list(points), torch.tensor(list(points.values()), dtype=torch.float64)
    i = int((values[1:] - values[:-1]).argmax())
    return labels[i], labels[i + 1], float(values[i]), float(values[i + 1])


def sublayer_after(label: str) -> str:
    """The sublayer that writes between point ``label`` and the next one: ``"31_mid"`` -> ``"MLP 31"``."""
    layer, _, where = label.partition("_")
    if where == "pre":
        return f"attention {layer}"
    if where == "mid":
        return f"MLP {layer}"
    raise ValueError(f"no sublayer follows {label!r}: only <layer>_pre and <layer>_mid points are followed by one")


def component_kind(label: str) -> str:
    """Group of a direct-attribution label: embedding, attention, MLP or bias."""
    if label.endswith("attn_out"):
        return "attention"
    if label.endswith("mlp_out"):
        return "MLP"
    if label == UNEMBED_BIAS:
        return "unembedding bias"
    return "embedding"
