"""Summaries for the pages that read a corpus scan: max-activating examples and the correlation."""
from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.book.page import NeuronChoice
from helpers.core.names import Neuron, show_token
from helpers.core.stats import interval_cell
from helpers.paper import Study
from helpers.scan.statistics import MIN_BIN_COUNT, always_top_above
from helpers.scan.store import ScanResult

Row = tuple[str, object, object]


def neuron_source(choice: NeuronChoice, paper: Study, on_paper_model: bool) -> str:
    """How the page's neuron was chosen, and whether it is the study's."""
    phrase = choice.neuron_source
    if on_paper_model and choice.neuron == paper.neuron:
        phrase += f", the study's {paper.neuron}"
    return phrase


def scan_summary(result: ScanResult, choice: NeuronChoice, paper: Study, on_paper_model: bool) -> dict:
    """What the scan read and which neuron it recorded."""
    return dict(
        neuron=str(choice.neuron),
        neuron_source=neuron_source(choice, paper, on_paper_model),
        n_docs_read=result.n_docs,
        n_tokens=f"{result.n_tokens:,}",
        n_empty=result.n_empty_docs,
        max_tokens=result.params["max_tokens"],
    )


def examples_summary(examples: pd.DataFrame, target_id: int, target: str, n_tokens: int) -> dict:
    """How many of the top examples sit right before the target token, and their range."""
    followed = int((examples["next_token"] == target_id).sum())
    return dict(
        top_followed=followed,
        top_shown=len(examples),
        top_max=float(examples["activation"].iloc[0]),
        top_min=float(examples["activation"].iloc[-1]),
        examples_heading=f"**Its top {len(examples)} of {n_tokens:,} tokens, {followed} followed by {show_token(target)}**",
    )


def unselected_text_headings(doc: int, n_doc_tokens: int, n_random: int) -> dict[str, str]:
    """Headings of the two texts not chosen for the neuron: a random document, random tokens."""
    return dict(
        document=f"**Document {doc}** (its first {n_doc_tokens} tokens)",
        random_tokens=f"**{n_random} tokens drawn uniformly from the vocabulary** (after BOS)",
    )


def distribution_summary(result: ScanResult, neuron: Neuron, doc: int, doc_acts, noise_acts) -> dict:
    """The neuron over every scanned token, one random document and uniformly random tokens."""
    acts = result.activations(neuron).numpy()
    weakest_top = float(result.topk_values[-1, result.column(neuron)])
    return dict(
        median_act=float(np.median(acts)),
        share_positive=float((acts > 0).mean()),
        share_above_top=float((acts >= weakest_top).mean()),
        noise_max=float(noise_acts.max()),
        doc_max=float(doc_acts.max()),
        random_doc=doc,
    )


def bin_phrase(start: float | None) -> str:
    """``'every bin of at least 20 tokens from 3.8 upward'``, or ``'no range of activations'``."""
    if start is None:
        return f"no range of activations (counting bins of at least {MIN_BIN_COUNT} tokens)"
    return f"every bin of at least {MIN_BIN_COUNT} tokens from {start:.1f} upward"


def correlation_summary(real: pd.DataFrame, pseudo: pd.DataFrame, predictions: dict, level: float, paper: Study, neuron: Neuron, bin_width: float, n_tokens: int) -> dict:
    """The top-prediction curves: where they pass ``level``, and the shares at low and high activation."""
    negative = real[real["bin_start"] < 0]
    high_from = round(float(real["bin_start"].max()) / 2, 1)  # half the largest activation bin
    high = real[real["bin_start"] >= high_from]
    return dict(
        neuron=str(neuron),
        bin_width=bin_width,
        n_tokens=f"{n_tokens:,}",
        n_bins=len(real),
        level=level,
        real_above=bin_phrase(always_top_above(real, level)),
        pseudo_above=bin_phrase(always_top_above(pseudo, level)),
        paper_above=f"{always_top_above(paper_curve_frame(paper.an_curve), level):.1f}",
        high_from=high_from,
        high_prop_real=float(high["hits"].sum() / high["count"].sum()),
        high_count=f"{int(high['count'].sum()):,}",
        low_prop_real=float(negative["hits"].sum() / max(negative["count"].sum(), 1)),
        agreement=float((predictions["prediction"] == predictions["pseudo_prediction"]).float().mean()),
    )


