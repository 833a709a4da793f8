"""Plotly figures, one function per kind of figure, each built from result objects alone."""
