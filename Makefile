# Hyderabad Infra. Two commands on a fresh machine:
#   make run    installs what is missing, starts Kafka, Postgres, Redis, OpenSearch, the stream
#               workers and the six services, prints where they are; Ctrl-C stops them.
#               `make run OBSERVE=1` also starts Debian's prometheus (if installed) on 127.0.0.1:9090.
#               `make run CLUSTER=1`: the cluster mode (config/cluster.env): three Kafka brokers,
#               a Postgres replica for queries, two OpenSearch nodes, two of every worker and
#               service process, beside a single-node stack (own ports, state in .state-cluster/).
#   make test   the full suite against the real stack (started when needed).
#   make test-cluster   the cluster tests (tests/cluster, marker `cluster`) against the cluster mode.
# The native stack (Kafka, PostgreSQL, Redis, OpenSearch on 127.0.0.1; data in .state/ or
# $HI_STATE_DIR) is driven by ops/stack.sh; PARTS limits it, e.g. `make up PARTS=postgres`.
PARTS ?=
# CLUSTER=1 (any value) exports HI_CLUSTER=1: ops/stack.sh and config/settings.py read config/cluster.env.
ifneq ($(CLUSTER),)
export HI_CLUSTER := 1
endif
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Reinstall Python dependencies only when pyproject.toml changes.
VENV_STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: run test test-cluster install install-infra up down status prepare lint bench bench-properties bench-search demo-data replay-archive reindex replay-history bench-replay bench-mix bench-scale

run: install up prepare
	$(PY) -m ops.run $(if $(OBSERVE),--observe)

test: install up
	ops/test.sh

# Three brokers, a replica, two nodes: started (or found running) beside the single-node stack.
test-cluster: export HI_CLUSTER := 1
test-cluster: install up prepare
	$(VENV)/bin/pytest -m cluster tests/cluster

install: $(VENV_STAMP) install-infra

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install-infra:
	ops/stack.sh install $(PARTS)

up:
	ops/stack.sh up $(PARTS)

down:
	ops/stack.sh down $(PARTS)

status:
	ops/stack.sh status $(PARTS)

# Migrations, the topic catalogue and the search index behind its alias; all idempotent.
prepare:
	$(PY) -m ops.migrate
	$(PY) -m ops.topics create
	$(PY) -m ops.search_index

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install up prepare
	$(PY) bench/archive.py

# One projection (the archive) as 1, 2 and 3 workers in one group: events/s, CPU ms per event, each worker's partitions.
bench-scale: install up prepare
	$(PY) bench/scale.py

# Create/GET throughput and read-model freshness of the property slice (starts its own service and workers).
bench-properties: install up prepare
	$(PY) bench/properties.py

# Search latency at fixed rates over 100,000 listings in a bench alias of its own (not part of `make test`).
bench-search: install up prepare
	$(PY) bench/search.py

# Zero-downtime rebuild of a search index from Postgres, then an alias swap (TARGET=saved-searches for the other).
TARGET ?= properties
reindex: install up
	$(PY) -m ops.reindex --target $(TARGET)

# Realistic listings through the running property service (`make run`); same COUNT and SEED, nothing new.
COUNT ?= 200
SEED ?= 1
DEMO_URL ?= http://127.0.0.1:8082
demo-data: install
	$(PY) -m ops.demo_data --count $(COUNT) --seed $(SEED) --url $(DEMO_URL)

# User history replayed in place with Kafka's own tool: stop the history worker (stop `make run`) first.
# It resets group `user-history` to the earliest offsets, runs the worker until it has re-read every event
# (progress bar with rate and ETA), then stops it; start `make run` again. Blue/green rebuilds instead:
# `$(PY) -m ops.history_replay start` (or POST /api/user-history/replay); see README.
replay-history: install up prepare
	$(PY) -m ops.history_replay kafka-reset

# A blue/green rebuild of user history over 200,000 events: events/s and total time.
bench-replay: install up prepare
	$(PY) bench/replay.py

# A day's traffic mix against the running system (start `make run` first), open loop at 50..600 req/s:
# latency per route class, a CPU account per process, the highest rate with p99 < 200 ms.
bench-mix: install
	$(PY) bench/mix.py
