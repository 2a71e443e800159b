# mfjax — run `make` or `make help` to list the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL := mfjax
EXTRAS := dev,bench,cluster
# Real datasets for development and CI, when the shared folder is beside the checkout.
export MFJAX_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
# Quiet, deterministic defaults for notebooks and tests.
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export JUPYTER_PLATFORM_DIRS := 1
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: help venv report test test-fast lab lint format notebooks bench clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (mfjax)" >/dev/null
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install mfjax with its extras (only when pyproject.toml changed)

report: $(STAMP) ## Run the notebook pipeline on the synthetic data; HTML reports under reports/
	$(VENV)/bin/mfjax run --run-dir reports/default --overwrite --kernel $(KERNEL)
	@echo "Reports written to reports/default/ (index: reports/index.html)"

test: $(STAMP) ## Run the whole test suite, notebooks (nbval) included
	$(PY) -m pytest -q tests
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  $(PY) -m pytest -q --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg \
	    --nbval-kernel-name $(KERNEL) notebooks; \
	else echo "no notebooks in notebooks/ yet: nbval skipped"; fi

test-fast: $(STAMP) ## Unit tests only (no notebooks, no slow tests)
	$(PY) -m pytest -q -m "not slow" tests

lab: $(STAMP) ## Open JupyterLab on notebooks/
	$(VENV)/bin/jupyter lab notebooks/

lint: $(STAMP) ## Lint and check formatting with ruff
	$(VENV)/bin/ruff check mfjax tests benchmarks
	$(VENV)/bin/ruff format --check mfjax tests benchmarks

format: $(STAMP) ## Format the code with ruff
	$(VENV)/bin/ruff check --fix mfjax tests benchmarks
	$(VENV)/bin/ruff format mfjax tests benchmarks

notebooks: $(STAMP) ## Re-execute every notebook in place with its default parameters (ready to commit)
	$(VENV)/bin/mfjax notebooks --in-place --kernel $(KERNEL)

bench: $(STAMP) ## Side-by-side benchmarks against implicit and Surprise; writes benchmarks/results/latest.*
	$(PY) benchmarks/run.py

clean: ## Remove generated reports and caches (keeps .venv)
	rm -rf reports/*/ reports/index.html .pytest_cache .ruff_cache
