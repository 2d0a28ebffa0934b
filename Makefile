# Two entry points, each builds its own environment first.
#   make demo   -> trains a small SNN on built-in data
#   make lint   -> ruff check and ruff format --check (make test runs it first)
#   make test   -> runs the whole test suite: everything against snnTorch 1.0.0 and
#                  SpikingJelly 2.0.0 (.venv), then the adapter tests, the snippets and the
#                  learner tests marked `legacy` (the trainers on the frameworks' own classes)
#                  against snnTorch 0.9.4 and SpikingJelly 0.0.0.0.14 (.venv-legacy)
#   make gpu    -> on a machine with an NVIDIA GPU: the GPU tests and the GPU benchmark
#                  (CUPY=cuda12 for CUDA 12 drivers; default cuda13)
#   make gpu-quick -> the quick GPU benchmark (under 5 minutes): benchmarks/gpu_quick.json and .png
#   make gpu-wheels -> fetch into .wheels/ what benchmarks/gpu_session.sh installs offline on a GPU
#                  machine without internet (SpikingJelly 2.0 and the packages it imports; pytest-xdist)
#   make tutorial -> runs tutorial 1 (TUTORIAL=02_spikingjelly etc. for another); figures in figures/
#   make docs   -> builds the documentation site into site/ (mkdocs build --strict), with the
#                  tutorials executed (shrunken; DOCS_SMALL=0 runs them at full size)
# Override the torch requirement with e.g. `make test TORCH="torch==2.6.0"`
# (or TORCH="torch" to keep whatever torch pip resolves).
PYTHON ?= python3
VENV   ?= .venv
LEGACY ?= .venv-legacy
TORCH  ?= torch==2.13.0
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
# extra pytest arguments, e.g. PYTEST_ARGS='-m "not slow"' for a quick run
PYTEST_ARGS ?=
CUPY   ?= cuda13

%/bin/python:
	$(PYTHON) -m venv $*
	$*/bin/python -m pip install -q --upgrade pip

$(VENV)/.demo-ready: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q "$(TORCH)" -e ".[data]"
	touch $@

$(VENV)/.test-ready: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q "$(TORCH)" -e ".[all]"
	touch $@

# the legacy frameworks; tensorboard and requests are undeclared needs of SpikingJelly 0.0.0.0.14,
# scikit-learn gives the learner tests their digits
$(LEGACY)/.test-ready: $(LEGACY)/bin/python pyproject.toml
	$(LEGACY)/bin/python -m pip install -q "$(TORCH)" "spikingjelly==0.0.0.0.14" "snntorch==0.9.4" tensorboard requests \
		scikit-learn pytest
	$(LEGACY)/bin/python -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.gpu-ready: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q "$(TORCH)" -e ".[all,$(CUPY)]"
	touch $@

TUTORIAL ?= 01_snntorch_swap
$(VENV)/.tutorial-ready: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q "$(TORCH)" -e ".[snntorch,spikingjelly,data,plot]"
	touch $@

# the documentation site: tutorials rendered with their outputs (shrunken: DOCS_SMALL=0 for full size)
DOCS_SMALL ?= 1
$(VENV)/.docs-ready: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q "$(TORCH)" -e ".[all,docs]"
	touch $@

.PHONY: demo test lint bench docs gpu gpu-quick gpu-wheels tutorial
demo: $(VENV)/.demo-ready
	$(VENV)/bin/snn-parallel demo

test: lint $(LEGACY)/.test-ready
	$(PY) -m pytest $(PYTEST_ARGS)
	$(LEGACY)/bin/python -m pytest $(PYTEST_ARGS) tests/adapters tests/test_snippets.py
	$(LEGACY)/bin/python -m pytest $(PYTEST_ARGS) -m "legacy and not slow" tests/learners

# ruff's lint rules and formatting (configured in pyproject.toml); make test runs it first
lint: $(VENV)/.test-ready
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.test-ready
	$(VENV)/bin/snn-parallel bench --timeout 120 --json benchmarks/cpu.json --plot benchmarks/cpu.png

gpu: $(VENV)/.gpu-ready
	$(PY) -m pytest -m gpu $(PYTEST_ARGS)
	$(VENV)/bin/snn-parallel bench --device cuda --timeout 600 --json benchmarks/gpu.json --plot benchmarks/gpu.png

gpu-quick: $(VENV)/.gpu-ready
	$(VENV)/bin/snn-parallel bench --device cuda --quick --json benchmarks/gpu_quick.json --plot benchmarks/gpu_quick.png

gpu-wheels: $(VENV)/bin/python
	$(PIP) download -q --no-deps -d .wheels "spikingjelly==2.0.0" loguru tqdm pytest-xdist execnet

# figures, benchmark tables and tutorial pages are generated during the build (docs/gen_pages.py)
docs: $(VENV)/.docs-ready
	DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1 SNN_DOCS_EXECUTE=true SNN_TUTORIAL_SMALL=$(DOCS_SMALL) \
		$(VENV)/bin/mkdocs build --strict

tutorial: $(VENV)/.tutorial-ready
	$(PY) tutorials/$(TUTORIAL).py
