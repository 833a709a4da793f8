"""Figures of the prompt-set pages: every pair as a point, the mean and its 95% interval as a
diamond with error bars, the study's own pair as a star."""
from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from helpers.core.stats import mean_interval
from helpers.methods.ablation import Ablation
from helpers.methods.effects import NeuronEffects

POINTS = "#92c5de"
MEAN = "#2166ac"
STUDY = "#b2182b"


def spread(fig: go.Figure, labels: Sequence[str], values: torch.Tensor, col: int | None = None, legend: bool = True) -> None:
    """One box of points per label (``values[label, pair]``), mean and interval, study pair;
    in subplot column ``col`` of a one-row grid when given."""
    where = {"row": 1, "col": col} if col else {}
    n_pairs = values.shape[1]
    summary = mean_interval(values)
    for i, label in enumerate(labels):
        fig.add_trace(go.Box(
            x=[label] * n_pairs, y=values[i].tolist(), boxpoints="all", jitter=0.5, pointpos=0, marker=dict(color=POINTS, size=5),
            line=dict(color=POINTS), fillcolor="rgba(0,0,0,0)", name="pairs", legendgroup="pairs", showlegend=legend and i == 0,
            hovertemplate="%{y:.3f}<extra>one pair</extra>"), **where)
    fig.add_trace(go.Scatter(
        x=list(labels), y=summary[:, 0].tolist(), mode="markers", marker=dict(symbol="diamond", size=11, color=MEAN),
        error_y=dict(type="data", symmetric=False, array=(summary[:, 2] - summary[:, 0]).tolist(), arrayminus=(summary[:, 0] - summary[:, 1]).tolist(), color=MEAN, thickness=2),
        name="mean, 95% interval", legendgroup="mean", showlegend=legend, hovertemplate="mean %{y:.3f}<extra></extra>"), **where)
    fig.add_trace(go.Scatter(
        x=list(labels), y=values[:, 0].tolist(), mode="markers", marker=dict(symbol="star", size=13, color=STUDY, line=dict(width=1, color="white")),
        name="the study's prompt", legendgroup="study", showlegend=legend, hovertemplate="study prompt %{y:.3f}<extra></extra>"), **where)


def ablation_figure(result: Ablation, neuron: str, title: str) -> go.Figure:
    """Share of the logit difference lost per ablation kind: the neuron, its whole layer, and
    the random neurons (each pair's mean over them), one panel each."""
    named = [result.set_names.index(neuron), result.set_names.index("whole layer")]
    randoms = [i for i in range(len(result.set_names)) if i not in named]
    panels = [neuron, "whole layer"] + ([f"{len(randoms)} random neurons (mean)"] if randoms else [])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels, shared_yaxes=True, horizontal_spacing=0.04)
    for col, s in enumerate(named, start=1):
        spread(fig, result.kinds, result.necessity[:, s], col=col, legend=col == 1)
    if randoms:
        spread(fig, result.kinds, result.necessity[:, randoms].mean(1), col=3, legend=False)
    fig.update_yaxes(title_text="share of the logit difference lost", row=1, col=1)
    fig.update_xaxes(tickangle=-90)  # four kinds in a narrow panel: upright labels would run into each other
    fig.add_hline(y=0, line=dict(color="#888", width=1))
    fig.update_layout(title=title, height=500, legend=dict(orientation="h", y=-0.3))
    return fig


def restoration_figure(result: Ablation, title: str) -> go.Figure:
    """Share recovered when each set's clean activations are put into the corrupted run."""
    fig = go.Figure()
    spread(fig, result.set_names, result.sufficiency)
    fig.update_yaxes(title_text="share of the logit difference recovered")
    fig.add_hline(y=0, line=dict(color="#888", width=1))
    fig.update_layout(title=title, height=420, legend=dict(orientation="h", y=-0.2))
    return fig


def loss_figure(changes: dict[str, torch.Tensor], labels: dict[str, str], title: str) -> go.Figure:
    """Per-token loss change under ablation, one box per group of next tokens (quartiles, whiskers
    at the 1st and 99th percentiles), the mean and its interval."""
    fig = go.Figure()
    for group, label in labels.items():
        values = changes[group]
        if values.numel() == 0:
            continue
        mean, low, high = mean_interval(values[None])[0].tolist()
        # quartiles and 1st/99th percentiles computed here: the page carries five numbers, not every token
        q = torch.quantile(values.double(), torch.tensor([0.01, 0.25, 0.5, 0.75, 0.99], dtype=torch.float64)).tolist()
        fig.add_trace(go.Box(x=[label], lowerfence=[q[0]], q1=[q[1]], median=[q[2]], q3=[q[3]], upperfence=[q[4]], name=label,
                             marker=dict(color=POINTS), line=dict(color=MEAN), showlegend=False, hoverinfo="y"))
        fig.add_trace(go.Scatter(x=[label], y=[mean], mode="markers", marker=dict(symbol="diamond", size=11, color=MEAN),
                                 error_y=dict(type="data", symmetric=False, array=[high - mean], arrayminus=[mean - low], color=MEAN),
                                 showlegend=False, hovertemplate="mean %{y:.4f}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="#888", width=1))
    fig.update_yaxes(title_text="loss change (nats per token)")
    fig.update_layout(title=title, height=420)
    return fig


def effects_figure(effects: NeuronEffects, title: str) -> go.Figure:
    """Total, direct and indirect effect on the logit difference, every pair."""
    fig = go.Figure()
    spread(fig, ["total", "direct", "indirect"], torch.stack([effects.total, effects.direct, effects.indirect]))
    fig.add_hline(y=0, line=dict(color="#888", width=1))
    fig.update_yaxes(title_text="change of logit difference")
    fig.update_layout(title=title, height=440, legend=dict(orientation="h", y=-0.15))
    return fig


def paths_figure(effects: NeuronEffects, title: str) -> go.Figure:
    """The direct path, the path through each later component and the final norm's scale: mean
    over pairs with its interval, blue where it has the sign of the neuron's total effect, red
    where it cancels it; then what none of them carries."""
    labels = ["direct", *effects.components, "final norm's scale", "not explained"]
    values = torch.cat([effects.direct[None], effects.paths, effects.final_norm[None], effects.rest[None]])
    summary = mean_interval(values)
    sign = 1.0 if float(effects.total.mean()) >= 0 else -1.0
    colours = ["#555555"] + [MEAN if float(m) * sign >= 0 else STUDY for m in summary[1:-1, 0]] + ["#bbbbbb"]
    fig = go.Figure(go.Bar(  # one bar a row: the labels stack and never overlap
        y=labels, x=summary[:, 0].tolist(), orientation="h", marker_color=colours,
        error_x=dict(type="data", symmetric=False, array=(summary[:, 2] - summary[:, 0]).tolist(), arrayminus=(summary[:, 0] - summary[:, 1]).tolist()),
        hovertemplate="%{y}: %{x:.4f}<extra>mean over pairs</extra>"))
    fig.add_vline(x=0, line=dict(color="#888", width=1))
    fig.update_xaxes(title_text="change of logit difference")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=200 + 30 * len(labels))
    return fig
