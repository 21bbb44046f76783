# Minyi: the two commands a newcomer needs are `make run` and `make test`.
CARGO ?= cargo
DEMO ?=
export CARGO_PROFILE_DEV_DEBUG ?= line-tables-only

.PHONY: run test build release fmt lint bench bench-intake clean-test-dbs services browser-test

## make run: the whole cluster in one process, embedded backends, data in ./data/dev.
run:
	$(CARGO) run -p minyi --bin minyi -- dev $(if $(DEMO),--demo,)

## make test: the whole suite, including integration tests against real PostgreSQL, Redis and
## RabbitMQ (installed with apt and started if they are not reachable).
test: services
	$(CARGO) build -p minyi --bins
	$(CARGO) test --workspace --no-fail-fast
	$(CARGO) test -p minyi-tests --test faults -- --ignored --test-threads=1

services:
	@bash deploy/ensure-services.sh

## make browser-test: the dashboard in headless Chromium (installs Debian's chromium and the
## pinned playwright-core with npm if missing).
browser-test:
	$(CARGO) build -p minyi --bins
	bash deploy/browser-test.sh

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --release -p minyi --bins

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## make bench: measured numbers for BENCHMARKS.md (release build; needs the services).
bench: services release
	bash deploy/bench.sh

clean-test-dbs:
	psql "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" -Atc \
	  "SELECT 'DROP DATABASE ' || datname || ';' FROM pg_database WHERE datname LIKE 'minyi_test_%'" \
	  | psql "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" -q
