"""Another Iceberg engine reads the warehouse the pipelines wrote: DuckDB's own Iceberg reader, not pyiceberg."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent
UNREACHABLE_REGISTRY = ("Failed to fetch", "error sending request", "dns error", "Connection refused")


def duckdb_sql(sql: str, status: str, env: dict | None = None) -> list[dict]:
    """`engines/duckdb/sql.py` in its own environment (DuckDB 1.5 and its Iceberg extension), as the docs run it."""
    command = [str(BIN / "uv"), "run", "--no-project", "--quiet", "--with-requirements",
               "engines/duckdb/requirements.txt", "python", "engines/duckdb/sql.py", "--json", sql]
    done = subprocess.run(command, cwd=PROJECT_ROOT, input=status, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=300)
    if done.returncode and any(sign in done.stderr for sign in UNREACHABLE_REGISTRY):
        pytest.skip(f"DuckDB's Iceberg extension could not be installed (no package registry): {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_duckdb_reads_the_tables_the_pipelines_wrote(world):
    env = {**os.environ, "MLFS_HOME": str(world.home), "DAGSTER_HOME": str(world.home / "dagster")}
    status = subprocess.run([str(BIN / "mlfs"), "status", "--json"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, check=True).stdout
    training = world.store().read("card_fraud.fraud_training_set")
    transactions = world.store().read("card_fraud.raw_transactions", ("amount",))

    [rows] = duckdb_sql("SELECT (SELECT count(*) FROM card_fraud.fraud_training_set) AS training_rows, "
                        "(SELECT count(*) FROM card_fraud.raw_transactions) AS transactions, "
                        "(SELECT sum(amount) FROM card_fraud.raw_transactions) AS amount", status)

    assert rows["training_rows"] == training.num_rows > 0
    assert rows["transactions"] == transactions.num_rows > 0
    assert rows["amount"] == pytest.approx(pc.sum(transactions["amount"]).as_py(), rel=1e-12)


def test_duckdb_reads_a_warehouse_on_s3_with_the_pipelines_aws_variables(s3_server, tmp_path):
    store = OfflineStore(f"sqlite:///{tmp_path}/catalog.db", "s3://mlfs/engines", s3=s3_server)
    times = [dt.datetime(2026, 1, 1, hour, tzinfo=dt.UTC) for hour in range(24)]
    store.replace_range("engines.readings", pa.table({"event_time": times, "kwh": [float(h) for h in range(24)]}),
                        "event_time", TimeRange.of_days(dt.date(2026, 1, 1), dt.date(2026, 1, 1)))
    table = store.status("engines.readings")
    status = json.dumps({"tables": [{"table": table.identifier, "metadata_location": table.metadata_location}]})

    [rows] = duckdb_sql("SELECT count(*) AS n, sum(kwh) AS kwh FROM engines.readings", status,
                        {"AWS_ENDPOINT_URL_S3": s3_server.endpoint, "AWS_REGION": s3_server.region})

    assert table.metadata_location.startswith("s3://mlfs/engines/")
    assert rows == {"n": 24, "kwh": float(sum(range(24)))}
