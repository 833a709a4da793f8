"""The every-neuron pass's running state, and how states and candidates merge, exactly.

A state holds, per neuron of the chosen layers, its top ``k`` examples (at most one per
document, each with a window of tokens and activations), a histogram on fixed bins, a firing
count and a sum of activations, one sampled token per histogram bucket, and its lowest
activation (see :func:`empty_state`).

Sampling. Every token gets a key from its document and position (:func:`sample_keys`): a
pseudo-random rank, then the document and position themselves, so no two tokens share one.
The token with the smallest key among those of a bucket is that bucket's sample: a
pseudo-random pick that is the same whatever order the tokens arrive in, and the sample of a
union of buckets is the smallest of their samples, so states merge by a minimum. The lowest
activation keeps the smallest key among the tokens that reach it. Examples rank by activation, ties
to the earlier document, then the earlier position: a total order, so the top ``k`` of a set
of tokens is one list whatever order the tokens arrive in. Counts are integers and sums an
int64 count of ``2**-24``, so states over disjoint documents merge (:func:`merge_states`,
:func:`all_merge`) to the same bits however the documents were split. The pass itself, its
files and its result are :mod:`helpers.scan.neuroscope`.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from helpers.scan.identity import differences

# the pass's logger: these warnings keep the name they are filtered by
log = logging.getLogger("helpers.scan.neuroscope")

SUM_UNIT = 2.0**24
# elements bucketed at once (bounds the int32 bucket indices held for one layer)
HISTOGRAM_CHUNK = 2**22
SUMMED = ("histogram", "fires", "sums", "totals")
RANKED = ("values", "doc", "pos", "window_tokens", "window_acts")
# a sample key: a 23-bit pseudo-random rank, then the document and the position, 20 bits each
PLACE_BITS = 20
MAX_PLACE = 2**PLACE_BITS
NO_SAMPLE = 2**63 - 1  # the key of an empty bucket, above every token's
_MASK31 = 2**31 - 1


def _mix(h: Int[Tensor, "..."]) -> Int[Tensor, "..."]:
    """A 31-bit integer scrambled (xor-shift and multiply rounds; every product stays below 2**62)."""
    h = h ^ (h >> 15)
    h = (h * 0x2C1B3C6D) & _MASK31
    h = h ^ (h >> 12)
    h = (h * 0x297A2D39) & _MASK31
    return h ^ (h >> 15)


def sample_keys(doc: Int[Tensor, "..."], pos: Int[Tensor, "..."]) -> Int[Tensor, "..."]:
    """Each token's sampling key (int64): a 23-bit pseudo-random rank from its document and
    position, then the document and the position (each below ``2**20``), so keys never tie."""
    doc, pos = doc.long(), pos.long()
    rank = _mix(_mix((doc * 0x01000193 + pos) & _MASK31) ^ doc) >> 8
    return (rank << (2 * PLACE_BITS)) | (doc << PLACE_BITS) | pos


def key_place(keys: Int[Tensor, "..."]) -> tuple[Int[Tensor, "..."], Int[Tensor, "..."]]:
    """The document and the position a sample key names (-1 for an empty one)."""
    empty = keys == NO_SAMPLE
    doc = ((keys >> PLACE_BITS) & (MAX_PLACE - 1)).masked_fill(empty, -1)
    return doc, (keys & (MAX_PLACE - 1)).masked_fill(empty, -1)


def empty_state(n_layers: int, d_mlp: int, k: int, n_buckets: int, width: int, device="cpu") -> dict[str, Tensor]:
    """The state before any token: empty top lists (activation -inf, document -1), zero counts.

    ``values``, ``doc``, ``pos``: ``[layer, neuron, k]``; ``window_tokens``, ``window_acts``:
    ``[layer, neuron, k, window]``; ``histogram``: ``[layer, neuron, bucket]``; ``fires``
    and ``sums`` (in units of ``2**-24``): ``[layer, neuron]``; ``totals``: tokens, documents,
    empty documents; ``sample_keys`` and ``sample_acts``: ``[layer, neuron, bucket]``, each
    bucket's sampled token (:func:`sample_keys`, ``NO_SAMPLE`` when empty) and its activation;
    ``low_values`` and ``low_keys``: ``[layer, neuron]``, the lowest activation and the key of
    the token that has it. While a pass runs, a neuron's ``k`` slots are in no particular order
    (a new example takes the slot of the one it pushes out); :func:`sort_state` ranks them.
    """
    shape = (n_layers, d_mlp, k)
    return {
        "values": torch.full(shape, -math.inf, device=device),
        "doc": torch.full(shape, -1, dtype=torch.int32, device=device),
        "pos": torch.full(shape, -1, dtype=torch.int32, device=device),
        "window_tokens": torch.full((*shape, width), -1, dtype=torch.int32, device=device),
        "window_acts": torch.full((*shape, width), math.nan, device=device),
        "histogram": torch.zeros(n_layers, d_mlp, n_buckets, dtype=torch.int64, device=device),
        "fires": torch.zeros(n_layers, d_mlp, dtype=torch.int64, device=device),
        "sums": torch.zeros(n_layers, d_mlp, dtype=torch.int64, device=device),
        "totals": torch.zeros(3, dtype=torch.int64, device=device),
        "sample_keys": torch.full((n_layers, d_mlp, n_buckets), NO_SAMPLE, dtype=torch.int64, device=device),
        "sample_acts": torch.full((n_layers, d_mlp, n_buckets), math.nan, device=device),
        "low_values": torch.full((n_layers, d_mlp), math.inf, device=device),
        "low_keys": torch.full((n_layers, d_mlp), NO_SAMPLE, dtype=torch.int64, device=device),
    }


def top_per_document(
    values: Float[Tensor, "neuron m"], doc: Int[Tensor, "neuron m"], pos: Int[Tensor, "neuron m"], k: int, distinct: bool = False
) -> tuple[Int[Tensor, "neuron k"], Bool[Tensor, "neuron k"]]:
    """Per row (neuron), the columns of its ``k`` best entries with at most one per document.

    Entries rank by value (largest first), then document, then position, ascending. An
    entry is dropped when a better one of its row has the same document, or when its value
    is -inf (an empty slot). Returns the chosen columns in rank order and whether each holds
    an entry (fewer than ``k`` documents leave empty slots at the end). ``distinct=True``
    skips the document check (entries known to come from different documents).
    """
    key = doc.long() * 2**32 + pos.long()
    by_key = key.argsort(dim=1, stable=True)
    by_value = values.gather(1, by_key).argsort(dim=1, descending=True, stable=True)
    order = by_key.gather(1, by_value)
    drop = values.gather(1, order) == -math.inf
    if not distinct:
        ranked_doc = doc.gather(1, order)
        above = _above(order.shape[1], str(values.device))  # above[i, j]: entry j ranks above entry i
        drop |= ((ranked_doc[:, :, None] == ranked_doc[:, None, :]) & above).any(2)
    kept_first = drop.to(torch.uint8).argsort(dim=1, stable=True)[:, :k]
    return order.gather(1, kept_first), ~drop.gather(1, kept_first)


@functools.lru_cache(maxsize=16)
def _above(m: int, device: str) -> Bool[Tensor, "m m"]:
    return torch.ones(m, m, dtype=torch.bool, device=device).tril(-1)


def _select(state: dict[str, Tensor], i: int, others: dict[str, Tensor], k: int, distinct: bool = False) -> None:
    """Replace layer ``i``'s top lists by the best ``k`` of them and ``others`` (entries
    with windows, ``[neuron, m]`` and ``[neuron, m, window]``), in rank order."""
    joined = {name: torch.cat([state[name][i], others[name]], dim=1) for name in RANKED}
    order, kept = top_per_document(joined["values"], joined["doc"], joined["pos"], k, distinct)
    windows = order[..., None].expand(*order.shape, joined["window_tokens"].shape[-1])
    for name, index in (("values", order), ("doc", order), ("pos", order), ("window_tokens", windows), ("window_acts", windows)):
        torch.gather(joined[name], 1, index, out=state[name][i])
    if not kept.all():  # fewer than k documents: the slots left are empty
        _empty_slots(state, i, ~kept)


def sort_state(state: dict[str, Tensor], k: int) -> dict[str, Tensor]:
    """The state with every neuron's examples in rank order (a copy)."""
    ranked = {name: t.clone() for name, t in state.items()}
    empty = {name: t[:, :, :0] for name, t in state.items() if name in RANKED}
    for i in range(len(ranked["values"])):
        _select(ranked, i, {name: t[i] for name, t in empty.items()}, k, distinct=True)
    return ranked


