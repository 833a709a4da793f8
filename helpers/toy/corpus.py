"""A seeded generator of English-like text where " a" versus " an" depends on the next word.

The bundled toy model is trained on this text, and the dataset pages scan it where a run on
GPT-2 would scan pile-10k. Its one job is to make the study's question answerable by a small
model: the article before a noun phrase is decided by the first *sound* of the word that
follows it, and in some sentences that word can be known before it is written.

That second part is what the study's prompt tests. In

    I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked

the fruit is named earlier in the same sentence, so a model that carries " apple" forward to
the position before the article can say " an" before it writes " apple". The corpus is built
around such *frames* (a place named after a noun, then an action on that noun), and around
them ordinary sentences (names, numbers, places, punctuation, articles before unpredictable
nouns) so that other tokens matter too. Adjectives can sit between the article and the noun
("an old pear", "a ripe apple"), and a few words break the spelling rule ("an hour",
"an honest", "a university", "a unicorn", "a one-off"), so the rule is about sound, not
letters.

Held out for evaluation (``split="heldout"``):

* held-out frames: one combination of lead-in, place and action per group of frame parts
  that never occurs in training, although each of its words does in other frames;
* held-out nouns, which never occur inside a frame in training. They do appear in ordinary
  training sentences, with their articles: a model cannot know the first sound of a token
  it has never seen, so what is held out is the combination the test asks about;
* novel-word frames ("reached into the apple basket and took"), whose verbs and places are
  never part of a frame in training and appear only in ordinary sentences where the article
  is not predictable. They measure a harder kind of transfer and are reported on their own.

The word lists, the frames and their held-out parts, and the article rule are
:mod:`helpers.core.english`; this module generates the text and the evaluation prompts.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from helpers.core.english import (
    ADJECTIVES, ANIMALS, CITIES, COLOURS, CONSONANT_SOUND, DAYS, FRAME_ACTIONS, FRAME_ADJECTIVES, FRAME_PARTS, FRAMES_HELDOUT,
    FRAMES_NOVEL, FRAMES_TRAIN, FRUITS, HELDOUT_NOUNS, JOBS, MENTION_FRAMES, MONTHS, NAMES, NUMBER_WORDS, OBJECTS, PLACES,
    RELATIVES, STUDY_FRAME, SUBJECTS, UNSEEN_FRAMES, VOWEL_SOUND, Frame, article_for, compose_frame, plural,
)

if TYPE_CHECKING:
    from jaxtyping import Float
    from torch import Tensor
    from transformer_lens.model_bridge import TransformerBridge

SPLITS = ("train", "heldout")
PROMPT_SPLITS = SPLITS + ("novel",)
TOKENIZER_FILE = Path(__file__).parent / "assets" / "toy-an" / "tokenizer.json"


def _phrase(rng: random.Random, nouns: Sequence[str], p_adjective: float, adjectives=ADJECTIVES) -> str:
    noun = rng.choice(nouns)
    if rng.random() < p_adjective:
        return f"{rng.choice(adjectives)} {noun}"
    return noun


def _np(rng: random.Random, nouns: Sequence[str], p_adjective: float = 0.3) -> str:
    """An article and a noun phrase: 'an old owl', 'a lamp'."""
    phrase = _phrase(rng, nouns, p_adjective)
    return f"{article_for(phrase)} {phrase}"


def _frame_nouns(frame: Frame, split: str) -> list[str]:
    """Nouns a frame may hold: training frames never hold held-out nouns in training."""
    if split == "train":
        return [n for n in frame.nouns if n not in HELDOUT_NOUNS]
    return list(frame.nouns)


def _pick_frame(rng: random.Random, split: str) -> Frame:
    """The study's frame a quarter of the time, the two mention frames sometimes, else one
    composed from parts (never a held-out combination); in the held-out split, a held-out
    or novel-word frame half of the time."""
    if split == "heldout" and rng.random() < 0.5:
        return rng.choice(FRAMES_HELDOUT + FRAMES_NOVEL)
    r = rng.random()
    if r < 0.25:
        return STUDY_FRAME
    if r < 0.33:
        return rng.choice(MENTION_FRAMES)
    while True:
        leads, places, actions, nouns = rng.choice(FRAME_PARTS)
        frame = compose_frame(rng.choice(leads), rng.choice(places), rng.choice(actions), nouns)
        if frame not in FRAMES_HELDOUT:
            return frame


def _balanced_noun(rng: random.Random, nouns: Sequence[str]) -> str:
    """A noun that takes ' an' half of the time, so a frame's article is never a safe guess."""
    wants_an = rng.random() < 0.5
    pool = [n for n in nouns if (article_for(n) == "an") == wants_an]
    return rng.choice(pool or list(nouns))


