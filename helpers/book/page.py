"""What every page does first: load the model, tokenise its prompts, choose its neuron, say so.

``setup_page(...)`` is the one call a page makes after its parameters cell. It returns a
:class:`Page` and displays the header that names the model and the parameters.

The neuron of a page. Every page that studies "the neuron" takes ``layer`` and ``neuron``,
both ``"auto"`` by default, and :func:`choose_neuron` resolves them the same way everywhere:

- ``layer="auto"``: the MLP layer whose output, patched from the clean run into the corrupted
  run at the last position, recovers most of the logit difference (layer patching);
- ``neuron="auto"``: the neuron of that layer that neuron patching ranks first, restored at
  every position as in the study, on the page's own prompts;
- ``neuron="L3N73"``: that neuron (its layer follows; a different ``layer`` is an error).

The choice is computed once and kept on disk under ``.cache/choices``, keyed by a hash of
every weight tensor, the prompts' tokens and the two specs, so the pages agree and a
retrained model gets a fresh choice.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformer_lens.model_bridge import TransformerBridge

from helpers.book.display import in_book, page_header
from helpers.core.checks import check_layer
from helpers.core.files import atomic_write
from helpers.core.models import load_model, weights_fingerprint
from helpers.core.names import Neuron
from helpers.core.prompts import STUDY_CLEAN, STUDY_CORRUPTED, Contrast, make_contrast
from helpers.methods.layer_patching import layer_patching
from helpers.methods.neuron_patching import neuron_patching
from helpers.paper import Study, is_paper_model, study

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


@dataclass
class Page:
    """One page's model, prompt pair, neuron choice (if it studies a neuron) and the study."""

    model: TransformerBridge
    contrast: Contrast
    choice: NeuronChoice | None
    paper: Study
    on_paper_model: bool

    @property
    def neuron(self) -> Neuron:
        if self.choice is None:
            raise ValueError("this page was set up without a neuron; pass layer= and neuron= to setup_page")
        return self.choice.neuron

    @property
    def model_name(self) -> str:
        return self.model.cfg.model_name

    @property
    def progress(self) -> bool:
        """Show progress bars of long passes: yes in a notebook, no in the book's HTML."""
        return not in_book()


def setup_page(
    model_name: str,
    device: str = "cpu",
    dtype: str = "float32",
    seed: int = 0,
    clean_prompt: str = STUDY_CLEAN,
    corrupted_prompt: str = STUDY_CORRUPTED,
    target: str = " an",
    other: str = " a",
    layer: int | str | None = None,
    neuron: str | None = None,
    **shown,
) -> Page:
    """Load the model, tokenise the prompts, resolve ``layer``/``neuron`` and show the header.

    ``layer`` and ``neuron`` are None on pages that study no single neuron. ``shown`` are
    further parameters to list in the header.
    """
    torch.manual_seed(seed)
    model = quietly(load_model, model_name, device=device, dtype=dtype)
    contrast = make_contrast(model, clean_prompt, corrupted_prompt, target, other)
    choice = None if layer is None and neuron is None else choose_neuron(model, contrast, layer or AUTO, neuron or AUTO)
    header = dict(clean_prompt=clean_prompt, corrupted_prompt=corrupted_prompt, target=target, other=other)
    if choice is not None:
        header.update(layer=f"{layer} ({choice.layer})" if layer == AUTO else layer, neuron=f"{neuron} ({choice.neuron})" if neuron == AUTO else neuron)
    page_header(model, **header, **shown)
    return Page(model=model, contrast=contrast, choice=choice, paper=study(), on_paper_model=is_paper_model(model_name))


def quietly(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with its progress bars, prints and warnings kept off the page;
    an exception still propagates with its message."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def choose_neuron(
    model: TransformerBridge, contrast: Contrast, layer: int | str = AUTO, neuron: str = AUTO, cache: Path | None = CHOICE_CACHE
) -> NeuronChoice:
    """Resolve a page's ``layer`` and ``neuron`` parameters (see the module docstring)."""
    cfg = model.cfg
    if neuron != AUTO:
        given = Neuron.of(neuron).check(cfg.n_layers, cfg.d_mlp)
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
