"""What the patching family shares: one result type, one direction switch, one metric.

Activation patching runs one prompt (the *base* run), overwrites some activations with their
values on the other prompt (the *source* run), and reads how far the logit difference
``logit(target) - logit(other)`` at the last position moves towards the source run. Layer
patching (:mod:`helpers.methods.layer_patching`), neuron patching
(:mod:`helpers.methods.neuron_patching`) and its first-order estimate, attribution patching
(:mod:`helpers.methods.attribution`), are variants of that one idea and return one type,
:class:`PatchResult`.

Two directions, one convention. *Sufficiency* patches clean activations into the corrupted
run, as the original study did; *necessity* patches corrupted activations into the clean run.
Either way the value is the share of the way the patch moves the metric from the base run to
the source run::

    sufficiency:  (patched - corrupted) / (clean - corrupted)   1 = clean behaviour restored
    necessity:    (clean - patched) / (clean - corrupted)       1 = clean behaviour destroyed

so a large value marks an important cell in both, and 0 means the patch changed nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.checks import check_direction
from helpers.core.runs import base_and_source
from helpers.core.names import Neuron
from helpers.core.prompts import Contrast, check_single_pair, normalized_recovery
from helpers.core.stats import LEVEL, mean_interval

METHODS = ("activation", "attribution")


@dataclass(frozen=True)
class PatchResult:
    """One patching experiment: normalised effects, their baselines and what was patched.

    ``values`` has one axis per name in ``index_axis_names`` (TransformerLens' term):
    ``("layer", "pos")`` for a layer-patching map, ``("neuron",)`` for the neurons of one
    layer (``indices`` holds their indices, ``layer`` the layer), ``("layer", "neuron")``
    for every neuron of the model. ``activation_name`` is the patched activation
    (``resid_pre``, ``attn_out``, ``mlp_out``, or ``mlp_post`` for neurons); ``positions``
    says where it was patched (``each`` for a map with one cell per position, ``last`` or
    ``all``); ``method`` is ``activation`` (exact) or ``attribution`` (first-order estimate).
    ``whole_layer`` is the whole layer patched at once, where that was measured.
    """

    values: Float[Tensor, "..."]
    index_axis_names: tuple[str, ...]
    activation_name: str
    method: str
    direction: str
    positions: str
    clean_diff: float
    corrupted_diff: float
    layer: int | None = None
    indices: Int[Tensor, "neuron"] | None = None
    whole_layer: float | None = None
    engine: str = ""

    @property
    def recovery(self) -> Float[Tensor, "..."]:
        """The normalised values (the name the neuron pages use)."""
        return self.values

    def neuron(self, k: int) -> Neuron:
        """The neuron behind entry ``k`` (flat index for a ``("layer", "neuron")`` result)."""
        if self.index_axis_names == ("neuron",):
            return Neuron(self.layer, int(self.indices[k]))
        if self.index_axis_names == ("layer", "neuron"):
            return Neuron.from_flat(int(k), self.values.shape[1])
        raise ValueError(f"a result indexed by {self.index_axis_names} has no neurons; patch neurons to rank them")

    def ranked(self, k: int, largest: bool = True) -> list[tuple[Neuron, float]]:
        """The ``k`` neurons with the largest (or smallest) values, with their values."""
        flat = self.values.flatten()
        top = flat.topk(min(k, flat.numel()), largest=largest)
        return [(self.neuron(i), v) for i, v in zip(top.indices.tolist(), top.values.tolist())]

    @property
    def top_neuron(self) -> Neuron:
        """The neuron with the largest value."""
        return self.ranked(1)[0][0]

    def value_of(self, neuron: Neuron) -> float:
        """This result's value for ``neuron`` (a one-line error if it was not patched)."""
        if self.index_axis_names == ("layer", "neuron"):
            return float(self.values[neuron.layer, neuron.index])
        hits = torch.nonzero(self.indices == neuron.index).flatten() if neuron.layer == self.layer else torch.zeros(0)
        if len(hits) == 0:
            raise ValueError(f"{neuron} was not patched in this result (layer {self.layer})")
        return float(self.values[int(hits[0])])

    def best_layer(self, position: int = -1) -> int:
        """For a ``("layer", "pos")`` map: the layer whose patch at ``position`` is largest."""
        return best_layer(self.values, position)


@dataclass(frozen=True)
class PatchSet:
    """One patching experiment repeated on every pair of a prompt set: one result per pair.

    ``values`` stacks them, ``[pair, ...]``; :meth:`summary` gives each cell's mean over pairs
    and its 95% interval, ``[..., 3]``.
    """

    results: tuple[PatchResult, ...]

    @property
    def values(self) -> Float[Tensor, "pair ..."]:
        return torch.stack([r.values for r in self.results])

    @property
    def clean_diff(self) -> Float[Tensor, "pair"]:
        return torch.tensor([r.clean_diff for r in self.results])

    @property
    def corrupted_diff(self) -> Float[Tensor, "pair"]:
        return torch.tensor([r.corrupted_diff for r in self.results])

    def summary(self, level: float = LEVEL) -> Float[Tensor, "... 3"]:
        """(mean, low, high) of every cell over the pairs."""
        return mean_interval(self.values.movedim(0, -1), level)


def over_pairs(method: Callable[..., PatchResult], model: TransformerBridge, pairs: Contrast, **kwargs) -> PatchSet:
    """``method(model, pair, **kwargs)`` on every pair of a prompt set (:func:`make_pairs`).

    For the one-pair methods (layer, neuron and attribution patching, the logit lens): each
    pair's own patches are batched inside the method, so this loop over pairs adds no pass.
    """
    if pairs.clean.ndim != 2 or pairs.clean.shape != pairs.corrupted.shape:
        raise ValueError(
            f"a prompt set is clean and corrupted tokens of one shape [pairs, pos], got {tuple(pairs.clean.shape)} and "
            f"{tuple(pairs.corrupted.shape)}; build it with make_pairs (every prompt of one length)"
        )
    return PatchSet(tuple(method(model, pairs.pair(i), **kwargs) for i in range(pairs.n_pairs)))


def runs(contrast: Contrast, direction: str) -> tuple[Int[Tensor, "1 pos"], Int[Tensor, "1 pos"]]:
    """(tokens of the base run, tokens of the source run) of one pair
    (:func:`helpers.core.runs.base_and_source`)."""
    return base_and_source(check_single_pair(contrast), direction)


def recovery(patched: Tensor, clean: float, corrupted: float, direction: str) -> Tensor:
    """Normalised effect of a patch in the module's convention (1 = all the way to the source run)."""
    if check_direction(direction) == "sufficiency":
        return normalized_recovery(patched, clean, corrupted)
    return normalized_recovery(patched, corrupted, clean)


def logit_diff_direction(model: TransformerBridge, target: int, other: int) -> tuple[Float[Tensor, "d_model"], float]:
    """``W_U[:, target] - W_U[:, other]`` and ``b_U[target] - b_U[other]``."""
    return model.W_U[:, target] - model.W_U[:, other], float(model.b_U[target] - model.b_U[other])


def rows_patch_setter(rows: Tensor, positions: Tensor, values: Float[Tensor, "n d"]) -> Callable:
    """A hook that writes ``values[i]`` at ``(rows[i], positions[i])`` of its activation: one
    patch per row of a batch of copies of the base prompt."""

    def hook(activation: Tensor, hook) -> Tensor:
        patched = activation.clone()
        patched[rows, positions] = values.to(patched.dtype)
        return patched

    return hook


def best_layer(values: Float[Tensor, "layer pos"], position: int = -1) -> int:
    """The layer whose patch at ``position`` has the largest value (NaN rows ignored)."""
    if values.ndim != 2:
        raise ValueError(f"expected a [layer, pos] result, got shape {tuple(values.shape)}")
    n_pos = values.shape[1]
    if isinstance(position, bool) or not isinstance(position, int) or not -n_pos <= position < n_pos:
        raise ValueError(f"position {position!r} is out of range: the result has positions 0-{n_pos - 1} (or -1 for the last)")
    column = values[:, position]
    if torch.isnan(column).all():
        raise ValueError(f"no layer was patched at position {position}: the column is all NaN")
    return int(torch.nan_to_num(column, nan=-torch.inf).argmax())
