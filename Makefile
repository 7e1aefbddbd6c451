# parallelizer — developer commands. Everything runs from a fresh clone:
# `make test` creates .venv and installs the package with its extras first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= mpi,test,dev,progress

.PHONY: install test test-serial lint format typecheck check demo bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

# The whole suite: unit tests and the conformance suite on every backend.
test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check parallelizer tests examples benchmarks
	$(VENV)/bin/ruff format --check parallelizer tests examples benchmarks

format: install
	$(VENV)/bin/ruff check --fix parallelizer tests examples benchmarks
	$(VENV)/bin/ruff format parallelizer tests examples benchmarks

typecheck: install
	$(VENV)/bin/mypy

check: lint typecheck test

demo: install
	$(PY) examples/run_job.py
	$(PY) examples/map_applier.py
	$(PY) examples/sample_program.py

bench: install
	@echo "benchmarks/ is not written yet (see the benchmarks issue)"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
