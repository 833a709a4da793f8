"""Render the executed pages as static HTML, offline: the vendored scripts and styles, the
launch buttons when the book names its repository, Jupyter Book with warnings as errors, and
one repair of what the theme writes (:func:`drop_repeated_inline_scripts`)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from helpers.book.build import ROOT, BuildError, repository_url
from helpers.core.files import atomic_write

VENDOR = Path("_vendor")
# turned on when _config.yml names the repository (the theme fails on launch buttons without one)
LAUNCHERS = {"binderhub_url": "https://mybinder.org", "colab_url": "https://colab.research.google.com"}


def copy_vendor_assets(root: Path) -> None:
    """Copy plotly.js, the circuitsvis bundle, MathJax and the book's stylesheet into ``_vendor``
    (served as ``_static``)."""
    import circuitsvis
    import plotly

    vendor = root / VENDOR
    vendor.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", vendor / "plotly.min.js")
    shutil.copy(Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js", vendor / "circuitsvis.js")
    shutil.copy(Path(__file__).parent / "assets" / "book.css", vendor / "book.css")
    mathjax = ROOT / ".cache" / "node_modules" / "mathjax" / "es5"
    if not (mathjax / "tex-chtml.js").exists():
        raise BuildError("MathJax is not installed: run `make book` (it runs `npm install --prefix .cache mathjax`)")
    shutil.copytree(mathjax, vendor / "mathjax", dirs_exist_ok=True)


def launch_config(root: Path) -> Path | None:
    """A copy of ``_config.yml`` with the launch buttons on, when it names the repository."""
    if not repository_url(root):
        return None
    config = yaml.safe_load((root / "_config.yml").read_text())
    config["launch_buttons"] = {**config.get("launch_buttons", {}), **LAUNCHERS}
    config["html"] = {**config.get("html", {}), "use_repository_button": True}
    path = root / "_build" / "_config_launch.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def build_html(root: Path) -> Path:
    """Render the executed notebooks with Jupyter Book; warnings are errors."""
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "-W", "-n", "--keep-going"]
    config = launch_config(root)
    if config is not None:
        command += ["--config", str(config)]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout[-6000:], result.stderr[-6000:], sep="\n")
        raise BuildError("jupyter-book build failed (warnings count as errors); see the log above")
    for page in (root / "_build" / "html").rglob("*.html"):
        text = page.read_text()
        kept = drop_repeated_inline_scripts(text)
        if kept != text:
            atomic_write(page, kept.encode())
    return root / "_build" / "html" / "index.html"


def drop_repeated_inline_scripts(html: str) -> str:
    """``html`` with each inline ``<script>`` that repeats an earlier one word for word removed.
    sphinx-thebe writes its constants twice into every page, and the second ``const`` stops
    with "Identifier 'THEBE_JS_URL' has already been declared" in every reader's console."""
    seen = set()

    def once(match: re.Match) -> str:
        if match.group(1) in seen:
            return ""
        seen.add(match.group(1))
        return match.group(0)

    return re.sub(r"<script>(.*?)</script>", once, html, flags=re.S)
