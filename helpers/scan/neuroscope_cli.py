"""The neuroscope pass's command line: ``python -m helpers.scan.neuroscope`` (torchrun starts
one process per GPU or CPU worker; see :mod:`helpers.scan.neuroscope`)::

    torchrun --nproc_per_node 2 -m helpers.scan.neuroscope --model toy --documents toy --n-docs 400 --out DIR
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

import torch


def parse_layers(text: str) -> list[int] | None:
    """``"all"`` -> None; ``"0,3,5"`` or ``"0-3"`` -> layer numbers (one-line error otherwise)."""
    if text.strip() == "all":
        return None
    layers = []
    try:
        for piece in text.split(","):
            low, _, high = piece.strip().partition("-")
            layers += list(range(int(low), int(high) + 1)) if high else [int(low)]
    except ValueError:
        raise ValueError(f"--layers {text!r}: write 'all', a list such as 0,3,5 or a range such as 28-35") from None
    return layers


def main(argv: list[str] | None = None, on_shard: Callable[[int], None] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Every neuron's top examples, histogram, firing rate and mean, in one pass (run it under torchrun for several processes).")
    parser.add_argument("--model", default="toy", help="bundled name, local HF folder or hub name")
    parser.add_argument("--device", default="auto", help="auto: this process's GPU (LOCAL_RANK) when there is one, else cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--documents", default="toy", help="toy or pile-10k")
    parser.add_argument("--n-docs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", default="all")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--shard-docs", type=int, default=64)
    parser.add_argument("--checkpoint-seconds", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: under .cache/neuroscope)")
    args = parser.parse_args(argv)
    try:
        layers = parse_layers(args.layers)
    except ValueError as error:
        sys.exit(f"error: {error}")
    import torch.distributed as dist

    from helpers.core.models import load_model
    from helpers.scan.neuroscope import neuroscope

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = args.device
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    grouped = int(os.environ.get("WORLD_SIZE", 1)) > 1
    if grouped:
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    try:
        model = load_model(args.model, device=device, dtype=args.dtype)
        result = neuroscope(
            model, args.documents, layers, args.out, k=args.k, batch_size=args.batch_size, max_tokens=args.max_tokens,
            n_docs=args.n_docs, seed=args.seed, shard_docs=args.shard_docs, checkpoint_seconds=args.checkpoint_seconds,
            on_shard=on_shard,
        )
        if not grouped or dist.get_rank() == 0:
            print(f"neuroscope: {result.n_neurons:,} neurons of layers {result.layers}, {result.n_tokens:,} tokens of "
                  f"{result.n_docs:,} documents, {result.params['world_size']} process(es): {result.out_dir}", flush=True)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        sys.exit(f"error: {error}")
    finally:
        if grouped and dist.is_initialized():
            dist.destroy_process_group()

