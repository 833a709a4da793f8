"""Build the book: execute every page with papermill, then render static HTML offline.

``python -m helpers.book.build [--profile toy] [--set name=value ...] [--pages 01_prompt ...]``

1. Read the pages from ``_toc.yml`` and the parameters from ``profiles.yaml``.
2. Convert each ``book/*.py`` page (Jupytext py:percent) to a notebook and execute it in a
   fresh kernel with papermill, injecting the parameters it declares. A failing cell stops
   the build with the page and the cell named. Each page gets its own knobs and ``context``,
   the shared parameters of the groups it names in its ``setup_page`` call
   (:mod:`helpers.book.context`). A page whose source, parameters and imported helpers
   modules are unchanged since its last execution is not run again.
3. Copy plotly.js, the circuitsvis bundle and MathJax into ``_vendor`` (served as ``_static``) and build
   the HTML with Jupyter Book, warnings as errors.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from helpers.core.files import atomic_write

ROOT = Path(__file__).resolve().parents[2]
BOOK_ENV = "AN_NEURON_BOOK"
PAGE_ENV = "AN_NEURON_PAGE"


# the kernel's own start-up log (e.g. "running over TCP without encryption") stays off the build
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


class BuildError(RuntimeError):
    """A one-line reason the build stopped."""


@dataclass(frozen=True)
class PageRun:
    """How one page went: executed or up to date, its wall time and the kernel's peak memory."""

    page: str
    executed: bool
    seconds: float
    peak_gb: float

    def line(self) -> str:
        if not self.executed:
            return f"up to date  {self.page}"
        return f"executed    {self.page}  {self.seconds:6.1f} s  peak {self.peak_gb:5.2f} GB"


