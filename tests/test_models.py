"""The model loader: local folders, random models, hub names without network, bad names."""
import pytest
import torch

from helpers.core.models import ModelUnavailable, check_model_folder, load_model, random_model, single_token
from helpers.core.names import Head, Neuron


def test_random_model_is_processed_like_the_study():
    model = random_model(n_layers=2, d_model=32, n_heads=2, seed=3)
    assert model.cfg.n_layers == 2 and model.cfg.d_mlp == 128
    # centre_writing_weights: every MLP output row has zero mean over d_model
    torch.testing.assert_close(model.W_out.mean(-1), torch.zeros(2, 128), atol=1e-5, rtol=0)
    # centre_unembed: every token's unembedding column sums to zero... per token over d_vocab
    torch.testing.assert_close(model.W_U.mean(-1), torch.zeros(32), atol=1e-5, rtol=0)


def test_random_model_is_reproducible_from_its_seed():
    a = random_model(n_layers=1, d_model=16, n_heads=2, seed=7)
    b = random_model(n_layers=1, d_model=16, n_heads=2, seed=7)
    c = random_model(n_layers=1, d_model=16, n_heads=2, seed=8)
    assert torch.equal(a.W_in, b.W_in) and not torch.equal(a.W_in, c.W_in)


def test_local_folder_loads_offline(tmp_path, monkeypatch):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from helpers.core.models import BUNDLED_MODELS

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_MODELS["toy"])
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = load_model(str(tmp_path))
    assert model.cfg.model_name == str(tmp_path)
    logits = model(model.to_tokens("the apple"))
    assert logits.shape[-1] == len(tokenizer)


def test_hub_name_without_network_fails_at_once_and_names_the_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("helpers.core.models.in_hub_cache", lambda name: False)
    with pytest.raises(ModelUnavailable, match="cannot reach.*MODEL=toy"):
        load_model("gpt2-large")


def test_unknown_model_name_is_one_clear_line():
    with pytest.raises(ModelUnavailable, match="unknown model 'gpt9-huge'") as error:
        load_model("gpt9-huge")
    assert "\n" not in str(error.value)


def test_missing_folder_and_missing_files_are_named(tmp_path):
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_model(str(tmp_path / "nowhere"))
    tmp_path.joinpath("config.json").write_text("{not json")
    with pytest.raises(ModelUnavailable, match="config.json is not valid JSON"):
        check_model_folder(tmp_path)


def test_single_token_rejects_multi_token_targets():
    model = random_model(n_layers=1, d_model=16, n_heads=2)
    assert model.tokenizer.decode([single_token(model, " an")]) == " an"
    with pytest.raises(ValueError, match="not a single token"):
        single_token(model, " antidisestablishment")


def test_component_names_round_trip_and_check_range():
    assert str(Neuron(31, 892)) == "L31N892"
    assert Neuron.parse("L31N892") == Neuron(31, 892)
    assert Neuron.from_flat(Neuron(3, 17).flat(64), 64) == Neuron(3, 17)
    assert Head.parse(str(Head(26, 1))) == Head(26, 1)
    with pytest.raises(ValueError, match="out of range"):
        Neuron(36, 0).check(n_layers=36, d_mlp=5120)
    with pytest.raises(ValueError, match="not a neuron name"):
        Neuron.parse("31/892")


def test_paper_values_apply_to_gpt2_large_by_name_or_local_copy():
    from helpers.paper import is_paper_model

    assert is_paper_model("gpt2-large") and is_paper_model("openai-community/gpt2-large")
    assert is_paper_model("/models/gpt2-large")  # a downloaded copy, loaded offline
    assert not is_paper_model("toy") and not is_paper_model("gpt2-medium") and not is_paper_model("/models/gpt2")


