# Two commands: `make run` and `make test`. Everything else they need is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint install postgres bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make run: migrate the embedded SQLite database and serve the demo on http://127.0.0.1:8000
run: install
	$(BIN)/refill db upgrade
	$(BIN)/refill serve --demo

## make lint: ruff and mypy --strict on src/
lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy src

postgres: install
	$(BIN)/python scripts/ensure_postgres.py

## make test: lint, then every test (SQLite and PostgreSQL)
test: lint postgres
	$(BIN)/python -m pytest

## make bench: the full benchmark on a fresh SQLite file (REFILL_BENCH_ARGS for more)
bench: install
	$(BIN)/refill bench $(REFILL_BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
