# parallelizer — developer commands. Everything runs from a fresh clone:
# `make test` creates .venv and installs the package with its extras first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= mpi,test,dev,progress,examples

.PHONY: install test lint format typecheck check demo bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

MPIEXEC := $(VENV)/bin/mpiexec
# Under mpiexec every rank runs pytest; lines are prefixed with the rank.
MPI_PYTEST := $(PY) -m pytest --with-mpi -q -p no:cacheprovider --capture=sys
MPI_TIMEOUT := 900

# The whole suite: unit tests, the conformance suite on the serial and
# multiprocessing backends, the launcher tests, then the conformance suite and
# the MPI tests under mpiexec with 1, 2 and 3 ranks.
test: install
	$(PY) -m pytest
	for n in 1 2 3; do \
		echo "== mpiexec -n $$n =="; \
		timeout $(MPI_TIMEOUT) $(MPIEXEC) -n $$n -prepend-rank $(MPI_PYTEST) tests || exit 1; \
	done

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
