"""The toy corpus: deterministic, follows the article rule, keeps its held-out parts out of
training, and the batched article scorer agrees with one forward pass per prompt."""
from __future__ import annotations

import re

import pytest
import torch
from tokenizers import Tokenizer

from helpers.core.english import FRAMES_HELDOUT, FRAMES_NOVEL, FRAMES_TRAIN, HELDOUT_NOUNS, STUDY_FRAME, article_for
from helpers.toy.corpus import (
    TOKENIZER_FILE, ArticlePrompt, article_accuracy, article_logit_diffs, article_prompts, documents, study_prompts,
)
from helpers.core.models import random_model
from helpers.core.prompts import STUDY_CLEAN, STUDY_CORRUPTED

ARTICLE = re.compile(r"\b(an|a) ([\w-]+)")


@pytest.fixture(scope="module")
def train_docs() -> list[str]:
    return documents(300, seed=0)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(TOKENIZER_FILE))


@pytest.fixture(scope="module")
def tiny():
    return random_model(n_layers=1, d_model=32, n_heads=2, n_ctx=128, seed=3)


@pytest.mark.parametrize(
    "phrase, article",
    [("apple", "an"), ("pear", "a"), ("old pear", "an"), ("ripe apple", "a"), ("hour", "an"),
     ("honest man", "an"), ("university", "a"), ("unicorn", "a"), ("one-off event", "a"),
     ("umbrella", "an"), ("European", "a"), ("heir", "an")],
)
def test_article_follows_first_sound(phrase, article):
    assert article_for(phrase) == article


def test_article_for_rejects_empty():
    with pytest.raises(ValueError, match="needs a word"):
        article_for("  ")


def test_documents_are_deterministic_and_prefix_stable():
    assert documents(4, seed=7) == documents(4, seed=7)
    assert documents(6, seed=7)[:4] == documents(4, seed=7)
    assert documents(4, seed=7) != documents(4, seed=8)
    assert documents(4, seed=7, split="heldout") != documents(4, seed=7)


def test_documents_are_a_few_hundred_tokens_of_varied_length(train_docs, tokenizer):
    lengths = torch.tensor([len(e.ids) for e in tokenizer.encode_batch(train_docs)], dtype=torch.float)
    assert 150 < lengths.mean() < 500
    assert lengths.min() >= 20 and lengths.max() <= 1500
    assert lengths.std() > 50


def test_every_article_in_the_corpus_follows_the_rule(train_docs):
    pairs = [m.groups() for doc in train_docs + documents(100, split="heldout") for m in ARTICLE.finditer(doc)]
    assert len(pairs) > 1000
    wrong = [(art, word) for art, word in pairs if art != article_for(word)]
    assert wrong == []
    words = {word.lower() for _, word in pairs}
    assert {"hour", "honest", "university", "unicorn", "one-off"} <= words  # the sound cases occur


def test_corpus_has_adjectives_numbers_names_and_punctuation(train_docs):
    text = " ".join(train_docs)
    assert re.search(r"\ban old \w+", text) and re.search(r"\ba ripe \w+", text)
    assert re.search(r"\d", text) and "," in text and "?" in text and '"' in text
    assert "Anna" in text and "\n\n" in text


def frame_pattern(frame) -> re.Pattern:
    """A frame sentence as a regex: group 'np' is the phrase named early, 'art' and 'said'
    the article and phrase at the end."""
    prefix = re.escape(frame.template.split(" {art}")[0].removeprefix("{s} "))  # a literal start is fast to find
    phrase = r"(?P<np>[\w-]+(?: [\w-]+)?)"
    prefix = prefix.replace(re.escape("{np}"), phrase)
    prefix = prefix.replace(re.escape("{a_np}"), r"(?:an|a) " + phrase)
    return re.compile(prefix + r" (?P<art>an|a) (?P<said>[\w-]+(?: [\w-]+)?)\.")


def frame_matches(frames, text: str) -> list[re.Match]:
    return [m for f in frames for m in frame_pattern(f).finditer(text)]


def test_heldout_frames_and_nouns_stay_out_of_training(train_docs):
    text = " ".join(train_docs)
    assert frame_matches(FRAMES_HELDOUT + FRAMES_NOVEL, text) == []
    # a held-out frame is a new combination: each of its words is in some training frame
    for frame in FRAMES_HELDOUT:
        words = frame_ending(frame).split()
        assert all(any(f" {w} " in f" {t.template} " for t in FRAMES_TRAIN) for w in words), frame.template
    seen = frame_matches(FRAMES_TRAIN, text)
    assert len(seen) > 500
    assert {m.group("np").split()[-1] for m in seen}.isdisjoint(HELDOUT_NOUNS)
    # ... but they are in ordinary training sentences, so their tokens and articles are learned
    assert all(re.search(rf"\b(an|a) {noun}\b", text) for noun in HELDOUT_NOUNS)
    heldout_text = " ".join(documents(200, split="heldout"))
    assert frame_matches(FRAMES_HELDOUT, heldout_text) and frame_matches(FRAMES_NOVEL, heldout_text)
    assert {m.group("np").split()[-1] for m in frame_matches(FRAMES_TRAIN, heldout_text)} <= HELDOUT_NOUNS


