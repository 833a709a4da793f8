"""Attribution patching is the derivative of neuron patching along the patch: checked by finite
differences of hooked forward passes on a tiny float64 model, where the check can be tight."""
import pytest
import torch

from helpers.methods.attribution import agreement, attribution_patching
from helpers.core.models import random_model
from helpers.methods.neuron_patching import neuron_patching, post_hook
from helpers.methods.patching import runs
from helpers.core.prompts import logit_diff, make_contrast
from support import amplified


@pytest.fixture(scope="module")
def tiny64():
    model = amplified(random_model(n_layers=3, d_model=16, d_mlp=24, n_heads=4, seed=2), 8.0)
    return model.to(torch.float64)


@pytest.fixture(scope="module")
def contrast(tiny64):
    return make_contrast(tiny64)


def interpolated_logit_diff(model, contrast, direction, layer, neuron, positions, eps) -> float:
    """Logit difference of the base run with one neuron moved ``eps`` of the way to the source run."""
    base_tokens, source_tokens = runs(contrast, direction)
    where = slice(-1, None) if positions == "last" else slice(None)
    with torch.no_grad():
        source = model.run_with_cache(source_tokens, names_filter=post_hook(layer))[1][post_hook(layer)]

        def move(act, hook):
            act[:, where, neuron] += eps * (source[:, where, neuron] - act[:, where, neuron])
            return act

        logits = model.run_with_hooks(base_tokens, fwd_hooks=[(post_hook(layer), move)])
    return logit_diff(logits, contrast.target, contrast.other).item()


@pytest.mark.parametrize("positions, direction, per_layer", [("all", "sufficiency", 2), ("last", "necessity", 1)])
def test_estimate_is_the_derivative_along_the_patch(tiny64, contrast, positions, direction, per_layer):
    estimate = attribution_patching(tiny64, contrast, positions, direction).values
    assert estimate.shape == (tiny64.cfg.n_layers, tiny64.cfg.d_mlp)
    with torch.no_grad():
        clean = logit_diff(tiny64(contrast.clean), contrast.target, contrast.other).item()
        corrupted = logit_diff(tiny64(contrast.corrupted), contrast.target, contrast.other).item()
    # the normalised estimate moves the metric from the base run towards the source run
    sign = 1.0 if direction == "sufficiency" else -1.0
    h = 1e-4
    for layer in range(tiny64.cfg.n_layers):
        for neuron in estimate[layer].abs().topk(per_layer).indices.tolist():
            up = interpolated_logit_diff(tiny64, contrast, direction, layer, neuron, positions, h)
            down = interpolated_logit_diff(tiny64, contrast, direction, layer, neuron, positions, -h)
            derivative = sign * (up - down) / (2 * h) / (clean - corrupted)
            assert estimate[layer, neuron].item() == pytest.approx(derivative, rel=1e-5, abs=1e-9)


def test_estimate_approaches_exact_patching_for_small_patches(tiny64, contrast):
    """Exact recovery and estimate agree to first order; the last layer's patches are the
    smallest nonlinearity away (only the final layer norm), so there they are close."""
    exact = neuron_patching(tiny64, contrast, 2, "last").values
    estimate = attribution_patching(tiny64, contrast, "last").values[2]
    stats = agreement(exact, estimate, k=5)
    assert stats["pearson"] > 0.9
    assert exact.argmax() == estimate.argmax()


def test_agreement_on_known_cases():
    values = torch.tensor([0.5, -0.2, 0.1, 0.0, 0.9])
    same = agreement(values, values, k=2)
    assert same["pearson"] == pytest.approx(1.0) and same["spearman"] == pytest.approx(1.0) and same["top_k_overlap"] == 1.0
    flipped = agreement(values, -values, k=2)
    assert flipped["pearson"] == pytest.approx(-1.0) and flipped["spearman"] == pytest.approx(-1.0) and flipped["top_k_overlap"] == 0.0
    with pytest.raises(ValueError, match="same length"):
        agreement(values, values[:3])


def test_agreement_ranks_ties_together():
    """Exact values tied at zero (neurons that never fire) must share one rank: ranking them by
    position gave 0.429 here instead of 0.845."""
    exact, estimate = torch.tensor([1.0, 1, 1, 1, 2, 3]), torch.tensor([4.0, 3, 2, 1, 5, 6])
    assert agreement(exact, estimate, k=2)["spearman"] == pytest.approx(12.5 / (12.5 * 17.5) ** 0.5, abs=1e-12)


def test_bad_input_says_what_to_do(tiny64, contrast):
    with pytest.raises(ValueError, match="unknown positions 'middle'"):
        attribution_patching(tiny64, contrast, positions="middle")
    with pytest.raises(ValueError, match="unknown direction 'sideways'"):
        attribution_patching(tiny64, contrast, direction="sideways")
