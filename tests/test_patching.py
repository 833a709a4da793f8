"""Layer patching: equal to transformer_lens.patching in both directions, invariants, bad input."""
import warnings

import pytest
import torch
from transformer_lens import patching as tl_patching

from helpers.core.models import random_model
from helpers.methods.layer_patching import COMPONENTS, layer_patching, maps_of, top_cells
from helpers.methods.patching import best_layer
from helpers.core.prompts import Contrast, logit_diff, make_contrast

CLEAN = "I climbed the apple tree and picked"
CORRUPTED = "I climbed the lemon tree and picked"
TL_FUNCTIONS = {
    "resid_pre": tl_patching.get_act_patch_resid_pre,
    "attn_out": tl_patching.get_act_patch_attn_out,
    "mlp_out": tl_patching.get_act_patch_mlp_out,
}


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=2, d_model=32, n_heads=2, seed=11)


@pytest.fixture(scope="module")
def contrast(model):
    return make_contrast(model, CLEAN, CORRUPTED)


@torch.no_grad()
def tl_reference(model, contrast: Contrast, direction: str) -> dict[str, torch.Tensor]:
    """One full forward pass per cell through transformer_lens.patching, normalised by hand."""
    base, source = (contrast.corrupted, contrast.clean) if direction == "sufficiency" else (contrast.clean, contrast.corrupted)
    _, source_cache = model.run_with_cache(source)

    def metric(logits):
        return logit_diff(logits, contrast.target, contrast.other)[0]

    clean = metric(model(contrast.clean)).item()
    corrupted = metric(model(contrast.corrupted)).item()
    out = {}
    for component, fn in TL_FUNCTIONS.items():
        raw = fn(model, base, source_cache, metric)
        out[component] = (raw - corrupted) / (clean - corrupted) if direction == "sufficiency" else (clean - raw) / (clean - corrupted)
    return out


@pytest.fixture(scope="module")
def references(model, contrast):
    return {d: tl_reference(model, contrast, d) for d in ("sufficiency", "necessity")}


def test_prompts_differ_at_one_position(contrast):
    assert len(contrast.diff_positions) == 1 and contrast.diff_positions[0] < contrast.clean.shape[1] - 1


@pytest.mark.parametrize("direction", ["sufficiency", "necessity"])
@pytest.mark.parametrize("engine", ["blocks", "full"])
def test_equals_transformer_lens_patching(model, contrast, references, direction, engine):
    ours = layer_patching(model, contrast, direction=direction, engine=engine, max_batch=5)
    assert set(ours) == set(COMPONENTS)
    for component, expected in references[direction].items():
        assert ours[component].values.shape == (model.cfg.n_layers, contrast.clean.shape[1])
        assert ours[component].index_axis_names == ("layer", "pos") and ours[component].direction == direction
        torch.testing.assert_close(ours[component].values, expected, atol=2e-4, rtol=0)


def test_auto_engine_picks_blocks_on_gpt2(model, contrast, references):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = layer_patching(model, contrast, components=("mlp_out",))
    torch.testing.assert_close(ours["mlp_out"].values, references["sufficiency"]["mlp_out"], atol=2e-4, rtol=0)


def test_invariants(model, contrast):
    result = layer_patching(model, contrast, components=("resid_pre",))["resid_pre"].values
    diff = contrast.diff_positions[0]
    # The whole input of the corrupted run made clean: the clean run itself.
    torch.testing.assert_close(result[0, diff], torch.tensor(1.0), atol=1e-4, rtol=0)
    # Before the differing token nothing differs, so patching there changes nothing at all.
    assert torch.equal(result[:, :diff], torch.zeros(model.cfg.n_layers, diff))
    # At layer 0 only the differing token's residual stream differs.
    others = [p for p in range(result.shape[1]) if p != diff]
    assert torch.equal(result[0, others], torch.zeros(len(others)))


def test_chunking_and_layer_subset_do_not_change_values(model, contrast):
    whole = layer_patching(model, contrast, max_batch=64)
    one_by_one = layer_patching(model, contrast, max_batch=1)
    subset = layer_patching(model, contrast, layers=[1])
    for component in COMPONENTS:
        torch.testing.assert_close(one_by_one[component].values, whole[component].values, atol=1e-5, rtol=0)
        assert torch.isnan(subset[component].values[0]).all()
        torch.testing.assert_close(subset[component].values[1:], whole[component].values[1:], atol=1e-5, rtol=0)


@torch.no_grad()
def test_hooks_are_removed(model, contrast):
    before = model(contrast.corrupted)
    layer_patching(model, contrast, max_batch=3)
    torch.testing.assert_close(model(contrast.corrupted), before, atol=0, rtol=0)


def test_best_layer_and_top_cells():
    result = torch.zeros(4, 5)
    result[2, -1] = 0.7
    result[1, -1] = 0.4
    result[3, 1] = -0.9
    assert best_layer(result) == 2
    assert best_layer(result, position=1) == 0
    result[2, -1] = float("nan")
    assert best_layer(result) == 1
    table = top_cells(maps_of({"mlp_out": result.tolist()}), ["<bos>", " a", " b", " c", " d"], k=2)
    assert table["layer"].tolist() == [3, 1] and table["token"].tolist() == ["' a'", "' d'"]


def test_bad_input_is_one_clear_line(model, contrast):
    cases = [
        (lambda: layer_patching(model, contrast, layers=[model.cfg.n_layers]), "out of range"),
        (lambda: layer_patching(model, contrast, layers=[-1]), "out of range"),
        (lambda: layer_patching(model, contrast, components=("resid_post",)), "unknown component"),
        (lambda: layer_patching(model, contrast, direction="backwards"), "unknown direction"),
        (lambda: best_layer(torch.zeros(3, 4), position=4), "out of range"),
        (lambda: make_contrast(model, CLEAN, "I climbed the pomegranate tree and picked"), "same number of tokens"),
        (lambda: make_contrast(model, CLEAN, CORRUPTED, target=" pomegranate"), "not a single token"),
    ]
    for call, phrase in cases:
        with pytest.raises(ValueError, match=phrase) as info:
            call()
        assert "\n" not in str(info.value)


def test_standouts_find_the_study_cells_in_the_paper_maps():
    """Run on the paper's published maps, the rules name the cells the study described."""
    from helpers.methods.layer_patching import standouts
    from helpers.paper import study

    paper = study()
    assert paper.diff_position == 16
    found = standouts(paper.patch_maps, paper.diff_position)
    assert (found["attn_layer"], found["mlp_layer"]) == (26, 31)
    assert (found["low_layer"], found["high_layer"]) == (23, 27)
    assert found["attn0_diff"] == pytest.approx(0.952) and found["mlp0_diff"] == pytest.approx(0.848)
    assert found["attn_value"] == pytest.approx(0.524) and found["mlp_value"] == pytest.approx(0.492)
