"""Congruence: which tokens does each MLP neuron write, read off the weights alone.

A neuron that fires adds its output row ``W_out[l, n]`` (a ``d_model`` vector) to the residual
stream. Its *congruence* with a token ``t`` is the dot product of that row with the token's
column of a vocabulary matrix ``U``: how much one unit of activation pushes the logit of ``t``
directly, ignoring the final layer norm and every later layer. The study used the embedding
(``U = W_E.T``); after the weight processing (centred unembedding, folded layer norm) the
matrix that actually produces the logits is ``W_U``, which is this module's default. The cosine
(rows of ``W_out`` and columns of ``U`` normalised) is the control for norms: late layers write
larger vectors, so raw dot products favour them.

For GPT-2 Large the neurons-by-vocabulary matrix is 184,320 x 50,257 (about 37 GB in fp32),
so :func:`scan` never builds it. It walks one layer's neurons at a time against chunks of
the vocabulary, multiplies one block at a time into a reused buffer, and folds each block into
what the pages need:

* every token's two most congruent neurons (value and flat neuron id),
* every neuron's two most congruent tokens,
* for the cosine (or on request), every neuron's sums of powers 1-4 over the vocabulary, from
  which mean, standard deviation, skew and kurtosis follow: the prediction/suppression
  census of Gurnee et al. 2024 uses the cosine. The first sum is exact as
  ``W_out @ U.sum(1)``; the other three of a block come from one batched product of each
  row's [P; P**2] with itself.

Ranking a block along its strided direction (each token over the neurons) is what costs in a
naive version. Here the block's rows are cut into groups of 32: a token's largest entry sits
in the group with the largest maximum and its second largest in that group or the runner-up
group, so one reduction over the block and a sort of 64 gathered entries per token suffice.
Each neuron's top two over a block come the same way along the row. A block's top two are
merged into the running top two with element-wise comparisons. Everything is exact: the
tests build the whole matrix on tiny models and must agree.

Flat neuron ids follow :meth:`helpers.core.names.Neuron.flat`: ``layer * d_mlp + index``. The
result (:class:`~helpers.methods.congruence_tables.Congruence`) and the tables read off it are
in :mod:`helpers.methods.congruence_tables`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.cache import cached
from helpers.core.checks import check_layers
from helpers.core.models import single_token, weights_fingerprint
from helpers.core.names import Neuron
from helpers.methods.congruence_tables import Congruence

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "congruence"
CONGRUENCE_VERSION = 1  # bump when a change to the pass changes its numbers
MATRICES = ("W_U", "W_E")
MEASURES = ("dot", "cosine")
NEURON_CHUNK = 5120
TOKEN_CHUNK = 16384


# ---------------------------------------------------------------------------------------------
# Inputs: the model's matrices, checked arguments
# ---------------------------------------------------------------------------------------------


def check_matrix(matrix: str) -> str:
    if matrix not in MATRICES:
        raise ValueError(f"unknown matrix {matrix!r}: use 'W_U' (the real unembedding) or 'W_E' (the embedding, as the study did)")
    return matrix


def other_matrix(matrix: str) -> str:
    """The vocabulary matrix that is not ``matrix``: ``W_E`` for ``W_U`` and back."""
    return "W_E" if check_matrix(matrix) == "W_U" else "W_U"


def check_measure(measure: str) -> str:
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}: use 'dot' (raw congruence) or 'cosine' (norms divided out)")
    return measure


def readout(model: TransformerBridge, matrix: str = "W_U") -> Float[Tensor, "d_model vocab"]:
    """The vocabulary matrix: the processed unembedding ``W_U`` or the embedding ``W_E.T``."""
    check_matrix(matrix)
    with torch.no_grad():
        return (model.W_U if matrix == "W_U" else model.W_E.T).detach()


def output_weights(model: TransformerBridge) -> Float[Tensor, "layers d_mlp d_model"]:
    """Every layer's MLP output rows, ``W_out[l, n]`` being what neuron ``LlNn`` writes."""
    with torch.no_grad():
        return model.W_out.detach()


