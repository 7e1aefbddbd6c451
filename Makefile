# parallelizer — developer commands. Everything runs from a fresh clone:
# `make test` creates .venv and installs the package with its extras first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= mpi,test,dev,progress,examples,docs

.PHONY: install system-deps test test-slow lint format typecheck check demo docs bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

# Debian packages some tests use (as root, installed quietly when missing; the
# tests that need them skip, saying why, where they cannot be installed):
# CPython's own concurrent.futures tests, run against par.executor().
SYSTEM_PACKAGES ?= libpython3.11-testsuite

system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
		if [ -n "$$missing" ]; then \
			echo "installing Debian packages for the tests: $$missing"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null 2>&1 \
				|| echo "could not install $$missing: the tests that need them will skip"; \
		fi; \
	fi

MPIEXEC := $(VENV)/bin/mpiexec
# Under mpiexec every rank runs pytest; lines are prefixed with the rank.
MPI_PYTEST := $(PY) -m pytest --with-mpi -q -p no:cacheprovider --capture=sys
MPI_TIMEOUT := 900

# The whole suite: unit tests, the conformance suite on the serial and
# multiprocessing backends, the launcher tests, then the conformance suite and
# the MPI tests under mpiexec with 1, 2 and 3 ranks.
test: install system-deps
	$(PY) -m pytest
	for n in 1 2 3; do \
		echo "== mpiexec -n $$n =="; \
		timeout $(MPI_TIMEOUT) $(MPIEXEC) -n $$n -prepend-rank $(MPI_PYTEST) tests || exit 1; \
	done

# Long tests, not part of CI: the soak (100,000 mixed collectives per backend)
# and messages over 2 GiB.
SLOW_TIMEOUTS := -o timeout=3600 -o faulthandler_timeout=3500

test-slow: install
	$(PY) -m pytest -m slow --backends serial,mp3 $(SLOW_TIMEOUTS) tests/contract/test_soak.py tests/contract/test_huge_messages.py
	timeout 7200 $(MPIEXEC) -n 3 -prepend-rank $(MPI_PYTEST) -m slow $(SLOW_TIMEOUTS) \
		tests/contract/test_soak.py tests/contract/test_huge_messages.py

lint: install
	$(VENV)/bin/ruff check parallelizer tests examples benchmarks
	$(VENV)/bin/ruff format --check parallelizer tests examples benchmarks

format: install
	$(VENV)/bin/ruff check --fix parallelizer tests examples benchmarks
	$(VENV)/bin/ruff format parallelizer tests examples benchmarks

typecheck: install
	$(VENV)/bin/mypy

check: lint typecheck test

# Every example three ways: serially, on 3 local processes, on 3 MPI ranks.
DEMO_EXAMPLES := run_job map_applier sample_program monte_carlo task_farm fit_model reduced_basis async_tasks executor

demo: install
	@for name in $(DEMO_EXAMPLES); do \
		echo; echo "== examples/$$name.py =="; \
		echo "\$$ python examples/$$name.py"; \
		$(PY) examples/$$name.py || exit 1; \
		echo "\$$ PARALLELIZER=multiprocessing:3 python examples/$$name.py"; \
		PARALLELIZER=multiprocessing:3 $(PY) examples/$$name.py || exit 1; \
		echo "\$$ python -m parallelizer -n 3 examples/$$name.py   # mpiexec -n 3 python examples/$$name.py"; \
		$(PY) -m parallelizer -n 3 examples/$$name.py || exit 1; \
	done

# The HTML API reference in docs/_build/html (Sphinx; warnings are errors).
# `make test` checks that it builds (tests/test_docs.py).
docs: install
	$(PY) -m sphinx -W --keep-going -E -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

# The benchmark suite (benchmarks/README.md): results/*.json, RESULTS.md and the
# plots. QUICK=1 runs a subset (under 3 minutes) into benchmarks/results/quick/.
bench: install
	$(PY) -c 'import schwimmbad, joblib, matplotlib' 2>/dev/null || $(PY) -m pip install --quiet -e '.[bench]'
	PYTHONPATH=$(CURDIR) $(PY) -m benchmarks --mpiexec $(MPIEXEC) $(if $(filter 1 yes true,$(QUICK)),--quick)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
