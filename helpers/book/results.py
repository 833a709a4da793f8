"""What a build found, kept as data: one results file per model and profile.

Every build writes ``_build/results/<model>-<profile>.json`` from the executed pages of that
model: each page's glued values (an interval glued as ``x_low``/``x_high`` comes with its
``x_interval`` text), the rows it showed beside the study, its parameters and fingerprint; the
findings the scorecard reads; the chosen neuron and how it was chosen; the model's weights
fingerprint, the profile, the commit and the date. The layout is :data:`RESULTS_FORMAT`
(a file of another format is refused in one line).

A results file of GPT-2 Large kept in the repository's ``results/`` folder (the GPU workflow
writes one) is shown in every build: a third column, "GPT-2 Large, this book, <date>", on the
scorecard and in the tables beside the study.
"""
from __future__ import annotations

import datetime
import json
import logging
import subprocess
from functools import lru_cache
from pathlib import Path

from helpers.book.context import GROUPS
from helpers.book.findings import glued_values, outputs_of, read_findings
from helpers.book.mime import BESIDE_MIME
from helpers.core.files import atomic_write

log = logging.getLogger(__name__)

RESULTS_FORMAT = 1
ROOT = Path(__file__).resolve().parents[2]
STORED = ROOT / "results"  # results files the repository keeps (GPT-2 Large's, from the GPU workflow)
REQUIRED = ("format", "model", "on_paper_model", "profile", "commit", "date", "model_fingerprint", "neuron", "pages", "findings")


class ResultsError(ValueError):
    """A results file that is not one this book can read; the message says which and why."""


def collect_results(root: Path, profile: str, model: str) -> dict:
    """The results of ``model``'s executed pages in ``root/book`` (see the module docstring)."""
    pages = {}
    for notebook in sorted((root / "book").glob("*.ipynb")):
        content = json.loads(notebook.read_text())
        metadata = content.get("metadata", {}).get("an_neuron", {})
        parameters = metadata.get("parameters", {})
        if parameters.get("context", {}).get("model_name", GROUPS["model"]["model_name"]) != model:
            continue
        pages[notebook.stem] = {"parameters": parameters, "fingerprint": metadata.get("fingerprint"), "glued": glued_values(content),
                                "beside": [row for record in outputs_of(content, BESIDE_MIME) for row in record["rows"]]}
    findings = {k: r for k, r in read_findings(root / "book").items() if r["model"] == model}
    glued = [page["glued"] for page in pages.values()]
    chosen = next((g for g in glued if "chosen_neuron" in g), None)
    from helpers.paper import is_paper_model

    return {
        "format": RESULTS_FORMAT, "model": model, "on_paper_model": is_paper_model(model), "profile": profile,
        "commit": commit_of(root), "date": datetime.date.today().isoformat(),
        "model_fingerprint": next((g["model_fingerprint"] for g in glued if "model_fingerprint" in g), None),
        "neuron": None if chosen is None else {"name": chosen["chosen_neuron"], "how": chosen.get("chosen_how", ""),
                                               "stability": chosen.get("chosen_stability")},
        "pages": pages, "findings": findings,
    }


def commit_of(root: Path) -> str:
    """The checkout's commit (with ``+changes`` when the tree differs from it), or ``unknown``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def write_results(root: Path, profile: str, model: str) -> Path:
    """Write ``_build/results/<model>-<profile>.json`` atomically; returns its path."""
    from helpers.scan.identity import folder_slug

    results = collect_results(root, profile, model)
    path = root / "_build" / "results" / f"{folder_slug(Path(model).name)}-{folder_slug(profile)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(results, indent=1, sort_keys=True) + "\n").encode())
    return path


def read_results(path: Path) -> dict:
    """A results file, checked: one-line ``ResultsError`` when it is unreadable or of another layout."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultsError(f"{path} is not a results file ({type(error).__name__}: {error})") from None
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        found = results.get("format") if isinstance(results, dict) else type(results).__name__
        raise ResultsError(f"{path} has results format {found!r}, this book reads format {RESULTS_FORMAT}; write it again with this book")
    missing = [key for key in REQUIRED if key not in results]
    if missing:
        raise ResultsError(f"{path} lacks {', '.join(missing)}; write it again with this book")
    return results


@lru_cache(maxsize=4)
def stored_study_results(folder: Path = STORED) -> dict | None:
    """The newest GPT-2 Large results file in ``folder`` (None when there is none); a file the
    book cannot read is named in a warning and left out."""
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            results = read_results(path)
        except ResultsError as error:
            log.warning("%s; it is left out", error)
            continue
        if results["on_paper_model"]:
            found.append(results)
    return max(found, key=lambda r: r["date"]) if found else None


def stored_label(results: dict) -> str:
    """The column title of a stored GPT-2 Large run."""
    return f"GPT-2 Large, this book, {results['date']}"


def stored_beside(results: dict, page: str, quantity: str) -> str:
    """The stored run's cell for ``quantity`` on ``page`` (empty when it has none)."""
    rows = results["pages"].get(page, {}).get("beside", [])
    return next((value for name, value in rows if name == quantity), "")
