"""A myst-nb plugin: plotly's JSON output is left to Jupyter, its HTML twin goes to the book.

``helpers.book.display.show`` emits each figure twice in one MIME bundle. Jupyter renders the
plotly JSON; myst-nb cannot, so this plugin tells it to produce nothing for that MIME type
(instead of warning), and the HTML snippet drawn by the book's local plotly.js is used. The
rows a page shows beside the study travel the same way (:data:`BESIDE_MIME`, data for the
build's results file, beside the table's HTML).
"""
from __future__ import annotations

PLOTLY_MIME = "application/vnd.plotly.v1+json"
BESIDE_MIME = "application/vnd.an-neuron.beside+json"


class PlotlyJsonHandledByHtml:
    """Renders plotly's JSON and the beside-the-study rows as nothing; the bundle's text/html is shown."""

    mime_priority_overrides = ()

    @staticmethod
    def handle_mime(renderer, data, inline):
        if data.mime_type in (PLOTLY_MIME, BESIDE_MIME):
            return []
        return None
