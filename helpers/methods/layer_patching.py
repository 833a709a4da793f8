"""Layer-by-position activation patching of the residual stream, attention and MLP outputs.

Activation patching asks where in the model the difference between two prompts is carried.
Run one prompt (the *base* run), overwrite one activation, one component of one layer at one
position, with its value on the other prompt (the *source* run), and see how far the
logit difference ``logit(target) - logit(other)`` at the last position moves towards the
source run's value. Sweeping every layer and position gives a ``[layer, pos]`` map per
component: ``resid_pre`` (the residual stream entering a block), ``attn_out`` and
``mlp_out`` (what the block's attention and MLP write into it).

The values follow the family's convention (:mod:`helpers.methods.patching`): sufficiency
patches clean activations into the corrupted run, necessity the reverse, and 1 means the
patch moves the metric all the way to the source run.

``transformer_lens.patching`` runs one full forward pass per cell (layers x positions x
components of them). This module gets the same numbers with far less work, and no
approximation:

* A cell whose source activation equals the base activation exactly (every position before
  the first token where the prompts differ, since attention is causal) leaves the run
  untouched, so its value is exactly 0 and it is not run at all.
* The remaining cells of one layer form one batch: row ``i`` patches its own component and
  position through a hook on that layer, attached for that call only.
* A patch at layer ``L`` cannot change anything before it, so each batch starts at block ``L``
  from the base run's cached residual stream and runs only the remaining blocks, calling the
  model's own block modules (hooks included).
* Only the last position's logit difference is read: the final layer norm of one residual
  vector dotted with ``W_U[:, target] - W_U[:, other]``, plus the unembedding bias, in
  float32 whatever the model's dtype (``helpers.core.prompts.read_out``).


Running blocks one by one assumes that a block needs nothing but the residual stream (true of
GPT-2, whose positions enter only through the embedding). Before trusting it the helper
recomputes the unpatched base run that way and compares it with the model's own forward pass;
on a mismatch it falls back to batched full forward passes with the same hooks.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.hooks import final_resid
from helpers.core.runs import cached_run, clean_and_corrupted
from helpers.core.checks import check_choice, check_layers, check_positive_int
from helpers.core.names import show_token
from helpers.core.prompts import Contrast, read_out, run_logit_diff
from helpers.methods.patching import PatchResult, best_layer, recovery, rows_patch_setter, runs

COMPONENTS = {
    "resid_pre": "hook_resid_pre",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
}
COMPONENT_TITLES = {
    "resid_pre": "residual stream (block input)",
    "attn_out": "attention output",
    "mlp_out": "MLP output",
}
ENGINES = ("auto", "blocks", "full")


def hook_name(component: str, layer: int) -> str:
    """Hook of ``component`` in block ``layer``, e.g. ``blocks.3.hook_attn_out``."""
    return f"blocks.{layer}.{COMPONENTS[component]}"


def check_components(components: Sequence[str]) -> tuple[str, ...]:
    """Return the components as a tuple, or raise a one-line error naming the unknown one."""
    if isinstance(components, str):
        components = (components,)
    for component in components:
        check_choice(component, tuple(COMPONENTS), "component")
    if not components:
        raise ValueError(f"no component to patch: choose one or more of {', '.join(COMPONENTS)}")
    return tuple(components)


def _cells_hooks(
    cells: Int[Tensor, "cell 3"], names: Sequence[str], source: Float[Tensor, "component layer pos d_model"]
) -> list[tuple[str, Callable]]:
    """Hooks for one batch: row ``i`` patches cell ``(component, layer, pos) = cells[i]``."""
    hooks = []
    for component, layer in torch.unique(cells[:, :2], dim=0).tolist():
        rows = torch.nonzero((cells[:, 0] == component) & (cells[:, 1] == layer)).flatten()
        positions = cells[rows, 2]
        hooks.append((hook_name(names[component], layer), rows_patch_setter(rows, positions, source[component, layer, positions])))
    return hooks


def _run_blocks_from(
    model: TransformerBridge, layer: int, resid: Float[Tensor, "batch pos d_model"], hooks: list[tuple[str, Callable]], target: int, other: int
) -> Float[Tensor, "batch"]:
    """Run blocks ``layer``.. on ``resid`` with ``hooks`` attached; the last-position logit
    difference read out in float32."""
    with model.hooks(fwd_hooks=hooks):
        x = resid
        for block in model.blocks[layer:]:
            out = block(x)
            x = out[0] if isinstance(out, tuple) else out
    return read_out(model, x[:, -1], target, other)


def _blocks_reproduce(model: TransformerBridge, resid: Float[Tensor, "pos d_model"], layer: int, expected: float, target: int, other: int) -> bool:
    """Whether running blocks ``layer``.. one by one reproduces the model's own logit difference."""
    try:
        replay = _run_blocks_from(model, layer, resid[None], [], target, other).item()
    except Exception:  # an architecture whose blocks need more than the residual stream
        return False
    tolerance = 1e-3 if resid.dtype == torch.float32 else 5e-2
    return abs(replay - expected) <= tolerance * (1 + abs(expected))


