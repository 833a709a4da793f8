"""Exact patching of all 5,120 neurons of a late GPT-2 Large layer against one pass per neuron.

Random model with GPT-2 Large dimensions (36 layers, d_model 1280, d_mlp 5120, vocabulary
50,257), CPU, 20-token prompts that differ at one position, layer 31. The naive loop (one
full hooked forward pass per neuron, as the study ran it) is timed on a sample of neurons and
scaled to the whole layer; the same sample gives the largest difference between the two.
Peak memory is measured over the fast patching, above the loaded model (whose own size is
printed once: building the random model with the study's weight processing takes more).
Cases: restoring at every position with the differing token where the study's prompts have
it (position 16 of 20), at the last position only, and at every position with the
difference at position 1 (the worst case for the fast engine: 19 positions to recompute).
"""
from __future__ import annotations

import torch

from benchmarks.common import PeakMemory, Row, best_time, release_freed_memory, rss_bytes
from helpers.core.models import GPT2_LARGE_SHAPE, random_model
from helpers.methods.neuron_patching import neuron_patching
from helpers.methods.reference import naive_neuron_patching
from helpers.core.prompts import Contrast

LAYER = 31
N_TOKENS = 20
SAMPLE = 8
CASES = [("all", 16), ("last", 16), ("all", 1)]


@torch.no_grad()
def contrast_differing_at(model, position: int, seed: int = 0) -> Contrast:
    """Random 20-token prompts (BOS first) that differ only at ``position``.

    As the study chose `` an``/`` a`` because the changed word moves them apart, the target and
    its rival are the two tokens whose logits the change moves most in opposite directions, so
    that the normalised values divide by a clear clean-minus-corrupted difference.
    """
    generator = torch.Generator().manual_seed(seed)
    n_tokens = len(model.tokenizer)
    ids = torch.randint(0, n_tokens, (N_TOKENS + 1,), generator=generator)
    clean = ids[:N_TOKENS].clone()
    clean[0] = model.tokenizer.bos_token_id
    corrupted = clean.clone()
    corrupted[position] = (clean[position] + 1 + ids[N_TOKENS] % (n_tokens - 1)) % n_tokens
    moved = (model(clean[None])[0, -1] - model(corrupted[None])[0, -1])[:n_tokens]
    target, other = int(moved.argmax()), int(moved.argmin())
    return Contrast(
        clean=clean[None],
        corrupted=corrupted[None],
        target=target,
        other=other,
        str_tokens=model.to_str_tokens(clean[None]),
        target_str=model.tokenizer.decode([target]),
        other_str=model.tokenizer.decode([other]),
    )


def run() -> list[Row]:
    rows = []
    model = random_model(**GPT2_LARGE_SHAPE)
    d_mlp = model.cfg.d_mlp
    release_freed_memory()
    print(f"  model built: process holds {rss_bytes() / 1e9:.2f} GB", flush=True)
    for positions, differs_at in CASES:
        contrast = contrast_differing_at(model, differs_at)
        result = None

        def fast():
            nonlocal result
            result = neuron_patching(model, contrast, LAYER, positions)

        release_freed_memory()
        with PeakMemory() as memory:
            fast_s = best_time(fast, repeats=1)
        generator = torch.Generator().manual_seed(1)
        sample = result.recovery.abs().topk(SAMPLE // 2).indices.tolist()
        sample += [i for i in torch.randperm(d_mlp, generator=generator).tolist() if i not in sample][: SAMPLE - len(sample)]
        naive = None

        def slow():
            nonlocal naive
            naive = naive_neuron_patching(model, contrast, LAYER, sample, positions)

        naive_s = best_time(slow, repeats=1) / len(sample) * d_mlp
        max_diff = (result.recovery[sample] - naive).abs().max().item()
        # the same difference in logit-difference units, before dividing by clean - corrupted
        raw_diff = max_diff * abs(result.clean_diff - result.corrupted_diff)
        recomputed = N_TOKENS - differs_at if positions == "all" else 1
        note = f"max |diff| {max_diff:.1e} ({raw_diff:.0e} in logits) on {len(sample)} neurons, peak +{memory.peak_gb:.2f} GB over the model"
        print(
            f"  {positions} positions, differs at {differs_at}: fast {fast_s:.1f} s, naive {naive_s:.0f} s (scaled), "
            f"engine {result.engine}, clean - corrupted {result.clean_diff - result.corrupted_diff:.3f}, {note}",
            flush=True,
        )
        rows.append(
            Row(
                case=f"L{LAYER} all {d_mlp} neurons, {positions} pos, {recomputed} recomputed",
                baseline=f"naive loop ({len(sample)} timed, scaled)",
                baseline_s=naive_s,
                candidate_s=fast_s,
                note=note,
            )
        )
    return rows
