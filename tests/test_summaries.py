"""The phrases and numbers the pages glue: each branch of each sentence, against obvious references."""
import numpy as np
import pandas as pd
import pytest
import torch

from helpers.book.page import NeuronChoice
from helpers.methods.choice import most_congruent_neuron
from helpers.book.summaries.congruence import away, best_bin, census_place, curve_phrase, neuron_rank, row_stats
from helpers.book.summaries.patching import page_neuron_phrase, resid_span, study_verdict
from helpers.book.summaries.prompt import prompt_summary
from helpers.book.summaries.scan import bin_phrase, neuron_source, start_or_never
from helpers.core.models import random_model
from helpers.core.names import Neuron
from helpers.core.prompts import NextTokens, make_contrast
from helpers.methods.congruence import token_congruence
from helpers.methods.logit_lens import biggest_step
from helpers.paper import study

PAPER = study()


def next_tokens(p_target: float) -> NextTokens:
    return NextTokens(tokens=[" an", " a"], probs=[p_target, 1 - p_target], target_prob=p_target, other_prob=1 - p_target, logit_diff=0.5)


def test_the_first_sentence_phrase_follows_the_numbers():
    model = random_model()
    contrast = make_contrast(model)
    needs = prompt_summary(contrast, {"clean": next_tokens(0.9), "corrupted": next_tokens(0.1), "second sentence only": next_tokens(0.2)})
    settled = prompt_summary(contrast, {"clean": next_tokens(0.9), "corrupted": next_tokens(0.1), "second sentence only": next_tokens(0.8)})
    assert needs["first_sentence_role"] == "the first sentence is what sets up the pattern"
    assert settled["first_sentence_role"].startswith("on this model the second sentence alone already settles")
    assert needs["diff_position"] == "' apple'" and needs["n_tokens"] == contrast.clean.shape[1]


def test_resid_span_names_each_threshold_it_reaches():
    assert resid_span({"low_layer": None}) == "Patching it recovers less than 0.2 at every layer."
    only_low = {"low_layer": 3, "low_value": 0.266, "high_layer": None}
    assert resid_span(only_low) == "Patching it first recovers 0.2 or more at layer 3 (0.266) and never reaches 0.9."
    both = {"low_layer": 23, "low_value": 0.31, "high_layer": 27, "high_value": 0.99}
    assert resid_span(both).endswith("and 0.9 or more from layer 27 (0.990).")


def test_the_verdict_on_the_study_neuron():
    assert study_verdict(PAPER, False, "toy", Neuron(3, 50)).startswith("cannot be compared with the study's L31N892: this run uses toy")
    assert study_verdict(PAPER, True, "gpt2-large", Neuron(31, 892)) == "matches the study: the top neuron is L31N892"
    assert study_verdict(PAPER, True, "gpt2-large", Neuron(31, 4799)) == "does not match the study: the top neuron is L31N4799, not L31N892"


def test_phrases_about_the_pages_neuron():
    found = NeuronChoice(Neuron(3, 50), 3, "ranked first by layer patching", "ranked first by neuron patching of layer 3 on this page's prompts")
    given = NeuronChoice(Neuron(3, 73), 3, "the layer of the given neuron", "given as a parameter")
    assert page_neuron_phrase(found, Neuron(3, 50)) == "L3N50 is the neuron the other pages of this run study"
    assert page_neuron_phrase(given, Neuron(3, 50)) == "the other pages of this run study L3N73, given as a parameter"
    study_choice = NeuronChoice(Neuron(31, 892), 31, "ranked first by layer patching", "ranked first by neuron patching of layer 31 on this page's prompts")
    assert neuron_source(study_choice, PAPER, True).endswith(", the study's L31N892")
    assert neuron_source(study_choice, PAPER, False) == study_choice.neuron_source
    assert bin_phrase(None) == "no range of activations (counting bins of at least 20 tokens)"
    assert bin_phrase(3.8) == "every bin of at least 20 tokens from 3.8 upward"
    assert start_or_never(None) == "never" and start_or_never(9.96) == 10.0


def test_row_and_column_statistics_against_sorting_by_hand():
    rng = np.random.default_rng(0)
    values = rng.normal(size=50)
    vocab = [f" t{i}" for i in range(50)]
    stats = row_stats(values, 7, vocab)
    assert stats["rank"] == sorted(values, reverse=True).index(values[7]) + 1
    assert stats["top"] == repr(vocab[int(values.argmax())]) and stats["min"] == values.min()
    assert away(-1.25) == "1.2 standard deviations below" and away(2.0) == "2.0 standard deviations above"
    column = rng.normal(size=(3, 8))
    ranked = neuron_rank(column, Neuron(1, 2), 8)
    flat = sorted(column.ravel(), reverse=True)
    assert ranked["rank"] == flat.index(column[1, 2]) + 1
    best = np.unravel_index(column.argmax(), column.shape)
    assert ranked["best"] == f"L{best[0]}N{best[1]}" and ranked["half"] == int((column >= column.max() / 2).sum())


