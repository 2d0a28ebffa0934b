# Two entry points, each builds its own environment first.
#   make demo   -> trains a small SNN on built-in data
#   make test   -> runs the whole test suite
# Override the torch requirement with e.g. `make test TORCH="torch==2.6.0"`
# (or TORCH="torch" to keep whatever torch pip resolves).
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
# extra pytest arguments, e.g. PYTEST_ARGS='-m "not slow"' for a quick run
PYTEST_ARGS ?=

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.demo-ready: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q "$(TORCH)" -e ".[data]"
	touch $@

$(VENV)/.test-ready: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q "$(TORCH)" -e ".[all]"
	touch $@

.PHONY: demo test bench
demo: $(VENV)/.demo-ready
	$(VENV)/bin/snn-parallel demo

test: $(VENV)/.test-ready
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.test-ready
	$(VENV)/bin/snn-parallel bench --plot bench-results/cpu.png --json bench-results/cpu.json