def _empty_slots(state: dict[str, Tensor], i: int, empty: Bool[Tensor, "neuron k"]) -> None:
    state["values"][i].masked_fill_(empty, -math.inf)
    state["doc"][i].masked_fill_(empty, -1)
    state["pos"][i].masked_fill_(empty, -1)
    state["window_tokens"][i].masked_fill_(empty[..., None], -1)
    state["window_acts"][i].masked_fill_(empty[..., None], math.nan)


@dataclass
class Batch:
    """The prompts of one forward pass, as the hooks need them (on the model's device)."""

    tokens: Int[Tensor, "batch pos"]  # document tokens after BOS, int32
    real: Bool[Tensor, "batch pos"]
    all_real: bool
    length: Int[Tensor, "batch"]  # document tokens in each prompt
    doc: Int[Tensor, "batch"]  # document of each prompt
    first_pos: Int[Tensor, "batch"]  # position in its document of each prompt's first token
    repeats: bool  # whether a document has several prompts in the batch
    order: Int[Tensor, "token"]  # the real tokens (row-major) in ascending order of their sample keys
    sorted_keys: Int[Tensor, "token"]  # their keys, in that order


def bucket_of(x: Float[Tensor, "..."], scale: float, shift: float, n_bins: int, has_nan: bool = True) -> Int[Tensor, "..."]:
    """Each value's histogram bucket: ``x * scale + shift`` in float32 (two roundings, as
    written), truncated and clipped to ``0..n_bins + 1``; NaN goes to the last bucket
    (``has_nan=False`` skips looking for it). :func:`bucket_constants` gives ``scale`` and
    ``shift`` for ``bins=(low, high, n)``."""
    t = torch.mul(x, scale)
    t.add_(shift).clamp_(0, n_bins + 1)
    if has_nan:
        t.nan_to_num_(nan=n_bins + 1)
    return t.to(torch.int32)


