"""Plotly figures shared by the pages: one function per kind of figure, each returning it.

Signed values use a red-white-blue scale centred on zero; token strings keep their leading
space visible; hover shows exact values.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from helpers.core.names import show_token

SIGNED_SCALE = "RdBu"  # signed values: red negative, white 0, blue positive, everywhere


# a log axis labelled at its decades only (no crowded minor labels, no SI prefixes such as "100μ")
LOG_AXIS = dict(type="log", dtick=1, exponentformat="power")


def colorbar(title: str, **options) -> dict:
    """A colour bar whose title runs along its side, clear of the top tick label."""
    return dict(title=dict(text=title, side="right"), **options)
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
    # a log axis: the nine bars after the first are often under 1%, invisible on a linear one
    smallest = min(min(p.probs) for p in predictions.values())
    fig.update_xaxes(**LOG_AXIS, range=[float(np.log10(max(smallest, 1e-12))) - 0.3, 0], title_text="probability (log scale)")
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
            colorbar=colorbar(value_name),
        )
    )
    fig.update_xaxes(tickvals=list(range(len(x_labels))), ticktext=list(x_labels), title=x_title)
    fig.update_yaxes(title=y_title)
    fig.update_layout(title=title)
    return fig


# where a label may sit relative to its point, in pixels (right/left, above/below, then further out)
LABEL_OFFSETS = [(d * sx, d * sy) for d in (28, 48, 70) for sy in (-1, 1) for sx in (1, -1)] + [(0, -60), (0, 60)]
PLOT_AREA = (520, None)  # the plot area's width at the book's content width (px); height from the figure's


def place_labels(fig: go.Figure, x: np.ndarray, y: np.ndarray, labels: Sequence[str], index: Sequence[int], height: int,
                 log: tuple[bool, bool] = (False, False), font_size: int = 11) -> int:
    """Label the points ``index`` of ``(x, y)`` (every point of the trace, for its axis range),
    each at the first offset of :data:`LABEL_OFFSETS` where its text box, estimated in pixels from
    the data's range and the plot area's size, meets no box already placed and stays in the plot.
    A label with no free place is left to the hover. Returns how many were placed."""
    def pixels(values: np.ndarray, is_log: bool, size: float, flip: bool) -> np.ndarray:
        v = np.log10(np.clip(values, 1e-300, None)) if is_log else np.asarray(values, dtype=np.float64)
        low, high = np.nanmin(v), np.nanmax(v)
        pad = 0.05 * (high - low or 1.0)
        p = (v - low + pad) / (high - low + 2 * pad) * size
        return size - p if flip else p

    width, plot_height = PLOT_AREA[0], height - 190
    px, py = pixels(x, log[0], width, False), pixels(y, log[1], plot_height, True)
    placed: list[tuple[float, float, float, float]] = []
    for i in index:
        w, h = 0.62 * font_size * len(labels[i]) + 8, font_size + 8
        for ax, ay in LABEL_OFFSETS:
            cx, cy = px[i] + ax + np.sign(ax) * w / 2, py[i] + ay
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            inside = box[0] >= 0 and box[2] <= width and box[1] >= 0 and box[3] <= plot_height
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                placed.append(box)
                fig.add_annotation(x=float(np.log10(x[i]) if log[0] else x[i]), y=float(np.log10(y[i]) if log[1] else y[i]),
                                   text=labels[i], showarrow=True, arrowhead=0, arrowwidth=1, ax=ax, ay=ay,
                                   xanchor="left" if ax > 0 else "right" if ax < 0 else "center", font_size=font_size)
                break
    return len(placed)
