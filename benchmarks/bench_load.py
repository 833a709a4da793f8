"""Loading GPT-2 Large's shape from a local folder: plain HuggingFace, first processed load, cached load.

The folder is the rehearsal model (``make rehearsal`` writes it to .cache/rehearsal/gpt2-large;
if it is not there, it is written to a temporary folder first, not timed). Baseline: the plain
HuggingFace model read from the folder (``from_pretrained``). Candidates: ``load_model`` the
first time (boot the bridge, apply the study's weight processing, write the processed weights
to the cache) and the second time (boot, install the cached weights), in one process. Then one
forward pass of the bridge against the plain model's.
"""
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import PeakMemory, Row, best_time, release_freed_memory
from helpers.core.models import load_model
from helpers.core.rehearsal import ROOT, write_rehearsal_model

PROMPT_TOKENS = 20
REHEARSAL = ROOT / ".cache" / "rehearsal" / "gpt2-large"


def timed(fn):
    start = time.perf_counter()
    with PeakMemory() as memory:
        value = fn()
    return value, time.perf_counter() - start, memory.peak_gb


def run() -> list[Row]:
    from transformers import GPT2LMHeadModel

    with tempfile.TemporaryDirectory() as scratch:
        folder = REHEARSAL if (REHEARSAL / "model.safetensors").is_file() else write_rehearsal_model(Path(scratch) / "gpt2-large")
        cache = Path(scratch) / "processed"
        hf_model, hf_s, hf_gb = timed(lambda: GPT2LMHeadModel.from_pretrained(folder).eval())
        tokens = torch.randint(0, hf_model.config.vocab_size, (1, PROMPT_TOKENS))
        hf_forward = best_time(lambda: hf_model(tokens))
        del hf_model
        release_freed_memory()
        first, first_s, first_gb = timed(lambda: load_model(str(folder), cache=cache))
        bridge_forward = best_time(lambda: first(tokens))
        del first
        release_freed_memory()
        cached, cached_s, cached_gb = timed(lambda: load_model(str(folder), cache=cache))
        del cached
    print(f"load from {folder}: plain HF {hf_s:.1f} s, first processed load {first_s:.1f} s, cached load {cached_s:.1f} s")
    return [
        Row("load: GPT-2 Large shape, first (process + cache)", "plain HF from_pretrained", hf_s, first_s, f"peak {first_gb:.2f} GB vs {hf_gb:.2f} GB"),
        Row("load: GPT-2 Large shape, cached processed weights", "plain HF from_pretrained", hf_s, cached_s,
            f"peak {cached_gb:.2f} GB; {first_s / cached_s:.1f}x faster than the first load"),
        Row(f"forward: {PROMPT_TOKENS} tokens, bridge", "plain HF forward", hf_forward, bridge_forward),
    ]
