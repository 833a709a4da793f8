"""The neuron of a page (or of a model in the sweep), chosen the same way everywhere.

Every page that studies "the neuron" takes ``layer`` and ``neuron``, both ``"auto"`` by
default, and :func:`choose_neuron` resolves them:

- ``layer="auto"``: the MLP layer whose output, patched from the clean run into the corrupted
  run at the last position, recovers most of the logit difference (layer patching);
- ``neuron="auto"``: the neuron of that layer that neuron patching ranks first, restored at
  every position as in the study, on the page's own prompts;
- ``neuron="L3N73"``: that neuron (its layer follows; a different ``layer`` is an error).

The choice is computed once and kept on disk under ``.cache/choices``, keyed by a hash of
every weight tensor, the prompts' tokens and the two specs, so the pages and the sweep agree
and a retrained model gets a fresh choice.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from transformer_lens.model_bridge import TransformerBridge

from helpers.core.checks import check_layer, check_neuron
from helpers.core.files import atomic_write
from helpers.core.models import weights_fingerprint
from helpers.core.names import Neuron
from helpers.core.prompts import Contrast
from helpers.methods.congruence import token_congruence
from helpers.methods.layer_patching import layer_patching
from helpers.methods.neuron_patching import neuron_patching

CHOICE_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "choices"
AUTO = "auto"


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
    path = None
    if cache is not None:
        key = hashlib.sha256(
            json.dumps([contrast.clean.tolist(), contrast.corrupted.tolist(), contrast.target, contrast.other, fixed_layer]).encode()
        ).hexdigest()[:16]
        path = Path(cache) / f"choice-{weights_fingerprint(model)}-{key}.json"
        if path.exists():
            saved = json.loads(path.read_text())
            return NeuronChoice(Neuron.parse(saved["neuron"]), saved["layer"], saved["layer_source"], saved["neuron_source"])
    if fixed_layer is None:
        chosen_layer = layer_patching(model, contrast, components=("mlp_out",))["mlp_out"].best_layer()
        layer_source = "ranked first by layer patching"
    else:
        chosen_layer, layer_source = fixed_layer, "given as a parameter"
    top = neuron_patching(model, contrast, chosen_layer, "all").top_neuron
    choice = NeuronChoice(top, chosen_layer, layer_source, f"ranked first by neuron patching of layer {chosen_layer} on this page's prompts")
    if path is not None:
        atomic_write(path, json.dumps({**asdict(choice), "neuron": str(top)}, indent=1, sort_keys=True).encode())
    return choice


def most_congruent_neuron(model: TransformerBridge, target: str, spec: str = "auto") -> Neuron:
    """``spec`` as a checked neuron, or for ``"auto"`` the neuron most congruent with
    ``target`` through ``W_U`` over the whole model."""
    if spec != "auto":
        return check_neuron(model, spec)
    column = token_congruence(model, target, "W_U")
    return Neuron.from_flat(int(column.flatten().argmax()), column.shape[1])
