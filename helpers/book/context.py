"""The parameters every page shares, defined once: groups, their defaults, and the seeds.

A page declares only its own knobs in its parameters cell, plus ``context = {}``; the build
(:mod:`helpers.book.build`) fills ``context`` from ``profiles.yaml`` and ``--set`` with the
values of the groups the page names in its ``setup_page(context, "neuron", ...)`` call:

========== ========================================================= =====================
group      parameters                                                pages
========== ========================================================= =====================
model      ``model_name``, ``device``, ``dtype``, ``seed``            every page
prompts    ``clean_prompt``, ``corrupted_prompt``, ``target``,        every page
           ``other``
neuron     ``layer``, ``neuron`` (``"auto"``: chosen by patching),     pages on one neuron
           ``selection_pairs`` (the pairs it is chosen on)
corpus     ``dataset``, ``n_docs``, ``batch_size``                    pages that scan text
prompt_set ``n_pairs``                                               pages over many pairs
========== ========================================================= =====================

Run by hand, a page with ``context = {}`` uses these defaults; ``context = {"model_name":
"gpt2-large"}`` changes one. ``seed`` is split into one seed per purpose (:class:`Seeds`), so
that drawing other prompt pairs does not change which documents are scanned.
"""
from __future__ import annotations

from dataclasses import dataclass

from helpers.core.prompts import STUDY_CLEAN, STUDY_CORRUPTED

AUTO = "auto"
GROUPS: dict[str, dict[str, object]] = {
    "model": {"model_name": "toy", "device": "cpu", "dtype": "float32", "seed": 0},
    "prompts": {"clean_prompt": STUDY_CLEAN, "corrupted_prompt": STUDY_CORRUPTED, "target": " an", "other": " a"},
    "neuron": {"layer": AUTO, "neuron": AUTO, "selection_pairs": 16},
    "corpus": {"dataset": "toy", "n_docs": 400, "batch_size": 8},
    "prompt_set": {"n_pairs": 48},
}
ALWAYS = ("model", "prompts")
GROUP_OF = {name: group for group, names in GROUPS.items() for name in names}


class ContextError(ValueError):
    """A page's context names an unknown group or parameter; the message says which exist."""


def check_groups(groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``ALWAYS`` plus ``groups`` (each known, each once), in the order of :data:`GROUPS`."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ContextError(f"unknown parameter group(s) {', '.join(map(repr, unknown))}: the groups are {', '.join(GROUPS)}")
    wanted = set(ALWAYS) | set(groups)
    return tuple(g for g in GROUPS if g in wanted)


def resolve_context(given: dict, groups: tuple[str, ...] | list[str]) -> dict[str, object]:
    """Every parameter of ``groups`` (and :data:`ALWAYS`): ``given``'s value, else the default.

    A name in ``given`` that belongs to no group, or to a group the page does not use, is a
    one-line error (a value the page would silently ignore).
    """
    groups = check_groups(groups)
    stray = [name for name in given if GROUP_OF.get(name) not in groups]
    if stray:
        name = stray[0]
        where = f"it belongs to the group {GROUP_OF[name]!r}, which this page does not use" if name in GROUP_OF else "no group has it"
        raise ContextError(f"context parameter {name!r} is not used here: {where} (this page uses {', '.join(groups)})")
    return {name: given.get(name, default) for group in groups for name, default in GROUPS[group].items()}


@dataclass(frozen=True)
class Seeds:
    """One seed per purpose, all derived from the page's ``seed``.

    ``torch``: torch's generator before the page runs; ``pairs``: which study-like pairs are
    drawn; ``corpus``: the order of the scanned documents; ``reference``: the documents of a
    reference corpus (mean and resample ablation), another draw than the scan's; ``draws``:
    random neurons, tokens, documents and resamples a page shows beside its own; ``folds``:
    the probes' cross-validation folds; ``natural``: the held-out documents whose natural
    positions an effect is measured at.
    """

    torch: int
    pairs: int
    corpus: int
    reference: int
    draws: int
    folds: int
    natural: int

    @classmethod
    def of(cls, seed: int) -> "Seeds":
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ContextError(f"seed must be an integer, got {seed!r}")
        return cls(torch=seed, pairs=seed, corpus=seed, reference=seed + 1, draws=seed, folds=seed, natural=seed + 2)
