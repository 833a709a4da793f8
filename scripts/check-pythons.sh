#!/usr/bin/env bash
# A fresh install and the fast tests (everything but the book build) on Python 3.11, 3.12 and
# 3.13, each in its own virtual environment (.venv-3.x). Interpreters are found on PATH, or in
# pyenv's versions folder; pass them as PYTHON_3_12=/path/to/python3.12 to choose.
set -euo pipefail
cd "$(dirname "$0")/.."
find_python() {  # an interpreter of version $1 that runs: on PATH, else in pyenv's versions
    local p
    if p=$(command -v "python$1" 2>/dev/null) && "$p" -c '' 2>/dev/null; then echo "$p"; return; fi
    for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python"$1"; do
        if [ -x "$p" ]; then echo "$p"; return; fi
    done
}

status=0
for version in 3.11 3.12 3.13; do
    var="PYTHON_${version/./_}"
    python="${!var:-$(find_python "$version")}"
    if [ -z "$python" ]; then
        echo "python $version: not found (install it, e.g. pyenv install $version)"; status=1; continue
    fi
    venv=".venv-$version"
    rm -rf "$venv"
    echo "python $version: $python -> $venv"
    make --no-print-directory "$venv/.installed" PYTHON="$python" VENV="$venv" > "$venv.log" 2>&1 || { echo "python $version: install failed (see $venv.log)"; status=1; continue; }
    if "$venv/bin/python" -m pytest -q -m "not book" -p no:cacheprovider tests 2>&1 | tail -1 | tee -a "$venv.log" | grep -q " passed" && ! tail -1 "$venv.log" | grep -q "failed\|error"; then
        echo "python $version: fast tests passed"
    else
        echo "python $version: fast tests failed (see $venv.log)"; status=1
    fi
done
exit $status