def _frame_block(rng: random.Random, split: str) -> str:
    """One to three frame sentences, usually two as in the study ('a pear. ... an apple.')."""
    frame = _pick_frame(rng, split)
    subject = rng.choice(SUBJECTS + NAMES[:6])
    n_sentences = rng.choices([1, 2, 3], weights=[2, 6, 2])[0]
    sentences = []
    for _ in range(n_sentences):
        if rng.random() < 0.2:
            frame = _pick_frame(rng, split)
        if rng.random() < 0.2:
            subject = rng.choice(SUBJECTS + NAMES[:6])
        nouns = _frame_nouns(frame, split)
        if split == "heldout" and frame not in UNSEEN_FRAMES:
            nouns = [n for n in nouns if n in HELDOUT_NOUNS] or nouns
        phrase = _balanced_noun(rng, nouns)
        if rng.random() < 0.15:
            phrase = f"{rng.choice(FRAME_ADJECTIVES)} {phrase}"
        said = None
        if rng.random() < 0.08:  # the article is not always predictable: "picked a ripe apple"
            said = f"{rng.choice(ADJECTIVES)} {phrase}"
        sentences.append(frame.sentence(subject, phrase, said))
    return " ".join(sentences)


def _ordinary(rng: random.Random) -> str:
    """A sentence of ordinary text: names, numbers, places, punctuation, articles."""
    name, name2 = rng.sample(NAMES, 2)
    num = rng.choice([str(rng.randint(2, 99)), rng.choice(NUMBER_WORDS)])
    any_nouns = FRUITS + ANIMALS + OBJECTS
    noun, noun2 = rng.sample(any_nouns, 2)
    templates = [
        lambda: f"{name} bought {_np(rng, OBJECTS + FRUITS)} for {rng.randint(2, 60)} dollars.",
        lambda: f"On {rng.choice(DAYS)}, {name} walked {num} miles to the {rng.choice(PLACES)}.",
        lambda: f"There was {_np(rng, ANIMALS)} near the {rng.choice(PLACES)}.",
        lambda: f"{name} saw {_np(rng, ANIMALS)} and {_np(rng, ANIMALS)} at the {rng.choice(PLACES)}.",
        lambda: f"In {rng.randint(1850, 2024)}, about {rng.randint(2, 900)},{rng.randint(100, 999)} people lived in {rng.choice(CITIES)}.",
        lambda: f"{name} is {_np(rng, JOBS, 0.2)} in {rng.choice(CITIES)}.",
        lambda: f"It took {name} {rng.choice(['an hour', 'half an hour', 'two hours', 'a minute', 'a day', 'an afternoon', 'a week'])} to reach the {rng.choice(PLACES)}.",
        lambda: f"\"Where is the {noun}?\" asked {name}.",
        lambda: f"{name} put {_np(rng, FRUITS)} in a basket and carried it home.",
        lambda: f"The {noun} was {rng.choice(COLOURS)}, and the {noun2} was {rng.choice(COLOURS)}.",
        lambda: f"{name} reached for {_np(rng, OBJECTS)} on the shelf.",
        lambda: f"We walked past the {rng.choice(PLACES)} at {rng.randint(1, 12)} o'clock.",
        lambda: f"Did you see {_np(rng, any_nouns)}?",
        lambda: f"{name} gave {name2} {_np(rng, any_nouns)} for {rng.choice(['her', 'his', 'their'])} birthday.",
        lambda: f"After {num} days, the {noun} was gone.",
        lambda: f"{name} kept {_np(rng, ANIMALS)} in a cage for {num} weeks.",
        lambda: f"{name} studied at {rng.choice(['a university', 'an old university', 'a small university', 'a school', 'an art school'])} in {rng.choice(CITIES)}.",
        lambda: f"It was {rng.choice(['a one-off', 'an unusual', 'a useful', 'an honest', 'a unique', 'an odd', 'a long'])} {rng.choice(['day', 'event', 'mistake', 'answer', 'idea', 'trip'])}.",
        lambda: f"{name} wrote {num} letters and {rng.randint(2, 30)} emails on {rng.choice(DAYS)}.",
        lambda: f"The price of {_np(rng, FRUITS, 0.1)} rose to {rng.randint(1, 9)}.{rng.randint(10, 99)} in {rng.choice(MONTHS)}.",
        lambda: f"My {rng.choice(RELATIVES)} has {_np(rng, any_nouns)} and {num} {plural(noun)}.",
        lambda: f"{name} said it was an honour to meet {name2}.",
        lambda: f"{name} is an honest {rng.choice(['person', 'man', 'woman', 'worker', 'judge'])}, and {name2} is {_np(rng, JOBS, 0.2)}.",
        lambda: f"Is that {_np(rng, any_nouns)} or {_np(rng, any_nouns)}?",
        lambda: f"{name} counted {num} {plural(noun)} in the garden.",
        lambda: f"{name} wore {rng.choice(['a uniform', 'a hat', 'an apron', 'an old coat', 'a scarf'])} to the {rng.choice(PLACES)}.",
        lambda: f"Once upon a time, {_np(rng, ANIMALS + JOBS)} lived in {rng.choice(['a', 'an old', 'a little'])} house by the {rng.choice(PLACES)}.",
        lambda: f"{name} found {_np(rng, OBJECTS)} in the {rng.choice(PLACES)}; it cost {rng.randint(1, 99)} cents.",
        lambda: f"{name} took {_np(rng, FRUITS + OBJECTS)} from the basket.",
        lambda: f"The {noun} is {rng.choice(['bigger', 'smaller', 'older', 'newer'])} than the {noun2}.",
        lambda: f"\"{rng.choice(['Yes', 'No', 'Maybe', 'Of course'])},\" said {name}, \"I have {_np(rng, any_nouns)}.\"",
        lambda: f"On {rng.randint(1, 28)} {rng.choice(MONTHS)}, {name} and {name2} drove to {rng.choice(CITIES)}.",
        lambda: f"{name} heard {_np(rng, ANIMALS)} {rng.choice(['outside', 'in the barn', 'at night', 'by the river'])}.",
        lambda: f"{name} waited {rng.choice(['an hour', 'a minute', 'an extra hour', 'a whole day'])} for {name2} at the {rng.choice(PLACES)}.",
        lambda: f"{name} is {rng.choice(['a European', 'an heir', 'a union', 'an honest'])} {rng.choice(JOBS[11:])}.",
        lambda: f"{name} {rng.choice(FRAME_ACTIONS)} {_np(rng, any_nouns)} {rng.choice(['yesterday', 'at noon', 'last week', 'on ' + rng.choice(DAYS), 'for ' + name2])}.",
        lambda: f"{name} told a story about {_np(rng, ['unicorn', 'owl', 'ewe', 'elephant', 'tiger', 'dragon', 'giant', 'elf', 'ogre'], 0.2)}.",
    ]
    return rng.choice(templates)()


