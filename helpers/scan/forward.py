"""The scan's forward pass: chosen neurons' activations and the unembedding's input, nothing more.

Only the layers that hold a chosen neuron are hooked, and only the chosen columns leave the
hook, never a full cache. The run stops at the unembedding's input; logits are computed
outside, in float32 and a block of rows at a time (``block_argmax``), so a bfloat16 model
still gets an exact argmax and no ``[tokens, vocab]`` matrix is held whole.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from helpers.core.hooks import UNEMBED_IN, mlp_post, run_until
from helpers.core.names import Neuron

# Rows of the [rows, vocab] float32 logit block computed at once (about 2**25 numbers).
LOGIT_BLOCK = 2**25


def check_neuron_list(neurons: Sequence[Neuron | str], n_layers: int, d_mlp: int) -> list[Neuron]:
    if isinstance(neurons, (str, Neuron)):
        neurons = [neurons]
    parsed = [n if isinstance(n, Neuron) else Neuron.parse(n) for n in neurons]
    if not parsed:
        raise ValueError("the neuron list is empty; pass at least one neuron, e.g. ['L31N892']")
    for n in parsed:
        n.check(n_layers, d_mlp)
    seen, duplicates = set(), []
    for n in parsed:
        if n in seen and n not in duplicates:
            duplicates.append(n)
        seen.add(n)
    if duplicates:
        raise ValueError(f"the neuron list repeats {', '.join(map(str, duplicates))}; list each neuron once")
    return parsed


def _layer_groups(neurons: list[Neuron], device) -> dict[int, tuple[Tensor, Tensor]]:
    """layer -> (indices within the layer, columns of the output) for the neurons there."""
    groups: dict[int, tuple[list[int], list[int]]] = {}
    for column, n in enumerate(neurons):
        idx, cols = groups.setdefault(n.layer, ([], []))
        idx.append(n.index)
        cols.append(column)
    return {
        layer: (torch.tensor(idx, device=device), torch.tensor(cols))
        for layer, (idx, cols) in sorted(groups.items())
    }


def forward(
    model, tokens: Int[Tensor, "batch pos"], neurons: list[Neuron], final: bool = False, normalized: bool = False
) -> tuple[Float[Tensor, "batch pos n_neurons"], Float[Tensor, "batch pos d_model"] | None, Float[Tensor, "batch pos d_model"] | None]:
    """The neurons' activations (float32). With ``final`` also the unembedding's input (the
    run stops there, before any logits are computed); with ``normalized`` also the
    ``ln_final``-normalised residual (``ln_final.hook_normalized``)."""
    groups = _layer_groups(neurons, tokens.device)
    got: dict = {}

    def make_grab(layer: int):
        index = groups[layer][0]

        def grab(act, hook):
            got[layer] = act[..., index].float()
            return act

        return grab

    def grab_normalized(x, hook):
        got["normalized"] = x
        return x

    def grab_unembed_in(x, hook):
        got["unembed_in"] = x
        return x

    hooks = [(mlp_post(layer), make_grab(layer)) for layer in groups]
    if normalized:
        hooks.append(("ln_final.hook_normalized", grab_normalized))
    with torch.no_grad():
        if final:  # the logits are computed outside, a block of rows at a time
            run_until(model, tokens, UNEMBED_IN, [*hooks, (UNEMBED_IN, grab_unembed_in)])
        else:
            model.run_with_hooks(tokens, fwd_hooks=hooks)
    acts = torch.empty(*tokens.shape, len(neurons), dtype=torch.float32, device=tokens.device)
    for layer, (_, columns) in groups.items():
        acts[..., columns.to(tokens.device)] = got[layer]
    return acts, got.get("unembed_in"), got.get("normalized")


@torch.no_grad()
def neuron_activations(model, tokens: Int[Tensor, "batch pos"], neurons: Sequence[Neuron | str]) -> Float[Tensor, "batch pos n_neurons"]:
    """Activations of ``neurons`` (columns in the given order) on ``tokens``, float32 on CPU."""
    checked = check_neuron_list(neurons, model.cfg.n_layers, model.cfg.d_mlp)
    device = model.W_U.device
    acts, _, _ = forward(model, tokens.to(device), checked)
    return acts.cpu()


def block_argmax(x: Float[Tensor, "rows d_model"], weight: Float[Tensor, "d_model vocab"], bias: Float[Tensor, "vocab"] | None) -> Int[Tensor, "rows"]:
    """argmax over the vocabulary of ``x @ weight + bias`` in float32, a block of rows at a time."""
    rows = max(1, LOGIT_BLOCK // weight.shape[1])
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], rows):
        logits = x[start:start + rows].float() @ weight
        if bias is not None:
            logits += bias
        out[start:start + rows] = logits.argmax(-1)
    return out



def random_token_activations(model, neuron: Neuron | str, n_tokens: int = 64, seed: int = 0) -> tuple[Int[Tensor, "pos"], Float[Tensor, "pos"]]:
    """``n_tokens`` tokens drawn uniformly from the vocabulary (special tokens left out),
    after BOS, and the neuron's activation at each."""
    tokenizer = model.tokenizer
    ordinary = torch.from_numpy(np.setdiff1d(np.arange(len(tokenizer)), tokenizer.all_special_ids))
    pick = torch.randint(len(ordinary), (n_tokens,), generator=torch.Generator().manual_seed(seed))
    tokens = torch.cat([torch.tensor([tokenizer.bos_token_id]), ordinary[pick]])
    acts = neuron_activations(model, tokens[None], [neuron])[0, 1:, 0]
    return tokens[1:], acts
