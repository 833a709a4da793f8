"""The page's neuron: one choice for every page, found by patching on the page's prompts,
cached by a hash of every weight, and the one result type of the patching family."""
import pytest
import torch

import helpers.methods.choice as choice_module
from helpers.book.page import choose_neuron
from helpers.core.models import random_model, weights_fingerprint
from helpers.core.names import Neuron
from helpers.core.prompts import Contrast, make_contrast
from helpers.methods.attribution import attribution_patching
from helpers.methods.layer_patching import layer_patching
from helpers.methods.logit_lens import logit_lens
from helpers.methods.neuron_patching import neuron_patching
from support import CLEAN, CORRUPTED, PLANTED, plant


@pytest.fixture(scope="module")
def planted():
    model = random_model(n_layers=4, d_model=32, d_mlp=64, n_heads=4, seed=3)
    contrast = make_contrast(model, CLEAN, CORRUPTED)
    plant(model, contrast, PLANTED)
    return model, contrast


def test_auto_finds_the_planted_neuron_and_its_layer(planted, tmp_path):
    model, contrast = planted
    choice = choose_neuron(model, contrast, "auto", "auto", cache=tmp_path)
    assert (choice.neuron, choice.layer) == (PLANTED, PLANTED.layer)
    assert choice.layer_source == "ranked first by layer patching" and choice.auto
    fixed = choose_neuron(model, contrast, PLANTED.layer, "auto", cache=tmp_path)
    assert fixed.neuron == PLANTED and fixed.layer_source == "given as a parameter"


def test_a_given_neuron_sets_the_layer_and_a_contradicting_layer_is_refused(planted):
    model, contrast = planted
    given = choose_neuron(model, contrast, "auto", "L1N5", cache=None)
    assert (given.neuron, given.layer, given.auto) == (Neuron(1, 5), 1, False)
    with pytest.raises(ValueError, match=r"neuron L1N5 is in layer 1 but layer=2 was given; set layer='auto' or layer=1"):
        choose_neuron(model, contrast, 2, "L1N5", cache=None)
    with pytest.raises(ValueError, match="out of range"):
        choose_neuron(model, contrast, "auto", "L9N0", cache=None)
    with pytest.raises(ValueError, match="not a neuron name"):
        choose_neuron(model, contrast, "auto", "neuron 5", cache=None)


