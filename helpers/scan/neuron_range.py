"""What a finished neuroscope pass says about each neuron beyond its top examples.

- :func:`band_samples`: one token from each band of a neuron's firing range (the tokens where
  it fires, cut at quantiles of their activation), drawn from the pass's bucket samples. A
  band is a run of whole histogram buckets, so its edges are the quantiles rounded to a bucket;
  the sample of a band is the smallest-key sample of its buckets, which is the smallest-key
  token of the band itself (see :mod:`helpers.scan.neuroscope_state`).
- :func:`sample_windows`: the tokens around sampled tokens, read back from the documents and
  cut where the pass's prompt holding the token began and ended (the model saw nothing beyond).
- :func:`firing_census`: per layer, how many neurons never fire (activation above 0) on the
  corpus and how many fire rarely.
- :func:`top_token_counts`: which tokens a neuron's top examples sit on, and which come next.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from helpers.scan.batching import plan_prompts
from helpers.scan.identity import docs_digest
from helpers.scan.neuroscope import Neuroscope
from helpers.scan.neuroscope_state import NO_SAMPLE, key_place

# quantiles of a neuron's firing tokens that bound its bands: the lower half, then 50-80%,
# 80-95%, 95-99% and the top 1%
BAND_QUANTILES = (0.0, 0.5, 0.8, 0.95, 0.99, 1.0)
# a neuron that fires on fewer than this share of tokens (but on some) fires rarely
RARE = 1e-3


def firing_buckets(result: Neuroscope) -> Tensor:
    """``[bucket]`` whether a histogram bucket holds only activations of 0 or more (bucket 0
    holds everything below the bins' low edge, bucket ``j`` the bin from edge ``j - 1``)."""
    lower = torch.tensor([-float("inf"), *result.edges])
    return lower >= 0


@torch.no_grad()
def band_samples(result: Neuroscope, quantiles: Sequence[float] = BAND_QUANTILES) -> dict[str, Tensor]:
    """Per neuron and band of its firing range, the sampled token: ``keys``, ``acts``,
    ``doc``, ``pos`` (``[layer, neuron, band]``, key ``NO_SAMPLE`` and doc -1 where the band
    holds no token) and ``tokens`` (how many tokens the band holds).

    A bucket belongs to the band in which its first token's quantile falls, counted over the
    buckets of activations of 0 and above."""
    histogram = result.tensors["histogram"] * firing_buckets(result)  # [layer, neuron, bucket]
    total = histogram.sum(-1, keepdim=True).clamp(min=1)
    start = (histogram.cumsum(-1) - histogram).double() / total  # quantile where each bucket starts
    band = torch.bucketize(start, torch.tensor(quantiles[1:-1], dtype=torch.float64), right=True)
    n_bands = len(quantiles) - 1
    keys = torch.where(histogram > 0, result.tensors["sample_keys"], NO_SAMPLE)
    chosen = torch.full((*histogram.shape[:2], n_bands), NO_SAMPLE, dtype=torch.int64)
    chosen.scatter_reduce_(2, band, keys, "amin")
    counts = torch.zeros(chosen.shape, dtype=torch.int64).scatter_add_(2, band, histogram)
    # the bucket that holds each band's sample (keys never tie, so the match is one bucket)
    holder = (keys[..., None, :] == chosen[..., :, None]).int().argmax(-1)  # [layer, neuron, band]
    acts = result.tensors["sample_acts"].gather(2, holder).masked_fill(chosen == NO_SAMPLE, float("nan"))
    doc, pos = key_place(chosen)
    return dict(keys=chosen, acts=acts, doc=doc, pos=pos, tokens=counts)


def band_names(quantiles: Sequence[float] = BAND_QUANTILES) -> list[str]:
    """``'0-50%'``, ``'50-80%'``, ...: each band's quantiles of the firing tokens."""
    return [f"{100 * a:g}-{100 * b:g}%" for a, b in zip(quantiles[:-1], quantiles[1:])]


def pass_documents(result: Neuroscope, documents: Sequence[str] | None = None) -> list[str]:
    """The pass's documents: ``documents`` if given, else read again from the pass's source;
    a one-line error unless their digest is the pass's."""
    params = result.params
    if documents is None:
        if params["source"] == "custom":
            raise ValueError("this pass read documents passed as texts; pass the same documents to read its samples' windows")
        from helpers.scan.documents import load_documents

        documents = load_documents(params["source"], params["n_docs"], params["seed"])
    documents = list(documents)
    if docs_digest(documents) != params["documents_sha256"]:
        raise ValueError("these documents are not the ones the pass read (their digest differs); pass the pass's own documents")
    return documents


def sample_windows(result: Neuroscope, documents: Sequence[str], tokenizer, doc: Int[Tensor, "n"], pos: Int[Tensor, "n"]) -> list[tuple[list[int], int]]:
    """For each token ``(doc[i], pos[i])`` (doc -1: none), its window as the pass saw it: up to
    ``context`` tokens before and after, within the prompt that held it. Returns ``(token ids,
    index of the token in them)``, ``([], -1)`` for none."""
    before, after = result.params["context"]
    span = result.params["max_tokens"] - 1
    wanted = sorted({int(d) for d in doc.tolist() if d >= 0})
    plan = plan_prompts(tokenizer, [documents[d] for d in wanted], 0, span)
    bounds = np.searchsorted(plan.doc, np.arange(len(wanted) + 1))  # plan.doc ascends: each document's first token
    starts, lengths = dict(zip(wanted, bounds[:-1].tolist())), dict(zip(wanted, np.diff(bounds).tolist()))
    windows = []
    for d, p in zip(doc.tolist(), pos.tolist()):
        if d < 0:
            windows.append(([], -1))
            continue
        first = starts[d]
        prompt = (p // span) * span  # the prompt's first position in the document
        low, high = max(prompt, p - before), min(prompt + span, lengths[d], p + after + 1)
        windows.append((plan.flat[first + low:first + high].tolist(), p - low))
    return windows


def rare_column(rare: float = RARE) -> str:
    """The census's column of neurons that fire rarely: ``'fire on under 0.1% of tokens'``."""
    return f"fire on under {rare:.1%} of tokens"


def firing_census(result: Neuroscope, rare: float = RARE) -> pd.DataFrame:
    """Per recorded layer: neurons, how many never fire (activation above 0 on no token of
    the corpus) and how many fire on fewer than ``rare`` of its tokens."""
    fires = result.tensors["fires"]  # [layer, neuron]
    rates = result.firing_rates()
    return pd.DataFrame({
        "layer": result.layers,
        "neurons": [result.d_mlp] * len(result.layers),
        "never fire": (fires == 0).sum(1).tolist(),
        rare_column(rare): ((fires > 0) & (rates < rare)).sum(1).tolist(),
        "median share of tokens fired on": rates.median(1).values.tolist(),
    })


def top_token_counts(window_tokens: Int[Tensor, "k window"], values: Float[Tensor, "k"], before: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The tokens a neuron's top examples sit on and the tokens right after them, each as
    ``(token id, examples)`` most frequent first (ties to the smaller id); empty slots and
    windows that end at the example are left out."""
    kept = torch.isfinite(values)
    at, after = window_tokens[kept, before], window_tokens[kept, before + 1] if window_tokens.shape[1] > before + 1 else window_tokens[:0, 0]

    def counted(ids: Tensor) -> list[tuple[int, int]]:
        ids = ids[ids >= 0]
        unique, counts = ids.unique(return_counts=True)
        order = sorted(zip(counts.tolist(), unique.tolist()), key=lambda c: (-c[0], c[1]))
        return [(token, count) for count, token in order]

    return counted(at), counted(after)


@torch.no_grad()
def output_neighbours(W_out: Float[Tensor, "neuron d_model"], k: int = 5, block: int = 1024) -> tuple[Float[Tensor, "neuron k"], Int[Tensor, "neuron k"]]:
    """Per neuron of one layer, the ``k`` other neurons of the layer whose output rows
    ``W_out[n]`` have the largest cosine with its own: ``(cosines, indices)``, a block of
    rows at a time (``block x neurons`` at most in memory)."""
    unit = torch.nn.functional.normalize(W_out.float(), dim=1)
    parts = []
    for start in range(0, len(unit), block):
        cos = unit[start:start + block] @ unit.T
        cos[torch.arange(len(cos)), torch.arange(start, start + len(cos))] = -float("inf")  # not itself
        top = cos.topk(min(k, len(unit) - 1), dim=1)
        parts.append((top.values, top.indices))
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def neurons_on_tokens(result: Neuroscope, k: int = 5) -> tuple[Int[Tensor, "entry"], Int[Tensor, "entry"], Int[Tensor, "entry"]]:
    """For each token, the ``k`` recorded neurons whose top examples sit on it most often:
    ``(token, neuron, examples)`` triples (neuron flat over the recorded layers), grouped by
    token, most examples first (ties to the smaller neuron)."""
    before = result.params["context"][0]
    tokens = result.tensors["window_tokens"][..., before]  # [layer, neuron, k]
    kept = torch.isfinite(result.tensors["values"]) & (tokens >= 0)
    neuron = torch.arange(tokens.shape[0] * tokens.shape[1]).view(tokens.shape[:2])[..., None].expand(tokens.shape)[kept]
    pairs, counts = torch.unique(torch.stack([tokens[kept].long(), neuron]), dim=1, return_counts=True)  # sorted by token, neuron
    order = torch.from_numpy(np.lexsort((pairs[1].numpy(), -counts.numpy(), pairs[0].numpy())))  # token, then most examples
    token, neuron, counts = pairs[0][order], pairs[1][order], counts[order]
    first = torch.ones_like(token, dtype=torch.bool)
    first[1:] = token[1:] != token[:-1]
    starts = torch.cummax(torch.where(first, torch.arange(len(token)), 0), 0).values
    rank = torch.arange(len(token)) - starts  # place within the token's group
    keep = rank < k
    return token[keep], neuron[keep], counts[keep]


@torch.no_grad()
def writers_of_tokens(W_out: Float[Tensor, "neuron d_model"], W_U: Float[Tensor, "d_model vocab"], k: int = 5, block: int = 1024) -> tuple[Float[Tensor, "k vocab"], Int[Tensor, "k vocab"]]:
    """For every token, the ``k`` neurons (rows of ``W_out``) whose direct logit effect on it,
    ``W_out[n] @ W_U[:, t]``, is largest: ``(values, neurons)``, a block of neurons at a time."""
    best_values = torch.full((k, W_U.shape[1]), -float("inf"))
    best = torch.full((k, W_U.shape[1]), -1, dtype=torch.long)
    for start in range(0, len(W_out), block):
        effect = W_out[start:start + block].float() @ W_U.float()  # [block, vocab]
        values = torch.cat([best_values, effect])
        ids = torch.cat([best, torch.arange(start, start + len(effect))[:, None].expand(effect.shape)])
        top = values.topk(k, dim=0)
        best_values, best = top.values, ids.gather(0, top.indices)
    return best_values, best
