# The commands the README names. Each sets up .venv from pyproject.toml when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv test lint types pytest run bench snapshots-update screenshots clean

help:
	@echo "make run        open the dashboard on its built-in demo (ARGS='--workers 8' passes flags)"
	@echo "make test       lint, types and the whole test suite"
	@echo "make lint       ruff check and ruff format --check"
	@echo "make types      mypy --strict"
	@echo "make pytest     the test suite only"
	@echo "make bench      benchmarks against peers; prints the table, writes docs/benchmarks.md"
	@echo "make snapshots-update  rewrite the dashboard's snapshot SVGs (then look at each)"
	@echo "make screenshots       regenerate the README's pictures in screenshots/"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check pool tui tests tools bench
	$(BIN)/ruff format --check pool tui tests tools bench

types: $(STAMP)
	$(BIN)/mypy --strict pool tui tests tools bench

pytest: $(STAMP)
	env -u NO_COLOR $(BIN)/pytest

test: lint types pytest

# Status 1 only says some demo job failed (the demo fails some on purpose):
# not an error of make's. Bad flags (status 2) still are.
run: $(STAMP)
	$(BIN)/wpool-tui $(ARGS) || test $$? -eq 1

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
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis build *.egg-info
