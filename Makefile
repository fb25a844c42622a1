# The two commands a newcomer needs: `make demo` and `make test`. Everything else is a step.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup data db demo test lint pytest bench soak stop clean browser pacs

setup: $(STAMP)  ## create .venv and install the locked dependencies (fast when done)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

db: setup  ## start the database (embedded unless DATABASE_URL) and migrate
	$(PY) -m lung_model migrate

data: setup  ## fill the DVC remote from LUNG_DATASET_SOURCE and restore data/raw
	$(PY) -m lung_model data

DEMO_CONFIG ?= default
# When make began: the demo's timing table counts set-up (venv, database, data) from here.
DEMO_STARTED := $(shell date +%s.%N)
demo: setup db data  ## start Airflow, MLflow UI and dashboard; train once; score real studies
	@$(PY) -m lung_model info
	$(PY) -m lung_model demo --config $(DEMO_CONFIG) --started-at $(DEMO_STARTED)

lint: setup  ## ruff (lint and format check) and mypy on lung_model/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy lung_model

browser:  ## Debian chromium for the dashboard's browser test (installed only when missing)
	@test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; }

pacs:  ## Debian's Orthanc and dcmtk for the DICOM integration tests (installed only when missing)
	@test -x /usr/sbin/Orthanc -a -x /usr/bin/storescu -a -x /usr/bin/dsrdump || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq orthanc orthanc-dicomweb dcmtk; }

pytest: setup data browser pacs
	$(VENV)/bin/pytest

test: lint pytest  ## everything CI runs

bench: setup data  ## benchmarks in bench/, each prints a table (the 30-min soak apart: make soak)
	@for b in bench/bench_*.py; do [ $$b = bench/bench_soak.py ] && continue; \
	  echo "== $$b"; $(PY) $$b || exit 1; done

soak: setup data  ## 30 minutes of studies arriving while the real DAG scores them (a table)
	$(PY) bench/bench_soak.py

stop: setup  ## stop what `make demo` started (services, then the embedded PostgreSQL)
	$(PY) -m lung_model stop

clean: stop  ## remove runtime state (var/) but keep the venv
	rm -rf var
