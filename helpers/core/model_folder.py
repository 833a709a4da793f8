"""Check a HuggingFace model folder before it is loaded.

``transformers`` fills a weight that the file lacks with a freshly initialised one and only logs
it, builds the layers a config asks for whatever the file holds, and reports a shape mismatch in
a table that quiet loading hides. A folder is therefore checked first, against the model its
``config.json`` describes (built on the meta device: no memory, no weights): every tensor that
model needs must be in the weight files with its shape (a tied tensor counts once), and the
files must be complete. A missing or misshapen tensor is a one-line :class:`ModelUnavailable`
naming the folder and the tensors; a tensor the model does not use is named in a
:class:`ModelFolderWarning`, which quiet loading passes on.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch

SAFETENSORS, SHARD_INDEX, PICKLED = "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"
NAMED = 4  # tensors named in one line; the rest are counted


class ModelUnavailable(RuntimeError):
    """The model cannot be loaded here; the message says what to use instead."""


class ModelFolderWarning(UserWarning):
    """A model folder loads, but holds something the model does not use."""


def check_model_folder(path: Path) -> None:
    """Raise a one-line error naming the file if ``path`` is not a usable HF model folder:
    config, tokenizer and weight files readable, and the weights those the config needs."""
    if not path.is_dir():
        raise ModelUnavailable(f"model folder {path} does not exist")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelUnavailable(f"{config_file} is missing: a model folder needs config.json")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise ModelUnavailable(f"{config_file} is not valid JSON ({error})") from None
    check_tokenizer(path, config)
    check_weights(path, expected_shapes(path), stored_shapes(path))


def check_tokenizer(path: Path, config: dict) -> None:
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelUnavailable(f"{tokenizer_file} is missing: the model folder needs its tokenizer")
    try:
        tokenizer = json.loads(tokenizer_file.read_text())
        vocab = tokenizer["model"]["vocab"]
    except (json.JSONDecodeError, KeyError) as error:
        raise ModelUnavailable(f"{tokenizer_file} is not a tokenizer file ({error})") from None
    n_tokens = len(vocab) + sum(1 for t in tokenizer.get("added_tokens", []) if t["content"] not in vocab)
    if n_tokens > config.get("vocab_size", n_tokens):
        raise ModelUnavailable(
            f"{tokenizer_file} has {n_tokens} tokens but {path / 'config.json'} says vocab_size={config['vocab_size']}: "
            "the tokenizer does not belong to this model"
        )


def stored_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the folder's weight files (headers only)."""
    from safetensors import SafetensorError, safe_open

    if (path / SHARD_INDEX).is_file():
        index = json.loads((path / SHARD_INDEX).read_text())
        files = sorted({path / name for name in index["weight_map"].values()})
    elif (path / SAFETENSORS).is_file():
        files = [path / SAFETENSORS]
    elif (path / PICKLED).is_file():
        try:
            state = torch.load(path / PICKLED, map_location="meta", weights_only=True, mmap=True)
        except Exception as error:
            raise ModelUnavailable(f"{path / PICKLED} cannot be read ({type(error).__name__}); replace it") from None
        return {name: tuple(t.shape) for name, t in state.items()}
    else:
        raise ModelUnavailable(f"{path} holds no weights: expected {SAFETENSORS}")
    shapes = {}
    for file in files:
        if not file.is_file():
            raise ModelUnavailable(f"{file} is missing: {SHARD_INDEX} lists it; copy the whole folder again")
        try:
            with safe_open(str(file), "pt") as f:
                shapes.update({name: tuple(f.get_slice(name).get_shape()) for name in f.keys()})
        except SafetensorError as error:
            raise ModelUnavailable(f"{file} is not a readable safetensors file ({error}); retrain or replace it") from None
    return shapes


def expected_shapes(path: Path) -> tuple[list[dict[str, tuple[int, ...]]], str, list[str]]:
    """The tensors the config's model needs, as groups of names that hold one tensor (tied
    weights share a group), the model's base prefix, and the patterns of stored tensors
    ``transformers`` ignores."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(path))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception as error:
        raise ModelUnavailable(f"{path / 'config.json'} does not describe a model transformers can build ({' '.join(str(error).split())[:160]})") from None
    groups: dict[int, dict[str, tuple[int, ...]]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), {})[name] = tuple(tensor.shape)
    ignored = list(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or [])
    return list(groups.values()), model.base_model_prefix, ignored


def check_weights(path: Path, expected: tuple[list[dict], str, list[str]], stored: dict[str, tuple[int, ...]]) -> None:
    """One-line error for missing or misshapen tensors; a warning naming unused ones."""
    groups, prefix, ignored = expected

    def bare(name: str) -> str:
        return name.removeprefix(prefix + ".")

    stored_bare = {bare(name): shape for name, shape in stored.items()}
    missing, misshapen, used = [], [], set()
    for group in groups:
        found = [name for name in group if bare(name) in stored_bare]
        if not found:
            missing.append(next(iter(group)))
        for name in found:
            used.add(bare(name))
            if stored_bare[bare(name)] != group[name]:
                misshapen.append(f"{name} {list(stored_bare[bare(name)])} (the config needs {list(group[name])})")
    if missing or misshapen:
        parts = ([f"{len(missing)} tensor(s) the config needs are missing: {listed(missing)}"] if missing else []) + (
            [f"{len(misshapen)} have another shape: {listed(misshapen)}"] if misshapen else [])
        raise ModelUnavailable(
            f"{path} does not hold the model its config.json describes ({'; '.join(parts)}); "
            "the weights and the config come from different models or a file is incomplete: copy the folder again or retrain it"
        )
    unused = sorted(name for name in stored_bare if name not in used and not any(re.search(p, name) for p in ignored))
    if unused:
        warnings.warn(f"{path} holds {len(unused)} tensor(s) the model does not use, left out: {listed(unused)}", ModelFolderWarning, stacklevel=3)


def listed(names: list[str]) -> str:
    return ", ".join(names[:NAMED]) + (f" and {len(names) - NAMED} more" if len(names) > NAMED else "")
