# Two commands on a fresh machine: `make repro` (install + full pipeline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY ?= true

# the id of the experiment tracking.experiment in mlflow.db, for the link to its runs table
EXPERIMENT_ID := 'import sqlite3, yaml; name = yaml.safe_load(open("params.yaml"))["tracking"]["experiment"]; \
	print(sqlite3.connect("mlflow.db").execute("select experiment_id from experiments where name = ?", (name,)).fetchone()[0])'

.PHONY: install repro test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev,export,team,score]'
	touch $(STAMP)

repro: install
	dvc repro
	@echo
	@dvc metrics show
	@echo
	@echo "MLflow UI: $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --port 5000 --workers 1"
	@echo "the runs table: http://127.0.0.1:5000/#/experiments/$$($(BIN)/python -c $(EXPERIMENT_ID))/runs?workflowType=machine_learning"

# Two worker processes, one test file each at a time, the longest files first (tests/conftest.py); the 15 slowest
# tests printed at the end; no bytecode
# or pytest cache: the tests leave the repository exactly as they found it.
test: install
	PYTHONDONTWRITEBYTECODE=1 $(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadfile --durations 15

lint: install
	$(BIN)/ruff check csra stages tests bench

clean:
	rm -rf $(VENV)
