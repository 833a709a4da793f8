"""A page's findings kept as data inside its executed notebook, for the scorecard to read.

A page that measures one of the study's claims ends with one hidden cell,
``record_findings(page, key=values, ...)``: it displays the values as JSON under
:data:`FINDINGS_MIME` (the cell carries the ``remove-cell`` tag, so the rendered page never
shows it), and glues ``verdicts``, the verdicts of the claims the page measures, which the
page opens with. :func:`read_findings` collects every page's record from ``book/*.ipynb``
together with the parameters the page ran with, so the scorecard can tell a record of this
run from one left by another.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from IPython.display import Markdown, display

from helpers.core.names import Head, Neuron

FINDINGS_MIME = "application/vnd.an-neuron.findings+json"


def as_json(value):
    """``value`` with neurons and heads as their names, tensors and numpy numbers as Python
    numbers and lists, and NaN as None (JSON has no NaN)."""
    if isinstance(value, (Neuron, Head)):
        return str(value)
    if isinstance(value, torch.Tensor):
        return as_json(value.tolist())
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return as_json(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record_findings(page, **findings) -> dict:
    """Keep ``findings`` (JSON-able after :func:`as_json`) in the page's notebook and glue
    ``verdicts``: the verdict line of every claim this page measures."""
    from helpers.book.claims import CLAIMS, verdict_lines
    from helpers.book.display import glue

    record = {"model": page.model_name, "on_paper_model": page.on_paper_model, "findings": as_json(findings)}
    display({FINDINGS_MIME: record}, raw=True)
    mine = [claim for claim in CLAIMS if claim.finding in findings]
    glue(verdicts=Markdown(verdict_lines(mine, {page_key: record for page_key in findings}, page.paper)))
    return record


def read_findings(book: Path | str = ".") -> dict[str, dict]:
    """Every finding recorded in ``book/*.ipynb``: ``{finding: record}``, where a record holds
    ``model``, ``on_paper_model``, ``findings``, ``page`` and the page's ``parameters``."""
    found = {}
    for notebook in sorted(Path(book).glob("*.ipynb")):
        content = json.loads(notebook.read_text())
        parameters = content.get("metadata", {}).get("an_neuron", {}).get("parameters", {})
        for record in outputs_of(content, FINDINGS_MIME):
            for key in record["findings"]:
                found[key] = {**record, "page": notebook.stem, "parameters": parameters}
    return found


def outputs_of(content: dict, mime: str) -> list:
    """Every output of a parsed notebook (``json.loads`` of an ``.ipynb``) under ``mime``, in order."""
    return [output["data"][mime] for cell in content.get("cells", []) for output in cell.get("outputs", []) if mime in output.get("data", {})]


def glued_values(content: dict) -> dict[str, str]:
    """Every value glued in a parsed executed notebook (``json.loads`` of an ``.ipynb``):
    ``{name: text}`` (its plain-text form, or its Markdown for a glued phrase)."""
    values = {}
    for cell in content.get("cells", []):
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("scrapbook")
            if record is None:
                continue
            data = {mime.removeprefix(record.get("mime_prefix", "")): text for mime, text in output.get("data", {}).items()}
            text = data.get("text/plain", data.get("text/markdown", ""))
            values[record["name"]] = unquoted("".join(text) if isinstance(text, list) else str(text))
    return values


def unquoted(text: str) -> str:
    """A glued string's text without the quotes of its repr (as ``{glue:text}`` shows it)."""
    import ast

    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        return value if isinstance(value, str) else text
    return text
