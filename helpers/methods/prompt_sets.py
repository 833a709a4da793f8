"""Prompt sets: many study-like pairs, so that every causal number is a mean over pairs.

A pair keeps the study's design: two sentences of one frame, the first naming a noun with its
article, the second cut right before the article, after naming a noun that takes `` an``
(clean) or `` a`` (corrupted), so the pair differs in one token:

    I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked
    I climbed up the pear tree and picked a pear. I climbed up the lemon tree and picked

The frames and nouns are the bundled corpus generator's (:mod:`helpers.toy.corpus`): frames
composed of a lead-in, a place named after the noun and an action on it, and nouns whose
article follows their first sound ("an hour", "a unicorn"). They are plain English, so the
same lists serve GPT-2 and any other model: a noun is used only where it is one token for the
model's tokenizer, and a pair only where it has as many tokens as the study's pair, so one
set is one ``[pairs, pos]`` batch with the noun at the first pair's position. Pair 0 is the
page's own pair (the study's by default).
"""
from __future__ import annotations

import random

from transformer_lens.model_bridge import TransformerBridge

from helpers.core.checks import check_positive_int
from helpers.core.prompts import STUDY_CLEAN, STUDY_CORRUPTED, Contrast, make_pairs
from helpers.core.english import FRAMES_HELDOUT, FRAMES_NOVEL, FRAMES_TRAIN, MENTION_FRAMES, SUBJECTS, article_for

# Frames whose noun is named in the place ("the apple tree"), as in the study: the training
# frames for selection and evaluation sets, the unseen ones (never in the bundled models'
# training text, never used to choose a neuron) for a second evaluation set.
FRAMES = [frame for frame in FRAMES_TRAIN if frame not in MENTION_FRAMES]
UNSEEN = FRAMES_HELDOUT + FRAMES_NOVEL
CANDIDATES_PER_PAIR = 40


def one_token_words(model: TransformerBridge, words: set[str]) -> set[str]:
    """The words that are one token (with their leading space) for ``model``'s tokenizer."""
    return {w for w in words if model.to_tokens(" " + w, prepend_bos=False).shape[1] == 1}


def study_like_texts(
    model: TransformerBridge, n_pairs: int, seed: int = 0, first: tuple[str, str] = (STUDY_CLEAN, STUDY_CORRUPTED), frames=None,
    at_most: bool = False,
) -> list[tuple[str, str]]:
    """``n_pairs`` (clean, corrupted) texts: ``first`` (the study's pair unless given), then
    pairs drawn from ``frames`` (default :data:`FRAMES`, the training frames).

    Drawn pairs have as many tokens as ``first`` and are all different; a pair whose length
    leaves too few such pairs gets a one-line error saying how many there are (with
    ``at_most``: the pairs there are).
    """
    check_positive_int("n_pairs", n_pairs)
    length = model.to_tokens(first[0]).shape[1]
    frames = FRAMES if frames is None else frames
    words = one_token_words(model, {noun for frame in frames for noun in frame.nouns})
    rng = random.Random(f"prompt-set:{seed}")
    pairs, seen = [tuple(first)], {first[0]}
    for _ in range(CANDIDATES_PER_PAIR * n_pairs):
        if len(pairs) == n_pairs:
            break
        frame = rng.choice(frames)
        nouns = sorted(set(frame.nouns) & words)
        vowel = [n for n in nouns if article_for(n) == "an"]
        consonant = [n for n in nouns if article_for(n) == "a"]
        if not vowel or not consonant:
            continue
        subject, named = rng.choice(SUBJECTS), rng.choice(nouns)
        lead = frame.sentence(subject, named)
        clean = f"{lead} {frame.fill(subject, rng.choice(vowel))[0]}"
        corrupted = f"{lead} {frame.fill(subject, rng.choice(consonant))[0]}"
        if clean in seen or model.to_tokens(clean).shape[1] != length or model.to_tokens(corrupted).shape[1] != length:
            continue
        seen.add(clean)
        pairs.append((clean, corrupted))
    if len(pairs) < n_pairs and not at_most:
        study_length = model.to_tokens(STUDY_CLEAN).shape[1]
        hint = "" if length == study_length else f", or give a pair of the study's length ({study_length} tokens)"
        raise ValueError(
            f"only {len(pairs)} study-like pairs of {length} tokens (the first pair's length) could be drawn for this tokenizer; "
            f"ask for n_pairs <= {len(pairs)}{hint}"
        )
    return pairs


def study_like_pairs(
    model: TransformerBridge, n_pairs: int, seed: int = 0, target: str = " an", other: str = " a",
    first: tuple[str, str] = (STUDY_CLEAN, STUDY_CORRUPTED),
) -> Contrast:
    """A prompt set of ``n_pairs`` study-like pairs as one batched :class:`Contrast`; pair 0 is
    ``first``."""
    texts = study_like_texts(model, n_pairs, seed, first)
    return make_pairs(model, [c for c, _ in texts], [k for _, k in texts], target, other)


def selection_and_evaluation(
    model: TransformerBridge, n_selection: int, n_evaluation: int, seed: int = 0, target: str = " an", other: str = " a",
    first: tuple[str, str] = (STUDY_CLEAN, STUDY_CORRUPTED),
) -> tuple[Contrast | None, Contrast]:
    """Two disjoint prompt sets drawn from one study-like set: the ``n_selection`` pairs on
    which a neuron is chosen (``None`` for 0: choose on ``first`` alone, as the study did), and
    ``n_evaluation`` pairs on which it is measured, pair 0 of them ``first``.

    Both are slices of ``study_like_pairs(model, n_selection + n_evaluation, seed)``: the
    selection is pairs ``1..n_selection``, the evaluation pair 0 and the pairs after the
    selection, so a larger ``n_evaluation`` only adds pairs at the end.
    """
    check_positive_int("n_evaluation", n_evaluation)
    if isinstance(n_selection, bool) or not isinstance(n_selection, int) or n_selection < 0:
        raise ValueError(f"n_selection must be an integer >= 0 (0: choose on the page's own pair), got {n_selection!r}")
    every = study_like_pairs(model, n_selection + n_evaluation, seed, target, other, first)
    selection = every.subset(range(1, 1 + n_selection)) if n_selection else None
    return selection, every.subset([0, *range(1 + n_selection, n_selection + n_evaluation)])


def unseen_pairs(
    model: TransformerBridge, n_pairs: int, seed: int = 0, target: str = " an", other: str = " a",
    first: tuple[str, str] = (STUDY_CLEAN, STUDY_CORRUPTED),
) -> Contrast:
    """Up to ``n_pairs`` study-like pairs from :data:`UNSEEN` frames only (frames held out of the
    bundled models' training text and of every selection set), as long as ``first``; ``first``
    itself is not among them. Fewer when the unseen frames give fewer pairs of that length."""
    texts = study_like_texts(model, n_pairs + 1, seed, first, UNSEEN, at_most=True)[1:]
    if not texts:
        raise ValueError(f"no unseen-frame pair has the {model.to_tokens(first[0]).shape[1]} tokens of the page's pair; "
                         "give a pair of the study's length")
    return make_pairs(model, [c for c, _ in texts], [k for _, k in texts], target, other)
