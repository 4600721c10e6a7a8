# The commands the README names. Each sets up .venv from pyproject.toml when needed.
PYTHON ?= python3
# One environment a Python: .venv for the default, .venv-3.12 for
# `make test PYTHON=python3.12` (any interpreter, by name or path).
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ifeq ($(PY_VERSION),)
$(error $(PYTHON) does not run; give a Python 3.11 or newer as PYTHON=...)
endif
VENV ?= $(if $(filter file,$(origin PYTHON)),.venv,.venv-$(PY_VERSION))
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv test test-all lint types pytest run bench snapshots-update screenshots clean

help:
	@echo "make run        open the dashboard on its built-in demo (ARGS='--workers 8' passes flags)"
	@echo "make test       lint, types and the whole test suite (PYTHON=python3.12 picks the Python)"
	@echo "make test-all   what CI runs: lint and types once, the suite on every supported Python"
	@echo "make lint       ruff check and ruff format --check"
	@echo "make types      mypy --strict"
	@echo "make pytest     the test suite only"
	@echo "make bench      benchmarks against peers; prints the table, writes docs/benchmarks.md"
	@echo "make snapshots-update  rewrite the dashboard's snapshot SVGs (then look at each)"
	@echo "make screenshots       regenerate the README's pictures in screenshots/"

venv: $(STAMP)

# Its steps are told on standard error: standard output is the program's.
$(STAMP): pyproject.toml
	@echo "setting up $(VENV) from pyproject.toml" >&2
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/python -m pip install --quiet --upgrade pip >&2
	@$(BIN)/python -m pip install --quiet -e '.[test,bench,celery]' >&2
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check pool tui tests tools bench examples
	$(BIN)/ruff format --check pool tui tests tools bench examples

types: $(STAMP)
	$(BIN)/mypy --strict pool tui tests tools bench examples

pytest: $(STAMP)
	env -u NO_COLOR $(BIN)/pytest

test: lint types pytest

# Every CPython that pyproject.toml's classifiers name; one that cannot be
# found fails the run (tools/supported-pythons says which).
test-all:
	@pythons="$$(tools/supported-pythons)" && set -e && \
	$(MAKE) --no-print-directory lint types PYTHON="$$(echo "$$pythons" | head -n 1)" && \
	for py in $$pythons; do \
		echo "== the suite on $$($$py --version)"; \
		$(MAKE) --no-print-directory pytest PYTHON="$$py"; \
	done

# Status 1 only says some demo job failed (the demo fails some on purpose):
# not an error of make's. Bad flags (status 2) still are.
# Silent: what the program prints is all that goes to standard output
# (make run ARGS='--headless' | jq . works).
run: $(STAMP)
	@$(BIN)/wpool-tui $(ARGS) || test $$? -eq 1

# Not a test: never part of make test, never fails on timing. Takes a few minutes.
bench: $(STAMP)
	$(BIN)/python -m bench --command 'make bench'

# The README's pictures, from the same scenarios as the snapshot tests.
screenshots: $(STAMP)
	$(BIN)/python tools/screenshots.py

# The only way snapshot SVGs change: look at every changed one before committing it.
snapshots-update: $(STAMP)
	env -u NO_COLOR $(BIN)/pytest tests/snapshots --snapshot-update

clean:
	rm -rf .venv .venv-* .mypy_cache .pytest_cache .ruff_cache .hypothesis build *.egg-info
