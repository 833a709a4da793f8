"""The neuron of a page (or of a model in the sweep), chosen the same way everywhere.

Every page that studies "the neuron" takes ``layer`` and ``neuron``, both ``"auto"`` by
default, and :func:`choose_neuron` resolves them:

- ``layer="auto"``: the MLP layer whose output, patched from the clean run into the corrupted
  run at the last position, recovers most of the logit difference (layer patching);
- ``neuron="auto"``: the neuron of that layer that neuron patching ranks first, restored at
  every position as in the study, on the page's own prompts;
- ``neuron="L3N73"``: that neuron (its layer follows; a different ``layer`` is an error).

The choice is computed once and kept on disk under ``.cache/choices`` (``helpers.core.cache``),
keyed by a hash of every weight tensor, the prompts' tokens and the two specs, so the pages
and the sweep agree and a retrained model gets a fresh choice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from transformer_lens.model_bridge import TransformerBridge

from helpers.core.checks import check_layer, check_neuron
from helpers.core.cache import cached
from helpers.core.models import weights_fingerprint
from helpers.core.names import Neuron
from helpers.core.prompts import Contrast
from helpers.methods.congruence import token_congruence
from helpers.methods.layer_patching import layer_patching
from helpers.methods.neuron_patching import neuron_patching

CHOICE_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "choices"
AUTO = "auto"
CHOICE_VERSION = 1  # part of the cache key: raise it when the way of choosing changes


@dataclass(frozen=True)
class NeuronChoice:
    """The page's neuron, its layer, and how each was chosen (phrases for the prose)."""

    neuron: Neuron
    layer: int
    layer_source: str
    neuron_source: str

    @property
    def auto(self) -> bool:
        """Whether the neuron was found by patching rather than given."""
        return self.neuron_source.startswith("ranked first")


def choose_neuron(
    model: TransformerBridge, contrast: Contrast, layer: int | str = AUTO, neuron: str = AUTO, cache: Path | None = CHOICE_CACHE
) -> NeuronChoice:
    """Resolve a page's ``layer`` and ``neuron`` parameters (see the module docstring)."""
    cfg = model.cfg
    if neuron != AUTO:
        given = check_neuron(model, neuron)
        if layer != AUTO and check_layer(layer, cfg.n_layers, "MLP layers") != given.layer:
            raise ValueError(f"neuron {given} is in layer {given.layer} but layer={layer!r} was given; set layer='auto' or layer={given.layer}")
        return NeuronChoice(given, given.layer, "the layer of the given neuron", "given as a parameter")
    fixed_layer = None if layer == AUTO else check_layer(layer, cfg.n_layers, "MLP layers")

    def compute() -> NeuronChoice:
        if fixed_layer is None:
            chosen_layer = layer_patching(model, contrast, components=("mlp_out",))["mlp_out"].best_layer()
            layer_source = "ranked first by layer patching"
        else:
            chosen_layer, layer_source = fixed_layer, "given as a parameter"
        top = neuron_patching(model, contrast, chosen_layer, "all").top_neuron
        return NeuronChoice(top, chosen_layer, layer_source, f"ranked first by neuron patching of layer {chosen_layer} on this page's prompts")

    sources = {
        "version": CHOICE_VERSION, "weights": weights_fingerprint(model), "layer": fixed_layer,
        "prompts": [contrast.clean.tolist(), contrast.corrupted.tolist(), contrast.target, contrast.other],
    }
    return cached(
        cache, "choice", sources, compute,
        encode=lambda c: ({}, {**asdict(c), "neuron": str(c.neuron)}),
        decode=lambda _, saved: NeuronChoice(check_neuron(model, saved["neuron"]), saved["layer"], saved["layer_source"], saved["neuron_source"]),
    )


def most_congruent_neuron(model: TransformerBridge, target: str, spec: str = "auto") -> Neuron:
    """``spec`` as a checked neuron, or for ``"auto"`` the neuron most congruent with
    ``target`` through ``W_U`` over the whole model."""
    if spec != "auto":
        return check_neuron(model, spec)
    column = token_congruence(model, target, "W_U")
    return Neuron.from_flat(int(column.flatten().argmax()), column.shape[1])
