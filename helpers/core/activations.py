"""The MLP activation functions the methods recompute, one map for every method.

A method that recomputes a neuron from its pre-activation (the suffix engine of neuron
patching, the input decomposition) takes the function from here, so both compute the same
numbers as the model's own forward pass (TransformerLens' ``gelu_new`` is the formula of
GPT-2's ``NewGELUActivation``).
"""
from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor
from transformer_lens.utilities.activation_functions import gelu_fast, gelu_new

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu_new": gelu_new,
    "gelu_fast": gelu_fast,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


def activation_function(model) -> Callable[[Tensor], Tensor]:
    """``model``'s MLP activation function, or a one-line error naming the ones known here."""
    name = model.cfg.act_fn
    if name not in ACTIVATIONS:
        raise ValueError(f"the MLP activation {name!r} is not supported here; use a model with one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]