def _document(rng: random.Random, split: str) -> str:
    """A few hundred tokens of sentences, with paragraph breaks."""
    n_sentences = rng.randint(6, 32)
    paragraphs, current = [], []
    for _ in range(n_sentences):
        current.append(_frame_block(rng, split) if rng.random() < 0.35 else _ordinary(rng))
        if rng.random() < 0.15:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use 'train' or 'heldout'")


def documents(n_docs: int, seed: int = 0, split: str = "train") -> list[str]:
    """``n_docs`` deterministic documents; document ``i`` depends only on (split, seed, i).

    ``split="train"`` is what the toy model was trained on (seed 0). ``split="heldout"`` uses
    the held-out frames, and held-out nouns inside frames, never seen in training.
    """
    _check_split(split)
    if n_docs < 0:
        raise ValueError(f"n_docs must be >= 0, got {n_docs}")
    return [_document(random.Random(f"{split}:{seed}:{i}"), split) for i in range(n_docs)]


@dataclass(frozen=True)
class ArticlePrompt:
    """A prompt that ends right before an article the rule decides.

    ``article`` is ' a' or ' an'; ``next_words`` is what follows it; ``kind`` says what is
    new about the prompt: 'heldout_frame', 'heldout_noun', 'adjective', 'sound' (a word that
    breaks the spelling rule), 'novel_words' (a novel-word frame), or 'seen' (a fresh sample
    of a training frame and noun).
    """

    text: str
    article: str
    next_words: str
    kind: str


def _kind(frame: Frame, phrase: str) -> str:
    if frame in FRAMES_NOVEL:
        return "novel_words"
    if frame in FRAMES_HELDOUT:
        return "heldout_frame"
    if phrase.split()[-1] in HELDOUT_NOUNS:
        return "heldout_noun"
    return "seen"