@torch.no_grad()
def layer_patching(
    model: TransformerBridge,
    contrast: Contrast,
    components: Sequence[str] = ("resid_pre", "attn_out", "mlp_out"),
    direction: str = "sufficiency",
    layers: Sequence[int] | None = None,
    max_batch: int = 64,
    engine: str = "auto",
) -> dict[str, PatchResult]:
    """Normalised patching effect of every component at every layer and position.

    ``direction="sufficiency"`` patches clean activations into the corrupted run and returns
    ``(patched - corrupted) / (clean - corrupted)`` (the study's metric, 1 = clean behaviour
    restored); ``"necessity"`` patches corrupted activations into the clean run and returns
    ``(clean - patched) / (clean - corrupted)`` (1 = clean behaviour destroyed). The metric is
    ``logit(target) - logit(other)`` at the last position; clean and corrupted are the model's
    own unpatched values.

    Returns one :class:`PatchResult` per component, values ``[n_layers, pos]``. ``layers`` restricts the work to some
    layers (the other rows are NaN). ``max_batch`` bounds the patched runs per forward pass.
    ``engine`` is ``"blocks"`` (start each batch at its layer), ``"full"`` (full forward passes)
    or ``"auto"`` (blocks when it reproduces the model's forward pass, else full).
    """
    components = check_components(components)
    base_tokens, source_tokens = runs(contrast, direction)
    rows = check_layers(layers, model.cfg.n_layers)
    check_choice(engine, ENGINES, "engine")
    check_positive_int("max_batch", max_batch)
    n_layers, n_pos = model.cfg.n_layers, base_tokens.shape[1]

    stacked = (*components, "resid_pre") if "resid_pre" not in components else components
    names = {hook_name(c, layer) for c in stacked for layer in rows} | {final_resid(model)}
    base_cache, base_diff = cached_run(model, base_tokens, names, contrast.target, contrast.other)
    source_cache, source_diff = cached_run(model, source_tokens, names, contrast.target, contrast.other)
    base_diff, source_diff = base_diff.item(), source_diff.item()
    clean_diff, corrupted_diff = clean_and_corrupted(base_diff, source_diff, direction)

    def stack(cache) -> Float[Tensor, "component layer pos d_model"]:
        """Cached activations of every component at every requested layer (zeros elsewhere)."""
        first = cache[hook_name(stacked[0], rows[0])]
        acts = torch.zeros(len(stacked), n_layers, n_pos, first.shape[-1], dtype=first.dtype, device=first.device)
        for i, component in enumerate(stacked):
            acts[i, rows] = torch.stack([cache[hook_name(component, layer)][0] for layer in rows])
        return acts

    base_acts, source_acts = stack(base_cache), stack(source_cache)
    del base_cache, source_cache
    resid_index = stacked.index("resid_pre")

    if engine == "auto":
        engine = "blocks" if _blocks_reproduce(model, base_acts[resid_index, rows[0]], rows[0], base_diff, contrast.target, contrast.other) else "full"
        if engine == "full":
            warnings.warn(
                f"running blocks one by one does not reproduce {model.cfg.model_name}'s forward pass; "
                "layer patching falls back to full forward passes"
            )

    # A cell whose source activation equals the base one changes nothing: it keeps the base value.
    selected = torch.zeros(n_layers, dtype=torch.bool, device=base_acts.device)
    selected[rows] = True
    differs = (source_acts[: len(components)] != base_acts[: len(components)]).any(-1) & selected[None, :, None]
    cells = torch.nonzero(differs)  # [cell, (component, layer, pos)], sorted by component then layer
    patched = torch.full((len(components), n_layers, n_pos), float("nan"))
    patched[:, rows] = base_diff

    if engine == "blocks":
        cells = cells[torch.argsort(cells[:, 1], stable=True)]
        batches = [
            (layer, group[i : i + max_batch])
            for layer in torch.unique(cells[:, 1]).tolist()
            for group in [cells[cells[:, 1] == layer]]
            for i in range(0, len(group), max_batch)
        ]
    else:
        batches = [(None, cells[i : i + max_batch]) for i in range(0, len(cells), max_batch)]

    for layer, batch in batches:
        hooks = _cells_hooks(batch, stacked, source_acts)
        if layer is None:
            values = run_logit_diff(model, base_tokens.expand(len(batch), -1), contrast.target, contrast.other, hooks)
        else:
            resid = base_acts[resid_index, layer].repeat(len(batch), 1, 1)
            values = _run_blocks_from(model, layer, resid, hooks, contrast.target, contrast.other)
        batch = batch.cpu()
        patched[batch[:, 0], batch[:, 1], batch[:, 2]] = values.float().cpu()
    return {
        c: PatchResult(
            values=recovery(patched[i], clean_diff, corrupted_diff, direction),
            index_axis_names=("layer", "pos"),
            activation_name=c,
            method="activation",
            direction=direction,
            positions="each",
            clean_diff=clean_diff,
            corrupted_diff=corrupted_diff,
            engine=engine,
        )
        for i, c in enumerate(components)
    }


