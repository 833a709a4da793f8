"""The two runs of every patching method: which prompt is patched, which one the activations
come from, and the logit difference of each, written once.

Vocabulary: the **base** run is the one that gets patched; the **source** run is the one the
activations come from. ``direction="sufficiency"`` patches clean activations into the
corrupted run (base = corrupted, source = clean); ``"necessity"`` patches corrupted
activations into the clean run (base = clean, source = corrupted).
"""
from __future__ import annotations

from typing import Iterable

from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.checks import check_direction
from helpers.core.hooks import final_resid
from helpers.core.prompts import Contrast, read_out


def base_and_source(contrast: Contrast, direction: str) -> tuple[Int[Tensor, "pairs pos"], Int[Tensor, "pairs pos"]]:
    """(tokens of the base run, tokens of the source run) for ``direction``."""
    if check_direction(direction) == "sufficiency":
        return contrast.corrupted, contrast.clean
    return contrast.clean, contrast.corrupted


def clean_and_corrupted(base_value, source_value, direction: str):
    """(the clean run's value, the corrupted run's value) from the base and source runs' values."""
    return (source_value, base_value) if check_direction(direction) == "sufficiency" else (base_value, source_value)


def cached_run(
    model: TransformerBridge, tokens: Int[Tensor, "pairs pos"], names: Iterable[str], target: int, other: int
) -> tuple[dict[str, Tensor], Float[Tensor, "pairs"]]:
    """One run with the activations ``names`` kept (and the final residual), and its
    last-position logit difference read out in float32 (:func:`helpers.core.prompts.read_out`)."""
    final = final_resid(model)
    wanted = {*names, final}
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in wanted)
    return cache, read_out(model, cache[final][:, -1], target, other)