def bucket_constants(bins: tuple[float, float, int]) -> tuple[float, float, int]:
    """``(scale, shift, n)`` for :func:`bucket_of`: ``scale = n / (high - low)`` and
    ``shift = 1 - low * scale``, each rounded to float32, so bucket 1 starts near ``low``."""
    low, high, n_bins = bins
    scale = float(torch.tensor(n_bins / (high - low), dtype=torch.float32))
    return scale, float(torch.tensor(1 - low * scale, dtype=torch.float32)), n_bins


def check_bins(bins: Sequence) -> tuple[float, float, int]:
    """``(low, high, n)`` with low and high as float32 values, or a one-line error."""
    try:
        low, high, n_bins = bins
    except (TypeError, ValueError):
        low = high = n_bins = None
    if (not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or isinstance(n_bins, bool) or not isinstance(n_bins, int)
            or not math.isfinite(low) or not math.isfinite(high) or not low < high or n_bins < 1):
        raise ValueError(f"bins must be (low, high, number of bins) with low < high finite and at least 1 bin, e.g. (-0.2, 10.0, 102); got {bins!r}")
    low32, high32 = (float(v) for v in torch.tensor([low, high], dtype=torch.float32))
    return low32, high32, n_bins


def _count(state: dict[str, Tensor], i: int, x: Float[Tensor, "token neuron"], keys: Int[Tensor, "token"], bins: tuple[float, float, int], has_nan: bool) -> None:
    """Add the tokens ``x`` of layer ``i``, their rows in ascending order of their sample
    ``keys``, to its histogram, firing counts, sums, bucket samples and lowest activations;
    ``bins`` is ``(scale, shift, n_bins)`` from :func:`bucket_constants`.

    With the rows in key order, a bucket's sample is the first row that lands in it (a
    minimum of row numbers, int32) and a neuron's lowest activation the first row that has
    it, so no key is compared per token and neuron."""
    n_tokens, d_mlp = x.shape
    n_buckets = state["histogram"].shape[2]
    state["fires"][i] += (x > 0).sum(0)
    total = torch.nansum(x, 0, dtype=torch.float64) if has_nan else x.sum(0, dtype=torch.float64)
    state["sums"][i] += torch.round(total * SUM_UNIT).long()
    offsets = torch.arange(d_mlp, dtype=torch.int32, device=x.device) * n_buckets
    histogram = state["histogram"][i].view(-1)
    first = torch.full((d_mlp * n_buckets,), n_tokens, dtype=torch.int32, device=x.device)  # first row in each bucket
    rows = max(1, HISTOGRAM_CHUNK // d_mlp)
    for start in range(0, n_tokens, rows):
        chunk = x[start:start + rows]
        buckets = bucket_of(chunk, *bins, has_nan=has_nan)
        buckets += offsets
        flat = buckets.view(-1)
        histogram += torch.bincount(flat, minlength=d_mlp * n_buckets)
        row = torch.arange(start, start + len(chunk), dtype=torch.int32, device=x.device)[:, None].expand(chunk.shape)
        first.scatter_reduce_(0, flat, row.reshape(-1), "amin")
    # every [neuron, bucket] cell at once: dense gathers are cheaper than picking the touched cells
    first = first.view(d_mlp, n_buckets)
    row = first.clamp(max=n_tokens - 1).long()
    key = keys[row]
    take = (first < n_tokens) & (key < state["sample_keys"][i])
    state["sample_keys"][i] = torch.where(take, key, state["sample_keys"][i])
    state["sample_acts"][i] = torch.where(take, x.gather(0, row.T).T, state["sample_acts"][i])
    value, row = (x.nan_to_num(nan=math.inf) if has_nan else x).min(0)  # the first row of a tie: the smallest key
    merge_lowest(state["low_values"][i], state["low_keys"][i], value, keys[row].masked_fill(value == math.inf, NO_SAMPLE))


def fold_layer(
    state: dict[str, Tensor], i: int, act: Float[Tensor, "batch pos_bos neuron"], batch: Batch, bins: tuple[float, float, int],
    offsets: Int[Tensor, "window"], layer: int,
) -> dict[str, Tensor]:
    """Count one layer's activations on one batch (BOS at position 0) and return its candidates.

    The real tokens go into the histogram, firing counts and sums (:func:`_count`). Each
    prompt's largest activation per neuron is a candidate for the neuron's list (a document
    split over several prompts of the batch offers several); only those at or above the
    neuron's weakest listed example can enter, and only they are returned, each with its
    window, for :func:`merge_candidates` to fold in once every layer of the batch is done.
    """
    a = act[:, 1:].float()
    n_batch, n_pos, d_mlp = a.shape
    ranked = a if batch.all_real else a.masked_fill(~batch.real[..., None], -math.inf)
    best, where = ranked.max(dim=1)
    has_nan = bool(torch.isnan(best).any())
    if has_nan:
        log.warning("layer %d: %d NaN activations; they never enter the top lists, and count in the histogram's last bucket",
                    layer, int(torch.isnan(a[batch.real]).sum()))
        best, where = ranked.nan_to_num(nan=-math.inf, posinf=math.inf, neginf=-math.inf).max(dim=1)
    real = a.reshape(-1, d_mlp) if batch.all_real else a[batch.real]
    _count(state, i, real[batch.order], batch.sorted_keys, bins, has_nan)
    # the weakest slot of each neuron (-inf while one is empty): nothing below it can enter
    neuron, prompt = (best.T >= state["values"][i].amin(1, keepdim=True)).nonzero(as_tuple=True)
    where = where[prompt, neuron]
    at = where[:, None] + offsets  # [candidate, window], positions in the prompt
    inside = (at >= 0) & (at < batch.length[prompt][:, None])
    at = at.clamp(0, n_pos - 1)
    return {
        "row": i * d_mlp + neuron,
        "prompt": prompt,
        "values": best[prompt, neuron],
        "pos": (batch.first_pos[prompt] + where).to(torch.int32),
        "window_acts": a[prompt[:, None], at, neuron[:, None]].masked_fill(~inside, math.nan),
        "window_tokens": batch.tokens[prompt[:, None], at].masked_fill(~inside, -1),
    }


def merge_lowest(values: Tensor, keys: Tensor, other_values: Tensor, other_keys: Tensor) -> None:
    """Lowest activations and their keys, in place: the lower value wins, a tie the smaller key."""
    take = (other_values < values) | ((other_values == values) & (other_keys < keys))
    values.copy_(torch.where(take, other_values, values))
    keys.copy_(torch.where(take, other_keys, keys))


def merge_samples(keys: Tensor, acts: Tensor, other_keys: Tensor, other_acts: Tensor) -> None:
    """Bucket samples, in place: each bucket keeps the sample with the smaller key."""
    take = other_keys < keys
    keys.copy_(torch.where(take, other_keys, keys))
    acts.copy_(torch.where(take, other_acts, acts))


def _beats(value_a: Tensor, pos_a: Tensor, value_b: Tensor, pos_b: Tensor) -> Tensor:
    """Whether example a ranks above example b of the same document."""
    return (value_a > value_b) | ((value_a == value_b) & (pos_a < pos_b))


def merge_candidates(state: dict[str, Tensor], found: Sequence[dict[str, Tensor]], batch: Batch, k: int) -> None:
    """Fold one batch's candidates (from :func:`fold_layer`, every layer) into the top lists.

    Only the neurons with a candidate take part: per neuron, a candidate of a document that
    is already listed replaces its entry if it ranks above it and is dropped otherwise (so
    is the weaker of two prompts of one document); the rest are ranked with the list by
    :func:`top_per_document`, and a candidate that makes the list takes the slot of an entry
    that left it. All layers at once, so the work per batch does not grow with their number.
    """
    found = {name: torch.cat([f[name] for f in found]) for name in found[0]}
    if not len(found["row"]):
        return
    n_batch = len(batch.doc)
    rows, row_of = torch.unique(found["row"], return_inverse=True)
    listed = {name: state[name].view(-1, k)[rows] for name in ("values", "doc", "pos")}  # [rows, k]
    new = {
        "values": torch.full((len(rows), n_batch), -math.inf, device=rows.device),
        "pos": torch.full((len(rows), n_batch), -1, dtype=torch.int32, device=rows.device),
        "which": torch.full((len(rows), n_batch), -1, dtype=torch.long, device=rows.device),
    }
    new["values"][row_of, found["prompt"]] = found["values"]
    new["pos"][row_of, found["prompt"]] = found["pos"]
    new["which"][row_of, found["prompt"]] = torch.arange(len(row_of), device=rows.device)
    if batch.repeats:  # one document in several prompts: its best prompt stays
        same = (batch.doc[:, None] == batch.doc[None, :]) & ~torch.eye(n_batch, dtype=torch.bool, device=rows.device)
        beaten = same & _beats(new["values"][:, :, None], new["pos"][:, :, None], new["values"][:, None, :], new["pos"][:, None, :])
        new["values"] = new["values"].masked_fill(beaten.any(1), -math.inf)
    same = listed["doc"][:, :, None] == batch.doc[None, None, :]  # [rows, k, batch]
    better = _beats(new["values"][:, None, :], new["pos"][:, None, :], listed["values"][:, :, None], listed["pos"][:, :, None])
    listed["values"] = listed["values"].masked_fill((same & better).any(2), -math.inf)
    new["values"] = new["values"].masked_fill((same & ~better).any(1), -math.inf)
    joined = {
        "values": torch.cat([listed["values"], new["values"]], dim=1),
        "doc": torch.cat([listed["doc"], batch.doc[None, :].expand(len(rows), n_batch)], dim=1),
        "pos": torch.cat([listed["pos"], new["pos"]], dim=1),
    }
    order, kept = top_per_document(joined["values"], joined["doc"], joined["pos"], k, distinct=True)
    chosen = torch.zeros(joined["values"].shape, dtype=torch.bool, device=rows.device).scatter_(1, order, kept)
    incoming = chosen[:, k:]  # [rows, batch]: candidates that made the list
    # the j-th candidate of a neuron to come in takes the j-th slot whose entry left
    left = ~chosen[:, :k]
    slot_rank, in_rank = left.cumsum(1) - 1, incoming.cumsum(1) - 1
    row_left, slot_left = left.nonzero(as_tuple=True)
    slot_of = torch.full(left.shape, -1, dtype=torch.long, device=rows.device)
    slot_of[row_left, slot_rank[row_left, slot_left]] = slot_left
    row, prompt = incoming.nonzero(as_tuple=True)
    slot, flat, which = slot_of[row, in_rank[row, prompt]], rows[row], new["which"][row, prompt]
    state["values"].view(-1, k)[flat, slot] = new["values"][row, prompt]
    state["doc"].view(-1, k)[flat, slot] = batch.doc[prompt]
    state["pos"].view(-1, k)[flat, slot] = new["pos"][row, prompt]
    width = state["window_tokens"].shape[-1]
    state["window_acts"].view(-1, k, width)[flat, slot] = found["window_acts"][which]
    state["window_tokens"].view(-1, k, width)[flat, slot] = found["window_tokens"][which]
    # entries that left with nothing to take their slot (a list of fewer than k documents)
    row, slot = (left & (slot_rank >= incoming.sum(1, keepdim=True))).nonzero(as_tuple=True)
    if len(row):
        for name, empty in (("values", -math.inf), ("doc", -1), ("pos", -1), ("window_tokens", -1), ("window_acts", math.nan)):
            state[name].view(-1, k, *state[name].shape[3:])[rows[row], slot] = empty


@dataclass
class Part:
    """A state and what it counts: ``run``, the parameters that name its run (the weights'
    fingerprint, the documents' digest, the pass's settings), and ``shards``, the indices of
    the document shards folded into it."""

    state: dict[str, Tensor]
    run: dict
    shards: list[int]


def merge_states(parts: Sequence[Part], k: int) -> Part:
    """One ranked state from states of one run over disjoint shards: top lists re-ranked, the
    rest summed. States of another model, other documents or other settings, and shards counted
    in two states, are refused in one line (``ValueError``)."""
    first, seen = parts[0], set()
    for part in parts:
        if part.run != first.run:
            raise ValueError(f"these states come from two runs ({differences(first.run, part.run, ('in the first', 'in another'))}); merge only the parts of one run")
        twice = seen & set(part.shards)
        if twice:
            raise ValueError(f"shards {sorted(twice)} are in two of the states: merging would count their documents twice")
        seen |= set(part.shards)
    merged = sort_state(first.state, k)
    for other in parts[1:]:
        for name in SUMMED:
            merged[name] += other.state[name]
        merge_samples(merged["sample_keys"], merged["sample_acts"], other.state["sample_keys"], other.state["sample_acts"])
        merge_lowest(merged["low_values"], merged["low_keys"], other.state["low_values"], other.state["low_keys"])
        for i in range(len(merged["values"])):
            _select(merged, i, {name: other.state[name][i] for name in RANKED}, k, distinct=True)
    return Part(merged, first.run, sorted(seen))


def all_merge(state: dict[str, Tensor], k: int) -> dict[str, Tensor]:
    """:func:`merge_states` over every process of the group; every rank gets the result.

    The top lists (values, documents, positions) are gathered and ranked identically on
    every rank; each merged slot comes from one rank, which contributes its window while
    the others contribute zeros, and a sum hands the windows to everyone.
    """
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    merged = {name: state[name].clone() for name in SUMMED}
    for name in SUMMED:
        dist.all_reduce(merged[name])
    for names, merge in ((("sample_keys", "sample_acts"), merge_samples), (("low_values", "low_keys"), merge_lowest)):
        first, second = (state[name].clone() for name in names)
        for other in range(world):  # every rank merges the same parts in the same order
            parts = [torch.empty_like(state[name]) for name in names]
            for part, name in zip(parts, names):
                dist.broadcast(part.copy_(state[name]) if other == rank else part, src=other)
            merge(first, second, *parts)
        merged[names[0]], merged[names[1]] = first, second
    gathered = {}
    for name in ("values", "doc", "pos"):
        parts = [torch.empty_like(state[name]) for _ in range(world)]
        dist.all_gather(parts, state[name].contiguous())
        gathered[name] = torch.cat(parts, dim=2)  # [layer, neuron, world * k]
    n_layers, d_mlp, _ = state["values"].shape
    width = state["window_tokens"].shape[-1]
    for name in RANKED:
        merged[name] = torch.empty_like(state[name])
    for i in range(n_layers):
        order, kept = top_per_document(gathered["values"][i], gathered["doc"][i], gathered["pos"][i], k, distinct=True)
        for name in ("values", "doc", "pos"):
            merged[name][i] = gathered[name][i].gather(1, order)
        mine = (order // k == rank) & kept
        slot = (order % k)[..., None].expand(d_mlp, k, width)
        merged["window_tokens"][i] = state["window_tokens"][i].gather(1, slot).masked_fill(~mine[..., None], 0)
        merged["window_acts"][i] = state["window_acts"][i].gather(1, slot).masked_fill(~mine[..., None], 0.0)
    # NaN + 0 stays NaN and -1 + 0 stays -1: each slot's window arrives whole from its one owner
    dist.all_reduce(merged["window_tokens"])
    dist.all_reduce(merged["window_acts"])
    for i in range(n_layers):
        _empty_slots(merged, i, merged["values"][i] == -math.inf)
    return merged

