"""Plotly figures shared by the pages: one function per kind of figure, each returning it.

Signed values use a red-white-blue scale centred on zero; token strings keep their leading
space visible; hover shows exact values.
"""
from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go

from helpers.core.names import show_token

SIGNED_SCALE = "RdBu"
PAPER_COLOUR = "#555555"


def next_token_bars(predictions: dict[str, "NextTokens"], title: str) -> go.Figure:  # noqa: F821
    """Grouped horizontal bars: top-k next-token probabilities for each named prompt."""
    fig = go.Figure()
    for name, pred in predictions.items():
        fig.add_bar(
            name=name,
            x=pred.probs,
            y=[show_token(t) for t in pred.tokens],
            orientation="h",
            hovertemplate="%{y}: %{x:.2%}<extra>" + name + "</extra>",
        )
    fig.update_layout(
        title=title,
        xaxis_title="probability of the next token",
        xaxis_tickformat=".0%",
        yaxis_autorange="reversed",
        height=120 + 22 * sum(len(p.tokens) for p in predictions.values()) // max(len(predictions), 1),
        legend_title_text="prompt",
    )
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