def article_prompts(n: int, seed: int = 0, split: str = "heldout") -> list[ArticlePrompt]:
    """``n`` frame prompts ending before the article: a first frame sentence, then a second
    one cut before its article, as in the study.

    ``split="heldout"`` draws half the prompts from the held-out frames (any noun) and half
    from the training frames with held-out nouns; ``split="train"`` uses training frames and
    nouns only; ``split="novel"`` uses the novel-word frames. Half the prompts want ' an'; a
    fifth carry an adjective before the noun, and a tenth hold a word that breaks the
    spelling rule.
    """
    if split not in PROMPT_SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(PROMPT_SPLITS)}")
    rng = random.Random(f"prompts:{split}:{seed}")
    sound = [w for w in FRUITS + ANIMALS + OBJECTS if w in VOWEL_SOUND | CONSONANT_SOUND]
    prompts = []
    for i in range(n):
        if split == "novel":
            frame = rng.choice(FRAMES_NOVEL)
            nouns = list(frame.nouns)
        elif split == "heldout" and i % 2 == 0:
            frame = rng.choice(FRAMES_HELDOUT)
            nouns = list(frame.nouns)
        elif split == "heldout":
            frame = rng.choice(FRAMES_TRAIN)
            nouns = [w for w in frame.nouns if w in HELDOUT_NOUNS]
        else:
            frame = rng.choice(FRAMES_TRAIN)
            nouns = _frame_nouns(frame, "train")
        pool = [w for w in nouns if w in sound] if rng.random() < 0.1 else []
        noun = rng.choice(pool) if pool else _balanced_noun(rng, nouns)
        phrase = noun
        if rng.random() < 0.2:
            phrase = f"{rng.choice(FRAME_ADJECTIVES)} {noun}"
        subject = rng.choice(SUBJECTS)
        first = frame.sentence(subject, rng.choice(_frame_nouns(frame, "heldout" if split == "novel" else split)))
        prefix, article = frame.fill(subject, phrase)
        if split == "novel":
            kind = "novel_words"
        else:
            kind = "adjective" if phrase != noun else ("sound" if noun in sound else _kind(frame, noun))
        prompts.append(ArticlePrompt(f"{first} {prefix}", article, phrase, kind))
    return prompts


def study_prompts(noun_vowel: str = "apple", noun_consonant: str = "lemon", first_noun: str = "pear") -> tuple[str, str]:
    """The study's clean and corrupted prompts for the given nouns.

    Clean: "I climbed up the pear tree and picked a pear. I climbed up the apple tree and
    picked" (the model should say " an"); corrupted: the same with ``noun_consonant``.
    Each noun must be one token (with its leading space) for the bundled tokenizer, so the
    two prompts line up position by position.
    """
    if article_for(noun_vowel) != "an":
        raise ValueError(f"noun_vowel={noun_vowel!r} takes 'a', not 'an'; pass a noun that starts with a vowel sound")
    if article_for(noun_consonant) != "a":
        raise ValueError(f"noun_consonant={noun_consonant!r} takes 'an', not 'a'; pass a noun that starts with a consonant sound")
    _require_single_tokens([first_noun, noun_vowel, noun_consonant])
    first = f"I climbed up the {first_noun} tree and picked {article_for(first_noun)} {first_noun}."
    frame = "I climbed up the {} tree and picked"
    return f"{first} {frame.format(noun_vowel)}", f"{first} {frame.format(noun_consonant)}"


def _require_single_tokens(words: Iterable[str], tokenizer_file: Path = TOKENIZER_FILE) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    for word in words:
        pieces = tokenizer.encode(" " + word, add_special_tokens=False).tokens
        if len(pieces) != 1:
            raise ValueError(
                f"{word!r} is {len(pieces)} tokens for the bundled tokenizer ({pieces}); "
                "choose a noun that is one token"
            )


def article_logit_diffs(model: "TransformerBridge", prompts: Sequence[ArticlePrompt | tuple[str, str]], batch_size: int = 256) -> "Float[Tensor, 'n']":
    """logit(' an') - logit(' a') at the last position of each prompt (BOS prepended).

    Prompts of different lengths are right-padded in one batch; causal attention means the
    padding never reaches the last real position, which is the one read.
    """
    import torch

    from helpers.core.models import single_token

    an, a = single_token(model, " an"), single_token(model, " a")
    texts = [p.text if isinstance(p, ArticlePrompt) else p[0] for p in prompts]
    bos = model.tokenizer.bos_token_id
    encoded = [[bos] + model.tokenizer.encode(t, add_special_tokens=False) for t in texts]
    out = []
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            lengths = torch.tensor([len(ids) for ids in chunk])
            tokens = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long)
            for row, ids in enumerate(chunk):
                tokens[row, : len(ids)] = torch.tensor(ids)
            logits = model(tokens)
            last = logits[torch.arange(len(chunk)), lengths - 1]
            out.append(last[:, an] - last[:, a])
    return torch.cat(out) if out else torch.zeros(0)


def article_accuracy(model: "TransformerBridge", prompts: Sequence[ArticlePrompt | tuple[str, str]]) -> float:
    """Fraction of prompts where the model prefers the article the rule asks for.

    Compares P(' an') with P(' a') at the article position; ``prompts`` are
    ``ArticlePrompt`` or ``(text, article)`` pairs with article ' a' or ' an'.
    """
    if not prompts:
        raise ValueError("article_accuracy needs at least one prompt")
    wants_an = [(p.article if isinstance(p, ArticlePrompt) else p[1]) == " an" for p in prompts]
    import torch

    diffs = article_logit_diffs(model, prompts)
    return float(((diffs > 0) == torch.tensor(wants_an)).float().mean())
