"""Prompts, targets and the logit-difference metric shared by every analysis.

The study compares a clean prompt (the model should say `` an``) with a corrupted one that
differs at one position (it should say `` a``). Every metric here is a pure function of
tensors; baselines are arguments, never globals.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.hooks import UNEMBED_IN, final_resid, run_until
from helpers.core.models import single_token

STUDY_CLEAN = "I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked"
STUDY_CORRUPTED = "I climbed up the pear tree and picked a pear. I climbed up the lemon tree and picked"


@dataclass(frozen=True)
class Contrast:
    """Clean/corrupted prompt pairs and the two competing next tokens, tokenised.

    ``clean`` and ``corrupted`` are ``[pairs, pos]`` token ids with BOS: one row for a single
    pair (:func:`make_contrast`), several for a prompt set (:func:`make_pairs`), every pair of
    one length. ``target`` is the token the clean prompts should produce (`` an``), ``other``
    its rival (`` a``). ``str_tokens``, ``clean_text`` and ``corrupted_text`` describe the
    first pair; ``texts`` and ``model_str_tokens`` hold every pair's, for a prompt set.
    """

    clean: Int[Tensor, "1 pos"]
    corrupted: Int[Tensor, "1 pos"]
    target: int
    other: int
    str_tokens: list[str]
    target_str: str
    other_str: str
    clean_text: str = ""
    corrupted_text: str = ""
    texts: tuple[tuple[str, str], ...] = ()
    model_str_tokens: tuple[list[str], ...] = ()

    @property
    def diff_positions(self) -> list[int]:
        """Positions where the clean and corrupted tokens differ (in any pair of a batch)."""
        return torch.nonzero((self.clean != self.corrupted).any(0)).flatten().tolist()

    @property
    def n_pairs(self) -> int:
        """How many prompt pairs this holds (rows of ``clean``)."""
        return self.clean.shape[0]

    def subset(self, indices: Sequence[int]) -> "Contrast":
        """The pairs ``indices`` of a batch, in that order, as a prompt set."""
        indices = list(indices)
        if not indices:
            raise ValueError("a prompt set needs at least one pair; pass at least one index")
        texts = tuple(self.texts[i] for i in indices) if self.texts else ()
        str_tokens = tuple(self.model_str_tokens[i] for i in indices) if self.model_str_tokens else ()
        first = texts[0] if texts else (self.clean_text, self.corrupted_text)
        return replace(
            self, clean=self.clean[indices], corrupted=self.corrupted[indices], texts=texts, model_str_tokens=str_tokens,
            str_tokens=str_tokens[0] if str_tokens else self.str_tokens, clean_text=first[0], corrupted_text=first[1],
        )

    def pair(self, i: int) -> "Contrast":
        """Pair ``i`` of a batch as a one-pair Contrast (its texts kept when known)."""
        texts = self.texts[i] if self.texts else (self.clean_text, self.corrupted_text)
        return replace(
            self, clean=self.clean[i : i + 1], corrupted=self.corrupted[i : i + 1],
            str_tokens=self.model_str_tokens[i] if self.model_str_tokens else self.str_tokens,
            clean_text=texts[0], corrupted_text=texts[1], texts=(), model_str_tokens=(),
        )


def make_contrast(
    model: TransformerBridge,
    clean: str = STUDY_CLEAN,
    corrupted: str = STUDY_CORRUPTED,
    target: str = " an",
    other: str = " a",
) -> Contrast:
    """Tokenise a prompt pair (with BOS) and check that it can be compared position by position."""
    for name, text in (("clean", clean), ("corrupted", corrupted)):
        if not isinstance(text, str):
            count = f"{len(text)} prompts" if isinstance(text, (list, tuple)) else type(text).__name__
            raise ValueError(f"make_contrast takes one prompt pair, but the {name} prompt is {count}; pass one string each, or lists of prompts to make_pairs")
        if not text.strip():
            raise ValueError(f"the {name} prompt is empty; give the text the model continues (e.g. {STUDY_CLEAN!r})")
    clean_tokens = model.to_tokens(clean)
    corrupted_tokens = model.to_tokens(corrupted)
    if clean_tokens.shape != corrupted_tokens.shape:
        raise ValueError(
            f"clean and corrupted prompts must have the same number of tokens "
            f"({clean_tokens.shape[1]} vs {corrupted_tokens.shape[1]}); change the corrupted word to one "
            "that is as many tokens as the clean one"
        )
    return Contrast(
        clean=clean_tokens,
        corrupted=corrupted_tokens,
        target=single_token(model, target),
        other=single_token(model, other),
        str_tokens=model.to_str_tokens(clean_tokens),
        target_str=target,
        other_str=other,
        clean_text=clean,
        corrupted_text=corrupted,
    )


def make_pairs(
    model: TransformerBridge,
    clean: Sequence[str],
    corrupted: Sequence[str],
    target: str = " an",
    other: str = " a",
    max_diff_positions: int = 1,
) -> Contrast:
    """A prompt set: ``clean[i]`` against ``corrupted[i]``, tokenised into ``[pairs, pos]``.

    Every prompt of the set must have the same number of tokens, and each pair may differ in
    at most ``max_diff_positions`` positions (the study's pair differs in one: the fruit).
    """
    if isinstance(clean, str) or isinstance(corrupted, str):
        raise ValueError("make_pairs takes lists of prompts; for one pair use make_contrast")
    if len(clean) != len(corrupted) or not clean:
        raise ValueError(f"make_pairs needs as many corrupted prompts as clean ones, at least one each (got {len(clean)} and {len(corrupted)})")
    tokenised = [(model.to_tokens(c)[0], model.to_tokens(k)[0]) for c, k in zip(clean, corrupted)]
    length = tokenised[0][0].shape[0]
    for i, (c, k) in enumerate(tokenised):
        if c.shape[0] != length or k.shape[0] != length:
            raise ValueError(
                f"pair {i} ({clean[i]!r}) is {c.shape[0]} and {k.shape[0]} tokens but pair 0 is {length}; "
                "every prompt of one batch must have the same number of tokens (group pairs by length)"
            )
        differ = int((c != k).sum())
        if differ == 0:
            raise ValueError(f"pair {i} ({clean[i]!r}) does not differ: its clean and corrupted prompts are the same tokens; "
                             "change the corrupted prompt's word")
        if differ > max_diff_positions:
            raise ValueError(
                f"pair {i} ({clean[i]!r}) differs in {differ} positions, more than max_diff_positions={max_diff_positions}; "
                "change one word for one word of as many tokens, or raise max_diff_positions"
            )
    clean_tokens = torch.stack([c for c, _ in tokenised])
    corrupted_tokens = torch.stack([k for _, k in tokenised])
    str_tokens = tuple(model.to_str_tokens(row) for row in clean_tokens)
    return Contrast(
        clean=clean_tokens,
        corrupted=corrupted_tokens,
        target=single_token(model, target),
        other=single_token(model, other),
        str_tokens=str_tokens[0],
        target_str=target,
        other_str=other,
        clean_text=clean[0],
        corrupted_text=corrupted[0],
        texts=tuple(zip(clean, corrupted)),
        model_str_tokens=str_tokens,
    )


def check_single_pair(contrast: Contrast) -> Contrast:
    """``contrast`` if it holds exactly one prompt pair, else a one-line error."""
    if contrast.clean.ndim != 2 or contrast.clean.shape[0] != 1 or contrast.corrupted.shape != contrast.clean.shape:
        raise ValueError(
            f"this method takes one prompt pair shaped [1, pos], got clean {tuple(contrast.clean.shape)} and corrupted "
            f"{tuple(contrast.corrupted.shape)}; for a prompt set call over_pairs(method, model, pairs, ...)"
        )
    return contrast


def last_sentence(text: str) -> str:
    """The prompt's last sentence (after its last ``'. '``), or the whole prompt if it has one sentence."""
    return text.rsplit(". ", 1)[-1]


def wide(tensor: Tensor) -> Tensor:
    """``tensor`` in float32, or as it is if it is already float32 or float64 (never narrower)."""
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


def logit_diff(logits: Float[Tensor, "batch pos vocab"], target: int, other: int) -> Float[Tensor, "batch"]:
    """logit(target) - logit(other) at the last position of each sequence, in float32.

    On a bfloat16 model the logits themselves are rounded (0.125 apart near 20); the methods
    read the metric with :func:`read_out` instead, from the residual in float32.
    """
    last = wide(logits[:, -1, :])
    return last[:, target] - last[:, other]


def read_out(model: TransformerBridge, final_resid: Float[Tensor, "batch d_model"], target: int, other: int) -> Float[Tensor, "batch"]:
    """logit(target) - logit(other) from the residual after the last block, in float32.

    The final layer norm and the two unembedding columns are applied in float32 whatever the
    model's dtype, so a bfloat16 run gives the metric without the logits' rounding. (With
    the study's processing the norm's weight is folded into ``W_U``: it centres and scales.)
    """
    normalized = wide(model.ln_final(wide(final_resid)[:, None, :])[:, 0])
    direction = wide(model.W_U[:, target]) - wide(model.W_U[:, other])
    return normalized @ direction.to(normalized.dtype) + (wide(model.b_U[target]) - wide(model.b_U[other])).to(normalized.dtype)


NORMS = {"LN": True, "LNPre": True, "RMS": False, "RMSPre": False}  # normalization type -> centres first


def check_norm(model: TransformerBridge, what: str) -> None:
    """A one-line error unless the model's norms are LayerNorm or RMSNorm (what ``what`` freezes)."""
    if model.cfg.normalization_type not in NORMS:
        raise ValueError(
            f"{what} freezes the final norm's scale, but this model's normalization is {model.cfg.normalization_type!r}; "
            f"it needs one of {', '.join(NORMS)}"
        )


def frozen_norm(model: TransformerBridge, x: Float[Tensor, "... d_model"], scale: Float[Tensor, "... 1"]) -> Float[Tensor, "... d_model"]:
    """The final norm with its scale frozen at ``scale``: linear in ``x``. A LayerNorm centres
    and divides, an RMSNorm only divides (after the study's processing the norm's weight and
    bias are folded into the unembedding)."""
    check_norm(model, "a frozen read-out")
    x = wide(x)
    if NORMS[model.cfg.normalization_type]:
        x = x - x.mean(-1, keepdim=True)
    return x / wide(scale)


def run_logit_diff(model: TransformerBridge, tokens: Int[Tensor, "batch pos"], target: int, other: int, fwd_hooks=()) -> Float[Tensor, "batch"]:
    """The model's forward pass on ``tokens`` (with ``fwd_hooks`` attached for this call) and
    its last-position logit difference, read out in float32 (:func:`read_out`)."""
    return read_out(model, last_resid(model, tokens, fwd_hooks), target, other)


def last_resid(model: TransformerBridge, tokens: Int[Tensor, "batch pos"], fwd_hooks=()) -> Float[Tensor, "batch d_model"]:
    """The residual stream after the last block at the last position of each row, with
    ``fwd_hooks`` attached for this call.

    The forward pass stops at the unembedding's input, so no ``[batch, pos, vocab]`` tensor is
    made (at GPT-2's vocabulary, 4 MB per row of 20 tokens).
    """
    kept = {}

    def keep(resid, hook):
        kept["resid"] = resid[:, -1]
        return resid

    run_until(model, tokens, UNEMBED_IN, [*fwd_hooks, (final_resid(model), keep)])
    return kept["resid"]


def last_logits(model: TransformerBridge, tokens: Int[Tensor, "batch pos"], fwd_hooks=()) -> Float[Tensor, "batch vocab"]:
    """The last position's logits of each row in float32, with ``fwd_hooks`` attached for this
    call: :func:`last_resid` through the final norm and the unembedding, as :func:`read_out` does."""
    normalized = wide(model.ln_final(wide(last_resid(model, tokens, fwd_hooks))[:, None, :])[:, 0])
    return normalized @ wide(model.W_U).to(normalized.dtype) + wide(model.b_U).to(normalized.dtype)


def normalized_recovery(
    patched: Float[Tensor, "..."], clean: float, corrupted: float
) -> Float[Tensor, "..."]:
    """(patched - corrupted) / (clean - corrupted): 1 = clean behaviour restored, 0 = none."""
    if clean == corrupted:
        raise ValueError("clean and corrupted metrics are equal; the prompts do not contrast, so recovery is undefined")
    return (patched - corrupted) / (clean - corrupted)


@dataclass(frozen=True)
class NextTokens:
    """Top-k next-token predictions for one prompt."""

    tokens: list[str]
    probs: list[float]
    target_prob: float
    other_prob: float
    logit_diff: float


@torch.no_grad()
def next_tokens(model: TransformerBridge, tokens: Int[Tensor, "1 pos"], target: int, other: int, k: int = 10) -> NextTokens:
    """The model's top-k next tokens after ``tokens`` and the target/other comparison."""
    kept = {}

    def keep(resid, hook):
        kept["resid"] = resid[:, -1]
        return resid

    logits = model.run_with_hooks(tokens, fwd_hooks=[(final_resid(model), keep)])
    probs = logits[0, -1].float().softmax(-1)
    top = probs.topk(k)
    return NextTokens(
        tokens=[model.tokenizer.decode([i]) for i in top.indices.tolist()],
        probs=top.values.tolist(),
        target_prob=probs[target].item(),
        other_prob=probs[other].item(),
        logit_diff=read_out(model, kept["resid"], target, other).item(),
    )


@torch.no_grad()
def per_position_logit_diff(model: TransformerBridge, tokens: Int[Tensor, "1 pos"], target: int, other: int) -> Float[Tensor, "pos"]:
    """logit(target) - logit(other) for the next token at every position of one prompt."""
    logits = model(tokens)[0]
    return (logits[:, target] - logits[:, other]).float()


def prompt_predictions(model: TransformerBridge, contrast: Contrast, k: int = 10) -> dict[str, NextTokens]:
    """Top-k next tokens after the clean prompt, the corrupted prompt and the clean prompt's
    last sentence alone (does the first sentence matter?)."""
    alone = model.to_tokens(last_sentence(contrast.clean_text)) if contrast.clean_text else contrast.clean
    return {
        "clean": next_tokens(model, contrast.clean, contrast.target, contrast.other, k),
        "corrupted": next_tokens(model, contrast.corrupted, contrast.target, contrast.other, k),
        "second sentence only": next_tokens(model, alone, contrast.target, contrast.other, k),
    }