def test_frames_make_the_article_predictable(train_docs):
    frames = frame_matches(FRAMES_TRAIN, " ".join(train_docs))
    repeated = [m for m in frames if m.group("np") == m.group("said")]
    assert len(repeated) / len(frames) > 0.85  # a few surprises ("picked a ripe apple") are planted
    assert len(repeated) < len(frames)
    assert all(m.group("art") == article_for(m.group("said")) for m in frames)
    counts = {f.name: len(frame_pattern(f).findall(" ".join(train_docs))) for f in FRAMES_TRAIN}
    assert sum(c > 0 for c in counts.values()) > 300  # many different frames ...
    assert max(counts, key=counts.get) == STUDY_FRAME.name  # ... and the study's is the most common


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="unknown split 'test'"):
        documents(2, split="test")
    with pytest.raises(ValueError, match="unknown split"):
        article_prompts(2, split="valid")


def test_study_prompts_default_to_the_study(tokenizer):
    clean, corrupted = study_prompts()
    assert (clean, corrupted) == (STUDY_CLEAN, STUDY_CORRUPTED)
    assert len(tokenizer.encode(clean).ids) == len(tokenizer.encode(corrupted).ids) == 19
    for word in [" a", " an", " apple", " pear", " lemon", " tree", " picked"]:
        assert len(tokenizer.encode(word).ids) == 1, word


def test_study_prompts_with_heldout_nouns_line_up(tokenizer):
    clean, corrupted = study_prompts("apricot", "lime")
    assert clean.endswith("the apricot tree and picked") and corrupted.endswith("the lime tree and picked")
    assert len(tokenizer.encode(clean).ids) == len(tokenizer.encode(corrupted).ids)


def test_study_prompts_refuse_bad_nouns():
    with pytest.raises(ValueError, match="takes 'a', not 'an'"):
        study_prompts("lemon", "apple")
    with pytest.raises(ValueError, match="takes 'an', not 'a'"):
        study_prompts("apple", "hour")
    with pytest.raises(ValueError, match=r"'zqxjkv' is \d+ tokens"):
        study_prompts("apple", "zqxjkv")


def test_article_prompts_end_before_a_rule_decided_article():
    prompts = article_prompts(400, seed=1)
    assert prompts == article_prompts(400, seed=1)
    assert {p.kind for p in prompts} == {"heldout_frame", "heldout_noun", "adjective", "sound"}
    assert {p.article for p in prompts} == {" a", " an"}
    share_an = sum(p.article == " an" for p in prompts) / len(prompts)
    assert 0.3 < share_an < 0.7
    for p in prompts:
        first, second = p.text.split(". ", 1)
        assert p.article == " " + article_for(p.next_words)
        assert re.search(rf"\b{p.next_words}\b", second)  # the next words were named earlier
        if p.kind == "heldout_noun":
            assert p.next_words in HELDOUT_NOUNS
        if p.kind == "heldout_frame":
            assert p.text.endswith(tuple(frame_ending(f) for f in FRAMES_HELDOUT))
    train_prompts = article_prompts(200, split="train")
    assert {p.kind for p in train_prompts} == {"seen", "adjective", "sound"}
    assert all(p.text.endswith(tuple(frame_ending(f) for f in FRAMES_TRAIN)) for p in train_prompts)
    assert not any(p.next_words.split()[-1] in HELDOUT_NOUNS for p in train_prompts)
    novel = article_prompts(50, split="novel")
    assert {p.kind for p in novel} == {"novel_words"}
    assert all(p.text.endswith(tuple(frame_ending(f) for f in FRAMES_NOVEL)) for p in novel)


def frame_ending(frame) -> str:
    """What a frame's prompt ends with: ' tree and picked'."""
    return re.split(r"\{a?_?np\}", frame.template)[1].split(" {art}")[0]


def test_batched_logit_diffs_match_one_prompt_at_a_time(tiny):
    prompts = article_prompts(12, seed=2) + [("Anna saw", " a"), ("I climbed up the old apple tree and picked", " an")]
    batched = article_logit_diffs(tiny, prompts, batch_size=5)
    an, a = tiny.tokenizer.convert_tokens_to_ids("Ġan"), tiny.tokenizer.convert_tokens_to_ids("Ġa")
    slow = []
    for p in prompts:
        text = p.text if isinstance(p, ArticlePrompt) else p[0]
        logits = tiny(tiny.to_tokens(text))[0, -1]
        slow.append(logits[an] - logits[a])
    torch.testing.assert_close(batched, torch.stack(slow), rtol=1e-4, atol=1e-4)
    wants_an = torch.tensor([(p.article if isinstance(p, ArticlePrompt) else p[1]) == " an" for p in prompts])
    expected = float(((torch.stack(slow) > 0) == wants_an).float().mean())
    assert article_accuracy(tiny, prompts) == pytest.approx(expected)


def test_article_accuracy_needs_prompts(tiny):
    with pytest.raises(ValueError, match="at least one prompt"):
        article_accuracy(tiny, [])
