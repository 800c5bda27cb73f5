# qbench: two entry points on a fresh Debian machine.
#   make reproduce   set everything up, then run the main job (default scale: mini)
#   make test        set everything up, then run the test suite (incl. the smoke pipeline)
# Both are idempotent: stamps in .venv record what is installed, keyed on the files that
# define it, so a second run installs nothing.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SCALE ?= mini
CORES ?= all
PYTEST_ARGS ?=

PY_STAMP := $(VENV)/.stamp-python
SYS_STAMP := $(VENV)/.stamp-system
DET_STAMP := $(VENV)/.stamp-detection

.PHONY: setup reproduce test test-fast bench smoke clean-results

setup: $(PY_STAMP) $(SYS_STAMP) $(DET_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(SYS_STAMP): scripts/setup_system.sh | $(VENV)/bin/python
	bash scripts/setup_system.sh
	touch $@

$(PY_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PY) -m pip install --upgrade "pip>=24" "setuptools>=68,<81" wheel
	$(PY) -m pip install -c constraints.txt -e ".[dev]"
	touch $@

$(DET_STAMP): scripts/setup_detection.sh requirements/detection.txt $(PY_STAMP)
	bash scripts/setup_detection.sh $(VENV)
	touch $@

# snakemake's local scheduler re-runs its job selection once per --max-jobs-per-timespan window for
# every job finished so far (each finish starts another timer chain): with the default 100/1s a
# mini run's scheduler reached 230 selections/s and a third of a core by its end; 5 s windows
# cut that five-fold and cost at most 5 s at exit
SNAKEMAKE_ARGS ?= --max-jobs-per-timespan 1000/5s

reproduce: setup
	$(VENV)/bin/snakemake --cores $(CORES) --rerun-incomplete $(SNAKEMAKE_ARGS) --config scale=$(SCALE) -- reproduce_tables

smoke: setup
	$(VENV)/bin/snakemake --cores $(CORES) --rerun-incomplete $(SNAKEMAKE_ARGS) --config scale=smoke -- reproduce_tables

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks.quantizer

clean-results:
	rm -rf results/$(SCALE) reports/$(SCALE)
