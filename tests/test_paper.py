"""The study's numbers come typed from one loader: neurons, token strings, ints; never parsed on a page."""
import json

import pytest

from helpers.core.names import Neuron
from helpers.paper import FIGURES, Counts, is_paper_model, parse_counts, parse_neuron, parse_token, study


@pytest.fixture(scope="module")
def paper():
    return study()


def test_the_facts_of_the_write_up_come_out_typed(paper):
    """Numbers restated in the reference notes (an-neuron.md), read through the loader."""
    assert paper.neuron == Neuron(31, 892) and paper.patched_layer == 31
    assert paper.p_target_clean == 0.64 and paper.prompt_tokens == 20 == len(paper.patch_tokens)
    assert paper.clean_logit_diff == pytest.approx(0.986, abs=1e-3)
    assert paper.top_neurons[0] == (Neuron(31, 892), 0.5032) and paper.top_neurons[1][1] == 0.008
    assert paper.whole_layer_last == 0.492
    assert paper.patch_tokens[paper.diff_position] == " apple" and paper.patch_tokens[0] == "<|endoftext|>"
    assert paper.an_counts == Counts(1471, 12389) and paper.though_counts == Counts(214, 654)
    assert paper.congruence.top[:4] == [(" an", 2.749), ("An", 2.549), (" An", 2.237), ("an", 1.578)]
    assert paper.though_neuron == Neuron(28, 1921) and paper.though.top[0] == (" though", 4.657)
    assert paper.though_best_bin == pytest.approx(0.33, abs=0.01)
    assert [(p.token, p.neuron) for p in paper.mutual_pairs[:5]] == [
        ("i", Neuron(33, 4142)), ("/", Neuron(34, 862)), ("is", Neuron(34, 3402)), ("ing", Neuron(31, 4831)), ("an", Neuron(34, 4549)),
    ]
    assert len(paper.mutual_pairs) == 30 and paper.mutual_pairs[0].score == 7.4669
    assert paper.hub == Neuron(35, 3354) and paper.glitch_tokens[0].gap == pytest.approx(15.783)
    gap = next(g for g in paper.token_gaps if g.token == " though")
    assert (gap.neuron, gap.second) == (Neuron(28, 1921), Neuron(28, 1533))


def test_every_token_label_is_a_plain_string(paper):
    tokens = paper.patch_tokens + [t for t, _ in paper.congruence.top] + [g.token for g in paper.token_gaps + paper.glitch_tokens]
    tokens += [p.token for p in paper.mutual_pairs]
    assert all(isinstance(t, str) for t in tokens)
    assert not any(t.startswith("'") and t.endswith("'") and len(t) > 1 for t in tokens), "a label kept its quotes"
    assert not any("\u200b" in t for t in tokens)
    raw = json.loads(FIGURES.read_text())
    assert len(paper.glitch_tokens) == len(raw["footnote_top_congruence_per_token_top15"])


def test_parsers_and_their_errors():
    assert parse_token("' an'\u200b") == " an" and parse_token("'\x00'") == "\x00"
    assert parse_neuron("Layer: 34, Neuron: 4012") == Neuron(34, 4012) == parse_neuron("Layer 34 Neuron 4012")
    assert parse_counts("Top predictions: 214<br>Actual occurrences: 654").ratio == pytest.approx(214 / 654)
    with pytest.raises(ValueError, match="does not name one neuron"):
        parse_neuron("Layer 34")


def test_paper_values_apply_to_gpt2_large_only():
    assert is_paper_model("gpt2-large") and is_paper_model("/models/gpt2-large")
    assert not is_paper_model("toy") and not is_paper_model("gpt2")