def test_a_cached_load_has_the_processed_weight_attributes(tmp_path):
    """The bundled model has trained biases, so a stale attribute (mlp.b_in pointing at the
    unprocessed bias) differs from the processed one; the fast neuron-patching engine reads the
    attributes and must then reproduce the model, not fall back to the slow one."""
    import warnings

    from helpers.core.models import load_model
    from helpers.core.prompts import make_contrast
    from helpers.methods.neuron_patching import neuron_patching

    fresh = load_model("toy", cache=None)
    load_model("toy", cache=tmp_path)
    cached = load_model("toy", cache=tmp_path)
    names = ["W_in", "b_in", "W_out", "b_out"]
    attention = ["W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"]
    for layer in range(fresh.cfg.n_layers):
        for name in names:
            assert torch.equal(getattr(fresh.blocks[layer].mlp, name), getattr(cached.blocks[layer].mlp, name)), (layer, name)
        for name in attention:
            assert torch.equal(getattr(fresh.blocks[layer].attn, name), getattr(cached.blocks[layer].attn, name)), (layer, name)
    # the attribute is the bias the forward pass adds
    mlp = cached.blocks[2].mlp
    assert torch.equal(mlp.b_in, getattr(mlp, "in")._original_component.bias)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fallback warns
        assert neuron_patching(cached, make_contrast(cached), 3, "all").engine == "suffix"


def folder_variant(tmp_path, name, edit_state=None, edit_config=None):
    """A copy of the bundled toy folder with its weights or config edited."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    from helpers.core.models import BUNDLED_MODELS

    folder = tmp_path / name
    shutil.copytree(BUNDLED_MODELS["toy"], folder)
    state = load_file(folder / "model.safetensors")
    save_file(edit_state(state) if edit_state else state, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(edit_config(config) if edit_config else config))
    return folder


@pytest.mark.parametrize("name, edit_state, edit_config, match", [
    ("missing", lambda s: {k: v for k, v in s.items() if k != "transformer.h.0.mlp.c_fc.weight"}, None,
     r"1 tensor\(s\) the config needs are missing: transformer.h.0.mlp.c_fc.weight"),
    ("one-layer-more", None, lambda c: dict(c, n_layer=c["n_layer"] + 1), r"12 tensor\(s\) the config needs are missing: transformer.h.4."),
    ("wider", None, lambda c: dict(c, n_inner=2 * c["n_inner"]), r"have another shape: transformer.h.0.mlp.c_fc.weight \[128, 512\] \(the config needs \[128, 1024\]\)"),
])
def test_a_folder_that_does_not_hold_its_config_model_is_refused(tmp_path, name, edit_state, edit_config, match):
    """Each of these loaded before (a fresh random weight, a random last layer, or transformers'
    hidden report): now one line naming the folder and the tensors."""
    folder = folder_variant(tmp_path, name, edit_state, edit_config)
    with pytest.raises(ModelUnavailable, match=match) as info:
        load_model(str(folder), cache=None)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_a_truncated_weight_file_is_refused(tmp_path):
    folder = folder_variant(tmp_path, "truncated")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelUnavailable, match="not a readable safetensors file"):
        check_model_folder(folder)


def test_hub_layout_loads_and_an_unused_tensor_is_named_through_quiet_loading(tmp_path):
    """GPT-2's hub files name tensors without the ``transformer.`` prefix and keep the causal
    mask buffers (``attn.bias``), which transformers ignores: no warning. A tensor no part of
    the model uses is named, and the page's quiet loading passes that warning on."""
    import warnings

    from helpers.book.page import quietly
    from helpers.core.model_folder import ModelFolderWarning

    def hub_layout(state):
        state = {k.removeprefix("transformer."): v for k, v in state.items()}
        return {**state, "h.0.attn.bias": torch.ones(1, 1, 4, 4)}

    folder = folder_variant(tmp_path, "hub", hub_layout)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelFolderWarning)
        check_model_folder(folder)
    extra = folder_variant(tmp_path, "extra", lambda s: {**s, "transformer.h.0.mlp.spare": torch.zeros(3)})
    with pytest.warns(ModelFolderWarning, match=r"holds 1 tensor\(s\) the model does not use, left out: h.0.mlp.spare"):
        model = quietly(load_model, str(extra), cache=None)
    assert model.cfg.n_layers == 4
