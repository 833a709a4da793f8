"""Hook names, and forward passes that stop once what they need is computed.

Every method names TransformerLens hook points through these functions (never an f-string of
its own), and stops a pass early through :func:`run_until`, the one place that raises and
catches the stop signal. Hooks passed in are attached for that call only: no hook state
outlives a call.
"""
from __future__ import annotations

from typing import Callable, Sequence

from jaxtyping import Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

UNEMBED_IN = "unembed.hook_in"
FINAL_SCALE = "ln_final.hook_scale"

Hook = tuple[str, Callable]


def mlp_post(layer: int) -> str:
    """The MLP's hidden units after the activation function (the input of ``W_out``): a neuron."""
    return f"blocks.{layer}.mlp.hook_post"


def mlp_pre(layer: int) -> str:
    """The MLP's hidden units before the activation function."""
    return f"blocks.{layer}.mlp.hook_pre"


def attn_z(layer: int) -> str:
    """Every head's mixed values ``[batch, pos, head, d_head]`` before ``W_O``."""
    return f"blocks.{layer}.attn.hook_z"


def resid_pre(layer: int) -> str:
    """The residual stream entering block ``layer``."""
    return f"blocks.{layer}.hook_resid_pre"


def resid_post(layer: int) -> str:
    """The residual stream leaving block ``layer``."""
    return f"blocks.{layer}.hook_resid_post"


def final_resid(model: TransformerBridge) -> str:
    """The residual stream after the last block (the final norm's input)."""
    return resid_post(model.cfg.n_layers - 1)


class _Reached(Exception):
    """Raised at the hook a pass stops at; only :func:`run_until` raises and catches it."""


def run_until(model: TransformerBridge, tokens: Int[Tensor, "batch pos"], stop_at: str, fwd_hooks: Sequence[Hook] = ()) -> None:
    """Run ``model`` on ``tokens`` with ``fwd_hooks`` attached, and stop at hook ``stop_at``.

    Hooks at ``stop_at`` itself run before the pass stops, so a hook there can keep its input.
    Callers keep what they need through their hooks; nothing after ``stop_at`` is computed.
    """

    def stop(x, hook):
        raise _Reached

    try:
        model.run_with_hooks(tokens, fwd_hooks=[*fwd_hooks, (stop_at, stop)])
    except _Reached:
        return
    raise RuntimeError(f"the forward pass never reached {stop_at}; this model has no such hook point")
