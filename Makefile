# Taskhub — `make run` serves on http://127.0.0.1:8000 (embedded SQLite), `make test` runs the suite.
# Both create .venv and install on a fresh machine by themselves.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-fast lint format bench bench-quick clean pg-cluster pg-cluster-down

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/taskhub serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -x -q -m "not e2e"

lint: install
	$(BIN)/ruff check src tests deploy/pg-cluster
	$(BIN)/ruff format --check src deploy/pg-cluster
	$(BIN)/mypy src deploy/pg-cluster/pg_cluster.py

format: install
	$(BIN)/ruff format src tests deploy/pg-cluster
	$(BIN)/ruff check --fix src tests deploy/pg-cluster

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: install
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

# PostgreSQL HA cluster (etcd + Patroni: primary + 2 streaming replicas, HAProxy) for tests and the
# fleet; see docs/operations.md. Settings: TASKHUB_PG_CLUSTER_DIR, TASKHUB_PG_CLUSTER_PORT_BASE, ...
# The script needs only the standard library, so no venv: plain python3 runs it.
PG_CLUSTER := python3 deploy/pg-cluster/pg_cluster.py

pg-cluster:
	@$(PG_CLUSTER) up

pg-cluster-down:
	@$(PG_CLUSTER) down

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache test-output