def paper_curve_frame(bins: list[tuple[float, float]]) -> pd.DataFrame:
    """The study's curve (bin start, proportion) as a frame like the run's curves."""
    return pd.DataFrame(bins, columns=["bin_start", "proportion"])


def counts_summary(real: dict, pseudo: dict, paper: Study) -> dict:
    """Predicted against actual counts of the target, with the real and the pseudo-prediction."""
    return dict(
        predicted_real=f"{real['predicted']:,}",
        predicted_pseudo=f"{pseudo['predicted']:,}",
        actual=f"{real['actual']:,}",
        both_real=f"{real['both']:,}",
        ratio_real=real["predicted"] / max(real["actual"], 1),
        ratio_pseudo=pseudo["predicted"] / max(pseudo["actual"], 1),
        paper_ratio=paper.an_counts.ratio,
    )


def start_or_never(start: float | None) -> object:
    """A bin start rounded for a table, or ``'never'``."""
    return "never" if start is None else round(start, 1)


def study_curve_applies(on_paper_model: bool, neuron: Neuron, target: str, paper: Study) -> bool:
    """Whether the study's curve is for this run's neuron and token."""
    return on_paper_model and neuron == paper.neuron and target == " an"


PAPER_DOCUMENTS = ("pile-10k", 10_000)


def counts_comparable(dataset: str, n_docs: int) -> bool:
    """Whether this run read the study's documents (all of pile-10k), so raw counts compare."""
    return (dataset, n_docs) == PAPER_DOCUMENTS


def study_counts(counts) -> dict[str, int]:
    """The study's counts as the bars of the counts figure (pseudo-prediction, occurrences)."""
    return {"top-1 (pseudo-prediction)": counts.predicted, "actually next": counts.actual}


def per_thousand(count: int, n_tokens: int) -> float:
    """``count`` per 1,000 tokens."""
    return 1000 * count / max(n_tokens, 1)


def count_rows(paper_counts, real_counts: dict, pseudo_counts: dict, token: str, comparable: bool, dataset: str, n_docs: int, n_tokens: int) -> list[Row]:
    """Counts beside the study's when this run read its documents; otherwise the ratio of
    predictions to occurrences (which does not depend on how much was read) and this run's
    rates per 1,000 tokens, with the reason."""
    if comparable:
        return [
            (f"positions where {token!r} is the top-1 prediction", paper_counts.predicted, f"{pseudo_counts['predicted']:,} (pseudo), {real_counts['predicted']:,} (real)"),
            (f"positions where {token!r} is the next token", paper_counts.actual, real_counts["actual"]),
        ]
    return [
        (
            f"top-1 predictions of {token!r} per occurrence (counts are not comparable: this run read {n_docs:,} documents of {dataset}, not pile-10k)",
            round(paper_counts.ratio, 3),
            f"{pseudo_counts['predicted'] / max(real_counts['actual'], 1):.3f} (pseudo), {real_counts['predicted'] / max(real_counts['actual'], 1):.3f} (real)",
        ),
        (
            f"per 1,000 tokens of this run: {token!r} predicted (pseudo, real), next",
            f"{paper_counts.predicted:,} and {paper_counts.actual:,} over pile-10k",
            f"{per_thousand(pseudo_counts['predicted'], n_tokens):.2f}, {per_thousand(real_counts['predicted'], n_tokens):.2f}; "
            f"{per_thousand(real_counts['actual'], n_tokens):.2f}",
        ),
    ]


def correlation_paper_rows(
    paper: Study, real: pd.DataFrame, pseudo: pd.DataFrame, real_counts: dict, pseudo_counts: dict, level: float, dataset: str, n_docs: int, n_tokens: int
) -> list[Row]:
    """Page 06's table beside the study."""
    comparable = counts_comparable(dataset, n_docs)
    return count_rows(paper.an_counts, real_counts, pseudo_counts, " an", comparable, dataset, n_docs, n_tokens) + [
        (
            f"activation from which every bin has proportion >= {level}",
            always_top_above(paper_curve_frame(paper.an_curve), level),
            f"{start_or_never(always_top_above(pseudo, level))} (pseudo), {start_or_never(always_top_above(real, level))} (real)",
        ),
    ]


