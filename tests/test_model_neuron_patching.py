"""Exact patching of every neuron of every layer, and the diagnostics of attribution's failures,
against one hooked forward (or backward) pass per patch on tiny random models.

The model is ``amplified`` as in ``test_neuron_patching`` so that the prompts contrast clearly;
the float64 copy lets the first-order checks be tight.
"""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers.book.summaries.patching import exact_scope, exact_scope_phrase, failure_mode_summary, failure_sentence, model_attribution_summary
from helpers.core.models import random_model
from helpers.core.names import Neuron
from helpers.core.prompts import make_contrast
from helpers.methods.attribution import (
    ACCURATE_GAP, VERDICTS, FailureModes, attribution_patching, failure_modes, hooked_estimates, hooked_frozen_patching,
    model_agreement, worst_neurons,
)
from helpers.methods.neuron_patching import SuffixRunner, SuffixUnavailable, exact_patching_flops, model_neuron_patching, neuron_patching, suffix_runner
from helpers.methods.reference import naive_frozen_attention_patching, naive_neuron_patching
from support import amplified

N_LAYERS, D_MLP = 3, 24


@pytest.fixture(scope="module")
def tiny():
    return amplified(random_model(n_layers=N_LAYERS, d_model=16, d_mlp=D_MLP, n_heads=4, seed=1), 8.0)






@pytest.fixture(scope="module")
def tiny64():
    return amplified(random_model(n_layers=N_LAYERS, d_model=16, d_mlp=D_MLP, n_heads=4, seed=2), 8.0).to(torch.float64)


@pytest.fixture(scope="module")
def contrast64(tiny64):
    return make_contrast(tiny64)


# --- exact patching of every layer -------------------------------------------------------


@pytest.mark.parametrize(
    "positions, direction, pair",
    [("all", "sufficiency", "study"), ("last", "sufficiency", "study"), ("all", "necessity", "early"), ("last", "necessity", "study")],
)
def test_every_layer_equals_one_forward_pass_per_neuron(tiny, study, early, positions, direction, pair):
    contrast = {"study": study, "early": early}[pair]
    result = model_neuron_patching(tiny, contrast, positions, direction)
    assert result.values.shape == (N_LAYERS, D_MLP) and result.index_axis_names == ("layer", "neuron")
    assert result.engine == "suffix" and result.method == "activation"
    assert result.values.abs().max() > 1e-3, "the test needs neurons with an effect"
    for layer in range(N_LAYERS):
        slow = naive_neuron_patching(tiny, contrast, layer, range(D_MLP), positions, direction)
        torch.testing.assert_close(result.values[layer], slow, atol=1e-4, rtol=0)


def test_same_scale_as_attribution_and_one_layer_patching(tiny, study):
    result = model_neuron_patching(tiny, study, "all")
    estimate = attribution_patching(tiny, study, "all")
    assert (result.clean_diff, result.corrupted_diff) == pytest.approx((estimate.clean_diff, estimate.corrupted_diff), abs=1e-5)
    torch.testing.assert_close(result.values[1], neuron_patching(tiny, study, 1, "all").values, atol=1e-5, rtol=0)
    assert result.neuron(D_MLP + 3) == Neuron(1, 3)


def test_a_subset_of_layers_and_neurons_leaves_the_rest_nan(tiny, study):
    every = model_neuron_patching(tiny, study, "last")
    some = model_neuron_patching(tiny, study, "last", layers=[2, 0], neurons=[1, 5, 7])
    patched = torch.zeros(N_LAYERS, D_MLP, dtype=torch.bool)
    patched[[0, 2]] = True
    patched[:, [i for i in range(D_MLP) if i not in (1, 5, 7)]] = False
    assert torch.equal(~some.values.isnan(), patched)
    torch.testing.assert_close(some.values[patched], every.values[patched], atol=1e-4, rtol=0)  # other batch shapes, other rounding


def test_reused_layers_are_copied_not_patched_again(tiny, study):
    one = neuron_patching(tiny, study, 1, "all")
    result = model_neuron_patching(tiny, study, "all", layers=[1], reuse=[one])
    assert result.engine == "reused"
    assert torch.equal(result.values[1], one.values) and result.values[[0, 2]].isnan().all()
    mixed = model_neuron_patching(tiny, study, "all", reuse=[one])
    assert mixed.engine == "reused+suffix" and not mixed.values.isnan().any()


