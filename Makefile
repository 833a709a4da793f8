# Two entry points on a fresh machine: `make book` and `make test`.
# Each creates .venv and installs what it needs (Python packages, MathJax, Chromium).

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= toy
MODEL ?=
PAGES ?=
SET ?=
BUILD_ARGS := --profile $(PROFILE) $(if $(MODEL),--set model_name=$(MODEL)) $(foreach s,$(SET),--set $(s)) $(if $(PAGES),--pages $(PAGES))

.PHONY: book pages test bench clean system-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so that nothing pulls another build of it
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[book,test]"
	touch $@

.cache/node_modules/mathjax/es5/tex-chtml.js:
	mkdir -p .cache
	npm install --silent --no-audit --no-fund --prefix .cache mathjax@3.2.2

system-deps:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

book: $(VENV)/.installed .cache/node_modules/mathjax/es5/tex-chtml.js
	$(PY) -m helpers.book.build $(BUILD_ARGS)
	@echo "open _build/html/index.html in a browser, or publish the folder _build/html as it is"

pages: $(VENV)/.installed
	$(PY) -m helpers.book.build --no-html $(BUILD_ARGS)

test: $(VENV)/.installed .cache/node_modules/mathjax/es5/tex-chtml.js system-deps
	$(PY) -m pytest -q tests

bench: $(VENV)/.installed
	$(PY) -m benchmarks $(CASES)

clean:
	rm -rf _build _vendor book/*.ipynb
