"""Every neuron in one pass: Neuroscope's top examples, a histogram, a firing rate and a mean.

Neuroscope shows, for each neuron of a model, the texts where it fires hardest. This pass
records, for every neuron of the chosen MLP layers (all by default), over a corpus:

- its top ``k`` examples (20 by default), **at most one per document**: within a document
  only the neuron's largest activation competes, so the list is never a run of neighbouring
  tokens of one text. Each example keeps its document, position and activation, and a
  window of token ids around it (``context=(12, 4)``: 12 before, 4 after) with the neuron's
  activation at each, so that showing it needs neither the corpus nor the model. A window
  ends where the prompt holding the example ends (token ``-1``, activation NaN): the model
  saw nothing beyond it.
- a histogram of its activation on fixed bins, the same for every neuron and every process:
  ``bins=(low, high, n)`` cuts ``[low, high)`` into ``n`` bins of equal width; the value
  ``x`` goes to bucket ``x * scale + shift`` truncated, with ``scale = n / (high - low)`` and
  ``shift = 1 - low * scale``, computed in float32 (so a test can repeat it bit for bit; a
  value within float32 rounding of an edge may fall on either side of it) and clipped to
  bucket 0 below ``low`` and bucket ``n + 1`` from ``high`` up (NaN too): ``n + 2`` buckets;
- how often it fires (activation > 0) and its mean activation.

Memory is bounded by the state, whatever the corpus: ``k`` examples with their windows, a
histogram and two counters per neuron. The ``tokens x neurons`` matrix is never held: inside
each layer's hook the activations are counted and reduced to each prompt's best token per
neuron, of which only those that can still enter the neuron's list are kept (with their
windows; at most ``batch x neurons``, far fewer once the lists are full), and the forward
pass stops after the last chosen layer (no logits are computed). The candidates of every
layer are merged into the lists once per batch.

Order. Examples rank by activation (largest first), ties to the earlier document, then the
earlier position. That is a total order, so the top ``k`` of a set of tokens is one list
whatever order the tokens arrive in. Counts are integers. The sum behind each mean is kept
as an int64 count of ``2**-24``: each batch's float64 sum is rounded to it (by at most
``2**-25``), and adding integers is exact. Merged results therefore do not depend on how the
documents were split among processes, or on where a run was interrupted.

Work and resumption. Documents are cut into shards of ``shard_docs`` documents; a shard's
prompts and batches depend on its documents alone, so its activations are the same bits in
any run. Process ``rank`` of ``world_size`` takes shards ``rank, rank + world_size, ...`` and
keeps its state in ``part-<rank>-of-<world>.safetensors`` together with the list of shards
that state includes, written atomically at most every ``checkpoint_seconds`` and at the end.
A rerun of the same command resumes each process from its file: a shard is in both the
state and the list, or in neither, so nothing is counted twice. The processes then merge
through ``torch.distributed`` (the top lists gathered and re-ranked, everything else summed)
and rank 0 writes ``neuroscope.safetensors`` and ``manifest.json``.

Identity. A run is keyed by a hash of every weight tensor, of the documents' text and of
every parameter that changes a number (layers, ``k``, bins, context, batch size, prompt
length, shard size, number of processes). A folder that holds another run, or a part file
written by another run, stops the pass with one line naming what differs.

Several processes (gloo on CPU, NCCL on GPUs; ``--nnodes`` for several machines)::

    torchrun --nproc_per_node 2 -m helpers.scan.neuroscope --model toy --documents toy --n-docs 400 --out DIR
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from helpers.core.checks import check_layers, check_positive_int
from helpers.core.files import atomic_write
from helpers.core.models import weights_fingerprint
from helpers.core.names import Neuron
from helpers.scan.documents import load_documents
from helpers.scan.forward import _Stop
from helpers.scan.store import ScanMismatch, _batches, _docs_digest, _plan

log = logging.getLogger(__name__)

NEUROSCOPE_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "neuroscope"
MANIFEST = "manifest.json"
RESULT = "neuroscope.safetensors"
FORMAT = 1
# 0.1 wide from -0.2 to 10: GELU is never below -0.17; larger values land in the last bucket
BINS = (-0.2, 10.0, 102)
CONTEXT = (12, 4)
SUM_UNIT = 2.0**24
# elements bucketed at once (bounds the int32 bucket indices held for one layer)
HISTOGRAM_CHUNK = 2**22
SUMMED = ("histogram", "fires", "sums", "totals")
RANKED = ("values", "doc", "pos", "window_tokens", "window_acts")


# ---------------------------------------------------------------------------------------
# The running state


def empty_state(n_layers: int, d_mlp: int, k: int, n_buckets: int, width: int, device="cpu") -> dict[str, Tensor]:
    """The state before any token: empty top lists (activation -inf, document -1), zero counts.

    ``values``, ``doc``, ``pos``: ``[layer, neuron, k]``; ``window_tokens``, ``window_acts``:
    ``[layer, neuron, k, window]``; ``histogram``: ``[layer, neuron, bucket]``; ``fires``
    and ``sums`` (in units of ``2**-24``): ``[layer, neuron]``; ``totals``: tokens, documents,
    empty documents. While a pass runs, a neuron's ``k`` slots are in no particular order (a
    new example takes the slot of the one it pushes out); :func:`sort_state` ranks them.
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
class _Batch:
    """The prompts of one forward pass, as the hooks need them (on the model's device)."""

    tokens: Int[Tensor, "batch pos"]  # document tokens after BOS, int32
    real: Bool[Tensor, "batch pos"]
    all_real: bool
    length: Int[Tensor, "batch"]  # document tokens in each prompt
    doc: Int[Tensor, "batch"]  # document of each prompt
    first_pos: Int[Tensor, "batch"]  # position in its document of each prompt's first token
    repeats: bool  # whether a document has several prompts in the batch


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