def test_model_forward_engine_gives_the_same_values(tiny, early):
    fast = model_neuron_patching(tiny, early, "all", layers=[0, 1])
    full = model_neuron_patching(tiny, early, "all", layers=[0, 1], engine="full", max_rows=200)
    assert full.engine == "full"
    torch.testing.assert_close(fast.values, full.values, atol=1e-4, rtol=0, equal_nan=True)


def test_a_model_the_suffix_engine_does_not_reproduce_falls_back_once(tiny, study, monkeypatch):
    """After the first layer whose check fails, every layer runs the model's own forward pass,
    and no more block weights are prepared than that first check needed."""
    fast = model_neuron_patching(tiny, study, "last")
    built = []
    original = SuffixRunner.block_weights
    monkeypatch.setattr(SuffixRunner, "block_weights", staticmethod(lambda model, layer: built.append(layer) or original(model, layer)))
    monkeypatch.setattr(SuffixRunner, "reproduces", lambda self, cache, base_diff: self.layer == N_LAYERS - 1)
    with pytest.warns(UserWarning, match="does not reproduce"):
        slow = model_neuron_patching(tiny, study, "last")
    assert slow.engine == "full+suffix" and built == [N_LAYERS - 1]
    torch.testing.assert_close(slow.values, fast.values, atol=1e-4, rtol=0)


def test_bad_input_says_what_to_do(tiny, study):
    with pytest.raises(ValueError, match=r"^layer 3 is out of range: this model has layers 0-2$"):
        model_neuron_patching(tiny, study, layers=[0, 3])
    with pytest.raises(ValueError, match=r"^no layer given: give layers between 0 and 2, or None for all$"):
        model_neuron_patching(tiny, study, layers=[])
    with pytest.raises(ValueError, match=r"repeat a layer; give each layer once$"):
        model_neuron_patching(tiny, study, layers=[1, 1])
    with pytest.raises(ValueError, match=r"^layer '1' is text: give the layer as a number, e.g. layer=1$"):
        model_neuron_patching(tiny, study, layers=["1"])
    with pytest.raises(ValueError, match=r"^neuron 24 is out of range: this layer has neurons 0-23$"):
        model_neuron_patching(tiny, study, neurons=[24])
    with pytest.raises(ValueError, match=r"^unknown positions 'first'"):
        model_neuron_patching(tiny, study, positions="first")
    last = neuron_patching(tiny, study, 1, "last")
    with pytest.raises(ValueError, match=r"patched at positions 'last' \(sufficiency\), not 'all' \(sufficiency\); reuse only"):
        model_neuron_patching(tiny, study, "all", reuse=[last])
    with pytest.raises(ValueError, match=r"lacks neuron 0; reuse only results that patched every neuron asked for$"):
        model_neuron_patching(tiny, study, "last", reuse=[neuron_patching(tiny, study, 1, "last", neurons=[3, 4])])
    other = make_contrast(tiny, "The apple tree and picked", "The lemon tree and picked")
    with pytest.raises(ValueError, match=r"it was patched on other prompts; reuse only results of these prompts$"):
        model_neuron_patching(tiny, other, "last", reuse=[last])
    with pytest.raises(ValueError, match=r"^reuse takes results of neuron_patching"):
        model_neuron_patching(tiny, study, "last", reuse=[attribution_patching(tiny, study, "last")])


@pytest.mark.parametrize("positions", ["all", "last"])
def test_flop_formula_counts_what_the_engine_multiplies(tiny, early, positions):
    """The formula against torch's own count of the engine's matrix products while it patches
    every neuron of layer 0 (the read-out, a vector product per row, is outside both)."""
    runner, _, _ = suffix_runner(tiny, early, 0, positions)
    with FlopCounterMode(display=False) as counter:
        runner.patch_neurons(torch.arange(D_MLP))
    n_pos = early.clean.shape[1]
    suffix = n_pos - early.diff_positions[0] if positions == "all" else 1
    formula = exact_patching_flops(tiny.cfg, suffix, n_pos, layers=[0])
    assert counter.get_total_flops() == pytest.approx(formula, rel=1e-3)
    assert exact_patching_flops(tiny.cfg, suffix, n_pos, layers=[N_LAYERS - 1]) == 0
    every = exact_patching_flops(tiny.cfg, suffix, n_pos)
    assert every == pytest.approx(sum(exact_patching_flops(tiny.cfg, suffix, n_pos, layers=[l]) for l in range(N_LAYERS)))


