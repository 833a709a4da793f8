"""Layer-by-position patching on a GPT-2 Large-shaped model: helpers.methods.layer_patching vs transformer_lens.

Both compute the normalised recovery of the three components (residual stream, attention
output, MLP output) at every layer and position for a 20-token prompt pair that differs at one
position (random token ids; the model is random, so only the shapes matter). The baseline,
``transformer_lens.patching``, runs one full forward pass per cell, so its cost per cell does
not depend on the layer: it is timed on a few layers and scaled to all 36, and its values on
those layers are compared with the fast helper's in the same run.

The TransformerBridge holds about 2.3 times a GPT-2 Large's 3.1 GB of weights (about 9 GB in
all); on a machine without that much to spare, ``AN_NEURON_BENCH_LAYERS=18`` keeps GPT-2
Large's width and vocabulary with fewer layers (both methods' costs grow as the square of
the depth, so their ratio changes little).
"""
from __future__ import annotations

import os
import time

import torch
from transformer_lens import patching as tl_patching

from benchmarks.common import PeakMemory, Row
from helpers.core.models import GPT2_LARGE_SHAPE, random_model, single_token
from helpers.methods.layer_patching import COMPONENTS, layer_patching
from helpers.core.prompts import Contrast, logit_diff

N_TOKENS = 20
DIFF_POSITION = 16
BASELINE_LAYERS = (0, 31)
DEPTH_VARIABLE = "AN_NEURON_BENCH_LAYERS"


def random_contrast(model, n_tokens: int = N_TOKENS, diff_position: int = DIFF_POSITION, seed: int = 0) -> Contrast:
    """Two BOS-prefixed random prompts of ``n_tokens`` that differ only at ``diff_position``."""
    generator = torch.Generator().manual_seed(seed)
    vocab = model.tokenizer.vocab_size
    clean = torch.randint(0, vocab, (1, n_tokens), generator=generator)
    clean[0, 0] = model.tokenizer.bos_token_id
    corrupted = clean.clone()
    corrupted[0, diff_position] = (clean[0, diff_position] + 1 + torch.randint(0, vocab - 1, (1,), generator=generator)) % vocab
    return Contrast(
        clean=clean,
        corrupted=corrupted,
        target=single_token(model, " an"),
        other=single_token(model, " a"),
        str_tokens=model.to_str_tokens(clean),
        target_str=" an",
        other_str=" a",
    )


def transformer_lens_cells(model, contrast: Contrast, layers: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """transformer_lens.patching on ``layers`` x every position, normalised: ``[len(layers), pos]``."""
    import pandas as pd

    _, clean_cache = model.run_with_cache(contrast.clean)

    def metric(logits):
        return logit_diff(logits, contrast.target, contrast.other)[0]

    clean = metric(model(contrast.clean)).item()
    corrupted = metric(model(contrast.corrupted)).item()
    n_pos = contrast.clean.shape[1]
    index = pd.DataFrame([(layer, pos) for layer in layers for pos in range(n_pos)], columns=["layer", "pos"])
    out = {}
    for component in COMPONENTS:
        raw = tl_patching.generic_activation_patch(
            model,
            contrast.corrupted,
            clean_cache,
            metric,
            patch_setter=tl_patching.layer_pos_patch_setter,
            activation_name=component,
            index_df=index,
        )
        out[component] = ((raw - corrupted) / (clean - corrupted)).reshape(len(layers), n_pos)
    return out


def timed(fn):
    """(result, wall seconds) of one call."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


@torch.no_grad()
def run() -> list[Row]:
    shape = dict(GPT2_LARGE_SHAPE, n_layers=int(os.environ.get(DEPTH_VARIABLE, GPT2_LARGE_SHAPE["n_layers"])))
    model = random_model(**shape)
    contrast = random_contrast(model)
    n_layers = model.cfg.n_layers
    baseline_layers = tuple(sorted({0, min(BASELINE_LAYERS[-1], n_layers - 1)}))

    layer_patching(model, contrast, layers=[n_layers - 1])  # warm-up
    with PeakMemory() as memory:
        ours, ours_s = timed(lambda: layer_patching(model, contrast))
    with PeakMemory() as baseline_memory:
        reference, baseline_s = timed(lambda: transformer_lens_cells(model, contrast, baseline_layers))
    max_diff = max(
        (ours[c].values[list(baseline_layers)] - reference[c]).abs().max().item() for c in COMPONENTS
    )
    scaled_s = baseline_s * n_layers / len(baseline_layers)
    n_cells = len(COMPONENTS) * n_layers * contrast.clean.shape[1]
    print(
        f"layer patching, {n_cells} cells: ours {ours_s:.1f} s (peak +{memory.peak_gb:.2f} GB); "
        f"transformer_lens {baseline_s:.1f} s on layers {baseline_layers} (peak +{baseline_memory.peak_gb:.2f} GB), "
        f"scaled to {n_layers} layers {scaled_s:.1f} s; max |difference| on those layers {max_diff:.2e}"
    )
    return [
        Row(
            case=f"layer patching, 3 components x {n_layers} layers x {N_TOKENS} pos",
            baseline=f"transformer_lens.patching (x{n_layers}/{len(baseline_layers)})",
            baseline_s=scaled_s,
            candidate_s=ours_s,
            note=(
                f"d_model {model.cfg.d_model}; baseline timed on layers {list(baseline_layers)} and scaled; "
                f"max |diff| {max_diff:.1e}; "
                f"peak +{memory.peak_gb:.2f} GB"
            ),
            extra={"max_abs_diff": max_diff, "peak_gb": memory.peak_gb, "baseline_peak_gb": baseline_memory.peak_gb},
        )
    ]
