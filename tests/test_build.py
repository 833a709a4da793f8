"""The execution pipeline: parameters reach pages, failures name the page and the cell."""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.book.build import BuildError, execute_pages, toc_pages

from support import PAGE_HEADER, make_book  # noqa: F401

GREETING_PAGE = """\
# %% tags=["parameters"]
greeting = "default"
seed = 1

# %%
print(f"greeting={greeting} seed={seed}")
"""

FAILING_PAGE = """\
# %% tags=["parameters"]
seed = 1

# %%
x = 1

# %%
raise RuntimeError("planted failure")
"""


def outputs(notebook_path: Path) -> str:
    notebook = nbformat.read(notebook_path, as_version=4)
    return "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)


def test_command_line_value_reaches_the_page(tmp_path):
    root = make_book(tmp_path, {"greet": GREETING_PAGE})
    command = [sys.executable, "-m", "helpers.book.build", "--root", str(root), "--no-html", "--set", "greeting=from-the-command-line"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    text = outputs(root / "book" / "greet.ipynb")
    assert "greeting=from-the-command-line seed=0" in text
    meta = nbformat.read(root / "book" / "greet.ipynb", as_version=4).metadata["an_neuron"]
    assert meta["parameters"] == {"greeting": "from-the-command-line", "seed": 0}


def test_profile_values_reach_the_page_and_unchanged_pages_are_not_rerun(tmp_path, capsys):
    root = make_book(tmp_path, {"greet": GREETING_PAGE})
    execute_pages(root, {"greeting": "hello", "seed": 0}, {}, [], force=False)
    assert "greeting=hello seed=0" in outputs(root / "book" / "greet.ipynb")
    execute_pages(root, {"greeting": "hello", "seed": 0}, {}, [], force=False)
    assert "up to date  book/greet.py" in capsys.readouterr().out
    # a new bundled model (a file under helpers/, not code) makes the page stale
    (root / "helpers" / "assets" / "toy").mkdir(parents=True)
    (root / "helpers" / "assets" / "toy" / "model.safetensors").write_bytes(b"retrained")
    execute_pages(root, {"greeting": "hello", "seed": 0}, {}, [], force=False)
    out = capsys.readouterr().out
    assert re.search(r"executed    book/greet.py +[0-9.]+ s  peak +[0-9.]+ GB", out), out
    assert "1 page(s) executed in" in out


def test_failing_cell_fails_the_build_naming_page_and_cell(tmp_path):
    root = make_book(tmp_path, {"greet": GREETING_PAGE, "broken": FAILING_PAGE})
    result = subprocess.run(
        [sys.executable, "-m", "helpers.book.build", "--root", str(root), "--no-html"], capture_output=True, text=True
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "book/broken.py failed in cell" in last_line and "RuntimeError: planted failure" in last_line
    assert not (root / "book" / "broken.ipynb").exists(), "a failed page must not leave a half-written notebook"
    assert (root / "_build" / "failed" / "broken.ipynb").exists()


def test_parameter_no_page_declares_is_refused(tmp_path):
    root = make_book(tmp_path, {"greet": GREETING_PAGE})
    with pytest.raises(BuildError, match="no page takes the parameter.*colour"):
        execute_pages(root, {}, {"colour": "red"}, [], force=False)


def test_page_missing_from_disk_is_named(tmp_path):
    root = make_book(tmp_path, {"greet": GREETING_PAGE})
    (root / "book" / "greet.py").unlink()
    with pytest.raises(BuildError, match="lists book/greet, but book/greet.py does not exist"):
        toc_pages(root)


def test_a_named_repository_puts_an_install_cell_into_the_downloadable_notebook(tmp_path):
    """Opened in Colab or Binder, a page installs the package first; the book build never runs that cell."""
    root = make_book(tmp_path, {"greet": GREETING_PAGE})
    execute_pages(root, {"greeting": "hello", "seed": 0}, {}, [], force=False)
    plain = nbformat.read(root / "book" / "greet.ipynb", as_version=4)
    assert "install the book's package" not in plain.cells[0].source
    (root / "_config.yml").write_text("repository:\n  url: https://github.com/someone/an-neuron\n  branch: notebooks\n")
    execute_pages(root, {"greeting": "hello", "seed": 0}, {}, [], force=False)  # the setting makes the page stale
    notebook = nbformat.read(root / "book" / "greet.ipynb", as_version=4)
    first = notebook.cells[0]
    assert "git+https://github.com/someone/an-neuron" in first.source and first.metadata["tags"] == ["remove-cell"]
    assert first.outputs == [] and first.execution_count is None, "the install cell must not run in the book build"
    compile(first.source, "install cell", "exec")


def test_launch_buttons_are_on_only_when_the_repository_is_named(tmp_path):
    from helpers.book.html import LAUNCHERS, launch_config

    root = make_book(tmp_path, {"greet": GREETING_PAGE})
    (root / "_config.yml").write_text("title: t\nrepository:\n  url: ''\nlaunch_buttons:\n  colab_url: ''\n")
    assert launch_config(root) is None  # the theme cannot build launch buttons without a repository
    (root / "_config.yml").write_text("title: t\nrepository:\n  url: https://github.com/someone/an-neuron\nlaunch_buttons:\n  colab_url: ''\n")
    import yaml

    config = yaml.safe_load(launch_config(root).read_text())
    assert config["launch_buttons"]["colab_url"] == LAUNCHERS["colab_url"] and config["repository"]["url"].endswith("someone/an-neuron")


def test_a_repeated_inline_script_is_dropped_and_the_first_kept():
    from helpers.book.html import drop_repeated_inline_scripts

    thebe = '<script>const THEBE_JS_URL = "x";</script>'
    html = f"<head>{thebe}<script src='a.js'></script>{thebe}<script>other()</script></head>"
    assert drop_repeated_inline_scripts(html) == f"<head>{thebe}<script src='a.js'></script><script>other()</script></head>"