class ChildMemory:
    """Peak resident memory of this process's children (the page's kernel), sampled in a thread."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak = interval, 0

    def __enter__(self) -> "ChildMemory":
        import psutil

        self._process, self._stop = psutil.Process(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(self.interval):
            total = 0
            for child in self._process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gb(self) -> float:
        return self.peak / 1e9


def toc_pages(root: Path) -> list[Path]:
    """Page sources (``book/*.py``) named in ``_toc.yml``, in order; markdown pages are skipped."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    pages = []
    for name in files:
        if (root / f"{name}.md").exists():
            continue
        source = root / f"{name}.py"
        if not source.exists():
            raise BuildError(f"_toc.yml lists {name}, but {name}.py does not exist: create the page or remove it from _toc.yml")
        pages.append(source)
    return pages


def load_profile(root: Path, name: str) -> dict:
    profiles = yaml.safe_load((root / "profiles.yaml").read_text())
    if name not in profiles:
        raise BuildError(f"unknown profile {name!r}: choose one of {', '.join(profiles)} (see profiles.yaml)")
    return dict(profiles[name])


def parse_overrides(pairs: list[str]) -> dict:
    """``["n_docs=50", "model_name=gpt2"]`` -> values parsed as YAML scalars."""
    values = {}
    for pair in pairs:
        if "=" not in pair:
            raise BuildError(f"--set {pair!r}: write it as name=value")
        key, value = pair.split("=", 1)
        values[key.strip()] = yaml.safe_load(value)
    return values


def notebook_for(source: Path):
    """The page as an nbformat notebook (Jupytext conversion)."""
    import jupytext

    return jupytext.read(source)


def declared_parameters(notebook) -> set[str]:
    """Names assigned in the cell tagged ``parameters``."""
    import ast

    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    if not cells:
        return set()
    tree = ast.parse(cells[0].source)
    return {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets if isinstance(target, ast.Name)}


def page_groups(notebook) -> tuple[str, ...]:
    """The parameter groups a page names in its ``setup_page(context, "neuron", ...)`` call, plus
    the groups every such page has (:data:`helpers.book.context.ALWAYS`); none for a page
    without the call (it takes only its own parameters)."""
    import ast

    from helpers.book.context import check_groups

    calls = [node for cell in notebook.cells if cell.cell_type == "code" for node in ast.walk(ast.parse(cell.source))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup_page"]
    if not calls:
        return ()
    if len(calls) > 1:
        raise BuildError(f"a page makes one setup_page(context, ...) call; this one makes {len(calls)}")
    names = [arg.value for arg in calls[0].args[1:] if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    if len(names) != len(calls[0].args) - 1:
        raise BuildError("setup_page(context, ...) names its groups as string literals, e.g. setup_page(context, 'neuron')")
    return check_groups(names)


def page_context(values: dict, groups: tuple[str, ...]) -> dict:
    """The values of ``groups``' parameters that the profile or ``--set`` give (the page
    fills the rest from :data:`helpers.book.context.GROUPS`)."""
    from helpers.book.context import GROUPS

    return {name: values[name] for group in groups for name in GROUPS[group] if name in values}


def import_closure(source: Path, root: Path) -> list[Path]:
    """The ``helpers`` modules a page imports, directly or through other helpers modules (every
    ``import`` statement counts, inside functions too), with the packages that hold them."""
    import ast

    helpers = root / "helpers"
    seen: set[Path] = set()

    def module_files(name: str) -> list[Path]:
        parts = name.split(".")
        if parts[0] != "helpers":
            return []
        files = [helpers.joinpath(*parts[1:i], "__init__.py") for i in range(1, len(parts) + 1)]
        files.append(helpers.joinpath(*parts[1:]).with_suffix(".py"))
        return [f for f in files if f.is_file()]

    def visit(path: Path, text: str) -> None:
        for node in ast.walk(ast.parse(text)):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                for file in module_files(name):
                    if file not in seen:
                        seen.add(file)
                        visit(file, file.read_text())

    notebook = notebook_for(source)
    visit(source, "\n".join(c.source for c in notebook.cells if c.cell_type == "code"))
    return sorted(seen)


SCORECARD = "00_scorecard"  # reads the other pages' findings: executed after them


def scorecard_last(pages: list[Path]) -> list[Path]:
    """The pages in execution order: the table of contents' order, the scorecard last."""
    return sorted(pages, key=lambda page: page.stem == SCORECARD)


def findings_stamp(source: Path) -> str:
    """For the scorecard: the fingerprints of the executed notebooks beside it, so that it runs
    again whenever a page it reads did."""
    if source.stem != SCORECARD:
        return ""
    return json.dumps([[notebook.stem, recorded_fingerprint(notebook)] for notebook in sorted(source.parent.glob("*.ipynb"))
                       if notebook.stem != SCORECARD])


def recorded_fingerprint(notebook: Path) -> str | None:
    """The fingerprint an executed notebook was executed under (None when there is none)."""
    import nbformat

    return nbformat.read(notebook, as_version=4).metadata.get("an_neuron", {}).get("fingerprint") if notebook.exists() else None


def fingerprint(source: Path, parameters: dict, root: Path) -> str:
    """Hash of what decides a page's output: its source, its parameters, the code of the helpers
    modules it imports (:func:`import_closure`), the package's data files (the bundled
    models, the study's numbers) and the stored results files in ``results/``."""
    digest = hashlib.sha256(source.read_bytes())
    digest.update(json.dumps([parameters, repository_url(root), findings_stamp(source)], sort_keys=True).encode())
    helpers = root / "helpers"
    data = [p for p in helpers.rglob("*") if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts]
    stored = sorted((root / "results").glob("*.json"))  # a stored GPT-2 Large run is shown beside the study
    for path in [*sorted({*import_closure(source, root), *data}), *stored]:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def execute_page(source: Path, parameters: dict, root: Path, force: bool = False) -> PageRun:
    """Execute one page into ``<page>.ipynb`` atomically (a ``PageRun`` says whether it ran)."""
    import nbformat
    import papermill

    target = source.with_suffix(".ipynb")
    stamp = fingerprint(source, parameters, root)
    if not force and recorded_fingerprint(target) == stamp:
        return PageRun(str(source.relative_to(root)), False, 0.0, 0.0)
    notebook = notebook_for(source)
    notebook.metadata["an_neuron"] = {"fingerprint": stamp, "parameters": parameters}
    os.environ[PAGE_ENV] = source.stem  # the kernel inherits it: a page's records name their page
    with tempfile.TemporaryDirectory() as scratch:
        unexecuted = Path(scratch) / source.with_suffix(".ipynb").name
        executed = Path(scratch) / f"executed-{unexecuted.name}"
        nbformat.write(notebook, unexecuted)
        start = time.perf_counter()
        try:
            with ChildMemory() as memory:
                papermill.execute_notebook(
                    str(unexecuted),
                    str(executed),
                    parameters=parameters,
                    kernel_name="python3",
                    cwd=str(source.parent),
                    progress_bar=False,
                    extra_arguments=KERNEL_ARGUMENTS,
                )
        except papermill.PapermillExecutionError as error:
            failed = root / "_build" / "failed" / target.name
            failed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(executed, failed)
            raise BuildError(
                f"{source.relative_to(root)} failed in cell {error.cell_index} (execution count {error.exec_count}): "
                f"{error.ename}: {error.evalue}  [executed notebook kept at {failed.relative_to(root)}]"
            ) from None
        hide_default_parameters(executed, repository_url(root))
        atomic_write(target, executed.read_bytes())
    return PageRun(str(source.relative_to(root)), True, time.perf_counter() - start, memory.peak_gb)


def hide_default_parameters(path: Path, repository: str = "") -> None:
    """Hide the page's default parameters cell (the injected cell shows the values used) and,
    when the book names its repository, put a first cell into the downloadable notebook that
    installs the package where it is missing (Colab, Binder). That cell is added after
    execution: the book build never runs it."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    if repository:
        notebook.cells.insert(0, nbformat.v4.new_code_cell(install_cell(repository), metadata={"tags": ["remove-cell"]}))
    nbformat.write(notebook, path)


def install_cell(repository: str) -> str:
    """A notebook cell that installs the book's package from ``repository`` when it is missing."""
    return (
        "# Opened outside the book (Colab, Binder): install the book's package if it is missing.\n"
        "import importlib.util, subprocess, sys\n"
        "if importlib.util.find_spec('helpers') is None:\n"
        f"    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', 'an-neuron-helpers @ git+{repository}'], check=True)"
    )


def repository_url(root: Path) -> str:
    """The book's repository (``repository.url`` in ``_config.yml``); empty when unset."""
    config = yaml.safe_load((root / "_config.yml").read_text()) if (root / "_config.yml").exists() else {}
    return ((config or {}).get("repository") or {}).get("url") or ""


def page_plan(root: Path, profile: dict, overrides: dict, only: list[str]) -> list[tuple[Path, dict]]:
    """Every page of the table of contents (or ``only`` these) with the parameters it declares,
    in execution order (the scorecard last); one-line errors for unknown pages and parameters."""
    pages = every_page = toc_pages(root)
    if only:
        only = [Path(name).stem for name in only]  # '07_congruence', 'book/07_congruence.py'
        unknown = set(only) - {p.stem for p in pages}
        if unknown:
            raise BuildError(f"no page named {', '.join(sorted(unknown))} in _toc.yml; pages are {', '.join(p.stem for p in pages)}")
        pages = [p for p in pages if p.stem in only]
    notebooks = {page: notebook_for(page) for page in every_page}
    declared = {page: declared_parameters(nb) - {"context"} for page, nb in notebooks.items()}
    groups = {}
    for page, notebook in notebooks.items():
        try:
            groups[page] = page_groups(notebook)
        except (BuildError, ValueError) as error:
            raise BuildError(f"{page.relative_to(root)}: {error}") from None
    from helpers.book.context import GROUPS

    shared = {name for page in every_page for group in groups[page] for name in GROUPS[group]}
    knobs = set().union(*declared.values()) if declared else set()
    undeclared = set(profile) - shared - knobs
    if undeclared:
        raise BuildError(f"the profile sets {', '.join(sorted(undeclared))}, which no page takes: remove it from profiles.yaml")
    undeclared = set(overrides) - shared - knobs
    if undeclared:
        raise BuildError(
            f"no page takes the parameter(s) {', '.join(sorted(undeclared))}; "
            f"the pages take {', '.join(sorted(shared | knobs))}"
        )
    values = {**profile, **overrides}
    if "model_name" in values:
        values["model_name"] = model_of(profile, overrides)
    used = shared | knobs
    print("parameters: " + ", ".join(f"{k}={v!r}" for k, v in values.items() if k in used), flush=True)
    plan = []
    for page in scorecard_last(pages):
        parameters = {k: v for k, v in values.items() if k in declared[page]}
        if groups[page]:
            parameters["context"] = page_context(values, groups[page])
        plan.append((page, parameters))
    return plan


def model_of(profile: dict, overrides: dict) -> str:
    """The model the pages run on; pages run in book/, so a model folder given relative to where
    the build was started is made absolute."""
    from helpers.book.context import GROUPS

    name = {**profile, **overrides}.get("model_name", GROUPS["model"]["model_name"])
    if isinstance(name, str) and name.startswith((".", "/", "~")) and Path(name).expanduser().exists():
        return str(Path(name).expanduser().resolve())
    return name


def execute_pages(root: Path, profile: dict, overrides: dict, only: list[str], force: bool) -> list[PageRun]:
    """Run every page of the table of contents with the parameters it declares; one line per page."""
    os.environ[BOOK_ENV] = "1"
    runs = []
    for page, parameters in page_plan(root, profile, overrides, only):
        runs.append(execute_page(page, parameters, root, force))
        print(runs[-1].line(), flush=True)
    executed = [r for r in runs if r.executed]
    print(
        f"{len(executed)} page(s) executed in {sum(r.seconds for r in executed):.1f} s"
        + (f", peak {max(r.peak_gb for r in executed):.2f} GB" if executed else "")
        + f"; {len(runs) - len(executed)} up to date",
        flush=True,
    )
    return runs


def stale_pages(root: Path, profile: dict, overrides: dict) -> list[str]:
    """The pages whose executed notebook is missing or was executed by other code or other
    parameters than the current ones (their fingerprints differ); nothing is executed."""
    return [page.stem for page, parameters in page_plan(root, profile, overrides, [])
            if recorded_fingerprint(page.with_suffix(".ipynb")) != fingerprint(page, parameters, root)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="book folder holding _toc.yml and profiles.yaml")
    parser.add_argument("--profile", default="toy")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--pages", nargs="*", default=[], help="execute only these pages (stems)")
    parser.add_argument("--force", action="store_true", help="execute pages even when up to date")
    parser.add_argument("--no-html", action="store_true", help="execute pages only")
    parser.add_argument("--html-only", action="store_true", help="render the executed pages, executing none; stale pages are an error")
    args = parser.parse_args(argv)
    try:
        root = args.root.resolve()
        profile, overrides = load_profile(root, args.profile), parse_overrides(args.overrides)
        if args.html_only:
            stale = stale_pages(root, profile, overrides)
            if stale:
                raise BuildError(f"stale for the current code or parameters (profile {args.profile}): {', '.join(stale)}; "
                                 f"execute them first (make pages PROFILE={args.profile})")
        else:
            execute_pages(root, profile, overrides, args.pages, args.force)
        from helpers.book.results import write_results

        written = write_results(root, args.profile, model_of(profile, overrides))
        print(f"results: {written.relative_to(root)}", flush=True)
        if not args.no_html:
            from helpers.book.html import build_html, copy_vendor_assets

            copy_vendor_assets(root)
            index = build_html(root)
            print(f"book built: {index}")
    except BuildError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
