"""A myst-nb plugin: plotly's JSON output is left to Jupyter, its HTML twin goes to the book.

``helpers.book.display.show`` emits each figure twice in one MIME bundle. Jupyter renders the
plotly JSON; myst-nb cannot, so this plugin tells it to produce nothing for that MIME type
(instead of warning), and the HTML snippet drawn by the book's local plotly.js is used.
"""
from __future__ import annotations

PLOTLY_MIME = "application/vnd.plotly.v1+json"


class PlotlyJsonHandledByHtml:
    """Renders ``application/vnd.plotly.v1+json`` as nothing; the bundle's text/html is shown."""

    mime_priority_overrides = ()

    @staticmethod
    def handle_mime(renderer, data, inline):
        if data.mime_type == PLOTLY_MIME:
            return []
        return None
