"""Plotly figures shared by the pages: one function per kind of figure, each returning it.

Signed values use a red-white-blue scale centred on zero; token strings keep their leading
space visible; hover shows exact values.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from helpers.core.names import show_token

SIGNED_SCALE = "RdBu"
PAPER_COLOUR = "#555555"
TAIL, BULK = 1000, 4000
BAR_COLOURS = {0: "#2166ac", None: "#92c5de"}  # the top prediction, the others


def thinned(values: np.ndarray, tail: int = TAIL, bulk: int = BULK, seed: int = 0) -> tuple[np.ndarray, str]:
    """Indices of the points worth drawing, and a note saying which were drawn.

    A reader tells apart the extremes, not 180,000 overlapping points: every point is kept
    when there are at most ``2 * tail + bulk``; otherwise the ``tail`` largest and smallest
    values and ``bulk`` of the others drawn at random (sorted indices).
    """
    n = len(values)
    if n <= 2 * tail + bulk:
        return np.arange(n), ""
    order = np.argsort(values, kind="stable")
    ends = np.concatenate([order[:tail], order[-tail:]])
    rest = order[tail:-tail]
    sample = np.random.default_rng(seed).choice(rest, bulk, replace=False)
    note = f"drawn: the {tail:,} largest and {tail:,} smallest of {n:,}, and {bulk:,} of the other {n - 2 * tail:,} at random"
    return np.sort(np.concatenate([ends, sample])), note


def next_token_bars(predictions: dict[str, "NextTokens"], title: str) -> go.Figure:  # noqa: F821
    """Top-k next-token probabilities, one panel per named prompt (each with its own tokens),
    the target and its rival coloured apart from the rest."""
    from plotly.subplots import make_subplots

    names = list(predictions)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.12, shared_xaxes=True)
    for col, name in enumerate(names, start=1):
        pred = predictions[name]
        fig.add_bar(
            x=pred.probs,
            y=[show_token(t) for t in pred.tokens],
            orientation="h",
            marker_color=[BAR_COLOURS.get(i, BAR_COLOURS[None]) for i in range(len(pred.tokens))],
            hovertemplate="%{y}: %{x:.2%}<extra>" + name + "</extra>",
            showlegend=False,
            row=1,
            col=col,
        )
        fig.update_yaxes(autorange="reversed", tickfont_size=11, row=1, col=col)
        fig.update_xaxes(tickformat=".0%", range=[0, 1], title_text="probability", row=1, col=col)
    fig.update_layout(title=title, height=160 + 24 * max(len(p.tokens) for p in predictions.values()), bargap=0.25)
    return fig


def signed_heatmap(
    values: Sequence[Sequence[float]],
    x_labels: Sequence[str],
    y_labels: Sequence[str],
    title: str,
    value_name: str,
    x_title: str = "position",
    y_title: str = "layer",
) -> go.Figure:
    """A heatmap on a red-white-blue scale centred on zero, exact value on hover."""
    limit = max((abs(v) for row in values for v in row), default=1.0) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=list(range(len(x_labels))),
            y=list(y_labels),
            colorscale=SIGNED_SCALE,
            zmid=0,
            zmin=-limit,
            zmax=limit,
            customdata=[[x_labels[i] for i in range(len(x_labels))] for _ in values],
            hovertemplate="%{y}, %{customdata}: %{z:.3f}<extra>" + value_name + "</extra>",
            colorbar_title=value_name,
        )
    )
    fig.update_xaxes(tickvals=list(range(len(x_labels))), ticktext=list(x_labels), title=x_title)
    fig.update_yaxes(title=y_title)
    fig.update_layout(title=title)
    return fig
