"""What every page does first: load the model, tokenise its prompts, choose its neuron, say so.

``setup_page(...)`` is the one call a page makes after its parameters cell. It returns a
:class:`Page` and displays the header that names the model and the parameters.

The neuron of a page is resolved by :func:`helpers.methods.choice.choose_neuron`.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass

import torch
from transformer_lens.model_bridge import TransformerBridge

from helpers.book.display import in_book, page_header
from helpers.core.models import load_model
from helpers.core.names import Neuron
from helpers.core.prompts import STUDY_CLEAN, STUDY_CORRUPTED, Contrast, make_contrast
from helpers.methods.choice import AUTO, CHOICE_CACHE, NeuronChoice, choose_neuron  # noqa: F401 (pages import them from here)
from helpers.paper import Study, is_paper_model, study


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
