# Two commands: `make run` and `make test`. Everything else they need is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-fast lint install postgres browser bench clean

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

## make lint: ruff, mypy --strict (src, tests, scripts), the import contracts, module sizes
lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy src tests scripts
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_sizes.py src/refill

postgres: install
	$(BIN)/python scripts/ensure_postgres.py

## The portal's browser tests drive Debian's Chromium (never `playwright install`).
browser:
	@test -x /usr/bin/chromium || { apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; }
	@test -x /usr/bin/chromium || { echo "error: /usr/bin/chromium is missing and could not be installed (apt-get install chromium)" >&2; exit 1; }

## make test: lint, then every test (SQLite and PostgreSQL), on TEST_WORKERS processes
## (pytest-xdist; each has its own databases, servers and browser, one test file each)
TEST_WORKERS ?= 2
test: lint postgres browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

## make test-fast: the unit tier only (no database, no process): seconds
test-fast: install
	$(BIN)/python -m pytest tests/unit -q

## make bench: the full benchmark on a fresh SQLite file (REFILL_BENCH_ARGS for more)
bench: install
	$(BIN)/refill bench $(REFILL_BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