def test_curve_phrases_skip_thin_bins():
    curve = pd.DataFrame({"bin_start": [0.0, 0.2, 0.4], "count": [100, 6, 2], "proportion": [0.1, 0.5, 1.0]})
    assert best_bin(curve) == (0.5, 0.2)
    assert all(np.isnan(best_bin(curve, min_count=1000)))
    counts = {"predicted": 1675, "actual": 1522}
    assert curve_phrase(curve, counts) == "predicted 1,675 times, next 1,522 times, 0.50 in its highest bin with 5+ tokens"
    assert curve_phrase(curve[curve["count"] < 5], counts).endswith("no bin with enough tokens")


def test_most_congruent_neuron_and_its_census_place():
    model = random_model(n_layers=2, d_model=16, d_mlp=12, n_heads=2, seed=5)
    column = token_congruence(model, " an", "W_U")
    expected = Neuron(*map(int, np.unravel_index(column.numpy().argmax(), column.shape)))
    assert most_congruent_neuron(model, " an") == expected
    assert most_congruent_neuron(model, " an", "L1N3") == Neuron(1, 3)
    with pytest.raises(ValueError, match="out of range"):
        most_congruent_neuron(model, " an", "L2N0")
    table = pd.DataFrame({"neuron": [Neuron(0, 0), Neuron(0, 1), Neuron(0, 2)], "layer": [0, 0, 0], "kurtosis": [3.0, 12.0, 5.0], "skew": [0.1, 1.0, -0.5], "class": ["other", "prediction", "other"]})
    place = census_place(table, Neuron(0, 2), "p_")
    assert (place["p_kurtosis_rank"], place["p_class_name"], place["p_layer_size"]) == (2, "other", 3)


def test_biggest_step_is_the_first_largest_rise():
    assert biggest_step({"a": 0.0, "b": 1.0, "c": 0.5, "d": 1.5}) == ("a", "b", 0.0, 1.0)
    assert biggest_step({"a": 0.0, "b": -1.0, "c": 2.0}) == ("b", "c", -1.0, 2.0)
    assert biggest_step(dict(zip("xyz", torch.tensor([1.0, 1.0, 1.0]).tolist())))[:2] == ("x", "y")


def test_census_figure_draws_the_threshold_at_its_value_on_the_log_axis():
    """A shape on a log axis takes log10 units: a line 'at 10' given as 10 lands at 1e10."""
    from helpers.book.figures.congruence import census_scatter

    table = pd.DataFrame({"neuron": [Neuron(0, 0), Neuron(0, 1)], "layer": [0, 0], "skew": [0.1, 2.0], "kurtosis": [3.0, 15.0], "class": ["other", "prediction"]})
    fig = census_scatter(table, 10.0)
    (line,) = fig.layout.shapes
    assert fig.layout.yaxis.type == "log" and line.y0 == pytest.approx(1.0) == line.y1
    marked = census_scatter(table, 10.0, highlight={"found by patching": "L0N1"})
    assert marked.data[-1].name == "L0N1 (found by patching)" and marked.data[-1].hovertemplate.startswith("L0N1: skew %{x:.2f}")


def test_large_scatter_plots_keep_the_tails_and_a_sample_and_say_so():
    from helpers.book.figures.common import thinned
    from helpers.book.figures.congruence import neurons_against_token

    values = np.random.default_rng(0).normal(size=184_320)
    keep, note = thinned(values)
    assert len(keep) == 6000 and np.all(np.diff(keep) > 0)
    order = np.argsort(values)
    assert set(order[:1000]) <= set(keep) and set(order[-1000:]) <= set(keep)
    assert note == "drawn: the 1,000 largest and 1,000 smallest of 184,320, and 4,000 of the other 182,320 at random"
    small, small_note = thinned(values[:5000])
    assert len(small) == 5000 and small_note == ""
    fig = neurons_against_token(values.reshape(36, 5120), " an", "W_U")
    assert len(fig.data[0].x) == 6000 and "drawn:" in fig.layout.title.text
    assert fig.data[0].y.max() == values.max() and fig.data[0].y.min() == values.min()