def _count(state: dict[str, Tensor], i: int, x: Float[Tensor, "... neuron"], bins: tuple[float, float, int], has_nan: bool) -> None:
    """Add the tokens ``x`` (any leading shape) of layer ``i`` to its histogram, firing
    counts and sums; ``bins`` is ``(scale, shift, n_bins)`` from :func:`bucket_constants`."""
    d_mlp = x.shape[-1]
    n_buckets = state["histogram"].shape[2]
    dims = tuple(range(x.dim() - 1))
    state["fires"][i] += (x > 0).sum(dims)
    total = torch.nansum(x, dims, dtype=torch.float64) if has_nan else x.sum(dims, dtype=torch.float64)
    state["sums"][i] += torch.round(total * SUM_UNIT).long()
    offsets = torch.arange(d_mlp, dtype=torch.int32, device=x.device) * n_buckets
    histogram = state["histogram"][i].view(-1)
    rows = max(1, HISTOGRAM_CHUNK // x[0].numel())
    for start in range(0, len(x), rows):
        buckets = bucket_of(x[start:start + rows], *bins, has_nan=has_nan)
        buckets += offsets
        histogram += torch.bincount(buckets.view(-1), minlength=d_mlp * n_buckets)


def fold_layer(
    state: dict[str, Tensor], i: int, act: Float[Tensor, "batch pos_bos neuron"], batch: _Batch, bins: tuple[float, float, int],
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
    _count(state, i, a if batch.all_real else a[batch.real], bins, has_nan)
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


def _beats(value_a: Tensor, pos_a: Tensor, value_b: Tensor, pos_b: Tensor) -> Tensor:
    """Whether example a ranks above example b of the same document."""
    return (value_a > value_b) | ((value_a == value_b) & (pos_a < pos_b))


def merge_candidates(state: dict[str, Tensor], found: Sequence[dict[str, Tensor]], batch: _Batch, k: int) -> None:
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


def merge_states(states: Sequence[dict[str, Tensor]], k: int) -> dict[str, Tensor]:
    """One ranked state from states over disjoint sets of documents: top lists re-ranked,
    the rest summed."""
    merged = sort_state(states[0], k)
    for other in states[1:]:
        for name in SUMMED:
            merged[name] += other[name]
        for i in range(len(merged["values"])):
            _select(merged, i, {name: other[name][i] for name in RANKED}, k, distinct=True)
    return merged


def _all_merge(state: dict[str, Tensor], k: int) -> dict[str, Tensor]:
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


# ---------------------------------------------------------------------------------------
# Files


def part_name(rank: int, world_size: int) -> str:
    return f"part-{rank:03d}-of-{world_size:03d}.safetensors"


def _run_id(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _differences(requested: dict, found: dict) -> str:
    keys = sorted(set(requested) | set(found))
    return "; ".join(f"{k}: {requested.get(k)!r} requested, {found.get(k)!r} there" for k in keys if requested.get(k) != found.get(k))


def _save(path: Path, state: dict[str, Tensor], metadata: dict) -> None:
    from safetensors.torch import save

    tensors = {name: t.detach().cpu().contiguous() for name, t in state.items()}
    atomic_write(path, save(tensors, metadata={k: json.dumps(v) for k, v in metadata.items()}))


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}


def _check_folder(out_dir: Path, params: dict, run_id: str) -> dict | None:
    """The folder's manifest (None if there is none); a one-line error if the manifest or
    any part file in the folder belongs to another run."""
    manifest = None
    path = out_dir / MANIFEST
    if path.exists():
        try:
            manifest = json.loads(path.read_text())
            manifest["params"], manifest["run_id"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
            raise ScanMismatch(f"{path} is not a neuroscope manifest ({error!r}); delete {out_dir} or choose another out_dir") from None
        if manifest["run_id"] != run_id:
            raise ScanMismatch(
                f"{out_dir} holds another neuroscope run ({_differences(params, manifest['params'])}); use a fresh out_dir or the same parameters"
            )
    for part in sorted(out_dir.glob("part-*.safetensors")):
        try:
            found = _metadata(part)
        except Exception:  # an unreadable part is recomputed by its own rank (see _load_part)
            continue
        if found.get("run_id") != run_id:
            raise ScanMismatch(
                f"{part} was written by another run ({_differences(params, found.get('params', {}))}); "
                f"move it out of {out_dir} or use a fresh out_dir"
            )
    return manifest


def _load_part(path: Path, run_id: str, mine: set[int], device) -> tuple[dict[str, Tensor], list[int]] | None:
    """This rank's saved state and the shards it includes, or None when there is none."""
    from safetensors.torch import load_file

    if not path.exists():
        return None
    try:
        metadata = _metadata(path)
        state = load_file(str(path), device=str(device))
    except Exception as error:
        log.warning("%s cannot be read (%s); this process starts its shards again", path.name, error)
        return None
    if metadata.get("run_id") != run_id:
        raise ScanMismatch(f"{path} was written by another run; move it away or use a fresh out_dir")
    shards = metadata["shards"]
    if not set(shards) <= mine:
        raise ScanMismatch(f"{path} lists shards {sorted(set(shards) - mine)} that are not this process's; use a fresh out_dir")
    return state, shards


# ---------------------------------------------------------------------------------------
# The result


@dataclass
class Neuroscope:
    """A finished every-neuron pass: per neuron of ``layers``, its top examples, histogram,
    firing count and sum. ``tensors`` are on the CPU (see :func:`empty_state` for shapes)."""

    out_dir: Path
    params: dict
    tensors: dict[str, Tensor]

    @property
    def run_id(self) -> str:
        """The hash that names this run (its weights, documents and parameters)."""
        return _run_id(self.params)

    @property
    def layers(self) -> list[int]:
        return self.params["layers"]

    @property
    def d_mlp(self) -> int:
        return self.params["model_shape"][2]

    @property
    def k(self) -> int:
        return self.params["k"]

    @property
    def edges(self) -> list[float]:
        """The bins' edges, ``low`` to ``high`` (bucket ``i`` of ``1..n`` is edges ``i-1`` to ``i``)."""
        low, high, n_bins = self.params["bins"]
        return [low + (high - low) * j / n_bins for j in range(n_bins + 1)]

    @property
    def n_tokens(self) -> int:
        return int(self.tensors["totals"][0])

    @property
    def n_docs(self) -> int:
        return int(self.tensors["totals"][1])

    @property
    def n_empty_docs(self) -> int:
        return int(self.tensors["totals"][2])

    @property
    def n_neurons(self) -> int:
        return len(self.layers) * self.d_mlp

    def where(self, neuron: Neuron | str) -> tuple[int, int]:
        """(row of its layer in the tensors, index within the layer), or a one-line error."""
        wanted = Neuron.of(neuron)
        if wanted.layer not in self.layers or not 0 <= wanted.index < self.d_mlp:
            raise ValueError(f"{wanted} was not recorded: this pass holds neurons 0-{self.d_mlp - 1} of layers {self.layers}")
        return self.layers.index(wanted.layer), wanted.index

    def firing_rates(self) -> Float[Tensor, "layer neuron"]:
        """Share of tokens at which each neuron's activation is above 0."""
        return self.tensors["fires"].double() / max(self.n_tokens, 1)

    def means(self) -> Float[Tensor, "layer neuron"]:
        """Each neuron's mean activation over every token (float64)."""
        return self.tensors["sums"].double() / SUM_UNIT / max(self.n_tokens, 1)

    def histogram(self, neuron: Neuron | str) -> Int[Tensor, "bucket"]:
        """Token counts per bucket (below ``low``, each bin, from ``high`` up; see ``bins``)."""
        i, n = self.where(neuron)
        return self.tensors["histogram"][i, n]

    def top_examples(self, neuron: Neuron | str) -> pd.DataFrame:
        """The neuron's examples in rank order: ``activation``, ``doc``, ``pos``, and the
        window (``window_tokens``, ``window_activations``, lists) with ``focus`` the
        example's index in it; the window stops at its prompt's ends."""
        i, n = self.where(neuron)
        values = self.tensors["values"][i, n]
        kept = torch.isfinite(values)
        tokens = self.tensors["window_tokens"][i, n][kept]
        acts = self.tensors["window_acts"][i, n][kept]
        inside = tokens >= 0
        before = self.params["context"][0]
        return pd.DataFrame({
            "activation": values[kept].tolist(),
            "doc": self.tensors["doc"][i, n][kept].tolist(),
            "pos": self.tensors["pos"][i, n][kept].tolist(),
            "window_tokens": [t[m].tolist() for t, m in zip(tokens, inside)],
            "window_activations": [a[m].tolist() for a, m in zip(acts, inside)],
            "focus": (before - (~inside[:, :before]).sum(1)).tolist(),
        })


def open_neuroscope(out_dir: str | Path) -> Neuroscope:
    """A finished pass from its folder (no model needed)."""
    from safetensors.torch import load_file

    out_dir = Path(out_dir)
    path = out_dir / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{out_dir} holds no {MANIFEST}; run neuroscope(...) into it first")
    manifest = json.loads(path.read_text())
    if not manifest.get("complete") or not (out_dir / RESULT).exists():
        raise ScanMismatch(f"the pass in {out_dir} is not finished; run it again with the same parameters to resume it")
    if _metadata(out_dir / RESULT).get("run_id") != manifest["run_id"]:
        raise ScanMismatch(f"{out_dir / RESULT} belongs to another run than {path}; run the pass again into a fresh out_dir")
    return Neuroscope(out_dir, manifest["params"], load_file(str(out_dir / RESULT)))


# ---------------------------------------------------------------------------------------
# The pass


def check_bins(bins: Sequence) -> tuple[float, float, int]:
    """``(low, high, n)`` with low and high as float32 values, or a one-line error."""
    try:
        low, high, n_bins = bins
    except (TypeError, ValueError):
        low = high = n_bins = None
    if (not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or isinstance(n_bins, bool) or not isinstance(n_bins, int)
            or not math.isfinite(low) or not math.isfinite(high) or not low < high or n_bins < 1):
        raise ValueError(f"bins must be (low, high, number of bins) with low < high finite and at least 1 bin, e.g. {BINS}; got {bins!r}")
    low32, high32 = (float(v) for v in torch.tensor([low, high], dtype=torch.float32))
    return low32, high32, n_bins


def check_context(context: Sequence[int]) -> tuple[int, int]:
    if len(context) != 2 or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in context):
        raise ValueError(f"context must be (tokens before, tokens after), two integers >= 0, got {context!r}")
    return int(context[0]), int(context[1])


def neuroscope(
    model,
    documents: Iterable[str] | str,
    layers: Sequence[int] | int | None = None,
    out_dir: str | Path | None = None,
    *,
    k: int = 20,
    bins: Sequence = BINS,
    context: Sequence[int] = CONTEXT,
    batch_size: int = 8,
    max_tokens: int | None = None,
    n_docs: int | None = None,
    source: str | None = None,
    seed: int = 0,
    shard_docs: int = 64,
    checkpoint_seconds: float = 300.0,
    progress: bool = True,
    on_shard: Callable[[int], None] | None = None,
) -> Neuroscope:
    """Every neuron of ``layers`` (all for None) over ``documents``, in one resumable pass.

    ``documents`` is an iterable of texts or a source name for ``load_documents`` (then
    ``n_docs`` and ``seed`` choose them). Inside a ``torch.distributed`` process group each
    process takes its own shards and every process returns the merged result; rank 0 writes
    it. ``out_dir=None`` picks a folder under ``.cache/neuroscope`` named by the run.
    ``on_shard`` is called with each shard's index once it is folded in (and saved, when a
    checkpoint was due). See the module docstring for what is recorded and how.
    """
    import torch.distributed as dist

    cfg = model.cfg
    grouped = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if grouped else (0, 1)
    layers = check_layers(None if layers in (None, "all") else layers, cfg.n_layers)
    max_tokens = cfg.n_ctx if max_tokens is None else max_tokens
    for name, value, low in (("k", k, 1), ("batch_size", batch_size, 1), ("max_tokens", max_tokens, 2), ("shard_docs", shard_docs, 1)):
        check_positive_int(name, value, low)
    if max_tokens > cfg.n_ctx:
        raise ValueError(f"max_tokens={max_tokens} exceeds the model's context of {cfg.n_ctx} tokens; use at most {cfg.n_ctx}")
    bins, context = check_bins(bins), check_context(context)
    if not checkpoint_seconds >= 0:
        raise ValueError(f"checkpoint_seconds must be >= 0 (0: after every shard), got {checkpoint_seconds!r}")
    if isinstance(documents, str):
        if n_docs is None:
            raise ValueError(f"reading documents from {documents!r} needs n_docs")
        source = documents if source is None else source
        documents = load_documents(documents, n_docs, seed)
    documents = list(documents if n_docs is None else islice(documents, n_docs))
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise TypeError(f"document {i} is a {type(doc).__name__}, not a str; pass text documents")
    bos = model.tokenizer.bos_token_id
    if bos is None:
        raise ValueError("the model's tokenizer has no BOS token; every prompt must start with one")
    params = {
        "format": FORMAT,
        "model": cfg.model_name,
        "weights": weights_fingerprint(model),
        "model_shape": [cfg.n_layers, cfg.d_model, cfg.d_mlp, cfg.d_vocab, cfg.n_ctx],
        "model_dtype": str(cfg.dtype).removeprefix("torch."),
        "documents_sha256": _docs_digest(documents),
        "n_docs": len(documents),
        "source": source or "custom",
        "seed": seed,
        "layers": layers,
        "k": k,
        "bins": list(bins),
        "context": list(context),
        "batch_size": batch_size,
        "max_tokens": max_tokens,
        "shard_docs": shard_docs,
        "bos": bos,
        "world_size": world_size,
    }
    run_id = _run_id(params)
    if out_dir is None:
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{cfg.model_name}-{params['source']}-{len(documents)}")
        out_dir = NEUROSCOPE_CACHE / f"{slug}-{run_id}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _check_folder(out_dir, params, run_id)
    if world_size == 1 and manifest is not None and manifest.get("complete") and (out_dir / RESULT).exists():
        return open_neuroscope(out_dir)
    if rank == 0 and manifest is None:
        atomic_write(out_dir / MANIFEST, _manifest_bytes(params, run_id, False))

    device = model.W_U.device
    n_shards = -(-len(documents) // shard_docs)
    mine = list(range(rank, n_shards, world_size))
    part = out_dir / part_name(rank, world_size)
    width = context[0] + context[1] + 1
    loaded = _load_part(part, run_id, set(mine), device)
    state, done = loaded if loaded is not None else (empty_state(len(layers), cfg.d_mlp, k, bins[2] + 2, width, device), [])
    todo = [s for s in mine if s not in set(done)]
    if done and todo:
        log.info("resuming: %d of this process's %d shards already counted", len(done), len(mine))
    opts = dict(bins=bucket_constants(bins), offsets=torch.arange(-context[0], context[1] + 1, device=device),
                k=k, max_tokens=max_tokens, batch_size=batch_size, bos=bos)
    from tqdm.auto import tqdm

    saved_at = time.monotonic()
    with tqdm(total=len(mine), initial=len(mine) - len(todo), unit="shard", desc="neuroscope", disable=not progress or rank != 0) as bar:
        for shard in todo:
            docs = documents[shard * shard_docs:(shard + 1) * shard_docs]
            _fold_shard(model, docs, shard * shard_docs, layers, state, opts)
            done.append(shard)
            if time.monotonic() - saved_at >= checkpoint_seconds:
                _save(part, state, {"run_id": run_id, "params": params, "shards": sorted(done)})
                saved_at = time.monotonic()
            bar.update(1)
            if on_shard is not None:
                on_shard(shard)
    _save(part, state, {"run_id": run_id, "params": params, "shards": sorted(done)})
    merged = _all_merge(state, k) if world_size > 1 else sort_state(state, k)
    merged = {name: t.cpu() for name, t in merged.items()}
    if rank == 0:
        _save(out_dir / RESULT, merged, {"run_id": run_id})
        atomic_write(out_dir / MANIFEST, _manifest_bytes(params, run_id, True, merged["totals"]))
    if world_size > 1:
        dist.barrier()
    return Neuroscope(out_dir, params, merged)


def _manifest_bytes(params: dict, run_id: str, complete: bool, totals: Tensor | None = None) -> bytes:
    manifest = {"format": FORMAT, "run_id": run_id, "params": params, "complete": complete, "result": RESULT if complete else None}
    if totals is not None:
        manifest.update(n_tokens=int(totals[0]), n_docs=int(totals[1]), n_empty_docs=int(totals[2]))
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()


def _fold_shard(model, docs: list[str], first_doc: int, layers: list[int], state: dict[str, Tensor], opts: dict) -> None:
    """Run one shard's prompts, a batch at a time, folding every chosen layer into ``state``."""
    device = state["values"].device
    plan = _plan(model.tokenizer, docs, first_doc, opts["max_tokens"] - 1)
    doc_of, pos_of = torch.from_numpy(plan.doc), torch.from_numpy(plan.pos)
    current: list[_Batch] = []

    found: list[dict[str, Tensor]] = []

    def make_hook(i: int, layer: int):
        def hook(act, hook):
            found.append(fold_layer(state, i, act, current[0], opts["bins"], opts["offsets"], layer))
            if i == len(layers) - 1:
                raise _Stop
            return act

        return hook

    hooks = [(f"blocks.{layer}.mlp.hook_post", make_hook(i, layer)) for i, layer in enumerate(layers)]
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        for tokens, real, rows in _batches(plan, opts["batch_size"], opts["bos"]):
            head = rows[:, 0]
            docs_here = doc_of[head]
            current[:] = [_Batch(
                tokens=tokens[:, 1:].to(device=device, dtype=torch.int32),
                real=real.to(device),
                all_real=bool(real.all()),
                length=real.sum(1).to(device),
                doc=docs_here.to(device=device, dtype=torch.int32),
                first_pos=pos_of[head].to(device=device, dtype=torch.int32),
                repeats=len(set(docs_here.tolist())) < len(docs_here),
            )]
            found.clear()
            try:
                model(tokens.to(device))
            except _Stop:
                pass
            else:
                raise RuntimeError(f"the forward pass never reached blocks.{layers[-1]}.mlp.hook_post; this model has no standard MLP hooks")
            merge_candidates(state, found, current[0], opts["k"])
    state["totals"] += torch.tensor([len(plan.flat), len(docs), plan.n_empty], device=device)


# ---------------------------------------------------------------------------------------
# Command line (torchrun starts one process per GPU or CPU worker)


def parse_layers(text: str) -> list[int] | None:
    """``"all"`` -> None; ``"0,3,5"`` or ``"0-3"`` -> layer numbers (one-line error otherwise)."""
    if text.strip() == "all":
        return None
    layers = []
    try:
        for piece in text.split(","):
            low, _, high = piece.strip().partition("-")
            layers += list(range(int(low), int(high) + 1)) if high else [int(low)]
    except ValueError:
        raise ValueError(f"--layers {text!r}: write 'all', a list such as 0,3,5 or a range such as 28-35") from None
    return layers


def main(argv: list[str] | None = None, on_shard: Callable[[int], None] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Every neuron's top examples, histogram, firing rate and mean, in one pass (run it under torchrun for several processes).")
    parser.add_argument("--model", default="toy", help="bundled name, local HF folder or hub name")
    parser.add_argument("--device", default="auto", help="auto: this process's GPU (LOCAL_RANK) when there is one, else cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--documents", default="toy", help="toy or pile-10k")
    parser.add_argument("--n-docs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", default="all")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--shard-docs", type=int, default=64)
    parser.add_argument("--checkpoint-seconds", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: under .cache/neuroscope)")
    args = parser.parse_args(argv)
    try:
        layers = parse_layers(args.layers)
    except ValueError as error:
        sys.exit(f"error: {error}")
    import torch.distributed as dist

    from helpers.core.models import load_model

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = args.device
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    grouped = int(os.environ.get("WORLD_SIZE", 1)) > 1
    if grouped:
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    try:
        model = load_model(args.model, device=device, dtype=args.dtype)
        result = neuroscope(
            model, args.documents, layers, args.out, k=args.k, batch_size=args.batch_size, max_tokens=args.max_tokens,
            n_docs=args.n_docs, seed=args.seed, shard_docs=args.shard_docs, checkpoint_seconds=args.checkpoint_seconds,
            on_shard=on_shard,
        )
        if not grouped or dist.get_rank() == 0:
            print(f"neuroscope: {result.n_neurons:,} neurons of layers {result.layers}, {result.n_tokens:,} tokens of "
                  f"{result.n_docs:,} documents, {result.params['world_size']} process(es): {result.out_dir}", flush=True)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        sys.exit(f"error: {error}")
    finally:
        if grouped and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
