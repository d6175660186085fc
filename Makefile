# The two commands of the README, and the checks.
#   make run     the whole stack as local processes (Ctrl-C stops it)
#   make test    the same set-up, then the whole test suite
#   make test-containers   the integration tests against throw-away containers (testcontainers)
#   make check   ruff format check, ruff lint, mypy strict
#   make bench   the benchmark of bench/ (BENCH_ARGS=--quick for a smoke run)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=
# `make test` runs the suite on this many pytest-xdist workers: most of a test's time is
# waiting for Kafka and Postgres, so two workers on two cores take half the time.
TEST_WORKERS ?= 2
BENCH_ARGS ?=

.PHONY: run test test-containers images check format bench stack-up stack-down clean

$(STAMP): pyproject.toml
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP)

run: $(STAMP)
	scripts/run.sh

# Starts Kafka and Postgres if they are not running, and stops again only those it started.
test: $(STAMP)
	@started=$$(mktemp); \
	trap 'grep -q kafka $$started && scripts/kafka.sh stop; grep -q postgres $$started && scripts/postgres.sh stop; rm -f $$started' EXIT; \
	scripts/stack.sh up $$started && \
	source scripts/env.sh && $(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Starts the Docker engine if none answers (installing Debian's docker.io if needed), builds
# the offline stand-in images if missing, and runs the integration tests with testcontainers:
# the variables of `make test` are unset so the fixtures start containers of their own.
test-containers: $(STAMP) images
	eval "$$(docker/images.sh env)" && \
	env -u KAFKA_BOOTSTRAP_SERVERS -u DATABASE_URL $(VENV)/bin/pytest -m integration $(PYTEST_ARGS)

# One table: the import, end to end, each consumer alone, the replay, beside Kafka's producer
# benchmark and Postgres's COPY (README.md, Performance). Starts Kafka and Postgres like
# `make test`; works in databases and topics of its own, dropped at the end.
bench: $(STAMP)
	@started=$$(mktemp); \
	trap 'grep -q kafka $$started && scripts/kafka.sh stop; grep -q postgres $$started && scripts/postgres.sh stop; rm -f $$started' EXIT; \
	scripts/stack.sh up $$started && \
	source scripts/env.sh && \
	BENCH_COMMAND="make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" $(VENV)/bin/python -m bench $(BENCH_ARGS)

images:
	docker/engine.sh up
	docker/images.sh build

check: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

stack-up: $(STAMP)
	scripts/stack.sh up

stack-down:
	scripts/stack.sh down

clean: stack-down
	rm -rf .local $(VENV)