def test_gpt2_large_flop_count_by_hand():
    """All 184,320 neurons of GPT-2 Large restored at the last position: per neuron 630 later
    blocks in all (35 + 34 + ... + 0), each 24 d^2 multiply-adds doubled, plus attention."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(n_layers=36, d_model=1280, d_mlp=5120, n_heads=20, d_head=64)
    per_block = 2 * (3 + 1 + 4 + 4) * 1280**2 + 4 * 20 * 1280
    assert exact_patching_flops(cfg, 1, 20) == pytest.approx(5120 * 630 * per_block)


# --- the failure-mode diagnostics ------------------------------------------------------------


@pytest.mark.parametrize("layer, positions", [(0, "all"), (1, "last"), (0, "last")])
def test_frozen_attention_patching_equals_hooked_reference(tiny, early, layer, positions):
    runner, base_diff, source_diff = suffix_runner(tiny, early, layer, positions)
    indices = torch.arange(D_MLP)
    frozen = runner.frozen().patch_neurons(indices)
    slow = naive_frozen_attention_patching(tiny, early, layer, range(D_MLP), positions)
    # the reference is normalised: bring the engine's logits onto its scale
    clean, corrupted = source_diff, base_diff
    torch.testing.assert_close((frozen - corrupted) / (clean - corrupted), slow, atol=1e-4, rtol=0)
    unfrozen = runner.patch_neurons(indices)
    assert (frozen - unfrozen).abs().max() > 1e-4, "freezing must matter somewhere for the test to mean anything"


def test_nothing_to_freeze_or_drop_after_the_last_layer(tiny, study):
    runner, _, _ = suffix_runner(tiny, study, N_LAYERS - 1, "last")
    indices = torch.arange(D_MLP)
    torch.testing.assert_close(runner.frozen().patch_neurons(indices), runner.patch_neurons(indices), atol=0, rtol=0)
    torch.testing.assert_close(runner.frozen().first_order(indices), runner.first_order(indices), atol=0, rtol=0)


def test_frozen_patterns_are_the_base_runs(tiny, study):
    """The last layer's pattern at the last position equals the model's own on the corrupted run."""
    runner, _, _ = suffix_runner(tiny, study, 0, "all")
    frozen = runner.frozen()
    _, cache = tiny.run_with_cache(study.corrupted, names_filter=f"blocks.{N_LAYERS - 1}.attn.hook_pattern")
    torch.testing.assert_close(frozen.patterns[-1][:, -1], cache[f"blocks.{N_LAYERS - 1}.attn.hook_pattern"][0, :, -1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("positions, direction", [("all", "sufficiency"), ("last", "necessity")])
def test_engine_estimates_equal_the_hooked_gradients(tiny64, contrast64, positions, direction):
    """The suffix engine's first-order estimates (plain, frozen attention, GradDrop of each later
    layer, every later layer dropped) against the model's own backward pass with the same cuts
    (two independent implementations; the plain one is attribution patching itself)."""
    estimate = attribution_patching(tiny64, contrast64, positions, direction).values
    frozen_reference = hooked_estimates(tiny64, contrast64, positions, direction, frozen_attention=True)
    indices = torch.arange(D_MLP)
    for layer in range(N_LAYERS):
        runner, base_diff, source_diff = suffix_runner(tiny64, contrast64, layer, positions, direction)

        def normalised(change):  # a change of the metric in either direction's normalised units
            return change / (source_diff - base_diff)

        torch.testing.assert_close(normalised(runner.first_order(indices)), estimate[layer], atol=1e-9, rtol=1e-6)
        torch.testing.assert_close(normalised(runner.frozen().first_order(indices)), frozen_reference[layer], atol=1e-9, rtol=1e-6)
        later = list(range(layer + 1, N_LAYERS))
        for dropped in later:
            reference = hooked_estimates(tiny64, contrast64, positions, direction, dropped=[dropped])
            torch.testing.assert_close(normalised(runner.dropping([dropped]).first_order(indices)), reference[layer], atol=1e-9, rtol=1e-6)
        direct = hooked_estimates(tiny64, contrast64, positions, direction, dropped=later)
        torch.testing.assert_close(normalised(runner.dropping(later).first_order(indices)), direct[layer], atol=1e-9, rtol=1e-6)


def test_frozen_estimate_is_the_derivative_of_frozen_patching(tiny64, contrast64):
    runner, base_diff, source_diff = suffix_runner(tiny64, contrast64, 0, "all")
    estimate = runner.frozen().first_order(torch.arange(D_MLP)) / (source_diff - base_diff)
    h = 1e-4
    for neuron in estimate.abs().topk(3).indices.tolist():
        up = naive_frozen_attention_patching(tiny64, contrast64, 0, [neuron], "all", fraction=h)
        down = naive_frozen_attention_patching(tiny64, contrast64, 0, [neuron], "all", fraction=-h)
        assert estimate[neuron].item() == pytest.approx(((up - down) / (2 * h)).item(), rel=1e-5, abs=1e-9)


def test_failure_modes_report_the_worst_neurons_consistently(tiny, study):
    exact = model_neuron_patching(tiny, study, "all")
    estimate = attribution_patching(tiny, study, "all")
    diagnosis = failure_modes(tiny, study, exact, estimate, k=6)
    gaps = (exact.values - estimate.values).abs()
    assert diagnosis.neurons == worst_neurons(exact, estimate, 6)
    assert diagnosis.gap.abs().tolist() == pytest.approx(sorted(gaps.flatten().tolist(), reverse=True)[:6], abs=1e-6)
    torch.testing.assert_close(diagnosis.recomputed_estimate, diagnosis.estimate, atol=1e-5, rtol=0)
    for i, neuron in enumerate(diagnosis.neurons):
        assert diagnosis.exact[i].item() == pytest.approx(exact.values[neuron.layer, neuron.index].item())
        assert diagnosis.paths[i, : neuron.layer + 1].isnan().all() and not diagnosis.paths[i, neuron.layer + 1 :].isnan().any()
        frozen = naive_frozen_attention_patching(tiny, study, neuron.layer, [neuron.index], "all")
        assert diagnosis.frozen_exact[i].item() == pytest.approx(frozen.item(), abs=1e-4)
    assert len(diagnosis.verdicts) == 6 and set(diagnosis.verdicts) <= set(VERDICTS)


@pytest.mark.parametrize("layer, positions", [(0, "all"), (1, "last")])
def test_hooked_frozen_patching_equals_one_pass_per_neuron(tiny, early, layer, positions):
    fast = hooked_frozen_patching(tiny, early, layer, torch.arange(D_MLP), positions)
    slow = naive_frozen_attention_patching(tiny, early, layer, range(D_MLP), positions)
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=0)


def test_both_diagnostic_engines_agree(tiny64, contrast64):
    exact = model_neuron_patching(tiny64, contrast64, "all")
    estimate = attribution_patching(tiny64, contrast64, "all")
    suffix = failure_modes(tiny64, contrast64, exact, estimate, k=8, engine="suffix")
    hooks = failure_modes(tiny64, contrast64, exact, estimate, k=8, engine="hooks")
    assert suffix.neurons == hooks.neurons and {n.layer for n in suffix.neurons} != {N_LAYERS - 1}
    for name in ("recomputed_estimate", "frozen_exact", "frozen_estimate", "direct", "paths"):
        torch.testing.assert_close(getattr(hooks, name), getattr(suffix, name), atol=1e-5, rtol=0, equal_nan=True)
    assert hooks.verdicts == suffix.verdicts


def test_without_the_suffix_engine_the_diagnostics_use_hooks(tiny, study, monkeypatch):
    exact = model_neuron_patching(tiny, study, "last", layers=[1])
    estimate = attribution_patching(tiny, study, "last")
    suffix = failure_modes(tiny, study, exact, estimate, k=3)
    monkeypatch.setattr(SuffixRunner, "supports", staticmethod(lambda model: False))
    with pytest.raises(SuffixUnavailable, match="engine='hooks' for the diagnostics"):
        failure_modes(tiny, study, exact, estimate, k=3, engine="suffix")
    fallback = failure_modes(tiny, study, exact, estimate, k=3)
    torch.testing.assert_close(fallback.frozen_exact, suffix.frozen_exact, atol=1e-4, rtol=0)
    torch.testing.assert_close(fallback.paths, suffix.paths, atol=1e-4, rtol=0, equal_nan=True)


def test_failure_modes_of_a_one_layer_check(tiny, study):
    one = neuron_patching(tiny, study, 1, "all")
    exact = model_neuron_patching(tiny, study, "all", layers=[1], reuse=[one])
    diagnosis = failure_modes(tiny, study, exact, attribution_patching(tiny, study, "all"), k=30)
    assert len(diagnosis.neurons) == D_MLP and {n.layer for n in diagnosis.neurons} == {1}


def planted(exact, estimate, frozen_exact, frozen_estimate, direct, paths, recomputed=None) -> FailureModes:
    """Diagnostics with given numbers (one neuron of layer 0 in a 3-layer model)."""
    t = lambda v: torch.tensor([float(v)])
    return FailureModes(
        neurons=[Neuron(0, 0)], exact=t(exact), estimate=t(estimate), recomputed_estimate=t(estimate if recomputed is None else recomputed),
        frozen_exact=t(frozen_exact), frozen_estimate=t(frozen_estimate), direct=t(direct),
        paths=torch.tensor([[float("nan"), *paths]]),
    )


def test_each_verdict_on_planted_numbers():
    # the gap (0.3) is gone once attention is frozen; the parts all push one way
    assert planted(0.5, 0.2, 0.3, 0.29, 0.1, [0.05, 0.05]).verdicts == ["attention saturation"]
    # freezing leaves the gap; parts of +0.6 and -0.5 net to 0.1 against an exact 0.5
    assert planted(0.5, 0.1, 0.45, 0.05, 0.6, [-0.5, 0.0]).verdicts == ["cancellation"]
    assert planted(0.5, 0.1, 0.3, 0.29, 0.6, [-0.5, 0.0]).verdicts == ["attention saturation and cancellation"]
    # freezing leaves the gap, the parts agree in sign
    assert planted(0.5, 0.2, 0.45, 0.15, 0.1, [0.05, 0.05]).verdicts == [VERDICTS[4]]
    # opposing parts smaller than the estimate itself: no cancellation to speak of
    assert planted(0.5, 0.3, 0.45, 0.25, 0.35, [-0.02, 0.0]).verdicts == [VERDICTS[4]]
    assert planted(0.2, 0.2 - ACCURATE_GAP / 2, 0.0, 0.5, 0.6, [-0.5, 0.0]).verdicts == ["accurate"]
    # a bfloat16 estimate 0.1 off, recomputed in float32 within 0.02 of the exact value
    assert planted(0.5, 0.4, 0.3, 0.29, 0.1, [0.05, 0.05], recomputed=0.48).verdicts == ["precision: the estimate's rounding"]
    diagnosis = planted(0.5, 0.1, 0.45, 0.05, 0.6, [-0.5, 0.0])
    assert diagnosis.closed_by_freezing.item() == pytest.approx(0.0, abs=1e-6)
    assert diagnosis.opposing.item() == pytest.approx(0.5)


def test_agreement_per_layer_and_pooled(tiny, study):
    exact = model_neuron_patching(tiny, study, "all", layers=[0, 2])
    estimate = attribution_patching(tiny, study, "all")
    stats = model_agreement(exact, estimate, k=5)
    assert stats["layers"] == [0, 2] and stats["n_neurons"] == 2 * D_MLP
    from helpers.methods.attribution import agreement

    assert stats["per_layer"][1] == agreement(exact.values[2], estimate.values[2], k=5)
    assert stats["pooled"] == agreement(exact.values[[0, 2]].flatten(), estimate.values[[0, 2]].flatten(), k=5)


def test_comparisons_refuse_mismatched_results(tiny, study):
    exact = model_neuron_patching(tiny, study, "last", layers=[2])
    with pytest.raises(ValueError, match=r"restore at positions 'last' \(sufficiency\) but the estimate at 'all' \(sufficiency\); compute both"):
        model_agreement(exact, attribution_patching(tiny, study, "all"))
    with pytest.raises(ValueError, match=r"^compare an exact result \(method 'activation'\) with an estimate"):
        model_agreement(exact, exact)
    with pytest.raises(ValueError, match=r"^the exact result is indexed by \('neuron',\); pass model_neuron_patching's"):
        failure_modes(tiny, study, neuron_patching(tiny, study, 2, "last"), attribution_patching(tiny, study, "last"))
    with pytest.raises(ValueError, match=r"^k must be an integer >= 1, got 0$"):
        failure_modes(tiny, study, exact, attribution_patching(tiny, study, "last"), k=0)
    with pytest.raises(ValueError, match=r"^unknown engine 'fast': choose from auto, suffix, hooks$"):
        failure_modes(tiny, study, exact, attribution_patching(tiny, study, "last"), engine="fast")


# --- what page 04 says --------------------------------------------------------------------


def test_exact_scope_follows_the_parameter():
    assert exact_scope(True, 31) is None and exact_scope(False, 31) == [31]
    every = exact_scope_phrase(list(range(36)), 36, 5120, 5e14)
    assert every == "every one of the model's 184,320 neurons (36 layers of 5,120) was patched exactly"
    one = exact_scope_phrase([31], 36, 5120, 5.07e14)
    assert one.startswith("only layer 31 (5,120 neurons) was patched exactly: this run sets `exact_every_layer=False`")
    assert "about 5.1e+14 floating-point operations, 84 minutes even at 100 GFLOP/s" in one
    assert "1.7 hours" in exact_scope_phrase([31], 36, 5120, 6e14)
    assert "0 seconds" in exact_scope_phrase([0], 3, 24, 1e6)


def test_failure_sentence_names_each_verdict_it_found():
    all_accurate = failure_sentence([VERDICTS[0]] * 3, 0.001, 0.004)
    assert all_accurate.startswith("Even the largest gap is 0.0040, below 0.01") and "no failure to explain" in all_accurate
    mixed = failure_sentence([VERDICTS[1], VERDICTS[1], VERDICTS[4], VERDICTS[0]], 0.005, 0.2)
    assert mixed == (
        "Of the 4 neurons where the estimate is furthest from the exact value (gaps 0.005 to 0.200), "
        "for 2 freezing the later attention patterns closes at least half of the gap (attention saturation), "
        "for 1 neither test explains the gap (what remains is the curvature of the later MLPs and layer norms) "
        "and for 1 the gap is below 0.01 (accurate)"
    )
    rounded = failure_sentence([VERDICTS[5], VERDICTS[3]], 0.02, 0.05)
    assert rounded.endswith(
        "for 1 both tests point at once (attention saturation and cancellation) "
        "and for 1 the gap is the rounding of the estimate in the model's dtype (precision)"
    )
    only = failure_sentence([VERDICTS[2]], 0.1, 0.1)
    assert only.endswith("for 1 large contributions through different later layers cancel in the estimate (cancellation)")


def test_page_summaries_on_a_run(tiny, study):
    exact = model_neuron_patching(tiny, study, "all")
    estimate = attribution_patching(tiny, study, "all")
    stats = model_agreement(exact, estimate, k=5)
    summary = model_attribution_summary(exact, estimate, stats, tiny.cfg, study)
    pearson = [s["pearson"] for s in stats["per_layer"]]
    assert summary["worst_agreement_r"] == min(pearson) and summary["best_agreement_r"] == max(pearson)
    assert summary["n_exact"] == f"{N_LAYERS * D_MLP:,}" and summary["r_model"] == stats["pooled"]["pearson"]
    assert summary["median_layer_r"] == pytest.approx(float(torch.tensor(pearson).median()))
    values = exact.values.flatten().double()
    squares = (values - values.mean()).pow(2)
    assert summary["top_ten_carry"] == pytest.approx(float(squares.sort(descending=True).values[:10].sum() / squares.sum()))
    diagnosis = failure_modes(tiny, study, exact, estimate, k=4)
    found = failure_mode_summary(diagnosis)
    assert found["worst_gap_neuron"] == str(diagnosis.neurons[0]) and found["worst_gap_verdict"] == diagnosis.verdicts[0]
    assert found["failure_sentence"].startswith("Of the 4 neurons") or found["failure_sentence"].startswith("Even the largest gap")
