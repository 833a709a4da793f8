"""What each page records for the scorecard (:mod:`helpers.book.claims` reads these values)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from helpers.core.names import Neuron, show_token
from helpers.core.prompts import NextTokens
from helpers.core.stats import mean_interval
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
    return dict(kinds={k: {"mean": summary[f"{k}_mean"], "mean_low": summary[f"{k}_low"], "mean_high": summary[f"{k}_high"],
                           "low": summary[f"{k}_low"]} for k in kinds})


def effects_findings(effects: NeuronEffects) -> dict:
    """The direct share of the total effect: the ratio of the two means over pairs, with a
    bootstrap interval on that ratio (same resamples for both means)."""
    both = mean_interval(torch.stack([effects.direct, effects.total]))
    ratio = float(both[0, 0] / both[1, 0]) if both[1, 0] else float("nan")
    return dict(direct_share=ratio, n_pairs=effects.total.numel())


def sweep_findings(result: Sweep, as_good: float) -> dict:
    measured = result.measured
    share = (measured.recovery / measured.whole_layer) if not measured.empty else pd.Series(dtype=float)
    return dict(n_measured=len(measured), n_single=int((share >= as_good).sum()))
