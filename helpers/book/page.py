"""What every page does first: resolve its context, load the model, choose its neuron, say so.

``page = setup_page(context, "neuron", "corpus", top_k=top_k)`` is the one call a page makes
after its parameters cell. ``context`` holds the shared parameters the build injected (see
:mod:`helpers.book.context`); the further names are the groups the page uses beyond the model
and the prompts; the keywords are the page's own knobs, listed in the header. It returns a
:class:`Page` and displays the header: the model, every parameter, how each ``"auto"`` was
resolved.

The neuron is resolved by :func:`helpers.methods.choice.choose_neuron` on ``selection_pairs``
study-like pairs (0: on the page's own pair, as the study did); the prompt set a page measures
on starts with the page's own pair and holds none of the selection pairs
(:func:`helpers.methods.prompt_sets.selection_and_evaluation`), so no causal number is measured
on the pairs that chose the neuron.
A knob whose value can be ``"auto"`` (:data:`AUTO_KNOBS`) is resolved here, once, by the
function its page module provides.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import logging
import sys
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import torch
from transformer_lens.model_bridge import TransformerBridge

from helpers.book.context import AUTO, Seeds, check_groups, resolve_context
from helpers.book.display import glue, in_book, page_header
from helpers.core.model_folder import ModelFolderWarning
from helpers.core.models import load_model, weights_fingerprint
from helpers.core.names import Neuron
from helpers.core.prompts import Contrast, make_contrast
from helpers.methods.choice import CHOICE_CACHE, NeuronChoice, choose_neuron  # noqa: F401 (pages import them from here)
from helpers.methods.prompt_sets import selection_and_evaluation
from helpers.paper import Study, is_paper_model, study

# knob -> "module:function(page, value) -> (resolved value, how "auto" was resolved)"; each
# module is one the page using the knob imports anyway (a test checks it), so the page's
# fingerprint covers the resolver.
AUTO_KNOBS = {
    "layers": "helpers.book.neuroscope:resolve_layers",
    "models": "helpers.book.summaries.sweep:resolve_models",
    "congruent_neuron": "helpers.book.summaries.congruence:resolve_congruent_neuron",
}


@dataclass
class Page:
    """One page's model, prompt pair, neuron choice (if it uses the neuron group), its context,
    seeds, corpus, prompt-set size, resolved knobs and the study."""

    model: TransformerBridge
    contrast: Contrast
    choice: NeuronChoice | None
    paper: Study
    on_paper_model: bool
    context: dict
    groups: tuple[str, ...]
    seeds: Seeds
    knobs: dict = field(default_factory=dict)

    @property
    def neuron(self) -> Neuron:
        if self.choice is None:
            raise ValueError("this page was set up without a neuron; name the group: setup_page(context, 'neuron', ...)")
        return self.choice.neuron

    @property
    def model_name(self) -> str:
        return self.model.cfg.model_name

    @property
    def target(self) -> str:
        return self.context["target"]

    @property
    def other(self) -> str:
        return self.context["other"]

    @property
    def progress(self) -> bool:
        """Show progress bars of long passes: yes in a notebook, no in the book's HTML."""
        return not in_book()

    def _group(self, group: str) -> None:
        if group not in self.groups:
            raise ValueError(f"this page was set up without the {group!r} group; name it: setup_page(context, {group!r}, ...)")

    @property
    def dataset(self) -> str:
        """The corpus the page scans (``dataset`` of the corpus group)."""
        self._group("corpus")
        return self.context["dataset"]

    @property
    def corpus(self) -> dict:
        """Keywords of a corpus pass: ``n_docs``, ``batch_size``, the corpus seed, progress bars."""
        self._group("corpus")
        return dict(n_docs=self.context["n_docs"], batch_size=self.context["batch_size"], seed=self.seeds.corpus, progress=self.progress)

    @cached_property
    def pairs(self) -> Contrast:
        """The page's prompt set: ``n_pairs`` study-like pairs, pair 0 the page's own pair."""
        self._group("prompt_set")
        return self.prompt_set(self.context["n_pairs"])

    def prompt_set(self, n_pairs: int) -> Contrast:
        """``n_pairs`` study-like pairs on the page's pair, none of them a pair the neuron was
        chosen on (the first ``n`` of a larger set are the set of ``n``)."""
        return page_sets(self.model, self.context, self.seeds, n_pairs)[1]