def test_the_choice_is_computed_once_and_reused(planted, tmp_path, monkeypatch):
    model, contrast = planted
    first = choose_neuron(model, contrast, cache=tmp_path)
    assert len(list(tmp_path.glob("choice-*.safetensors"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("a cached choice must not patch again")

    monkeypatch.setattr(choice_module, "neuron_patching", refuse)
    monkeypatch.setattr(choice_module, "layer_patching", refuse)
    assert choose_neuron(model, contrast, cache=tmp_path) == first
    # other prompts are another question: not answered from the cache
    other = make_contrast(model, CLEAN.replace("pear tree", "plum tree"), CORRUPTED.replace("pear tree", "plum tree"))
    with pytest.raises(AssertionError, match="must not patch again"):
        choose_neuron(model, other, cache=tmp_path)


def test_other_weights_never_read_the_cached_choice(tmp_path):
    """Same name and shape, one weight changed: the fingerprint and the cache file change."""
    model = random_model(n_layers=4, d_model=32, d_mlp=64, n_heads=4, seed=3)
    contrast = make_contrast(model, CLEAN, CORRUPTED)
    plant(model, contrast, PLANTED)
    before = weights_fingerprint(model)
    choose_neuron(model, contrast, cache=tmp_path)
    moved = Neuron(PLANTED.layer, 11)
    plant(model, contrast, moved)  # a second planted neuron, stronger because it is written last
    with torch.no_grad():
        model.blocks[PLANTED.layer].mlp.out._original_component.weight[PLANTED.index] *= 0.0
    assert weights_fingerprint(model) != before
    assert choose_neuron(model, contrast, cache=tmp_path).neuron == moved
    assert len(list(tmp_path.glob("choice-*.safetensors"))) == 2


def test_fingerprint_is_stable_and_sees_every_tensor():
    a, b = random_model(seed=4), random_model(seed=4)
    assert weights_fingerprint(a) == weights_fingerprint(b)
    with torch.no_grad():
        b.blocks[1].attn.o._original_component.bias[0] += 1e-6
    assert weights_fingerprint(a) != weights_fingerprint(b)


def test_one_result_type_for_the_whole_patching_family(planted):
    model, contrast = planted
    layer_map = layer_patching(model, contrast, components=("mlp_out",))["mlp_out"]
    neurons = neuron_patching(model, contrast, PLANTED.layer, "last")
    estimate = attribution_patching(model, contrast, "last")
    assert layer_map.index_axis_names == ("layer", "pos") and layer_map.activation_name == "mlp_out"
    assert neurons.index_axis_names == ("neuron",) and neurons.activation_name == "mlp_post" and neurons.method == "activation"
    assert estimate.index_axis_names == ("layer", "neuron") and estimate.method == "attribution"
    # one set of baselines: the same clean and corrupted logit differences everywhere
    for result in (neurons, estimate):
        assert result.clean_diff == pytest.approx(layer_map.clean_diff, abs=1e-5)
        assert result.corrupted_diff == pytest.approx(layer_map.corrupted_diff, abs=1e-5)
    # the whole layer at the last position is the layer map's last cell
    assert neurons.whole_layer == pytest.approx(layer_map.values[PLANTED.layer, -1].item(), abs=1e-4)
    assert neurons.top_neuron == estimate.top_neuron == PLANTED
    assert neurons.value_of(PLANTED) == pytest.approx(neurons.values[PLANTED.index].item())
    assert estimate.value_of(PLANTED) == pytest.approx(estimate.values[PLANTED.layer, PLANTED.index].item())
    with pytest.raises(ValueError, match="was not patched in this result"):
        neurons.value_of(Neuron(0, 1))
    with pytest.raises(ValueError, match="has no neurons"):
        layer_map.ranked(3)


def test_a_batch_of_pairs_is_one_clear_line(planted):
    model, contrast = planted
    with pytest.raises(ValueError, match=r"make_contrast takes one prompt pair, but the clean prompt is 2 prompts") as info:
        make_contrast(model, [CLEAN, CLEAN], [CORRUPTED, CORRUPTED])
    assert "\n" not in str(info.value)
    batch = Contrast(
        clean=contrast.clean.repeat(2, 1), corrupted=contrast.corrupted.repeat(2, 1), target=contrast.target, other=contrast.other,
        str_tokens=contrast.str_tokens, target_str=contrast.target_str, other_str=contrast.other_str,
    )
    for call in (
        lambda: layer_patching(model, batch),
        lambda: neuron_patching(model, batch, 0),
        lambda: attribution_patching(model, batch),
        lambda: logit_lens(model, batch),
    ):
        with pytest.raises(ValueError, match=r"takes one prompt pair shaped \[1, pos\], got clean \(2, \d+\)") as info:
            call()
        assert "\n" not in str(info.value)


def test_the_fingerprint_sees_an_edit_through_data(tmp_path):
    """An edit through ``.data`` bumps no version counter: the fingerprint reads the bytes, so
    the cached choice is not returned for the edited model (it was, when the hash was kept
    until a version counter moved)."""
    model = random_model(n_layers=4, d_model=32, d_mlp=64, n_heads=4, seed=3)
    contrast = make_contrast(model, CLEAN, CORRUPTED)
    plant(model, contrast, PLANTED)
    first = weights_fingerprint(model)
    assert choose_neuron(model, contrast, cache=tmp_path).neuron == PLANTED
    weight = model.blocks[PLANTED.layer].mlp.out._original_component.weight
    version = weight._version
    weight.data[PLANTED.index] = 0.0
    assert weight._version == version, "the edit must be one no version counter sees"
    assert weights_fingerprint(model) != first
    assert choose_neuron(model, contrast, cache=tmp_path).neuron != PLANTED


def test_empty_prompts_and_a_page_pair_that_does_not_differ_are_refused(tmp_path):
    """Both ran before: the prompt page published "differ only at ." and ablation a necessity of -inf."""
    from helpers.book.page import setup_page

    model = random_model(n_layers=2, d_model=32, n_heads=4, seed=3)
    for clean, corrupted, name in (("", CORRUPTED, "clean"), (CLEAN, "   ", "corrupted")):
        with pytest.raises(ValueError, match=f"the {name} prompt is empty") as info:
            make_contrast(model, clean, corrupted)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="clean_prompt and corrupted_prompt are the same tokens"):
        setup_page({"model_name": "toy", "clean_prompt": CLEAN, "corrupted_prompt": CLEAN})
