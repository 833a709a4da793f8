"""Figures of the sweep page (15): concentration curves, recoveries, likeness of the neurons."""
from __future__ import annotations

import plotly.graph_objects as go

from helpers.book.figures.common import SIGNED_SCALE, colorbar
from helpers.methods.sweep import Sweep, logit_effect_similarity


def concentration_figure(result: Sweep, title: str) -> go.Figure:
    """Mean recovery of the top k neurons restored together, as a share of the whole layer's,
    against k, one line per measured model; the dashed line is half."""
    fig = go.Figure()
    for name, model in result.models.items():
        whole = model.row["whole_layer"]
        share = (model.curve / whole).tolist() if whole else []
        fig.add_scatter(x=list(range(1, len(share) + 1)), y=share, mode="lines+markers", name=f"{name} ({model.row['neuron']})",
                        hovertemplate="top %{x} neurons: %{y:.3f} of the layer<extra>" + name + "</extra>")
    fig.add_hline(y=0.5, line_dash="dash", line_color="#555555", annotation_text="half of the whole layer")
    longest = max((len(m.curve) for m in result.models.values()), default=1)
    fig.update_xaxes(type="log" if longest > 20 else "linear", dtick=None if longest > 20 else 1,
                     title="neurons of the chosen layer restored together (ranked by their own recovery)")
    fig.update_yaxes(title="share of the whole layer's recovery")
    fig.update_layout(title=title, height=420)
    return fig


def recovery_figure(result: Sweep, title: str) -> go.Figure:
    """Each measured model's top neuron: mean recovery over the prompt set with its 95%
    interval, beside the whole layer's recovery."""
    rows = result.measured
    fig = go.Figure()
    fig.add_scatter(
        x=list(rows.model), y=list(rows.recovery), mode="markers", name="top neuron",
        error_y=dict(type="data", symmetric=False, array=list(rows.recovery_high - rows.recovery),
                     arrayminus=list(rows.recovery - rows.recovery_low)),
        customdata=list(rows.neuron), hovertemplate="%{x} %{customdata}: %{y:.3f}<extra>top neuron</extra>",
    )
    fig.add_scatter(x=list(rows.model), y=list(rows.whole_layer), mode="markers", marker_symbol="diamond-open", marker_size=11,
                    name="whole layer", hovertemplate="%{x}: %{y:.3f}<extra>whole layer</extra>")
    fig.update_yaxes(title="recovery of the logit difference (mean over pairs)")
    fig.update_layout(title=title, height=380)
    return fig


def similarity_figure(result: Sweep, title: str) -> go.Figure:
    """Cosine between the top neurons' centred logit effects, for models of one vocabulary
    (blank across vocabularies)."""
    table = logit_effect_similarity(result)
    labels = [f"{name} {result.models[name].row['neuron']}" for name in table.index]
    fig = go.Figure(go.Heatmap(
        z=table.to_numpy(), x=labels, y=labels, colorscale=SIGNED_SCALE, zmid=0, zmin=-1, zmax=1,
        texttemplate="%{z:.2f}", hovertemplate="%{y} / %{x}: %{z:.3f}<extra>cosine</extra>", colorbar=colorbar("cosine"),
    ))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=max(380, 200 + 45 * len(labels)))  # room for the colour bar's ticks with one or two models
    return fig
