"""bfloat16 without wrong numbers: the metric is read out in float32, so a bfloat16 run gives the
fp32 run's patching numbers within the tolerances below (in logit units), and the fast
neuron-patching engine keeps working instead of falling back.

The test model's logits reach about 20, where bfloat16 logits are 0.125 apart (the study's
clean logit difference is 0.986). Tolerances, measured with margin on this model:

- baselines (clean and corrupted logit differences): 0.05
- neuron patching, every neuron (fp32 suffix engine over the bf16 run): 0.04
- layer patching, every cell (the model's own blocks run in bf16): 0.25
"""
import copy
import warnings

import pytest
import torch

from helpers.core.models import random_model
from helpers.core.prompts import logit_diff, make_contrast, next_tokens, read_out
from helpers.methods.layer_patching import layer_patching
from helpers.methods.neuron_patching import neuron_patching
from support import amplified

BASELINE_TOLERANCE, NEURON_TOLERANCE, CELL_TOLERANCE = 0.05, 0.04, 0.25


@pytest.fixture(scope="module")
def pair():
    full = amplified(random_model(n_layers=3, d_model=64, d_mlp=256, n_heads=4, seed=1), 6.0)
    with torch.no_grad():
        full.unembed._original_component.weight.mul_(6.0)  # logits of about 20
    half = copy.deepcopy(full).to(torch.bfloat16)
    return full, half, make_contrast(full)


def test_the_test_model_has_large_logits(pair):
    full, half, contrast = pair
    with torch.no_grad():
        logits = full(contrast.clean)[0, -1]
    assert logits.abs().max() > 15 and half.cfg.dtype == torch.bfloat16


def test_read_out_is_the_logit_difference_in_float32(pair):
    full, half, contrast = pair
    with torch.no_grad():
        logits, cache = full.run_with_cache(contrast.clean, names_filter="blocks.2.hook_resid_post")
        fp32 = read_out(full, cache["blocks.2.hook_resid_post"][:, -1], contrast.target, contrast.other)
        assert fp32.dtype == torch.float32
        torch.testing.assert_close(fp32, logit_diff(logits, contrast.target, contrast.other), atol=1e-5, rtol=0)
        _, half_cache = half.run_with_cache(contrast.clean, names_filter="blocks.2.hook_resid_post")
        assert read_out(half, half_cache["blocks.2.hook_resid_post"][:, -1], contrast.target, contrast.other).dtype == torch.float32


def test_baselines_agree(pair):
    full, half, contrast = pair
    for tokens in (contrast.clean, contrast.corrupted):
        a = next_tokens(full, tokens, contrast.target, contrast.other).logit_diff
        b = next_tokens(half, tokens, contrast.target, contrast.other).logit_diff
        assert abs(a - b) <= BASELINE_TOLERANCE, (a, b)


@pytest.mark.parametrize("positions", ["last", "all"])
def test_neuron_patching_in_bf16_stays_fast_and_agrees(pair, positions):
    full, half, contrast = pair
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to the slow engine warns
        exact, rounded = neuron_patching(full, contrast, 1, positions), neuron_patching(half, contrast, 1, positions)
    assert exact.engine == rounded.engine == "suffix"
    scale = abs(exact.clean_diff - exact.corrupted_diff)
    assert abs(exact.clean_diff - rounded.clean_diff) <= BASELINE_TOLERANCE
    assert (exact.values - rounded.values).abs().max() * scale <= NEURON_TOLERANCE
    assert exact.values.abs().max() > 0.1, "the comparison needs neurons with an effect"


def test_layer_patching_in_bf16_agrees(pair):
    full, half, contrast = pair
    exact, rounded = layer_patching(full, contrast), layer_patching(half, contrast)
    for component in exact:
        scale = abs(exact[component].clean_diff - exact[component].corrupted_diff)
        difference = (exact[component].values - rounded[component].values).abs().nan_to_num().max() * scale
        assert difference <= CELL_TOLERANCE, (component, float(difference))
        assert rounded[component].engine == "blocks"
