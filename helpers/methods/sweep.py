"""Is there an " an" neuron in every model? The study's chain of evidence, one row per model.

For each model :func:`sweep_model` measures, on the study's prompt and a prompt set of
study-like pairs (:func:`helpers.methods.prompt_sets.study_like_pairs`):

* ``p_target``: P(' an') after the study's clean prompt; ``accuracy``: the share of the set's
  prompts (clean and corrupted) whose logit difference has the right sign;
* ``layer`` and ``neuron``: the MLP layer that layer patching ranks first and that layer's
  neuron that neuron patching ranks first, on ``n_selection`` selection pairs
  (:func:`helpers.methods.choice.choose_neuron`, the choice every page makes, read from its
  cache when a page made it already); ``stability``: the share of bootstrap resamples of the
  selection pairs that choose the same layer and neuron;
* ``recovery``: that neuron's recovery over the evaluation set, none of whose pairs chose it
  (its clean activation restored at every position of the corrupted prompt), mean and 95%
  interval over pairs (``recovery_study_pair``: on the study's pair, the set's first);
* ``whole_layer`` and ``neurons_to_half``: the recovery of the whole layer restored, and how
  many of the layer's neurons, restored together in the order of their own mean recovery, it
  takes to reach half of it (1 = one neuron carries half the layer; a large number = a spread
  mechanism); at most ``max_neurons`` are tried (``None`` beyond);
* ``congruence`` and ``congruence_rank``: ``W_out[n] . W_U[:, ' an']`` and its rank among
  every neuron of the model (1 = most congruent);
* ``direct_share``: mean direct effect over mean total effect of the neuron on the set
  (:func:`helpers.methods.effects.neuron_effects`);
* ``engine``: which neuron-patching engine ran (``"suffix"`` for GPT-2 blocks, ``"full"``,
  the model's own forward pass, for the others).

A "neuron" is a hidden unit of the MLP, the input of ``W_out`` (``mlp.hook_post``): in a
gated MLP (Llama) the product ``act(gate) * up`` for that unit. :func:`sweep` runs the list,
keeps every model's row in ``.cache/sweep`` (keyed by a hash of its weights and the
options) and marks the models it cannot measure instead of stopping.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from helpers.core.checks import check_positive_int
from helpers.core.cache import cached
from helpers.core.models import ModelUnavailable, describe, load_model, weights_fingerprint
from helpers.core.prompts import NORMS, STUDY_CLEAN, STUDY_CORRUPTED, Contrast, last_logits, make_contrast, run_logit_diff, single_token
from helpers.core.stats import mean_interval
from helpers.methods.choice import CHOICE_CACHE, choose_neuron
from helpers.methods.congruence import token_congruence
from helpers.methods.ablation import restore_hook
from helpers.methods.effects import direct_logit_attribution, neuron_effects
from helpers.methods.neuron_patching import neuron_patching, post_hook
from helpers.methods.patching import over_pairs
from helpers.methods.prompt_sets import selection_and_evaluation

SWEEP_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "sweep"
MAX_NEURONS = 256
ROW_VERSION = 2  # part of the cache key: raise it when a row gains or changes a field


class UnsupportedModel(ValueError):
    """The model lacks a part the book's methods need (an MLP, a supported norm, a hook)."""


def check_architecture(model: TransformerBridge) -> None:
    """A one-line error naming what the book's methods need and this model lacks."""
    cfg = model.cfg
    missing = []
    if getattr(cfg, "attn_only", False) or not cfg.d_mlp:
        missing.append("MLP layers (it is attention-only)")
    if cfg.normalization_type not in NORMS:
        missing.append(f"a LayerNorm or RMSNorm (it has {cfg.normalization_type!r})")
    hooks = model.hook_dict
    for name in (post_hook(0), "blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out", "ln_final.hook_scale"):
        if name not in hooks:
            missing.append(f"the hook {name}")
    if missing:
        raise UnsupportedModel(f"{cfg.model_name} cannot be swept: it has no {'; no '.join(missing)}")


def check_tokens(model: TransformerBridge, target: str, other: str) -> None:
    """A one-line error unless ``target`` and ``other`` are one token each for this model."""
    for text in (target, other):
        single_token(model, text)


