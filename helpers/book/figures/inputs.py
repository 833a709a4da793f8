"""Figures of the inputs page (14): the decomposition by layer and head, head patching, the probes."""
from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from helpers.book.figures.common import SIGNED_SCALE, colorbar as colorbar_of
from helpers.book.figures.effects import MEAN, POINTS, STUDY, spread
from helpers.core.names import Head
from helpers.core.stats import mean_interval
from helpers.methods.inputs import InputPatch, InputDecomposition
from helpers.methods.probes import Probe

def _head_heatmap(values: torch.Tensor, title: str, colorbar: str) -> go.Heatmap:
    """``[layer, head, pair]`` as a heatmap of means, the interval in the hover."""
    stats = mean_interval(values)  # [layer, head, 3]
    limit = float(stats[..., 0].abs().max()) or 1.0
    text = [[f"mean {m:.4f} [{lo:.4f}, {hi:.4f}]" for m, lo, hi in row] for row in stats.tolist()]
    return go.Heatmap(
        z=stats[..., 0].tolist(), x=[f"H{h}" for h in range(values.shape[1])], y=[f"L{l}" for l in range(values.shape[0])],
        zmid=0, zmin=-limit, zmax=limit, colorscale=SIGNED_SCALE, text=text, name=title,
        hovertemplate="%{y}%{x}: %{text}<extra></extra>", colorbar=colorbar_of(colorbar, len=0.8))


def decomposition_figure(dec: InputDecomposition, title: str) -> go.Figure:
    """Clean minus corrupted contribution to the pre-activation: every head (layer by head, mean over
    pairs) and every other component (mean with its 95% interval)."""
    others = dec.others(dec.diff)
    stats = mean_interval(others)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.12,
                        subplot_titles=["each head (mean over pairs)", "embeddings, biases, MLP layers"])
    fig.add_trace(_head_heatmap(dec.heads(dec.diff), "heads", "mean"), row=1, col=1)
    fig.add_trace(go.Bar(
        x=list(dec.other_labels), y=stats[:, 0].tolist(), marker_color=MEAN, showlegend=False,
        error_y=dict(type="data", symmetric=False, array=(stats[:, 2] - stats[:, 0]).tolist(), arrayminus=(stats[:, 0] - stats[:, 1]).tolist()),
        hovertemplate="%{x}: %{y:.4f}<extra>mean over pairs</extra>"), row=1, col=2)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_yaxes(title_text="clean - corrupted (pre-activation)", row=1, col=2)
    fig.update_xaxes(tickangle=-90, row=1, col=2)  # the labels of a half-width panel, upright, would touch
    fig.update_layout(title=title, height=max(460, 18 * (dec.neuron.layer + 1) + 240))
    return fig


def top_components_figure(dec: InputDecomposition, k: int, title: str) -> go.Figure:
    """The ``k`` components with the largest mean difference: every pair, mean and interval, the study pair."""
    order = dec.diff.mean(1).abs().argsort(descending=True)[:k]
    fig = go.Figure()
    spread(fig, [dec.labels[i] for i in order.tolist()], dec.diff[order])
    fig.add_hline(y=0, line=dict(color="#888", width=1))
    fig.update_yaxes(title_text="clean - corrupted (pre-activation)")
    fig.update_layout(title=title, height=420, legend=dict(orientation="h", y=-0.2))
    return fig


def head_grid_figure(patch: InputPatch, title: str, colorbar: str = "change of activation") -> go.Figure:
    """Mean change of the neuron's activation per head (``[layer, head, pair]``), interval in the hover."""
    fig = go.Figure(_head_heatmap(patch.effect, title, colorbar))
    fig.update_yaxes(autorange="reversed", title_text="layer")
    fig.update_xaxes(title_text="head")
    fig.update_layout(title=title, height=max(380, 18 * patch.effect.shape[0] + 160))
    return fig


def positions_figure(by_position: InputPatch, tokens: Sequence[str], k: int, title: str) -> go.Figure:
    """The ``k`` heads whose patching at one position moves the neuron most, by position (one pair)."""
    effect = by_position.effect  # [layer, pos, head]
    strength = effect.abs().nan_to_num(-1.0).amax(1).flatten()  # [layer * head]; unpatched heads last
    k = min(k, int((strength >= 0).sum()))
    order = strength.argsort(descending=True)[:k].tolist()
    n_heads = effect.shape[2]
    heads = [Head(i // n_heads, i % n_heads) for i in order]
    z = torch.stack([effect[h.layer, :, h.index] for h in heads])
    limit = float(z.abs().max()) or 1.0
    labels = [f"{i}: {t!r}" for i, t in enumerate(tokens)]
    fig = go.Figure(go.Heatmap(z=z.tolist(), x=labels, y=[str(h) for h in heads], zmid=0, zmin=-limit, zmax=limit, colorscale=SIGNED_SCALE,
                               hovertemplate="%{y} at %{x}: %{z:.4f}<extra></extra>", colorbar=colorbar_of("change")))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=max(320, 26 * len(heads) + 200))
    return fig


def probe_figure(probe: Probe, title: str) -> go.Figure:
    """Each example's held-out probability of the `` an`` class, by its true class; words whose first
    letter misleads are drawn as diamonds with their names."""
    misleading = probe.misleading
    fig = go.Figure()
    for label, name, colour in ((True, "takes ' an'", MEAN), (False, "takes ' a'", STUDY)):
        for odd, symbol in ((False, "circle"), (True, "diamond")):
            keep = (probe.labels == label) & (misleading == odd)
            if not bool(keep.any()):
                continue
            words = [w for w, k in zip(probe.names, keep.tolist()) if k]
            fig.add_trace(go.Box(
                y=[name] * len(words), x=probe.heldout[keep].tolist(), boxpoints="all", jitter=0.6, pointpos=0, orientation="h",
                marker=dict(color=colour if not odd else "black", symbol=symbol, size=6 if not odd else 9), line=dict(color=POINTS),
                fillcolor="rgba(0,0,0,0)", text=words, name=name + (" (misleading letter)" if odd else ""),
                hovertemplate="%{text}: %{x:.3f}<extra></extra>"))
    fig.add_vline(x=0.5, line=dict(color="#888", width=1, dash="dot"))
    fig.update_xaxes(title_text="held-out P(' an' class)", range=[-0.02, 1.02])
    fig.update_layout(title=title, height=360, legend=dict(orientation="h", y=-0.3))
    return fig


def readings_figure(table, target: str, title: str) -> go.Figure:
    """The neuron's activation against P(target), one point per prompt, coloured by kind."""
    fig = go.Figure()
    colours = {"follow-up": "black", "clean": MEAN, "corrupted": STUDY}
    p = f"P({target!r})"
    for kind, group in table.groupby("prompt kind", sort=False):
        fig.add_trace(go.Scatter(x=group["activation"], y=group[p], mode="markers", name=kind, text=group["prompt"],
                                 marker=dict(color=colours.get(kind, POINTS), size=8 if kind == "follow-up" else 6),
                                 hovertemplate="%{text}<br>activation %{x:.3f}, P %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title_text="neuron activation (last position)")
    fig.update_yaxes(title_text=p)
    fig.update_layout(title=title, height=420)
    return fig
