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
set is one ``[pairs, pos]`` batch with the noun at the study's position. Pair 0 is the study's
own pair.
"""
from __future__ import annotations

import random

from transformer_lens.model_bridge import TransformerBridge

from helpers.core.checks import check_positive_int
from helpers.core.prompts import STUDY_CLEAN, STUDY_CORRUPTED, Contrast, make_pairs
from helpers.toy.corpus import FRAMES_HELDOUT, FRAMES_TRAIN, MENTION_FRAMES, SUBJECTS, article_for

# Frames whose noun is named in the place ("the apple tree"), as in the study.
FRAMES = [frame for frame in FRAMES_TRAIN + FRAMES_HELDOUT if frame not in MENTION_FRAMES]
CANDIDATES_PER_PAIR = 40


def one_token_words(model: TransformerBridge, words: set[str]) -> set[str]:
    """The words that are one token (with their leading space) for ``model``'s tokenizer."""
    return {w for w in words if model.to_tokens(" " + w, prepend_bos=False).shape[1] == 1}


def study_like_texts(model: TransformerBridge, n_pairs: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n_pairs`` (clean, corrupted) texts: the study's pair, then pairs drawn from the frames.

    Drawn pairs have as many tokens as the study's pair and are all different; a model whose
    tokenizer leaves too few such pairs gets a one-line error saying how many there are.
    """
    check_positive_int("n_pairs", n_pairs)
    length = model.to_tokens(STUDY_CLEAN).shape[1]
    words = one_token_words(model, {noun for frame in FRAMES for noun in frame.nouns})
    rng = random.Random(f"prompt-set:{seed}")
    pairs, seen = [(STUDY_CLEAN, STUDY_CORRUPTED)], {STUDY_CLEAN}
    for _ in range(CANDIDATES_PER_PAIR * n_pairs):
        if len(pairs) == n_pairs:
            break
        frame = rng.choice(FRAMES)
        nouns = sorted(set(frame.nouns) & words)
        vowel = [n for n in nouns if article_for(n) == "an"]
        consonant = [n for n in nouns if article_for(n) == "a"]
        if not vowel or not consonant:
            continue
        subject, first = rng.choice(SUBJECTS), rng.choice(nouns)
        lead = frame.sentence(subject, first)
        clean = f"{lead} {frame.fill(subject, rng.choice(vowel))[0]}"
        corrupted = f"{lead} {frame.fill(subject, rng.choice(consonant))[0]}"
        if clean in seen or model.to_tokens(clean).shape[1] != length or model.to_tokens(corrupted).shape[1] != length:
            continue
        seen.add(clean)
        pairs.append((clean, corrupted))
    if len(pairs) < n_pairs:
        raise ValueError(
            f"only {len(pairs)} study-like pairs of {length} tokens could be drawn for this tokenizer; ask for n_pairs <= {len(pairs)}"
        )
    return pairs


def study_like_pairs(model: TransformerBridge, n_pairs: int, seed: int = 0, target: str = " an", other: str = " a") -> Contrast:
    """A prompt set of ``n_pairs`` study-like pairs as one batched :class:`Contrast`."""
    texts = study_like_texts(model, n_pairs, seed)
    return make_pairs(model, [c for c, _ in texts], [k for _, k in texts], target, other)
