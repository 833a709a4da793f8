"""Figures for the dataset pages: activation distributions and the top-prediction curve.

Each function takes numbers already computed by ``helpers.scan`` and returns a plotly
figure. Distributions are binned here with numpy, so a figure of ten million tokens carries
a few hundred numbers, not ten million.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from helpers.book.figures.common import LOG_AXIS, PAPER_COLOUR
from helpers.core.names import show_token

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def token_strings(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each token id decoded on its own, leading space kept (for token views and labels)."""
    return tokenizer.batch_decode([[int(i)] for i in ids])


def examples_table(examples: pd.DataFrame, tokenizer) -> pd.DataFrame:
    """The top-examples table for reading: rank, activation, document, position, the token
    and the next token as strings with their leading space visible."""
    following = token_strings(tokenizer, examples["next_token"].clip(lower=0))
    scale = float(examples["activation"].max()) if len(examples) else 1.0
    return pd.DataFrame(
        {
            "rank": range(1, len(examples) + 1),
            "activation": examples["activation"].round(3),
            "document": examples["doc"],
            "position": examples["pos"],
            "token": [show_token(t) for t in token_strings(tokenizer, examples["token"])],
            "next token": [show_token(t) if i >= 0 else "(end of document)" for i, t in zip(examples["next_token"], following)],
        }
    )


def show_examples(examples: pd.DataFrame, tokenizer, neuron: str) -> float:
    """Each example as a line of tokens coloured by activation (circuitsvis, offline), ending
    at the example's token, with the token that really came next written after it. Every view
    shares one scale, the top activation, which is returned for the views shown after them."""
    from IPython.display import Markdown, display

    from helpers.book.display import show_tokens

    following = token_strings(tokenizer, examples["next_token"].clip(lower=0))
    scale = float(examples["activation"].max()) if len(examples) else 1.0
    for rank, (row, nxt) in enumerate(zip(examples.itertuples(), following), start=1):
        upto = row.focus + 1
        nxt = f"**{show_token(nxt)}**" if row.next_token >= 0 else "(end of document)"
        display(Markdown(f"{rank}. activation {row.activation:.3f} (document {row.doc}), next token {nxt}"))
        show_tokens(token_strings(tokenizer, row.window_tokens[:upto]), row.window_activations[:upto], label=f"{neuron} activation", scale=scale)
    return scale


