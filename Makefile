# wirelet: one entry point for setup, checks, tests, the demo and benchmarks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv cluster-build cluster lint test test-fast demo bench clean

help:
	@echo "make test      - set up .venv, build the control plane if missing, lint, type-check, run all tests"
	@echo "make demo      - local control plane + 3 emulated devices + gateway (Ctrl-C to stop)"
	@echo "make cluster   - run only the local control plane in the foreground"
	@echo "make bench     - run benchmarks (QUICK=1 for small sizes)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

cluster-build: $(STAMP)
	$(PY) -m hil.cluster build

cluster: cluster-build
	$(PY) -m hil.cluster up

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint cluster-build
	$(VENV)/bin/pytest

test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not integration"

demo: cluster-build
	$(VENV)/bin/wirelet demo

bench: cluster-build
	$(PY) -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
