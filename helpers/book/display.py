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
import uuid
from importlib.metadata import version
from typing import Sequence

import pandas as pd
import plotly.graph_objects as go
from IPython.display import HTML, Markdown, display

from helpers.book.build import BOOK_ENV
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


def show_tokens(tokens: Sequence[str], values: Sequence[float], label: str = "activation") -> None:
    """Tokens coloured by a value (circuitsvis ``ColoredTokens``), rendered offline."""
    import circuitsvis.tokens
    from circuitsvis.utils.convert_props import convert_props

    if not in_book():
        display(HTML(circuitsvis.tokens.colored_tokens(list(tokens), [float(v) for v in values]).local_src))
        return
    element_id = f"circuits-vis-{uuid.uuid4().hex[:12]}"
    props = convert_props({"tokens": list(tokens), "values": [float(v) for v in values]})
    display(
        HTML(
            f'<div id="{element_id}" class="circuitsvis-view" data-label="{html.escape(label)}" style="margin: 15px 0;"></div>'
            f"<script>CircuitsVis.render({json.dumps(element_id)}, CircuitsVis.ColoredTokens, {props});</script>"
        )
    )


def glue(**values) -> None:
    """Make each value citable in prose as ``{glue:text}`name```."""
    from myst_nb import glue as myst_glue

    for name, value in values.items():
        myst_glue(name, value, display=False)


def page_header(model, **parameters) -> None:
    """A box at the top of a page: which model and parameters produced it."""
    shape = describe(model)
    params = ", ".join(f"`{k}={v!r}`" for k, v in parameters.items())
    origin = (
        "the model of the original study"
        if is_paper_model(shape["model"])
        else "not the study's GPT-2 Large: the paper's numbers are shown only on a GPT-2 Large run"
    )
    display(
        Markdown(
            f"**Produced by `{shape['model']}`** ({origin}): {shape['n_layers']} layers, "
            f"d_model {shape['d_model']}, {shape['n_neurons']:,} MLP neurons, vocabulary {shape['d_vocab']:,}. "
            f"Parameters: {params}. torch {version('torch')}, transformer-lens {version('transformer-lens')}."
        )
    )


def paper_beside(page, rows: Sequence[tuple[str, object, object]], paper_method: str = "") -> None:
    """A table of the paper's value beside this run's, shown only for GPT-2 Large runs.

    ``page`` is the page's :class:`helpers.book.page.Page`; ``rows`` holds
    ``(quantity, paper value, this run's value)``.
    """
    if not page.on_paper_model:
        display(Markdown(f"*This run used `{page.model_name}`; the paper's GPT-2 Large values appear here on a GPT-2 Large run.*"))
        return
    if not rows:
        display(Markdown(
            f"*The study reported these values for its own neuron, {page.paper.neuron}, and tokens; "
            f"this run's {page.choice.neuron if page.choice else 'result'} is another, so there is nothing to put beside them.*"
        ))
        return
    paper_header = "paper (GPT-2 Large" + (f", {paper_method})" if paper_method else ")")
    cells = [(quantity, as_cell(paper), as_cell(run)) for quantity, paper, run in rows]
    table = pd.DataFrame(cells, columns=["quantity", paper_header, f"this run ({page.model_name})"])
    display(table.style.hide(axis="index"))


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


def show_table(frame: pd.DataFrame, caption: str = "", precision: int = 3, index: bool = False) -> None:
    """A table without its index (unless ``index``), numbers at ``precision`` digits."""
    style = frame.style.format(precision=precision)
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
        )
    )
