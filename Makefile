# hoststream: `make run` starts the pipeline on this machine, `make test` runs every test.
.DEFAULT_GOAL := help
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: help install install-airflow run test test-dags unit integration lint format typecheck check stack-up stack-down stack-status bench bench-collector bench-worker bench-fleet outage-check clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

install: ## Install system packages, the virtualenv and the Kafka jars (idempotent)
	@scripts/bootstrap.sh

run: install ## Start the local stack, a collector and a worker; show rows arriving
	$(VENV)/hoststream run

install-airflow: ## Install Airflow and its Google provider in .venv-airflow (idempotent)
	@scripts/bootstrap_airflow.sh

test: install install-airflow ## Run every test against real services it starts: .venv, then the DAG in .venv-airflow
	$(VENV)/pytest $(PYTEST_ARGS)
	.venv-airflow/bin/pytest tests/dags $(PYTEST_ARGS)

test-dags: install install-airflow ## Run the DAG's tests only (Airflow against the emulators)
	.venv-airflow/bin/pytest tests/dags $(PYTEST_ARGS)

unit: install ## Run the unit tests only (no services)
	$(VENV)/pytest tests/unit $(PYTEST_ARGS)

integration: install ## Run the integration tests only
	$(VENV)/pytest -m integration $(PYTEST_ARGS)

lint: install ## ruff lint and format check
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

format: install ## Format the code with ruff
	$(VENV)/ruff check --fix .
	$(VENV)/ruff format .

typecheck: install install-airflow ## mypy on the application code, and on the DAG with Airflow's packages
	$(VENV)/mypy
	$(VENV)/mypy --python-executable .venv-airflow/bin/python dags/*.py

check: lint typecheck ## lint and typecheck

stack-up: install ## Start the local stack (Kafka, PostgreSQL, GCS and BigQuery emulators)
	$(VENV)/hoststream stack up

stack-down: ## Stop the local stack
	$(VENV)/hoststream stack down

stack-status: ## Show what is up and where
	$(VENV)/hoststream stack status

bench: bench-collector bench-worker bench-fleet ## Every benchmark (prints figures; not tests)

bench-worker: install ## Worker events/s beside bare aiokafka and bare Faust, and latency (prints figures)
	$(VENV)/python scripts/bench_worker.py

bench-fleet: install ## Worker records/s, RSS and restart times for 100, 1,000 and 10,000 hosts (prints a table)
	$(VENV)/python scripts/bench_fleet.py

bench-collector: install ## CPU per sample and peak RSS of the collector beside collectd (prints figures)
	$(VENV)/python scripts/bench_collector.py

outage-check: install ## Kafka away 10 min at a 1 s interval: every sample arrives once, in order (prints figures)
	$(VENV)/python scripts/outage_check.py

clean: stack-down ## Stop the stack and remove its state and the virtualenv
	rm -rf .hoststream .venv .venv-airflow
