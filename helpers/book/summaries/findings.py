"""What each page records for the scorecard (:mod:`helpers.book.claims` reads these values)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from helpers.core.names import Neuron, show_token
from helpers.core.prompts import NextTokens
from helpers.methods.choice import HeldOut, NeuronChoice
from helpers.methods.effects import NeuronEffects
from helpers.methods.logit_lens import LogitLens, sublayer_after
from helpers.methods.patching import PatchResult
from helpers.methods.sweep import Sweep


def prompt_findings(predictions: dict[str, NextTokens], target: str) -> dict:
    clean, alone = predictions["clean"], predictions["second sentence only"]
    return dict(target=show_token(target), top_clean=show_token(clean.tokens[0]), p_target_clean=clean.target_prob,
                top_alone=show_token(alone.tokens[0]), p_target_alone=alone.target_prob)


def lens_findings(lens: LogitLens, neuron: Neuron) -> dict:
    step_from, _, before, after = lens.biggest_step()
    return dict(step_sublayer=sublayer_after(step_from), step_before=before, step_after=after, neuron_layer=neuron.layer)


def layer_patching_findings(mlp_out: PatchResult) -> dict:
    """The MLP layers' recoveries at the last position, ``[layer]``."""
    return dict(mlp_last=mlp_out.values[:, -1].tolist())


def neuron_patching_findings(every: PatchResult, whole_last: float) -> dict:
    """The top two neurons (restored at every position) and the whole layer at the last position."""
    (top, top_value), (_, second_value) = every.ranked(2)
    return dict(neuron=str(top), top=top_value, second=second_value, whole=whole_last)


def held_out_findings(choice: NeuronChoice, held: HeldOut) -> dict:
    """The choice's stability and the neuron's rank and recovery on held-out pairs."""
    return dict(neuron=str(held.neuron), stability=choice.stability, n_selection=choice.n_selection, n_evaluation=held.n_evaluation,
                evaluation=held.recovery.mean, evaluation_low=held.recovery.low, evaluation_high=held.recovery.high,
                evaluation_rank=held.rank, runner_up=held.runner_up, whole=held.whole_layer.mean)


def congruence_findings(column: np.ndarray, neuron: Neuron, d_mlp: int) -> dict:
    """The neuron's congruence with the target against every neuron's (``column``: ``[layer, neuron]``)."""
    flat = torch.as_tensor(column, dtype=torch.float64).flatten()
    value = float(flat[neuron.layer * d_mlp + neuron.index])
    return dict(value=value, rank=int((flat > value).sum()) + 1, mean=float(flat.mean()), std=float(flat.std()), n=flat.numel())


def correlation_findings(curve: pd.DataFrame, counts: dict[str, int]) -> dict:
    return dict(bin_start=curve.bin_start.tolist(), proportion=curve.proportion.tolist(), count=curve["count"].tolist(),
                predicted=int(counts["predicted"]), actual=int(counts["actual"]))


def ablation_findings(summary: dict, kinds: tuple[str, ...]) -> dict:
    """Each ablation kind's necessity of the neuron (mean and interval over pairs)."""
    return dict(kinds={k: {"mean": summary[f"{k}_mean"], "mean_low": summary[f"{k}_low"], "mean_high": summary[f"{k}_high"]} for k in kinds})


def effects_findings(effects: NeuronEffects) -> dict:
    """The direct share of the total effect: the ratio of the two means over pairs (no interval)."""
    total = float(effects.total.double().mean())
    return dict(direct_share=float(effects.direct.double().mean()) / total if total else float("nan"), n_pairs=effects.total.numel())


def sweep_findings(result: Sweep, as_good: float) -> dict:
    """How many measured models have a stably chosen neuron that recovers at least ``as_good``
    of its layer's recovery on held-out pairs."""
    from helpers.methods.choice import STABLE

    measured = result.measured
    if measured.empty:
        return dict(n_measured=0, n_single=0)
    share = measured.recovery / measured.whole_layer
    stable = measured.stability.isna() | (measured.stability >= STABLE)
    return dict(n_measured=len(measured), n_single=int(((share >= as_good) & stable).sum()))


def reading_findings(by_next: pd.DataFrame) -> dict:
    """Which reading (article or vowel) the activations by next token support, and the means."""
    from helpers.book.summaries.scan import reading_of

    return dict(reading=reading_of(by_next), before_target=float(by_next["mean"][0]), before_vowel=float(by_next["mean"][2]),
                before_consonant=float(by_next["mean"][3]))


def though_findings(token: str, neuron, curve: pd.DataFrame, counts: dict) -> dict:
    """The shared token's neuron: its best top-1 share over bins of 20+ tokens, and the counts."""
    from helpers.book.summaries.congruence import best_bin

    return dict(token=token, neuron=str(neuron), best=best_bin(curve)[0], predicted=int(counts["predicted"]), actual=int(counts["actual"]))


def hubs_findings(n_tokens_of_largest: int, neuron: str, d_vocab: int, n_neurons: int) -> dict:
    return dict(largest=int(n_tokens_of_largest), neuron=neuron, d_vocab=int(d_vocab), n_neurons=int(n_neurons))


def mutual_findings(curves: dict[str, pd.DataFrame]) -> dict:
    """Each top pair's best top-1 share over bins of 20+ tokens."""
    from helpers.book.summaries.congruence import best_bin

    return dict(best={name: best_bin(curve)[0] for name, curve in curves.items()})


def drives_findings(values: dict) -> dict:
    """The top head by patching: its share of the neuron's activation gap, with the interval."""
    gap = values["act_gap_mean"]
    return dict(head=values["top_head"], share=values["top_head_share"], low=values["top_head_effect_low"] / gap if gap else None,
                high=values["top_head_effect_high"] / gap if gap else None)


def ordinary_text_findings(loss: dict) -> dict:
    """The loss change before the target when the neuron is mean-ablated over ordinary text."""
    return dict(mean=loss["loss_an_mean"], low=loss["loss_an_low"], high=loss["loss_an_high"], n=loss["loss_an_n"])


def random_text_findings(values: dict) -> dict:
    """From :func:`helpers.book.summaries.scan.random_text_summary`: the share of random tokens
    reaching the neuron's mean before the target, that level, and how many tokens."""
    return dict(share=values["random_share"], level=values["random_level"], tokens=values["random_tokens"])
