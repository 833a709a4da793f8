"""The neuron chosen on selection pairs and measured on others: the choice on a prompt set
equals a slow loop over pairs, its stability a loop over resamples, the held-out measure a
loop over pairs; the two sets never share a pair; too few pairs give no interval."""
import math

import pytest
import torch

from helpers.core.models import random_model
from helpers.core.stats import MIN_PAIRS
from helpers.methods.choice import HeldOut, bootstrap_stability, choose_neuron, held_out
from helpers.methods.layer_patching import layer_patching
from helpers.methods.neuron_patching import neuron_patching
from helpers.methods.prompt_sets import selection_and_evaluation, study_like_pairs


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=3, d_model=32, d_mlp=48, n_heads=4, seed=2, weight_scale=8.0)


def test_selection_and_evaluation_are_disjoint_slices_of_one_set(model):
    selection, evaluation = selection_and_evaluation(model, 5, 7, seed=3)
    every = study_like_pairs(model, 12, seed=3)
    assert torch.equal(selection.clean, every.clean[1:6]) and torch.equal(evaluation.clean[1:], every.clean[6:])
    assert torch.equal(evaluation.clean[0], every.clean[0]), "pair 0 (the page's own pair) is measured, not selected on"
    assert not {tuple(r) for r in selection.clean.tolist()} & {tuple(r) for r in evaluation.clean.tolist()}
    assert evaluation.texts[0] == every.texts[0] and selection.texts == every.texts[1:6]
    none, alone = selection_and_evaluation(model, 0, 3, seed=3)
    assert none is None and torch.equal(alone.clean, every.clean[:3])
    with pytest.raises(ValueError, match="n_selection must be an integer >= 0"):
        selection_and_evaluation(model, -1, 3)


def test_the_choice_on_a_set_equals_a_loop_over_pairs_and_resamples(model):
    selection, _ = selection_and_evaluation(model, 6, 2, seed=1)
    choice = choose_neuron(model, selection, cache=None, resamples=300, seed=4)
    layers = torch.stack([layer_patching(model, selection.pair(i), components=("mlp_out",))["mlp_out"].values[:, -1] for i in range(6)])
    chosen_layer = int(layers.mean(0).argmax())
    neurons = torch.stack([neuron_patching(model, selection.pair(i), chosen_layer, "all").values for i in range(6)])
    chosen = int(neurons.mean(0).argmax())
    assert (choice.layer, choice.neuron.index, choice.n_selection) == (chosen_layer, chosen, 6)
    draws = torch.randint(0, 6, (300, 6), generator=torch.Generator().manual_seed(4))
    same = sum(int(layers[d].mean(0).argmax()) == chosen_layer and int(neurons[d].mean(0).argmax()) == chosen for d in draws)
    assert choice.stability == pytest.approx(same / 300)
    assert "6 selection pairs" in choice.neuron_source


def test_stability_is_one_for_a_planted_clear_winner_and_low_for_a_tie():
    clear = torch.zeros(20, 5)
    clear[:, 2] = 1.0
    assert bootstrap_stability(None, clear, 0, 2) == 1.0
    tie = torch.randn(20, 5, generator=torch.Generator().manual_seed(0)) * 0.01
    stability = bootstrap_stability(None, tie, 0, int(tie.mean(0).argmax()))
    assert stability < 0.9


def test_held_out_equals_a_loop_over_evaluation_pairs(model):
    _, evaluation = selection_and_evaluation(model, 4, MIN_PAIRS, seed=2)
    neuron = choose_neuron(model, evaluation.pair(0), cache=None).neuron
    result = held_out(model, evaluation, neuron)
    per_pair = [neuron_patching(model, evaluation.pair(i), neuron.layer, "all") for i in range(evaluation.n_pairs)]
    values = torch.stack([r.values for r in per_pair])
    means = values.mean(0)
    assert result.recovery.mean == pytest.approx(float(means[neuron.index]), abs=1e-6)
    assert result.recovery.low <= result.recovery.mean <= result.recovery.high
    assert result.whole_layer.mean == pytest.approx(sum(r.whole_layer for r in per_pair) / len(per_pair), abs=1e-6)
    assert result.rank == int((means > means[neuron.index]).sum()) + 1
    others = torch.cat([means[: neuron.index], means[neuron.index + 1 :]])
    assert result.runner_up == pytest.approx(float(others.max()), abs=1e-6)


def test_a_small_evaluation_set_has_no_interval(model):
    _, evaluation = selection_and_evaluation(model, 2, 3, seed=2)
    result = held_out(model, evaluation, choose_neuron(model, evaluation.pair(0), cache=None).neuron)
    assert math.isnan(result.recovery.low) and "no interval" in str(result.recovery)


def _held(rank: int, recovery=(0.3, 0.25, 0.35)):
    from helpers.core.names import Neuron
    from helpers.core.stats import Interval

    return HeldOut(Neuron(3, 50), 47, Interval(*recovery, 47), Interval(0.4, 0.35, 0.45, 47), rank, 0.02)


def test_the_page_says_whether_the_choice_is_stable_and_carries_over():
    from helpers.book.summaries.patching import held_out_summary
    from helpers.core.names import Neuron
    from helpers.methods.choice import NeuronChoice

    def choice(stability, source="ranked first by neuron patching"):
        return NeuronChoice(Neuron(3, 50), 3, "ranked first", source, 16, stability)

    stable = held_out_summary(choice(0.98), _held(1))["held_out_phrase"]
    assert "98% of bootstrap resamples" in stable and "a stable choice" in stable and "ranks first in its layer" in stable
    unstable = held_out_summary(choice(0.41), _held(1))["held_out_phrase"]
    assert "an unstable choice" in unstable
    moved = held_out_summary(choice(0.95), _held(2))["held_out_phrase"]
    assert "ranks 2 in its layer" in moved and "does not carry over" in moved
    given = held_out_summary(choice(None, "given as a parameter"), _held(1))["held_out_phrase"]
    assert given.startswith("It was given as a parameter, so there is nothing to resample.")
