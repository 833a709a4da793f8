"""Exact neuron patching against one hooked forward pass per neuron, on tiny random models.

Freshly initialised GPT-2 weights (std 0.02) barely react to a one-word change: the clean and
corrupted logit differences differ by ~0.002, and dividing by that amplifies float32 noise into
the normalised values. ``amplified`` scales every weight except the (folded, identity) layer
norms so that the prompts contrast by ~0.1 and the comparison tests the patching, not the noise.
"""
import pytest
import torch

from helpers.core.models import random_model
from helpers.core.names import Neuron
from helpers.methods.neuron_patching import neuron_patching
from helpers.methods.reference import naive_neuron_patching, naive_whole_layer
from helpers.core.prompts import Contrast, make_contrast

from support import amplified



@pytest.fixture(scope="module")
def tiny():
    return amplified(random_model(n_layers=3, d_model=16, d_mlp=24, n_heads=4, seed=1), 8.0)






@pytest.mark.parametrize(
    "layer, positions, direction, pair",
    [
        (0, "all", "sufficiency", "study"),
        (1, "last", "necessity", "study"),
        (2, "last", "sufficiency", "study"),  # the last layer: nothing after it to run
        (0, "all", "necessity", "early"),
    ],
)
def test_every_neuron_equals_one_forward_pass_per_neuron(tiny, study, early, layer, positions, direction, pair):
    contrast = {"study": study, "early": early}[pair]
    fast = neuron_patching(tiny, contrast, layer, positions, direction).values
    slow = naive_neuron_patching(tiny, contrast, layer, range(tiny.cfg.d_mlp), positions, direction)
    assert fast.shape == (tiny.cfg.d_mlp,)
    assert fast.abs().max() > 1e-3, "the test needs neurons with an effect"
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=0)


@pytest.mark.parametrize("positions", ["last", "all"])
def test_suffix_engine_matches_model_forward_engine(tiny, early, positions):
    fast = neuron_patching(tiny, early, 1, positions, engine="suffix", max_rows=30)
    full = neuron_patching(tiny, early, 1, positions, engine="full", max_rows=400)
    assert fast.engine == "suffix" and full.engine == "full"
    torch.testing.assert_close(fast.recovery, full.recovery, atol=1e-4, rtol=0)
    assert fast.whole_layer == pytest.approx(full.whole_layer, abs=1e-4)


@pytest.mark.parametrize("positions", ["last", "all"])
def test_whole_layer_equals_patching_the_mlp_output(tiny, study, positions):
    result = neuron_patching(tiny, study, 1, positions)
    assert result.whole_layer == pytest.approx(naive_whole_layer(tiny, study, 1, positions), abs=1e-4)
    if positions == "last":  # the same cell of the layer-patching map
        from helpers.methods.layer_patching import layer_patching

        mlp_map = layer_patching(tiny, study, components=("mlp_out",), layers=[1])["mlp_out"].values
        assert result.whole_layer == pytest.approx(mlp_map[1, -1].item(), abs=1e-4)


def test_a_neuron_that_never_changes_recovers_nothing():
    """With its input weights zeroed, a neuron has the same activation on both prompts."""
    model = amplified(random_model(n_layers=3, d_model=16, d_mlp=24, n_heads=4, seed=1), 8.0)
    with torch.no_grad():
        getattr(model.blocks[1].mlp, "in")._original_component.weight[:, 5] = 0.0
    contrast = make_contrast(model)
    for positions in ("last", "all"):
        result = neuron_patching(model, contrast, 1, positions)
        # zero up to float rounding, in logit units (the recovery divides by clean - corrupted)
        assert abs(result.recovery[5].item() * (result.clean_diff - result.corrupted_diff)) < 1e-5
        assert result.recovery.abs().max() > 1e-3
        assert naive_neuron_patching(model, contrast, 1, [5], positions).item() == 0.0


def test_directions_share_the_same_baselines(tiny, study):
    sufficiency = neuron_patching(tiny, study, 2, "last", "sufficiency")
    necessity = neuron_patching(tiny, study, 2, "last", "necessity")
    assert sufficiency.clean_diff == pytest.approx(necessity.clean_diff, abs=1e-6)
    assert sufficiency.corrupted_diff == pytest.approx(necessity.corrupted_diff, abs=1e-6)


def test_ranking_names_neurons(tiny, study):
    result = neuron_patching(tiny, study, 1, "all")
    top = result.ranked(3)
    assert [n for n, _ in top][0] == result.top_neuron == Neuron(1, int(result.recovery.argmax()))
    assert [v for _, v in top] == sorted((v for _, v in top), reverse=True)
    bottom = result.ranked(2, largest=False)
    assert bottom[0][1] == pytest.approx(result.recovery.min().item())


def test_gpt2_large_width_sample_equals_naive_loop():
    """GPT-2 Large width (d_model 1280, d_mlp 5120, vocabulary 50,257) but 2 layers, not 36:
    building the model (the attention refactoring's SVDs dominate) and the naive passes must
    fit the test budget. Patched layer 0 is followed by one full block; neurons are restored
    at every position (the study's choice).

    The corrupted prompt also changes the last token, which gives this random model a clean
    minus corrupted logit difference well away from zero (the study pair alone gives ~0.02)."""
    model = random_model(n_layers=2, d_model=1280, d_mlp=5120, n_heads=20, d_vocab=50257, n_ctx=32, seed=0)
    study = make_contrast(model)
    corrupted = study.corrupted.clone()
    corrupted[0, -1] = study.clean[0, 5]
    contrast = Contrast(
        clean=study.clean, corrupted=corrupted, target=study.target, other=study.other,
        str_tokens=study.str_tokens, target_str=study.target_str, other_str=study.other_str,
    )
    sample = [0, 1, 892, 2047, 2500, 3333, 4096, 5119]
    result = neuron_patching(model, contrast, 0, "all", neurons=sample)
    assert result.engine == "suffix" and abs(result.clean_diff - result.corrupted_diff) > 0.1
    assert result.recovery.abs().max() > 1e-3, "the sample needs neurons with an effect"
    slow = naive_neuron_patching(model, contrast, 0, sample, "all")
    torch.testing.assert_close(result.recovery, slow, atol=1e-4, rtol=0)
    assert [n for n, _ in result.ranked(8)][0] == Neuron(0, sample[int(slow.argmax())])


def test_bad_input_says_what_to_do(tiny, study):
    with pytest.raises(ValueError, match=r"layer 3 is out of range: this model has MLP layers 0-2"):
        neuron_patching(tiny, study, 3)
    with pytest.raises(ValueError, match="out of range"):
        neuron_patching(tiny, study, -1)
    with pytest.raises(ValueError, match=r"unknown positions 'first'"):
        neuron_patching(tiny, study, 0, positions="first")
    with pytest.raises(ValueError, match=r"neuron 24 is out of range: this layer has neurons 0-23"):
        neuron_patching(tiny, study, 0, neurons=[3, 24])
    with pytest.raises(ValueError, match=r"unknown direction 'backwards'"):
        neuron_patching(tiny, study, 0, direction="backwards")
    with pytest.raises(ValueError, match="same number of tokens"):
        make_contrast(tiny, "The apple tree", "The pineapple orchard tree")
