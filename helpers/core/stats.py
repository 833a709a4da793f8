"""Means over a prompt set with 95% intervals: every causal number over pairs is reported so.

The interval is a percentile bootstrap over pairs (resampling pairs with replacement), seeded,
so a page gives the same interval on every run. It makes no assumption of normality, which
matters for normalised effects: a pair whose clean and corrupted runs are close gives a
large ratio, and the bootstrap's interval widens instead of hiding it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

LEVEL = 0.95
RESAMPLES = 4000
CHUNK_NUMBERS = 2**22


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` pairs and its bootstrap interval ``[low, high]`` at ``level``."""

    mean: float
    low: float
    high: float
    n: int
    level: float = LEVEL

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def mean_interval(values: Float[Tensor, "... pair"], level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> Float[Tensor, "... 3"]:
    """(mean, low, high) over the last axis (pairs), for every leading index at once.

    A percentile bootstrap: ``resamples`` draws of the pairs with replacement, the same draws
    for every leading index (so intervals of different quantities are comparable).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    values = values.double()
    n = values.shape[-1]
    if n == 0:
        raise ValueError("no pairs to average: the prompt set is empty")
    if n == 1:
        return torch.stack([values[..., 0]] * 3, -1)
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, CHUNK_NUMBERS // n)  # resamples per block, so a block holds about CHUNK_NUMBERS weights
    blocks = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        draws = torch.randint(0, n, (size, n), generator=generator)  # [resample, pair]
        weights = torch.zeros(size, n, dtype=values.dtype).scatter_add_(1, draws, torch.ones(size, n, dtype=values.dtype)) / n
        blocks.append(values @ weights.T)  # [..., resample]: each draw's mean
    means = torch.cat(blocks, -1)
    tail = (1 - level) / 2
    bounds = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=means.dtype), dim=-1).movedim(0, -1)
    return torch.cat([values.mean(-1, keepdim=True), bounds], -1)


def interval(values: Float[Tensor, "pair"], level: float = LEVEL) -> Interval:
    """The :class:`Interval` of one quantity over pairs."""
    mean, low, high = mean_interval(values.flatten(), level).tolist()
    return Interval(mean, low, high, values.numel(), level)
