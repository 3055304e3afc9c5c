# Taskhub — `make run` serves on http://127.0.0.1:8000 (embedded SQLite), `make test` runs the suite.
# Both create .venv and install on a fresh machine by themselves.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-deep test-fast lint format lock audit bench bench-quick clean

# Exactly the tested set: every package pinned with its hashes in requirements-dev.lock (runtime
# plus dev tools; requirements.lock is the runtime set alone, for deployments). `make lock`
# re-resolves them after a change to the dependencies in pyproject.toml.
LOCK_ARGS := --generate-hashes --universal --python-version 3.11 -q

$(BIN)/.installed: pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(BIN)/.installed

lock: install
	$(BIN)/uv pip compile pyproject.toml $(LOCK_ARGS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_ARGS) -o requirements-dev.lock

# Known vulnerabilities of the locked runtime set. Needs PyPI's per-version JSON API (or OSV),
# which this network does not reach (docs/security.md, "Dependencies"): --strict fails rather
# than passing with nothing audited.
audit: install
	$(BIN)/pip-audit --strict --progress-spinner off --disable-pip --require-hashes -r requirements.lock

run: install
	$(BIN)/taskhub serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest

# Long fuzzing: Schemathesis with 300 random examples per operation, Hypothesis with 5,000 (tens of minutes).
test-deep: install
	$(BIN)/pytest tests/fuzz tests/core/test_properties.py --deep

test-fast: install
	$(BIN)/pytest -x -q -m "not e2e"

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src
	$(BIN)/mypy src

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: install
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache test-output