def as_token(model: TransformerBridge, token: int | str) -> int:
    """A token id from an id or a one-token string (one-line error otherwise)."""
    if isinstance(token, str):
        return single_token(model, token)
    token = int(token)
    if not 0 <= token < model.cfg.d_vocab:
        raise ValueError(f"token id {token} is out of range: the vocabulary has ids 0-{model.cfg.d_vocab - 1}")
    return token


def single_tokens(model: TransformerBridge, texts: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """The texts that are one token for this model (text -> id), and those that are not."""
    kept, dropped = {}, []
    for text in texts:
        try:
            kept[text] = single_token(model, text)
        except ValueError:
            dropped.append(text)
    return kept, dropped


def as_neuron(model: TransformerBridge, neuron: Neuron | str) -> Neuron:
    """A checked :class:`Neuron` from a Neuron or a name such as ``'L31N892'``."""
    return Neuron.of(neuron).check(model.cfg.n_layers, model.cfg.d_mlp)


def _unit_columns(U: Float[Tensor, "d_model vocab"]) -> Float[Tensor, "d_model vocab"]:
    """Columns scaled to unit norm, keeping the memory layout of ``U``."""
    return _unit_rows(U.T).T


def _unit_rows(W: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_model"]:
    return W / W.norm(dim=-1, keepdim=True).clamp_min(1e-12)


# ---------------------------------------------------------------------------------------------
# Full rows and columns on request
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def neuron_congruence(
    model: TransformerBridge, neuron: Neuron | str, matrix: str = "W_U", measure: str = "dot"
) -> Float[Tensor, "vocab"]:
    """One neuron against every token."""
    neuron = as_neuron(model, neuron)
    check_measure(measure)
    U = readout(model, matrix).float()
    w = model.blocks[neuron.layer].mlp.W_out[neuron.index].detach().float()
    if measure == "cosine":
        return (_unit_rows(w) @ _unit_columns(U)).cpu()
    return (w @ U).cpu()


@torch.no_grad()
def token_congruence(
    model: TransformerBridge, token: int | str, matrix: str = "W_U", measure: str = "dot"
) -> Float[Tensor, "layers d_mlp"]:
    """Every neuron of every layer against one token."""
    token = as_token(model, token)
    check_measure(measure)
    u = readout(model, matrix)[:, token].float()
    W = output_weights(model).float()
    if measure == "cosine":
        return (_unit_rows(W) @ (u / u.norm().clamp_min(1e-12))).cpu()
    return (W @ u).cpu()


# ---------------------------------------------------------------------------------------------
# The chunked search
# ---------------------------------------------------------------------------------------------


def _merge_pairs(
    values: Float[Tensor, "g 2"],
    ids: Int[Tensor, "g 2"],
    new_values: Float[Tensor, "h k"],
    new_ids: Int[Tensor, "h k"],
    index: Int[Tensor, "h"] | None = None,
) -> None:
    """Merge each group's running top two with a new top one or two (descending), in place.

    ``index`` names the groups the new entries belong to (all groups, in order, if None).
    Element-wise: the better of the two leaders, then the better of the loser's leader and
    the winner's second. On equal values the running entry wins.
    """
    a_v, a_i = (values, ids) if index is None else (values[index], ids[index])
    b_v, b_i = new_values, new_ids
    if b_v.shape[1] < 2:  # a block with a single row or column offers one entry
        b_v = torch.cat([b_v, torch.full_like(b_v, -torch.inf)], 1)
        b_i = torch.cat([b_i, torch.full_like(b_i, -1)], 1)
    a_leads = a_v[:, 0] >= b_v[:, 0]
    first_v = torch.where(a_leads, a_v[:, 0], b_v[:, 0])
    first_i = torch.where(a_leads, a_i[:, 0], b_i[:, 0])
    x_v = torch.where(a_leads, a_v[:, 1], a_v[:, 0])
    x_i = torch.where(a_leads, a_i[:, 1], a_i[:, 0])
    y_v = torch.where(a_leads, b_v[:, 0], b_v[:, 1])
    y_i = torch.where(a_leads, b_i[:, 0], b_i[:, 1])
    x_wins = x_v >= y_v
    merged_v = torch.stack([first_v, torch.where(x_wins, x_v, y_v)], 1)
    merged_i = torch.stack([first_i, torch.where(x_wins, x_i, y_i)], 1)
    if index is None:
        values.copy_(merged_v)
        ids.copy_(merged_i)
    else:
        values[index] = merged_v
        ids[index] = merged_i


def _add_power_sums(powers: Float[Tensor, "2 rows cols"], sums: Float[Tensor, "rows 4"]) -> None:
    """Add each row's sums of P**2, P**3, P**4 to ``sums[:, 1:]``; ``powers[0]`` holds P.

    ``powers[1]`` receives P**2; then one batched product of each row's [P; P**2] with its
    transpose gives all three sums (a 2 x 2 Gram matrix per row) in a single read.
    """
    torch.mul(powers[0], powers[0], out=powers[1])
    stacked = powers.permute(1, 0, 2)
    gram = torch.bmm(stacked, stacked.transpose(1, 2)).view(-1, 4)
    sums[:, 1:] += gram[:, [0, 1, 3]]


GROUP = 32  # entries per group when ranking the rows or columns of a block


def _column_top2(padded: Float[Tensor, "rows_padded cols"]) -> tuple[Float[Tensor, "cols 2"], Int[Tensor, "cols 2"]]:
    """Each column's two largest entries and their rows, without a strided sort of the block.

    The rows are cut into groups of ``GROUP`` (the block is padded with -inf rows to a
    multiple). The largest entry lies in the group with the largest maximum, the second in
    that group or in the group with the second largest maximum, so one reduction over the
    block and a sort of 2 x ``GROUP`` gathered entries per column suffice.
    """
    rows_padded, cols = padded.shape
    n_groups = rows_padded // GROUP
    group_max = padded.view(n_groups, GROUP, cols).amax(1)
    best_groups = group_max.topk(min(2, n_groups), dim=0).indices
    offsets = torch.arange(GROUP, device=padded.device)
    rows = (best_groups[:, None, :] * GROUP + offsets[None, :, None]).reshape(-1, cols)
    top = padded.gather(0, rows).topk(2, dim=0)
    return top.values.T, rows.gather(0, top.indices).T


def _row_top2(P: Float[Tensor, "rows cols"]) -> tuple[Float[Tensor, "rows k"], Int[Tensor, "rows k"]]:
    """Each row's two largest entries and their columns, by the same grouping along the row
    (a plain sort when the row does not split into whole groups)."""
    rows, cols = P.shape
    if cols % GROUP or cols < 2 * GROUP:
        top = P.topk(min(2, cols), dim=1)
        return top.values, top.indices
    group_max = P.view(rows, cols // GROUP, GROUP).amax(2)
    best_groups = group_max.topk(2, dim=1).indices
    offsets = torch.arange(GROUP, device=P.device)
    columns = (best_groups[:, :, None] * GROUP + offsets).reshape(rows, -1)
    top = P.gather(1, columns).topk(2, dim=1)
    return top.values, columns.gather(1, top.indices)


@torch.no_grad()
def scan(
    W_out: Float[Tensor, "layers d_mlp d_model"],
    U: Float[Tensor, "d_model vocab"],
    measure: str = "dot",
    layers: Sequence[int] | None = None,
    neuron_chunk: int = NEURON_CHUNK,
    token_chunk: int = TOKEN_CHUNK,
    matrix: str = "custom",
    moments: bool | None = None,
) -> Congruence:
    """Congruence of every neuron in ``layers`` with every token, kept as top-2 lists and moments.

    Works block by block (``neuron_chunk`` neurons of one layer x ``token_chunk`` tokens), so
    memory beyond the inputs is a few blocks plus the per-token and per-neuron results.
    ``moments`` (default: for the cosine, which the census uses) also keeps each neuron's
    power sums over the vocabulary; without them ``power_sums`` is NaN.
    """
    check_measure(measure)
    n_layers, d_mlp, d_model = W_out.shape
    if U.shape[0] != d_model:
        raise ValueError(f"W_out rows have {d_model} entries but U has {U.shape[0]} rows; pass U as [d_model, vocab]")
    if neuron_chunk < 1 or token_chunk < 1:
        raise ValueError("neuron_chunk and token_chunk must be positive")
    layers = check_layers(layers, n_layers)
    moments = measure == "cosine" if moments is None else bool(moments)
    d_vocab = U.shape[1]
    U = U.float()
    if measure == "cosine":
        U = _unit_columns(U)
    n_neurons = n_layers * d_mlp

    device = U.device
    token_values = torch.full((d_vocab, 2), -torch.inf, device=device)
    token_neurons = torch.full((d_vocab, 2), -1, dtype=torch.long, device=device)
    neuron_values = torch.full((n_neurons, 2), torch.nan, device=device)
    neuron_tokens = torch.full((n_neurons, 2), -1, dtype=torch.long, device=device)
    power_sums = torch.full((n_neurons, 4), torch.nan, dtype=torch.float64, device=device)

    column_sums = U.sum(1).double()
    buffers: dict[tuple[int, int], Tensor] = {}
    for layer in layers:
        for n0 in range(0, d_mlp, neuron_chunk):
            n1 = min(n0 + neuron_chunk, d_mlp)
            rows, flat0 = n1 - n0, layer * d_mlp + n0
            W = W_out[layer, n0:n1].to(device=device, dtype=torch.float32)
            if measure == "cosine":
                W = _unit_rows(W)
            nv = neuron_values[flat0 : flat0 + rows].fill_(-torch.inf)
            nt = neuron_tokens[flat0 : flat0 + rows]
            sums = power_sums[flat0 : flat0 + rows]
            if moments:
                sums.zero_()
                sums[:, 0] = W.double() @ column_sums  # sum over tokens of w . u_t, exactly
            for t0 in range(0, d_vocab, token_chunk):
                t1 = min(t0 + token_chunk, d_vocab)
                cols = t1 - t0
                if (rows, cols) not in buffers:  # rows padded with -inf to a multiple of GROUP
                    buffers[(rows, cols)] = torch.empty(2, -(-rows // GROUP) * GROUP, cols, device=device)
                    buffers[(rows, cols)][0, rows:] = -torch.inf
                powers = buffers[(rows, cols)]
                P = torch.mm(W, U[:, t0:t1], out=powers[0, :rows])
                if moments:
                    _add_power_sums(powers[:, :rows], sums)
                values, at_rows = _column_top2(powers[0])
                _merge_pairs(token_values[t0:t1], token_neurons[t0:t1], values, at_rows + flat0)
                values, at_cols = _row_top2(P)
                _merge_pairs(nv, nt, values, at_cols + t0)
    return Congruence(
        matrix=matrix,
        measure=measure,
        n_layers=n_layers,
        d_mlp=d_mlp,
        d_vocab=d_vocab,
        layers=layers,
        token_values=token_values.cpu(),
        token_neurons=token_neurons.cpu(),
        neuron_values=neuron_values.cpu(),
        neuron_tokens=neuron_tokens.cpu(),
        power_sums=power_sums.cpu(),
    )


def search(
    model: TransformerBridge,
    matrix: str = "W_U",
    measure: str = "dot",
    layers: Sequence[int] | None = None,
    cache: str | Path | None = None,
    moments: bool | None = None,
    **chunks,
) -> Congruence:
    """:func:`scan` on the model's own matrices; with ``cache`` (a folder), reuse a saved pass.

    A cached result (``helpers.core.cache``) is keyed by a hash of every weight tensor
    (``weights_fingerprint``), the matrix, measure, layers and chunking, so a retrained model
    never reads a stale file and a damaged one is computed again.
    """
    check_matrix(matrix)
    check_measure(measure)
    layers = check_layers(layers, model.cfg.n_layers)
    moments = measure == "cosine" if moments is None else bool(moments)

    def compute() -> Congruence:
        result = scan(output_weights(model), readout(model, matrix), measure, layers, matrix=matrix, moments=moments, **chunks)
        result.meta["model"] = model.cfg.model_name
        return result

    sources = {"version": CONGRUENCE_VERSION, "weights": weights_fingerprint(model) if cache is not None else None, "matrix": matrix,
               "measure": measure, "layers": layers, "moments": moments, "chunks": chunks}
    return cached(None if cache is None else Path(cache), "congruence", sources, compute, Congruence.encode, Congruence.decode)
