"""Planted ground truth: a neuron built to predict the target must be the one the methods find.

A small random GPT-2 is edited so that one chosen neuron of one chosen layer detects a trigger
token at the current position (its input weights read the direction that separates the
trigger from the corrupted word there) and writes ``W_U[:, target] - W_U[:, other]`` into the
residual stream. The clean prompt ends with the trigger, the corrupted one with another word.
Layer patching must then point at the planted layer, and neuron patching (exact) and
attribution patching (gradient) must rank the planted neuron first.
"""
import pytest
import torch

from helpers.methods.attribution import attribution_patching
from helpers.core.models import random_model
from helpers.core.names import Neuron
from helpers.methods.neuron_patching import neuron_patching
from helpers.core.prompts import logit_diff, make_contrast

from support import CLEAN, CORRUPTED, FIRE, PLANTED, mlp_parameters, plant  # noqa: E402,F401


@pytest.fixture(scope="module")
def planted():
    model = random_model(n_layers=4, d_model=32, d_mlp=64, n_heads=4, seed=3)
    contrast = make_contrast(model, CLEAN, CORRUPTED)
    before = logit_diff(model(contrast.clean), contrast.target, contrast.other) - logit_diff(
        model(contrast.corrupted), contrast.target, contrast.other
    )
    plant(model, contrast, PLANTED)
    return model, contrast, before.item()


def test_the_edit_took_effect(planted):
    model, contrast, before = planted
    layer, index = PLANTED.layer, PLANTED.index
    assert torch.equal(model.W_in[layer][:, index], mlp_parameters(model, layer)[0][:, index])
    name = f"blocks.{layer}.mlp.hook_pre"
    with torch.no_grad():
        clean_pre = model.run_with_cache(contrast.clean, names_filter=name)[1][name][0, -1, index]
        corrupted_pre = model.run_with_cache(contrast.corrupted, names_filter=name)[1][name][0, -1, index]
        after = logit_diff(model(contrast.clean), contrast.target, contrast.other) - logit_diff(
            model(contrast.corrupted), contrast.target, contrast.other
        )
    assert clean_pre.item() == pytest.approx(FIRE, abs=1e-3)
    assert corrupted_pre.item() == pytest.approx(-FIRE, abs=1e-3)
    # the unedited random model barely tells the prompts apart; the planted neuron does
    assert after.item() > max(0.5, 5 * abs(before)), "the planted neuron should create the contrast"


def test_layer_patching_points_to_the_planted_layer(planted):
    from helpers.methods.layer_patching import layer_patching

    model, contrast, _ = planted
    result = layer_patching(model, contrast, components=("mlp_out",))
    assert result["mlp_out"].best_layer() == PLANTED.layer


@pytest.mark.parametrize("positions", ["last", "all"])
def test_neuron_patching_ranks_the_planted_neuron_first(planted, positions):
    model, contrast, _ = planted
    result = neuron_patching(model, contrast, PLANTED.layer, positions)
    assert result.top_neuron == PLANTED
    assert result.recovery[PLANTED.index] > 0.5
    others = torch.cat([result.recovery[: PLANTED.index], result.recovery[PLANTED.index + 1 :]])
    assert others.abs().max() < 0.1 * result.recovery[PLANTED.index]
    # necessity: taking the planted neuron away destroys most of the clean behaviour too
    assert neuron_patching(model, contrast, PLANTED.layer, positions, "necessity").top_neuron == PLANTED


@pytest.mark.parametrize("positions", ["last", "all"])
def test_attribution_patching_ranks_the_planted_neuron_first(planted, positions):
    model, contrast, _ = planted
    estimate = attribution_patching(model, contrast, positions)
    assert estimate.values.shape == (model.cfg.n_layers, model.cfg.d_mlp)
    assert estimate.top_neuron == PLANTED == Neuron.from_flat(int(estimate.values.flatten().argmax()), model.cfg.d_mlp)
