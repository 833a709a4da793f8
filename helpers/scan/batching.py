"""How a shard's documents become prompts and padded batches, for the scan and the neuroscope pass.

Documents are tokenised without special tokens and cut into prompts of at most ``span``
document tokens; each batch puts BOS in front of every prompt. Prompts are sorted by length
(longest first) and right-padded, so a batch's shape depends on its shard's documents alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor


@dataclass
class Plan:
    """How a shard's documents become padded prompts; all index arrays are numpy."""

    flat: np.ndarray  # [n_tokens] every document token, documents one after another
    doc: np.ndarray  # [n_tokens] document id of each token
    pos: np.ndarray  # [n_tokens] position of each token in its document
    next_token: np.ndarray  # [n_tokens] the following token, -1 at a document's end
    chunk_start: np.ndarray  # [n_chunks] index into ``flat`` of each prompt's first token
    chunk_len: np.ndarray  # [n_chunks] document tokens in each prompt
    n_empty: int


def plan_prompts(tokenizer, docs: list[str], first_doc: int, span: int) -> Plan:
    """The prompts of ``docs`` (document ``first_doc`` first), at most ``span`` tokens each."""
    for i, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise TypeError(f"document {first_doc + i} is a {type(doc).__name__}, not a str; pass text documents")
    ids = tokenizer(docs, add_special_tokens=False, verbose=False)["input_ids"] if docs else []
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    total = int(lengths.sum())
    flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]) if total else np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, np.int64)
    doc = np.repeat(first_doc + np.arange(len(docs)), lengths)
    pos = np.arange(total) - np.repeat(starts, lengths)
    next_token = np.full(total, -1, dtype=np.int64)
    next_token[:-1] = flat[1:]
    nonempty = lengths > 0
    next_token[(starts + lengths - 1)[nonempty]] = -1
    n_chunks = -(-lengths // span)
    chunk_doc = np.repeat(np.arange(len(docs)), n_chunks)
    chunk_k = np.arange(int(n_chunks.sum())) - np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)
    chunk_start = starts[chunk_doc] + chunk_k * span
    chunk_len = np.minimum(span, lengths[chunk_doc] - chunk_k * span)
    return Plan(flat, doc, pos, next_token, chunk_start, chunk_len, int((~nonempty).sum()))


def padded_batches(plan: Plan, batch_size: int, bos: int) -> Iterator[tuple[Int[Tensor, "batch width+1"], Bool[Tensor, "batch width"], Int[Tensor, "batch width"]]]:
    """Prompts longest first, ``batch_size`` at a time, right-padded: (tokens with BOS,
    which positions after BOS are real, the row in ``plan.flat`` of each real position)."""
    order = np.argsort(-plan.chunk_len, kind="stable")
    flat = torch.from_numpy(plan.flat)
    for b in range(0, len(order), batch_size):
        chosen = order[b:b + batch_size]
        starts = torch.from_numpy(plan.chunk_start[chosen])
        lengths = torch.from_numpy(plan.chunk_len[chosen])
        offsets = torch.arange(int(lengths.max()))
        real = offsets < lengths[:, None]
        rows = (starts[:, None] + offsets).masked_fill(~real, 0)
        tokens = torch.full((len(chosen), real.shape[1] + 1), bos, dtype=torch.long)
        tokens[:, 1:] = torch.where(real, flat[rows], bos)
        yield tokens, real, rows
