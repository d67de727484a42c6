"""DuckDB, the engine the core computes with."""

import os
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa


# DuckDB's working memory before it spills to disk. Unbounded (its default is 80 % of RAM), a year's training-set
# join (6 M rows) took the process from 0.8 to 7.6 GB, and DuckDB's allocator kept 5 GB of it for the life of the
# process; at 2 GB the process peaks at 4.6 GB and keeps 2.5, and the join takes as long.
MEMORY_LIMIT = os.environ.get("MLFS_DUCKDB_MEMORY_LIMIT", "2GB")


@cache
def _database() -> duckdb.DuckDBPyConnection:
    # One in-memory database per process: opening one costs ~30 ms, a cursor on it next to nothing.
    spill = Path(tempfile.gettempdir(), "mlfs-duckdb")  # an in-memory database would spill into the working directory
    return duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(spill)})


def query(sql: str, tables: Mapping[str, pa.Table], params: Mapping | None = None) -> pa.Table:
    """One query over named Arrow tables, on its own cursor (tables registered there stay private to it).

    Timestamps are read and truncated in UTC whatever the host's zone.
    """
    with _database().cursor() as con:
        con.execute("SET TimeZone = 'UTC'")
        for name, table in tables.items():
            con.register(name, table)
        return con.sql(sql, params=dict(params or {})).to_arrow_table()
