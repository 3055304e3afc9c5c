# Taskhub — `make run` serves on http://127.0.0.1:8000 (embedded SQLite), `make test` runs the suite.
# Both create .venv and install on a fresh machine by themselves.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-runtime run test test-deep test-fast lint format lock audit bench bench-quick bench-fleet clean pg-cluster pg-cluster-down fleet fleet-down

# Exactly the tested set, pinned with hashes: requirements.lock is what serving needs (`make run`),
# requirements-dev.lock the same pins plus the development tools (`make test`, `make lint`, ...).
# Each install leaves a stamp in the venv and is redone only when pyproject.toml or its lock
# changes; the dev install stamps the runtime one too (it is a superset with the same pins).
# `make lock` re-resolves both after a change to the dependencies in pyproject.toml: the dev set
# first, then the runtime set constrained to its pins, so both locks name the same versions.
LOCK_ARGS := --generate-hashes --universal --python-version 3.11 -q

# The editable install is built without build isolation (no index needed): setuptools comes from
# the dev lock, hash-checked, also for a runtime-only venv.
define install_locked
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(1)
	sed -n '/^setuptools==/,/[^\\]$$/p' requirements-dev.lock > $(VENV)/build-requirements.lock
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(VENV)/build-requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
endef

$(BIN)/.installed-runtime: pyproject.toml requirements.lock requirements-dev.lock
	$(call install_locked,requirements.lock)
	touch $@

$(BIN)/.installed: pyproject.toml requirements.lock requirements-dev.lock
	$(call install_locked,requirements-dev.lock)
	touch $@ $(BIN)/.installed-runtime

install: $(BIN)/.installed
install-runtime: $(BIN)/.installed-runtime

# The runtime lock is resolved within the dev lock (-c), so that both pin the same versions
# (tests/test_lock.py): a dev tool's bound (botocore's on python-dateutil) holds for both.
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_ARGS) -o requirements-dev.lock
	$(BIN)/uv pip compile pyproject.toml -c requirements-dev.lock $(LOCK_ARGS) -o requirements.lock

# Known vulnerabilities of the locked runtime set. Needs PyPI's per-version JSON API (or OSV),
# which this network does not reach (docs/security.md, "Dependencies"): --strict fails rather
# than passing with nothing audited.
audit: install
	$(BIN)/pip-audit --strict --progress-spinner off --disable-pip --require-hashes -r requirements.lock

run: install-runtime
	$(BIN)/taskhub serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest

# Long fuzzing: Schemathesis with 300 random examples per operation, Hypothesis with 5,000 (tens of minutes).
test-deep: install
	$(BIN)/pytest tests/fuzz tests/core/test_properties.py --deep

test-fast: install
	$(BIN)/pytest -x -q -m "not e2e"

lint: install
	$(BIN)/ruff check src tests deploy/pg-cluster deploy/fleet
	$(BIN)/ruff format --check src deploy/pg-cluster deploy/fleet
	$(BIN)/mypy src deploy/pg-cluster/pg_cluster.py deploy/fleet/fleet.py

format: install
	$(BIN)/ruff format src tests deploy/pg-cluster deploy/fleet
	$(BIN)/ruff check --fix src tests deploy/pg-cluster deploy/fleet

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: install
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

# The fleet scenario alone: mixed through nginx over 3 instances vs 1 instance, CPU per request by layer.
bench-fleet: install
	$(BIN)/python -m bench --fleet $(BENCH_ARGS)

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

# The production topology as native processes (deploy/fleet/fleet.py): nginx in front of 3 API
# instances, 2 workers, the relay, the PostgreSQL cluster above, the machine's Redis and RabbitMQ,
# Prometheus. Prints the gateway's URL once it answers. Settings: TASKHUB_FLEET_* (docs/operations.md).
# `make fleet SPLIT=1`: the split topology instead (gateway, auth x1, users x1, tasks x2,
# notifications x1, workers, relay); `make fleet-down` stops either.
FLEET := python3 deploy/fleet/fleet.py

fleet: install
	@$(if $(SPLIT),TASKHUB_FLEET_SPLIT=$(SPLIT)) $(FLEET) up

fleet-down:
	@$(FLEET) down
