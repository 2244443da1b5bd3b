# Two commands on a fresh machine:  `make run` (set up, then launch)  and  `make test` (set up, then test).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run train test bench clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Until the app lands, the main job is a short CLI training run on the default corpus
# (Tiny Shakespeare when it can be downloaded or is cached, otherwise the offline dataset).
run: $(VENV)/.runtime
	$(PY) -m core train --preset micro --max-time 180 --out runs/quickstart-$$(date +%Y%m%d-%H%M%S)

test: $(VENV)/.dev
	$(PY) -m pytest -q tests

bench: $(VENV)/.dev
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache
