"""Showing results on a page: offline figures, token views, glued numbers, the page header.

The book is static HTML that must load nothing from the network. Plotly figures are emitted
as a MIME bundle holding both plotly's own JSON (rendered natively by Jupyter) and an HTML
snippet that draws with the book's local ``plotly.min.js`` (myst-nb keeps only the HTML).
circuitsvis views call the book's local ``circuitsvis.js`` when the page is executed for the
book (``AN_NEURON_BOOK=1``), and inline the bundle otherwise so they work in any notebook.
"""
from __future__ import annotations

import html
import json
import os
import re
import uuid
from importlib.metadata import version
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from IPython.display import HTML, Markdown, display

from helpers.book.build import BOOK_ENV, PAGE_ENV
from helpers.book.results import BESIDE_MIME, stored_beside, stored_label, stored_study_results
from helpers.core.models import describe
from helpers.paper import is_paper_model


def in_book() -> bool:
    """Whether this kernel executes a page for the static book."""
    return os.environ.get(BOOK_ENV) == "1"


def show(fig: go.Figure) -> None:
    """Display a plotly figure so that it renders in Jupyter and in the offline book."""
    snippet = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        default_height=f"{fig.layout.height or 450}px",
        config={"displaylogo": False, "responsive": True},
    )
    display({"application/vnd.plotly.v1+json": fig.to_plotly_json(), "text/html": snippet}, raw=True)


NEGATIVE_COLOUR, POSITIVE_COLOUR = "#b2182b", "#2166ac"  # the red and blue ends of plotly's RdBu (SIGNED_SCALE)


def show_tokens(tokens: Sequence[str], values: Sequence[float], label: str = "activation", scale: float | None = None) -> float:
    """Tokens coloured by a value (circuitsvis ``ColoredTokens``), rendered offline, on one scale
    centred on zero: white at 0, full blue at ``+scale``, full red at ``-scale`` (default: the
    largest absolute value shown), with a legend that states the scale. Returns the scale, so
    that views shown after it can share it."""
    import circuitsvis.tokens

    values = [float(v) for v in values]
    scale = float(scale) if scale else max((abs(v) for v in values), default=0.0) or 1.0
    colours = dict(negative_color=NEGATIVE_COLOUR, positive_color=POSITIVE_COLOUR)
    legend = token_legend(label, scale)
    if not in_book():
        display(HTML(circuitsvis.tokens.colored_tokens(list(tokens), values, min_value=-scale, max_value=scale, **colours).local_src + legend))
        return scale
    from circuitsvis.utils.convert_props import convert_props

    element_id = f"circuits-vis-{uuid.uuid4().hex[:12]}"
    props = convert_props({"tokens": list(tokens), "values": values, "minValue": -scale, "maxValue": scale,
                           "negativeColor": NEGATIVE_COLOUR, "positiveColor": POSITIVE_COLOUR})
    display(
        HTML(
            f'<div id="{element_id}" class="circuitsvis-view" data-label="{html.escape(label)}" style="margin: 15px 0 4px 0;"></div>'
            f"<script>CircuitsVis.render({json.dumps(element_id)}, CircuitsVis.ColoredTokens, {props});</script>" + legend
        )
    )
    return scale


def token_legend(label: str, scale: float) -> str:
    """One line under a token view: the colour bar from ``-scale`` through 0 to ``+scale``."""
    bar = (f"display:inline-block;width:9em;height:.8em;vertical-align:middle;margin:0 .4em;border:1px solid rgba(128,128,128,.5);"
           f"background:linear-gradient(to right,{NEGATIVE_COLOUR},#ffffff,{POSITIVE_COLOUR})")
    return legend_line(f'{html.escape(label)}: {-scale:.3g}<span style="{bar}"></span>{scale:.3g} (white: 0)')


def legend_line(content: str) -> str:
    """The line under a token or attention view that says how its colours read (HTML ``content``)."""
    return f'<div class="token-legend" style="font-size:.85em;margin-bottom:15px">{content}</div>'


def interval_text(low: float, high: float) -> str:
    """An interval's bounds as prose: ``0.104 to 0.111``, or why there are none (NaN bounds:
    fewer pairs than :data:`helpers.core.stats.MIN_PAIRS`)."""
    from helpers.core.stats import MIN_PAIRS

    if low != low or high != high:
        return f"no interval: fewer than {MIN_PAIRS} pairs"
    return f"{low:.3g} to {high:.3g}"


def glue(**values) -> None:
    """Make each value citable in prose as ``{glue:text}`name```; for each ``x_low`` and
    ``x_high`` given together, ``x_interval`` too (:func:`interval_text`)."""
    from myst_nb import glue as myst_glue

    for name in [n for n in values if n.endswith("_low") and n[:-4] + "_high" in values]:
        values[name[:-4] + "_interval"] = interval_text(values[name], values[name[:-4] + "_high"])
    for name, value in values.items():
        myst_glue(name, value, display=False)