def reading_of(by_next: pd.DataFrame) -> str:
    """Which reading the activations support, from :func:`activation_by_class` rows in
    :data:`FOLLOWING` order: ``"article"`` (higher before the target than before a vowel-sound
    word without it, and no higher before such a word than before a consonant-sound word),
    ``"vowel"`` (higher before bare vowel-sound words than consonant-sound ones, and not below
    the target), ``"both"`` (highest before the target, and higher before bare vowel-sound words
    than consonant-sound ones), ``"undecided"`` (intervals that do not separate them) or
    ``"too few"`` (a class without an interval)."""
    an, vowel, consonant = by_next.iloc[0], by_next.iloc[2], by_next.iloc[3]
    if any(row["low"] != row["low"] for row in (an, vowel, consonant)):
        return "too few"
    above = lambda a, b: a["low"] > b["high"]  # noqa: E731
    if above(an, vowel):
        return "both" if above(vowel, consonant) else "article"
    return "vowel" if above(vowel, consonant) else "undecided"


def reading_phrase(by_next: pd.DataFrame, target: str) -> str:
    """The sentence for :func:`reading_of`'s verdict, with the three means."""
    an, vowel, consonant = by_next.iloc[0], by_next.iloc[2], by_next.iloc[3]
    means = (f"before {target!r} {an['mean']:.3f}, before a vowel-sound word without it {vowel['mean']:.3f}, before a "
             f"consonant-sound word {consonant['mean']:.3f}")
    return {
        "too few": (f"Too few tokens in one of the classes (before {target!r}: {an['count']}, before a vowel-sound word: "
                    f"{vowel['count']}, before a consonant-sound word: {consonant['count']}; each needs {MIN_BIN_COUNT}) to tell "
                    "the two readings apart."),
        "article": f"The data support the article reading ({means}): it predicts the article, not the next word's sound.",
        "both": f"Both readings hold in part ({means}): it tracks the coming sound, most where the article is due.",
        "vowel": f"The data support the vowel reading ({means}): it encodes the next word's sound more than the article.",
        "undecided": f"Undecided ({means}): the intervals do not separate the readings.",
    }[reading_of(by_next)]


def interval_columns(table: pd.DataFrame) -> pd.DataFrame:
    """An :func:`activation_by_class` table for the page: class, token count, and the mean with
    its interval in one cell (``0.412 [0.398, 0.426]``, or ``(no interval)`` for few tokens)."""
    cells = ["no tokens" if r["count"] == 0 else interval_cell(r["mean"], r["low"], r["high"]) for _, r in table.iterrows()]
    return pd.DataFrame({"class": table["class"], "tokens": table["count"].map("{:,}".format), "mean activation [95% interval]": cells})


QUIET_SHARE = 0.01  # on random text the neuron is quiet when at most this share of tokens reaches its mean before the target


def random_text_summary(random_acts, by_next: pd.DataFrame, target: str) -> dict:
    """The neuron on random token sequences against its mean activation before the target in
    the corpus: the share of random tokens that reach that mean, and whether that is at most
    :data:`QUIET_SHARE` (quiet on random text)."""
    import torch

    level = float(by_next["mean"][0])
    share = float((torch.as_tensor(random_acts) >= level).double().mean())
    quiet = share <= QUIET_SHARE
    phrase = (f"On random text the neuron is quiet: {share:.2%} of random tokens reach its mean activation before {target!r} "
              f"({level:.3f}); what it does on the corpus is not something it does on any input." if quiet else
              f"On random text {share:.2%} of tokens reach its mean activation before {target!r} ({level:.3f}): it fires on "
              "inputs with no article to predict, so firing alone does not mean an article is due.")
    return dict(random_share=share, random_level=level, random_mean=float(torch.as_tensor(random_acts).mean()),
                random_tokens=int(torch.as_tensor(random_acts).numel()), random_phrase=phrase, random_quiet=quiet)