def activation_distribution(samples: dict[str, np.ndarray], neuron: str, bins: int = 120) -> go.Figure:
    """Share of tokens per activation bin, one outline per named sample, log-scaled counts.

    All samples share the same bins, so their shapes can be compared directly.
    """
    arrays = {name: np.asarray(values, dtype=np.float64).ravel() for name, values in samples.items()}
    arrays = {name: a[np.isfinite(a)] for name, a in arrays.items() if a.size}
    if not arrays:
        raise ValueError("activation_distribution needs at least one non-empty sample")
    low = min(a.min() for a in arrays.values())
    high = max(a.max() for a in arrays.values())
    edges = np.linspace(low, high if high > low else low + 1, bins + 1)
    fig = go.Figure()
    for colour, (name, a) in zip(PALETTE, arrays.items()):
        counts, _ = np.histogram(a, edges)
        share = counts / a.size
        fig.add_scatter(
            x=edges[:-1],
            y=np.where(share > 0, share, np.nan),
            mode="lines",
            line_shape="hv",
            line_color=colour,
            name=f"{name} ({a.size:,} tokens)",
            customdata=np.stack([edges[:-1], edges[1:], counts], -1),
            hovertemplate="%{customdata[0]:.2f} to %{customdata[1]:.2f}: %{y:.3%} (%{customdata[2]:,} tokens)<extra>" + name + "</extra>",
        )
    fig.update_layout(
        title=f"Activation of {neuron} on every token",
        xaxis_title=f"{neuron} activation",
        yaxis=dict(title="share of tokens (log scale)", **LOG_AXIS),
        height=420,
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def top_prediction_curve_figure(
    curves: dict[str, pd.DataFrame],
    neuron: str,
    token: str,
    paper: Sequence[Sequence[float]] | None = None,
    paper_label: str = "paper (GPT-2 Large, pile-10k)",
) -> go.Figure:
    """Proportion of tokens where ``token`` is the top prediction, per activation bin.

    Each curve is a ``top_prediction_curve`` table; its 95% Wilson interval is the error
    bar and its bin counts are the bars underneath (log scale). ``paper`` is a list of
    ``[bin start, proportion]`` drawn as a dashed line.
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.05)
    styles = [("solid", "circle"), ("dot", "diamond-open"), ("dash", "square-open")]
    for i, (colour, (name, curve)) in enumerate(zip(PALETTE, curves.items())):
        dash, symbol = styles[i % len(styles)]
        fig.add_scatter(
            x=curve["bin_start"],
            y=curve["proportion"],
            mode="lines+markers",
            marker=dict(size=6 if i else 5, symbol=symbol),
            line=dict(color=colour, dash=dash),
            name=name,
            error_y=dict(
                type="data",
                symmetric=False,
                array=curve["ci_high"] - curve["proportion"],
                arrayminus=curve["proportion"] - curve["ci_low"],
                thickness=1,
                width=0,
            ),
            customdata=np.stack([curve["bin_end"], curve["hits"], curve["count"], curve["ci_low"], curve["ci_high"]], -1),
            hovertemplate=(
                "bin %{x:.2f} to %{customdata[0]:.2f}: %{y:.3f} (%{customdata[1]:,} of %{customdata[2]:,}), "
                "95% CI %{customdata[3]:.3f} to %{customdata[4]:.3f}<extra>" + name + "</extra>"
            ),
            row=1,
            col=1,
        )
    if paper:
        xs, ys = zip(*paper)
        fig.add_scatter(x=xs, y=ys, mode="lines", line=dict(color=PAPER_COLOUR, dash="dash"), name=paper_label,
                        hovertemplate="bin %{x:.2f}: %{y:.3f}<extra>paper</extra>", row=1, col=1)
    first = next(iter(curves.values()))
    fig.add_bar(
        x=first["bin_start"],
        y=first["count"],
        marker_color="#bbbbbb",
        name="tokens in bin",
        hovertemplate="bin %{x:.2f}: %{y:,} tokens<extra></extra>",
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text=f"P(top-1 = {show_token(token)})", range=[-0.02, 1.02], row=1, col=1)
    decades = float(np.log10(max(float(first["count"].max()), 1.0)))
    fig.update_yaxes(title_text="tokens", **{**LOG_AXIS, "dtick": 1 if decades <= 3 else 2}, row=2, col=1)  # a short panel: at most four labels
    fig.update_xaxes(title_text=f"{neuron} activation (bin start)", row=2, col=1)
    fig.update_layout(
        title=f"How often {show_token(token)} is the top prediction, by {neuron} activation",
        height=560,
        legend=dict(orientation="h", y=-0.15),
        bargap=0.05,
    )
    return fig


def prediction_counts_figure(counts: dict[str, int], token: str, paper: dict[str, int] | None = None) -> go.Figure:
    """Bars: how often ``token`` is predicted (per kind of prediction) and how often it occurs.

    ``counts`` maps a label to a count; ``paper`` (optional) maps the same kind of label to
    the study's numbers, drawn beside in grey.
    """
    fig = go.Figure()
    fig.add_bar(x=list(counts), y=list(counts.values()), name="this run", marker_color=PALETTE[0],
                hovertemplate="%{x}: %{y:,}<extra>this run</extra>")
    if paper:
        fig.add_bar(x=list(paper), y=list(paper.values()), name="paper (GPT-2 Large, pile-10k)", marker_color=PAPER_COLOUR,
                    hovertemplate="%{x}: %{y:,}<extra>paper</extra>")
    fig.update_layout(
        title=f"{show_token(token)}: predicted as top-1 versus actually next",
        yaxis_title="positions",
        barmode="group",
        height=380,
    )
    return fig
