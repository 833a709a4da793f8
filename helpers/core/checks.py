"""The argument checks every method shares: one function per kind of argument, one message each.

A bad argument stops the call with a one-line ``ValueError`` that names the value and says
what to pass instead. Methods call these before any work, so nothing is computed (or
written) for an argument that cannot be right.
"""
from __future__ import annotations

import operator
from typing import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from helpers.core.names import Head, Neuron

DIRECTIONS = ("sufficiency", "necessity")
POSITION_MODES = ("last", "all")


def check_layer(layer, n_layers: int, what: str = "layers") -> int:
    """``layer`` as an int, or a one-line error if it is not a layer index below ``n_layers``."""
    try:
        index = operator.index(layer)
    except TypeError:
        index = None
    if isinstance(layer, str):
        raise ValueError(f"layer {layer!r} is text: give the layer as a number, e.g. layer={layer.strip()}" if layer.strip().isdigit()
                         else f"layer {layer!r} is not a layer: give a number between 0 and {n_layers - 1}")
    if index is None or isinstance(layer, bool) or not 0 <= index < n_layers:
        raise ValueError(f"layer {layer!r} is out of range: this model has {what} 0-{n_layers - 1}")
    return index


def check_layers(layers: Sequence[int] | int | None, n_layers: int) -> list[int]:
    """All layers for None, else the given layers (sorted, each once) after a range check."""
    if layers is None:
        return list(range(n_layers))
    given = [layers] if isinstance(layers, int) else list(layers)
    checked = [check_layer(layer, n_layers) for layer in given]
    if not checked:
        raise ValueError(f"no layer given: give layers between 0 and {n_layers - 1}, or None for all")
    if len(set(checked)) != len(checked):
        raise ValueError(f"layers {checked} repeat a layer; give each layer once")
    return sorted(checked)


def check_direction(direction: str) -> str:
    """``'sufficiency'`` or ``'necessity'``, else a one-line error saying what each means."""
    if direction not in DIRECTIONS:
        raise ValueError(
            f"unknown direction {direction!r}: use 'sufficiency' (clean activations into the "
            "corrupted run) or 'necessity' (corrupted activations into the clean run)"
        )
    return direction


def check_positions(positions: str) -> str:
    """``'last'`` or ``'all'``, else a one-line error naming the two modes."""
    if positions not in POSITION_MODES:
        raise ValueError(f"unknown positions {positions!r}: use 'last' (the prediction position) or 'all' (every position, as the study did)")
    return positions


def check_neurons(neurons: Sequence[int] | None, d_mlp: int) -> Int[Tensor, "neuron"]:
    """Neuron indices within one layer as a tensor (all ``d_mlp`` for None), or a one-line error."""
    if neurons is None:
        return torch.arange(d_mlp)
    indices = torch.as_tensor(list(neurons), dtype=torch.long)
    if indices.numel() == 0 or indices.ndim != 1:
        raise ValueError("neurons must be a non-empty list of neuron indices, or None for every neuron")
    bad = indices[(indices < 0) | (indices >= d_mlp)]
    if bad.numel():
        raise ValueError(f"neuron {int(bad[0])} is out of range: this layer has neurons 0-{d_mlp - 1}")
    return indices


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """``value`` if it is one of ``choices``, else a one-line error listing them."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: choose from {', '.join(choices)}")
    return value


def check_positive_int(name: str, value, low: int = 1) -> int:
    """``value`` if it is an int of at least ``low`` (bools refused), else a one-line error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def check_neuron(model, neuron) -> Neuron:
    """``neuron`` (a :class:`Neuron` or a name such as ``'L31N892'``) if ``model`` has it, else a
    one-line error giving the model's layers and neurons per layer."""
    return Neuron.of(neuron).check(model.cfg.n_layers, model.cfg.d_mlp)


def check_head(model, head) -> Head:
    """``head`` (a :class:`Head` or a name such as ``'L26H1'``) if ``model`` has it, else a
    one-line error giving the model's layers and heads per layer."""
    head = head if isinstance(head, Head) else Head.parse(str(head))
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if not (0 <= head.layer < n_layers and 0 <= head.index < n_heads):
        raise ValueError(f"head {head} does not exist: this model has layers 0-{n_layers - 1} and heads 0-{n_heads - 1} per layer")
    return head