def maps_of(results: dict[str, PatchResult] | dict[str, Sequence[Sequence[float]]]) -> dict[str, Float[Tensor, "layer pos"]]:
    """component -> ``[layer, pos]`` values, from patching results or the paper's nested lists."""
    return {c: (r.values if isinstance(r, PatchResult) else torch.as_tensor(r, dtype=torch.float32)) for c, r in results.items()}


def top_cells(results: dict[str, PatchResult], str_tokens: Sequence[str], k: int = 8) -> pd.DataFrame:
    """The ``k`` cells with the largest absolute value over all components, largest first."""
    frames = []
    for component, values in maps_of(results).items():
        layer, pos = torch.meshgrid(torch.arange(values.shape[0]), torch.arange(values.shape[1]), indexing="ij")
        frames.append(
            pd.DataFrame(
                {
                    "component": component,
                    "layer": layer.flatten().numpy(),
                    "position": pos.flatten().numpy(),
                    "value": values.flatten().float().numpy(),
                }
            )
        )
    table = pd.concat(frames, ignore_index=True).dropna(subset=["value"])
    table = table.loc[table["value"].abs().sort_values(ascending=False).index[:k]].reset_index(drop=True)
    table.insert(3, "token", [show_token(str_tokens[p]) for p in table["position"]])
    return table


def first_layer_at(values: Float[Tensor, "layer"], threshold: float) -> int | None:
    """The first layer whose value reaches ``threshold``, or None if none does."""
    hits = torch.nonzero(values >= threshold).flatten()
    return int(hits[0]) if len(hits) else None


def standouts(
    results: dict[str, PatchResult] | dict[str, Sequence[Sequence[float]]],
    diff_position: int,
    low: float = 0.2,
    high: float = 0.9,
) -> dict[str, float | int | None]:
    """The cells the study singled out, located by rule in any run's (or the paper's) maps.

    Best attention and MLP layers at the last position, layer 0's attention and MLP outputs at
    the differing token, and the residual stream at the last position: the largest rise
    between consecutive layers, and the first layers at which it reaches ``low`` and ``high``.
    """
    maps = maps_of({c: results[c] for c in COMPONENTS})
    attn, mlp = best_layer(maps["attn_out"]), best_layer(maps["mlp_out"])
    resid = maps["resid_pre"][:, -1]
    rise = int(torch.nan_to_num(resid[1:] - resid[:-1], nan=-torch.inf).argmax())
    low_layer, high_layer = first_layer_at(resid, low), first_layer_at(resid, high)
    return dict(
        attn_layer=attn,
        attn_value=maps["attn_out"][attn, -1].item(),
        mlp_layer=mlp,
        mlp_value=maps["mlp_out"][mlp, -1].item(),
        attn0_diff=maps["attn_out"][0, diff_position].item(),
        mlp0_diff=maps["mlp_out"][0, diff_position].item(),
        rise_from=rise,
        rise_to=rise + 1,
        rise_before=resid[rise].item(),
        rise_after=resid[rise + 1].item(),
        low_layer=low_layer,
        low_value=None if low_layer is None else resid[low_layer].item(),
        high_layer=high_layer,
        high_value=None if high_layer is None else resid[high_layer].item(),
    )