@torch.no_grad()
def article_accuracy(model: TransformerBridge, pairs: Contrast) -> float:
    """Share of the set's 2 x pairs prompts whose logit difference has the right sign
    (clean prompts should prefer ``target``, corrupted ones ``other``)."""
    right = [sign * run_logit_diff(model, tokens, pairs.target, pairs.other) > 0 for tokens, sign in ((pairs.clean, 1.0), (pairs.corrupted, -1.0))]
    return float(torch.cat(right).float().mean())


@torch.no_grad()
def joint_recovery(model: TransformerBridge, pairs: Contrast, layer: int, masks: Float[Tensor, "rows d_mlp"], max_rows: int = 512) -> Float[Tensor, "rows pair"]:
    """Recovery of each pair when the neurons of ``masks[r]`` (1 = restored) are restored together.

    The clean activations of the masked neurons go into the corrupted run at every position;
    one row per (mask, pair), ``max_rows`` rows a pass. Returns ``[mask, pair]``.
    """
    name = post_hook(layer)
    _, clean_cache = model.run_with_cache(pairs.clean, names_filter=name)
    clean_act = clean_cache[name]  # [pair, pos, d_mlp]
    corrupted_diff = run_logit_diff(model, pairs.corrupted, pairs.target, pairs.other)
    clean_diff = run_logit_diff(model, pairs.clean, pairs.target, pairs.other)
    n_pairs = pairs.n_pairs
    per_pass = max(1, max_rows // n_pairs)
    out = []
    for start in range(0, masks.shape[0], per_pass):
        chunk = masks[start : start + per_pass].bool()  # [m, d_mlp]
        rows = pairs.corrupted.repeat(chunk.shape[0], 1)  # [m * pair, pos]
        diff = run_logit_diff(model, rows, pairs.target, pairs.other, [(name, restore_hook(chunk, clean_act))])
        out.append((diff.view(chunk.shape[0], n_pairs) - corrupted_diff) / (clean_diff - corrupted_diff))  # recovery per pair
    return torch.cat(out)


def neurons_to_half(
    model: TransformerBridge, pairs: Contrast, layer: int, order: Int[Tensor, "d_mlp"], max_neurons: int | None = MAX_NEURONS, chunk: int = 32
) -> tuple[int | None, float, Float[Tensor, "k"]]:
    """How many neurons of ``layer``, restored together in ``order``, it takes for the mean
    recovery over pairs to reach half of the whole layer's.

    Returns (k or None if ``max_neurons`` do not reach it, the whole layer's mean recovery,
    the mean recovery of the first 1, 2, ... neurons as far as they were tried). Tries k in
    increasing order, ``chunk`` values of k a pass, and stops at the first that reaches half.
    """
    d_mlp = model.cfg.d_mlp
    limit = d_mlp if max_neurons is None else min(max_neurons, d_mlp)
    whole = float(joint_recovery(model, pairs, layer, torch.ones(1, d_mlp)).mean())
    ranks = torch.empty(d_mlp, dtype=torch.long)
    ranks[order] = torch.arange(d_mlp)
    curve = []
    for start in range(1, limit + 1, chunk):
        ks = torch.arange(start, min(start + chunk, limit + 1))
        masks = (ranks[None, :] < ks[:, None]).float()  # row k restores the first k neurons of the order
        means = joint_recovery(model, pairs, layer, masks).mean(1)
        curve.append(means)
        reached = torch.nonzero(means >= whole / 2).flatten()
        if len(reached) and whole > 0:
            return int(ks[reached[0]]), whole, torch.cat(curve)[: int(ks[reached[0]])]
    return None, whole, torch.cat(curve) if curve else torch.zeros(0)


@dataclass(frozen=True)
class ModelSweep:
    """One model's row of the sweep (see the module docstring), and what the figures need."""

    row: dict
    single: Float[Tensor, "d_mlp"]  # every neuron's mean recovery over the set, in the chosen layer
    curve: Float[Tensor, "k"]  # mean recovery of the top 1, 2, ... neurons restored together
    logit_effect: Float[Tensor, "vocab"]  # the neuron's W_out[n] @ W_U


def sweep_model(
    model: TransformerBridge, n_pairs: int = 16, seed: int = 0, target: str = " an", other: str = " a",
    max_neurons: int | None = MAX_NEURONS, choice_cache: Path | None = CHOICE_CACHE,
    first: tuple[str, str] = (STUDY_CLEAN, STUDY_CORRUPTED), n_selection: int = 16,
) -> ModelSweep:
    """The study's measurements on one model (see the module docstring)."""
    check_architecture(model)
    check_tokens(model, target, other)
    check_positive_int("n_pairs", n_pairs)
    contrast = make_contrast(model, *first, target, other)
    selection, pairs = selection_and_evaluation(model, n_selection, n_pairs, seed, target, other, first=tuple(first))
    with torch.no_grad():
        p_target = float(last_logits(model, contrast.clean).softmax(-1)[0, contrast.target])
    choice = choose_neuron(model, contrast if selection is None else selection, cache=choice_cache, seed=seed)
    layer, neuron = choice.layer, choice.neuron
    patched = over_pairs(neuron_patching, model, pairs, layer=layer, positions="all")
    single = patched.values  # [pair, d_mlp]
    mean_single = single.mean(0)
    order = torch.argsort(mean_single, descending=True, stable=True)
    k, whole, curve = neurons_to_half(model, pairs, layer, order, max_neurons)
    congruence = token_congruence(model, target)  # [layers, d_mlp]
    value = float(congruence[layer, neuron.index])
    effects = neuron_effects(model, pairs, neuron)
    total, direct = float(effects.total.mean()), float(effects.direct.mean())
    interval = mean_interval(single[:, neuron.index])
    logit_effect = direct_logit_attribution(model, neuron).cpu()
    row = {
        **describe(model),
        "status": "measured",
        "note": "",
        "vocabulary": vocabulary_hash(model),
        "p_target": p_target,
        "accuracy": article_accuracy(model, pairs),
        "n_pairs": pairs.n_pairs,
        "layer": layer,
        "neuron": str(neuron),
        "n_selection": choice.n_selection,
        "stability": float("nan") if choice.stability is None else choice.stability,
        "recovery": float(interval[0]),
        "recovery_low": float(interval[1]),
        "recovery_high": float(interval[2]),
        "recovery_study_pair": float(single[0, neuron.index]),
        "engine": patched.results[0].engine,
        "rank_in_layer": int((mean_single > mean_single[neuron.index]).sum()) + 1,
        "whole_layer": whole,
        "neurons_to_half": k,
        "max_neurons": max_neurons,
        "congruence": value,
        "congruence_rank": int((congruence > value).sum()) + 1,
        "total_effect": total,
        "direct_effect": direct,
        "direct_share": direct / total if total else float("nan"),
    }
    return ModelSweep(row=row, single=mean_single, curve=curve, logit_effect=logit_effect)


# the columns a measured model's row adds to the model's description (``describe``)
MEASURED_COLUMNS = (
    "status", "note", "vocabulary", "p_target", "accuracy", "n_pairs", "layer", "neuron", "n_selection", "stability", "recovery",
    "recovery_low", "recovery_high", "recovery_study_pair", "engine", "rank_in_layer", "whole_layer", "neurons_to_half", "max_neurons",
    "congruence", "congruence_rank", "total_effect", "direct_effect", "direct_share",
)


@dataclass(frozen=True)
class Sweep:
    """Every model's row (``table``), and per measured model what the figures need."""

    table: pd.DataFrame
    models: dict[str, ModelSweep]

    @property
    def measured(self) -> pd.DataFrame:
        """The measured models' rows, with every column of a measured row even when none was."""
        rows = self.table[self.table.status == "measured"]
        return rows.reindex(columns=list(dict.fromkeys([*rows.columns, *MEASURED_COLUMNS])))


def sweep(
    names: Sequence[str], n_pairs: int = 16, seed: int = 0, target: str = " an", other: str = " a",
    max_neurons: int | None = MAX_NEURONS, device: str = "cpu", dtype: str = "float32", n_selection: int = 16,
    cache: Path | None = SWEEP_CACHE, choice_cache: Path | None = CHOICE_CACHE, first: tuple[str, str] = (STUDY_CLEAN, STUDY_CORRUPTED),
    load: Callable[..., TransformerBridge] = load_model, on_model: Callable[[str, float], None] | None = None,
) -> Sweep:
    """:func:`sweep_model` on every model of ``names``, in order, one model in memory at a time.

    A model that cannot be loaded is ``unavailable``, one whose tokenizer splits ``target``
    or ``other`` (or the study's prompts into different lengths) is ``skipped``, one the
    methods cannot handle is ``unsupported``: each gets a row with a one-line ``note`` and the
    others still run. ``cache`` keeps each measured row with its tensors, keyed by a hash of
    the weights and the options. ``on_model(name, seconds)`` is called after each model.
    """
    if isinstance(names, str) or not names:
        raise ValueError("names is a list of model names, e.g. ['toy', 'toy-seed1']; got " + repr(names))
    rows, models = [], {}
    options = dict(n_pairs=n_pairs, seed=seed, target=target, other=other, max_neurons=max_neurons, first=list(first), n_selection=n_selection)
    for name in names:
        started = time.perf_counter()
        row, result = _sweep_one(name, options, device, dtype, cache, choice_cache, load)
        rows.append(row)
        if result is not None:
            models[name] = result
        if on_model is not None:
            on_model(name, time.perf_counter() - started)
    return Sweep(table=pd.DataFrame(rows), models=models)


def _sweep_one(name: str, options: dict, device: str, dtype: str, cache, choice_cache, load) -> tuple[dict, ModelSweep | None]:
    """One model's row (and its result when measured); the model is dropped on return."""
    try:
        model = load(name, device=device, dtype=dtype)
    except (ModelUnavailable, OSError, ValueError) as error:
        return {"model": name, "status": "unavailable", "note": _one_line(error)}, None
    try:
        result = _cached(model, cache, options, lambda: sweep_model(model, **options, choice_cache=choice_cache))
    except ValueError as error:
        status = "unsupported" if isinstance(error, UnsupportedModel) else "skipped"
        return {**describe(model), "model": name, "status": status, "note": _one_line(error)}, None
    except Exception as error:  # a model that breaks a method is reported, not fatal to the sweep
        return {**describe(model), "model": name, "status": "failed", "note": f"{type(error).__name__}: {_one_line(error)}"}, None
    return {**result.row, "model": name}, result


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _cached(model: TransformerBridge, cache: Path | None, options: dict, compute: Callable[[], ModelSweep]) -> ModelSweep:
    """``compute()``, or the row kept from an earlier run on the same weights and options."""
    sources = {"version": ROW_VERSION, "weights": weights_fingerprint(model), "options": options}
    return cached(
        cache, "sweep", sources, compute,
        encode=lambda r: ({"single": r.single, "curve": r.curve, "logit_effect": r.logit_effect}, r.row),
        decode=lambda tensors, row: ModelSweep(row=row, **tensors),
    )


def vocabulary_hash(model: TransformerBridge) -> str:
    """A hash of the tokenizer's vocabulary: models with the same hash mean the same by each token id."""
    return hashlib.sha256(json.dumps(sorted(model.tokenizer.get_vocab().items())).encode()).hexdigest()[:12]


def logit_effect_similarity(sweep: Sweep) -> pd.DataFrame:
    """Cosine between the measured models' neurons' centred ``W_out[n] @ W_U``, for models of
    one vocabulary (the bundled family shares one tokenizer); NaN across vocabularies."""
    names = list(sweep.models)
    effects = {n: sweep.models[n].logit_effect for n in names}
    table = pd.DataFrame(index=names, columns=names, dtype=float)
    for a in names:
        for b in names:
            x, y = effects[a], effects[b]
            if sweep.models[a].row["vocabulary"] != sweep.models[b].row["vocabulary"]:
                continue
            x, y = x - x.mean(), y - y.mean()
            table.loc[a, b] = float(x @ y / (x.norm() * y.norm()).clamp_min(1e-12))
    return table
