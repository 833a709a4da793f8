"""The bundled toy model: it loads, it learned the article rule on held-out prompts, its model
card reports what these tests measure, the training command still runs and is repeatable,
and broken model folders fail with one line naming the file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers.core.english import article_for
from helpers.toy.corpus import article_accuracy, article_prompts, study_prompts
from helpers.core.models import BUNDLED_MODELS, ModelUnavailable, load_model
from helpers.toy.train import EVAL_PROMPTS, EVAL_SEED, STUDY_PAIRS, TrainConfig, evaluate, main, train

TOY = BUNDLED_MODELS["toy"]
pytestmark = pytest.mark.skipif(not (TOY / "model.safetensors").is_file(), reason="the toy model is not trained yet")


@pytest.fixture(scope="module")
def toy():
    return load_model("toy")


@pytest.fixture(scope="module")
def measured(toy) -> dict:
    return evaluate(toy)


@pytest.fixture(scope="module")
def card_numbers() -> dict:
    return json.loads((TOY / "eval.json").read_text())


def test_folder_is_small_and_complete(toy):
    files = {p.name for p in TOY.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md", "eval.json"} <= files
    assert sum(p.stat().st_size for p in TOY.iterdir()) <= 20 * 2**20
    config = json.loads((TOY / "config.json").read_text())
    assert config["activation_function"] == "gelu_new" and config["model_type"] == "gpt2"
    assert toy.cfg.d_vocab == config["vocab_size"] == len(toy.tokenizer)
    assert toy.tokenizer.bos_token_id == 0 and toy.tokenizer.decode([0]) == "<|endoftext|>"


def test_heldout_article_accuracy_is_at_least_95_percent(toy):
    prompts = article_prompts(EVAL_PROMPTS, seed=EVAL_SEED, split="heldout")
    assert article_accuracy(toy, prompts) >= 0.95


def test_each_kind_of_heldout_prompt_is_mostly_right(measured):
    for kind, row in measured["heldout_by_kind"].items():
        assert row["n"] >= 50, kind
        assert row["accuracy"] >= 0.9, (kind, row)


@pytest.mark.parametrize("vowel, consonant", STUDY_PAIRS)
def test_study_prompt_top1_is_the_right_article(toy, vowel, consonant):
    clean, corrupted = study_prompts(vowel, consonant)
    top = [toy.tokenizer.decode([int(toy(toy.to_tokens(p))[0, -1].argmax())]) for p in (clean, corrupted)]
    assert top == [" " + article_for(vowel), " " + article_for(consonant)] == [" an", " a"]


def test_model_card_reports_what_the_tests_measure(measured, card_numbers):
    check_card(TOY, measured, card_numbers)


FAMILY = [name for name in BUNDLED_MODELS if name != "toy"]


def test_the_family_is_complete_and_small():
    """Every bundled model is trained (one corpus, so one tokenizer) and all of them fit in 30 MB."""
    folders = list(BUNDLED_MODELS.values())
    assert all((f / "model.safetensors").is_file() for f in folders), [f.name for f in folders if not (f / "model.safetensors").is_file()]
    assert sum(p.stat().st_size for f in folders for p in f.iterdir()) <= 30 * 2**20
    tokenizers = {(f / "tokenizer.json").read_bytes() for f in folders}
    assert len(tokenizers) == 1
    configs = [json.loads((f / "eval.json").read_text())["config"] for f in folders]
    assert len({c["seed"] for c in configs if (c["n_layer"], c["n_embd"]) == (4, 128)}) >= 3, "three seeds of the toy's shape"
    assert len({(c["n_layer"], c["n_embd"]) for c in configs}) >= 3, "at least two other shapes"


@pytest.mark.parametrize("name", FAMILY)
def test_each_family_card_reports_what_the_tests_measure(name):
    folder = BUNDLED_MODELS[name]
    model = load_model(name)
    measured = evaluate(model)
    card_numbers = json.loads((folder / "eval.json").read_text())
    check_card(folder, measured, card_numbers)
    config = card_numbers["config"]
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.n_heads) == (config["n_layer"], config["n_embd"], config["n_head"])
    card = (folder / "README.md").read_text()
    assert f"--seed {config['seed']}" in card and f"--layers {config['n_layer']}" in card and f"--width {config['n_embd']}" in card


def check_card(folder: Path, measured: dict, card_numbers: dict) -> None:
    for key in ["heldout_accuracy", "train_prompts_accuracy", "novel_accuracy", "study_top1_correct", "heldout_n"]:
        assert card_numbers[key] == pytest.approx(measured[key], abs=1e-6), key
    assert set(card_numbers["heldout_by_kind"]) == set(measured["heldout_by_kind"])
    for kind, row in measured["heldout_by_kind"].items():
        assert card_numbers["heldout_by_kind"][kind]["n"] == row["n"], kind
        assert card_numbers["heldout_by_kind"][kind]["accuracy"] == pytest.approx(row["accuracy"], abs=1e-6), kind
    for ours, theirs in zip(measured["study_top1"], card_numbers["study_top1"]):
        assert ours["top1"] == theirs["top1"]
        assert ours["p_an"] == pytest.approx(theirs["p_an"], abs=1e-5)
    card = (folder / "README.md").read_text()
    assert f"**{measured['heldout_accuracy']:.3f}**" in card
    assert f"{measured['novel_accuracy']:.3f}" in card
    assert f"{card_numbers['final_loss']:.4f}" in card
    assert "python -m helpers.toy.train" in card


def small_config(**changes) -> TrainConfig:
    base = dict(docs=40, tokenizer_docs=40, vocab_size=400, n_layer=1, n_embd=32, n_head=2, n_ctx=64,
                steps=3, batch_size=2, warmup=1)
    return TrainConfig(**{**base, **changes})


def test_training_is_bitwise_repeatable():
    first, _, history = train(small_config(), log=lambda *a, **k: None)
    second, _, _ = train(small_config(), log=lambda *a, **k: None)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert len(history["losses"]) == 3
    other_seed, _, _ = train(small_config(seed=1), log=lambda *a, **k: None)
    assert not torch.equal(first.transformer.wte.weight, other_seed.transformer.wte.weight)


@pytest.mark.slow
def test_training_command_writes_a_loadable_folder(tmp_path):
    out = tmp_path / "toy"
    threads = torch.get_num_threads()
    main(["--out", str(out), "--steps", "2", "--docs", "30", "--threads", "1"])
    assert torch.get_num_threads() == threads  # the command leaves the caller's settings alone
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "eval.json"} <= {p.name for p in out.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]  # nothing left beside it
    model = load_model(str(out))
    assert model.cfg.d_vocab == len(model.tokenizer)
    first_weights = (out / "model.safetensors").read_bytes()
    main(["--out", str(out), "--steps", "2", "--docs", "30", "--threads", "1"])  # replaces in place
    assert (out / "model.safetensors").read_bytes() == first_weights
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]


@pytest.fixture
def copy_of_toy(tmp_path) -> Path:
    folder = tmp_path / "toy-copy"
    shutil.copytree(TOY, folder)
    return folder


def one_line_error(name: str, match: str) -> None:
    with pytest.raises(ModelUnavailable, match=match) as info:
        load_model(name)
    assert "\n" not in str(info.value)


def test_missing_folder_is_one_line(tmp_path):
    one_line_error(str(tmp_path / "nowhere"), "nowhere does not exist")


@pytest.mark.parametrize("victim", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_file_is_named(copy_of_toy, victim):
    (copy_of_toy / victim).unlink()
    one_line_error(str(copy_of_toy), victim if victim != "model.safetensors" else "model.safetensors")


@pytest.mark.parametrize("victim", ["config.json", "tokenizer.json", "model.safetensors"])
def test_corrupt_file_is_named(copy_of_toy, victim):
    (copy_of_toy / victim).write_bytes(b"\x00not what it should be{")
    one_line_error(str(copy_of_toy), victim)


def test_tokenizer_larger_than_the_vocabulary_is_refused(copy_of_toy):
    config = json.loads((copy_of_toy / "config.json").read_text())
    config["vocab_size"] = 1000
    (copy_of_toy / "config.json").write_text(json.dumps(config))
    one_line_error(str(copy_of_toy), "tokenizer.json has 2048 tokens but .*vocab_size=1000")
