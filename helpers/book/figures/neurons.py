"""Figures for the neuron-patching page: every neuron of a layer, and every layer at once.

Each function takes results already computed by ``helpers.methods.neuron_patching`` or
``helpers.methods.attribution`` (a ``PatchResult``) and returns a plotly figure. Neurons are named ``L31N892`` on hover;
signed values are coloured on a red-white-blue scale centred on zero.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from helpers.book.figures.common import place_labels, PAPER_COLOUR, SIGNED_SCALE, colorbar, thinned
from helpers.core.names import Neuron
from helpers.methods.attribution import ACCURATE_GAP, VERDICTS, FailureModes
from helpers.methods.patching import PatchResult

MODE_SYMBOLS = {"last": "circle", "all": "diamond"}
MODE_TITLES = {"last": "restored at the last position", "all": "restored at every position"}


def _names(layer: int, indices: Sequence[int]) -> list[str]:
    return [str(Neuron(layer, int(i))) for i in indices]


def _limit(*arrays: np.ndarray) -> float:
    return float(max((np.abs(a).max() for a in arrays if a.size), default=1.0)) or 1.0


def neuron_recovery_scatter(results: dict, title: str, value_name: str = "recovery") -> go.Figure:
    """Every neuron of one layer: index on x, normalised recovery on y, one trace per mode.

    ``results`` maps a position mode (``"last"``/``"all"``) to a ``PatchResult`` of the same
    layer; each mode's whole-layer value is a dashed line.
    """
    fig = go.Figure()
    limit = _limit(*(r.recovery.float().numpy() for r in results.values()))
    for k, (mode, result) in enumerate(results.items()):
        values = result.recovery.float().numpy()
        fig.add_scatter(
            x=result.indices.numpy(),
            y=values,
            mode="markers",
            name=MODE_TITLES.get(mode, mode),
            marker=dict(symbol=MODE_SYMBOLS.get(mode, "circle"), size=6, color=values, colorscale=SIGNED_SCALE,
                        cmin=-limit, cmax=limit, line=dict(width=0.5, color="#333333")),
            text=_names(result.layer, result.indices.tolist()),
            hovertemplate="%{text}: %{y:.4f}<extra>" + MODE_TITLES.get(mode, mode) + "</extra>",
        )
        fig.add_hline(
            y=result.whole_layer,
            line=dict(dash="dash", width=1, color="#333333"),
            annotation_text=f"whole layer {result.layer}, {mode} position{'s' if mode == 'all' else ''}: {result.whole_layer:.3f}",
            annotation_position=("top left", "bottom right")[k % 2],  # two lines that coincide keep their labels apart
        )
    fig.update_layout(title=title, xaxis_title="neuron index", yaxis_title=value_name, height=460,
                      legend=dict(orientation="h", y=-0.2))
    return fig


def identity_line(limit: float) -> go.Figure:
    """A figure holding the dotted line estimate = exact from -limit to limit."""
    fig = go.Figure()
    fig.add_scatter(x=[-limit, limit], y=[-limit, limit], mode="lines", line=dict(dash="dot", color="#999999"),
                    name="estimate = exact", hoverinfo="skip")
    return fig


def attribution_vs_exact(exact: PatchResult, estimate: PatchResult, title: str) -> go.Figure:
    """Attribution estimate against the exact recovery for every neuron of the exactly patched
    layer (``exact``: one layer; ``estimate``: every layer), with y = x."""
    layer = exact.layer
    x, y = exact.values.float().numpy(), estimate.values[layer, exact.indices].float().numpy()
    limit = _limit(x, y)
    fig = identity_line(limit)
    fig.add_scatter(
        x=x, y=y, mode="markers", name=f"neurons of layer {layer}",
        marker=dict(size=6, color=x, colorscale=SIGNED_SCALE, cmin=-limit, cmax=limit, line=dict(width=0.5, color="#333333")),
        text=_names(layer, exact.indices.tolist()),
        hovertemplate="%{text}: exact %{x:.4f}, estimate %{y:.4f}<extra></extra>",
    )
    fig.update_layout(title=title, xaxis_title="exact recovery (neuron patching)", yaxis_title="attribution estimate",
                      height=480, legend=dict(orientation="h", y=-0.2))
    return fig


def top_neurons_by_layer(estimate: PatchResult, per_layer: int, label_top: int, title: str) -> go.Figure:
    """The whole model at once: each layer's ``per_layer`` largest-magnitude neurons.

    One column of points per layer (x), their value (y, coloured), the overall ``label_top``
    neurons labelled by name.
    """
    values = estimate.values.float()
    n_layers, d_mlp = values.shape
    top = values.abs().topk(min(per_layer, d_mlp), dim=1).indices  # [layer, per_layer]
    layers = np.repeat(np.arange(n_layers), top.shape[1])
    indices = top.flatten().numpy()
    picked = values.gather(1, top).flatten().numpy()
    names = [str(Neuron(int(l), int(i))) for l, i in zip(layers, indices)]
    limit = _limit(picked)
    fig = go.Figure(
        go.Scatter(
            x=layers,
            y=picked,
            mode="markers",
            marker=dict(size=7, color=picked, colorscale=SIGNED_SCALE, cmin=-limit, cmax=limit,
                        line=dict(width=0.5, color="#333333"), colorbar=colorbar("estimate")),
            text=names,
            hovertemplate="%{text}: %{y:.4f}<extra></extra>",
            showlegend=False,
        )
    )
    # the largest estimates named where their labels stay apart (neighbours of one layer crowd)
    place_labels(fig, layers.astype(np.float64), picked, names, np.argsort(-np.abs(picked))[:label_top], 460)
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title="attribution estimate", height=460)
    fig.update_xaxes(dtick=max(1, n_layers // 12))
    return fig


def paper_neuron_bars(paper: Sequence[tuple[Neuron, float]], run: dict[Neuron, float], title: str) -> go.Figure:
    """The paper's listed neurons (``[(neuron, value), ...]``) beside this run's value for each."""
    names = [str(n) for n, _ in paper]
    fig = go.Figure()
    fig.add_bar(x=names, y=[v for _, v in paper], name="paper (GPT-2 Large)", marker_color=PAPER_COLOUR,
                hovertemplate="%{x}: %{y:.4f}<extra>paper</extra>")
    fig.add_bar(x=names, y=[run[n] for n, _ in paper], name="this run", marker_color="#1f77b4",
                hovertemplate="%{x}: %{y:.4f}<extra>this run</extra>")
    fig.update_layout(title=title, yaxis_title="recovery", barmode="group", height=400, legend=dict(orientation="h", y=-0.25))
    return fig


def neuron_table(results: dict, k: int, largest: bool = True) -> pd.DataFrame:
    """The ``k`` neurons with the largest (or smallest) recovery in the first mode of
    ``results`` (a mode -> ``PatchResult`` of one layer), with their value in every mode."""
    first = next(iter(results.values()))
    ranked = first.ranked(k, largest=largest)
    table = pd.DataFrame({"neuron": [str(n) for n, _ in ranked]})
    for mode, result in results.items():
        position = {int(i): p for p, i in enumerate(result.indices.tolist())}
        table[f"recovery, {MODE_TITLES.get(mode, mode)}"] = [float(result.recovery[position[n.index]]) for n, _ in ranked]
    return table


def model_attribution_vs_exact(exact: PatchResult, estimate: PatchResult, title: str) -> go.Figure:
    """Attribution estimate against exact patching for every exactly patched neuron of the
    model (``[layer, neuron]`` results; NaN = not patched), coloured by layer, with y = x.
    Beyond a few thousand neurons it draws the extremes (by the larger of the exact value's
    and the gap's magnitude) and a sample, and says so in the title."""
    values, estimates = exact.values.float().cpu().numpy(), estimate.values.float().cpu().numpy()
    layers, indices = np.nonzero(~np.isnan(values))
    x, y = values[layers, indices], estimates[layers, indices]
    keep, note = thinned(np.maximum(np.abs(x), np.abs(y - x)))
    if note:
        note += " (by the larger of |exact| and |estimate - exact|)"
    layers, indices, x, y = layers[keep], indices[keep], x[keep], y[keep]
    limit = _limit(x, y)
    fig = identity_line(limit)
    fig.add_scatter(
        x=x, y=y, mode="markers", name="neurons",
        marker=dict(size=5, color=layers, colorscale="Viridis", cmin=0, cmax=max(1, values.shape[0] - 1), opacity=0.8,
                    colorbar=colorbar("layer", dtick=max(1, values.shape[0] // 6)), line=dict(width=0.3, color="#333333")),
        text=[str(Neuron(int(l), int(i))) for l, i in zip(layers, indices)],
        hovertemplate="%{text}: exact %{x:.4f}, estimate %{y:.4f}<extra></extra>",
        showlegend=False,
    )
    full_title = title if not note else f"{title}<br><sup>{note}</sup>"
    fig.update_layout(title=full_title, xaxis_title="exact recovery (neuron patching)", yaxis_title="attribution estimate", height=540,
                      legend=dict(orientation="h", y=-0.2))
    return fig


AGREEMENT_NAMES = {"pearson": "Pearson r", "spearman": "rank correlation", "top_k_overlap": "top-k overlap"}


def layer_agreement_figure(stats: dict, title: str) -> go.Figure:
    """Agreement of attribution with exact patching per layer (``stats``:
    ``helpers.methods.attribution.model_agreement``): Pearson, rank correlation and the
    share of the exact top k in the estimate's top k, one line each."""
    fig = go.Figure()
    k = stats["pooled"]["k"]
    for key, name in AGREEMENT_NAMES.items():
        label = name.replace("top-k", f"top-{k}")
        fig.add_scatter(x=stats["layers"], y=[s[key] for s in stats["per_layer"]], mode="lines+markers", name=label,
                        hovertemplate="layer %{x}: %{y:.3f}<extra>" + label + "</extra>")
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title="agreement", height=380, legend=dict(orientation="h", y=-0.25))
    fig.update_yaxes(range=[min(-0.05, min(min(s[key] for s in stats["per_layer"]) for key in AGREEMENT_NAMES) - 0.05), 1.05])
    fig.update_xaxes(dtick=max(1, len(stats["layers"]) // 12))
    return fig


def failure_table(diagnosis: FailureModes) -> pd.DataFrame:
    """One row per worst-estimated neuron: the exact value, the estimate, the same two with the
    later attention patterns frozen, the share of the gap freezing closes, the smaller of the
    largest positive and negative parts of the estimate, and the verdict (short headers, so
    that the table fits the page)."""
    return pd.DataFrame({
        "neuron": [str(n) for n in diagnosis.neurons],
        "exact": diagnosis.exact.numpy(),
        "estimate": diagnosis.estimate.numpy(),
        "exact, frozen": diagnosis.frozen_exact.numpy(),
        "estimate, frozen": diagnosis.frozen_estimate.numpy(),
        "gap closed": diagnosis.closed_by_freezing.numpy(),
        "opposing": diagnosis.opposing.numpy(),
        "failure mode": [f"none (gap below {ACCURATE_GAP})" if v == VERDICTS[0] else v for v in diagnosis.verdicts],
    })
