"""Plotly figures for the logit-lens and patching pages: one function per kind, each returning it.

Signed values are drawn on the book's red-white-blue scale centred on zero, tokens keep their
leading space visible (``' apple'``), and hovering shows the exact value. Where the original
study's numbers are passed in (GPT-2 Large runs only), they are drawn beside this run's.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from helpers.book.figures.common import SIGNED_SCALE, colorbar
from helpers.core.names import show_token
from helpers.methods.layer_patching import COMPONENT_TITLES, maps_of
from helpers.methods.logit_lens import LogitLens, component_kind
from helpers.methods.patching import PatchResult

LOGITS_LABEL = "logits"
OTHER_DASHES = ("dot", "dashdot", "longdash", "longdashdot")


def logit_lens_figure(
    lens: LogitLens,
    title: str,
    paper: Mapping[str, float] | None = None,
    others: Mapping[str, LogitLens] | None = None,
) -> go.Figure:
    """The logit difference read at every point of the residual stream, then the true logits.

    The last category, ``logits``, is the model's own logit difference: the ``final_post``
    point plus the unembedding bias, drawn as a separate step so the gap stays visible.
    ``paper`` overlays the study's curve (label -> value); ``others`` adds more curves, each
    with its own dash (dotted, then dash-dot, ...) so that the prose can name it.
    """
    fig = go.Figure()
    x = [*lens.labels, LOGITS_LABEL]
    fig.add_scatter(
        x=x,
        y=[*lens.lens.tolist(), lens.logit_diff],
        mode="lines+markers",
        name="this run",
        marker_size=5,
        hovertemplate="%{x}: %{y:.3f}<extra>this run</extra>",
    )
    for (name, other), dash in zip((others or {}).items(), OTHER_DASHES):
        fig.add_scatter(
            x=[*other.labels, LOGITS_LABEL],
            y=[*other.lens.tolist(), other.logit_diff],
            mode="lines",
            line_dash=dash,
            name=name,
            hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>",
        )
    if paper:
        shared = [label for label in lens.labels if label in paper]
        fig.add_scatter(
            x=shared,
            y=[paper[label] for label in shared],
            mode="lines",
            line=dict(dash="dash", color="grey"),
            name="paper (GPT-2 Large, no bias)",
            hovertemplate="%{x}: %{y:.3f}<extra>paper</extra>",
        )
    fig.add_annotation(
        x=LOGITS_LABEL,
        y=lens.logit_diff,
        text=f"+ unembedding bias {lens.unembed_bias:+.3f}",
        showarrow=True,
        ax=-70,
        ay=-35,
    )
    fig.add_hline(y=0, line_width=1, line_color="lightgrey")
    fig.update_layout(
        title=title,
        xaxis_title="accumulated residual stream (layer_pre: before attention, layer_mid: before the MLP)",
        yaxis_title="logit difference",
        xaxis=dict(type="category", tickangle=-90, tickfont_size=9),
        height=450,
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
    )
    return fig


def attribution_figure(lens: LogitLens, title: str) -> go.Figure:
    """Direct contribution of every component to the logit difference, in residual-stream order."""
    values = lens.attribution.tolist()
    limit = max(abs(v) for v in values) or 1.0
    fig = go.Figure(
        go.Bar(
            x=lens.components,
            y=values,
            marker=dict(color=values, colorscale=SIGNED_SCALE, cmid=0, cmin=-limit, cmax=limit, line_width=0.5, line_color="grey"),
            customdata=[component_kind(c) for c in lens.components],
            hovertemplate="%{x} (%{customdata}): %{y:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        yaxis_title="direct contribution to the logit difference",
        xaxis=dict(type="category", tickangle=-90, tickfont_size=9),
        height=420,
    )
    return fig


def patching_heatmaps(
    results: Mapping[str, PatchResult],
    str_tokens: Sequence[str],
    title: str,
    value_name: str | None = None,
    paper: Mapping[str, Sequence[Sequence[float]]] | None = None,
) -> go.Figure:
    """Layer x position heatmaps, one row per component (each as wide as the page, so every
    token labels its column), on one colour scale centred on 0. ``value_name`` titles the
    colour bar (default: "recovered" for sufficiency, "destroyed" for necessity).

    With ``paper`` (component -> the study's layer x position matrix) a second column shows the
    study's values beside this run's.
    """
    maps = maps_of(results)
    components = list(maps)
    if value_name is None:
        value_name = "share destroyed" if next(iter(results.values())).direction == "necessity" else "share recovered"
    sources = [("this run", {c: maps[c].tolist() for c in components})]
    if paper:
        sources.append(("paper", {c: paper[c] for c in components if c in paper}))
    values = [v for _, maps_of_source in sources for matrix in maps_of_source.values() for line in matrix for v in line if v == v]
    limit = max((abs(v) for v in values), default=1.0) or 1.0
    tokens = [show_token(t) for t in str_tokens]
    positions = list(range(len(tokens)))
    n_layers = max(len(m) for _, maps_of_source in sources for m in maps_of_source.values())
    fig = make_subplots(
        rows=len(components),
        cols=len(sources),
        horizontal_spacing=0.08,
        vertical_spacing=0.32 / len(components),
        subplot_titles=[f"{source}: {COMPONENT_TITLES.get(c, c)}" for c in components for source, _ in sources],
    )
    for row, component in enumerate(components, start=1):
        for col, (source, maps_of_source) in enumerate(sources, start=1):
            if component not in maps_of_source:
                continue
            matrix = maps_of_source[component]
            fig.add_trace(
                go.Heatmap(
                    z=matrix,
                    x=positions,
                    y=list(range(len(matrix))),
                    coloraxis="coloraxis",
                    customdata=[tokens for _ in matrix],
                    hovertemplate=f"{source}, {component}<br>layer %{{y}}, position %{{x}} %{{customdata}}<br>{value_name} %{{z:.3f}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
            fig.update_xaxes(tickvals=positions, ticktext=tokens, tickangle=-90, tickfont_size=10, row=row, col=col)
    fig.update_annotations(font_size=12)  # the subplot titles
    fig.update_yaxes(autorange="reversed", title_text="layer", col=1)
    fig.update_layout(
        margin=dict(t=90),
        title=title,
        coloraxis=dict(colorscale=SIGNED_SCALE, cmid=0, cmin=-limit, cmax=limit, colorbar=colorbar(value_name)),
        # a row is never shorter than the rotated token labels under it need (few layers)
        height=120 + len(components) * max(260, 150 + 9 * n_layers),
    )
    return fig
