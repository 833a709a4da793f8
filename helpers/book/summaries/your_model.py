"""Glued numbers and the table of the "use it on your model" page (16)."""
from __future__ import annotations

import pandas as pd

from helpers.methods.effects import NeuronEffects
from helpers.methods.patching import PatchResult


def ranked_table(result: PatchResult, k: int) -> pd.DataFrame:
    """The ``k`` neurons that recover most, with their recovery and share of the whole layer's."""
    rows = result.ranked(k)
    return pd.DataFrame({
        "neuron": [str(neuron) for neuron, _ in rows],
        "recovery": [f"{value:.3f}" for _, value in rows],
        "share of the whole layer's": [f"{value / result.whole_layer:.2f}" if result.whole_layer else "" for _, value in rows],
    })


def pipeline_summary(layers: PatchResult, neurons: PatchResult, effects: NeuronEffects) -> dict:
    """The numbers the page glues: the layer, its recovery at the last position, the top neuron,
    its recovery and the whole layer's, and the neuron's total and direct effect on the pair."""
    top = neurons.top_neuron
    total, direct = float(effects.total[0]), float(effects.direct[0])
    return dict(
        best_layer=neurons.layer, layer_recovery=float(layers.values[neurons.layer, -1]),
        top_neuron=str(top), top_recovery=neurons.value_of(top), whole_layer=float(neurons.whole_layer),
        total_effect=total, direct_effect=direct, clean_diff=neurons.clean_diff, corrupted_diff=neurons.corrupted_diff,
    )
