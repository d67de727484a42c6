# The README's two commands: `make demo`, then `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export MLFS_HOME ?= $(CURDIR)/.mlfs
export DAGSTER_HOME ?= $(MLFS_HOME)/dagster
# Evidently and MLflow take seconds to import without cached bytecode; let Python write it in .venv.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install demo test dev mlflow sql benchmark clean

install: $(VENV)/.installed

# uv resolves and installs the pinned ranges in seconds; pip alone takes minutes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "uv>=0.5,<1"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test]'
	touch $@

demo: install
	$(BIN)/mlfs demo

test: install
	$(BIN)/pytest

# The UI, and the reports its links open (http://localhost:3001).
dev: install
	$(BIN)/mlfs home
	$(BIN)/mlfs reports & trap "kill $$!" EXIT; $(BIN)/dagster dev -w workspace.yaml

mlflow: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(MLFS_HOME)/mlflow/mlflow.db \
		--default-artifact-root $(MLFS_HOME)/mlflow/artifacts --port 5000

# DuckDB's own Iceberg reader over the warehouse, e.g. make sql SQL="SELECT count(*) FROM card_fraud.raw_transactions"
sql: install
	$(BIN)/mlfs status --json | $(BIN)/uv run --no-project --quiet \
		--with-requirements engines/duckdb/requirements.txt python engines/duckdb/sql.py "$(SQL)"

benchmark: install
	$(BIN)/python benchmarks/backfill_stages.py

clean:
	rm -rf $(MLFS_HOME)
