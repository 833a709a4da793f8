"""Loading a model with GPT-2 Large dimensions and one forward pass.

Baseline: the plain HuggingFace model (construction, one forward). Candidate: the same
random weights behind a TransformerBridge with the study's weight processing.
"""
import time

import torch

from benchmarks.common import PeakMemory, Row, best_time
from helpers.core.models import GPT2_LARGE_SHAPE, random_model

PROMPT_TOKENS = 20


def run() -> list[Row]:
    from transformers import GPT2Config, GPT2LMHeadModel

    shape = GPT2_LARGE_SHAPE
    config = GPT2Config(
        vocab_size=shape["d_vocab"], n_positions=shape["n_ctx"], n_embd=shape["d_model"],
        n_layer=shape["n_layers"], n_head=shape["n_heads"],
    )
    start = time.perf_counter()
    with PeakMemory() as hf_memory:
        hf_model = GPT2LMHeadModel(config).eval()
    hf_load = time.perf_counter() - start
    tokens = torch.randint(0, shape["d_vocab"], (1, PROMPT_TOKENS))
    hf_forward = best_time(lambda: hf_model(tokens))
    del hf_model

    start = time.perf_counter()
    with PeakMemory() as bridge_memory:
        bridge = random_model(**shape)
    bridge_load = time.perf_counter() - start
    bridge_forward = best_time(lambda: bridge(tokens))
    return [
        Row("load: GPT-2 Large shape, processed bridge", "plain HF GPT2LMHeadModel init", hf_load, bridge_load,
            f"peak memory {bridge_memory.peak_gb:.2f} GB vs {hf_memory.peak_gb:.2f} GB"),
        Row(f"forward: {PROMPT_TOKENS} tokens, bridge", "plain HF forward", hf_forward, bridge_forward),
    ]
