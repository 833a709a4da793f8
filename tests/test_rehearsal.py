"""The study's model path, rehearsed offline: GPT-2's real tokenizer, a GPT-2 Large-width model
with random weights, the processed-weights cache, and every paper token and neuron resolving."""
import json
import shutil

import pytest
import torch

import helpers.core.models as models
from helpers.core.models import load_model, single_token
from helpers.core.names import Neuron
from helpers.core.prompts import make_contrast
from helpers.core.rehearsal import GPT2_LARGE, TokenizerFilesMissing, gpt2_tokenizer, write_rehearsal_model
from helpers.paper import is_paper_model, study

PAPER = study()


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """GPT-2 Large's width and vocabulary, 2 layers instead of 36, in a folder named gpt2-large."""
    out = write_rehearsal_model(tmp_path_factory.mktemp("rehearsal") / "gpt2-large", seed=0, n_layers=2)
    return out, load_model(str(out), cache=tmp_path_factory.mktemp("processed"))


def test_gpt2_tokenizer_has_gpt2s_ids(tokenizer):
    assert len(tokenizer) == GPT2_LARGE["vocab_size"] == 50257
    assert tokenizer.encode(" an") == [281] and tokenizer.encode(" a") == [257] and tokenizer.encode(" though") == [996]
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == 50256
    text = "I climbed up the pear tree and picked a pear. Ünïcode ✓ 😀"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert len(tokenizer.encode(PAPER_CLEAN)) + 1 == PAPER.prompt_tokens  # with BOS, as in the study


PAPER_CLEAN = "I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked"


def test_every_token_the_pages_look_up_resolves_in_gpt2s_vocabulary(tokenizer):
    """The pages look up these tokens of the study (page 07: L31N892's top tokens; page 08:
    the gaps and L28N1921's first six; page 09: the mutual pairs); each is one GPT-2 token.
    The post's figures cut some labels short (' incidenta', 'Neverthele' further down
    L28N1921's list, 'reportprin' among the glitch tokens) and show a stray byte as '\ufffd':
    such a label is not one token, and a page that met one would name it 'not one token'."""
    looked_up = [t for t, _ in PAPER.congruence.top] + [t for t, _ in PAPER.though.top[:6]] + [g.token for g in PAPER.token_gaps]
    looked_up += [p.token for p in PAPER.mutual_pairs] + [" though", " an", " a", "i"]
    multi = {t: tokenizer.encode(t) for t in looked_up if len(tokenizer.encode(t)) != 1}
    assert not multi, f"paper tokens that are not one GPT-2 token: {multi}"
    cut_short = [t for t, _ in PAPER.though.top if len(tokenizer.encode(t)) != 1]
    assert cut_short == [" incidenta", "Neverthele"]
    glitch = [g.token for g in PAPER.glitch_tokens]
    unresolved = [t for t in glitch if len(tokenizer.encode(t)) != 1]
    assert unresolved == ["reportprin", "\u9f8d\ufffd"]  # a label cut short; a character beside a stray byte
    assert PAPER.patch_tokens[1:] == [tokenizer.decode([i]) for i in tokenizer.encode(PAPER_CLEAN)]


def test_every_neuron_the_pages_look_up_exists_in_gpt2_large():
    neurons = [PAPER.neuron, PAPER.though_neuron, PAPER.hub] + [n for n, _ in PAPER.top_neurons + PAPER.bottom_neurons]
    neurons += [p.neuron for p in PAPER.mutual_pairs] + [g.neuron for g in PAPER.token_gaps] + [g.second for g in PAPER.token_gaps]
    for neuron in neurons:
        neuron.check(GPT2_LARGE["n_layer"], GPT2_LARGE["n_inner"])
    assert Neuron(33, 4142) in neurons and Neuron(35, 3354) in neurons and Neuron(28, 1921) in neurons


def test_the_rehearsal_folder_runs_the_paper_path(wide):
    folder, model = wide
    assert folder.name == "gpt2-large" and is_paper_model(model.cfg.model_name)
    assert (model.cfg.d_model, model.cfg.d_mlp, model.cfg.n_heads, model.cfg.d_vocab, model.cfg.n_ctx) == (1280, 5120, 20, 50257, 1024)
    assert json.loads((folder / "rehearsal.json").read_text())["seed"] == 0
    contrast = make_contrast(model)
    assert contrast.clean.shape[1] == PAPER.prompt_tokens and single_token(model, " an") == 281
    assert contrast.diff_positions == [PAPER.diff_position]


def test_processed_weights_are_cached_and_exact(wide, tmp_path, monkeypatch):
    folder, _ = wide
    first = load_model(str(folder), cache=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    def refuse(bridge):
        raise AssertionError("a cached load must not process the weights again")

    monkeypatch.setattr(models, "process_weights", refuse)
    second = load_model(str(folder), cache=tmp_path)
    tokens = first.to_tokens(PAPER_CLEAN)
    with torch.no_grad():
        logits_1, cache_1 = first.run_with_cache(tokens, names_filter=lambda n: n.endswith(("hook_resid_pre", "hook_post", "hook_scale")))
        logits_2, cache_2 = second.run_with_cache(tokens, names_filter=lambda n: n.endswith(("hook_resid_pre", "hook_post", "hook_scale")))
    assert torch.equal(logits_1, logits_2)
    assert set(cache_1.keys()) == set(cache_2.keys()) and all(torch.equal(cache_1[k], cache_2[k]) for k in cache_1.keys())
    assert torch.equal(first.W_E, second.W_E) and not torch.equal(second.W_E, second.W_U.T), "embedding and unembedding must be untied"


def test_changed_weights_get_a_new_cache_entry(tmp_path):
    folder = write_rehearsal_model(tmp_path / "a" / "gpt2-large", seed=1, n_layers=1)
    key = models.processed_key(folder, "float32")
    other = write_rehearsal_model(tmp_path / "b" / "gpt2-large", seed=2, n_layers=1)
    assert models.processed_key(other, "float32") != key
    assert models.processed_key(folder, "bfloat16") != key
    assert models.processed_key(folder, "float32") == key


def test_bad_rehearsal_input_is_one_line(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="must be named gpt2-large"):
        write_rehearsal_model(tmp_path / "gpt2-small")
    with pytest.raises(TokenizerFilesMissing, match="run `make tokenizer`"):
        gpt2_tokenizer(tmp_path)
    broken = write_rehearsal_model(tmp_path / "x" / "gpt2-large", seed=0, n_layers=1)
    mismatched = tmp_path / "y" / "gpt2-large"
    shutil.copytree(broken, mismatched)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(models.ModelUnavailable, match="not a readable safetensors file") as info:
        load_model(str(broken), cache=None)
    assert "\n" not in str(info.value)
    config = json.loads((mismatched / "config.json").read_text())
    (mismatched / "config.json").write_text(json.dumps(dict(config, vocab_size=2048)))
    with pytest.raises(models.ModelUnavailable, match="tokenizer does not belong to this model"):
        load_model(str(mismatched), cache=None)
    (mismatched / "tokenizer.json").unlink()
    with pytest.raises(models.ModelUnavailable, match="tokenizer.json is missing"):
        load_model(str(mismatched), cache=None)
