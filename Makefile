# Two commands on a fresh machine:  `make run` (set up, then launch)  and  `make test` (set up, then test).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run window desktop test lint format bench mutation clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(VENV)/.desktop: $(VENV)/.runtime requirements-desktop.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-desktop.txt
	touch $@

# The app on http://127.0.0.1:7860 (it trains on Tiny Shakespeare, or on the offline dataset without network);
# on a desktop the browser opens at it.
run: $(VENV)/.runtime
	$(PY) app.py

# The app in a window of its own (pywebview, the optional desktop extra).
window: $(VENV)/.desktop
	$(PY) app.py --window

desktop: $(VENV)/.desktop

test: $(VENV)/.dev
	$(PY) -m pytest -q tests

# The code's rules, checked by tools: ruff (lint and format) and the import contracts in pyproject.toml
# (the engine never imports the UI, the engine's floors, tabs that stand alone). CI runs it before the tests.
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Mutation testing of the modules whose arithmetic is the product (settings in pyproject.toml; results in
# TESTING.md). Slow: hours on two cores; not part of CI.
mutation: $(VENV)/.dev
	$(VENV)/bin/pip install -q --disable-pip-version-check "mutmut==3.8.1"
	$(VENV)/bin/mutmut run
	$(VENV)/bin/mutmut results

bench: $(VENV)/.dev
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache mutants
