"""The neuron of a page (or of a model in the sweep), chosen the same way everywhere.

Every page that studies "the neuron" takes ``layer`` and ``neuron``, both ``"auto"`` by
default, and :func:`choose_neuron` resolves them:

- ``layer="auto"``: the MLP layer whose output, patched from the clean run into the corrupted
  run at the last position, recovers most of the logit difference (layer patching);
- ``neuron="auto"``: the neuron of that layer that neuron patching ranks first, restored at
  every position as in the study;
- ``neuron="L3N73"``: that neuron (its layer follows; a different ``layer`` is an error).

Both "auto" choices are made on the prompts given: one pair (the study's way) or a prompt set
of selection pairs, where the means over pairs decide and :func:`bootstrap_stability` says
how often resamples of those pairs make the same choice. :func:`held_out` measures the
chosen neuron on other pairs; :func:`layer_ranks` places it in its layer by necessity and by
sufficiency.

The choice is computed once and kept on disk under ``.cache/choices`` (``helpers.core.cache``),
keyed by a hash of every weight tensor, the prompts' tokens and the two specs, so the pages
and the sweep agree and a retrained model gets a fresh choice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.checks import check_layer, check_neuron
from helpers.core.cache import cached
from helpers.core.models import weights_fingerprint
from helpers.core.names import Neuron
from helpers.core.prompts import Contrast
from helpers.core.stats import Interval, bootstrap_means, interval
from helpers.methods.congruence import token_congruence
from helpers.methods.layer_patching import layer_patching
from helpers.methods.neuron_patching import neuron_patching
from helpers.methods.patching import best_layer, over_pairs

CHOICE_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "choices"
AUTO = "auto"
STABLE = 0.9  # a choice is stable when at least this share of resamples of its pairs makes it
RESAMPLES = 1000  # bootstrap resamples of the selection pairs for the choice's stability
CHOICE_VERSION = 2  # part of the cache key: raise it when the way of choosing changes


@dataclass(frozen=True)
class NeuronChoice:
    """The page's neuron, its layer, and how each was chosen (phrases for the prose).

    ``n_selection`` is how many prompt pairs it was chosen on; ``stability`` the share of
    bootstrap resamples of those pairs that choose the same layer and neuron (``None`` when it
    was given, or chosen on one pair, which cannot be resampled).
    """

    neuron: Neuron
    layer: int
    layer_source: str
    neuron_source: str
    n_selection: int = 1
    stability: float | None = None

    @property
    def auto(self) -> bool:
        """Whether the neuron was found by patching rather than given."""
        return self.neuron_source.startswith("ranked first")


def bootstrap_stability(
    layer_values: Float[Tensor, "pair layer"] | None, neuron_values: Float[Tensor, "pair neuron"], chosen_layer: int, chosen: int,
    resamples: int = RESAMPLES, seed: int = 0,
) -> float:
    """The share of bootstrap resamples of the pairs whose mean recovery ranks the same layer
    first (when ``layer_values`` is given; a NaN cell is left out of its layer's mean, as in the
    choice) and the same neuron first within it; every quantity sees the same draws
    (:func:`helpers.core.stats.bootstrap_means`)."""
    same = bootstrap_means(neuron_values.T, resamples, seed).argmax(0) == chosen  # [resample]
    if layer_values is not None:
        present = ~layer_values.isnan()
        means = bootstrap_means(layer_values.nan_to_num(0).T, resamples, seed) / bootstrap_means(present.T.double(), resamples, seed)
        same &= means.nan_to_num(nan=-torch.inf).argmax(0) == chosen_layer  # [layer, resample] -> [resample]
    return float(same.double().mean())


def choose_neuron(
    model: TransformerBridge, prompts: Contrast, layer: int | str = AUTO, neuron: str = AUTO, cache: Path | None = CHOICE_CACHE,
    resamples: int = RESAMPLES, seed: int = 0,
) -> NeuronChoice:
    """Resolve a page's ``layer`` and ``neuron`` parameters (see the module docstring) on
    ``prompts``, one pair or a prompt set (the means over its pairs decide)."""
    cfg = model.cfg
    if neuron != AUTO:
        given = check_neuron(model, neuron)
        if layer != AUTO and check_layer(layer, cfg.n_layers, "MLP layers") != given.layer:
            raise ValueError(f"neuron {given} is in layer {given.layer} but layer={layer!r} was given; set layer='auto' or layer={given.layer}")
        return NeuronChoice(given, given.layer, "the layer of the given neuron", "given as a parameter", n_selection=0)
    fixed_layer = None if layer == AUTO else check_layer(layer, cfg.n_layers, "MLP layers")
    n = prompts.n_pairs
    on = "this page's prompts" if n == 1 else f"{n} selection pairs, none of them measured on"

    def compute() -> NeuronChoice:
        layer_values = None
        if fixed_layer is None:
            mlp_out = over_pairs(lambda m, pair: layer_patching(m, pair, components=("mlp_out",))["mlp_out"], model, prompts)
            layer_values = mlp_out.values[:, :, -1]  # [pair, layer]: each MLP layer patched at the last position
            chosen_layer = best_layer(layer_values.nanmean(0, keepdim=True).T, 0)
            layer_source = "ranked first by layer patching" + ("" if n == 1 else f" (mean over {n} selection pairs)")
        else:
            chosen_layer, layer_source = fixed_layer, "given as a parameter"
        neuron_values = over_pairs(neuron_patching, model, prompts, layer=chosen_layer, positions="all").values  # [pair, d_mlp]
        top = int(neuron_values.mean(0).argmax())
        stability = bootstrap_stability(layer_values, neuron_values, chosen_layer, top, resamples, seed) if n > 1 else None
        return NeuronChoice(Neuron(chosen_layer, top), chosen_layer, layer_source,
                            f"ranked first by neuron patching of layer {chosen_layer} on {on}", n, stability)

    sources = {
        "version": CHOICE_VERSION, "weights": weights_fingerprint(model), "layer": fixed_layer, "resamples": resamples, "seed": seed,
        "prompts": [prompts.clean.tolist(), prompts.corrupted.tolist(), prompts.target, prompts.other],
    }
    return cached(
        cache, "choice", sources, compute,
        encode=lambda c: ({}, {**asdict(c), "neuron": str(c.neuron)}),
        decode=lambda _, saved: NeuronChoice(**{**saved, "neuron": check_neuron(model, saved["neuron"])}),
    )


def most_congruent_neuron(model: TransformerBridge, target: str, spec: str = "auto") -> Neuron:
    """``spec`` as a checked neuron, or for ``"auto"`` the neuron most congruent with
    ``target`` through ``W_U`` over the whole model."""
    if spec != "auto":
        return check_neuron(model, spec)
    column = token_congruence(model, target, "W_U")
    return Neuron.from_flat(int(column.flatten().argmax()), column.shape[1])


@dataclass(frozen=True)
class HeldOut:
    """A chosen neuron measured on evaluation pairs it was not chosen on.

    ``recovery`` and ``whole_layer``: the neuron's and its whole layer's recovery, each restored
    at every position, over the evaluation pairs, as intervals; ``rank``:
    the neuron's rank among its layer's neurons by mean recovery there (1 = first);
    ``runner_up``: the best other neuron's mean recovery.
    """

    neuron: Neuron
    n_evaluation: int
    recovery: Interval
    whole_layer: Interval
    rank: int
    runner_up: float


def held_out(model: TransformerBridge, evaluation: Contrast, neuron: Neuron) -> HeldOut:
    """Measure ``neuron`` (chosen elsewhere) on the ``evaluation`` pairs: every neuron of its
    layer is restored at every position, as in the study."""
    runs = over_pairs(neuron_patching, model, evaluation, layer=neuron.layer, positions="all")
    values = runs.values  # [pair, d_mlp]
    means = values.mean(0)
    others = means.clone()
    others[neuron.index] = -torch.inf
    return HeldOut(
        neuron=neuron, n_evaluation=evaluation.n_pairs, recovery=interval(values[:, neuron.index]),
        whole_layer=interval(torch.tensor([r.whole_layer for r in runs.results])),
        rank=int((means > means[neuron.index]).sum()) + 1, runner_up=float(others.max()),
    )


@dataclass(frozen=True)
class LayerRanks:
    """Where a neuron ranks among its layer's neurons, each patched alone at every position over
    a prompt set: ``necessity`` (corrupted activation into the clean run: share lost) and
    ``sufficiency`` (clean activation into the corrupted run: share recovered), rank 1 = largest
    mean, out of ``n_neurons``; ``*_value``: the neuron's mean."""

    neuron: Neuron
    n_neurons: int
    necessity_rank: int
    necessity_value: float
    sufficiency_rank: int
    sufficiency_value: float
    n_pairs: int = 1


def layer_ranks(model: TransformerBridge, pairs: Contrast, neuron: Neuron) -> LayerRanks:
    """The neuron's necessity and sufficiency ranks in its layer over ``pairs``."""
    ranks, values = {}, {}
    for direction in ("necessity", "sufficiency"):
        means = over_pairs(neuron_patching, model, pairs, layer=neuron.layer, positions="all", direction=direction).values.mean(0)
        ranks[direction] = int((means > means[neuron.index]).sum()) + 1
        values[direction] = float(means[neuron.index])
    return LayerRanks(neuron, model.cfg.d_mlp, ranks["necessity"], values["necessity"], ranks["sufficiency"], values["sufficiency"], pairs.n_pairs)