def page_header(model, **parameters) -> None:
    """A box at the top of a page: which model and parameters produced it."""
    shape = describe(model)
    params = ", ".join(f"`{k}={v!r}`" for k, v in parameters.items())
    origin = (
        "the model of the original study"
        if is_paper_model(shape["model"])
        else "not the study's GPT-2 Large: the study's numbers are shown beside this run's, each labelled by its model"
    )
    display(
        Markdown(
            f"**Produced by `{shape['model']}`** ({origin}): {shape['n_layers']} layers, "
            f"d_model {shape['d_model']}, {shape['n_neurons']:,} MLP neurons, vocabulary {shape['d_vocab']:,}. "
            f"Parameters: {params}. torch {version('torch')}, transformer-lens {version('transformer-lens')}."
        )
    )


def paper_beside(page, rows: Sequence[tuple[str, object, object]], paper_method: str = "") -> None:
    """The study's values beside this run's, in every build, each column labelled by its model.

    ``page`` is the page's :class:`helpers.book.page.Page`; ``rows`` holds
    ``(quantity, the study's value, this run's value)``. On another model than GPT-2 Large
    the table says so above it: the two columns are two models, not a replication. When the
    repository keeps a GPT-2 Large results file of this book, its values are a third column.
    """
    if not rows:
        display(Markdown(f"*The study reported nothing on this page that has a counterpart in this run ({page.model_name}).*"))
        return
    if not page.on_paper_model:
        display(Markdown(f"*The study's column is GPT-2 Large; this run's is `{page.model_name}`, another model: "
                         "where they differ, the difference is between models.*"))
    name = os.environ.get(PAGE_ENV, "")
    table = beside_table(page.model_name, rows, paper_method, stored_study_results(), name)
    # the rows also go out as data, in the same output, for the build's results file
    record = {"page": name, "rows": [[quantity, run] for quantity, run in zip(table.quantity, table.iloc[:, -1])]}
    display({"text/html": table.style.hide(axis="index").to_html(), BESIDE_MIME: record}, raw=True)


def beside_table(model_name: str, rows: Sequence[tuple[str, object, object]], paper_method: str = "", stored: dict | None = None,
                 page_name: str = "") -> pd.DataFrame:
    """The table :func:`paper_beside` shows: quantity, the study's value, a stored GPT-2 Large
    run's (when ``stored`` is given; "not recorded" where it has none) and this run's."""
    study_header = "the study, GPT-2 Large" + (f" ({paper_method})" if paper_method else "")
    cells = [(quantity, as_cell(paper), as_cell(run)) for quantity, paper, run in rows]
    table = pd.DataFrame(cells, columns=["quantity", study_header, f"this run, {model_name}"])
    if stored is not None:
        table.insert(2, stored_label(stored), [stored_beside(stored, page_name, q) or "not recorded" for q in table.quantity])
    return table


def as_cell(value) -> str:
    """A table cell as the number was meant: ``1,471`` for a count, ``0.5032`` for a value,
    text as it is (a column mixing them would otherwise print ``1471.000000``)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.2e}"
    return str(value)


INTERVAL_CELL = re.compile(r"-?[\d.,]+ \[-?[\d.,]+, -?[\d.,]+\]")
NO_BREAK = "\u00a0"


def _cell(value, precision: int = 3):
    """A float at ``precision`` digits, never "-0.000" (a tiny negative number rounds to plain
    0); an interval cell, "0.107 [0.104, 0.111]", breaks at most once, before its bracket."""
    if isinstance(value, (float, np.floating)):
        return format(float(value), f"z.{precision}f")
    if isinstance(value, str) and INTERVAL_CELL.fullmatch(value):
        return value.replace(", ", "," + NO_BREAK)
    return value


def show_table(frame: pd.DataFrame, caption: str = "", precision: int = 3, index: bool = False) -> None:
    """A table without its index (unless ``index``), numbers at ``precision`` digits, and
    headers in words (``n_tokens`` is shown as "n tokens")."""
    frame = frame.rename(columns=lambda c: c.replace("_", " ") if isinstance(c, str) else c)
    style = frame.style.format(lambda v: _cell(v, precision))
    if not index:
        style = style.hide(axis="index")
    if caption:
        style = style.set_caption(caption)
    display(style)


def note(text: str) -> None:
    """A line of Markdown produced by a helper (a phrase that depends on the run); nothing if empty."""
    if text:
        display(Markdown(text))


def show_attention(tokens: Sequence[str], pattern, head_names: Sequence[str], label: str = "attention") -> None:
    """Attention patterns ``[head, query, key]`` over ``tokens`` (circuitsvis ``AttentionHeads``),
    rendered offline like :func:`show_tokens`."""
    import circuitsvis.attention
    from circuitsvis.utils.convert_props import convert_props

    values = [[[float(v) for v in row] for row in head] for head in pattern.tolist()] if hasattr(pattern, "tolist") else pattern
    props = {"tokens": list(tokens), "attention": values, "attentionHeadNames": list(head_names), "maskUpperTri": True}
    if not in_book():
        display(HTML(circuitsvis.attention.attention_heads(values, list(tokens), list(head_names), mask_upper_tri=True).local_src))
        return
    element_id = f"circuits-vis-{uuid.uuid4().hex[:12]}"
    display(
        HTML(
            f'<div id="{element_id}" class="circuitsvis-view" data-label="{html.escape(label)}" style="margin: 15px 0;"></div>'
            f"<script>CircuitsVis.render({json.dumps(element_id)}, CircuitsVis.AttentionHeads, {convert_props(props)});</script>"
            + legend_line(f"{html.escape(label)}: each head in its own colour, white at weight 0 and full colour at weight 1")
        )
    )
