"""Figures for the congruence pages: neurons against tokens, read off the weights.

Each function takes numbers from :mod:`helpers.methods.congruence` and returns a plotly figure.
Signed congruence is coloured on a red-white-blue scale centred on zero; token strings keep
their leading space visible; hover gives exact values. Plots of every token (about 50,000
points for GPT-2) or every neuron (about 184,000) are thinned to a few thousand points
(:func:`helpers.book.figures.common.thinned`, said under the title) and drawn as SVG, which
every browser shows without WebGL.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from helpers.book.figures.common import LOG_AXIS, PAPER_COLOUR, SIGNED_SCALE, colorbar, place_labels, thinned
from helpers.core.names import Neuron, show_token

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def unique_labels(table: pd.DataFrame) -> list[str]:
    """Token labels for an axis (``token_str``, else the id); a repeated string gets its id
    appended, so that two tokens never share one bar."""
    if "token_str" not in table:
        return [str(t) for t in table["token"]]
    counts = table["token_str"].value_counts()
    return [s if counts[s] == 1 else f"{s} (id {t})" for s, t in zip(table["token_str"], table["token"])]


def _signed_marker(values: np.ndarray) -> dict:
    limit = float(np.nanmax(np.abs(values))) or 1.0
    return dict(color=values, colorscale=SIGNED_SCALE, cmid=0, cmin=-limit, cmax=limit, size=4, showscale=False)


def neuron_against_tokens(values: np.ndarray, token_strings: Sequence[str], neuron: str, matrix: str, n_labels: int = 8) -> go.Figure:
    """One neuron's congruence with every token (x: token id), the largest ``n_labels`` and
    the smallest few labelled with their token."""
    values = np.asarray(values, dtype=np.float64)
    keep, note = thinned(values)
    ids = np.arange(len(values))
    shown = [show_token(token_strings[i]) for i in keep]
    fig = go.Figure(
        go.Scatter(
            x=ids[keep], y=values[keep], mode="markers", marker=_signed_marker(values[keep]), customdata=shown,
            hovertemplate="token %{x} %{customdata}: %{y:.3f}<extra></extra>",
        )
    )
    order = np.argsort(values[keep])
    place_labels(fig, ids[keep], values[keep], shown, np.concatenate([order[::-1][:n_labels], order[: max(1, n_labels // 4)]]), 460)
    fig.update_layout(
        title=f"{neuron} against every token (W_out · {matrix})" + (f"<br><sup>{note}</sup>" if note else ""),
        xaxis_title="token id", yaxis_title=f"congruence with {matrix}", height=460, showlegend=False,
    )
    return fig


def chosen_tokens_bars(values: dict[str, float], neuron: str, matrix: str, mean: float | None = None, std: float | None = None) -> go.Figure:
    """Bars of one neuron's congruence with a few chosen tokens; with ``mean`` and ``std`` (over
    the vocabulary) dotted lines at the mean and one standard deviation either side."""
    names = [show_token(t) for t in values]
    numbers = np.array(list(values.values()), dtype=np.float64)
    limit = float(np.abs(numbers).max()) or 1.0
    fig = go.Figure(
        go.Bar(
            x=names, y=numbers,
            marker=dict(color=numbers, colorscale=SIGNED_SCALE, cmid=0, cmin=-limit, cmax=limit),
            hovertemplate="%{x}: %{y:.3f}<extra></extra>",
        )
    )
    reference = {} if mean is None else {"mean": mean, "mean + 1 std": mean + std, "mean - 1 std": mean - std}
    for label, level in reference.items():
        fig.add_hline(y=level, line_dash="dot", line_color=PAPER_COLOUR, annotation_text=label, annotation_position="top right")
    fig.update_layout(title=f"{neuron} against chosen tokens (W_out · {matrix})", xaxis_title="token",
                      yaxis_title=f"congruence with {matrix}", height=380)
    return fig


def neurons_against_token(values: np.ndarray, token: str, matrix: str, n_labels: int = 6) -> go.Figure:
    """Every neuron's congruence with one token (``values`` is ``[layers, d_mlp]``), laid out
    layer after layer with the layer boundaries marked and the largest neurons labelled."""
    values = np.asarray(values, dtype=np.float64)
    n_layers, d_mlp = values.shape
    keep, note = thinned(values.ravel())
    flat = values.ravel()[keep]
    x = keep
    names = [str(Neuron.from_flat(int(i), d_mlp)) for i in keep]
    fig = go.Figure(
        go.Scatter(
            x=x, y=flat, mode="markers", marker=_signed_marker(flat), customdata=names,
            hovertemplate="%{customdata}: %{y:.3f}<extra></extra>",
        )
    )
    for layer in range(1, n_layers):
        fig.add_vline(x=layer * d_mlp - 0.5, line_width=0.5, line_color="#cccccc")
    place_labels(fig, x, flat, names, np.argsort(flat)[::-1][:n_labels], 460)
    step = max(1, n_layers // 12)
    fig.update_xaxes(
        tickvals=[(layer + 0.5) * d_mlp for layer in range(0, n_layers, step)],
        ticktext=[f"L{layer}" for layer in range(0, n_layers, step)],
        title="neuron (layer by layer; grey lines are layer boundaries)",
    )
    fig.update_layout(title=f"Every neuron against {show_token(token)} (W_out · {matrix})" + (f"<br><sup>{note}</sup>" if note else ""),
                      yaxis_title=f"congruence with {matrix}", height=460, showlegend=False)
    return fig


def top_neuron_gap_bars(table: pd.DataFrame, matrix: str, measure: str, n: int = 20) -> go.Figure:
    """The ``n`` tokens with the largest gap between their most and second most congruent
    neuron; the hover names both neurons."""
    top = table.head(n)
    fig = go.Figure(
        go.Bar(
            x=top["gap"], y=unique_labels(top),
            orientation="h", marker_color=PALETTE[0],
            customdata=np.stack([top["neuron"].map(str), top["value"].round(3), top["second_neuron"].map(str), top["second_value"].round(3)], -1),
            hovertemplate="%{y}: %{customdata[0]} (%{customdata[1]}) minus %{customdata[2]} (%{customdata[3]}) = %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Tokens with the largest gap between their top two neurons ({measure}, {matrix})",
        xaxis_title="top-1 minus top-2 congruence", yaxis_autorange="reversed", height=140 + 22 * len(top),
    )
    return fig


def mutual_scatter(table: pd.DataFrame, matrix: str, measure: str, n_labels: int = 10) -> go.Figure:
    """Mutual-exclusive pairs: the token's gap over neurons against the neuron's gap over
    tokens (log axes); the ``n_labels`` best scores labelled ``token / neuron``."""
    keep, note = thinned(table["score"].to_numpy(), tail=2000, bulk=3000)
    table = table.iloc[keep[np.argsort(-table["score"].to_numpy()[keep], kind="stable")]]
    labels = [f"{t} / {n}" for t, n in zip(table.get("token_str", table["token"].astype(str)), table["neuron"])]
    fig = go.Figure(
        go.Scatter(
            x=table["token_gap"], y=table["neuron_gap"], mode="markers",
            marker=dict(color=np.log10(table["score"].clip(lower=1e-12)), colorscale="Blues", size=5, showscale=True,
                        colorbar=colorbar("log10 score")),
            customdata=np.stack([labels, table["score"].round(4)], -1),
            hovertemplate="%{customdata[0]}: score %{customdata[1]}<br>token gap %{x:.3f}, neuron gap %{y:.3f}<extra></extra>",
        )
    )
    x, y = table["token_gap"].to_numpy().clip(1e-12), table["neuron_gap"].to_numpy().clip(1e-12)
    place_labels(fig, x, y, labels, range(min(n_labels, len(table))), 480, log=(True, True), font_size=10)
    fig.update_xaxes(**LOG_AXIS, title="token's top-1 minus top-2 over neurons")
    fig.update_yaxes(**LOG_AXIS, title="neuron's top-1 minus top-2 over tokens")
    fig.update_layout(title=f"Mutual-exclusive pairs ({measure}, {matrix})" + (f"<br><sup>{note}</sup>" if note else ""), height=480)
    return fig


def hub_sizes(counts: dict[str, np.ndarray]) -> go.Figure:
    """For each named pass: how many neurons are the top neuron of exactly k tokens (log axes)."""
    fig = go.Figure()
    for colour, (name, n_tokens) in zip(PALETTE, counts.items()):
        sizes, how_many = np.unique(np.asarray(n_tokens), return_counts=True)
        fig.add_scatter(x=sizes, y=how_many, mode="markers+lines", line_shape="hv", marker_color=colour, name=name,
                        hovertemplate="%{y:,} neurons top %{x:,} token(s) each<extra>" + name + "</extra>")
    fig.update_xaxes(**LOG_AXIS, title="tokens for which the neuron is the most congruent")
    fig.update_yaxes(**LOG_AXIS, title="neurons")
    fig.update_layout(title="How many tokens share a top neuron", height=420, legend=dict(orientation="h", y=-0.2))
    return fig


def hub_layers(tables: dict[str, pd.DataFrame], n_layers: int) -> go.Figure:
    """For each named pass: the share of the vocabulary whose top neuron sits in each layer."""
    fig = go.Figure()
    for colour, (name, table) in zip(PALETTE, tables.items()):
        per_layer = table.groupby("layer")["n_tokens"].sum().reindex(range(n_layers), fill_value=0)
        share = per_layer / per_layer.sum()
        fig.add_bar(x=list(range(n_layers)), y=share, name=name, marker_color=colour,
                    hovertemplate="layer %{x}: %{y:.1%} of tokens<extra>" + name + "</extra>")
    fig.update_layout(title="Layer of each token's most congruent neuron", xaxis_title="layer",
                      yaxis_title="share of tokens", yaxis_tickformat=".0%", barmode="group", height=380)
    return fig


def census_per_layer_bars(per_layer: pd.DataFrame) -> go.Figure:
    """Prediction neurons (up) and suppression neurons (down) per layer."""
    fig = go.Figure()
    fig.add_bar(x=per_layer["layer"], y=per_layer["prediction"], name="prediction (skew > 0)", marker_color="#2166ac",
                hovertemplate="layer %{x}: %{y} prediction neurons<extra></extra>")
    fig.add_bar(x=per_layer["layer"], y=-per_layer["suppression"], name="suppression (skew < 0)", marker_color="#b2182b",
                customdata=per_layer["suppression"], hovertemplate="layer %{x}: %{customdata} suppression neurons<extra></extra>")
    fig.update_layout(title="Prediction and suppression neurons per layer", xaxis_title="layer",
                      yaxis_title="neurons (suppression drawn downwards)", barmode="relative", height=400,
                      legend=dict(orientation="h", y=-0.2))
    return fig


HIGHLIGHT_SYMBOLS = ("star", "diamond", "square", "triangle-up")


def census_scatter(table: pd.DataFrame, kurtosis_min: float, highlight: dict[str, str] | None = None, max_points: int = 5_000, seed: int = 0) -> go.Figure:
    """Skew against kurtosis of each neuron's cosine with the vocabulary (log kurtosis).

    Above ``max_points`` neurons, the ``other`` class is subsampled for drawing (every
    prediction and suppression neuron is kept); ``highlight`` (label -> neuron name) marks
    neurons with a star, a diamond, ... in that order.
    """
    colours = {"prediction": "#2166ac", "suppression": "#b2182b", "other": "#bbbbbb"}
    rng = np.random.default_rng(seed)
    fig = go.Figure()
    for name, colour in colours.items():
        part = table[table["class"] == name]
        label = name
        if name == "other" and len(part) > max_points:
            label = f"other ({max_points:,} of {len(part):,} drawn at random)"
            part = part.iloc[np.sort(rng.choice(len(part), max_points, replace=False))]
        fig.add_scatter(x=part["skew"], y=part["kurtosis"], mode="markers", marker=dict(color=colour, size=3), name=label,
                          customdata=part["neuron"].map(str), hovertemplate="%{customdata}: skew %{x:.2f}, kurtosis %{y:.1f}<extra></extra>")
    # on a log axis a shape's y is in log10 units: the line at y = 10 is drawn at log10(10) = 1
    fig.add_hline(y=float(np.log10(kurtosis_min)), line_dash="dot", line_color=PAPER_COLOUR, annotation_text=f"kurtosis {kurtosis_min:g}")
    for (label, neuron), symbol in zip((highlight or {}).items(), HIGHLIGHT_SYMBOLS):
        neuron = Neuron.of(neuron)
        row = table[table["neuron"] == neuron]
        if len(row):
            fig.add_scatter(x=row["skew"], y=row["kurtosis"], mode="markers",  # named in the legend, not on the plot
                            marker=dict(color="black", size=10, symbol=symbol), name=f"{neuron} ({label})",
                            hovertemplate=f"{neuron}: skew %{{x:.2f}}, kurtosis %{{y:.1f}}<extra></extra>")
    fig.update_yaxes(**LOG_AXIS, title="kurtosis of cos(W_U, w_out) over the vocabulary (log)")
    fig.update_xaxes(title="skew")
    fig.update_layout(title="Every neuron's cosine with the unembedding: skew and kurtosis", height=480,
                      legend=dict(orientation="h", y=-0.2))
    return fig


def pair_curves(curves: dict[str, pd.DataFrame]) -> go.Figure:
    """Top-prediction curves of several (token, neuron) pairs on one chart: for each, the share
    of positions where the pair's token is the top-1 prediction per bin of its neuron's
    activation (tables from ``helpers.scan.statistics.correlation_table``)."""
    from helpers.book.figures.scan import top_prediction_curve_figure

    fig = top_prediction_curve_figure(curves, "neuron", "")
    fig.update_yaxes(title_text="P(top-1 = the pair's token)", row=1, col=1)
    fig.update_xaxes(title_text="the pair's neuron's activation (bin start)", row=2, col=1)
    fig.update_layout(title="How often each pair's token is the top prediction, by its neuron's activation")
    return fig