def page_sets(model: TransformerBridge, values: dict, seeds: Seeds, n_evaluation: int) -> tuple[Contrast | None, Contrast]:
    """The pairs a page chooses its neuron on (``None``: on its own pair) and ``n_evaluation``
    pairs it measures on, disjoint (:func:`helpers.methods.prompt_sets.selection_and_evaluation`)."""
    first = (values["clean_prompt"], values["corrupted_prompt"])
    n_selection = values.get("selection_pairs", 0) if values.get("neuron", AUTO) == AUTO else 0
    return selection_and_evaluation(model, n_selection, n_evaluation, seeds.pairs, values["target"], values["other"], first)


def setup_page(context: dict | None = None, *groups: str, **knobs) -> Page:
    """Resolve the context of ``groups``, load the model, tokenise the prompts, resolve the
    neuron and every ``"auto"`` knob, and show the header (see the module docstring)."""
    groups = check_groups(groups)
    values = resolve_context(dict(context or {}), groups)
    seeds = Seeds.of(values["seed"])
    torch.manual_seed(seeds.torch)
    model = quietly(load_model, values["model_name"], device=values["device"], dtype=values["dtype"])
    contrast = make_contrast(model, values["clean_prompt"], values["corrupted_prompt"], values["target"], values["other"])
    if not contrast.diff_positions:
        raise ValueError("clean_prompt and corrupted_prompt are the same tokens: a page compares two prompts that differ in one word; "
                         "change the word of corrupted_prompt")
    header = {k: v for k, v in values.items() if k not in ("model_name", "device", "dtype")}
    choice = None
    if "neuron" in groups:
        selection = page_sets(model, values, seeds, 1)[0] if values["neuron"] == AUTO else None
        choice = choose_neuron(model, contrast if selection is None else selection, values["layer"], values["neuron"], seed=seeds.draws)
        for name, resolved in (("layer", choice.layer), ("neuron", choice.neuron)):
            if values[name] == AUTO:
                header[name] = f"auto ({resolved})"
        if choice.stability is not None:
            header["selection_pairs"] = f"{values['selection_pairs']} (the choice's stability over resamples of them: {choice.stability:.2f})"
    page = Page(model=model, contrast=contrast, choice=choice, paper=study(), on_paper_model=is_paper_model(values["model_name"]),
                context=values, groups=groups, seeds=seeds)
    for name, value in knobs.items():
        header[name] = value
        if name in AUTO_KNOBS:
            module, function = AUTO_KNOBS[name].split(":")
            resolved, how = getattr(importlib.import_module(module), function)(page, value)
            header[name] = f"auto ({how})" if value == AUTO else value
            value = resolved
        page.knobs[name] = value
    page_header(model, **header)
    glue(model_fingerprint=weights_fingerprint(model))  # for the build's results file
    if choice is not None:
        glue(chosen_neuron=str(choice.neuron), chosen_how=f"{choice.layer_source}; {choice.neuron_source}",
             chosen_stability="" if choice.stability is None else f"{choice.stability:.3f}")
    return page


def quietly(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with its progress bars, prints and library warnings kept off the
    page. What matters still shows: a warning about the model folder
    (:class:`ModelFolderWarning`), the package's own logged warnings (a damaged cache entry
    named and recomputed), and an exception with its message."""
    shown = logging.StreamHandler(sys.stderr)  # the page's stderr, taken before it is redirected
    shown.setLevel(logging.WARNING)
    package = logging.getLogger("helpers")
    package.addHandler(shown)
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("always")
            result = fn(*args, **kwargs)
    finally:
        package.removeHandler(shown)
    for warning in caught:
        if issubclass(warning.category, ModelFolderWarning):
            warnings.warn(warning.message, warning.category, stacklevel=2)
    return result
